"""The one netlink layer: kernel networking state of one network namespace, on pyroute2,
for the testbed (the controller, configuring nodes) and the agents (changing their own
namespace at run time) alike.

`Kernel` holds one rtnetlink socket (pyroute2's IPRoute) in its namespace and covers
links (bridges, ip6tnl tunnels via pyroute2's ip6tnl link kind, their endpoints changed
in place), addresses with a DAD mode, routes (plain, unreachable, local, and seg6 /
seg6local lightweight tunnels via pyroute2's encap support), policy rules, neighbour
proxy entries and the seg6 tunnel source (the SEG6 generic netlink family); sysctls are
/proc/sys files resolved in the namespace. Every request is a netlink message: no `ip`
subprocess anywhere, and a failure raises `KernelError`, an OSError carrying the
kernel's error code and naming the request (never parsed from text).

Reads are dumps (`links`, `addresses`, `routes`, `rules`). Events: `Monitor` is a
non-blocking rtnetlink socket subscribed to link and IPv6 address notifications, whose
datagrams `parse_events` turns into `LinkEvent` / `AddressEvent` with pyroute2's
decoder; agents put it on their loop (`loop.add_reader`), `wait_for` blocks on it.

Synchronous by design. Requests (every change, and looking an interface up by name) are
messages pyroute2 compiles (its request processing and encoding, `compile_request`)
that `Kernel` sends on a netlink socket of its own and whose acks it reads at once: no
event loop, ~0.05-0.2 ms of Python per request, so they may be made from any thread,
also one whose event loop is running (the HA changes a binding's tunnel on its loop,
before the Binding Ack leaves). `batch()` sends the requests made inside it as one
datagram (one round to the kernel, which answers each). Dumps go through pyroute2's
synchronous IPRoute, which runs a private event loop per call, so they must not be
made on a thread whose loop is running: agents make them (set-up, purge, teardown) on
their kernel worker thread (mip6bench.runtime.mobility.MobilityIO.kernel).

The request builders (`*_request`) are pure functions returning the keyword arguments
handed to pyroute2, so the exact requests are unit-tested without root.
"""
from __future__ import annotations

import contextlib
import enum
import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable

from mip6bench.net import netns as _netns

AF_INET6 = socket.AF_INET6
IFA_F_NODAD = 0x02
IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
NTF_PROXY = 0x08
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTN_UNICAST = 1
IPPROTO_IPV6 = 41
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1
IPV6_DEFAULT_TNL_ENCAP_LIMIT = 4
SEG6_IPTUN_MODE_ENCAP_RED = 3      # linux/seg6_iptunnel.h
RTMGRP_LINK = 0x1
RTMGRP_IPV6_IFADDR = 0x100
# Errors a deletion of something already gone answers with.
GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL})


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


class KernelError(OSError):
    """A netlink request failed: `errno` is the kernel's error code, `request` names
    what was asked (e.g. "route replace 2001:db8::/64 table 138")."""

    def __init__(self, code: int, request: str):
        super().__init__(code, os.strerror(code))
        self.request = request

    def __str__(self) -> str:
        return f"{self.request}: {self.strerror}"


# ---------------------------------------------------------------- request builders

def address_flags(dad: DadMode) -> int:
    return {DadMode.STANDARD: 0, DadMode.OPTIMISTIC: IFA_F_OPTIMISTIC, DadMode.OFF: IFA_F_NODAD}[dad]


def address_request(index: int, address: str, prefixlen: int, dad: DadMode = DadMode.OFF,
                    preferred: int | None = None, valid: int | None = None) -> dict[str, Any]:
    """An address on interface `index`: IPv6 with its DAD mode, or IPv4 (no DAD there;
    e.g. the VM server's ssh link)."""
    if ipaddress.ip_address(address).version == 4:
        req: dict[str, Any] = dict(index=index, family=socket.AF_INET, address=address,
                                   prefixlen=prefixlen)
    else:
        req = dict(index=index, family=AF_INET6, address=address, prefixlen=prefixlen,
                   flags=address_flags(dad))
    if preferred is not None or valid is not None:
        req["IFA_CACHEINFO"] = {
            "ifa_preferred": 0xFFFFFFFF if preferred is None else preferred,
            "ifa_valid": 0xFFFFFFFF if valid is None else valid,
            "cstamp": 0, "tstamp": 0,
        }
    return req


