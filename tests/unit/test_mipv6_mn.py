"""Mobile node core: home registration with RFC 4285, retransmission, BA statuses, return
routability, route optimisation, handover, Binding Errors, BRR and returning home."""
from __future__ import annotations

import pytest

from mip6bench.mipv6.constants import ba_status_name
from mip6bench.mipv6.crypto import encode_with_bad, encode_with_mn_ha, ntp_seconds, ntp_timestamp, verify_mn_ha
from mip6bench.mipv6.effects import (
    HomeDeregistered,
    HomeRegistered,
    RegistrationFailed,
    RouteOptimizationOff,
    RouteOptimizationOn,
    TunnelDown,
    TunnelUp,
)
from mip6bench.mipv6.mn import MobileNode
from mip6bench.mipv6.sa import MobilitySA, SAStore
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    MobileNodeIdentifier,
    NonceIndices,
    ReplayProtection,
    decode_mh,
    encode_mh,
)
from mip6bench.sansio import Transmit
from tests.unit.test_mipv6_harness import CN, COA1, COA2, HA, HOA, NAI, SPI, Sim, make_sa

T0 = 100.0


def sent_by(sim, name, kind, since=0.0):
    out = []
    for t, n, tr in sim.sent:
        if n != name or t < since:
            continue
        msg = decode_mh(tr.data, tr.meta.get("hao") or tr.src, tr.meta.get("rh2") or tr.dst)
        if isinstance(msg, kind):
            out.append((t, tr, msg))
    return out


def registered_sim(**kw) -> Sim:
    sim = Sim(**kw)
    sim.now = T0
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    assert sim.mn.home_registered
    return sim


def ro_sim(**kw) -> Sim:
    sim = registered_sim(**kw)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)
    assert sim.mn.route_optimized(CN)
    return sim


# ------------------------------------------------------------------ home registration

def test_home_binding_update_is_rfc4285_protected():
    sim = Sim()
    sim.now = T0
    sim.drop = lambda sender, tr: True
    sim.call("mn", "move_to", COA1)
    [(t, tr, bu)] = sent_by(sim, "mn", BindingUpdate)
    assert (tr.src, tr.dst, tr.meta) == (COA1, HA, {"via": "direct", "hao": HOA})
    assert bu.home_registration and bu.ack and bu.lifetime == 600
    assert [type(o) for o in bu.options] == [AlternateCareOfAddress, MobileNodeIdentifier,
                                             ReplayProtection, Authentication]
    assert bu.find(AlternateCareOfAddress).address == COA1
    assert bu.find(MobileNodeIdentifier).nai == NAI
    assert bu.find(ReplayProtection).timestamp == ntp_timestamp(T0)
    assert verify_mn_ha(tr.data, make_sa(), COA1, HOA)
    assert sim.timers[("mn", ("home", "retransmit"))] == T0 + 1.5     # InitialBindackTimeoutFirstReg


def test_first_registration_backoff_failure_report_and_forever():
    sim = Sim()
    sim.now = T0
    sim.drop = lambda sender, tr: True
    sim.call("mn", "move_to", COA1)
    sim.run(200)
    bus = sent_by(sim, "mn", BindingUpdate)
    gaps = [round(b[0] - a[0], 6) for a, b in zip(bus, bus[1:])]
    assert gaps[:7] == [1.5, 3.0, 6.0, 12.0, 24.0, 32.0, 32.0]
    seqs = [bu.seq for _, _, bu in bus]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:]))
    stamps = [bu.find(ReplayProtection).timestamp for _, _, bu in bus]
    assert stamps == sorted(set(stamps))
    failures = sim.effects_of("mn", RegistrationFailed)
    assert len(failures) == 1 and failures[0].status is None and "no binding acknowledgement" in failures[0].reason
    assert [t for t, n, e in sim.effects if isinstance(e, RegistrationFailed)] == [pytest.approx(T0 + 78.5)]


def test_retransmission_can_stop_after_failure():
    sim = Sim(mn_kwargs={"retransmit_forever": False})
    sim.now = T0
    sim.drop = lambda sender, tr: True
    sim.call("mn", "move_to", COA1)
    sim.run(500)
    assert len(sent_by(sim, "mn", BindingUpdate)) == 6 and not sim.timers


def test_lost_ba_is_recovered_by_retransmission():
    sim = Sim()
    sim.now = T0
    lost = []
    sim.drop = lambda sender, tr: sender == "ha" and not lost and not lost.append(tr)
    sim.call("mn", "move_to", COA1)
    sim.run(3)
    assert sim.mn.home_registered and len(sent_by(sim, "mn", BindingUpdate)) == 2
    assert sim.ha.binding(HOA).seq == sent_by(sim, "mn", BindingUpdate)[-1][2].seq


