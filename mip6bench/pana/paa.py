"""Sans-I/O PANA Authentication Agent (PAA), RFC 5191 with the RFC 5609 PAA state machine,
relayed PaCs (RFC 6345) and the Mobile IPv6 bootstrapping extension (see `mip6`).

    paa = PaaCore(PaaConfig(...), rng=None)
    actions = paa.receive(data, src, now, port)        # every datagram on UDP 716
    actions = paa.aaa_result(session_id, kind, eap_payload, msk, attributes, now)
    actions = paa.handle_timer(key, now)
    actions = paa.ping(session_id, now) / paa.reauthenticate(session_id, now)
    actions = paa.terminate(session_id, now, cause) / paa.start_session(address, now)

Each returns mip6bench.sansio actions: Transmit, StartTimer/StopTimer, Event and the
effects of mip6bench.pana.effects (SendToAAA, AaaCancel, PanaSessionOpen/Closed,
MipSaEstablished/Revoked). `paa.sessions` maps session id -> PaaSession;
`paa.counters` counts dropped messages by reason. Timer keys are
("pana-paa", kind, session_id).

EAP: the PAA sends the first EAP request of every (re-)authentication itself, an
EAP-Request/Identity it builds or whatever `first_eap_request(session_id)` returns, and
forwards every EAP response to the AAA backend with SendToAAA; see `eap_interface`.
Where the first one goes is `eap_in_first_par` (RFC 5609's OPTIMIZED_INIT, a choice of
the PAA: RFC 5191 4.1 lets the initial PAR carry an EAP-Payload or not):
    "always"  in PAR[S] (the optimized handshake: one round trip less);
    "never"   in the first PAR after the PAN[S] (the plain handshake);
    "auto"    (the default) in PAR[S], unless the PaC answers that PAR[S] only with
              repeated PCIs: a PaC stops retransmitting its PCI once it has accepted a
              PAR[S] (RFC 5191 section 9, RFC 5609 INITIAL state), so
              `fallback_after_pcis` (2) more PCIs from the same address and port
              while the PAR[S] is unanswered mean it ignored a PAR[S] with an
              EAP-Payload (OpenPANA's PaC does). The PAA then starts a plain
              handshake for it: a new session whose PAR[S] has no EAP-Payload
              (event pana.handshake_fallback, counter "PaC ignored EAP in PAR[S]"),
              its sequence number the ignored PAR[S]'s plus one (the initial one is
              the PAA's choice; OpenPANA's PaC keeps the first PAR[S]'s number even
              when it ignores that message, and drops a PAR[S] out of that order).
              The first handshake stops retransmitting but stays until either
              one gets its PAN[S] (a PAR[S] that crossed the PCIs may still be
              answered), and the other then goes. A PaC whose plain handshake
              completed that way is remembered (by address, and relay if any: its
              port may change when it restarts; at most `plain_peers_max`), and PCIs
              from there get the plain PAR[S] at once.

Session flow (RFC 5609 state names in brackets):
    PCI -> PAR[S] (algorithms offered, EAP-Request/Identity)      HANDSHAKE [INITIAL]
    PAN[S] (algorithms chosen, EAP response) -> SendToAAA          WAIT_AAA [WAIT_EAP_MSG]
    aaa_result("continue") -> PAR (Nonce first, EAP request)       WAIT_PAN [WAIT_PAN_OR_PAR]
    PAN (Nonce first, EAP response) -> SendToAAA                   WAIT_AAA
    aaa_result("success"/"failure") -> PAR[C] (Result-Code, EAP, Session-Lifetime,
        Key-Id, extension AVPs, AUTH)                              WAIT_SUCC_PAN/WAIT_FAIL_PAN
    PAN[C] -> OPEN (success) or the session is removed (failure)
    Identity: the session's NAI is the identity the AAA backend reports the EAP method
        authenticated (aaa_result attributes "nai"), never the EAP Identity Response
        (a claim, kept as claimed_nai for the phase). A success without one, or one that
        differs from the claim or from the NAI the session already has, is answered
        PANA_AUTHORIZATION_REJECTED (counter "identity mismatch", event
        pana.identity_mismatch): no HoA, MIPv6 SA, token or supersession for it.
    OPEN: PNR[P]/PNA[P] pings, PNR[A] or reauthenticate() -> new EAP conversation
        (state WAIT_AAA/WAIT_PAN again, access continues), PTR/PTA termination,
        session lifetime expiry removes the session.
    Superseded: when a newer session of the same NAI succeeds (its final PAR is sent),
        every older one that was ever open loses its MIPv6 SAs at once
        (MipSaRevoked "superseded", event pana.superseded) and gets a PTR with
        Termination-Cause ADMINISTRATIVE signed with its own key, retransmitted per
        REQ_IRT/REQ_MRC; it is removed (PanaSessionClosed "superseded") on the PTA
        or when the PTR's retransmissions give up.

Relayed PaCs: a PRY from a configured relay element (`PaaConfig.relays`; from anywhere
else it is dropped) carries PaC-Information and the PaC's message; the session remembers
the relay and every message to that PaC goes back inside a PRY.

The MIPv6 SA is announced (MipSaEstablished) when the final PAR is sent, not when its
answer arrives, so the runtime's push to the HA races ahead of the MN's Binding Update
(the MN can send one as soon as it has the final PAR). If that PAR is never answered
the SA is revoked with the session.
"""
from __future__ import annotations

import enum
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Hashable

from .. import ipaddr
from ..codec import DecodeError
from ..sansio import Action, Event, Transmit
from . import mip6
from .channel import (REQ_RETRANSMIT, SEQ_MOD, Channel, PanaSa, Peer, RetransmitPolicy,
                      TimerTable, auth_problem, describe)
from .crypto import (AUTH_HMAC_SHA1_160, AUTH_HMAC_SHA2_256_128, PRF_HMAC_SHA1,
                     PRF_HMAC_SHA2_256, pana_auth_key)
from .eap_interface import identity_from_response, identity_request, result_packet
from .effects import (REKEYED, AaaCancel, MipSaEstablished, MipSaRevoked, PanaSessionClosed,
                      PanaSessionOpen, SendToAAA)
