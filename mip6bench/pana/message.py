"""PANA wire codec (RFC 5191 section 6, relay message of RFC 6345): bytes <-> `Message`.

    decode_message(data) -> Message      strict; raises codec.DecodeError(reason)
    Message(...).encode() -> bytes       or encode_message(msg)

Header (RFC 5191 6.2), 16 bytes, network byte order::

    reserved(16) | message length(16, whole message) | flags(16) | type(16)
    session identifier(32) | sequence number(32)

AVP (RFC 5191 6.3)::

    code(16) | flags(16, V=0x8000) | length(16, value only) | reserved(16)
    [vendor id(32), present iff V] | value | zero padding to a multiple of 4

Validation done here (each failure is a `DecodeError` with a short reason):
message length against the datagram, reserved header field and flag bits,
the flags each message type may carry, PCI/PRY with session id and sequence 0,
AVP header overruns, reserved AVP bits and non-zero padding, fixed value sizes
of the RFC 5191/6345 AVPs, at most one instance of each single-valued AVP, and
the AVPs a message cannot do without (Termination-Cause in PTR, Result-Code in
PAR with C flag, PaC-Information and Relayed-Message in PRY).

RFC 5191 says reserved fields are set to zero by the sender and ignored by the
receiver; the testbed's design asks codecs to be strict, so the decoder rejects
them by default (`strict_reserved=False` follows the RFC's lenient reading).
PANA has no M bit: AVPs the receiver does not know (unknown codes, any vendor
AVP it has no use for) are ignored, never a reason to drop a message.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from ..codec import DecodeError
from ..sansio import quick_init

PANA_PORT = 716          # the UDP port IANA assigned to PANA
HEADER_LEN = 16
AVP_HEADER_LEN = 8
MAX_MESSAGE_LEN = 0xFFFF

# Message types (RFC 5191 6.2; PRY from RFC 6345)
PCI = 1
AUTH = 2
TERMINATION = 3
NOTIFICATION = 4
RELAY = 5
MESSAGE_TYPES = (PCI, AUTH, TERMINATION, NOTIFICATION, RELAY)

# Header flags (RFC 5191 6.2)
FLAG_R = 0x8000  # request
FLAG_S = 0x4000  # start (first PAR/PAN)
FLAG_C = 0x2000  # complete (last PAR/PAN)
FLAG_A = 0x1000  # re-authentication (PNR/PNA)
FLAG_P = 0x0800  # ping (PNR/PNA)
FLAG_I = 0x0400  # IP reconfiguration (PAR only)
KNOWN_FLAGS = FLAG_R | FLAG_S | FLAG_C | FLAG_A | FLAG_P | FLAG_I

_ALLOWED_FLAGS = {
    PCI: 0,
    AUTH: FLAG_R | FLAG_S | FLAG_C | FLAG_I,
    TERMINATION: FLAG_R,
    NOTIFICATION: FLAG_R | FLAG_A | FLAG_P,
    RELAY: 0,
}

# AVP flags (RFC 5191 6.3)
AVP_FLAG_V = 0x8000

# AVP codes (RFC 5191 section 8; 10 and 11 from RFC 6345)
AVP_AUTH = 1
AVP_EAP_PAYLOAD = 2
AVP_INTEGRITY_ALGORITHM = 3
AVP_KEY_ID = 4
AVP_NONCE = 5
AVP_PRF_ALGORITHM = 6
AVP_RESULT_CODE = 7
AVP_SESSION_LIFETIME = 8
AVP_TERMINATION_CAUSE = 9
AVP_PAC_INFORMATION = 10
AVP_RELAYED_MESSAGE = 11

AVP_NAMES = {
    AVP_AUTH: "AUTH", AVP_EAP_PAYLOAD: "EAP-Payload",
    AVP_INTEGRITY_ALGORITHM: "Integrity-Algorithm", AVP_KEY_ID: "Key-Id",
    AVP_NONCE: "Nonce", AVP_PRF_ALGORITHM: "PRF-Algorithm", AVP_RESULT_CODE: "Result-Code",
    AVP_SESSION_LIFETIME: "Session-Lifetime", AVP_TERMINATION_CAUSE: "Termination-Cause",
    AVP_PAC_INFORMATION: "PaC-Information", AVP_RELAYED_MESSAGE: "Relayed-Message",
}

# Result-Code values (RFC 5191 8.7)
PANA_SUCCESS = 0
PANA_AUTHENTICATION_REJECTED = 1
PANA_AUTHORIZATION_REJECTED = 2

# Termination-Cause values (RFC 5191 8.9, borrowed from Diameter)
TERMINATION_LOGOUT = 1           # PaC -> PAA
TERMINATION_ADMINISTRATIVE = 4   # PAA -> PaC
TERMINATION_SESSION_TIMEOUT = 8  # PAA -> PaC

NONCE_MIN_LEN = 8
NONCE_MAX_LEN = 256
NONCE_LEN = 20  # what this implementation sends

_FIXED_U32 = (AVP_INTEGRITY_ALGORITHM, AVP_KEY_ID, AVP_PRF_ALGORITHM, AVP_RESULT_CODE,
              AVP_SESSION_LIFETIME, AVP_TERMINATION_CAUSE)
_SINGLE = (AVP_AUTH, AVP_EAP_PAYLOAD, AVP_KEY_ID, AVP_NONCE, AVP_RESULT_CODE,
           AVP_SESSION_LIFETIME, AVP_TERMINATION_CAUSE, AVP_PAC_INFORMATION,
           AVP_RELAYED_MESSAGE)


_HEADER = struct.Struct("!HHHHII")
_AVP_HEADER = struct.Struct("!HHHH")
_VENDOR_AVP_HEADER = struct.Struct("!HHHHI")
_U32 = struct.Struct("!I")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")    # by the value's length mod 4


@quick_init
@dataclass(frozen=True)
class Avp:
    """One AVP. `vendor_id` is None for IETF AVPs (V flag clear)."""

    code: int
    value: bytes
    vendor_id: int | None = None
    # Offset of the value inside the decoded message (AUTH verification needs it).
    offset: int = field(default=-1, compare=False, repr=False)

    @classmethod
    def u32(cls, code: int, number: int, vendor_id: int | None = None) -> "Avp":
        return cls(code, struct.pack("!I", number), vendor_id)

    @property
    def as_u32(self) -> int:
        if len(self.value) != 4:
            raise DecodeError(f"AVP {self.code} is not a 32-bit integer")
        return struct.unpack("!I", self.value)[0]

    def encode(self) -> bytes:
        if not 0 <= self.code <= 0xFFFF:
            raise ValueError(f"AVP code {self.code} out of range")
        if len(self.value) > 0xFFFF:
            raise ValueError("AVP value longer than 65535 bytes")
        if self.vendor_id is None:
            head = _AVP_HEADER.pack(self.code, 0, len(self.value), 0)
        else:
            head = _VENDOR_AVP_HEADER.pack(self.code, AVP_FLAG_V, len(self.value), 0,
                                           self.vendor_id)
        return head + self.value + _PADDING[len(self.value) & 3]


@dataclass(frozen=True)
class PacInformation:
    """Value of the PaC-Information AVP (RFC 6345): PaC IPv4/IPv6 address, then UDP port."""

    address: str
    port: int

    def encode(self) -> bytes:
        return ipaddress.ip_address(self.address).packed + struct.pack("!H", self.port)

    @classmethod
    def decode(cls, value: bytes) -> "PacInformation":
        if len(value) not in (6, 18):
            raise DecodeError(f"PaC-Information length {len(value)} is neither 6 nor 18")
        return cls(str(ipaddress.ip_address(value[:-2])), struct.unpack("!H", value[-2:])[0])


@quick_init
@dataclass(frozen=True)
class Message:
    """A PANA message. `raw` holds the received bytes (empty for locally built ones)."""

    type: int
    flags: int
    session_id: int
    seq: int
    avps: tuple[Avp, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)

    # ---- flags
    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_R)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @property
    def name(self) -> str:
        return message_name(self.type, self.flags)

    # ---- generic AVP access
    def find(self, code: int, vendor_id: int | None = None) -> Avp | None:
        for avp in self.avps:
            if avp.code == code and avp.vendor_id == vendor_id:
                return avp
        return None

    def find_all(self, code: int, vendor_id: int | None = None) -> list[Avp]:
        return [a for a in self.avps if a.code == code and a.vendor_id == vendor_id]

    def _u32(self, code: int) -> int | None:
        avp = self.find(code)
        return None if avp is None else avp.as_u32

    def _bytes(self, code: int) -> bytes | None:
        avp = self.find(code)
        return None if avp is None else avp.value

    # ---- typed accessors, one per RFC 5191 / RFC 6345 AVP
    @property
    def auth(self) -> bytes | None:
        return self._bytes(AVP_AUTH)

    @property
    def eap_payload(self) -> bytes | None:
        return self._bytes(AVP_EAP_PAYLOAD)

    @property
    def integrity_algorithms(self) -> list[int]:
        return [a.as_u32 for a in self.find_all(AVP_INTEGRITY_ALGORITHM)]

    @property
    def key_id(self) -> int | None:
        return self._u32(AVP_KEY_ID)

    @property
    def nonce(self) -> bytes | None:
        return self._bytes(AVP_NONCE)

    @property
    def prf_algorithms(self) -> list[int]:
        return [a.as_u32 for a in self.find_all(AVP_PRF_ALGORITHM)]

    @property
    def result_code(self) -> int | None:
        return self._u32(AVP_RESULT_CODE)

    @property
    def session_lifetime(self) -> int | None:
        return self._u32(AVP_SESSION_LIFETIME)

    @property
    def termination_cause(self) -> int | None:
        return self._u32(AVP_TERMINATION_CAUSE)

    @property
    def pac_information(self) -> PacInformation | None:
        value = self._bytes(AVP_PAC_INFORMATION)
        return None if value is None else PacInformation.decode(value)

    @property
    def relayed_message(self) -> bytes | None:
        return self._bytes(AVP_RELAYED_MESSAGE)

    def encode(self) -> bytes:
        return encode_message(self)


# ---- AVP builders for the RFC 5191 / 6345 AVPs
def auth_avp(value: bytes) -> Avp:
    return Avp(AVP_AUTH, value)


def eap_payload_avp(packet: bytes) -> Avp:
    return Avp(AVP_EAP_PAYLOAD, packet)


def integrity_algorithm_avp(algorithm: int) -> Avp:
    return Avp.u32(AVP_INTEGRITY_ALGORITHM, algorithm)


def key_id_avp(key_id: int) -> Avp:
    return Avp.u32(AVP_KEY_ID, key_id)


def nonce_avp(nonce: bytes) -> Avp:
    return Avp(AVP_NONCE, nonce)


def prf_algorithm_avp(algorithm: int) -> Avp:
    return Avp.u32(AVP_PRF_ALGORITHM, algorithm)


def result_code_avp(code: int) -> Avp:
    return Avp.u32(AVP_RESULT_CODE, code)


def session_lifetime_avp(seconds: int) -> Avp:
    return Avp.u32(AVP_SESSION_LIFETIME, seconds)


def termination_cause_avp(cause: int) -> Avp:
    return Avp.u32(AVP_TERMINATION_CAUSE, cause)


def pac_information_avp(address: str, port: int) -> Avp:
    return Avp(AVP_PAC_INFORMATION, PacInformation(address, port).encode())


def relayed_message_avp(message: bytes) -> Avp:
    return Avp(AVP_RELAYED_MESSAGE, message)


def message_name(msg_type: int, flags: int) -> str:
    """The RFC 5191 abbreviation: PCI, PAR, PAN, PTR, PTA, PNR, PNA, PRY."""
    request = bool(flags & FLAG_R)
    return {
        PCI: "PCI", RELAY: "PRY",
        AUTH: "PAR" if request else "PAN",
        TERMINATION: "PTR" if request else "PTA",
        NOTIFICATION: "PNR" if request else "PNA",
    }.get(msg_type, f"type-{msg_type}")


def encode_message(msg: Message) -> bytes:
    # Avp.encode's checks and layout, inline: one loop, no call per AVP
    parts = []
    append = parts.append
    ietf_head, vendor_head, padding = _AVP_HEADER.pack, _VENDOR_AVP_HEADER.pack, _PADDING
    for avp in msg.avps:
        code, value, vendor_id = avp.code, avp.value, avp.vendor_id
        size = len(value)
        if not 0 <= code <= 0xFFFF:
            raise ValueError(f"AVP code {code} out of range")
        if size > 0xFFFF:
            raise ValueError("AVP value longer than 65535 bytes")
        append(ietf_head(code, 0, size, 0) if vendor_id is None else
               vendor_head(code, AVP_FLAG_V, size, 0, vendor_id))
        append(value)
        append(padding[size & 3])
    body = b"".join(parts)
    length = HEADER_LEN + len(body)
    if length > MAX_MESSAGE_LEN:
        raise ValueError(f"PANA message of {length} bytes exceeds 65535")
    return _HEADER.pack(0, length, msg.flags, msg.type, msg.session_id, msg.seq) + body


def decode_message(data: bytes, *, strict_reserved: bool = True) -> Message:
    """Decode one PANA message; raise DecodeError with a reason for anything malformed."""
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise DecodeError(f"message of {len(data)} bytes is shorter than the PANA header")
    reserved, length, flags, msg_type, session_id, seq = _HEADER.unpack_from(data)
    if length != len(data):
        raise DecodeError(f"length field {length} does not match datagram size {len(data)}")
    if strict_reserved and reserved:
        raise DecodeError("reserved header field is not zero")
    if msg_type not in _ALLOWED_FLAGS:
        raise DecodeError(f"unknown message type {msg_type}")
    if strict_reserved and flags & ~KNOWN_FLAGS:
        raise DecodeError("reserved flag bits set")
    flags &= KNOWN_FLAGS
    if flags & ~_ALLOWED_FLAGS[msg_type]:
        raise DecodeError(f"flags {flags:#06x} not allowed in {message_name(msg_type, flags)}")
    if flags & FLAG_S and flags & FLAG_C:
        raise DecodeError("S and C flags both set")
    if flags & FLAG_I and not flags & FLAG_R:
        raise DecodeError("I flag set in an answer")
    if msg_type == NOTIFICATION and bool(flags & FLAG_A) == bool(flags & FLAG_P):
        raise DecodeError("notification needs exactly one of the A and P flags")
    if msg_type in (PCI, RELAY) and (session_id or seq):
        raise DecodeError(f"{message_name(msg_type, flags)} with non-zero session id or sequence")

    avps = []
    pos, end = HEADER_LEN, len(data)
    unpack_avp_header = _AVP_HEADER.unpack_from
    while pos < end:   # the AVPs (RFC 5191 6.3), one after the other
        if end - pos < AVP_HEADER_LEN:
            raise DecodeError(f"truncated AVP header: {end - pos} bytes left")
        code, avp_flags, length, reserved = unpack_avp_header(data, pos)
        pos += AVP_HEADER_LEN
        if strict_reserved and avp_flags & ~AVP_FLAG_V:
            raise DecodeError(f"reserved flag bits set in AVP {code}")
        if strict_reserved and reserved:
            raise DecodeError(f"reserved field of AVP {code} is not zero")
        vendor_id = None
        if avp_flags & AVP_FLAG_V:
            if end - pos < 4:
                raise DecodeError(f"AVP {code} has the V flag but no Vendor-Id")
            vendor_id = _U32.unpack_from(data, pos)[0]
            pos += 4
        if length > end - pos:
            raise DecodeError(f"AVP {code} value of {length} bytes overruns the message")
        offset = pos
        pos += length
        padding = -length & 3
        if padding > end - pos:
            raise DecodeError(f"AVP {code} is missing its padding")
        if strict_reserved and padding and any(data[pos:pos + padding]):
            raise DecodeError(f"non-zero padding after AVP {code}")
        avps.append(Avp(code, data[offset:pos], vendor_id, offset))
        pos += padding
    msg = Message(msg_type, flags, session_id, seq, tuple(avps), raw=data)
    _check_avps(msg)
    return msg


def _check_avps(msg: Message) -> None:
    seen: set[int] = set()
    for avp in msg.avps:
        if avp.vendor_id is not None:
            continue
        code, size = avp.code, len(avp.value)
        if code in _SINGLE:
            if code in seen:
                raise DecodeError(f"more than one {AVP_NAMES[code]} AVP")
            seen.add(code)
        if code in _FIXED_U32 and size != 4:
            raise DecodeError(f"{AVP_NAMES[code]} AVP of {size} bytes, expected 4")
        elif code == AVP_AUTH and size == 0:
            raise DecodeError("empty AUTH AVP")
        elif code == AVP_EAP_PAYLOAD and size < 4:
            raise DecodeError(f"EAP-Payload of {size} bytes is shorter than an EAP header")
        elif code == AVP_NONCE and not NONCE_MIN_LEN <= size <= NONCE_MAX_LEN:
            raise DecodeError(f"Nonce of {size} bytes outside {NONCE_MIN_LEN}..{NONCE_MAX_LEN}")
        elif code == AVP_PAC_INFORMATION and size not in (6, 18):
            raise DecodeError(f"PaC-Information length {size} is neither 6 nor 18")
        elif code == AVP_RELAYED_MESSAGE and size < HEADER_LEN:
            raise DecodeError("Relayed-Message shorter than a PANA header")
    if msg.type == TERMINATION and msg.is_request and AVP_TERMINATION_CAUSE not in seen:
        raise DecodeError("PTR without Termination-Cause")
    if msg.type == AUTH and msg.is_request and msg.has(FLAG_C) and AVP_RESULT_CODE not in seen:
        raise DecodeError("PAR with C flag but no Result-Code")
    if msg.type == RELAY and not {AVP_PAC_INFORMATION, AVP_RELAYED_MESSAGE} <= seen:
        raise DecodeError("PRY without PaC-Information or Relayed-Message")
