"""Route-optimised data packets (RFC 6275 6.3, 6.4, 9.3.1, 11.3.3) rewritten in user space.

Where the kernel lacks CONFIG_IPV6_MIP6 it can neither emit nor accept the Home Address
option and the type 2 routing header, so the agents convert between the form applications
see and the form on the wire:

    mobile node, out:  HoA -> CN                 =>  CoA -> CN  + Destination Options(HAO=HoA)
    correspondent, in: CoA -> CN + HAO(HoA)      =>  HoA -> CN
    correspondent, out: CN -> HoA                =>  CN -> CoA  + Routing Header type 2(HoA)
    mobile node, in:   CN -> CoA + RH2(HoA)      =>  CN -> HoA

The upper-layer checksum never changes: RFC 6275 has it computed over the home address
in both directions (the HAO source and the RH2 final destination), which is exactly the
plain packet's pseudo-header. These are pure functions on bytes (no sockets) so the
runtime and the tests share them; the fast paths slice bytes instead of decoding fully,
the receiving paths validate with the strict codec in mip6bench.ipv6.
"""
from __future__ import annotations

import struct

from mip6bench.codec import DecodeError
from mip6bench.ipv6 import (IPPROTO_DSTOPTS, IPPROTO_IPV6, IPPROTO_ROUTING, IPV6_HEADER_LEN,
                            address_bytes, decode_destination_options, decode_routing_header,
                            home_address_destopts, ipv6_header, routing_header_type2)

HAO_HEADER_LEN = 24   # destination options header holding only the Home Address option
RH2_HEADER_LEN = 24   # type 2 routing header
# What a route-optimised packet grows by; the interception devices' MTU leaves room for it.
RO_OVERHEAD = 24


def _check_plain(packet: bytes) -> None:
    if len(packet) < IPV6_HEADER_LEN or packet[0] >> 4 != 6:
        raise DecodeError("not an IPv6 packet")
    if struct.unpack_from("!H", packet, 4)[0] != len(packet) - IPV6_HEADER_LEN:
        raise DecodeError("IPv6 payload length does not match the packet")


def _header(first_word: bytes, payload_len: int, next_header: int, hop_limit: int,
            src: bytes, dst: bytes) -> bytes:
    return ipv6_header(src, dst, next_header, payload_len, hop_limit, first_word)


def add_home_address_option(packet: bytes, care_of: bytes) -> bytes:
    """Mobile node out: source HoA becomes ``care_of`` (16 bytes), the HoA moves into a
    Home Address option placed right after the IPv6 header."""
    _check_plain(packet)
    hoa = packet[8:24]
    destopts = home_address_destopts(hoa, packet[6])
    return _header(packet[0:4], len(packet) - IPV6_HEADER_LEN + HAO_HEADER_LEN, IPPROTO_DSTOPTS,
                   packet[7], care_of, packet[24:40]) + destopts + packet[40:]


def add_type2_routing_header(packet: bytes, care_of: bytes) -> bytes:
    """Correspondent out: destination HoA becomes ``care_of``; the HoA goes into a type 2
    routing header with Segments Left 1."""
    _check_plain(packet)
    hoa = packet[24:40]
    rh2 = routing_header_type2(hoa, packet[6])
    return _header(packet[0:4], len(packet) - IPV6_HEADER_LEN + RH2_HEADER_LEN, IPPROTO_ROUTING,
                   packet[7], packet[8:24], care_of) + rh2 + packet[40:]


def strip_home_address_option(packet: bytes) -> tuple[bytes, bytes]:
    """Correspondent in: returns (home address, plain packet with source = home address).

    Only a Destination Options header directly after the IPv6 header is handled (where
    RFC 6275 6.3 puts it); other options in it are dropped with it. DecodeError on
    anything malformed or without a Home Address option."""
    _check_plain(packet)
    if packet[6] != IPPROTO_DSTOPTS:
        raise DecodeError("no destination options header after the IPv6 header")
    opts = decode_destination_options(packet[IPV6_HEADER_LEN:])
    if opts.home_address is None:
        raise DecodeError("destination options without a home address option")
    hoa = address_bytes(opts.home_address)
    rest = packet[IPV6_HEADER_LEN + opts.length:]
    return hoa, _header(packet[0:4], len(rest), opts.next_header, packet[7], hoa,
                        packet[24:40]) + rest


