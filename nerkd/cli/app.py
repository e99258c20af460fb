"""The ``nerkd`` command: seven subcommands over one settings model.

Printing help imports no torch (nor transformers): command modules import their engine inside
the command function.
"""

from __future__ import annotations

import inspect

import typer
from typer.core import TyperCommand, TyperGroup

from nerkd import __version__
from nerkd.cli import bench, distill, export, finetune, infer, prune, redact, report, select, serve, validate
from nerkd.cli.errors import set_debug, setting_hint


def _hide_flag_types(command, ctx) -> None:
    """Typer >= 0.28 shows ``<bool>`` as the type of every flag (even --help): flags take no value."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class Command(TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        _hide_flag_types(self, ctx)
        return super().format_help(ctx, formatter)

    def parse_args(self, ctx, args):
        """An option the command does not have but a setting does (``distill --epochs 3``) gets the hint
        ``--set train.epochs=3``."""
        given = list(args)    # the parser consumes the list
        try:
            return super().parse_args(ctx, args)
        except Exception as e:   # typer's click raises NoSuchOption (a usage error, exit 2)
            if type(e).__name__ == "NoSuchOption" and isinstance(getattr(e, "option_name", None), str):
                e.message += setting_hint(e.option_name, given, ctx.info_name)
            raise


class Group(TyperGroup):
    def format_help(self, ctx, formatter) -> None:
        _hide_flag_types(self, ctx)
        return super().format_help(ctx, formatter)


def help_text(fn) -> str:
    """A command's docstring as help: each paragraph on one line, wrapped by the help to the terminal.

    Typer keeps single line breaks, so a docstring wrapped for the source would print as broken
    lines. A paragraph starting with ``\\b`` keeps its lines (the marker is dropped).
    """
    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    return "\n\n".join(p[1:].strip("\n") if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


app = typer.Typer(
    name="nerkd",
    cls=Group,
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
    from nerkd.ui import install

    install()  # engines' log lines and progress bars on stderr (rank 0 only)


COMMANDS = {
    "validate": validate.validate,
    "distill": distill.distill,
    "prune": prune.prune,
    "finetune": finetune.finetune,
    "infer": infer.infer,
    "redact": redact.redact,
    "select": select.select,
    "bench": bench.bench,
    "report": report.report,
    "export": export.export,
    "serve": serve.serve,
}
for _name, _fn in COMMANDS.items():
    app.command(_name, cls=Command, help=help_text(_fn))(_fn)


def main() -> None:
    app()
