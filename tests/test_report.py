"""``nerkd report``: scores equal seqeval on the same predictions, bench merge, plots, CLI defaults."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import orjson
import pytest

TEST = Path(__file__).resolve().parents[1] / "data" / "test.jsonl"
LIMIT = 40  # sentences scored (data.limit), to keep the tests fast


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_pruned(tiny_bio, tmp_path_factory) -> Path:
    """tiny_bio with heads removed (layer 0 keeps 0,2,3; layer 1 keeps 1,2) + a head_importance.json."""
    from nerkd.models.heads import encoder_layers, keep_heads
    from nerkd.models.ner import NerModel, load_tokenizer

    model = NerModel.load(tiny_bio)
    before = model.num_parameters()
    layers = encoder_layers(model)
    keep_heads(layers[0], [0, 2, 3])
    keep_heads(layers[1], [1, 2])
    folder = model.save(tmp_path_factory.mktemp("pruned") / "pruned", tokenizer=load_tokenizer(tiny_bio))
    importance = {"layers": 2, "heads": 4, "scores": [[0.9, 0.1, 0.5, 0.7], [0.05, 0.8, 0.6, 0.2]],
                  "raw_scores": [[9.0, 1.0, 5.0, 7.0], [0.5, 8.0, 6.0, 2.0]], "pruned": [[0, 1], [1, 0], [1, 3]],
                  "kept": [[0, 2, 3], [1, 2]], "normalize": True, "sentences": 80,
                  "params_before": before, "params_after": model.num_parameters()}
    (folder / "head_importance.json").write_bytes(orjson.dumps(importance))
    (folder / "train_summary.json").write_bytes(orjson.dumps(
        {"best_f1": 0.4321, "best_epoch": 2, "epochs_run": 3, "stopped_early": False}))
    return folder


def bench_file(path: Path, models: dict[str, Path], int8_of: str | None = None, warnings: list[str] = (),
               blocks: int | None = 3) -> Path:
    entries = []
    for i, (name, folder) in enumerate(models.items()):
        lat, wps = 20.0 / (i + 1), 100.0 * (i + 1)
        entries.append({"name": name, "path": str(folder), "parameters": 1000 * (3 - i), "disk_bytes": 4000,
                        "latency_ms_p50": lat, "latency_ms_p95": 1.5 * lat, "words_per_s": wps,
                        "peak_mem_mb": 50.0 - i, "speedup_latency": i + 1.0, "speedup_throughput": i + 1.0})
        if blocks:
            entries[-1].update({"latency_ms_p50_min": 0.9 * lat, "latency_ms_p50_max": 1.1 * lat,
                                "words_per_s_min": 0.9 * wps, "words_per_s_max": 1.1 * wps})
    if int8_of:
        entries.append({"name": f"{int8_of} int8", "path": str(models[int8_of]), "parameters": 1000,
                        "disk_bytes": 1234, "latency_ms_p50": 2.0, "latency_ms_p95": 3.0, "words_per_s": 999.0,
                        "peak_mem_mb": 10.0, "speedup_latency": 10.0, "speedup_throughput": 9.99})
    entries.append({"name": "stranger", "path": "/nowhere/at/all", "parameters": 1, "disk_bytes": 1,
                    "latency_ms_p50": 1.0, "latency_ms_p95": 1.0, "words_per_s": 1.0, "peak_mem_mb": 1.0,
                    "speedup_latency": 1.0, "speedup_throughput": 1.0})
    doc = {"machine": {"cpu": "test cpu", "threads": 2, "torch": "2.x", "device": "cpu"},
           "date": "2025-01-01T00:00:00", "precision": "fp32", "sentences": 80, "words": 1544, "models": entries}
    if blocks:
        doc.update({"blocks": blocks, "warnings": list(warnings)})
    path.write_bytes(orjson.dumps(doc))
    return path


# -- independent reference ------------------------------------------------------------------

def gold_tags() -> list[list[str]]:
    return [orjson.loads(line)["tags"] for line in TEST.read_bytes().splitlines() if line.strip()][:LIMIT]


def reference_scores(folder: Path, drop: tuple[str, ...] = ()) -> dict:
    """seqeval on predictions made here; types in ``drop`` are replaced by O (IO tags only)."""
    from nerkd.data.encode import encode
    from nerkd.metrics import evaluate
    from nerkd.models.decode import predict_tags
    from nerkd.models.ner import NerModel, load_tokenizer

    model, tok = NerModel.load(folder), load_tokenizer(folder)
    words = [orjson.loads(line)["tokens"] for line in TEST.read_bytes().splitlines() if line.strip()][:LIMIT]
    windows = encode(tok, words, None, 128, 32)
    preds = predict_tags(model, windows, [len(w) for w in words], pad_id=tok.pad_token_id)
    if drop:
        assert model.labels.scheme == "IO"
        preds = [["O" if t != "O" and t.split("-", 1)[1] in drop else t for t in p] for p in preds]
    return evaluate(gold_tags(), preds)


def md_row(md: str, name: str) -> list[str]:
    rows = [line for line in md.splitlines() if line.startswith(f"| {name} |")]
    assert rows, f"no row for {name} in:\n{md}"
    return [c.strip() for c in rows[0].strip("|").split("|")]


def section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def expected_cells(scores: dict, types: list[str]) -> list[str]:
    cells = []
    for t in types:
        r = scores["per_type"][t]
        cells += [f"{100 * r[k]:.1f}" for k in ("precision", "recall", "f1")]
    return cells + [f"{100 * scores[k]:.1f}" for k in ("precision", "recall", "f1")]


def run(models, output: Path, bench: list[Path] = ()):
    from nerkd.project import Project
    from nerkd.report.render import write_report
    from nerkd.settings import Settings
    from nerkd.stages.report import build_report, named_models

    rep = build_report(Settings(data={"limit": LIMIT}), Project.discover(output.parent), data=str(TEST),
                       models=named_models([f"{n}={p}" for n, p in models.items()]), bench_files=list(bench),
                       output=output)
    return rep, write_report(rep)


# -- unit -------------------------------------------------------------------------------------

def test_align_tags_drops_unknown_types_and_renames():
    from nerkd.report.evaluate import align_tags

    tags = ["I-PER", "I-PER", "O", "I-MISC", "I-PERSON", "I-LOC", "I-LOC"]
    out, dropped = align_tags(tags, {"PER", "LOC", "ORG"}, "BIO", {"PERSON": "PER"})
    assert out == ["B-PER", "I-PER", "O", "O", "B-PER", "B-LOC", "I-LOC"]
    assert dict(dropped) == {"MISC": 1}


def test_pareto_front():
    from nerkd.report.plots import Point, pareto_front

    pts = [Point("teacher", 20, 90), Point("student", 10, 88), Point("pruned", 8, 85), Point("bad", 15, 80),
           Point("int8", 5, 86)]
    assert [pts[i].name for i in pareto_front(pts)] == ["int8", "student", "teacher"]


def test_named_models():
    from nerkd.stages.report import named_models

    specs = named_models(["a/final", "b/final", "best=c/x"])
    assert [(s.name, s.path) for s in specs] == [("final", "a/final"), ("b/final", "b/final"), ("best", "c/x")]


def test_match_bench_by_path_alias_and_int8(tmp_path):
    from nerkd.infer.benchfile import match_bench, read_bench

    (tmp_path / "m" / "student").mkdir(parents=True)
    fig = {"latency_ms_p50": 1.0, "words_per_s": 10.0}
    fp32 = tmp_path / "bench.json"
    fp32.write_bytes(orjson.dumps({"precision": "fp32", "models": [
        {"name": "whatever", "path": "m/student", **fig},            # relative to the bench file's folder
        {"name": "distill", "path": "/gone/student", **fig},          # duplicate of student (by stage alias)
        {"name": "prune", "path": "/gone/pruned", **fig},             # alias of pruned
        {"name": "mystery", "path": "/gone/x", **fig}]}))
    int8 = tmp_path / "bench_int8.json"
    int8.write_bytes(orjson.dumps({"precision": "int8", "models": [{"name": "prune", "path": "/gone", **fig}]}))
    models = [("student", str(tmp_path / "m" / "student"), ("distill",)), ("pruned", "/elsewhere", ("prune",))]
    m = match_bench(models, [read_bench(fp32), read_bench(int8)], [Path("/nonexistent")])
    assert m.primary["student"]["name"] == "whatever" and m.primary["pruned"]["name"] == "prune"
    assert [(name, e["bench_precision"]) for name, e in m.int8] == [("pruned", "int8")]
    assert [e["name"] for e in m.unmatched] == ["mystery"] and [e["name"] for e in m.duplicates] == ["distill"]


def test_match_bench_ignores_same_name_of_another_existing_model(tmp_path):
    """A bench entry named "student" whose folder exists here but is another model than the report's
    "student" must not give that row its figures; a folder that is not on this machine still matches by name."""
    from nerkd.infer.benchfile import match_bench, read_bench

    for folder in ("other/student", "mine/student"):
        (tmp_path / folder).mkdir(parents=True)
    bench = tmp_path / "bench.json"
    bench.write_bytes(orjson.dumps({"precision": "fp32", "models": [
        {"name": "student", "path": str(tmp_path / "other/student"), "latency_ms_p50": 1.0, "words_per_s": 1.0},
        {"name": "teacher", "path": "/gone/teacher", "latency_ms_p50": 2.0, "words_per_s": 2.0}]}))
    models = [("student", str(tmp_path / "mine/student"), ()), ("teacher", str(tmp_path / "t"), ())]
    m = match_bench(models, [read_bench(bench)], [tmp_path])
    assert "student" not in m.primary and [e["name"] for e in m.unmatched] == ["student"]
    assert m.primary["teacher"]["latency_ms_p50"] == 2.0


def test_bad_bench_file_names_the_problem(tmp_path):
    from nerkd.errors import DataError
    from nerkd.infer.benchfile import read_bench

    path = tmp_path / "bench.json"
    path.write_bytes(orjson.dumps({"models": [{"name": "a", "latency_ms_p50": "fast"}]}))
    with pytest.raises(DataError, match=r"models\[0\]\.latency_ms_p50"):
        read_bench(path)


# -- engine -----------------------------------------------------------------------------------

def test_report_scores_bench_and_plots(tiny_io_teacher, tiny_bio, tiny_pruned, tmp_path):
    models = {"teacher": tiny_io_teacher, "student": tiny_bio, "pruned": tiny_pruned}
    bench = bench_file(tmp_path / "bench.json", models, int8_of="pruned")
    rep, files = run(models, tmp_path / "report", [bench])
    out = tmp_path / "report"
    for name in ("report.md", "report.html", "report.json", "pareto.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert len(list(out.glob("heads_*.png"))) == 1  # only the pruned folder has head_importance.json

    md = (out / "report.md").read_text(encoding="utf-8")
    data = orjson.loads((out / "report.json").read_bytes())
    types = ["LOC", "ORG", "PER"]
    assert md_row(md, "model")[1:] == [f"{t} {m}" for t in [*types, "all"] for m in ("P", "R", "F1")]
    ref = {"teacher": reference_scores(tiny_io_teacher, drop=("MISC",)), "student": reference_scores(tiny_bio),
           "pruned": reference_scores(tiny_pruned)}
    by_name = {m["name"]: m for m in data["models"]}
    for name, scores in ref.items():
        assert md_row(md, name)[1:13] == expected_cells(scores, types), name
        assert by_name[name]["scores"]["f1"] == pytest.approx(scores["f1"], abs=1e-12)
        assert by_name[name]["scores"]["per_type"]["PER"]["f1"] == pytest.approx(scores["per_type"]["PER"]["f1"])
    # MISC predictions of the IO teacher are dropped, counted and said
    assert by_name["teacher"]["dropped_spans"].get("MISC", 0) > 0
    assert "MISC" in md and "dropped" in md
    # bench merged by path: latencies in the table, speed-ups against the first model, int8 row scored
    assert by_name["student"]["bench"]["latency_ms_p50"] == 10.0
    assert by_name["student"]["compression"]["speedup_latency"] == pytest.approx(2.0)
    assert md_row(section(md, "Size and speed"), "student")[7:12] == ["10.0", "9.0–11.0", "15.0", "200", "180–220"]
    assert "medians over 3 blocks" in section(md, "Size and speed") and not rep.warnings
    int8 = by_name["pruned (int8)"]   # an int8 bench entry adds the model's int8 row, as --int8 does
    assert int8["runtime"]["label"] == "int8" and int8["disk_bytes"] == 1234 and int8["reference"] == "pruned"
    assert 0.0 <= int8["scores"]["f1"] <= 1.0
    assert any("stranger" in n for n in data["notes"])
    assert "bench figures missing" not in md
    # parameters counted from the loaded models
    from nerkd.models.ner import NerModel

    assert by_name["pruned"]["parameters"] == NerModel.load(tiny_pruned).num_parameters()
    assert by_name["pruned"]["parameters"] < by_name["student"]["parameters"]
    assert "| pruned | 43.2 | 2 | 3 | no |" in md  # train_summary.json of the run folder
    assert "| pruned | 3 2 | 3 |" in md            # pruning table: heads per layer, pruned heads

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert 'src="file' not in page and "<link" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 2
    assert all(f'src="{p}' not in page for p in ("pareto.png", "heads_"))
    assert files["html"] == out / "report.html"


def test_report_without_bench_says_missing(tiny_bio, tiny_pruned, tmp_path):
    rep, _ = run({"student": tiny_bio, "pruned": tiny_pruned}, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "Bench figures missing" in md and "nerkd bench" in md
    assert "latency p50" not in md
    row = md_row(section(md, "Size and speed"), "pruned")
    assert row[1] == f"{rep.rows[0].score.parameters / rep.rows[1].score.parameters:.2f}x"
    disk = sum(p.stat().st_size for p in Path(tiny_pruned).glob("*.safetensors"))
    assert orjson.loads((tmp_path / "r" / "report.json").read_bytes())["models"][1]["disk_bytes"] == disk
    assert (tmp_path / "r" / "pareto.png").is_file()  # F1 vs parameters instead


def test_report_without_matplotlib(tiny_bio, tiny_pruned, tmp_path, monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "pareto.png").write_bytes(b"stale plot of an earlier run")
    rep, files = run({"student": tiny_bio, "pruned": tiny_pruned}, tmp_path / "r")
    assert not list((tmp_path / "r").glob("*.png"))
    assert rep.plots == {} and rep.plots_skipped
    for key in ("md", "html"):
        assert "plots skipped" in files[key].read_text(encoding="utf-8").lower()
    assert orjson.loads(files["json"].read_bytes())["plots_skipped"]


# -- CLI --------------------------------------------------------------------------------------

def test_cli_defaults_on_project(in_tmp, runner, tiny_io_teacher, tiny_bio, tiny_pruned):
    from nerkd.cli.app import app
    from nerkd.project import Project

    config = f"data:\n  test: {TEST}\n  limit: {LIMIT}\nteacher:\n  model: artifacts/teacher\n"
    (in_tmp / "nerkd.yaml").write_text(config, encoding="utf-8")
    shutil.copytree(tiny_io_teacher, in_tmp / "artifacts" / "teacher")
    shutil.copytree(tiny_bio, in_tmp / "artifacts" / "student")
    shutil.copytree(tiny_pruned, in_tmp / "elsewhere" / "p")  # remembered prune output, not the default folder
    Project.discover(in_tmp).remember_output("prune", in_tmp / "elsewhere" / "p")
    bench_file(in_tmp / "artifacts" / "bench.json", {"teacher": Path("artifacts/teacher"),
                                                       "student": Path("artifacts/student")},
               warnings=["machine under load while timing [test]"])

    result = runner.invoke(app, ["report"])
    assert result.exit_code == 0, result.output
    report_html = in_tmp / "artifacts" / "report" / "report.html"
    assert result.stdout.strip().splitlines()[-1] == str(report_html)
    assert "entity scores" in result.stdout and "LOC P/R/F1" in result.stdout
    md = (in_tmp / "artifacts" / "report" / "report.md").read_text(encoding="utf-8")
    names = [line.split("|")[1].strip() for line in md.split("## Size and speed")[0].splitlines()
             if line.startswith("| ") and not line.startswith("| model")]
    assert names == ["teacher", "student", "pruned"]
    assert md_row(section(md, "Size and speed"), "student")[7] == "10.0"  # default bench.json merged
    assert "no bench entry for pruned" in md
    assert "warning:" in result.stderr and "machine under load while timing [test]" in result.stderr


def test_bench_warnings_reach_the_report(tiny_bio, tmp_path):
    loaded = bench_file(tmp_path / "bench.json", {"student": tiny_bio},
                        warnings=["machine under load while timing: load average up to 7.5 (...) on 2 cores"])
    old = bench_file(tmp_path / "old.json", {"student": tiny_bio}, blocks=None)
    rep, files = run({"student": tiny_bio}, tmp_path / "r", [loaded, old])
    assert rep.warnings == [f"{loaded}: machine under load while timing: load average up to 7.5 (...) on 2 cores"]
    md = files["md"].read_text(encoding="utf-8")
    assert f"**Warning: {loaded}: machine under load" in section(md, "Size and speed")
    assert "under load" in files["html"].read_text(encoding="utf-8")
    data = orjson.loads(files["json"].read_bytes())
    assert data["warnings"] == rep.warnings and data["benches"][0]["blocks"] == 3
    assert data["benches"][1]["blocks"] is None
    assert any("no spread over timing blocks" in n and str(old) in n for n in rep.notes)
    assert md_row(section(md, "Size and speed"), "student")[8] == "18.0–22.0"
    from nerkd.infer.benchfile import read_bench

    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"models": [], "warnings": "loaded"}))
    with pytest.raises(Exception, match="warnings: expected a list"):
        read_bench(bad)


def test_cli_errors_are_one_line(in_tmp, runner, tiny_bio):
    from nerkd.cli.app import app

    result = runner.invoke(app, ["report", "--data", str(TEST)])
    assert result.exit_code == 1 and "no model to evaluate" in result.stderr
    assert "Traceback" not in result.output
    bad = in_tmp / "bench.json"
    bad.write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["report", "--data", str(TEST), "-m", str(tiny_bio), "--bench", str(bad)])
    assert result.exit_code == 1 and "bench.json" in result.stderr and "invalid JSON" in result.stderr


def test_model_sharing_no_type_with_the_data_is_an_error(in_tmp, runner, tiny_bio):
    """Before: exit 0 and an all-zero table. Now one line naming the model and both type sets."""
    from nerkd.cli.app import app

    data = in_tmp / "med.jsonl"
    data.write_text('{"tokens": ["aspirine", "500"], "tags": ["B-DRUG", "O"]}\n'
                    '{"tokens": ["diabète"], "tags": ["B-DISEASE"]}\n', encoding="utf-8")
    result = runner.invoke(app, ["report", "--data", str(data), "-m", str(tiny_bio), "--output", str(in_tmp / "r")])
    assert result.exit_code == 1, result.output
    last = [x for x in result.stderr.splitlines() if x.strip()][-1]
    assert last.startswith("error: report: ") and "Traceback" not in result.output
    assert f"model {tiny_bio.name} ({tiny_bio}) shares no entity type with {data}" in last
    assert "model types LOC, ORG, PER, data types DISEASE, DRUG" in last


def test_gold_applies_labels_drop_and_map(tmp_path):
    from nerkd.report.evaluate import load_gold
    from nerkd.settings import Settings

    data = tmp_path / "g.conll"
    data.write_text("Jean B-PERSON\nà O\nParis B-LOC\nmardi B-DATE\n", encoding="utf-8")
    s = Settings(labels={"drop": ["DATE"], "map": {"PERSON": "PER"}})
    gold = load_gold(data, s.data, s.labels)
    assert gold.types == ["LOC", "PER"] and gold.gold_tags == [["B-PER", "O", "B-LOC", "O"]]


def test_cli_notes_keep_brackets(in_tmp, runner, tiny_bio):
    """A note naming a bench row like ``bio_onnx [onnx]`` keeps its brackets (they are not rich markup)."""
    from nerkd.cli.app import app

    bench = bench_file(in_tmp / "bench.json", {"tiny_bio": tiny_bio})
    doc = orjson.loads(bench.read_bytes())
    doc["models"][-1]["name"] = "bio_onnx [onnx]"  # the stranger: matches no evaluated model
    bench.write_bytes(orjson.dumps(doc))
    result = runner.invoke(app, ["report", "--data", str(TEST), "-m", str(tiny_bio), "--bench", str(bench),
                                 "--set", "data.limit=5", "--output", str(in_tmp / "r")])
    assert result.exit_code == 0, result.output
    assert "match no evaluated model: bio_onnx [onnx]" in result.stderr