def strip_type2_routing_header(packet: bytes) -> tuple[bytes, bytes]:
    """Mobile node in: returns (home address, plain packet with destination = home address)."""
    _check_plain(packet)
    if packet[6] != IPPROTO_ROUTING:
        raise DecodeError("no routing header after the IPv6 header")
    rh = decode_routing_header(packet[IPV6_HEADER_LEN:])
    if isinstance(rh, int):
        raise DecodeError("routing header is not of type 2")
    if rh.segments_left != 1:
        raise DecodeError(f"type 2 routing header with segments left {rh.segments_left}")
    hoa = address_bytes(rh.home_address)
    rest = packet[IPV6_HEADER_LEN + rh.length:]
    return hoa, _header(packet[0:4], len(rest), rh.next_header, packet[7], packet[8:24],
                        hoa) + rest


def encapsulate(packet: bytes, outer_src: bytes, outer_dst: bytes, hop_limit: int = 64) -> bytes:
    """IPv6-in-IPv6 (RFC 2473) without an encapsulation limit option."""
    return ipv6_header(outer_src, outer_dst, IPPROTO_IPV6, len(packet), hop_limit) + packet


GIST_PORT = b"\x01\x0e"   # UDP 270


def is_gist(packet: bytes) -> bool:
    """A UDP datagram to the GIST port, with or without a Hop-by-Hop header first."""
    nh, pos = packet[6], IPV6_HEADER_LEN
    if nh == 0 and len(packet) >= 42:
        nh, pos = packet[40], IPV6_HEADER_LEN + (packet[41] + 1) * 8
    return nh == 17 and len(packet) >= pos + 4 and packet[pos + 2:pos + 4] == GIST_PORT


def mn_outbound(packet: bytes, hoa: bytes | None, routes: dict[bytes, bytes],
                tunnel: tuple[bytes, bytes] | None) -> tuple[str, bytes | None]:
    """Mobile node out: a packet the kernel routed to the route-optimisation device.
    `routes` maps a correspondent (16 bytes) to the care-of address its binding holds;
    `tunnel` is (CoA, HA) while the MN is away, else None. Returns (counter, packet to
    send or None): with a Home Address option to a route-optimised correspondent, else
    reverse-tunnelled to the HA (RO ended after the kernel routed it here), else
    dropped. Path-coupled signalling (GIST) for the home address's flows takes the
    reverse tunnel, the path of HoTI and BU, not the route-optimised one."""
    if hoa is None or len(packet) < IPV6_HEADER_LEN or packet[8:24] != hoa:
        return "ro.out_not_from_home_address", None
    coa = routes.get(packet[24:40])
    if coa is not None and tunnel is not None and not is_gist(packet):
        return "ro.out", add_home_address_option(packet, coa)
    if tunnel is None:
        return "ro.out_dropped", None
    return "ro.out_tunnelled", encapsulate(packet, *tunnel)


def mn_inbound(packet: bytes, hoa: bytes | None, coa: bytes | None) -> tuple[str, bytes | None]:
    """Mobile node in (RFC 6275 11.3.3): a type 2 routing header must name our home
    address, and the packet must be addressed to our care-of address. Returns (counter,
    the plain packet for the home address, or None)."""
    try:
        rh_hoa, plain = strip_type2_routing_header(packet)
    except DecodeError:
        return "ro.in_malformed", None
    if rh_hoa != hoa or coa is None or packet[24:40] != coa:
        return "ro.in_not_for_us", None
    return "ro.in", plain