from .message import (AUTH, FLAG_C, FLAG_P, FLAG_R, FLAG_S, NONCE_LEN, NOTIFICATION,
                      PANA_AUTHENTICATION_REJECTED, PANA_AUTHORIZATION_REJECTED, PANA_PORT,
                      PANA_SUCCESS, PCI, RELAY, TERMINATION, TERMINATION_ADMINISTRATIVE,
                      Message, decode_message, eap_payload_avp, integrity_algorithm_avp,
                      key_id_avp, nonce_avp, pac_information_avp, prf_algorithm_avp,
                      relayed_message_avp, result_code_avp, session_lifetime_avp,
                      termination_cause_avp)


class PaaState(str, enum.Enum):
    HANDSHAKE = "handshake"          # PAR[S] sent
    WAIT_PAC_EAP = "wait_pac_eap"    # PaC owes an EAP response in a PAR of its own
    WAIT_AAA = "wait_aaa"            # EAP response forwarded, AAA answer pending
    WAIT_PAN = "wait_pan"            # PAR with an EAP request outstanding
    WAIT_SUCC_PAN = "wait_succ_pan"  # PAR[C] success sent
    WAIT_FAIL_PAN = "wait_fail_pan"  # PAR[C] failure sent
    OPEN = "open"
    TERMINATING = "terminating"      # PTR sent


def _normal(address: str) -> str:
    try:
        return ipaddr.text(address)
    except ValueError:
        return address


def _host(peer: Peer) -> tuple[str, str | None]:
    return peer.address, peer.relay[0] if peer.relay else None


def _uncount(counter: Counter, key) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _timer(kind: str, session_id: int) -> tuple:
    return ("pana-paa", kind, session_id)


@dataclass
class PaaConfig:
    session_lifetime: int = 3600                 # seconds, Session-Lifetime AVP
    prf_algorithms: tuple[int, ...] = (PRF_HMAC_SHA1, PRF_HMAC_SHA2_256)  # offered, in order
    integrity_algorithms: tuple[int, ...] = (AUTH_HMAC_SHA1_160, AUTH_HMAC_SHA2_256_128)
    offer_pana_sa: bool = True                   # False: no algorithms, hence no AUTH ever
    # The first EAP request in PAR[S]: "always", "never" (in the PAR after the PAN[S]),
    # or "auto": in PAR[S], falling back to the plain handshake for a PaC that answers
    # it only with `fallback_after_pcis` repeated PCIs (see the module docstring).
    eap_in_first_par: str = "auto"
    fallback_after_pcis: int = 2
    plain_peers_max: int = 1024
    # RFC 6345 relay elements (their addresses) whose PRY messages are served; a PRY's
    # PaC-Information decides where the PAA's answers go, so a PRY from anywhere else is
    # dropped ("relay not configured"). Empty: no relayed PaCs.
    relays: frozenset[str] | tuple[str, ...] = ()
    mip6: mip6.Mip6Policy | None = None          # None: a plain PAA, ignores the extension
    authorize: Callable[[str | None, dict], bool] | None = None  # False: Result-Code 2
    # The first EAP request of each (re-)authentication of a session, e.g. from the
    # runtime's pass-through authenticator (EapPassThrough.start()); None: the PAA
    # builds an EAP-Request/Identity itself.
    first_eap_request: Callable[[int], bytes] | None = None
    auth_timeout: float = 60.0                   # RFC 5609 FAILED_SESS_TIMEOUT
    max_sessions: int = 100_000
    # Half-open sessions (PAR[S] sent, no PAN[S] yet): a PCI costs a stranger one spoofed
    # datagram, so they are bounded in all and per PaC address, and the PAR[S] is
    # retransmitted fewer times than other requests (at most 1 + mrc datagrams toward an
    # address that never answered).
    max_handshakes: int = 1024
    max_handshakes_per_source: int = 4
    handshake_retransmit: RetransmitPolicy = RetransmitPolicy(irt=1.0, mrt=30.0, mrc=3,
                                                              mrd=0.0)
    closed_linger: float = 30.0                  # answer retransmitted PTRs after close
    req_retransmit: RetransmitPolicy = REQ_RETRANSMIT

    def __post_init__(self):
        if self.eap_in_first_par not in EAP_IN_FIRST_PAR:
            raise ValueError(f"eap_in_first_par={self.eap_in_first_par!r}: choose one of "
                             f"{', '.join(EAP_IN_FIRST_PAR)}")
        if self.fallback_after_pcis < 1:
            raise ValueError("fallback_after_pcis must be at least 1")


EAP_IN_FIRST_PAR = ("auto", "always", "never")


@dataclass
class _MipSa:
    spi: int
    hoa: str
    ha: str


@dataclass
class PaaSession:
    session_id: int
    channel: Channel
    state: PaaState
    created: float
    nai: str | None = None              # the identity the EAP method authenticated
    claimed_nai: str | None = None      # this phase's EAP Identity Response (unauthenticated)
    reauth: bool = False                # current phase is a re-authentication
    ever_open: bool = False
    i_par: bytes = b""
    i_pan: bytes = b""
    prf_alg: int | None = None
    integrity_alg: int | None = None
    paa_nonce: bytes | None = None
    pac_nonce: bytes | None = None
    last_eap_id: int = 0
    mip6_request: int = 0
    sa_proposal: mip6.SaParameters | None = None
    hoa: str | None = None
    mip_sa: _MipSa | None = None        # the SA in force
    pending_mip_sa: _MipSa | None = None  # announced with the PAR[C] in flight
    pending_sa: PanaSa | None = field(default=None, repr=False)
    result_reason: str = ""
    closing_reason: str = ""            # why the PTR we sent ends the session
    lifetime: int | None = None
    aaa_pending: bool = False
    half_open: bool = False             # counted in PaaCore's half-open handshakes
    handshake_address: str = ""
    eap_in_start: bool = True           # this session's PAR[S] carried the EAP request
    repeated_pcis: int = 0              # PCIs from its PaC while its PAR[S] was unanswered
    sibling: int | None = None          # the other handshake of an "auto" fallback pair

    @property
    def peer(self) -> Peer:
        return self.channel.peer


@dataclass
class _Tombstone:
    peer: Peer
    request: bytes
    answer: bytes
    expires: float


