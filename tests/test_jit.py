"""``infer.jit`` (issue #21 item 1): on a CPU in fp32 the engine runs the encoder as a TorchScript trace made at
the first batch. Same answers as the eager model on every shape (batch 1, padded batches, long notes cut into
windows), on plain, CRF and physically pruned models; the eager model untouched; eager when tracing fails or
when the runtime is not CPU fp32 torch."""

from __future__ import annotations

import orjson
import pytest
import torch

from nerkd.infer import Engine
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.prune import remove_heads
from tests.helpers import DATA, sample_texts

NOTES = [orjson.loads(x)["text"] for x in (DATA / "medsoc_handwritten.jsonl").read_bytes().splitlines()[:12]]
TEXTS = sample_texts()[:20] + NOTES + [" ".join(sample_texts()[:12])]   # the last one: several windows

pytestmark = pytest.mark.usefixtures("one_thread")


def engines(ref, model=None, **kw):
    model_a = model or NerModel.load(ref)
    model_b = model or NerModel.load(ref)
    tok = load_tokenizer(ref)
    common = {"max_length": 48, "stride": 8, "batch_size": 4, **kw}
    return Engine(model_a, tok, jit=True, **common), Engine(model_b, tok, jit=False, **common)


def same_answers(jit: Engine, eager: Engine) -> None:
    for batch in ([TEXTS[0]], TEXTS[:3], TEXTS):            # batch 1 first: the trace is made on it
        assert jit.predict(batch) == eager.predict(batch)
    words = [t.split() for t in TEXTS]
    for a, b in zip(jit.word_scores(words), eager.word_scores(words), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_bio", "tiny_crf"])
def test_traced_engine_gives_the_eager_answers(fixture, request):
    jit, eager = engines(request.getfixturevalue(fixture))
    same_answers(jit, eager)
    assert jit.traced is not None and jit.traced.graph is not None and jit.traced.error is None
    assert eager.traced is None


def test_pruned_model_traces_too(tiny_bio):
    model = NerModel.load(tiny_bio)
    remove_heads(model.encoder_model, [(0, 0), (1, 1)])
    twin = NerModel.load(tiny_bio)
    remove_heads(twin.encoder_model, [(0, 0), (1, 1)])
    tok = load_tokenizer(tiny_bio)
    jit = Engine(model, tok, max_length=48, stride=8, batch_size=4, jit=True)
    eager = Engine(twin, tok, max_length=48, stride=8, batch_size=4, jit=False)
    same_answers(jit, eager)
    assert jit.traced.graph is not None


def test_the_eager_model_is_left_as_it_was(tiny_bio):
    model = NerModel.load(tiny_bio)
    encoder = model.encoder_model
    jit = Engine(model, load_tokenizer(tiny_bio), jit=True)
    jit.predict(TEXTS[:2])
    assert model.encoder_model is encoder and isinstance(encoder, torch.nn.Module)
    assert all(p.requires_grad for p in encoder.parameters())   # a trainer can go on with it


def test_a_failed_trace_runs_eagerly(tiny_bio, monkeypatch):
    def refuse(*a, **k):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    jit, eager = engines(tiny_bio)
    same_answers(jit, eager)
    assert jit.traced.graph is None and "cannot trace this" in jit.traced.error


def test_only_cpu_fp32_torch(tiny_bio):
    ref = tiny_bio
    assert Engine.load(ref, int8=True, jit=True).traced is None
    assert Engine.load(ref, jit=True).traced is not None
    assert Engine.load(ref, jit=False).traced is None


def test_the_setting_reaches_the_engine(tiny_bio):
    from nerkd.infer import load_engine
    from nerkd.settings import InferSettings

    assert load_engine(tiny_bio, InferSettings(backend="torch"), max_length=48, stride=8).traced is not None
    assert load_engine(tiny_bio, InferSettings(backend="torch", jit=False), max_length=48, stride=8).traced is None
