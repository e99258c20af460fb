"""``--compile`` on CPU: inductor's freezing applies to the engine's compiled encoder only (issue #13)."""

from __future__ import annotations

import pytest

from nerkd.infer import Engine

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compile_freezes_in_its_scope_only(tiny_io_teacher, monkeypatch):
    """The encoder compiles lazily, at its first call: inductor must freeze its weights then, and
    the process-wide flag must be back to its value afterwards."""
    import torch._dynamo
    import torch._inductor.config as inductor_config
    import torch._inductor.freezing as freezing

    flags = []
    real_freeze = freezing.freeze

    def spy(*args, **kwargs):
        flags.append(inductor_config.freezing)
        return real_freeze(*args, **kwargs)

    monkeypatch.setattr(freezing, "freeze", spy)
    torch._dynamo.reset()   # compile afresh, not from an earlier test's graphs
    before = inductor_config.freezing
    engine = Engine.load(tiny_io_teacher, device="cpu", precision="fp32", compile=True)
    assert not flags   # nothing compiled yet
    engine.word_scores([["Mme", "Lefèvre", "à", "Lyon"], ["le", "CHU"]])
    assert flags and all(flags)   # the graph was frozen when it compiled
    assert inductor_config.freezing == before   # and the setting did not leak into the process
