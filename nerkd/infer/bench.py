"""Measuring models on the same sentences: the library of ``nerkd bench`` (the stage, which reads the
settings and picks the models, is :mod:`nerkd.stages.bench`; the file it writes, :mod:`nerkd.infer.benchfile`).

Every model runs through an engine with ``predict(texts)`` and ``num_parameters`` (the
:class:`nerkd.infer.Engine` of ``nerkd infer``), so the timings include word splitting,
tokenisation, the forward pass and decoding.

* timing in interleaved blocks: the sentences are cut into ``blocks`` blocks and the models take
  turns (block 1 of every model, then block 2 of every model, ...), so that noise from the machine
  hits every model alike; figures are medians over blocks, with their min and max (the spread) and
  the per-block values;
* latency: one sentence at a time (batch 1), after ``warmup`` warm-up calls; p50 is the median of
  the blocks' medians, p95 over every sentence;
* throughput: one pass over all sentences per block (the engine batches them); words/s, where
  words are :func:`~nerkd.data.words.split_words` words;
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

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nerkd.data.words import split_words
from nerkd.errors import ModelLoadError, NerkdError
from nerkd.infer.benchfile import model_entry

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")


# -- sizes, memory, machine, load ------------------------------------------------------------------

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
    """``cpu``, ``threads``, ``torch``, ``device``: the bench file's ``machine``."""
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
        """The bench file's ``load``."""
        return {"cores": self.cores, "bench_threads": self.own, "load_avg_1min": self.samples,
                "others_max": max(self.others) if self.others else None}


# -- figures ---------------------------------------------------------------------------------------

