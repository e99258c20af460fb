"""``nerkd bench``: size, latency, throughput and memory of several models on the same sentences.

Every model runs through :class:`nerkd.infer.Engine`, the engine of ``nerkd infer``, so the
timings include word splitting, tokenisation, the forward pass and decoding.

* latency: one sentence at a time (batch 1), after ``bench.warmup`` warm-up calls; p50 / p95;
* throughput: all sentences, length-bucketed batches of ``bench.batch_size``; words/s, where
  words are :func:`~nerkd.data.words.split_words` words;
* peak memory: on CPU the RSS high-water mark (``VmHWM``, reset per model through
  ``/proc/self/clear_refs``) minus the RSS before loading the model; on CUDA
  ``torch.cuda.max_memory_allocated``;
* size on disk: bytes of the model folder's weight files (the fp32 files, also for int8, which
  is quantised at load time).

Speed-ups are against the first model, measured in the same run.
"""

from __future__ import annotations

import gc
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

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
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
    """Short unique names (folder names) for explicit ``--model`` references."""
    out, seen = [], {}
    for ref in refs:
        base = Path(ref).name or str(ref)
        seen[base] = seen.get(base, 0) + 1
        out.append((base if seen[base] == 1 else f"{base}#{seen[base]}", str(ref)))
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


def bench_model(name: str, ref: str, texts: Sequence[str], settings: Settings, *, device: str, precision: str,
                tick: Callable[[int], None] | None = None, **load_kwargs) -> dict:
    """Measure one model (see module doc); ``tick(n)`` is called as sentences are done."""
    bs = settings.bench
    words = [len(split_words(t)) for t in texts]
    dev = torch.device("cuda") if device == "cuda" else torch.device("cpu")
    with PeakMemory(dev) as mem:
        engine = Engine.load(ref, device=device, precision="fp32" if precision == "int8" else precision,
                             int8=precision == "int8", batch_size=bs.batch_size,
                             max_length=settings.data.max_length, stride=settings.data.stride,
                             max_tokens=settings.infer.max_tokens, tokenize=settings.infer.tokenize,
                             **load_kwargs)
        for i in range(bs.warmup):
            engine.predict([texts[i % len(texts)]])
        latencies = []
        for t in texts:
            start = time.perf_counter()
            engine.predict([t])
            latencies.append((time.perf_counter() - start) * 1000)
            if tick:
                tick(1)
        start = time.perf_counter()
        engine.predict(texts)
        seconds = time.perf_counter() - start
        if tick:
            tick(len(texts))
        peak = mem.peak_mb()
    params = engine.num_parameters
    del engine
    gc.collect()
    return {"name": name, "path": str(ref), "parameters": int(params), "disk_bytes": disk_bytes(ref),
            "latency_ms_p50": round(_quantile(latencies, 0.5), 3),
            "latency_ms_p95": round(_quantile(latencies, 0.95), 3),
            "words_per_s": round(sum(words) / seconds, 1) if seconds > 0 else 0.0,
            "peak_mem_mb": round(peak, 1), "speedup_latency": 1.0, "speedup_throughput": 1.0}


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
              on_skip: Callable[[str, str], None] | None = None) -> dict:
    """Bench every model on ``texts``; returns the bench JSON document.

    A model in ``on_skip``'s care (the defaults) that cannot load is skipped with a message;
    otherwise a load error stops the run.
    """
    from nerkd.errors import ModelLoadError

    if not texts:
        raise NerkdError("bench: no sentences to run (empty input)")
    if device == "cuda" and not torch.cuda.is_available():
        raise SettingsError("bench.device is cuda but no CUDA GPU is visible")
    if precision == "int8" and device == "cuda":
        raise SettingsError("bench.precision int8 runs on CPU only")
    _prime(models[0][1])
    results = []
    for name, ref in models:
        extra = {}
        if ref == settings.teacher.model:
            extra = {"revision": settings.teacher.revision, "trust_remote_code": settings.teacher.trust_remote_code}
        try:
            results.append(bench_model(name, ref, texts, settings, device=device, precision=precision, tick=tick,
                                       **extra))
        except ModelLoadError as e:
            if on_skip is None:
                raise
            on_skip(name, str(e))
            if tick:
                tick(2 * len(texts))
    if not results:
        raise NerkdError("bench: no model could be loaded")
    add_speedups(results)
    dev = torch.device("cuda") if device == "cuda" else torch.device("cpu")
    return {"machine": machine_info(dev), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "precision": precision, "sentences": len(texts), "words": sum(len(split_words(t)) for t in texts),
            "models": results}
