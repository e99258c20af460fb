from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from nerkd.cli.common import ConfigOpt, SetOpt, resolve
from nerkd.cli.errors import known_errors

if TYPE_CHECKING:  # nerkd.stages.validate imports torch: not for --help
    from nerkd.stages.validate import ValidateReport

_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


@known_errors
def validate(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Pre-flight check of settings, data, teacher and labels before you pay for a GPU.

    Reads every data split, the teacher's config and labels, shows how the teacher's labels map
    onto the data's and estimates the GPU memory of a training step. Exits 0 when the setup is
    ready, 1 when it is not.

    \b
    Example:
      nerkd validate --config configs/quickstart.yaml
    """
    from rich.markup import escape

    from nerkd.stages.validate import run_validate
    from nerkd.ui import err

    settings, project = resolve(config, set_)
    cfg = project.config_path(config)
    report = run_validate(settings, str(cfg) if cfg else None)
    render(report)
    if not report.ready:
        for check in report.checks:
            if check.status == "fail":
                err.print(f"[bold red]error:[/] {escape(check.detail)}", soft_wrap=True)
        raise typer.Exit(1)


def render(report: ValidateReport) -> None:
    from rich.table import Table
    from rich.text import Text

    from nerkd.ui import out

    for sp in report.splits:
        out.print(Text(f"{sp.name}: {sp.path}", style="italic"), soft_wrap=True)   # a path on one line, whole
        table = Table()
        table.add_column("tag")
        table.add_column("count", justify="right")
        table.add_column("share", justify="right")
        total = sum(sp.read.tags.values()) or 1
        for tag, n in sorted(sp.read.tags.items(), key=lambda kv: (kv[0] != "O", kv[0])):
            table.add_row(tag, str(n), f"{100 * n / total:.1f}%")
        out.print(table)
    if report.mapping is not None and report.teacher_space and report.data_space:
        table = Table(title="teacher -> data label mapping (shared space for distillation)", title_justify="left")
        for col in ("teacher labels", "data labels", "shared"):
            table.add_column(col)
        for row in report.mapping.describe(report.teacher_space, report.data_space):
            table.add_row(*row)
        out.print(table)
    table = Table(title="nerkd validate", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        table.add_row(c.name, _STYLE[c.status], c.detail)
    out.print(table)
    verdict = "[bold green]ready[/]" if report.ready else "[bold red]not ready[/]"
    out.print(f"{verdict}: {sum(c.status == 'fail' for c in report.checks)} failed, "
              f"{sum(c.status == 'warn' for c in report.checks)} warnings")
