"""NSIS authorization tokens as RFC 5981 SESSION_AUTH objects: minted by the PAA when the
MN bootstraps (MIP6 extension AVP NSIS-Authorization-Token), carried by the MN in its
NATFW CREATE, verified by the firewall's NF with a key it shares with the AAA side.

    issuer = TokenIssuer(key, key_id=1, lifetime=3600, flows=(Flow(135, "2001:db8:2::/64"),))
    token = issuer.mint(nai, hoa, now_unix)                  # bytes: a whole NSLP object
    auth = verify_token(token, {1: key}, now_unix, nai=..., hoa=...)   # AuthToken
    auth.allows(proto=135, dst="2001:db8:2::10", dport=0)   # bool

Times are Unix seconds (wall clock: the token crosses hosts).

Format: the NSLP object header (A/B = 00, type 0x016 SESSION_AUTH_OBJECT, length in
32-bit words), then attributes, each ``length (16, header + value, padding excluded) |
X-Type (8) | SubType (8) | value`` zero-padded to 4 bytes (RFC 5981 section 3)::

    X-Type/SubType                 value
    1/3   AUTH_ENT_ID, FQDN         the authorizing entity (the AAA server's name)
    1/10  AUTH_ENT_ID, HMAC_SIGNED  reserved (16) | transform ID (16): 12,
                                    AUTH_HMAC_SHA2_256_128 (IKEv2 integrity, RFC 4868)
    2/0   SESSION_ID                opaque to others; here token id (8) | MN's NAI
    3/2   SOURCE_ADDR, IPv6         the MN's Home Address: the source bound to the token
    4/250 DEST_ADDR, flow (local)   protocol (8) | prefix length (8) | port (16) |
                                    destination prefix (16 bytes); 1..16 times
    5/1   START_TIME, NTP           64-bit NTP timestamp
    6/1   END_TIME, NTP             64-bit NTP timestamp, after START_TIME
    7/0   NSLP_OBJECT_LIST          count (16) | resv (4) + object type (12) ...: the
                                    NSLP objects the HMAC covers: SESSION_AUTH itself
    8/0   AUTHENTICATION_DATA       Key-ID (32) | HMAC (16 bytes); last

The HMAC (HMAC-SHA-256 truncated to 128 bits) covers the whole object -- header and
every attribute -- with the HMAC field set to zeros. DEST_ADDR sub-type 250 is this
testbed's: RFC 5981's DEST_ADDR sub-types name single addresses, port lists or an SPI,
not "a protocol to a prefix".

How this uses RFC 5981: the token is a credential of the authorizing entity (the AAA
server named by AUTH_ENT_ID), minted when the MN bootstraps -- before any NSIS session,
GIST Session-ID or MRI exists. RFC 5981's HMAC_SIGNED mode has the signer cover the
NSLPID, MRI, Session-ID and the NSLP objects named in NSLP_OBJECT_LIST; the issuer here
can only cover the SESSION_AUTH object itself, so NSLP_OBJECT_LIST names exactly that
object, and the firewall's NF counters replay by binding a token to the first NSIS
session id that presents it (mip6bench.natfw.core). The numbers and where each was
confirmed are in README.md, "NSIS protocol numbers".

A verifier reports the first failure as TokenError.reason:
"malformed: ...", "unknown key id", "bad signature", "not yet valid", "expired" (with
`skew` seconds of tolerance), and if asked "identity mismatch", "address mismatch".
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
from dataclasses import dataclass
from collections import OrderedDict
from functools import lru_cache
from typing import Callable, Iterable, Mapping

from mip6bench import ipaddr
from mip6bench.codec import DecodeError, Reader, pad_len

T_SESSION_AUTH = 0x016
AB_FORWARD = 2                  # A/B = 10 as in RFC 5981 section 4.4's example
X_AUTH_ENT_ID, X_SESSION_ID, X_SOURCE_ADDR, X_DEST_ADDR = 1, 2, 3, 4
X_START_TIME, X_END_TIME, X_NSLP_OBJECT_LIST, X_AUTHENTICATION_DATA = 5, 6, 7, 8
SUB_FQDN, SUB_HMAC_SIGNED, SUB_IPV6, SUB_NTP, SUB_FLOW = 3, 10, 2, 1, 250
TRANSFORM_HMAC_SHA1_96 = 2        # IKEv2 integrity transform IDs (RFC 7296 registry);
TRANSFORM_HMAC_SHA2_256_128 = 12  # RFC 4868 -- the one minted and accepted here
HMAC_LEN = 16
MAX_FLOWS = 16
MAX_NAI = 253
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
MIN_KEY_LEN = 16
DEFAULT_ISSUER = "aaa.mip6bench.example"


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
        net = _network(self.destination)
        return struct.pack("!BBH", self.protocol, net.prefixlen, self.port) + \
            net.network_address.packed

    @classmethod
    def decode(cls, value: bytes) -> "Flow":
        if len(value) != 20:
            raise TokenError(f"malformed: flow of {len(value)} bytes, expected 20")
        protocol, plen, port = struct.unpack("!BBH", value[:4])
        if plen > 128:
            raise TokenError(f"malformed: flow prefix length {plen}")
        address = ipaddress.IPv6Address(value[4:])
        net = ipaddress.IPv6Network(f"{address}/{plen}", strict=False)
        if net.network_address != address:
            raise TokenError("malformed: flow prefix has host bits set")
        return cls(protocol, str(net), port)

    def matches(self, protocol: int, dst: str, port: int) -> bool:
        return ((self.protocol == 0 or self.protocol == protocol)
                and ipaddr.ip6(dst) in _network(self.destination)
                and (self.port == 0 or self.port == port))


@lru_cache(maxsize=ipaddr.CACHE)
def _network(prefix: str) -> ipaddress.IPv6Network:
    """A Flow's destination prefix as an object (a token names the same few, every
    CREATE asks; the text is the normalised one Flow made)."""
    return ipaddress.IPv6Network(prefix)


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
    issuer: str = DEFAULT_ISSUER

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


_NSLP_OBJECT_LIST_ATTR = _attr(X_NSLP_OBJECT_LIST, 0, struct.pack("!HH", 1, T_SESSION_AUTH))


def _object(attrs: bytes) -> bytes:
    return struct.pack("!HH", (AB_FORWARD << 14) | T_SESSION_AUTH, len(attrs) // 4) + attrs


def mint_token(key: bytes, key_id: int, nai: str, hoa: str, flows: Iterable[Flow],
               start: float, end: float, token_id: bytes | None = None,
               issuer: str = DEFAULT_ISSUER) -> bytes:
    if len(key) < MIN_KEY_LEN:
        raise ValueError(f"token key must be at least {MIN_KEY_LEN} bytes")
    if not 0 <= key_id <= 0xFFFFFFFF:
        raise ValueError("key id is 32 bits")
    nai_raw = nai.encode("utf-8")
    if not 1 <= len(nai_raw) <= MAX_NAI:
        raise ValueError(f"NAI must be 1..{MAX_NAI} bytes")
    issuer_raw = issuer.encode("ascii")
    if not 1 <= len(issuer_raw) <= 253:
        raise ValueError("issuer FQDN must be 1..253 bytes")
    flows = tuple(flows)
    if not 1 <= len(flows) <= MAX_FLOWS:
        raise ValueError(f"a token names 1..{MAX_FLOWS} flows")
    if end <= start:
        raise ValueError("END_TIME must follow START_TIME")
    token_id = os.urandom(8) if token_id is None else token_id
    if len(token_id) != 8:
        raise ValueError("token id is 8 bytes")
    attrs = (_issuer_attrs(issuer_raw)
             + _attr(X_SESSION_ID, 0, token_id + nai_raw)
             + _attr(X_SOURCE_ADDR, SUB_IPV6, ipaddr.packed6(hoa))
             + _flow_attrs(flows)
             + _attr(X_START_TIME, SUB_NTP, _ntp(start)) + _attr(X_END_TIME, SUB_NTP, _ntp(end))
             + _NSLP_OBJECT_LIST_ATTR)
    auth = _attr(X_AUTHENTICATION_DATA, 0, struct.pack("!I", key_id) + bytes(HMAC_LEN))
    unsigned = _object(attrs + auth)
    if len(unsigned) > 4096:
        raise ValueError("token longer than 4096 bytes")
    mac = hmac.digest(key, unsigned, "sha256")[:HMAC_LEN]
    return unsigned[:-HMAC_LEN] + mac


# The attributes an issuer puts in every token it mints, encoded once per issuer and flow
# list (a PAA mints one token per authentication, always with the same ones).
@lru_cache(maxsize=64)
def _issuer_attrs(issuer_raw: bytes) -> bytes:
    return (_attr(X_AUTH_ENT_ID, SUB_FQDN, issuer_raw)
            + _attr(X_AUTH_ENT_ID, SUB_HMAC_SIGNED,
                    struct.pack("!HH", 0, TRANSFORM_HMAC_SHA2_256_128)))


@lru_cache(maxsize=64)
def _flow_attrs(flows: tuple[Flow, ...]) -> bytes:
    return b"".join(_attr(X_DEST_ADDR, SUB_FLOW, f.encode()) for f in flows)


_SUBS = {X_AUTH_ENT_ID: {SUB_FQDN, SUB_HMAC_SIGNED}, X_SESSION_ID: {0},
         X_SOURCE_ADDR: {SUB_IPV6}, X_DEST_ADDR: {SUB_FLOW}, X_START_TIME: {SUB_NTP},
         X_END_TIME: {SUB_NTP}, X_NSLP_OBJECT_LIST: {0}, X_AUTHENTICATION_DATA: {0}}


# Parsed tokens, by their bytes: every MN presents its one token in each of its (up to
# five) CREATEs and in every refresh, and parsing one (attributes, flow prefixes, the
# address) cost the firewall more than the HMAC. Parsing is a function of the bytes
# alone and its result is immutable; verify_token still checks the HMAC, the validity
# times and the identity on every call. Malformed tokens are not kept (TokenError
# propagates each time); the cache holds at most TOKEN_CACHE tokens whatever is sent
# (least recently used first out), and a user that knows a token is done with (the
# firewall, when no open session is bound to it any more) drops it with forget_token:
# every re-authentication brings a new token, and in the hour soak the cache of ~1 kB a
# token grew the firewall's RSS until it filled.
TOKEN_CACHE = 4096
_parsed: OrderedDict[bytes, tuple[AuthToken, bytes, bytes]] = OrderedDict()


def decode_token(token: bytes) -> tuple[AuthToken, bytes, bytes]:
    """Parse without checking the HMAC: (claims, the object with the HMAC zeroed, HMAC)."""
    token = bytes(token)
    parsed = _parsed.get(token)
    if parsed is not None:
        _parsed.move_to_end(token)
        return parsed
    parsed = _parse_token(token)
    _parsed[token] = parsed
    if len(_parsed) > TOKEN_CACHE:
        _parsed.popitem(last=False)
    return parsed


def forget_token(token: bytes) -> None:
    """Drop a token's parse from the cache (nothing if it is not there)."""
    _parsed.pop(bytes(token), None)


