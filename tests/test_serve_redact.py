"""``nerkd serve``'s ``POST /v1/redact`` (answers equal to ``nerkd redact``'s lines; limits, auth, errors; no
mapping; batched by bias) and the one-page UI at ``GET /`` (self-contained: nothing fetched from elsewhere)."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
import time

import httpx
import orjson
import pytest
import uvicorn

from nerkd.infer import Engine
from nerkd.serve.app import create_app
from nerkd.serve.batcher import MicroBatcher
from nerkd.serve.page import CSP, page_html
from nerkd.settings import InferSettings, RedactSettings, ServeSettings
from tests.helpers import sample_texts

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = b"k" * 32
MAX_LENGTH, STRIDE = 32, 8
LIMITS = dict(max_texts=8, max_chars=6000, max_body_bytes=20_000)
NOTE = ("Appel de Mme Nadia Durand au 06 12 34 56 78 le 12/03/2024 : elle quitte le CHU de Lyon pour l'EHPAD "
        "Les Tilleuls ; écrire à nadia.durand@example.org.")


@contextlib.contextmanager
def running(app, timeout: float = 60.0):
    """``app`` served by uvicorn in a thread on a free loopback port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def wait_ready(client: httpx.Client, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.05)


def check_error(res: httpx.Response, status: int, fragment: str) -> dict:
    assert res.status_code == status, res.text
    body = res.json()
    assert fragment in body["error"], body
    assert body["request_id"] == res.headers["x-request-id"] and "Traceback" not in res.text
    return body


def engine_of(folder) -> Engine:
    return Engine.load(folder, device="cpu", precision="fp32", max_length=MAX_LENGTH, stride=STRIDE)


@pytest.fixture(scope="module")
def served(tiny_bio):
    """A client (with the token) of a server over ``tiny_bio`` with the redact defaults and a key."""
    app = create_app(lambda: engine_of(tiny_bio), ServeSettings(max_wait_ms=5, **LIMITS), token=TOKEN,
                     redact=RedactSettings(), key=KEY)
    with running(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        wait_ready(client)
        yield client, app.state.nerkd


def nerkd_redact(folder, tmp_path, texts: list[str], ids: list[str], **redact) -> list[dict]:
    """The lines ``nerkd redact`` writes for ``texts`` (run_redact, the same key in a file)."""
    from nerkd.stages.redact import RedactJob, run_redact

    source, target, key = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "key"
    source.write_bytes(b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in zip(ids, texts, strict=True)))
    key.write_bytes(KEY)
    target.unlink(missing_ok=True)
    job = RedactJob(source, target, key_file=key, show_progress=False)
    run_redact(folder, job, RedactSettings(**redact), InferSettings(device="cpu", precision="fp32"),
               max_length=MAX_LENGTH, stride=STRIDE)
    return [orjson.loads(line) for line in target.read_bytes().splitlines()]


@pytest.mark.parametrize("override", [{}, {"mode": "mask", "bias": 0.0}, {"mode": "surrogate", "bias": 4.0}])
def test_redact_answers_as_nerkd_redact(served, tiny_bio, tmp_path, override):
    client, _ = served
    texts = [NOTE, *sample_texts()[:4], ""]
    ids = [f"n{k}" for k in range(len(texts))]
    expected = nerkd_redact(tiny_bio, tmp_path, texts, ids, **override)
    res = client.post("/v1/redact", json={"texts": texts, "ids": ids, **override})
    assert res.status_code == 200, res.text
    assert res.json() == {"results": expected}
    assert sum(len(line["replacements"]) for line in expected) > 0     # the comparison compares something
    one = client.post("/v1/redact", json={"text": NOTE, **override}).json()
    assert one == {k: v for k, v in expected[0].items() if k != "id"}
    assert set(one) == {"text", "replacements"}                        # never a mapping over HTTP
    for secret in ("06 12 34 56 78", "nadia.durand@example.org", "12/03/2024"):   # found by the rules
        assert secret not in res.text and secret not in one["text"]
    assert {r["source"] for r in one["replacements"]} >= {"rule"}


def test_bias_changes_the_answer_and_batches_apart(served):
    client, state = served
    texts = sample_texts()[5:10]
    low, high = (client.post("/v1/redact", json={"texts": texts, "bias": b, "mode": "mask"}).json()
                 for b in (-20.0, 20.0))
    count = lambda r: sum(len(x["replacements"]) for x in r["results"])   # noqa: E731
    assert count(high) > count(low)
    assert state.engine.entity_bias == 0.0              # /v1/entities still decodes as nerkd infer
    assert client.post("/v1/redact", json={"texts": []}).json() == {"results": []}


