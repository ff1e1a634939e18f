"""NATFW NSLP state machines on simulated time: NI retransmission/refresh/teardown and
its per-session state, the NF holding a CREATE until the NR consents, MSN serial
arithmetic, expiry with NOTIFY, the state bounds, and the NR's consent policy."""
from __future__ import annotations

import random

import pytest

from mip6bench.codec import Reader
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import (DeliverNotify, DeliverResponse, InstallPinhole, Mri,
                                  NfCore, NiCore, RemovePinhole, SendNslp, SessionFailed,
                                  SessionReady, consent, mh_types)
from mip6bench.sansio import StartTimer

from .natfw_harness import CN, COTI, HOA, HOTI, SID, T0, Net, tok


def test_pinhole_only_after_the_nr_approves():
    net = Net(tok())
    seen = []
    real = net.nr.receive

    def nr_receive(*a, **k):          # at this instant the NF must hold nothing installed
        seen.append(list(net.of("nf", InstallPinhole)))
        assert net.nf.sessions[SID].pending is not None and net.nf.pending_count == 1
        assert net.ni.state(SID) == "pending"
        return real(*a, **k)
    net.nr.receive = nr_receive
    net.open()
    assert seen == [[]]
    (ins,) = net.of("nf", InstallPinhole)
    assert ins.session_id == SID and ins.lifetime == 60 and ins.flow.mri == COTI
    assert ins.flow.mip6 == w.Mip6Flow(w.MIP6_MH, 2, HOA)
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.success and resp.lifetime == 60
    (ready,) = net.of("ni", SessionReady)
    assert ready.session_id == SID and ready.lifetime == 60 and ready.info.success
    assert net.ni.state(SID) == "ready" and net.nf.pending_count == 0
    assert net.names() == ["CREATE", "CREATE", "RESPONSE", "RESPONSE"]
    assert net.nf.counters["pinholes_installed"] == 1


def test_the_create_carries_lifetime_efi_msn_mip6_flow_and_token():
    net = Net(tok())
    net.open()
    create = net.wire[0][2]
    assert [type(o) for o in create.objects] == [w.Lifetime, w.ExtFlowInfo, w.Msn,
                                                  w.Mip6Flow, w.SessionAuth]
    assert create.get(w.ExtFlowInfo) == w.ExtFlowInfo(w.ACTION_ALLOW, 0)
    assert create.get(w.SessionAuth) == w.decode_object(Reader(tok()))


def test_nr_refusal_is_forwarded_with_its_code_and_installs_nothing():
    net = Net(tok(), policy=lambda sid, mri, msg: w.ERR_POLICY_DENIED)
    net.open()
    assert net.of("nf", InstallPinhole) == []
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.pair == w.ERR_POLICY_DENIED
    (failed,) = net.of("ni", SessionFailed)
    assert failed.info.pair == w.ERR_POLICY_DENIED and failed.reason == "refused"
    assert SID not in net.nf.sessions and net.nf.counters["nr_refusals"] == 1
    assert net.ni.state(SID) is None and net.nf.pending_count == 0


def test_consent_policy_by_mh_type():
    policy = consent(mh_types(1, 2, 5))         # HoTI, CoTI, BU from the MN
    net = Net(tok(), policy=policy)
    net.open(mip6=w.Mip6Flow(w.MIP6_MH, 2, HOA))
    assert len(net.of("nf", InstallPinhole)) == 1
    net2 = Net(tok(), policy=policy)
    net2.open(mip6=w.Mip6Flow(w.MIP6_MH, 7, HOA))   # Binding Error: not consented
    (resp,) = net2.of("ni", DeliverResponse)
    assert resp.info.pair == w.ERR_POLICY_DENIED and net2.of("nf", InstallPinhole) == []
    assert net2.nr.counters["refused"] == 1


def test_refresh_keeps_the_pinhole_and_expiry_removes_it_with_a_notify():
    net = Net(tok())
    net.open(lifetime=60)
    net.run(until=200)             # NI refreshes every 30 s: never expires
    assert net.of("nf", RemovePinhole) == []
    assert len(net.of("nf", InstallPinhole)) == 1 + 6
    assert len(net.of("ni", SessionReady)) == 7
    msns = [m.msn for f, t, m in net.wire if f == "ni"]
    assert msns == list(range(100, 107))
    net.ni.sessions.clear()        # the MN vanishes: no more refreshes
    net.timers = {k: v for k, v in net.timers.items() if k[0] != "ni"}
    net.run(until=300)
    (rm,) = net.of("nf", RemovePinhole)
    assert rm.reason == "expired" and net.nf.counters["expired"] == 1
    assert SID not in net.nf.sessions
    (note,) = net.of("ni", DeliverNotify)
    assert note.info.pair == w.ERR_SESSION_TERMINATED