def seg6_encap(segment: str) -> dict[str, Any]:
    """IPv6-in-IPv6 toward `segment` with no SRH: seg6 encapsulation in reduced mode
    with one segment (next header 41 right after the outer header)."""
    return {"type": "seg6", "mode": "encap.red", "segs": [segment]}


def seg6local_dt6(table: int) -> dict[str, Any]:
    """Decapsulate and look the inner packet up in `table` (End.DT6)."""
    return {"type": "seg6local", "action": "End.DT6", "table": table}


def route_request(dst: str, *, gateway: str | None = None, oif: int | None = None,
                  table: int | None = None, metric: int | None = None, src: str | None = None,
                  encap: dict[str, Any] | None = None, kind: str | None = None) -> dict[str, Any]:
    """A route; `dst` is 'default', an address or 'prefix/len'; kind 'unreachable' or
    'local' for those route types (None: unicast)."""
    req: dict[str, Any] = dict(family=AF_INET6, dst="::/0" if dst == "default" else dst)
    if "/" not in req["dst"]:
        req["dst"] += "/128"
    for key, value in (("gateway", gateway), ("oif", oif), ("table", table),
                       ("priority", metric), ("prefsrc", src), ("encap", encap), ("type", kind)):
        if value is not None:
            req[key] = value
    return req


def rule_request(priority: int, table: int, *, src: str | None = None, dst: str | None = None,
                 ip_proto: int | None = None, fwmark: int | None = None) -> dict[str, Any]:
    """A policy rule `pref priority [from src] [to dst] [ipproto p] [fwmark m] lookup table`
    (src/dst: a host address)."""
    req: dict[str, Any] = dict(family=AF_INET6, priority=priority, table=table)
    for key, value in (("src", src), ("dst", dst), ("ip_proto", ip_proto), ("fwmark", fwmark)):
        if value is not None:
            req[key] = value
    if src is not None:
        req["src_len"] = 128
    if dst is not None:
        req["dst_len"] = 128
    return req


def ip6tnl_request(local: str, remote: str) -> dict[str, Any]:
    """The ip6tnl link kind's IFLA_IP6TNL_* attributes for an ip6ip6 tunnel (proto 41)
    without the RFC 2473 encapsulation limit option (which would put a Destination
    Options header before the inner packet: flag IGN_ENCAP_LIMIT), hop limit 64. All of
    them every time: the kernel's changelink takes what is absent as zero."""
    return dict(kind="ip6tnl", ip6tnl_local=local, ip6tnl_remote=remote, ip6tnl_ttl=64,
                ip6tnl_encap_limit=IPV6_DEFAULT_TNL_ENCAP_LIMIT,
                ip6tnl_flags=IP6_TNL_F_IGN_ENCAP_LIMIT, ip6tnl_proto=IPPROTO_IPV6)


def proxy_request(index: int, address: str) -> dict[str, Any]:
    """A neighbour proxy entry (answer ND for `address` on the link)."""
    return dict(family=AF_INET6, dst=address, ifindex=index, flags=NTF_PROXY)


def _describe(kind: str, command: str, req: dict[str, Any]) -> str:
    shown = " ".join(f"{k}={v}" for k, v in req.items() if k not in ("family", "encap"))
    if "encap" in req:
        shown += f" encap={req['encap'].get('type')}"
    return f"{kind} {command} {shown}".strip()


# ---------------------------------------------------------------- the kernel

# How long a request waits for the kernel's answer (it answers at once; this bounds a
# kernel that does not).
ACK_TIMEOUT_S = 10.0


