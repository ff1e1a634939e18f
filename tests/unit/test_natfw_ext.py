"""EXT at the edge (RFC 5973 3.7.2, 4.3.2): the MN (NI+, data receiver) asks its foreign
network's firewall (edge NF) to let inbound flows to its CoA in; simulated time."""
import pytest

from mip6bench.natfw import wire as w
from mip6bench.natfw.core import (AuthorizeRequest, InstallPinhole, Mri, NfCore, NiCore,
                                  RemovePinhole, SendNslp, SessionFailed, SessionReady)
from mip6bench.sansio import StartTimer, StopTimer

from mip6bench.aaa.token import Flow

from .natfw_harness import HOA, KEY, T0, Net, tok

HA, CN = "2001:db8:1::1", "2001:db8:2::10"
COA, COA2 = "2001:db8:11::100", "2001:db8:12::100"
INSIDE = ("2001:db8:11::/64",)
TUNNEL = Mri(HA, COA, 41)                          # the HA's tunnel toward the CoA
RO = Mri(CN, COA, 0)                               # the CN's RH2 data toward the CoA
TUN6 = w.Mip6Flow(w.MIP6_TUNNEL, 0, HOA)
RH2 = w.Mip6Flow(w.MIP6_RH2, 0, HOA)
SID = b"\x05" * 16


class Edge(Net):
    """NI+ below, the edge NF above (the NF answers; nothing goes further upstream);
    timers and effects are kept as natfw_harness.Net keeps them."""

    def __init__(self, token=None, keys={1: KEY}, peer=COA, **nf):  # noqa: B006
        self.now = 0.0
        self.ni = NiCore(token, msn_start=500)
        nf.setdefault("inside", INSIDE)
        self.nf = NfCore(keys, wall_clock=lambda now: T0 + now, **nf)
        self.timers, self.wire, self.peer = {}, [], peer
        self.effects = {"ni": [], "nf": []}
        self.drop = None

    def apply(self, node, actions):
        for a in actions:
            if isinstance(a, StartTimer):
                self.timers[(node, a.key)] = a.at
            elif isinstance(a, StopTimer):
                self.timers.pop((node, a.key), None)
            elif isinstance(a, SendNslp):
                msg = w.decode(a.data)
                nxt = "nf" if node == "ni" else "ni"
                self.wire.append((node, a.upstream, a.discover, msg))
                if nxt == "nf":
                    assert a.upstream and a.discover        # EXT: upstream, discovered
                else:
                    assert not a.upstream                   # answers: downstream
                if self.drop and self.drop(node, msg):
                    continue
                if nxt == "nf":
                    self.apply("nf", self.nf.receive(a.session_id, a.mri, a.data, self.now,
                                                     upstream=True, peer=self.peer))
                else:
                    self.apply("ni", self.ni.receive(a.session_id, a.mri, a.data, self.now))
            else:
                self.effects[node].append(a)

    def ext(self, mri=TUNNEL, mip6=TUN6, lifetime=60, sid=SID, **kw):
        self.apply("ni", self.ni.ext(sid, mri, lifetime, self.now, mip6=mip6, **kw))


def test_ext_encodes_with_dtinfo_and_round_trips():
    ni = NiCore(None, msn_start=7)
    actions = ni.ext(SID, TUNNEL, 30, 0.0, mip6=TUN6, nonce=0xABCD)
    (send,) = [a for a in actions if isinstance(a, SendNslp)]
    assert send.upstream and send.discover and send.mri == TUNNEL
    msg = w.decode(send.data)
    assert msg.msg_type == w.EXT and msg.msn == 7 and msg.lifetime == 30
    dt = msg.get(w.DataTerminalInfo)
    assert (dt.protocol, dt.sender, dt.sender_prefix) == (41, HA, 128)
    assert msg.get(w.Mip6Flow) == TUN6 and msg.get(w.Nonce).value == 0xABCD
    assert w.decode(msg.encode()) == msg
    # the tunnel kind round-trips in the MIP6 flow object
    assert w.decode_object(__import__("mip6bench.codec", fromlist=["Reader"]).Reader(
        w.encode_object(TUN6))) == TUN6