def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 < q < 1, in hundredths) of ``values`` (inclusive method; one value: itself)."""
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1])


def add_speedups(models: list[dict]) -> None:
    """Latency and throughput speed-ups of bench entries against the first one (in place).

    The latency speed-up is paired: in each block both models tagged the same sentences one after the other,
    so the ratio of their block medians is free of what changed between blocks (the machine's load, the
    sentences' lengths); ``speedup_latency`` is the median of those per-block ratios, ``speedup_latency_min``
    and ``_max`` their spread. Entries without per-block figures get the ratio of the medians."""
    if not models:
        return
    first = models[0]
    for m in models:
        pairs = [a / b for a, b in zip(first.get("latency_ms_p50_blocks") or [], m.get("latency_ms_p50_blocks") or [],
                                       strict=False) if b > 0]
        if not pairs:
            pairs = [first["latency_ms_p50"] / m["latency_ms_p50"]] if m["latency_ms_p50"] else [0.0]
        m["speedup_latency"] = round(statistics.median(pairs), 3)
        m["speedup_latency_min"], m["speedup_latency_max"] = round(min(pairs), 3), round(max(pairs), 3)
        m["speedup_throughput"] = round(m["words_per_s"] / first["words_per_s"], 3) if first["words_per_s"] else 0.0


def bench_ticks(sentences: int, blocks: int, rounds: int = 1) -> int:
    """Progress units :func:`measure` reports per model: warm-up pass, latency and throughput blocks."""
    return (1 + rounds * (1 + min(blocks, sentences))) * sentences


# -- timing ----------------------------------------------------------------------------------------

class Timed:
    """One loaded model and what was measured on it."""

    def __init__(self, name: str, ref: str, engine, peak_mb: float):
        self.name, self.ref, self.engine, self.peak_mb = name, ref, engine, peak_mb
        self.params = int(engine.num_parameters)
        self.latencies: list[list[float]] = []   # per block, ms per sentence
        self.words_per_s: list[float] = []        # per block

    def entry(self) -> dict:
        """The model's bench file entry (speed-ups 1.0 until :func:`add_speedups`)."""
        return model_entry(self.name, str(self.ref), parameters=self.params, disk_bytes=disk_bytes(self.ref),
                           latency_ms_p50_blocks=[quantile(b, 0.5) for b in self.latencies],
                           latency_ms_p95=quantile([x for b in self.latencies for x in b], 0.95),
                           words_per_s_blocks=self.words_per_s, peak_mem_mb=self.peak_mb)


def load_and_warm(name: str, ref: str, texts: Sequence[str], warmup: int, dev: torch.device,
                  load: Callable[..., object], **load_kwargs) -> Timed:
    """Load, warm up and run one untimed batched pass: the model's peak memory."""
    with PeakMemory(dev) as mem:
        engine = load(ref, **load_kwargs)
        for i in range(warmup):
            engine.predict([texts[i % len(texts)]])
        engine.predict(list(texts))
        peak = mem.peak_mb()
    return Timed(name, ref, engine, peak)


def time_block(m: Timed, block: Sequence[str], texts: Sequence[str], words: int, clock: Callable[[], float],
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


def prime(ref: str) -> None:
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


# -- a whole run -----------------------------------------------------------------------------------

@dataclass
class Measured:
    """What :func:`measure` found: bench file entries (speed-ups set) and how they were timed."""

    models: list[dict]
    machine: dict
    sentences: int
    words: int
    blocks: int
    load: LoadWatch


def _load_all(models: Sequence[tuple[str, str]], texts: list[str], dev: torch.device, warmup: int,
              load: Callable[..., object], extra: Callable[[str], dict], skip_ticks: int,
              tick: Callable[[int], None] | None, on_skip: Callable[[str, str], None] | None) -> list[Timed]:
    loaded: list[Timed] = []
    for name, ref in models:
        try:
            loaded.append(load_and_warm(name, ref, texts, warmup, dev, load, **extra(ref)))
        except ModelLoadError as e:
            if on_skip is None:
                raise
            on_skip(name, str(e))
            if tick:
                tick(skip_ticks)
            continue
        if tick:
            tick(len(texts))
    if not loaded:
        raise NerkdError("bench: no model could be loaded")
    return loaded


def measure(models: Sequence[tuple[str, str]], texts: Sequence[str], *, device: torch.device, warmup: int,
            blocks: int, load: Callable[..., object], extra: Callable[[str], dict] | None = None, rounds: int = 1,
            prime_ref: str | None = None, clock: Callable[[], float] = time.perf_counter,
            tick: Callable[[int], None] | None = None,
            on_skip: Callable[[str, str], None] | None = None) -> Measured:
    """Bench every ``(name, ref)`` of ``models`` on ``texts`` (see the module doc).

    Every model is loaded by ``load(ref, **extra(ref))`` (and its peak memory measured) first;
    then the timing runs in rounds, each model taking its turn on block *k* before any model starts
    block *k+1*. Block *k* is every ``blocks``-th sentence from the *k*-th (``blocks`` is capped by
    the sentence count). ``rounds``: the blocks are timed that many times over, the models' order reversed
    every other round (so no model always follows the same one); every round's blocks count as blocks.
    A model that cannot load (:class:`~nerkd.errors.ModelLoadError`) is given
    to ``on_skip(name, why)`` and left out; without ``on_skip`` the error stops the run.
    ``prime_ref``: a model to import the model code with first (see :func:`prime`).
    """
    texts = list(texts)
    watch = LoadWatch(torch.get_num_threads() if device.type == "cpu" else 1)
    watch.sample(busy=False)
    if prime_ref is not None:
        prime(prime_ref)
    n_blocks = min(blocks, len(texts))
    words = sum(len(split_words(t)) for t in texts)
    loaded = _load_all(models, texts, device, warmup, load, extra or (lambda ref: {}),
                       bench_ticks(len(texts), n_blocks, rounds), tick, on_skip)
    watch.sample(busy=True)
    for r in range(rounds):
        for k in range(n_blocks):
            block = texts[k::n_blocks]
            for m in (loaded if r % 2 == 0 else loaded[::-1]):
                time_block(m, block, texts, words, clock, tick)
            watch.sample(busy=True)
    entries = [m.entry() for m in loaded]
    del loaded
    gc.collect()
    add_speedups(entries)
    return Measured(entries, machine_info(device), len(texts), words, n_blocks * rounds, watch)
