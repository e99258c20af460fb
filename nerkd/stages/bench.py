"""``nerkd bench``: size, latency, throughput and memory of several models on the same sentences.

Every model runs through :class:`nerkd.infer.Engine`, the engine of ``nerkd infer``, so the
timings include word splitting, tokenisation, the forward pass and decoding.

* timing in interleaved blocks: the sentences are cut into ``bench.blocks`` blocks and the
  models take turns (block 1 of every model, then block 2 of every model, ...), so that noise
  from the machine hits every model alike; figures are medians over blocks, with their min and
  max (the spread) and the per-block values;
* latency: one sentence at a time (batch 1), after ``bench.warmup`` warm-up calls; p50 is the
  median of the blocks' medians, p95 over every sentence;
* throughput: one pass over all sentences per block, length-bucketed batches of
  ``bench.batch_size``; words/s, where words are :func:`~nerkd.data.words.split_words` words;
* peak memory: on CPU the RSS high-water mark (``VmHWM``, reset per model through
  ``/proc/self/clear_refs``) minus the RSS before loading the model, over its loading, warm-up
  and one batched pass; on CUDA ``torch.cuda.max_memory_allocated``;
* size on disk: bytes of the model folder's weight files (the fp32 files, also for int8, which
  is quantised at load time);
* load: the 1-minute load average before and during the timing; above the core count (besides
  the bench's own threads) the result carries a warning.

Speed-ups are against the first model, measured in the same run (ratios of the medians).
"""

from __future__ import annotations

import functools
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from nerkd.data.words import split_words
from nerkd.errors import NerkdError, SettingsError
from nerkd.infer.engine import Engine
from nerkd.infer.io import detokenize, read_docs
from nerkd.project import Project
from nerkd.settings import Settings

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")
DEFAULT_STAGES = ("distill", "prune", "finetune")


def default_models(settings: Settings, project: Project) -> list[tuple[str, str]]:
    """``(name, ref)``: the teacher, then the distill, prune and finetune outputs that exist."""
    models = [("teacher", settings.teacher.model)]
    outputs = project.state.get("outputs", {})
    for stage in DEFAULT_STAGES:
        remembered = outputs.get(stage)
        path = project.root / remembered if remembered else project.default_output(stage, settings.paths.artifacts)
        if path.exists():
            models.append((stage, str(path)))
    return models


def name_models(refs: Sequence[str]) -> list[tuple[str, str]]:
    """Short unique names (folder names) for explicit ``--model`` references; a folder written by
    ``nerkd export --format onnx`` (run by ONNX Runtime) is labelled ``<name> [onnx]`` or ``[onnx int8]``."""
    from nerkd.infer.onnx_backend import is_onnx_export, read_manifest

    out, seen = [], {}
    for ref in refs:
        base = Path(ref).name or str(ref)
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}#{seen[base]}"
        if is_onnx_export(ref):
            name += " [onnx int8]" if ((read_manifest(ref) or {}).get("onnx") or {}).get("int8") else " [onnx]"
        out.append((name, str(ref)))
    return out


def bench_texts(settings: Settings, input_path: str | Path | None, limit: int) -> list[str]:
    """Up to ``limit`` non-empty texts: ``input_path`` (text or JSONL lines) or ``data.test`` (detokenised)."""
    if input_path is not None:
        path = Path(input_path)
        if not path.is_file():
            from nerkd.errors import DataError

            raise DataError(path, None, "file not found")
        texts = []
        with path.open("rb") as fh:
            for doc in read_docs(fh, str(path)):
                if doc.text.strip():
                    texts.append(doc.text)
                    if len(texts) >= limit:
                        break
        return texts
    if not settings.data.test:
        raise SettingsError("bench needs sentences: set data.test or give --input FILE")
    from nerkd.data.readers import read_sentences

    sentences, _ = read_sentences(settings.data.test, settings.data.format, limit)
    return [s.text if s.text else detokenize(s.tokens) for s in sentences if s.tokens]


def disk_bytes(ref: str) -> int:
    """Bytes of the weight files of a model folder (or of its hub cache snapshot; 0 if unknown)."""
    folder = Path(ref)
    if not folder.is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(ref, "config.json")
            folder = Path(found).parent if isinstance(found, str) else None
        except Exception:  # noqa: BLE001 - no cache, no size
            folder = None
        if folder is None:
            return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of what runs inside the block, in MiB (see module doc)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.base_kb = 0
        self.resettable = False

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_bytes = torch.cuda.memory_allocated(self.device)
            return self
        self.base_kb = _status_kb("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        return self

    def __exit__(self, *exc) -> None:
        return None

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.base_bytes) / 2**20
        if self.resettable:
            peak = _status_kb("VmHWM") or 0
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, peak - self.base_kb) / 1024


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "device": dev}