def cached_tokens() -> int:
    return len(_parsed)


def _parse_token(token: bytes) -> tuple[AuthToken, bytes, bytes]:
    try:
        r = Reader(token)
        otype, words = r.u16("object header"), r.u16("object header")
        if otype & 0x3FFF != T_SESSION_AUTH or otype >> 14 == 3:
            raise TokenError(f"malformed: object header {otype:#06x}, not SESSION_AUTH")
        if words & 0xF000 or words * 4 != r.remaining:
            raise TokenError(f"malformed: object length {words & 0xFFF} words, "
                             f"{r.remaining} bytes follow")
        seen: dict[tuple[int, int], bytes] = {}
        flows: list[Flow] = []
        mac = None
        mac_at = 0
        while r.remaining:
            alen, x_type, sub = r.u16("attribute length"), r.u8(), r.u8()
            if alen < 4:
                raise TokenError(f"malformed: attribute length {alen}")
            value_at = r.pos
            value = r.take(alen - 4, f"x-type {x_type}")
            if any(r.take(pad_len(alen), "padding")):
                raise TokenError("malformed: non-zero padding")
            if mac is not None:
                raise TokenError("malformed: attribute after AUTHENTICATION_DATA")
            if sub not in _SUBS.get(x_type, ()):
                raise TokenError(f"malformed: x-type {x_type} sub-type {sub}")
            if x_type == X_DEST_ADDR:
                if len(flows) >= MAX_FLOWS:
                    raise TokenError("malformed: too many flows")
                flows.append(Flow.decode(value))
                continue
            if (x_type, sub) in seen:
                raise TokenError(f"malformed: x-type {x_type}/{sub} twice")
            if x_type == X_AUTHENTICATION_DATA:
                if len(value) != 4 + HMAC_LEN:
                    raise TokenError(f"malformed: AUTHENTICATION_DATA of {len(value)} bytes")
                mac, mac_at = value[4:], value_at + 4
            seen[(x_type, sub)] = value
    except DecodeError as err:
        if isinstance(err, TokenError):
            raise
        raise TokenError(f"malformed: {err.reason}") from None
    if mac is None:
        raise TokenError("malformed: no AUTHENTICATION_DATA")
    need = [(X_AUTH_ENT_ID, SUB_FQDN), (X_AUTH_ENT_ID, SUB_HMAC_SIGNED), (X_SESSION_ID, 0),
            (X_SOURCE_ADDR, SUB_IPV6), (X_START_TIME, SUB_NTP), (X_END_TIME, SUB_NTP),
            (X_NSLP_OBJECT_LIST, 0)]
    missing = [x for x in need if x not in seen]
    if missing or not flows:
        raise TokenError(f"malformed: missing attribute(s) {missing or [(X_DEST_ADDR, SUB_FLOW)]}")
    sizes = {(X_SOURCE_ADDR, SUB_IPV6): 16, (X_START_TIME, SUB_NTP): 8,
             (X_END_TIME, SUB_NTP): 8, (X_AUTH_ENT_ID, SUB_HMAC_SIGNED): 4}
    for k, size in sizes.items():
        if len(seen[k]) != size:
            raise TokenError(f"malformed: x-type {k[0]}/{k[1]} of {len(seen[k])} bytes")
    resv, transform = struct.unpack("!HH", seen[(X_AUTH_ENT_ID, SUB_HMAC_SIGNED)])
    if resv or transform != TRANSFORM_HMAC_SHA2_256_128:
        raise TokenError(f"malformed: HMAC transform {transform}")
    if seen[(X_NSLP_OBJECT_LIST, 0)] != struct.pack("!HH", 1, T_SESSION_AUTH):
        raise TokenError("malformed: NSLP_OBJECT_LIST must list SESSION_AUTH only")
    sid = seen[(X_SESSION_ID, 0)]
    try:
        nai = sid[8:].decode("utf-8")
        issuer = seen[(X_AUTH_ENT_ID, SUB_FQDN)].decode("ascii")
    except UnicodeDecodeError:
        raise TokenError("malformed: NAI or issuer encoding") from None
    if not 1 <= len(sid) - 8 <= MAX_NAI or not issuer:
        raise TokenError("malformed: SESSION_ID or AUTH_ENT_ID length")
    start, end = _unix(seen[(X_START_TIME, SUB_NTP)]), _unix(seen[(X_END_TIME, SUB_NTP)])
    if end <= start:
        raise TokenError("malformed: END_TIME not after START_TIME")
    key_id = struct.unpack("!I", seen[(X_AUTHENTICATION_DATA, 0)][:4])[0]
    claims = AuthToken(key_id, nai, str(ipaddress.IPv6Address(seen[(X_SOURCE_ADDR, SUB_IPV6)])),
                       sid[:8], start, end, tuple(flows), issuer)
    zeroed = token[:mac_at] + bytes(HMAC_LEN) + token[mac_at + HMAC_LEN:]
    return claims, zeroed, mac


