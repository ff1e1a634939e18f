"""NATFW NSLP wire codec (RFC 5973 section 4).

Common header (4 bytes): message type (8) | flags (8: P = 0x80 proxy mode, the rest
reserved and zero) | reserved (16, zero). Objects follow, each with the NSLP object
header shared with the QoS NSLP (RFC 5974 section 5.2)::

    |A|B|r|r|         Type (12)      |r|r|r|r|      Length (12)      |

Length counts 32-bit words of the body (header excluded). A/B say what a node that does
not understand the type does: 00 mandatory (reject the message), 01 ignore (drop the
object, forward the rest), 10 forward unchanged; 11 is reserved and refused here.

Decoding is strict: every length, reserved bit and field value is checked and every
failure raises `NslpDecodeError(reason, info)` -- a `DecodeError` that also names the
RFC 5973 information code (severity class, response code) a node answers with.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from mip6bench.codec import DecodeError, Reader, pad_len

NSLPID = 33                     # GIST NSLPID of the NATFW NSLP
RAO_VALUE = 68                  # IPv6 Router Alert value for NATFW Q-mode queries

# Where each number comes from, and how far it is confirmed: README.md, "NSIS protocol
# numbers". In short: the registry names and the shared object header are confirmed;
# the values below marked (impl) agree with the KIT NSIS-ka implementation of the NATFW
# NSLP but could not be read in the RFC 5973 text here.

# Message types (RFC 5973 section 4.3; IANA "NATFW NSLP Message Types"), 8 bits (impl)
CREATE, EXT, RESPONSE, NOTIFY = 0x1, 0x2, 0x3, 0x4
MSG_NAMES = {CREATE: "CREATE", EXT: "EXT", RESPONSE: "RESPONSE", NOTIFY: "NOTIFY"}
FLAG_PROXY = 0x80               # P flag (IANA "NATFW NSLP Header Flags")

# Object types (IANA "NSLP Message Objects", confirmed in the registry)
T_LT, T_EXTERNAL_IP, T_EXTERNAL_BINDING, T_EFI = 0x00C, 0x00D, 0x00E, 0x00F
T_INFO, T_NONCE, T_MSN, T_DTINFO, T_ICMP_TYPES = 0x010, 0x011, 0x012, 0x013, 0x014
T_SESSION_AUTH = 0x016          # RFC 5981
T_MIP6_FLOW = 0x7D0             # first of 0x7D0-0x7FF, "Private/Experimental Use"

AB_MANDATORY, AB_IGNORE, AB_FORWARD = 0, 1, 2

# Extended flow information rule actions (section 4.2.3)
ACTION_ALLOW, ACTION_DENY = 0x0001, 0x0002

# Information code severity classes and response codes (section 4.2.5). Classes 1-5 are
# the shared IANA "NSLP Error Classes" (confirmed); 0x7 for signaling session failures
# is unconfirmed (6 is the QoS NSLP's "QoS Model Error" there).
SEV_INFORMATIONAL, SEV_SUCCESS, SEV_PROTOCOL_ERROR = 0x1, 0x2, 0x3
SEV_TRANSIENT, SEV_PERMANENT, SEV_SESSION_FAILURE = 0x4, 0x5, 0x7
INFO_ROUTE_CHANGE = (SEV_INFORMATIONAL, 0x01)
INFO_REAUTH_REQUIRED = (SEV_INFORMATIONAL, 0x02)
INFO_NODE_GOING_DOWN = (SEV_INFORMATIONAL, 0x03)
INFO_SUCCESS = (SEV_SUCCESS, 0x01)
ERR_ILLEGAL_MESSAGE_TYPE = (SEV_PROTOCOL_ERROR, 0x01)
ERR_WRONG_MESSAGE_LENGTH = (SEV_PROTOCOL_ERROR, 0x02)
ERR_BAD_FLAGS = (SEV_PROTOCOL_ERROR, 0x03)
ERR_MANDATORY_OBJECT_MISSING = (SEV_PROTOCOL_ERROR, 0x04)
ERR_ILLEGAL_OBJECT = (SEV_PROTOCOL_ERROR, 0x05)
ERR_UNKNOWN_OBJECT = (SEV_PROTOCOL_ERROR, 0x06)
ERR_WRONG_OBJECT_LENGTH = (SEV_PROTOCOL_ERROR, 0x07)
ERR_UNKNOWN_FIELD_VALUE = (SEV_PROTOCOL_ERROR, 0x08)
ERR_INVALID_FLAG_COMBINATION = (SEV_PROTOCOL_ERROR, 0x09)
ERR_DUPLICATE_OBJECT = (SEV_PROTOCOL_ERROR, 0x0A)
ERR_EXT_ON_EXTERNAL_SIDE = (SEV_PROTOCOL_ERROR, 0x0B)
ERR_RESOURCES_UNAVAILABLE = (SEV_TRANSIENT, 0x01)
ERR_AUTHENTICATION_FAILED = (SEV_PERMANENT, 0x01)
ERR_AUTHORIZATION_FAILED = (SEV_PERMANENT, 0x02)
ERR_TRANSPORT_SECURITY = (SEV_PERMANENT, 0x03)
ERR_INTERNAL = (SEV_PERMANENT, 0x04)
ERR_NO_NAT_HERE = (SEV_PERMANENT, 0x05)
ERR_NO_EDGE_DEVICE_HERE = (SEV_PERMANENT, 0x06)
ERR_NR_NOT_REACHED = (SEV_PERMANENT, 0x07)
ERR_TRACING_NOT_ALLOWED = (SEV_PERMANENT, 0x08)
ERR_SESSION_TERMINATED = (SEV_SESSION_FAILURE, 0x01)
ERR_LIFETIME_TOO_BIG = (SEV_SESSION_FAILURE, 0x02)
ERR_NO_RESERVATION = (SEV_SESSION_FAILURE, 0x03)
ERR_POLICY_DENIED = (SEV_SESSION_FAILURE, 0x04)
ERR_UNKNOWN_RULE_ACTION = (SEV_SESSION_FAILURE, 0x05)
ERR_RULE_ACTION_NOT_APPLICABLE = (SEV_SESSION_FAILURE, 0x06)
ERR_DTINFO_REQUIRED = (SEV_SESSION_FAILURE, 0x07)
ERR_SUB_PORTS_NOT_PERMITTED = (SEV_SESSION_FAILURE, 0x08)
ERR_PROTOCOL_UNSUPPORTED = (SEV_SESSION_FAILURE, 0x09)
ERR_PLAIN_IP_NOT_PERMITTED = (SEV_SESSION_FAILURE, 0x0A)
ERR_ICMP_TYPE_NOT_PERMITTED = (SEV_SESSION_FAILURE, 0x0B)
ERR_SOURCE_RANGE_TOO_LARGE = (SEV_SESSION_FAILURE, 0x0C)
ERR_DEST_RANGE_TOO_LARGE = (SEV_SESSION_FAILURE, 0x0D)
ERR_SOURCE_PORT_RANGE_TOO_LARGE = (SEV_SESSION_FAILURE, 0x0E)
ERR_DEST_PORT_RANGE_TOO_LARGE = (SEV_SESSION_FAILURE, 0x0F)

MAX_MESSAGE = 65535


class NslpDecodeError(DecodeError):
    """A malformed NATFW message; `info` is the (class, code) to answer with."""

    def __init__(self, reason: str, info: tuple[int, int] = ERR_WRONG_OBJECT_LENGTH,
                 object_type: int = 0):
        super().__init__(reason)
        self.info = info
        self.object_type = object_type


def _fail(reason, info=ERR_WRONG_OBJECT_LENGTH, object_type=0):
    raise NslpDecodeError(reason, info, object_type)


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


def _u(value, bits, what):
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{what} must be an unsigned {bits}-bit integer")


# ---------------------------------------------------------------- objects


@dataclass(frozen=True)
class Lifetime:
    """NATFW_LT: requested/granted policy rule lifetime, seconds (0 tears down)."""
    TYPE: ClassVar[int] = T_LT
    seconds: int

    def __post_init__(self):
        _u(self.seconds, 32, "lifetime")

    def body(self) -> bytes:
        return struct.pack("!I", self.seconds)

    @classmethod
    def parse(cls, r: Reader):
        return cls(r.u32())


@dataclass(frozen=True)
class ExtFlowInfo:
    """NATFW_EFI: rule action (16) | sub_ports (16: 0 the MRI's port, 1 also port+1)."""
    TYPE: ClassVar[int] = T_EFI
    action: int = ACTION_ALLOW
    sub_ports: int = 0

    def __post_init__(self):
        if self.action not in (ACTION_ALLOW, ACTION_DENY):
            raise ValueError("rule action is allow (1) or deny (2)")
        if self.sub_ports not in (0, 1):
            raise ValueError("sub_ports is 0 or 1")

    def body(self) -> bytes:
        return struct.pack("!HH", self.action, self.sub_ports)

    @classmethod
    def parse(cls, r: Reader):
        action, sub = r.u16(), r.u16()
        if action not in (ACTION_ALLOW, ACTION_DENY):
            _fail(f"unknown rule action {action}", ERR_UNKNOWN_RULE_ACTION, T_EFI)
        if sub not in (0, 1):
            _fail(f"sub_ports {sub}", ERR_SUB_PORTS_NOT_PERMITTED, T_EFI)
        return cls(action, sub)


@dataclass(frozen=True)
class Msn:
    """NATFW_MSN: message sequence number (RFC 1982 serial arithmetic, 32 bits)."""
    TYPE: ClassVar[int] = T_MSN
    value: int

    def __post_init__(self):
        _u(self.value, 32, "MSN")

    def body(self) -> bytes:
        return struct.pack("!I", self.value)

    @classmethod
    def parse(cls, r: Reader):
        return cls(r.u32())


@dataclass(frozen=True)
class Nonce:
    """NATFW_NONCE: 32-bit nonce echoed in the RESPONSE to an EXT."""
    TYPE: ClassVar[int] = T_NONCE
    value: int

    def __post_init__(self):
        _u(self.value, 32, "nonce")

    def body(self) -> bytes:
        return struct.pack("!I", self.value)

    @classmethod
    def parse(cls, r: Reader):
        return cls(r.u32())


@dataclass(frozen=True)
class InfoCode:
    """NATFW_INFO: resv (4) | severity class (4) | response code (8) | resv (4) |
    object type (12, the object the code is about, 0 for none)."""
    TYPE: ClassVar[int] = T_INFO
    severity: int
    code: int
    object_type: int = 0

    def __post_init__(self):
        _u(self.severity, 4, "severity class")
        _u(self.code, 8, "response code")
        _u(self.object_type, 12, "object type")

    @property
    def success(self) -> bool:
        return self.severity == SEV_SUCCESS

    @property
    def pair(self) -> tuple[int, int]:
        return (self.severity, self.code)

    def body(self) -> bytes:
        return struct.pack("!BBH", self.severity, self.code, self.object_type)

    @classmethod
    def parse(cls, r: Reader):
        b0, code, ot = r.u8(), r.u8(), r.u16()
        if b0 & 0xF0 or ot & 0xF000:
            _fail("reserved bits set in information code", ERR_UNKNOWN_FIELD_VALUE, T_INFO)
        return cls(b0, code, ot)

    @classmethod
    def of(cls, pair: tuple[int, int], object_type: int = 0) -> "InfoCode":
        return cls(pair[0], pair[1], object_type)


@dataclass(frozen=True)
class ExternalAddress:
    """NATFW_EXTERNAL_IP / NATFW_EXTERNAL_BINDING: port (16) | protocol (8) | resv (8) |
    IPv4 address (RFC 5973 defines these for IPv4 NATs only)."""
    TYPE: ClassVar[int] = T_EXTERNAL_IP
    port: int
    protocol: int
    address: str
    binding: bool = False           # True: NATFW_EXTERNAL_BINDING

    def __post_init__(self):
        _u(self.port, 16, "port")
        _u(self.protocol, 8, "protocol")
        _set(self, "address", str(ipaddress.IPv4Address(self.address)))

    @property
    def type(self) -> int:
        return T_EXTERNAL_BINDING if self.binding else T_EXTERNAL_IP

    def body(self) -> bytes:
        return struct.pack("!HBB", self.port, self.protocol, 0) + \
            ipaddress.IPv4Address(self.address).packed

    @classmethod
    def parse(cls, r: Reader, binding=False):
        port, proto, resv = r.u16(), r.u8(), r.u8()
        if resv:
            _fail("reserved byte set in external address", ERR_UNKNOWN_FIELD_VALUE)
        return cls(port, proto, str(ipaddress.IPv4Address(r.take(4))), binding)


DT_I, DT_P, DT_S = 0x80, 0x40, 0x20


@dataclass(frozen=True)
class DataTerminalInfo:
    """NATFW_DTINFO: I|P|S|resv (8) | sender prefix (8) | protocol (8) | DS-field (6) |
    resv (2), then receiver (destination) port | sender (source) port if P, IPsec SPI
    if I, the data sender's address if S (4 bytes IPv4 as in RFC 5973, or 16 bytes IPv6
    in this testbed). P and I together are refused (ports and an SPI exclude each other).
    The field order within the ports word and the DS-field are unconfirmed (README)."""
    TYPE: ClassVar[int] = T_DTINFO
    protocol: int
    sender_prefix: int = 128
    sender_port: int | None = None
    receiver_port: int | None = None
    spi: int | None = None
    sender: str | None = None
    ds_field: int = 0

    def __post_init__(self):
        _u(self.protocol, 8, "protocol")
        _u(self.sender_prefix, 8, "sender prefix")
        _u(self.ds_field, 6, "DS-field")
        if self.spi is not None and self.sender_port is not None:
            raise ValueError("DTINFO carries ports or an SPI, not both")
        if (self.sender_port is None) != (self.receiver_port is None):
            raise ValueError("sender and receiver ports go together")
        if self.sender_port is not None:
            _u(self.sender_port, 16, "port")
            _u(self.receiver_port, 16, "port")
        if self.spi is not None:
            _u(self.spi, 32, "SPI")
        if self.sender is not None:
            addr = ipaddress.ip_address(self.sender)
            if self.sender_prefix > addr.max_prefixlen:
                raise ValueError("sender prefix longer than the address")
            _set(self, "sender", str(addr))

    def body(self) -> bytes:
        flags = (DT_P if self.sender_port is not None else 0) | \
            (DT_I if self.spi is not None else 0) | (DT_S if self.sender is not None else 0)
        out = struct.pack("!BBBB", flags, self.sender_prefix, self.protocol, self.ds_field << 2)
        if self.sender_port is not None:
            out += struct.pack("!HH", self.receiver_port, self.sender_port)
        if self.spi is not None:
            out += struct.pack("!I", self.spi)
        if self.sender is not None:
            out += ipaddress.ip_address(self.sender).packed
        return out

    @classmethod
    def parse(cls, r: Reader):
        flags, plen, proto, ds = r.u8(), r.u8(), r.u8(), r.u8()
        if flags & 0x1F or ds & 0x03:
            _fail("reserved bits set in DTINFO", ERR_UNKNOWN_FIELD_VALUE, T_DTINFO)
        if flags & DT_P and flags & DT_I:
            _fail("DTINFO with ports and an SPI", ERR_INVALID_FLAG_COMBINATION, T_DTINFO)
        sp = rp = spi = sender = None
        if flags & DT_P:
            rp, sp = r.u16(), r.u16()
        if flags & DT_I:
            spi = r.u32()
        if flags & DT_S:
            if r.remaining not in (4, 16):
                _fail(f"DTINFO sender address of {r.remaining} bytes", object_type=T_DTINFO)
            raw = r.rest()
            sender = str(ipaddress.ip_address(raw))
            if plen > len(raw) * 8:
                _fail("DTINFO sender prefix too long", ERR_UNKNOWN_FIELD_VALUE, T_DTINFO)
        return cls(proto, plen, sp, rp, spi, sender, ds >> 2)


@dataclass(frozen=True)
class IcmpTypes:
    """NATFW_ICMP_TYPES: count (8) then one byte per ICMP type, zero-padded."""
    TYPE: ClassVar[int] = T_ICMP_TYPES
    types: tuple[int, ...]

    def __post_init__(self):
        _set(self, "types", tuple(self.types))
        if len(self.types) > 255:
            raise ValueError("at most 255 ICMP types")
        for t in self.types:
            _u(t, 8, "ICMP type")

    def body(self) -> bytes:
        raw = bytes([len(self.types), *self.types])
        return raw + b"\0" * pad_len(len(raw))

    @classmethod
    def parse(cls, r: Reader):
        n = r.u8()
        types = tuple(r.take(n, "ICMP types"))
        pad = r.rest()
        if len(pad) != pad_len(1 + n) or any(pad):
            _fail("ICMP types padding", object_type=T_ICMP_TYPES)
        return cls(types)


@dataclass(frozen=True)
class SessionAuth:
    """SESSION_AUTH_OBJECT (RFC 5981): the attribute list, kept as bytes here, and the
    object's A/B bits, kept because a token's HMAC covers its header (RFC 5981 section
    4.4's example sets A/B = 10, forward); mip6bench.aaa.token parses and verifies it."""
    TYPE: ClassVar[int] = T_SESSION_AUTH
    attributes: bytes
    ab: int = AB_FORWARD

    def __post_init__(self):
        _set(self, "attributes", bytes(self.attributes))
        if len(self.attributes) % 4:
            raise ValueError("SESSION_AUTH attributes are a multiple of 4 bytes")
        if self.ab not in (0, 1, 2):
            raise ValueError("A/B is 00, 01 or 10")

    def body(self) -> bytes:
        return self.attributes

    @classmethod
    def parse(cls, r: Reader):
        return cls(r.rest())


# Mobile IPv6 flow extension (this testbed; private object type 0x7D0)
MIP6_MH, MIP6_HAO, MIP6_RH2, MIP6_TUNNEL = 1, 2, 3, 4
MIP6_KINDS = (MIP6_MH, MIP6_HAO, MIP6_RH2, MIP6_TUNNEL)
# kinds whose data runs toward the mobile node (its CoA is the flow's destination)
MIP6_INBOUND = (MIP6_RH2, MIP6_TUNNEL)
MH_TYPES = {1: "HoTI", 2: "CoTI", 5: "BU", 6: "BA", 3: "HoT", 4: "CoT", 0: "BRR", 7: "BE"}


@dataclass(frozen=True)
class Mip6Flow:
    """What GIST's MRI (addresses, protocol, ports) cannot say about a Mobile IPv6 flow:
    kind (8: 1 Mobility Header, 2 data with a Home Address option, 3 data with a type 2
    routing header, 4 the IPv6-in-IPv6 tunnel (RFC 2473, next header 41) between the HA
    and a care-of address carrying the home address's packets: the MN's reverse tunnel
    (inner source the HoA) or the HA's tunnel to the CoA (inner destination the HoA)) |
    MH type (8:
    for kind 1, RFC 6275 numbers; else 0) | reserved (16), then the home address (16
    bytes) for kinds 2, 3 and 4 and optionally for kind 1."""
    TYPE: ClassVar[int] = T_MIP6_FLOW
    kind: int
    mh_type: int = 0
    home_address: str | None = None

    def __post_init__(self):
        if self.kind not in MIP6_KINDS:
            raise ValueError("kind is 1 (MH), 2 (HAO), 3 (RH2) or 4 (tunnel)")
        _u(self.mh_type, 8, "MH type")
        if self.kind != MIP6_MH and self.mh_type:
            raise ValueError("MH type only for Mobility Header flows")
        if self.kind != MIP6_MH and self.home_address is None:
            raise ValueError("HAO, RH2 and tunnel flows name the home address")
        if self.home_address is not None:
            _set(self, "home_address", str(ipaddress.IPv6Address(self.home_address)))

    def body(self) -> bytes:
        out = struct.pack("!BBH", self.kind, self.mh_type, 0)
        if self.home_address is not None:
            out += ipaddress.IPv6Address(self.home_address).packed
        return out

    @classmethod
    def parse(cls, r: Reader):
        kind, mh, resv = r.u8(), r.u8(), r.u16()
        if resv:
            _fail("reserved bits set in MIP6 flow", ERR_UNKNOWN_FIELD_VALUE, T_MIP6_FLOW)
        if kind not in MIP6_KINDS or (kind != MIP6_MH and mh):
            _fail(f"MIP6 flow kind {kind} / MH type {mh}", ERR_UNKNOWN_FIELD_VALUE,
                  T_MIP6_FLOW)
        if r.remaining not in (0, 16) or (kind != MIP6_MH and r.remaining != 16):
            _fail("MIP6 flow home address length", object_type=T_MIP6_FLOW)
        hoa = str(ipaddress.IPv6Address(r.rest())) if r.remaining else None
        return cls(kind, mh, hoa)


@dataclass(frozen=True)
class UnknownObject:
    """An object type this codec does not know, kept with its A/B bits."""
    type: int
    ab: int
    data: bytes

    def body(self) -> bytes:
        return self.data


# type -> (parser, exact body length or None, the AB bits we send)
_FIXED = {T_LT: 4, T_EFI: 4, T_MSN: 4, T_NONCE: 4, T_INFO: 4, T_EXTERNAL_IP: 8,
          T_EXTERNAL_BINDING: 8}
_PARSERS = {T_LT: Lifetime.parse, T_EFI: ExtFlowInfo.parse, T_MSN: Msn.parse,
            T_NONCE: Nonce.parse, T_INFO: InfoCode.parse,
            T_EXTERNAL_IP: ExternalAddress.parse,
            T_EXTERNAL_BINDING: lambda r: ExternalAddress.parse(r, True),
            T_DTINFO: DataTerminalInfo.parse, T_ICMP_TYPES: IcmpTypes.parse,
            T_SESSION_AUTH: SessionAuth.parse, T_MIP6_FLOW: Mip6Flow.parse}

Object = (Lifetime | ExtFlowInfo | Msn | Nonce | InfoCode | ExternalAddress
          | DataTerminalInfo | IcmpTypes | SessionAuth | Mip6Flow | UnknownObject)


def object_type(obj) -> int:
    return obj.type if isinstance(obj, (UnknownObject, ExternalAddress)) else obj.TYPE


def encode_object(obj) -> bytes:
    body = obj.body()
    if len(body) % 4:
        raise ValueError("object body is not a multiple of 4 bytes")
    words = len(body) // 4
    if words > 0xFFF:
        raise ValueError("object too long")
    ab = obj.ab if isinstance(obj, (UnknownObject, SessionAuth)) else AB_MANDATORY
    return struct.pack("!HH", (ab << 14) | object_type(obj), words) + body


_unpack_object_header = struct.Struct("!HH").unpack_from
# Decoded objects by their bytes (header included: a SESSION_AUTH keeps its A/B bits).
# Decoding is a function of the bytes and the objects are frozen, so the lifetime, flow
# information, MIPv6 flow and token an NI repeats in every CREATE of a session (its
# retransmissions and refreshes) are decoded once. Not the MSN and nonce, new in each
# message. Only objects that decoded are kept; at most OBJECT_CACHE, the oldest dropped
# first.
OBJECT_CACHE = 8192
_objects_seen: dict[bytes, object] = {}
_UNCACHED = frozenset({T_MSN, T_NONCE})


def decode_object(r: Reader):
    if r.remaining < 4:
        r.take(4, "object header")          # the truncation error
    first, second = _unpack_object_header(r.data, r.pos)
    ab, otype = first >> 14, first & 0x0FFF
    if first & 0x3000 or second & 0xF000:
        _fail("reserved bits set in object header", ERR_UNKNOWN_FIELD_VALUE, otype)
    if ab == 3:
        _fail(f"reserved A/B value on object {otype:#x}", ERR_UNKNOWN_FIELD_VALUE, otype)
    n = (second & 0x0FFF) * 4
    if n > r.remaining - 4:
        _fail(f"object {otype:#x} of {n} bytes, {r.remaining - 4} left", ERR_WRONG_MESSAGE_LENGTH,
              otype)
    start = r.pos
    r.pos += 4 + n
    cacheable = otype not in _UNCACHED
    if cacheable:
        whole = r.data[start:r.pos]
        obj = _objects_seen.get(whole)
        if obj is not None:
            return obj
    body = Reader(r.data, start + 4, r.pos)
    parser = _PARSERS.get(otype)
    if parser is None:
        return UnknownObject(otype, ab, body.rest())
    fixed = _FIXED.get(otype)
    if fixed is not None and n != fixed:
        _fail(f"object {otype:#x} of {n} bytes, expected {fixed}", ERR_WRONG_OBJECT_LENGTH,
              otype)
    try:
        obj = parser(body)
        body.expect_end(f"object {otype:#x}")
        if otype == T_SESSION_AUTH:
            obj = SessionAuth(obj.attributes, ab)
    except NslpDecodeError:
        raise
    except DecodeError as err:
        _fail(f"object {otype:#x}: {err.reason}", ERR_WRONG_OBJECT_LENGTH, otype)
    except ValueError as err:
        _fail(f"object {otype:#x}: {err}", ERR_UNKNOWN_FIELD_VALUE, otype)
    if cacheable:
        if len(_objects_seen) >= OBJECT_CACHE:
            del _objects_seen[next(iter(_objects_seen))]
        _objects_seen[whole] = obj
    return obj


# ---------------------------------------------------------------- messages

# which object types each message must / may carry (RFC 5973 sections 4.3.x)
MANDATORY = {CREATE: {T_LT, T_EFI, T_MSN}, EXT: {T_LT, T_EFI, T_MSN, T_DTINFO},
             RESPONSE: {T_INFO, T_MSN}, NOTIFY: {T_INFO}}
OPTIONAL = {CREATE: {T_NONCE, T_ICMP_TYPES, T_SESSION_AUTH, T_MIP6_FLOW},
            EXT: {T_NONCE, T_ICMP_TYPES, T_SESSION_AUTH, T_MIP6_FLOW},
            RESPONSE: {T_LT, T_NONCE, T_EXTERNAL_IP, T_EXTERNAL_BINDING, T_SESSION_AUTH},
            NOTIFY: {T_SESSION_AUTH}}
ALLOWED = {t: frozenset(MANDATORY[t] | OPTIONAL[t]) for t in MANDATORY}


@dataclass(frozen=True)
class NslpMessage:
    msg_type: int
    objects: tuple = ()
    proxy: bool = False
    # The bytes it was decoded from when they are its encoding (decode() sets it unless
    # it dropped an object): a node forwarding it unchanged sends them as they came.
    raw: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self):
        _set(self, "objects", tuple(self.objects))
        if self.msg_type not in MSG_NAMES:
            raise ValueError(f"unknown NATFW message type {self.msg_type}")

    @property
    def name(self) -> str:
        return MSG_NAMES[self.msg_type]

    def get(self, cls):
        """The object of class `cls`, or None."""
        for obj in self.objects:
            if type(obj) is cls:
                return obj
        return None

    @property
    def msn(self) -> int | None:
        o = self.get(Msn)
        return o.value if o else None

    @property
    def lifetime(self) -> int | None:
        o = self.get(Lifetime)
        return o.seconds if o else None

    @property
    def info(self) -> InfoCode | None:
        return self.get(InfoCode)

    def encode(self) -> bytes:
        out = struct.pack("!BBH", self.msg_type, FLAG_PROXY if self.proxy else 0, 0) + \
            b"".join(encode_object(o) for o in self.objects)
        if len(out) > MAX_MESSAGE:
            raise ValueError("NATFW message too long")
        return out


