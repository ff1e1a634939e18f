"""Mobility Header codec: round trips, exact bytes, alignment, checksum, strict rejections."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from mip6bench.codec import DecodeError, inet_checksum, ipv6_pseudo_header
from mip6bench.mipv6.constants import IPPROTO_MH, MHType, OptionType
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    MobileNodeIdentifier,
    NonceIndices,
    ReplayProtection,
    RoutingHeaderType2,
    UnknownMHType,
    UnknownOption,
    build_ipv6_packet,
    decode_destination_options,
    decode_mh,
    decode_routing_header,
    encode_home_address_destopts,
    encode_mh,
    encode_routing_header_type2,
    mh_body,
    option_offset,
    parse_ipv6_packet,
    wire_lifetime,
)

SRC = "2001:db8:1::100"
DST = "2001:db8:3::10"


def a(addr: str) -> bytes:
    return ipaddress.IPv6Address(addr).packed


def with_checksum(body: bytes, src=SRC, dst=DST) -> bytes:
    body = body[:4] + b"\0\0" + body[6:]
    ck = inet_checksum(ipv6_pseudo_header(a(src), a(dst), len(body), IPPROTO_MH) + body)
    return body[:4] + struct.pack("!H", ck) + body[6:]


ALL_OPTIONS = (
    BindingRefreshAdvice(40),
    AlternateCareOfAddress("2001:db8:2::100"),
    NonceIndices(7, 9),
    MobileNodeIdentifier.from_nai("mn1@example.net"),
    ReplayProtection(0x0123456789ABCDEF),
    UnknownOption(42, b"\x01\x02\x03"),
)

MESSAGES = [
    BindingRefreshRequest(),
    BindingRefreshRequest(options=(UnknownOption(200, b"xy"),)),
    HomeTestInit(b"cookie01"),
    CareOfTestInit(b"cookie02"),
    HomeTest(0xBEEF, b"cookie01", b"token001"),
    CareOfTest(1, b"cookie02", b"token002"),
    BindingUpdate(seq=0xFFFF, lifetime=420, ack=True),
    BindingUpdate(seq=1, lifetime=262140, ack=True, home_registration=True, link_local_compat=True,
                  key_management=True, options=ALL_OPTIONS + (Authentication(0x1000, bytes(range(12))),)),
    BindingUpdate(seq=2, lifetime=0, options=(NonceIndices(1, 2), BindingAuthorizationData(b"A" * 12))),
    BindingAck(status=0, seq=5, lifetime=400, key_management=True,
               options=(BindingRefreshAdvice(300), ReplayProtection(77), Authentication(300, b"B" * 16))),
    BindingAck(status=135, seq=9, lifetime=0, options=(BindingAuthorizationData(b"C" * 12),)),
    BindingError(status=1, home_address=SRC),
    BindingError(status=2),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_every_message(msg):
    data = encode_mh(msg, SRC, DST)
    assert len(data) % 8 == 0
    assert data[1] == len(data) // 8 - 1          # header length excludes the first 8 octets
    assert data[0] == 59 and data[2] == msg.MH_TYPE
    assert decode_mh(data, SRC, DST) == msg
    assert decode_mh(data) == msg                  # checksum not verified without addresses


def test_exact_bytes_of_a_binding_update():
    """Hand-assembled from the RFC 6275 6.1.7 figure: BU fixed part then 4 bytes of PadN."""
    bu = BindingUpdate(seq=0x1234, lifetime=400, ack=True, home_registration=True)
    body = bytes([59, 1, 5, 0, 0, 0]) + struct.pack("!HHH", 0x1234, 0xC000, 100) + bytes([1, 2, 0, 0])
    assert encode_mh(bu, SRC, DST) == with_checksum(body)


def test_exact_bytes_of_home_test_and_binding_error():
    hot = HomeTest(3, b"\x11" * 8, b"\x22" * 8)
    body = bytes([59, 2, 3, 0, 0, 0]) + b"\x00\x03" + b"\x11" * 8 + b"\x22" * 8   # 24 bytes: no padding
    assert encode_mh(hot, SRC, DST) == with_checksum(body)
    be = BindingError(2, SRC)
    body = bytes([59, 2, 7, 0, 0, 0, 2, 0]) + a(SRC)
    assert encode_mh(be, SRC, DST) == with_checksum(body)


def test_binding_ack_flags_and_lifetime_units():
    data = encode_mh(BindingAck(144, 0xABCD, 8, key_management=True), SRC, DST)
    assert data[6:12] == bytes([144, 0x80, 0xAB, 0xCD, 0, 2])


def _option_positions(data: bytes) -> dict[int, int]:
    out = {}
    for otype in (2, 3, 4, 5, 8, 9, 10):
        pos = option_offset(data, otype)
        if pos is not None:
            out[otype] = pos
    return out


@pytest.mark.parametrize("fixed_msg", [
    lambda opts: BindingUpdate(seq=1, lifetime=4, options=opts),
    lambda opts: BindingAck(status=0, seq=1, lifetime=4, options=opts),
    lambda opts: BindingRefreshRequest(options=opts),
    lambda opts: HomeTest(1, bytes(8), bytes(8), options=opts),
])
@pytest.mark.parametrize("auth_len", [12, 16, 20, 32])
def test_option_alignment_rules(fixed_msg, auth_len):
    """RFC 6275 6.2 / RFC 4285: AltCoA 8n+6, Nonce Indices 2n, BRA 2n, Replay 8n+2, Auth 4n+1
    ending on an 8-octet boundary, BAD 8n+2 and last."""
    for opts in [
        (NonceIndices(1, 2), AlternateCareOfAddress(SRC), BindingRefreshAdvice(8),
         MobileNodeIdentifier(b"x"), ReplayProtection(1), Authentication(999, bytes(auth_len))),
        (MobileNodeIdentifier(b"abc"), NonceIndices(1, 2), BindingAuthorizationData(bytes(12))),
        (BindingRefreshAdvice(4), AlternateCareOfAddress(SRC), BindingAuthorizationData(bytes(12))),
    ]:
        data = encode_mh(fixed_msg(opts), SRC, DST)
        pos = _option_positions(data)
        assert pos.get(3, 6) % 8 == 6
        assert pos.get(4, 0) % 2 == 0 and pos.get(2, 0) % 2 == 0
        assert pos.get(10, 2) % 8 == 2
        if 9 in pos:
            assert pos[9] % 4 == 1 and pos[9] + 7 + auth_len == len(data)
        if 5 in pos:
            assert pos[5] % 8 == 2 and pos[5] + 14 == len(data)
        assert decode_mh(data, SRC, DST).options == opts


def test_pad1_and_padn_are_skipped_and_misalignment_tolerated():
    # BU fixed part (12 bytes), Pad1, Nonce Indices at odd offset 13 (tolerated on decode),
    # PadN with one data byte, PadN with none: 24 bytes.
    opts = bytes([0]) + bytes([4, 4, 0, 1, 0, 2]) + bytes([1, 1, 0]) + bytes([1, 0])
    body = bytes([59, 2, 5, 0, 0, 0]) + struct.pack("!HHH", 1, 0, 1) + opts
    assert len(body) == 24
    msg = decode_mh(with_checksum(body), SRC, DST)
    assert msg == BindingUpdate(seq=1, lifetime=4, options=(NonceIndices(1, 2),))


def test_unknown_options_are_reported_and_skipped():
    body = bytes([59, 1, 0, 0, 0, 0, 0, 0]) + bytes([77, 2, 0xAA, 0xBB]) + bytes([0x21, 0])
    body += bytes(16 - len(body))
    msg = decode_mh(with_checksum(body), SRC, DST)
    assert msg.unknown_options == (UnknownOption(77, b"\xaa\xbb"), UnknownOption(0x21, b""))
    assert msg.find(NonceIndices) is None


def test_checksum_is_verified():
    data = bytearray(encode_mh(BindingUpdate(seq=1, lifetime=4), SRC, DST))
    assert inet_checksum(ipv6_pseudo_header(a(SRC), a(DST), len(data), 135) + bytes(data)) == 0
    with pytest.raises(DecodeError, match="checksum"):
        decode_mh(bytes(data), SRC, "2001:db8::1")
    data[7] ^= 1
    with pytest.raises(DecodeError, match="checksum"):
        decode_mh(bytes(data), SRC, DST)
    with pytest.raises(ValueError):
        decode_mh(bytes(data), SRC, None)


def test_unknown_mh_type_is_a_distinct_error():
    body = bytes([59, 0, 42, 0, 0, 0, 0, 0])
    with pytest.raises(UnknownMHType) as info:
        decode_mh(with_checksum(body), SRC, DST)
    assert info.value.mh_type == 42 and info.value.reason == "unknown MH type 42"
    assert isinstance(info.value, DecodeError)


def _bu_body(opts: bytes = b"", units: int | None = None, proto: int = 59) -> bytes:
    body = bytes([proto, 0, 5, 0, 0, 0]) + struct.pack("!HHH", 1, 0, 1) + opts
    body += bytes((-len(body)) % 8)
    return bytes([proto, len(body) // 8 - 1 if units is None else units]) + body[2:]


@pytest.mark.parametrize("data, reason", [
    (b"", "truncated payload proto"),
    (bytes([59, 0, 5]), "truncated"),
    (_bu_body(units=3), "truncated mobility header: header length says 32 bytes, have 16"),
    (_bu_body() + bytes(8), "8 trailing bytes after mobility header"),
    (_bu_body(proto=6), "payload proto 6, must be 59"),
    (bytes([59, 0, 5, 0, 0, 0, 0, 0]), "header length 8 too short for BindingUpdate"),
    (bytes([59, 0, 3, 0, 0, 0, 0, 0]), "too short for HomeTest"),
    (bytes([59, 1, 7, 0]) + bytes(12), "too short for BindingError"),
    (_bu_body(bytes([4, 3, 0, 1, 0])), "nonce indices option length 3, must be 4"),
    (_bu_body(bytes([3, 15]) + bytes(15)), "alternate care-of address option length 15, must be 16"),
    (_bu_body(bytes([5, 10]) + bytes(10)), "binding authorization data option length 10, must be 12"),
    (_bu_body(bytes([2, 3, 0, 0, 0])), "binding refresh advice option length 3, must be 2"),
    (_bu_body(bytes([10, 7]) + bytes(7)), "replay protection option length 7, must be 8"),
    (_bu_body(bytes([8, 1, 1])), "MN-ID option length 1, must be at least 2"),
    (_bu_body(bytes([9, 5, 1, 0, 0, 1, 0])), "authentication option length 5, must be at least 6"),
    (_bu_body(bytes([4, 9, 0, 0])), "overruns the header"),
])
def test_strict_rejections_have_reasons(data, reason):
    with pytest.raises(DecodeError) as info:
        decode_mh(data)
    assert reason in info.value.reason


def test_truncated_option_header_at_end():
    body = bytes([59, 1, 0, 0, 0, 0, 0, 0]) + bytes(7) + bytes([4])
    with pytest.raises(DecodeError, match="truncated option header"):
        decode_mh(body)


def test_encoder_validates_fields_and_option_order():
    with pytest.raises(ValueError):
        BindingUpdate(seq=70000, lifetime=4)
    with pytest.raises(ValueError):
        BindingUpdate(seq=1, lifetime=6)            # not a multiple of 4
    with pytest.raises(ValueError):
        BindingUpdate(seq=1, lifetime=262144)
    with pytest.raises(ValueError):
        HomeTestInit(b"short")
    with pytest.raises(ValueError):
        HomeTest(1, bytes(8), bytes(7))
    with pytest.raises(ValueError):
        BindingAuthorizationData(bytes(11))
    with pytest.raises(ValueError):
        AlternateCareOfAddress("10.0.0.1")
    with pytest.raises(ValueError):
        UnknownOption(5, b"")                        # has its own class
    with pytest.raises(ValueError):
        BindingUpdate(seq=1, lifetime=4, options=("not an option",))
    bad_order = BindingUpdate(seq=1, lifetime=4, options=(BindingAuthorizationData(bytes(12)), NonceIndices(1, 1)))
    with pytest.raises(ValueError, match="must be the last option"):
        encode_mh(bad_order, SRC, DST)
    auth_first = BindingUpdate(seq=1, lifetime=4, options=(Authentication(300, bytes(12)), ReplayProtection(1)))
    with pytest.raises(ValueError, match="must be the last option"):
        encode_mh(auth_first, SRC, DST)


def test_mh_body_has_zero_checksum_and_encode_fills_it():
    bu = BindingUpdate(seq=3, lifetime=8)
    body = mh_body(bu)
    assert body[4:6] == b"\0\0"
    assert encode_mh(bu, SRC, DST) == with_checksum(body)


def test_mn_id_nai_and_other_subtypes():
    opt = MobileNodeIdentifier.from_nai("user@realm")
    assert opt.nai == "user@realm" and opt.value() == b"\x01user@realm"
    assert MobileNodeIdentifier(b"\xff\xfe").nai is None
    assert MobileNodeIdentifier(b"abc", subtype=7).nai is None


def test_option_lists_find_helpers():
    bu = BindingUpdate(seq=1, lifetime=4, options=(NonceIndices(1, 2), UnknownOption(99), NonceIndices(3, 4)))
    assert bu.find(NonceIndices) == NonceIndices(1, 2)
    assert bu.find_all(NonceIndices) == (NonceIndices(1, 2), NonceIndices(3, 4))
    assert bu.find(ReplayProtection) is None


def test_messages_of_different_types_never_compare_equal():
    assert HomeTestInit(bytes(8)) != CareOfTestInit(bytes(8))
    assert HomeTest(1, bytes(8), bytes(8)) != CareOfTest(1, bytes(8), bytes(8))
    assert decode_mh(encode_mh(CareOfTestInit(b"12345678"), SRC, DST)).MH_TYPE == MHType.CARE_OF_TEST_INIT


def test_wire_lifetime_rounding():
    assert wire_lifetime(0) == 0 and wire_lifetime(-5) == 0
    assert wire_lifetime(7.9) == 4 and wire_lifetime(420) == 420
    assert wire_lifetime(10**9) == 262140


# --------------------------------------------------------------------------- extension headers

def test_home_address_destination_option_layout():
    data = encode_home_address_destopts(SRC, IPPROTO_MH)
    assert data == bytes([135, 2, 1, 2, 0, 0, 201, 16]) + a(SRC)
    assert data.index(bytes([201])) % 8 == 6        # 8n+6 alignment
    hdr = decode_destination_options(data)
    assert (hdr.next_header, hdr.home_address, hdr.length) == (135, SRC, 24)


@pytest.mark.parametrize("data, reason", [
    (bytes([59, 2, 1, 2, 0, 0, 201, 15]) + bytes(16), "home address option length 15"),
    (bytes([59, 0, 0x80, 4, 0, 0, 0, 0]), "unrecognized destination option 0x80"),
    (bytes([59, 1]) + bytes(6), "truncated destination options header"),
    (bytes([59, 5, 201, 16]) + a(SRC) + bytes([201, 16]) + a(SRC) + bytes(10), "more than one home address option"),
])
def test_destination_options_rejections(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_destination_options(data)


def test_destination_options_skip_unknown_low_bits_options():
    data = bytes([59, 0, 0x1E, 2, 0, 0, 0, 0])
    hdr = decode_destination_options(data)
    assert hdr.home_address is None and hdr.other_options == ((0x1E, b"\0\0"),)


def test_routing_header_type2():
    data = encode_routing_header_type2(SRC, IPPROTO_MH)
    assert data == bytes([135, 2, 2, 1, 0, 0, 0, 0]) + a(SRC)
    assert decode_routing_header(data) == RoutingHeaderType2(135, SRC, 1, 24)
    with pytest.raises(DecodeError, match="segments left 2"):
        decode_routing_header(data[:3] + b"\x02" + data[4:])
    with pytest.raises(DecodeError, match="length 32, must be 24"):
        decode_routing_header(bytes([135, 3, 2, 1]) + bytes(28))
    with pytest.raises(DecodeError, match="unsupported routing header type 0"):
        decode_routing_header(bytes([135, 2, 0, 1]) + bytes(20))
    assert decode_routing_header(bytes([135, 2, 0, 0]) + bytes(20)) == 24   # ignorable
    with pytest.raises(ValueError):
        encode_routing_header_type2(SRC, 135, segments_left=2)


def test_ipv6_packet_with_hao_and_rh2_round_trip():
    coa, cn = "2001:db8:2::100", DST
    # BU from the MN: source CoA, Home Address option; checksum over the HoA.
    bu = encode_mh(BindingUpdate(seq=1, lifetime=8), SRC, cn)
    pkt = parse_ipv6_packet(build_ipv6_packet(coa, cn, IPPROTO_MH, bu, hao=SRC))
    assert (pkt.src, pkt.dst, pkt.home_address, pkt.next_header) == (coa, cn, SRC, 135)
    assert pkt.payload == bu and pkt.checksum_src == SRC
    assert decode_mh(pkt.payload, pkt.checksum_src, pkt.checksum_dst)
    # BA to the MN: destination CoA, type 2 routing header with the HoA (final destination).
    ba = encode_mh(BindingAck(0, 1, 8), cn, SRC)
    raw = build_ipv6_packet(cn, coa, IPPROTO_MH, ba, rh2=SRC, hop_limit=7)
    pkt = parse_ipv6_packet(raw)
    assert (pkt.dst, pkt.rh2_address, pkt.rh2_segments_left, pkt.hop_limit) == (coa, SRC, 1, 7)
    assert pkt.checksum_dst == SRC and decode_mh(pkt.payload, pkt.checksum_src, pkt.checksum_dst)
    both = parse_ipv6_packet(build_ipv6_packet(cn, coa, 6, b"tcp", hao=SRC, rh2=SRC))
    assert both.payload == b"tcp" and both.home_address == SRC and both.rh2_address == SRC


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: b"\x40" + p[1:], "IP version 4"),
    (lambda p: p[:4] + b"\x00\x01" + p[6:], "payload length 1"),
    (lambda p: p[:6] + bytes([44]) + p[7:], "fragmented"),
    (lambda p: p[:6] + bytes([0]) + p[7:40] + bytes([60, 0, 0, 0, 0, 0, 0, 0]) + p[48:],
     "unrecognized destination option|hop-by-hop|truncated|option"),
])
def test_ipv6_packet_rejections(mutate, reason):
    raw = build_ipv6_packet(SRC, DST, 59, bytes(16), hao=SRC)
    with pytest.raises(DecodeError, match=reason):
        parse_ipv6_packet(mutate(raw))


def test_ipv6_hop_by_hop_must_be_first():
    hbh = bytes([59, 0, 1, 4, 0, 0, 0, 0])
    ok = build_ipv6_packet(SRC, DST, 0, hbh)
    assert parse_ipv6_packet(ok).next_header == 59
    dst_then_hbh = build_ipv6_packet(SRC, DST, 60, bytes([0, 0, 1, 4, 0, 0, 0, 0]) + hbh)
    with pytest.raises(DecodeError, match="hop-by-hop options header not first"):
        parse_ipv6_packet(dst_then_hbh)


def test_option_type_numbers():
    assert [OptionType.BINDING_REFRESH_ADVICE, OptionType.ALTERNATE_CARE_OF_ADDRESS, OptionType.NONCE_INDICES,
            OptionType.BINDING_AUTHORIZATION_DATA, OptionType.MOBILE_NODE_IDENTIFIER, OptionType.AUTHENTICATION,
            OptionType.REPLAY_PROTECTION] == [2, 3, 4, 5, 8, 9, 10]


def test_size_limits_are_enforced_on_encode():
    with pytest.raises(ValueError):
        MobileNodeIdentifier(b"x" * 255)
    with pytest.raises(ValueError):
        Authentication(300, b"x" * 251)
    with pytest.raises(ValueError):
        MobileNodeIdentifier("text-not-bytes")
    with pytest.raises(ValueError, match="too long"):
        UnknownOption(99, b"x" * 256).encode()
    big = BindingRefreshRequest(options=tuple(UnknownOption(99, b"x" * 250) for _ in range(9)))
    with pytest.raises(ValueError, match="mobility header too long"):
        encode_mh(big, SRC, DST)
    with pytest.raises(ValueError):
        mh_body("not a message")
    with pytest.raises(ValueError, match="jumbograms"):
        build_ipv6_packet(SRC, DST, 59, bytes(70000))


def test_largest_options_round_trip():
    msg = BindingUpdate(seq=1, lifetime=4, options=(MobileNodeIdentifier(b"n" * 254), Authentication(300, b"a" * 248)))
    assert decode_mh(encode_mh(msg, SRC, DST), SRC, DST) == msg


def test_ipv6_packet_chain_rejections():
    mh = encode_mh(BindingRefreshRequest(), SRC, DST)
    hao_hdr = encode_home_address_destopts(SRC, 60)
    two_hao = build_ipv6_packet(SRC, DST, 60, hao_hdr + encode_home_address_destopts(SRC, 135) + mh)
    with pytest.raises(DecodeError, match="more than one home address option"):
        parse_ipv6_packet(two_hao)
    hbh_hao = build_ipv6_packet(SRC, DST, 0, encode_home_address_destopts(SRC, 135) + mh)
    with pytest.raises(DecodeError, match="home address option in a hop-by-hop header"):
        parse_ipv6_packet(hbh_hao)
    two_rh2 = build_ipv6_packet(SRC, DST, 43, encode_routing_header_type2(SRC, 43)
                                + encode_routing_header_type2(SRC, 135) + mh)
    with pytest.raises(DecodeError, match="more than one type 2 routing header"):
        parse_ipv6_packet(two_rh2)
    # A routing header of another type with nothing left to do is skipped (RFC 8200 4.4).
    spent = bytes([135, 2, 0, 0]) + bytes(20)
    pkt = parse_ipv6_packet(build_ipv6_packet(SRC, DST, 43, spent + mh))
    assert pkt.next_header == 135 and pkt.payload == mh and pkt.rh2_address is None
    with pytest.raises(DecodeError):
        option_offset(b"\x3b\x00\x63", 5)


# ---- the protecting option is the last one (issue 10, defect 7) -------------------------

def _bu_with_raw_options(options: list) -> bytes:
    """A Binding Update whose options are laid out by hand (each at its alignment, PadN
    between), so the test does not rely on the encoder, which refuses this layout."""
    body = bytearray(struct.pack("!HHH", 7, 0x8000, 100))      # seq, A flag, lifetime
    pos = 6 + len(body)
    for opt in options:
        x, y = opt.alignment()
        pad = (y - pos) % x
        body += b"\x00" if pad == 1 else (bytes((1, pad - 2)) + bytes(pad - 2) if pad else b"")
        pos += pad
        body += opt.encode()
        pos += len(opt.encode())
    pad = (-pos) % 8
    body += b"\x00" if pad == 1 else (bytes((1, pad - 2)) + bytes(pad - 2) if pad else b"")
    total = 6 + len(body)
    return bytes((59, total // 8 - 1, MHType.BINDING_UPDATE, 0, 0, 0)) + bytes(body)


@pytest.mark.parametrize("last", [BindingAuthorizationData(bytes(12)),
                                  Authentication(0x1001, bytes(12))])
@pytest.mark.parametrize("after", [AlternateCareOfAddress("2001:db8:2::9"),
                                   NonceIndices(1, 2)])
def test_an_option_after_the_protecting_one_is_refused(last, after):
    assert decode_mh(_bu_with_raw_options([after, last])).options == (after, last)
    with pytest.raises(DecodeError, match="must be the last option"):
        decode_mh(_bu_with_raw_options([last, after]))


def test_padding_after_the_protecting_option_is_still_fine():
    data = _bu_with_raw_options([BindingAuthorizationData(bytes(12))])
    padded = data[:1] + bytes((data[1] + 1,)) + data[2:] + bytes((1, 6)) + bytes(6)
    assert decode_mh(padded).options == (BindingAuthorizationData(bytes(12)),)
