"""EAP packet codec (RFC 3748 section 4 and 5): bytes <-> `EapPacket`.

    packet = decode_eap_packet(data)          # raises DecodeError(reason)
    data = packet.encode()

`EapPacket(code, identifier, type, type_data)`: `type` is None for Success and
Failure. Decoding validates every length (RFC 3748 section 4.1: a Length larger
than what arrived is discarded; octets past Length are lower-layer padding and
ignored unless `allow_padding=False`) and the per-Type rules of section 5:

- Success/Failure are exactly 4 bytes (section 4.2);
- Request/Response carry a Type, and Type 0 is reserved;
- Nak (3) is only a Response and lists at least one desired Type (5.3.1);
- a Notification Request has a non-empty message, its Response is empty (5.2);
- an Expanded Type (254) carries at least its Vendor-Id and Vendor-Type (5.7).

Builders for the packets the EAP layer itself sends: `identity_request`,
`identity_response`, `notification_response`, `nak_response`, `success`,
`failure`; `nak_desired_types(packet)` reads a Nak.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from mip6bench.codec import DecodeError, Reader
from mip6bench.sansio import quick_init

HEADER_LEN = 4
# RFC 3748 section 3.1: lower layers carry at least 1020 bytes; the Length field
# itself caps a packet at 65535.
MAX_PACKET_LEN = 0xFFFF


class EapCode(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    PSK = 47
    EXPANDED = 254
    EXPERIMENTAL = 255


@quick_init
@dataclass(frozen=True)
class EapPacket:
    code: int
    identifier: int
    type: int | None = None
    type_data: bytes = b""

    @property
    def length(self) -> int:
        return HEADER_LEN + (0 if self.type is None else 1 + len(self.type_data))

    @property
    def is_request(self) -> bool:
        return self.code == EapCode.REQUEST

    @property
    def is_response(self) -> bool:
        return self.code == EapCode.RESPONSE

    def encode(self) -> bytes:
        if not 0 <= self.identifier <= 0xFF:
            raise ValueError(f"EAP Identifier {self.identifier} out of range")
        if self.code in (EapCode.SUCCESS, EapCode.FAILURE):
            if self.type is not None or self.type_data:
                raise ValueError("EAP Success/Failure carry no Type or data")
            return struct.pack("!BBH", self.code, self.identifier, HEADER_LEN)
        if self.code not in (EapCode.REQUEST, EapCode.RESPONSE):
            raise ValueError(f"unknown EAP Code {self.code}")
        if self.type is None or not 1 <= self.type <= 0xFF:
            raise ValueError("EAP Request/Response need a Type in 1..255")
        if self.length > MAX_PACKET_LEN:
            raise ValueError(f"EAP packet of {self.length} bytes exceeds 65535")
        return struct.pack("!BBHB", self.code, self.identifier, self.length,
                           self.type) + self.type_data


_HEADER = struct.Struct("!BBH")


def decode_eap_packet(data: bytes, *, allow_padding: bool = True) -> EapPacket:
    """Decode one EAP packet; raise DecodeError with the reason if malformed."""
    data = bytes(data)
    if len(data) < HEADER_LEN:   # raises, naming the field cut short
        reader = Reader(data)
        reader.u8("EAP Code")
        reader.u8("EAP Identifier")
        reader.u16("EAP Length")
    code, identifier, length = _HEADER.unpack_from(data)
    if code not in (1, 2, 3, 4):
        # RFC 3748 section 4: unknown Codes are silently discarded.
        raise DecodeError(f"unknown EAP Code {code}")
    if length < HEADER_LEN:
        raise DecodeError(f"EAP Length {length} is shorter than the 4-byte header")
    if length > len(data):
        raise DecodeError(f"EAP Length {length} exceeds the {len(data)} bytes received")
    if length < len(data) and not allow_padding:
        raise DecodeError(f"{len(data) - length} bytes after the EAP Length")

    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        if length != HEADER_LEN:
            raise DecodeError(f"EAP {EapCode(code).name.title()} with Length {length}, must be 4")
        return EapPacket(code, identifier)

    if length == HEADER_LEN:
        raise DecodeError(f"EAP {EapCode(code).name.title()} without a Type")
    eap_type = data[HEADER_LEN]
    type_data = data[HEADER_LEN + 1:length]
    if eap_type == 0:
        raise DecodeError("EAP Type 0 is reserved")
    if eap_type == EapType.NAK:
        if code != EapCode.RESPONSE:
            raise DecodeError("EAP Nak is only valid in a Response")
        if not type_data:
            raise DecodeError("EAP Nak lists no desired Type")
    elif eap_type == EapType.NOTIFICATION:
        if code == EapCode.REQUEST and not type_data:
            raise DecodeError("EAP Notification Request with an empty message")
        if code == EapCode.RESPONSE and type_data:
            raise DecodeError("EAP Notification Response must be empty")
    elif eap_type == EapType.EXPANDED and len(type_data) < 7:
        raise DecodeError(f"EAP Expanded Type with {len(type_data)} bytes, needs 7")
    return EapPacket(code, identifier, eap_type, type_data)


def identity_request(identifier: int, prompt: bytes = b"") -> EapPacket:
    return EapPacket(EapCode.REQUEST, identifier, EapType.IDENTITY, prompt)


def identity_response(identifier: int, identity: bytes) -> EapPacket:
    return EapPacket(EapCode.RESPONSE, identifier, EapType.IDENTITY, identity)


def notification_response(identifier: int) -> EapPacket:
    return EapPacket(EapCode.RESPONSE, identifier, EapType.NOTIFICATION)


def nak_response(identifier: int, desired_types: list[int] | tuple[int, ...]) -> EapPacket:
    # RFC 3748 section 5.3.1: Type 0 alone means "no alternative".
    types = bytes(desired_types) or b"\x00"
    return EapPacket(EapCode.RESPONSE, identifier, EapType.NAK, types)


def nak_desired_types(packet: EapPacket) -> tuple[int, ...]:
    """The Types a Nak asks for; () when it says there is no alternative (Type 0)."""
    if packet.type != EapType.NAK:
        raise ValueError("not a Nak")
    return tuple(t for t in packet.type_data if t != 0)


def success(identifier: int) -> EapPacket:
    return EapPacket(EapCode.SUCCESS, identifier)


def failure(identifier: int) -> EapPacket:
    return EapPacket(EapCode.FAILURE, identifier)
