"""MN, HA and CN cores wired together in memory: registration, return routability, route
optimisation, handover and deregistration, with the message trips the RFC implies."""
from __future__ import annotations

import random

import pytest

from mip6bench.mipv6.effects import (
    HomeDeregistered,
    HomeRegistered,
    InstallBinding,
    RegistrationFailed,
    RemoveBinding,
    RouteOptimizationOff,
    RouteOptimizationOn,
    TunnelDown,
    TunnelUp,
)
from mip6bench.mipv6.wire import BindingAck, BindingUpdate, CareOfTest, HomeTest, decode_mh
from tests.unit.test_mipv6_harness import CN, COA1, COA2, HA, HOA, Sim

D = 0.02   # one-way delay of every hop


def effect_log(sim, since=0.0):
    return [(round(t - since, 6), n, type(e).__name__) for t, n, e in sim.effects if t >= since]


def test_full_lifecycle():
    sim = Sim(delay=D)
    t0 = sim.now = 10.0

    # 1. attach to a foreign link: home registration (BU MN->HA, BA HA->MN: 2 trips)
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    assert effect_log(sim, t0) == [
        (D, "ha", "InstallBinding"), (D, "ha", "TunnelUp"),
        (2 * D, "mn", "HomeRegistered"), (2 * D, "mn", "TunnelUp")]
    assert sim.ha.binding(HOA).coa == COA1

    # 2. return routability + BU/BA with the CN.
    # HoTI MN->HA->CN (2), HoT CN->HA->MN (2) | CoTI, CoT direct (1+1); then BU, BA (1+1).
    t1 = sim.now
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)
    on = sim.last_effect("mn", RouteOptimizationOn)
    assert (on.cn, on.coa) == (CN, COA1)
    assert effect_log(sim, t1) == [(5 * D, "cn", "InstallBinding"), (6 * D, "mn", "RouteOptimizationOn")]
    assert sim.cn.binding(HOA).coa == COA1

    # 3. handover to a new CoA: RO off at once, home re-registration (2 trips) and, in
    # parallel with it, only a CoTI/CoT (home token still fresh; RFC 6275 lets it go while
    # the home BU is in flight); then BU/BA with the CN (2 trips more).
    t2 = sim.now
    sim.call("mn", "move_to", COA2)
    sim.run(1)
    assert effect_log(sim, t2) == [
        (0.0, "mn", "RouteOptimizationOff"),
        (D, "ha", "InstallBinding"), (D, "ha", "TunnelUp"),
        (2 * D, "mn", "HomeRegistered"), (2 * D, "mn", "TunnelUp"),
        (3 * D, "cn", "InstallBinding"), (4 * D, "mn", "RouteOptimizationOn")]
    assert sim.last_effect("mn", RouteOptimizationOn).coa == COA2
    assert sim.last_effect("ha", TunnelUp) == TunnelUp(HOA, HA, COA2)
    assert sim.last_effect("mn", TunnelUp) == TunnelUp(HOA, COA2, HA)
    assert sim.cn.binding(HOA).coa == COA2

    # 4. return home: deregistration with HA and CN.
    t3 = sim.now
    sim.call("mn", "return_home")
    sim.run(1)
    log = effect_log(sim, t3)
    assert (0.0, "mn", "TunnelDown") in log and (0.0, "mn", "RouteOptimizationOff") in log
    assert (D, "ha", "RemoveBinding") in log and (D, "ha", "TunnelDown") in log
    assert (D, "cn", "RemoveBinding") in log and (2 * D, "mn", "HomeDeregistered") in log
    assert sim.ha.bindings == {} and sim.cn.bindings == {}
    assert sim.last_effect("mn", RouteOptimizationOff).reason == "returned home"

    # Nothing failed, nothing was dropped, every message decoded.
    assert not sim.effects_of("mn", RegistrationFailed)
    for core in sim.cores.values():
        assert core.counters["drop"] == 0, core.counters
    assert not [e for _, _, e in sim.events if e.name == "mipv6.drop"]


def test_soft_state_cleans_up_after_a_vanished_mn():
    sim = Sim(delay=D)
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)
    # The MN disappears: nothing it sends arrives any more.
    sim.drop = lambda sender, tr: sender == "mn"
    sim.run(700)
    assert sim.ha.bindings == {} and sim.cn.bindings == {}
    assert sim.effects_of("ha", RemoveBinding)[-1].reason == "expired"
    assert sim.effects_of("cn", RemoveBinding)[-1].reason == "expired"
    assert sim.effects_of("ha", TunnelDown)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_lossy_network_still_converges(seed):
    sim = Sim(delay=D)
    rng = random.Random(seed)
    sim.drop = lambda sender, tr: rng.random() < 0.3     # 30 % loss on every hop
    sim.call("mn", "move_to", COA1)
    sim.run(60)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(120)
    assert sim.mn.home_registered
    if sim.mn.route_optimized(CN):
        assert sim.cn.binding(HOA).coa == COA1
    else:  # RO gave up: the MN said so, and data uses the tunnel
        assert sim.effects_of("mn", RouteOptimizationOff)
    sim.drop = None
    sim.call("mn", "move_to", COA2)
    sim.run(60)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(60)
    assert sim.ha.binding(HOA).coa == COA2 and sim.mn.route_optimized(CN)
    assert sim.cn.binding(HOA).coa == COA2


def test_every_message_on_the_wire_decodes_with_its_checksum():
    sim = Sim(delay=D)
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)
    sim.call("mn", "move_to", COA2)
    sim.run(1)
    sim.call("mn", "return_home")
    sim.run(1)
    kinds = set()
    for _, _, tr in sim.sent:
        msg = decode_mh(tr.data, tr.meta.get("hao") or tr.src, tr.meta.get("rh2") or tr.dst)
        kinds.add(type(msg))
        if "rh2" in tr.meta:
            assert isinstance(msg, BindingAck)           # RFC 6275 6.1: only BAs use a RH2
        if "hao" in tr.meta:
            assert isinstance(msg, BindingUpdate)        # and only BUs carry a HAO
    assert {BindingUpdate, BindingAck, HomeTest, CareOfTest} <= kinds


def test_effect_types_seen_in_lifecycle():
    sim = Sim(delay=D)
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)
    sim.call("mn", "return_home")
    sim.run(1)
    kinds = {type(e) for _, _, e in sim.effects}
    assert {HomeRegistered, HomeDeregistered, InstallBinding, RemoveBinding, TunnelUp, TunnelDown,
            RouteOptimizationOn, RouteOptimizationOff} <= kinds