def test_edge_installs_at_once_and_answers_downstream():
    net = Edge(tok())
    net.ext()
    (ins,) = net.of("nf", InstallPinhole)
    assert ins.flow.mri == TUNNEL and ins.flow.mip6 == TUN6 and ins.lifetime == 60
    assert [(f, up, m.name) for f, up, _, m in net.wire] == [
        ("ni", True, "EXT"), ("nf", False, "RESPONSE")]
    (ready,) = net.of("ni", SessionReady)
    assert ready.lifetime == 60 and net.nf.counters["ext_installed"] == 1
    assert net.ni.state(SID) == "ready"


def test_nonce_is_echoed():
    net = Edge(tok())
    net.ext(nonce=0x1234)
    resp = net.wire[-1][3]
    assert resp.get(w.Nonce).value == 0x1234


def test_refresh_keeps_the_rule_and_a_stale_msn_is_dropped():
    net = Edge(tok())
    net.ext(lifetime=20)
    net.run(until=11)                              # NI refreshes at half the lifetime
    assert [m.name for _, _, _, m in net.wire] == ["EXT", "RESPONSE"] * 2
    assert len(net.of("nf", InstallPinhole)) == 2 and not net.of("nf", RemovePinhole)
    old = net.wire[0][3]
    net.apply("nf", net.nf.receive(SID, TUNNEL, old.encode(), net.now, upstream=True,
                                   peer=COA))
    assert net.nf.counters["stale_msn"] == 1
    net.run(until=100)                             # refreshed all along: still there
    assert not net.of("nf", RemovePinhole)


def test_unrefreshed_rule_expires_and_the_notify_goes_downstream():
    net = Edge(tok())
    net.ext(lifetime=20)
    net.drop = lambda node, msg: node == "ni" and msg.msn != 500     # refreshes lost
    net.run(until=25)
    (rm,) = net.of("nf", RemovePinhole)
    assert rm.reason == "expired"
    note = [(f, up, m) for f, up, _, m in net.wire if m.name == "NOTIFY"]
    assert note and note[0][:2] == ("nf", False)
    assert note[0][2].info.pair == w.ERR_SESSION_TERMINATED


def test_teardown_removes_without_an_answer():
    net = Edge(tok())
    net.ext()
    net.apply("ni", net.ni.teardown(SID, net.now))
    (rm,) = net.of("nf", RemovePinhole)
    assert rm.reason == "teardown" and net.wire[-1][3].lifetime == 0
    assert net.wire[-1][3].name == "EXT" and net.nf.sessions == {}


def test_handover_replaces_the_rule_for_the_new_coa():
    net = Edge(tok(), inside=INSIDE + ("2001:db8:12::/64",))
    net.ext()
    net.peer = COA2
    net.ext(mri=Mri(HA, COA2, 41))
    installs = net.of("nf", InstallPinhole)
    assert [i.flow.mri.destination for i in installs] == [COA, COA2]
    assert len(net.nf.sessions) == 1 and net.nf.sessions[SID].mri.destination == COA2


@pytest.mark.parametrize("mri, peer, pair, why", [
    (Mri(HA, "2001:db8:99::1", 41), COA, w.ERR_EXT_ON_EXTERNAL_SIDE, "EXT on external side"),
    (TUNNEL, "2001:db8:99::1", w.ERR_EXT_ON_EXTERNAL_SIDE, "EXT on external side"),
])
def test_ext_from_the_outside_is_refused(mri, peer, pair, why):
    net = Edge(tok(), peer=peer)
    net.ext(mri=mri)
    assert not net.of("nf", InstallPinhole)
    resp = net.wire[-1]
    assert resp[:2] == ("nf", False) and resp[3].info.pair == pair
    assert net.nf.counters[f"refused.{why}"] == 1
    (failed,) = net.of("ni", SessionFailed)
    assert failed.info.pair == pair and net.nf.sessions == {}


def test_an_nf_that_is_no_edge_says_so():
    net = Edge(tok(), inside=None)
    net.ext()
    assert net.wire[-1][3].info.pair == w.ERR_NO_EDGE_DEVICE_HERE
    assert not net.of("nf", InstallPinhole)


