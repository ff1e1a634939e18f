"""The mobile node core's firewall traversal gate: return routability waits for the
NSIS pinholes (OpenPinholes "rr" answered by pinholes_ready), the data path switches only
once the data pinholes are open, refusals and timeouts fall back to the tunnel, and
movement closes the pinholes of the CoA left behind."""
from __future__ import annotations

from mip6bench.mipv6.effects import ClosePinholes, OpenPinholes, RouteOptimizationOff, RouteOptimizationOn
from mip6bench.mipv6.wire import CareOfTestInit, HomeTestInit
from tests.unit.test_mipv6_harness import CN, COA1, COA2, HOA
from tests.unit.test_mipv6_mn import registered_sim, sent_by

TRAVERSAL = {"mn_kwargs": {"firewall_traversal": True, "traversal_timeout": 5.0}}


def opened(sim, phase):
    return [e for e in sim.effects_of("mn", OpenPinholes) if e.phase == phase]


def test_rr_waits_for_the_rr_pinholes():
    sim = registered_sim(**TRAVERSAL)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(3)
    [ask] = opened(sim, "rr")
    assert (ask.cn, ask.hoa, ask.coa) == (CN, HOA, COA1)
    assert not sent_by(sim, "mn", HomeTestInit) and not sent_by(sim, "mn", CareOfTestInit)
    granted_at = sim.now
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    sim.run(1)
    assert sent_by(sim, "mn", HomeTestInit)[0][0] == granted_at
    assert sent_by(sim, "mn", CareOfTestInit)[0][0] == granted_at
    # The CN accepted the BU: the data pinholes are asked for, the data path waits.
    [data] = opened(sim, "data")
    assert data.coa == COA1
    assert not sim.effects_of("mn", RouteOptimizationOn) and not sim.mn.route_optimized(CN)
    sim.call("mn", "pinholes_ready", CN, COA1, "data", True, "")
    [on] = sim.effects_of("mn", RouteOptimizationOn)
    assert on.coa == COA1 and sim.mn.route_optimized(CN)


def test_refused_rr_pinholes_fall_back_to_the_tunnel_without_rr_and_are_asked_again():
    sim = registered_sim(**TRAVERSAL)
    sim.call("mn", "start_route_optimization", CN)
    refused_at = sim.now
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", False, "authorization failed")
    sim.run(1)
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert "firewall traversal failed: authorization failed" in off.reason
    assert not sent_by(sim, "mn", HomeTestInit)
    assert sim.mn.counters["traversal.refused"] == 1
    # The refused round's sessions for the CoA are torn down (not kept for a move): a
    # next try signals fresh ones, which late answers of this round cannot fail.
    [close] = sim.effects_of("mn", ClosePinholes)
    assert (close.cn, close.coa, close.moving) == (CN, COA1, False)
    # RO is still wanted: the pinholes are asked for again after the back-off (a refused
    # session is signalled under a fresh session ID then), and once granted RR runs.
    sim.run(1)
    first, again = opened(sim, "rr")
    assert again.coa == COA1 and again_at(sim, again) == refused_at + 1.5
    assert sim.mn.counters["ro.retry"] == 1
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    sim.run(1)
    assert sent_by(sim, "mn", HomeTestInit) and sent_by(sim, "mn", CareOfTestInit)


def again_at(sim, effect) -> float:
    return next(t for t, n, e in sim.effects if e is effect)


def rr_asks(forever: bool) -> tuple[list[float], object]:
    sim = registered_sim(mn_kwargs={**TRAVERSAL["mn_kwargs"], "retransmit_forever": forever})
    sim.call("mn", "start_route_optimization", CN)
    sim.run(200)                   # nobody ever answers: each round times out after 5 s
    asks = [again_at(sim, e) for e in opened(sim, "rr")]
    return [round(b - a, 6) for a, b in zip(asks, asks[1:])], sim


def test_rr_retries_back_off_up_to_the_maximum_then_stop_unless_forever():
    gaps, sim = rr_asks(forever=False)
    assert gaps == [6.5, 8.0, 11.0, 17.0, 29.0]      # 5 s timeout + 1.5, 3, 6, 12, 24
    assert sim.mn.counters["ro.retry_exhausted"] == 1
    gaps, sim = rr_asks(forever=True)                 # the MN's default
    assert gaps[:7] == [6.5, 8.0, 11.0, 17.0, 29.0, 37.0, 37.0]
    assert sim.mn.counters["ro.retry_exhausted"] == 0


def test_unanswered_traversal_times_out():
    sim = registered_sim(**TRAVERSAL)
    sim.call("mn", "start_route_optimization", CN)
    start = sim.now
    sim.run(6)
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert off.reason == "firewall traversal timed out"
    assert [t for t, n, e in sim.effects if isinstance(e, RouteOptimizationOff)][0] == start + 5.0
    # A late answer changes nothing.
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    assert not sent_by(sim, "mn", HomeTestInit)
    assert sim.mn.counters["traversal.stale_answer"] == 1


def ro_traversal_sim():
    """Registered at COA1 and route-optimised with the CN through the firewall."""
    sim = registered_sim(**TRAVERSAL)
    sim.call("mn", "start_route_optimization", CN)
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    sim.run(1)
    sim.call("mn", "pinholes_ready", CN, COA1, "data", True, "")
    assert sim.mn.route_optimized(CN)
    return sim


