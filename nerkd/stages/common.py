"""The run set-up that the training stages (teacher, distill, finetune) share, written once:
the position-length check, the teacher/data label mapping and its "no shared type" check, the
teacher load, the data warnings and summaries, and the run files (``settings.yaml`` and
``labels.json``, written once per run, by rank 0)."""

from __future__ import annotations

from pathlib import Path

from nerkd.data.labels import LabelSpace, TypeMapping, type_mapping
from nerkd.errors import SettingsError
from nerkd.io import write_json
from nerkd.log import say, warn
from nerkd.models.ner import NerModel, position_limit
from nerkd.train import ddp
from nerkd.train.kd import freeze


def is_main() -> bool:
    """Rank 0 under torchrun (from the environment: the process group starts later, in the loop)."""
    return ddp.detect().is_main


def check_positions(max_length: int, config, whose: str) -> None:
    """``data.max_length`` must fit the model's position embeddings (:func:`position_limit`)."""
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise SettingsError(f"data.max_length: {max_length} > the {whose}'s {limit} positions")


def shared_mapping(teacher: LabelSpace, data: LabelSpace, labels_settings, *, data_side: str = "data"
                   ) -> TypeMapping:
    """The teacher -> data type mapping (``labels.rename``, ``labels.teacher_only``); an error when
    the two share no entity type."""
    mapping = type_mapping(teacher, data, labels_settings.rename, labels_settings.teacher_only)
    if not shared_types(mapping):
        raise SettingsError(f"labels.rename: teacher types ({', '.join(teacher.types)}) and {data_side} types "
                            f"({', '.join(data.types)}) share none; map them with labels.rename")
    return mapping


def shared_types(mapping: TypeMapping) -> list[str]:
    """The entity types (not O) that the teacher's distributions can teach."""
    return [t for t in mapping.shared if t != "O"]


def log_mapping(mapping: TypeMapping, teacher: LabelSpace, data: LabelSpace, policy: str) -> None:
    """The mapping as log lines (one per teacher label), then the types only one side has."""
    rows = [("teacher labels", "data labels", "shared"), *mapping.describe(teacher, data)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    say(f"label mapping: teacher {teacher.scheme} -> data {data.scheme} (KD over shared types)")
    for row in rows:
        say("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if mapping.teacher_only:
        fate = "folded into O" if policy == "outside" else "dropped from KD (teacher renormalised)"
        say(f"teacher-only types {', '.join(mapping.teacher_only)}: {fate}")
    if mapping.data_only:
        say(f"data-only types {', '.join(mapping.data_only)}: gold supervision only, no KD on their tokens")


def load_teacher(teacher_settings, ref: str | Path, option: str = "teacher.model") -> NerModel:
    """The frozen teacher (eval mode, no gradients)."""
    t = teacher_settings
    return freeze(NerModel.load(ref, revision=t.revision, trust_remote_code=t.trust_remote_code, what="teacher",
                                option=option))


def load_teacher_tokenizer(teacher_settings, ref: str | Path, option: str = "teacher.model"):
    from nerkd.models.ner import load_tokenizer

    t = teacher_settings
    return load_tokenizer(ref, revision=t.revision, trust_remote_code=t.trust_remote_code, what="teacher",
                          option=option)


def model_ref_id(ref: str | Path) -> str:
    """A model reference as recorded in a run's fingerprint: a local folder resolved, a hub id as is."""
    path = Path(ref)
    return str(path.resolve()) if path.exists() else str(ref)


def load_training_splits(settings, stage: str, names: tuple[str, ...] = ("train", "dev", "test")) -> dict:
    """Read the gold splits for a training stage; say what is missing or suspicious."""
    from nerkd.data.dataset import data_warnings, load_splits

    splits = load_splits(settings.data, names, settings.labels)
    if "train" not in splits:
        raise SettingsError(f"data.train: not set; nerkd {stage} needs training data")
    if "dev" not in splits:
        warn("data.dev is not set: no evaluation, no early stopping, the last model is kept")
    for warning in data_warnings(splits):
        warn(warning)
    return splits


def encode_and_log(splits: dict, names, tokenizer, space: LabelSpace, data_settings) -> None:
    """Encode the named splits into windows and log one summary line each."""
    from nerkd.data.dataset import encode_split, read_notes

    for name in names:
        if name in splits:
            sp = encode_split(splits[name], tokenizer, space, data_settings)
            say(f"{name} ({sp.path}): {sp.encoded.summary()}{read_notes(sp)}")


def write_run_files(settings, output: Path, record: dict) -> None:
    """``labels.json`` (what the run's labels are and where they came from), rank 0 only.
    ``settings.yaml`` is written by the training loop, once, when the run starts."""
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        write_json(output / "labels.json", record)
