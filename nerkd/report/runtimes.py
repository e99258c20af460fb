"""Which runtimes ``nerkd report`` scores each model in, and which row each row's F1 is compared with.

A model's own row runs on torch at the report's device and precision, or on ONNX Runtime (CPU)
for a folder written by ``nerkd export --format onnx``. ``--int8`` and ``--bf16`` add a row per
torch model, run as ``nerkd infer --int8`` (dynamic int8 Linear layers, CPU) or ``--precision
bf16`` (autocast on CPU, bf16 weights on GPU) would run it. Every row goes through the same
inference engine (:class:`nerkd.infer.Engine`: windows, batches, decoding), so rows of one model
differ only by the runtime. When runtimes are compared, a torch model's own row is fp32 and is the
reference of its other rows; an ONNX export's reference is the torch row with the weights it was
exported from (the manifest's ``source.weights_sha256``). Pure planning: nothing loads here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nerkd.report.records import ModelSpec

VARIANTS = ("int8", "bf16")   # what --int8 / --bf16 add for each torch model


@dataclass(frozen=True)
class Runtime:
    backend: str = "torch"     # torch | onnx
    precision: str = "fp32"    # torch: fp32 | bf16 | fp16 (an ONNX graph runs as exported)
    int8: bool = False         # torch: dynamic int8 at load time; onnx: an int8 graph
    device: str = "cpu"        # cpu | cuda

    @property
    def label(self) -> str:
        if self.backend == "onnx":
            return "onnx int8" if self.int8 else "onnx"
        return "int8" if self.int8 else self.precision

    @property
    def converted(self) -> bool:
        """Weights converted at load time: the files on disk are the fp32 ones, not this runtime's."""
        return self.backend == "torch" and (self.int8 or self.precision != "fp32")

    def as_dict(self) -> dict:
        return {"label": self.label, **asdict(self)}


@dataclass
class Run:
    """One row to score: a model in a runtime (``base``: the model's own row)."""

    spec: ModelSpec
    runtime: Runtime
    base: bool = True

    @property
    def name(self) -> str:
        if self.base and self.runtime.backend == "torch":
            return self.spec.name
        return f"{self.spec.name} ({self.runtime.label})"


def plan_runs(specs: Sequence[ModelSpec], variants: Sequence[str], *, device: str, precision: str,
              bf16: bool = True, int8_of: Sequence[str] = ()) -> tuple[list[Run], list[str]]:
    """Every model's own row, followed by its variant rows; and notes on variants left out.

    ``precision``: of the torch rows (fp32 when runtimes are compared, see :func:`compares`);
    ``bf16``: whether bf16 runs here (a GPU without bf16 gets no bf16 row); ``int8_of``: models
    with an int8 bench entry, which get an int8 row even without ``--int8``."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown runtime {unknown[0]!r}: expected one of {', '.join(VARIANTS)}")
    runs: list[Run] = []
    exports = [s.name for s in specs if s.export is not None]
    for spec in specs:
        if spec.export is not None:
            runs.append(Run(spec, Runtime("onnx", "fp32", bool((spec.export.get("onnx") or {}).get("int8")))))
            continue
        runs.append(Run(spec, Runtime("torch", precision, False, device)))
        if "int8" in variants or spec.name in int8_of:
            runs.append(Run(spec, Runtime("torch", "fp32", True, "cpu"), base=False))
        if "bf16" in variants and bf16:
            runs.append(Run(spec, Runtime("torch", "bf16", False, device), base=False))
    notes = []
    if "bf16" in variants and not bf16:
        notes.append("bf16 rows skipped: this GPU has no bf16 support")
    if variants and exports:
        notes.append(f"--{' --'.join(variants)}: rows for torch models only; {', '.join(exports)} "
                     f"{'runs' if len(exports) == 1 else 'run'} as exported (an int8 graph: nerkd export --format "
                     "onnx --int8)")
    return runs, notes


def compares(specs: Sequence[ModelSpec], variants: Sequence[str]) -> bool:
    """Whether the report compares runtimes (variants asked, or an ONNX export among the models)."""
    return bool(variants) or any(s.export is not None for s in specs)


def references(runs: Sequence[Run], weights_of: Callable[[str], dict[str, str]]) -> list[int | None]:
    """For each run, the index of the run its F1 is compared with (None: none).

    A torch variant: its model's own row when that is fp32. An ONNX export: the fp32 torch row whose
    weight files (``weights_of(path)``: file name -> sha256) are the manifest's ``source.weights_sha256``."""
    own = {id(r.spec): i for i, r in enumerate(runs)
           if r.base and r.runtime.backend == "torch" and r.runtime.label == "fp32"}
    torch_rows = [(i, r) for i, r in enumerate(runs) if i in own.values()]
    out: list[int | None] = []
    for run in runs:
        if run.runtime.backend == "torch":
            out.append(None if run.base else own.get(id(run.spec)))
            continue
        source = ((run.spec.export or {}).get("source") or {}).get("weights_sha256") or None
        out.append(next((i for i, r in torch_rows if source and weights_of(r.spec.path) == source), None))
    return out
