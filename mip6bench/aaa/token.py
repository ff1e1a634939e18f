"""NSIS authorization tokens (after RFC 5981's session authorization object): minted by
the PAA when the MN bootstraps (MIP6 extension AVP NSIS-Authorization-Token), verified
by the firewall's NATFW NSLP with a key it shares with the AAA side.

    issuer = TokenIssuer(key, key_id=1, lifetime=3600, flows=(Flow(135, "2001:db8:2::/64"),))
    token = issuer.mint(nai, hoa, now_unix)                  # bytes
    auth = verify_token(token, {1: key}, now_unix, nai=..., hoa=...)   # AuthToken
    auth.allows(proto=135, dst="2001:db8:2::10", dport=0)   # bool

Times are Unix seconds (wall clock: the token crosses hosts, so it uses the clock they
keep in sync, not the monotonic clock the protocol cores run on).

Format (all integers network byte order)::

    header   version(8)=1 | reserved(8)=0 | token length(16) | key id(32)
    then attributes, each padded with zeros to a multiple of 4 bytes:
             length(16: header + value, padding excluded) | x-type(8) | sub-type(8) | value

    x-type/sub-type                value
    1/1  AUTH_ENT_ID, NAI          the MN's NAI, UTF-8, 1..253 bytes        exactly once
    2/1  SESSION_ID, token id      8 random bytes                            exactly once
    3/2  SOURCE_ADDR, IPv6         the MN's Home Address (16 bytes)          exactly once
    5/1  START_TIME, NTP           64-bit NTP timestamp (RFC 5905)           exactly once
    6/1  END_TIME, NTP             64-bit NTP timestamp, after START_TIME    exactly once
    9/1  FLOW (this testbed)       protocol(8) | prefix length(8) | port(16) |
                                   destination prefix(128): the MN may open
                                   flows to that prefix, IP protocol (0 any;
                                   135 Mobility Header, 6 TCP, 17 UDP), dest
                                   port (0 any)                              1..16 times
    8/1  AUTHENTICATION_DATA       HMAC-SHA256 (32 bytes)                    last, once

The x-type names and the attribute layout follow RFC 5981 (AUTH_ENT_ID, SESSION_ID,
SOURCE_ADDR, START_TIME, END_TIME, AUTHENTICATION_DATA); the numbers are this
testbed's, FLOW is its own (RFC 5981 leaves flow description to the NSLP). The HMAC
covers every byte of the token before its own value (header, attributes, the
AUTHENTICATION_DATA attribute header), keyed by the key the header's key id names; it
binds identity, Home Address, flows and validity together. A verifier checks, and
reports the first failure as TokenError.reason: structure ("malformed: ..."), known key
id ("unknown key id"), HMAC ("bad signature"), validity ("not yet valid", "expired",
with `skew` seconds of tolerance), and, if asked, NAI and HoA ("identity mismatch",
"address mismatch").
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from mip6bench.codec import DecodeError, Reader, pad_len

VERSION = 1
HEADER_LEN = 8
X_AUTH_ENT_ID, X_SESSION_ID, X_SOURCE_ADDR, X_START_TIME, X_END_TIME = 1, 2, 3, 5, 6
X_AUTHENTICATION_DATA, X_FLOW = 8, 9
SUB_NAI, SUB_TOKEN_ID, SUB_IPV6, SUB_NTP, SUB_HMAC_SHA256, SUB_FLOW = 1, 1, 2, 1, 1, 1
HMAC_LEN = 32
MAX_FLOWS = 16
MAX_NAI = 253
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
MIN_KEY_LEN = 16


class TokenError(DecodeError):
    """A token that must not be honoured; `reason` says why."""


@dataclass(frozen=True)
class Flow:
    protocol: int = 0            # 0: any
    destination: str = "::/0"    # prefix
    port: int = 0                # 0: any

    def __post_init__(self):
        net = ipaddress.IPv6Network(self.destination, strict=False)
        object.__setattr__(self, "destination", str(net))
        if not 0 <= self.protocol <= 255 or not 0 <= self.port <= 0xFFFF:
            raise ValueError("flow protocol is 0..255 and port 0..65535")

    def encode(self) -> bytes:
        net = ipaddress.IPv6Network(self.destination)
        return struct.pack("!BBH", self.protocol, net.prefixlen, self.port) + \
            net.network_address.packed

    @classmethod
    def decode(cls, value: bytes) -> "Flow":
        if len(value) != 20:
            raise TokenError(f"malformed: FLOW of {len(value)} bytes, expected 20")
        protocol, plen, port = struct.unpack("!BBH", value[:4])
        if plen > 128:
            raise TokenError(f"malformed: FLOW prefix length {plen}")
        address = ipaddress.IPv6Address(value[4:])
        net = ipaddress.IPv6Network(f"{address}/{plen}", strict=False)
        if net.network_address != address:
            raise TokenError("malformed: FLOW prefix has host bits set")
        return cls(protocol, str(net), port)

    def matches(self, protocol: int, dst: str, port: int) -> bool:
        return ((self.protocol == 0 or self.protocol == protocol)
                and ipaddress.IPv6Address(dst) in ipaddress.IPv6Network(self.destination)
                and (self.port == 0 or self.port == port))


@dataclass(frozen=True)
class AuthToken:
    """A verified token."""

    key_id: int
    nai: str
    hoa: str
    token_id: bytes
    start: float          # Unix seconds
    end: float
    flows: tuple[Flow, ...]

    def allows(self, protocol: int, dst: str, port: int = 0) -> bool:
        return any(f.matches(protocol, dst, port) for f in self.flows)


def _ntp(unix: float) -> bytes:
    seconds = int(unix) + NTP_UNIX_OFFSET
    fraction = int((unix - int(unix)) * (1 << 32)) & 0xFFFFFFFF
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise ValueError("time outside the NTP era")
    return struct.pack("!II", seconds, fraction)


def _unix(ntp: bytes) -> float:
    seconds, fraction = struct.unpack("!II", ntp)
    return seconds - NTP_UNIX_OFFSET + fraction / (1 << 32)


def _attr(x_type: int, sub_type: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("!HBB", length, x_type, sub_type) + value + b"\0" * pad_len(length)


def mint_token(key: bytes, key_id: int, nai: str, hoa: str, flows: Iterable[Flow],
               start: float, end: float, token_id: bytes | None = None) -> bytes:
    if len(key) < MIN_KEY_LEN:
        raise ValueError(f"token key must be at least {MIN_KEY_LEN} bytes")
    if not 0 <= key_id <= 0xFFFFFFFF:
        raise ValueError("key id is 32 bits")
    nai_raw = nai.encode("utf-8")
    if not 1 <= len(nai_raw) <= MAX_NAI:
        raise ValueError(f"NAI must be 1..{MAX_NAI} bytes")
    flows = tuple(flows)
    if not 1 <= len(flows) <= MAX_FLOWS:
        raise ValueError(f"a token names 1..{MAX_FLOWS} flows")
    if end <= start:
        raise ValueError("END_TIME must follow START_TIME")
    token_id = os.urandom(8) if token_id is None else token_id
    if len(token_id) != 8:
        raise ValueError("token id is 8 bytes")
    body = (_attr(X_AUTH_ENT_ID, SUB_NAI, nai_raw) + _attr(X_SESSION_ID, SUB_TOKEN_ID, token_id)
            + _attr(X_SOURCE_ADDR, SUB_IPV6, ipaddress.IPv6Address(hoa).packed)
            + _attr(X_START_TIME, SUB_NTP, _ntp(start)) + _attr(X_END_TIME, SUB_NTP, _ntp(end))
            + b"".join(_attr(X_FLOW, SUB_FLOW, f.encode()) for f in flows))
    auth_header = struct.pack("!HBB", 4 + HMAC_LEN, X_AUTHENTICATION_DATA, SUB_HMAC_SHA256)
    total = HEADER_LEN + len(body) + 4 + HMAC_LEN
    if total > 4096:
        raise ValueError("token longer than 4096 bytes")
    signed = struct.pack("!BBHI", VERSION, 0, total, key_id) + body + auth_header
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


def decode_token(token: bytes) -> tuple[AuthToken, bytes, bytes]:
    """Parse without checking the HMAC: (claims, signed bytes, HMAC value)."""
    token = bytes(token)
    if len(token) < HEADER_LEN + 4 + HMAC_LEN:
        raise TokenError(f"malformed: token of {len(token)} bytes is too short")
    r = Reader(token)
    version, reserved, length, key_id = r.u8(), r.u8(), r.u16(), r.u32()
    if version != VERSION:
        raise TokenError(f"malformed: version {version}")
    if reserved:
        raise TokenError("malformed: reserved byte not zero")
    if length != len(token):
        raise TokenError(f"malformed: length field {length}, token of {len(token)} bytes")
    seen: dict[int, bytes] = {}
    flows: list[Flow] = []
    mac = None
    signed_end = 0
    try:
        while r.remaining:
            start = r.pos
            alen, x_type, sub = r.u16("attribute length"), r.u8(), r.u8()
            if alen < 4:
                raise TokenError(f"malformed: attribute length {alen}")
            value = r.take(alen - 4, f"x-type {x_type}")
            padding = r.take(pad_len(alen), "padding")
            if any(padding):
                raise TokenError("malformed: non-zero padding")
            if mac is not None:
                raise TokenError("malformed: attribute after AUTHENTICATION_DATA")
            expected_sub = {X_AUTH_ENT_ID: SUB_NAI, X_SESSION_ID: SUB_TOKEN_ID,
                            X_SOURCE_ADDR: SUB_IPV6, X_START_TIME: SUB_NTP,
                            X_END_TIME: SUB_NTP, X_FLOW: SUB_FLOW,
                            X_AUTHENTICATION_DATA: SUB_HMAC_SHA256}.get(x_type)
            if expected_sub is None:
                raise TokenError(f"malformed: unknown x-type {x_type}")
            if sub != expected_sub:
                raise TokenError(f"malformed: sub-type {sub} for x-type {x_type}")
            if x_type == X_FLOW:
                if len(flows) >= MAX_FLOWS:
                    raise TokenError("malformed: too many FLOW attributes")
                flows.append(Flow.decode(value))
                continue
            if x_type in seen:
                raise TokenError(f"malformed: x-type {x_type} twice")
            if x_type == X_AUTHENTICATION_DATA:
                if len(value) != HMAC_LEN:
                    raise TokenError(f"malformed: HMAC of {len(value)} bytes")
                mac, signed_end = value, start + 4
            seen[x_type] = value
    except DecodeError as err:
        if isinstance(err, TokenError):
            raise
        raise TokenError(f"malformed: {err.reason}") from None
    if mac is None:
        raise TokenError("malformed: no AUTHENTICATION_DATA")
    missing = [x for x in (X_AUTH_ENT_ID, X_SESSION_ID, X_SOURCE_ADDR, X_START_TIME,
                           X_END_TIME) if x not in seen]
    if missing or not flows:
        raise TokenError(f"malformed: missing x-type(s) {missing or [X_FLOW]}")
    sizes = {X_SESSION_ID: 8, X_SOURCE_ADDR: 16, X_START_TIME: 8, X_END_TIME: 8}
    for x_type, size in sizes.items():
        if len(seen[x_type]) != size:
            raise TokenError(f"malformed: x-type {x_type} of {len(seen[x_type])} bytes")
    try:
        nai = seen[X_AUTH_ENT_ID].decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("malformed: NAI is not UTF-8") from None
    if not 1 <= len(seen[X_AUTH_ENT_ID]) <= MAX_NAI:
        raise TokenError("malformed: NAI length")
    start, end = _unix(seen[X_START_TIME]), _unix(seen[X_END_TIME])
    if end <= start:
        raise TokenError("malformed: END_TIME not after START_TIME")
    claims = AuthToken(key_id, nai, str(ipaddress.IPv6Address(seen[X_SOURCE_ADDR])),
                       seen[X_SESSION_ID], start, end, tuple(flows))
    return claims, token[:signed_end], mac


def verify_token(token: bytes, keys: Mapping[int, bytes], now: float, *, nai: str | None = None,
                 hoa: str | None = None, skew: float = 2.0) -> AuthToken:
    """The verified claims of `token`, or TokenError (see the module docstring)."""
    claims, signed, mac = decode_token(token)
    key = keys.get(claims.key_id)
    if key is None:
        raise TokenError("unknown key id")
    if not hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), mac):
        raise TokenError("bad signature")
    if now + skew < claims.start:
        raise TokenError("not yet valid")
    if now - skew >= claims.end:
        raise TokenError("expired")
    if nai is not None and nai != claims.nai:
        raise TokenError("identity mismatch")
    if hoa is not None and ipaddress.IPv6Address(hoa) != ipaddress.IPv6Address(claims.hoa):
        raise TokenError("address mismatch")
    return claims


@dataclass(frozen=True)
class TokenIssuer:
    """The PAA's minting policy: one key, a validity and the flows every MN may open."""

    key: bytes
    key_id: int
    lifetime: float = 3600.0
    flows: tuple[Flow, ...] = (Flow(),)

    def __post_init__(self):
        if len(self.key) < MIN_KEY_LEN:
            raise ValueError(f"token key must be at least {MIN_KEY_LEN} bytes")
        if self.lifetime <= 0:
            raise ValueError("token lifetime must be positive")

    def mint(self, nai: str, hoa: str, now: float) -> bytes:
        return mint_token(self.key, self.key_id, nai, hoa, self.flows, now, now + self.lifetime)

    def hook(self, wall_clock: Callable[[], float]) -> Callable[[str, str, float], bytes]:
        """A Mip6Policy.mint_token hook: PaaCore passes its monotonic `now`; tokens use
        the wall clock (Unix seconds)."""
        return lambda nai, hoa, _now: self.mint(nai, hoa, wall_clock())


def parse_flows(specs: Iterable[str]) -> tuple[Flow, ...]:
    """Flows written as "proto:prefix[:port]" with proto a number or mh/tcp/udp/any,
    e.g. "mh:2001:db8:2::/64", "tcp:2001:db8:2::10/128:5001"."""
    names = {"any": 0, "mh": 135, "tcp": 6, "udp": 17}
    out = []
    for spec in specs:
        proto_text, _, rest = spec.partition(":")
        if not rest:
            raise ValueError(f"flow {spec!r} is not proto:prefix[:port]")
        proto = names.get(proto_text.lower())
        if proto is None:
            proto = int(proto_text)
        port = 0
        prefix = rest
        if "/" in rest:
            prefix, _, tail = rest.partition("/")
            plen, _, port_text = tail.partition(":")
            prefix = f"{prefix}/{plen}"
            port = int(port_text) if port_text else 0
        out.append(Flow(proto, prefix, port))
    return tuple(out)
