"""The one place that imports pyroute2.

`import pyroute2` executes the package __init__, which loads NDB, IPDB, conntrack,
WireGuard and more: about 100 ms and 13 MB that an agent never uses. We load only the
rtnetlink modules by registering a bare package object for `pyroute2` first (its
submodules import each other by absolute name, so they work without the __init__).

pyroute2 0.9 has no name for the seg6 reduced encapsulation mode (SEG6_IPTUN_MODE_ENCAP_RED,
value 3 in linux/seg6_iptunnel.h), which gives plain IPv6-in-IPv6 without an SRH when
there is one segment; we add it to its mode table.
"""
from __future__ import annotations

import importlib.util
import sys
import types

SEG6_IPTUN_MODE_ENCAP_RED = 3


def _load():
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            from mip6bench.errors import EnvironmentProblem

            raise EnvironmentProblem("pyroute2 is not installed", "run `make setup`")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["pyroute2"] = package
    from pyroute2.iproute.linux import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.rtnl.rtmsg import rtmsg_base

    hdr = rtmsg_base.seg6_encap_info.ipv6_sr_hdr
    if "encap.red" not in hdr.encapmodes:
        hdr.encapmodes["encap.red"] = SEG6_IPTUN_MODE_ENCAP_RED
        hdr.r_encapmodes[SEG6_IPTUN_MODE_ENCAP_RED] = "encap.red"
    return IPRoute, NetlinkError


IPRoute, NetlinkError = _load()