def test_registration_effects_and_refresh_timing():
    sim = registered_sim()
    [reg] = sim.effects_of("mn", HomeRegistered)
    assert (reg.ha, reg.hoa, reg.coa, reg.lifetime) == (HA, HOA, COA1, 600)
    assert reg.expires_at == pytest.approx(T0 + 600)     # counted from when the BU was sent
    assert sim.effects_of("mn", TunnelUp) == [TunnelUp(HOA, COA1, HA)]
    assert sim.timers[("mn", ("home", "refresh"))] == pytest.approx(T0 + 510)   # 85 %
    sim.run_until(T0 + 511)
    assert len(sim.effects_of("mn", HomeRegistered)) == 2
    assert len(sim.effects_of("mn", TunnelUp)) == 1     # same CoA: no new tunnel
    [_, (t, tr, bu)] = sent_by(sim, "mn", BindingUpdate)
    assert t == pytest.approx(T0 + 510)
    sim.run(5000)
    assert not sim.effects_of("mn", RegistrationFailed) and sim.mn.home_registered


def test_ha_refresh_advice_shortens_the_refresh():
    sim = registered_sim(ha_kwargs={"refresh_advice": 100})
    assert sim.timers[("mn", ("home", "refresh"))] == pytest.approx(T0 + 100)


def test_lifetime_granted_by_ha_is_used():
    sim = registered_sim(ha_kwargs={"max_lifetime": 200}, mn_kwargs={"home_lifetime": 1000})
    assert sim.effects_of("mn", HomeRegistered)[0].lifetime == 200
    assert sim.timers[("mn", ("home", "refresh"))] == pytest.approx(T0 + 170)


def test_135_resynchronises_the_sequence_number():
    sim = Sim()
    sim.now = T0
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    # The MN restarts and forgets its sequence number (fresh core, same SA store).
    sim.mn = sim.cores["mn"] = MobileNode(HOA, HA, sim.sa_mn, random_bytes=lambda n: bytes(n))
    sim.mn.home.seq = (sim.ha.binding(HOA).seq - 100) & 0xFFFF
    sim.call("mn", "move_to", COA2)
    sim.run(1)
    assert sim.mn.home_registered and sim.ha.binding(HOA).coa == COA2
    assert sim.mn.counters["home.resync.sequence"] == 1


def test_135_resync_gives_up_after_max_resyncs():
    mn = MobileNode(HOA, HA, SAStore([make_sa()]), max_resyncs=1, random_bytes=lambda n: bytes(n))
    actions = mn.move_to(COA1, T0)
    for attempt in range(2):
        bu = _bu_sent(actions)
        ba = BindingAck(135, 4000, 0, options=(bu.find(ReplayProtection),))
        actions = mn.receive(encode_with_mn_ha(ba, make_sa(), COA1, HOA, HA, HOA), HA, COA1, T0, rh2=HOA)
    failed = [a for a in actions if isinstance(a, RegistrationFailed)]
    assert failed and failed[0].status == 135 and mn.home.pending is None


def _bu_sent(actions):
    tr = [a for a in actions if isinstance(a, Transmit)][0]
    return decode_mh(tr.data)


def test_144_resynchronises_the_clock():
    sim = Sim(ha_kwargs={"clock_offset": 5000.0})
    sim.now = T0
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    assert sim.mn.home_registered and sim.mn.counters["home.resync.timestamp"] == 1
    bus = sent_by(sim, "mn", BindingUpdate)
    assert len(bus) == 2
    assert abs(ntp_seconds(bus[1][2].find(ReplayProtection).timestamp) - (T0 + 5000)) < 2
    assert sim.ha.counters["bu.rejected.144"] == 1


def test_144_resync_can_move_the_clock_backwards():
    sim = Sim(mn_kwargs={"clock_offset": 3600.0})
    sim.now = T0
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    assert sim.mn.home_registered and sim.mn.clock_offset == pytest.approx(0, abs=1)


@pytest.mark.parametrize("status", [129, 130, 132, 133, 134, 146])
def test_other_rejections_report_failure(status):
    mn = MobileNode(HOA, HA, SAStore([make_sa()]))
    bu = _bu_sent(mn.move_to(COA1, T0))
    ba = BindingAck(status, bu.seq, 0, options=(bu.find(ReplayProtection),))
    actions = mn.receive(encode_with_mn_ha(ba, make_sa(), COA1, HOA, HA, HOA), HA, COA1, T0 + 0.1, rh2=HOA)
    [failed] = [a for a in actions if isinstance(a, RegistrationFailed)]
    assert failed.status == status and ba_status_name(status) in failed.reason
    assert mn.home.pending is None and not mn.home_registered