def exchange(sock: socket.socket, data: bytes, acked: set[int]) -> tuple[dict[int, int], list[bytes]]:
    """Send netlink messages (one datagram) and read until every sequence number in
    `acked` was answered: ({seq: error code, 0 for an ack}, the other replies to those
    sequence numbers as raw messages). For requests the kernel answers at once; OSError
    (ETIMEDOUT) when it does not within ACK_TIMEOUT_S."""
    from mip6bench.net.pyroute import NLMSG_ERROR

    sock.settimeout(ACK_TIMEOUT_S)
    waiting = set(acked)
    errors: dict[int, int] = {}
    replies: list[bytes] = []
    try:
        sock.send(data)
        while waiting:
            datagram, offset = sock.recv(1 << 16), 0
            while offset + 16 <= len(datagram):
                length, kind, _flags, seq = struct.unpack_from("=IHHI", datagram, offset)
                if length < 16:
                    raise OSError(errno.EPROTO, "netlink: torn answer")
                if seq in acked:
                    if kind == NLMSG_ERROR:
                        errors[seq] = -struct.unpack_from("=i", datagram, offset + 16)[0]
                        waiting.discard(seq)
                    else:
                        replies.append(datagram[offset:offset + length])
                offset += (length + 3) & ~3
    except socket.timeout:
        raise OSError(errno.ETIMEDOUT, "netlink: no answer") from None
    return errors, replies


SNOOPING_RESPONSE_CS = 100   # a bridge querier's query response interval, centiseconds (1 s)


class BatchOutcome:
    """What `Kernel.batch(outcome)` fills in: the requests made inside the batch and,
    once it ended, each one's KernelError or None (``errors``, in the same order)."""

    def __init__(self):
        self.requests: list = []
        self.errors: list[KernelError | None] = []

    def made(self) -> int:
        """How many requests the batch holds so far."""
        return len(self.requests)

    def first_error(self, start: int, end: int) -> "KernelError | None":
        """The first failure among requests start..end-1 (as made()'s counts said)."""
        return next((e for e in self.errors[start:end] if e is not None), None)


