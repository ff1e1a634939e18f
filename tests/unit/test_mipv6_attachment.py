"""The mobile node's attachment core (mip6bench.mipv6.attachment): movement detection,
the home / foreign / care-of address decision, DAD modes, bootstrap results and the PANA
restart policy, driven by events and time, without a kernel."""
import pytest

from mip6bench.mipv6.attachment import (
    RESTART_TIMER,
    Activate,
    AddressState,
    Attachment,
    BootstrapResult,
    HomeLinkAddress,
    InstallSA,
    MoveTo,
    ObserveLinks,
    PingPana,
    PinDefaultRoute,
    RemoveSA,
    ReturnHome,
    SasChanged,
    SetNsisToken,
    SetPanaInterface,
    StartPana,
)
from mip6bench.mipv6.sa import MobilitySA
from mip6bench.pana.message import TERMINATION_ADMINISTRATIVE
from mip6bench.runtime.pana_client import RestartPolicy
from mip6bench.sansio import Event, StartTimer, StopTimer

HOA, HA, HOME = "2001:db8:1::100", "2001:db8:1::1", "2001:db8:1::/64"
F1, F2, HOMEIF = "mn-f1", "mn-f2", "mn-h"
R1, R2, RH = "fe80::1", "fe80::2", "fe80::3"
P1, P2 = "2001:db8:a::/64", "2001:db8:b::/64"
C1, C2, HOME_SLAAC = "2001:db8:a::5", "2001:db8:b::5", "2001:db8:1::5"


def kinds(actions, cls):
    return [a for a in actions if isinstance(a, cls)]


def events(actions, name=None):
    return [a for a in actions if isinstance(a, Event) and (name is None or a.name == name)]


def attach(**kwargs) -> Attachment:
    kwargs.setdefault("home", (HOA, HA, HOME))
    at = Attachment([F1, F2, HOMEIF], **kwargs)
    assert ObserveLinks() in at.start(0.0)
    if at.home is not None:
        at.activated(0.0)
    return at


def observe(at, on, addresses, now=1.0):
    at.observing()
    return at.observed({n: n == on for n in (F1, F2, HOMEIF)}, addresses, now)


def ra(at, interface, prefix, router, now=1.0, hop_limit=255, lifetime=1800):
    return at.router_advertisement(interface, router, hop_limit, [prefix], lifetime, now)


def addr(interface, address, **flags):
    return AddressState(interface, address, **flags)


# ---- movement detection ------------------------------------------------------------------

def test_the_first_ra_on_the_attached_interface_is_movement_and_asks_for_the_kernel_state():
    at = attach()
    observe(at, F1, [])
    out = ra(at, F1, P1, R1)
    [moved] = events(out, "mipv6.mn.movement_detected")
    assert moved.fields["interface"] == F1 and moved.fields["prefix"] == P1 and moved.fields["router"] == R1
    assert kinds(out, ObserveLinks) == [ObserveLinks()]
    assert ra(at, F1, P1, R1, now=2.0) == []           # the same router again: nothing new
    assert events(ra(at, F1, P2, R1), "mipv6.mn.movement_detected")   # a new prefix is


def test_ras_that_do_not_count_are_dropped_and_counted():
    at = attach()
    assert ra(at, F1, P1, R1, hop_limit=64) == [] and at.counters["ra.hop_limit"] == 1
    assert ra(at, "eth9", P1, R1) == [] and at.counters["ra.not_access_interface"] == 1
    assert ra(at, F1, P1, R1, lifetime=0) == [] and at.counters["ra.not_a_router"] == 1
    assert at.router_advertisement(F1, R1, 255, [], 1800, 1.0) == []
    assert at.counters["ra.not_a_router"] == 2 and at.ra == {}


def test_observations_are_coalesced_until_the_agent_reads_the_kernel():
    at = attach()
    at.observing()
    assert at.link_event(None, False, 1.0) == [ObserveLinks()]
    assert at.link_event(None, False, 1.1) == []       # one read is queued already
    at.observing()
    assert at.link_event(None, False, 1.2) == [ObserveLinks()]   # came during the read