def test_unauthenticated_or_mismatched_bas_are_dropped():
    sa = make_sa()
    mn = MobileNode(HOA, HA, SAStore([sa]))
    bu = _bu_sent(mn.move_to(COA1, T0))
    ts = bu.find(ReplayProtection)
    cases = {
        "unsigned": encode_mh(BindingAck(0, bu.seq, 600, options=(ts,)), HA, HOA),
        "wrong key": encode_with_mn_ha(BindingAck(0, bu.seq, 600, options=(ts,)),
                                       MobilitySA(spi=SPI, key=b"x" * 16), COA1, HOA, HA, HOA),
        "wrong seq": encode_with_mn_ha(BindingAck(0, (bu.seq + 1) & 0xFFFF, 600, options=(ts,)), sa, COA1, HOA, HA, HOA),
        "wrong timestamp": encode_with_mn_ha(BindingAck(0, bu.seq, 600, options=(ReplayProtection(ts.timestamp + 1),)),
                                             sa, COA1, HOA, HA, HOA),
        "no timestamp": encode_with_mn_ha(BindingAck(0, bu.seq, 600), sa, COA1, HOA, HA, HOA),
        "signed for another coa": encode_with_mn_ha(BindingAck(0, bu.seq, 600, options=(ts,)), sa, COA2, HOA, HA, HOA),
    }
    for name, data in cases.items():
        actions = mn.receive(data, HA, COA1, T0 + 0.1, rh2=HOA)
        assert [a.name for a in actions] == ["mipv6.drop"], name
    assert not mn.home_registered and mn.counters["drop"] == len(cases)
    good = encode_with_mn_ha(BindingAck(0, bu.seq, 600, options=(ts,)), sa, COA1, HOA, HA, HOA)
    assert any(isinstance(a, HomeRegistered) for a in mn.receive(good, HA, COA1, T0 + 0.1, rh2=HOA))
    assert mn.receive(good, HA, COA1, T0 + 0.2, rh2=HOA)[0].fields["reason"] == "ba_without_pending_home_bu"


def test_no_security_association_then_sa_arrives():
    store = SAStore()
    mn = MobileNode(HOA, HA, store)
    actions = mn.move_to(COA1, T0)
    [failed] = [a for a in actions if isinstance(a, RegistrationFailed)]
    assert "no security association" in failed.reason and not [a for a in actions if isinstance(a, Transmit)]
    store.add(make_sa(spi=0x2222))                 # e.g. PANA delivered the SA
    bu = _bu_sent(mn.register(T0 + 5))
    assert bu.find(Authentication).spi == 0x2222


def test_rekeyed_sa_is_used_for_the_next_message():
    sim = registered_sim()
    new = make_sa(key=b"N" * 16)
    sim.sa_mn.replace(new)
    sim.sa_ha.replace(new)
    sim.run_until(T0 + 520)
    [_, (_, tr, _)] = sent_by(sim, "mn", BindingUpdate)
    assert verify_mn_ha(tr.data, new, COA1, HOA) and len(sim.effects_of("mn", HomeRegistered)) == 2


def test_sequence_replay_mode_sends_no_timestamp():
    sim = registered_sim(sa=make_sa(replay="sequence"))
    assert all(bu.find(ReplayProtection) is None for _, _, bu in sent_by(sim, "mn", BindingUpdate))


def test_home_binding_expiry_without_refresh():
    sim = registered_sim()
    sim.drop = lambda sender, tr: True
    sim.run_until(T0 + 601)
    assert TunnelDown(HOA, "home binding expired") in sim.effects_of("mn", TunnelDown)
    assert any(e.reason == "home binding expired" for e in sim.effects_of("mn", RegistrationFailed))
    assert not sim.mn.home_registered
    sim.drop = None
    sim.run(40)
    assert sim.mn.home_registered and len(sim.effects_of("mn", TunnelUp)) == 2


def test_brr_from_ha_triggers_reregistration():
    sim = registered_sim(ha_kwargs={"brr_lead": 550})
    sim.run_until(T0 + 51)
    assert len(sent_by(sim, "ha", BindingRefreshRequest)) == 1
    assert len(sim.effects_of("mn", HomeRegistered)) == 2 and sim.mn.counters["brr.home"] == 1
    mn = MobileNode(HOA, HA, SAStore([make_sa()]))
    brr = encode_mh(BindingRefreshRequest(), HA, HOA)
    assert mn.receive(brr, HA, HOA, T0)[0].fields["reason"] == "brr_without_home_registration"


def test_binding_error_from_ha_triggers_reregistration():
    sim = registered_sim()
    be = encode_mh(BindingError(1, HOA), HA, COA1)
    sim.apply("mn", sim.mn.receive(be, HA, COA1, sim.now))
    sim.run(1)
    assert len(sim.effects_of("mn", HomeRegistered)) == 2


# ------------------------------------------------------------------ route optimisation

def test_return_routability_messages_and_paths():
    sim = registered_sim()
    sim.drop = lambda sender, tr: True
    sim.call("mn", "start_route_optimization", CN)
    [(_, hoti_tr, hoti)] = sent_by(sim, "mn", HomeTestInit)
    [(_, coti_tr, coti)] = sent_by(sim, "mn", CareOfTestInit)
    assert (hoti_tr.src, hoti_tr.dst, hoti_tr.meta) == (HOA, CN, {"via": "tunnel"})
    assert (coti_tr.src, coti_tr.dst, coti_tr.meta) == (COA1, CN, {"via": "direct"})
    assert hoti.cookie != coti.cookie


