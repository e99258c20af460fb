from __future__ import annotations

from nerkd.cli.common import ConfigOpt, SetOpt
from nerkd.cli.errors import known_errors
from nerkd.errors import NerkdError


@known_errors
def bench(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """(not built yet: arrives with issue #5)

    Example: nerkd bench --config configs/quickstart.yaml
    """
    raise NerkdError("nerkd bench is not built yet (issue #5)")
