"""IPv6 packets as pure functions on bytes (RFC 8200): the fixed header, the extension
headers the testbed builds or reads (Hop-by-Hop with a Router Alert option, RFC 2711;
Destination Options with the Home Address option, RFC 6275 6.3; the type 2 routing
header, RFC 6275 6.4), the option TLVs and padding they share with Mobility Header
options, upper-layer checksums over the IPv6 pseudo-header, UDP and ICMPv6 packets, and
a strict walk of a packet's extension header chain.

One module for every protocol that puts whole IPv6 packets on raw sockets or reads them:
mip6bench.mipv6.wire (Mobility Header), mip6bench.net.ro (route-optimised data),
mip6bench.net.rao (PANA discovery with Router Alert), mip6bench.net.ndisc (Neighbor
Discovery). No sockets, no clocks: decoding raises mip6bench.codec.DecodeError with the
reason.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from mip6bench import ipaddr
from mip6bench.codec import DecodeError, Reader, inet_checksum, ipv6_pseudo_header

__all__ = [
    "IPPROTO_HOPOPTS", "IPPROTO_UDP", "IPPROTO_IPV6", "IPPROTO_ROUTING", "IPPROTO_FRAGMENT",
    "IPPROTO_ICMPV6", "IPPROTO_NONE", "IPPROTO_DSTOPTS", "IPV6_HEADER_LEN",
    "HOME_ADDRESS_OPTION_TYPE", "ROUTING_TYPE_2", "OPT_PAD1", "OPT_PADN", "OPT_ROUTER_ALERT",
    "normalize_address", "address_bytes", "address_text", "upper_layer_checksum",
    "ipv6_header", "pad_options", "iter_option_tlvs",
    "DestinationOptions", "RoutingHeaderType2", "Ipv6Packet",
    "home_address_destopts", "encode_home_address_destopts", "decode_destination_options",
    "routing_header_type2", "encode_routing_header_type2", "decode_routing_header",
    "build_ipv6_packet", "parse_ipv6_packet",
    "router_alert_hopopts", "parse_hopopts", "router_alert_value", "ipv6_packet_with_hopopts",
    "RouterAlertPacket", "parse_router_alert_packet", "with_hop_limit",
    "udp_datagram", "parse_udp", "icmpv6_packet",
]

# Next Header values (RFC 8200, IANA "Assigned Internet Protocol Numbers").
IPPROTO_HOPOPTS = 0
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60

IPV6_HEADER_LEN = 40
HOME_ADDRESS_OPTION_TYPE = 201      # RFC 6275 6.3
ROUTING_TYPE_2 = 2                  # RFC 6275 6.4
OPT_PAD1, OPT_PADN, OPT_ROUTER_ALERT = 0, 1, 5


# --------------------------------------------------------------------------- addresses, checksums

# Memoised (mip6bench.ipaddr): the signalling codecs convert the same few addresses for
# every message, and the standard library's parser dominated the firewall's CPU at scale.
def normalize_address(addr: str) -> str:
    """The compressed text form of an IPv6 address; ValueError if it is not one."""
    return ipaddr.text6(addr)


def address_bytes(addr: str) -> bytes:
    return ipaddr.packed6(addr)


def address_text(raw: bytes) -> str:
    return ipaddr.text6(raw)


def upper_layer_checksum(src: bytes, dst: bytes, next_header: int, data: bytes) -> int:
    """The Internet checksum of `data` (checksum field zero) over the IPv6 pseudo-header
    (RFC 8200 8.1) with packed addresses."""
    return inet_checksum(ipv6_pseudo_header(src, dst, len(data), next_header) + data)


def ipv6_header(src: bytes, dst: bytes, next_header: int, payload_len: int,
                hop_limit: int = 64, first_word: bytes = b"\x60\x00\x00\x00") -> bytes:
    """The 40-byte fixed header; `first_word` carries version, traffic class and flow
    label (copy a received packet's to keep them)."""
    return first_word + struct.pack("!HBB", payload_len, next_header, hop_limit) + src + dst


# --------------------------------------------------------------------------- option TLVs

def pad_options(n: int) -> bytes:
    """n bytes of option padding: nothing, Pad1, or one PadN (RFC 8200 4.2; Mobility
    Header options use the same two, RFC 6275 6.2.2)."""
    if n == 0:
        return b""
    if n == 1:
        return b"\x00"
    return bytes((OPT_PADN, n - 2)) + bytes(n - 2)


def iter_option_tlvs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """Yield (type, offset, value) for each option between start and end, Pad1/PadN
    included; strict on lengths."""
    pos = start
    while pos < end:
        otype = data[pos]
        if otype == OPT_PAD1:
            yield otype, pos, b""
            pos += 1
            continue
        if pos + 2 > end:
            raise DecodeError(f"truncated option header at offset {pos}")
        olen = data[pos + 1]
        if pos + 2 + olen > end:
            raise DecodeError(f"option type {otype} at offset {pos} with length {olen} overruns the header")
        yield otype, pos, data[pos + 2:pos + 2 + olen]
        pos += 2 + olen


# --------------------------------------------------------------------------- Mobile IPv6 headers

@dataclass(frozen=True)
class DestinationOptions:
    """A decoded Destination Options header: the Home Address option, if any, and others."""

    next_header: int
    home_address: str | None
    other_options: tuple[tuple[int, bytes], ...] = ()
    length: int = 0


@dataclass(frozen=True)
class RoutingHeaderType2:
    """RFC 6275 6.4: one home address, Segments Left 1 in transit (0 once processed)."""

    next_header: int
    home_address: str
    segments_left: int = 1
    length: int = 24


def home_address_destopts(home_address: bytes, next_header: int) -> bytes:
    """A Destination Options header holding only the Home Address option (RFC 6275 6.3)
    for a packed address. The option needs 8n+6 alignment: two header bytes, a 4-byte
    PadN, then the option (24 bytes in all)."""
    return (bytes((next_header, 2)) + pad_options(4)
            + bytes((HOME_ADDRESS_OPTION_TYPE, 16)) + home_address)


def encode_home_address_destopts(home_address: str, next_header: int) -> bytes:
    return home_address_destopts(address_bytes(home_address), next_header)


def decode_destination_options(data: bytes) -> DestinationOptions:
    """Decode the Destination Options header at the start of ``data`` (its length is in the result)."""
    r = Reader(data)
    next_header = r.u8("destination options next header")
    length = (r.u8("destination options length") + 1) * 8
    if len(data) < length:
        raise DecodeError(f"truncated destination options header: needs {length} bytes, have {len(data)}")
    home_address = None
    others: list[tuple[int, bytes]] = []
    for otype, _pos, value in iter_option_tlvs(data, 2, length):
        if otype in (OPT_PAD1, OPT_PADN):
            continue
        if otype == HOME_ADDRESS_OPTION_TYPE:
            if len(value) != 16:
                raise DecodeError(f"home address option length {len(value)}, must be 16")
            if home_address is not None:
                raise DecodeError("more than one home address option")
            home_address = address_text(value)
            continue
        # RFC 8200 4.2: the two high-order bits say what to do with an unknown option.
        if otype >> 6:
            raise DecodeError(f"unrecognized destination option 0x{otype:02x} requires discarding the packet")
        others.append((otype, value))
    return DestinationOptions(next_header, home_address, tuple(others), length)


def routing_header_type2(home_address: bytes, next_header: int, segments_left: int = 1) -> bytes:
    """A type 2 routing header (24 bytes) for a packed home address."""
    if segments_left not in (0, 1):
        raise ValueError("segments left of a type 2 routing header is 0 or 1")
    return bytes((next_header, 2, ROUTING_TYPE_2, segments_left)) + bytes(4) + home_address


def encode_routing_header_type2(home_address: str, next_header: int, segments_left: int = 1) -> bytes:
    return routing_header_type2(address_bytes(home_address), next_header, segments_left)


def decode_routing_header(data: bytes) -> RoutingHeaderType2 | int:
    """Decode a type 2 routing header; for another routing type with Segments Left 0
    (which RFC 8200 4.4 says to ignore) return just its length in bytes."""
    r = Reader(data)
    next_header = r.u8("routing header next header")
    length = (r.u8("routing header length") + 1) * 8
    routing_type = r.u8("routing type")
    segments_left = r.u8("segments left")
    if len(data) < length:
        raise DecodeError(f"truncated routing header: needs {length} bytes, have {len(data)}")
    if routing_type != ROUTING_TYPE_2:
        if segments_left == 0:
            return length
        raise DecodeError(f"unsupported routing header type {routing_type} with segments left {segments_left}")
    if length != 24:
        raise DecodeError(f"type 2 routing header length {length}, must be 24")
    if segments_left not in (0, 1):
        raise DecodeError(f"type 2 routing header segments left {segments_left}, must be 1 (or 0 once processed)")
    return RoutingHeaderType2(next_header, address_text(data[8:24]), segments_left, 24)


# --------------------------------------------------------------------------- whole packets

@dataclass(frozen=True)
class Ipv6Packet:
    """An IPv6 packet reduced to what Mobile IPv6 needs.

    ``src``/``dst`` are the header fields as on the wire; ``home_address`` comes from a
    Home Address option, ``rh2_address`` from a type 2 routing header. ``next_header`` and
    ``payload`` are the upper layer (e.g. 135 and the Mobility Header).
    """

    src: str
    dst: str
    next_header: int
    payload: bytes
    hop_limit: int = 64
    home_address: str | None = None
    rh2_address: str | None = None
    rh2_segments_left: int = 0

    @property
    def checksum_src(self) -> str:
        return self.home_address or self.src

    @property
    def checksum_dst(self) -> str:
        return self.rh2_address if self.rh2_address and self.rh2_segments_left else self.dst


def _check_uint(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must be a {bits}-bit unsigned integer, got {value!r}")


def build_ipv6_packet(src: str, dst: str, next_header: int, payload: bytes, *,
                      hao: str | None = None, rh2: str | None = None, hop_limit: int = 64,
                      traffic_class: int = 0, flow_label: int = 0) -> bytes:
    """IPv6 header [+ type 2 routing header] [+ destination options with HAO] + payload.

    Order per RFC 8200 4.1: the routing header precedes the destination options header
    for the final destination, which is where the Home Address option lives.
    """
    _check_uint("hop limit", hop_limit, 8)
    _check_uint("traffic class", traffic_class, 8)
    _check_uint("flow label", flow_label, 20)
    chain = bytes(payload)
    nh = next_header
    if hao is not None:
        chain = encode_home_address_destopts(hao, nh) + chain
        nh = IPPROTO_DSTOPTS
    if rh2 is not None:
        chain = encode_routing_header_type2(rh2, nh) + chain
        nh = IPPROTO_ROUTING
    if len(chain) > 0xFFFF:
        raise ValueError("payload too long for IPv6 without jumbograms")
    first = (6 << 28) | (traffic_class << 20) | flow_label
    return (struct.pack("!IHBB", first, len(chain), nh, hop_limit)
            + address_bytes(src) + address_bytes(dst) + chain)


def parse_ipv6_packet(data: bytes) -> Ipv6Packet:
    """Walk the extension header chain of an IPv6 packet to the upper layer.

    Hop-by-hop and destination options are validated; a Home Address option and a type 2
    routing header are reported; fragments are refused (MIPv6 signaling is never
    fragmented in the testbed).
    """
    data = bytes(data)
    r = Reader(data)
    first = r.u32("IPv6 header")
    if first >> 28 != 6:
        raise DecodeError(f"IP version {first >> 28}, must be 6")
    payload_len = r.u16("payload length")
    nh = r.u8("next header")
    hop_limit = r.u8("hop limit")
    src = address_text(r.take(16, "source address"))
    dst = address_text(r.take(16, "destination address"))
    if payload_len != r.remaining:
        raise DecodeError(f"payload length {payload_len} but {r.remaining} bytes follow the header")
    pos = IPV6_HEADER_LEN
    home_address = rh2_address = None
    rh2_left = 0
    first_header = True
    while True:
        rest = data[pos:]
        if nh == IPPROTO_HOPOPTS:
            if not first_header:
                raise DecodeError("hop-by-hop options header not first")
            hdr = decode_destination_options(rest)
            if hdr.home_address is not None:
                raise DecodeError("home address option in a hop-by-hop header")
            nh, pos = hdr.next_header, pos + hdr.length
        elif nh == IPPROTO_DSTOPTS:
            hdr = decode_destination_options(rest)
            if hdr.home_address is not None:
                if home_address is not None:
                    raise DecodeError("more than one home address option")
                home_address = hdr.home_address
            nh, pos = hdr.next_header, pos + hdr.length
        elif nh == IPPROTO_ROUTING:
            rh = decode_routing_header(rest)
            if isinstance(rh, int):
                nh, pos = rest[0], pos + rh
            else:
                if rh2_address is not None:
                    raise DecodeError("more than one type 2 routing header")
                rh2_address, rh2_left = rh.home_address, rh.segments_left
                nh, pos = rh.next_header, pos + rh.length
        elif nh == IPPROTO_FRAGMENT:
            raise DecodeError("fragmented packets are not supported")
        else:
            break
        first_header = False
    return Ipv6Packet(src, dst, nh, data[pos:], hop_limit, home_address, rh2_address, rh2_left)


# --------------------------------------------------------------------------- Router Alert

def router_alert_hopopts(value: int, next_header: int = IPPROTO_UDP) -> bytes:
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
    return ipv6_header(address_bytes(src), address_bytes(dst), IPPROTO_HOPOPTS, len(body),
                       hop_limit) + body


@dataclass(frozen=True)
class RouterAlertPacket:
    """An intercepted IPv6 packet whose first extension header is Hop-by-Hop."""

    src: str
    dst: str
    hop_limit: int
    hopopts: bytes             # the whole Hop-by-Hop header
    router_alert: int | None
    next_header: int           # what follows the Hop-by-Hop header
    upper: bytes               # ... and its bytes


def parse_router_alert_packet(packet: bytes) -> RouterAlertPacket:
    """IPv6 header + Hop-by-Hop header, strictly (DecodeError otherwise)."""
    r = Reader(bytes(packet))
    first, payload_len, next_header, hop_limit = struct.unpack(
        "!IHBB", r.take(8, "IPv6 header"))
    if first >> 28 != 6:
        raise DecodeError(f"IP version {first >> 28}")
    src = address_text(r.take(16, "IPv6 source"))
    dst = address_text(r.take(16, "IPv6 destination"))
    if payload_len != r.remaining:
        raise DecodeError(f"IPv6 payload length {payload_len}, {r.remaining} bytes follow")
    if next_header != IPPROTO_HOPOPTS:
        raise DecodeError("no Hop-by-Hop header")
    if r.remaining < 2:
        raise DecodeError("truncated Hop-by-Hop header")
    hbh_len = (r.data[r.pos + 1] + 1) * 8
    hopopts = r.take(hbh_len, "Hop-by-Hop header")
    parse_hopopts(hopopts)             # strict: DecodeError for a malformed header
    return RouterAlertPacket(src, dst, hop_limit, hopopts, router_alert_value(hopopts),
                             hopopts[0], r.take(r.remaining, "upper layer"))


def parse_udp(src: str, dst: str, upper: bytes) -> tuple[int, int, bytes]:
    """(source port, destination port, payload) of a UDP datagram over IPv6, its length
    and checksum verified (a zero checksum is invalid in IPv6)."""
    if len(upper) < 8:
        raise DecodeError("truncated UDP header")
    sport, dport, length, checksum = struct.unpack("!HHHH", upper[:8])
    if length != len(upper):
        raise DecodeError(f"UDP length {length}, {len(upper)} bytes")
    if checksum == 0 or upper_layer_checksum(address_bytes(src), address_bytes(dst),
                                             IPPROTO_UDP, upper) != 0:
        raise DecodeError("bad UDP checksum")
    return sport, dport, bytes(upper[8:])


def with_hop_limit(packet: bytes, hop_limit: int) -> bytes:
    return bytes(packet[:7]) + bytes([hop_limit]) + bytes(packet[8:])


# --------------------------------------------------------------------------- UDP, ICMPv6

def udp_datagram(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header + payload with the checksum over the IPv6 pseudo-header."""
    s, d = address_bytes(src), address_bytes(dst)
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    csum = upper_layer_checksum(s, d, IPPROTO_UDP, header + payload)
    return struct.pack("!HHHH", sport, dport, length, csum or 0xFFFF) + payload


def icmpv6_packet(src: str | bytes, dst: str | bytes, icmp: bytes, hop_limit: int = 255) -> bytes:
    """A whole IPv6 packet carrying the ICMPv6 message `icmp` (its checksum field is
    filled in), for a raw socket that cannot send from the chosen source (e.g. ::), or a
    forwarder that answers in the kernel's place. Addresses as text or packed."""
    s = src if isinstance(src, bytes) else address_bytes(src)
    d = dst if isinstance(dst, bytes) else address_bytes(dst)
    csum = upper_layer_checksum(s, d, IPPROTO_ICMPV6, icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    return ipv6_header(s, d, IPPROTO_ICMPV6, len(icmp), hop_limit) + icmp