def test_notify_session_terminated_fails_the_ni_session():
    net = Net(tok())
    net.open(lifetime=60)
    note = w.notify(w.InfoCode.of(w.ERR_SESSION_TERMINATED)).encode()
    net.apply("ni", net.ni.receive(SID, COTI, note, net.now))
    (failed,) = net.of("ni", SessionFailed)
    assert failed.reason == "terminated" and failed.info.pair == w.ERR_SESSION_TERMINATED
    assert net.ni.state(SID) is None and ("ni", ("refresh", SID)) not in net.timers


def test_notify_from_downstream_is_forwarded_upstream():
    net = Net(tok())
    net.open()
    note = w.notify(w.InfoCode.of(w.INFO_ROUTE_CHANGE)).encode()
    net.apply("nf", net.nf.receive(SID, COTI, note, net.now, upstream=True))
    (got,) = net.of("ni", DeliverNotify)
    assert got.info.pair == w.INFO_ROUTE_CHANGE and net.ni.state(SID) == "ready"


def test_lost_creates_are_retransmitted_with_new_msns_then_the_session_fails():
    lost = []
    net = Net(tok(), drop=lambda f, t, m: f == "ni" and len(lost) < 2 and not lost.append(m))
    net.open()
    net.run(until=10)
    assert [m.msn for m in lost] == [100, 101]
    (ready,) = net.of("ni", SessionReady)
    sent = [(m.msn) for f, _, m in net.wire if f == "ni"]
    assert sent == [100, 101, 102] and net.ni.counters["retransmits"] == 2
    assert len(net.of("nf", InstallPinhole)) == 1
    # a path that never answers: 1 + max_retransmit tries, backoff 0.5 1 2 4 8 16 32 64 s
    net2 = Net(tok(), drop=lambda f, t, m: f == "ni")
    net2.open()
    net2.run(until=200)
    assert len(net2.wire) == 8 and net2.ni.counters["retransmits"] == 7
    (failed,) = net2.of("ni", SessionFailed)
    assert failed.info is None and failed.reason == "no response"
    assert net2.ni.state(SID) is None


def test_retransmission_backoff_times():
    ni = NiCore(None, msn_start=1)
    out = ni.create(SID, COTI, 30, 0.0)
    (t,) = [a for a in out if isinstance(a, StartTimer)]
    times = [t.at]
    for _ in range(7):
        out = ni.handle_timer(t.key, times[-1])
        (t,) = [a for a in out if isinstance(a, StartTimer)]
        times.append(t.at)
    # GIST's Query schedule (RFC 5971 T1, T2): the last wait ends at 127.5 s
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5, 127.5]
    assert "SessionFailed" in [type(a).__name__ for a in ni.handle_timer(t.key, times[-1])]


def test_initial_msn_is_random_and_wraps():
    a = NiCore(None, rng=random.Random(1))._next_msn
    b = NiCore(None, rng=random.Random(2))._next_msn
    assert a != b
    net = Net(tok())
    net.ni = NiCore(tok(), msn_start=0xFFFFFFFF)
    net.open()
    net.run(until=31)               # refresh: MSN wraps to 0, still newer (RFC 1982)
    assert [m.msn for f, _, m in net.wire if f == "ni"] == [0xFFFFFFFF, 0]
    assert len(net.of("nf", InstallPinhole)) == 2 and net.nf.counters["stale_msn"] == 0


def test_stale_msn_is_dropped_and_counted():
    net = Net(tok())
    net.open()
    old = next(m for f, t, m in net.wire if f == "ni").encode()
    before = len(net.wire)
    net.apply("nf", net.nf.receive(SID, COTI, old, net.now))       # replay, same MSN
    older = w.decode(old)
    lower = w.NslpMessage(w.CREATE, tuple(w.Msn(99) if isinstance(o, w.Msn) else o
                                         for o in older.objects)).encode()
    net.apply("nf", net.nf.receive(SID, COTI, lower, net.now))
    assert len(net.wire) == before and net.nf.counters["stale_msn"] == 2
    assert len(net.of("nf", InstallPinhole)) == 1


def test_a_response_with_another_msn_installs_nothing():
    net = Net(tok())
    net.nr.receive = lambda *a, **k: []
    net.open()
    bogus = w.response(5, w.InfoCode.of(w.INFO_SUCCESS), 60).encode()
    net.apply("nf", net.nf.receive(SID, COTI, bogus, net.now, upstream=True))
    assert net.of("nf", InstallPinhole) == [] and net.nf.counters["unmatched_response"] == 1


def test_teardown_removes_at_once_and_a_replayed_create_is_refused():
    net = Net(tok())
    net.open()
    first = next(m for f, t, m in net.wire if f == "ni").encode()
    net.apply("ni", net.ni.teardown(SID, net.now))
    assert net.wire[-1][2].lifetime == 0 and net.wire[-1][1] == "nr"
    (rm,) = net.of("nf", RemovePinhole)
    assert rm.reason == "teardown" and SID not in net.nf.sessions
    assert net.nr.counters["teardowns"] == 1 and SID not in net.nr.sessions
    assert net.ni.state(SID) is None and not [k for k in net.timers if k[0] == "ni"]
    out = net.nf.receive(SID, COTI, first, net.now)   # captured CREATE replayed later
    assert not [a for a in out if isinstance(a, InstallPinhole)]
    assert net.nf.counters["refused.closed session"] == 1


