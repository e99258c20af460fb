"""The run set-up that the training stages (teacher, distill, finetune) share, written once:
the position-length check, the teacher/data label mapping and its "no shared type" check, the
teacher load, the data warnings and summaries, the run folder (guarded, then remembered), the
run files (``labels.json``; ``settings.yaml`` is written once by the training loop), the unlabelled
transfer set of a run with a teacher (:func:`transfer_for`) and, for the two stages that train on
gold data (teacher, finetune), the run itself (:func:`train_on_gold`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from nerkd.data.labels import LabelSpace, TypeMapping, type_mapping
from nerkd.errors import SettingsError
from nerkd.io import write_json
from nerkd.log import say, warn
from nerkd.models.ner import NerModel, position_limit
from nerkd.settings import DataSettings, LabelSettings, Settings, TeacherSettings
from nerkd.train import ddp
from nerkd.train.kd import freeze

if TYPE_CHECKING:
    from nerkd.project import Project
    from nerkd.rundir import RunFolder
    from nerkd.train.kd import DistillObjective
    from nerkd.train.loop import TrainResult
    from nerkd.train.transfer import TransferSet

T = TypeVar("T")


def is_main() -> bool:
    """Rank 0 under torchrun (from the environment: the process group starts later, in the loop)."""
    return ddp.detect().is_main


def check_positions(max_length: int, config, whose: str) -> None:
    """``data.max_length`` must fit the model's position embeddings (:func:`position_limit`)."""
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise SettingsError(f"data.max_length: {max_length} > the {whose}'s {limit} positions")


def shared_mapping(teacher: LabelSpace, data: LabelSpace, labels_settings: LabelSettings, *,
                   data_side: str = "data") -> TypeMapping:
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


def load_teacher(teacher_settings: TeacherSettings, ref: str | Path, option: str = "teacher.model") -> NerModel:
    """The frozen teacher (eval mode, no gradients)."""
    t = teacher_settings
    return freeze(NerModel.load(ref, revision=t.revision, trust_remote_code=t.trust_remote_code, what="teacher",
                                option=option))


def load_teacher_tokenizer(teacher_settings: TeacherSettings, ref: str | Path, option: str = "teacher.model"):
    from nerkd.models.ner import load_tokenizer

    t = teacher_settings
    return load_tokenizer(ref, revision=t.revision, trust_remote_code=t.trust_remote_code, what="teacher",
                          option=option)


def model_ref_id(ref: str | Path) -> str:
    """A model reference as recorded in a run's fingerprint: a local folder resolved, a hub id as is."""
    path = Path(ref)
    return str(path.resolve()) if path.exists() else str(ref)


def load_training_splits(data: DataSettings, labels: LabelSettings, stage: str,
                         names: tuple[str, ...] = ("train", "dev", "test")) -> dict:
    """Read the gold splits for a training stage (``nerkd <stage>`` in the error when data.train is
    not set); say what is missing or suspicious."""
    from nerkd.data.dataset import data_warnings, load_splits

    splits = load_splits(data, names, labels)
    if "train" not in splits:
        raise SettingsError(f"data.train: not set; nerkd {stage} needs training data")
    if "dev" not in splits:
        warn("data.dev is not set: no evaluation, no early stopping, the last model is kept")
    for warning in data_warnings(splits):
        warn(warning)
    return splits


def encode_and_log(splits: dict, names, tokenizer, space: LabelSpace, data_settings: DataSettings) -> None:
    """Encode the named splits into windows and log one summary line each."""
    from nerkd.data.dataset import encode_split, read_notes

    for name in names:
        if name in splits:
            sp = encode_split(splits[name], tokenizer, space, data_settings)
            say(f"{name} ({sp.path}): {sp.encoded.summary()}{read_notes(sp)}")