def test_route_optimization_established():
    sim = ro_sim()
    [on] = sim.effects_of("mn", RouteOptimizationOn)
    assert (on.cn, on.hoa, on.coa, on.lifetime) == (CN, HOA, COA1, 420)
    [(_, tr, bu)] = sent_by(sim, "mn", BindingUpdate, since=T0 + 1)
    assert (tr.src, tr.dst, tr.meta) == (COA1, CN, {"via": "direct", "hao": HOA})
    assert not bu.home_registration and bu.ack and bu.find(NonceIndices) is not None
    assert sim.cn.binding(HOA).coa == COA1


def test_route_optimization_waits_for_home_registration():
    sim = Sim()
    sim.now = T0
    sim.call("mn", "start_route_optimization", CN)          # at home: deferred
    sim.call("mn", "move_to", COA1)
    sim.run(2)
    assert sim.mn.route_optimized(CN)
    hoti_time = sent_by(sim, "mn", HomeTestInit)[0][0]
    registered_time = [t for t, n, e in sim.effects if isinstance(e, HomeRegistered)][0]
    assert hoti_time == registered_time > T0


def test_rr_retransmission_then_fallback_to_tunnel():
    sim = registered_sim()
    sim.drop = lambda sender, tr: sender == "mn" and tr.meta.get("via") == "tunnel"   # HoTIs lost
    sim.call("mn", "start_route_optimization", CN)
    sim.run(60)
    hotis = sent_by(sim, "mn", HomeTestInit)
    gaps = [round(b[0] - a[0], 6) for a, b in zip(hotis, hotis[1:])]
    assert gaps[:4] == [1.0, 2.0, 4.0, 8.0]                 # rr_max_attempts 5
    off_at, off = next((t, e) for t, n, e in sim.effects if isinstance(e, RouteOptimizationOff))
    assert off.cn == CN and "no home test" in off.reason
    assert off_at == hotis[4][0] + 16.0
    # RO is still wanted: a new round after the back-off, with a fresh cookie.
    assert hotis[5][0] == off_at + 1.5 and hotis[5][2].cookie != hotis[0][2].cookie
    assert sim.mn.counters["ro.retry"] >= 1
    assert not sim.mn.route_optimized(CN) and not sim.effects_of("mn", RouteOptimizationOn)


def test_cn_bu_retransmission_then_fallback():
    sim = registered_sim()
    sim.drop = lambda sender, tr: sender == "cn" and isinstance(decode_mh(tr.data), BindingAck)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(40)
    bus = sent_by(sim, "mn", BindingUpdate, since=T0 + 1)
    off_at, off = next((t, e) for t, n, e in sim.effects if isinstance(e, RouteOptimizationOff))
    assert len([b for b in bus if b[0] < off_at]) == 5       # rr_max_attempts
    assert "no binding acknowledgement from the correspondent" in off.reason
    # Still wanted: a new return routability round after the back-off, then another BU.
    assert sim.mn.counters["ro.retry"] == 1
    assert [b for b in bus if b[0] > off_at][0][0] >= off_at + 1.5


def test_cn_without_ack_flag_turns_ro_on_at_once():
    sim = registered_sim(mn_kwargs={"cn_ack": False})
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)
    assert sim.mn.route_optimized(CN) and sim.cn.binding(HOA) is not None
    assert not sent_by(sim, "cn", BindingAck)


def test_ro_lifetime_bounded_by_home_registration():
    sim = registered_sim(mn_kwargs={"home_lifetime": 300})
    sim.call("mn", "start_route_optimization", CN)
    sim.run(1)
    assert sim.effects_of("mn", RouteOptimizationOn)[0].lifetime <= 300 - 1


def test_ro_refresh_keeps_ro_on():
    sim = ro_sim()
    sim.run_until(T0 + 2000)
    ons = sim.effects_of("mn", RouteOptimizationOn)
    assert len(ons) >= 4 and not sim.effects_of("mn", RouteOptimizationOff)
    assert sim.mn.counters["ro.refresh"] >= 3 and sim.mn.route_optimized(CN)


def test_ro_expires_when_refresh_fails():
    sim = ro_sim()
    sim.drop = lambda sender, tr: sender == "cn"
    sim.run_until(T0 + 430)
    offs = sim.effects_of("mn", RouteOptimizationOff)
    assert offs and not sim.mn.route_optimized(CN)


def _inject_cn_ba(sim, status, *, seq=None, sign=True):
    entry = sim.mn.correspondents[CN]
    pending = entry.pending
    ba = BindingAck(status, pending.seq if seq is None else seq, 0)
    data = encode_with_bad(ba, pending.kbm, pending.coa, CN, CN, HOA) if sign else encode_mh(ba, CN, HOA)
    sim.apply("mn", sim.mn.receive(data, CN, sim.mn.coa, sim.now, rh2=HOA))


def _pending_cn_bu_sim():
    sim = registered_sim()
    sim.drop = lambda sender, tr: sender == "mn" and tr.dst == CN and isinstance(decode_mh(tr.data), BindingUpdate)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(0.5)
    assert sim.mn.correspondents[CN].pending is not None
    sim.drop = None
    return sim