def bench_ticks(sentences: int, blocks: int) -> int:
    """Progress units ``run_bench`` reports per model: warm-up pass, latency and throughput blocks."""
    return (2 + min(blocks, sentences)) * sentences


def cpu_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class LoadWatch:
    """The 1-minute load average, sampled before and while timing.

    A sample taken while this bench runs counts its own ``own_threads`` threads too, so they are
    subtracted from it (an upper bound: the average lags). When what is left exceeds the core
    count, other processes competed for the CPU and the timings are not to be trusted.
    """

    def __init__(self, own_threads: int, cores: int | None = None):
        self.own = max(1, own_threads)
        self.cores = cores or cpu_cores()
        self.samples: list[float] = []
        self.others: list[float] = []

    def sample(self, busy: bool) -> None:
        try:
            load = float(os.getloadavg()[0])
        except (AttributeError, OSError):  # no load average on this OS
            return
        self.samples.append(round(load, 2))
        self.others.append(round(max(0.0, load - self.own) if busy else load, 2))

    def warning(self) -> str | None:
        if not self.others or max(self.others) <= self.cores:
            return None
        return (f"machine under load while timing: load average up to {max(self.others):.1f} besides this bench's "
                f"{self.own} thread{'s' if self.own != 1 else ''}, on {self.cores} cores; timings and speed-ups are "
                "unreliable: rerun on a quiet machine")

    def as_dict(self) -> dict:
        return {"cores": self.cores, "bench_threads": self.own, "load_avg_1min": self.samples,
                "others_max": max(self.others) if self.others else None}


class _Timed:
    """One loaded model and what was measured on it."""

    def __init__(self, name: str, ref: str, engine, peak_mb: float):
        self.name, self.ref, self.engine, self.peak_mb = name, ref, engine, peak_mb
        self.params = int(engine.num_parameters)
        self.latencies: list[list[float]] = []   # per block, ms per sentence
        self.words_per_s: list[float] = []        # per block

    def result(self) -> dict:
        block_p50 = [_quantile(b, 0.5) for b in self.latencies]
        every = [x for b in self.latencies for x in b]
        wps = self.words_per_s
        return {"name": self.name, "path": str(self.ref), "parameters": self.params,
                "disk_bytes": disk_bytes(self.ref),
                "latency_ms_p50": round(statistics.median(block_p50), 3),
                "latency_ms_p95": round(_quantile(every, 0.95), 3),
                "latency_ms_p50_min": round(min(block_p50), 3), "latency_ms_p50_max": round(max(block_p50), 3),
                "words_per_s": round(statistics.median(wps), 1),
                "words_per_s_min": round(min(wps), 1), "words_per_s_max": round(max(wps), 1),
                "latency_ms_p50_blocks": [round(x, 3) for x in block_p50],
                "words_per_s_blocks": [round(x, 1) for x in wps],
                "peak_mem_mb": round(self.peak_mb, 1), "speedup_latency": 1.0, "speedup_throughput": 1.0}


def load_engine(ref: str, settings: Settings, *, device: str, precision: str, backend: str = "auto",
                **load_kwargs) -> Engine:
    """The infer engine for ``ref`` as ``nerkd bench`` runs it (``backend`` auto: onnx for an ONNX export)."""
    return Engine.load(ref, device=device, precision="fp32" if precision == "int8" else precision, backend=backend,
                       int8=precision == "int8", batch_size=settings.bench.batch_size,
                       max_length=settings.data.max_length, stride=settings.data.stride,
                       max_tokens=settings.infer.max_tokens, tokenize=settings.infer.tokenize, **load_kwargs)


def _load_and_warm(name: str, ref: str, texts: Sequence[str], warmup: int, dev: torch.device,
                   load: Callable[..., object], **load_kwargs) -> _Timed:
    """Load, warm up and run one untimed batched pass: the model's peak memory."""
    with PeakMemory(dev) as mem:
        engine = load(ref, **load_kwargs)
        for i in range(warmup):
            engine.predict([texts[i % len(texts)]])
        engine.predict(list(texts))
        peak = mem.peak_mb()
    return _Timed(name, ref, engine, peak)


def _time_block(m: _Timed, block: Sequence[str], texts: Sequence[str], words: int, clock: Callable[[], float],
                tick: Callable[[int], None] | None) -> None:
    """Batch-1 latency of each sentence of ``block``, then words/s of one batched pass over ``texts``."""
    m.engine.predict([block[0]])  # untimed: the previous block ran another model
    latencies = []
    for t in block:
        start = clock()
        m.engine.predict([t])
        latencies.append((clock() - start) * 1000)
        if tick:
            tick(1)
    m.latencies.append(latencies)
    start = clock()
    m.engine.predict(list(texts))
    seconds = clock() - start
    m.words_per_s.append(words / seconds if seconds > 0 else 0.0)
    if tick:
        tick(len(texts))


