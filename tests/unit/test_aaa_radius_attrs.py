"""RADIUS helpers for EAP (RFC 3579, RFC 2548), checked against pyrad's own code."""
from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from pyrad import packet as pyrad_packet

from mip6bench.codec import DecodeError
from mip6bench.aaa.radius_attrs import (
    ACCESS_ACCEPT,
    ACCESS_REQUEST,
    EAP_MESSAGE,
    MESSAGE_AUTHENTICATOR,
    MS_MPPE_RECV_KEY,
    MS_MPPE_SEND_KEY,
    VENDOR_MICROSOFT,
    compute_message_authenticator,
    decrypt_mppe_key,
    eap_from_radius,
    encode_attribute,
    encode_radius_packet,
    encode_signed_packet,
    encrypt_mppe_key,
    join_eap_message,
    mppe_key_attributes,
    mppe_keys_from_radius,
    parse_radius_packet,
    parse_vendor_specific,
    sign_message_authenticator,
    split_eap_message,
    vendor_attribute,
    verify_message_authenticator,
)

SECRET = b"testing123"
REQUEST_AUTH = bytes(range(16))


def eap_packet(total_len: int) -> bytes:
    body = bytes(i % 251 for i in range(total_len - 5))
    return struct.pack("!BBHB", 2, 7, total_len, 47) + body


def radius(code: int, identifier: int, authenticator: bytes, attributes: bytes) -> bytes:
    return struct.pack("!BBH", code, identifier, 20 + len(attributes)) + authenticator + attributes


# --- EAP-Message ---------------------------------------------------------------

@pytest.mark.parametrize("length, sizes", [
    (5, [5]), (253, [253]), (254, [253, 1]), (506, [253, 253]), (1020, [253, 253, 253, 253, 8]),
])
def test_split_eap_message_at_253_bytes(length, sizes):
    eap = eap_packet(length)
    values = split_eap_message(eap)
    assert [len(v) for v in values] == sizes
    assert join_eap_message(values) == eap


def test_split_refuses_empty_and_join_checks_the_eap_length():
    with pytest.raises(ValueError):
        split_eap_message(b"")
    eap = eap_packet(300)
    with pytest.raises(DecodeError, match="the EAP Length says 300"):
        join_eap_message(split_eap_message(eap)[:1])
    with pytest.raises(DecodeError, match="less than an EAP header"):
        join_eap_message([b"\x02\x01"])


def test_eap_from_radius_joins_the_attributes_in_order():
    eap = eap_packet(600)
    attrs = b"".join(encode_attribute(EAP_MESSAGE, v) for v in split_eap_message(eap))
    packet = radius(ACCESS_REQUEST, 1, REQUEST_AUTH, encode_attribute(1, b"alice") + attrs)
    assert eap_from_radius(packet) == eap
    assert eap_from_radius(radius(ACCESS_REQUEST, 1, REQUEST_AUTH, b"")) is None


# --- packet parsing ----------------------------------------------------------------

def test_parse_radius_packet_and_padding():
    packet = radius(ACCESS_ACCEPT, 9, REQUEST_AUTH, encode_attribute(24, b"st") + encode_attribute(1, b""))
    parsed = parse_radius_packet(packet + b"\x00\x00")
    assert (parsed.code, parsed.identifier, parsed.authenticator) == (2, 9, REQUEST_AUTH)
    assert parsed.attributes == ((24, b"st"), (1, b""))


def test_a_parsed_packets_values_by_type_are_those_of_its_attributes():
    # parse_radius_packet makes by_type in its walk; a packet built from fields makes it
    # on first use: the same values, in order, and values() hands out copies
    attrs = encode_attribute(79, b"a") + encode_attribute(24, b"st") + \
        encode_attribute(79, b"b") + encode_attribute(1, b"")
    parsed = parse_radius_packet(radius(ACCESS_ACCEPT, 3, REQUEST_AUTH, attrs))
    built = type(parsed)(parsed.code, parsed.identifier, parsed.authenticator,
                         parsed.attributes)
    assert parsed.by_type == built.by_type == {79: [b"a", b"b"], 24: [b"st"], 1: [b""]}
    copy = parsed.values(79)
    copy.append(b"c")
    assert parsed.values(79) == [b"a", b"b"] and parsed.values(18) == []


