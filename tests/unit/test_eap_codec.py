"""EAP (RFC 3748) and EAP-PSK (RFC 4764 section 5) wire codecs."""
from __future__ import annotations

import pytest

from mip6bench.codec import DecodeError
from mip6bench.eap.packet import (
    EapCode,
    EapPacket,
    EapType,
    decode_eap_packet,
    failure,
    identity_request,
    identity_response,
    nak_desired_types,
    nak_response,
    notification_response,
    success,
)
from mip6bench.eap.psk_messages import (
    ChannelPayload,
    ProtectedChannel,
    PskFirst,
    PskFourth,
    PskSecond,
    PskThird,
    ResultFlag,
    build_psk_packet,
    channel_header,
    channel_packet_length,
    decode_channel_payload,
    decode_psk_message,
    received_channel_header,
)

# (wire hex, decoded packet): one table drives decoding and encoding.
EAP_VECTORS = [
    ("0107000501", identity_request(7)),
    ("02070016" "01" + b"alice@example.org".hex(), identity_response(7, b"alice@example.org")),
    ("0108000a02" + b"hello".hex(), EapPacket(1, 8, EapType.NOTIFICATION, b"hello")),
    ("0208000502", notification_response(8)),
    ("02090006032f", nak_response(9, [47])),
    ("0209000703042f", nak_response(9, [4, 47])),
    ("03ff0004", success(255)),
    ("04000004", failure(0)),
    ("010a000cfe00000000000001", EapPacket(1, 10, EapType.EXPANDED, bytes(6) + b"\x01")),
]


@pytest.mark.parametrize("wire, packet", EAP_VECTORS)
def test_eap_vectors_decode_and_encode(wire, packet):
    assert decode_eap_packet(bytes.fromhex(wire)) == packet
    assert packet.encode().hex() == wire
    assert packet.length == len(packet.encode())


@pytest.mark.parametrize("wire, reason", [
    ("", "truncated EAP Code"),
    ("0101", "truncated EAP Length"),
    ("05010004", "unknown EAP Code 5"),
    ("00010004", "unknown EAP Code 0"),
    ("01010003", "shorter than the 4-byte header"),
    ("010100070141", "exceeds the 6 bytes received"),
    ("0101000a01", "exceeds the 5 bytes received"),
    ("0301000500", "Success with Length 5"),
    ("04010008deadbeef", "Failure with Length 8"),
    ("01010004", "Request without a Type"),
    ("02010004", "Response without a Type"),
    ("0101000500", "Type 0 is reserved"),
    ("010100060304", "Nak is only valid in a Response"),
    ("0201000503", "Nak lists no desired Type"),
    ("0101000502", "Notification Request with an empty message"),
    ("020100060241", "Notification Response must be empty"),
    ("01010008fe000000", "Expanded Type with 3 bytes"),
])
def test_eap_decode_rejections(wire, reason):
    with pytest.raises(DecodeError) as info:
        decode_eap_packet(bytes.fromhex(wire))
    assert reason in info.value.reason


def test_octets_past_length_are_padding_unless_strict():
    padded = bytes.fromhex("0107000501") + bytes(3)
    assert decode_eap_packet(padded) == identity_request(7)
    with pytest.raises(DecodeError, match="3 bytes after the EAP Length"):
        decode_eap_packet(padded, allow_padding=False)


@pytest.mark.parametrize("packet", [
    EapPacket(1, 256, EapType.IDENTITY),
    EapPacket(3, 1, EapType.IDENTITY),
    EapPacket(4, 1, None, b"x"),
    EapPacket(1, 1, None),
    EapPacket(7, 1, 1),
    EapPacket(2, 1, 1, bytes(70000)),
])
def test_eap_encode_refuses_invalid_packets(packet):
    with pytest.raises(ValueError):
        packet.encode()


def test_nak_types():
    assert nak_desired_types(nak_response(1, [4, 47])) == (4, 47)
    assert nak_response(1, []).type_data == b"\x00"
    assert nak_desired_types(nak_response(1, [])) == ()
    with pytest.raises(ValueError):
        nak_desired_types(success(1))


# --- EAP-PSK messages ---------------------------------------------------------

RAND_S = bytes(range(16))
RAND_P = bytes(range(16, 32))
MAC = bytes(range(32, 48))
TAG = bytes(range(48, 64))


@pytest.mark.parametrize("code, message", [
    (EapCode.REQUEST, PskFirst(RAND_S, b"aaa.example.org")),
    (EapCode.RESPONSE, PskSecond(RAND_S, RAND_P, MAC, b"alice@example.org")),
    (EapCode.REQUEST, PskThird(RAND_S, MAC, ProtectedChannel(0, TAG, b"\x8f"))),
    (EapCode.RESPONSE, PskFourth(RAND_S, ProtectedChannel(1, TAG, b"\xcc"))),
    (EapCode.REQUEST, PskFourth(RAND_S, ProtectedChannel(2, TAG, b"\x01\x02"))),
])
def test_psk_messages_round_trip(code, message):
    wire = build_psk_packet(code, 42, message)
    packet = decode_eap_packet(wire)
    assert packet.code == code and packet.type == EapType.PSK
    assert packet.type_data[0] == message.T << 6
    assert decode_psk_message(packet) == message