def test_pending_create_without_an_nr_answer_times_out():
    net = Net(tok(), pending_timeout=3.0)
    net.nr.receive = lambda *a, **k: []
    net.ni.rto = 100.0                            # no NI retransmission in this window
    net.open()
    assert net.nf.pending_count == 1
    net.run(until=3.0)
    assert SID not in net.nf.sessions and net.nf.pending_count == 0
    assert net.nf.counters["pending_timeouts"] == 1 and net.of("nf", InstallPinhole) == []


def test_lifetime_too_big_is_refused_and_caps_apply():
    net = Net(tok(), max_lifetime=100)
    net.open(lifetime=101)
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.pair == w.ERR_LIFETIME_TOO_BIG and resp.info.object_type == w.T_LT
    assert net.nf.counters["refused.lifetime too big"] == 1 and not net.nf.sessions
    # the token's END_TIME caps the granted lifetime (token valid 50 s more)
    net2 = Net(tok(end=T0 + 50))
    net2.open(lifetime=60)
    (ins,) = net2.of("nf", InstallPinhole)
    assert ins.lifetime == 50 and net2.wire[1][2].lifetime == 50


def test_hoti_from_the_home_address():
    net = Net(tok())
    net.open(mri=HOTI, mip6=w.Mip6Flow(w.MIP6_MH, 1))
    assert len(net.of("nf", InstallPinhole)) == 1


def test_state_bounds_max_pending_and_max_sessions():
    net = Net(tok(), max_sessions=3, max_pending=2, token_sessions=8)
    net.nr.receive = lambda *a, **k: []          # the NR never answers: all stay pending
    net.ni.rto = 100.0
    for i in range(3):
        net.open(sid=bytes([i]) * 16)
    assert net.nf.pending_count == 2 and net.nf.counters["refused.max pending"] == 1
    assert len(net.nf.sessions) == 2
    net.run(until=31)                             # pending requests time out
    assert net.nf.pending_count == 0 and net.nf.counters["pending_timeouts"] == 2
    net2 = Net(tok(), max_sessions=2, max_pending=10, token_sessions=8)
    for i in range(3):
        net2.open(sid=bytes([i + 10]) * 16)
    assert len(net2.nf.sessions) == 2 and net2.nf.counters["refused.max sessions"] == 1
    assert len(net2.of("nf", InstallPinhole)) == 2
    (resp,) = [e for e in net2.of("ni", DeliverResponse) if not e.info.success]
    assert resp.info.pair == w.ERR_RESOURCES_UNAVAILABLE


def test_a_flooding_source_cannot_exhaust_what_other_mns_need():
    net = Net(None, keys=None, max_sessions=64, max_pending=64, max_per_source=4)
    net.nr.receive = lambda *a, **k: []          # flood requests stay pending
    net.peer = "2001:db8:66::6"
    for i in range(200):
        net.open(mri=Mri("2001:db8:66::6", CN, 17, 1000 + i, 53), sid=i.to_bytes(16, "big"),
                 mip6=None)
    assert len(net.nf.sessions) == 4 and net.nf.counters["refused.max per source"] == 196
    del net.nr.receive                            # the real NR again
    net.peer = None
    for j in range(20):                           # twenty other MNs are all served
        src = f"2001:db8:11::{j + 1:x}"
        net.open(mri=Mri(src, CN, 135), sid=(1000 + j).to_bytes(16, "big"),
                 mip6=w.Mip6Flow(w.MIP6_MH, 2))
    assert len(net.of("nf", InstallPinhole)) == 20


def test_malformed_create_gets_a_protocol_error_and_no_state():
    net = Net(tok())
    out = net.nf.receive(SID, COTI, bytes([1, 0, 0, 0]), 0.0)
    (send,) = [a for a in out if isinstance(a, SendNslp)]
    assert send.upstream and w.decode(send.data).info.pair == w.ERR_MANDATORY_OBJECT_MISSING
    assert not net.nf.sessions and net.nf.counters["malformed"] == 1
    # a malformed answer is counted, never answered
    out = net.nf.receive(SID, COTI, b"\x03\x00\x00", 0.0, upstream=True)
    assert not [a for a in out if isinstance(a, SendNslp)]


def test_without_keys_no_token_is_needed():
    net = Net(None, keys=None)
    net.open()
    assert len(net.of("nf", InstallPinhole)) == 1


def test_ni_core_rejects_bad_arguments():
    with pytest.raises(ValueError):
        NiCore(b"\x00\x0c\x00\x01\x00\x00\x00\x01")       # a lifetime object, not a token
    with pytest.raises(ValueError):
        NiCore(None).create(SID, COTI, 0, 0.0)
    with pytest.raises(ValueError):
        NfCore(None, authorization="token")
    with pytest.raises(ValueError):
        NfCore({1: b"k" * 16}, authorization="maybe")
