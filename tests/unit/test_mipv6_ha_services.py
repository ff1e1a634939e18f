"""The home agent core's services around registration, as timers and effects: DAD on
the mobile node's behalf (probe sent, defenders heard, the wait), Binding Updates held
while their SA is fetched from the PAA (bounded per SPI and in all), and SA expiry."""
from __future__ import annotations

from mip6bench.mipv6.constants import BAStatus
from mip6bench.mipv6.effects import FetchSA, RemoveBinding, RequestDAD, TunnelDown
from mip6bench.mipv6.ha import SA_EXPIRY_TIMER
from mip6bench.sansio import Event, StartTimer, StopTimer
from tests.unit.test_mipv6_ha import T0, bu_packet, effects, make_ha, make_sa, only_ba, send
from tests.unit.test_mipv6_harness import COA1, HOA, SPI


def events(actions, name):
    return [a.fields for a in actions if isinstance(a, Event) and a.name == name]


# ---- DAD on behalf ------------------------------------------------------------------------

def dad_ha(**kw):
    ha = make_ha(perform_dad=True, dad_wait=1.0, dad_timeout=2.0, **kw)
    actions = send(ha, bu_packet(seq=1))
    assert effects(actions, RequestDAD) == [RequestDAD(HOA, False)]
    assert StartTimer(("dad", HOA), T0 + 2.0) in actions    # the runtime must send by then
    return ha


def test_dad_without_a_defender_accepts_after_the_wait_from_the_probe():
    ha = dad_ha()
    assert ha.dad_probe_sent(HOA, T0 + 0.1) == [StartTimer(("dad", HOA), T0 + 1.1)]
    assert ha.dad_probe_sent(HOA, T0 + 0.2) == []                # one probe per DAD
    # Unrelated neighbour discovery on the home link changes nothing.
    assert ha.neighbor_seen("na", "2001:db8:1::77", "fe80::9", T0 + 0.5) == []
    assert ha.neighbor_seen("ns", HOA, "fe80::9", T0 + 0.5) == []   # address resolution, not DAD
    out = ha.handle_timer(("dad", HOA), T0 + 1.1)
    assert events(out, "mipv6.ha.dad_done") == [{"hoa": HOA, "ok": True, "defender": None, "ms": 1000.0}]
    assert only_ba(out)[0].status == 0 and ha.binding(HOA).coa == COA1


def test_a_defending_neighbor_advertisement_fails_dad_with_134():
    ha = dad_ha()
    ha.dad_probe_sent(HOA, T0 + 0.1)
    out = ha.neighbor_seen("na", HOA, "fe80::66", T0 + 0.4)
    assert events(out, "mipv6.ha.dad_done")[0]["defender"] == "fe80::66"
    assert StopTimer(("dad", HOA)) in out
    assert only_ba(out)[0].status == BAStatus.DAD_FAILED and ha.binding(HOA) is None
    assert ha.counters["dad.defended"] == 1
    assert ha.handle_timer(("dad", HOA), T0 + 1.1) == []           # nothing pending any more


def test_another_nodes_dad_probe_for_the_address_fails_dad():
    ha = dad_ha()
    ha.dad_probe_sent(HOA, T0)
    out = ha.neighbor_seen("ns", HOA, "::", T0 + 0.2)
    assert only_ba(out)[0].status == BAStatus.DAD_FAILED


def test_nothing_heard_before_the_probe_left_counts():
    ha = dad_ha()
    assert ha.neighbor_seen("na", HOA, "fe80::66", T0 + 0.05) == []   # not probing yet
    assert ha.pending_dad


def test_a_probe_never_sent_rejects_with_128_after_dad_timeout():
    ha = dad_ha()
    ba, _ = only_ba(ha.handle_timer(("dad", HOA), T0 + 2.0))
    assert ba.status == BAStatus.REASON_UNSPECIFIED and ha.binding(HOA) is None


def test_neighbor_reports_with_bad_addresses_are_dropped():
    ha = dad_ha()
    ha.dad_probe_sent(HOA, T0)
    assert ha.neighbor_seen("na", "not an address", "fe80::1", T0)[0].name == "mipv6.drop"


# ---- BUs held while their SA is fetched --------------------------------------------------------

def test_a_bu_with_a_known_spi_is_not_held():
    ha = make_ha()
    assert ha.hold_binding_update(SPI, "bu", T0) == (False, [])
    assert ha.hold_binding_update(None, "not a signed BU", T0) == (False, [])


