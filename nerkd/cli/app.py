"""The ``nerkd`` command: seven subcommands over one settings model."""

from __future__ import annotations

import typer

from nerkd import __version__
from nerkd.cli import bench, distill, finetune, infer, prune, report, validate
from nerkd.cli.errors import set_debug

app = typer.Typer(
    name="nerkd",
    help="Make a French NER transformer small and fast: distil, prune, fine-tune, infer, bench, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nerkd {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks (or set NERKD_DEBUG=1)."),
) -> None:
    set_debug(debug)


app.command("validate")(validate.validate)
app.command("distill")(distill.distill)
app.command("prune")(prune.prune)
app.command("finetune")(finetune.finetune)
app.command("infer")(infer.infer)
app.command("bench")(bench.bench)
app.command("report")(report.report)


def main() -> None:
    app()
