"""Build the student: a shallower copy of the teacher, or a given smaller model.

:func:`student_from_teacher` keeps some of the teacher's layers (1-based indices), copying the
embeddings, those layers (pruned head layouts included) and, when the data's label space equals
the teacher's, the classifier and CRF. When the label spaces differ (camembert-ner's IO labels
vs BIO data), each classifier row starts from the teacher's row of the same entity type
(``B-PER`` and ``I-PER`` from ``I-PER``, ``O`` from ``O``); types the teacher lacks keep a fresh
initialisation, and the CRF starts fresh.

:func:`student_from_config` starts from another (smaller) config or checkpoint that shares the
teacher's tokenizer; hidden states of another width are compared through learned projections
(:func:`hidden_projections`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from nerkd.data.labels import LabelSpace
from nerkd.data.schemes import split_tag
from nerkd.errors import ModelLoadError, SettingsError
from nerkd.models.heads import apply_head_layout
from nerkd.models.hub import is_local
from nerkd.models.ner import NerModel, load_config, load_tokenizer

_LAYER_KEY = re.compile(r"(^|\.)encoder\.layer\.(\d+)\.")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model", "vocab.txt", "vocab.json")


def default_layers(n_teacher: int, n_student: int) -> list[int]:
    """``n_student`` 1-based teacher layers spread evenly, always ending with the last one.

    12 -> 10 gives ``[1, 2, 4, 5, 6, 7, 8, 10, 11, 12]``; 12 -> 6 gives ``[2, 4, 6, 8, 10, 12]``.
    """
    if not 1 <= n_student <= n_teacher:
        raise SettingsError(f"student.num_layers: {n_student} is not in 1..{n_teacher} (the teacher's layers)")
    return [int(math.floor((i + 1) * n_teacher / n_student + 0.5)) for i in range(n_student)]


def check_layers(layers: Sequence[int], n_teacher: int) -> list[int]:
    """Validate 1-based teacher layer indices (strictly increasing, in range)."""
    layers = list(layers)
    if not layers:
        raise SettingsError("student.layers: empty list (keep at least one teacher layer)")
    bad = [i for i in layers if not 1 <= i <= n_teacher]
    if bad:
        raise SettingsError(f"student.layers: {bad} out of range 1..{n_teacher} (1-based teacher layers)")
    if any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
        raise SettingsError(f"student.layers: {layers} must be strictly increasing (no repeats)")
    return layers


def resolve_layers(student_settings, n_teacher: int) -> list[int]:
    """Teacher layers to keep from ``settings.student`` (``layers``, else spread ``num_layers``)."""
    if student_settings.layers is None:
        return default_layers(n_teacher, student_settings.num_layers)
    layers = check_layers(student_settings.layers, n_teacher)
    if len(layers) != student_settings.num_layers:
        raise SettingsError(f"student.layers keeps {len(layers)} layers but student.num_layers is "
                            f"{student_settings.num_layers}: make them agree")
    return layers


def set_label_space(config, space: LabelSpace) -> None:
    config.id2label = dict(space.id2label)
    config.label2id = dict(space.label2id)


def _teacher_row(label: str, teacher: LabelSpace, to_teacher_type: Mapping[str, str]) -> int | None:
    """The teacher label whose classifier row initialises the student's ``label`` (or None)."""
    prefix, etype = split_tag(label)
    ids = teacher.label2id
    if etype is None:
        return ids.get("O")
    ttype = to_teacher_type.get(etype, etype)
    for cand in (f"{prefix}-{ttype}", f"I-{ttype}", f"B-{ttype}", f"S-{ttype}", f"E-{ttype}"):
        if cand in ids:
            return ids[cand]
    return None


def classifier_row_map(teacher: LabelSpace, student: LabelSpace,
                       rename: Mapping[str, str] | None = None) -> list[int | None]:
    """Per student label: the teacher row it copies, or None (fresh init, e.g. a data-only type)."""
    to_teacher_type = {v: k for k, v in (rename or {}).items()}
    return [_teacher_row(lab, teacher, to_teacher_type) for lab in student.labels]


