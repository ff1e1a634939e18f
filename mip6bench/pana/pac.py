"""Sans-I/O PANA Client (PaC), RFC 5191 with the RFC 5609 PaC state machine.

    pac = PacCore(PacConfig(paa_address=..., new_eap_peer=..., nai=...), rng=None)
    actions = pac.start(now)                        # PCI (discovery)
    actions = pac.receive(data, src, now, port)     # every UDP datagram from port 716
    actions = pac.handle_timer(key, now)            # when a StartTimer fires
    actions = pac.ping(now) / pac.reauthenticate(now) / pac.terminate(now, cause)

Each returns a list of mip6bench.sansio actions: Transmit, StartTimer/StopTimer, Event
and the effects of mip6bench.pana.effects. `pac.state` is one of PacState; `pac.counters`
counts dropped messages by reason.

Discovery (seed paper 2.2): `PacConfig.discovery` is "unicast" (paa_address is the PAA)
or "multicast" (paa_address is a group that routers forward hop by hop with the Router
Alert option). The PCI's Transmit carries meta {"discovery": "unicast"|"multicast"} for
the runtime; the PaC accepts the first PAR with the S flag from whichever address
answers and talks unicast to that address afterwards.

The PAA's address (RFC 5191 "PaC updating its IP address", seen from the other end):
the PaC talks to the address the PAR[S] came from: the PAA, or an RFC 6345 relay
element (PRE) that it cannot tell from a PAA. Once a PANA SA exists, a message from
another address or port that passes the AUTH check (a new request in sequence, or the
answer to our outstanding request) moves the PaC's peer there (event
pana.paa_address_changed), exactly as the PAA follows a PaC that moved: a PRE that
answers a moved PaC from another of its addresses, or a PAA reached on a new path,
keeps the session. Before the PANA SA exists, and for retransmitted requests, other
sources are dropped ("unexpected source"). `ping(now, paa=...)` sends the liveness
test to another PANA agent (the PRE of the network the PaC moved to, or the PAA
itself when that network has none) and talks to it from then on; the PAA follows the
AUTH-verified ping. If nobody answers, the ping's retransmissions give up and the
session closes ("PAA unreachable"), so the runtime discovers again. The PaC's own
PANA-Notification-Requests (ping, re-authentication request), which the PAA answers at
once, give up after `pnr_retransmit` (3 retransmissions, ~15 s; other requests keep
REQ_MRC 10): a PAA that restarted has lost the session and drops them silently (RFC 5191
5.2), and an MN should not wait four minutes to find that out.

States (RFC 5609 names in brackets):
    IDLE              nothing started (a PAA-initiated PAR[S] is still answered)
    DISCOVERING       PCI sent, retransmitted with PCI_IRT/PCI_MRT   [INITIAL]
    AUTHENTICATING    PAR[S] answered, EAP in progress       [WAIT_PAA/WAIT_EAP_MSG]
    OPEN              authenticated; ping, re-auth, termination      [OPEN, WAIT_PNA_PING]
    REAUTHENTICATING  PNR[A] sent or a re-auth PAR received; access continues
                                                             [WAIT_PNA_REAUTH, WAIT_PAA]
    TERMINATING       PTR sent                                       [SESS_TERM]
    CLOSED            session over                                   [CLOSED]

Re-authentication: the PaC starts one (PNR with A flag) at `reauth_fraction` of the
session lifetime (or of the MIPv6 SA lifetime when shorter), or when asked. If the
lifetime runs out first the session is closed. Every successful re-authentication
brings a new MSK, new nonces, a new Key-Id and PANA_AUTH_KEY, and with the extension a
new MIPv6 SA (MipSaEstablished, then MipSaRevoked(reason="rekeyed") for the old SPI).
"""
from __future__ import annotations

import enum
import random
from collections import Counter
from dataclasses import dataclass
from typing import Hashable