class Kernel:
    """Networking state of one namespace (None: this process's)."""

    def __init__(self, netns: int | str | None = None):
        from mip6bench.net.pyroute import IPRoute

        self.netns = netns
        # The sockets are opened in the target namespace by a thread that joined it
        # (pyroute2's own netns support forks a helper process, which can hang when the
        # caller has other threads).
        self._ipr = IPRoute(use_socket=rtnl_socket(netns)) if netns is not None else IPRoute()
        self._seg6 = None
        self._index: dict[str, int] = {}
        self._requests: socket.socket | None = None     # opened by the first request
        self._lock = threading.Lock()
        self._seq = 0
        self._batches = threading.local()     # a batch collects its own thread's requests

    def close(self) -> None:
        self._ipr.close()
        if self._requests is not None:
            self._requests.close()
            self._requests = None
        if self._seg6 is not None:
            self._seg6.close()
            self._seg6 = None

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the one place requests go out
    def _call(self, kind: str, command: str, req: dict[str, Any], *, missing_ok: bool = False) -> None:
        """One rtnetlink request (kind: link, addr, route, rule, neigh); KernelError on
        failure; a deletion of something gone is no failure when `missing_ok`. Inside
        `batch()` it goes out with the batch."""
        batch = getattr(self._batches, "requests", None)
        if batch is not None:
            batch.append((kind, command, req, missing_ok))
            return
        self._send([(kind, command, req, missing_ok)])

    @contextlib.contextmanager
    def batch(self, outcome: "BatchOutcome | None" = None):
        """The requests this thread makes inside go to the kernel in one datagram when
        it ends (the kernel handles them in order and answers each); the first failure
        is raised then, after every answer was read. With `outcome` nothing is raised:
        every request's own result lands in ``outcome.errors`` (a KernelError or None,
        in the order made; ``outcome.made()`` counts the requests made so far, so a
        caller can tell whose requests failed)."""
        if getattr(self._batches, "requests", None) is not None:    # nested: part of the outer one
            if outcome is not None:
                raise RuntimeError("a batch with an outcome cannot be nested")
            yield
            return
        pending: list = []
        self._batches.requests = pending
        if outcome is not None:
            outcome.requests = pending
        try:
            yield
        finally:
            self._batches.requests = None
        if pending:
            if outcome is None:
                self._send(pending)
            else:
                outcome.errors = self._send(pending, each=True)

    def _send(self, requests: list[tuple[str, str, dict[str, Any], bool]], each: bool = False):
        """Send the requests in one datagram and read the kernel's answers: the replies
        (other than acks) as raw messages, in order; KernelError for the first failure.
        With `each`: nothing raised, the list of every request's KernelError or None."""
        from mip6bench.net.pyroute import compile_request_cached as compile_request

        with self._lock:
            if self._requests is None:
                self._requests = rtnl_socket(self.netns)
            pending: dict[int, tuple[str, str, dict[str, Any], bool]] = {}
            data = bytearray()
            for request in requests:
                self._seq = self._seq % 0x7FFFFFFF + 1
                pending[self._seq] = request
                data += compile_request(request[0], request[1], request[2], self._seq)
            try:
                errors, replies = exchange(self._requests, bytes(data), set(pending))
            except OSError as exc:
                # Answers may still come: a fresh socket for the next request.
                self._requests.close()
                self._requests = None
                if each:
                    return [KernelError(exc.errno or errno.EIO, _describe(*r[:3])) for r in requests]
                raise KernelError(exc.errno or errno.EIO, _describe(*requests[0][:3])) from None
        if each:
            return [KernelError(errors[seq], _describe(kind, command, req))
                    if errors.get(seq, 0) and not (missing_ok and errors[seq] in GONE) else None
                    for seq, (kind, command, req, missing_ok) in pending.items()]
        for seq, (kind, command, req, missing_ok) in pending.items():
            code = errors.get(seq, 0)
            if code and not (missing_ok and code in GONE):
                raise KernelError(code, _describe(kind, command, req))
        return replies

    # --- links
    def ifindex(self, name: str) -> int:
        """The interface's index (asked of the kernel once: a request, not a dump)."""
        if name not in self._index:
            from mip6bench.net.pyroute import RTM_NEWLINK_REPLY, ifinfmsg

            try:
                replies = self._send([("link", "get", {"ifname": name}, False)])
            except KernelError as exc:
                if exc.errno in GONE:
                    raise LookupError(f"no interface {name!r} in namespace {self.netns}") from None
                raise
            for raw in replies:
                if struct.unpack_from("=H", raw, 4)[0] == RTM_NEWLINK_REPLY:
                    msg = ifinfmsg(raw)
                    msg.decode()
                    self._index[name] = msg["index"]
                    break
            else:
                raise LookupError(f"no interface {name!r} in namespace {self.netns}")
        return self._index[name]

    def has_link(self, name: str) -> bool:
        self._index.pop(name, None)
        try:
            self.ifindex(name)
            return True
        except LookupError:
            return False

    def learn_indexes(self) -> None:
        """Every interface's index from one dump (ifindex() looks a name up with a dump
        of all links: on a LAN with a thousand ports that is a thousand dumps)."""
        for msg in self._ipr.get_links():
            self._index[msg.get_attr("IFLA_IFNAME")] = msg["index"]

    def links(self) -> list[dict[str, Any]]:
        return [link_info(msg) for msg in self._ipr.get_links()]

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
        self._call("link", "set", req)

    def add_link(self, name: str, kind: str, **attributes: Any) -> None:
        """A new link of `kind` (veth: peer=name; ip6tnl: ip6tnl_request's attributes)."""
        attributes.pop("kind", None)
        self._call("link", "add", dict(ifname=name, kind=kind, **attributes))

    def add_bridge(self, name: str, *, snooping: bool = False) -> None:
        """A bridge; with `snooping`, MLD snooping with a query response interval of
        SNOOPING_RESPONSE_CS (the kernel floods for that long after its querier starts;
        10 s by default), to be made the querier by start_querier() once it is up with
        its link-local address (see LanSegment)."""
        attrs = dict(br_mcast_snooping=1, br_mcast_query_response_intvl=SNOOPING_RESPONSE_CS) \
            if snooping else dict(br_mcast_snooping=0)
        self._call("link", "add", dict(ifname=name, kind="bridge", **attrs))

    def start_querier(self, name: str) -> None:
        """Make bridge `name` its LAN's MLD querier. A request of its own, once the bridge
        is up with a usable link-local address: its first query goes out at once, and a
        query it cannot give a source address to turns its IPv6 querier off until the
        next (31 s later); enabling it also arms the kernel's flooding delay with the
        response interval in force."""
        self._call("link", "set", dict(index=self.ifindex(name), kind="bridge", br_mcast_querier=1))

    def delete_link(self, name: str, *, missing_ok: bool = False) -> None:
        try:
            index = self.ifindex(name)
        except LookupError:
            if missing_ok:
                return
            raise
        self._call("link", "del", {"index": index}, missing_ok=missing_ok)
        self._index.pop(name, None)

    def set_ip6tnl(self, name: str, local: str, remote: str) -> None:
        """The ip6ip6 device `name` (local -> remote), up: its endpoints changed in
        place where it exists (changelink: the device, its routes and link state stay; a
        handover costs one request, two the first time the name is looked up), else
        created."""
        if name in self._index or self.has_link(name):
            try:
                self._call("link", "set", dict(index=self.ifindex(name), state="up",
                                               **ip6tnl_request(local, remote)))
                return
            except KernelError as exc:   # an index kept from a device gone since
                if exc.errno not in GONE:
                    raise
                self._index.pop(name, None)
        self.add_link(name, **ip6tnl_request(local, remote))
        # No IPv6 address generation on the device (addr_gen_mode 1, "none") before it
        # comes up: the kernel would give it a link-local address and send router
        # solicitations from it through the tunnel, which a firewall on the path drops as
        # unsolicited or, outbound, lets open conntrack state for the tunnel before any
        # signalling did. The tunnel carries only the home address.
        self.sysctl({f"net/ipv6/conf/{name}/addr_gen_mode": 1})
        self.set_link(name, up=True)

    # --- addresses
    def add_address(self, ifname: str, address: str, prefixlen: int,
                    dad: DadMode = DadMode.OFF, replace: bool = False) -> None:
        dad = DadMode.parse(dad)
        if dad is DadMode.OPTIMISTIC:
            # The kernel honours IFA_F_OPTIMISTIC only where optimistic_dad is on.
            self.sysctl({f"net/ipv6/conf/{ifname}/optimistic_dad": 1})
        req = address_request(self.ifindex(ifname), address, prefixlen, dad)
        self._call("addr", "replace" if replace else "add", req)

    def del_address(self, ifname: str, address: str, prefixlen: int, *, missing_ok: bool = False) -> None:
        self._call("addr", "del", dict(index=self.ifindex(ifname), family=AF_INET6, address=address,
                                       prefixlen=prefixlen), missing_ok=missing_ok)

    def addresses(self, ifname: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"family": AF_INET6}
        if ifname is not None:
            kwargs["index"] = self.ifindex(ifname)
        return [address_info(msg) for msg in self._ipr.get_addr(**kwargs)]

    # --- neighbour proxies
    def add_proxy_ndp(self, ifname: str, address: str) -> None:
        self._call("neigh", "replace", proxy_request(self.ifindex(ifname), address))

    def del_proxy_ndp(self, ifname: str, address: str) -> None:
        self._call("neigh", "del", proxy_request(self.ifindex(ifname), address), missing_ok=True)

    def proxy_entries(self, ifname: str) -> list[str]:
        """The proxy neighbour entries on `ifname`. The kernel lists them only for a dump
        request whose ndm_flags say NTF_PROXY, which pyroute2's neigh dump does not send:
        the request goes out on a socket of its own, the answers decode with ndmsg."""
        from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
        from pyroute2.netlink.rtnl import RTM_GETNEIGH, RTM_NEWNEIGH
        from pyroute2.netlink.rtnl.ndmsg import NTF_PROXY, ndmsg

        index = self.ifindex(ifname)
        request = ndmsg()
        request["header"].update(type=RTM_GETNEIGH, flags=NLM_F_REQUEST | NLM_F_DUMP, sequence_number=1)
        request["family"], request["flags"] = AF_INET6, NTF_PROXY
        request.encode()
        found: list[str] = []
        with rtnl_socket(self.netns) as sock:
            sock.send(request.data)
            while True:
                data, offset = sock.recv(1 << 16), 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        raise KernelError(code, f"neigh dump proxy dev {ifname}")
                    if kind == RTM_NEWNEIGH:
                        entry = ndmsg(data[offset:offset + length])
                        entry.decode()
                        if entry["ifindex"] == index and entry.get_attr("NDA_DST"):
                            found.append(entry.get_attr("NDA_DST"))
                    if length < 16:
                        raise KernelError(errno.EPROTO, f"neigh dump proxy dev {ifname}: torn message")
                    offset += (length + 3) & ~3

    # --- routes
    def add_route(self, dst: str, *, gateway: str | None = None, dev: str | None = None,
                  table: int | None = None, metric: int | None = None, src: str | None = None,
                  encap: dict[str, Any] | None = None, kind: str | None = None,
                  replace: bool = True) -> None:
        req = route_request(dst, gateway=gateway, oif=self.ifindex(dev) if dev else None,
                            table=table, metric=metric, src=src, encap=encap, kind=kind)
        self._call("route", "replace" if replace else "add", req)

    def del_route(self, dst: str, *, table: int | None = None, dev: str | None = None,
                  metric: int | None = None, kind: str | None = None, missing_ok: bool = False) -> None:
        req = route_request(dst, oif=self.ifindex(dev) if dev else None, table=table,
                            metric=metric, kind=kind)
        self._call("route", "del", req, missing_ok=missing_ok)

    def routes(self, table: int = RT_TABLE_MAIN) -> list[dict[str, Any]]:
        out = []
        for msg in self._ipr.get_routes(family=AF_INET6, table=table):
            encap = msg.get_attr("RTA_ENCAP")
            out.append({
                "dst": f"{msg.get_attr('RTA_DST') or '::'}/{msg['dst_len']}",
                "gateway": msg.get_attr("RTA_GATEWAY"),
                "oif": msg.get_attr("RTA_OIF"),
                "table": msg.get_attr("RTA_TABLE"),
                "type": msg["type"],
                "metric": msg.get_attr("RTA_PRIORITY"),
                "encap_type": msg.get_attr("RTA_ENCAP_TYPE"),
                "encap": encap_info(encap) if encap is not None else None,
            })
        return out

    def flush_table(self, table: int) -> None:
        for msg in self._ipr.get_routes(family=AF_INET6, table=table):
            req = {"family": AF_INET6, "table": table, "dst_len": msg["dst_len"], "type": msg["type"]}
            if msg.get_attr("RTA_DST"):
                req["dst"] = msg.get_attr("RTA_DST")
            if msg.get_attr("RTA_PRIORITY") is not None:
                req["priority"] = msg.get_attr("RTA_PRIORITY")
            if msg.get_attr("RTA_OIF") is not None:
                req["oif"] = msg.get_attr("RTA_OIF")
            self._call("route", "del", req, missing_ok=True)

    # --- policy rules
    def rules(self) -> list[dict[str, Any]]:
        out = []
        for msg in self._ipr.get_rules(family=AF_INET6):
            out.append({"priority": msg.get_attr("FRA_PRIORITY") or 0,
                        "table": msg.get_attr("FRA_TABLE") or msg["table"],
                        "src": msg.get_attr("FRA_SRC"), "dst": msg.get_attr("FRA_DST"),
                        "ip_proto": msg.get_attr("FRA_IP_PROTO"), "fwmark": msg.get_attr("FRA_FWMARK")})
        return out

    def rules_at(self, priority: int) -> list[dict[str, Any]]:
        return [r for r in self.rules() if r["priority"] == priority]

    def add_rule(self, priority: int, table: int, **match: Any) -> None:
        self._call("rule", "add", rule_request(priority, table, **match))

    def del_rule(self, priority: int, table: int, **match: Any) -> None:
        self._call("rule", "del", rule_request(priority, table, **match), missing_ok=True)

    def reconfigure(self, priorities: tuple[int, ...], tables: tuple[int, ...],
                    apply: Callable[[], None] | None = None, local_pref: int | None = None,
                    moved_local_pref: int | None = None) -> None:
        """Start from a clean slate, then `apply()`: remove every rule at `priorities`
        and flush `tables` (leftovers of an agent that was killed), and leave `lookup
        local` at `local_pref` (None: back at pref 0, where the kernel puts it), taking
        it away from `moved_local_pref` (where an earlier run may have put it) or 0."""
        for rule in self.rules():
            if rule["priority"] in priorities:
                self.del_rule(rule["priority"], rule["table"])
        for table in tables:
            self.flush_table(table)
        target = 0 if local_pref is None else local_pref
        source = moved_local_pref if local_pref is None else 0
        if not any(r["table"] == RT_TABLE_LOCAL for r in self.rules_at(target)):
            self.add_rule(target, RT_TABLE_LOCAL)
        if apply is not None:
            apply()
        if source is not None and source != target:
            for rule in self.rules_at(source):
                if rule["table"] == RT_TABLE_LOCAL:
                    self.del_rule(source, RT_TABLE_LOCAL)

    # --- seg6
    def set_seg6_tunsrc(self, address: str) -> None:
        """The namespace's seg6 tunnel source (the outer source of seg6 encapsulation;
        '::' lets the kernel choose), through the SEG6 generic netlink family."""
        if self._seg6 is None:
            self._seg6 = _netns.in_netns(self.netns, Seg6Genl)
        self._seg6.set_tunsrc(address)

    def seg6_tunsrc(self) -> str:
        if self._seg6 is None:
            self._seg6 = _netns.in_netns(self.netns, Seg6Genl)
        return self._seg6.get_tunsrc()

    # --- sysctls (not netlink: /proc/sys resolved in the namespace)
    def sysctl(self, values: dict[str, str | int]) -> None:
        _netns.write_sysctls(self.netns, values)

    def read_sysctl(self, key: str) -> str:
        return _netns.read_sysctl(self.netns, key)