@pytest.mark.parametrize("data, reason", [
    (b"\x01\x01\x00", "truncated RADIUS Length"),
    (struct.pack("!BBH", 1, 1, 19) + bytes(16), "RADIUS Length 19 outside 20..4096"),
    (struct.pack("!BBH", 1, 1, 4097) + bytes(4093), "RADIUS Length 4097 outside"),
    (struct.pack("!BBH", 1, 1, 30) + bytes(20), "exceeds the 24 bytes"),
    (struct.pack("!BBH", 1, 1, 22) + bytes(16) + b"\x01\x01", "attribute 1 with Length 1"),
    (struct.pack("!BBH", 1, 1, 23) + bytes(16) + b"\x01\x05\x00", "truncated attribute 1"),
    (struct.pack("!BBH", 1, 1, 21) + bytes(16) + b"\x01", "truncated attribute Length"),
])
def test_parse_radius_packet_rejections(data, reason):
    with pytest.raises(DecodeError) as info:
        parse_radius_packet(data)
    assert reason in info.value.reason


def test_encode_attribute_limit():
    with pytest.raises(ValueError):
        encode_attribute(EAP_MESSAGE, bytes(254))


# --- Message-Authenticator --------------------------------------------------------

def pyrad_access_request(eap: bytes) -> pyrad_packet.AuthPacket:
    request = pyrad_packet.AuthPacket(code=ACCESS_REQUEST, id=33, secret=SECRET,
                                      authenticator=REQUEST_AUTH, message_authenticator=True)
    request[1] = [b"alice@example.org"]
    request[EAP_MESSAGE] = split_eap_message(eap)
    return request


def test_message_authenticator_of_a_pyrad_access_request_verifies():
    raw = pyrad_access_request(eap_packet(300)).RequestPacket()
    assert verify_message_authenticator(raw, SECRET)
    assert not verify_message_authenticator(raw, b"wrong secret")
    assert not verify_message_authenticator(raw[:-1] + bytes([raw[-1] ^ 1]), SECRET)
    ma = parse_radius_packet(raw).values(MESSAGE_AUTHENTICATOR)[0]
    assert compute_message_authenticator(raw, SECRET) == ma


def test_message_authenticator_we_sign_verifies_in_pyrad():
    attrs = (encode_attribute(1, b"alice") + encode_attribute(MESSAGE_AUTHENTICATOR, bytes(16))
             + b"".join(encode_attribute(EAP_MESSAGE, v) for v in split_eap_message(eap_packet(40))))
    signed = sign_message_authenticator(radius(ACCESS_REQUEST, 4, REQUEST_AUTH, attrs), SECRET)
    decoded = pyrad_packet.AuthPacket(packet=signed, secret=SECRET)
    assert decoded.verify_message_authenticator()
    # Definition (RFC 3579 section 3.2), spelled out.
    zeroed = radius(ACCESS_REQUEST, 4, REQUEST_AUTH, attrs)
    # User-Name takes bytes 20..26, so the Message-Authenticator value is 29..44.
    assert signed[29:45] == hmac.new(SECRET, zeroed, hashlib.md5).digest()


def test_a_packet_signed_as_it_is_encoded_equals_one_signed_after_encoding():
    attrs = [(1, b"alice"), (32, b"paa")] + \
        [(EAP_MESSAGE, v) for v in split_eap_message(eap_packet(300))]
    raw = vendor_attribute(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY, bytes(34))
    signed = encode_signed_packet(ACCESS_REQUEST, 9, REQUEST_AUTH, attrs, SECRET, raw)
    unsigned = encode_radius_packet(ACCESS_REQUEST, 9, REQUEST_AUTH, attrs)
    unsigned = unsigned[:2] + struct.pack("!H", len(unsigned) + len(raw) + 18) + \
        unsigned[4:] + raw + encode_attribute(MESSAGE_AUTHENTICATOR, bytes(16))
    assert signed == sign_message_authenticator(unsigned, SECRET)
    assert verify_message_authenticator(signed, SECRET)
    assert pyrad_packet.AuthPacket(packet=signed, secret=SECRET).verify_message_authenticator()
    # the parse says where every value is: the Message-Authenticator check zeroes it there
    packet = parse_radius_packet(signed)
    assert len(packet.offsets) == len(packet.attributes) == len(attrs) + 2
    for (_, value), offset in zip(packet.attributes, packet.offsets):
        assert signed[offset:offset + len(value)] == value
    with pytest.raises(ValueError, match="Identifier"):
        encode_signed_packet(ACCESS_REQUEST, 256, REQUEST_AUTH, attrs, SECRET)
    with pytest.raises(ValueError, match="exceeds 4096"):
        encode_signed_packet(ACCESS_REQUEST, 1, REQUEST_AUTH, [(EAP_MESSAGE, bytes(253))] * 17,
                             SECRET)