from ..codec import DecodeError
from ..sansio import Action, Event, Transmit
from . import mip6
from .channel import (PCI_RETRANSMIT, PNR_RETRANSMIT, REQ_RETRANSMIT, Backoff, Channel, PanaSa, Peer, RetransmitPolicy,
                      TimerTable, auth_problem, describe)
from .crypto import (AUTH_HMAC_SHA1_160, AUTH_HMAC_SHA2_256_128, INTEGRITY_ALGORITHMS,
                     PRF_DIGESTS, PRF_HMAC_SHA1, PRF_HMAC_SHA2_256, pana_auth_key)
from .eap_interface import EapPeer, EapPeerFactory
from .effects import (REKEYED, MipSaEstablished, MipSaRevoked, Mip6Bootstrapped, PanaSessionClosed,
                      PanaSessionOpen, StaticConfigFallback)
from .message import (AUTH, FLAG_A, FLAG_C, FLAG_P, FLAG_R, FLAG_S, NONCE_LEN, NOTIFICATION,
                      PANA_AUTHENTICATION_REJECTED, PANA_AUTHORIZATION_REJECTED, PANA_PORT,
                      PANA_SUCCESS, PCI, TERMINATION, TERMINATION_LOGOUT, Message,
                      decode_message, eap_payload_avp, integrity_algorithm_avp, key_id_avp,
                      nonce_avp, prf_algorithm_avp, termination_cause_avp)

TIMER_RTX = ("pana-pac", "rtx")
TIMER_AUTH = ("pana-pac", "auth")
TIMER_REAUTH = ("pana-pac", "reauth")
TIMER_LIFETIME = ("pana-pac", "lifetime")


class PacState(str, enum.Enum):
    IDLE = "idle"
    DISCOVERING = "discovering"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    REAUTHENTICATING = "reauthenticating"
    TERMINATING = "terminating"
    CLOSED = "closed"


@dataclass
class PacConfig:
    paa_address: str                      # the PAA, or the discovery group (multicast)
    new_eap_peer: EapPeerFactory          # called once per (re-)authentication
    nai: str | None = None                # for effects and events only
    discovery: str = "unicast"            # "unicast" | "multicast"
    paa_port: int = PANA_PORT
    prf_algorithms: tuple[int, ...] = (PRF_HMAC_SHA1, PRF_HMAC_SHA2_256)
    integrity_algorithms: tuple[int, ...] = (AUTH_HMAC_SHA1_160, AUTH_HMAC_SHA2_256_128)
    mip6_request: int = 0                 # mip6.REQUEST_* flags; 0: plain PaC
    mip6_sa_proposal: mip6.SaParameters | None = None
    reauth_fraction: float = 0.8
    auth_timeout: float = 60.0            # RFC 5609 FAILED_SESS_TIMEOUT
    pci_retransmit: RetransmitPolicy = PCI_RETRANSMIT
    req_retransmit: RetransmitPolicy = REQ_RETRANSMIT
    pnr_retransmit: RetransmitPolicy = PNR_RETRANSMIT   # the PaC's pings and re-auth requests

    def __post_init__(self):
        if self.discovery not in ("unicast", "multicast"):
            raise ValueError("discovery must be 'unicast' or 'multicast'")
        if not 0 < self.reauth_fraction < 1:
            raise ValueError("reauth_fraction must be in (0, 1)")


@dataclass
class _MipSa:
    spi: int
    hoa: str
    lifetime: int


@dataclass
class _Phase:
    """One authentication or re-authentication phase (an EAP conversation)."""

    reauth: bool
    done: bool = False
    eap: EapPeer | None = None
    pac_nonce: bytes | None = None
    paa_nonce: bytes | None = None