def test_psk_first_message_layout():
    wire = build_psk_packet(EapCode.REQUEST, 1, PskFirst(RAND_S, b"srv"))
    assert wire == bytes.fromhex("01010019" "2f" "00") + RAND_S + b"srv"


def test_psk_reserved_flag_bits_are_ignored_on_reception():
    wire = bytearray(build_psk_packet(EapCode.REQUEST, 1, PskFirst(RAND_S, b"srv")))
    wire[5] |= 0x3F
    assert decode_psk_message(decode_eap_packet(bytes(wire))) == PskFirst(RAND_S, b"srv")


def _psk(code: int, body: bytes) -> EapPacket:
    return EapPacket(code, 1, EapType.PSK, body)


@pytest.mark.parametrize("packet, reason", [
    (_psk(1, b""), "truncated EAP-PSK Flags"),
    (_psk(2, b"\x00" + RAND_S + b"id"), "T=0 in an EAP Response"),
    (_psk(1, b"\x40" + RAND_S + RAND_P + MAC + b"id"), "T=1 in an EAP Request"),
    (_psk(2, b"\x80" + RAND_S + MAC + bytes(21)), "T=2 in an EAP Response"),
    (_psk(1, b"\x00" + RAND_S[:15]), "truncated RAND_S"),
    (_psk(1, b"\x00" + RAND_S), "empty ID_S"),
    (_psk(1, b"\x00" + RAND_S + b"x" * 967), "ID_S of 967 bytes exceeds 966"),
    (_psk(2, b"\x40" + RAND_S + RAND_P + MAC[:3]), "truncated MAC_P"),
    (_psk(2, b"\x40" + RAND_S + RAND_P + MAC), "empty ID_P"),
    (_psk(1, b"\x80" + RAND_S + MAC + bytes(20)), "PCHANNEL of 20 bytes, needs at least 21"),
    (_psk(2, b"\xc0" + RAND_S + bytes(4) + TAG), "PCHANNEL of 20 bytes"),
    (_psk(2, b"\xc0" + RAND_S + bytes(4) + TAG + bytes(963)), "exceeds 962"),
    (EapPacket(1, 1, EapType.IDENTITY, b""), "is not EAP-PSK"),
])
def test_psk_decode_rejections(packet, reason):
    with pytest.raises(DecodeError) as info:
        decode_psk_message(packet)
    assert reason in info.value.reason


def test_psk_build_refuses_t_with_the_wrong_code():
    with pytest.raises(ValueError):
        build_psk_packet(EapCode.RESPONSE, 1, PskFirst(RAND_S, b"srv"))


@pytest.mark.parametrize("payload, wire", [
    (ChannelPayload(ResultFlag.CONT), "40"),
    (ChannelPayload(ResultFlag.DONE_SUCCESS), "80"),
    (ChannelPayload(ResultFlag.DONE_FAILURE), "c0"),
    (ChannelPayload(ResultFlag.DONE_SUCCESS, 255), "a0ff"),
    (ChannelPayload(ResultFlag.CONT, 7, b"ext"), "6007" + b"ext".hex()),
])
def test_channel_payload_round_trip(payload, wire):
    assert payload.encode().hex() == wire
    assert decode_channel_payload(bytes.fromhex(wire)) == payload


def test_channel_payload_reserved_bits_are_ignored():
    assert decode_channel_payload(b"\x9f") == ChannelPayload(ResultFlag.DONE_SUCCESS)


@pytest.mark.parametrize("wire, reason", [
    ("", "truncated PCHANNEL flags"),
    ("00", "R flag 00 is undefined"),
    ("8000", "trailing bytes"),
    ("a0", "truncated EXT_Type"),
    ("a000", "EXT_Type 0"),
    ("a0ff" + "00" * 961, "exceeds 960"),
])
def test_channel_payload_rejections(wire, reason):
    with pytest.raises(DecodeError) as info:
        decode_channel_payload(bytes.fromhex(wire))
    assert reason in info.value.reason


def test_channel_payload_encode_refuses_invalid():
    with pytest.raises(ValueError):
        ChannelPayload(ResultFlag.CONT, None, b"x").encode()
    with pytest.raises(ValueError):
        ChannelPayload(ResultFlag.CONT, 1, bytes(961)).encode()


def test_channel_header_is_the_first_22_bytes_of_the_packet():
    message = PskThird(RAND_S, MAC, ProtectedChannel(0, TAG, b"\x8f"))
    wire = build_psk_packet(EapCode.REQUEST, 9, message)
    assert len(wire) == channel_packet_length(2, 1) == 59
    assert channel_header(1, 9, 59, 2, RAND_S) == wire[:22]
    assert received_channel_header(decode_eap_packet(wire + b"pad")) == wire[:22]
    assert channel_packet_length(3, 1) == 43