def test_message_authenticator_of_a_reply_uses_the_request_authenticator():
    request = pyrad_access_request(eap_packet(20))
    request.RequestPacket()
    reply = request.CreateReply()
    reply.code = pyrad_packet.AccessChallenge
    reply[EAP_MESSAGE] = [eap_packet(22)]
    raw = reply.ReplyPacket()
    assert raw[4:20] != REQUEST_AUTH        # the Response Authenticator is in the packet
    assert verify_message_authenticator(raw, SECRET, REQUEST_AUTH)
    assert not verify_message_authenticator(raw, SECRET)
    assert not verify_message_authenticator(raw, SECRET, bytes(16))


def test_message_authenticator_absent_or_repeated():
    without = radius(ACCESS_REQUEST, 1, REQUEST_AUTH, encode_attribute(1, b"a"))
    assert not verify_message_authenticator(without, SECRET)
    with pytest.raises(DecodeError, match="no Message-Authenticator"):
        compute_message_authenticator(without, SECRET)
    twice = radius(ACCESS_REQUEST, 1, REQUEST_AUTH,
                   encode_attribute(MESSAGE_AUTHENTICATOR, bytes(16)) * 2)
    assert not verify_message_authenticator(twice, SECRET)
    short = radius(ACCESS_REQUEST, 1, REQUEST_AUTH, encode_attribute(MESSAGE_AUTHENTICATOR, bytes(8)))
    with pytest.raises(DecodeError, match="8 bytes, must be 16"):
        compute_message_authenticator(short, SECRET)
    with pytest.raises(ValueError):
        compute_message_authenticator(twice, SECRET, bytes(3))


# --- MS-MPPE keys ------------------------------------------------------------------

