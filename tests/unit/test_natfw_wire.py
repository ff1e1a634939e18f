"""NATFW NSLP codec: hand-built byte layouts from RFC 5973's figures, a second minimal
decoder written here from the same figures, strictness, and a fixed-seed fuzz."""
from __future__ import annotations

import random
import struct

import pytest

from mip6bench.codec import DecodeError
from mip6bench.natfw import wire as w

from .natfw_harness import mutate

HOA = "2001:db8:1::1001"


def obj(t, body, ab=0):
    return struct.pack("!HH", (ab << 14) | t, len(body) // 4) + body


# (object, hand-written bytes of the whole object)
VECTORS = [
    (w.Lifetime(30), bytes.fromhex("000c0001" "0000001e")),
    (w.ExtFlowInfo(w.ACTION_ALLOW, 0), bytes.fromhex("000f0001" "00010000")),
    (w.ExtFlowInfo(w.ACTION_DENY, 1), bytes.fromhex("000f0001" "00020001")),
    (w.Msn(0xDEADBEEF), bytes.fromhex("00120001" "deadbeef")),
    (w.Nonce(7), bytes.fromhex("00110001" "00000007")),
    (w.InfoCode(0x5, 0x02, 0x016), bytes.fromhex("00100001" "05020016")),
    (w.InfoCode(0x2, 0x01), bytes.fromhex("00100001" "02010000")),
    (w.ExternalAddress(5000, 17, "192.0.2.1"), bytes.fromhex("000d0002" "13881100" "c0000201")),
    (w.ExternalAddress(80, 6, "192.0.2.9", binding=True),
     bytes.fromhex("000e0002" "00500600" "c0000209")),
    (w.IcmpTypes((1, 2, 128)), bytes.fromhex("00140001" "03010280")),
    (w.IcmpTypes(()), bytes.fromhex("00140001" "00000000")),
    # DTINFO: flags P, prefix 128, UDP, DS-field 0; receiver (dst) port 2000 first
    (w.DataTerminalInfo(17, 128, 1000, 2000), bytes.fromhex("00130002" "40801100" "07d003e8")),
    # DS-field 46 (EF) sits in the top 6 bits of the 4th byte: 46 << 2 = 0xb8
    (w.DataTerminalInfo(17, 64, 1, 2, ds_field=46, sender="2001:db8::"),
     bytes.fromhex("00130006" "604011b8" "00020001" "20010db8000000000000000000000000")),
    (w.DataTerminalInfo(6, 24, spi=0x1234, sender="192.0.2.0"),
     bytes.fromhex("00130003" "a0180600" "00001234" "c0000200")),
    (w.SessionAuth(bytes(8)), bytes.fromhex("80160002") + bytes(8)),      # A/B 10
    (w.SessionAuth(bytes(4), w.AB_MANDATORY), bytes.fromhex("00160001") + bytes(4)),
    (w.Mip6Flow(w.MIP6_MH, 2), bytes.fromhex("07d00001" "01020000")),
    (w.Mip6Flow(w.MIP6_HAO, 0, HOA),
     bytes.fromhex("07d00005" "02000000" "20010db8000100000000000000001001")),
    (w.UnknownObject(0x123, w.AB_FORWARD, b"abcd"), bytes.fromhex("81230001") + b"abcd"),
]


@pytest.mark.parametrize("o, raw", VECTORS)
def test_object_vectors_both_ways(o, raw):
    assert w.encode_object(o) == raw
    from mip6bench.codec import Reader
    r = Reader(raw)
    assert w.decode_object(r) == o and r.remaining == 0


def independent_decode(data: bytes):
    """A second decoder from RFC 5973 section 4 figures: header, then TLV objects."""
    mtype, flags = data[0], data[1]
    out, i = [], 4
    while i < len(data):
        h1, h2 = struct.unpack_from("!HH", data, i)
        n = (h2 & 0xFFF) * 4
        out.append(((h1 >> 14), h1 & 0xFFF, data[i + 4:i + 4 + n]))
        i += 4 + n
    assert i == len(data)
    return mtype, flags >> 7, out


def test_create_message_layout_and_second_decoder():
    token = w.SessionAuth(bytes(12))
    m = w.create(60, 9, w.ACTION_ALLOW, w.Mip6Flow(w.MIP6_MH, 1), token)
    raw = m.encode()
    assert raw[:4] == bytes([0x01, 0, 0, 0])
    mtype, p, objs = independent_decode(raw)
    assert (mtype, p) == (1, 0)
    assert [(t, body) for _, t, body in objs] == [
        (0x00C, struct.pack("!I", 60)), (0x00F, struct.pack("!HH", 1, 0)),
        (0x012, struct.pack("!I", 9)), (0x7D0, bytes([1, 1, 0, 0])), (0x016, bytes(12))]
    assert w.decode(raw) == m


@pytest.mark.parametrize("m", [
    w.response(9, w.InfoCode.of(w.INFO_SUCCESS), 60),
    w.response(3, w.InfoCode.of(w.ERR_AUTHORIZATION_FAILED, 0x016)),
    w.notify(w.InfoCode.of(w.ERR_SESSION_TERMINATED)),
    w.NslpMessage(w.EXT, (w.Lifetime(5), w.ExtFlowInfo(), w.Msn(1),
                          w.DataTerminalInfo(17, 128, 1, 2), w.Nonce(3)), proxy=True),
])
def test_messages_round_trip_and_second_decoder(m):
    raw = m.encode()
    mtype, p, objs = independent_decode(raw)
    assert (mtype, bool(p)) == (m.msg_type, m.proxy)
    assert [t for _, t, _ in objs] == [w.object_type(o) for o in m.objects]
    assert w.decode(raw) == m


def test_proxy_flag_bit():
    raw = w.NslpMessage(w.NOTIFY, (w.InfoCode(1, 1),), proxy=True).encode()
    assert raw[:4] == bytes([0x04, 0x80, 0, 0])


@pytest.mark.parametrize("raw, info", [
    (b"\x01\x00\x00", w.ERR_WRONG_MESSAGE_LENGTH),
    (bytes([9, 0, 0, 0]), w.ERR_ILLEGAL_MESSAGE_TYPE),
    (bytes([1, 0x40, 0, 0]), w.ERR_BAD_FLAGS),
    (bytes([1, 0, 0, 0]) + obj(0xC, bytes(4)) + obj(0xF, b"\0\1\0\0"),
     w.ERR_MANDATORY_OBJECT_MISSING),
    (w.create(1, 1).encode() + obj(0xC, bytes(4)), w.ERR_DUPLICATE_OBJECT),
    (w.create(1, 1).encode() + obj(0x300, bytes(4)), w.ERR_UNKNOWN_OBJECT),
    (w.create(1, 1).encode() + obj(0x013, bytes([0x40, 0, 0, 0, 0, 0, 0, 0])),
     w.ERR_ILLEGAL_OBJECT),     # DTINFO not in CREATE
    (bytes([1, 0, 0, 0]) + obj(0xC, bytes(8)), w.ERR_WRONG_OBJECT_LENGTH),
    (bytes([1, 0, 0, 0]) + obj(0xF, b"\0\3\0\0"), w.ERR_UNKNOWN_RULE_ACTION),
    (bytes([1, 0, 0, 0]) + obj(0xF, b"\0\1\0\2"), w.ERR_SUB_PORTS_NOT_PERMITTED),
    (bytes([2, 0, 0, 0]) + obj(0x13, bytes([0xC0, 0x80, 17, 0]) + bytes(8)),
     w.ERR_INVALID_FLAG_COMBINATION),
    (bytes([2, 0, 0, 0]) + obj(0x13, bytes([0x00, 0x80, 17, 1])), w.ERR_UNKNOWN_FIELD_VALUE),
    (bytes([3, 0, 0, 0]) + struct.pack("!HH", 0x10, 5) + bytes(4), w.ERR_WRONG_MESSAGE_LENGTH),
])
def test_strict_decoding_names_the_information_code(raw, info):
    with pytest.raises(w.NslpDecodeError) as err:
        w.decode(raw)
    assert err.value.info == info and err.value.reason


def test_ignore_and_forward_extensibility():
    base = w.create(1, 1).encode()
    assert w.decode(base + obj(0x300, bytes(4), ab=1)) == w.create(1, 1)
    fwd = w.decode(base + obj(0x300, b"wxyz", ab=2))
    assert fwd.objects[-1] == w.UnknownObject(0x300, 2, b"wxyz")
    with pytest.raises(w.NslpDecodeError):
        w.decode(base + obj(0x300, bytes(4), ab=3))


def test_serial_arithmetic():
    assert w.serial_newer(1, 0) and w.serial_newer(0, 0xFFFFFFFF)
    assert not w.serial_newer(5, 5) and not w.serial_newer(4, 5)


def test_fuzz_only_decode_errors_escape():
    rnd = random.Random(5973)
    seeds = [w.create(60, 9, w.ACTION_ALLOW, w.Mip6Flow(w.MIP6_HAO, 0, HOA),
                      w.IcmpTypes((1, 2)), w.SessionAuth(bytes(8))).encode(),
             w.response(9, w.InfoCode.of(w.INFO_SUCCESS), 60,
                        w.ExternalAddress(1, 17, "192.0.2.1")).encode(),
             w.NslpMessage(w.EXT, (w.Lifetime(5), w.ExtFlowInfo(), w.Msn(1),
                                   w.DataTerminalInfo(6, 24, 1, 2, None, "2001:db8::",
                                                      ds_field=10))).encode()]
    decoded = 0
    for i in range(20000):
        b = mutate(rnd, rnd.choice(seeds))
        try:
            m = w.decode(b)
        except DecodeError as err:
            assert err.reason
            continue
        decoded += 1
        assert w.decode(m.encode()) == m
    assert decoded > 100


# Whole messages written out by hand from the RFC 5973 figures: header (type, P flag,
# reserved) then the objects, each |A|B|r|r|type(12)|r|r|r|r|length in words(12)|.
MESSAGE_VECTORS = [
    (w.create(30, 0x01020304, w.ACTION_ALLOW, w.Mip6Flow(w.MIP6_MH, 2, HOA)),
     "01000000"
     "000c0001" "0000001e"                       # NATFW_LT 30 s
     "000f0001" "00010000"                       # NATFW_EFI allow, sub_ports 0
     "00120001" "01020304"                       # NATFW_MSN
     "07d00005" "01020000" "20010db8000100000000000000001001"),   # MIP6 flow: MH CoTI
    (w.create(0, 7), "01000000" "000c0001" "00000000" "000f0001" "00010000"
                     "00120001" "00000007"),      # teardown
    (w.response(0x01020304, w.InfoCode.of(w.INFO_SUCCESS), 30),
     "03000000" "00100001" "02010000" "00120001" "01020304" "000c0001" "0000001e"),
    (w.response(5, w.InfoCode.of(w.ERR_AUTHORIZATION_FAILED, w.T_SESSION_AUTH)),
     "03000000" "00100001" "05020016" "00120001" "00000005"),
    (w.notify(w.InfoCode.of(w.ERR_SESSION_TERMINATED)), "04000000" "00100001" "07010000"),
    (w.NslpMessage(w.EXT, (w.Lifetime(60), w.ExtFlowInfo(w.ACTION_DENY), w.Msn(1),
                           w.DataTerminalInfo(6, 128, 1000, 80)), proxy=True),
     "02800000" "000c0001" "0000003c" "000f0001" "00020000" "00120001" "00000001"
     "00130002" "40800600" "005003e8"),
    (w.create(1, 1, w.ACTION_ALLOW, w.Mip6Flow(w.MIP6_RH2, 0, HOA), w.IcmpTypes((1, 128)),
              w.Nonce(0xCAFE)),
     "01000000" "000c0001" "00000001" "000f0001" "00010000" "00120001" "00000001"
     "07d00005" "03000000" "20010db8000100000000000000001001"
     "00140001" "02018000" "00110001" "0000cafe"),
]


@pytest.mark.parametrize("m, hexed", MESSAGE_VECTORS)
def test_message_vectors_both_ways(m, hexed):
    raw = bytes.fromhex(hexed)
    assert m.encode() == raw
    assert w.decode(raw) == m


def test_every_truncation_is_a_decode_error_or_drops_whole_optional_objects():
    for m, hexed in MESSAGE_VECTORS:
        raw = bytes.fromhex(hexed)
        for n in range(len(raw)):
            try:
                got = w.decode(raw[:n])
            except w.NslpDecodeError as err:
                assert err.info[0] == w.SEV_PROTOCOL_ERROR
                continue
            # only a cut between objects decodes, to a prefix with the mandatory ones
            assert got.objects == m.objects[:len(got.objects)] and n % 4 == 0
            assert len(got.objects) < len(m.objects)
