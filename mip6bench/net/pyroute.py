"""The one place that imports pyroute2 (the project's netlink library, see net/kernel.py).

pyroute2 0.9.7 knows the seg6 encapsulation modes inline and encap; the reduced mode
(SEG6_IPTUN_MODE_ENCAP_RED = 3 in linux/seg6_iptunnel.h, `encap.red` in iproute2: one
segment gives plain IPv6-in-IPv6 without an SRH) is added to its mode table here.
"""
from __future__ import annotations

import importlib.util
import os
import sys


def _enter_package_lazily() -> None:
    """pyroute2's __init__ imports every module the library has (NDB with sqlite3, IPDB,
    conntrack, nl80211, devlink, plan9, ...: about 6 MB of memory and 40 ms per
    process); the project uses rtnetlink and generic netlink only. So the package is
    registered without running its __init__, and its submodules import as usual; the
    first other name asked of the package itself (`from pyroute2 import NDB`) runs the
    __init__ then, so every public name stays available."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        return                                       # not installed: the import below says so
    package = importlib.util.module_from_spec(spec)
    where = list(spec.submodule_search_locations)

    def __getattr__(name: str):
        if name.startswith("__") or any(os.path.isdir(os.path.join(d, name)) or
                                        os.path.exists(os.path.join(d, name + ".py")) for d in where):
            raise AttributeError(name)               # a submodule: the import system loads it
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)             # the whole package, once
        return getattr(package, name)

    package.__getattr__ = __getattr__
    sys.modules["pyroute2"] = package


_enter_package_lazily()

try:
    from pyroute2.iproute import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
except ImportError:  # pragma: no cover - a broken installation
    from mip6bench.errors import EnvironmentProblem

    raise EnvironmentProblem("pyroute2 is not installed", "run `make setup`") from None

SEG6_IPTUN_MODE_ENCAP_RED = 3
_srh = rtmsg.seg6_encap_info.ipv6_sr_hdr
_srh.encapmodes.setdefault("encap.red", SEG6_IPTUN_MODE_ENCAP_RED)
_srh.r_encapmodes.setdefault(SEG6_IPTUN_MODE_ENCAP_RED, "encap.red")

__all__ = ["IPRoute", "NetlinkError"]
