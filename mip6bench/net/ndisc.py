"""The bits of Neighbor Discovery (RFC 4861, 4862) Mobile IPv6 agents need.

Mobile node: Router Advertisements reveal movement (RFC 6275 11.5.1): `parse_router_advert`
gives the on-link prefixes, the Advertisement Interval option (RFC 6275 7.3) and the
Home Agent (H) flag. Home agent: Duplicate Address Detection for a home address on the
MN's behalf (`dad_probe`: a Neighbor Solicitation from the unspecified address, built as
a whole packet because a socket cannot send from ::), and the unsolicited Neighbor
Advertisement that makes the home link send the HoA's traffic to the HA
(`neighbor_advert`, RFC 6275 10.4.1). `IcmpSocket` receives selected ICMPv6 types.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from mip6bench.codec import DecodeError, Reader
from mip6bench.ipv6 import icmpv6_packet

ND_ROUTER_ADVERT = 134
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
OPT_SOURCE_LLA, OPT_TARGET_LLA, OPT_PREFIX_INFO = 1, 2, 3
OPT_ADVERTISEMENT_INTERVAL = 7
RA_FLAG_HOME_AGENT = 0x20
NA_FLAG_ROUTER, NA_FLAG_SOLICITED, NA_FLAG_OVERRIDE = 0x80, 0x40, 0x20
ICMP6_FILTER = 1
IPV6_RECVPKTINFO, IPV6_PKTINFO = 49, 50
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52
IPV6_JOIN_GROUP = 20
ALL_NODES = "ff02::1"


@dataclass(frozen=True)
class RouterAdvert:
    prefixes: tuple[str, ...]            # on-link prefixes ("2001:db8:11::/64")
    router_lifetime: int
    home_agent: bool
    advertisement_interval_ms: int | None


def parse_router_advert(data: bytes) -> RouterAdvert:
    """Decode an ICMPv6 Router Advertisement (as a raw ICMPv6 socket returns it)."""
    r = Reader(bytes(data))
    if r.u8("type") != ND_ROUTER_ADVERT:
        raise DecodeError("not a router advertisement")
    r.u8("code")
    r.u16("checksum")
    r.u8("hop limit")
    flags = r.u8("flags")
    lifetime = r.u16("router lifetime")
    r.u32("reachable time")
    r.u32("retrans timer")
    prefixes: list[str] = []
    interval = None
    while r.remaining:
        otype = r.u8("option type")
        olen = r.u8("option length") * 8
        if olen == 0:
            raise DecodeError("ND option of length 0")
        body = r.take(olen - 2, "ND option")
        if otype == OPT_PREFIX_INFO:
            if olen != 32:
                raise DecodeError(f"prefix information option length {olen}")
            plen, pflags = body[0], body[1]
            if plen > 128:
                raise DecodeError(f"prefix length {plen}")
            if pflags & 0x80:  # on-link
                net = ipaddress.IPv6Network((body[14:30], plen), strict=False)
                prefixes.append(str(net))
        elif otype == OPT_ADVERTISEMENT_INTERVAL:
            if olen != 8:
                raise DecodeError(f"advertisement interval option length {olen}")
            interval = struct.unpack("!I", body[2:6])[0]
    return RouterAdvert(tuple(prefixes), lifetime, bool(flags & RA_FLAG_HOME_AGENT), interval)


def solicited_node(address: str) -> str:
    low = ipaddress.IPv6Address(address).packed[13:]
    return str(ipaddress.IPv6Address(bytes.fromhex("ff02" + "00" * 9 + "01ff") + low))


def dad_probe(target: str) -> bytes:
    """RFC 4862 5.4.2: NS for `target` from :: to its solicited-node group, hop limit 255."""
    ns = struct.pack("!BBHI", ND_NEIGHBOR_SOLICIT, 0, 0, 0) + ipaddress.IPv6Address(target).packed
    return icmpv6_packet("::", solicited_node(target), ns)


def neighbor_advert(target: str, mac: str, flags: int = NA_FLAG_OVERRIDE) -> bytes:
    """ICMPv6 body of an NA for `target` with our link-layer address (for an ICMPv6 socket)."""
    lla = bytes.fromhex(mac.replace(":", ""))
    if len(lla) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return (struct.pack("!BBHI", ND_NEIGHBOR_ADVERT, 0, 0, flags << 24)
            + ipaddress.IPv6Address(target).packed + bytes((OPT_TARGET_LLA, 1)) + lla)


def neighbor_target(data: bytes) -> tuple[int, str] | None:
    """(type, target) of an NS or NA body, None for anything else or malformed."""
    if len(data) < 24 or data[0] not in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT):
        return None
    return data[0], str(ipaddress.IPv6Address(data[8:24]))


class IcmpSocket:
    """A raw ICMPv6 socket that receives only `types`; recv() -> (body, src, ifindex, hoplimit)."""

    def __init__(self, types: tuple[int, ...], ifname: str | None = None, multicast_loop: bool = True):
        """multicast_loop=False: what it sends to a multicast group does not come back to
        this node's sockets (this one included)."""
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            if not multicast_loop:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            words = [0xFFFFFFFF] * 8
            for t in types:
                words[t >> 5] &= ~(1 << (t & 31))
            self.sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            if ifname:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def join(self, group: str, ifindex: int) -> None:
        mreq = ipaddress.IPv6Address(group).packed + struct.pack("@I", ifindex)
        self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_JOIN_GROUP, mreq)

    def recv(self) -> tuple[bytes, str, int, int] | None:
        try:
            data, anc, _flags, addr = self.sock.recvmsg(65535, 256)
        except (BlockingIOError, InterruptedError):
            return None
        ifindex, hoplimit = 0, -1
        for level, kind, value in anc:
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= 20:
                ifindex = struct.unpack("@I", value[16:20])[0]
            elif level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(value) >= 4:
                hoplimit = struct.unpack("@i", value[:4])[0]
        return data, addr[0].split("%", 1)[0], ifindex, hoplimit

    def send_multicast(self, body: bytes, group: str, ifindex: int) -> None:
        self.sock.sendto(body, (group, 0, 0, ifindex))

    def close(self) -> None:
        self.sock.close()
