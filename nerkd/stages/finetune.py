"""``nerkd finetune``: supervised fine-tuning on the configured data, in two uses.

1. Recovery after pruning (stage ``finetune``): continue training a model, by default the last
   pruned (else distilled) one, for ``finetune.epochs`` epochs at ``finetune.lr``; the output
   (default ``<artifacts>/final``) keeps the pruned head layout::

       nerkd finetune --model artifacts/student_10L_pruned --output artifacts/student_10L_final

2. A domain teacher from a base encoder (stage ``teacher``, default ``<artifacts>/teacher``): a new
   classifier over the data's label set (and a CRF with ``--crf`` / ``finetune.crf``)::

       nerkd finetune --base camembert-base --crf --epochs 5 --output artifacts/teacher
       nerkd finetune --base scratch --output artifacts/teacher     # offline quickstart

   ``--base scratch`` builds a tiny CamemBERT-architecture encoder (4 layers, hidden 128, 4 heads)
   with a Unigram tokenizer (vocabulary 2000) trained on ``data.train``: no download.

With ``--teacher REF`` (or ``finetune.teacher``) the loss is the distillation objective of
``nerkd distill`` (same losses and ``distill.phases`` schedule) instead of gold CE alone.
The training loop is :func:`nerkd.train.loop.train` (resume, early stopping, DDP, checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import torch

from nerkd.data.dataset import label_space_for
from nerkd.data.labels import LabelSpace
from nerkd.errors import ModelLoadError, SettingsError
from nerkd.log import say
from nerkd.models.ner import NerModel, load_tokenizer
from nerkd.stages.common import (
    check_positions,
    encode_and_log,
    is_main,
    load_teacher,
    load_teacher_tokenizer,
    load_training_splits,
    log_mapping,
    model_ref_id,
    shared_mapping,
    write_run_files,
)
from nerkd.train import ddp
from nerkd.train.loop import DevSet, TrainResult, train
from nerkd.train.objective import CEObjective

SCRATCH = "scratch"
SCRATCH_LAYERS, SCRATCH_HIDDEN, SCRATCH_HEADS, SCRATCH_VOCAB = 4, 128, 4, 2000


def scratch_model(texts: list[str], space: LabelSpace, crf: bool, max_length: int, *, layers: int = SCRATCH_LAYERS,
                  hidden: int = SCRATCH_HIDDEN, heads: int = SCRATCH_HEADS, vocab_size: int = SCRATCH_VOCAB,
                  tokenizer=None) -> tuple[NerModel, object]:
    """A fresh tiny CamemBERT token classifier and its Unigram tokenizer trained on ``texts``."""
    from nerkd.models.scratch import tiny_config, train_tokenizer

    if layers < 1 or hidden < heads or hidden % heads:
        raise SettingsError(f"--scratch-layers {layers} / --scratch-hidden {hidden}: need >= 1 layer and a hidden "
                            f"size that is a multiple of {heads} (the heads)")
    if tokenizer is None:
        tokenizer = train_tokenizer(texts, vocab_size)
    config = tiny_config(len(tokenizer), list(space.labels), layers=layers, hidden=hidden, heads=heads,
                         max_positions=max(128, max_length), pad_token_id=tokenizer.pad_token_id)
    return NerModel.from_config(config, crf=crf), tokenizer


def base_model(ref: str, space: LabelSpace, crf: bool, settings) -> tuple[NerModel, object]:
    """A pretrained encoder (folder or hub id) with a new classifier over ``space``."""
    from transformers import AutoModelForTokenClassification

    from nerkd.models import quiet_transformers
    from nerkd.models.hub import check_ref, short_reason

    quiet_transformers()
    check_ref(ref, "base model", "--base")
    trust = settings.teacher.trust_remote_code
    tokenizer = load_tokenizer(ref, trust_remote_code=trust, what="base model", option="--base")
    try:
        encoder = AutoModelForTokenClassification.from_pretrained(
            ref, num_labels=len(space), id2label=space.id2label, label2id=space.label2id,
            ignore_mismatched_sizes=True, trust_remote_code=trust, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"base model {ref}: cannot load ({short_reason(e)})") from e
    return NerModel(encoder, crf=crf), tokenizer


def _set_crf(model: NerModel, crf: bool | None) -> None:
    if crf is None or crf == (model.crf is not None):
        return
    if crf:
        from torchcrf import CRF

        model.crf = CRF(model.num_labels, batch_first=True)
        say("--crf: the model had no CRF; a new one is trained with it")
    else:
        model.crf = None
        say("--no-crf: the model's CRF is dropped")


def _kd_objective(settings, student: NerModel, tokenizer, teacher_ref: str):
    from nerkd.train.kd import DistillObjective

    teacher = load_teacher(settings.teacher, teacher_ref, option="--teacher")
    t_tok = load_teacher_tokenizer(settings.teacher, teacher_ref, option="--teacher")
    if t_tok.get_vocab() != tokenizer.get_vocab():
        raise SettingsError(f"finetune.teacher {teacher_ref}: its tokenizer differs from the model's; distillation "
                            "compares sub-word positions, so both must share one tokenizer")
    mapping = shared_mapping(teacher.labels, student.labels, settings.labels, data_side="model")
    log_mapping(mapping, teacher.labels, student.labels, settings.labels.teacher_only)
    return DistillObjective(student, teacher, mapping, settings.distill), mapping


def run_finetune(settings, project, *, model_ref: str | None = None, base: str | None = None,
                 teacher_ref: str | None = None, output: str | Path | None = None, crf: bool | None = None,
                 resume: bool = False, epochs: int | None = None, lr: float | None = None,
                 scratch_layers: int = SCRATCH_LAYERS, scratch_hidden: int = SCRATCH_HIDDEN,
                 overwrite: bool = False) -> TrainResult:
    """Fine-tune (see module doc); returns the loop's :class:`~nerkd.train.loop.TrainResult`.

    The output folder is guarded by :class:`nerkd.rundir.RunFolder` (checked and locked before
    anything is loaded; with ``resume``, a checkpoint must be there; ``overwrite`` allows a
    non-nerkd folder)."""
    from nerkd.rundir import RunFolder

    if model_ref and base:
        raise SettingsError("--model and --base exclude each other: --model continues training a nerkd model, "
                            "--base starts a teacher from an encoder")
    if lr is not None and not 0 < lr < 1:
        raise SettingsError(f"--lr {lr}: must be > 0 and < 1")
    stage = "teacher" if base else "finetune"
    out_dir = Path(output) if output else project.default_output(stage, settings.paths.artifacts)
    if not base:
        if model_ref is None:
            found = project.default_input("finetune", settings.paths.artifacts)
            if found is None:
                raise SettingsError("no model to fine-tune: pass --model DIR (or --base to make a teacher); "
                                    "nothing found in <artifacts>/pruned or <artifacts>/student")
            model_ref = str(found)
        if Path(model_ref).exists() and Path(model_ref).resolve() == out_dir.resolve():
            raise SettingsError(f"--output {out_dir} is the input model's folder: choose another output folder")
    main = is_main()
    with RunFolder(out_dir, overwrite=overwrite, resume=resume, main=main, log=say) as run:
        result = _finetune(settings, stage, out_dir, run, model_ref=model_ref, base=base, teacher_ref=teacher_ref,
                           crf=crf, resume=resume, epochs=epochs, lr=lr, scratch_layers=scratch_layers,
                           scratch_hidden=scratch_hidden)
    if main:
        project.remember_output(stage, out_dir)
    return result


def _finetune(settings, stage: str, out_dir: Path, run, *, model_ref: str | None, base: str | None,
              teacher_ref: str | None, crf: bool | None, resume: bool, epochs: int | None, lr: float | None,
              scratch_layers: int, scratch_hidden: int) -> TrainResult:
    splits = load_training_splits(settings, "finetune", ("train", "dev"))
    torch.manual_seed(settings.train.seed)

    if base:
        space = label_space_for(list(splits.values()), settings.data)
        use_crf = settings.finetune.crf if crf is None else crf
        if base == SCRATCH:
            if ddp.detect().enabled:
                raise SettingsError("--base scratch trains its tokenizer in-process: run it without torchrun")
            tokenizer = None
            if resume and (out_dir / "tokenizer.json").is_file():
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(out_dir)
            texts = [" ".join(s.tokens) for s in splits["train"].sentences]
            model, tokenizer = scratch_model(texts, space, use_crf, settings.data.max_length, layers=scratch_layers,
                                             hidden=scratch_hidden, tokenizer=tokenizer)
            if not resume:  # the tokenizer must survive a crash before the first save, for --resume
                run.fresh_start()
                out_dir.mkdir(parents=True, exist_ok=True)
                tokenizer.save_pretrained(out_dir)
            source = (f"scratch: {scratch_layers} layers, hidden {scratch_hidden}, {SCRATCH_HEADS} heads, "
                      f"vocabulary {len(tokenizer)} trained on {len(texts)} sentences")
        else:
            model, tokenizer = base_model(base, space, use_crf, settings)
            source = f"{base} + new classifier over {len(space)} labels"
    else:
        model = NerModel.load(model_ref, what="model", option="--model")
        tokenizer = load_tokenizer(model_ref, what="model", option="--model")
        _set_crf(model, crf)
        space = model.labels
        pruned = f", pruned heads {model.heads}" if model.is_pruned else ""
        source = f"{model_ref}{pruned}"
    check_positions(settings.data.max_length, model.config, "model")
    say(f"{stage}: {source}; {model.num_layers} layers, {model.num_parameters() / 1e6:.2f}M parameters, "
         f"labels {' '.join(space.labels)}{', CRF' if model.crf is not None else ''}")

    teacher_ref = teacher_ref or settings.finetune.teacher
    record: dict = {"labels": list(space.labels), "scheme": space.scheme, "label2id": space.label2id,
                    "data_types": list(label_space_for(list(splits.values()), settings.data).types)}
    if teacher_ref:
        objective, mapping = _kd_objective(settings, model, tokenizer, str(teacher_ref))
        record["teacher"] = {"model": str(teacher_ref), "shared": list(mapping.shared),
                             "teacher_cols": list(mapping.teacher_cols), "student_cols": list(mapping.student_cols)}
    else:
        objective = CEObjective(model)

    encode_and_log(splits, list(splits), tokenizer, space, settings.data)
    dev = DevSet.from_split(splits["dev"], space) if "dev" in splits else None

    run.fresh_start()
    write_run_files(settings, out_dir, record)
    fingerprint = {"model.ref": model_ref_id(model_ref) if model_ref else None,
                   "base": model_ref_id(base) if base else None, "crf": model.crf is not None,
                   "scratch": [scratch_layers, scratch_hidden] if base == SCRATCH else None,
                   "teacher.ref": model_ref_id(teacher_ref) if teacher_ref else None,
                   "labels": settings.labels.model_dump(mode="json"),
                   "distill": settings.distill.model_dump(mode="json") if teacher_ref else None}
    return train(objective, tokenizer, splits["train"].windows, dev, settings, out_dir,
                 epochs=epochs or settings.finetune.epochs, lr=lr or settings.finetune.lr, resume=resume,
                 stage=stage, fingerprint=fingerprint)
