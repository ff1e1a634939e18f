"""NATFW authorization pull: the firewall's NATFW forwarder (NF) asks the PAA whether a
pinhole request may be honoured, when the CREATE carries no token or the NF is
configured to ask (the paper: "the traversed firewall is unknown to the MN in advance",
so the MN cannot always hold a token for it).

    paa = AuthzPaaCore(AuthzConfig(peers={fw_address: psk}, flows=parse_flows([...])),
                       live=lambda session_id: True)
    paa.session_open(session_id, nai, hoa, coa, lifetime, now)   # PANA session open/re-auth
    paa.session_moved(session_id, coa) / paa.session_closed(session_id)
    paa.decide(query, now) -> Verdict                            # the policy, pure
    fw = AuthzFwCore(AuthzConfig(peers={paa_address: psk}))
    fw.request(request_id, AuthzQuery(...), now) / fw.cancel(request_id)
    both: receive(data, src, port, now), handle_timer(key, now)
    fw effect: AuthzDecision(request_id, allowed, code, reason, max_lifetime, authority, nai)

Who decides. Authorization comes from what was authenticated: the PAA, with the AAA
server behind it, holds every live PANA session -- the NAI EAP authenticated, the Home
Address it assigned, the PaC's current address (its care-of address; an AUTH-verified
PANA message from a new address, e.g. the ping after a handover, moves it) and the
session lifetime. A query names the flow (source, destination, protocol, ports, the
Mobile IPv6 kind: Mobility Header with its MH type, data with a Home Address option or
with a type 2 routing header, the home address) and optionally the requester (the NI's
signalling address). It is allowed when
  1. the MN's end of the flow (the source; for a type 2 routing header flow, which runs
     CN -> MN, the destination) is the HoA or current CoA of a PANA session,
  2. that session is live (open, not terminating or superseded) and its lifetime has not
     run out,
  3. a home address the flow names is that session's HoA, and a requester, if named, is
     the session's HoA or CoA,
  4. the flow lies within what the session may open: the same allowances the NSIS token
     carries (mip6bench.aaa.token.Flow: protocol, peer prefix, port; the peer is the
     destination, or the source of a type 2 routing header flow; with sub_ports 1 both
     ports must be allowed),
and the answer names the authorizing entity (the AUTH_ENT_ID a token would carry), the
NAI the flow is attributed to and a maximum lifetime: the configured maximum, never past
the end of the PANA session. The first check that fails is the reason of a denial.

Transport, and why this one. The question goes to the PAA over the existing SA
distribution channel (mip6bench.aaa.sadist), the firewall as its third peer role with a
PSK of its own, not to the RADIUS server as an Access-Request: the RADIUS server (the
embedded one or hostapd) authenticates EAP conversations and forgets them; it knows no
care-of address, no Home Address it did not fix itself, nothing of PANA re-authentication,
handovers or termination. The PAA knows all of that, already speaks an authenticated,
replay-protected request/answer protocol to a peer in another node with retransmission,
sans-I/O cores and an answer cache, and listens on its port. So the framing, keys and
replay protection are sadist's verbatim; this module adds two message types:

    header   as sadist: version 1 | type | sender role (3 firewall, 1 PAA) | 0 | epoch |
             sequence; AES-128-GCM with K = HKDF(PSK, epoch, "mip6bench SA distribution
             v1" | sender role): the roles give the two directions different keys, and
             the fw-PAA PSK is not the HA's
    plaintext  timestamp(64, Unix ms) | transaction id(32) | body
    6 AUTHZ-REQUEST  firewall -> PAA
        flags(8): 0x01 home address follows, 0x02 requester follows, 0x04 sub_ports 1
        protocol(8) | MIPv6 kind(8): 0 none, 1 MH, 2 HAO, 3 RH2 (natfw Mip6Flow numbers)
        | MH type(8): kind 1 only | source port(16) | destination port(16)
        | source(128) | destination(128) | [home address(128)] | [requester(128)]
        | NSIS session id length(8): 1..32 | NSIS session id
        (MH flows are protocol 135 without ports; HAO and RH2 flows name the HoA)
    7 AUTHZ-ANSWER   PAA -> firewall, to the address and port the request came from
        decision(8): 0 allow, 1 deny | code(8) | max lifetime(32, s)
        | authority length(8): 1..255 | authority (ASCII) | NAI length(8) | NAI (UTF-8)
        | reason length(8) | reason (UTF-8)
        code 0 (iff allow, and then max lifetime >= 1, else 0): 0 ok, 1 unknown source,
        2 session not open, 3 session expired, 4 address mismatch, 5 flow not authorized

Replay protection as sadist (configured peers only, AEAD, timestamp window, per-epoch
sequence window). The firewall end retransmits a request from `irt` doubling `mrc`
times with the same transaction id and answers locally when it gives up (code 7
"PAA unreachable"); it keeps at most `max_pending` requests and refuses more at once
(code 6 "busy"): codes 6 and 7 never travel. The PAA end answers a repeated transaction
id from its cache (`answer_cache` seconds, at most `max_answers` entries) without
deciding again; a repeated id with a different question is dropped. Every drop is
counted and logged ("authz.drop").
"""
from __future__ import annotations

