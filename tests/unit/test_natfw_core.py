"""NI (MN) -> NF (firewall) -> NR (CN) on simulated time, wired by a tiny harness that
plays GIST: SendNslp downstream goes NI->NF->NR, upstream NR->NF->NI."""
from __future__ import annotations

import pytest

from mip6bench.aaa.token import Flow, mint_token
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import (DeliverNotify, DeliverResponse, InstallPinhole, Mri,
                                  NfCore, NiCore, NrCore, RemovePinhole, SendNslp)
from mip6bench.sansio import StartTimer, StopTimer

KEY = bytes(range(32))
HOA, COA, CN = "2001:db8:1::1001", "2001:db8:11::5", "2001:db8:2::10"
NAI = "mn1@mip6bench.example"
T0 = 1_800_000_000.0
COTI = Mri(COA, CN, 135)
HOTI = Mri(HOA, CN, 135)
SID = b"\x01" * 16


def tok(hoa=HOA, key=KEY, start=T0, end=T0 + 600, flows=(Flow(135, "2001:db8:2::/64"),)):
    return mint_token(key, 1, NAI, hoa, flows, start, end, token_id=b"\x07" * 8)


class Net:
    def __init__(self, token=None, keys={1: KEY}, policy=None, **nf):
        self.now = 0.0
        self.ni = NiCore(token, msn_start=100)
        self.nf = NfCore(keys, wall_clock=lambda now: T0 + now, **nf)
        self.nr = NrCore(policy)
        self.timers = {}            # (node, key) -> at
        self.effects = {"ni": [], "nf": [], "nr": []}
        self.wire = []              # (from, to, message)

    def apply(self, node, actions):
        for a in actions:
            if isinstance(a, StartTimer):
                self.timers[(node, a.key)] = a.at
            elif isinstance(a, StopTimer):
                self.timers.pop((node, a.key), None)
            elif isinstance(a, SendNslp):
                nxt = {("ni", False): "nf", ("nf", False): "nr", ("nr", True): "nf",
                       ("nf", True): "ni"}[(node, a.upstream)]
                self.wire.append((node, nxt, w.decode(a.data)))
                core = getattr(self, nxt)
                kw = {"upstream": a.upstream} if nxt == "nf" else {}
                self.apply(nxt, core.receive(a.session_id, a.mri, a.data, self.now, **kw))
            else:
                self.effects[node].append(a)

    def run(self, until):
        while True:
            due = sorted((at, k) for k, at in self.timers.items() if at <= until)
            if not due:
                break
            at, (node, key) = due[0]
            del self.timers[(node, key)]
            self.now = at
            self.apply(node, getattr(self, node).handle_timer(key, at))
        self.now = until

    def of(self, node, cls):
        return [e for e in self.effects[node] if isinstance(e, cls)]


def open_(net, mri=COTI, lifetime=60, sid=SID, mip6=w.Mip6Flow(w.MIP6_MH, 2, HOA)):
    net.apply("ni", net.ni.create(sid, mri, lifetime, net.now, mip6=mip6))


def test_pinhole_only_after_the_nr_approves():
    net = Net(tok())
    seen = []
    real = net.nr.receive

    def nr_receive(*a, **k):          # at this instant the NF must hold nothing installed
        seen.append(list(net.of("nf", InstallPinhole)))
        assert net.nf.sessions[SID].pending is not None
        return real(*a, **k)
    net.nr.receive = nr_receive
    open_(net)
    assert seen == [[]]
    (ins,) = net.of("nf", InstallPinhole)
    assert ins.session_id == SID and ins.lifetime == 60 and ins.flow.mri == COTI
    assert ins.flow.mip6 == w.Mip6Flow(w.MIP6_MH, 2, HOA)
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.success and resp.lifetime == 60
    assert [m.name for _, _, m in net.wire] == ["CREATE", "CREATE", "RESPONSE", "RESPONSE"]
    assert net.nf.counters["pinholes_installed"] == 1


def test_nr_refusal_installs_nothing():
    net = Net(tok(), policy=lambda sid, mri, msg: w.ERR_POLICY_DENIED)
    open_(net)
    assert net.of("nf", InstallPinhole) == []
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.pair == w.ERR_POLICY_DENIED
    assert SID not in net.nf.sessions and net.nf.counters["nr_refusals"] == 1


def test_refresh_keeps_the_pinhole_and_expiry_removes_it():
    net = Net(tok())
    open_(net, lifetime=60)
    net.run(until=200)             # NI refreshes every 30 s: never expires
    assert net.of("nf", RemovePinhole) == []
    assert len(net.of("nf", InstallPinhole)) == 1 + 6
    msns = [m.msn for f, t, m in net.wire if f == "ni"]
    assert msns == sorted(msns) and len(set(msns)) == len(msns)
    net.ni.sessions.clear()        # the MN vanishes: no more refreshes
    net.timers = {k: v for k, v in net.timers.items() if k[0] != "ni"}
    net.run(until=300)
    (rm,) = net.of("nf", RemovePinhole)
    assert rm.reason == "expired" and net.nf.counters["expired"] == 1
    (note,) = net.of("ni", DeliverNotify)
    assert note.info.pair == w.ERR_SESSION_TERMINATED


