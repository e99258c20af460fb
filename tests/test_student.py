"""Student construction: copied layers, label-space changes, pruned layouts, save/reload."""

from __future__ import annotations

import copy

import pytest
import torch

from nerkd.data.labels import LabelSpace
from nerkd.errors import SettingsError
from nerkd.models.heads import encoder_layers, keep_heads
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.models.student import (
    check_layers,
    default_layers,
    hidden_projections,
    resolve_layers,
    student_from_config,
    student_from_teacher,
)
from nerkd.settings import StudentSettings
from tests.helpers import DATA

BIO = LabelSpace.from_file(DATA / "label2id.json")


def layer_state(model: NerModel, i: int) -> dict[str, torch.Tensor]:
    return encoder_layers(model)[i].layer.state_dict()


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_default_layers_spread_and_keep_last():
    assert default_layers(12, 10) == [1, 2, 4, 5, 6, 7, 8, 10, 11, 12]
    assert default_layers(12, 6) == [2, 4, 6, 8, 10, 12]
    assert default_layers(4, 4) == [1, 2, 3, 4]
    assert default_layers(12, 1) == [12]
    with pytest.raises(SettingsError, match="student.num_layers"):
        default_layers(4, 5)


@pytest.mark.parametrize("layers,match", [([0, 2], "out of range"), ([2, 5], "out of range"),
                                          ([3, 2], "increasing"), ([2, 2], "increasing"), ([], "empty")])
def test_bad_layer_lists_name_the_setting(layers, match):
    with pytest.raises(SettingsError, match=f"student.layers.*{match}"):
        check_layers(layers, 4)


def test_layers_and_num_layers_must_agree():
    assert resolve_layers(StudentSettings(num_layers=2), 4) == [2, 4]
    assert resolve_layers(StudentSettings(num_layers=2, layers=[1, 3]), 4) == [1, 3]
    with pytest.raises(SettingsError, match="student.num_layers is 10"):
        resolve_layers(StudentSettings(layers=[1, 3]), 4)


def test_student_copies_embeddings_and_kept_layers(tiny_io_teacher):
    teacher = NerModel.load(tiny_io_teacher)
    student = student_from_teacher(teacher, [2, 4], BIO, crf=False)
    assert student.num_layers == 2 and student.config.num_hidden_layers == 2
    assert student.labels == BIO and student.config.label2id == BIO.label2id
    assert_same_state(student.encoder_model.roberta.embeddings.state_dict(),
                      teacher.encoder_model.roberta.embeddings.state_dict())
    assert_same_state(layer_state(student, 0), layer_state(teacher, 1))
    assert_same_state(layer_state(student, 1), layer_state(teacher, 3))
    assert all(p.requires_grad for p in student.parameters())
    # independent copies: training the student does not touch the teacher
    with torch.no_grad():
        student.encoder_model.roberta.embeddings.word_embeddings.weight.add_(1.0)
    assert not torch.equal(student.encoder_model.roberta.embeddings.word_embeddings.weight,
                           teacher.encoder_model.roberta.embeddings.word_embeddings.weight)


def test_io_teacher_rows_initialise_bio_classifier(tiny_io_teacher):
    teacher = NerModel.load(tiny_io_teacher)
    space = LabelSpace(("O", "B-DATE", "I-DATE", "B-PER", "I-PER"))   # DATE: a type only the data has
    student = student_from_teacher(teacher, [4], space, crf=True)
    t_w, t_b = teacher.encoder_model.classifier.weight, teacher.encoder_model.classifier.bias
    s_w, s_b = student.encoder_model.classifier.weight, student.encoder_model.classifier.bias
    t_ids = teacher.labels.label2id
    for s_lab, t_lab in (("O", "O"), ("B-PER", "I-PER"), ("I-PER", "I-PER")):
        i = space.label2id[s_lab]
        assert torch.equal(s_w[i], t_w[t_ids[t_lab]]) and torch.equal(s_b[i], t_b[t_ids[t_lab]]), s_lab
    for s_lab in ("B-DATE", "I-DATE"):
        assert not any(torch.equal(s_w[space.label2id[s_lab]], row) for row in t_w)
    assert student.crf is not None and student.crf.num_tags == len(space)


def test_renamed_type_rows(tiny_io_teacher):
    teacher = NerModel.load(tiny_io_teacher)
    space = LabelSpace(("O", "B-PERSON", "I-PERSON"))
    student = student_from_teacher(teacher, [1], space, crf=False, rename={"PER": "PERSON"})
    t_row = teacher.encoder_model.classifier.weight[teacher.labels.label2id["I-PER"]]
    assert torch.equal(student.encoder_model.classifier.weight[1], t_row)