class PacCore:
    def __init__(self, config: PacConfig, rng: random.Random | None = None):
        self.config = config
        self.rng = rng or random.SystemRandom()
        self.counters: Counter[str] = Counter()
        self.state = PacState.IDLE
        self.timers = TimerTable()
        self.channel: Channel | None = None
        self.paa: Peer | None = None
        self._phase: _Phase | None = None
        self._i_par = self._i_pan = b""
        self._prf_alg: int | None = None
        self._integrity_alg: int | None = None
        self._pci: bytes | None = None
        self._pci_backoff = None
        self._mip_sa: _MipSa | None = None
        self.lifetime: int | None = None
        self.opened_at: float | None = None

    # ---- convenience views
    @property
    def session_id(self) -> int | None:
        return self.channel.session_id if self.channel else None

    @property
    def sa(self) -> PanaSa | None:
        return self.channel.sa if self.channel else None

    # ---- commands
    def start(self, now: float) -> list[Action]:
        """Begin (or restart) discovery and authentication by sending a PCI."""
        if self.state not in (PacState.IDLE, PacState.CLOSED):
            return []
        self._forget_session()
        self.state = PacState.DISCOVERING
        avps = [mip6.bootstrap_request_avp(self.config.mip6_request)] \
            if self.config.mip6_request else []
        self._pci = Message(PCI, 0, 0, 0, tuple(avps)).encode()
        self._pci_backoff = Backoff(self.config.pci_retransmit, self.rng, now)
        return [self._pci_transmit(),
                self.timers.arm(TIMER_RTX, self._pci_backoff.deadline),
                self._event("pana.pci_sent", retransmission=False)]

    def ping(self, now: float, paa: str | None = None, port: int | None = None
             ) -> list[Action]:
        """Liveness test (PNR with P flag). Also call it after the PaC's address changed:
        the PAA learns the new address from the AUTH-verified request. `paa` (and
        `port`, default the configured PAA port): the PANA agent to use from now on (a
        new PRE, or the PAA directly); a ping still outstanding toward the old one is
        replaced."""
        if self.state != PacState.OPEN:
            return []
        ch = self.channel
        target = Peer(paa, port or self.config.paa_port) if paa is not None else None
        retarget = target is not None and target != ch.peer
        out = ch.outstanding
        if out is not None and not (retarget and out.type == NOTIFICATION
                                    and out.flags & FLAG_P):
            return []
        actions = self._follow(target, "moved") if retarget else []
        return actions + self._send_request(NOTIFICATION, FLAG_R | FLAG_P, [], now,
                                            self.config.pnr_retransmit)

    def reauthenticate(self, now: float) -> list[Action]:
        """PaC-initiated re-authentication (PNR with A flag, RFC 5191 4.3)."""
        if self.state != PacState.OPEN:
            return []
        self.state = PacState.REAUTHENTICATING
        return (self.timers.disarm(TIMER_REAUTH)
                + self._send_request(NOTIFICATION, FLAG_R | FLAG_A, [], now,
                                     self.config.pnr_retransmit)
                + [self._event("pana.reauth_requested")])

    def terminate(self, now: float, cause: int = TERMINATION_LOGOUT) -> list[Action]:
        """End the session (PTR, RFC 5191 4.4); before a session exists just stop."""
        if self.state in (PacState.IDLE, PacState.CLOSED, PacState.TERMINATING):
            return []
        if self.state == PacState.DISCOVERING or self.channel is None:
            return self._close("discovery stopped", now)
        self.state = PacState.TERMINATING
        actions = self.timers.disarm(TIMER_REAUTH) + self.timers.disarm(TIMER_AUTH)
        return actions + self._send_request(TERMINATION, FLAG_R,
                                            [termination_cause_avp(cause)], now)

    # ---- input
    def receive(self, data: bytes, src: str, now: float, port: int = PANA_PORT) -> list[Action]:
        try:
            msg = decode_message(data)
            return self._dispatch(msg, Peer(src, port), now)
        except DecodeError as err:
            return self._drop("malformed", detail=err.reason)

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        if not self.timers.fire(key, now):
            return []
        if key == TIMER_RTX:
            return self._on_rtx_timeout(now)
        if key == TIMER_AUTH:
            if self.state in (PacState.DISCOVERING, PacState.AUTHENTICATING):
                return self._close("authentication timeout", now)
            if self.state == PacState.REAUTHENTICATING:
                return self._close("re-authentication timeout", now)
            return []
        if key == TIMER_REAUTH:
            return self.reauthenticate(now)
        if key == TIMER_LIFETIME:
            return self._close("session lifetime expired", now)
        return []

    # ---- dispatch
    def _dispatch(self, msg: Message, peer: Peer, now: float) -> list[Action]:
        if msg.type not in (AUTH, TERMINATION, NOTIFICATION):
            return self._drop("unexpected message", msg)
        ch = self.channel
        if (msg.type == AUTH and msg.is_request and msg.has(FLAG_S)
                and self.state in (PacState.IDLE, PacState.DISCOVERING)):
            return self._on_start_request(msg, peer, now)
        if ch is None:
            return self._drop("no session", msg)
        if msg.session_id != ch.session_id:
            return self._drop("unknown session", msg)
        moved = peer != ch.peer
        if moved and ch.sa is None:
            return self._drop("unexpected source", msg)
        if msg.is_request:
            kind = ch.classify_request(msg)
            if kind == "retransmission" and moved:
                return self._drop("unexpected source", msg)
            if kind == "retransmission":
                self.counters["request retransmission answered"] += 1
                return [self._transmit(ch.last_answer)]
            if kind == "bad":
                return self._drop("bad sequence number", msg)
            if self.state == PacState.CLOSED:
                return self._drop("session closed", msg)
            return self._on_request(msg, now, peer if moved else None)
        if not ch.matches_outstanding(msg):
            return self._drop("unexpected answer", msg)
        problem = auth_problem(msg, ch.sa)
        if problem:
            return self._drop(problem, msg)
        actions = self._follow(peer, "verified message") if moved else []
        return actions + self._on_answer(msg, now)

    def _follow(self, peer: Peer, why: str) -> list[Action]:
        """Talk to `peer` from now on: an AUTH-verified message came from there, or the
        runtime named a new PANA agent (ping(paa=...))."""
        old = self.channel.peer
        self.channel.peer = self.paa = peer
        return [self._event("pana.paa_address_changed", old=old.address, new=peer.address,
                            port=peer.port, why=why)]

    # ---- handshake (RFC 5191 4.1)
    def _on_start_request(self, msg: Message, peer: Peer, now: float) -> list[Action]:
        if msg.session_id == 0:
            return self._drop("PAR[S] without session id", msg)
        if msg.auth is not None:
            return self._drop("unexpected AUTH", msg)
        # RFC 5191 4.1: the PAR[S] carries PRF-Algorithm and Integrity-Algorithm AVPs;
        # without them there would be no PANA SA, hence no AUTH on anything that follows
        # (the final PAR with the Result-Code and the MIPv6 extension included).
        if not msg.prf_algorithms or not msg.integrity_algorithms:
            return self._drop("PAR[S] without algorithms", msg)
        prf_alg = next((a for a in msg.prf_algorithms
                        if a in self.config.prf_algorithms and a in PRF_DIGESTS), None)
        integrity_alg = next((a for a in msg.integrity_algorithms
                              if a in self.config.integrity_algorithms
                              and a in INTEGRITY_ALGORITHMS), None)
        if prf_alg is None or integrity_alg is None:
            return self._drop("no common algorithm", msg)
        phase = _Phase(reauth=False)
        response = None
        if msg.eap_payload is not None:
            phase.eap = self.config.new_eap_peer()
            response = phase.eap.receive(msg.eap_payload)

        ch = Channel(msg.session_id, peer, self.rng)
        self.channel, self.paa, self._phase = ch, peer, phase
        self._prf_alg, self._integrity_alg = prf_alg, integrity_alg
        avps = []
        if prf_alg is not None:
            avps += [prf_algorithm_avp(prf_alg), integrity_algorithm_avp(integrity_alg)]
        if response is not None:
            avps.append(eap_payload_avp(response))
        if self.config.mip6_request:
            avps.append(mip6.bootstrap_request_avp(self.config.mip6_request))
            if self.config.mip6_sa_proposal is not None:
                avps.append(self.config.mip6_sa_proposal.to_avp())
        answer = ch.answer(msg, avps, None)
        self._i_par, self._i_pan = msg.raw, answer
        self.state = PacState.AUTHENTICATING
        actions = self.timers.disarm(TIMER_RTX)
        actions += [self._transmit(answer),
                    self.timers.arm(TIMER_AUTH, now + self.config.auth_timeout),
                    self._event("pana.handshake", paa=peer.address, prf=prf_alg,
                                integrity=integrity_alg)]
        return actions

    # ---- requests from the PAA
    def _on_request(self, msg: Message, now: float, moved: Peer | None = None
                    ) -> list[Action]:
        """A new request; `moved`: it came from another address than the PaC's peer (it
        moves the peer there once its AUTH is verified)."""
        if msg.type == AUTH:
            if msg.has(FLAG_S):
                return self._drop("unexpected message", msg)
            if msg.has(FLAG_C):
                return self._on_complete(msg, now, moved)
            return self._on_auth_request(msg, now, moved)
        if msg.type == NOTIFICATION and not msg.has(FLAG_P):
            return self._drop("unexpected message", msg)  # PNR[A] only goes PaC -> PAA
        problem = auth_problem(msg, self.channel.sa)
        if problem:
            return self._drop(problem, msg)
        actions = self._follow(moved, "verified message") if moved else []
        answer = self.channel.answer(msg, [], self.channel.sa)
        if msg.type == TERMINATION:
            return actions + [self._transmit(answer)] + self._close(
                "terminated by PAA", now, cause=msg.termination_cause)
        return actions + [self._transmit(answer), self._event("pana.ping_answered")]

    def _on_auth_request(self, msg: Message, now: float, moved: Peer | None = None
                         ) -> list[Action]:
        """A PAR carrying EAP during (re-)authentication; in OPEN it starts a re-auth."""
        ch = self.channel
        if self.state == PacState.TERMINATING:
            return self._drop("unexpected message", msg)
        problem = auth_problem(msg, ch.sa)
        if problem:
            return self._drop(problem, msg)
        starts_reauth = self.state in (PacState.OPEN, PacState.REAUTHENTICATING) and (
            self._phase is None or self._phase.done)
        initiator = "PaC" if self.state == PacState.REAUTHENTICATING else "PAA"
        phase = _Phase(reauth=True) if starts_reauth else self._phase
        eap = phase.eap
        response = None
        if msg.eap_payload is not None:
            if eap is None:
                eap = self.config.new_eap_peer()
            response = eap.receive(msg.eap_payload)
        # Commit only now: a malformed EAP packet (DecodeError) leaves the state untouched.
        phase.eap = eap
        actions: list[Action] = []
        if starts_reauth:
            self._phase = phase
            self.state = PacState.REAUTHENTICATING
            actions += self.timers.disarm(TIMER_REAUTH)
            if ch.outstanding is not None:  # RFC 5609: a PAR ends a pending ping/PNR[A]
                ch.outstanding = None
                actions += self.timers.disarm(TIMER_RTX)
            # RFC 5609 SessionTimerReStart(FAILED_SESS_TIMEOUT): a re-authentication the
            # PAA never finishes (its answers lost, e.g. sent to a care-of address the PaC
            # has left) must end, not leave the session "reauthenticating" for its lifetime.
            actions.append(self.timers.arm(TIMER_AUTH, now + self.config.auth_timeout))
            actions.append(self._event("pana.reauth_started", by=initiator))
        if msg.nonce is not None and phase.paa_nonce is None:
            phase.paa_nonce = msg.nonce
        avps = []
        if phase.pac_nonce is None:
            phase.pac_nonce = self.rng.getrandbits(NONCE_LEN * 8).to_bytes(NONCE_LEN, "big")
            avps.append(nonce_avp(phase.pac_nonce))
        if response is not None:
            avps.append(eap_payload_avp(response))
        followed = self._follow(moved, "verified message") if moved else []
        actions.insert(0, self._transmit(ch.answer(msg, avps, ch.sa)))
        return followed + actions

    def _on_complete(self, msg: Message, now: float, moved: Peer | None = None
                     ) -> list[Action]:
        """The final PAR (C flag): EAP result, Result-Code, Key-Id, AUTH, extensions."""
        ch, phase = self.channel, self._phase
        if self.state not in (PacState.AUTHENTICATING, PacState.REAUTHENTICATING) \
                or phase is None or phase.done:
            return self._drop("unexpected message", msg)
        current = ch.sa
        new_key = msg.key_id is not None and (current is None or msg.key_id != current.key_id)
        if not new_key:
            # Verify before touching EAP state: this PAR must be protected by the current key.
            problem = auth_problem(msg, current)
            if problem:
                return self._drop(problem, msg)
        eap = phase.eap
        if msg.eap_payload is not None:
            if eap is None:
                eap = phase.eap = self.config.new_eap_peer()
            eap.receive(msg.eap_payload)
        eap_ok = eap is not None and eap.status == "success"
        msk = eap.msk if eap_ok else None
        emsk = getattr(eap, "emsk", None) if eap_ok else None
        new_sa = None
        if new_key:
            new_sa = self._derive_sa(msk, msg.key_id, emsk)
            if new_sa is None:
                return self._drop("cannot derive PANA_AUTH_KEY", msg)
            problem = auth_problem(msg, new_sa)
            if problem:
                return self._drop(problem, msg)
        elif current is None and self._can_derive(msk) and msg.result_code == PANA_SUCCESS:
            # RFC 5609: with an MSK available the PAA must protect the final PAR.
            return self._drop("missing AUTH", msg)
        answer_sa = new_sa or current
        avps = [key_id_avp(new_sa.key_id)] if new_sa else []
        # Verified by now (current key, or the new one): it may move the peer.
        actions: list[Action] = self._follow(moved, "verified message") if moved else []
        actions.append(self._transmit(ch.answer(msg, avps, answer_sa)))
        success = msg.result_code == PANA_SUCCESS and eap_ok
        if not success:
            reason = {PANA_AUTHENTICATION_REJECTED: "authentication rejected",
                      PANA_AUTHORIZATION_REJECTED: "authorization rejected"}.get(
                msg.result_code, "EAP failure" if msg.result_code == PANA_SUCCESS
                else f"result code {msg.result_code}")
            return actions + self._close(reason, now)
        if new_sa is not None:
            ch.sa = new_sa
        actions += self._opened(msg, now, phase.reauth)
        if self.config.mip6_request:
            # Extension AVPs count only from a final PAR verified with fresh key material.
            actions += self._bootstrap(msg, new_sa is not None, msk, emsk)
        phase.done = True
        return actions + self._arm_lifetime_timers(now)

    def _can_derive(self, msk: bytes | None) -> bool:
        p = self._phase
        return bool(msk and p and p.pac_nonce and p.paa_nonce and self._prf_alg is not None)

    def _derive_sa(self, msk: bytes | None, key_id: int, emsk: bytes | None = None
                   ) -> PanaSa | None:
        if not self._can_derive(msk):
            return None
        p = self._phase
        key = pana_auth_key(self._prf_alg, self._integrity_alg, msk, self._i_par, self._i_pan,
                            p.pac_nonce, p.paa_nonce, key_id)
        return PanaSa(key_id, key, self._prf_alg, self._integrity_alg, msk, p.pac_nonce,
                      p.paa_nonce, emsk)

    def _opened(self, msg: Message, now: float, reauth: bool) -> list[Action]:
        self.state = PacState.OPEN
        self.opened_at = now
        self.lifetime = msg.session_lifetime
        actions = self.timers.disarm(TIMER_AUTH) + self.timers.disarm(TIMER_REAUTH)
        actions += self.timers.disarm(TIMER_LIFETIME)
        ch = self.channel
        actions.append(PanaSessionOpen(ch.session_id, ch.peer.address, self.config.nai,
                                       ch.sa.key_id if ch.sa else None, self.lifetime, reauth))
        actions.append(self._event("pana.reauth_done" if reauth else "pana.session_open",
                                   key_id=ch.sa.key_id if ch.sa else None,
                                   lifetime=self.lifetime))
        return actions

    def _arm_lifetime_timers(self, now: float) -> list[Action]:
        if not self.lifetime:
            return []
        horizon = self.lifetime
        if self._mip_sa is not None:
            horizon = min(horizon, self._mip_sa.lifetime)
        return [self.timers.arm(TIMER_LIFETIME, now + self.lifetime),
                self.timers.arm(TIMER_REAUTH, now + self.config.reauth_fraction * horizon)]

    # ---- the MIPv6 bootstrapping extension
    def _bootstrap(self, msg: Message, verified: bool, msk: bytes | None,
                   emsk: bytes | None = None) -> list[Action]:
        """Effects for the extension after a successful final PAR, in the order a runtime
        applies them: bootstrap data (HoA, HA), the new SA, the SA it replaces, and the
        fallback for whatever was asked for and not validly granted."""
        requested = self.config.mip6_request
        sid = self.channel.session_id
        actions: list[Action] = []
        grant = mip6.parse_grant(msg) if verified else mip6.Mip6Grant(None, None, None, None)
        if grant.problems:
            self.counters["bad extension AVP"] += len(grant.problems)
            actions.append(self._event("pana.mip6_bad_avp", problems=list(grant.problems)))
        agent, hoa = grant.agent, grant.home_address
        if any(x is not None for x in (agent, hoa, grant.token)):
            actions.append(Mip6Bootstrapped(
                sid, agent.ha_address if agent else None, agent.home_prefix if agent else None,
                agent.prefix_len if agent else None, hoa.address if hoa else None,
                hoa.prefix_len if hoa else None, grant.token))
        old = self._mip_sa
        sa = grant.sa if requested & mip6.REQUEST_MIP6_SA else None
        if sa is not None and (agent is None or hoa is None):
            sa = None  # an SA is bound to a HoA and an HA
        key = None
        if sa is not None:
            p = self._phase
            key = mip6.derive_mn_ha_key(grant.kdf, self._prf_alg, msk, emsk, sa.spi,
                                        p.pac_nonce, p.paa_nonce, sa.algorithm)
            if key is None:   # the PAA used a root key this PaC's EAP method lacks
                self.counters["bad extension AVP"] += 1
                actions.append(self._event("pana.mip6_bad_avp", problems=[
                    f"no {mip6.KDF_NAMES[grant.kdf].upper()} for the MIP6-SA key"]))
                sa = None
        if sa is not None:
            actions.append(MipSaEstablished(sid, self.config.nai, hoa.address, agent.ha_address,
                                            sa.spi, sa.algorithm_name, sa.replay_name, key,
                                            sa.lifetime))
            self._mip_sa = _MipSa(sa.spi, hoa.address, sa.lifetime)
        elif old is not None:
            self._mip_sa = None
        if old is not None and (sa is None or old.spi != sa.spi):
            actions.append(MipSaRevoked(sid, self.config.nai, old.hoa, old.spi,
                                        REKEYED if sa is not None else "not renewed"))
        missing = list(grant.missing(requested))
        if requested & mip6.REQUEST_MIP6_SA and sa is None and "mip6_sa" not in missing:
            missing.append("mip6_sa")
        if missing:
            actions.append(StaticConfigFallback(sid, tuple(missing)))
            actions.append(self._event("pana.mip6_fallback", missing=missing))
        return actions

    # ---- answers from the PAA
    def _on_answer(self, msg: Message, now: float) -> list[Action]:
        ch = self.channel
        out = ch.outstanding
        ch.outstanding = None
        actions = self.timers.disarm(TIMER_RTX)
        if msg.type == TERMINATION:
            return actions + self._close("terminated", now)
        if msg.has(FLAG_P):
            return actions + [self._event("pana.ping_ok", rtt=now - out.first_sent)]
        if self.state == PacState.REAUTHENTICATING and (self._phase is None or self._phase.done):
            # PNA[A]: the PAA's PAR comes next; RFC 5609 restarts the session timer with
            # FAILED_SESS_TIMEOUT here, so a PAR that never arrives ends the session.
            actions.append(self.timers.arm(TIMER_AUTH, now + self.config.auth_timeout))
        return actions + [self._event("pana.reauth_accepted")]  # PNA[A]

    # ---- retransmission
    def _on_rtx_timeout(self, now: float) -> list[Action]:
        if self.state == PacState.DISCOVERING:
            deadline = self._pci_backoff.next(now)
            if deadline is None:
                return self._close("no PAA answered", now)
            self.counters["retransmission"] += 1
            return [self._pci_transmit(), self.timers.arm(TIMER_RTX, deadline),
                    self._event("pana.pci_sent", retransmission=True)]
        ch = self.channel
        if ch is None or ch.outstanding is None:
            return []
        out = ch.outstanding
        deadline = out.backoff.next(now)
        if deadline is None:
            ch.outstanding = None
            reason = "terminated" if out.type == TERMINATION else "PAA unreachable"
            return [self._event("pana.gave_up", message=out.name)] + self._close(reason, now)
        self.counters["retransmission"] += 1
        return [self._transmit(out.data), self.timers.arm(TIMER_RTX, deadline),
                self._event("pana.retransmit", message=out.name)]

    # ---- helpers
    def _send_request(self, msg_type: int, flags: int, avps, now: float,
                      policy: RetransmitPolicy | None = None) -> list[Action]:
        ch = self.channel
        data = ch.request(msg_type, flags, avps, now, policy or self.config.req_retransmit)
        return [self._transmit(data), self.timers.arm(TIMER_RTX, ch.outstanding.backoff.deadline)]

    def _close(self, reason: str, now: float, cause: int | None = None) -> list[Action]:
        had_session = self.channel is not None
        self.state = PacState.CLOSED
        actions: list[Action] = []
        for key in (TIMER_RTX, TIMER_AUTH, TIMER_REAUTH, TIMER_LIFETIME):
            actions += self.timers.disarm(key)
        if self.channel is not None:
            self.channel.outstanding = None
        sid = self.session_id or 0
        if self._mip_sa is not None:
            actions.append(MipSaRevoked(sid, self.config.nai, self._mip_sa.hoa,
                                        self._mip_sa.spi, reason))
            self._mip_sa = None
        if had_session:
            actions.append(PanaSessionClosed(sid, self.paa.address, self.config.nai, reason,
                                             cause))
        actions.append(self._event("pana.session_closed", reason=reason, cause=cause))
        return actions

    def _forget_session(self) -> None:
        self.channel = None
        self.paa = None
        self._phase = None
        self._i_par = self._i_pan = b""
        self._prf_alg = self._integrity_alg = None
        self._mip_sa = None
        self.lifetime = None
        self.opened_at = None

    def _pci_transmit(self) -> Transmit:
        return Transmit(self._pci, dst=self.config.paa_address, port=self.config.paa_port,
                        meta={"discovery": self.config.discovery})

    def _transmit(self, data: bytes) -> Transmit:
        return Transmit(data, dst=self.paa.address, port=self.paa.port)

    def _drop(self, reason: str, msg: Message | None = None, detail: str = "") -> list[Action]:
        self.counters[reason] += 1
        fields = {"reason": reason}
        if msg is not None:
            fields["message"] = describe(msg)
        if detail:
            fields["detail"] = detail
        return [self._event("pana.drop", **fields)]

    def _event(self, name: str, **fields) -> Event:
        fields.setdefault("session_id", self.session_id)
        fields.setdefault("role", "pac")
        return Event(name, fields)
