from __future__ import annotations

from nerkd.cli.common import ConfigOpt, SetOpt
from nerkd.cli.errors import known_errors
from nerkd.errors import NerkdError


@known_errors
def distill(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """(not built yet: arrives with issue #3)

    Example: nerkd distill --config configs/quickstart.yaml
    """
    raise NerkdError("nerkd distill is not built yet (issue #3)")
