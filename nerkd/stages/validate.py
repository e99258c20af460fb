"""``nerkd validate``: the pre-flight check before renting a GPU.

Collects every problem instead of stopping at the first; ``ready`` is False when any check
failed. Each check is its own function adding rows to the :class:`ValidateReport` (settings, data,
labels, unlabelled transfer set, teacher, student and layer map, label mapping, device), in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nerkd.data.dataset import Split, label_space_for, overlaps, read_notes, read_split, split_paths, unknown_tags
from nerkd.data.labels import LabelSpace, TypeMapping, type_mapping
from nerkd.data.schemes import detect_scheme
from nerkd.device import describe, resolve_precision, work_device
from nerkd.errors import NerkdError
from nerkd.settings import DataSettings, LabelSettings, Settings, TeacherSettings, check_data_files
from nerkd.stages.common import check_positions, leak_splits, shared_types


@dataclass
class Check:
    name: str
    status: str      # ok | warn | fail
    detail: str


@dataclass
class ValidateReport:
    checks: list[Check] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    data_space: LabelSpace | None = None
    teacher_space: LabelSpace | None = None
    mapping: TypeMapping | None = None

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    @property
    def ready(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


def _memory_estimate(settings: Settings, teacher_cfg, precision: str) -> str:
    """Rough GPU memory for one training step (weights, AdamW state, activations): needs the
    student, train and data sections, so it takes the settings."""
    h, layers = teacher_cfg.hidden_size, teacher_cfg.num_hidden_layers
    inter = getattr(teacher_cfg, "intermediate_size", 4 * h)
    vocab = getattr(teacher_cfg, "vocab_size", 32000)
    per_layer = 4 * h * h + 2 * h * inter
    t_params = layers * per_layer + vocab * h
    s_params = settings.student.num_layers * per_layer + vocab * h
    act_bytes = 2 if precision in ("bf16", "fp16") else 4
    tokens = settings.train.batch_size * settings.data.max_length
    heads = teacher_cfg.num_attention_heads
    acts = tokens * settings.student.num_layers * (16 * h + 2 * inter + 2 * heads * settings.data.max_length)
    total = t_params * 4 + s_params * 16 + acts * act_bytes + tokens * (layers + 1) * h * act_bytes
    return f"~{total / 2**30:.1f} GiB for batch {settings.train.batch_size} x {settings.data.max_length} tokens"


def run_validate(settings: Settings, config_name: str | None = None) -> ValidateReport:
    """Every check, in order; the report says which failed (nothing is printed here)."""
    report = ValidateReport()
    report.add("settings", "ok", f"{config_name or 'defaults only'} parsed and checked")
    check_data(report, settings.data, settings.labels)
    check_labels(report, settings.data)
    check_unlabeled(report, settings)
    teacher_cfg = check_teacher(report, settings.teacher)
    if teacher_cfg is not None:
        check_student(report, settings, teacher_cfg)
    check_mapping(report, settings.labels)
    check_device(report, settings, teacher_cfg)
    return report


def check_data(report: ValidateReport, data: DataSettings, labels: LabelSettings) -> None:
    """Each data split read (its counts and warnings), then the overlaps between splits."""
    paths = split_paths(data)
    if "train" not in paths:
        report.add("data", "fail", "data.train is not set")
    if "dev" not in paths:
        report.add("data", "warn", "data.dev is not set: no evaluation, no early stopping, no best checkpoint")
    for name, path in paths.items():
        try:
            split = read_split(name, path, data, labels)
        except NerkdError as e:
            report.add(f"data {name}", "fail", str(e))
            continue
        report.splits.append(split)
        st = split.read
        report.add(f"data {name}", "ok",
                   f"{st.path}: {st.sentences} sentences, {st.tokens} tokens, {st.format}, "
                   f"scheme {detect_scheme(st.tags)}{read_notes(split)}")
        for warning in st.warnings():
            report.add(f"data {name}", "warn", warning)
    for o in overlaps({sp.name: sp for sp in report.splits}):
        report.add(f"overlap {o.name}", "warn", o.message())


def check_labels(report: ValidateReport, data: DataSettings) -> None:
    """The data's label space (``report.data_space``) and the tags outside it, per split."""
    if not report.splits:
        return
    try:
        space = label_space_for(report.splits, data)
        report.data_space = space
        report.add("labels", "ok", f"{len(space)} labels, scheme {space.scheme}, types {', '.join(space.types)}")
        for sp in report.splits:
            bad = unknown_tags(sp, space)
            if bad is not None:
                report.add(f"labels {sp.name}", "fail", str(bad.error()))
    except NerkdError as e:
        report.add("labels", "fail", str(e))


