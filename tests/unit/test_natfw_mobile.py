"""MobileTraversal: the NATFW sessions a mobile node signals per phase, and when the MN
core hears that its pinholes are ready."""
from __future__ import annotations

import itertools

from mip6bench.natfw import wire as w
from mip6bench.natfw.core import NiCore, SendNslp
from mip6bench.natfw.mobile import MobileTraversal, PinholesReady

CN, HOA, COA1, COA2 = "2001:db8:2::10", "2001:db8:1::1000", "2001:db8:11::5", "2001:db8:12::5"


def make():
    counter = itertools.count(1)
    ni = NiCore()
    return ni, MobileTraversal(ni, lifetime=30, random_bytes=lambda n: next(counter).to_bytes(n, "big"))


def sent(actions):
    return [a for a in actions if isinstance(a, SendNslp)]


def answer(ni, tr, send, info=w.INFO_SUCCESS, now=1.0):
    msg = w.decode(send.data)
    reply = w.response(msg.msn, w.InfoCode.of(info), msg.lifetime if w.InfoCode.of(info).success else None)
    out = []
    for effect in ni.receive(send.session_id, send.mri, reply.encode(), now):
        out += tr.on_ni_effect(effect, now)
    return [a for a in out if isinstance(a, PinholesReady)]


def test_rr_phase_is_four_flows_ready_when_all_succeed():
    ni, tr = make()
    sends = sent(tr.open(CN, HOA, COA1, "rr", 0.0))
    flows = sorted((s.mri.source, w.decode(s.data).get(w.Mip6Flow).mh_type) for s in sends)
    assert flows == sorted([(HOA, 1), (HOA, 5), (COA1, 2), (COA1, 5)])
    assert all(s.mri.destination == CN and s.mri.protocol == 135 for s in sends)
    for s in sends[:-1]:
        assert answer(ni, tr, s) == []
    [ready] = answer(ni, tr, sends[-1])
    assert (ready.cn, ready.coa, ready.phase, ready.ok) == (CN, COA1, "rr", True)


def test_a_refusal_fails_the_phase_once():
    ni, tr = make()
    sends = sent(tr.open(CN, HOA, COA1, "rr", 0.0))
    [ready] = answer(ni, tr, sends[0], info=w.ERR_AUTHORIZATION_FAILED)
    assert not ready.ok and "0x5" in ready.reason and "0x2" in ready.reason
    assert answer(ni, tr, sends[1]) == []          # answered once per open()


def test_a_session_nobody_answers_fails_the_phase_and_is_signalled_anew():
    """Loss: the NI gives a CREATE up after its retransmissions (SessionFailed "no
    response"); the phase fails at once, and the next open() signals that session again
    (same session ID, a newer MSN: RFC 5973 3.5; the others, established, are kept)
    instead of waiting for a dead one."""
    ni, tr = make()
    sends = sent(tr.open(CN, HOA, COA1, "rr", 0.0))
    lost, rest = sends[0], sends[1:]
    for s in rest:
        assert answer(ni, tr, s) == []
    readies, now = [], 1.0
    while ni.sessions.get(lost.session_id) is not None and now < 600:
        for effect in ni.handle_timer(("retransmit", lost.session_id), now):
            readies += [a for a in tr.on_ni_effect(effect, now) if isinstance(a, PinholesReady)]
        now += 1.0
    [ready] = readies
    assert not ready.ok and ready.reason == "no response"
    again = sent(tr.open(CN, HOA, COA1, "rr", now))
    [resent] = again
    assert resent.session_id == lost.session_id and resent.mri == lost.mri
    assert w.serial_newer(w.decode(resent.data).msn, w.decode(lost.data).msn)
    [ready] = answer(ni, tr, resent, now=now)
    assert ready.ok


def test_a_handover_resignals_the_coa_sessions_under_the_same_session_ids():
    ni, tr = make()
    sends = sent(tr.open(CN, HOA, COA1, "rr", 0.0))
    for s in sends:
        answer(ni, tr, s)
    coa_sids = {s.session_id for s in sends if s.mri.source == COA1}
    assert sent(tr.close(CN, HOA, COA1, "moved", 2.0, moving=True)) == []     # kept, no teardown
    again = sent(tr.open(CN, HOA, COA2, "rr", 3.0))
    assert {s.mri.source for s in again} == {COA2}          # HoA sessions are still open
    assert {s.session_id for s in again} == coa_sids        # same sessions, new flow
    assert all(w.decode(s.data).lifetime == 30 for s in again)
    readies = []
    for s in again:
        readies += answer(ni, tr, s, now=3.5)
    assert [(r.coa, r.ok) for r in readies] == [(COA2, True)]