def leak_splits(settings: Settings, splits: dict) -> dict:
    """dev and test, whole (``data.limit`` does not apply), for the transfer set's leak filter: the
    ``splits`` already read when they are whole, else read here."""
    from nerkd.data.dataset import read_split

    data, out = settings.data, {}
    for name in ("dev", "test"):
        path = getattr(data, name)
        if not path:
            continue
        if name in splits and data.limit is None:
            out[name] = splits[name]
        else:
            out[name] = read_split(name, path, data.model_copy(update={"limit": None}), settings.labels)
    return out


def transfer_for(settings: Settings, splits: dict, *, teacher: bool, stage: str) -> TransferSet | None:
    """The unlabelled transfer set of a run (``data.unlabeled``, after the gold train split is
    encoded), or None: unset, not used (``distill.unlabeled_ratio`` or ``unlabeled_weight`` 0) or,
    without a teacher, not usable (one info line, not a warning: a config shared by every command sets
    ``data.unlabeled`` for distill, and ``finetune`` is expected to pass it by). Says what the set holds
    and what was dropped."""
    from nerkd.data.unlabeled import EpochSampler, texts_per_epoch, transfer_set
    from nerkd.train.transfer import TransferSet

    if not settings.data.unlabeled:
        return None
    d = settings.distill
    if not teacher:
        command = {"teacher": "finetune --base"}.get(stage, stage)
        say(f"data.unlabeled: not used by nerkd {command} without --teacher (gold CE only; unlabelled texts need "
            "a teacher: nerkd distill or finetune --teacher use them)")
        return None
    if d.unlabeled_ratio == 0 or d.unlabeled_weight == 0:
        which = "unlabeled_ratio" if d.unlabeled_ratio == 0 else "unlabeled_weight"
        say(f"data.unlabeled: not used (distill.{which} is 0)")
        return None
    index = transfer_set(settings, leak_splits(settings, splits))
    say(f"unlabelled: {index.summary.describe()}")
    sampler = EpochSampler(index, seed=settings.train.seed)
    return TransferSet(sampler, texts_per_epoch(d.unlabeled_ratio, len(splits["train"].windows)),
                       settings.data.max_length, settings.data.stride, d.cache_teacher)


def write_run_files(output: Path, record: dict) -> None:
    """``labels.json`` (what the run's labels are and where they came from), rank 0 only.
    ``settings.yaml`` is written by the training loop, once, when the run starts."""
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        write_json(output / "labels.json", record)


def check_lr(lr: float | None) -> None:
    """``--lr`` as ``finetune.lr`` bounds it (for library callers; the CLI checks it too)."""
    if lr is not None and not 0 < lr < 1:
        raise SettingsError(f"--lr {lr}: must be > 0 and < 1")


def data_inputs(data: DataSettings) -> dict[str, str | None]:
    """The data files a run reads, as :func:`nerkd.rundir.check_not_input` names them."""
    return {f"the data.{key} file": getattr(data, key) for key in ("train", "dev", "test", "label2id", "unlabeled")}


def in_run_folder(project: Project, stage: str, output: Path, body: Callable[[RunFolder], T], *,
                  inputs: dict[str, str | Path | None], overwrite: bool = False, resume: bool = False) -> T:
    """Run ``body(run)`` inside the guarded run folder ``output`` (:class:`nerkd.rundir.RunFolder`:
    checked and locked before anything is loaded; never one of the run's ``inputs``
    (:func:`nerkd.rundir.check_not_input`); with ``resume`` a checkpoint must be there; ``overwrite``
    allows a non-nerkd folder), then remember it as the stage's last output (rank 0)."""
    from nerkd.rundir import RunFolder, check_not_input

    check_not_input(output, inputs)
    main = is_main()
    with RunFolder(output, overwrite=overwrite, resume=resume, main=main, log=say) as run:
        result = body(run)
    if main:
        project.remember_output(stage, output)
    return result