class Seg6Genl:
    """The SEG6 generic netlink family (linux/seg6_genl.h): the tunnel source address."""

    CMD_SET_TUNSRC, CMD_GET_TUNSRC = 3, 4

    def __init__(self):
        from pyroute2.netlink import genlmsg
        from pyroute2.netlink.generic import GenericNetlinkSocket

        class seg6msg(genlmsg):
            prefix = "SEG6_ATTR_"
            nla_map = (("SEG6_ATTR_UNSPEC", "none"), ("SEG6_ATTR_DST", "ip6addr"))

        self.msg_class = seg6msg
        self.sock = GenericNetlinkSocket()
        try:
            self.sock.bind("SEG6", seg6msg)
        except Exception:
            self.sock.close()
            raise

    def _request(self, cmd: int, attrs: list, flags: int) -> list:
        from pyroute2.netlink.exceptions import NetlinkError

        msg = self.msg_class()
        msg["cmd"], msg["version"], msg["attrs"] = cmd, 1, attrs
        try:
            return list(self.sock.nlm_request(msg, msg_type=self.sock.prid, msg_flags=flags))
        except NetlinkError as exc:
            raise KernelError(exc.code, f"seg6 {'set' if cmd == self.CMD_SET_TUNSRC else 'get'} tunsrc") from None

    def set_tunsrc(self, address: str) -> None:
        from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST

        self._request(self.CMD_SET_TUNSRC, [("SEG6_ATTR_DST", str(ipaddress.IPv6Address(address)))],
                      NLM_F_REQUEST | NLM_F_ACK)

    def get_tunsrc(self) -> str:
        from pyroute2.netlink import NLM_F_REQUEST

        [reply] = [m for m in self._request(self.CMD_GET_TUNSRC, [], NLM_F_REQUEST)
                   if m.get_attr("SEG6_ATTR_DST") is not None]
        return reply.get_attr("SEG6_ATTR_DST")

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- decoded messages