def test_same_labels_copy_classifier_and_crf(tiny_crf):
    teacher = NerModel.load(tiny_crf)
    student = student_from_teacher(teacher, [2], teacher.labels, crf=True)
    assert_same_state(student.encoder_model.classifier.state_dict(), teacher.encoder_model.classifier.state_dict())
    assert_same_state(student.crf.state_dict(), teacher.crf.state_dict())


def test_pruned_teacher_layout_is_kept(tiny_io_teacher):
    teacher = copy.deepcopy(NerModel.load(tiny_io_teacher))
    keep_heads(encoder_layers(teacher)[2], [0, 3])
    assert teacher.heads == [4, 4, 2, 4]
    student = student_from_teacher(teacher, [1, 3], BIO, crf=False)
    assert student.heads == [4, 2] and student.is_pruned
    assert_same_state(layer_state(student, 1), layer_state(teacher, 2))


def test_student_save_and_reload_gives_same_logits(tiny_io_teacher, tmp_path):
    teacher = NerModel.load(tiny_io_teacher)
    student = student_from_teacher(teacher, [1, 4], BIO, crf=True)
    with torch.no_grad():
        student.crf.transitions.normal_()
    student.eval()
    tok = load_tokenizer(tiny_io_teacher)
    student.save(tmp_path / "s", tokenizer=tok)
    again = NerModel.load(tmp_path / "s")
    assert again.labels == BIO and again.num_layers == 2
    batch = tok(["Jean Dupont habite à Lyon .", "Bonjour"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = student(batch["input_ids"], batch["attention_mask"]).logits
        b = again(batch["input_ids"], batch["attention_mask"]).logits
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(again.crf.transitions, student.crf.transitions)


def _config_folder(tmp_path, tokenizer_source, hidden=32, vocab=None):
    from nerkd.models.scratch import tiny_config

    tok = load_tokenizer(tokenizer_source)
    cfg = tiny_config(vocab or len(tok), ["O", "I-X"], layers=1, hidden=hidden, heads=2,
                      pad_token_id=tok.pad_token_id)
    folder = tmp_path / "cfg"
    folder.mkdir()
    cfg.save_pretrained(folder)
    return folder, tok


def test_student_from_config_with_teacher_tokenizer(tiny_io_teacher, tmp_path):
    folder, tok = _config_folder(tmp_path, tiny_io_teacher)
    tok.save_pretrained(folder)
    student = student_from_config(folder, BIO, crf=True, teacher_tokenizer=load_tokenizer(tiny_io_teacher))
    assert student.hidden_size == 32 and student.labels == BIO and student.crf is not None
    proj = hidden_projections(student.hidden_size, 64, 3)
    assert len(proj) == 3 and proj[0].in_features == 32 and proj[0].out_features == 64
    assert hidden_projections(64, 64, 3) is None


def test_student_from_config_rejects_another_tokenizer(tiny_io_teacher, tmp_path):
    from nerkd.models.scratch import train_tokenizer

    folder, _ = _config_folder(tmp_path, tiny_io_teacher)
    train_tokenizer(["un petit texte différent", "avec un autre vocabulaire"], vocab_size=60).save_pretrained(folder)
    with pytest.raises(SettingsError, match="student.config.*tokenizer differs"):
        student_from_config(folder, BIO, crf=False, teacher_tokenizer=load_tokenizer(tiny_io_teacher))


def test_student_from_config_without_tokenizer_checks_vocab_size(tiny_io_teacher, tmp_path):
    folder, tok = _config_folder(tmp_path, tiny_io_teacher, vocab=123)
    with pytest.raises(SettingsError, match="vocab_size 123"):
        student_from_config(folder, BIO, crf=False, teacher_tokenizer=tok, teacher_vocab_size=len(tok))


def test_student_layers_and_config_are_exclusive(tiny_io_teacher):
    from nerkd.models.student import build_student
    from nerkd.settings import Settings

    settings = Settings(student={"config": str(tiny_io_teacher), "layers": [1, 2], "num_layers": 2})
    with pytest.raises(SettingsError, match="student.layers.*student.config"):
        build_student(settings, NerModel.load(tiny_io_teacher), BIO, load_tokenizer(tiny_io_teacher))
