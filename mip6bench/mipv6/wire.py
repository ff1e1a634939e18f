"""Mobility Header codec (RFC 6275 section 6, RFC 4283, RFC 4285): bytes <-> frozen dataclasses.

API for the runtime author
--------------------------
Messages (all frozen dataclasses with an ``options`` tuple):
    BindingRefreshRequest, HomeTestInit, CareOfTestInit, HomeTest, CareOfTest,
    BindingUpdate, BindingAck, BindingError
Mobility options:
    BindingRefreshAdvice, AlternateCareOfAddress, NonceIndices,
    BindingAuthorizationData, MobileNodeIdentifier, Authentication,
    ReplayProtection, UnknownOption (an option this codec does not know; kept so a
    caller can report it, skipped otherwise per RFC 6275 6.2.1).
    Pad1/PadN are not represented: ``encode_mh`` inserts them to meet each option's
    alignment rule and ``decode_mh`` drops them.

``encode_mh(msg, src, dst) -> bytes``
    The whole Mobility Header with its checksum. ``src``/``dst`` are the addresses of the
    IPv6 pseudo-header (RFC 8200 8.1): the *home address* when the packet carries a Home
    Address option, and the *final destination* (the address in a type 2 routing header)
    when it carries one. That is what the receivers (and scapy) verify.
``decode_mh(data, src=None, dst=None) -> message``
    Strict decoding; verifies the checksum when src/dst are given. Raises
    ``DecodeError`` (with ``.reason``) on anything malformed, and its subclass
    ``UnknownMHType`` (with ``.mh_type``) for a well-formed header of an unknown type:
    that one is answered with a Binding Error, status 2 (RFC 6275 9.2).

Lifetimes and refresh intervals are in seconds and must be multiples of 4 (the wire
unit); ``wire_lifetime(seconds)`` rounds a duration down to something encodable.

IPv6 extension headers for route optimisation (RFC 6275 6.3, 6.4) and whole packets
(encode_home_address_destopts, decode_routing_header, build_ipv6_packet,
parse_ipv6_packet, ...) live in mip6bench.ipv6, shared with net/; they are re-exported
here for the Mobile IPv6 code that imports them with the codec.
Addresses are strings everywhere; they are normalised to the compressed form.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from mip6bench.codec import DecodeError, Reader
from mip6bench.ipv6 import (  # noqa: F401  (re-exported: see the module docstring)
    DestinationOptions,
    Ipv6Packet,
    RoutingHeaderType2,
    address_bytes,
    address_text,
    build_ipv6_packet,
    decode_destination_options,
    decode_routing_header,
    encode_home_address_destopts,
    encode_routing_header_type2,
    iter_option_tlvs,
    normalize_address,
    pad_options,
    parse_ipv6_packet,
    upper_layer_checksum,
)
from mip6bench.mipv6.constants import (
    AUTH_SUBTYPE_MN_HA,
    IPPROTO_MH,
    IPPROTO_NONE,
    LIFETIME_UNIT,
    MAX_WIRE_LIFETIME,
    MN_ID_SUBTYPE_NAI,
    MHType,
    OptionType,
)

__all__ = [
    "DecodeError", "UnknownMHType",
    "MobilityOption", "BindingRefreshAdvice", "AlternateCareOfAddress", "NonceIndices",
    "BindingAuthorizationData", "MobileNodeIdentifier", "Authentication",
    "ReplayProtection", "UnknownOption",
    "MobilityMessage", "BindingRefreshRequest", "HomeTestInit", "CareOfTestInit",
    "HomeTest", "CareOfTest", "BindingUpdate", "BindingAck", "BindingError",
    "encode_mh", "decode_mh", "mh_body", "option_offset", "wire_lifetime",
    "normalize_address", "address_bytes",
    "DestinationOptions", "RoutingHeaderType2", "Ipv6Packet",
    "encode_home_address_destopts", "decode_destination_options",
    "encode_routing_header_type2", "decode_routing_header",
    "build_ipv6_packet", "parse_ipv6_packet",
]

MH_HEADER_LEN = 6  # Payload Proto, Header Len, MH Type, Reserved, Checksum
BAD_AUTHENTICATOR_LEN = 12  # RFC 6275 6.2.7: 96-bit authenticator for return routability


class UnknownMHType(DecodeError):
    """A syntactically valid Mobility Header whose type this node does not know."""

    def __init__(self, mh_type: int):
        super().__init__(f"unknown MH type {mh_type}")
        self.mh_type = mh_type


# --------------------------------------------------------------------------- addresses

def wire_lifetime(seconds: float) -> int:
    """Round a duration down to an encodable lifetime (multiple of 4 s, at most 262140 s)."""
    if seconds <= 0:
        return 0
    return min(int(seconds) // LIFETIME_UNIT * LIFETIME_UNIT, MAX_WIRE_LIFETIME)


def _check_lifetime(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 0 or value > MAX_WIRE_LIFETIME or value % LIFETIME_UNIT:
        raise ValueError(f"{name} must be a multiple of 4 seconds in 0..{MAX_WIRE_LIFETIME}, got {value!r}")


def _check_uint(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must be an unsigned {bits}-bit integer, got {value!r}")


def _check_bytes(name: str, value: bytes, length: int | None = None) -> None:
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{name} must be bytes")
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- options

class MobilityOption:
    """Base class of mobility options. ``ALIGN = (x, y)`` is the xn+y rule of RFC 6275 6.2."""

    TYPE: ClassVar[int]
    ALIGN: ClassVar[tuple[int, int]] = (1, 0)

    def value(self) -> bytes:
        raise NotImplementedError

    def alignment(self) -> tuple[int, int]:
        return self.ALIGN

    def encode(self) -> bytes:
        value = self.value()
        if len(value) > 255:
            raise ValueError(f"option type {self.TYPE} value too long ({len(value)} bytes)")
        return bytes((self.TYPE, len(value))) + value

    @classmethod
    def decode_value(cls, value: bytes) -> "MobilityOption":
        raise NotImplementedError


def _expect_len(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise DecodeError(f"{name} option length {len(value)}, must be {length}")


@dataclass(frozen=True)
class BindingRefreshAdvice(MobilityOption):
    """RFC 6275 6.2.4: suggested refresh interval (seconds, multiple of 4); only in BAs from a HA."""

    interval: int
    TYPE: ClassVar[int] = OptionType.BINDING_REFRESH_ADVICE
    ALIGN: ClassVar[tuple[int, int]] = (2, 0)

    def __post_init__(self):
        _check_lifetime("refresh interval", self.interval)

    def value(self) -> bytes:
        return struct.pack("!H", self.interval // LIFETIME_UNIT)

    @classmethod
    def decode_value(cls, value: bytes) -> "BindingRefreshAdvice":
        _expect_len("binding refresh advice", value, 2)
        return cls(struct.unpack("!H", value)[0] * LIFETIME_UNIT)


@dataclass(frozen=True)
class AlternateCareOfAddress(MobilityOption):
    """RFC 6275 6.2.5: the care-of address to register when it differs from the source."""

    address: str
    TYPE: ClassVar[int] = OptionType.ALTERNATE_CARE_OF_ADDRESS
    ALIGN: ClassVar[tuple[int, int]] = (8, 6)

    def __post_init__(self):
        _set(self, "address", normalize_address(self.address))

    def value(self) -> bytes:
        return address_bytes(self.address)

    @classmethod
    def decode_value(cls, value: bytes) -> "AlternateCareOfAddress":
        _expect_len("alternate care-of address", value, 16)
        return cls(address_text(value))


@dataclass(frozen=True)
class NonceIndices(MobilityOption):
    """RFC 6275 6.2.6: which CN nonces the keygen tokens of a BU were built from."""

    home_nonce_index: int
    care_of_nonce_index: int
    TYPE: ClassVar[int] = OptionType.NONCE_INDICES
    ALIGN: ClassVar[tuple[int, int]] = (2, 0)

    def __post_init__(self):
        _check_uint("home nonce index", self.home_nonce_index, 16)
        _check_uint("care-of nonce index", self.care_of_nonce_index, 16)

    def value(self) -> bytes:
        return struct.pack("!HH", self.home_nonce_index, self.care_of_nonce_index)

    @classmethod
    def decode_value(cls, value: bytes) -> "NonceIndices":
        _expect_len("nonce indices", value, 4)
        return cls(*struct.unpack("!HH", value))


@dataclass(frozen=True)
class BindingAuthorizationData(MobilityOption):
    """RFC 6275 6.2.7: the 96-bit return-routability authenticator; must be the last option.

    Its stated alignment is none, but being last in a header that is a multiple of 8
    octets long gives it the implicit 8n+2 rule, which the encoder applies.
    """

    authenticator: bytes
    TYPE: ClassVar[int] = OptionType.BINDING_AUTHORIZATION_DATA
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)

    def __post_init__(self):
        _check_bytes("authenticator", self.authenticator, BAD_AUTHENTICATOR_LEN)
        _set(self, "authenticator", bytes(self.authenticator))

    def value(self) -> bytes:
        return self.authenticator

    @classmethod
    def decode_value(cls, value: bytes) -> "BindingAuthorizationData":
        _expect_len("binding authorization data", value, BAD_AUTHENTICATOR_LEN)
        return cls(value)


@dataclass(frozen=True)
class MobileNodeIdentifier(MobilityOption):
    """RFC 4283 MN-ID option; subtype 1 carries a NAI (RFC 4282). No alignment rule."""

    identifier: bytes
    subtype: int = MN_ID_SUBTYPE_NAI
    TYPE: ClassVar[int] = OptionType.MOBILE_NODE_IDENTIFIER

    def __post_init__(self):
        _check_bytes("identifier", self.identifier)
        _set(self, "identifier", bytes(self.identifier))
        _check_uint("MN-ID subtype", self.subtype, 8)
        if not 1 <= len(self.identifier) <= 254:
            raise ValueError("MN-ID identifier must be 1..254 bytes")

    @classmethod
    def from_nai(cls, nai: str) -> "MobileNodeIdentifier":
        return cls(nai.encode("utf-8"), MN_ID_SUBTYPE_NAI)

    @property
    def nai(self) -> str | None:
        """The NAI as text (subtype 1), None for other subtypes or non-UTF-8 bytes."""
        if self.subtype != MN_ID_SUBTYPE_NAI:
            return None
        try:
            return self.identifier.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def value(self) -> bytes:
        return bytes((self.subtype,)) + self.identifier

    @classmethod
    def decode_value(cls, value: bytes) -> "MobileNodeIdentifier":
        if len(value) < 2:
            raise DecodeError(f"MN-ID option length {len(value)}, must be at least 2")
        return cls(value[1:], value[0])


@dataclass(frozen=True)
class Authentication(MobilityOption):
    """RFC 4285 section 5 mobility message authentication option (MN-HA or MN-AAA).

    Alignment 4n+1 (so the SPI is 4-octet aligned). It must be the last option, so the
    encoder picks the 4n+1 position at which the option also ends on an 8-octet
    boundary: no padding follows it.
    """

    spi: int
    authenticator: bytes
    subtype: int = AUTH_SUBTYPE_MN_HA
    TYPE: ClassVar[int] = OptionType.AUTHENTICATION
    ALIGN: ClassVar[tuple[int, int]] = (4, 1)

    def __post_init__(self):
        _check_uint("SPI", self.spi, 32)
        _check_uint("authentication subtype", self.subtype, 8)
        _check_bytes("authenticator", self.authenticator)
        _set(self, "authenticator", bytes(self.authenticator))
        if not 1 <= len(self.authenticator) <= 250:
            raise ValueError("authenticator must be 1..250 bytes")

    def alignment(self) -> tuple[int, int]:
        total = 7 + len(self.authenticator)
        end_aligned = (-total) % 8
        if end_aligned % 4 == 1:
            return (8, end_aligned)
        return self.ALIGN

    def value(self) -> bytes:
        return struct.pack("!BI", self.subtype, self.spi) + self.authenticator

    @classmethod
    def decode_value(cls, value: bytes) -> "Authentication":
        if len(value) < 6:
            raise DecodeError(f"authentication option length {len(value)}, must be at least 6")
        subtype, spi = struct.unpack("!BI", value[:5])
        return cls(spi, value[5:], subtype)


@dataclass(frozen=True)
class ReplayProtection(MobilityOption):
    """RFC 4285 section 6: 64-bit NTP-format timestamp. Alignment 8n+2."""

    timestamp: int
    TYPE: ClassVar[int] = OptionType.REPLAY_PROTECTION
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)

    def __post_init__(self):
        _check_uint("timestamp", self.timestamp, 64)

    def value(self) -> bytes:
        return struct.pack("!Q", self.timestamp)

    @classmethod
    def decode_value(cls, value: bytes) -> "ReplayProtection":
        _expect_len("replay protection", value, 8)
        return cls(struct.unpack("!Q", value)[0])


@dataclass(frozen=True)
class UnknownOption(MobilityOption):
    """An option type this codec does not implement; receivers skip it (RFC 6275 6.2.1)."""

    type: int
    data: bytes = b""

    def __post_init__(self):
        _check_uint("option type", self.type, 8)
        if self.type in (OptionType.PAD1, OptionType.PADN) or self.type in _OPTION_CLASSES:
            raise ValueError(f"option type {self.type} has its own class")
        _check_bytes("option data", self.data)
        _set(self, "data", bytes(self.data))

    def encode(self) -> bytes:
        if len(self.data) > 255:
            raise ValueError("option data too long")
        return bytes((self.type, len(self.data))) + self.data


_OPTION_CLASSES: dict[int, type[MobilityOption]] = {
    cls.TYPE: cls
    for cls in (BindingRefreshAdvice, AlternateCareOfAddress, NonceIndices,
                BindingAuthorizationData, MobileNodeIdentifier, Authentication,
                ReplayProtection)
}
# Options that protect everything before them and therefore must come last.
_LAST_OPTIONS = (BindingAuthorizationData, Authentication)


def _encode_options(options: tuple[MobilityOption, ...], start: int) -> bytes:
    return _encode_options_at(options, start)[0]


def _encode_options_at(options: tuple[MobilityOption, ...], start: int) -> tuple[bytes, int]:
    """The encoded options and where the last one starts (offset from the MH's start)."""
    out = bytearray()
    pos = last = start
    for i, opt in enumerate(options):
        if not isinstance(opt, MobilityOption):
            raise ValueError(f"not a mobility option: {opt!r}")
        if isinstance(opt, _LAST_OPTIONS) and i != len(options) - 1:
            raise ValueError(f"{type(opt).__name__} must be the last option")
        x, y = opt.alignment()
        pad = (y - pos) % x
        out += pad_options(pad)
        pos += pad
        last = pos
        encoded = opt.encode()
        out += encoded
        pos += len(encoded)
    out += pad_options((-pos) % 8)
    return bytes(out), last


def _decode_options(data: bytes, start: int, end: int) -> tuple[MobilityOption, ...]:
    """The options, padding left out. Nothing but padding may follow a Binding
    Authorization Data or Authentication option (RFC 6275 6.2.7, RFC 4285 section 5:
    it MUST be the last option; what followed would not be covered by it)."""
    out: list[MobilityOption] = []
    for otype, pos, value in iter_option_tlvs(data, start, end):
        if otype in (OptionType.PAD1, OptionType.PADN):
            continue
        if out and isinstance(out[-1], _LAST_OPTIONS):
            raise DecodeError(f"option type {otype} at offset {pos} follows "
                              f"{type(out[-1]).__name__}, which must be the last option")
        cls = _OPTION_CLASSES.get(otype)
        if cls is None:
            out.append(UnknownOption(otype, value))
            continue
        try:
            out.append(cls.decode_value(value))
        except ValueError as exc:  # field validation of the dataclass
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"bad option type {otype}: {exc}") from None
    return tuple(out)


