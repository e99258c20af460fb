"""The ONNX Runtime session the backend makes (nerkd.infer.onnx_backend.make_session)."""

from __future__ import annotations

import numpy as np
import pytest

from nerkd.infer.onnx_backend import make_session

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _identity_graph(path):
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [value], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_session_threads_do_not_spin(tmp_path):
    """Two intra-op threads on a shared machine: they wait without spinning (BENCHMARKS.md: 1.5x faster
    with busy neighbours), one inter-op thread, and the graph runs."""
    session = make_session(_identity_graph(tmp_path / "id.onnx"), threads=2)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    (got,) = session.run(["y"], {"x": np.arange(3, dtype=np.float32)})
    assert got.tolist() == [0.0, 1.0, 2.0]
