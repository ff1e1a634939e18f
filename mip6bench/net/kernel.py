"""Kernel networking state of one network namespace, as the testbed (the controller
process) configures it: links, bridges, addresses with a DAD mode, routes and sysctls,
on pyroute2; plus `wait_for`, an event wait on rtnetlink notifications.

Agents change the kernel at run time through mip6bench.net.tunnel.MobilityKernel
instead (iproute2 batches for writes, the small rtnetlink reader in net/rtnl.py for
reads): pyroute2 would add ~55 ms and 4-7 MB to every agent's start, against the
150 ms / 30 MB budget of an agent.

The request builders (`*_request`) are pure functions returning the keyword arguments
handed to pyroute2, so the exact netlink requests are unit-tested without root.
"""
from __future__ import annotations

import enum
import socket
from typing import Any

from mip6bench.net import netns as _netns

AF_INET6 = socket.AF_INET6
IFA_F_NODAD = 0x02
IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255


class DadMode(str, enum.Enum):
    """How a new IPv6 address goes through Duplicate Address Detection (RFC 4862)."""

    STANDARD = "standard"  # tentative until DAD completes (~1 s with default timers)
    OPTIMISTIC = "optimistic"  # usable at once, DAD runs in the background (RFC 4429)
    OFF = "off"  # no DAD at all

    @classmethod
    def parse(cls, value: "str | DadMode") -> "DadMode":
        try:
            return cls(value)
        except ValueError:
            from mip6bench.errors import ParameterError

            raise ParameterError(
                f"unknown DAD mode {value!r}", "use one of: standard, optimistic, off"
            ) from None


def address_flags(dad: DadMode) -> int:
    return {DadMode.STANDARD: 0, DadMode.OPTIMISTIC: IFA_F_OPTIMISTIC, DadMode.OFF: IFA_F_NODAD}[dad]


def address_request(index: int, address: str, prefixlen: int, dad: DadMode = DadMode.OFF,
                    preferred: int | None = None, valid: int | None = None) -> dict[str, Any]:
    req: dict[str, Any] = dict(index=index, family=AF_INET6, address=address,
                               prefixlen=prefixlen, flags=address_flags(dad))
    if preferred is not None or valid is not None:
        req["IFA_CACHEINFO"] = {
            "ifa_preferred": 0xFFFFFFFF if preferred is None else preferred,
            "ifa_valid": 0xFFFFFFFF if valid is None else valid,
            "cstamp": 0, "tstamp": 0,
        }
    return req


def route_request(dst: str, *, gateway: str | None = None, oif: int | None = None,
                  table: int | None = None, metric: int | None = None, src: str | None = None,
                  encap: dict[str, Any] | None = None) -> dict[str, Any]:
    """A route; `dst` is 'default' or 'prefix/len'."""
    req: dict[str, Any] = dict(family=AF_INET6, dst="::/0" if dst == "default" else dst)
    if "/" not in req["dst"]:
        req["dst"] += "/128"
    for key, value in (("gateway", gateway), ("oif", oif), ("table", table),
                       ("priority", metric), ("prefsrc", src), ("encap", encap)):
        if value is not None:
            req[key] = value
    return req