import hashlib
import ipaddress
import random
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping

from mip6bench.aaa.sadist import (AUTHZ_ANSWER, AUTHZ_REQUEST, HEADER_LEN, KNOWN_TYPES,
                                  ROLE_FW, ROLE_PAA, SADIST_PORT, VERSION, Opener, SaDistError,
                                  Sealer, open_datagram)
from mip6bench.aaa.token import DEFAULT_ISSUER, Flow
from mip6bench.codec import DecodeError, Reader
from mip6bench.sansio import Action, Effect, Event, StartTimer, StopTimer, Transmit

AUTHZ_PORT = SADIST_PORT
MIP6_NONE, MIP6_MH, MIP6_HAO, MIP6_RH2, MIP6_TUNNEL = 0, 1, 2, 3, 4
PROTO_MH = 135
F_HOME_ADDRESS, F_REQUESTER, F_SUB_PORTS = 0x01, 0x02, 0x04
MAX_SESSION_ID = 32

OK, UNKNOWN_SOURCE, SESSION_NOT_OPEN, SESSION_EXPIRED = 0, 1, 2, 3
ADDRESS_MISMATCH, FLOW_NOT_AUTHORIZED, BUSY, UNREACHABLE = 4, 5, 6, 7
CODE_NAMES = {OK: "ok", UNKNOWN_SOURCE: "unknown source", SESSION_NOT_OPEN: "session not open",
              SESSION_EXPIRED: "session expired", ADDRESS_MISMATCH: "address mismatch",
              FLOW_NOT_AUTHORIZED: "flow not authorized", BUSY: "busy",
              UNREACHABLE: "PAA unreachable"}
WIRE_CODES = frozenset(range(OK, FLOW_NOT_AUTHORIZED + 1))   # BUSY, UNREACHABLE: local only


class AuthzError(SaDistError):
    pass


def _addr(value, what: str) -> str:
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        raise ValueError(f"{what} is not an IPv6 address") from None
    if address.is_multicast or address.is_unspecified:
        raise ValueError(f"{what} {address} is not a unicast address")
    return str(address)


# ---- the question ------------------------------------------------------------------------