def test_only_address_changes_of_access_interfaces_ask_for_a_read():
    at = attach()
    at.observing()
    new = addr(F1, C1, tentative=True)
    assert at.address_event(new, False, 1.0) == [ObserveLinks()]
    at.observing()
    # The lifetime refresh each RA brings: the same address, the same DAD state.
    assert at.address_event(new, False, 1.1) == [] and at.counters["address.unchanged"] == 1
    assert at.address_event(addr(F1, C1), False, 1.2) == [ObserveLinks()]   # DAD ended
    at.observing()
    assert at.address_event(addr(F1, C1), True, 1.3) == [ObserveLinks()]    # gone
    at.observing()
    assert at.address_event(addr("lo", HOA), False, 1.4) == []              # not an access interface
    assert at.link_event(None, False, 1.5) == [ObserveLinks()]               # lost notifications


def test_address_states_kept_are_bounded():
    at = attach()
    for i in range(600):
        at.observing()
        assert at.address_event(addr(F1, f"2001:db8:a::{i + 1:x}"), False, 1.0) == [ObserveLinks()]
    assert len(at._address_state) <= 256


def test_carrier_loss_voids_the_ra_seen_before_it():
    at = attach()
    ra(at, F1, P1, R1)
    observe(at, F1, [addr(F1, C1)])
    at.link_event(F1, True, 2.0)
    assert F1 not in at.ra
    # Carrier back: the old RA proves nothing, no CoA until a new RA came.
    out = observe(at, F1, [addr(F1, C1)], now=3.0)
    assert not kinds(out, MoveTo)


def test_foreign_link_gives_a_care_of_address_then_pins_and_pings():
    at = attach(pana=True)
    assert kinds(observe(at, F1, []), SetPanaInterface) == [SetPanaInterface(F1)]
    ra(at, F1, P1, R1)
    out = observe(at, F1, [addr(F1, "fe80::5", scope=253), addr(F1, C1)])
    assert [type(a).__name__ for a in out if not isinstance(a, Event)] == [
        "StartPana", "MoveTo", "PinDefaultRoute", "PingPana"]   # signalling first, then the way out
    assert kinds(out, MoveTo) == [MoveTo(C1, F1)] and kinds(out, PingPana) == [PingPana(C1)]
    assert events(out, "mipv6.mn.coa_ready")[0].fields == {"interface": F1, "coa": C1, "dad": "off"}
    assert at.coa == C1 and at.coa_interface == F1
    at.pana_pinged(C1)
    assert observe(at, F1, [addr(F1, C1)], now=2.0) == []   # nothing changed: nothing to do


def test_a_handover_moves_to_the_new_coa_and_unpins_the_old_router():
    at = attach()
    ra(at, F1, P1, R1)
    observe(at, F1, [addr(F1, C1)])
    ra(at, F2, P2, R2, now=5.0)
    out = observe(at, F2, [addr(F2, C2)], now=5.0)
    pins = kinds(out, PinDefaultRoute)
    assert pins[0] == PinDefaultRoute(None, None) and pins[-1] == PinDefaultRoute(F2, R2)
    assert kinds(out, MoveTo) == [MoveTo(C2, F2)]
    assert [e.name for e in events(out)][:2] == ["mipv6.mn.l2_down", "mipv6.mn.l2_up"]


def test_detached_removes_the_pin():
    at = attach()
    ra(at, F1, P1, R1)
    observe(at, F1, [addr(F1, C1)])
    out = at.observed({}, [], 2.0)
    assert kinds(out, PinDefaultRoute) == [PinDefaultRoute(None, None)] and at.attached is None


