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
from nerkd.infer import Engine, load_engine
from nerkd.infer.bench import bench_ticks, measure
from nerkd.infer.benchfile import bench_document, write_bench
from nerkd.infer.io import file_texts, gold_texts
from nerkd.log import progress, say, warn
from nerkd.project import ModelRef, Project, default_models, parse_models
from nerkd.settings import Settings

__all__ = ["BenchRun", "bench_engine", "bench_models", "bench_path", "bench_texts", "bench_ticks", "name_models",
           "run_bench", "teacher_kwargs"]


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
    texts = bench_texts(settings, input_path, n)
    if len(texts) < n:
        say(f"bench: only {len(texts)} sentences available (asked for {n})")
    say(f"bench: {len(models)} models, {len(texts)} sentences, {dev} ({describe_threads(n_threads, why)}), "
        f"{prec}, warm-up {bs.warmup}, "
        f"{min(bs.blocks, len(texts))} blocks, batch {bs.batch_size or 'auto (32 on CPU, 256 on GPU)'}")
    with progress() as bar:
        task = bar.add_task("bench", total=bench_ticks(len(texts), bs.blocks) * len(models), info="")
        doc = bench_models(models, texts, settings, device=dev, precision=prec, backend=backend,
                           tick=lambda k: bar.advance(task, k),
                           on_skip=None if refs else lambda name, why: warn(f"skipped {name}: {why}"))
    write_bench(path, doc)
    return BenchRun(doc, Path(path))


def bench_path(settings: Settings, project: Project) -> Path:
    """Where ``nerkd bench`` writes by default: ``<artifacts>/bench.json`` (where ``nerkd report`` looks)."""
    return project.artifacts(settings.paths.artifacts) / "bench.json"


def name_models(refs: Sequence[str]) -> list[ModelRef]:
    """``--model`` refs named by :func:`nerkd.project.parse_models` (as ``nerkd report`` names them); a folder
    written by ``nerkd export --format onnx`` (run by ONNX Runtime) is labelled ``<name> [onnx]`` or
    ``[onnx int8]``."""
    from nerkd.infer.onnx_backend import is_onnx_export, read_manifest

    out = []
    for name, ref in parse_models(refs):
        if is_onnx_export(ref):
            name += " [onnx int8]" if ((read_manifest(ref) or {}).get("onnx") or {}).get("int8") else " [onnx]"
        out.append(ModelRef(name, ref))
    return out


def bench_texts(settings: Settings, input_path: str | Path | None, limit: int) -> list[str]:
    """Up to ``limit`` non-empty texts: ``input_path`` (text or JSONL lines) or ``data.test`` (detokenised)."""
    if input_path is not None:
        return file_texts(input_path, limit)
    if not settings.data.test:
        raise SettingsError("bench needs sentences: set data.test or give --input FILE")
    return gold_texts(settings.data.test, settings.data.format, limit)


def bench_engine(ref: str, settings: Settings, *, device: str, precision: str, backend: str = "auto",
                 **load_kwargs) -> Engine:
    """The infer engine for ``ref`` as ``nerkd bench`` runs it: the ``infer`` settings at the bench's device,
    precision (int8: dynamic int8 of the fp32 model) and batch size, not compiled (``backend`` auto: onnx for
    an ONNX export)."""
    section = settings.infer.model_copy(update={
        "device": device, "precision": "fp32" if precision == "int8" else precision, "int8": precision == "int8",
        "batch_size": settings.bench.batch_size, "compile": False, "backend": backend})
    return load_engine(ref, section, max_length=settings.data.max_length, stride=settings.data.stride, **load_kwargs)


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
                 backend: str = "auto") -> dict:
    """Bench every ``(name, ref)`` of ``models`` on ``texts``; returns the bench document
    (:func:`nerkd.infer.benchfile.bench_document`), which :func:`~nerkd.infer.benchfile.write_bench` writes.

    Settings: ``bench.warmup``, ``bench.blocks`` (unless ``blocks``), ``bench.batch_size`` and the
    infer settings of :func:`bench_engine`. A model in ``on_skip``'s care (the defaults) that cannot
    load is skipped with a message; otherwise a load error stops the run. A load average above the
    core count while timing gives a warning in the document's ``warnings``. ``load(ref, **kwargs)``
    (an engine with ``predict`` and ``num_parameters``) and ``clock`` replace the real ones in tests.
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
        prime_ref = models[0][1]
        load = functools.partial(bench_engine, settings=settings, device=device, precision=precision, backend=backend)
    run = measure(models, texts, device=dev, warmup=settings.bench.warmup, blocks=blocks or settings.bench.blocks,
                  load=load, extra=teacher_kwargs(settings), prime_ref=prime_ref, clock=clock, tick=tick,
                  on_skip=on_skip)
    warning = run.load.warning()
    return bench_document(machine=run.machine, precision=precision, sentences=run.sentences, words=run.words,
                          blocks=run.blocks, load=run.load.as_dict(), warnings=[warning] if warning else [],
                          models=run.models)