def _fresh_crf(n: int):
    from torchcrf import CRF

    return CRF(n, batch_first=True)


def set_crf(model: NerModel, crf: bool | None) -> str | None:
    """Add (``crf`` True) or drop (False) the model's CRF in place; None keeps it as it is.
    Returns what changed, as a log line, or None when nothing did."""
    if crf is None or crf == (model.crf is not None):
        return None
    if crf:
        model.crf = _fresh_crf(model.num_labels)
        return "--crf: the model had no CRF; a new one is trained with it"
    model.crf = None
    return "--no-crf: the model's CRF is dropped"


def student_from_teacher(teacher: NerModel, layers: Sequence[int], space: LabelSpace, crf: bool,
                         rename: Mapping[str, str] | None = None) -> NerModel:
    """A student with the teacher's embeddings and ``layers`` (1-based) and the data's labels."""
    layers = check_layers(layers, teacher.num_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    set_label_space(config, space)
    if hasattr(config, "nerkd"):
        del config.nerkd
    student = NerModel.from_config(config, crf=crf)
    heads = teacher.heads
    apply_head_layout(student, [heads[i - 1] for i in layers])

    same_labels = tuple(space.labels) == tuple(teacher.labels.labels)
    t_state = teacher.encoder_model.state_dict()
    new_state = {}
    for key, value in student.encoder_model.state_dict().items():
        if key.startswith("classifier.") and not same_labels:
            new_state[key] = value
            continue
        m = _LAYER_KEY.search(key)
        src = key
        if m is not None:
            j = layers[int(m.group(2))] - 1
            src = f"{key[: m.start(2)]}{j}{key[m.end(2):]}"
        if src not in t_state or t_state[src].shape != value.shape:
            raise ModelLoadError(f"student: cannot copy {key} from the teacher's {src} (shapes or names differ)")
        new_state[key] = t_state[src].detach().clone()
    if not same_labels:
        _init_classifier_rows(student, teacher, space, rename)
        new_state.update({k: v for k, v in student.encoder_model.state_dict().items() if k.startswith("classifier.")})
    student.encoder_model.load_state_dict(new_state, strict=True)
    if student.crf is not None and same_labels and teacher.crf is not None:
        student.crf.load_state_dict(teacher.crf.state_dict())
    student.requires_grad_(True)
    student.train()
    return student


def _init_classifier_rows(student: NerModel, teacher: NerModel, space: LabelSpace,
                          rename: Mapping[str, str] | None) -> None:
    s_cls = getattr(student.encoder_model, "classifier", None)
    t_cls = getattr(teacher.encoder_model, "classifier", None)
    if not isinstance(s_cls, nn.Linear) or not isinstance(t_cls, nn.Linear):
        return
    if s_cls.in_features != t_cls.in_features:
        return
    rows = classifier_row_map(teacher.labels, space, rename)
    with torch.no_grad():
        for i, r in enumerate(rows):
            if r is None:
                continue
            s_cls.weight[i].copy_(t_cls.weight[r])
            if s_cls.bias is not None and t_cls.bias is not None:
                s_cls.bias[i].copy_(t_cls.bias[r])


def replace_classifier(model: NerModel, space: LabelSpace, crf: bool) -> NerModel:
    """Give ``model`` the label space ``space`` (fresh classifier and CRF if the labels change)."""
    same = tuple(model.labels.labels) == tuple(space.labels)
    if not same:
        hf = model.encoder_model
        old = getattr(hf, "classifier", None)
        if not isinstance(old, nn.Linear):
            raise ModelLoadError(f"{type(hf).__name__}: no linear classifier to resize")
        new = nn.Linear(old.in_features, len(space), bias=old.bias is not None)
        std = float(getattr(model.config, "initializer_range", 0.02))
        nn.init.normal_(new.weight, std=std)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        hf.classifier = new.to(old.weight.device)
        set_label_space(model.config, space)
    if crf and (model.crf is None or not same):
        model.crf = _fresh_crf(len(space))
    elif not crf:
        model.crf = None
    return model


def check_tokenizer(ref: str, teacher_tokenizer, teacher_vocab_size: int | None, config) -> None:
    """The student must read the teacher's sub-words: same vocabulary (or, with no tokenizer, size)."""
    tok = None
    has_files = not is_local(ref) or any((Path(ref) / name).is_file() for name in _TOKENIZER_FILES)
    if has_files:  # (a folder with only config.json would give an empty tokenizer)
        try:
            tok = load_tokenizer(ref, what="student")
        except ModelLoadError:
            tok = None
    if tok is not None:
        s_vocab, t_vocab = tok.get_vocab(), teacher_tokenizer.get_vocab()
        if s_vocab != t_vocab:
            diff = sorted(set(s_vocab.items()) ^ set(t_vocab.items()))[:3]
            raise SettingsError(f"student.config {ref}: its tokenizer differs from the teacher's ({len(s_vocab)} vs "
                                f"{len(t_vocab)} entries, e.g. {diff}); the student must use the teacher's tokenizer")
        return
    size = getattr(config, "vocab_size", None)
    if teacher_vocab_size is not None and size != teacher_vocab_size:
        raise SettingsError(f"student.config {ref}: vocab_size {size} differs from the teacher's {teacher_vocab_size} "
                            f"and it has no tokenizer to compare; the student must use the teacher's tokenizer")


def student_from_config(ref: str | Path, space: LabelSpace, crf: bool, *, teacher_tokenizer=None,
                        teacher_vocab_size: int | None = None, trust_remote_code: bool = False) -> NerModel:
    """A student from a config or checkpoint folder (or hub id), with the data's labels.

    A folder with safetensors weights (or a hub id) is loaded with its weights; a folder with
    only ``config.json`` gives a randomly initialised model. The classifier (and CRF) are replaced
    when the labels differ from ``space``.
    """
    ref = str(ref)
    config = load_config(ref, trust_remote_code=trust_remote_code, what="student", option="student.config")
    if teacher_tokenizer is not None:
        check_tokenizer(ref, teacher_tokenizer, teacher_vocab_size, config)
    if is_local(ref) and not any(Path(ref).glob("*.safetensors")):
        config = copy.deepcopy(config)
        set_label_space(config, space)
        if hasattr(config, "nerkd"):
            del config.nerkd
        student = NerModel.from_config(config, crf=crf)
    else:
        student = NerModel.load(ref, trust_remote_code=trust_remote_code, what="student", option="student.config")
        replace_classifier(student, space, crf)
    student.requires_grad_(True)
    student.train()
    return student


def hidden_projections(student_hidden: int, teacher_hidden: int, pairs: int) -> nn.ModuleList | None:
    """``pairs`` learned ``nn.Linear(Hs, Ht)`` maps when widths differ; None when they match."""
    if student_hidden == teacher_hidden or pairs == 0:
        return None
    return nn.ModuleList(nn.Linear(student_hidden, teacher_hidden) for _ in range(pairs))


def build_student(settings, teacher: NerModel, space: LabelSpace, tokenizer) -> tuple[NerModel, list[int] | None]:
    """The student ``settings.student`` asks for, and the teacher layers it kept (None: from a config)."""
    st = settings.student
    if st.config and st.layers is not None:
        raise SettingsError("student.layers: set with student.config; keep one (layers copy teacher layers, "
                            "config builds another model)")
    if st.config:
        student = student_from_config(st.config, space, st.crf, teacher_tokenizer=tokenizer,
                                      teacher_vocab_size=getattr(teacher.config, "vocab_size", None),
                                      trust_remote_code=settings.teacher.trust_remote_code)
        return student, None
    layers = resolve_layers(st, teacher.num_layers)
    return student_from_teacher(teacher, layers, space, st.crf, settings.labels.rename), layers