def test_returning_home_puts_the_home_address_on_the_home_link_and_goes_home():
    at = attach()
    ra(at, F1, P1, R1)
    observe(at, F1, [addr(F1, C1)])
    ra(at, HOMEIF, HOME, RH, now=4.0)
    out = observe(at, HOMEIF, [addr(HOMEIF, HOME_SLAAC)], now=4.0)
    assert kinds(out, HomeLinkAddress) == [HomeLinkAddress(HOMEIF, True)]
    assert kinds(out, ReturnHome) == [ReturnHome(HOMEIF)]
    assert events(out, "mipv6.mn.at_home") and at.coa is None
    assert kinds(out, PinDefaultRoute)[-1] == PinDefaultRoute(HOMEIF, RH)
    # Away again: the home address leaves the home link, the CoA is used anew.
    out = observe(at, F1, [addr(F1, C1)], now=6.0)
    assert kinds(out, HomeLinkAddress) == [HomeLinkAddress(HOMEIF, False)]
    assert kinds(out, MoveTo) == [MoveTo(C1, F1)]


def test_at_home_from_the_start_is_not_a_return_home():
    at = attach()
    ra(at, HOMEIF, HOME, RH)
    out = observe(at, HOMEIF, [])
    assert kinds(out, HomeLinkAddress) and not kinds(out, ReturnHome)


def test_a_failed_kernel_change_is_asked_for_again():
    at = attach()
    ra(at, F1, P1, R1)
    [pin] = kinds(observe(at, F1, [addr(F1, C1)]), PinDefaultRoute)
    at.kernel_failed(pin)
    assert kinds(observe(at, F1, [addr(F1, C1)], now=2.0), PinDefaultRoute)[-1] == pin
    ra(at, HOMEIF, HOME, RH)
    [add] = kinds(observe(at, HOMEIF, []), HomeLinkAddress)
    at.kernel_failed(add)
    assert kinds(observe(at, HOMEIF, [], now=3.0), HomeLinkAddress) == [add]


def test_signalling_pin_is_asked_for_until_the_agent_applied_one():
    at = attach()
    assert at.pin_for_signalling(0.0) == []            # no CoA yet
    ra(at, F1, P1, R1)
    observe(at, F1, [addr(F1, C1)])                     # asked for, not applied yet
    assert at.pin_for_signalling(1.0) == [PinDefaultRoute(F1, R1)]
    at.route_pinned(PinDefaultRoute(F1, R1))
    assert at.pin_for_signalling(1.1) == []


# ---- DAD modes ---------------------------------------------------------------------------

@pytest.mark.parametrize("dad, flags, usable", [
    ("standard", {"tentative": True}, False),                      # waits for DAD
    ("standard", {}, True),
    ("standard", {"tentative": True, "optimistic": True}, False),  # not ours to be optimistic
    ("optimistic", {"tentative": True, "optimistic": True}, True),  # RFC 4429: at once
    ("optimistic", {"tentative": True}, False),
    ("off", {}, True),
    ("off", {"dadfailed": True}, False),
])
def test_dad_modes_decide_when_an_address_is_a_care_of_address(dad, flags, usable):
    at = attach(dad=dad)
    ra(at, F1, P1, R1)
    out = observe(at, F1, [addr(F1, C1, **flags)])
    assert bool(kinds(out, MoveTo)) is usable
    if usable:
        assert events(out, "mipv6.mn.coa_ready")[0].fields["dad"] == dad


def test_standard_dad_uses_the_address_once_dad_completed():
    at = attach(dad="standard")
    ra(at, F1, P1, R1)
    assert not kinds(observe(at, F1, [addr(F1, C1, tentative=True)]), MoveTo)
    assert kinds(observe(at, F1, [addr(F1, C1)], now=2.0), MoveTo) == [MoveTo(C1, F1)]


def test_an_address_whose_dad_failed_is_reported_once_and_never_used():
    at = attach(dad="standard")
    ra(at, F1, P1, R1)
    out = observe(at, F1, [addr(F1, C1, dadfailed=True, tentative=True)])
    assert events(out, "mipv6.mn.coa_dad_failed")[0].fields == {"interface": F1, "address": C1}
    assert not kinds(out, MoveTo)
    again = observe(at, F1, [addr(F1, C1, dadfailed=True, tentative=True)], now=2.0)
    assert not events(again, "mipv6.mn.coa_dad_failed") and at.counters["coa.dad_failed"] == 1


