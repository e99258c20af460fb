from __future__ import annotations

from pathlib import Path
from typing import Annotated

from nerkd.cli.common import (
    ConfigOpt,
    NoVerifyOpt,
    OverwriteOpt,
    ResumeOpt,
    SetOpt,
    TeacherOpt,
    output_option,
    resolve,
)
from nerkd.cli.errors import known_errors

OutputOpt = Annotated[Path | None, output_option("Run folder for the student (default: <artifacts>/student).",
                                                 file_okay=False)]


@known_errors
def distill(config: ConfigOpt = None, set_: SetOpt = None, teacher: TeacherOpt = None, output: OutputOpt = None,
            resume: ResumeOpt = False, overwrite: OverwriteOpt = False,
            no_verify: NoVerifyOpt = False) -> None:
    """Distil the teacher into a smaller student (CE + KD + hidden-state + CRF losses).

    The student keeps student.num_layers of the teacher's layers (student.layers, spread evenly by
    default) and the data's labels; the teacher's labels are mapped onto them by entity type (IO ->
    BIO works). Writes the best student, settings.yaml, labels.json, metrics.jsonl and checkpoints/
    to the run folder. Multi-GPU: torchrun --nproc_per_node N -m nerkd distill ...

    \b
    Example (a second student, with a softer teacher than the quickstart's):
      nerkd distill --set distill.temperature=4 --output artifacts/student_t4
    """
    settings, project = resolve(config, set_, no_verify=no_verify)
    if teacher is None:   # teacher.model: a missing local folder is said before torch is imported
        from nerkd.models.hub import check_local

        check_local(settings.teacher.model, "teacher", "teacher.model")
    from nerkd.stages.distill import run_distill

    result = run_distill(settings, project, teacher, output, resume=resume, overwrite=overwrite)
    _render(result)


def _render(result) -> None:
    from nerkd.cli.render import training_result
    from nerkd.ui import is_main_rank, out

    if is_main_rank():
        for part in training_result(result, "distill"):
            out.print(part)