def _prime(ref: str) -> None:
    """Import the model and tokenizer code once, so the first model's peak memory is not the imports'."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING

        from nerkd.models.ner import load_config, load_tokenizer

        MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING[type(load_config(ref))]
        load_tokenizer(ref)
        with torch.inference_mode():  # thread pools and kernel workspaces
            layer = torch.nn.TransformerEncoderLayer(64, 4, 256, batch_first=True).eval()
            layer(torch.randn(2, 16, 64))
    except Exception:  # noqa: BLE001 - only an optimisation; the real load reports errors
        pass


def _quantile(values: Sequence[float], q: float) -> float:
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1])


def add_speedups(models: list[dict]) -> None:
    """Latency and throughput speed-ups against the first model (in place)."""
    if not models:
        return
    first = models[0]
    for m in models:
        m["speedup_latency"] = round(first["latency_ms_p50"] / m["latency_ms_p50"], 3) if m["latency_ms_p50"] else 0.0
        m["speedup_throughput"] = round(m["words_per_s"] / first["words_per_s"], 3) if first["words_per_s"] else 0.0


def run_bench(models: Sequence[tuple[str, str]], texts: Sequence[str], settings: Settings, *, device: str,
              precision: str, tick: Callable[[int], None] | None = None,
              on_skip: Callable[[str, str], None] | None = None, blocks: int | None = None,
              load: Callable[..., object] | None = None, clock: Callable[[], float] = time.perf_counter,
              backend: str = "auto") -> dict:
    """Bench every model on ``texts``; returns the bench JSON document.

    Every model is loaded (and its peak memory measured) first; then the timing runs in rounds,
    each model taking its turn on block *k* before any model starts block *k+1*, so that a slow
    spell of the machine hits every model alike. Block *k* is every ``blocks``-th sentence from
    the *k*-th; each turn times batch-1 latency on the block's sentences, then one batched pass
    over all sentences. Figures are medians over blocks, with their min/max (the spread) and the
    per-block values. A load average above the core count while timing gives a warning in the
    result's ``warnings`` (nothing is printed here).

    A model in ``on_skip``'s care (the defaults) that cannot load is skipped with a message;
    otherwise a load error stops the run. ``load(ref, **kwargs)`` (an engine with ``predict`` and
    ``num_parameters``) and ``clock`` replace the real ones in tests.
    """
    from nerkd.errors import ModelLoadError

    texts = list(texts)
    if not texts:
        raise NerkdError("bench: no sentences to run (empty input)")
    if device == "cuda" and not torch.cuda.is_available():
        raise SettingsError("bench.device is cuda but no CUDA GPU is visible")
    if precision == "int8" and device == "cuda":
        raise SettingsError("bench.precision int8 runs on CPU only")
    dev = torch.device("cuda") if device == "cuda" else torch.device("cpu")
    watch = LoadWatch(torch.get_num_threads() if dev.type == "cpu" else 1)
    watch.sample(busy=False)
    if load is None:
        _prime(models[0][1])
        load = functools.partial(load_engine, settings=settings, device=device, precision=precision, backend=backend)
    n_blocks = min(blocks or settings.bench.blocks, len(texts))
    words = sum(len(split_words(t)) for t in texts)
    loaded: list[_Timed] = []
    for name, ref in models:
        extra = {}
        if ref == settings.teacher.model:
            extra = {"revision": settings.teacher.revision, "trust_remote_code": settings.teacher.trust_remote_code}
        try:
            loaded.append(_load_and_warm(name, ref, texts, settings.bench.warmup, dev, load, **extra))
        except ModelLoadError as e:
            if on_skip is None:
                raise
            on_skip(name, str(e))
            if tick:
                tick(bench_ticks(len(texts), n_blocks))
            continue
        if tick:
            tick(len(texts))
    if not loaded:
        raise NerkdError("bench: no model could be loaded")
    watch.sample(busy=True)
    for k in range(n_blocks):
        block = texts[k::n_blocks]
        for m in loaded:
            _time_block(m, block, texts, words, clock, tick)
        watch.sample(busy=True)
    results = [m.result() for m in loaded]
    del loaded
    gc.collect()
    add_speedups(results)
    warning = watch.warning()
    return {"machine": machine_info(dev), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "precision": precision, "sentences": len(texts), "words": words, "blocks": n_blocks,
            "load": watch.as_dict(), "warnings": [warning] if warning else [], "models": results}