def create(lifetime: int, msn: int, action: int = ACTION_ALLOW, *extra,
           sub_ports: int = 0) -> NslpMessage:
    return NslpMessage(CREATE, (Lifetime(lifetime), ExtFlowInfo(action, sub_ports), Msn(msn),
                                *extra))


def response(msn: int, info: InfoCode, lifetime: int | None = None, *extra) -> NslpMessage:
    objs = [info, Msn(msn)] + ([Lifetime(lifetime)] if lifetime is not None else [])
    return NslpMessage(RESPONSE, (*objs, *extra))


def notify(info: InfoCode) -> NslpMessage:
    return NslpMessage(NOTIFY, (info,))


def decode(data: bytes) -> NslpMessage:
    """Decode and validate one NATFW message; NslpDecodeError on anything malformed."""
    data = bytes(data)
    if len(data) < 4:
        _fail(f"message of {len(data)} bytes", ERR_WRONG_MESSAGE_LENGTH)
    if len(data) % 4:
        _fail(f"message length {len(data)} not a multiple of 4", ERR_WRONG_MESSAGE_LENGTH)
    r = Reader(data)
    mtype, flags, resv = r.u8(), r.u8(), r.u16()
    if mtype not in MSG_NAMES:
        _fail(f"message type {mtype:#x}", ERR_ILLEGAL_MESSAGE_TYPE)
    if flags & ~FLAG_PROXY or resv:
        _fail("reserved header bits set", ERR_BAD_FLAGS)
    objects, seen = [], set()
    dropped = False
    while r.remaining:
        obj = decode_object(r)
        t = object_type(obj)
        if isinstance(obj, UnknownObject):
            if obj.ab == AB_MANDATORY:
                _fail(f"unknown mandatory object {t:#x}", ERR_UNKNOWN_OBJECT, t)
            if obj.ab == AB_IGNORE:
                dropped = True
                continue
            objects.append(obj)
            continue
        if t in seen:
            _fail(f"duplicate object {t:#x}", ERR_DUPLICATE_OBJECT, t)
        if t not in ALLOWED[mtype]:
            _fail(f"object {t:#x} not allowed in {MSG_NAMES[mtype]}", ERR_ILLEGAL_OBJECT, t)
        seen.add(t)
        objects.append(obj)
    missing = MANDATORY[mtype] - seen
    if missing:
        t = min(missing)
        _fail(f"{MSG_NAMES[mtype]} without object {t:#x}", ERR_MANDATORY_OBJECT_MISSING, t)
    return NslpMessage(mtype, tuple(objects), bool(flags & FLAG_PROXY),
                       b"" if dropped else data)