def test_closing_for_good_tears_down():
    ni, tr = make()
    sends = sent(tr.open(CN, HOA, COA1, "rr", 0.0))
    for s in sends:
        answer(ni, tr, s)
    teardown = sent(tr.close(CN, HOA, COA1, "returned home", 2.0))
    assert sorted(w.decode(s.data).lifetime for s in teardown) == [0, 0]
    assert {s.mri.source for s in teardown} == {COA1}
    fresh = sent(tr.open(CN, HOA, COA2, "rr", 3.0))
    assert not {s.session_id for s in fresh} & {s.session_id for s in teardown}


def test_data_phase_is_the_hao_flow():
    ni, tr = make()
    [send] = sent(tr.open(CN, HOA, COA1, "data", 0.0))
    flow = w.decode(send.data).get(w.Mip6Flow)
    assert (send.mri.source, flow.kind, flow.home_address) == (COA1, w.MIP6_HAO, HOA)
    [ready] = answer(ni, tr, send)
    assert ready.ok and ready.phase == "data"


HA = "2001:db8:1::1"


def test_inbound_phase_is_an_ext_for_the_ha_tunnel_and_moves_with_the_coa():
    ni, tr = make()
    (send,) = sent(tr.open(HA, HOA, COA1, "inbound", 0.0))
    msg = w.decode(send.data)
    assert msg.msg_type == w.EXT and send.upstream and send.discover
    assert (send.mri.source, send.mri.destination, send.mri.protocol) == (HA, COA1, 41)
    assert msg.get(w.Mip6Flow) == w.Mip6Flow(w.MIP6_TUNNEL, 0, HOA)
    assert msg.get(w.DataTerminalInfo).sender == HA
    [ready] = answer(ni, tr, send)
    assert (ready.cn, ready.coa, ready.phase, ready.ok) == (HA, COA1, "inbound", True)
    # handover: kept while moving, then the same session re-signalled for the new CoA
    assert sent(tr.close(HA, HOA, COA1, "moved", 2.0, moving=True)) == []
    (again,) = sent(tr.open(HA, HOA, COA2, "inbound", 3.0))
    assert again.session_id == send.session_id and again.mri.destination == COA2
    assert w.decode(again.data).msn == msg.msn + 1
    # returning home: torn down (EXT, lifetime 0)
    answer(ni, tr, again)
    (down,) = sent(tr.close(HA, HOA, COA2, "returned home", 4.0))
    gone = w.decode(down.data)
    assert gone.msg_type == w.EXT and gone.lifetime == 0 and down.upstream


def test_data_inbound_is_ready_only_when_both_the_create_and_the_ext_are_granted():
    ni, tr = make()
    sends = sent(tr.open(CN, HOA, COA1, "data_inbound", 0.0))
    kinds = sorted((w.decode(s.data).name, s.mri.source, s.mri.destination) for s in sends)
    assert kinds == [("CREATE", COA1, CN), ("EXT", CN, COA1)]
    ext = next(s for s in sends if w.decode(s.data).msg_type == w.EXT)
    assert w.decode(ext.data).get(w.Mip6Flow).kind == w.MIP6_RH2
    create = next(s for s in sends if s is not ext)
    assert answer(ni, tr, create) == []
    [ready] = answer(ni, tr, ext)
    assert ready.ok and ready.phase == "data_inbound"
    # a refused EXT fails the round
    ni, tr = make()
    sends = sent(tr.open(CN, HOA, COA1, "data_inbound", 0.0))
    ext = next(s for s in sends if w.decode(s.data).msg_type == w.EXT)
    [ready] = answer(ni, tr, ext, info=w.ERR_EXT_ON_EXTERNAL_SIDE)
    assert not ready.ok and "class 0x3 response 0xb" in ready.reason