def test_an_unknown_spi_is_fetched_once_and_its_bus_come_back_in_order():
    ha = make_ha()
    assert ha.hold_binding_update(0x7777, "bu1", T0) == (True, [FetchSA(0x7777)])
    assert ha.hold_binding_update(0x7777, "bu2", T0) == (True, [])   # the fetch is under way
    items, actions = ha.sa_fetched(0x7777, True, T0 + 0.01)
    assert items == ["bu1", "bu2"] and actions == [] and ha.counters["sa.fetched"] == 1
    assert ha.sa_fetched(0x7777, False, T0)[0] == []                  # nothing left
    assert ha.counters["sa.fetch_failed"] == 1


def test_held_bus_are_bounded_per_spi_in_all_and_in_spis_fetched_at_once():
    ha = make_ha(max_fetches=2, max_waiting_per_spi=2, max_waiting=3)
    assert ha.hold_binding_update(1000, "a", T0)[0] and ha.hold_binding_update(1000, "b", T0)[0]
    assert ha.hold_binding_update(1000, "c", T0) == (True, [])        # dropped: per SPI
    assert ha.counters["sa.wait_dropped"] == 1
    assert ha.hold_binding_update(1001, "d", T0) == (True, [FetchSA(1001)])
    assert ha.hold_binding_update(1001, "e", T0) == (True, [])        # dropped: 3 in all
    assert ha.counters["sa.wait_dropped"] == 2
    # A third SPI: no fetch slot, the BU goes on unfetched (the core answers 146).
    assert ha.hold_binding_update(1002, "f", T0) == (False, [])
    assert ha.counters["sa.fetch_refused"] == 1
    assert ha.fetching.total == 3 and sorted(ha.fetching.waiting) == [1000, 1001]
    ha.sa_fetched(1000, False, T0)
    assert ha.hold_binding_update(1002, "f", T0) == (True, [FetchSA(1002)])


def test_a_fetched_bu_without_its_sa_gets_146():
    ha = make_ha(make_sa(spi=SPI + 1))
    data, src, hao = bu_packet()
    held, _ = ha.hold_binding_update(SPI, (data, src, hao), T0)
    [(data, src, hao)], _ = ha.sa_fetched(SPI, False, T0 + 0.1)
    ba, _ = only_ba(send(ha, (data, src, hao), T0 + 0.1))
    assert held and ba.status == BAStatus.MIPV6_AUTH_FAIL


# ---- SA expiry --------------------------------------------------------------------------------

def test_sa_expiry_is_a_timer_that_ends_the_binding_the_sa_authorised():
    ha = make_ha(make_sa(expires_at=T0 + 100), make_sa(spi=SPI + 1, hoa="2001:db8:1::200", expires_at=T0 + 300))
    assert ha.sa_store_changed(T0) == [StartTimer(SA_EXPIRY_TIMER, T0 + 100)]
    send(ha, bu_packet(seq=1))
    assert ha.binding(HOA) is not None
    out = ha.handle_timer(SA_EXPIRY_TIMER, T0 + 100)
    assert events(out, "mipv6.sa_expired") == [{"spi": SPI, "hoa": HOA}]
    assert effects(out, RemoveBinding) and effects(out, TunnelDown) and ha.binding(HOA) is None
    assert StartTimer(SA_EXPIRY_TIMER, T0 + 300) in out                 # the next SA's expiry
    assert SPI not in ha.sa_store and ha.counters["sa.expired"] == 1
    out = ha.handle_timer(SA_EXPIRY_TIMER, T0 + 300)
    assert StopTimer(SA_EXPIRY_TIMER) in out and len(ha.sa_store) == 0


def test_a_timer_that_fires_early_expires_nothing_and_rearms():
    ha = make_ha(make_sa(expires_at=T0 + 100))
    out = ha.handle_timer(SA_EXPIRY_TIMER, T0 + 50)
    assert out == [StartTimer(SA_EXPIRY_TIMER, T0 + 100)] and SPI in ha.sa_store


def test_sa_distribution_removals_end_bindings_unless_rekeyed():
    ha = make_ha()
    send(ha, bu_packet(seq=1))
    ha.sa_store.remove(SPI)        # (SaChannelHa took it out of the store)
    out = ha.sa_distribution_changed("remove", SPI, True, HOA, "rekeyed", True, T0 + 1)
    assert not effects(out, RemoveBinding) and events(out, "mipv6.ha.sa_rekeyed")
    assert ha.binding(HOA) is not None
    out = ha.sa_distribution_changed("remove", SPI, True, HOA, "revoked", False, T0 + 2)
    assert effects(out, RemoveBinding) and out[0] == StopTimer(SA_EXPIRY_TIMER)


def test_a_removal_the_store_refused_changes_nothing():
    ha = make_ha()
    send(ha, bu_packet(seq=1))
    # The store still holds that SPI (for another HoA's claim): not removed, binding stays.
    out = ha.sa_distribution_changed("remove", SPI, False, "2001:db8:1::200", "revoked", False, T0 + 1)
    assert not effects(out, RemoveBinding) and ha.binding(HOA) is not None
