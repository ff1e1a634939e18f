"""The mobile node core's sequencing after a handover: what may legally run in parallel
with the home registration does (RFC 6275 11.6.1, 5.2.5, 10.4.5). The CoA's NATFW
sessions and then the CoTI go out with the home BU; the HoTI (reverse-tunnelled through
the HA) and the BU to the CN wait for the home BA."""
from __future__ import annotations

from pytest import approx

from mip6bench.mipv6.effects import OpenPinholes, RouteOptimizationOff, RouteOptimizationOn
from mip6bench.mipv6.wire import BindingUpdate, CareOfTestInit, HomeTestInit
from tests.unit.test_mipv6_harness import CN, COA1, COA2, HA, HOA, Sim
from tests.unit.test_mipv6_mn import T0, ro_sim, sent_by
from tests.unit.test_mipv6_traversal import TRAVERSAL, ro_traversal_sim

def times(sim, kind, dst=None, since=0.0, src=None):
    return [t for t, tr, _ in sent_by(sim, "mn", kind, since)
            if (dst is None or tr.dst == dst) and (src is None or tr.src == src)]


def home_ba_at(sim, since):
    """When the MN received the BA for its home BU (the HA's BA send time + delay)."""
    return [t + sim.delay for t, n, tr in sim.sent if n == "ha" and t >= since
            and tr.dst in (COA1, COA2)]


def lose_first_home_bu(sim):
    """Drop the next BU to the HA: its BA comes only after the retransmission (1 s)."""
    lost = []

    def drop(sender, tr):
        if sender == "mn" and tr.dst == HA and not lost and tr.meta.get("via") != "tunnel":
            lost.append(tr)
            return True
        return False
    sim.drop = drop
    return lost


def test_coti_goes_out_with_the_home_bu_and_the_cn_bu_waits_for_the_home_ba():
    sim = ro_sim()
    t = sim.now
    lost = lose_first_home_bu(sim)
    sim.call("mn", "move_to", COA2)
    assert lost                                              # the home BU left, and is lost
    assert times(sim, CareOfTestInit, CN, t, src=COA2) == [t]   # the CoTI with it, not after the BA
    sim.run(0.5)                                             # CoT back long ago; no home BA yet
    assert sim.mn.correspondents[CN].care_of_token is not None
    assert times(sim, BindingUpdate, CN, t) == []            # the CN is not bound before the HA
    assert times(sim, HomeTestInit, since=t) == []           # home token fresh: no HoTI at all
    sim.run(1.5)
    [ba] = home_ba_at(sim, t)
    assert times(sim, BindingUpdate, CN, t) == approx([ba])          # at once with the home BA
    assert sim.mn.route_optimized(CN) and sim.cn.binding(HOA).coa == COA2


def test_a_stale_home_token_hoti_waits_for_the_home_binding():
    sim = ro_sim()
    sim.run_until(T0 + 250)                                  # tokens older than MAX_TOKEN_LIFETIME
    t = sim.now
    lose_first_home_bu(sim)
    sim.call("mn", "move_to", COA2)
    assert times(sim, CareOfTestInit, CN, t) == [t]
    # RFC 6275 10.4.5: the HA forwards a reverse-tunnelled packet only from the CoA it has
    # bound; the HoTI waits for the BA.
    sim.run(0.5)
    assert times(sim, HomeTestInit, since=t) == []
    sim.run(1.5)
    [ba] = home_ba_at(sim, t)
    assert times(sim, HomeTestInit, since=t) == approx([ba])
    assert sim.mn.route_optimized(CN) and sim.mn.counters["rr.retransmit"] == 0


def test_the_coa_pinholes_are_asked_for_with_the_home_bu_before_the_data_path_change():
    sim = ro_traversal_sim()
    t = sim.now
    actions = sim.mn.move_to(COA2, sim.now)
    kinds = [type(a).__name__ for a in actions]
    ask = next(i for i, a in enumerate(actions) if isinstance(a, OpenPinholes) and a.phase == "rr")
    assert actions[ask].coa == COA2
    # Effects apply in order: the signalling for the new CoA does not wait for the data
    # path's fallback (a kernel route change it does not depend on).
    assert ask < kinds.index("RouteOptimizationOff")
    bu = next(i for i, a in enumerate(actions) if type(a).__name__ == "Transmit" and a.dst == HA)
    assert bu < ask                                          # the home BU leaves first
    sim.apply("mn", actions)
    assert [e for e in sim.effects_of("mn", RouteOptimizationOff)][-1].reason.startswith("movement")
    # Granted before the home BA: the CoTI goes at once, the BU to the CN after the BA.
    sim.call("mn", "pinholes_ready", CN, COA2, "rr", True, "")
    assert times(sim, CareOfTestInit, CN, t) == [t]
    assert times(sim, BindingUpdate, CN, t) == []
    sim.run(1)
    assert times(sim, BindingUpdate, CN, t) == approx([t + 2 * sim.delay])   # home BA, CoT both in at 2 trips
    sim.call("mn", "pinholes_ready", CN, COA2, "data", True, "")
    assert sim.effects_of("mn", RouteOptimizationOn)[-1].coa == COA2