def link_info(msg) -> dict[str, Any]:
    """A link message (dump or notification) as {name, index, up, carrier, mac, kind}."""
    carrier = msg.get_attr("IFLA_CARRIER")
    return {
        "name": msg.get_attr("IFLA_IFNAME"),
        "index": msg["index"],
        "up": bool(msg["flags"] & IFF_UP),
        "carrier": bool(carrier) if carrier is not None else bool(msg["flags"] & IFF_LOWER_UP),
        "lower_up": bool(msg["flags"] & IFF_LOWER_UP),
        "mac": msg.get_attr("IFLA_ADDRESS"),
        "kind": msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "",
    }


def address_info(msg) -> dict[str, Any]:
    """An IPv6 address message as {address, prefixlen, index, scope, tentative,
    optimistic, dadfailed}."""
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return {
        "address": msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL"),
        "prefixlen": msg["prefixlen"],
        "index": msg["index"],
        "scope": msg["scope"],
        "tentative": bool(flags & IFA_F_TENTATIVE),
        "optimistic": bool(flags & IFA_F_OPTIMISTIC),
        "dadfailed": bool(flags & IFA_F_DADFAILED),
    }


def encap_info(encap) -> dict[str, Any]:
    out: dict[str, Any] = {}
    srh = encap.get_attr("SEG6_IPTUNNEL_SRH")
    if srh is not None:
        out.update(type="seg6", mode=srh["encapmode"], segs=srh.get("segs"))
    action = encap.get_attr("SEG6_LOCAL_ACTION")
    if action is not None:
        out.update(type="seg6local", action=action.get("value") if hasattr(action, "get") else action)
        table = encap.get_attr("SEG6_LOCAL_TABLE")
        if table is not None:
            out["table"] = table.get("value") if hasattr(table, "get") else table
    return out