@dataclass(frozen=True)
class AuthzQuery:
    """One pinhole request, as the NF saw it."""

    source: str
    destination: str
    protocol: int = 0
    source_port: int = 0
    destination_port: int = 0
    mip6_kind: int = MIP6_NONE
    mh_type: int = 0
    home_address: str | None = None
    requester: str | None = None          # the NI's signalling address, if known
    session_id: bytes = b"\0" * 16        # the NSIS session (for the logs of both ends)
    sub_ports: int = 0                    # NATFW EFI: 1 opens destination port + 1 too

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "source", _addr(self.source, "source"))
        set_(self, "destination", _addr(self.destination, "destination"))
        for name in ("home_address", "requester"):
            if getattr(self, name) is not None:
                set_(self, name, _addr(getattr(self, name), name.replace("_", " ")))
        if not 0 <= self.protocol <= 255 or not 0 <= self.mh_type <= 255:
            raise ValueError("protocol and MH type are 0..255")
        if not (0 <= self.source_port <= 0xFFFF and 0 <= self.destination_port <= 0xFFFF):
            raise ValueError("ports are 0..65535")
        if self.sub_ports not in (0, 1):
            raise ValueError("sub_ports is 0 or 1")
        if self.mip6_kind not in (MIP6_NONE, MIP6_MH, MIP6_HAO, MIP6_RH2, MIP6_TUNNEL):
            raise ValueError(f"MIPv6 kind {self.mip6_kind}")
        if self.mip6_kind != MIP6_MH and self.mh_type:
            raise ValueError("an MH type only for Mobility Header flows")
        if self.mip6_kind == MIP6_MH and (self.protocol != PROTO_MH or self.source_port
                                           or self.destination_port or self.sub_ports):
            raise ValueError("a Mobility Header flow is protocol 135 without ports")
        if self.mip6_kind in (MIP6_HAO, MIP6_RH2, MIP6_TUNNEL) and self.home_address is None:
            raise ValueError("HAO, RH2 and tunnel flows name the home address")
        if not 1 <= len(self.session_id) <= MAX_SESSION_ID:
            raise ValueError(f"NSIS session id is 1..{MAX_SESSION_ID} bytes")
        set_(self, "session_id", bytes(self.session_id))

    @property
    def mn_address(self) -> str:
        """The MN's end of the flow: RH2 data runs CN -> MN, everything else MN -> CN."""
        return self.destination if self.mip6_kind == MIP6_RH2 else self.source

    @property
    def peer(self) -> tuple[str, int]:
        """The other end (address, port): what a token's flow allowance restricts."""
        if self.mip6_kind == MIP6_RH2:
            return self.source, self.source_port
        return self.destination, self.destination_port

    def describe(self) -> str:
        kind = {MIP6_MH: f" mh type {self.mh_type}", MIP6_HAO: " with HAO",
                MIP6_RH2: " with RH2", MIP6_TUNNEL: " tunnel"}.get(self.mip6_kind, "")
        return (f"proto {self.protocol}{kind} {self.source}:{self.source_port} -> "
                f"{self.destination}:{self.destination_port}")

    def encode(self) -> bytes:
        flags = ((F_HOME_ADDRESS if self.home_address else 0)
                 | (F_REQUESTER if self.requester else 0)
                 | (F_SUB_PORTS if self.sub_ports else 0))
        out = struct.pack("!BBBBHH", flags, self.protocol, self.mip6_kind, self.mh_type,
                          self.source_port, self.destination_port)
        out += ipaddress.IPv6Address(self.source).packed
        out += ipaddress.IPv6Address(self.destination).packed
        for value in (self.home_address, self.requester):
            if value is not None:
                out += ipaddress.IPv6Address(value).packed
        return out + bytes([len(self.session_id)]) + self.session_id

    @classmethod
    def decode(cls, r: Reader) -> "AuthzQuery":
        flags, proto, kind, mh, sport, dport = struct.unpack("!BBBBHH",
                                                             r.take(8, "AUTHZ-REQUEST"))
        if flags & ~(F_HOME_ADDRESS | F_REQUESTER | F_SUB_PORTS):
            raise AuthzError(f"unknown flags {flags:#04x}")
        source = ipaddress.IPv6Address(r.take(16, "source"))
        destination = ipaddress.IPv6Address(r.take(16, "destination"))
        hoa = ipaddress.IPv6Address(r.take(16, "home address")) \
            if flags & F_HOME_ADDRESS else None
        requester = ipaddress.IPv6Address(r.take(16, "requester")) \
            if flags & F_REQUESTER else None
        size = r.u8("session id length")
        sid = r.take(size, "session id")
        try:
            return cls(str(source), str(destination), proto, sport, dport, kind, mh,
                       None if hoa is None else str(hoa),
                       None if requester is None else str(requester), sid,
                       1 if flags & F_SUB_PORTS else 0)
        except ValueError as err:
            raise AuthzError(str(err)) from None


