"""The ``nerkd`` command: seven subcommands over one settings model.

Printing help imports no torch (nor transformers): command modules import their engine inside
the command function.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from nerkd import __version__
from nerkd.cli import bench, distill, export, finetune, infer, prune, redact, report, select, serve, validate
from nerkd.cli.errors import set_debug, setting_hint

HELP_WIDTH = 100       # columns of help off a terminal (a pipe, a file), at least
_BRACKET = re.compile(r"(?<!\\)\[")


def markup_safe(text: str | None) -> str | None:
    """Help text as rich prints it: every ``[`` literal (rich takes ``[onnx]`` or ``[[start, end]]`` for markup
    tags and drops them); an already escaped ``\\[`` stays as it is."""
    return _BRACKET.sub(r"\\[", text) if text else text


def _tidy_params(command, ctx) -> None:
    """Flags show no type (Typer >= 0.28 shows ``<bool>``, even for --help); a repeatable option shows its
    element's type (``<str>``, not ``<list[str]>``), a bounded number its type (``<int> [x>=1]``, not ``<int
    range> [x>=1]``); help texts are markup-safe (:func:`markup_safe`)."""
    for param in command.get_params(ctx):
        param.help = markup_safe(getattr(param, "help", None))
        if param.metavar is not None or not hasattr(param, "display_type_rich"):
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
            continue
        shown = param.display_type_rich(ctx) or ""
        tidy = re.sub(r"^<list\[(.*)\]>$", r"<\1>", shown).replace(" range>", ">")
        if tidy != shown:
            param.metavar = tidy


@contextlib.contextmanager
def _help_width():
    """Off a terminal, help is :data:`HELP_WIDTH` columns wide or more (``COLUMNS`` when wider), not rich's 80,
    which squeezed option descriptions into ~20 columns and cut long words; ``TERMINAL_WIDTH`` still rules."""
    from typer import rich_utils

    before = rich_utils.MAX_WIDTH
    try:
        terminal = sys.stdout.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if before is None and not terminal:
        columns = os.environ.get("COLUMNS", "")
        rich_utils.MAX_WIDTH = max(HELP_WIDTH, int(columns) if columns.isdigit() else 0)
    try:
        yield
    finally:
        rich_utils.MAX_WIDTH = before


def _choice_of_another(command, ctx, param, given: list[str]) -> str:
    """`` (text is a choice of --input-format: --input-format text)`` when the value ``param`` refused is one."""
    values = [b for a, b in zip(given, given[1:], strict=False) if a in param.opts]
    values += [x.partition("=")[2] for x in given if x.partition("=")[0] in param.opts]
    for value in values:
        for other in command.get_params(ctx):
            choices = getattr(getattr(other, "type_descriptor", None), "choices", None) or ()
            if other is not param and other.opts and value in {str(getattr(c, "value", c)) for c in choices}:
                return f" ({value} is a choice of {other.opts[0]}: {other.opts[0]} {value})"
    return ""


class Command(TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        _tidy_params(self, ctx)
        with _help_width():
            return super().format_help(ctx, formatter)

    def parse_args(self, ctx, args):
        """An option the command does not have but a setting does (``distill --epochs 3``) gets the hint
        ``--set train.epochs=3``; a value that is a choice of another option (``infer --format text``) names
        that option."""
        given = list(args)    # the parser consumes the list
        try:
            return super().parse_args(ctx, args)
        except Exception as e:   # typer's click raises NoSuchOption or BadParameter (usage errors, exit 2)
            if type(e).__name__ == "NoSuchOption" and isinstance(getattr(e, "option_name", None), str):
                e.message += setting_hint(e.option_name, given, ctx.info_name)
            elif type(e).__name__ == "BadParameter" and getattr(e, "param", None) is not None:
                e.message += _choice_of_another(self, ctx, e.param, given)
            raise


class Group(TyperGroup):
    def format_help(self, ctx, formatter) -> None:
        _tidy_params(self, ctx)
        with _help_width():
            return super().format_help(ctx, formatter)


def help_text(fn) -> str:
    """A command's docstring as help: each paragraph on one line, wrapped by the help to the terminal.

    Typer keeps single line breaks, so a docstring wrapped for the source would print as broken
    lines. A paragraph starting with ``\\b`` keeps its lines (the marker is dropped).
    """
    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    return markup_safe("\n\n".join(p[1:].strip("\n") if p.startswith("\b") else " ".join(p.split())
                                   for p in paragraphs))


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
