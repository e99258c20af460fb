from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from nerkd.cli.common import ConfigOpt, NoVerifyOpt, OverwriteOpt, SetOpt, model_option, output_option, resolve
from nerkd.cli.errors import known_errors
from nerkd.errors import SettingsError

ModelOpt = Annotated[str | None, model_option("Model folder (default: the last distill output).")]
RateOpt = Annotated[float | None, typer.Option("--rate", "-r", help="Share of all heads to remove, 0 <= R < 1 "
                                                                     "(default: prune.rate, or prune.per_layer).")]
OutputOpt = Annotated[Path | None, output_option("Output folder (default: artifacts/pruned).", file_okay=False)]


@known_errors
def prune(model: ModelOpt = None, rate: RateOpt = None, output: OutputOpt = None, overwrite: OverwriteOpt = False,
          config: ConfigOpt = None, set_: SetOpt = None, no_verify: NoVerifyOpt = False) -> None:
    """Remove the least important attention heads (Michel et al. 2019).

    Heads are scored by gradient importance on gold data (data.dev, else data.train). The lowest
    share (--rate, or prune.per_layer counts) is sliced out: fewer parameters, faster inference.
    Writes the model, head_importance.json and settings.yaml; prints a layers x heads table.

    \b
    Example:
      nerkd prune --model artifacts/student --rate 0.25 -o artifacts/pruned_25
    """
    settings, project = resolve(config, set_, no_verify=no_verify)   # settings errors before torch is imported
    from nerkd.cli.render import LEGEND, head_table
    from nerkd.stages.prune import run_prune
    from nerkd.ui import log, out

    if rate is not None:
        try:
            settings.prune.rate = rate
        except ValidationError:
            raise SettingsError(f"--rate {rate}: must be >= 0 and < 1") from None
        if settings.prune.per_layer:
            log("--rate given: prune.per_layer is ignored")
            settings.prune.per_layer = None
    if model is None:
        found = project.default_input("prune", settings.paths.artifacts)
        if found is None:
            raise SettingsError("no model to prune: pass --model DIR or run nerkd distill first")
        model = str(found)
        log(f"model: {model} (last distill output)")
    target = output if output is not None else project.default_output("prune", settings.paths.artifacts)
    result = run_prune(settings, model, target, overwrite=overwrite)
    project.remember_output("prune", target)
    r = result.report
    caption = (f"{result.selection.mode}\n"
               f"parameters {r['params_before']:,} -> {r['params_after']:,} "
               f"({_change(r['params_before'], r['params_after'])}); heads {r['heads_before']} -> {r['heads_after']}; "
               f"attention MACs/128 tokens {_change(r['attention_macs_128_before'], r['attention_macs_128_after'])}\n"
               f"{LEGEND}")
    title = "head importance (" + ("normalised per layer" if r["normalize"] else "raw") + ")"
    out.print(head_table(result.grid, result.pruned, title=title, caption=caption))
    removed = ", ".join(f"L{layer}H{head}" for layer, head in result.pruned) or "none"
    out.print(f"removed: {removed}")
    out.print(f"saved: {target}")


def _change(before: int, after: int) -> str:
    return f"{100 * (after - before) / before:+.1f}%" if before else "n/a"