# --------------------------------------------------------------------------- messages

OptionT = TypeVar("OptionT", bound=MobilityOption)


class MobilityMessage:
    """Base class of Mobility Header messages. FIXED_LEN: bytes of message data before options."""

    MH_TYPE: ClassVar[int]
    FIXED_LEN: ClassVar[int]
    options: tuple[MobilityOption, ...]

    def _fixed(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def _from_fixed(cls, fixed: bytes, options: tuple[MobilityOption, ...]) -> "MobilityMessage":
        raise NotImplementedError

    def _check_options(self) -> None:
        opts = tuple(self.options)
        for opt in opts:
            if not isinstance(opt, MobilityOption):
                raise ValueError(f"not a mobility option: {opt!r}")
        _set(self, "options", opts)

    def find(self, option_class: type[OptionT]) -> OptionT | None:
        """The first option of that class, or None. (The first of each type is looked up
        once per message: a home agent asks a Binding Update for four of them, some twice.)"""
        first = self.__dict__.get("_first")
        if first is None:
            first = {}
            for opt in self.options:
                first.setdefault(type(opt), opt)
            _set(self, "_first", first)
        found = first.get(option_class)
        if found is not None:
            return found
        for opt in self.options:       # a base class, or none of that class
            if isinstance(opt, option_class):
                return opt
        return None

    def find_all(self, option_class: type[OptionT]) -> tuple[OptionT, ...]:
        return tuple(o for o in self.options if isinstance(o, option_class))

    @property
    def unknown_options(self) -> tuple[UnknownOption, ...]:
        return self.find_all(UnknownOption)


@dataclass(frozen=True)
class BindingRefreshRequest(MobilityMessage):
    """RFC 6275 6.1.2."""

    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_REFRESH_REQUEST
    FIXED_LEN: ClassVar[int] = 2

    def __post_init__(self):
        self._check_options()

    def _fixed(self) -> bytes:
        return b"\x00\x00"

    @classmethod
    def _from_fixed(cls, fixed, options):
        return cls(options)


@dataclass(frozen=True)
class _TestInit(MobilityMessage):
    cookie: bytes
    options: tuple[MobilityOption, ...] = ()
    FIXED_LEN: ClassVar[int] = 10

    def __post_init__(self):
        _check_bytes("cookie", self.cookie, 8)
        _set(self, "cookie", bytes(self.cookie))
        self._check_options()

    def _fixed(self) -> bytes:
        return b"\x00\x00" + self.cookie

    @classmethod
    def _from_fixed(cls, fixed, options):
        return cls(fixed[2:10], options)


@dataclass(frozen=True)
class HomeTestInit(_TestInit):
    """RFC 6275 6.1.3: carries the 64-bit home init cookie (sent via the HA tunnel)."""

    MH_TYPE: ClassVar[int] = MHType.HOME_TEST_INIT


@dataclass(frozen=True)
class CareOfTestInit(_TestInit):
    """RFC 6275 6.1.4: carries the 64-bit care-of init cookie (sent directly)."""

    MH_TYPE: ClassVar[int] = MHType.CARE_OF_TEST_INIT


@dataclass(frozen=True)
class _Test(MobilityMessage):
    nonce_index: int
    cookie: bytes
    token: bytes
    options: tuple[MobilityOption, ...] = ()
    FIXED_LEN: ClassVar[int] = 18

    def __post_init__(self):
        _check_uint("nonce index", self.nonce_index, 16)
        _check_bytes("cookie", self.cookie, 8)
        _check_bytes("keygen token", self.token, 8)
        _set(self, "cookie", bytes(self.cookie))
        _set(self, "token", bytes(self.token))
        self._check_options()

    def _fixed(self) -> bytes:
        return struct.pack("!H", self.nonce_index) + self.cookie + self.token

    @classmethod
    def _from_fixed(cls, fixed, options):
        return cls(struct.unpack("!H", fixed[:2])[0], fixed[2:10], fixed[10:18], options)


@dataclass(frozen=True)
class HomeTest(_Test):
    """RFC 6275 6.1.5: home nonce index, the cookie echoed, the 64-bit home keygen token."""

    MH_TYPE: ClassVar[int] = MHType.HOME_TEST


@dataclass(frozen=True)
class CareOfTest(_Test):
    """RFC 6275 6.1.6: care-of nonce index, the cookie echoed, the care-of keygen token."""

    MH_TYPE: ClassVar[int] = MHType.CARE_OF_TEST


# BU flag bits in the 16-bit word after the sequence number (RFC 6275 6.1.7).
BU_FLAG_A = 0x8000
BU_FLAG_H = 0x4000
BU_FLAG_L = 0x2000
BU_FLAG_K = 0x1000
BA_FLAG_K = 0x80


@dataclass(frozen=True)
class BindingUpdate(MobilityMessage):
    """RFC 6275 6.1.7. ``lifetime`` in seconds (multiple of 4); 0 means deregistration."""

    seq: int
    lifetime: int
    ack: bool = False
    home_registration: bool = False
    link_local_compat: bool = False
    key_management: bool = False
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_UPDATE
    FIXED_LEN: ClassVar[int] = 6

    def __post_init__(self):
        _check_uint("sequence number", self.seq, 16)
        _check_lifetime("lifetime", self.lifetime)
        self._check_options()

    def _fixed(self) -> bytes:
        flags = ((BU_FLAG_A if self.ack else 0) | (BU_FLAG_H if self.home_registration else 0)
                 | (BU_FLAG_L if self.link_local_compat else 0)
                 | (BU_FLAG_K if self.key_management else 0))
        return struct.pack("!HHH", self.seq, flags, self.lifetime // LIFETIME_UNIT)

    @classmethod
    def _from_fixed(cls, fixed, options):
        # Reserved bits (and flags of other specifications) are ignored, RFC 6275 6.1.7.
        seq, flags, lifetime = struct.unpack("!HHH", fixed)
        return cls(seq, lifetime * LIFETIME_UNIT, bool(flags & BU_FLAG_A), bool(flags & BU_FLAG_H),
                   bool(flags & BU_FLAG_L), bool(flags & BU_FLAG_K), options)


@dataclass(frozen=True)
class BindingAck(MobilityMessage):
    """RFC 6275 6.1.8. ``lifetime`` is the granted lifetime in seconds (multiple of 4)."""

    status: int
    seq: int
    lifetime: int
    key_management: bool = False
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_ACK
    FIXED_LEN: ClassVar[int] = 6

    def __post_init__(self):
        _check_uint("status", self.status, 8)
        _check_uint("sequence number", self.seq, 16)
        _check_lifetime("lifetime", self.lifetime)
        self._check_options()

    @property
    def accepted(self) -> bool:
        return self.status < 128

    def _fixed(self) -> bytes:
        return struct.pack("!BBHH", self.status, BA_FLAG_K if self.key_management else 0,
                           self.seq, self.lifetime // LIFETIME_UNIT)

    @classmethod
    def _from_fixed(cls, fixed, options):
        status, flags, seq, lifetime = struct.unpack("!BBHH", fixed)
        return cls(status, seq, lifetime * LIFETIME_UNIT, bool(flags & BA_FLAG_K), options)


@dataclass(frozen=True)
class BindingError(MobilityMessage):
    """RFC 6275 6.1.9: status 1 (HAO without binding) or 2 (unknown MH type)."""

    status: int
    home_address: str = "::"
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_ERROR
    FIXED_LEN: ClassVar[int] = 18

    def __post_init__(self):
        _check_uint("status", self.status, 8)
        _set(self, "home_address", normalize_address(self.home_address))
        self._check_options()

    def _fixed(self) -> bytes:
        return bytes((self.status, 0)) + address_bytes(self.home_address)

    @classmethod
    def _from_fixed(cls, fixed, options):
        return cls(fixed[0], address_text(fixed[2:18]), options)


_MESSAGE_CLASSES: dict[int, type[MobilityMessage]] = {
    cls.MH_TYPE: cls
    for cls in (BindingRefreshRequest, HomeTestInit, CareOfTestInit, HomeTest, CareOfTest,
                BindingUpdate, BindingAck, BindingError)
}


def mh_body(msg: MobilityMessage) -> bytes:
    """The encoded Mobility Header with the checksum field zero (the form MACs cover)."""
    return mh_body_with_options(msg, getattr(msg, "options", ()))[0]


def mh_body_with_options(msg: MobilityMessage, options: tuple[MobilityOption, ...]) -> tuple[bytes, int]:
    """mh_body of `msg` carrying `options` instead of its own (checked as the encoder
    checks a message's own), and the offset of the last option: what the MACs need
    without building a second message (dataclasses.replace re-validates every field)."""
    if not isinstance(msg, MobilityMessage):
        raise ValueError(f"not a mobility message: {msg!r}")
    fixed = msg._fixed()
    assert len(fixed) == msg.FIXED_LEN
    encoded, last = _encode_options_at(tuple(options), MH_HEADER_LEN + len(fixed))
    total = MH_HEADER_LEN + len(fixed) + len(encoded)
    units = total // 8 - 1
    if units > 255:
        raise ValueError(f"mobility header too long ({total} bytes)")
    return struct.pack("!BBBBH", IPPROTO_NONE, units, msg.MH_TYPE, 0, 0) + fixed + encoded, last


def _checksum(body: bytes, src: str, dst: str) -> int:
    return upper_layer_checksum(address_bytes(src), address_bytes(dst), IPPROTO_MH, body)


def encode_mh(msg: MobilityMessage, src: str, dst: str) -> bytes:
    """Encode with the checksum over the pseudo-header (src = HoA if a HAO is sent,
    dst = the type 2 routing header address if one is sent)."""
    return with_checksum(mh_body(msg), src, dst)


def with_checksum(body: bytes, src: str, dst: str) -> bytes:
    """An encoded Mobility Header whose checksum field is zero, with its checksum."""
    return body[:4] + struct.pack("!H", _checksum(body, src, dst)) + body[6:]


def decode_mh(data: bytes, src: str | None = None, dst: str | None = None) -> MobilityMessage:
    """Strictly decode one Mobility Header; verify its checksum when src and dst are given."""
    if (src is None) != (dst is None):
        raise ValueError("give both src and dst to verify the checksum, or neither")
    data = bytes(data)
    r = Reader(data)
    proto = r.u8("payload proto")
    units = r.u8("header length")
    mh_type = r.u8("MH type")
    r.u8("reserved")
    r.u16("checksum")
    total = (units + 1) * 8
    if len(data) < total:
        raise DecodeError(f"truncated mobility header: header length says {total} bytes, have {len(data)}")
    if len(data) > total:
        raise DecodeError(f"{len(data) - total} trailing bytes after mobility header")
    if proto != IPPROTO_NONE:
        raise DecodeError(f"payload proto {proto}, must be 59 (no next header)")
    if src is not None:
        if _checksum(data, src, dst) != 0:
            raise DecodeError("bad mobility header checksum")
    cls = _MESSAGE_CLASSES.get(mh_type)
    if cls is None:
        raise UnknownMHType(mh_type)
    options_start = MH_HEADER_LEN + cls.FIXED_LEN
    if total < options_start:
        raise DecodeError(f"header length {total} too short for {cls.__name__} (needs {options_start})")
    options = _decode_options(data, options_start, total)
    try:
        return cls._from_fixed(data[MH_HEADER_LEN:options_start], options)
    except ValueError as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"bad {cls.__name__} field: {exc}") from None


def option_offset(raw_mh: bytes, option_type: int) -> int | None:
    """Offset (from the start of the MH) of the first option of that type, or None.

    ``raw_mh`` must be a Mobility Header that ``decode_mh`` accepts; the crypto uses this
    to find what an authenticator covers.
    """
    cls = _MESSAGE_CLASSES.get(raw_mh[2]) if len(raw_mh) > 2 else None
    if cls is None:
        raise DecodeError("not a known mobility header")
    total = (raw_mh[1] + 1) * 8
    for otype, pos, _value in iter_option_tlvs(raw_mh, MH_HEADER_LEN + cls.FIXED_LEN, min(total, len(raw_mh))):
        if otype == option_type:
            return pos
    return None
