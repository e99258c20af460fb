"""``nerkd serve``: the micro-batcher, the HTTP API (a real uvicorn server on a free loopback port, driven
with httpx) and the CLI (a real ``nerkd serve`` subprocess)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from nerkd import __version__
from nerkd.cli.app import app as cli_app
from nerkd.infer import Engine
from nerkd.serve.app import create_app
from nerkd.serve.batcher import MicroBatcher, QueueClosed, QueueFull
from nerkd.serve.info import model_info
from nerkd.settings import ServeSettings
from tests.helpers import sample_texts

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_LENGTH, STRIDE = 32, 8
SENTENCE = ("Le 3 mars , Mme Lefèvre et Jean-Pierre Dupont quittent le CHU de Lyon pour l'EHPAD "
            "Les Opalines à Saint-Étienne avec le SSIAD .")
LIMITS = dict(max_texts=8, max_chars=6000, max_body_bytes=20_000)


# -- helpers -----------------------------------------------------------------------------------
def load_engine(folder) -> Engine:
    return Engine.load(folder, device="cpu", precision="fp32", max_length=MAX_LENGTH, stride=STRIDE)


def spans(entities: list[dict]) -> list[tuple]:
    return [(e["start"], e["end"], e["label"], e["text"]) for e in entities]


def assert_same(got: list[dict], expected: list[dict]) -> None:
    """Same entities as ``engine.predict``: spans exactly; scores to the 4 decimals infer writes, give or take
    one rounding step (a text batched with others is padded differently, which moves logits by ~1e-7)."""
    assert spans(got) == spans(expected)
    assert all(abs(g["score"] - e["score"]) <= 1.5e-4 for g, e in zip(got, expected, strict=True))


@contextlib.contextmanager
def running(app, timeout: float = 60.0):
    """``app`` served by uvicorn in a thread on a free loopback port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def wait_ready(client: httpx.Client, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class Gated:
    """An engine whose ``predict`` waits at a gate (open by default) and says when it was entered."""

    def __init__(self, engine):
        self.engine = engine
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def predict(self, texts):
        self.entered.set()
        assert self.gate.wait(60)
        return self.engine.predict(texts)

    def __getattr__(self, name):
        return getattr(self.engine, name)


class FakeEngine:
    """No model: one entity per text naming its length; ``boom`` in a text raises with the text in the message."""

    space = type("Space", (), {"labels": ("O", "B-X"), "types": ["X"]})()

    def predict(self, texts):
        if any("boom" in t for t in texts):
            raise RuntimeError(f"cannot tag {texts!r}")
        return [[{"start": 0, "end": len(t), "label": "X", "text": t, "score": 1.0}] for t in texts]


def check_error(res: httpx.Response, status: int, fragment: str) -> dict:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert fragment in body["error"], body
    assert body["request_id"] == res.headers["x-request-id"]
    assert "Traceback" not in res.text
    return body


# -- the server shared by the API tests ----------------------------------------------------------
@pytest.fixture(scope="module")
def served(tiny_bio):
    """(client with the token, reference engine, gated engine, app state) for a server over ``tiny_bio``."""
    holder: dict = {}

    def load():
        holder["engine"] = Gated(load_engine(tiny_bio))
        return holder["engine"]

    app = create_app(load, ServeSettings(max_wait_ms=5, **LIMITS), token=TOKEN,
                     describe=lambda engine: model_info(tiny_bio, engine, threads=1))
    with running(app) as (url, _), httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        wait_ready(client)
        yield client, load_engine(tiny_bio), holder["engine"], app.state.nerkd


def test_health_and_model(served, tiny_bio):
    client, ref, _, _ = served
    res = client.get("/health", headers={"Authorization": ""})   # no token needed
    assert (res.status_code, res.json()) == (200, {"status": "ok"})
    info = client.get("/v1/model").json()
    assert info["labels"] == list(ref.space.labels) and info["types"] == ["LOC", "ORG", "PER"]
    assert info["parameters"] == ref.num_parameters > 0
    assert info["nerkd_version"] == __version__
    digest = hashlib.sha256((tiny_bio / "model.safetensors").read_bytes()).hexdigest()
    assert info["sha256"] == info["source_sha256"] == digest
    assert info["weights_sha256"] == {"model.safetensors": digest}
    assert info["max_length"] == MAX_LENGTH and info["backend"] == "torch"
    assert info["limits"]["max_texts"] == LIMITS["max_texts"]
    schema = client.get("/openapi.json").json()
    assert {"/health", "/v1/model", "/v1/stats", "/v1/entities"} <= set(schema["paths"])
    assert "EntitiesRequest" in schema["components"]["schemas"]


def test_model_info_of_an_onnx_export_names_its_source(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"graph")
    (tmp_path / "manifest.json").write_text('{"format": "nerkd-onnx", "source": {"sha256": "abc123"}}')
    info = model_info(tmp_path, type("E", (), {"space": FakeEngine.space, "backend": "onnx"})())
    assert info["sha256"] == hashlib.sha256(b"graph").hexdigest() == info["weights_sha256"]["model.onnx"]
    assert info["source_sha256"] == "abc123" and info["backend"] == "onnx"


def test_entities_match_infer(served):
    client, ref, _, _ = served
    texts = sample_texts()[:5]
    expected = ref.predict(texts + [""])
    res = client.post("/v1/entities", json={"text": texts[0]})
    assert res.status_code == 200 and set(res.json()) == {"entities"}
    assert_same(res.json()["entities"], expected[0])
    assert sum(len(e) for e in expected) > 0   # the comparison compares something
    res = client.post("/v1/entities", json={"texts": texts, "ids": ["a", 2, "c", 4, "e"]}).json()
    assert [r["id"] for r in res["results"]] == ["a", 2, "c", 4, "e"]
    for r, exp in zip(res["results"], expected[:5], strict=True):
        assert_same(r["entities"], exp)
    res = client.post("/v1/entities", json={"texts": ["", texts[1]]}).json()
    assert [set(r) for r in res["results"]] == [{"entities"}, {"entities"}]
    assert res["results"][0]["entities"] == []
    assert_same(res["results"][1]["entities"], expected[1])
    assert client.post("/v1/entities", json={"texts": []}).json() == {"results": []}


def test_long_text_is_windowed_as_in_infer(served):
    client, ref, _, _ = served
    reps = 1
    while len(ref.tokenizer(" ".join([SENTENCE] * reps))["input_ids"]) <= 10 * MAX_LENGTH:
        reps += 1
    long_text = " ".join([SENTENCE] * reps)
    assert len(long_text) <= LIMITS["max_chars"]
    (expected,) = ref.predict([long_text])
    got = client.post("/v1/entities", json={"text": long_text}).json()["entities"]
    assert_same(got, expected)
    assert got and all(long_text[e["start"]:e["end"]] == e["text"] for e in got)
    assert got[-1]["end"] > len(long_text) - len(SENTENCE)   # the last window was tagged too


@pytest.mark.parametrize(("kwargs", "status", "fragment"), [
    (dict(content=b'{"text": "Mme', headers={"content-type": "application/json"}), 400, "invalid JSON"),
    (dict(content=b"\xff\xfe\xfa", headers={"content-type": "application/json"}), 400, "invalid JSON"),
    (dict(json={"text": 5}), 422, "text: Input should be a valid string"),
    (dict(json={"texts": ["a", 3]}), 422, "texts.1"),
    (dict(json={"texts": "a"}), 422, "texts"),
    (dict(json=["a"]), 422, "body"),
    (dict(json={"text": "a", "texts": ["b"]}), 422, 'either "text" or "texts"'),
    (dict(json={}), 422, 'either "text" or "texts"'),
    (dict(json={"texts": ["a", "b"], "ids": [1]}), 422, "1 ids for 2 texts"),
    (dict(json={"text": "a", "ids": [1]}), 422, '"ids" goes with "texts"'),
    (dict(json={"txt": "a"}), 422, "txt"),
    (dict(content=b'{"text": "\\ud800 x"}', headers={"content-type": "application/json"}), 422, "surrogate"),
    (dict(content=b'{"text": "a"}', headers={"content-type": "application/x-www-form-urlencoded"}), 415,
     "Content-Type: application/json"),
    (dict(json={"texts": ["a"] * (LIMITS["max_texts"] + 1)}), 413, "serve.max_texts"),
    (dict(json={"texts": ["a", "b" * (LIMITS["max_chars"] + 1)]}), 413, "texts.1: 6001 characters"),
    (dict(json={"text": "a " * LIMITS["max_body_bytes"]}), 413, "serve.max_body_bytes"),
    # a chunked body (no Content-Length) is counted as it arrives
    (dict(content=iter([b'{"text": "', b"a" * (LIMITS["max_body_bytes"] + 10), b'"}']),
          headers={"content-type": "application/json"}), 413, "serve.max_body_bytes"),
])
def test_bad_requests_get_json_errors(served, kwargs, status, fragment):
    client, _, _, _ = served
    check_error(client.post("/v1/entities", **kwargs), status, fragment)


def test_unknown_routes_and_methods_are_json(served):
    client, _, _, _ = served
    check_error(client.get("/nope"), 404, "Not Found")
    check_error(client.get("/v1/entities"), 405, "Method Not Allowed")


def test_request_id_is_taken_from_the_request(served):
    client, _, _, _ = served
    res = client.post("/v1/entities", content=b"{", headers={"content-type": "application/json",
                                                             "x-request-id": "client-42"})
    assert check_error(res, 400, "invalid JSON")["request_id"] == "client-42"
    res = client.post("/v1/entities", content=b"{", headers={"content-type": "application/json",
                                                             "x-request-id": "bad id\twith spaces"})
    assert check_error(res, 400, "invalid JSON")["request_id"] != "bad id\twith spaces"


def test_token(served):
    client, _, _, _ = served
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        res = client.post("/v1/entities", json={"text": "Mme Lefèvre"}, headers=headers)
        check_error(res, 401, "bearer token")
        assert res.headers["www-authenticate"] == "Bearer"
        check_error(client.get("/v1/model", headers=headers), 401, "bearer token")
        check_error(client.get("/v1/stats", headers=headers), 401, "bearer token")
    assert client.post("/v1/entities", json={"text": "Mme Lefèvre"}).status_code == 200


def test_concurrent_requests_get_their_own_answers(served):
    """20 clients at once, queued behind a held batch so that they are batched together; each gets the
    answers of its own texts (ids included), equal to ``engine.predict`` on those texts."""
    client, ref, gated, state = served
    pool = sample_texts()
    requests = [{"texts": pool[3 * k: 3 * k + 1 + k % 3], "ids": [f"r{k}-{j}" for j in range(1 + k % 3)]}
                for k in range(20)]
    gated.gate.clear()
    gated.entered.clear()
    try:
        with ThreadPoolExecutor(20) as ex:
            first = ex.submit(client.post, "/v1/entities", json=requests[0])
            assert gated.entered.wait(60)                     # the worker holds request 0's batch
            rest = [ex.submit(client.post, "/v1/entities", json=r) for r in requests[1:]]
            queued = sum(len(r["texts"]) for r in requests[1:])
            wait_until(lambda: state.batcher.queued == queued)  # the 19 others wait in the queue
            gated.gate.set()
            answers = [f.result(timeout=120) for f in [first, *rest]]
    finally:
        gated.gate.set()
    assert state.batcher.stats.largest >= 19                  # they went through one predict call together
    stats = client.get("/v1/stats").json()
    assert stats["largest"] >= 19 and stats["requests"] >= 20 and stats["queued_texts"] == 0
    assert stats["mean_requests_per_batch"] == round(stats["requests"] / stats["batches"], 2)
    for req, res in zip(requests, answers, strict=True):
        assert res.status_code == 200, res.text
        results = res.json()["results"]
        assert [r["id"] for r in results] == req["ids"]
        for r, exp in zip(results, ref.predict(req["texts"]), strict=True):
            assert_same(r["entities"], exp)


# -- servers of their own ---------------------------------------------------------------------
def test_health_is_503_until_the_model_is_loaded():
    release = threading.Event()

    def load():
        assert release.wait(60)
        return FakeEngine()

    with running(create_app(load, ServeSettings())) as (url, _), httpx.Client(base_url=url) as client:
        res = client.get("/health")
        assert (res.status_code, res.json()) == (503, {"status": "loading"})
        check_error(client.post("/v1/entities", json={"text": "a"}), 503, "loading")
        check_error(client.get("/v1/model"), 503, "loading")
        release.set()
        wait_ready(client)
        assert client.post("/v1/entities", json={"text": "abc"}).json()["entities"][0]["end"] == 3


def test_failed_load_is_reported():
    seen = []

    def load():
        raise RuntimeError("no such model")

    app = create_app(load, ServeSettings(), on_load_error=seen.append)
    with running(app) as (url, _), httpx.Client(base_url=url) as client:
        wait_until(lambda: seen)
        res = client.get("/health")
        assert (res.status_code, res.json()) == (503, {"status": "error"})
        check_error(client.post("/v1/entities", json={"text": "a"}), 503, "failed to load")
    assert str(seen[0]) == "no such model"


def test_internal_error_is_json_and_logged_with_request_id_but_no_text():
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("nerkd.serve")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with running(create_app(FakeEngine, ServeSettings())) as (url, _), httpx.Client(base_url=url) as client:
            wait_ready(client)
            res = client.post("/v1/entities", json={"texts": ["Mme Confidentielle boom"]},
                              headers={"x-request-id": "req-7"})
            assert res.json() == {"error": "internal error", "request_id": "req-7"}
            assert res.status_code == 500
            ok = client.post("/v1/entities", json={"text": "fine"})   # the server goes on
            assert ok.status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    logged = "\n".join(r.getMessage() for r in records)
    assert "req-7" in logged and "RuntimeError" in logged and "Traceback" in logged
    assert "Confidentielle" not in logged and "fine" not in logged


def test_shutdown_answers_the_requests_in_flight():
    gated = Gated(FakeEngine())
    app = create_app(lambda: gated, ServeSettings(max_batch_words=1))  # one request per batch
    with running(app) as (url, server), httpx.Client(base_url=url, timeout=60) as client:
        wait_ready(client)
        gated.gate.clear()
        gated.entered.clear()
        with ThreadPoolExecutor(4) as ex:
            futures = [ex.submit(client.post, "/v1/entities", json={"text": f"text {k}"}) for k in range(4)]
            assert gated.entered.wait(30)
            wait_until(lambda: app.state.nerkd.batcher.queued == 3)
            server.should_exit = True          # SIGTERM does this
            time.sleep(0.2)
            gated.gate.set()
            answers = [f.result(timeout=60) for f in futures]
    assert [a.json()["entities"][0]["text"] for a in answers] == [f"text {k}" for k in range(4)]
    assert app.state.nerkd.batcher.closed and app.state.nerkd.batcher.stats.requests == 4


# -- the batcher on its own ----------------------------------------------------------------------
class Recorder:
    """``predict`` that records its calls; the first call waits at ``gate`` (open by default)."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, texts):
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(30)
        if any("boom" in t for t in texts):
            raise ValueError("boom")
        return [f"<{t}>" for t in texts]


def held_batcher(**kw) -> tuple[MicroBatcher, Recorder]:
    """A batcher whose worker is busy with a first job, so the next ones queue up."""
    rec = Recorder()
    batcher = MicroBatcher(rec, **kw)
    rec.gate.clear()
    batcher.submit(["first"])
    assert rec.entered.wait(30)
    return batcher, rec


def test_batcher_batches_queued_jobs_and_splits_results():
    batcher, rec = held_batcher(max_batch_words=100, max_wait_ms=0)
    futures = [batcher.submit([f"a{k} x", f"b{k}"][: 1 + k % 2]) for k in range(5)]
    rec.gate.set()
    results = [f.result(10) for f in futures]
    assert results == [[f"<a{k} x>", f"<b{k}>"][: 1 + k % 2] for k in range(5)]
    assert rec.calls[1] == [t for k in range(5) for t in [f"a{k} x", f"b{k}"][: 1 + k % 2]]  # one call
    assert batcher.close(10)


def test_batcher_keeps_to_the_word_budget():
    batcher, rec = held_batcher(max_batch_words=4, max_wait_ms=0)
    futures = [batcher.submit(texts) for texts in (["one two"], ["three four"], ["five"], ["six seven eight nine ten"])]
    rec.gate.set()
    assert [f.result(10) for f in futures] == [["<one two>"], ["<three four>"], ["<five>"],
                                               ["<six seven eight nine ten>"]]
    assert rec.calls[1:] == [["one two", "three four"], ["five"], ["six seven eight nine ten"]]
    assert batcher.close(10)


def test_batcher_waits_for_company_only_after_a_shared_batch():
    rec = Recorder()
    batcher = MicroBatcher(rec, max_batch_words=100, max_wait_ms=10_000)
    assert batcher.submit(["alone"]).result(5) == ["<alone>"]   # a lone client does not wait the 10 s
    rec.gate.clear()
    rec.entered.clear()
    held = batcher.submit(["held"])
    assert rec.entered.wait(30)
    pair = [batcher.submit(["a"]), batcher.submit(["b"])]       # queued: they share the next batch
    rec.gate.set()
    assert [f.result(10) for f in (held, *pair)] == [["<held>"], ["<a>"], ["<b>"]]
    third = batcher.submit(["c"])
    wait_until(lambda: batcher.queued == 0)                     # the worker took it and waits for company
    fourth = batcher.submit(["d"])
    assert batcher.close(10)                                    # ends the wait at once: the queue runs first
    assert third.result(0) == ["<c>"] and fourth.result(0) == ["<d>"]
    assert rec.calls == [["alone"], ["held"], ["a", "b"], ["c", "d"]]


def test_batcher_isolates_a_failing_job_and_skips_cancelled_ones():
    batcher, rec = held_batcher(max_batch_words=100, max_wait_ms=0)
    good, bad, gone, good2 = (batcher.submit([t]) for t in ("ok", "boom", "gone", "ok2"))
    assert gone.cancel()
    rec.gate.set()
    assert good.result(10) == ["<ok>"] and good2.result(10) == ["<ok2>"]
    with pytest.raises(ValueError, match="boom"):
        bad.result(10)
    assert all("gone" not in call for call in rec.calls)
    assert batcher.stats.failed == 1 and batcher.stats.cancelled == 1
    assert batcher.close(10)


def test_batcher_close_runs_the_queue_then_refuses():
    batcher, rec = held_batcher(max_batch_words=1, max_wait_ms=0, max_queue_texts=3)
    futures = [batcher.submit([f"t{k}"]) for k in range(3)]
    with pytest.raises(QueueFull):
        batcher.submit(["one too many"])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    wait_until(lambda: batcher.closed)
    with pytest.raises(QueueClosed):
        batcher.submit(["late"])
    rec.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert [f.result(0) for f in futures] == [["<t0>"], ["<t1>"], ["<t2>"]]


# -- the CLI -------------------------------------------------------------------------------------
def test_missing_extra_is_one_line(runner, in_tmp, monkeypatch, tiny_bio):
    monkeypatch.setitem(sys.modules, "fastapi", None)   # import fastapi -> ImportError
    res = runner.invoke(cli_app, ["serve", "--model", str(tiny_bio)])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [
        "error: nerkd serve needs the serve extra (fastapi missing): pip install 'nerkd[serve]'"]


def test_cli_missing_model_is_one_line(runner, in_tmp):
    res = runner.invoke(cli_app, ["serve", "--model", str(in_tmp / "nowhere"), "--port", "0"])
    assert res.exit_code == 1, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "nowhere" in res.stderr and "Traceback" not in res.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_on_loopback_with_token_and_logs_no_text(tiny_bio, in_tmp):
    port = free_port()
    env = {**os.environ, "NERKD_SERVE_TOKEN": TOKEN, "NERKD_SERVE__MAX_TEXTS": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "nerkd", "serve", "--model", str(tiny_bio), "--port", str(port),
                             "--threads", "1", "--set", f"data.max_length={MAX_LENGTH}", "--set",
                             f"data.stride={STRIDE}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        break
                assert time.monotonic() < deadline
                time.sleep(0.2)
            text = "Mme Zorglubienne quitte le CHU de Lyon ."
            check_error(client.post("/v1/entities", json={"text": text}), 401, "bearer token")
            res = client.post("/v1/entities", json={"text": text}, headers=AUTH)
            assert res.status_code == 200
            assert_same(res.json()["entities"], load_engine(tiny_bio).predict([text])[0])
            check_error(client.post("/v1/entities", json={"texts": ["a"] * 5}, headers=AUTH), 413, "max_texts")
            assert client.get("/v1/model", headers=AUTH).json()["threads"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM)
    log = err.decode()
    assert out == b""                                   # logs, access log included, go to stderr
    first = log.splitlines()[0]
    assert "1 thread (--threads)" in first and f"http://127.0.0.1:{port}" in first and "token required" in first
    assert '"POST /v1/entities HTTP/1.1" 200' in log    # the access log: no bodies
    assert "Zorglub" not in log and TOKEN not in log
    assert "served 1 request," in log                    # graceful shutdown went through the lifespan