def test_the_memory_of_failed_addresses_is_bounded():
    at = attach(dad="standard")
    for i in range(200):     # a stranger's RAs with ever new prefixes, each address defended
        prefix = f"2001:db8:{i + 0x100:x}::/64"
        ra(at, F1, prefix, R1, now=float(i))
        out = observe(at, F1, [addr(F1, prefix.replace("::/64", "::5"), dadfailed=True)], now=float(i))
        assert events(out, "mipv6.mn.coa_dad_failed")
    assert len(at._dad_failed_seen) <= 64 and at.counters["coa.dad_failed"] == 200


def test_bad_dad_mode_is_refused():
    with pytest.raises(ValueError, match="dad must be one of"):
        Attachment([F1], dad="sometimes")


# ---- before bootstrap, and bootstrap results ------------------------------------------------

def sa(spi=0x1000, hoa=HOA):
    return MobilitySA(spi, b"k" * 16, hoa=hoa, nai="mn1@example.net")


def ready(kind="ready", **kw):
    fields = dict(hoa=HOA, ha=HA, home_prefix=HOME, sa=sa(), token=b"tok",
                  sources={"ha": "pana", "hoa": "pana", "home_prefix": "pana", "sa": "pana"}, session_id=7)
    fields.update(kw)
    return BootstrapResult(kind, **fields)


def test_before_bootstrap_the_first_usable_address_starts_pana_once():
    at = attach(home=None, pana=True)
    ra(at, F1, P1, R1)
    out = observe(at, F1, [addr(F1, C1, tentative=True)], now=0.5)
    assert kinds(out, PinDefaultRoute) == [PinDefaultRoute(F1, R1)]   # pinned at once
    assert not kinds(out, StartPana)                                   # not usable yet
    assert kinds(observe(at, F1, [addr(F1, C1)]), StartPana) == [StartPana()]
    assert not kinds(observe(at, F1, [addr(F1, C1)], now=2.0), StartPana)
    assert not kinds(out, MoveTo)                                      # no home side yet


def test_without_autostart_pana_waits_for_pana_start():
    at = attach(home=None, pana=True, autostart=False)
    ra(at, F1, P1, R1)
    assert not kinds(observe(at, F1, [addr(F1, C1)]), StartPana)


def test_the_first_bootstrap_activates_the_home_side_then_registers():
    at = attach(home=None, pana=True)
    ra(at, F1, P1, R1)
    observe(at, F1, [addr(F1, C1)])
    out = at.bootstrap(ready(), 2.0)
    assert [type(a).__name__ for a in out] == ["InstallSA", "Activate", "SetNsisToken", "SasChanged"]
    assert kinds(out, Activate) == [Activate(HOA, HA, HOME)] and kinds(out, InstallSA)[0].source == "pana"
    assert kinds(out, SetNsisToken) == [SetNsisToken(b"tok")]
    assert at.pana_address == C1                     # the PAA knows the address we had
    assert at.activated(2.1) == [ObserveLinks()]
    out = observe(at, F1, [addr(F1, C1)], now=2.2)
    assert kinds(out, MoveTo) == [MoveTo(C1, F1)] and not kinds(out, PingPana)


def test_rekey_replaces_the_sa_and_removes_the_old_one_without_reactivating():
    at = attach(home=None, pana=True)
    at.bootstrap(ready(), 1.0)
    out = at.bootstrap(ready("rekeyed", sa=sa(0x2000), old_spi=0x1000), 5.0)
    assert not kinds(out, Activate)
    assert kinds(out, InstallSA)[0].sa.spi == 0x2000 and kinds(out, RemoveSA) == [RemoveSA(0x1000, "rekeyed")]
    assert out[-1] == SasChanged()