def kd_objective(settings: Settings, student: NerModel, tokenizer, teacher_ref: str
                 ) -> tuple[DistillObjective, TypeMapping]:
    """``--teacher`` / ``finetune.teacher`` on a gold-data run: the distillation objective of
    ``nerkd distill`` from that teacher (which must share the model's tokenizer), and its mapping.
    Needs three sections (teacher, labels, distill): it takes the settings."""
    from nerkd.train.kd import DistillObjective

    teacher = load_teacher(settings.teacher, teacher_ref, option="--teacher")
    t_tok = load_teacher_tokenizer(settings.teacher, teacher_ref, option="--teacher")
    if t_tok.get_vocab() != tokenizer.get_vocab():
        raise SettingsError(f"finetune.teacher {teacher_ref}: its tokenizer differs from the model's; distillation "
                            "compares sub-word positions, so both must share one tokenizer")
    mapping = shared_mapping(teacher.labels, student.labels, settings.labels, data_side="model")
    log_mapping(mapping, teacher.labels, student.labels, settings.labels.teacher_only)
    return DistillObjective(student, teacher, mapping, settings.distill), mapping


@dataclass
class Trainee:
    """The model a gold-data stage (teacher, finetune) has built or loaded, before training."""

    model: NerModel
    tokenizer: object
    space: LabelSpace      # the labels it is trained on
    source: str            # where it came from, for the log line


def train_on_gold(settings: Settings, stage: str, out_dir: Path, run: RunFolder, trainee: Trainee, splits: dict, *,
                  teacher_ref: str | None, resume: bool, epochs: int | None, lr: float | None,
                  fingerprint: dict) -> TrainResult:
    """Train ``trainee`` on the gold ``splits`` for ``finetune.epochs`` at ``finetune.lr`` (unless
    given): gold CE, or the distillation objective with ``teacher_ref`` (else ``finetune.teacher``).
    Writes ``labels.json``; the loop writes the rest. The whole settings: the loop takes them."""
    from nerkd.data.dataset import label_space_for
    from nerkd.train.loop import DevSet, train
    from nerkd.train.objective import CEObjective

    model, tokenizer, space = trainee.model, trainee.tokenizer, trainee.space
    check_positions(settings.data.max_length, model.config, "model")
    say(f"{stage}: {trainee.source}; {model.num_layers} layers, {model.num_parameters() / 1e6:.2f}M parameters, "
        f"labels {' '.join(space.labels)}{', CRF' if model.crf is not None else ''}")

    teacher_ref = teacher_ref or settings.finetune.teacher
    record: dict = {"labels": list(space.labels), "scheme": space.scheme, "label2id": space.label2id,
                    "data_types": list(label_space_for(list(splits.values()), settings.data).types)}
    if teacher_ref:
        objective, mapping = kd_objective(settings, model, tokenizer, str(teacher_ref))
        record["teacher"] = {"model": str(teacher_ref), "shared": list(mapping.shared),
                             "teacher_cols": list(mapping.teacher_cols), "student_cols": list(mapping.student_cols)}
    else:
        objective = CEObjective(model)

    encode_and_log(splits, list(splits), tokenizer, space, settings.data)
    transfer = transfer_for(settings, splits, teacher=bool(teacher_ref), stage=stage)
    dev = DevSet.from_split(splits["dev"], space) if "dev" in splits else None
    run.fresh_start()
    write_run_files(out_dir, record)
    fingerprint = {**fingerprint, "teacher.ref": model_ref_id(teacher_ref) if teacher_ref else None,
                   "labels": settings.labels.model_dump(mode="json"),
                   "distill": settings.distill.model_dump(mode="json") if teacher_ref else None}
    return train(objective, tokenizer, splits["train"].windows, dev, settings, out_dir,
                 epochs=epochs or settings.finetune.epochs, lr=lr or settings.finetune.lr, resume=resume,
                 stage=stage, fingerprint=fingerprint, unlabeled=transfer)