@pytest.mark.parametrize("token, mip6, why", [
    (None, TUN6, "no token"),
    (tok(hoa="2001:db8:1::9999"), w.Mip6Flow(w.MIP6_TUNNEL, 0, "2001:db8:1::9999"), None),
    (tok(hoa="2001:db8:1::9999"), TUN6, "another MN"),
    (tok(), None, "another MN"),                  # the CoA, not tied to the token's HoA
    (tok(key=b"\x00" * 32), TUN6, "forged"),
])
def test_token_binds_the_flow_destination_to_the_mn(token, mip6, why):
    net = Edge(token)
    net.ext(mip6=mip6)
    if why is None:
        assert net.of("nf", InstallPinhole)
        return
    assert not net.of("nf", InstallPinhole)
    assert net.nf.counters[f"refused.{why}"] == 1
    assert net.wire[-1][3].info.severity == 0x5


def test_token_allowances_cover_the_data_sender_but_not_the_ha_tunnel():
    mh_only = tok()                               # MH to the CN's network only
    net = Edge(mh_only)
    net.ext(mri=RO, mip6=RH2)                     # the CN's data: not allowed
    assert not net.of("nf", InstallPinhole)
    assert net.nf.counters["refused.flow not authorized"] == 1
    net = Edge(tok(flows=(Flow(0, "2001:db8:2::/64"),), token_id=b"\x08" * 8))
    net.ext(mri=RO, mip6=RH2)                     # any protocol from the CN's network
    (ins,) = net.of("nf", InstallPinhole)
    assert ins.flow.mip6.kind == w.MIP6_RH2
    net = Edge(mh_only)
    net.ext()                                     # the HA tunnel needs no allowance
    assert net.of("nf", InstallPinhole)


def test_pull_asks_with_the_mn_end_and_installs_after_the_answer():
    net = Edge(None, keys=None, authorization="pull")
    net.ext()
    (req,) = net.of("nf", AuthorizeRequest)
    assert req.source == COA and req.flow.mri == TUNNEL
    assert not net.of("nf", InstallPinhole)
    net.apply("nf", net.nf.authorization_result(req.request_id, True, "ok", 30, net.now))
    (ins,) = net.of("nf", InstallPinhole)
    assert ins.lifetime == 30 and net.of("ni", SessionReady)[0].lifetime == 30


def test_pull_deny_answers_downstream():
    net = Edge(None, keys=None, authorization="pull")
    net.ext()
    (req,) = net.of("nf", AuthorizeRequest)
    net.apply("nf", net.nf.authorization_result(req.request_id, False, "no", None, net.now))
    assert net.wire[-1][:2] == ("nf", False)
    assert net.wire[-1][3].info.pair == w.ERR_AUTHORIZATION_FAILED
    assert net.of("ni", SessionFailed) and net.nf.sessions == {}


def test_ext_state_is_bounded_per_source():
    net = Edge(None, keys=None, max_per_source=2)
    for i in range(3):
        net.ext(sid=bytes([i]) * 16, mri=Mri(f"2001:db8:1::{i + 1}", COA, 41))
    assert len(net.of("nf", InstallPinhole)) == 2
    assert net.nf.counters["refused.max per source"] == 1


def test_a_session_is_either_create_or_ext():
    ni = NiCore(None)
    ni.create(SID, Mri(COA, CN, 135), 30, 0.0)
    with pytest.raises(ValueError):
        ni.ext(SID, TUNNEL, 30, 0.0)
    nf = NfCore(None, inside=INSIDE)
    create = w.create(30, 1, w.ACTION_ALLOW)
    nf.receive(SID, Mri(COA, CN, 17), create.encode(), 0.0, upstream=False, peer=COA)
    ext = NiCore(None, msn_start=2).ext(SID, TUNNEL, 30, 0.0)
    data = [a for a in ext if isinstance(a, SendNslp)][0].data
    (send, _) = nf.receive(SID, TUNNEL, data, 0.1, upstream=True, peer=COA)
    assert not send.upstream and w.decode(send.data).info.pair == w.ERR_ILLEGAL_MESSAGE_TYPE
    assert nf.counters["refused.EXT for a CREATE session"] == 1