@pytest.mark.parametrize("status, hoti, coti", [(136, 1, 0), (137, 0, 1), (138, 1, 1)])
def test_expired_nonce_statuses_refetch_tokens(status, hoti, coti):
    sim = _pending_cn_bu_sim()
    before_h, before_c = len(sent_by(sim, "mn", HomeTestInit)), len(sent_by(sim, "mn", CareOfTestInit))
    _inject_cn_ba(sim, status, sign=False)
    assert len(sent_by(sim, "mn", HomeTestInit)) - before_h == hoti
    assert len(sent_by(sim, "mn", CareOfTestInit)) - before_c == coti
    sim.run(1)
    assert sim.mn.route_optimized(CN)


def test_cn_135_resynchronises_the_sequence_number():
    sim = _pending_cn_bu_sim()
    _inject_cn_ba(sim, 135, seq=40000)
    sim.run(1)
    assert sim.mn.route_optimized(CN)
    assert sent_by(sim, "mn", BindingUpdate)[-1][2].seq == 40001


def test_cn_rejection_and_forged_ba():
    sim = _pending_cn_bu_sim()
    entry = sim.mn.correspondents[CN]
    forged = encode_with_bad(BindingAck(0, entry.pending.seq, 420), bytes(20), COA1, CN, CN, HOA)
    assert sim.mn.receive(forged, CN, COA1, sim.now, rh2=HOA)[0].fields["reason"] == "ba_bad_authenticator"
    _inject_cn_ba(sim, 129)
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert "administratively_prohibited" in off.reason and not sim.mn.correspondents[CN].wanted


def test_binding_error_status_1_falls_back_and_runs_rr_again():
    """RFC 6275 11.3.6: a CN that lost our binding (it restarted) says so with status 1;
    the MN falls back to the tunnel and runs return routability again with fresh
    tokens, without being asked."""
    sim = ro_sim()
    hoti, coti = len(sent_by(sim, "mn", HomeTestInit)), len(sent_by(sim, "mn", CareOfTestInit))
    be = encode_mh(BindingError(1, HOA), CN, COA1)
    sim.apply("mn", sim.mn.receive(be, CN, COA1, sim.now))
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert "no binding for the home address" in off.reason and not sim.mn.route_optimized(CN)
    # fresh tokens: the old ones may come from a secret the CN no longer has
    assert len(sent_by(sim, "mn", HomeTestInit)) == hoti + 1
    assert len(sent_by(sim, "mn", CareOfTestInit)) == coti + 1
    sim.run(1)
    assert sim.mn.route_optimized(CN)
    assert sim.mn.counters["rr.after_binding_error"] == 1


def test_binding_error_status_1_without_route_optimization_changes_nothing():
    """Binding Errors are unauthenticated: one while RR is still running (or for a
    binding the MN does not think exists) neither stops nor restarts anything."""
    sim = _pending_cn_bu_sim()
    entry = sim.mn.correspondents[CN]
    state, pending = entry.state, entry.pending
    be = encode_mh(BindingError(1, HOA), CN, COA1)
    actions = sim.mn.receive(be, CN, COA1, sim.now)
    assert [a.name for a in actions] == ["mipv6.mn.binding_error"] and actions[0].fields["ignored"]
    assert entry.state == state and entry.pending is pending and entry.wanted
    assert not sim.effects_of("mn", RouteOptimizationOff)
    assert sim.mn.counters["binding_error.correspondent.ignored"] == 1


def test_binding_error_status_2_disables_ro_with_that_cn():
    sim = registered_sim()
    sim.call("mn", "start_route_optimization", CN)
    be = encode_mh(BindingError(2, "::"), CN, HOA)
    sim.apply("mn", sim.mn.receive(be, CN, HOA, sim.now))
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert "does not support" in off.reason
    again = sim.mn.start_route_optimization(CN, sim.now)
    assert again == [RouteOptimizationOff(CN, HOA, off.reason)]
    other = encode_mh(BindingError(1, "2001:db8:1::999"), CN, COA1)
    assert sim.mn.receive(other, CN, COA1, sim.now)[0].name == "mipv6.drop"
    stranger = encode_mh(BindingError(1, HOA), "2001:db8:7::1", COA1)
    assert sim.mn.receive(stranger, "2001:db8:7::1", COA1, sim.now)[0].name == "mipv6.drop"


def test_brr_from_cn_triggers_new_return_routability():
    sim = ro_sim(cn_kwargs={"brr_lead": 300})
    sim.run(130)
    assert len(sent_by(sim, "cn", BindingRefreshRequest)) == 1
    assert sim.mn.counters["brr.correspondent"] == 1
    assert len(sim.effects_of("mn", RouteOptimizationOn)) == 2