@pytest.mark.parametrize(("kwargs", "status", "fragment"), [
    (dict(content=b'{"text": "Mme', headers={"content-type": "application/json"}), 400, "invalid JSON"),
    (dict(json={"text": 5}), 422, "text: Input should be a valid string"),
    (dict(json={"text": "a", "mode": "hash"}), 422, "mode"),
    (dict(json={"text": "a", "bias": 99}), 422, "bias"),
    (dict(json={"text": "a", "mapping": True}), 422, "mapping"),
    (dict(json={"texts": ["a", "b"], "ids": [1]}), 422, "1 ids for 2 texts"),
    (dict(json={}), 422, 'either "text" or "texts"'),
    (dict(content=b'{"text": "a"}', headers={"content-type": "text/plain"}), 415, "Content-Type: application/json"),
    (dict(json={"texts": ["a"] * (LIMITS["max_texts"] + 1)}), 413, "serve.max_texts"),
    (dict(json={"texts": ["a", "b" * (LIMITS["max_chars"] + 1)]}), 413, "texts.1: 6001 characters"),
    (dict(json={"text": "a " * LIMITS["max_body_bytes"]}), 413, "serve.max_body_bytes"),
])
def test_bad_requests_get_json_errors(served, kwargs, status, fragment):
    client, _ = served
    check_error(client.post("/v1/redact", **kwargs), status, fragment)


def test_token_and_no_text_in_logs(served):
    client, _ = served
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        res = client.post("/v1/redact", json={"text": NOTE}, headers=headers)
        check_error(res, 401, "bearer token")
        assert "Durand" not in res.text
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("nerkd")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        assert client.post("/v1/redact", json={"text": NOTE, "mode": "surrogate"}).status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert not any("Durand" in r.getMessage() or "06 12" in r.getMessage() for r in records)


def test_missing_extra_is_a_501(monkeypatch):
    class Fake:
        space = type("Space", (), {"labels": ("O", "B-X"), "types": ["X"]})()

        def predict(self, texts):
            return [[] for _ in texts]

    monkeypatch.setitem(sys.modules, "phonenumbers", None)
    with running(create_app(Fake, ServeSettings())) as url, httpx.Client(base_url=url) as client:
        wait_ready(client)
        body = check_error(client.post("/v1/redact", json={"text": "a"}), 501, "pip install 'nerkd[redact]'")
        assert "phonenumbers" in body["error"]
        assert client.post("/v1/entities", json={"text": "a"}).status_code == 200   # the rest works


def test_batcher_shares_a_batch_only_between_equal_keys():
    calls: list[tuple] = []
    gate = threading.Event()

    def predict(texts, key=None):
        calls.append((key, list(texts)))
        assert gate.wait(30)
        return [f"{key}:{t}" for t in texts]

    batcher = MicroBatcher(predict, max_batch_words=100, max_wait_ms=0)
    first = batcher.submit(["held"])
    while not calls:
        time.sleep(0.01)
    jobs = [batcher.submit([t], key=k) for t, k in (("a", 2.0), ("b", 2.0), ("c", None), ("d", 2.0))]
    gate.set()
    assert first.result(10) == ["None:held"]
    assert [j.result(10) for j in jobs] == [["2.0:a"], ["2.0:b"], ["None:c"], ["2.0:d"]]
    assert calls[1:] == [(2.0, ["a", "b"]), (None, ["c"]), (2.0, ["d"])]   # in order, never mixed
    assert batcher.close(10)


# -- the page -------------------------------------------------------------------------------------------
def external_references(page: str) -> list[str]:
    """URLs and src/href attributes that point anywhere but this page (data: URLs aside)."""
    found = re.findall(r"(?:https?:)?//[\w.-]+", page)
    found += [v for v in re.findall(r"""(?:src|href|action)\s*=\s*["']?([^"'\s>]+)""", page, re.IGNORECASE)
              if not v.startswith("data:")]
    found += re.findall(r"@import|url\(", page)
    return found


def test_page_is_self_contained(served):
    client, _ = served
    res = client.get("/", headers={"Authorization": ""})          # no token needed to load the page
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    page = res.text
    assert external_references(page) == []
    assert "http://" not in page and "https://" not in page and "<link rel=\"stylesheet\"" not in page
    assert page.count("<script>") == 1 and page.count("<style>") == 1   # inline only, no <script src=...>
    assert res.headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP and "unsafe" not in CSP
    config = orjson.loads(re.search(r'<script type="application/json" id="config">(.*?)</script>', page).group(1))
    assert config == {"auth": True, "mode": "placeholder", "bias": 2.0, "modes": ["placeholder", "mask", "surrogate"]}
    assert "/v1/entities" in page and "/v1/redact" in page and 'id="token"' in page
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_page_config_cannot_close_its_script():
    page = page_html(auth=False, mode="mask", bias=1.5, modes=["</script><script>alert(1)</script>"])
    assert page.count("</script>") == 2 and "\\u003c/script>" in page
    assert external_references(page) == []