@pytest.mark.parametrize("key_len", [1, 15, 16, 32, 100])
def test_mppe_key_round_trip_and_pyrad_cross_check(key_len):
    key = bytes((7 * i) % 256 for i in range(key_len))
    value = encrypt_mppe_key(key, SECRET, REQUEST_AUTH, b"\x81\x02")
    assert len(value) == 2 + 16 * ((key_len + 1 + 15) // 16)
    assert decrypt_mppe_key(value, SECRET, REQUEST_AUTH) == key
    # pyrad implements the same salted MD5 stream for RFC 2868 Tunnel-Password.
    reply = pyrad_packet.Packet(secret=SECRET)
    reply.request_authenticator = REQUEST_AUTH
    assert reply.SaltDecrypt(value) == key
    assert decrypt_mppe_key(reply.SaltCrypt(key), SECRET, REQUEST_AUTH) == key


def test_mppe_first_block_follows_rfc2548():
    key = bytes(range(32))
    value = encrypt_mppe_key(key, SECRET, REQUEST_AUTH, b"\x80\x01")
    b1 = hashlib.md5(SECRET + REQUEST_AUTH + b"\x80\x01").digest()
    assert value[2:18] == bytes(p ^ b for p, b in zip(bytes([32]) + key[:15], b1))
    b2 = hashlib.md5(SECRET + value[2:18]).digest()
    assert value[18:34] == bytes(p ^ b for p, b in zip(key[15:31], b2))


@pytest.mark.parametrize("value, reason", [
    (b"\x80\x01" + bytes(15), "a multiple of 16"),
    (b"\x80\x01" + bytes(17), "a multiple of 16"),
    (b"\x00\x01" + bytes(16), "high bit"),
])
def test_mppe_decrypt_rejections(value, reason):
    with pytest.raises(DecodeError, match=reason):
        decrypt_mppe_key(value, SECRET, REQUEST_AUTH)


def test_mppe_decrypt_rejects_an_impossible_key_length():
    plain = bytes([40]) + bytes(15)     # Key-Length 40 in a 16-byte block
    pad = hashlib.md5(SECRET + REQUEST_AUTH + b"\x80\x00").digest()
    value = b"\x80\x00" + bytes(a ^ b for a, b in zip(plain, pad))
    with pytest.raises(DecodeError, match="Key-Length 40"):
        decrypt_mppe_key(value, SECRET, REQUEST_AUTH)


@pytest.mark.parametrize("salt", [b"\x00\x01", b"\x80", b"\x80\x00\x00"])
def test_mppe_salt_must_have_its_high_bit_set(salt):
    with pytest.raises(ValueError):
        encrypt_mppe_key(b"k", SECRET, REQUEST_AUTH, salt)


def test_mppe_attributes_carry_the_msk_and_come_back():
    msk = bytes(range(64))
    attrs = mppe_key_attributes(msk, SECRET, REQUEST_AUTH, rng=lambda n: bytes(range(1, n + 1)))
    packet = radius(ACCESS_ACCEPT, 1, bytes(16), b"".join(attrs))
    recv_key, send_key = mppe_keys_from_radius(packet, SECRET, REQUEST_AUTH)
    assert (recv_key, send_key) == (msk[:32], msk[32:])
    subs = [parse_vendor_specific(v) for v in parse_radius_packet(packet).values(26)]
    assert [(vendor, sub[0][0]) for vendor, sub in subs] == [
        (VENDOR_MICROSOFT, MS_MPPE_RECV_KEY), (VENDOR_MICROSOFT, MS_MPPE_SEND_KEY)]
    salts = [sub[0][1][:2] for _, sub in subs]
    assert salts[0] != salts[1] and all(s[0] & 0x80 for s in salts)


def test_mppe_attributes_draw_new_salts_until_they_differ():
    draws = iter([b"\x01\x02\x81\x02", b"\x01\x02\x01\x03"])
    attrs = mppe_key_attributes(bytes(64), SECRET, REQUEST_AUTH, rng=lambda n: next(draws))
    assert [a[8:10] for a in attrs] == [b"\x81\x02", b"\x81\x03"]


def test_mppe_keys_missing_or_repeated():
    msk = bytes(64)
    recv, send = mppe_key_attributes(msk, SECRET, REQUEST_AUTH, rng=lambda n: bytes(range(n)))
    with pytest.raises(DecodeError, match="0 MS-MPPE-Send-Key"):
        mppe_keys_from_radius(radius(2, 1, bytes(16), recv), SECRET, REQUEST_AUTH)
    with pytest.raises(DecodeError, match="2 MS-MPPE-Recv-Key"):
        mppe_keys_from_radius(radius(2, 1, bytes(16), recv + recv + send), SECRET, REQUEST_AUTH)
    other_vendor = vendor_attribute(9, MS_MPPE_RECV_KEY, b"x")
    assert mppe_keys_from_radius(radius(2, 1, bytes(16), other_vendor + recv + send),
                                 SECRET, REQUEST_AUTH) == (msk[:32], msk[32:])
    with pytest.raises(ValueError):
        mppe_key_attributes(bytes(32), SECRET, REQUEST_AUTH, rng=lambda n: bytes(n))


@pytest.mark.parametrize("value, reason", [
    (b"\x00\x00", "truncated Vendor-Id"),
    (b"\x00\x00\x01\x37\x10", "truncated vendor attribute length"),
    (b"\x00\x00\x01\x37\x10\x01", "vendor attribute 16 with length 1"),
    (b"\x00\x00\x01\x37\x10\x05\x00", "truncated vendor attribute 16"),
])
def test_vendor_specific_rejections(value, reason):
    with pytest.raises(DecodeError) as info:
        parse_vendor_specific(value)
    assert reason in info.value.reason


def test_a_response_signed_here_passes_pyrad_reply_verification():
    # What an AAA server does: Message-Authenticator over the packet with the
    # Request Authenticator in place, then the Response Authenticator over it all.
    request = pyrad_access_request(eap_packet(30))
    request.RequestPacket()
    attrs = (encode_attribute(MESSAGE_AUTHENTICATOR, bytes(16))
             + encode_attribute(EAP_MESSAGE, eap_packet(24)))
    unsigned = radius(ACCESS_ACCEPT, request.id, request.authenticator, attrs)
    signed = sign_message_authenticator(unsigned, SECRET, request.authenticator)
    response_auth = hashlib.md5(signed[:4] + request.authenticator + signed[20:] + SECRET).digest()
    raw = signed[:4] + response_auth + signed[20:]
    reply = pyrad_packet.Packet(packet=raw, secret=SECRET)
    assert request.VerifyReply(reply, raw, enforce_ma=True)
    assert verify_message_authenticator(raw, SECRET, request.authenticator)
