from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from nerkd.cli.common import (
    Backend,
    BenchDevice,
    BenchPrecision,
    ConfigOpt,
    NoVerifyOpt,
    SetOpt,
    ThreadsOpt,
    backend_option,
    count_option,
    device_option,
    input_option,
    model_option,
    precision_option,
    resolve,
)
from nerkd.cli.errors import known_errors


@known_errors
def bench(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    no_verify: NoVerifyOpt = False,
    model: Annotated[list[str] | None, model_option(
        "Model folder (repeatable; the first is the reference for speed-ups). "
        "Default: the teacher, then the distill, prune and finetune outputs.")] = None,
    device: Annotated[BenchDevice | None, device_option("Default: bench.device.")] = None,
    precision: Annotated[BenchPrecision | None, precision_option(
        "fp32, bf16 (weights cast on GPU, autocast on CPU) or int8 (dynamic, CPU). Default: bench.precision.")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", dir_okay=False, help="Where to write the results (default: <artifacts>/bench.json).")] = None,
    input_: Annotated[Path | None, input_option(
        "Sentences, one per line or JSONL with text (default: data.test).", dir_okay=False)] = None,
    sentences: Annotated[int | None, count_option(
        "--sentences", "Sentences to time. Default: bench.sentences.")] = None,
    threads: ThreadsOpt = None,
    backend: Annotated[Backend, backend_option(
        "auto: a folder written by nerkd export --format onnx runs on ONNX Runtime (row '<name> (onnx)'), and so "
        "does a model folder with a verified fp32 export of its weights in MODEL/onnx or MODEL_onnx (on a CPU, in "
        "fp32; one line per model says which), unless that export is benched too (--model M --model M_onnx: M "
        "on torch, side by side); other models on torch.")] = Backend.auto,
) -> None:
    """Compare models on the same sentences: parameters, size on disk, latency, throughput, memory.

    Measures batch-1 latency p50/p95, batched throughput (words/s), peak memory, and speed-ups
    against the first model. Timings go through the engine of nerkd infer (word splitting,
    tokenisation, forward and decoding). Results are printed as a table and written as JSON for
    nerkd report.

    \b
    Example:
      nerkd bench --model artifacts/teacher --model artifacts/final --sentences 30
    """
    settings, project = resolve(config, set_, no_verify=no_verify)   # settings errors before torch is imported
    from nerkd.stages.bench import run_bench
    from nerkd.ui import err, warn

    run = run_bench(settings, project, model, device=device.value if device else None,
                    precision=precision.value if precision else None, sentences=sentences, input_path=input_,
                    threads=threads, backend=backend.value, output=json_path)
    render(run.document)
    for message in run.document.get("warnings", []):
        warn(message)
    err.print(f"bench: results written to {run.path}")


def render(result: dict) -> None:
    from nerkd.ui import out

    m = result["machine"]
    threads = f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}"
    table = Table(title=f"nerkd bench: {result['sentences']} sentences, {result['words']} words, "
                        f"{result['precision']} on {m['device']} ({threads})", title_justify="left")
    table.add_column("model", no_wrap=True)
    for col in ("params", "disk MB", "p50 ms", "p50 min–max", "p95 ms", "words/s", "words/s min–max", "peak MB",
                "lat. x", "thr. x"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in result["models"]:
        table.add_row(Text(r["name"]), f"{r['parameters'] / 1e6:.2f}M", f"{r['disk_bytes'] / 1e6:.1f}",
                      f"{r['latency_ms_p50']:.2f}", _span(r, "latency_ms_p50", ".2f"), f"{r['latency_ms_p95']:.2f}",
                      f"{r['words_per_s']:,.0f}", _span(r, "words_per_s", ",.0f"), f"{r['peak_mem_mb']:.0f}",
                      _speedup(r), f"{r['speedup_throughput']:.2f}")
    if not out.is_terminal:  # piped: do not squeeze the table into 80 columns
        from rich.console import Console

        out = Console(highlight=False, width=max(out.width, 160))
    out.print(table)
    blocks = result.get("blocks")
    out.print(f"medians over {blocks} interleaved blocks (min–max: the spread over blocks); " if blocks else "",
              "lat. x: batch-1 p50 latency speed-up vs the first model, the median of the blocks' ratios (min–max); "
              "thr. x: words/s speed-up; "
              "peak MB: memory added by the model while it ran", sep="")


def _speedup(row: dict) -> str:
    """The latency speed-up and, when the file has it, its spread over blocks."""
    lo, hi = row.get("speedup_latency_min"), row.get("speedup_latency_max")
    spread = "" if lo is None or hi is None else f" ({lo:.2f}–{hi:.2f})"
    return f"{row['speedup_latency']:.2f}{spread}"


def _span(row: dict, key: str, fmt: str) -> str:
    """``min–max`` over blocks (``-`` for a bench file without them)."""
    lo, hi = row.get(f"{key}_min"), row.get(f"{key}_max")
    return "-" if lo is None or hi is None else f"{format(lo, fmt)}–{format(hi, fmt)}"