def test_pinholes_granted_after_the_home_ba_start_rr_then():
    sim = ro_traversal_sim()
    t = sim.now
    sim.call("mn", "move_to", COA2)
    sim.run(1)                                               # home BA in; pinholes still pending
    assert sim.mn.home.registered_coa == COA2
    assert times(sim, CareOfTestInit, CN, t) == []
    granted = sim.now
    sim.call("mn", "pinholes_ready", CN, COA2, "rr", True, "")
    assert times(sim, CareOfTestInit, CN, t) == [granted]
    sim.run(1)
    assert times(sim, BindingUpdate, CN, t) == approx([granted + 2 * sim.delay])


def test_first_registration_still_waits_for_the_home_ba():
    """No binding at the HA yet (the first registration): the home address's sessions
    would be signalled through a tunnel the HA does not forward yet; RR after the BA."""
    sim = Sim(**TRAVERSAL)
    sim.now = T0
    sim.call("mn", "start_route_optimization", CN)          # wanted before any registration
    sim.call("mn", "move_to", COA1)
    assert not [e for e in sim.effects_of("mn", OpenPinholes) if e.phase == "rr"]
    sim.run(1)
    [ask] = [e for e in sim.effects_of("mn", OpenPinholes) if e.phase == "rr"]
    assert ask.coa == COA1 and sim.mn.home_registered


def test_a_refused_early_traversal_falls_back_and_retries_after_the_next_registration():
    sim = ro_traversal_sim()
    sim.call("mn", "move_to", COA2)
    sim.call("mn", "pinholes_ready", CN, COA2, "rr", False, "authorization failed")
    assert sim.effects_of("mn", RouteOptimizationOff)[-1].reason.endswith("authorization failed")
    assert sim.mn.correspondents[CN].wanted and sim.mn.correspondents[CN].state == "idle"
    sim.run(1)                                               # the home BA: RO wanted, tried again
    asks = [e.coa for e in sim.effects_of("mn", OpenPinholes) if e.phase == "rr"]
    assert asks == [COA1, COA2, COA2]


def test_a_move_during_rr_keeps_the_new_rounds_timers():
    """The timers of the round a move cuts short are stopped before the new round starts
    its own (a StopTimer after the new StartTimer of the same key would cancel it, and a
    lost CoT would never be asked for again)."""
    from mip6bench.mipv6.wire import CareOfTest, decode_mh
    from mip6bench.sansio import StartTimer, StopTimer

    def lose_cots(sender, tr):
        return sender == "cn" and isinstance(decode_mh(tr.data, tr.src, tr.dst), CareOfTest)

    sim = ro_sim()
    sim.drop = lose_cots
    sim.call("mn", "move_to", COA2)
    sim.run(0.5)                               # the CoTI for COA2 outstanding, its CoT lost
    assert "coti" in sim.mn.correspondents[CN].timers
    actions = sim.mn.move_to(COA1, sim.now)    # back, mid-test
    started = {a.key: i for i, a in enumerate(actions) if isinstance(a, StartTimer)}
    assert ("cn", CN, "coti") in started
    for i, a in enumerate(actions):
        if isinstance(a, StopTimer) and a.key in started:
            assert i < started[a.key], f"{a.key} stopped after it was started again"
    t = sim.now
    sim.apply("mn", actions)
    sim.run(0.5)
    sim.drop = None                            # the first CoT for COA1 was lost too
    sim.run(2)
    assert times(sim, CareOfTestInit, CN, t) == approx([t, t + 1.0])   # retransmitted after 1 s
    assert sim.mn.route_optimized(CN) and sim.cn.binding(HOA).coa == COA1