def test_handover_reuses_home_token_and_refreshes_care_of_token():
    sim = ro_sim()
    hotis = len(sent_by(sim, "mn", HomeTestInit))
    sim.call("mn", "move_to", COA2)
    [off] = sim.effects_of("mn", RouteOptimizationOff)
    assert "movement" in off.reason
    sim.run(1)
    assert sim.ha.binding(HOA).coa == COA2 and sim.effects_of("mn", TunnelUp)[-1] == TunnelUp(HOA, COA2, HA)
    assert sim.effects_of("mn", RouteOptimizationOn)[-1].coa == COA2 and sim.cn.binding(HOA).coa == COA2
    assert len(sent_by(sim, "mn", HomeTestInit)) == hotis            # home token still fresh
    cotis = sent_by(sim, "mn", CareOfTestInit)
    assert cotis[-1][1].src == COA2
    assert sim.mn.move_to(COA2, sim.now) == []                        # no movement


def test_handover_after_token_lifetime_fetches_both_tokens():
    sim = ro_sim()
    sim.run_until(T0 + 250)                  # tokens older than MAX_TOKEN_LIFETIME
    hotis = len(sent_by(sim, "mn", HomeTestInit))
    sim.call("mn", "move_to", COA2)
    sim.run(1)
    assert len(sent_by(sim, "mn", HomeTestInit)) == hotis + 1 and sim.mn.route_optimized(CN)


def test_stop_route_optimization_deregisters_at_cn():
    sim = ro_sim()
    sim.call("mn", "stop_route_optimization", CN)
    assert sim.effects_of("mn", RouteOptimizationOff)[-1].reason == "stopped by request"
    sim.run(1)
    assert sim.cn.binding(HOA) is None and sim.mn.counters["cn.deregistered"] == 1
    assert sim.mn.stop_route_optimization("2001:db8:7::7", sim.now) == []


def test_return_home_deregisters_everywhere():
    sim = ro_sim()
    sim.call("mn", "return_home")
    assert TunnelDown(HOA, "returned home") in sim.effects_of("mn", TunnelDown)
    assert sim.effects_of("mn", RouteOptimizationOff)[-1].reason == "returned home"
    home_bu = [(tr, bu) for _, tr, bu in sent_by(sim, "mn", BindingUpdate) if tr.dst == HA][-1]
    tr, bu = home_bu
    assert tr.src == HOA and "hao" not in tr.meta and bu.lifetime == 0 and bu.home_registration
    assert bu.find(AlternateCareOfAddress) is None and verify_mn_ha(tr.data, make_sa(), HOA, HOA)
    sim.run(1)
    assert sim.effects_of("mn", HomeDeregistered) == [HomeDeregistered(HA, HOA)]
    assert sim.ha.binding(HOA) is None and sim.cn.binding(HOA) is None
    cn_bu = [(tr, bu) for _, tr, bu in sent_by(sim, "mn", BindingUpdate) if tr.dst == CN][-1]
    assert cn_bu[0].src == HOA and "hao" not in cn_bu[0].meta and cn_bu[1].lifetime == 0
    assert sim.mn.at_home and not sim.mn.home_registered and sim.mn.return_home(sim.now) == []


def test_return_home_after_tokens_expired_does_hoti_from_home():
    sim = ro_sim()
    sim.run_until(T0 + 250)
    before = len(sent_by(sim, "mn", HomeTestInit))
    sim.call("mn", "return_home")
    hotis = sent_by(sim, "mn", HomeTestInit)
    assert len(hotis) == before + 1 and hotis[-1][1].meta == {"via": "direct"}
    sim.run(1)
    assert sim.cn.binding(HOA) is None and sim.ha.binding(HOA) is None


def test_move_after_return_home_registers_again():
    sim = ro_sim()
    sim.call("mn", "return_home")
    sim.run(1)
    sim.call("mn", "move_to", COA2)
    sim.run(1)
    regs = sim.effects_of("mn", HomeRegistered)
    assert regs[-1].coa == COA2 and sim.ha.binding(HOA).coa == COA2
    bus = [bu for _, tr, bu in sent_by(sim, "mn", BindingUpdate) if tr.dst == HA]
    assert sim.timers.get(("mn", ("home", "retransmit"))) is None and bus[-1].lifetime == 600


def test_unexpected_messages_are_dropped():
    mn = MobileNode(HOA, HA, SAStore([make_sa()]))
    for msg, dst in [(HomeTest(1, bytes(8), bytes(8)), HOA), (CareOfTest(1, bytes(8), bytes(8)), HOA),
                     (BindingAck(0, 1, 4), HOA), (BindingRefreshRequest(), HOA), (HomeTestInit(bytes(8)), HOA)]:
        assert mn.receive(encode_mh(msg, CN, dst), CN, dst, T0)[0].name == "mipv6.drop"
    assert mn.handle_timer(("cn", CN, "hoti"), T0) == [] and mn.handle_timer("x", T0) == []
    assert mn.handle_timer(("home", "refresh"), T0) == [] and mn.handle_timer(("home", "expire"), T0) == []


def test_mn_constructor_validation():
    store = SAStore()
    with pytest.raises(ValueError):
        MobileNode(HOA, HA, store, refresh_fraction=1.0)
    with pytest.raises(ValueError):
        MobileNode(HOA, HA, store, home_lifetime=3)
    with pytest.raises(ValueError):
        MobileNode(HOA, HA, store, rr_max_attempts=0)
    assert MobileNode(HOA, HA, store, cn_lifetime=5000).cn_lifetime == 420