def test_a_bootstrap_for_another_home_is_refused_and_logged():
    at = attach(home=None, pana=True)
    at.bootstrap(ready(), 1.0)
    out = at.bootstrap(ready("rekeyed", hoa="2001:db8:1::200", sa=sa(0x2000, "2001:db8:1::200")), 5.0)
    assert not kinds(out, InstallSA) and not kinds(out, Activate)
    assert events(out, "mipv6.mn.bootstrap_conflict")[0].fields["active_hoa"] == HOA
    assert at.counters["bootstrap.conflict"] == 1


def test_an_incomplete_bootstrap_installs_nothing():
    at = attach(home=None, pana=True)
    assert at.bootstrap(ready(sa=None), 1.0) == []
    assert at.bootstrap(ready(home_prefix=None), 1.0) == [] and at.home is None


def test_static_fallback_items_are_logged():
    at = attach(home=None, pana=True)
    out = at.bootstrap(ready(sources={"ha": "static", "home_prefix": "static", "hoa": "pana", "sa": "static"}), 1.0)
    assert events(out, "mipv6.mn.static_fallback")[0].fields == {"items": ["ha", "home_prefix", "sa"],
                                                                 "session_id": 7}
    assert kinds(out, InstallSA)[0].source == "static"


def test_a_static_home_is_activated_at_start():
    at = Attachment([F1], home=(HOA, HA, "2001:db8:1::0/64"))
    assert at.start(0.0) == [Activate(HOA, HA, HOME), ObserveLinks()]


# ---- the PANA restart policy ------------------------------------------------------------------

def test_a_closed_session_restarts_after_the_policys_delay_and_clears_the_token():
    at = attach(home=None, pana=True)
    out = at.bootstrap(BootstrapResult("closed", old_spi=0x1000, reason="PAA unreachable", restart_delay=4.0), 10.0)
    assert kinds(out, RemoveSA) == [RemoveSA(0x1000, "closed")]
    assert kinds(out, SetNsisToken) == [SetNsisToken(None, signalling=False)]
    assert events(out, "mipv6.mn.pana_restart")[0].fields == {"reason": "PAA unreachable", "delay_s": 4.0}
    assert kinds(out, StartTimer) == [StartTimer(RESTART_TIMER, 14.0)]
    assert at.handle_timer(RESTART_TIMER, 14.0) == [StartPana()]
    assert at.handle_timer(("other", 1), 14.0) == []


def test_a_session_never_restarted_arms_no_timer():
    at = attach(home=None, pana=True)
    out = at.bootstrap(BootstrapResult("closed", reason="terminated", restart_delay=None), 10.0)
    assert not kinds(out, StartTimer) and not events(out, "mipv6.mn.pana_restart")


def test_restarts_follow_the_restart_policy_and_stop_after_supersessions():
    """The policy the PANA client keeps decides the delay; the core arms it (the timer
    key is one, so a newer restart replaces one still waiting)."""
    at = attach(home=None, pana=True)
    policy = RestartPolicy(irt=1.0, max_superseded=3)
    armed = []
    for now in (10.0, 20.0, 30.0, 40.0):
        policy.opened(now - 5)
        d = policy.decide("terminated by PAA", TERMINATION_ADMINISTRATIVE, now)
        out = at.bootstrap(BootstrapResult("closed", reason="terminated by PAA", restart_delay=d.delay), now)
        armed.append([t.at - now for t in kinds(out, StartTimer)])
    assert armed == [[0.0], [1.0], [2.0], []]          # then it gave up


def test_stop_cancels_a_pending_restart_and_removes_the_pin():
    at = attach()
    ra(at, F1, P1, R1)
    observe(at, F1, [addr(F1, C1)])
    out = at.stop(5.0)
    assert StopTimer(RESTART_TIMER) in out and kinds(out, PinDefaultRoute) == [PinDefaultRoute(None, None)]
