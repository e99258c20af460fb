"""Issue #22 items 6-12 (errors and faults): each known fault is one line, exit 1, naming the file,
setting or option at fault; the server drains before it stops and keeps request details out of its log.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from nerkd.cli.app import app
from tests.helpers import DATA, write_kd_config


def one_error(res, *needles: str) -> str:
    """The single ``error:`` line of a failed command: exit 1, no traceback, the last line of stderr."""
    assert res.exit_code == 1, res.output
    lines = res.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def copy_model(src: Path, dst: Path, **config) -> Path:
    """A copy of the model folder ``src`` with ``config`` set in its config.json."""
    shutil.copytree(src, dst)
    raw = orjson.loads((dst / "config.json").read_bytes())
    raw.update(config)
    (dst / "config.json").write_bytes(orjson.dumps(raw))
    return dst


# -- item 6: a config.json field of the wrong type ------------------------------------------------
def test_wrong_typed_config_field_is_one_line_naming_file_and_field(runner, tiny_bio, in_tmp):
    bad = copy_model(tiny_bio, in_tmp / "bad", num_hidden_layers="x")
    (in_tmp / "t.txt").write_text("Jean habite à Paris.\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--device", "cpu", "--model", str(bad), "--input", "t.txt"])
    one_error(res, str(bad / "config.json"), "num_hidden_layers", "expected int")
    assert len(res.stderr.splitlines()) <= 3, res.stderr        # was an 84-line traceback


def test_wrong_typed_config_field_through_the_library(tiny_bio, tmp_path):
    from nerkd.errors import ModelLoadError
    from nerkd.models.ner import NerModel

    bad = copy_model(tiny_bio, tmp_path / "bad", hidden_size=[64])
    try:
        NerModel.load(bad)
    except ModelLoadError as e:
        assert str(e).startswith(f"{bad / 'config.json'}: field hidden_size:"), e
    else:
        raise AssertionError("loaded a config with a wrong-typed field")


# -- item 8: a misspelled local path is not looked up on the hub ----------------------------------
@pytest.fixture
def no_hub(monkeypatch):
    """HF_HUB_OFFLINE, and a failed test on any question to the hub (cache or network)."""
    from nerkd.models import hub

    def forbidden(*args, **kwargs):
        raise AssertionError("the hub was asked about a local path")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_reachable", forbidden)
    monkeypatch.setattr(hub, "_in_cache", forbidden)


def test_misspelled_first_folder_says_no_such_folder_and_the_nearest(runner, tiny_bio, in_tmp, no_hub):
    shutil.copytree(tiny_bio, in_tmp / "artifacts" / "teacher")
    (in_tmp / "t.txt").write_text("Jean habite à Paris.\n", encoding="utf-8")
    res = runner.invoke(app, ["infer", "--model", "artifcts/teacher", "--input", "t.txt"])
    one_error(res, "model artifcts/teacher (--model): no such folder; did you mean artifacts/teacher?")
    res = runner.invoke(app, ["prune", "--model", "artifacts/teachr"])
    one_error(res, "no such folder; did you mean artifacts/teacher?")
    res = runner.invoke(app, ["infer", "--model", "artifacts/nope", "--input", "t.txt"])
    one_error(res, "artifacts/nope (--model): no such folder; artifacts holds teacher")


def test_a_folder_of_the_project_root_is_local_from_a_subfolder(in_tmp, no_hub, monkeypatch):
    from nerkd.errors import ModelLoadError
    from nerkd.models.hub import check_ref

    (in_tmp / "nerkd.yaml").write_text("", encoding="utf-8")
    (in_tmp / "runs" / "best").mkdir(parents=True)
    (in_tmp / "notebooks").mkdir()
    monkeypatch.chdir(in_tmp / "notebooks")
    with pytest.raises(ModelLoadError, match=r"runs/nope \(--model\): no such folder"):
        check_ref("runs/nope", "model", "--model")       # runs/ is the project's, not a hub organisation
    with pytest.raises(ModelLoadError, match=r"no such folder; did you mean .*runs/best\?"):
        check_ref("rnus/best", "model", "--model")


def test_a_hub_id_still_goes_to_the_hub(in_tmp, monkeypatch):
    from nerkd.errors import ModelLoadError
    from nerkd.models import hub

    asked = []
    monkeypatch.setattr(hub, "_in_cache", lambda ref: asked.append(ref) or False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    (in_tmp / "artifacts").mkdir()
    with pytest.raises(ModelLoadError, match="cannot reach the Hugging Face hub"):
        hub.check_ref("Jean-Baptiste/camembert-ner", "teacher", "teacher.model")
    assert asked == ["Jean-Baptiste/camembert-ner"]


# -- item 11: a missing model folder is said before torch is imported -----------------------------
_PROBE = """
import sys
import orjson
from typer.testing import CliRunner
from nerkd.cli.app import app
out = []
for args in orjson.loads(sys.argv[1]):
    res = CliRunner().invoke(app, args)
    out.append([res.exit_code, res.stderr.strip().splitlines()[-1:], "torch" in sys.modules,
                "transformers" in sys.modules])