def test_timers_are_always_in_the_future():
    # Sim.apply asserts every StartTimer is at or after `now`; exercise a busy scenario.
    sim = ro_sim(ha_kwargs={"brr_lead": 100, "refresh_advice": 200}, cn_kwargs={"brr_lead": 50})
    for coa in (COA2, COA1, COA2):
        sim.call("mn", "move_to", coa)
        sim.run(300)
    sim.call("mn", "return_home")
    sim.run(100)
    assert sim.mn.at_home and sim.ha.binding(HOA) is None and sim.cn.binding(HOA) is None
    assert not sim.effects_of("mn", RegistrationFailed)


def test_move_to_home_address_means_returning_home():
    sim = registered_sim()
    sim.call("mn", "move_to", HOA)
    sim.run(1)
    assert sim.mn.at_home and sim.effects_of("mn", HomeDeregistered)


def test_route_optimization_requested_during_registration_starts_after_it():
    sim = Sim()
    sim.now = T0
    sim.call("mn", "move_to", COA1)
    sim.call("mn", "start_route_optimization", CN)
    assert sim.events[-1][2].fields["reason"] == "home registration pending"
    sim.run(1)
    assert sim.mn.route_optimized(CN)
    assert sim.mn.start_route_optimization(CN, sim.now) == []          # already on


def test_home_binding_expiry_switches_route_optimization_off():
    sim = ro_sim()
    sim.drop = lambda sender, tr: sender == "ha" or (sender == "mn" and tr.dst == HA)
    sim.run_until(T0 + 601)
    reasons = [e.reason for e in sim.effects_of("mn", RouteOptimizationOff)]
    assert "home binding expired" in reasons and not sim.mn.route_optimized(CN)


def test_stale_or_misdirected_test_replies_are_dropped():
    sim = registered_sim()
    sim.drop = lambda sender, tr: sender == "cn"
    sim.call("mn", "start_route_optimization", CN)
    entry = sim.mn.correspondents[CN]
    hot = encode_mh(HomeTest(1, entry.home_test.cookie, bytes(8)), CN, COA1)
    assert sim.mn.receive(hot, CN, COA1, sim.now)[0].fields["reason"] == "home_test_not_to_home_address"
    old_cookie = entry.care_of_test.cookie
    sim.call("mn", "move_to", COA2)                       # the CoTI now belongs to the old CoA
    cot = encode_mh(CareOfTest(1, old_cookie, bytes(8)), CN, COA1)
    assert sim.mn.receive(cot, CN, COA1, sim.now)[0].fields["reason"] == "unexpected_care_of_test"


def test_deregistration_with_unreachable_cn_is_abandoned():
    sim = ro_sim()
    sim.drop = lambda sender, tr: tr.dst == CN
    sim.call("mn", "return_home")
    sim.run(100)
    assert sim.mn.counters["cn.dereg_abandoned"] == 1 and sim.mn.correspondents[CN].state == "idle"
    assert sim.effects_of("mn", HomeDeregistered)


def test_deregistration_needing_a_new_home_token_is_abandoned_too():
    sim = ro_sim()
    sim.run_until(T0 + 250)
    sim.drop = lambda sender, tr: tr.dst == CN
    sim.call("mn", "return_home")
    sim.run(100)
    assert sim.mn.counters["cn.dereg_abandoned"] == 1


@pytest.mark.parametrize("status", [135, 136])
def test_cn_resync_loops_are_bounded(status):
    sim = _pending_cn_bu_sim()
    sim.drop = lambda sender, tr: sender == "mn" and tr.dst == CN and tr.meta.get("hao")
    for _ in range(4):
        sim.run(0.5)
        _inject_cn_ba(sim, status, seq=None if status != 135 else 1000, sign=status == 135)
    off = sim.effects_of("mn", RouteOptimizationOff)
    assert off and ba_status_name(status) in off[-1].reason


def test_cn_granting_zero_lifetime_is_a_failure():
    sim = _pending_cn_bu_sim()
    _inject_cn_ba(sim, 0)
    assert "zero lifetime" in sim.effects_of("mn", RouteOptimizationOff)[-1].reason


def test_binding_errors_that_only_get_logged():
    sim = registered_sim()
    be = encode_mh(BindingError(2, HOA), HA, COA1)
    actions = sim.mn.receive(be, HA, COA1, sim.now)
    assert [a.name for a in actions] == ["mipv6.mn.binding_error"]
    sim.call("mn", "start_route_optimization", CN)
    odd = encode_mh(BindingError(9, HOA), CN, COA1)
    sim.apply("mn", sim.mn.receive(odd, CN, COA1, sim.now))
    assert sim.effects_of("mn", RouteOptimizationOff)[-1].reason == "binding error status 9"


