"""mip6bench.ipv6, the one IPv6 packet module: what it builds, checked with scapy as the
independent decoder, and what it refuses."""
from __future__ import annotations

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (ICMPv6ND_NS, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting,
                                HAO)

from mip6bench import ipv6
from mip6bench.codec import DecodeError
from mip6bench.net import ndisc, ro

SRC, DST, HOA = "2001:db8:1::10", "2001:db8:2::20", "2001:db8:3::30"


def test_icmpv6_packet_checksum_matches_scapy():
    pkt = ndisc.dad_probe(HOA)                      # built with ipv6.icmpv6_packet
    parsed = IPv6(pkt)
    assert (parsed.src, parsed.dst, parsed.hlim, parsed.nh) == ("::", "ff02::1:ff00:30", 255, 58)
    ns = parsed[ICMPv6ND_NS]
    assert ns.tgt == HOA
    sent = ns.cksum
    del ns.cksum
    assert IPv6(bytes(parsed))[ICMPv6ND_NS].cksum == sent


def test_encapsulation_header_is_ipv6_in_ipv6():
    inner = ipv6.build_ipv6_packet(HOA, DST, 59, b"")
    outer = IPv6(ro.encapsulate(inner, ipv6.address_bytes(SRC), ipv6.address_bytes(DST), 7))
    assert (outer.src, outer.dst, outer.nh, outer.hlim, outer.plen) == (SRC, DST, 41, 7, 40)
    assert bytes(outer.payload) == inner


def test_home_address_option_and_type2_header_as_scapy_reads_them():
    with_hao = IPv6(ipv6.build_ipv6_packet(SRC, DST, 59, b"", hao=HOA))
    assert with_hao[IPv6ExtHdrDestOpt].options[-1].hoa == HOA
    assert isinstance(with_hao[IPv6ExtHdrDestOpt].options[-1], HAO)
    with_rh2 = IPv6(ipv6.build_ipv6_packet(SRC, DST, 59, b"", rh2=HOA))
    rh = with_rh2[IPv6ExtHdrRouting]
    assert (rh.type, rh.segleft, rh.addresses) == (2, 1, [HOA])
    # the raw-address builders are the ones the text forms use
    assert ipv6.home_address_destopts(ipv6.address_bytes(HOA), 6) == \
        ipv6.encode_home_address_destopts(HOA, 6)
    assert ipv6.routing_header_type2(ipv6.address_bytes(HOA), 6) == \
        ipv6.encode_routing_header_type2(HOA, 6)


def test_udp_round_trip_and_checksum_against_scapy():
    datagram = ipv6.udp_datagram(SRC, DST, 716, 716, b"payload")
    pkt = ipv6.ipv6_packet_with_hopopts(SRC, DST, 9, ipv6.router_alert_hopopts(68), 17, datagram)
    parsed = IPv6(pkt)
    sent = parsed[UDP].chksum
    del parsed[UDP].chksum
    assert IPv6(bytes(parsed))[UDP].chksum == sent
    ra = ipv6.parse_router_alert_packet(pkt)
    assert (ra.router_alert, ra.hop_limit, ra.next_header) == (68, 9, 17)
    assert ipv6.parse_udp(SRC, DST, ra.upper) == (716, 716, b"payload")
    with pytest.raises(DecodeError, match="checksum"):
        ipv6.parse_udp(HOA, DST, ra.upper)


@pytest.mark.parametrize("n", range(0, 9))
def test_padding_is_pad1_or_one_padn(n):
    pad = ipv6.pad_options(n)
    assert len(pad) == n
    assert [t for t, _, _ in ipv6.iter_option_tlvs(pad, 0, n)] == ([0] if n == 1 else [1] if n else [])


def test_option_overrunning_its_header_is_refused():
    with pytest.raises(DecodeError, match="overruns"):
        list(ipv6.iter_option_tlvs(bytes([1, 9, 0, 0]), 0, 4))
