"""PANA discovery with the IPv6 Router Alert option (seed paper 2.2): constants, the
Hop-by-Hop header, sockets, and the packet a router re-emits.

The PaC that does not know its PAA sends its PANA-Client-Initiation to the site-scope
group DISCOVERY_GROUP, UDP port 716, with a Hop-by-Hop Router Alert option of value
DISCOVERY_RAO. Routers that run agents/rao_forwarder.py pass it on, hop by hop, out of
every other interface until a PAA, which listens on the group, answers with a unicast
PAR[S] (the PaC talks unicast to whoever answered first).

    DISCOVERY_RAO = 65503
        RFC 2711 Router Alert value. IANA's registry (RFC 5350) reserves 65503-65534 for
        experimental use; 65502 is unassigned, so the first experimental value is used.
    DISCOVERY_GROUP = "ff05::8000:716"
        Site-local scope (ff05, RFC 4291 2.7) so the discovery stays inside the operator's
        site; group ID 0x80000716 lies in RFC 3307's range for dynamically allocated IDs
        (0x80000000-0xFFFFFFFF); 0x716 recalls PANA's port.

How the kernel treats it (Linux, verified on the development VMs): an IPv6 packet with
a Router Alert option goes to IPV6_ROUTER_ALERT sockets only on the unicast forwarding
path (ip6_forward calls the RA chain); a multicast packet never takes that path, so a
router alert socket never sees a multicast PCI. For multicast with Router Alert the
kernel does what it does for MLD: it delivers the packet to local listeners of the
group. So a forwarder joins the group on its interfaces, receives the datagram with
IPV6_RECVHOPOPTS/IPV6_RECVPKTINFO/IPV6_RECVHOPLIMIT, passes on only datagrams whose
Hop-by-Hop header carries DISCOVERY_RAO, and re-emits the whole packet (original source,
hop limit - 1, same options, same UDP payload) with a raw socket (IPPROTO_RAW) bound to
each egress device. Linux does not forward multicast without a multicast router, so
nothing else copies it. (The IPV6_ROUTER_ALERT + IPV6_ROUTER_ALERT_ISOLATE socket that
DESIGN.md describes for GIST works for unicast-addressed Q-mode messages only; with a
multicast PCI it receives nothing, which tests/netns/test_bootstrap_discovery.py checks.)
"""
from __future__ import annotations

import ipaddress
import socket
import struct

from mip6bench.codec import DecodeError, Reader, inet_checksum, ipv6_pseudo_header
# At module level, not in receive(): the forwarder handles about one datagram per
# discovery, and importing sansio there (its dataclasses) cost 3-5 ms on every hop.
from mip6bench.sansio import Event, Transmit

DISCOVERY_RAO = 65503
DISCOVERY_GROUP = "ff05::8000:716"
DEFAULT_HOP_LIMIT = 16

IPPROTO_HOPOPTS = 0
IPPROTO_UDP = 17
IPV6_ROUTER_ALERT = 22          # for the check that multicast never reaches such a socket
IPV6_ROUTER_ALERT_ISOLATE = 30
OPT_PAD1, OPT_PADN, OPT_ROUTER_ALERT = 0, 1, 5
# Linux socket option numbers (socket module lacks some on older Pythons).
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVHOPOPTS = getattr(socket, "IPV6_RECVHOPOPTS", 53)
IPV6_HOPOPTS = getattr(socket, "IPV6_HOPOPTS", 54)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)


def router_alert_hopopts(value: int = DISCOVERY_RAO, next_header: int = IPPROTO_UDP) -> bytes:
    """An 8-byte Hop-by-Hop Options header with one Router Alert option (RFC 2711) and
    a 2-byte PadN. As IPV6_HOPOPTS ancillary data the kernel sets Next Header itself."""
    if not 0 <= value <= 0xFFFF:
        raise ValueError("Router Alert value is 16 bits")
    return struct.pack("!BBBBHBB", next_header, 0, OPT_ROUTER_ALERT, 2, value, OPT_PADN, 0)


def parse_hopopts(header: bytes) -> list[tuple[int, bytes]]:
    """The options of a Hop-by-Hop header (Next Header and Hdr Ext Len first), strictly."""
    r = Reader(bytes(header))
    r.u8("next header")
    length = (r.u8("header length") + 1) * 8
    if length != len(header):
        raise DecodeError(f"Hop-by-Hop header of {len(header)} bytes, length field says {length}")
    options = []
    while r.remaining:
        opt = r.u8("option type")
        if opt == OPT_PAD1:
            continue
        size = r.u8("option length")
        options.append((opt, r.take(size, f"option {opt}")))
    return options


def router_alert_value(header: bytes) -> int | None:
    """The Router Alert value in a Hop-by-Hop header, None if there is none (or the
    header is malformed or has the option twice)."""
    try:
        values = [v for t, v in parse_hopopts(header) if t == OPT_ROUTER_ALERT]
    except DecodeError:
        return None
    if len(values) != 1 or len(values[0]) != 2:
        return None
    return struct.unpack("!H", values[0])[0]