def test_144_with_foreign_low_bits_is_dropped():
    mn = MobileNode(HOA, HA, SAStore([make_sa()]))
    bu = _bu_sent(mn.move_to(COA1, T0))
    wrong = ReplayProtection((5000 << 32) | ((bu.find(ReplayProtection).timestamp + 1) & 0xFFFFFFFF))
    ba = encode_with_mn_ha(BindingAck(144, bu.seq, 0, options=(wrong,)), make_sa(), COA1, HOA, HA, HOA)
    assert mn.receive(ba, HA, COA1, T0, rh2=HOA)[0].fields["reason"] == "ba_timestamp_mismatch"


def test_return_home_before_any_ba_deregisters_even_on_133():
    sim = Sim()
    sim.now = T0
    sim.drop = lambda sender, tr: True               # the first registration never gets through
    sim.call("mn", "move_to", COA1)
    sim.drop = None
    sim.call("mn", "return_home")
    sim.run(1)
    assert sim.ha.counters["bu.rejected.133"] == 1
    assert sim.effects_of("mn", HomeDeregistered) == [HomeDeregistered(HA, HOA)]
    assert not sim.effects_of("mn", RegistrationFailed) and sim.mn.home.state == "idle"


# ------------------------------------------------------------------ SA lifetime bounds the home binding

def _short_sa_sim(lifetime: float) -> Sim:
    """MN and HA share an SA that ends `lifetime` s after T0 (as PANA hands them out)."""
    return registered_sim(sa=make_sa(expires_at=T0 + lifetime))


def test_a_new_sa_refreshes_the_home_binding_at_once_and_the_binding_never_lapses():
    """The HA caps the binding by the SA's remaining lifetime (here 10 s: BA 8 s); when
    re-authentication brings a new SA, the MN refreshes with it at once, before the
    shortened lifetime runs out, and the HA's binding goes on under the new SA."""
    sim = _short_sa_sim(10.0)
    [reg] = sim.effects_of("mn", HomeRegistered)
    assert reg.lifetime == 8 and sim.ha.binding(HOA).expires_at == pytest.approx(T0 + 10.0)
    sim.run_until(T0 + 6)                          # re-authentication, before the SA ends
    new = make_sa(spi=SPI + 1, key=b"N" * 16, expires_at=T0 + 16)
    sim.sa_ha.add(new)                             # pushed by the PAA
    sim.sa_mn.add(new)                             # the PaC's new SA
    sim.sa_mn.remove(SPI)
    sim.apply("mn", sim.mn.security_associations_changed(sim.now))
    [(t, tr, bu)] = sent_by(sim, "mn", BindingUpdate, since=T0 + 6)
    assert t == T0 + 6 and bu.find(Authentication).spi == SPI + 1
    assert sim.mn.counters["home.refresh_new_sa"] == 1
    sim.run(0.5)
    assert sim.ha.binding(HOA).spi == SPI + 1
    assert sim.ha.binding(HOA).expires_at == pytest.approx(T0 + 16)
    sim.sa_ha.remove(SPI)                          # the PAA revokes the old one: re-keyed
    sim.apply("ha", sim.ha.sa_revoked(SPI, HOA, "revoked: rekeyed", sim.now, successor=True))
    sim.run_until(T0 + 12)                         # past the first SA's end
    assert sim.ha.binding(HOA) is not None and sim.mn.home_registered
    assert not sim.effects_of("ha", TunnelDown)
    # Nothing new changes nothing.
    assert sim.mn.security_associations_changed(sim.now) == []


def test_without_a_new_sa_the_binding_ends_with_the_sa_at_the_ha():
    sim = _short_sa_sim(10.0)
    sim.run_until(T0 + 10.5)
    assert sim.ha.binding(HOA) is None
    assert sim.effects_of("ha", TunnelDown)[0].reason == "expired"


def test_security_associations_changed_registers_when_an_sa_arrives():
    store = SAStore()
    mn = MobileNode(HOA, HA, store)
    mn.move_to(COA1, T0)
    assert mn.security_associations_changed(T0 + 1) == []      # still no SA
    store.add(make_sa(spi=0x2222))
    bu = _bu_sent(mn.security_associations_changed(T0 + 2))
    assert bu.find(Authentication).spi == 0x2222
    assert mn.security_associations_changed(T0 + 2.1) == []    # a BU is outstanding


def test_a_bu_in_flight_signed_with_the_old_sa_is_sent_again_with_the_new_one():
    sim = registered_sim()
    sim.call("mn", "register")                     # a refresh signed with SPI ...
    assert sim.mn.home.pending is not None and sim.mn.home.pending.spi == SPI
    new = make_sa(spi=SPI + 1, key=b"N" * 16)
    sim.sa_ha.add(new)
    sim.sa_mn.add(new)
    sim.sa_mn.remove(SPI)
    actions = sim.mn.security_associations_changed(sim.now)
    assert _bu_sent(actions).find(Authentication).spi == SPI + 1
    sim.apply("mn", actions)
    sim.run(1)
    assert sim.ha.binding(HOA).spi == SPI + 1 and sim.mn.home.registered_spi == SPI + 1