def check_unlabeled(report: ValidateReport, settings: Settings) -> None:
    """The transfer set (``data.unlabeled``) as distillation will read it: texts, words, empty lines,
    duplicates, texts dropped as dev/test sentences and, with the teacher's tokenizer, windows. A bad
    line (invalid UTF-8, bad JSON) fails, naming ``file:line``. Needs the data, distill, teacher and
    labels sections: it takes the settings."""
    from nerkd.data.unlabeled import summarize_unlabeled

    data = settings.data
    if not data.unlabeled:
        return
    check_data_files(data, ("unlabeled",))
    read = {sp.name: sp for sp in report.splits}
    try:
        gold = leak_splits(settings, read)
    except NerkdError:   # a dev/test file that does not read is already a fail row: filter with what was read
        gold = {n: sp for n, sp in read.items() if n in ("dev", "test")}
    tokenizer, note = None, ""
    try:
        from nerkd.models.ner import load_tokenizer

        t = settings.teacher
        tokenizer = load_tokenizer(t.model, revision=t.revision, trust_remote_code=t.trust_remote_code,
                                   what="teacher", option="teacher.model")
    except NerkdError:
        note = "; windows not counted (the teacher's tokenizer does not load)"
    try:
        summary = summarize_unlabeled(data.unlabeled, {n: [s.tokens for s in sp.sentences] for n, sp in gold.items()},
                                      settings.distill.unlabeled_max, tokenizer, data.max_length, data.stride)
    except NerkdError as e:
        report.add("data unlabeled", "fail", str(e))
        return
    if summary.texts == 0:
        report.add("data unlabeled", "fail", f"{summary.describe()}: no usable text")
        return
    checked = f"; leak filter: {', '.join(gold)}" if gold else "; no dev or test set to filter leaks against"
    report.add("data unlabeled", "ok", f"{summary.describe()}{checked}{note}")
    if settings.distill.unlabeled_ratio == 0 or settings.distill.unlabeled_weight == 0:
        which = "unlabeled_ratio" if settings.distill.unlabeled_ratio == 0 else "unlabeled_weight"
        report.add("data unlabeled", "warn", f"distill.{which} is 0: distill will not use the set")


def check_teacher(report: ValidateReport, teacher: TeacherSettings):
    """The teacher's config and labels (``report.teacher_space``); returns the config (even when
    its labels are unreadable: the depth checks still apply), or None when it cannot be read."""
    from nerkd.models.ner import load_config

    cfg = None
    try:
        cfg = load_config(teacher.model, revision=teacher.revision, trust_remote_code=teacher.trust_remote_code,
                          what="teacher", option="teacher.model")
        report.teacher_space = LabelSpace.from_config(cfg)
    except NerkdError as e:
        report.add("teacher", "fail", str(e))
        return cfg
    except ValueError as e:
        report.add("teacher", "fail", f"teacher labels: {e}")
        return cfg
    report.add("teacher", "ok",
               f"{teacher.model}: {cfg.model_type}, {cfg.num_hidden_layers} layers, "
               f"hidden {cfg.hidden_size}, labels {' '.join(report.teacher_space.labels)}")
    return cfg


def check_student(report: ValidateReport, settings: Settings, teacher_cfg) -> None:
    """Against the teacher's depth and positions: the student's depth, ``distill.layer_map`` and
    ``data.max_length`` (three sections: it takes the settings)."""
    n_t, n_s = teacher_cfg.num_hidden_layers, settings.student.num_layers
    if n_s > n_t and settings.student.config is None:
        report.add("student", "fail", f"student.num_layers {n_s} > teacher's {n_t}")
    lm = settings.distill.layer_map
    bad_t = [i for i in lm.teacher if i > n_t]
    bad_s = [i for i in lm.student if i > n_s]
    if bad_t or bad_s:
        report.add("layer map", "fail", f"layers out of range: teacher {bad_t} (max {n_t}), "
                                       f"student {bad_s} (max {n_s})")
    else:
        report.add("layer map", "ok", f"teacher {lm.teacher} -> student {lm.student}")
    try:
        check_positions(settings.data.max_length, teacher_cfg, "teacher")
    except NerkdError as e:
        report.add("max length", "fail", str(e))


def check_mapping(report: ValidateReport, labels: LabelSettings) -> None:
    """The teacher -> data type mapping (``report.mapping``), when both label spaces are known."""
    if report.teacher_space is None or report.data_space is None:
        return
    m = type_mapping(report.teacher_space, report.data_space, labels.rename, labels.teacher_only)
    report.mapping = m
    shared = shared_types(m)
    if not shared:
        report.add("label mapping", "fail", "teacher and data share no entity type (see labels.rename)")
    else:
        report.add("label mapping", "ok",
                   f"{report.teacher_space.scheme} -> {report.data_space.scheme} over {', '.join(shared)}")
    if m.teacher_only:
        fate = "folded into O" if labels.teacher_only == "outside" else "dropped from KD"
        report.add("teacher-only types", "warn", f"{', '.join(m.teacher_only)}: {fate}")
    if m.data_only:
        report.add("data-only types", "warn", f"{', '.join(m.data_only)}: gold supervision only, no KD signal")


def check_device(report: ValidateReport, settings: Settings, teacher_cfg) -> None:
    """The training device and precision, the memory estimate (:func:`_memory_estimate`: the whole
    settings) and, on a GPU, its free memory."""
    try:
        device = work_device(settings.train.device)   # on the CPU: the threads training would take
        precision = resolve_precision(settings.train.precision, device)
        estimate = _memory_estimate(settings, teacher_cfg, precision) if teacher_cfg is not None else "n/a"
        status = "ok" if device.type == "cuda" else "warn"
        note = "" if device.type == "cuda" else "; no GPU here: training would run on CPU"
        report.add("device", status, f"{describe(device)}, precision {precision}, GPU memory {estimate}{note}")
        if device.type == "cuda" and teacher_cfg is not None:
            free, total = torch.cuda.mem_get_info(device)
            report.add("gpu memory", "ok", f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    except NerkdError as e:
        report.add("device", "fail", str(e))