def msn_offset(data: bytes) -> int | None:
    """Where the value of the MSN object starts in `data`, a message that decode()
    took (None: it has no MSN object)."""
    pos = 4
    while pos + 4 <= len(data):
        first, second = _unpack_object_header(data, pos)
        if first == T_MSN:                  # A/B 00, the reserved bits clear
            return pos + 4
        pos += 4 + (second & 0x0FFF) * 4
    return None


def with_other_msn(known: bytes, msg: NslpMessage, offset: int,
                   data: bytes) -> NslpMessage | None:
    """decode(data), when `data` is `known` (which decoded to `msg`, its MSN value at
    `offset`, see msn_offset) with only the MSN's value changed: a retransmission or a
    refresh of the same request (RFC 5973: each carries the next MSN). Decoding depends
    on the bytes alone and every 32-bit MSN is valid, so the result is `msg` with the
    new MSN, byte for byte what a decode gives. None if any other byte differs (then
    decode it)."""
    if len(data) != len(known) or data[offset + 4:] != known[offset + 4:] \
            or data[:offset] != known[:offset]:
        return None
    msn = Msn(int.from_bytes(data[offset:offset + 4], "big"))
    return NslpMessage(msg.msg_type, tuple(msn if type(o) is Msn else o for o in msg.objects),
                       msg.proxy, data if msg.raw else b"")


def serial_newer(a: int, b: int) -> bool:
    """RFC 1982 serial number arithmetic on 32 bits: is `a` newer than `b`?"""
    d = (a - b) & 0xFFFFFFFF
    return 0 < d < 0x80000000
