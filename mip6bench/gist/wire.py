"""GIST wire codec (RFC 5971 section 5 and Appendix A): bytes <-> frozen dataclasses.

    decode_message(data, *, q_mode=None) -> Message   strict; raises codec.DecodeError(reason)
    Message(...).encode() -> bytes                    magic number first when msg.q_mode

Common header (A.1), 8 bytes, preceded in Q-mode by the 32-bit magic number 0x4e04bda5
(section 5.3.2)::

    version(8) = 1 | GIST hops(8) | message length(16, 32-bit words after this header)
    NSLPID(16) | C(1) | type(7) | S(1) R(1) E(1) | reserved(5)

C is set exactly on Q-mode encapsulated messages (a Query always, a Data sometimes); R
is set on every Query, on a Response that carries a Responder-Cookie, never on Confirm,
Data or Error (it MAY be set on other Responses and MA-Hellos); E only on a Data.

Object (A.2)::

    A(1) B(1) r(2) type(12) | r(4) length(12, 32-bit words of value)

A/B are the extensibility flags: 00 mandatory (an unknown one makes the message
undecodable), 01 ignore, 10 forward (both kept in `Message.extensions`), 11 invalid.
RFC 5971's object header has no further flag (the other header bits are reserved).

Objects (type numbers from section 9 / A.3): 0 MRI, 1 Session-ID, 2 NLI, 3 Stack-Proposal,
4 Stack-Configuration-Data, 5 Query-Cookie, 6 Responder-Cookie, 7 NAT-Traversal (kept as
opaque bytes: NAT traversal is not implemented), 8 NSLP-Data, 9 Error, 10 Hello-ID.

Messages and the order of their objects (section 5.1; [x] optional)::

    Query    = [NAT] MRI SID NLI Query-Cookie [Stack-Proposal Stack-Config-Data] [NSLP-Data]
    Response = [NAT] MRI SID NLI Query-Cookie
               [Responder-Cookie [Stack-Proposal [Stack-Config-Data]]] [NSLP-Data]
    Confirm  = MRI SID NLI [Responder-Cookie [Stack-Proposal [Stack-Config-Data]]] [NSLP-Data]
    Data     = [NAT] MRI SID [NLI] NSLP-Data
    Error    = [NAT] [NLI] Error
    MA-Hello = Hello-ID

C-mode (section 5.4): on a messaging association (TCP) messages are sent one after the
other without the magic number; the common header's length field frames them
(c_mode_frame_length checks a header read from the stream).

Strictness (the testbed's rule for every codec): RFC 5971 says reserved bits are sent as
zero and ignored on receipt; this decoder rejects non-zero reserved bits and padding, and
every length that does not add up, so only canonical encodings decode (`encode(decode(x))
== x`). Every failure is a DecodeError with a short reason. Values that cannot be encoded
raise ValueError at construction or encoding.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .. import ipaddr
from ..codec import DecodeError, Reader, pad_len

GIST_PORT = 270                 # UDP/TCP port for Q-mode (IANA, RFC 5971 section 9)
MAGIC = 0x4E04BDA5              # Q-mode magic number (section 5.3.2)
MAGIC_BYTES = struct.pack("!I", MAGIC)
VERSION = 1
HEADER_LEN = 8
OBJECT_HEADER_LEN = 4
MAX_OBJECT_WORDS = 0xFFF        # 12-bit object length
MAX_MESSAGE_WORDS = 0xFFFF      # 16-bit message length
DEFAULT_GIST_HOPS = 16          # local choice of the initial GIST hop count

# Message types (A.1, section 9)
QUERY, RESPONSE, CONFIRM, DATA, ERROR, MA_HELLO = 0, 1, 2, 3, 4, 5
MESSAGE_NAMES = {QUERY: "Query", RESPONSE: "Response", CONFIRM: "Confirm", DATA: "Data",
                 ERROR: "Error", MA_HELLO: "MA-Hello"}

# Header flags (A.1): C is the top bit of the type byte, S/R/E the top bits of the next.
FLAG_C = 0x80
FLAG_S, FLAG_R, FLAG_E = 0x80, 0x40, 0x20

# Object types (A.3, section 9)
OBJ_MRI = 0
OBJ_SESSION_ID = 1
OBJ_NLI = 2
OBJ_STACK_PROPOSAL = 3
OBJ_STACK_CONFIG = 4
OBJ_QUERY_COOKIE = 5
OBJ_RESPONDER_COOKIE = 6
OBJ_NAT_TRAVERSAL = 7
OBJ_NSLP_DATA = 8
OBJ_ERROR = 9
OBJ_HELLO_ID = 10
OBJECT_NAMES = {OBJ_MRI: "MRI", OBJ_SESSION_ID: "Session-ID", OBJ_NLI: "NLI",
                OBJ_STACK_PROPOSAL: "Stack-Proposal", OBJ_STACK_CONFIG: "Stack-Configuration-Data",
                OBJ_QUERY_COOKIE: "Query-Cookie", OBJ_RESPONDER_COOKIE: "Responder-Cookie",
                OBJ_NAT_TRAVERSAL: "NAT-Traversal", OBJ_NSLP_DATA: "NSLP-Data",
                OBJ_ERROR: "Error", OBJ_HELLO_ID: "Hello-ID"}

# Extensibility flags (A.2.1)
AB_MANDATORY, AB_IGNORE, AB_FORWARD, AB_INVALID = 0, 1, 2, 3

# Message routing methods (section 9): 0 path-coupled
MRM_PATH_COUPLED = 0
# Path-coupled MRI flags (A.3.1.1), in the 16-bit word after MRM-ID/N/reserved
_MRI_P, _MRI_T, _MRI_F, _MRI_S, _MRI_A, _MRI_B, _MRI_D = (0x0800, 0x0400, 0x0200, 0x0100,
                                                          0x0080, 0x0040, 0x0020)
_MRI_N = 0x80                   # in the byte after MRM-ID

# MA-Protocol-IDs (section 9): 1 Forwards-TCP, 2 TLS
MA_PROTOCOL_TCP, MA_PROTOCOL_TLS = 1, 2
FORWARDS_TCP_OPTION_LEN = 2     # Forwards-TCP options data: the 16-bit listening port

# Error classes and codes (A.4.3, A.4.4)
ERROR_CLASS_INFORMATIONAL, ERROR_CLASS_SUCCESS, ERROR_CLASS_PROTOCOL, \
    ERROR_CLASS_TRANSIENT, ERROR_CLASS_PERMANENT = 0, 1, 2, 3, 4
ERR_COMMON_HEADER_PARSE = 1
ERR_HOP_LIMIT_EXCEEDED = 2
ERR_INCORRECT_ENCAPSULATION = 3
ERR_INCORRECTLY_DELIVERED = 4
ERR_NO_ROUTING_STATE = 5
ERR_UNKNOWN_NSLPID = 6
ERR_ENDPOINT_FOUND = 7
ERR_MESSAGE_TOO_LARGE = 8
ERR_OBJECT_TYPE = 9
ERR_OBJECT_VALUE = 10
ERR_INVALID_IP_TTL = 11
ERR_MRI_VALIDATION_FAILURE = 12
# Error object flags (A.4.1)
_ERR_S, _ERR_M, _ERR_C, _ERR_D, _ERR_Q = 0x8000, 0x4000, 0x2000, 0x1000, 0x0800
# Additional information types (A.4.2)
AI_MESSAGE_LENGTH, AI_MTU, AI_OBJECT_TYPE, AI_OBJECT_VALUE = 1, 2, 3, 4

SESSION_ID_LEN = 16


def _fail(reason: str, decoding: bool):
    if decoding:
        raise DecodeError(reason)
    raise ValueError(reason)


_ip = ipaddr.ip  # memoised: the same few addresses in every message
_norm_addr = ipaddr.text


def _words_value(value: bytes, what: str, decoding: bool, allow_empty: bool = False) -> None:
    if len(value) % 4:
        _fail(f"{what} of {len(value)} bytes is not a multiple of 4", decoding)
    if not value and not allow_empty:
        _fail(f"empty {what}", decoding)


# ---------------------------------------------------------------- objects
@dataclass(frozen=True)
class Mri:
    """Path-coupled Message Routing Information (MRM 0, A.3.1.1) for an IPv4/IPv6 flow.

    Optional flow fields are None when absent (their flag clear). `upstream` is the D
    flag (the message travels against the flow), `nat` the N flag. `ds_field` is the
    6-bit DS field (traffic class without ECN); `flow_label` exists for IPv6 only.
    """

    src: str
    dst: str
    src_prefix: int | None = None     # None: full length (32 or 128)
    dst_prefix: int | None = None
    protocol: int | None = None
    ds_field: int | None = None
    flow_label: int | None = None
    spi: int | None = None
    src_port: int | None = None
    dst_port: int | None = None
    upstream: bool = False
    nat: bool = False

    def __post_init__(self):
        try:
            src, dst = _ip(self.src), _ip(self.dst)
        except ValueError as exc:
            raise ValueError(f"MRI address: {exc}") from None
        if src.version != dst.version:
            raise ValueError("MRI source and destination of different IP versions")
        bits = src.max_prefixlen
        object.__setattr__(self, "src", ipaddr.text(self.src))
        object.__setattr__(self, "dst", ipaddr.text(self.dst))
        if self.src_prefix is None:
            object.__setattr__(self, "src_prefix", bits)
        if self.dst_prefix is None:
            object.__setattr__(self, "dst_prefix", bits)
        _check_mri_fields(self, bits)

    @property
    def ip_version(self) -> int:
        return _ip(self.src).version

    def inverted(self) -> "Mri":
        """The same flow, with the direction flag flipped."""
        return self._with_upstream(not self.upstream)

    def downstream(self) -> "Mri":
        return self._with_upstream(False) if self.upstream else self

    def _with_upstream(self, upstream: bool) -> "Mri":
        # A copy with only the D flag changed: every other field was checked and
        # normalised when this one was made, so the copy skips __post_init__ (the GIST
        # core inverts an MRI for every message it sends or matches: dataclasses.replace
        # re-parsed both addresses each time, ~7 % of the firewall's time under load).
        new = object.__new__(Mri)
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("_value", None)        # the copy's encoding differs (D flag)
        object.__setattr__(new, "upstream", bool(upstream))
        return new

    def encode_value(self) -> bytes:
        # Encoded once per object (it is frozen): the GIST core encodes the same MRI
        # for every message of a session, its cookie included.
        value = self.__dict__.get("_value")
        if value is None:
            value = self._encode_value()
            object.__setattr__(self, "_value", value)
        return value

    def _encode_value(self) -> bytes:
        flags = self.ip_version << 12
        flags |= _MRI_P if self.protocol is not None else 0
        flags |= _MRI_T if self.ds_field is not None else 0
        flags |= _MRI_F if self.flow_label is not None else 0
        flags |= _MRI_S if self.spi is not None else 0
        flags |= _MRI_A if self.src_port is not None else 0
        flags |= _MRI_B if self.dst_port is not None else 0
        flags |= _MRI_D if self.upstream else 0
        out = struct.pack("!BBH", MRM_PATH_COUPLED, _MRI_N if self.nat else 0, flags)
        out += _ip(self.src).packed + _ip(self.dst).packed
        out += struct.pack("!BBBB", self.src_prefix, self.dst_prefix, self.protocol or 0,
                           (self.ds_field or 0) << 2)
        if self.flow_label is not None:
            out += struct.pack("!I", self.flow_label)
        if self.spi is not None:
            out += struct.pack("!I", self.spi)
        if self.src_port is not None or self.dst_port is not None:
            out += struct.pack("!HH", self.src_port or 0, self.dst_port or 0)
        return out

    @classmethod
    def decode_value(cls, r: Reader) -> "Mri":
        mrm = r.u8("MRM-ID")
        if mrm != MRM_PATH_COUPLED:
            raise DecodeError(f"unsupported message routing method {mrm}")
        nbyte = r.u8("MRI flags")
        if nbyte & ~_MRI_N:
            raise DecodeError("reserved MRI bits set")
        flags = r.u16("MRI flags")
        version = flags >> 12
        if flags & 0x001F:
            raise DecodeError("reserved path-coupled MRI bits set")
        if version not in (4, 6):
            raise DecodeError(f"MRI IP version {version}")
        alen = 4 if version == 4 else 16
        to_text = ipaddr.text if version == 4 else ipaddr.text6
        src = to_text(r.take(alen, "MRI source address"))
        dst = to_text(r.take(alen, "MRI destination address"))
        sp, dp, proto, ds = struct.unpack("!BBBB", r.take(4, "MRI prefixes"))
        if ds & 0x03:
            raise DecodeError("reserved bits after the DS field set")
        values = dict(src=src, dst=dst, src_prefix=sp, dst_prefix=dp,
                      upstream=bool(flags & _MRI_D), nat=bool(nbyte & _MRI_N))
        if flags & _MRI_P:
            values["protocol"] = proto
        elif proto:
            raise DecodeError("protocol field set without the P flag")
        if flags & _MRI_T:
            values["ds_field"] = ds >> 2
        elif ds:
            raise DecodeError("DS field set without the T flag")
        if flags & _MRI_F:
            if version == 4:
                raise DecodeError("flow label flag in an IPv4 MRI")
            word = r.u32("flow label")
            if word >> 20:
                raise DecodeError("reserved bits before the flow label set")
            values["flow_label"] = word
        if flags & _MRI_S:
            values["spi"] = r.u32("SPI")
        if flags & (_MRI_A | _MRI_B):
            sport, dport = r.u16("source port"), r.u16("destination port")
            if flags & _MRI_A:
                values["src_port"] = sport
            elif sport:
                raise DecodeError("source port set without the A flag")
            if flags & _MRI_B:
                values["dst_port"] = dport
            elif dport:
                raise DecodeError("destination port set without the B flag")
        # The addresses are the canonical text of their bytes and of one version, so
        # what __post_init__ would parse again is known: only the field checks remain.
        mri = object.__new__(cls)
        mri.__dict__.update(_MRI_ABSENT)
        mri.__dict__.update(values)
        try:
            _check_mri_fields(mri, alen * 8)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
        return mri


_MRI_ABSENT = dict(protocol=None, ds_field=None, flow_label=None, spi=None, src_port=None,
                   dst_port=None)


def _check_mri_fields(m: Mri, bits: int) -> None:
    """ValueError for a flow description RFC 5971 A.3.1.1 does not allow (decode_value
    turns it into a DecodeError)."""
    if not 0 <= m.src_prefix <= bits or not 0 <= m.dst_prefix <= bits:
        raise ValueError(f"MRI prefix length beyond {bits}")
    if m.protocol is not None and not 0 <= m.protocol <= 255:
        raise ValueError("MRI protocol out of range")
    if m.ds_field is not None and not 0 <= m.ds_field < 64:
        raise ValueError("MRI DS field out of range")
    if m.flow_label is not None and (bits == 32 or not 0 <= m.flow_label < 1 << 20):
        raise ValueError("MRI flow label invalid (IPv6 only, 20 bits)")
    if m.spi is not None and not 0 <= m.spi < 1 << 32:
        raise ValueError("MRI SPI out of range")
    for port in (m.src_port, m.dst_port):
        if port is not None and not 0 <= port <= 0xFFFF:
            raise ValueError("MRI port out of range")
    ports = m.src_port is not None or m.dst_port is not None
    if (m.spi is not None or ports) and m.protocol is None:
        raise ValueError("MRI SPI or ports without the protocol (P flag)")
    if m.spi is not None and ports:
        raise ValueError("MRI with both SPI and ports")


@dataclass(frozen=True)
class Nli:
    """Network-Layer-Information (A.3.3)."""

    peer_identity: bytes
    ip_ttl: int
    rs_validity_ms: int           # routing state validity time, milliseconds
    interface_address: str

    def __post_init__(self):
        if not 1 <= len(self.peer_identity) <= 255:
            raise ValueError("NLI peer identity must be 1..255 bytes")
        if not 0 <= self.ip_ttl <= 255:
            raise ValueError("NLI IP-TTL out of range")
        if not 0 <= self.rs_validity_ms < 1 << 32:
            raise ValueError("NLI RS validity time out of range")
        object.__setattr__(self, "interface_address", _norm_addr(self.interface_address))

    def encode_value(self) -> bytes:
        value = self.__dict__.get("_value")     # once per (frozen) object, as Mri's
        if value is None:
            value = self._encode_value()
            object.__setattr__(self, "_value", value)
        return value

    def _encode_value(self) -> bytes:
        addr = _ip(self.interface_address)
        pi = self.peer_identity
        return (struct.pack("!BBHI", len(pi), self.ip_ttl, addr.version << 12,
                            self.rs_validity_ms)
                + pi + b"\0" * pad_len(len(pi)) + addr.packed)

    @classmethod
    def decode_value(cls, r: Reader) -> "Nli":
        pi_len, ttl, word, validity = struct.unpack("!BBHI", r.take(8, "NLI header"))
        version = word >> 12
        if word & 0x0FFF:
            raise DecodeError("reserved NLI bits set")
        if version not in (4, 6):
            raise DecodeError(f"NLI IP version {version}")
        if pi_len == 0:
            raise DecodeError("NLI with an empty peer identity")
        pi = r.take(pi_len, "NLI peer identity")
        if any(r.take(pad_len(pi_len), "NLI peer identity padding")):
            raise DecodeError("non-zero NLI peer identity padding")
        addr = (ipaddr.text(r.take(4, "NLI interface address")) if version == 4
                else ipaddr.text6(r.take(16, "NLI interface address")))
        # every field is in range by its width (the identity's length checked above) and
        # the address is canonical text: nothing for __post_init__ to check or normalise
        nli = object.__new__(cls)
        nli.__dict__.update(peer_identity=pi, ip_ttl=ttl, rs_validity_ms=validity,
                            interface_address=addr)
        return nli


@dataclass(frozen=True)
class StackProposal:
    """Stack-Proposal (A.3.4): profiles, each a tuple of MA-Protocol-IDs."""

    profiles: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if not 1 <= len(self.profiles) <= 255:
            raise ValueError("Stack-Proposal needs 1..255 profiles")
        for prof in self.profiles:
            if not 1 <= len(prof) <= 255 or not all(0 < p <= 255 for p in prof):
                raise ValueError("Stack-Proposal profile must list 1..255 protocol ids 1..255")

    def encode_value(self) -> bytes:
        out = struct.pack("!B3x", len(self.profiles))
        for prof in self.profiles:
            body = bytes([len(prof)]) + bytes(prof)
            out += body + b"\0" * pad_len(len(body))
        return out

    @classmethod
    def decode_value(cls, r: Reader) -> "StackProposal":
        count = r.u8("Prof-Count")
        if any(r.take(3, "Stack-Proposal reserved")):
            raise DecodeError("reserved Stack-Proposal bits set")
        if count == 0:
            raise DecodeError("empty Stack-Proposal")
        profiles = []
        for _ in range(count):
            n = r.u8("Prot-Count")
            if n == 0:
                raise DecodeError("empty Stack-Proposal profile")
            prots = tuple(r.take(n, "Stack-Proposal profile"))
            if 0 in prots:
                raise DecodeError("MA-Protocol-ID 0 in a profile")
            if any(r.take(pad_len(1 + n), "profile padding")):
                raise DecodeError("non-zero Stack-Proposal profile padding")
            profiles.append(prots)
        return cls(tuple(profiles))


@dataclass(frozen=True)
class MaProtocolOption:
    """One MA-protocol-options entry of Stack-Configuration-Data (A.3.5)."""

    protocol_id: int
    profile: int
    data: bytes = b""
    do_not_use: bool = False      # D flag

    def __post_init__(self):
        if not 0 <= self.protocol_id <= 255 or not 0 <= self.profile <= 255:
            raise ValueError("MA-protocol-options id/profile out of range")
        if len(self.data) > 255:
            raise ValueError("MA-protocol-options data longer than 255 bytes")


@dataclass(frozen=True)
class StackConfigData:
    """Stack-Configuration-Data (A.3.5).

    The Length of each MA-protocol-options entry is taken as the byte length of its
    options data, which is then zero-padded to 32 bits (as NSIS-ka encodes it).
    `ma_hold_time_ms`: how long the sender keeps an MA open with no traffic and no
    MA-Hello (milliseconds). For Forwards-TCP the options data is empty in a Query and
    the 16-bit listening port in a Response (forwards_tcp_option/forwards_tcp_port).
    """

    ma_hold_time_ms: int
    options: tuple[MaProtocolOption, ...] = ()

    def __post_init__(self):
        if not 0 <= self.ma_hold_time_ms < 1 << 32 or len(self.options) > 255:
            raise ValueError("Stack-Configuration-Data out of range")

    def encode_value(self) -> bytes:
        out = struct.pack("!B3xI", len(self.options), self.ma_hold_time_ms)
        for opt in self.options:
            out += struct.pack("!BBBB", opt.protocol_id, opt.profile, len(opt.data),
                               0x80 if opt.do_not_use else 0)
            out += opt.data + b"\0" * pad_len(len(opt.data))
        return out

    @classmethod
    def decode_value(cls, r: Reader) -> "StackConfigData":
        count = r.u8("MPO-Count")
        if any(r.take(3, "Stack-Configuration-Data reserved")):
            raise DecodeError("reserved Stack-Configuration-Data bits set")
        hold = r.u32("MA-Hold-Time")
        options = []
        for _ in range(count):
            pid, prof, length, flags = struct.unpack("!BBBB", r.take(4, "MA-protocol-options"))
            if flags & 0x7F:
                raise DecodeError("reserved MA-protocol-options bits set")
            data = r.take(length, "MA-protocol-options data")
            if any(r.take(pad_len(length), "MA-protocol-options padding")):
                raise DecodeError("non-zero MA-protocol-options padding")
            options.append(MaProtocolOption(pid, prof, data, bool(flags & 0x80)))
        return cls(hold, tuple(options))


@dataclass(frozen=True)
class GistError:
    """The Error object (A.4.1) of an Error message.

    `original_header` is the 8-byte common header of the message in error; `session_id`
    and `mri` are copied from it when known (S and M flags), `info` holds the Additional
    Information fields as (AI-Type, value) with values a multiple of 4 bytes, `comment`
    the debugging comment (C flag), `d_mode`/`q_mode` the D and Q flags.
    """

    error_class: int
    code: int
    subcode: int
    original_header: bytes
    session_id: bytes | None = None
    mri: Mri | None = None
    info: tuple[tuple[int, bytes], ...] = ()
    comment: str | None = None
    d_mode: bool = False
    q_mode: bool = False

    def __post_init__(self):
        if not 0 <= self.error_class <= 255 or not 0 <= self.code <= 0xFFFF \
                or not 0 <= self.subcode <= 255:
            raise ValueError("error class/code/subcode out of range")
        if len(self.original_header) != HEADER_LEN:
            raise ValueError("original common header must be 8 bytes")
        if self.session_id is not None and len(self.session_id) != SESSION_ID_LEN:
            raise ValueError("Session-ID must be 16 bytes")
        if len(self.info) > 255:
            raise ValueError("more than 255 additional information fields")
        for ai_type, value in self.info:
            if not 0 <= ai_type <= 0xFFFF or len(value) % 4 or len(value) // 4 > 0xFFFF:
                raise ValueError("additional information field invalid")
        if self.comment is not None and "\0" in self.comment:
            raise ValueError("debugging comment with a NUL")

    def encode_value(self) -> bytes:
        flags = (_ERR_S if self.session_id is not None else 0) \
            | (_ERR_M if self.mri is not None else 0) \
            | (_ERR_C if self.comment is not None else 0) \
            | (_ERR_D if self.d_mode else 0) | (_ERR_Q if self.q_mode else 0)
        mri = self.mri.encode_value() if self.mri is not None else b""
        out = struct.pack("!BHBHBB", self.error_class, self.code, self.subcode, flags,
                          len(mri) // 4, len(self.info))
        out += self.original_header + (self.session_id or b"") + mri
        for ai_type, value in self.info:
            out += struct.pack("!HH", ai_type, len(value) // 4) + value
        if self.comment is not None:
            text = self.comment.encode() + b"\0"
            out += text + b"\0" * pad_len(len(text))
        return out

    @classmethod
    def decode_value(cls, r: Reader) -> "GistError":
        eclass, code, sub, flags, mri_words, count = struct.unpack(
            "!BHBHBB", r.take(8, "Error object header"))
        if flags & 0x07FF:
            raise DecodeError("reserved Error object bits set")
        header = r.take(HEADER_LEN, "original common header")
        sid = r.take(SESSION_ID_LEN, "Error Session-ID") if flags & _ERR_S else None
        mri = None
        if flags & _ERR_M:
            if mri_words == 0:
                raise DecodeError("Error object M flag with MRI length 0")
            mri = Mri.decode_value(r.sub(mri_words * 4, "Error MRI"))
            if len(mri.encode_value()) != mri_words * 4:
                raise DecodeError("Error object MRI length mismatch")
        elif mri_words:
            raise DecodeError("Error object MRI length without the M flag")
        info = []
        for _ in range(count):
            ai_type, words = r.u16("AI-Type"), r.u16("AI-Length")
            info.append((ai_type, r.take(words * 4, "AI-Value")))
        comment = None
        if flags & _ERR_C:
            raw = r.rest()
            end = raw.find(b"\0")
            if end < 0:
                raise DecodeError("debugging comment without a terminating NUL")
            if len(raw) != end + 1 + pad_len(end + 1) or any(raw[end:]):
                raise DecodeError("debugging comment padding invalid")
            try:
                comment = raw[:end].decode()
            except UnicodeDecodeError:
                raise DecodeError("debugging comment is not UTF-8") from None
        return cls(eclass, code, sub, header, sid, mri, tuple(info), comment,
                   bool(flags & _ERR_D), bool(flags & _ERR_Q))


@dataclass(frozen=True)
class RawObject:
    """An object this codec does not interpret: unknown types with AB=01/10.

    `position` is the number of known objects before it in the message (-1: after
    all of them), so a decoded message re-encodes to the same bytes.
    """

    type: int
    value: bytes
    ab: int
    position: int = -1

    def __post_init__(self):
        _words_value(self.value, f"object {self.type}", False, allow_empty=True)


# ---------------------------------------------------------------- messages
@dataclass(frozen=True)
class Message:
    """A GIST message. `q_mode` puts the magic number in front and sets the C flag."""

    type: int
    nslp_id: int
    hops: int = DEFAULT_GIST_HOPS
    s_flag: bool = True
    r_flag: bool = False
    e_flag: bool = False
    q_mode: bool = False
    nat_traversal: bytes | None = None
    mri: Mri | None = None
    session_id: bytes | None = None
    nli: Nli | None = None
    query_cookie: bytes | None = None
    responder_cookie: bytes | None = None
    stack_proposal: StackProposal | None = None
    stack_config: StackConfigData | None = None
    nslp_data: bytes | None = None
    error: GistError | None = None
    hello_id: int | None = None
    extensions: tuple[RawObject, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def name(self) -> str:
        return MESSAGE_NAMES.get(self.type, f"type-{self.type}")

    def encode(self) -> bytes:
        return encode_message(self)


def _objects(msg: Message) -> list[tuple[int, bytes]]:
    out = []
    if msg.nat_traversal is not None:
        out.append((OBJ_NAT_TRAVERSAL, msg.nat_traversal))
    for otype, obj in ((OBJ_MRI, msg.mri), (OBJ_SESSION_ID, msg.session_id),
                       (OBJ_NLI, msg.nli), (OBJ_QUERY_COOKIE, msg.query_cookie),
                       (OBJ_RESPONDER_COOKIE, msg.responder_cookie),
                       (OBJ_STACK_PROPOSAL, msg.stack_proposal),
                       (OBJ_STACK_CONFIG, msg.stack_config)):
        if obj is not None:
            out.append((otype, obj if isinstance(obj, bytes) else obj.encode_value()))
    if msg.nslp_data is not None:
        out.append((OBJ_NSLP_DATA, msg.nslp_data))
    if msg.error is not None:
        out.append((OBJ_ERROR, msg.error.encode_value()))
    if msg.hello_id is not None:
        out.append((OBJ_HELLO_ID, struct.pack("!I", msg.hello_id)))
    return out


def encode_message(msg: Message) -> bytes:
    if msg.type not in MESSAGE_NAMES:
        raise ValueError(f"unknown GIST message type {msg.type}")
    if not 0 <= msg.nslp_id <= 0xFFFF or not 0 <= msg.hops <= 255:
        raise ValueError("NSLPID or GIST hops out of range")
    if msg.hello_id is not None and not 0 <= msg.hello_id < 1 << 32:
        raise ValueError("Hello-ID out of range")
    objects = _objects(msg)
    _check_values(msg, decoding=False)
    _checked_order([t for t, _ in objects], msg.type, decoding=False)
    _check_header_flags(msg, decoding=False)
    if not msg.extensions:
        body = b"".join([_tlv(otype, value, AB_MANDATORY) for otype, value in objects])
    else:
        body = b""
        for index, (otype, value) in enumerate(objects):
            body += b"".join(_tlv(e.type, e.value, e.ab) for e in msg.extensions
                             if e.position == index)
            body += _tlv(otype, value, AB_MANDATORY)
        body += b"".join(_tlv(e.type, e.value, e.ab) for e in msg.extensions
                         if not 0 <= e.position < len(objects))
    words = len(body) // 4
    if words > MAX_MESSAGE_WORDS:
        raise ValueError("GIST message too long")
    header = struct.pack("!BBHHBB", VERSION, msg.hops, words, msg.nslp_id,
                         (FLAG_C if msg.q_mode else 0) | msg.type,
                         (FLAG_S if msg.s_flag else 0) | (FLAG_R if msg.r_flag else 0)
                         | (FLAG_E if msg.e_flag else 0))
    return (MAGIC_BYTES if msg.q_mode else b"") + header + body


def _tlv(otype: int, value: bytes, ab: int) -> bytes:
    if len(value) % 4:
        raise ValueError(f"{OBJECT_NAMES.get(otype, otype)} value not a multiple of 4 bytes")
    if len(value) // 4 > MAX_OBJECT_WORDS:
        raise ValueError(f"{OBJECT_NAMES.get(otype, otype)} longer than 4095 words")
    if not 0 <= otype <= 0xFFF or ab not in (AB_MANDATORY, AB_IGNORE, AB_FORWARD):
        raise ValueError("object type or AB flags out of range")
    return struct.pack("!HH", (ab << 14) | otype, len(value) // 4) + value


# The object grammar of each message (section 5.1): (type, required) in order.
_GRAMMAR = {
    QUERY: ((OBJ_NAT_TRAVERSAL, False), (OBJ_MRI, True), (OBJ_SESSION_ID, True),
            (OBJ_NLI, True), (OBJ_QUERY_COOKIE, True), (OBJ_STACK_PROPOSAL, False),
            (OBJ_STACK_CONFIG, False), (OBJ_NSLP_DATA, False)),
    RESPONSE: ((OBJ_NAT_TRAVERSAL, False), (OBJ_MRI, True), (OBJ_SESSION_ID, True),
               (OBJ_NLI, True), (OBJ_QUERY_COOKIE, True), (OBJ_RESPONDER_COOKIE, False),
               (OBJ_STACK_PROPOSAL, False), (OBJ_STACK_CONFIG, False),
               (OBJ_NSLP_DATA, False)),
    CONFIRM: ((OBJ_MRI, True), (OBJ_SESSION_ID, True), (OBJ_NLI, True),
              (OBJ_RESPONDER_COOKIE, False), (OBJ_STACK_PROPOSAL, False),
              (OBJ_STACK_CONFIG, False), (OBJ_NSLP_DATA, False)),
    DATA: ((OBJ_NAT_TRAVERSAL, False), (OBJ_MRI, True), (OBJ_SESSION_ID, True),
           (OBJ_NLI, False), (OBJ_NSLP_DATA, True)),
    ERROR: ((OBJ_NAT_TRAVERSAL, False), (OBJ_NLI, False), (OBJ_ERROR, True)),
    MA_HELLO: ((OBJ_HELLO_ID, True),),
}


def _check_order(types: list[int], msg_type: int, decoding: bool) -> None:
    name = MESSAGE_NAMES[msg_type]
    grammar = _GRAMMAR[msg_type]
    pos = 0
    for otype in types:
        oname = OBJECT_NAMES.get(otype, str(otype))
        while pos < len(grammar) and grammar[pos][0] != otype:
            if grammar[pos][1]:
                _fail(f"{name} lacks {OBJECT_NAMES[grammar[pos][0]]} before {oname}", decoding)
            pos += 1
        if pos == len(grammar):
            if otype in types[:types.index(otype)]:
                _fail(f"duplicate {oname} in {name}", decoding)
            if any(otype == g for g, _ in grammar):
                _fail(f"{oname} out of order in {name}", decoding)
            _fail(f"{oname} not allowed in {name}", decoding)
        pos += 1
    for gtype, required in grammar[pos:]:
        if required:
            _fail(f"{name} lacks {OBJECT_NAMES[gtype]}", decoding)
    present = set(types)
    if msg_type == QUERY and (OBJ_STACK_PROPOSAL in present) != (OBJ_STACK_CONFIG in present):
        _fail("Query with only one of Stack-Proposal and Stack-Configuration-Data", decoding)
    if msg_type in (RESPONSE, CONFIRM):
        if OBJ_STACK_PROPOSAL in present and OBJ_RESPONDER_COOKIE not in present:
            _fail(f"{name} with Stack-Proposal but no Responder-Cookie", decoding)
        if OBJ_STACK_CONFIG in present and OBJ_STACK_PROPOSAL not in present:
            _fail(f"{name} with Stack-Configuration-Data but no Stack-Proposal", decoding)


def _check_values(msg: Message, decoding: bool) -> None:
    if msg.session_id is not None and len(msg.session_id) != SESSION_ID_LEN:
        _fail(f"Session-ID of {len(msg.session_id)} bytes, expected 16", decoding)
    for what, value in (("Query-Cookie", msg.query_cookie),
                        ("Responder-Cookie", msg.responder_cookie),
                        ("NSLP-Data", msg.nslp_data)):
        if value is not None:
            _words_value(value, what, decoding)
    if msg.nat_traversal is not None:
        _words_value(msg.nat_traversal, "NAT-Traversal", decoding)


def _check_header_flags(msg: Message, decoding: bool) -> None:
    name = msg.name
    if msg.q_mode and msg.type not in (QUERY, DATA):
        _fail(f"C flag (Q-mode) on a {name}", decoding)
    if msg.type == QUERY and not msg.q_mode:
        _fail("Query without the C flag (Query is always Q-mode)", decoding)
    if msg.type == QUERY and not msg.r_flag:
        _fail("Query without the R flag", decoding)
    if msg.r_flag and msg.type in (CONFIRM, DATA, ERROR):
        _fail(f"R flag on a {name}", decoding)
    if msg.type == RESPONSE and msg.responder_cookie is not None and not msg.r_flag:
        _fail("Response with a Responder-Cookie but no R flag", decoding)
    if msg.e_flag and msg.type != DATA:
        _fail(f"E flag on a {name}", decoding)


_OBJECT_DECODERS = {
    OBJ_MRI: Mri.decode_value,
    OBJ_NLI: Nli.decode_value,
    OBJ_STACK_PROPOSAL: StackProposal.decode_value,
    OBJ_STACK_CONFIG: StackConfigData.decode_value,
    OBJ_ERROR: GistError.decode_value,
    OBJ_HELLO_ID: lambda r: r.u32("Hello-ID"),
    OBJ_SESSION_ID: lambda r: r.rest(),
    OBJ_QUERY_COOKIE: lambda r: r.rest(),
    OBJ_RESPONDER_COOKIE: lambda r: r.rest(),
    OBJ_NSLP_DATA: lambda r: r.rest(),
    OBJ_NAT_TRAVERSAL: lambda r: r.rest(),
}
# objects whose value is kept as bytes (checked by _check_values)
_RAW_OBJECTS = frozenset({OBJ_SESSION_ID, OBJ_QUERY_COOKIE, OBJ_RESPONDER_COOKIE,
                          OBJ_NSLP_DATA, OBJ_NAT_TRAVERSAL})
_FIELDS = {OBJ_MRI: "mri", OBJ_SESSION_ID: "session_id", OBJ_NLI: "nli",
           OBJ_STACK_PROPOSAL: "stack_proposal", OBJ_STACK_CONFIG: "stack_config",
           OBJ_QUERY_COOKIE: "query_cookie", OBJ_RESPONDER_COOKIE: "responder_cookie",
           OBJ_NAT_TRAVERSAL: "nat_traversal", OBJ_NSLP_DATA: "nslp_data",
           OBJ_ERROR: "error", OBJ_HELLO_ID: "hello_id"}


# Decoded MRI and NLI values by their bytes. Decoding is a function of the bytes alone
# and the objects are frozen, so a value seen before is taken from here: every message
# of a session carries the same MRI and the same peer's NLI (a firewall under a burst
# decodes each several times: Query, its retransmissions, Confirm, Data). Only values
# that decoded are kept; at most VALUE_CACHE of each, the oldest dropped first.
VALUE_CACHE = 8192
_value_caches: dict[int, dict[bytes, object]] = {OBJ_MRI: {}, OBJ_NLI: {}}
# The object orders (message type, object types) that passed _check_order: a message
# with the same order passes again without the walk through the grammar.
_orders_ok: set[tuple[int, tuple[int, ...]]] = set()
_unpack_header = struct.Struct("!BBHHBB").unpack_from
_unpack_object_header = struct.Struct("!HH").unpack_from


def _checked_order(types: list[int], msg_type: int, decoding: bool) -> None:
    key = (msg_type, tuple(types))
    if key in _orders_ok:
        return
    _check_order(types, msg_type, decoding)
    if len(_orders_ok) < 1024:          # a handful in practice; bounded whatever comes
        _orders_ok.add(key)


def _decode_object(otype: int, data: bytes, start: int, end: int):
    """The decoded value of a known object (DecodeError if it does not decode)."""
    cache = _value_caches.get(otype)
    if cache is not None:
        value = data[start:end]
        obj = cache.get(value)
        if obj is not None:
            return obj
    sub = Reader(data, start, end)
    try:
        obj = _OBJECT_DECODERS[otype](sub)
    except ValueError as exc:       # dataclass validation of decoded values
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"{OBJECT_NAMES[otype]}: {exc}") from None
    if sub.remaining:
        raise DecodeError(f"{sub.remaining} trailing bytes in {OBJECT_NAMES[otype]}")
    if cache is not None:
        if len(cache) >= VALUE_CACHE:
            del cache[next(iter(cache))]
        cache[value] = obj
    return obj


def decode_message(data: bytes, *, q_mode: bool | None = None) -> Message:
    """Decode one GIST message (magic number included when Q-mode).

    `q_mode` True/False says how it arrived (the Q-mode socket or D-mode); None accepts
    either and tells them apart by the magic number (a D-mode header starts with
    version 1, never with 0x4e).
    """
    data = bytes(data)
    size = len(data)
    is_q = data[:4] == MAGIC_BYTES
    if q_mode is not None and q_mode != is_q:
        raise DecodeError("Q-mode message without the magic number" if q_mode
                          else "magic number on a message that did not arrive in Q-mode")
    pos = 4 if is_q else 0
    if size - pos < HEADER_LEN:
        raise DecodeError(f"{size - pos} bytes is shorter than the GIST common header")
    version, hops, words, nslp_id, type_byte, flags = _unpack_header(data, pos)
    pos += HEADER_LEN
    if version != VERSION:
        raise DecodeError(f"unknown GIST version {version}")
    msg_type = type_byte & 0x7F
    if msg_type not in MESSAGE_NAMES:
        raise DecodeError(f"unknown GIST message type {msg_type}")
    if flags & 0x1F:
        raise DecodeError("reserved common header bits set")
    if words * 4 != size - pos:
        raise DecodeError(f"message length {words} words does not match {size - pos} bytes")
    c_flag = bool(type_byte & FLAG_C)
    if c_flag != is_q:
        raise DecodeError("C flag and magic number disagree")
    values: dict = {}
    types: list[int] = []
    extensions = []
    while pos < size:
        if size - pos < OBJECT_HEADER_LEN:
            raise DecodeError("truncated object header")
        first, second = _unpack_object_header(data, pos)
        pos += OBJECT_HEADER_LEN
        ab, otype = first >> 14, first & 0x0FFF
        if first & 0x3000 or second & 0xF000:
            raise DecodeError(f"reserved bits set in the header of object {otype}")
        if ab == AB_INVALID:
            raise DecodeError(f"object {otype} with extensibility flags AB=11")
        length = (second & 0x0FFF) * 4
        if length > size - pos:
            raise DecodeError(f"object {otype} of {length} bytes overruns the message")
        start, pos = pos, pos + length
        if otype not in _OBJECT_DECODERS:
            if ab == AB_MANDATORY:
                raise DecodeError(f"unknown mandatory object type {otype}")
            extensions.append(RawObject(otype, data[start:pos], ab, len(types)))
            continue
        if ab != AB_MANDATORY:
            raise DecodeError(f"{OBJECT_NAMES[otype]} with AB flags {ab:02b}")
        if otype in _RAW_OBJECTS:
            obj = data[start:pos]
        else:
            obj = _decode_object(otype, data, start, pos)
        if otype in types:
            raise DecodeError(f"duplicate {OBJECT_NAMES[otype]} in {MESSAGE_NAMES[msg_type]}")
        types.append(otype)
        values[_FIELDS[otype]] = obj
    msg = Message(msg_type, nslp_id, hops, bool(flags & FLAG_S), bool(flags & FLAG_R),
                  bool(flags & FLAG_E), is_q, extensions=tuple(extensions), raw=data,
                  **values)
    _checked_order(types, msg_type, decoding=True)
    _check_values(msg, decoding=True)
    _check_header_flags(msg, decoding=True)
    return msg


def forwards_tcp_option(port: int) -> bytes:
    """The options data of a Forwards-TCP MA-protocol-options entry: the port the
    responder listens on (16 bits; the entry's Length is 2, padded to 4 in the SCD)."""
    if not 0 < port <= 0xFFFF:
        raise ValueError("TCP port out of range")
    return struct.pack("!H", port)


def forwards_tcp_port(data: bytes) -> int:
    """The port in Forwards-TCP options data (DecodeError when it is not one)."""
    if len(data) != FORWARDS_TCP_OPTION_LEN:
        raise DecodeError(f"Forwards-TCP options data of {len(data)} bytes, expected 2")
    port = struct.unpack("!H", data)[0]
    if port == 0:
        raise DecodeError("Forwards-TCP port 0")
    return port


def c_mode_frame_length(header: bytes, max_len: int = HEADER_LEN + 4 * MAX_MESSAGE_WORDS) -> int:
    """Total length of the C-mode message whose first 8 bytes are `header`.

    On a messaging association messages follow each other with no magic number and no
    other framing: the common header's length field (32-bit words after the header)
    delimits them. DecodeError for a header that cannot start a GIST message (version
    not 1, the C flag, reserved bits, an unknown type) or a length above `max_len`: the
    stream cannot be resynchronised after that, so the MA is closed.
    """
    if len(header) < HEADER_LEN:
        raise DecodeError("truncated common header")
    version, _hops, words, _nslp, type_byte, flags = struct.unpack("!BBHHBB",
                                                                   header[:HEADER_LEN])
    if version != VERSION:
        raise DecodeError(f"unknown GIST version {version} on a messaging association")
    if type_byte & FLAG_C:
        raise DecodeError("C flag (Q-mode) on a messaging association")
    if type_byte not in MESSAGE_NAMES:
        raise DecodeError(f"unknown GIST message type {type_byte}")
    if flags & 0x1F:
        raise DecodeError("reserved common header bits set")
    total = HEADER_LEN + 4 * words
    if total > max_len:
        raise DecodeError(f"C-mode message of {total} bytes exceeds {max_len}")
    return total


def with_hops(data: bytes, hops: int) -> bytes:
    """The same encoded message with another GIST hop count (for forwarding as is)."""
    offset = 5 if data[:4] == MAGIC_BYTES else 1
    if len(data) <= offset or not 0 <= hops <= 255:
        raise ValueError("not a GIST message or hop count out of range")
    return data[:offset] + bytes([hops]) + data[offset + 1:]