# ---- the answer ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    allowed: bool
    code: int
    reason: str
    authority: str
    nai: str | None = None
    max_lifetime: int = 0      # seconds; >= 1 when allowed, 0 when denied

    def __post_init__(self):
        if self.code not in WIRE_CODES:
            raise ValueError(f"answer code {self.code}")
        if self.allowed != (self.code == OK):
            raise ValueError("code 0 if and only if allowed")
        if self.allowed != (self.max_lifetime >= 1) or not 0 <= self.max_lifetime <= 0xFFFFFFFF:
            raise ValueError("max lifetime >= 1 if and only if allowed")
        authority = self.authority.encode("ascii")   # UnicodeEncodeError is a ValueError
        if not 1 <= len(authority) <= 255 or not all(0x21 <= b <= 0x7E for b in authority):
            raise ValueError("authority is 1..255 printable ASCII characters")
        if len((self.nai or "").encode("utf-8")) > 255:
            raise ValueError("NAI is at most 255 bytes")

    def encode(self) -> bytes:
        authority = self.authority.encode("ascii")
        nai = (self.nai or "").encode("utf-8")
        reason = _clip(self.reason)
        return (struct.pack("!BBI", 0 if self.allowed else 1, self.code, self.max_lifetime)
                + bytes([len(authority)]) + authority + bytes([len(nai)]) + nai
                + bytes([len(reason)]) + reason)

    @classmethod
    def decode(cls, r: Reader) -> "Verdict":
        decision, code, lifetime = struct.unpack("!BBI", r.take(6, "AUTHZ-ANSWER"))
        if decision not in (0, 1):
            raise AuthzError(f"decision {decision}")
        if code not in WIRE_CODES:
            raise AuthzError(f"answer code {code}")
        authority = r.take(r.u8("authority length"), "authority")
        nai = r.take(r.u8("nai length"), "nai")
        reason = r.take(r.u8("reason length"), "reason")
        try:
            return cls(decision == 0, code, reason.decode("utf-8"), authority.decode("ascii"),
                       nai.decode("utf-8") or None, lifetime)
        except UnicodeDecodeError:
            raise AuthzError("authority, NAI or reason encoding") from None
        except ValueError as err:
            raise AuthzError(str(err)) from None


def _clip(text: str) -> bytes:
    """UTF-8 of `text`, at most 255 bytes, cut at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= 255:
        return raw
    return raw[:255].decode("utf-8", "ignore").encode("utf-8")


@dataclass(frozen=True)
class AuthzMessage:
    type: int
    txid: int
    timestamp_ms: int
    query: AuthzQuery | None = None       # AUTHZ-REQUEST
    verdict: Verdict | None = None        # AUTHZ-ANSWER

    def plaintext(self) -> bytes:
        head = struct.pack("!QI", self.timestamp_ms, self.txid)
        if self.type == AUTHZ_REQUEST:
            return head + self.query.encode()
        if self.type == AUTHZ_ANSWER:
            return head + self.verdict.encode()
        raise ValueError(f"not an authorization message type: {self.type}")

    @classmethod
    def parse(cls, msg_type: int, data: bytes) -> "AuthzMessage":
        r = Reader(data)
        ts, txid = struct.unpack("!QI", r.take(12, "message header"))
        if msg_type == AUTHZ_REQUEST:
            msg = cls(msg_type, txid, ts, query=AuthzQuery.decode(r))
        elif msg_type == AUTHZ_ANSWER:
            msg = cls(msg_type, txid, ts, verdict=Verdict.decode(r))
        else:
            raise AuthzError(f"message type {msg_type} on the authorization channel")
        r.expect_end(KNOWN_TYPES[msg_type])
        return msg


def is_authz_datagram(data: bytes) -> bool:
    """Whether a datagram on the SA distribution port is the firewall's (sender role 3),
    for the PAA to hand it to AuthzPaaCore instead of the HA channel's core."""
    return len(data) >= HEADER_LEN and data[0] == VERSION and data[2] == ROLE_FW


