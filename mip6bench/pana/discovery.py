"""PANA discovery with the IPv6 Router Alert option (seed paper 2.2): the protocol
constants and the router's decision, as pure logic. mip6bench.net.rao has the sockets
and explains how the Linux kernel delivers such packets; agents/rao_forwarder.py runs
`RaoForwarderCore` on a router.

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
"""
from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from dataclasses import dataclass, field

from mip6bench.ipv6 import IPPROTO_UDP, ipv6_packet_with_hopopts, router_alert_value
from mip6bench.sansio import Event, Transmit

DISCOVERY_RAO = 65503
DISCOVERY_GROUP = "ff05::8000:716"
DEFAULT_HOP_LIMIT = 16


@dataclass(frozen=True)
class ForwardTransmit(Transmit):
    """A whole IPv6 packet (header included) to re-emit out of interface `egress`."""

    egress: str = field(default="", kw_only=True)


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
    hop limit - 1, the same Hop-by-Hop header, the UDP datagram unchanged) as a
    ForwardTransmit with `egress` set to the interface; plus an Event "rao.forwarded", or "rao.drop" with a reason
    (counted in `counters`).
    """

    def __init__(self, interfaces, group: str = DISCOVERY_GROUP, value: int = DISCOVERY_RAO,
                 port: int = 716, dedup_window: float = 0.5):
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
        return [ForwardTransmit(packet, self.group, egress=i) for i in egress] + \
            [Event("rao.forwarded", {"src": src, "ingress": ingress, "egress": egress,
                                     "hop_limit": hop_limit - 1})]

    def _drop(self, reason: str, **fields) -> list:
        self.counters[reason] += 1
        return [Event("rao.drop", {"reason": reason, **fields})]
