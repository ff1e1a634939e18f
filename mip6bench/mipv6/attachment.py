"""Mobile node attachment core: movement detection (RFC 6275 11.5.1), the home / foreign /
care-of address decision, DAD modes, applying PANA bootstrap results and the PANA restart
policy. Sans-I/O: events and ``now`` in, effects, timers and log events out; the MN agent
(agents/mn.py) reads the kernel and the sockets and applies the effects.

    at = Attachment(["mn-f1", "mn-f2"], dad="optimistic", pana=True, autostart=True,
                    home=("2001:db8:1::100", "2001:db8:1::1", "2001:db8:1::/64"))
    at.start(now)                                  # [Activate(...)] with a static home, ObserveLinks
    at.link_event("mn-f1", down=True, now)         # carrier lost: the RA seen there is void
    at.address_event(AddressState(...), deleted, now)   # an address notification
    at.router_advertisement("mn-f2", src, hop_limit, prefixes, router_lifetime, now, ...)
    at.observing(); at.observed(carrier, addresses, now)   # the kernel's links and addresses
    at.activated(now)                              # the agent applied Activate
    at.bootstrap(BootstrapResult(...), now)        # a PANA bootstrap update
    at.pana_pinged(address)                        # the PingPana it asked for was sent
    at.pin_for_signalling(now)                     # pin the way out for the CoA's signalling now
    at.route_pinned(effect)                        # a PinDefaultRoute was applied
    at.kernel_failed(effect)                       # a kernel effect failed: forget what it set
    at.handle_timer(key, now)
    at.stop(now)

Movement detection: link events of the access interfaces, and address events that
change one of their addresses (new, gone, DAD state: not the lifetime refresh every RA
brings), make the agent read the access interfaces' carrier and addresses
(ObserveLinks, coalesced while one is queued; also after lost notifications); Router Advertisements arrive as parsed fields. An RA counts only with hop limit
255 (RFC 4861 6.1.2), from an access interface, with a prefix and a non-zero router
lifetime. A new attachment is confirmed by the first RA on the newly attached interface
(or one with another prefix): event mipv6.mn.movement_detected. An RA seen before a
carrier loss proves nothing afterwards (link_event(..., down=True) forgets it).

The decision (observed): the attached interface is the first access interface with
carrier (mipv6.mn.l2_down / l2_up; SetPanaInterface, where a multicast PCI leaves). Its
RA's first prefix tells home from foreign; the address the kernel formed from it is the
care-of address once usable: global scope, DAD not failed, and not tentative, except an
optimistic address in ``dad="optimistic"`` (RFC 4429). With ``dad="standard"`` a tentative
address waits for DAD; with ``dad="off"`` the kernel never marks one tentative. An
address whose DAD failed is reported once (mipv6.mn.coa_dad_failed; the last 64 such
addresses are remembered) and never used.
  * Before the home side is known (PANA has not bootstrapped yet): the default route is
    pinned through the attached network's router (PinDefaultRoute, metric ahead of the
    RA-learned routes) and, with PANA ``autostart``, the first usable address starts
    PANA (StartPana).
  * Home prefix: the home address goes on the home interface (HomeLinkAddress, event
    mipv6.mn.at_home), ReturnHome when the MN had a CoA, the default route is pinned,
    and the PAA learns the address with a PANA ping (PingPana).
  * Foreign prefix with a usable address: the home address leaves the home interface;
    a new CoA gives mipv6.mn.coa_ready and MoveTo(coa, interface) (the MobileNode core
    registers it), then the pin (after the signalling is under way) and a PANA ping.
  * Detached, or attached elsewhere than the pinned network: the pin goes (None).

Bootstrap results (bootstrap): a complete "ready" or "rekeyed" result (HA, HoA, home
prefix, SA) installs the SA (InstallSA, replacing one with its SPI), activates the home
side the first time (Activate; the agent calls activated() once it is set up), sets the
NSIS token (SetNsisToken) and notes the address the PAA knows us by; items the PAA did
not grant and the static configuration filled in are logged (mipv6.mn.static_fallback).
A later result for another HoA or HA is refused (mipv6.mn.bootstrap_conflict): the
home side stays. An update's old SPI is removed (RemoveSA). With the home side active
every update ends in SasChanged (MobileNode.security_associations_changed).

PANA restarts ("closed" results): the restart delay comes with the result (the PANA
client's RestartPolicy: at once, then backoff while failing; never after pana-terminate
or too many supersessions, delay None). The core drops the NSIS token, logs
mipv6.mn.pana_restart {reason, delay_s} and arms timer ("pana", "restart"), which
replaces an earlier one and fires StartPana.
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from mip6bench.mipv6.sa import MobilitySA
from mip6bench.mipv6.wire import normalize_address
from mip6bench.sansio import Action, Effect, Event, StartTimer, StopTimer

DAD_MODES = ("standard", "optimistic", "off")
RESTART_TIMER = ("pana", "restart")
MAX_DAD_FAILED_REMEMBERED = 64   # addresses whose DAD failure was reported
MAX_ADDRESSES_TRACKED = 256      # access interfaces' address states known from notifications


# ---- effects ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ObserveLinks(Effect):
    """Read the access interfaces' carrier and addresses; call observing() when the
    read starts, observed(...) with the result."""


@dataclass(frozen=True)
class PinDefaultRoute(Effect):
    """The default route through `router` on `interface` ahead of RA-learned ones; both
    None: remove our pinned route."""
    interface: str | None
    router: str | None


@dataclass(frozen=True)
class HomeLinkAddress(Effect):
    """Put the home address on the home interface (present) or take it off again."""
    interface: str
    present: bool


@dataclass(frozen=True)
class MoveTo(Effect):
    """A new care-of address on `interface`: MobileNode.move_to(coa)."""
    coa: str
    interface: str


@dataclass(frozen=True)
class ReturnHome(Effect):
    """Back on the home link: MobileNode.return_home()."""
    interface: str


@dataclass(frozen=True)
class Activate(Effect):
    """The home side is known: home address, tunnel plumbing, MobileNode core; then
    Attachment.activated()."""
    hoa: str
    ha: str
    home_prefix: str


@dataclass(frozen=True)
class InstallSA(Effect):
    sa: MobilitySA
    source: str


@dataclass(frozen=True)
class RemoveSA(Effect):
    spi: int
    reason: str


@dataclass(frozen=True)
class SasChanged(Effect):
    """The SA store changed: MobileNode.security_associations_changed()."""


@dataclass(frozen=True)
class SetNsisToken(Effect):
    """The NSIS SESSION_AUTH token PANA brought (for the NATFW initiator when
    `signalling`; a session that closed only clears what status reports)."""
    token: bytes | None
    signalling: bool = True


@dataclass(frozen=True)
class SetPanaInterface(Effect):
    """Where a multicast PCI leaves from now on."""
    interface: str


@dataclass(frozen=True)
class StartPana(Effect):
    pass


@dataclass(frozen=True)
class PingPana(Effect):
    """Tell the PAA our new address (an authenticated PANA ping); pana_pinged(address)
    when it was sent."""
    address: str


# ---- inputs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AddressState:
    """One address of an access interface as the kernel reports it."""
    interface: str
    address: str
    scope: int = 0
    tentative: bool = False
    optimistic: bool = False
    dadfailed: bool = False


@dataclass(frozen=True)
class BootstrapResult:
    """A PANA bootstrap update (mip6bench.runtime.pana_client.BootstrapUpdate) as data.
    `restart_delay` matters for "closed" only: seconds until PANA starts again, None
    for never."""
    kind: str                       # "ready" | "rekeyed" | "revoked" | "closed"
    hoa: str | None = None
    ha: str | None = None
    home_prefix: str | None = None
    sa: MobilitySA | None = None
    token: bytes | None = None
    sources: dict[str, str] = field(default_factory=dict)
    session_id: int = 0
    old_spi: int | None = None
    reason: str = ""
    restart_delay: float | None = None

    @property
    def complete(self) -> bool:
        return bool(self.ha and self.hoa and self.sa and self.home_prefix)

    @classmethod
    def from_update(cls, update, restart_delay: float | None = None) -> "BootstrapResult":
        """From a BootstrapUpdate (kind, old_spi, reason, bootstrap: ha, hoa,
        home_prefix, sa, token, sources, session_id or None)."""
        b = update.bootstrap
        if b is None:
            return cls(update.kind, old_spi=update.old_spi, reason=update.reason, restart_delay=restart_delay)
        return cls(update.kind, hoa=b.hoa, ha=b.ha, home_prefix=b.home_prefix, sa=b.sa, token=b.token,
                   sources=dict(b.sources), session_id=b.session_id, old_spi=update.old_spi,
                   reason=update.reason, restart_delay=restart_delay)


_UNKNOWN = object()   # a kernel effect failed: what it set is not known


class Attachment:
    """See the module docstring. `interfaces`: the access interfaces in order of
    preference; `home`: (hoa, ha, home_prefix) when configured statically; `pana`: the
    MN bootstraps (or re-keys) through PANA."""

    def __init__(self, interfaces: Iterable[str], *, dad: str = "off",
                 home: tuple[str, str, str] | None = None, pana: bool = False,
                 autostart: bool = True):
        self.interfaces = list(interfaces)
        if not self.interfaces:
            raise ValueError("a mobile node needs at least one access interface")
        if dad not in DAD_MODES:
            raise ValueError(f"dad must be one of {DAD_MODES}, got {dad!r}")
        self.dad = dad
        self.pana, self.autostart = pana, autostart
        self.counters: Counter[str] = Counter()
        self.home: tuple[str, str, str] | None = None     # (hoa, ha, prefix), once known
        self._static_home = _normalize_home(*home) if home is not None else None
        self.active = False                 # the agent applied Activate
        self.attached: str | None = None    # interface with carrier
        self.ra: dict[str, tuple[float, str, str]] = {}   # interface -> (time, prefix, router)
        self.address: str | None = None     # usable address on the attached network
        self.coa: str | None = None         # the CoA handed to MoveTo (None: home / none yet)
        self.coa_interface: str | None = None
        self.pinned: Any = None             # (interface, router) | None | _UNKNOWN, as asked
        self.pin_applied: Any = None        # the same, as the agent reported it applied
        self.home_link: Any = None          # interface holding the HoA | None | _UNKNOWN
        self.pana_started = False
        self.pana_address: str | None = None   # the address the PAA knows us by
        self._observe_queued = False
        self._last: tuple[dict[str, bool], list[AddressState]] | None = None   # last observation
        self._dad_failed_seen: set[str] = set()
        self._address_state: dict[tuple[str, str], tuple] = {}   # (interface, address) -> flags

    # ------------------------------------------------------------------ lifecycle
    def start(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._static_home is not None:
            self.home = self._static_home
            actions.append(Activate(*self.home))
        return actions + self._observe()

    def activated(self, now: float) -> list[Action]:
        """The agent applied Activate. Bootstrapped on a link already seen, the care-of
        address of the last observation gets its MoveTo (the first Binding Update) at
        once, not after another kernel read; a newer look follows."""
        self.active = True
        actions = self._decide(*self._last, now) if self._last is not None else []
        return actions + self._observe()

    def stop(self, now: float) -> list[Action]:
        actions: list[Action] = [StopTimer(RESTART_TIMER)]
        if self.pinned is not None:
            actions += self._pin(None)
        return actions

    # ------------------------------------------------------------------ movement detection
    def link_event(self, interface: str | None, down: bool, now: float) -> list[Action]:
        """A link notification about access interface `interface` (`down`: it lost
        carrier or went), or None: notifications were lost, read the kernel again."""
        if down and interface in self.ra:
            del self.ra[interface]   # an RA seen before this detach proves nothing now
        return self._observe()

    def address_event(self, a: AddressState, deleted: bool, now: float) -> list[Action]:
        """An address notification. Only a change of an access interface's address (new,
        gone, DAD state) asks for a read: the kernel also notifies each lifetime refresh
        that an RA brings (every RA interval), which decides nothing."""
        if a.interface not in self.interfaces:
            return []
        key = (a.interface, normalize_address(a.address))
        state = None if deleted else (a.scope, a.tentative, a.optimistic, a.dadfailed)
        if self._address_state.get(key) == state:
            self.counters["address.unchanged"] += 1
            return []
        if len(self._address_state) >= MAX_ADDRESSES_TRACKED:
            self._address_state.clear()     # (forgotten ones only cost one more read)
        if state is None:
            self._address_state.pop(key, None)
        else:
            self._address_state[key] = state
        return self._observe()

    def router_advertisement(self, interface: str | None, router: str, hop_limit: int,
                             prefixes: Iterable[str], router_lifetime: int, now: float, *,
                             interval_ms: int | None = None, home_agent: bool = False) -> list[Action]:
        if interface not in self.interfaces:
            self.counters["ra.not_access_interface"] += 1
            return []
        if hop_limit != 255:
            self.counters["ra.hop_limit"] += 1
            return []
        prefixes = list(prefixes)
        if not prefixes or router_lifetime == 0:
            self.counters["ra.not_a_router"] += 1
            return []
        prefix = str(ipaddress.IPv6Network(prefixes[0], strict=False))
        first = interface not in self.ra or self.ra[interface][1] != prefix
        self.ra[interface] = (now, prefix, router)
        if not first:
            return []
        return [Event("mipv6.mn.movement_detected", {
            "interface": interface, "prefix": prefix, "router": router,
            "advertisement_interval_ms": interval_ms, "home_agent": home_agent})] + self._observe()

    def observing(self) -> None:
        """The agent starts reading the kernel: later notifications need another read."""
        self._observe_queued = False
        self.counters["observe"] += 1

    def usable(self, a: AddressState) -> bool:
        """An address the MN may use as its care-of address (see the module docstring)."""
        if a.scope != 0 or a.dadfailed:
            return False
        return not a.tentative or (a.optimistic and self.dad == "optimistic")

    def observed(self, carrier: dict[str, bool], addresses: Iterable[AddressState],
                 now: float) -> list[Action]:
        self._last = (dict(carrier), list(addresses))
        return self._decide(*self._last, now)

    def _decide(self, carrier: dict[str, bool], addresses: list[AddressState],
                now: float) -> list[Action]:
        actions: list[Action] = []
        attached = [n for n in self.interfaces if carrier.get(n)]
        current = attached[0] if attached else None
        if current != self.attached:
            if self.attached is not None:
                actions.append(Event("mipv6.mn.l2_down", {"interface": self.attached}))
            if current is not None:
                actions.append(Event("mipv6.mn.l2_up", {"interface": current}))
                if self.pana:
                    actions.append(SetPanaInterface(current))
            self.attached = current
        if self.pinned is not None and (self.pinned is _UNKNOWN or self.pinned[0] != current):
            actions += self._pin(None)   # left that network: its router is not our way out
        if current is None or current not in self.ra:
            return actions
        _t, prefix, router = self.ra[current]
        net = ipaddress.IPv6Network(prefix)
        # None while the address is still tentative (DAD), or SLAAC has not run yet.
        address = None
        for a in addresses:
            if a.interface != current or ipaddress.IPv6Address(a.address) not in net:
                continue
            if a.dadfailed and a.address not in self._dad_failed_seen:
                if len(self._dad_failed_seen) >= MAX_DAD_FAILED_REMEMBERED:
                    self._dad_failed_seen.clear()    # (RAs with ever new prefixes: bounded)
                self._dad_failed_seen.add(a.address)
                self.counters["coa.dad_failed"] += 1
                actions.append(Event("mipv6.mn.coa_dad_failed", {"interface": current, "address": a.address}))
            if address is None and self.usable(a):
                address = normalize_address(a.address)
        self.address = address
        if not self.active:      # (when active, the pin waits until signalling is under way)
            actions += self._pin((current, router))
        if address is not None and self.pana and not self.pana_started and self.autostart:
            self.pana_started = True
            actions.append(StartPana())    # the first usable address: authenticate from it
        if not self.active:
            return actions
        if prefix == self.home[2]:
            if self.home_link != current:
                if isinstance(self.home_link, str):    # (another home interface)
                    actions.append(HomeLinkAddress(self.home_link, False))
                self.home_link = current
                actions += [HomeLinkAddress(current, True), Event("mipv6.mn.at_home", {"interface": current})]
            if self.coa is not None:
                self.coa = None
                actions.append(ReturnHome(current))
            return actions + self._pin((current, router)) + self._ping(address)
        if address is None:
            return actions
        if self.home_link is not None:
            if isinstance(self.home_link, str):
                actions.append(HomeLinkAddress(self.home_link, False))
            self.home_link = None
        if address != self.coa:
            self.coa, self.coa_interface = address, current
            actions += [Event("mipv6.mn.coa_ready", {"interface": current, "coa": address, "dad": self.dad}),
                        MoveTo(address, current)]
            actions += self._pin((current, router)) + self._ping(address)
        return actions + self._pin((current, router))

    def pin_for_signalling(self, now: float) -> list[Action]:
        """The default route through the router of the CoA's network, for signalling
        that must take it now: asked for again unless the agent reported it applied
        (one asked for in an observation may still be waiting in the queue)."""
        if self.coa_interface is None or self.coa_interface not in self.ra:
            return []
        target = (self.coa_interface, self.ra[self.coa_interface][2])
        if self.pin_applied == target:
            return []
        self.pinned = target
        return [PinDefaultRoute(*target)]

    def route_pinned(self, effect: PinDefaultRoute) -> None:
        """The agent applied `effect`."""
        self.pin_applied = None if effect.interface is None else (effect.interface, effect.router)

    def kernel_failed(self, effect: Effect) -> None:
        """Applying `effect` failed: what it set is unknown, so it is done again."""
        if isinstance(effect, PinDefaultRoute):
            self.pinned = self.pin_applied = _UNKNOWN
        elif isinstance(effect, HomeLinkAddress):
            self.home_link = _UNKNOWN if effect.present else effect.interface

    # ------------------------------------------------------------------ PANA
    def pana_pinged(self, address: str) -> None:
        self.pana_address = address

    def bootstrap(self, result: BootstrapResult, now: float) -> list[Action]:
        actions: list[Action] = []
        if result.kind in ("ready", "rekeyed") and result.complete and self._same_home(result, actions):
            actions.append(InstallSA(result.sa, result.sources.get("sa", "pana")))
            # Token and the PAA's view of our address first: activation may send the
            # first Binding Update (and its NSIS signalling) at once.
            actions.append(SetNsisToken(result.token))
            self.pana_address = self.address
            if self.home is None:
                self.home = _normalize_home(result.hoa, result.ha, result.home_prefix)
                actions.append(Activate(*self.home))
            static = sorted(item for item, source in result.sources.items() if source == "static")
            if static:
                actions.append(Event("mipv6.mn.static_fallback", {"items": static, "session_id": result.session_id}))
        if result.old_spi is not None:
            actions.append(RemoveSA(result.old_spi, result.kind))
        if result.kind == "closed":
            actions.append(SetNsisToken(None, signalling=False))
            actions += self._restart(result, now)
        if self.home is not None:
            # The SA we were waiting for, or a new one (re-authentication, a new session):
            # the HA's binding lives only as long as the SA that signed it.
            actions.append(SasChanged())
        return actions

    def _same_home(self, result: BootstrapResult, actions: list[Action]) -> bool:
        """The first bootstrap sets the home side up; later ones must keep it."""
        if self.home is None:
            return True
        hoa, ha, _prefix = self.home
        if (normalize_address(result.hoa), normalize_address(result.ha)) == (hoa, ha):
            return True
        self.counters["bootstrap.conflict"] += 1
        actions.append(Event("mipv6.mn.bootstrap_conflict", {"hoa": result.hoa, "ha": result.ha,
                                                            "active_hoa": hoa, "active_ha": ha}))
        return False

    def _restart(self, result: BootstrapResult, now: float) -> list[Action]:
        """A session that ended starts again after the delay its RestartPolicy chose
        (never, for None); a newer restart replaces one still waiting."""
        if result.restart_delay is None:
            return []
        delay = max(0.0, float(result.restart_delay))
        self.counters["pana.restart"] += 1
        return [Event("mipv6.mn.pana_restart", {"reason": result.reason, "delay_s": result.restart_delay}),
                StartTimer(RESTART_TIMER, now + delay)]

    def handle_timer(self, key, now: float) -> list[Action]:
        if key == RESTART_TIMER:
            return [StartPana()]
        return []

    # ------------------------------------------------------------------ helpers
    def _observe(self) -> list[Action]:
        if self._observe_queued:
            return []
        self._observe_queued = True
        return [ObserveLinks()]

    def _pin(self, attachment: tuple[str, str] | None) -> list[Action]:
        if attachment == self.pinned:
            return []
        self.pinned = attachment
        return [PinDefaultRoute(*(attachment or (None, None)))]

    def _ping(self, address: str | None) -> list[Action]:
        if not self.pana or address is None or address == self.pana_address:
            return []
        return [PingPana(address)]


def _normalize_home(hoa: str, ha: str, prefix: str) -> tuple[str, str, str]:
    return (normalize_address(hoa), normalize_address(ha),
            str(ipaddress.IPv6Network(prefix, strict=False)))