# ---- configuration and effects -------------------------------------------------------------

@dataclass
class AuthzConfig:
    peers: Mapping[str, bytes]          # peer address -> PSK (>= 16 bytes)
    port: int = AUTHZ_PORT              # the PAA's port (where the firewall sends)
    window: float = 30.0                # timestamp window, s
    irt: float = 0.5                    # firewall: initial retransmission timeout, s
    mrc: int = 4                        # firewall: retransmissions before giving up
    max_pending: int = 256              # firewall: requests awaiting an answer
    wall_offset: float = 0.0            # wall clock = now + wall_offset (Unix seconds)
    answer_cache: float = 60.0          # PAA: repeated transaction ids answered for, s
    max_answers: int = 4096             # PAA: cached answers at most
    authority: str = DEFAULT_ISSUER     # PAA: the authorizing entity it names
    flows: tuple[Flow, ...] = (Flow(),)  # PAA: what a session may open (as in its token)
    max_lifetime: int = 3600            # PAA: longest authorization granted, s
    max_sessions: int = 100_000         # PAA: sessions it tracks (PaaConfig's default)

    def __post_init__(self):
        peers = {}
        for address, psk in dict(self.peers).items():
            if not isinstance(psk, (bytes, bytearray)) or len(psk) < 16:
                raise ValueError(f"authorization peer {address}: PSK must be >= 16 bytes")
            peers[str(ipaddress.IPv6Address(address))] = bytes(psk)
        self.peers = peers
        if self.window <= 0 or self.irt <= 0 or self.mrc < 0:
            raise ValueError("window and irt must be positive, mrc >= 0")
        if self.max_pending < 1 or self.max_answers < 1 or self.max_sessions < 1:
            raise ValueError("max_pending, max_answers and max_sessions must be >= 1")
        if self.max_lifetime < 1:
            raise ValueError("max_lifetime must be >= 1 s")
        self.flows = tuple(self.flows)
        if not self.flows:
            raise ValueError("no flow allowances: nothing could ever be authorized")
        Verdict(True, OK, "", self.authority, None, 1)   # checks the authority's form


@dataclass(frozen=True)
class AuthzDecision(Effect):
    """At the firewall: the answer to request `request_id` (codes 6, 7 are local)."""
    request_id: int
    allowed: bool
    code: int
    reason: str
    max_lifetime: int | None = None
    authority: str | None = None
    nai: str | None = None


# ---- what both ends share --------------------------------------------------------------------

class _End:
    role = 0
    peer_role = 0
    name = ""

    def __init__(self, config: AuthzConfig, rng: random.Random | None = None):
        self.config = config
        self.rng = rng or random.SystemRandom()
        self.counters: Counter[str] = Counter()
        self._sealer = Sealer(self.role, self.rng)
        self._opener = Opener(self.peer_role, config.window, parse=AuthzMessage.parse)

    def _wall_ms(self, now: float) -> int:
        return int((now + self.config.wall_offset) * 1000)

    def _seal(self, peer: str, msg: AuthzMessage, port: int) -> Transmit:
        return Transmit(self._sealer.seal(self.config.peers[peer], msg), dst=peer, port=port)

    def _open(self, data: bytes, src: str, now: float, expect: int
              ) -> tuple[str, AuthzMessage] | list:
        try:
            peer, msg = open_datagram(self.config.peers, self._opener, data, src, now,
                                      self._wall_ms(now))
        except (SaDistError, DecodeError) as err:
            return self._drop(err.reason, src=src)
        if msg.type != expect:
            return self._drop("unexpected message", type=KNOWN_TYPES[msg.type])
        return peer, msg

    def _drop(self, reason: str, **fields) -> list[Action]:
        self.counters[f"drop: {reason}"] += 1
        return [Event("authz.drop", {"role": self.name, "reason": reason, **fields})]


# ---- the PAA end -------------------------------------------------------------------------------

