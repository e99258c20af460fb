"""``nerkd bench``: size, latency, throughput and memory of several models on the same sentences.

The stage (:func:`run_bench`): which models (:func:`nerkd.project.default_models`, or ``--model`` refs
named by :func:`name_models`: the names ``nerkd report`` gives them too), which sentences
(:func:`bench_texts`), how each model is loaded (:func:`bench_engine`: the infer settings through
:func:`nerkd.infer.load_engine`), the bench document (:func:`bench_models`)
and where it is written (:func:`bench_path`). How models are measured is :mod:`nerkd.infer.bench`; the
document is the ``bench.json`` contract of :mod:`nerkd.infer.benchfile`. Nothing is printed here: the
plan and skipped models are said through :mod:`nerkd.log`, progress goes through its hook.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nerkd.errors import NerkdError, SettingsError
from nerkd.infer import BackendChoice, Engine, choose_backend, load_engine
from nerkd.infer.bench import bench_ticks, measure
from nerkd.infer.benchfile import bench_document, write_bench
from nerkd.infer.io import file_texts, gold_texts
from nerkd.log import progress, say, warn
from nerkd.project import ModelRef, Project, default_models, parse_models
from nerkd.settings import InferSettings, Settings

__all__ = ["BenchRun", "bench_backends", "bench_engine", "bench_models", "bench_path", "bench_texts", "bench_ticks",
           "name_models", "run_bench", "say_backends", "teacher_kwargs"]


@dataclass
class BenchRun:
    document: dict    # the bench.json document (:func:`nerkd.infer.benchfile.bench_document`)
    path: Path        # where it was written


def run_bench(settings: Settings, project: Project, refs: Sequence[str] | None = None, *, device: str | None = None,
              precision: str | None = None, sentences: int | None = None, input_path: Path | None = None,
              threads: int | None = None, backend: str = "auto", output: Path | None = None) -> BenchRun:
    """Bench ``refs`` (``--model`` values; default: :func:`default_models`, a default model that cannot load
    is skipped with a warning) on ``sentences`` texts of ``input_path`` (default ``data.test``) and write the
    bench document to ``output`` (default :func:`bench_path`). ``device``, ``precision``, ``sentences``:
    default ``bench.*``; ``threads``: torch's CPU threads (default: the free physical cores)."""
    from nerkd.rundir import check_not_input
    from nerkd.threads import describe_threads, set_threads

    bs = settings.bench
    n, dev, prec = sentences or bs.sentences, device or bs.device, precision or bs.precision
    n_threads, why = set_threads(threads)
    models = name_models(refs) if refs else [ModelRef(m.name, m.path) for m in default_models(settings, project)]
    path = output or bench_path(settings, project)
    check_not_input(path, {"the --input file": input_path, **{f"the model {m.name}'s folder": m.path for m in models}},
                    "--json", folder=False)
    models, choices = bench_backends(models, bench_section(settings, dev, prec, backend))
    texts = bench_texts(settings, input_path, n)
    if len(texts) < n:
        say(f"bench: only {len(texts)} sentences available (asked for {n})")
    say(f"bench: {len(models)} models{_on_onnx(models, choices)}, {len(texts)} sentences, {dev} "
        f"({describe_threads(n_threads, why)}), {prec}, warm-up {bs.warmup}, "
        f"{min(bs.blocks, len(texts))} blocks x {bs.rounds} rounds, "
        f"batch {bs.batch_size or 'auto (32 on CPU, 256 on GPU)'}")
    say_backends(models, choices)
    with progress() as bar:
        task = bar.add_task("bench", total=bench_ticks(len(texts), bs.blocks, bs.rounds) * len(models), info="")
        doc = bench_models(models, texts, settings, device=dev, precision=prec, backend=backend, choices=choices,
                           tick=lambda k: bar.advance(task, k),
                           on_skip=None if refs else lambda name, why: warn(f"skipped {name}: {why}"))
    write_bench(path, doc)
    return BenchRun(doc, Path(path))


def bench_path(settings: Settings, project: Project) -> Path:
    """Where ``nerkd bench`` writes by default: ``<artifacts>/bench.json`` (where ``nerkd report`` looks)."""
    return project.artifacts(settings.paths.artifacts) / "bench.json"


def name_models(refs: Sequence[str]) -> list[ModelRef]:
    """``--model`` refs named by :func:`nerkd.project.parse_models` (as ``nerkd report`` names them); a folder
    written by ``nerkd export --format onnx`` (run by ONNX Runtime) is labelled ``<name> (onnx)`` or
    ``(onnx int8)``, as ``nerkd report`` names its rows."""
    from nerkd.infer.onnx_backend import is_onnx_export, read_manifest

    out = []
    for name, ref in parse_models(refs):
        if is_onnx_export(ref):
            name += " (onnx int8)" if ((read_manifest(ref) or {}).get("onnx") or {}).get("int8") else " (onnx)"
        out.append(ModelRef(name, ref))
    return out


def bench_texts(settings: Settings, input_path: str | Path | None, limit: int) -> list[str]:
    """Up to ``limit`` non-empty texts: ``input_path`` (text or JSONL lines) or ``data.test`` (detokenised)."""
    if input_path is not None:
        return file_texts(input_path, limit)
    if not settings.data.test:
        raise SettingsError("bench needs sentences: set data.test or give --input FILE")
    return gold_texts(settings.data.test, settings.data.format, limit)


