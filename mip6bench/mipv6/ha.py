"""Home agent core: home registrations (RFC 6275 sections 9.5, 10.3) protected by RFC 4285.

    ha = HomeAgent("2001:db8:1::1", ["2001:db8:1::/64"], sa_store, max_lifetime=3600)
    actions = ha.receive(mh_bytes, src, dst, now, hao=hoa_from_hao_option)
    actions = ha.handle_timer(key, now)
    actions = ha.dad_probe_sent(hoa, now)          # with perform_dad: the runtime sent the NS
    actions = ha.neighbor_seen(kind, target, src, now)   # an NS or NA on the home link
    actions = ha.dad_completed(hoa, ok, now)       # (or a runtime that runs DAD itself)
    ok, actions = ha.check_home_address_option(src, hoa, now)   # data packets with a HAO
    held, actions = ha.hold_binding_update(spi, item, now)    # SA fetched on demand
    items, actions = ha.sa_fetched(spi, found, now)
    actions = ha.sa_store_changed(now)             # re-arm SA expiry
    actions = ha.sa_distribution_changed(kind, spi, removed, hoa, reason, successor, now)

A Binding Update is checked in this order, and rejected before any state changes:
  1. RFC 4285 authentication: an MN-HA Authentication option with the SPI of an unexpired
     SA in ``sa_store`` and a correct authenticator, else 146 (MIPV6-AUTH-FAIL; the BA is
     then unsigned, since the request was not authentic).
  2. replay protection for SAs in "timestamp" mode: the option must be present (else 145
     MIPV6-MESG-ID-REQD) and within the SA's window of this HA's clock and newer than the
     last accepted one (else 144 MIPV6-ID-MISMATCH; the BA's timestamp then carries this
     HA's seconds in its high 32 bits so the MN can resynchronise, RFC 4285 section 6).
  3. identity: the SA must be bound to this HoA (and to the NAI of an MN-ID option) and
     no other MN's SA or binding may own the HoA, else 146.
  4. H flag: a BU without it is refused, 139 if a home registration exists, else 129
     (this HA does not act as a correspondent node).
  5. home prefix (132), served home addresses (133), policy callback (129).
  6. sequence number against the cached entry, modulo 2**16 (135, with the last accepted
     sequence number in the BA).
  7. deregistration (lifetime 0 or CoA == HoA) without a home registration: 133.
  8. capacity (130); DAD for a new registration when ``perform_dad`` (RequestDAD, then 134
     on failure).
Granted lifetime (RFC 6275 10.3.1 lets the HA shorten it; 6.1.8: the BA carries the granted one):
min(requested, ``max_lifetime``, the remaining lifetime of the SA that authenticated the
BU), in the wire's 4 s units rounded down. An SA with less than 4 s left still gets 4 s in
the BA (the smallest lifetime the wire can say), but the entry ends when the SA does: a
binding never outlives the SA that authorised it. The mobile node refreshes before the
granted lifetime runs out, with the SA that replaced the old one.
Authorization ends with the SA: ``sa_revoked(spi, hoa, reason, now, successor=...)`` is the
runtime's report that an SA left the store (revoked by the PAA, expired, removed by the
operator). Unless the SA was replaced by a successor of the same PANA session
(re-authentication, ``successor=True``: the binding then lives out its granted lifetime,
which the old SA capped, and the MN refreshes it with the new SA), the binding for that
home address ends at once when it was authenticated with that SA, or with an SA that is
gone too (the re-keyed predecessor of the revoked one); a binding a live SA authenticated
(another session's, registered meanwhile) stays.
Accepted registrations produce InstallBinding + TunnelUp (new entry or new CoA); removal
(deregistration, expiry, revocation) produces RemoveBinding + TunnelDown. BAs are signed with the
SA's MN-HA key and carry the BU's timestamp. Timers: ("binding", hoa) expiry,
("brr", hoa) Binding Refresh Request ``brr_lead`` seconds before expiry, ("dad", hoa),
("sa", "expiry").

DAD on the MN's behalf (RFC 6275 10.3.1, RFC 4862 5.4, with ``perform_dad``): a first
registration of a home address asks the runtime to send one Neighbor Solicitation from
:: (RequestDAD) and waits ``dad_timeout`` for dad_probe_sent; from then on it listens
``dad_wait`` seconds (RetransTimer). A Neighbor Advertisement for the address, or another
node's DAD probe for it (NS from ::), is a defender: the BU is rejected with 134. Nobody
within ``dad_wait``: the address is unique, the binding is installed. No probe sent
within ``dad_timeout``: rejected with 128. Event mipv6.ha.dad_done {hoa, ok, defender, ms}.

SAs fetched on demand (with SA distribution): a Binding Update whose SPI the store lacks
is held (hold_binding_update) while the SA is fetched (FetchSA; sa_fetched hands the
held BUs back, in order, for the runtime to pass to receive), within bounds a stranger
cannot exceed: ``max_fetches`` SPIs fetched at once (beyond that a BU goes on unfetched
and gets 146: counter sa.fetch_refused), ``max_waiting_per_spi`` BUs per SPI and
``max_waiting`` in all (beyond that dropped, the MN retransmits: sa.wait_dropped);
sa.fetched / sa.fetch_failed count the outcomes. SA expiry: timer ("sa", "expiry") at the
store's next expiry removes expired SAs (event mipv6.sa_expired) and ends what they
authorised (sa_revoked); sa_store_changed re-arms it after the runtime changed the store.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Callable, Iterable

from mip6bench import ipaddr
from mip6bench.mipv6.constants import (
    AUTH_SUBTYPE_MN_HA,
    LIFETIME_UNIT,
    BAStatus,
    ba_status_name,
)
from mip6bench.mipv6.core import (
    BindingCacheCore,
    BindingCacheEntry,
    Received,
    is_unicast_routable,
    seq_newer,
)
from mip6bench.mipv6.crypto import encode_with_mn_ha, ntp_seconds, ntp_timestamp, verify_mn_ha
from mip6bench.mipv6.effects import FetchSA, InstallBinding, RequestDAD, TunnelUp
from mip6bench.mipv6.sa import FetchWaitlist, MobilitySA, SAStore
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingRefreshAdvice,
    BindingUpdate,
    MobileNodeIdentifier,
    ReplayProtection,
    encode_mh,
    normalize_address,
    wire_lifetime,
)
from mip6bench.sansio import Action, Event, StartTimer, StopTimer

SA_EXPIRY_TIMER = ("sa", "expiry")
MAX_FETCHES = 32          # SPIs fetched at once; BUs beyond that go to the core unfetched (146)
MAX_WAITING_PER_SPI = 8   # BUs held per SPI being fetched; more are dropped (counted)
MAX_WAITING = 128         # BUs held in all

# RFC 6275 9.5.4: rejections a BA reports even when the BU did not ask for one.
ALWAYS_ACKNOWLEDGED = frozenset({130, 135, 136, 137, 138, 144, 145, 146})

Policy = Callable[[str, "str | None"], bool]


@dataclass(frozen=True)
class _BindingRequest:
    """A BU that passed every check, waiting to be installed (possibly after DAD)."""

    bu: BindingUpdate
    pkt: Received
    hoa: str
    coa: str
    sa: MobilitySA
    requested: int          # the BU's lifetime capped to max_lifetime; the SA caps it at install
    timestamp: ReplayProtection | None


class _Reject(Exception):
    def __init__(self, status: int, reason: str, *, signed: bool = True, seq: int | None = None,
                 timestamp: ReplayProtection | None = None):
        super().__init__(reason)
        self.status, self.reason, self.signed, self.seq, self.timestamp = status, reason, signed, seq, timestamp


class HomeAgent(BindingCacheCore):
    """Sans-I/O home agent. See the module docstring for the processing rules.

    address: this HA's address (the one MNs send BUs to).
    home_prefixes: the home link prefixes, e.g. ["2001:db8:1::/64"].
    sa_store: the shared SAStore the runtime fills (static config or PANA).
    max_lifetime: cap for granted lifetimes, seconds.
    max_bindings: capacity; a new registration beyond it gets 130.
    served_home_addresses: if given, only these HoAs are served (others get 133).
    policy(hoa, nai) -> bool: administrative policy (False gives 129).
    perform_dad / dad_timeout / dad_wait: run DAD (RequestDAD effect) before accepting a
        new HoA: the runtime sends the probe within dad_timeout (else 128), then a
        defender within dad_wait (RetransTimer) rejects the BU with 134.
    max_fetches / max_waiting_per_spi / max_waiting: bounds of the BUs held while their
        SA is fetched (hold_binding_update).
    refresh_advice: if set, BAs carry a Binding Refresh Advice with this interval.
    clock_offset: added to ``now`` for RFC 4285 timestamps (seconds).
    brr_lead: send a BRR this many seconds before a binding expires (None: never).
    natfw_sa_on_demand: the runtime fetches SAs when a BU arrives (SA distribution), so a
        NATFW consent cannot wait for an SA bound to the home address (natfw_consent).
    """

    role = "ha"

    def __init__(self, address: str, home_prefixes: Iterable[str], sa_store: SAStore, *,
                 max_lifetime: float = 3600, max_bindings: int | None = None,
                 served_home_addresses: Iterable[str] | None = None, policy: Policy | None = None,
                 perform_dad: bool = False, dad_timeout: float = 3.0, dad_wait: float = 1.0,
                 max_fetches: int = MAX_FETCHES, max_waiting_per_spi: int = MAX_WAITING_PER_SPI,
                 max_waiting: int = MAX_WAITING,
                 refresh_advice: float | None = None, clock_offset: float = 0.0,
                 brr_lead: float | None = None, natfw_sa_on_demand: bool = False,
                 random_bytes=os.urandom):
        super().__init__(brr_lead=brr_lead, random_bytes=random_bytes)
        self.address = normalize_address(address)
        self.home_prefixes = [ipaddress.IPv6Network(p, strict=False) for p in home_prefixes]
        if not self.home_prefixes:
            raise ValueError("a home agent needs at least one home prefix")
        self.sa_store = sa_store
        self.max_lifetime = wire_lifetime(max_lifetime)
        if self.max_lifetime <= 0:
            raise ValueError("max_lifetime must be at least 4 seconds")
        self.max_bindings = max_bindings
        self.served_home_addresses = (None if served_home_addresses is None
                                      else {normalize_address(a) for a in served_home_addresses})
        self.policy = policy
        self.perform_dad = perform_dad
        self.dad_timeout = dad_timeout
        if dad_wait <= 0:
            raise ValueError("dad_wait must be positive")
        self.dad_wait = dad_wait
        self.dad_probing: dict[str, float] = {}    # HoA -> when its DAD probe left
        self.fetching = FetchWaitlist(max_fetches, max_waiting_per_spi, max_waiting)
        self.refresh_advice = wire_lifetime(refresh_advice) if refresh_advice else None
        self.clock_offset = clock_offset
        self.last_timestamp: dict[int, int] = {}   # SPI -> last accepted replay timestamp
        self.pending_dad: dict[str, _BindingRequest] = {}
        self.natfw_sa_on_demand = natfw_sa_on_demand

    # ------------------------------------------------------------------ NATFW consent

    def natfw_consent(self, source: str, destination: str, protocol: int, kind: int | None,
                      mh_type: int, home_address: str | None, now: float) -> str | None:
        """The NATFW responder's decision for a pinhole toward this HA behind the home
        network's firewall (RFC 4487 section 3): None to consent, else why not. Consent
        only to what a mobile node this HA serves needs from a care-of address: its BU
        (Mobility Header type 5, with the Home Address option naming its home address)
        and its reverse tunnel (IPv6-in-IPv6 whose inner source is the home address),
        both toward this HA's own address. `kind` is the flow's MIPv6 kind (natfw.wire
        MIP6_MH = 1, MIP6_TUNNEL = 4; None: no MIPv6 flow object)."""
        if normalize_address(destination) != self.address:
            return "not toward this home agent"
        if home_address is None:
            return "no home address named"
        hoa, src = normalize_address(home_address), normalize_address(source)
        if not self.on_home_link(hoa):
            return f"{hoa} is not a home address here"
        if self.served_home_addresses is not None and hoa not in self.served_home_addresses:
            return f"{hoa} is not served here"
        if src == hoa or self.on_home_link(src):
            return "the source is not a care-of address"
        if not ((protocol == 135 and kind == 1 and mh_type == 5) or (protocol == 41 and kind == 4)):
            return "only the Binding Update and the reverse tunnel are consented to"
        if not self.natfw_sa_on_demand and not self.sa_store.bound_to_hoa(hoa, now):
            return f"no security association for {hoa}"
        return None

    def _default_local_address(self) -> str:
        return self.address

    def _handlers(self):
        return {BindingUpdate: self._on_binding_update}

    def on_home_link(self, addr: str) -> bool:
        a = ipaddr.ip6(addr)               # memoised: once per Binding Update
        return any(a in net for net in self.home_prefixes)

    # ------------------------------------------------------------------ BU processing

    def _on_binding_update(self, bu: BindingUpdate, pkt: Received, now: float) -> list[Action]:
        hoa = pkt.home_address
        alt = bu.find(AlternateCareOfAddress)
        coa = alt.address if alt else pkt.src
        if not (is_unicast_routable(hoa) and is_unicast_routable(coa)):
            return self._drop("bu_address_not_unicast_routable", hoa=hoa, coa=coa)
        sa = None
        try:
            sa = self._authenticate(bu, pkt, hoa, coa, now)
            timestamp = self._check_replay(bu, sa, now)
            self._check_identity(bu, sa, hoa, now)
            request = self._check_registration(bu, pkt, hoa, coa, sa, timestamp)
        except _Reject as rej:
            return self._reject(bu, pkt, hoa, coa, sa if rej.signed else None, rej, now)
        if request.bu.lifetime == 0 or coa == hoa:
            return self._deregister(request, now)
        if request.hoa not in self.bindings and self.perform_dad:
            return self._start_dad(request, now)
        return self._install(request, now)

    def _authenticate(self, bu, pkt, hoa, coa, now) -> MobilitySA:
        auth = bu.find(Authentication)
        if auth is None or auth.subtype != AUTH_SUBTYPE_MN_HA:
            raise _Reject(BAStatus.MIPV6_AUTH_FAIL, "no MN-HA authentication option", signed=False)
        sa = self.sa_store.lookup_spi(auth.spi, now)
        if sa is None:
            raise _Reject(BAStatus.MIPV6_AUTH_FAIL, f"no security association for SPI {auth.spi}", signed=False)
        if not verify_mn_ha(pkt.raw, sa, coa, hoa):
            raise _Reject(BAStatus.MIPV6_AUTH_FAIL, "authenticator does not verify", signed=False)
        return sa

    def _check_replay(self, bu, sa: MobilitySA, now) -> ReplayProtection | None:
        option = bu.find(ReplayProtection)
        if sa.replay != "timestamp":
            return option
        if option is None:
            raise _Reject(BAStatus.MIPV6_MESG_ID_REQD, "replay protection option required")
        ha_time = max(0.0, now + self.clock_offset)
        last = self.last_timestamp.get(sa.spi)
        stale = abs(ntp_seconds(option.timestamp) - ha_time) > sa.replay_window
        replayed = last is not None and option.timestamp <= last
        if stale or replayed:
            # RFC 4285 section 6: keep the MN's low-order 32 bits, supply our own seconds.
            answer = ReplayProtection((ntp_timestamp(ha_time) & ~0xFFFFFFFF) | (option.timestamp & 0xFFFFFFFF))
            raise _Reject(BAStatus.MIPV6_ID_MISMATCH,
                          "timestamp outside the replay window" if stale else "timestamp replayed",
                          timestamp=answer)
        return option

    def _check_identity(self, bu, sa: MobilitySA, hoa: str, now) -> None:
        if sa.hoa is not None and sa.hoa != hoa:
            raise _Reject(BAStatus.MIPV6_AUTH_FAIL, "security association is bound to another home address")
        mn_id = bu.find(MobileNodeIdentifier)
        if mn_id is not None and sa.nai is not None and mn_id.nai != sa.nai:
            raise _Reject(BAStatus.MIPV6_AUTH_FAIL, "MN-ID does not match the security association")
        if sa.hoa is None:
            # An SA without a home address must not take over one that belongs to another MN.
            if any(other.spi != sa.spi for other in self.sa_store.bound_to_hoa(hoa, now)):
                raise _Reject(BAStatus.MIPV6_AUTH_FAIL, "home address belongs to another mobile node")
            entry = self.bindings.get(hoa)
            if entry is not None and entry.spi != sa.spi and self.sa_store.lookup_spi(entry.spi, now):
                raise _Reject(BAStatus.MIPV6_AUTH_FAIL, "home address registered by another mobile node")

    def _check_registration(self, bu, pkt, hoa, coa, sa, timestamp) -> _BindingRequest:
        entry = self.bindings.get(hoa)
        if not bu.home_registration:
            if entry is not None and entry.home_registration:
                raise _Reject(BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED,
                              "home registration exists; H flag missing")
            raise _Reject(BAStatus.ADMINISTRATIVELY_PROHIBITED, "this home agent is not a correspondent node")
        if not self.on_home_link(hoa):
            raise _Reject(BAStatus.NOT_HOME_SUBNET, "home address not on a home prefix")
        if self.served_home_addresses is not None and hoa not in self.served_home_addresses:
            raise _Reject(BAStatus.NOT_HOME_AGENT_FOR_THIS_MN, "home address not served here")
        mn_id = bu.find(MobileNodeIdentifier)
        if self.policy is not None and not self.policy(hoa, mn_id.nai if mn_id else sa.nai):
            raise _Reject(BAStatus.ADMINISTRATIVELY_PROHIBITED, "refused by policy")
        if entry is not None and not seq_newer(bu.seq, entry.seq):
            raise _Reject(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, "sequence number not newer", seq=entry.seq)
        dereg = bu.lifetime == 0 or coa == hoa
        if dereg and entry is None:
            raise _Reject(BAStatus.NOT_HOME_AGENT_FOR_THIS_MN, "deregistration without a home registration")
        pending = self.pending_dad.get(hoa)
        if pending is not None and not seq_newer(bu.seq, pending.bu.seq):
            raise _Reject(BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, "sequence number not newer", seq=pending.bu.seq)
        if (not dereg and entry is None and pending is None and self.max_bindings is not None
                and len(self.bindings) + len(self.pending_dad) >= self.max_bindings):
            raise _Reject(BAStatus.INSUFFICIENT_RESOURCES, "binding cache full")
        requested = min(bu.lifetime, self.max_lifetime)
        return _BindingRequest(bu, pkt, hoa, coa, sa, requested, timestamp)

    def _grant(self, request: _BindingRequest, now: float) -> tuple[int, float]:
        """(lifetime for the BA, when the entry expires): the request capped by the
        remaining lifetime of the SA that authenticated it."""
        granted, expires_at = request.requested, now + request.requested
        sa_end = request.sa.expires_at
        if sa_end is not None and sa_end < expires_at:
            granted = max(LIFETIME_UNIT, wire_lifetime(sa_end - now))
            expires_at = sa_end
        return granted, expires_at

    # ------------------------------------------------------------------ outcomes

    def _binding_ack(self, status: int, seq: int, lifetime: int, pkt: Received, hoa: str, coa: str,
                     sa: MobilitySA | None, timestamp: ReplayProtection | None) -> Action:
        options: list = []
        if status < 128 and lifetime and self.refresh_advice and self.refresh_advice < lifetime:
            options.append(BindingRefreshAdvice(self.refresh_advice))
        if timestamp is not None:
            options.append(timestamp)
        ba = BindingAck(int(status), seq, lifetime, options=tuple(options))
        local, checksum_dst = pkt.dst, pkt.hao or pkt.src
        if sa is not None:
            data = encode_with_mn_ha(ba, sa, coa, hoa, local, checksum_dst)
        else:
            data = encode_mh(ba, local, checksum_dst)
        return self._send(ba, local, pkt.src, data=data, rh2=pkt.hao)

    def _reject(self, bu, pkt, hoa, coa, sa, rej: _Reject, now) -> list[Action]:
        self.counters[f"bu.rejected.{int(rej.status)}"] += 1
        actions: list[Action] = [Event("mipv6.ha.bu_rejected", {
            "hoa": hoa, "coa": coa, "seq": bu.seq, "status": int(rej.status),
            "status_name": ba_status_name(rej.status), "reason": rej.reason})]
        if bu.ack or rej.status in ALWAYS_ACKNOWLEDGED:
            timestamp = rej.timestamp or bu.find(ReplayProtection)
            seq = bu.seq if rej.seq is None else rej.seq
            actions.append(self._binding_ack(rej.status, seq, 0, pkt, hoa, coa, sa, timestamp))
        return actions

    def _record_timestamp(self, request: _BindingRequest) -> None:
        if request.timestamp is not None:
            last = self.last_timestamp.get(request.sa.spi, -1)
            self.last_timestamp[request.sa.spi] = max(last, request.timestamp.timestamp)

    def _deregister(self, request: _BindingRequest, now) -> list[Action]:
        self._record_timestamp(request)
        self.counters["bu.deregistered"] += 1
        # Remove the binding (and with it the interception of the HoA) before sending the
        # BA, which from a MN back home goes to the HoA on the home link (RFC 10.3.2).
        actions = self._remove_entry(request.hoa, "deregistered")
        if request.bu.ack:
            actions.append(self._binding_ack(BAStatus.ACCEPTED, request.bu.seq, 0, request.pkt,
                                             request.hoa, request.coa, request.sa, request.timestamp))
        return actions

    def _start_dad(self, request: _BindingRequest, now) -> list[Action]:
        self._record_timestamp(request)
        fresh = request.hoa not in self.pending_dad
        self.pending_dad[request.hoa] = request   # a newer BU replaces the one waiting
        if not fresh:
            return [Event("mipv6.ha.dad_pending", {"hoa": request.hoa, "seq": request.bu.seq})]
        return [RequestDAD(request.hoa, request.bu.link_local_compat),
                StartTimer(("dad", request.hoa), now + self.dad_timeout),
                Event("mipv6.ha.dad_started", {"hoa": request.hoa})]

    def dad_probe_sent(self, hoa: str, now: float) -> list[Action]:
        """The runtime sent RequestDAD(hoa)'s Neighbor Solicitation: listen dad_wait."""
        hoa = normalize_address(hoa)
        if hoa not in self.pending_dad or hoa in self.dad_probing:
            return []
        self.dad_probing[hoa] = now
        return [StartTimer(("dad", hoa), now + self.dad_wait)]

    def neighbor_seen(self, kind: str, target: str, src: str, now: float) -> list[Action]:
        """A Neighbor Solicitation ("ns") or Advertisement ("na") for `target` on the home
        link, from `src`: a defender of an address under DAD (an NA, or another node's
        probe, an NS from ::) makes the DAD fail (RFC 4862 5.4.3, 5.4.4)."""
        if not self.dad_probing:
            return []
        try:
            target, src = normalize_address(target), normalize_address(src)
        except (ValueError, TypeError):
            return self._drop("bad_address")
        if target not in self.dad_probing or not (kind == "na" or (kind == "ns" and src == "::")):
            return []
        self.counters["dad.defended"] += 1
        return self._dad_done(target, False, now, defender=src)

    def dad_completed(self, hoa: str, success: bool, now: float) -> list[Action]:
        """DAD for `hoa` ended: accept (or reject with 134) the BU."""
        try:
            hoa = normalize_address(hoa)
        except (ValueError, TypeError):
            return self._drop("bad_address")
        return self._dad_done(hoa, success, now)

    def _dad_done(self, hoa: str, success: bool, now: float, defender: str | None = None) -> list[Action]:
        request = self.pending_dad.pop(hoa, None)
        if request is None:
            return self._drop("dad_result_without_request", hoa=hoa)
        sent = self.dad_probing.pop(hoa, None)
        actions: list[Action] = [StopTimer(("dad", hoa)), Event("mipv6.ha.dad_done", {
            "hoa": hoa, "ok": success, "defender": defender,
            "ms": None if sent is None else round((now - sent) * 1000, 3)})]
        if not success:
            return actions + self._reject(request.bu, request.pkt, hoa, request.coa, request.sa,
                                          _Reject(BAStatus.DAD_FAILED, "duplicate address detection failed"), now)
        if self.sa_store.lookup_spi(request.sa.spi, now) is None:
            return actions + self._reject(request.bu, request.pkt, hoa, request.coa, None,
                                          _Reject(BAStatus.MIPV6_AUTH_FAIL, "security association gone during DAD",
                                                  signed=False), now)
        return actions + self._install(request, now)

    def _handle_other_timer(self, key, now) -> list[Action]:
        if key == SA_EXPIRY_TIMER:
            return self._expire_sas(now)
        kind, hoa = key
        if kind != "dad" or hoa not in self.pending_dad:
            return []
        if hoa in self.dad_probing:     # nobody defended the address within dad_wait
            return self._dad_done(hoa, True, now)
        request = self.pending_dad.pop(hoa)
        return self._reject(request.bu, request.pkt, hoa, request.coa, request.sa,
                            _Reject(BAStatus.REASON_UNSPECIFIED, "no DAD result from the runtime"), now)

    def _install(self, request: _BindingRequest, now) -> list[Action]:
        self._record_timestamp(request)
        hoa, coa, bu = request.hoa, request.coa, request.bu
        old = self.bindings.get(hoa)
        granted, expires_at = self._grant(request, now)
        entry = BindingCacheEntry(
            hoa=hoa, coa=coa, seq=bu.seq, lifetime=granted, expires_at=expires_at,
            home_registration=True, local_address=request.pkt.dst, link_local=bu.link_local_compat,
            spi=request.sa.spi, registered_at=old.registered_at if old else now)
        self.bindings[hoa] = entry
        self.counters["bu.accepted"] += 1
        actions: list[Action] = [InstallBinding(hoa, coa, granted, entry.expires_at, True,
                                                bu.link_local_compat)]
        if old is None or old.coa != coa:
            actions.append(TunnelUp(hoa, entry.local_address, coa))
        actions += self._arm_binding_timers(entry, old)
        if bu.ack:
            actions.append(self._binding_ack(BAStatus.ACCEPTED, bu.seq, granted, request.pkt,
                                             hoa, coa, request.sa, request.timestamp))
        actions.append(Event("mipv6.ha.bu_accepted", {
            "hoa": hoa, "coa": coa, "seq": bu.seq, "lifetime": granted,
            "requested_lifetime": bu.lifetime, "new": old is None, "spi": request.sa.spi,
            "sa_capped": expires_at < now + request.requested}))
        return actions

    # ------------------------------------------------------------------ SA revocation

    def sa_revoked(self, spi: int, hoa: str | None, reason: str, now: float, *,
                   successor: bool = False) -> list[Action]:
        """The SA ``spi`` (bound to ``hoa``, None if unbound) has left the store: revoked,
        expired or removed. Ends the binding it authorised (see the module docstring);
        with ``successor`` (re-keyed by re-authentication) the binding stays."""
        self.last_timestamp.pop(spi, None)
        if successor:
            return [Event("mipv6.ha.sa_rekeyed", {"spi": spi, "hoa": hoa, "reason": reason})]
        try:
            hoa = normalize_address(hoa) if hoa is not None else None
        except (ValueError, TypeError):
            return self._drop("bad_address")
        if hoa is not None:
            candidates = [hoa]
        else:
            candidates = [h for h, e in self.bindings.items() if e.spi == spi]
        actions: list[Action] = []
        for h in candidates:
            entry = self.bindings.get(h)
            if entry is None:
                continue
            if entry.spi != spi and self.sa_store.lookup_spi(entry.spi, now) is not None:
                continue   # authenticated by a live SA (another session's): not ours to end
            self.counters["binding.revoked"] += 1
            actions += self._remove_entry(h, reason)
        return actions

    # ------------------------------------------------------------------ SA expiry and fetching

    def sa_store_changed(self, now: float) -> list[Action]:
        """The runtime changed the SA store: expiry is armed for its next expiring SA."""
        at = self.sa_store.next_expiry()
        return [StopTimer(SA_EXPIRY_TIMER) if at is None else StartTimer(SA_EXPIRY_TIMER, at)]

    def _expire_sas(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for sa in self.sa_store.expire(now):
            self.counters["sa.expired"] += 1
            actions.append(Event("mipv6.sa_expired", {"spi": sa.spi, "hoa": sa.hoa}))
            actions += self.sa_revoked(sa.spi, sa.hoa, "SA expired", now)
        return actions + self.sa_store_changed(now)

    def sa_distribution_changed(self, kind: str, spi: int, removed: bool, hoa: str | None, reason: str,
                                successor: bool, now: float) -> list[Action]:
        """SA distribution changed the store ("install" or "remove"; `removed`: the store
        gave that SA up). A removal ends the binding it authorised unless re-authentication
        replaced the SA (`successor`); one the store refused (it holds that SPI for another
        HoA) changes nothing."""
        actions = self.sa_store_changed(now)
        if kind == "remove" and (removed or self.sa_store.lookup_spi(spi) is None):
            actions += self.sa_revoked(spi, hoa, reason, now, successor=successor)
        return actions

    def hold_binding_update(self, spi: int | None, item, now: float) -> tuple[bool, list[Action]]:
        """A Binding Update signed with `spi` (None: not a signed BU) arrived: True when it
        waits (as `item`) for its SA to be fetched, False to process it now."""
        if spi is None or self.sa_store.lookup_spi(spi, now) is not None:
            return False, []
        verdict = self.fetching.hold(spi, item)
        if verdict == "refused":
            self.counters["sa.fetch_refused"] += 1
            return False, []             # to receive() unfetched: 146
        if verdict == "dropped":         # the MN retransmits; a flood does not pile up
            self.counters["sa.wait_dropped"] += 1
            return True, []
        return True, [FetchSA(spi)] if verdict == "fetch" else []

    def sa_fetched(self, spi: int, found: bool, now: float) -> tuple[list, list[Action]]:
        """The fetch FetchSA(spi) asked for ended: the items held for it, in order (without
        the SA the core answers them with 146)."""
        items = self.fetching.release(spi)
        self.counters["sa.fetched" if found else "sa.fetch_failed"] += 1
        return items, []