@dataclass
class _Session:
    session_id: int
    nai: str | None
    hoa: str | None
    coa: str
    expires: float | None        # None: no lifetime
    opened: float

    def addresses(self) -> set[str]:
        return {a for a in (self.hoa, self.coa) if a}


class AuthzPaaCore(_End):
    """Answers the firewall's questions from the PAA's live PANA sessions. `live(id)` is
    asked at decision time whether the PAA still considers a session open (default: yes,
    for a core used on its own)."""

    role, peer_role, name = ROLE_PAA, ROLE_FW, "paa"

    def __init__(self, config: AuthzConfig, rng: random.Random | None = None,
                 live: Callable[[int], bool] | None = None):
        super().__init__(config, rng)
        self.live = live or (lambda session_id: True)
        self.sessions: dict[int, _Session] = {}
        self._by_address: dict[str, set[int]] = {}
        # (peer, txid) -> (digest of the question, verdict, cached until)
        self._answers: OrderedDict[tuple[str, int], tuple[bytes, Verdict, float]] = OrderedDict()

    # ---- the session table (the PAA's composition calls these)
    def session_open(self, session_id: int, nai: str | None, hoa: str | None, coa: str,
                     lifetime: float | None, now: float) -> list[Action]:
        """A PANA session opened or was re-authenticated (new lifetime from now)."""
        old = self.sessions.get(session_id)
        if old is None and len(self.sessions) >= self.config.max_sessions:
            self._purge_expired(now)
            if len(self.sessions) >= self.config.max_sessions:
                return self._drop("session table full", session_id=session_id)
        self._unindex(session_id)
        s = _Session(session_id, nai, str(ipaddress.IPv6Address(hoa)) if hoa else None,
                     str(ipaddress.IPv6Address(coa)),
                     now + lifetime if lifetime else None, old.opened if old else now)
        self.sessions[session_id] = s
        self._index(s)
        return []

    def session_moved(self, session_id: int, coa: str) -> None:
        s = self.sessions.get(session_id)
        if s is None:
            return
        self._unindex(session_id)
        s.coa = str(ipaddress.IPv6Address(coa))
        self._index(s)

    def session_closed(self, session_id: int) -> None:
        self._unindex(session_id)
        self.sessions.pop(session_id, None)

    def _index(self, s: _Session) -> None:
        for address in s.addresses():
            self._by_address.setdefault(address, set()).add(s.session_id)

    def _unindex(self, session_id: int) -> None:
        s = self.sessions.get(session_id)
        if s is None:
            return
        for address in s.addresses():
            ids = self._by_address.get(address)
            if ids is not None:
                ids.discard(session_id)
                if not ids:
                    del self._by_address[address]

    def _purge_expired(self, now: float) -> None:
        for sid in [sid for sid, s in self.sessions.items()
                    if s.expires is not None and s.expires <= now]:
            self.session_closed(sid)

    # ---- the policy
    def decide(self, query: AuthzQuery, now: float) -> Verdict:
        deny = lambda code, why, nai=None: Verdict(False, code, why, self.config.authority,  # noqa: E731
                                                   nai, 0)
        mn = query.mn_address
        candidates = sorted((self.sessions[sid] for sid in self._by_address.get(mn, ())),
                            key=lambda s: s.opened, reverse=True)
        if not candidates:
            return deny(UNKNOWN_SOURCE, f"{mn} is neither the home nor the care-of address "
                                        f"of a live PANA session")
        session = None
        for s in candidates:
            if s.expires is not None and now >= s.expires:
                continue
            if self.live(s.session_id):
                session = s
                break
        if session is None:
            newest = candidates[0]
            if newest.expires is not None and now >= newest.expires:
                return deny(SESSION_EXPIRED, f"the PANA session of {mn} has expired",
                            newest.nai)
            return deny(SESSION_NOT_OPEN, f"the PANA session of {mn} is not open", newest.nai)
        nai = session.nai
        if query.home_address is not None and query.home_address != session.hoa:
            return deny(ADDRESS_MISMATCH, f"home address {query.home_address} is not the "
                                          f"session's ({session.hoa})", nai)
        if query.requester is not None and query.requester not in session.addresses():
            return deny(ADDRESS_MISMATCH, f"requester {query.requester} is neither the "
                                          f"session's home nor care-of address", nai)
        peer, port = query.peer
        ports = (port, port + 1) if query.sub_ports and port < 0xFFFF else (port,)
        if query.sub_ports and port == 0xFFFF:
            return deny(FLOW_NOT_AUTHORIZED, "sub_ports past port 65535", nai)
        for p in ports:
            if not any(f.matches(query.protocol, peer, p) for f in self.config.flows):
                return deny(FLOW_NOT_AUTHORIZED, f"protocol {query.protocol} to {peer} port "
                                                 f"{p} is not within the session's "
                                                 f"authorization", nai)
        lifetime = self.config.max_lifetime
        if session.expires is not None:
            lifetime = min(lifetime, int(session.expires - now))
        if lifetime < 1:
            return deny(SESSION_EXPIRED, "the PANA session ends within a second", nai)
        which = "home" if mn == session.hoa else "care-of"
        return Verdict(True, OK, f"{mn} is the {which} address of {nai or 'an'} "
                                 f"authenticated PANA session {session.session_id}",
                       self.config.authority, nai, lifetime)

    # ---- the wire
    def receive(self, data: bytes, src: str, port: int, now: float) -> list[Action]:
        opened = self._open(data, src, now, AUTHZ_REQUEST)
        if isinstance(opened, list):
            return opened
        peer, msg = opened
        self.counters["requests"] += 1
        digest = hashlib.sha256(msg.query.encode()).digest()[:16]
        key = (peer, msg.txid)
        hit = self._answers.get(key)
        if hit is not None and hit[2] >= now:
            if hit[0] != digest:
                return self._drop("transaction id reused for another question", txid=msg.txid)
            self.counters["repeated request answered"] += 1
            self.counters["answers"] += 1
            return [self._seal(peer, AuthzMessage(AUTHZ_ANSWER, msg.txid, self._wall_ms(now),
                                                  verdict=hit[1]), port)]
        verdict = self.decide(msg.query, now)
        self._answers[key] = (digest, verdict, now + self.config.answer_cache)
        self._answers.move_to_end(key)
        while len(self._answers) > self.config.max_answers:
            self._answers.popitem(last=False)
        self.counters["allowed" if verdict.allowed else f"denied: {CODE_NAMES[verdict.code]}"] += 1
        self.counters["answers"] += 1
        q = msg.query
        return [self._seal(peer, AuthzMessage(AUTHZ_ANSWER, msg.txid, self._wall_ms(now),
                                              verdict=verdict), port),
                Event("authz.answered", {"role": "paa", "firewall": peer,
                                         "nsis_session": q.session_id.hex(),
                                         "flow": q.describe(), "allowed": verdict.allowed,
                                         "code": verdict.code, "reason": verdict.reason,
                                         "nai": verdict.nai,
                                         "max_lifetime": verdict.max_lifetime})]

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        return []   # the PAA end arms none: it answers at once


