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
