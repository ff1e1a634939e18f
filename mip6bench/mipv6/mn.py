"""Mobile node core: home registration, return routability and route optimisation.

    mn = MobileNode("2001:db8:1::100", "2001:db8:1::1", sa_store, nai="mn1@example.net")
    mn.move_to(coa, now)                 # attached to a foreign link: register (or handover)
    mn.return_home(now)                  # back on the home link (RFC 6275 11.5.4)
    mn.register(now)                     # (re)send the home registration, e.g. once an SA arrived
    mn.start_route_optimization(cn, now) # RR + BU with this correspondent
    mn.stop_route_optimization(cn, now)
    mn.receive(mh_bytes, src, dst, now, rh2=..., hao=...)
    mn.handle_timer(key, now)

Home registration (RFC 6275 11.7.1, 11.8): BUs to the HA carry H and A, the CoA in an
Alternate Care-of Address option, and RFC 4285 protection with the SA that
``sa_store.lookup_hoa(hoa)`` returns at send time: MN-ID (the NAI, if known), a Replay
Protection timestamp (``now + clock_offset`` in NTP format, strictly increasing) when the
SA uses timestamps, and the MN-HA Authentication option. The first registration waits
InitialBindackTimeoutFirstReg (1.5 s) for the BA, later ones InitialBindackTimeout (1 s);
each retransmission doubles the wait up to MAX_BINDACK_TIMEOUT (32 s) and uses a fresh
sequence number and timestamp. When a 32 s wait passes without a BA a RegistrationFailed
effect is reported once and retransmission continues every 32 s (RFC 6275 11.8 allows it)
unless ``retransmit_forever`` is False. An accepted registration is refreshed at
``refresh_fraction`` (default 0.85) of the granted lifetime, counted from when the BU was
sent, or earlier if the HA's Binding Refresh Advice says so.

BA status handling: < 128 accepted (HomeRegistered, TunnelUp; HomeDeregistered for a
deregistration, also on 133, which means the HA holds no binding); 135 resynchronise the
sequence number from the BA and retry; 144 resynchronise the timestamp clock from the
seconds the HA put in the BA and retry (at most ``max_resyncs`` times each); anything else
is a RegistrationFailed effect with the status. BAs that are not correctly signed with the
SA, or that do not echo the BU's sequence number and timestamp, are dropped and counted.

Route optimisation (RFC 6275 5.2, 11.6, 11.7.2): once home registration is accepted, a HoTI
goes through the tunnel (MhTransmit.via "tunnel") and a CoTI directly ("direct"), both
retransmitted from 1 s with doubling up to ``rr_max_attempts`` tries; then a BU with Nonce
Indices and Binding Authorization Data, lifetime at most 420 s and at most the remaining
home registration. RouteOptimizationOn when the CN accepts (or right away without
``cn_ack``); RouteOptimizationOff(reason) whenever the data must fall back to the tunnel:
RR or BU timeout, a rejecting BA, a Binding Error (status 2 also disables RO with that CN
for good; status 1 while RO is on, a CN that lost our binding, starts RR again at once,
RFC 6275 11.3.6), movement (RO is re-established for the new CoA, see below), returning
home. On 136/137/138 the expired token(s) are fetched again. RO bindings are refreshed
with a new RR at ``refresh_fraction`` of their lifetime.

Handover sequencing: what may legally run in parallel with the home registration does
(RFC 6275 11.6.1: HoTI and CoTI in parallel; 5.2.5: the CoTI goes directly, the HoTI
through the HA). With the home BU for the new CoA go the CoA's NATFW "rr" pinholes (with
``firewall_traversal``; they need only the CoA, the home address's sessions do not change)
and, once granted, the CoTI. The HoTI, when the home token is stale, waits for the home
BA: the HA forwards a reverse-tunnelled packet only from the care-of address it has bound
(10.4.5). The BU to the CN waits for both tokens and the home BA (the CN is never bound to
a CoA the HA may still refuse). In move_to's actions this signalling comes before the
data path's fallback (RouteOptimizationOff, a kernel route change it does not depend on),
as effects apply in order. A first registration (no binding at the HA) runs RR after its
BA, as before: the home address's sessions are signalled through the tunnel then.

Returning home: the tunnel goes down at once, every RO is switched off, the HA gets a
deregistration (CoA = HoA, lifetime 0, sent from the HoA without HAO) and each CN that had a
binding gets a deregistration BU authorised with the home keygen token alone (a HoTI is
sent directly from home if no fresh token is left).

Firewall traversal (seed paper 3.2, with ``firewall_traversal``): before return
routability for a CoA, an OpenPinholes(cn, hoa, coa, "rr") effect asks the runtime's NSIS
initiator to open the CN's firewall for HoTI/BU from the HoA and CoTI/BU from the CoA;
RR starts when pinholes_ready(cn, coa, "rr", ok=True) comes back, and RO with that CN is
switched off (to be retried after the next home registration) on a refusal (which also
tears down that CoA's sessions of the round, ClosePinholes) or after ``traversal_timeout``. Once the CN accepted the BU, OpenPinholes(..., "data") opens the
route-optimised data flow (from the CoA with a Home Address option); the data path
switches (RouteOptimizationOn) only when that is granted, so no packet is dropped at the
firewall meanwhile. Movement, returning home and stopping RO emit ClosePinholes for the
CoAs left behind (coa == hoa: the home address's session).

The MN's own foreign network behind a stateful firewall (RFC 4487 3.2, with
``foreign_firewall``): what the MN did not start cannot reach its CoA there (the HA's
tunnelled packets when a CN starts a connection to the HoA, the CN's route-optimised
packets when the CN sends first). With every new CoA the MN emits OpenPinholes(ha, hoa,
coa, "inbound") (the runtime signals NATFW EXT for the HA -> CoA tunnel to the edge
firewall) together with the BU, and on movement ClosePinholes(ha, ..., moving=True) for
the old CoA (re-signalled for the new one), on returning home a teardown. Gating, the
trade-off chosen: the home registration is NOT held for the EXT answer. The BA, and
everything that answers what the MN sends through the tunnel, pass the firewall as
established traffic anyway, so holding HomeRegistered (and with it RR, RO and the
MN's own traffic) for one more round would only delay what already works; the EXT round
runs in parallel with BU/BA, and until its answer only unsolicited inbound traffic
through the tunnel is still dropped. pinholes_ready(ha, coa, "inbound", ok) is recorded
(``inbound_coa``, counters inbound.ready / inbound.refused, event
mipv6.mn.inbound_ready); a refusal leaves the MN reachable only for what it starts.
Route-optimised data IS gated: the RO data round asks for phase "inbound_ro" (the CN's
RH2 packets to the CoA, EXT) — "data_inbound" with the CN's firewall as well — and
RouteOptimizationOn waits until the whole round is granted, since from then on the CN
sends to the CoA directly, first or not.

Home firewall traversal (RFC 4487 section 3, with ``home_traversal``): the HA sits behind
a stateful firewall that drops the BU from a care-of address and the reverse tunnel
until NSIS opens them. Before the first BU to the HA for a new CoA (first registration
and every handover) the core emits OpenPinholes(ha, hoa, coa, "home") and holds the BU
until pinholes_ready(ha, coa, "home", ok=True); refreshes for the same CoA go straight
out (the NATFW sessions refresh themselves). A refusal or ``traversal_timeout`` without
an answer is counted (home_traversal.refused | .timeout), reported (RegistrationFailed,
mipv6.mn.traversal_done ok=false) and retried for the same CoA after a back-off that
doubles from INITIAL_BINDACK_TIMEOUT_FIRST_REG up to MAX_BINDACK_TIMEOUT (once it has
reached the maximum, no more retries without ``retransmit_forever``). A move emits
ClosePinholes(ha, ..., old coa, moving=True), so the same sessions are signalled again
with the new CoA; returning home tears them down.

A Binding Refresh Request from the HA triggers a re-registration; one from a CN with RO
triggers a new RR. Timer keys: ("home", "retransmit" | "refresh" | "expire" |
"traversal" | "traversal_retry") and
("cn", cn_address, "hoti" | "coti" | "bu" | "refresh" | "expire" | "retry").

RO that failed for a reason that may pass (a refused or unanswered firewall round, an
unanswered RR or BU to the CN) falls back to the tunnel and is tried again while wanted,
after a back-off doubling from INITIAL_BINDACK_TIMEOUT_FIRST_REG up to MAX_BINDACK_TIMEOUT,
then every MAX_BINDACK_TIMEOUT with ``retransmit_forever`` or not at all without it
(counters ro.retry, ro.retry_exhausted; event mipv6.mn.ro_retry).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mip6bench.mipv6.constants import (
    INITIAL_BINDACK_TIMEOUT,
    INITIAL_BINDACK_TIMEOUT_FIRST_REG,
    MAX_BINDACK_TIMEOUT,
    MAX_RR_BINDING_LIFETIME,
    MAX_TOKEN_LIFETIME,
    BAStatus,
    BEStatus,
    ba_status_name,
)
from mip6bench.mipv6.core import MobilityCore, Received
from mip6bench.mipv6.crypto import (
    binding_management_key,
    encode_with_bad,
    encode_with_mn_ha,
    ntp_timestamp,
    verify_bad,
    verify_mn_ha,
)
from mip6bench.mipv6.effects import (
    PINHOLES_UNANSWERED,
    ClosePinholes,
    HomeDeregistered,
    OpenPinholes,
    HomeRegistered,
    RegistrationFailed,
    RouteOptimizationOff,
    RouteOptimizationOn,
    TunnelDown,
    TunnelUp,
)
from mip6bench.mipv6.sa import SAStore
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    MobileNodeIdentifier,
    NonceIndices,
    ReplayProtection,
    normalize_address,
    wire_lifetime,
)
from mip6bench.sansio import Action, Event, StartTimer, StopTimer


@dataclass
class PendingBindingUpdate:
    """A BU waiting for its BA."""

    seq: int
    coa: str
    lifetime: int
    sent_at: float
    dereg: bool
    timestamp: int | None = None   # home registration: RFC 4285 timestamp sent
    kbm: bytes | None = None       # correspondent registration: key of the BAD
    spi: int | None = None         # home registration: the SA that signed it


@dataclass
class HomeBinding:
    """The binding update list entry for the home agent (RFC 6275 11.1)."""

    seq: int
    state: str = "idle"            # idle | registering | registered | deregistering
    pending: PendingBindingUpdate | None = None
    timeout: float = INITIAL_BINDACK_TIMEOUT
    first_registration: bool = True
    failure_reported: bool = False
    resyncs: int = 0
    registered_coa: str | None = None
    registered_spi: int | None = None   # the SA that signed the accepted registration
    lifetime: float = 0.0
    expires_at: float = 0.0
    last_timestamp: int = -1       # last RFC 4285 timestamp sent
    last_acked_timestamp: int = -1  # timestamp of the last BA that accepted a BU
    # Home firewall traversal: the CoA the "home" pinholes are open for, the CoA they are
    # being signalled for, and the back-off before the next try after a failure.
    traversal_coa: str | None = None
    traversal_pending: str | None = None
    traversal_backoff: float = INITIAL_BINDACK_TIMEOUT_FIRST_REG


@dataclass
class TestExchange:
    """An outstanding HoTI or CoTI."""

    cookie: bytes
    attempts: int
    timeout: float
    coa: str | None = None


@dataclass
class CorrespondentBinding:
    """The binding update list entry for one correspondent node."""

    cn: str
    seq: int
    wanted: bool = False           # the runtime asked for route optimisation
    state: str = "idle"            # idle | rr | bu | data | on | dereg
    disabled_reason: str | None = None
    home_test: TestExchange | None = None
    care_of_test: TestExchange | None = None
    home_token: bytes | None = None
    home_nonce_index: int = 0
    home_token_at: float = 0.0
    care_of_token: bytes | None = None
    care_of_nonce_index: int = 0
    care_of_token_at: float = 0.0
    care_of_token_coa: str | None = None
    pending: PendingBindingUpdate | None = None
    bu_attempts: int = 0
    bu_timeout: float = INITIAL_BINDACK_TIMEOUT
    resyncs: int = 0
    ro_on: bool = False
    ro_coa: str | None = None
    has_binding: bool = False      # the CN holds a binding for us (needs deregistration)
    expires_at: float = 0.0
    timers: set = field(default_factory=set)
    # Firewall traversal (NSIS): the CoA the "rr" pinholes are open for, the CoA they are
    # being signalled for, and the CoA the "data" pinholes were asked for.
    traversal_coa: str | None = None
    traversal_pending: str | None = None
    data_coa: str | None = None
    data_lifetime: float = 0.0
    # The wait before the next attempt after RO failed for a reason that may pass.
    retry_backoff: float = INITIAL_BINDACK_TIMEOUT_FIRST_REG


class MobileNode(MobilityCore):
    """Sans-I/O mobile node. See the module docstring.

    home_address, home_agent: the HoA and the HA address.
    sa_store: where the MN-HA SA for the HoA is looked up at each send.
    nai: the NAI for the MN-ID option (default: the SA's NAI, if any).
    The MN starts at home; the runtime calls move_to(coa, now) once it has a CoA.
    home_lifetime: requested home registration lifetime (s); cn_lifetime: requested RO
        lifetime (s, at most 420).
    refresh_fraction: refresh bindings at this fraction of their granted lifetime.
    clock_offset: added to ``now`` for RFC 4285 timestamps; adjusted on status 144.
    cn_ack: set the A flag in BUs to CNs (needed to know when RO is on).
    rr_max_attempts: HoTI/CoTI and CN BU transmissions before giving up on RO.
    max_resyncs: sequence/timestamp resynchronisations in a row before reporting failure.
    firewall_traversal: open the correspondent's firewall with NSIS before return
        routability (OpenPinholes "rr", answered by pinholes_ready) and for the data once
        RO is on (OpenPinholes "data"); give up on RO with that CN for this CoA when the
        answer is a refusal or takes longer than traversal_timeout seconds.
    foreign_firewall: the foreign networks' edges are stateful firewalls: open them for
        the HA's tunnel (OpenPinholes "inbound") with each CoA and for the CN's
        route-optimised packets before RO is on (see the module docstring).
    home_traversal: the HA is behind a firewall: open it with NSIS (OpenPinholes
        "home") before the first BU for each care-of address (see the module docstring).
    """

    def __init__(self, home_address: str, home_agent: str, sa_store: SAStore, *,
                 nai: str | None = None,
                 home_lifetime: float = 600, cn_lifetime: float = MAX_RR_BINDING_LIFETIME,
                 refresh_fraction: float = 0.85, clock_offset: float = 0.0,
                 link_local_compat: bool = False, use_alternate_coa: bool = True,
                 cn_ack: bool = True, rr_max_attempts: int = 5, max_resyncs: int = 3,
                 retransmit_forever: bool = True, firewall_traversal: bool = False,
                 traversal_timeout: float = 10.0, foreign_firewall: bool = False,
                 home_traversal: bool = False,
                 random_bytes=os.urandom):
        super().__init__(random_bytes=random_bytes)
        self.hoa = normalize_address(home_address)
        self.ha = normalize_address(home_agent)
        self.sa_store = sa_store
        self.nai = nai
        self.coa: str | None = None
        if not 0 < refresh_fraction < 1:
            raise ValueError("refresh_fraction must be between 0 and 1")
        self.home_lifetime = wire_lifetime(home_lifetime)
        if self.home_lifetime <= 0:
            raise ValueError("home_lifetime must be at least 4 seconds")
        self.cn_lifetime = wire_lifetime(min(cn_lifetime, MAX_RR_BINDING_LIFETIME))
        if self.cn_lifetime <= 0:
            raise ValueError("cn_lifetime must be at least 4 seconds")
        if rr_max_attempts < 1 or max_resyncs < 0:
            raise ValueError("rr_max_attempts must be >= 1 and max_resyncs >= 0")
        self.refresh_fraction = refresh_fraction
        self.clock_offset = clock_offset
        self.link_local_compat = link_local_compat
        self.use_alternate_coa = use_alternate_coa
        self.cn_ack = cn_ack
        self.rr_max_attempts = rr_max_attempts
        self.max_resyncs = max_resyncs
        self.retransmit_forever = retransmit_forever
        if traversal_timeout <= 0:
            raise ValueError("traversal_timeout must be positive")
        self.firewall_traversal = firewall_traversal
        self.home_traversal = home_traversal
        self.traversal_timeout = traversal_timeout
        self.foreign_firewall = foreign_firewall
        self.inbound_coa: str | None = None       # the CoA the HA tunnel's EXT was granted for
        self.home = HomeBinding(seq=self._random_seq())
        self.correspondents: dict[str, CorrespondentBinding] = {}

    # ------------------------------------------------------------------ public state

    @property
    def at_home(self) -> bool:
        return self.coa is None

    @property
    def home_registered(self) -> bool:
        return self.home.state == "registered" or (self.home.state == "registering"
                                                     and self.home.registered_coa is not None)

    def route_optimized(self, cn: str) -> bool:
        entry = self.correspondents.get(normalize_address(cn))
        return bool(entry and entry.ro_on)

    def holds(self, until: str, *, coa: str | None = None, cn: str | None = None) -> bool:
        """What a runtime waits for: "registered" (the home registration for the
        current CoA, which is `coa` if given), "ro" (route optimisation with `cn`, for
        `coa` if given) or "home" (back home and deregistered)."""
        if until == "registered":
            return (self.coa is not None and self.home_registered and self.home.registered_coa == self.coa
                    and (coa is None or self.coa == coa))
        if until == "ro":
            entry = self.correspondents.get(cn)
            return bool(entry and entry.ro_on and (coa is None or entry.ro_coa == coa))
        if until == "home":
            return self.at_home and self.home.state == "idle" and self.home.registered_coa is None
        raise ValueError("until must be registered, ro or home")

    def summary(self, correspondents: bool = False) -> dict:
        """The state for status output (with `correspondents`: each one's too)."""
        out = {"hoa": self.hoa, "ha": self.ha, "coa": self.coa, "at_home": self.at_home,
               "home_state": self.home.state, "registered_coa": self.home.registered_coa,
               "route_optimized": sorted(cn for cn, e in self.correspondents.items() if e.ro_on)}
        if correspondents:
            out["correspondents"] = {cn: {"state": e.state, "ro_on": e.ro_on, "ro_coa": e.ro_coa,
                                          "disabled": e.disabled_reason}
                                     for cn, e in self.correspondents.items()}
        return out

    def _random_seq(self) -> int:
        return int.from_bytes(self.random_bytes(2), "big")

    def _handlers(self):
        return {BindingAck: self._on_binding_ack, HomeTest: self._on_home_test,
                CareOfTest: self._on_care_of_test, BindingRefreshRequest: self._on_brr,
                BindingError: self._on_binding_error}

    # ------------------------------------------------------------------ runtime commands

    def move_to(self, care_of_address: str, now: float) -> list[Action]:
        """The MN has a new primary care-of address (RFC 6275 11.5)."""
        coa = normalize_address(care_of_address)
        if coa == self.hoa:
            return self.return_home(now)
        if coa == self.coa:
            return []
        old, self.coa = self.coa, coa
        # A handover: the HA holds a binding for the home address (a first registration
        # or one after returning home has none).
        handover = self.home.registered_coa is not None and self.home.registered_coa != self.hoa
        self.counters["movement"] += 1
        actions: list[Action] = [Event("mipv6.mn.movement", {"hoa": self.hoa, "old_coa": old, "coa": coa})]
        data_path: list[Action] = []
        for entry in self.correspondents.values():
            # Care-of tokens belong to the old CoA.
            entry.care_of_token = None
            entry.retry_backoff = INITIAL_BINDACK_TIMEOUT_FIRST_REG
            actions += self._close_pinholes(entry, "movement to a new care-of address", moving=True)
            if entry.state == "dereg":
                actions += self._reset_correspondent(entry)
            if entry.ro_on or entry.state in ("rr", "bu", "data"):
                # Only the data path's switch goes to the end; the timers it stops are
                # stopped here, before the new round below may start them again.
                for action in self._ro_off(entry, "movement to a new care-of address", keep_wanted=True):
                    (data_path if isinstance(action, RouteOptimizationOff) else actions).append(action)
        actions += self._open_inbound(old, coa)
        actions += self._start_home_registration(now)
        if handover:
            # What does not need the new home binding starts with the home BU (see
            # _run_return_routability): the CoA's NATFW sessions, then the CoTI. It comes
            # before the data path's fallback to the tunnel (a kernel route change the
            # signalling for the new CoA does not depend on; effects apply in order).
            for entry in self.correspondents.values():
                if entry.wanted and entry.state == "idle" and not entry.disabled_reason:
                    actions += self._run_return_routability(entry, now)
        return actions + data_path

    def return_home(self, now: float) -> list[Action]:
        """The MN is back on its home link (RFC 6275 11.5.4)."""
        if self.coa is None:
            return []
        old, self.coa = self.coa, None
        self.counters["returned_home"] += 1
        actions: list[Action] = [Event("mipv6.mn.returned_home", {"hoa": self.hoa, "old_coa": old})]
        if self.home.registered_coa is not None:
            actions.append(TunnelDown(self.hoa, "returned home"))
        if self.foreign_firewall and old is not None:
            self.inbound_coa = None
            actions.append(ClosePinholes(self.ha, self.hoa, old, "returned home"))
        actions += self._close_home_pinholes("returned home")
        for entry in self.correspondents.values():
            had_binding = entry.has_binding
            if entry.ro_on or entry.state in ("rr", "bu", "data"):
                actions += self._ro_off(entry, "returned home", keep_wanted=False)
            else:
                actions += self._reset_correspondent(entry)
            entry.wanted = False
            entry.care_of_token = None
            actions += self._close_pinholes(entry, "returned home")
            if had_binding:
                entry.state = "dereg"
                actions += self._run_return_routability(entry, now)
        if self.home.state != "idle" or self.home.registered_coa is not None:
            actions += self._start_home_registration(now)
        else:
            actions += self._stop_home_timers()
        return actions

    def register(self, now: float) -> list[Action]:
        """(Re)send the home registration for the current location."""
        if self.coa is None and self.home.registered_coa is None and self.home.state == "idle":
            return []
        return self._start_home_registration(now)

    def security_associations_changed(self, now: float) -> list[Action]:
        """The SA store changed (an SA arrived, was replaced or removed): register if we
        were waiting for an SA, and refresh an accepted registration at once when the SA
        that signed it is no longer the one to sign with (PANA re-authentication brought
        a new one, or a new session after the old one ended). The HA caps a binding by
        the remaining lifetime of its SA and ends it when the SA is revoked, so a binding
        lives on only through a Binding Update signed with the new SA."""
        home = self.home
        sa = self.sa_store.lookup_hoa(self.hoa, now)
        if self.coa is None or sa is None:
            return []
        pending = home.pending
        if pending is not None:
            # A BU in flight signed with the old SA: its BA may never verify (the old SA
            # is going) and its binding would end with that SA; send it again now.
            if pending.dereg or pending.spi == sa.spi:
                return []
            old = pending.spi
        elif home.state not in ("idle", "registered"):
            return []   # waiting for the home firewall's pinholes: the BU follows
        elif home.registered_coa is None:
            return self._start_home_registration(now)
        elif home.registered_spi == sa.spi:
            return []
        else:
            old = home.registered_spi
        self.counters["home.refresh_new_sa"] += 1
        return [Event("mipv6.mn.refresh_new_sa", {"hoa": self.hoa, "old_spi": old,
                                                  "spi": sa.spi})] + self._start_home_registration(now)

    def start_route_optimization(self, cn: str, now: float) -> list[Action]:
        cn = normalize_address(cn)
        entry = self._correspondent(cn)
        if entry.disabled_reason:
            return [RouteOptimizationOff(cn, self.hoa, entry.disabled_reason)]
        entry.wanted = True
        if self.at_home:
            return [Event("mipv6.mn.ro_deferred", {"cn": cn, "reason": "at home"})]
        if not self.home_registered or self.home.registered_coa != self.coa:
            return [Event("mipv6.mn.ro_deferred", {"cn": cn, "reason": "home registration pending"})]
        if entry.state in ("rr", "bu", "data") or (entry.ro_on and entry.ro_coa == self.coa):
            return []
        actions: list[Action] = []
        if entry.state == "dereg":
            # Wanted again while the deregistration is outstanding: a registration
            # replaces it (it would otherwise be sent as another deregistration).
            actions += self._reset_correspondent(entry)
        return actions + self._run_return_routability(entry, now)

    def want_route_optimization(self, cns, now: float) -> list[Action]:
        """Route optimisation with each of `cns` not already wanted (after a move, or
        once the core exists: returning home ended it for good)."""
        actions: list[Action] = []
        for cn in sorted(cns):
            entry = self.correspondents.get(cn)
            if entry is None or not entry.wanted:
                actions += self.start_route_optimization(cn, now)
        return actions

    def stop_route_optimization(self, cn: str, now: float) -> list[Action]:
        """Stop RO with ``cn``; deregister there if a fresh home token allows it."""
        cn = normalize_address(cn)
        entry = self.correspondents.get(cn)
        if entry is None:
            return []
        entry.wanted = False
        actions: list[Action] = []
        if entry.ro_on or entry.state in ("rr", "bu", "data"):
            actions += self._ro_off(entry, "stopped by request", keep_wanted=False)
        else:
            actions += self._reset_correspondent(entry)
        actions += self._close_pinholes(entry, "route optimization stopped")
        if self.firewall_traversal:
            # The home address's pinhole (HoTI/BU from the HoA) is needed no more either,
            # once the deregistration below went through (it also expires by itself).
            actions.append(ClosePinholes(cn, self.hoa, self.hoa, "route optimization stopped"))
        if entry.has_binding and self._home_token_fresh(entry, now):
            entry.state = "dereg"
            actions += self._send_correspondent_bu(entry, now)
        return actions

    # ------------------------------------------------------------------ home registration

    def _next_timestamp(self, now: float) -> int:
        ts = ntp_timestamp(max(0.0, now + self.clock_offset))
        if ts <= self.home.last_timestamp:
            ts = self.home.last_timestamp + 1
        self.home.last_timestamp = ts
        return ts

    def _stop_home_timers(self) -> list[Action]:
        return [StopTimer(("home", "retransmit")), StopTimer(("home", "refresh")), StopTimer(("home", "expire"))]

    def _start_home_registration(self, now: float) -> list[Action]:
        home = self.home
        home.first_registration = home.registered_coa is None and self.coa is not None
        home.timeout = INITIAL_BINDACK_TIMEOUT_FIRST_REG if home.first_registration else INITIAL_BINDACK_TIMEOUT
        home.failure_reported = False
        home.resyncs = 0
        actions: list[Action] = [StopTimer(("home", "refresh"))]
        if self.home_traversal and self.coa is not None and home.traversal_coa != self.coa:
            # The HA's firewall is not open for this CoA yet: no BU until it is (a BU
            # still outstanding for an earlier CoA is abandoned, its BA would be stale).
            home.pending = None
            home.state = "registering"
            home.traversal_backoff = INITIAL_BINDACK_TIMEOUT_FIRST_REG
            return actions + [StopTimer(("home", "retransmit"))] + self._open_home_pinholes(now)
        return actions + self._send_home_bu(now)

    # ------------------------------------------------------------------ home firewall traversal

    def _open_home_pinholes(self, now: float) -> list[Action]:
        home, coa = self.home, self.coa
        actions: list[Action] = []
        for old in {home.traversal_coa, home.traversal_pending} - {None, coa}:
            # Moving on: the sessions stay, to be signalled again with the new CoA.
            actions.append(ClosePinholes(self.ha, self.hoa, old, "movement to a new care-of address",
                                         moving=True))
        home.traversal_coa = None
        if home.traversal_pending == coa:
            return actions
        home.traversal_pending = coa
        self.counters["home_traversal.started"] += 1
        return actions + [StopTimer(("home", "traversal_retry")),
                          OpenPinholes(self.ha, self.hoa, coa, "home"),
                          StartTimer(("home", "traversal"), now + self.traversal_timeout),
                          Event("mipv6.mn.traversal_started", {"cn": self.ha, "coa": coa,
                                                               "phase": "home"})]

    def _home_pinholes_ready(self, coa: str, ok: bool, reason: str, now: float) -> list[Action]:
        home = self.home
        event = Event("mipv6.mn.traversal_done", {"cn": self.ha, "coa": coa, "phase": "home",
                                                  "ok": ok, "reason": reason})
        if home.traversal_pending is None or home.traversal_pending != coa or coa != self.coa:
            self.counters["home_traversal.stale_answer"] += 1
            return [event]
        home.traversal_pending = None
        actions: list[Action] = [event, StopTimer(("home", "traversal"))]
        if not ok:
            self.counters["home_traversal.refused"] += 1
            return actions + self._home_traversal_failed(f"home firewall traversal failed: {reason}", now)
        home.traversal_coa = coa
        home.traversal_backoff = INITIAL_BINDACK_TIMEOUT_FIRST_REG
        self.counters["home_traversal.ready"] += 1
        return actions + self._send_home_bu(now)

    def _home_traversal_failed(self, reason: str, now: float) -> list[Action]:
        home = self.home
        home.state = "registered" if home.registered_coa else "idle"
        actions: list[Action] = [RegistrationFailed(self.ha, self.hoa, self.coa, None, reason)]
        if home.traversal_backoff >= MAX_BINDACK_TIMEOUT and not self.retransmit_forever:
            self.counters["home_traversal.gave_up"] += 1
            return actions
        actions.append(StartTimer(("home", "traversal_retry"), now + home.traversal_backoff))
        home.traversal_backoff = min(home.traversal_backoff * 2, MAX_BINDACK_TIMEOUT)
        return actions

    def _close_home_pinholes(self, reason: str) -> list[Action]:
        home = self.home
        opened = sorted({home.traversal_coa, home.traversal_pending} - {None})
        home.traversal_coa = home.traversal_pending = None
        return [StopTimer(("home", "traversal")), StopTimer(("home", "traversal_retry"))] + [
            ClosePinholes(self.ha, self.hoa, coa, reason) for coa in opened]

    def _send_home_bu(self, now: float) -> list[Action]:
        home = self.home
        sa = self.sa_store.lookup_hoa(self.hoa, now)
        dereg = self.coa is None
        coa = self.hoa if dereg else self.coa
        if sa is None:
            home.pending = None
            home.state = "registered" if home.registered_coa else "idle"
            self.counters["home.no_sa"] += 1
            return [StopTimer(("home", "retransmit")),
                    RegistrationFailed(self.ha, self.hoa, coa, None, "no security association for the home address")]
        home.seq = (home.seq + 1) & 0xFFFF
        lifetime = 0 if dereg else self.home_lifetime
        options: list = []
        if not dereg and self.use_alternate_coa:
            options.append(AlternateCareOfAddress(coa))
        nai = self.nai or sa.nai
        if nai:
            options.append(MobileNodeIdentifier.from_nai(nai))
        timestamp = None
        if sa.replay == "timestamp":
            timestamp = self._next_timestamp(now)
            options.append(ReplayProtection(timestamp))
        bu = BindingUpdate(home.seq, lifetime, ack=True, home_registration=True,
                           link_local_compat=self.link_local_compat, options=tuple(options))
        src, hao = (self.hoa, None) if dereg else (coa, self.hoa)
        data = encode_with_mn_ha(bu, sa, coa, self.hoa, hao or src, self.ha)
        home.pending = PendingBindingUpdate(home.seq, coa, lifetime, now, dereg, timestamp=timestamp,
                                            spi=sa.spi)
        home.state = "deregistering" if dereg else "registering"
        return [self._send(bu, src, self.ha, data=data, hao=hao, via="direct"),
                StartTimer(("home", "retransmit"), now + home.timeout),
                Event("mipv6.mn.home_bu_sent", {"hoa": self.hoa, "coa": coa, "seq": home.seq,
                                                "lifetime": lifetime, "spi": sa.spi})]

    def _home_retransmit(self, now: float) -> list[Action]:
        home = self.home
        if home.pending is None:
            return []
        actions: list[Action] = []
        self.counters["home.retransmit"] += 1
        if home.timeout >= MAX_BINDACK_TIMEOUT:
            if not home.failure_reported:
                home.failure_reported = True
                actions.append(RegistrationFailed(self.ha, self.hoa, home.pending.coa, None,
                                                  "no binding acknowledgement from the home agent"))
            if not self.retransmit_forever:
                home.pending = None
                home.state = "registered" if home.registered_coa else "idle"
                return actions
        home.timeout = min(home.timeout * 2, MAX_BINDACK_TIMEOUT)
        return actions + self._send_home_bu(now)

    def _on_home_binding_ack(self, ba: BindingAck, pkt: Received, now: float) -> list[Action]:
        home = self.home
        pending = home.pending
        if pending is None:
            return self._drop("ba_without_pending_home_bu")
        auth = ba.find(Authentication)
        sa = self.sa_store.lookup_spi(auth.spi, now) if auth else None
        if sa is None or sa.hoa not in (None, self.hoa) or not verify_mn_ha(pkt.raw, sa, pending.coa, self.hoa):
            return self._drop("ba_not_authenticated", status=ba.status)
        if ba.status != BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW and ba.seq != pending.seq:
            return self._drop("ba_sequence_mismatch", seq=ba.seq, expected=pending.seq)
        replay = ba.find(ReplayProtection)
        if pending.timestamp is not None:
            if replay is None:
                return self._drop("ba_without_timestamp")
            if ba.status == BAStatus.MIPV6_ID_MISMATCH:
                if replay.timestamp & 0xFFFFFFFF != pending.timestamp & 0xFFFFFFFF:
                    return self._drop("ba_timestamp_mismatch")
            elif replay.timestamp != pending.timestamp:
                return self._drop("ba_timestamp_mismatch")
        if ba.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW:
            return self._home_resync(now, "sequence", lambda: setattr(home, "seq", ba.seq))
        if ba.status == BAStatus.MIPV6_ID_MISMATCH:
            if pending.timestamp is None:
                return self._drop("ba_timestamp_mismatch")
            ha_seconds = replay.timestamp >> 32

            def resync_clock():
                # Follow the HA's clock, even backwards; never below a timestamp it accepted.
                self.clock_offset = ha_seconds - now
                home.last_timestamp = home.last_acked_timestamp
            return self._home_resync(now, "timestamp", resync_clock)
        actions: list[Action] = [StopTimer(("home", "retransmit"))]
        home.pending = None
        # RFC 6275 10.3.2: a HA without a binding answers a deregistration with 133; the
        # binding is gone either way (e.g. the first registration's BA was never received).
        already_gone = pending.dereg and ba.status == BAStatus.NOT_HOME_AGENT_FOR_THIS_MN
        if not ba.accepted and not already_gone:
            self.counters[f"home.rejected.{ba.status}"] += 1
            home.state = "registered" if home.registered_coa else "idle"
            return actions + [RegistrationFailed(self.ha, self.hoa, pending.coa, ba.status,
                                                 f"home agent rejected the binding: {ba_status_name(ba.status)}")]
        home.resyncs = 0
        if pending.timestamp is not None:
            home.last_acked_timestamp = max(home.last_acked_timestamp, pending.timestamp)
        if pending.dereg:
            home.state, home.registered_coa = "idle", None
            self.counters["home.deregistered"] += 1
            return actions + self._stop_home_timers() + [
                HomeDeregistered(self.ha, self.hoa),
                Event("mipv6.mn.home_deregistered", {"hoa": self.hoa, "seq": ba.seq})]
        if ba.lifetime == 0:
            home.state = "registered" if home.registered_coa else "idle"
            return actions + [RegistrationFailed(self.ha, self.hoa, pending.coa, ba.status,
                                                 "home agent granted a zero lifetime")]
        moved = home.registered_coa != pending.coa
        home.state, home.registered_coa = "registered", pending.coa
        home.registered_spi = pending.spi
        home.lifetime, home.expires_at = ba.lifetime, pending.sent_at + ba.lifetime
        refresh_in = ba.lifetime * self.refresh_fraction
        advice = ba.find(BindingRefreshAdvice)
        if advice is not None and 0 < advice.interval < refresh_in:
            refresh_in = advice.interval
        self.counters["home.registered"] += 1
        actions += [StartTimer(("home", "refresh"), pending.sent_at + refresh_in),
                    StartTimer(("home", "expire"), home.expires_at),
                    HomeRegistered(self.ha, self.hoa, pending.coa, ba.lifetime, home.expires_at)]
        if moved:
            actions.append(TunnelUp(self.hoa, pending.coa, self.ha))
        actions.append(Event("mipv6.mn.home_registered", {
            "hoa": self.hoa, "coa": pending.coa, "seq": ba.seq, "lifetime": ba.lifetime,
            "rtt": now - pending.sent_at}))
        if pending.coa == self.coa:
            for entry in self.correspondents.values():
                if entry.wanted and entry.state == "idle" and not entry.disabled_reason:
                    actions += self._run_return_routability(entry, now)
                elif moved and entry.state == "rr":
                    # Started with the BU (a handover): the HoTI and the BU to the CN
                    # waited for this binding.
                    actions += self._run_return_routability(entry, now)
        return actions

    def _home_resync(self, now: float, what: str, apply) -> list[Action]:
        home = self.home
        home.resyncs += 1
        self.counters[f"home.resync.{what}"] += 1
        if home.resyncs > self.max_resyncs:
            pending, home.pending = home.pending, None
            home.state = "registered" if home.registered_coa else "idle"
            status = (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW if what == "sequence"
                      else BAStatus.MIPV6_ID_MISMATCH)
            return [StopTimer(("home", "retransmit")),
                    RegistrationFailed(self.ha, self.hoa, pending.coa, status,
                                       f"{what} resynchronisation did not converge")]
        apply()
        return [Event("mipv6.mn.home_resync", {"what": what, "seq": home.seq,
                                               "clock_offset": self.clock_offset})] + self._send_home_bu(now)

    def _home_timer(self, what: str, now: float) -> list[Action]:
        home = self.home
        if what == "retransmit":
            return self._home_retransmit(now)
        if what == "traversal":
            if home.traversal_pending is None or home.traversal_pending != self.coa:
                return []
            self.counters["home_traversal.timeout"] += 1
            home.traversal_pending = None
            return [Event("mipv6.mn.traversal_done", {"cn": self.ha, "coa": self.coa, "phase": "home",
                                                      "ok": False, "reason": "timeout"})] + \
                self._home_traversal_failed("home firewall traversal timed out", now)
        if what == "traversal_retry":
            if (self.coa is None or home.traversal_pending is not None
                    or home.traversal_coa == self.coa):
                return []
            self.counters["home_traversal.retry"] += 1
            home.state = "registering"
            return self._open_home_pinholes(now)
        if what == "refresh":
            if home.state == "registered" and home.pending is None and self.coa is not None:
                self.counters["home.refresh"] += 1
                return self._start_home_registration(now)
            return []
        if what == "expire":
            if home.registered_coa is None or now < home.expires_at:
                return []
            coa, home.registered_coa = home.registered_coa, None
            if home.pending is None:
                home.state = "idle"
            self.counters["home.expired"] += 1
            actions: list[Action] = [TunnelDown(self.hoa, "home binding expired"),
                                     RegistrationFailed(self.ha, self.hoa, coa, None, "home binding expired")]
            for entry in self.correspondents.values():
                if entry.ro_on or entry.state in ("rr", "bu", "data"):
                    actions += self._ro_off(entry, "home binding expired", keep_wanted=True)
            return actions
        return []

    # ------------------------------------------------------------------ correspondents

    def _correspondent(self, cn: str) -> CorrespondentBinding:
        entry = self.correspondents.get(cn)
        if entry is None:
            entry = self.correspondents[cn] = CorrespondentBinding(cn, seq=self._random_seq())
        return entry

    def _cn_timer(self, entry: CorrespondentBinding, what: str, at: float) -> Action:
        entry.timers.add(what)
        return StartTimer(("cn", entry.cn, what), at)

    def _cn_stop(self, entry: CorrespondentBinding, *whats: str) -> list[Action]:
        out = []
        for what in whats:
            if what in entry.timers:
                entry.timers.discard(what)
                out.append(StopTimer(("cn", entry.cn, what)))
        return out

    def _reset_correspondent(self, entry: CorrespondentBinding) -> list[Action]:
        entry.state = "idle"
        entry.traversal_pending = None
        entry.home_test = entry.care_of_test = entry.pending = None
        entry.resyncs = 0
        entry.bu_attempts = 0
        return self._cn_stop(entry, *sorted(entry.timers))

    def _ro_off(self, entry: CorrespondentBinding, reason: str, *, keep_wanted: bool) -> list[Action]:
        was_on = entry.ro_on
        entry.ro_on, entry.ro_coa = False, None
        if not keep_wanted:
            entry.wanted = False
        self.counters["ro.off"] += 1
        return self._reset_correspondent(entry) + [
            RouteOptimizationOff(entry.cn, self.hoa, reason),
            Event("mipv6.mn.ro_off", {"cn": entry.cn, "reason": reason, "was_on": was_on})]

    def _ro_failed(self, entry: CorrespondentBinding, reason: str, now: float) -> list[Action]:
        """RO could not be (re-)established for a reason that may pass (a refused or
        unanswered firewall round, e.g. a session the firewall let expire while a slow
        handover delayed its refresh; an unanswered RR or BU): back to the tunnel, and
        while RO is still wanted try again after a back-off that doubles from
        INITIAL_BINDACK_TIMEOUT_FIRST_REG up to MAX_BINDACK_TIMEOUT, as the home
        registration's firewall round does (a refused NSIS session is signalled again
        under a fresh session ID, natfw/mobile.py). A move or RO coming on starts over."""
        actions = self._ro_off(entry, reason, keep_wanted=True)
        if entry.retry_backoff >= MAX_BINDACK_TIMEOUT and not self.retransmit_forever:
            self.counters["ro.retry_exhausted"] += 1
            return actions
        actions.append(self._cn_timer(entry, "retry", now + entry.retry_backoff))
        entry.retry_backoff = min(entry.retry_backoff * 2, MAX_BINDACK_TIMEOUT)
        return actions

    def _home_token_fresh(self, entry: CorrespondentBinding, now: float) -> bool:
        return entry.home_token is not None and now - entry.home_token_at < MAX_TOKEN_LIFETIME

    def _care_of_token_fresh(self, entry: CorrespondentBinding, now: float) -> bool:
        return (entry.care_of_token is not None and entry.care_of_token_coa == self.coa
                and now - entry.care_of_token_at < MAX_TOKEN_LIFETIME)

    def _home_bound(self) -> bool:
        """The HA holds the binding for the current CoA (or the MN is at home): what goes
        through the reverse tunnel can go. RFC 6275 10.4.5: the HA forwards a reverse-
        tunnelled packet only when its outer source is the registered care-of address."""
        return self.at_home or self.home.registered_coa == self.coa

    def _run_return_routability(self, entry: CorrespondentBinding, now: float) -> list[Action]:
        """Fetch whatever keygen tokens are missing, then send the BU; idempotent (what is
        outstanding is not sent again).

        Sequencing after a handover (RFC 6275 11.6.1: HoTI and CoTI in parallel; 5.2.5:
        the HoTI goes through the HA, the CoTI directly): what does not depend on the new
        home binding does not wait for it. The CoA's NATFW sessions (they need only the
        CoA) and then the CoTI go out while the home BU is in flight; the HoTI, reverse-
        tunnelled, waits for the home BA (the HA drops it from a CoA it has not bound);
        the BU to the CN waits for both tokens and the home BA (the CN is not bound to a
        CoA the HA may still refuse)."""
        dereg = entry.state == "dereg"
        if not dereg:
            entry.state = "rr"
        actions: list[Action] = []
        if not dereg and self.firewall_traversal and entry.traversal_coa != self.coa:
            return self._open_rr_pinholes(entry, now)
        bound = self._home_bound()
        if not self._home_token_fresh(entry, now) and entry.home_test is None and bound:
            actions += self._send_test_init(entry, home=True, now=now, attempts=1,
                                            timeout=INITIAL_BINDACK_TIMEOUT)
        if not dereg and not self._care_of_token_fresh(entry, now) and entry.care_of_test is None:
            actions += self._send_test_init(entry, home=False, now=now, attempts=1,
                                            timeout=INITIAL_BINDACK_TIMEOUT)
        if bound and entry.home_test is None and (dereg or entry.care_of_test is None):
            actions += self._send_correspondent_bu(entry, now)
        return actions

    # ------------------------------------------------------------------ firewall traversal

    def _open_rr_pinholes(self, entry: CorrespondentBinding, now: float) -> list[Action]:
        """RR waits until the CN's firewall lets HoTI/CoTI/BU through (seed paper 3.2)."""
        if entry.traversal_pending == self.coa:
            return []
        entry.traversal_pending = self.coa
        self.counters["traversal.started"] += 1
        return [OpenPinholes(entry.cn, self.hoa, self.coa, "rr"),
                self._cn_timer(entry, "traversal", now + self.traversal_timeout),
                Event("mipv6.mn.traversal_started", {"cn": entry.cn, "coa": self.coa, "phase": "rr"})]

    def _open_inbound(self, old: str | None, coa: str) -> list[Action]:
        """A new CoA behind the foreign network's firewall: let the HA's tunnel in."""
        if not self.foreign_firewall:
            return []
        self.inbound_coa = None
        actions: list[Action] = []
        if old is not None:
            actions.append(ClosePinholes(self.ha, self.hoa, old, "movement to a new care-of address",
                                         True))
        self.counters["inbound.started"] += 1
        return actions + [OpenPinholes(self.ha, self.hoa, coa, "inbound"),
                          Event("mipv6.mn.traversal_started", {"cn": self.ha, "coa": coa,
                                                               "phase": "inbound"})]

    def _data_phase(self) -> str | None:
        """Which pinholes the RO data round needs: the CN's firewall, the MN's, both."""
        if self.firewall_traversal and self.foreign_firewall:
            return "data_inbound"
        if self.firewall_traversal:
            return "data"
        return "inbound_ro" if self.foreign_firewall else None

    def pinholes_ready(self, cn: str, coa: str, phase: str, ok: bool, reason: str, now: float) -> list[Action]:
        """The runtime's answer to OpenPinholes: the firewall granted (ok) or refused."""
        if phase == "home":
            return self._home_pinholes_ready(normalize_address(coa), ok, reason, now)
        entry = self.correspondents.get(normalize_address(cn))
        coa = normalize_address(coa)
        event = Event("mipv6.mn.traversal_done", {"cn": cn, "coa": coa, "phase": phase, "ok": ok,
                                                   "reason": reason})
        if phase == "inbound":
            if normalize_address(cn) != self.ha or coa != self.coa:
                self.counters["traversal.stale_answer"] += 1
                return [event]
            self.inbound_coa = coa if ok else None
            self.counters["inbound.ready" if ok else "inbound.refused"] += 1
            return [event, Event("mipv6.mn.inbound_ready", {"coa": coa, "ok": ok, "reason": reason})]
        if phase in ("data", "inbound_ro", "data_inbound"):
            if entry is None or entry.state != "data" or entry.ro_coa != coa or coa != self.coa:
                self.counters["traversal.stale_answer"] += 1
                return [event]
            stop = self._cn_stop(entry, "traversal")
            if not ok:
                self.counters["traversal.refused"] += 1
                return [event] + stop + self._ro_failed(entry, f"firewall traversal failed for data: {reason}",
                                                        now)
            self.counters["traversal.ready"] += 1
            return [event] + stop + self._ro_on(entry, coa, entry.data_lifetime)
        if entry is None or entry.traversal_pending != coa or coa != self.coa or entry.state != "rr":
            self.counters["traversal.stale_answer"] += 1
            return [event]
        entry.traversal_pending = None
        actions: list[Action] = [event] + self._cn_stop(entry, "traversal")
        if not ok and reason == PINHOLES_UNANSWERED:
            # Nobody refused anything: a session went unanswered (a lossy path, or a
            # firewall slower than the initiator's retransmissions under a burst). The
            # round's granted and still pending sessions are kept, so the next try
            # signals only the unanswered one again (natfw.mobile: same session ID),
            # instead of tearing the others down to signal them all anew.
            self.counters["traversal.unanswered"] += 1
            return actions + self._ro_failed(entry, f"firewall traversal failed: {reason}", now)
        if not ok:
            self.counters["traversal.refused"] += 1
            # The round's other sessions for this CoA (still pending, with what was
            # refused, e.g. the token) are torn down: the next try signals fresh ones,
            # and their late answers cannot fail it.
            return actions + [ClosePinholes(entry.cn, self.hoa, coa, f"firewall traversal failed: {reason}")] \
                + self._ro_failed(entry, f"firewall traversal failed: {reason}", now)
        entry.traversal_coa = coa
        self.counters["traversal.ready"] += 1
        return actions + self._run_return_routability(entry, now)

    def _close_pinholes(self, entry: CorrespondentBinding, reason: str, moving: bool = False) -> list[Action]:
        opened = {c for c in (entry.traversal_coa, entry.data_coa, entry.traversal_pending) if c}
        entry.traversal_coa = entry.data_coa = entry.traversal_pending = None
        return [ClosePinholes(entry.cn, self.hoa, coa, reason, moving) for coa in sorted(opened)]

    def _send_test_init(self, entry: CorrespondentBinding, *, home: bool, now: float, attempts: int,
                        timeout: float, cookie: bytes | None = None) -> list[Action]:
        cookie = cookie or self.random_bytes(8)
        if home:
            entry.home_test = TestExchange(cookie, attempts, timeout)
            # HoTI goes from the HoA: reverse-tunnelled via the HA while away (RFC 6275 5.2.3).
            via = "direct" if self.at_home else "tunnel"
            transmit = self._send(HomeTestInit(cookie), self.hoa, entry.cn, via=via)
            what = "hoti"
        else:
            entry.care_of_test = TestExchange(cookie, attempts, timeout, coa=self.coa)
            transmit = self._send(CareOfTestInit(cookie), self.coa, entry.cn, via="direct")
            what = "coti"
        return [transmit, self._cn_timer(entry, what, now + timeout),
                Event(f"mipv6.mn.{what}_sent", {"cn": entry.cn, "attempt": attempts})]

    def _test_retransmit(self, entry: CorrespondentBinding, home: bool, now: float) -> list[Action]:
        test = entry.home_test if home else entry.care_of_test
        entry.timers.discard("hoti" if home else "coti")
        if test is None:
            return []
        if not home and test.coa != self.coa:
            entry.care_of_test = None
            return []
        if test.attempts >= self.rr_max_attempts:
            which = "home test" if home else "care-of test"
            if entry.state == "dereg":
                self.counters["cn.dereg_abandoned"] += 1
                return self._reset_correspondent(entry) + [
                    Event("mipv6.mn.cn_dereg_abandoned", {"cn": entry.cn, "reason": f"no {which}"})]
            return self._ro_failed(entry, f"return routability timed out: no {which}", now)
        self.counters["rr.retransmit"] += 1
        return self._send_test_init(entry, home=home, now=now, attempts=test.attempts + 1,
                                    timeout=min(test.timeout * 2, MAX_BINDACK_TIMEOUT), cookie=test.cookie)

    def _on_home_test(self, msg: HomeTest, pkt: Received, now: float) -> list[Action]:
        entry = self.correspondents.get(pkt.src)
        if entry is None or entry.home_test is None or entry.home_test.cookie != msg.cookie:
            return self._drop("unexpected_home_test", src=pkt.src)
        if pkt.dst != self.hoa:
            return self._drop("home_test_not_to_home_address", dst=pkt.dst)
        entry.home_test = None
        entry.home_token, entry.home_nonce_index, entry.home_token_at = msg.token, msg.nonce_index, now
        actions = self._cn_stop(entry, "hoti")
        if entry.care_of_test is None or entry.state == "dereg":
            actions += self._after_tokens(entry, now)
        return actions

    def _on_care_of_test(self, msg: CareOfTest, pkt: Received, now: float) -> list[Action]:
        entry = self.correspondents.get(pkt.src)
        test = entry.care_of_test if entry else None
        if test is None or test.cookie != msg.cookie:
            return self._drop("unexpected_care_of_test", src=pkt.src)
        if test.coa != self.coa or pkt.dst != self.coa:
            return self._drop("care_of_test_for_old_coa", dst=pkt.dst)
        entry.care_of_test = None
        entry.care_of_token, entry.care_of_nonce_index = msg.token, msg.nonce_index
        entry.care_of_token_at, entry.care_of_token_coa = now, test.coa
        actions = self._cn_stop(entry, "coti")
        if entry.home_test is None:
            actions += self._after_tokens(entry, now)
        return actions

    def _after_tokens(self, entry: CorrespondentBinding, now: float) -> list[Action]:
        if entry.state == "dereg":
            return self._send_correspondent_bu(entry, now)
        if entry.state != "rr" or self.at_home:
            return []
        return self._run_return_routability(entry, now)

    def _send_correspondent_bu(self, entry: CorrespondentBinding, now: float) -> list[Action]:
        dereg = entry.state == "dereg"
        if not self._home_token_fresh(entry, now) or (not dereg and not self._care_of_token_fresh(entry, now)):
            return self._run_return_routability(entry, now)
        entry.seq = (entry.seq + 1) & 0xFFFF
        if dereg:
            coa, lifetime = self.hoa, 0
            kbm = binding_management_key(entry.home_token)
            indices = NonceIndices(entry.home_nonce_index, 0)
        else:
            coa = self.coa
            remaining = self.home.expires_at - now if self.home.registered_coa else self.cn_lifetime
            lifetime = max(4, wire_lifetime(min(self.cn_lifetime, remaining)))
            kbm = binding_management_key(entry.home_token, entry.care_of_token)
            indices = NonceIndices(entry.home_nonce_index, entry.care_of_nonce_index)
        bu = BindingUpdate(entry.seq, lifetime, ack=self.cn_ack, options=(indices,))
        # Deregistration from home goes from the HoA without a HAO; otherwise from the CoA
        # with the HoA in a Home Address option (RFC 6275 11.7.2).
        src, hao = (self.hoa, None) if self.at_home else (self.coa, self.hoa)
        data = encode_with_bad(bu, kbm, coa, entry.cn, hao or src, entry.cn)
        entry.pending = PendingBindingUpdate(entry.seq, coa, lifetime, now, dereg, kbm=kbm)
        actions: list[Action] = [self._send(bu, src, entry.cn, data=data, hao=hao, via="direct"),
                                 Event("mipv6.mn.cn_bu_sent", {"cn": entry.cn, "coa": coa, "seq": entry.seq,
                                                               "lifetime": lifetime})]
        if not dereg:
            entry.state = "bu"
        if self.cn_ack:
            if entry.bu_attempts == 0:
                entry.bu_timeout = INITIAL_BINDACK_TIMEOUT
            entry.bu_attempts += 1
            actions.append(self._cn_timer(entry, "bu", now + entry.bu_timeout))
            return actions
        # Without an acknowledgement the binding is assumed to be in place.
        entry.pending = None
        entry.bu_attempts = 0
        if dereg:
            entry.has_binding = False
            return actions + self._reset_correspondent(entry)
        return actions + self._correspondent_accepted(entry, coa, lifetime, now, now)

    def _correspondent_accepted(self, entry, coa, lifetime, sent_at, now) -> list[Action]:
        entry.has_binding = True
        entry.expires_at = sent_at + lifetime
        entry.resyncs = 0
        timers = [self._cn_timer(entry, "refresh", sent_at + lifetime * self.refresh_fraction),
                  self._cn_timer(entry, "expire", entry.expires_at)]
        phase = self._data_phase()
        if phase is not None and entry.data_coa != coa:
            # The CN holds the binding; the data path switches once the firewall(s) let the
            # route-optimised data through (or packets would be dropped there meanwhile).
            entry.state, entry.ro_on, entry.ro_coa = "data", False, coa
            entry.data_coa = coa
            entry.data_lifetime = lifetime
            return timers + [OpenPinholes(entry.cn, self.hoa, coa, phase),
                             self._cn_timer(entry, "traversal", now + self.traversal_timeout),
                             Event("mipv6.mn.traversal_started", {"cn": entry.cn, "coa": coa, "phase": phase})]
        return timers + self._ro_on(entry, coa, lifetime)

    def _ro_on(self, entry: CorrespondentBinding, coa: str, lifetime: float) -> list[Action]:
        entry.state, entry.ro_on, entry.ro_coa = "on", True, coa
        entry.retry_backoff = INITIAL_BINDACK_TIMEOUT_FIRST_REG
        self.counters["ro.on"] += 1
        return [RouteOptimizationOn(entry.cn, self.hoa, coa, lifetime, entry.expires_at),
                Event("mipv6.mn.ro_on", {"cn": entry.cn, "coa": coa, "lifetime": lifetime})]

    def _bu_retransmit(self, entry: CorrespondentBinding, now: float) -> list[Action]:
        entry.timers.discard("bu")
        if entry.pending is None:
            return []
        if entry.bu_attempts >= self.rr_max_attempts:
            entry.bu_attempts = 0
            if entry.state == "dereg":
                self.counters["cn.dereg_abandoned"] += 1
                return self._reset_correspondent(entry) + [
                    Event("mipv6.mn.cn_dereg_abandoned", {"cn": entry.cn, "reason": "no binding acknowledgement"})]
            return self._ro_failed(entry, "no binding acknowledgement from the correspondent", now)
        self.counters["cn.bu_retransmit"] += 1
        entry.bu_timeout = min(entry.bu_timeout * 2, MAX_BINDACK_TIMEOUT)
        return self._send_correspondent_bu(entry, now)

    def _on_correspondent_binding_ack(self, ba: BindingAck, pkt: Received, now: float) -> list[Action]:
        entry = self.correspondents.get(pkt.src)
        pending = entry.pending if entry else None
        if pending is None:
            return self._drop("ba_without_pending_bu", src=pkt.src)
        expired = {BAStatus.EXPIRED_HOME_NONCE_INDEX: (True, False),
                   BAStatus.EXPIRED_CARE_OF_NONCE_INDEX: (False, True),
                   BAStatus.EXPIRED_NONCES: (True, True)}
        if ba.status in expired:
            # No BAD is possible here (RFC 6275 9.5.4): check what we can, then fetch new tokens.
            if ba.seq != pending.seq:
                return self._drop("ba_sequence_mismatch", seq=ba.seq, expected=pending.seq)
            entry.resyncs += 1
            if entry.resyncs > self.max_resyncs:
                return self._correspondent_failed(entry, ba.status)
            home, care_of = expired[ba.status]
            if home:
                entry.home_token = None
            if care_of:
                entry.care_of_token = None
            entry.pending = None
            entry.bu_attempts = 0
            self.counters[f"cn.nonce_expired.{ba.status}"] += 1
            return self._cn_stop(entry, "bu") + self._run_return_routability(entry, now)
        if not verify_bad(pkt.raw, pending.kbm, pending.coa, pkt.src):
            return self._drop("ba_bad_authenticator", src=pkt.src)
        if ba.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW:
            entry.resyncs += 1
            if entry.resyncs > self.max_resyncs:
                return self._correspondent_failed(entry, ba.status)
            entry.seq = ba.seq
            entry.pending = None
            entry.bu_attempts = 0
            self.counters["cn.resync.sequence"] += 1
            return self._cn_stop(entry, "bu") + self._send_correspondent_bu(entry, now)
        if ba.seq != pending.seq:
            return self._drop("ba_sequence_mismatch", seq=ba.seq, expected=pending.seq)
        entry.pending = None
        entry.bu_attempts = 0
        actions = self._cn_stop(entry, "bu")
        if not ba.accepted:
            return actions + self._correspondent_failed(entry, ba.status)
        if pending.dereg:
            entry.has_binding = False
            self.counters["cn.deregistered"] += 1
            return actions + self._reset_correspondent(entry) + [
                Event("mipv6.mn.cn_deregistered", {"cn": entry.cn, "seq": ba.seq})]
        if ba.lifetime == 0:
            return actions + self._ro_off(entry, "correspondent granted a zero lifetime", keep_wanted=False)
        return actions + self._correspondent_accepted(entry, pending.coa, ba.lifetime, pending.sent_at, now)

    def _correspondent_failed(self, entry: CorrespondentBinding, status: int) -> list[Action]:
        self.counters[f"cn.rejected.{status}"] += 1
        if entry.state == "dereg":
            return self._reset_correspondent(entry) + [
                Event("mipv6.mn.cn_dereg_abandoned", {"cn": entry.cn, "reason": ba_status_name(status)})]
        return self._ro_off(entry, f"correspondent rejected the binding: {ba_status_name(status)}",
                            keep_wanted=False)

    def _correspondent_timer(self, cn: str, what: str, now: float) -> list[Action]:
        entry = self.correspondents.get(cn)
        if entry is None:
            return []
        if what in ("hoti", "coti"):
            return self._test_retransmit(entry, what == "hoti", now)
        if what == "bu":
            return self._bu_retransmit(entry, now)
        entry.timers.discard(what)
        if what == "traversal":
            if entry.state == "data":
                self.counters["traversal.timeout"] += 1
                return self._ro_failed(entry, "firewall traversal timed out for data", now)
            if entry.traversal_pending is not None and entry.traversal_pending == self.coa:
                self.counters["traversal.timeout"] += 1
                entry.traversal_pending = None
                return self._ro_failed(entry, "firewall traversal timed out", now)
            return []
        if what == "retry":
            if (entry.wanted and entry.state == "idle" and not entry.disabled_reason and not self.at_home
                    and self.coa is not None and self._home_bound()):
                self.counters["ro.retry"] += 1
                return [Event("mipv6.mn.ro_retry", {"cn": entry.cn, "coa": self.coa})] + \
                    self._run_return_routability(entry, now)
            return []
        if what == "refresh":
            if entry.ro_on and entry.wanted and not self.at_home and entry.state == "on":
                self.counters["ro.refresh"] += 1
                return self._run_return_routability(entry, now)
            return []
        if what == "expire":
            if entry.ro_on and now >= entry.expires_at:
                entry.has_binding = False
                return self._ro_off(entry, "route optimization binding expired", keep_wanted=True)
            return []
        return []

    # ------------------------------------------------------------------ receive handlers

    def _on_binding_ack(self, ba: BindingAck, pkt: Received, now: float) -> list[Action]:
        if pkt.src == self.ha:
            return self._on_home_binding_ack(ba, pkt, now)
        return self._on_correspondent_binding_ack(ba, pkt, now)

    def _on_brr(self, msg: BindingRefreshRequest, pkt: Received, now: float) -> list[Action]:
        """RFC 6275 11.7.4: answer a BRR with a fresh BU (a new RR for a correspondent)."""
        if pkt.src == self.ha:
            if self.home.state == "registered" and self.coa is not None:
                self.counters["brr.home"] += 1
                return self._start_home_registration(now)
            return self._drop("brr_without_home_registration")
        entry = self.correspondents.get(pkt.src)
        if entry is not None and entry.ro_on and entry.state == "on" and not self.at_home:
            self.counters["brr.correspondent"] += 1
            entry.home_token = entry.care_of_token = None  # a BRR means: fresh tokens please
            return self._run_return_routability(entry, now)
        return self._drop("unexpected_brr", src=pkt.src)

    def _on_binding_error(self, msg: BindingError, pkt: Received, now: float) -> list[Action]:
        if msg.home_address not in (self.hoa, "::"):
            return self._drop("binding_error_for_other_home_address", hoa=msg.home_address)
        if pkt.src == self.ha:
            self.counters[f"binding_error.home.{msg.status}"] += 1
            if (msg.status == BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION and self.coa is not None
                    and self.home.pending is None):
                # The HA lost our binding (e.g. it restarted): register again.
                return [Event("mipv6.mn.binding_error", {"from": pkt.src, "status": msg.status})] + \
                    self._start_home_registration(now)
            return [Event("mipv6.mn.binding_error", {"from": pkt.src, "status": msg.status})]
        entry = self.correspondents.get(pkt.src)
        if entry is None:
            return self._drop("binding_error_from_unknown_node", src=pkt.src)
        self.counters[f"binding_error.correspondent.{msg.status}"] += 1
        if msg.status == BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION and entry.wanted:
            return self._correspondent_lost_binding(entry, now)
        entry.has_binding = False
        if msg.status == BEStatus.UNRECOGNIZED_MH_TYPE:
            reason = "binding error: correspondent does not support Mobile IPv6 route optimization"
            entry.disabled_reason = reason
        elif msg.status == BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION:
            reason = "binding error: correspondent has no binding for the home address"
        else:
            reason = f"binding error status {msg.status}"
        return self._ro_off(entry, reason, keep_wanted=False)

    def _correspondent_lost_binding(self, entry: CorrespondentBinding, now: float) -> list[Action]:
        """RFC 6275 11.3.6: a Binding Error with status 1 from a correspondent we have a
        binding update list entry for (it lost our binding, e.g. it restarted): fall
        back to the tunnel and run return routability again with fresh tokens (the CN's
        old secret may be gone with it). Only while route optimisation is on: a Binding
        Error is unauthenticated, so one during RR (which is on its way anyway) or for
        a binding we do not think exists changes nothing."""
        if not (entry.ro_on and entry.state == "on") or self.at_home or self.coa is None:
            self.counters["binding_error.correspondent.ignored"] += 1
            return [Event("mipv6.mn.binding_error", {"from": entry.cn, "status": 1, "ignored": True})]
        entry.has_binding = False
        self.counters["rr.after_binding_error"] += 1
        actions = self._ro_off(entry, "binding error: correspondent has no binding for the home "
                               "address; return routability again", keep_wanted=True)
        entry.home_token = entry.care_of_token = None
        return actions + [Event("mipv6.mn.binding_error", {"from": entry.cn, "status": 1,
                                                            "rr_again": True})] \
            + self._run_return_routability(entry, now)

    # ------------------------------------------------------------------ timers

    def handle_timer(self, key, now: float) -> list[Action]:
        if not isinstance(key, tuple):
            return []
        if len(key) == 2 and key[0] == "home":
            return self._home_timer(key[1], now)
        if len(key) == 3 and key[0] == "cn":
            return self._correspondent_timer(key[1], key[2], now)
        return []