# ---- the firewall end ---------------------------------------------------------------------

@dataclass
class _Pending:
    request_id: int
    peer: str
    query: AuthzQuery
    timeout: float
    attempts: int
    first_sent: float


class AuthzFwCore(_End):
    """The firewall's end: one request per pinhole decision the NF defers."""

    role, peer_role, name = ROLE_FW, ROLE_PAA, "fw"

    def __init__(self, config: AuthzConfig, rng: random.Random | None = None):
        super().__init__(config, rng)
        self._pending: dict[int, _Pending] = {}       # txid -> request
        self._by_request: dict[int, int] = {}         # request id -> txid
        self._next_txid = self.rng.getrandbits(32)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def _timer(self, txid: int) -> tuple:
        return ("authz-fw", "rtx", txid)

    def request(self, request_id: int, query: AuthzQuery, now: float,
                paa: str | None = None) -> list[Action]:
        if paa is None:
            if len(self.config.peers) != 1:
                raise ValueError("name the PAA to ask")
            paa = next(iter(self.config.peers))
        paa = str(ipaddress.IPv6Address(paa))
        if paa not in self.config.peers:
            raise ValueError(f"no authorization channel to {paa}")
        if request_id in self._by_request:
            self.counters["duplicate request id"] += 1
            return [Event("authz.duplicate", {"role": "fw", "request_id": request_id})]
        if len(self._pending) >= self.config.max_pending:
            self.counters["refused: busy"] += 1
            return [AuthzDecision(request_id, False, BUSY,
                                  f"{len(self._pending)} authorization requests pending"),
                    Event("authz.decision", {"role": "fw", "request_id": request_id,
                                             "allowed": False, "code": BUSY,
                                             "reason": "busy"})]
        while True:
            self._next_txid = (self._next_txid + 1) & 0xFFFFFFFF
            if self._next_txid not in self._pending:
                break
        txid = self._next_txid
        self._pending[txid] = _Pending(request_id, paa, query, self.config.irt, 1, now)
        self._by_request[request_id] = txid
        self.counters["requests"] += 1
        return [self._send(txid, now), StartTimer(self._timer(txid), now + self.config.irt),
                Event("authz.sent", {"role": "fw", "request_id": request_id, "paa": paa,
                                     "nsis_session": query.session_id.hex(),
                                     "flow": query.describe()})]

    def cancel(self, request_id: int) -> list[Action]:
        """The NF no longer needs the answer (its session went away)."""
        txid = self._by_request.pop(request_id, None)
        if txid is None:
            return []
        del self._pending[txid]
        self.counters["cancelled"] += 1
        return [StopTimer(self._timer(txid))]

    def _send(self, txid: int, now: float) -> Transmit:
        p = self._pending[txid]
        msg = AuthzMessage(AUTHZ_REQUEST, txid, self._wall_ms(now), query=p.query)
        return self._seal(p.peer, msg, self.config.port)

    def receive(self, data: bytes, src: str, port: int, now: float) -> list[Action]:
        opened = self._open(data, src, now, AUTHZ_ANSWER)
        if isinstance(opened, list):
            return opened
        peer, msg = opened
        p = self._pending.get(msg.txid)
        if p is None or p.peer != peer:
            return self._drop("answer to no pending request", txid=msg.txid)
        del self._pending[msg.txid]
        del self._by_request[p.request_id]
        v = msg.verdict
        self.counters["allowed" if v.allowed else "denied"] += 1
        return [StopTimer(self._timer(msg.txid)),
                AuthzDecision(p.request_id, v.allowed, v.code, v.reason,
                              v.max_lifetime if v.allowed else None, v.authority, v.nai),
                Event("authz.decision", {"role": "fw", "request_id": p.request_id,
                                         "allowed": v.allowed, "code": v.code,
                                         "reason": v.reason, "nai": v.nai,
                                         "authority": v.authority,
                                         "max_lifetime": v.max_lifetime,
                                         "attempts": p.attempts,
                                         "rtt_ms": round((now - p.first_sent) * 1000, 3)})]

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        if not (isinstance(key, tuple) and len(key) == 3 and key[:2] == ("authz-fw", "rtx")):
            return []
        txid = key[2]
        p = self._pending.get(txid)
        if p is None:
            return []
        if p.attempts > self.config.mrc:
            del self._pending[txid]
            del self._by_request[p.request_id]
            self.counters["gave up"] += 1
            return [AuthzDecision(p.request_id, False, UNREACHABLE,
                                  f"no answer from the PAA {p.peer} after {p.attempts} "
                                  f"attempts"),
                    Event("authz.gave_up", {"role": "fw", "request_id": p.request_id,
                                            "paa": p.peer, "attempts": p.attempts})]
        p.attempts += 1
        p.timeout *= 2
        self.counters["retransmission"] += 1
        return [self._send(txid, now), StartTimer(self._timer(txid), now + p.timeout),
                Event("authz.retransmit", {"role": "fw", "request_id": p.request_id,
                                           "attempt": p.attempts})]