# ---------------------------------------------------------------- events

@dataclass(frozen=True)
class LinkEvent:
    name: str
    index: int
    up: bool
    carrier: bool
    lower_up: bool
    deleted: bool
    mac: str | None = None


@dataclass(frozen=True)
class AddressEvent:
    address: str
    prefixlen: int
    index: int
    scope: int
    tentative: bool
    optimistic: bool
    dadfailed: bool
    deleted: bool


_marshal = None


def parse_events(data: bytes) -> list[LinkEvent | AddressEvent]:
    """The link and IPv6 address notifications in one rtnetlink datagram, decoded by
    pyroute2; anything else (other families, other message types, a torn message) is
    left out."""
    global _marshal
    if _marshal is None:
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        _marshal = MarshalRtnl()
    out: list[LinkEvent | AddressEvent] = []
    try:
        messages = list(_marshal.parse(data))
    except Exception:   # a torn datagram: nothing in it is trusted
        return out
    for msg in messages:
        event = msg.get("event")
        try:
            if event in ("RTM_NEWLINK", "RTM_DELLINK"):
                info = link_info(msg)
                out.append(LinkEvent(info["name"], info["index"], info["up"], info["carrier"],
                                     info["lower_up"], event == "RTM_DELLINK", info["mac"]))
            elif event in ("RTM_NEWADDR", "RTM_DELADDR") and msg.get("family") == AF_INET6:
                info = address_info(msg)
                if info["address"] is None:
                    continue
                out.append(AddressEvent(**info, deleted=event == "RTM_DELADDR"))
        except (KeyError, TypeError, ValueError):
            continue
    return out