def verify_token(token: bytes, keys: Mapping[int, bytes], now: float, *, nai: str | None = None,
                 hoa: str | None = None, skew: float = 2.0) -> AuthToken:
    """The verified claims of `token`, or TokenError (see the module docstring)."""
    claims, unsigned, mac = decode_token(token)
    key = keys.get(claims.key_id)
    if key is None:
        raise TokenError("unknown key id")
    if not hmac.compare_digest(hmac.new(key, unsigned, hashlib.sha256).digest()[:HMAC_LEN], mac):
        raise TokenError("bad signature")
    if now + skew < claims.start:
        raise TokenError("not yet valid")
    if now - skew >= claims.end:
        raise TokenError("expired")
    if nai is not None and nai != claims.nai:
        raise TokenError("identity mismatch")
    if hoa is not None and ipaddr.ip6(hoa) != ipaddr.ip6(claims.hoa):
        raise TokenError("address mismatch")
    return claims


@dataclass(frozen=True)
class TokenIssuer:
    """The PAA's minting policy: one key, a validity and the flows every MN may open."""

    key: bytes
    key_id: int
    lifetime: float = 3600.0
    flows: tuple[Flow, ...] = (Flow(),)
    issuer: str = DEFAULT_ISSUER

    def __post_init__(self):
        if len(self.key) < MIN_KEY_LEN:
            raise ValueError(f"token key must be at least {MIN_KEY_LEN} bytes")
        if self.lifetime <= 0:
            raise ValueError("token lifetime must be positive")

    def mint(self, nai: str, hoa: str, now: float) -> bytes:
        return mint_token(self.key, self.key_id, nai, hoa, self.flows, now, now + self.lifetime,
                          issuer=self.issuer)

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
