"""What a report holds: the models' rows, the gold data, bench figures, notes and plots (data only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nerkd.infer.benchfile import BenchFile
from nerkd.report.errors import ErrorsSection
from nerkd.report.evaluate import GoldData, ModelScore
from nerkd.report.redaction import RedactionSection


@dataclass
class ModelSpec:
    name: str
    path: str
    stage: str | None = None
    export: dict | None = None     # the manifest of a folder written by nerkd export --format onnx


@dataclass
class ModelRow:
    score: ModelScore
    stage: str | None = None
    bench: dict | None = None
    train_summary: dict | None = None
    head_importance: dict | None = None
    compression: dict = field(default_factory=dict)
    base: bool = True                   # the model's own row (not an --int8 / --bf16 row)
    reference: str | None = None        # the row this one's F1 is compared with (nerkd.report.runtimes)
    f1_delta: float | None = None       # its all-entity F1 minus the reference's

    @property
    def name(self) -> str:
        return self.score.name


@dataclass
class Report:
    output: Path
    created: str
    data: GoldData
    rows: list[ModelRow]
    device: str
    precision: str
    benches: list[BenchFile] = field(default_factory=list)
    bench_unmatched: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)          # figures not to trust (bench timed under load)
    plots: dict[str, Path] = field(default_factory=dict)      # title -> PNG
    plots_skipped: str | None = None
    compares: bool = False             # runtimes compared: runtime and F1 difference columns
    redaction: RedactionSection | None = None   # leak metrics of the redaction (nerkd.report.redaction)
    errors: ErrorsSection | None = None  # errors in context and confusion counts (nerkd.report.errors)

    @property
    def has_bench(self) -> bool:
        return any(r.bench for r in self.rows)