class Kernel:
    """Networking state of one namespace (None: this process's)."""

    def __init__(self, netns: int | str | None = None):
        from mip6bench.net.pyroute import IPRoute, NetlinkError

        self.netns = netns
        self.NetlinkError = NetlinkError
        # The socket is opened in the target namespace by a thread that joined it
        # (pyroute2's own netns support forks a helper process, which can hang when the
        # caller has other threads).
        self._ipr = IPRoute(use_socket=rtnl_socket(netns)) if netns is not None else IPRoute()
        self._index: dict[str, int] = {}

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # links
    def ifindex(self, name: str) -> int:
        if name not in self._index:
            found = self._ipr.link_lookup(ifname=name)
            if not found:
                raise LookupError(f"no interface {name!r} in namespace {self.netns}")
            self._index[name] = found[0]
        return self._index[name]

    def learn_indexes(self) -> None:
        """Every interface's index from one dump (ifindex() looks a name up with a dump
        of all links: on a LAN with a thousand ports that is a thousand dumps)."""
        for msg in self._ipr.get_links():
            self._index[msg.get_attr("IFLA_IFNAME")] = msg["index"]

    def links(self) -> list[dict[str, Any]]:
        out = []
        for msg in self._ipr.get_links():
            out.append({
                "name": msg.get_attr("IFLA_IFNAME"),
                "index": msg["index"],
                "up": bool(msg["flags"] & 1),
                "carrier": bool(msg.get_attr("IFLA_CARRIER")),
                "mac": msg.get_attr("IFLA_ADDRESS"),
                "kind": (msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""),
            })
        return out

    def set_link(self, name: str, *, up: bool | None = None, mac: str | None = None,
                 mtu: int | None = None, master: str | None = None) -> None:
        req: dict[str, Any] = {"index": self.ifindex(name)}
        if up is not None:
            req["state"] = "up" if up else "down"
        if mac is not None:
            req["address"] = mac
        if mtu is not None:
            req["mtu"] = mtu
        if master is not None:
            req["master"] = self.ifindex(master)
        self._ipr.link("set", **req)

    def add_bridge(self, name: str) -> None:
        self._ipr.link("add", ifname=name, kind="bridge", br_mcast_snooping=0)

    def delete_link(self, name: str) -> None:
        self._ipr.link("del", index=self.ifindex(name))
        self._index.pop(name, None)

    # addresses
    def add_address(self, ifname: str, address: str, prefixlen: int,
                    dad: DadMode = DadMode.OFF, replace: bool = False) -> None:
        dad = DadMode.parse(dad)
        if dad is DadMode.OPTIMISTIC:
            # The kernel honours IFA_F_OPTIMISTIC only where optimistic_dad is on.
            self.sysctl({f"net/ipv6/conf/{ifname}/optimistic_dad": 1})
        req = address_request(self.ifindex(ifname), address, prefixlen, dad)
        self._ipr.addr("replace" if replace else "add", **req)

    def del_address(self, ifname: str, address: str, prefixlen: int) -> None:
        self._ipr.addr("del", index=self.ifindex(ifname), family=AF_INET6,
                       address=address, prefixlen=prefixlen)

    def addresses(self, ifname: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"family": AF_INET6}
        if ifname is not None:
            kwargs["index"] = self.ifindex(ifname)
        out = []
        for msg in self._ipr.get_addr(**kwargs):
            flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
            out.append({
                "address": msg.get_attr("IFA_ADDRESS"),
                "prefixlen": msg["prefixlen"],
                "index": msg["index"],
                "scope": msg["scope"],
                "tentative": bool(flags & IFA_F_TENTATIVE),
                "optimistic": bool(flags & IFA_F_OPTIMISTIC),
                "dadfailed": bool(flags & IFA_F_DADFAILED),
            })
        return out

    # routes
    def add_route(self, dst: str, *, gateway: str | None = None, dev: str | None = None,
                  table: int | None = None, metric: int | None = None, src: str | None = None,
                  encap: dict[str, Any] | None = None, replace: bool = False) -> None:
        req = route_request(dst, gateway=gateway, oif=self.ifindex(dev) if dev else None,
                            table=table, metric=metric, src=src, encap=encap)
        self._ipr.route("replace" if replace else "add", **req)

    def del_route(self, dst: str, *, table: int | None = None, dev: str | None = None,
                  metric: int | None = None) -> None:
        req = route_request(dst, oif=self.ifindex(dev) if dev else None, table=table,
                            metric=metric)
        self._ipr.route("del", **req)

    def routes(self, table: int = RT_TABLE_MAIN) -> list[dict[str, Any]]:
        out = []
        for msg in self._ipr.get_routes(family=AF_INET6, table=table):
            out.append({
                "dst": f"{msg.get_attr('RTA_DST') or '::'}/{msg['dst_len']}",
                "gateway": msg.get_attr("RTA_GATEWAY"),
                "oif": msg.get_attr("RTA_OIF"),
                "table": msg.get_attr("RTA_TABLE"),
                "encap_type": msg.get_attr("RTA_ENCAP_TYPE"),
            })
        return out

    # sysctls (not netlink: /proc/sys resolved in the namespace)
    def sysctl(self, values: dict[str, str | int]) -> None:
        _netns.write_sysctls(self.netns, values)

    def read_sysctl(self, key: str) -> str:
        return _netns.read_sysctl(self.netns, key)


RTMGRP_LINK = 0x1
RTMGRP_IPV6_IFADDR = 0x100


def rtnl_socket(netns: int | str | None, groups: int = 0) -> socket.socket:
    """A NETLINK_ROUTE socket living in `netns`, subscribed to `groups` if given."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                          socket.NETLINK_ROUTE)
        if groups:
            s.bind((0, groups))
        return s

    return _netns.in_netns(netns, make)


def wait_for(netns: int | str | None, check, timeout: float, groups: int = RTMGRP_IPV6_IFADDR | RTMGRP_LINK):
    """Wait until check(kernel) returns a truthy value, re-checking on every rtnetlink
    notification of `groups` (address and link changes): an event wait, not a poll loop.
    Returns the value, or None at the deadline."""
    import time

    from mip6bench.fdwait import wait_readable
    from mip6bench.runtime.slowdown import scaled

    with Kernel(netns) as kernel:
        monitor = rtnl_socket(netns, groups)  # subscribed before checking: no lost wakeup
        monitor.setblocking(False)
        try:
            deadline = time.monotonic() + scaled(timeout)
            while True:
                value = check(kernel)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                readable = wait_readable(monitor, remaining)
                while readable:  # drain; the check above reads the state itself
                    try:
                        monitor.recv(1 << 16)
                    except BlockingIOError:
                        break
        finally:
            monitor.close()


def usable_address(kernel: Kernel, ifname: str, prefix: str) -> str | None:
    """A global address of `prefix` on ifname that can be used now (not tentative,
    or optimistic)."""
    import ipaddress

    net = ipaddress.ip_network(prefix)
    for a in kernel.addresses(ifname):
        if ipaddress.ip_address(a["address"]) in net and not a["dadfailed"] and \
                (not a["tentative"] or a["optimistic"]):
            return a["address"]
    return None
