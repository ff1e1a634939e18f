"""The one place that imports pyroute2 (the testbed controller's netlink library;
agents do not load it, see net/kernel.py)."""
from __future__ import annotations

try:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
except ImportError:  # pragma: no cover - a broken installation
    from mip6bench.errors import EnvironmentProblem

    raise EnvironmentProblem("pyroute2 is not installed", "run `make setup`") from None

__all__ = ["IPRoute", "NetlinkError"]