class Monitor:
    """A non-blocking rtnetlink socket in `netns`, subscribed to `groups` (link and IPv6
    address changes by default). `read()` drains it and returns the events."""

    def __init__(self, netns: int | str | None = None, groups: int = RTMGRP_LINK | RTMGRP_IPV6_IFADDR):
        self.sock = rtnl_socket(netns, groups)
        self.sock.setblocking(False)
        self.overruns = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[LinkEvent | AddressEvent]:
        out: list[LinkEvent | AddressEvent] = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:   # overrun: events lost, callers re-read state
                    self.overruns += 1
                    continue
                raise
            out.extend(parse_events(data))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
    from mip6bench.slowdown import scaled

    with Kernel(netns) as kernel, Monitor(netns, groups) as monitor:  # subscribed before checking
        deadline = time.monotonic() + scaled(timeout)
        while True:
            value = check(kernel)
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if wait_readable(monitor.sock, remaining):
                monitor.read()   # drained; the check above reads the state itself


def usable_address(kernel: Kernel, ifname: str, prefix: str) -> str | None:
    """A global address of `prefix` on ifname that can be used now (not tentative,
    or optimistic)."""
    net = ipaddress.ip_network(prefix)
    for a in kernel.addresses(ifname):
        if ipaddress.ip_address(a["address"]) in net and not a["dadfailed"] and \
                (not a["tentative"] or a["optimistic"]):
            return a["address"]
    return None
