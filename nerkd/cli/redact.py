from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nerkd.cli.common import (
    Backend,
    ConfigOpt,
    Device,
    EngineOpt,
    IdColumnOpt,
    MasterOpt,
    ModelOpt,
    NoVerifyOpt,
    Precision,
    RunEngine,
    SetOpt,
    TextColumnOpt,
    ThreadsOpt,
    backend_option,
    device_option,
    input_option,
    output_option,
    precision_option,
    resolve,
)
from nerkd.cli.errors import known_errors
from nerkd.cli.tables import TableArgs, run_table
from nerkd.errors import NerkdError

if TYPE_CHECKING:
    from nerkd.settings import Settings
    from nerkd.stages.redact import RedactRun


class Mode(str, Enum):
    placeholder = "placeholder"
    mask = "mask"
    surrogate = "surrogate"


ModeOpt = Annotated[Mode | None, typer.Option(
    "--mode", help="placeholder ([PER_1], numbered per note), mask ([PER]) or surrogate (realistic French fake "
                   "values). Default: redact.mode.")]
BiasOpt = Annotated[float | None, typer.Option(
    "--bias", min=-20, max=20, help="Logit offset against O: higher finds more entities (recall) and replaces more "
                                    "words that are not. Default: redact.bias.")]
KeyFileOpt = Annotated[Path | None, typer.Option(
    "--key-file", dir_okay=False, help="Secret key file (>= 16 bytes): the same value gets the same surrogate or "
                                       "placeholder code in every note and run. Default: redact.key_file.")]
MappingOpt = Annotated[Path | None, typer.Option(
    "--mapping", dir_okay=False, help="Write the mapping (original values; what --restore needs) to this file, mode "
                                      "0600. Keep it apart from the output. With --restore: read it.")]
RestoreOpt = Annotated[bool, typer.Option(
    "--restore", help="Give back the original notes of a redacted JSONL --input from its --mapping.")]


@known_errors
def redact(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model: ModelOpt = None,
    input_: Annotated[str | None, input_option("Input file (default: stdin), or a table: NOTES.parquet.")] = None,
    output: Annotated[str | None, output_option("Output JSONL file (default: stdout), or OUT.parquet.")] = None,
    mode: ModeOpt = None,
    bias: BiasOpt = None,
    key_file: KeyFileOpt = None,
    mapping: MappingOpt = None,
    restore: RestoreOpt = False,
    device: Annotated[Device | None, device_option("Default: infer.device.")] = None,
    precision: Annotated[Precision | None, precision_option("Default: infer.precision.")] = None,
    backend: Annotated[Backend | None, backend_option("torch or onnx (pip install 'nerkd\\[onnx]'). Default: "
                                                      "infer.backend.")] = None,
    threads: ThreadsOpt = None,
    engine: EngineOpt = RunEngine.local,
    master: MasterOpt = None,
    id_column: IdColumnOpt = None,
    text_column: TextColumnOpt = None,
    no_verify: NoVerifyOpt = False,
) -> None:
    """Pseudonymise French notes: names, places and organisations (the model) and identifiers (rules: phones,
    e-mails, URLs, NIR, IBAN, SIREN/SIRET, dates, redact.patterns) replaced, the same value the same way in a note.

    Input as for nerkd infer (plain text, one note per line, or JSONL with "text" and an optional "id"); output
    lines are {"id"?, "text", "replacements": [{"start", "end", "label", "source"}]} with offsets in the redacted
    text, one per input line. The original text is never written to the output nor logged. With --mapping, the
    original values go to a file of their own (mode 0600), and nerkd redact --restore --input REDACTED.jsonl
    --mapping FILE gives the notes back, byte for byte. It reduces, it does not remove, the risk of
    re-identification: check a sample by hand (README "Pseudonymise your notes").

    \b
    Example:
      nerkd redact --input data/texts.txt --output artifacts/placeholders.jsonl
      nerkd redact --mode surrogate -i data/texts.txt -o artifacts/fake.jsonl
      nerkd redact --mapping map.jsonl -i data/texts.txt -o artifacts/kept.jsonl
    """
    source = Path(input_) if input_ is not None else sys.stdin.buffer
    target = Path(output) if output is not None else sys.stdout.buffer
    if restore:
        _restore(source, target, mapping, Path(output) if output is not None else None)
        return
    from nerkd.stages.infer import resolve_model
    from nerkd.stages.redact import RedactJob, run_redact

    settings, project = resolve(config, set_, no_verify=no_verify)
    ref = resolve_model(model, project, settings.paths.artifacts, purpose="redact with")
    section = settings.redact.model_copy(update={k: v.value if isinstance(v, Enum) else v for k, v in
                                                 {"mode": mode, "bias": bias}.items() if v is not None})
    infer = settings.infer.model_copy(update={k: v.value for k, v in
                                              {"device": device, "precision": precision, "backend": backend}.items()
                                              if v is not None})
    table = TableArgs(input_, output, id_column, text_column, None, "mean", threads, master, True, key_file)
    if _table(engine, mapping, table, ref, settings.model_copy(update={"redact": section, "infer": infer})):
        return
    job = RedactJob(source, target, mapping=mapping, key_file=key_file, threads=threads)
    _summary(run_redact(ref, job, section, infer, max_length=settings.data.max_length, stride=settings.data.stride),
             output)


def _table(engine: RunEngine, mapping: Path | None, table: TableArgs, ref: str | Path, settings: Settings) -> bool:
    """A Parquet or Spark run (:mod:`nerkd.cli.tables`); they write no mapping."""
    from nerkd.stages.parquet import is_parquet

    if mapping is not None and (engine is RunEngine.spark or is_parquet(table.input) or is_parquet(table.output)):
        raise NerkdError("--mapping: not with Parquet or --engine spark (they write no mapping); drop --mapping")
    return run_table(engine, table, ref, settings, task="redact")


def _restore(source, target, mapping: Path | None, output: Path | None) -> None:
    from nerkd.stages.redact import run_restore
    from nerkd.ui import log

    if mapping is None:
        raise NerkdError("--restore needs --mapping FILE (the mapping written by nerkd redact --mapping)")
    run = run_restore(source, target, mapping)
    log(f"redact --restore: {run.docs} notes, {run.restored} replacements put back"
        f"{f'; wrote {output}' if output is not None else ''}")


def _summary(run: RedactRun, output: str | None) -> None:
    """The run's last lines on stderr: counts per label and source, what was written where."""
    from nerkd.ui import log, warn

    per = ", ".join(f"{label} {n} ({source})" for (label, source), n in sorted(run.counts.items()))
    log(f"redact: {run.stats.docs} notes ({run.stats.empty} empty), {run.replacements} replacements"
        f"{': ' + per if per else ''}; mode {run.mode}, bias {run.bias:g}{', keyed' if run.keyed else ''}, "
        f"{run.stats.seconds:.1f} s")
    if output is not None:
        log(f"redact: wrote {run.stats.docs} lines to {output}")
    if run.mapping:
        log(f"redact: mapping in {run.mapping} (mode 0600): it holds the original values, keep it apart")
    for level, message in run.notes:
        (warn if level == "warning" else log)(message)
