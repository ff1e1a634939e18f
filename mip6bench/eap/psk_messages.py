"""EAP-PSK message formats (RFC 4764 section 5): Type-Data <-> dataclasses.

Every EAP-PSK message starts with Flags (T in the two high bits, the six
reserved bits sent as zero and ignored on reception, Figure 12) and RAND_S:

    T=0 `PskFirst`  (Request)   RAND_S, ID_S                      section 5.1
    T=1 `PskSecond` (Response)  RAND_S, RAND_P, MAC_P, ID_P       section 5.2
    T=2 `PskThird`  (Request)   RAND_S, MAC_S, PCHANNEL           section 5.3
    T=3 `PskFourth` (Response, or Request in extended authentication)
                                RAND_S, PCHANNEL                  section 5.4

`decode_psk_message(packet)` checks Type 47, T against the EAP Code and every
length (NAIs 1..966 bytes, PCHANNEL = 4-byte nonce + 16-byte tag + at least one
encrypted byte, EXT_Payload at most 960 bytes) and raises DecodeError.
`ChannelPayload` is the decrypted PCHANNEL content: the result flag R
(CONT / DONE_SUCCESS / DONE_FAILURE), the extension flag E and the EXT field.
`build_psk_packet(code, identifier, message)` gives the whole EAP packet bytes;
`channel_header(...)` the 22 bytes EAX authenticates.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from mip6bench.codec import DecodeError, Reader
from mip6bench.eap.packet import HEADER_LEN, EapCode, EapPacket, EapType
from mip6bench.eap.psk_crypto import CHANNEL_HEADER_LEN, CHANNEL_TAG_LEN, MAC_LEN, RAND_LEN

MAX_NAI_LEN = 966          # sections 5.1, 5.2 (no fragmentation, section 8.11)
MAX_EXT_PAYLOAD_LEN = 960  # sections 5.3, 5.4
CHANNEL_NONCE_LEN = 4


class ResultFlag(IntEnum):
    """The 2-bit R flag of the protected channel (section 6.1)."""

    CONT = 1
    DONE_SUCCESS = 2
    DONE_FAILURE = 3


@dataclass(frozen=True)
class ProtectedChannel:
    """PCHANNEL as carried on the wire: nonce N, EAX tag, encrypted payload."""

    nonce: int
    tag: bytes
    ciphertext: bytes

    def encode(self) -> bytes:
        return struct.pack("!I", self.nonce) + self.tag + self.ciphertext


@dataclass(frozen=True)
class ChannelPayload:
    """Decrypted PCHANNEL payload: R, and with E=1 the EXT_Type and EXT_Payload."""

    result: ResultFlag
    ext_type: int | None = None
    ext_payload: bytes = b""

    def encode(self) -> bytes:
        if self.ext_type is None:
            if self.ext_payload:
                raise ValueError("EXT_Payload without EXT_Type")
            return bytes([self.result << 6])
        if not 1 <= self.ext_type <= 255 or len(self.ext_payload) > MAX_EXT_PAYLOAD_LEN:
            raise ValueError("EXT_Type must be 1..255 and EXT_Payload at most 960 bytes")
        return bytes([self.result << 6 | 0x20, self.ext_type]) + self.ext_payload


def decode_channel_payload(plaintext: bytes) -> ChannelPayload:
    reader = Reader(plaintext)
    first = reader.u8("PCHANNEL flags")
    result = first >> 6
    if result == 0:
        raise DecodeError("PCHANNEL R flag 00 is undefined")
    if first & 0x20:  # E flag: an EXT field follows (section 5.3, Figure 16)
        ext_type = reader.u8("EXT_Type")
        if ext_type == 0:
            raise DecodeError("EXT_Type 0 is not allocated")
        ext_payload = reader.rest()
        if len(ext_payload) > MAX_EXT_PAYLOAD_LEN:
            raise DecodeError(f"EXT_Payload of {len(ext_payload)} bytes exceeds 960")
        return ChannelPayload(ResultFlag(result), ext_type, ext_payload)
    reader.expect_end("PCHANNEL payload without extension")
    return ChannelPayload(ResultFlag(result))


@dataclass(frozen=True)
class PskFirst:
    rand_s: bytes
    id_s: bytes
    T = 0

    def body(self) -> bytes:
        return self.rand_s + self.id_s


@dataclass(frozen=True)
class PskSecond:
    rand_s: bytes
    rand_p: bytes
    mac_p: bytes
    id_p: bytes
    T = 1

    def body(self) -> bytes:
        return self.rand_s + self.rand_p + self.mac_p + self.id_p


@dataclass(frozen=True)
class PskThird:
    rand_s: bytes
    mac_s: bytes
    channel: ProtectedChannel
    T = 2

    def body(self) -> bytes:
        return self.rand_s + self.mac_s + self.channel.encode()


@dataclass(frozen=True)
class PskFourth:
    """T=3: the fourth message and every later one of an extended authentication."""

    rand_s: bytes
    channel: ProtectedChannel
    T = 3

    def body(self) -> bytes:
        return self.rand_s + self.channel.encode()


PskMessage = PskFirst | PskSecond | PskThird | PskFourth

# Which EAP Codes may carry each T (section 5: T=3 also flows from the server
# in an extended authentication).
_CODES_FOR_T = {0: (EapCode.REQUEST,), 1: (EapCode.RESPONSE,), 2: (EapCode.REQUEST,),
                3: (EapCode.REQUEST, EapCode.RESPONSE)}


def psk_type_data(message: PskMessage) -> bytes:
    return bytes([message.T << 6]) + message.body()


def build_psk_packet(code: int, identifier: int, message: PskMessage) -> bytes:
    if code not in _CODES_FOR_T[message.T]:
        raise ValueError(f"EAP-PSK T={message.T} cannot be sent with EAP Code {code}")
    return EapPacket(code, identifier, EapType.PSK, psk_type_data(message)).encode()


def channel_header(code: int, identifier: int, length: int, t: int, rand_s: bytes) -> bytes:
    """The 22 bytes EAX authenticates: EAP header, Type, Flags, RAND_S (section 3.3)."""
    header = struct.pack("!BBHBB", code, identifier, length, EapType.PSK, t << 6) + rand_s
    assert len(header) == CHANNEL_HEADER_LEN
    return header


def received_channel_header(packet: EapPacket) -> bytes:
    """The 22-byte EAX header of a received EAP-PSK packet, as it was on the wire."""
    return packet.encode()[:CHANNEL_HEADER_LEN]


def _nai(reader: Reader, what: str) -> bytes:
    nai = reader.rest()
    if not nai:
        raise DecodeError(f"empty {what}")
    if len(nai) > MAX_NAI_LEN:
        raise DecodeError(f"{what} of {len(nai)} bytes exceeds 966")
    return nai


def _channel(reader: Reader) -> ProtectedChannel:
    if reader.remaining < CHANNEL_NONCE_LEN + CHANNEL_TAG_LEN + 1:
        raise DecodeError(f"PCHANNEL of {reader.remaining} bytes, needs at least 21")
    nonce = reader.u32("PCHANNEL nonce")
    tag = reader.take(CHANNEL_TAG_LEN, "PCHANNEL tag")
    ciphertext = reader.rest()
    # 1 flags byte + EXT_Type + 960 bytes of EXT_Payload at most.
    if len(ciphertext) > 2 + MAX_EXT_PAYLOAD_LEN:
        raise DecodeError(f"PCHANNEL payload of {len(ciphertext)} bytes exceeds 962")
    return ProtectedChannel(nonce, tag, ciphertext)


def decode_psk_message(packet: EapPacket) -> PskMessage:
    """Decode the Type-Data of an EAP-PSK Request/Response; DecodeError if invalid."""
    if packet.type != EapType.PSK:
        raise DecodeError(f"EAP Type {packet.type} is not EAP-PSK (47)")
    reader = Reader(packet.type_data)
    t = reader.u8("EAP-PSK Flags") >> 6  # reserved bits ignored on reception
    if packet.code not in _CODES_FOR_T[t]:
        raise DecodeError(f"EAP-PSK T={t} in an EAP {EapCode(packet.code).name.title()}")
    rand_s = reader.take(RAND_LEN, "RAND_S")
    if t == 0:
        return PskFirst(rand_s, _nai(reader, "ID_S"))
    if t == 1:
        rand_p = reader.take(RAND_LEN, "RAND_P")
        mac_p = reader.take(MAC_LEN, "MAC_P")
        return PskSecond(rand_s, rand_p, mac_p, _nai(reader, "ID_P"))
    if t == 2:
        mac_s = reader.take(MAC_LEN, "MAC_S")
        return PskThird(rand_s, mac_s, _channel(reader))
    return PskFourth(rand_s, _channel(reader))


def channel_packet_length(t: int, payload_len: int) -> int:
    """Total EAP length of a T=2 or T=3 packet whose PCHANNEL payload has payload_len bytes."""
    mac_len = MAC_LEN if t == 2 else 0
    return (HEADER_LEN + 1 + 1 + RAND_LEN + mac_len
            + CHANNEL_NONCE_LEN + CHANNEL_TAG_LEN + payload_len)