def test_stale_msn_is_dropped():
    net = Net(tok())
    open_(net)
    old = next(m for f, t, m in net.wire if f == "ni").encode()
    before = len(net.wire)
    net.apply("nf", net.nf.receive(SID, COTI, old, net.now))       # replay, same MSN
    older = w.decode(old)
    lower = w.NslpMessage(w.CREATE, tuple(w.Msn(99) if isinstance(o, w.Msn) else o
                                         for o in older.objects)).encode()
    net.apply("nf", net.nf.receive(SID, COTI, lower, net.now))
    assert len(net.wire) == before and net.nf.counters["stale_msn"] == 2
    assert len(net.of("nf", InstallPinhole)) == 1


def test_teardown_removes_at_once_and_a_replayed_create_is_refused():
    net = Net(tok())
    open_(net)
    first = next(m for f, t, m in net.wire if f == "ni").encode()
    net.apply("ni", net.ni.teardown(SID, net.now))
    (rm,) = net.of("nf", RemovePinhole)
    assert rm.reason == "teardown" and SID not in net.nf.sessions
    assert net.nr.counters["teardowns"] == 1
    out = net.nf.receive(SID, COTI, first, net.now)   # captured CREATE replayed later
    assert not [a for a in out if isinstance(a, InstallPinhole)]
    assert net.nf.counters["refused.replayed"] == 1


def refused(net):
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.pair == w.ERR_AUTHORIZATION_FAILED
    assert net.of("nf", InstallPinhole) == [] and net.wire[-1][0] == "nf"
    assert not any(t == "nr" for _, t, _ in net.wire)


@pytest.mark.parametrize("token, mri, mip6, why", [
    (None, COTI, w.Mip6Flow(w.MIP6_MH, 2, HOA), "no token"),
    (tok(key=bytes(32)), COTI, w.Mip6Flow(w.MIP6_MH, 2, HOA), "forged"),
    (tok(start=T0 - 700, end=T0 - 100), COTI, w.Mip6Flow(w.MIP6_MH, 2, HOA), "expired"),
    (tok(), Mri(COA, "2001:db8:3::1", 135), w.Mip6Flow(w.MIP6_MH, 2, HOA), "flow not authorized"),
    (tok(), Mri(HOA, CN, 6, 1, 80), None, "flow not authorized"),
    (tok(hoa="2001:db8:1::1002"), COTI, w.Mip6Flow(w.MIP6_MH, 2, HOA), "another MN's token"),
    (tok(), Mri("2001:db8:1::1002", CN, 135), None, "another MN's token"),
])
def test_token_refusals(token, mri, mip6, why):
    net = Net(token)
    open_(net, mri=mri, mip6=mip6)
    refused(net)
    assert net.nf.counters[f"refused.{why}"] == 1


def test_tampered_token_is_forged():
    t = bytearray(tok())
    t[30] ^= 1
    net = Net(bytes(t))
    open_(net)
    refused(net)
    assert net.nf.counters["refused.forged"] + net.nf.counters["refused.malformed token"] == 1


def test_hoti_from_the_home_address_needs_no_extension():
    net = Net(tok())
    open_(net, mri=HOTI, mip6=w.Mip6Flow(w.MIP6_MH, 1))
    assert len(net.of("nf", InstallPinhole)) == 1


def test_state_bounds_are_enforced_and_counted():
    net = Net(tok(), max_sessions=3, max_pending=2)
    net.nr.receive = lambda *a, **k: []          # the NR never answers: all stay pending
    for i in range(3):
        open_(net, sid=bytes([i]) * 16)
    assert net.nf.pending_count == 2 and net.nf.counters["refused.max pending"] == 1
    net.run(until=31)                             # pending requests time out
    assert net.nf.pending_count == 0 and net.nf.counters["pending_timeouts"] == 2
    net2 = Net(tok(), max_sessions=2, max_pending=10)
    for i in range(3):
        open_(net2, sid=bytes([i + 10]) * 16)
    assert len(net2.nf.sessions) == 2 and net2.nf.counters["refused.max sessions"] == 1
    assert len(net2.of("nf", InstallPinhole)) == 2


def test_malformed_create_gets_a_protocol_error():
    net = Net(tok())
    out = net.nf.receive(SID, COTI, bytes([1, 0, 0, 0]), 0.0)
    (send,) = [a for a in out if isinstance(a, SendNslp)]
    assert send.upstream and w.decode(send.data).info.pair == w.ERR_MANDATORY_OBJECT_MISSING


def test_without_keys_no_token_is_needed():
    net = Net(None, keys=None)
    open_(net)
    assert len(net.of("nf", InstallPinhole)) == 1
