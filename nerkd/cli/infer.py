from __future__ import annotations

from nerkd.cli.common import ConfigOpt, SetOpt
from nerkd.cli.errors import known_errors
from nerkd.errors import NerkdError


@known_errors
def infer(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """(not built yet: arrives with issue #5)

    Example: nerkd infer --config configs/quickstart.yaml
    """
    raise NerkdError("nerkd infer is not built yet (issue #5)")
