"""The one place that imports pyroute2 (the project's netlink library, see net/kernel.py):
its synchronous IPRoute for dumps, and for requests its message classes and the request
processing of its RTNL API (keyword arguments to a message), which net/kernel.py sends on
a socket of its own.

pyroute2 0.9.7 knows the seg6 encapsulation modes inline and encap; the reduced mode
(SEG6_IPTUN_MODE_ENCAP_RED = 3 in linux/seg6_iptunnel.h, `encap.red` in iproute2: one
segment gives plain IPv6-in-IPv6 without an SRH) is added to its mode table here.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import socket
import sys
import threading


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


# Modules pyroute2 imports unconditionally that no agent runs: every tc qdisc, classifier
# and action plugin (pyroute2.netlink.rtnl.tcmsg imports them all for its `plugins` table)
# and difflib (unittest.case's, for assertion messages; iprsocket.py imports unittest for
# its mock). They are imported lazily (the standard library's importlib.util.LazyLoader):
# each is bound where it is imported and runs on first use, so tc messages still decode
# with their plugins. About 0.7 MB per process (README "Budgets").
# Only modules that are imported once, by name, and not touched at import time can be
# deferred this way: a second `import x` of a lazy module runs it (the import statement
# reads its __spec__), and so does any attribute, such as the `mock.Mock()` pyroute2's
# iprsocket.py makes when imported, which is why unittest itself cannot be deferred.
# (Python 3.11's lazy modules take no lock when first touched: none of these is used by
# the project, on any thread; a tc message decoded for the first time on two threads at
# once could see its plugin half-run.)
LAZY_MODULES = ("pyroute2.netlink.rtnl.tcmsg.", "difflib")


class _LazyFinder:
    """A meta path finder (the protocol is find_spec alone; importlib.abc's base class
    would import importlib.resources): LAZY_MODULES (names, or prefixes ending in '.')
    found as the import system would, with their loaders wrapped in LazyLoader.
    Installed only while pyroute2 is imported."""

    def find_spec(self, name, path, target=None):
        if not any(name == m or (m.endswith(".") and name.startswith(m)) for m in LAZY_MODULES):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or spec.submodule_search_locations is not None:
            return spec                                  # packages load as usual
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


_enter_package_lazily()
_lazy_finder = _LazyFinder()
sys.meta_path.insert(0, _lazy_finder)

try:
    from pyroute2.iproute import IPRoute
    from pyroute2.iproute.linux import get_arguments_processor
    from pyroute2.netlink import NLMSG_ERROR
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nlsocket import NetlinkRequest
    from pyroute2.netlink.rtnl import (RTM_DELADDR, RTM_DELLINK, RTM_DELNEIGH, RTM_DELROUTE, RTM_DELRULE,
                                       RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE,
                                       RTM_NEWRULE)
    from pyroute2.netlink.rtnl.fibmsg import fibmsg
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.ndmsg import ndmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
except ImportError:  # pragma: no cover - a broken installation
    from mip6bench.errors import EnvironmentProblem

    raise EnvironmentProblem("pyroute2 is not installed", "run `make setup`") from None
finally:
    sys.meta_path.remove(_lazy_finder)

SEG6_IPTUN_MODE_ENCAP_RED = 3
_srh = rtmsg.seg6_encap_info.ipv6_sr_hdr
_srh.encapmodes.setdefault("encap.red", SEG6_IPTUN_MODE_ENCAP_RED)
_srh.r_encapmodes.setdefault(SEG6_IPTUN_MODE_ENCAP_RED, "encap.red")

# What pyroute2's RTNL_API methods send for the commands the project uses: (kind,
# command) -> (message class, message type, NetlinkRequest flag mode), as in
# pyroute2.iproute.linux.RTNL_API.{link,addr,route,rule,neigh}.
COMMANDS = {
    ("link", "add"): (ifinfmsg, RTM_NEWLINK, "create"),
    ("link", "set"): (ifinfmsg, RTM_NEWLINK, "req"),
    ("link", "del"): (ifinfmsg, RTM_DELLINK, "req"),
    ("link", "get"): (ifinfmsg, RTM_GETLINK, "get"),
    ("addr", "add"): (ifaddrmsg, RTM_NEWADDR, "create"),
    ("addr", "replace"): (ifaddrmsg, RTM_NEWADDR, "replace"),
    ("addr", "del"): (ifaddrmsg, RTM_DELADDR, "req"),
    ("route", "add"): (rtmsg, RTM_NEWROUTE, "create"),
    ("route", "replace"): (rtmsg, RTM_NEWROUTE, "replace"),
    ("route", "del"): (rtmsg, RTM_DELROUTE, "req"),
    ("rule", "add"): (fibmsg, RTM_NEWRULE, "create"),
    ("rule", "del"): (fibmsg, RTM_DELRULE, "req"),
    ("neigh", "replace"): (ndmsg, RTM_NEWNEIGH, "replace"),
    ("neigh", "del"): (ndmsg, RTM_DELNEIGH, "req"),
}


RTM_NEWLINK_REPLY = RTM_NEWLINK      # what a link "get" is answered with


def compile_request(kind: str, command: str, request: dict, seq: int = 0) -> bytes:
    """The netlink message pyroute2's IPRoute would send for `kind(command, **request)`
    (its own request processing and encoding; the same bytes as its IPBatch compiler
    gives, unit-tested), without its event loop: sendable on any socket, from any thread."""
    msg_class, msg_type, mode = COMMANDS[(kind, command)]
    kwarg = dict(request)
    parameters = None
    if kind == "route":
        parameters = {"strict_check": False}
        if command in ("add", "replace"):
            kwarg["proto"] = kwarg.get("proto", "static") or "static"
            kwarg["type"] = kwarg.get("type", "unicast") or "unicast"
    processor = get_arguments_processor(kind, command, kwarg, parameters)
    msg = msg_class()
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = NetlinkRequest.flags[mode]
    msg["header"]["sequence_number"] = seq
    for field in msg.fields:
        msg[field[0]] = processor.get_value(field[0], default=0, mode="field")
    for key, value in processor.items():
        nla = msg_class.name2nla(key)
        if msg.valid_nla(nla) and value is not None:
            msg["attrs"].append([nla, value])
    if "attrs" in processor:
        msg["attrs"].extend(processor["attrs"])
    msg.encode()
    return bytes(msg.data)


# Requests of one shape differ only in their addresses (a home agent's proxy entry and
# route per home address): pyroute2's request processing took ~0.35 ms a request, most
# of a registration's CPU at the HA (2,000 MNs registering). compile_request_cached
# compiles a shape once, with stand-in addresses, and patches each request's address
# bytes and sequence number into a copy. A shape is only kept when every stand-in's
# 16 bytes occur exactly once in the message (else the request is compiled in full);
# the cached bytes are those compile_request gives (unit-tested).
_TEMPLATES: dict = {}
_TEMPLATES_LOCK = threading.Lock()
TEMPLATE_CACHE = 256
_STAND_IN = "2001:db8:f00d:%x:5ca1:ab1e:c0de:%x"


def _address_fields(request: dict) -> list[tuple[str, bytes, str]]:
    """(key, the address's 16 bytes, '/len' or '') of the top-level IPv6 address values."""
    found = []
    for key, value in request.items():
        if isinstance(value, str) and ":" in value:
            address, _, plen = value.partition("/")
            try:
                packed = socket.inet_pton(socket.AF_INET6, address)
            except OSError:
                continue
            if any(packed):                       # "::" may be left out: part of the shape
                found.append((key, packed, "/" + plen if plen else ""))
    return found


def compile_request_cached(kind: str, command: str, request: dict, seq: int = 0) -> bytes:
    """compile_request's bytes, from a template per request shape (see above)."""
    fields = _address_fields(request)
    if not fields:
        return compile_request(kind, command, request, seq)
    shape = {k: v for k, v in request.items() if k not in {f[0] for f in fields}}
    if not all(v is None or isinstance(v, (int, float, str)) for v in shape.values()):
        # Nested values (a seg6 encap's segments: the care-of address) would make every
        # request a shape of its own: compiled in full, as before.
        return compile_request(kind, command, request, seq)
    key = (kind, command, tuple(sorted(shape.items())), tuple((f[0], f[2]) for f in fields))
    template = _TEMPLATES.get(key)
    if template is None:
        stand_ins = {f[0]: (_STAND_IN % (i + 1, i + 1)) + f[2] for i, f in enumerate(fields)}
        data = compile_request(kind, command, {**request, **stand_ins}, 0)
        offsets = []
        for i, f in enumerate(fields):
            packed = socket.inet_pton(socket.AF_INET6, _STAND_IN % (i + 1, i + 1))
            if data.count(packed) != 1:
                return compile_request(kind, command, request, seq)
            offsets.append(data.index(packed))
        template = (data, tuple(offsets))
        full = compile_request(kind, command, request, seq)
        if _patch(template, fields, seq) != full:     # a shape this does not fit
            return full
        with _TEMPLATES_LOCK:                         # Kernel objects on several threads
            if len(_TEMPLATES) >= TEMPLATE_CACHE:
                _TEMPLATES.pop(next(iter(_TEMPLATES)))
            _TEMPLATES[key] = template
    return _patch(template, fields, seq)


def _patch(template: tuple, fields: list, seq: int) -> bytes:
    data, offsets = template
    out = bytearray(data)
    for offset, f in zip(offsets, fields):
        out[offset:offset + 16] = f[1]
    out[8:12] = seq.to_bytes(4, sys.byteorder)       # nlmsghdr sequence number (host order)
    return bytes(out)


__all__ = ["COMMANDS", "IPRoute", "NLMSG_ERROR", "NetlinkError", "compile_request", "compile_request_cached",
           "RTM_NEWLINK_REPLY", "ifinfmsg"]