print(orjson.dumps(out).decode())
"""

MISSING = [
    ["infer", "--model", "artifacts/nope", "--input", "t.txt"],
    ["prune", "--model", "artifacts/nope"],
    ["finetune", "--model", "artifacts/nope"],
    ["finetune", "--base", "artifacts/nope"],
    ["distill", "--teacher", "artifacts/nope"],
    ["distill", "--set", "teacher.model=artifacts/nope"],
    ["export", "--model", "artifacts/nope"],
    ["serve", "--model", "artifacts/nope"],
    ["bench", "--model", "artifacts/nope"],
    ["report", "--model", "mine=artifacts/nope"],
    ["prune", "--set", "train.lrr=1"],
    ["report", "--set", "train.lrr=1"],
    ["bench", "--set", "train.lrr=1"],
]


def test_missing_model_and_bad_settings_fail_before_torch_is_imported(in_tmp):
    (in_tmp / "artifacts").mkdir()
    (in_tmp / "t.txt").write_text("Jean habite à Paris.\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _PROBE, orjson.dumps(MISSING).decode()], capture_output=True,
                          text=True, timeout=300, cwd=in_tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for args, (code, last, torch, transformers) in zip(MISSING, orjson.loads(proc.stdout), strict=True):
        assert code == 1 and last and last[0].startswith("error:"), (args, code, last)
        assert "no such folder" in last[0] or "train.lrr" in last[0], (args, last)
        assert not torch and not transformers, f"{' '.join(args)}: torch imported before saying {last[0]}"


# -- item 12: settings errors say what was meant ----------------------------------------------------
def test_unknown_key_suggests_the_nearest_from_set_yaml_and_env(in_tmp, monkeypatch):
    from nerkd.errors import SettingsError
    from nerkd.settings import load_settings

    with pytest.raises(SettingsError, match=r"^--set: setting train\.lrr: unknown key; did you mean train\.lr\?$"):
        load_settings(None, ["train.lrr=1e-4"])
    (in_tmp / "c.yaml").write_text("train:\n  lrr: 0.0001\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"c\.yaml: setting train\.lrr: unknown key; did you mean train\.lr\?"):
        load_settings(in_tmp / "c.yaml")
    monkeypatch.setenv("NERKD_TRAIN__LRR", "0.0001")
    with pytest.raises(SettingsError, match=r"\(NERKD_TRAIN__LRR\): setting train\.lrr: unknown key; did you mean "
                                            r"train\.lr \(NERKD_TRAIN__LR\)\?"):
        load_settings(None)
    monkeypatch.delenv("NERKD_TRAIN__LRR")
    with pytest.raises(SettingsError, match=r"did you mean distill\.temperature\?"):
        load_settings(None, ["train.temperature=3"])       # a key of another section
    with pytest.raises(SettingsError, match=r"setting trian: unknown key; did you mean train\?"):
        load_settings(None, ["trian.lr=1e-4"])


def test_unknown_key_through_the_cli_is_one_line(runner, in_tmp):
    one_error(runner.invoke(app, ["validate", "--set", "train.lrr=1e-4"]), "did you mean train.lr?")


@pytest.mark.parametrize("text, line", [
    ("train:\n  lr: 1e-4\n  epochs 3\ndata:\n  train: x.jsonl\n", 3),     # a key without its colon
    ("train:\n  lr: 1e-4\n  epochs: [3\ndata:\n  train: x.jsonl\n", 3),   # an unclosed bracket
    ("train:\n  lr: 1e-4\n  device: \"cpu\ndata:\n  train: x.jsonl\n", 3),  # an unclosed quote
    ("train:\n  lr: 1e-4\n  epochs: 3: 4\n", 3),
    ("train:\n  lr: 1e-4\n epochs: 3\n", 3),
])
def test_yaml_error_names_the_line_it_is_on(runner, in_tmp, text, line):
    (in_tmp / "broken.yaml").write_text(text, encoding="utf-8")
    one_error(runner.invoke(app, ["validate", "--config", "broken.yaml"]), f"broken.yaml:{line}: invalid YAML")


def test_missing_data_file_names_its_setting(runner, tiny_bio, in_tmp):
    res = runner.invoke(app, ["prune", "--model", str(tiny_bio), "--set", "data.dev=nope.jsonl", "-o", "out"])
    one_error(res, "data.dev: nope.jsonl: no such file")
    for key in ("train", "label2id"):
        config = write_kd_config(in_tmp, tiny_bio, epochs=1, data={key: f"nope.{key}"},
                                 distill={"layer_map": {"teacher": [2], "student": [1]}}, student={"num_layers": 1})
        res = runner.invoke(app, ["distill", "--config", config, "-o", "out"])
        one_error(res, f"data.{key}: nope.{key}: no such file")


def test_missing_unlabeled_file_names_its_setting(tmp_path):
    from nerkd.data.unlabeled import transfer_set
    from nerkd.errors import SettingsError
    from nerkd.settings import load_settings

    settings = load_settings(None, [f"data.unlabeled={tmp_path / 'texts.txt'}"])
    with pytest.raises(SettingsError, match=r"^data\.unlabeled: .*texts\.txt: no such file"):
        transfer_set(settings, {})


@pytest.mark.parametrize("args, hint", [
    (["distill", "--epochs", "3"], "--set train.epochs=3"),
    (["distill", "--temperature=4"], "--set distill.temperature=4"),
    (["prune", "--max-sentences", "50"], "--set prune.max_sentences=50"),
    (["distill", "--compile"], "--set train.compile=true"),
])
def test_an_option_that_is_a_setting_gets_the_set_hint(runner, in_tmp, args, hint):
    res = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    assert f"No such option: {args[1].split('=')[0]}" in res.stderr and hint in res.stderr, res.stderr


def test_an_option_that_is_no_setting_gets_no_hint(runner, in_tmp):
    res = runner.invoke(app, ["distill", "--frobnicate", "3"], env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "No such option: --frobnicate" in res.stderr and "--set" not in res.stderr


# -- item 9: report refuses a model that shares no label with the data -------------------------------
def test_report_model_sharing_no_label_with_the_data(runner, tiny_bio, in_tmp):
    rows = [{"tokens": ["Le", "patient", "prend", "du", "Doliprane", "."], "tags": ["O", "O", "O", "O", "B-DRUG", "O"]},
            {"tokens": ["Paracétamol", "le", "matin", "."], "tags": ["B-DRUG", "O", "O", "O"]}]
    (in_tmp / "drug.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    # the project's label2id names LOC, ORG, PER (as the model's): the file's entities are all DRUG
    args = ["report", "--model", str(tiny_bio), "--data", "drug.jsonl", "--set",
            f"data.label2id={DATA / 'label2id.json'}", "--set", "infer.device=cpu"]
    res = runner.invoke(app, [*args, "-o", "rep"])
    one_error(res, "shares no entity type with drug.jsonl", "model types LOC, ORG, PER, data types DRUG",
              "--allow-no-shared-labels")
    assert not (in_tmp / "rep" / "report.json").exists()
    res = runner.invoke(app, [*args, "-o", "rep", "--allow-no-shared-labels"])
    assert res.exit_code == 0, res.output
    assert "its row is all zeros" in res.stderr
    report = orjson.loads((in_tmp / "rep" / "report.json").read_bytes())
    assert report["models"][0]["scores"]["f1"] == 0.0


# -- item 10: prune refuses an interrupted run's folder; its messages never offer --resume ---------------
def interrupted_run(src: Path, folder: Path, *, finished: bool = False, summary: bool = False) -> Path:
    """A distill run folder as a kill leaves it: the best model so far (epoch 1), settings.yaml and a
    resumable checkpoint in epoch 2 of 3 that is not marked finished (``finished``: it is)."""
    shutil.copytree(src, folder)
    (folder / "settings.yaml").write_text("train:\n  epochs: 3\n", encoding="utf-8")
    last = folder / "checkpoints" / "last"
    last.mkdir(parents=True)
    for name in ("model.safetensors", "train_state.pt"):
        (last / name).write_bytes(b"")
    state = {"plan": {"epochs": 3}, "fingerprint": {"stage": "distill"}, "world_size": 1, "epoch": 2, "pos": 3,
             "step": 7, "best_epoch": 1, "finished": finished}
    (last / "state.json").write_bytes(orjson.dumps(state))
    if summary:
        (folder / "train_summary.json").write_bytes(orjson.dumps({"stage": "distill", "best_epoch": 1}))
    return folder


PRUNE_DATA = ["--set", f"data.dev={DATA / 'dev.jsonl'}", "--set", "prune.max_sentences=8", "--set",
              "train.device=cpu"]


def test_prune_refuses_an_interrupted_run_folder(runner, tiny_bio, in_tmp):
    run = interrupted_run(tiny_bio, in_tmp / "student")
    res = runner.invoke(app, ["prune", "--model", "student", "-o", "pruned", *PRUNE_DATA])
    one_error(res, "--model student: an unfinished run: distill run stopped in epoch 2 of 3 (step 7; the model "
                   "there is from epoch 1)", "nerkd distill ... --output student --resume")
    assert not (in_tmp / "pruned").exists()
    assert (run / "checkpoints" / "last" / "state.json").is_file()       # nothing of the run was touched


def test_a_finished_run_folder_is_a_model(tiny_bio, tmp_path):
    from nerkd.rundir import check_finished, unfinished_run

    assert unfinished_run(interrupted_run(tiny_bio, tmp_path / "a", finished=True)) is None
    assert unfinished_run(interrupted_run(tiny_bio, tmp_path / "b", summary=True)) is None   # older checkpoints
    assert unfinished_run(tiny_bio) is None                                                  # no run at all
    check_finished(tmp_path / "a")


def test_prune_into_its_own_previous_output_does_not_offer_resume(runner, tiny_bio, in_tmp):
    for _ in range(2):
        res = runner.invoke(app, ["prune", "--model", str(tiny_bio), "-o", "pruned", "--rate", "0.25", *PRUNE_DATA])
        assert res.exit_code == 0, res.output
    assert "removed the previous run's" in res.stderr        # the second run replaced the first one's files ...
    assert "--resume" not in res.stderr                      # ... and prune has no --resume to offer


# -- item 7: serve drains before it stops, validates ids, logs paths without their query ---------------
class FakeEngine:
    """No model: one entity per text; ``predict`` waits at ``gate`` (open by default) and says it was entered."""

    space = type("Space", (), {"labels": ("O", "B-X"), "types": ["X"]})()

    def __init__(self):
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def predict(self, texts):
        self.entered.set()
        assert self.gate.wait(60)
        return [[{"start": 0, "end": len(t), "label": "X", "text": t, "score": 1.0}] for t in texts]


@contextlib.contextmanager
def serving(app, **config):
    """``app`` served in a thread by nerkd's draining uvicorn server on a free loopback port."""
    import uvicorn

    from nerkd.serve.server import DrainingServer

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = DrainingServer(uvicorn.Config(app, log_config=None, lifespan="on", **config), app.state.nerkd, 30)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive())
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=60) as client:
            wait_for(lambda: client.get("/health").status_code == 200)
            yield client, server, thread
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_serve_drains_on_sigterm_503_to_new_requests_answers_the_queued_ones():
    from nerkd.serve.app import create_app
    from nerkd.settings import ServeSettings

    engine = FakeEngine()
    app = create_app(lambda: engine, ServeSettings(max_batch_words=1))   # one request per batch: the rest queue
    with serving(app, access_log=False) as (client, server, thread), ThreadPoolExecutor(4) as pool:
        engine.gate.clear()
        held = [pool.submit(client.post, "/v1/entities", json={"text": f"text {k}"}) for k in range(3)]
        assert engine.entered.wait(30)
        state = app.state.nerkd
        wait_for(lambda: state.in_flight == 3 and state.batcher.queued == 2)
        server.handle_exit(signal.SIGTERM, None)              # what uvicorn's signal handler calls
        with httpx.Client(base_url=client.base_url, timeout=60) as other:   # a keep-alive client's next request
            late = other.post("/v1/entities", json={"text": "late"})
            health = other.get("/health")
        assert late.status_code == 503 and late.headers["retry-after"] == "1", late.text
        assert late.headers["connection"] == "close" and "shutting down" in late.json()["error"]
        assert (health.status_code, health.json()) == (503, {"status": "shutting down"})
        assert thread.is_alive()                               # still draining: requests are held
        engine.gate.set()
        answers = [f.result(timeout=60) for f in held]
        thread.join(30)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["entities"][0]["text"] for a in answers] == [f"text {k}" for k in range(3)]
    assert not thread.is_alive() and state.batcher.closed and state.batcher.stats.requests == 3