class PaaCore:
    def __init__(self, config: PaaConfig | None = None, rng: random.Random | None = None):
        self.config = config or PaaConfig()
        self.rng = rng or random.SystemRandom()
        self.sessions: dict[int, PaaSession] = {}
        self.counters: Counter[str] = Counter()
        self.timers = TimerTable()
        self._handshakes: dict[Peer, int] = {}
        self._half_open: Counter[str] = Counter()   # PaC address -> sessions in HANDSHAKE
        self._half_open_total = 0
        self._tombstones: dict[int, _Tombstone] = {}
        # Indexes over the live sessions, so that an authentication does not scan them
        # all (three scans per authentication made the PAA's work grow with the number
        # of MNs: ~1 ms each at 1,000): session ids by authenticated NAI (superseding),
        # how many sessions hold each Home Address and each MIPv6 SA's SPI (uniqueness).
        # Kept by _set_nai / _set_hoa / _set_mip_sas and _remove; _index_problems()
        # checks them against the sessions (tests).
        self._by_nai: dict[str, dict[int, None]] = {}
        self._hoa_users: Counter[str] = Counter()
        self._spi_users: Counter[int] = Counter()
        policy = self.config.mip6
        self._assign_hoa = policy.hoa_assigner() if policy else None
        self._relays = frozenset(_normal(a) for a in self.config.relays)
        # the algorithms offered in every PAR[S], as AVPs
        self._algorithm_avps = \
            [prf_algorithm_avp(a) for a in self.config.prf_algorithms] + \
            [integrity_algorithm_avp(a) for a in self.config.integrity_algorithms]
        # Hosts whose PaC completed only the plain handshake after ignoring EAP in PAR[S]
        # ("auto"), by (address, relay address): a PaC's port is often ephemeral (OpenPANA's
        # is), so it changes when the PaC restarts. Insertion-ordered, the oldest
        # forgotten beyond plain_peers_max.
        self._plain_peers: dict[tuple[str, str | None], None] = {}

    # ---- input from the network
    def receive(self, data: bytes, src: str, now: float, port: int = PANA_PORT) -> list[Action]:
        try:
            msg = decode_message(data)
            peer = Peer(src, port)
            if msg.type == RELAY:
                if _normal(src) not in self._relays:
                    return self._drop("relay not configured", msg, detail=src)
                info = msg.pac_information
                msg = decode_message(msg.relayed_message)
                if msg.type == RELAY:
                    return self._drop("nested relay", msg)
                peer = Peer(info.address, info.port, relay=(src, port))
            return self._dispatch(msg, peer, now)
        except DecodeError as err:
            return self._drop("malformed", detail=err.reason)

    def _dispatch(self, msg: Message, peer: Peer, now: float) -> list[Action]:
        if msg.type == PCI:
            return self._on_pci(msg, peer, now)
        session = self.sessions.get(msg.session_id)
        if session is None:
            return self._on_unknown_session(msg, peer, now)
        ch = session.channel
        moved = peer != ch.peer
        if moved and ch.sa is None:
            return self._drop("unexpected source", msg, session)
        if msg.is_request:
            kind = ch.classify_request(msg)
            if kind == "retransmission" and not moved:
                self.counters["request retransmission answered"] += 1
                return [self._send(ch.peer, ch.last_answer)]
            if kind == "retransmission":
                return self._drop("unexpected source", msg, session)
            if kind == "bad":
                return self._drop("bad sequence number", msg, session)
            problem = auth_problem(msg, ch.sa)
            if problem:
                return self._drop(problem, msg, session)
            actions = self._follow(session, peer) if moved else []
            return actions + self._on_request(session, msg, now)
        if not ch.matches_outstanding(msg):
            return self._drop("unexpected answer", msg, session)
        key = session.pending_sa if msg.type == AUTH and msg.has(FLAG_C) and \
            session.pending_sa is not None else ch.sa
        problem = auth_problem(msg, key)
        if problem:
            return self._drop(problem, msg, session)
        actions = self._follow(session, peer) if moved else []
        return actions + self._on_answer(session, msg, now)

    def _follow(self, session: PaaSession, peer: Peer) -> list[Action]:
        """An AUTH-verified message came from a new address or relay: the PaC moved (a new
        care-of address; RFC 5191 "PaC Updating its IP Address"). Only messages that
        pass the AUTH check may move a session."""
        old = session.channel.peer
        session.channel.peer = peer
        return [self._event("pana.pac_address_changed", session, old=old.address,
                            new=peer.address)]

    def _on_unknown_session(self, msg: Message, peer: Peer, now: float) -> list[Action]:
        tomb = self._tombstones.get(msg.session_id)
        if tomb is not None and tomb.expires <= now:
            del self._tombstones[msg.session_id]
            tomb = None
        if tomb is not None and msg.is_request and msg.raw == tomb.request and peer == tomb.peer:
            self.counters["request retransmission answered"] += 1
            return [self._send(peer, tomb.answer)]
        return self._drop("unknown session", msg)

    # ---- handshake
    def _on_pci(self, msg: Message, peer: Peer, now: float) -> list[Action]:
        pending = self.sessions.get(self._handshakes.get(peer))
        if pending is not None:
            if self._ignored_eap_in_start(pending):
                return self._fall_back(pending, msg, now)
            return self._drop("duplicate PCI", msg)  # our PAR[S] is being retransmitted
        if len(self.sessions) >= self.config.max_sessions:
            return self._drop("too many sessions", msg)
        if self._half_open_total >= self.config.max_handshakes:
            return self._drop("too many handshakes", msg)
        if self._half_open[peer.address] >= self.config.max_handshakes_per_source:
            return self._drop("too many handshakes from this address", msg,
                              detail=peer.address)
        hint = 0
        try:
            hint = mip6.bootstrap_request(msg) or 0
        except DecodeError:
            self.counters["bad extension AVP"] += 1
        return self._begin(peer, now, hint, discovery=True)

    def _ignored_eap_in_start(self, session: PaaSession) -> bool:
        """Count a PCI repeated while `session`'s PAR[S] is unanswered; True when, in
        "auto", that makes enough of them to say the PaC ignored EAP in PAR[S]."""
        if session.state != PaaState.HANDSHAKE:
            return False
        session.repeated_pcis += 1
        return (self.config.eap_in_first_par == "auto" and session.eap_in_start
                and session.sibling is None
                and session.repeated_pcis >= self.config.fallback_after_pcis)

    def _fall_back(self, first: PaaSession, msg: Message, now: float) -> list[Action]:
        """The plain handshake for a PaC that ignored our PAR[S] with EAP: a new session
        whose PAR[S] has none. The first one stops retransmitting but stays (its PAR[S]
        may have crossed the PCIs and still be answered) until one of the two gets its
        PAN[S]; see _on_start_answer and _remove."""
        if len(self.sessions) >= self.config.max_sessions:
            return self._drop("too many sessions", msg)
        if self._half_open_total >= self.config.max_handshakes:
            return self._drop("too many handshakes", msg)
        if self._half_open[first.peer.address] >= self.config.max_handshakes_per_source:
            return self._drop("too many handshakes from this address", msg,
                              detail=first.peer.address)
        self.counters["PaC ignored EAP in PAR[S]"] += 1
        actions = self.timers.disarm(_timer("rtx", first.session_id))
        # Its sequence number goes on from the ignored PAR[S]'s: a PaC may have taken
        # that one's as the PAA's (OpenPANA's does, and then drops any other PAR[S]).
        actions += self._begin(first.peer, now, first.mip6_request, discovery=True,
                               eap_in_start=False,
                               first_seq=(first.channel.outstanding.seq + 1) % SEQ_MOD)
        plain = self.sessions[self._handshakes[first.peer]]
        first.sibling, plain.sibling = plain.session_id, first.session_id
        actions.append(self._event("pana.handshake_fallback", first, pac=first.peer.address,
                                   plain_session=plain.session_id,
                                   repeated_pcis=first.repeated_pcis))
        return actions

    def start_session(self, address: str, now: float, port: int = PANA_PORT) -> list[Action]:
        """PAA-initiated handshake (RFC 5191 4.1): PAR[S] without a PCI."""
        if len(self.sessions) >= self.config.max_sessions:
            return []
        return self._begin(Peer(address, port), now, 0, discovery=False)

    def _begin(self, peer: Peer, now: float, mip6_hint: int, discovery: bool,
               eap_in_start: bool | None = None, first_seq: int | None = None
               ) -> list[Action]:
        sid = self._allocate_session_id()
        session = PaaSession(sid, Channel(sid, peer, self.rng), PaaState.HANDSHAKE, now)
        if first_seq is not None:
            session.channel.next_seq = first_seq
        if eap_in_start is None:
            choice = self.config.eap_in_first_par
            eap_in_start = choice == "always" or (choice == "auto"
                                                  and _host(peer) not in self._plain_peers)
        session.eap_in_start = eap_in_start
        session.mip6_request = mip6_hint if self.config.mip6 else 0
        self.sessions[sid] = session
        self._handshakes[peer] = sid
        self._half_open[peer.address] += 1
        self._half_open_total += 1
        session.half_open, session.handshake_address = True, peer.address
        avps = []
        if session.eap_in_start:
            avps.append(eap_payload_avp(self._identity_request(session)))
        if self.config.offer_pana_sa:
            avps += self._algorithm_avps
        actions = self._request(session, AUTH, FLAG_R | FLAG_S, avps, now,
                                policy=self.config.handshake_retransmit)
        session.i_par = session.channel.outstanding.data
        actions.append(self.timers.arm(_timer("auth", sid), now + self.config.auth_timeout))
        actions.append(self._event("pana.session_created", session, pac=peer.address,
                                   relay=peer.relay[0] if peer.relay else None,
                                   discovery=discovery, eap_in_start=eap_in_start))
        return actions

    def _allocate_session_id(self) -> int:
        while True:
            sid = self.rng.getrandbits(32)
            if sid and sid not in self.sessions and sid not in self._tombstones:
                return sid

    def _identity_request(self, session: PaaSession) -> bytes:
        if self.config.first_eap_request is not None:
            packet = self.config.first_eap_request(session.session_id)
            session.last_eap_id = packet[1]
            return packet
        session.last_eap_id = self.rng.getrandbits(8)
        return identity_request(session.last_eap_id)

    # ---- requests from the PaC
    def _on_request(self, session: PaaSession, msg: Message, now: float) -> list[Action]:
        ch = session.channel
        if msg.type == TERMINATION:
            answer = ch.answer(msg, [], ch.sa)
            return [self._send(ch.peer, answer)] + self._remove(
                session, "terminated by PaC", now, cause=msg.termination_cause)
        if msg.type == NOTIFICATION:
            if msg.has(FLAG_P):
                return [self._send(ch.peer, ch.answer(msg, [], ch.sa)),
                        self._event("pana.ping_answered", session)]
            # PNR[A]: PaC-initiated re-authentication (RFC 5191 4.3)
            if session.state != PaaState.OPEN:
                return self._drop("unexpected message", msg, session)
            actions = [self._send(ch.peer, ch.answer(msg, [], ch.sa))]
            return actions + self._start_reauth(session, now, by="PaC")
        # A PAR from the PaC carrying its EAP response (RFC 5191 4.1, not piggybacked)
        if msg.has(FLAG_S) or msg.has(FLAG_C) or session.state not in (
                PaaState.WAIT_PAC_EAP, PaaState.WAIT_PAN):
            return self._drop("unexpected message", msg, session)
        self._take_nonce(session, msg)
        actions = [self._send(ch.peer, ch.answer(msg, [], ch.sa))]
        if ch.outstanding is not None:   # RFC 5609: a PaC PAR stops our PAR's retransmission
            ch.outstanding = None
            actions += self.timers.disarm(_timer("rtx", session.session_id))
        if msg.eap_payload is not None:
            actions += self._to_aaa(session, msg.eap_payload)
        else:
            session.state = PaaState.WAIT_PAC_EAP
        return actions

    # ---- answers from the PaC
    def _on_answer(self, session: PaaSession, msg: Message, now: float) -> list[Action]:
        ch = session.channel
        out = ch.outstanding
        if msg.type == AUTH and msg.has(FLAG_S):
            problem = self._check_algorithms(msg)
            if problem:
                return self._drop(problem, msg, session)
        ch.outstanding = None
        actions = self.timers.disarm(_timer("rtx", session.session_id))
        if msg.type == TERMINATION:
            return actions + self._remove(session, session.closing_reason or "terminated", now)
        if msg.type == NOTIFICATION:
            return actions + [self._event("pana.ping_ok", session, rtt=now - out.first_sent)]
        if msg.has(FLAG_S):
            return actions + self._on_start_answer(session, msg, now)
        if msg.has(FLAG_C):
            return actions + self._on_complete_answer(session, msg, now)
        self._take_nonce(session, msg)
        if msg.eap_payload is not None:
            return actions + self._to_aaa(session, msg.eap_payload)
        session.state = PaaState.WAIT_PAC_EAP
        return actions

    def _check_algorithms(self, msg: Message) -> str | None:
        if not self.config.offer_pana_sa:
            return "unexpected algorithm" if (msg.prf_algorithms or msg.integrity_algorithms) \
                else None
        prf, integ = msg.prf_algorithms, msg.integrity_algorithms
        if len(prf) != 1 or len(integ) != 1 or prf[0] not in self.config.prf_algorithms \
                or integ[0] not in self.config.integrity_algorithms:
            return "bad algorithm selection"
        return None

    def _on_start_answer(self, session: PaaSession, msg: Message, now: float) -> list[Action]:
        actions: list[Action] = []
        if session.sibling is not None:    # an "auto" fallback pair: this one won
            other = self.sessions.get(session.sibling)
            session.sibling = None
            if other is not None:
                other.sibling = None
                actions += self._remove(other, "the other handshake was answered", now)
            if not session.eap_in_start:
                self._remember_plain(session.peer)
        self._handshakes.pop(session.peer, None)
        self._close_half_open(session)
        session.i_pan = msg.raw
        if self.config.offer_pana_sa:
            session.prf_alg, session.integrity_alg = msg.prf_algorithms[0], \
                msg.integrity_algorithms[0]
        if self.config.mip6:
            try:
                request = mip6.bootstrap_request(msg)
                proposal = mip6.sa_proposal(msg)
            except DecodeError as err:
                request, proposal = None, None
                self.counters["bad extension AVP"] += 1
                actions.append(self._event("pana.mip6_bad_avp", session, detail=err.reason))
            if request is not None:   # the copy in I_PAN is authoritative
                session.mip6_request = request
            session.sa_proposal = proposal
        actions.append(self._event("pana.handshake_done", session, prf=session.prf_alg,
                                   integrity=session.integrity_alg,
                                   mip6_request=list(mip6.request_names(session.mip6_request))))
        if msg.eap_payload is not None:
            return actions + self._to_aaa(session, msg.eap_payload)
        if session.eap_in_start:
            session.state = PaaState.WAIT_PAC_EAP   # the PaC will send a PAR with its answer
            return actions
        return actions + self._send_eap_request(session, self._identity_request(session), now)

    def _remember_plain(self, peer: Peer) -> None:
        self._plain_peers.pop(_host(peer), None)
        self._plain_peers[_host(peer)] = None
        while len(self._plain_peers) > self.config.plain_peers_max:
            del self._plain_peers[next(iter(self._plain_peers))]

    def _take_nonce(self, session: PaaSession, msg: Message) -> None:
        if session.pac_nonce is None and msg.nonce is not None:
            session.pac_nonce = msg.nonce

    def _to_aaa(self, session: PaaSession, eap_payload: bytes) -> list[Action]:
        session.state = PaaState.WAIT_AAA
        session.aaa_pending = True
        session.last_eap_id = eap_payload[1]
        identity = identity_from_response(eap_payload)
        if identity is not None and session.claimed_nai is None:
            session.claimed_nai = identity
        return [SendToAAA(session.session_id, eap_payload, session.peer.address)]

    # ---- input from the AAA backend
    def aaa_result(self, session_id: int, kind: str, eap_payload: bytes | None = None,
                   msk: bytes | None = None, attributes: dict | None = None,
                   now: float = 0.0, emsk: bytes | None = None) -> list[Action]:
        """The AAA backend's verdict on the last SendToAAA of `session_id`.

        kind "continue": eap_payload is the next EAP request for the PaC.
        kind "success"/"failure": authentication result; eap_payload the EAP
        Success/Failure (None: the PAA builds one), msk the EAP MSK (success only),
        emsk the EAP EMSK where the backend has it (the embedded EAP server; a RADIUS
        server keeps it): the MIPv6 MN-HA key then comes from it (see pana.mip6).
        attributes: "nai" (authenticated identity), "session_timeout" (seconds).
        """
        if kind not in ("continue", "success", "failure"):
            raise ValueError(f"unknown AAA result kind {kind!r}")
        session = self.sessions.get(session_id)
        if session is None or session.state != PaaState.WAIT_AAA:
            self.counters["stale AAA result"] += 1
            return [Event("pana.drop", {"role": "paa", "session_id": session_id,
                                        "reason": "stale AAA result"})]
        session.aaa_pending = False
        attributes = dict(attributes or {})
        if kind == "continue":
            if not eap_payload:
                raise ValueError("AAA 'continue' needs an EAP request")
            return self._send_eap_request(session, eap_payload, now)
        return self._finish(session, kind == "success", eap_payload, msk, attributes, now,
                            emsk)

    def _send_eap_request(self, session: PaaSession, eap_request: bytes, now: float
                          ) -> list[Action]:
        avps = []
        if session.paa_nonce is None:   # the first PAR of the phase carries the PAA nonce
            session.paa_nonce = self.rng.getrandbits(NONCE_LEN * 8).to_bytes(NONCE_LEN, "big")
            avps.append(nonce_avp(session.paa_nonce))
        avps.append(eap_payload_avp(eap_request))
        session.state = PaaState.WAIT_PAN
        return self._request(session, AUTH, FLAG_R, avps, now)

    def _finish(self, session: PaaSession, authenticated: bool, eap_payload: bytes | None,
                msk: bytes | None, attributes: dict, now: float,
                emsk: bytes | None = None) -> list[Action]:
        """Send the final PAR (C flag), RFC 5191 4.1/4.3 and RFC 5609 EAP_SUCCESS/FAILURE."""
        ch = session.channel
        actions: list[Action] = []
        payload = eap_payload or result_packet(authenticated, session.last_eap_id)
        result = PANA_SUCCESS if authenticated else PANA_AUTHENTICATION_REJECTED
        if authenticated:
            mismatch = self._identity_problem(session, attributes.get("nai"))
            if mismatch:
                result = PANA_AUTHORIZATION_REJECTED
                self.counters["identity mismatch"] += 1
                actions.append(self._event("pana.identity_mismatch", session, problem=mismatch,
                                           claimed=session.claimed_nai,
                                           authenticated=attributes.get("nai"),
                                           bound=session.nai))
            else:
                self._set_nai(session, str(attributes["nai"]))
        if result == PANA_SUCCESS and self.config.authorize is not None \
                and not self.config.authorize(session.nai, attributes):
            result = PANA_AUTHORIZATION_REJECTED
        new_sa = self._derive_sa(session, msk, emsk) if authenticated else None
        avps = [result_code_avp(result), eap_payload_avp(payload)]
        if result == PANA_SUCCESS:
            lifetime = self.config.session_lifetime
            timeout = attributes.get("session_timeout")
            if timeout:
                lifetime = min(lifetime, int(timeout))
            session.lifetime = lifetime
            avps.append(session_lifetime_avp(lifetime))
            actions += self._supersede(session, now)
        if new_sa is not None:
            avps.append(key_id_avp(new_sa.key_id))
        if result == PANA_SUCCESS and new_sa is not None and self.config.mip6 \
                and session.mip6_request:
            ext_avps, ext_actions = self._grant_mip6(session, new_sa, now)
            avps += ext_avps
            actions += ext_actions
        session.pending_sa = new_sa
        session.state = PaaState.WAIT_SUCC_PAN if result == PANA_SUCCESS \
            else PaaState.WAIT_FAIL_PAN
        session.result_reason = {PANA_AUTHENTICATION_REJECTED: "authentication rejected",
                                 PANA_AUTHORIZATION_REJECTED: "authorization rejected"
                                 }.get(result, "")
        session.claimed_nai = None
        sign_with = new_sa or ch.sa
        request = self._request(session, AUTH, FLAG_R | FLAG_C, avps, now, sa=sign_with)
        actions = request + actions
        actions.append(self._event("pana.auth_result", session, result=result,
                                   key_id=new_sa.key_id if new_sa else None,
                                   reauth=session.reauth))
        return actions

    @staticmethod
    def _identity_problem(session: PaaSession, authenticated: str | None) -> str:
        """Why the identity the EAP method authenticated cannot be this session's, or "".

        The session's NAI (and with it the Home Address, the MIPv6 SA at the HA, the NSIS
        token, supersession) is only ever the authenticated identity: EAP-PSK's ID_P,
        which MAC_P covers (RFC 4764), as the AAA backend reports it. The EAP Identity
        Response is a claim nobody verified (RFC 3748 section 5.1); a peer whose
        credentials prove A while it claimed B is refused, as is a re-authentication that
        proves anybody else than the session's user."""
        if not authenticated:
            return "no authenticated identity from the AAA backend"
        if session.claimed_nai is not None and session.claimed_nai != authenticated:
            return "EAP Identity Response differs from the authenticated identity"
        if session.nai is not None and session.nai != authenticated:
            return "re-authentication proved another identity than the session's"
        return ""

    def _derive_sa(self, session: PaaSession, msk: bytes | None, emsk: bytes | None = None
                   ) -> PanaSa | None:
        if not (msk and session.pac_nonce and session.paa_nonce and session.prf_alg):
            return None
        old = session.channel.sa.key_id if session.channel.sa else None
        key_id = self.rng.getrandbits(32)
        while key_id == old:
            key_id = self.rng.getrandbits(32)
        key = pana_auth_key(session.prf_alg, session.integrity_alg, msk, session.i_par,
                            session.i_pan, session.pac_nonce, session.paa_nonce, key_id)
        return PanaSa(key_id, key, session.prf_alg, session.integrity_alg, msk,
                      session.pac_nonce, session.paa_nonce, emsk)

    def _supersede(self, session: PaaSession, now: float) -> list[Action]:
        """One live session per authenticated user: a newer one replaces older ones (the
        MN restarted or came back to this PAA) and keeps their Home Address, so the
        MN's HoA stays stable. An older session's MIPv6 SAs are revoked at once (before
        the new SA is announced) and the session is ended the protocol way: a PTR with
        Termination-Cause ADMINISTRATIVE (RFC 5191 4.4, 8.14), AUTH-protected with the
        old session's key and retransmitted like any request, so the PaC that held it
        learns it is over instead of signing with a revoked SA."""
        if not session.nai:
            return []
        actions: list[Action] = []
        for other in [self.sessions[sid] for sid in self._by_nai.get(session.nai, ())]:
            if other is session or other.nai != session.nai or not other.ever_open:
                continue
            if session.hoa is None:
                self._set_hoa(session, other.hoa)
            if other.state == PaaState.TERMINATING:
                continue
            actions += self._revoke_mip_sas(other, "superseded")
            actions.append(self._event("pana.superseded", other, by=session.session_id,
                                       nai=other.nai))
            other.closing_reason = "superseded"
            actions += self.terminate(other.session_id, now, TERMINATION_ADMINISTRATIVE)
        return actions

    # ---- the live sessions' indexes
    def _set_nai(self, session: PaaSession, nai: str) -> None:
        sid = session.session_id
        if session.nai and session.nai != nai:
            self._drop_key(self._by_nai, session.nai, sid)
        session.nai = nai
        if nai and sid in self.sessions:
            self._by_nai.setdefault(nai, {})[sid] = None

    def _set_hoa(self, session: PaaSession, hoa: str | None) -> None:
        if session.hoa and session.session_id in self.sessions:
            _uncount(self._hoa_users, session.hoa)
        session.hoa = hoa
        if hoa and session.session_id in self.sessions:
            self._hoa_users[hoa] += 1

    def _set_mip_sas(self, session: PaaSession, mip_sa: "_MipSa | None",
                     pending: "_MipSa | None") -> None:
        live = session.session_id in self.sessions
        for sa in (session.mip_sa, session.pending_mip_sa):
            if sa is not None and live:
                _uncount(self._spi_users, sa.spi)
        session.mip_sa, session.pending_mip_sa = mip_sa, pending
        for sa in (mip_sa, pending):
            if sa is not None and live:
                self._spi_users[sa.spi] += 1

    def _unindex(self, session: PaaSession) -> None:
        """`session` has just left self.sessions (its SAs not revoked yet)."""
        if session.nai:
            self._drop_key(self._by_nai, session.nai, session.session_id)
        if session.hoa:
            _uncount(self._hoa_users, session.hoa)
        for sa in (session.mip_sa, session.pending_mip_sa):
            if sa is not None:
                _uncount(self._spi_users, sa.spi)

    @staticmethod
    def _drop_key(index: dict, key, sid: int) -> None:
        members = index.get(key)
        if members is not None:
            members.pop(sid, None)
            if not members:
                del index[key]

    def _index_problems(self) -> list[str]:
        """Where the indexes disagree with the sessions (none: [])."""
        by_nai: dict[str, list[int]] = {}
        hoas: Counter[str] = Counter()
        spis: Counter[int] = Counter()
        for sid, s in self.sessions.items():
            if s.nai:
                by_nai.setdefault(s.nai, []).append(sid)
            if s.hoa:
                hoas[s.hoa] += 1
            for sa in (s.mip_sa, s.pending_mip_sa):
                if sa is not None:
                    spis[sa.spi] += 1
        out = []
        if {k: sorted(v) for k, v in by_nai.items()} != \
                {k: sorted(v) for k, v in self._by_nai.items()}:
            out.append("by NAI")
        if hoas != self._hoa_users:
            out.append("Home Addresses")
        if spis != self._spi_users:
            out.append("SPIs")
        return out

    def _revoke_mip_sas(self, session: PaaSession, reason: str) -> list[Action]:
        actions: list[Action] = []
        for sa in (session.pending_mip_sa, session.mip_sa):
            if sa is not None:
                actions.append(MipSaRevoked(session.session_id, session.nai, sa.hoa, sa.spi,
                                            reason))
        self._set_mip_sas(session, None, None)
        return actions

    def _grant_mip6(self, session: PaaSession, new_sa: PanaSa, now: float):
        policy = self.config.mip6
        request = session.mip6_request
        avps, actions = [], []
        network = policy.network
        if request & mip6.REQUEST_HA_INFO:
            avps.append(policy.agent_info_avp)
        wants_hoa = request & (mip6.REQUEST_HOME_ADDRESS | mip6.REQUEST_MIP6_SA)
        if wants_hoa and session.hoa is None:
            # the Home Addresses live sessions hold (this one holds none yet): a view
            self._set_hoa(session, self._assign_hoa(session.nai or "", self._hoa_users.keys(),
                                                    self.rng))
            if session.hoa is None:
                actions.append(self._event("pana.mip6_no_hoa", session))
        if wants_hoa and session.hoa is not None:
            avps.append(mip6.HomeAddress(session.hoa, network.prefixlen).to_avp())
        if request & mip6.REQUEST_MIP6_SA and session.hoa is not None:
            spi = policy.allocate_spi(self._spi_users.keys(), self.rng)   # live SAs' SPIs
            params = policy.choose_sa(session.sa_proposal, spi, session.lifetime or 0)
            kdf = mip6.KDF_EMSK if new_sa.emsk else mip6.KDF_MSK
            key = mip6.derive_mn_ha_key(kdf, new_sa.prf_alg, new_sa.msk, new_sa.emsk, spi,
                                        new_sa.pac_nonce, new_sa.paa_nonce, params.algorithm)
            avps += [params.to_avp(), mip6.key_derivation_avp(kdf)]
            self._set_mip_sas(session, session.mip_sa, _MipSa(spi, session.hoa, policy.ha_address))
            actions.append(MipSaEstablished(session.session_id, session.nai, session.hoa,
                                            policy.ha_address, spi, params.algorithm_name,
                                            params.replay_name, key, params.lifetime))
        if request & mip6.REQUEST_NSIS_TOKEN and policy.mint_token is not None:
            avps.append(mip6.nsis_token_avp(policy.mint_token(session.nai or "",
                                                              session.hoa or "", now)))
        return avps, actions

    def _on_complete_answer(self, session: PaaSession, msg: Message, now: float
                            ) -> list[Action]:
        ch = session.channel
        if session.state == PaaState.WAIT_FAIL_PAN:
            return self._remove(session, session.result_reason, now)
        if session.pending_sa is not None:
            ch.sa = session.pending_sa
            session.pending_sa = None
        actions: list[Action] = []
        if session.pending_mip_sa is not None:
            old = session.mip_sa
            self._set_mip_sas(session, session.pending_mip_sa, None)
            if old is not None:
                actions.append(MipSaRevoked(session.session_id, session.nai, old.hoa, old.spi,
                                            REKEYED))
        elif session.mip_sa is not None:   # re-authenticated without a new SA
            old = session.mip_sa
            self._set_mip_sas(session, None, session.pending_mip_sa)
            actions.append(MipSaRevoked(session.session_id, session.nai, old.hoa, old.spi,
                                        "not renewed"))
        sid = session.session_id
        session.state = PaaState.OPEN
        reauth = session.reauth
        session.ever_open = True
        actions += self.timers.disarm(_timer("auth", sid))
        if session.lifetime:
            actions.append(self.timers.arm(_timer("lifetime", sid), now + session.lifetime))
        actions.append(PanaSessionOpen(sid, session.peer.address, session.nai,
                                       ch.sa.key_id if ch.sa else None, session.lifetime,
                                       reauth))
        actions.append(self._event("pana.reauth_done" if reauth else "pana.session_open",
                                   session, nai=session.nai,
                                   key_id=ch.sa.key_id if ch.sa else None))
        return actions

    # ---- commands
    def ping(self, session_id: int, now: float) -> list[Action]:
        session = self.sessions.get(session_id)
        if session is None or session.state != PaaState.OPEN \
                or session.channel.outstanding is not None:
            return []
        return self._request(session, NOTIFICATION, FLAG_R | FLAG_P, [], now)

    def reauthenticate(self, session_id: int, now: float) -> list[Action]:
        """PAA-initiated re-authentication (RFC 5191 4.3)."""
        session = self.sessions.get(session_id)
        if session is None or session.state != PaaState.OPEN:
            return []
        return self._start_reauth(session, now, by="PAA")

    def _start_reauth(self, session: PaaSession, now: float, by: str) -> list[Action]:
        ch = session.channel
        actions: list[Action] = []
        if ch.outstanding is not None:   # a pending ping gives way (RFC 5609)
            ch.outstanding = None
            actions += self.timers.disarm(_timer("rtx", session.session_id))
        session.reauth = True
        session.claimed_nai = None
        session.paa_nonce = session.pac_nonce = None
        actions.append(self.timers.arm(_timer("auth", session.session_id),
                                       now + self.config.auth_timeout))
        actions.append(self._event("pana.reauth_started", session, by=by))
        return actions + self._send_eap_request(session, self._identity_request(session), now)

    def terminate(self, session_id: int, now: float,
                  cause: int = TERMINATION_ADMINISTRATIVE) -> list[Action]:
        session = self.sessions.get(session_id)
        if session is None or session.state == PaaState.TERMINATING:
            return []
        if not session.ever_open:
            return self._remove(session, "terminated", now)
        actions: list[Action] = []
        if session.aaa_pending:
            session.aaa_pending = False
            actions.append(AaaCancel(session_id))
        session.state = PaaState.TERMINATING
        actions += self.timers.disarm(_timer("lifetime", session_id))
        actions += self.timers.disarm(_timer("auth", session_id))
        return actions + self._request(session, TERMINATION, FLAG_R,
                                       [termination_cause_avp(cause)], now)

    # ---- timers
    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        if not self.timers.fire(key, now):
            return []
        _, kind, sid = key
        session = self.sessions.get(sid)
        if session is None:
            return []
        if kind == "rtx":
            return self._on_rtx_timeout(session, now)
        if kind == "lifetime":
            return self._remove(session, "session lifetime expired", now)
        if kind == "auth" and session.state != PaaState.OPEN:
            return self._remove(session, "authentication timeout", now)
        return []

    def _on_rtx_timeout(self, session: PaaSession, now: float) -> list[Action]:
        ch = session.channel
        out = ch.outstanding
        if out is None:
            return []
        deadline = out.backoff.next(now)
        if deadline is None:
            ch.outstanding = None
            reason = (session.closing_reason or "terminated") if out.type == TERMINATION \
                else "PaC unreachable"
            return [self._event("pana.gave_up", session, message=out.name)] + \
                self._remove(session, reason, now)
        self.counters["retransmission"] += 1
        return [self._send(ch.peer, out.data),
                self.timers.arm(_timer("rtx", session.session_id), deadline),
                self._event("pana.retransmit", session, message=out.name)]

    # ---- helpers
    def _request(self, session: PaaSession, msg_type: int, flags: int, avps, now: float,
                 sa: PanaSa | None = None, policy: RetransmitPolicy | None = None
                 ) -> list[Action]:
        ch = session.channel
        data = ch.request(msg_type, flags, avps, now, policy or self.config.req_retransmit,
                          sa=sa)
        return [self._send(ch.peer, data),
                self.timers.arm(_timer("rtx", session.session_id),
                                ch.outstanding.backoff.deadline)]

    def _send(self, peer: Peer, data: bytes) -> Transmit:
        if peer.relay is None:
            return Transmit(data, dst=peer.address, port=peer.port)
        pry = Message(RELAY, 0, 0, 0, (pac_information_avp(peer.address, peer.port),
                                       relayed_message_avp(data)))
        return Transmit(pry.encode(), dst=peer.relay[0], port=peer.relay[1])

    def _remove(self, session: PaaSession, reason: str, now: float,
                cause: int | None = None) -> list[Action]:
        sid = session.session_id
        if self.sessions.pop(sid, None) is None:
            return []
        sibling = self.sessions.get(session.sibling) if session.sibling is not None else None
        session.sibling = None
        if self._handshakes.get(session.peer) == sid:
            del self._handshakes[session.peer]
        self._close_half_open(session)
        actions: list[Action] = []
        for kind in ("rtx", "lifetime", "auth"):
            actions += self.timers.disarm(_timer(kind, sid))
        if session.aaa_pending:
            actions.append(AaaCancel(sid))
        self._unindex(session)                      # before the SAs are revoked
        actions += self._revoke_mip_sas(session, reason)
        actions.append(PanaSessionClosed(sid, session.peer.address, session.nai, reason, cause))
        actions.append(self._event("pana.session_closed", session, reason=reason, cause=cause))
        ch = session.channel
        if ch.last_answer is not None and self.config.closed_linger > 0:
            if len(self._tombstones) > 4096:
                self._tombstones = {k: t for k, t in self._tombstones.items() if t.expires > now}
            self._tombstones[sid] = _Tombstone(ch.peer, ch.last_request_raw, ch.last_answer,
                                               now + self.config.closed_linger)
        if sibling is not None:   # an "auto" fallback pair goes together unless one was answered
            sibling.sibling = None
            actions += self._remove(sibling, reason, now)
        return actions

    def _close_half_open(self, session: PaaSession) -> None:
        if session.half_open:
            session.half_open = False
            address = session.handshake_address
            self._half_open[address] -= 1
            self._half_open_total -= 1
            if self._half_open[address] <= 0:
                del self._half_open[address]

    def _drop(self, reason: str, msg: Message | None = None,
              session: PaaSession | None = None, detail: str = "") -> list[Action]:
        self.counters[reason] += 1
        fields = {"reason": reason}
        if msg is not None:
            fields["message"] = describe(msg)
        if detail:
            fields["detail"] = detail
        return [self._event("pana.drop", session, **fields)]

    def _event(self, name: str, session: PaaSession | None = None, **fields) -> Event:
        fields.setdefault("role", "paa")
        fields.setdefault("session_id", session.session_id if session else None)
        return Event(name, fields)