def bench_section(settings: Settings, device: str, precision: str, backend: str) -> InferSettings:
    """The ``infer`` settings as ``nerkd bench`` runs a model: at the bench's device, precision (int8: dynamic int8
    of the fp32 model) and batch size, not compiled, on ``backend``."""
    return settings.infer.model_copy(update={
        "device": device, "precision": "fp32" if precision == "int8" else precision, "int8": precision == "int8",
        "batch_size": settings.bench.batch_size, "compile": False, "backend": backend})


def bench_backends(models: Sequence[tuple[str, str]], section: InferSettings
                   ) -> tuple[list[ModelRef], dict[str, BackendChoice]]:
    """Each model's runtime under ``section`` (:func:`nerkd.infer.choose_backend`; :func:`say_backends` says
    why). A model folder that runs on its verified ONNX export is benched as that export, named ``<name> (onnx)`` as
    :func:`name_models` names an export: its figures are never taken for torch's; when that export is benched
    too (its own row), the model runs on torch beside it. Returns the models to bench and each one's runtime,
    by ref."""
    benched = {Path(ref).resolve() for _, ref in models if Path(ref).exists()}
    out, choices = [], {}
    for name, ref in models:
        choice = choose_backend(ref, section)
        if choice.export is not None and choice.export.resolve() in benched:
            choice = BackendChoice("torch", ref, f"backend torch: its ONNX export {choice.export} is benched too "
                                                 "(its own row)")
        model = ModelRef(f"{name} (onnx)", str(choice.ref)) if choice.export is not None else ModelRef(name, ref)
        choices[model.path] = choice
        out.append(model)
    return out, choices


def say_backends(models: Sequence[ModelRef], choices: dict[str, BackendChoice]) -> None:
    """One line per model: which runtime runs it and why (:func:`bench_backends`)."""
    for model in models:
        line = choices[model.path].line
        if line:
            say(f"bench: {model.name}: {line}")


def _on_onnx(models: Sequence[ModelRef], choices: dict[str, BackendChoice]) -> str:
    names = [m.name for m in models if choices[m.path].backend == "onnx"]
    return f" ({len(names)} on ONNX Runtime: {', '.join(names)})" if names else ""


def bench_engine(ref: str, settings: Settings, *, device: str, precision: str, backend: str = "auto",
                 choices: dict[str, BackendChoice] | None = None, **load_kwargs) -> Engine:
    """The infer engine for ``ref`` as ``nerkd bench`` runs it (:func:`bench_section`; ``backend`` auto: onnx
    for an ONNX export or a verified export of the model), on its runtime in ``choices`` when there."""
    section = bench_section(settings, device, precision, backend)
    return load_engine(ref, section, max_length=settings.data.max_length, stride=settings.data.stride,
                       choice=(choices or {}).get(str(ref)), **load_kwargs)


def teacher_kwargs(settings: Settings) -> Callable[[str], dict]:
    """The teacher's revision and trust_remote_code, for the model that is the settings' teacher."""
    teacher = settings.teacher

    def extra(ref: str) -> dict:
        if ref == teacher.model or Path(ref) == Path(teacher.model):
            return {"revision": teacher.revision, "trust_remote_code": teacher.trust_remote_code}
        return {}

    return extra


def bench_models(models: Sequence[tuple[str, str]], texts: Sequence[str], settings: Settings, *, device: str,
                 precision: str, tick: Callable[[int], None] | None = None,
                 on_skip: Callable[[str, str], None] | None = None, blocks: int | None = None,
                 load: Callable[..., object] | None = None, clock: Callable[[], float] = time.perf_counter,
                 backend: str = "auto", choices: dict[str, BackendChoice] | None = None) -> dict:
    """Bench every ``(name, ref)`` of ``models`` on ``texts``; returns the bench document
    (:func:`nerkd.infer.benchfile.bench_document`), which :func:`~nerkd.infer.benchfile.write_bench` writes.

    Settings: ``bench.warmup``, ``bench.blocks`` (unless ``blocks``), ``bench.batch_size`` and the
    infer settings of :func:`bench_engine`. A model in ``on_skip``'s care (the defaults) that cannot
    load is skipped with a message; otherwise a load error stops the run. A load average above the
    core count while timing gives a warning in the document's ``warnings``. ``load(ref, **kwargs)``
    (an engine with ``predict`` and ``num_parameters``) and ``clock`` replace the real ones in tests.
    ``choices``: each model's runtime (:func:`bench_backends`, whose models these are); None: decided here.
    """
    texts = list(texts)
    if not texts:
        raise NerkdError("bench: no sentences to run (empty input)")
    if device == "cuda" and not torch.cuda.is_available():
        raise SettingsError("bench.device is cuda but no CUDA GPU is visible")
    if precision == "int8" and device == "cuda":
        raise SettingsError("bench.precision int8 runs on CPU only")
    dev = torch.device("cuda") if device == "cuda" else torch.device("cpu")
    prime_ref = None
    if load is None:
        if choices is None:
            models, choices = bench_backends(models, bench_section(settings, device, precision, backend))
            say_backends(models, choices)
        prime_ref = models[0][1]
        load = functools.partial(bench_engine, settings=settings, device=device, precision=precision, backend=backend,
                                 choices=choices)
    run = measure(models, texts, device=dev, warmup=settings.bench.warmup, blocks=blocks or settings.bench.blocks,
                  rounds=settings.bench.rounds, load=load, extra=teacher_kwargs(settings), prime_ref=prime_ref,
                  clock=clock, tick=tick, on_skip=on_skip)
    warning = run.load.warning()
    return bench_document(machine=run.machine, precision=precision, sentences=run.sentences, words=run.words,
                          blocks=run.blocks, load=run.load.as_dict(), warnings=[warning] if warning else [],
                          models=run.models)
