"""The one place that imports pyroute2 (the project's netlink library, see net/kernel.py).

pyroute2 0.9.7 knows the seg6 encapsulation modes inline and encap; the reduced mode
(SEG6_IPTUN_MODE_ENCAP_RED = 3 in linux/seg6_iptunnel.h, `encap.red` in iproute2: one
segment gives plain IPv6-in-IPv6 without an SRH) is added to its mode table here.
"""
from __future__ import annotations

try:
    from pyroute2 import IPRoute
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