def test_movement_closes_old_pinholes_and_signals_for_the_new_coa():
    sim = ro_traversal_sim()
    sim.call("mn", "move_to", COA2)
    [close] = sim.effects_of("mn", ClosePinholes)
    assert (close.cn, close.coa) == (CN, COA1)
    sim.run(2)                                  # new home registration, then traversal again
    asks = opened(sim, "rr")
    assert [a.coa for a in asks] == [COA1, COA2]
    before = len(sent_by(sim, "mn", CareOfTestInit))
    sim.call("mn", "pinholes_ready", CN, COA2, "rr", True, "")
    sim.run(1)
    coti = sent_by(sim, "mn", CareOfTestInit)
    assert len(coti) == before + 1 and coti[-1][1].src == COA2


def test_answer_for_an_old_coa_is_ignored():
    sim = registered_sim(**TRAVERSAL)
    sim.call("mn", "start_route_optimization", CN)
    sim.call("mn", "move_to", COA2)
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    assert sim.mn.counters["traversal.stale_answer"] == 1
    assert not sent_by(sim, "mn", CareOfTestInit)


def test_stop_closes_coa_and_home_address_sessions():
    sim = registered_sim(**TRAVERSAL)
    sim.call("mn", "start_route_optimization", CN)
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    sim.run(1)
    sim.call("mn", "stop_route_optimization", CN)
    closes = sim.effects_of("mn", ClosePinholes)
    assert sorted(c.coa for c in closes) == sorted([COA1, HOA])


def test_without_traversal_rr_starts_at_once():
    sim = registered_sim()
    sim.call("mn", "start_route_optimization", CN)
    assert sent_by(sim, "mn", HomeTestInit) and not sim.effects_of("mn", OpenPinholes)


# ------------------------------------------------------------ MN behind a foreign firewall
from mip6bench.mipv6.effects import HomeRegistered  # noqa: E402
from tests.unit.test_mipv6_harness import HA  # noqa: E402

FOREIGN = {"mn_kwargs": {"foreign_firewall": True, "traversal_timeout": 5.0}}
BOTH = {"mn_kwargs": {"foreign_firewall": True, "firewall_traversal": True,
                      "traversal_timeout": 5.0}}


def test_a_new_coa_asks_for_the_ha_tunnel_with_the_bu_and_registration_is_not_held():
    sim = registered_sim(**FOREIGN)
    [ask] = opened(sim, "inbound")
    assert (ask.cn, ask.hoa, ask.coa) == (HA, HOA, COA1)
    # the BA alone completed the registration (the trade-off: no gate on the EXT)
    assert sim.effects_of("mn", HomeRegistered) and sim.mn.inbound_coa is None
    sim.call("mn", "pinholes_ready", HA, COA1, "inbound", True, "")
    assert sim.mn.inbound_coa == COA1 and sim.mn.counters["inbound.ready"] == 1
    # moving: the old CoA's session is kept (moving) and signalled again for the new one
    sim.call("mn", "move_to", COA2)
    [close] = [c for c in sim.effects_of("mn", ClosePinholes) if c.cn == HA]
    assert close.coa == COA1 and close.moving
    assert [a.coa for a in opened(sim, "inbound")] == [COA1, COA2]
    assert sim.mn.inbound_coa is None
    # an answer for the old CoA changes nothing
    sim.call("mn", "pinholes_ready", HA, COA1, "inbound", True, "")
    assert sim.mn.inbound_coa is None and sim.mn.counters["traversal.stale_answer"] == 1
    # returning home tears it down
    sim.call("mn", "return_home")
    [home] = [c for c in sim.effects_of("mn", ClosePinholes) if c.cn == HA and not c.moving]
    assert home.coa == COA2


def test_without_the_parameter_no_inbound_pinholes():
    sim = registered_sim(**TRAVERSAL)
    assert opened(sim, "inbound") == []


def test_ro_waits_for_the_cn_packets_pinhole_in_the_own_firewall():
    sim = registered_sim(**FOREIGN)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)                                   # no CN firewall: RR at once, then the BU
    [ask] = opened(sim, "inbound_ro")
    assert (ask.cn, ask.coa) == (CN, COA1) and not sim.mn.route_optimized(CN)
    sim.call("mn", "pinholes_ready", CN, COA1, "inbound_ro", True, "")
    assert sim.mn.route_optimized(CN)


def test_both_firewalls_make_one_data_round_and_a_refusal_falls_back():
    sim = registered_sim(**BOTH)
    sim.call("mn", "start_route_optimization", CN)
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    sim.run(1)
    [ask] = opened(sim, "data_inbound")
    assert ask.coa == COA1 and opened(sim, "data") == []
    sim.call("mn", "pinholes_ready", CN, COA1, "data_inbound", False, "EXT refused")
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert "EXT refused" in off.reason and not sim.mn.route_optimized(CN)


def test_an_unanswered_rr_round_keeps_its_sessions_and_is_asked_again():
    """The initiator gave a session up for want of an answer (nobody refused): the
    round's sessions are not torn down (the next round signals only what went
    unanswered, under the same session ID), RO falls back and is tried again."""
    sim = registered_sim(**TRAVERSAL)
    sim.call("mn", "start_route_optimization", CN)
    failed_at = sim.now
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", False, "no response")
    sim.run(1)
    assert not sim.effects_of("mn", ClosePinholes)
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert off.reason == "firewall traversal failed: no response"
    assert sim.mn.counters["traversal.unanswered"] == 1 and sim.mn.counters["traversal.refused"] == 0
    sim.run(1)
    first, again = opened(sim, "rr")
    assert again.coa == COA1 and again_at(sim, again) == failed_at + 1.5
    sim.call("mn", "pinholes_ready", CN, COA1, "rr", True, "")
    sim.run(1)
    assert sent_by(sim, "mn", HomeTestInit) and sent_by(sim, "mn", CareOfTestInit)