def test_serve_an_idle_server_stops_at_once():
    from nerkd.serve.app import create_app
    from nerkd.settings import ServeSettings

    app = create_app(FakeEngine, ServeSettings())
    with serving(app, access_log=False) as (client, server, thread):
        assert client.post("/v1/entities", json={"text": "a"}).status_code == 200
        server.handle_exit(signal.SIGTERM, None)
        thread.join(10)
        assert not thread.is_alive()


@pytest.mark.parametrize("raw_id, status", [
    ("1" + "0" * 30, 422), (str(-(2**63) - 1), 422), ("true", 422), ("1.5", 422), ("null", 422), ("[1]", 422),
    (str(2**63 - 1), 200), (str(-(2**63)), 200), ('"note-1"', 200),
])
def test_serve_ids_are_strings_or_64_bit_ints(raw_id, status):
    """JSON ids as sent (10**30 parsed to a Python int that orjson cannot write back: a 500 before)."""
    from fastapi.testclient import TestClient

    from nerkd.serve.app import create_app
    from nerkd.settings import ServeSettings

    with TestClient(create_app(FakeEngine, ServeSettings()), raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/health").status_code == 200)
        res = client.post("/v1/entities", content=f'{{"texts": ["a"], "ids": [{raw_id}]}}'.encode(),
                          headers={"content-type": "application/json"})
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/json"
    if status == 422:
        body = res.json()
        assert body["error"] == "ids.0: an id is a string or an integer from -2**63 to 2**63-1", body
    else:
        assert res.json()["results"][0]["id"] == orjson.loads(raw_id)


def test_serve_access_log_has_paths_without_query_strings():
    from nerkd.serve.app import create_app
    from nerkd.settings import ServeSettings

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        with serving(create_app(FakeEngine, ServeSettings()), access_log=True) as (client, _, _):
            assert client.get("/health?patient=Mme%20Jeanne%20Martin").status_code == 200
            assert client.post("/v1/entities?ipp=8812&nom=Martin", json={"text": "a"}).status_code == 200
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    from uvicorn.logging import AccessFormatter

    fmt = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    lines = [fmt.format(r) for r in records]
    assert any('"GET /health HTTP/1.1" 200' in line for line in lines), lines
    assert any('"POST /v1/entities HTTP/1.1" 200' in line for line in lines), lines
    logged = "\n".join(lines)
    assert "?" not in logged and "Jeanne" not in logged and "Martin" not in logged and "8812" not in logged


def test_serve_process_drains_on_a_real_sigterm(tiny_bio, in_tmp):
    """The signal's path: uvicorn's handler calls the draining server's; the request in flight is answered."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "nerkd", "serve", "--model", str(tiny_bio), "--port", str(port),
                             "--threads", "1", "--set", "infer.device=cpu"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client, ThreadPoolExecutor(1) as pool:
            def healthy() -> bool:
                assert proc.poll() is None, "the server stopped"
                with contextlib.suppress(httpx.TransportError):
                    return client.get("/health").status_code == 200
                return False

            wait_for(healthy, 180)
            texts = [" ".join(["Mme Lefèvre quitte le CHU de Lyon ."] * 40)] * 64
            busy = pool.submit(client.post, "/v1/entities?patient=Mme%20Jeanne%20Martin", json={"texts": texts})
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            answer = busy.result(timeout=180)
        _, err = proc.communicate(timeout=120)     # it stops by itself once drained
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert answer.status_code == 200 and len(answer.json()["results"]) == 64
    log = err.decode()
    assert proc.returncode in (0, -signal.SIGTERM), log[-2000:]
    assert "serve: drained in" in log and "served 1 request," in log, log[-2000:]
    assert "Jeanne" not in log and "patient" not in log
