"""``nerkd validate``: silent data problems become warnings or failures naming file:line (#12 item 9)."""

from __future__ import annotations

from nerkd.settings import load_settings
from nerkd.stages.validate import run_validate
from tests.helpers import DATA

TRAIN_LINES = (DATA / "train.jsonl").read_text(encoding="utf-8").splitlines()


def _settings(tmp_path, teacher, dev: str, test: str, *extra: str):
    (tmp_path / "dev.jsonl").write_text(dev, encoding="utf-8")
    (tmp_path / "test.conll").write_text(test, encoding="utf-8")
    return load_settings(None, [f"data.train={DATA / 'train.jsonl'}", f"data.dev={tmp_path / 'dev.jsonl'}",
                                f"data.test={tmp_path / 'test.conll'}", f"data.label2id={DATA / 'label2id.json'}",
                                f"teacher.model={teacher}", "student.num_layers=2", "distill.layer_map.teacher=[2,4]",
                                "distill.layer_map.student=[1,2]", "train.device=cpu", *extra])


def _checks(report, status):
    return [(c.name, c.detail) for c in report.checks if c.status == status]


def test_overlap_and_invalid_bio_are_warnings(tmp_path, tiny_io_teacher):
    dev = "\n".join(TRAIN_LINES[:3]) + '\n{"tokens": ["vu", "Dupont"], "tags": ["O", "I-PER"]}\n'
    s = _settings(tmp_path, tiny_io_teacher, dev, "Mme O\nDupont B-PER\n")
    report = run_validate(s)
    assert report.ready, report.checks
    warns = _checks(report, "warn")
    assert ("overlap dev", f"3 sentences of {tmp_path / 'dev.jsonl'} also appear in {DATA / 'train.jsonl'} "
                           "(3 of its 4 distinct sentences): its scores will be optimistic") in warns
    assert ("data dev", f"{tmp_path / 'dev.jsonl'}: 1 tag I-X follows O or another type (invalid BIO, read as B-X); "
                        "first at line 4") in warns
    assert not any(name == "overlap test" for name, _ in warns)


def test_unknown_tag_names_file_and_line(tmp_path, tiny_io_teacher):
    test = "-DOCSTART- -X- -X- O\n\nJean NNP B-NP B-PER\nvit VBZ B-VP O\n\nà IN B-PP O\nLyon NNP B-NP B-MISC\n"
    s = _settings(tmp_path, tiny_io_teacher, TRAIN_LINES[-1] + "\n", test)
    report = run_validate(s)
    assert not report.ready
    fails = _checks(report, "fail")
    assert fails == [("labels test", f"{tmp_path / 'test.conll'}:7: unknown tag B-MISC (types not in data.label2id: "
                                     "MISC; 1 tag in this file); drop them with labels.drop: [MISC] or map them with "
                                     "labels.map: {MISC: ...}")]
    assert any("1 -DOCSTART- lines skipped" in d for n, d in _checks(report, "ok") if n == "data test")
    fixed = run_validate(_settings(tmp_path, tiny_io_teacher, TRAIN_LINES[-1] + "\n", test, "labels.drop=[MISC]"))
    assert fixed.ready, _checks(fixed, "fail")
    assert any("1 MISC -> O" in d for n, d in _checks(fixed, "ok") if n == "data test")