def ipv6_packet_with_hopopts(src: str, dst: str, hop_limit: int, hopopts: bytes,
                             next_header: int, payload: bytes) -> bytes:
    """IPv6 header + Hop-by-Hop header (its Next Header set to `next_header`) + payload."""
    if len(hopopts) % 8 or not hopopts:
        raise ValueError("a Hop-by-Hop header is a non-zero multiple of 8 bytes")
    if not 0 <= hop_limit <= 255:
        raise ValueError("hop limit is 8 bits")
    body = bytes([next_header]) + bytes(hopopts[1:]) + bytes(payload)
    if len(body) > 0xFFFF:
        raise ValueError("payload too long for IPv6 without jumbograms")
    return (struct.pack("!IHBB", 6 << 28, len(body), IPPROTO_HOPOPTS, hop_limit)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + body)


def udp_datagram(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header + payload with the checksum over the IPv6 pseudo-header."""
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    csum = inet_checksum(ipv6_pseudo_header(s, d, length, IPPROTO_UDP) + header + payload)
    return struct.pack("!HHHH", sport, dport, length, csum or 0xFFFF) + payload


def join_group(sock: socket.socket, group: str, interface: str) -> None:
    mreq = ipaddress.IPv6Address(group).packed + struct.pack("@I", socket.if_nametoindex(interface))
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)


def send_with_router_alert(sock: socket.socket, data: bytes, dst: str, port: int,
                           value: int = DISCOVERY_RAO, interface: str | None = None,
                           hop_limit: int = DEFAULT_HOP_LIMIT) -> None:
    """Send a UDP datagram with a Hop-by-Hop Router Alert option (IPV6_HOPOPTS ancillary
    data); for a multicast destination out of `interface` with `hop_limit`."""
    scope = socket.if_nametoindex(interface) if interface else 0
    if ipaddress.IPv6Address(dst).is_multicast:
        if scope:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hop_limit)
    sock.sendmsg([data], [(socket.IPPROTO_IPV6, IPV6_HOPOPTS, router_alert_hopopts(value))], 0,
                 (dst, port, 0, scope if ipaddress.IPv6Address(dst).is_multicast else 0))


class RaoForwarderCore:
    """The router side of multicast discovery, sans I/O: decides which discovery
    datagrams a router passes on and builds the packets it re-emits.

        core = RaoForwarderCore(["ar1-f1", "ar1-core"])
        actions = core.receive(udp, src, dst, ingress, hop_limit, hopopts, now)

    `udp` is the UDP header and payload as received, `hopopts` the Hop-by-Hop header
    (IPV6_HOPOPTS ancillary data, None if there was none). A datagram is passed on when
    it goes to `group`, UDP port `port`, carries exactly one Router Alert option with
    `value`, arrived on one of `interfaces` with a hop limit above 1, and the same
    (source, datagram) was not passed on within `dedup_window` seconds (a loop guard
    for topologies with cycles; the PaC's retransmissions come a second apart). The
    result is one Transmit per other interface: the whole IPv6 packet (original source,
    hop limit - 1, the same Hop-by-Hop header, the UDP datagram unchanged) with meta
    {"egress": interface}; plus an Event "rao.forwarded", or "rao.drop" with a reason
    (counted in `counters`).
    """

    def __init__(self, interfaces, group: str = DISCOVERY_GROUP, value: int = DISCOVERY_RAO,
                 port: int = 716, dedup_window: float = 0.5):
        from collections import Counter
        self.interfaces = tuple(interfaces)
        if not self.interfaces:
            raise ValueError("a forwarder needs at least one interface")
        self.group = str(ipaddress.IPv6Address(group))
        if not ipaddress.IPv6Address(group).is_multicast:
            raise ValueError(f"{group} is not a multicast address")
        self.value, self.port, self.dedup_window = value, port, dedup_window
        self.counters: Counter[str] = Counter()
        self._recent: dict[tuple[str, bytes], float] = {}

    def receive(self, udp: bytes, src: str, dst: str, ingress: str, hop_limit: int,
                hopopts: bytes | None, now: float) -> list:
        if ingress not in self.interfaces:
            return self._drop("foreign interface", ingress=ingress)
        try:
            dst_ok = ipaddress.IPv6Address(dst.split("%", 1)[0]) == \
                ipaddress.IPv6Address(self.group)
        except ValueError:
            dst_ok = False
        if not dst_ok:
            return self._drop("not the discovery group", dst=dst)
        if len(udp) < 8 or struct.unpack("!H", udp[2:4])[0] != self.port:
            return self._drop("not a PANA datagram", src=src)
        if struct.unpack("!H", udp[4:6])[0] != len(udp):
            return self._drop("bad UDP length", src=src)
        if hopopts is None or router_alert_value(hopopts) != self.value:
            return self._drop("no matching Router Alert", src=src)
        if hop_limit <= 1:
            return self._drop("hop limit exhausted", src=src)
        key = (src, bytes(udp))
        seen = self._recent.get(key)
        if seen is not None and now - seen < self.dedup_window:
            return self._drop("duplicate", src=src)
        if len(self._recent) > 4096:
            self._recent = {k: t for k, t in self._recent.items()
                            if now - t < self.dedup_window}
        self._recent[key] = now
        packet = ipv6_packet_with_hopopts(src, self.group, hop_limit - 1, hopopts,
                                          IPPROTO_UDP, udp)
        egress = [i for i in self.interfaces if i != ingress]
        self.counters["forwarded"] += 1
        return [Transmit(packet, dst=self.group, meta={"egress": i}) for i in egress] + \
            [Event("rao.forwarded", {"src": src, "ingress": ingress, "egress": egress,
                                     "hop_limit": hop_limit - 1})]

    def _drop(self, reason: str, **fields) -> list:
        self.counters[reason] += 1
        return [Event("rao.drop", {"reason": reason, **fields})]
