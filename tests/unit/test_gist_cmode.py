"""GIST C-mode on simulated time: stack negotiation in the handshake, the Confirm over a
new messaging association, reliable and oversized messages in C-mode, MA-Hello
keepalives and the MA hold time, MA failures reported to the NSLP, bounds."""
import pytest

from mip6bench.gist import core, wire
from mip6bench.sansio import Event

from .gist_harness import Net
from .test_gist_core import CN, COA2, FW, MN, MRI, NSLP, SID, SID2, pair


def sent(net, name=None):
    """(time, sender, kind, mode) of everything on the wire."""
    return [(at, who, t.kind, t.mode) for at, who, t in net.wire
            if name is None or who == name]


def effects(net, cls, name=None):
    return [(at, who, e) for at, who, e in net.effects
            if isinstance(e, cls) and (name is None or who == name)]


def ma_events(net, name):
    return [(e.fields["status"], e.fields.get("reason")) for _, who, e in net.effects
            if who == name and isinstance(e, Event) and e.name == "gist.ma"]


def decode(net, kind, name=None):
    (_, _, t), = [(at, who, t) for at, who, t in net.wire
                  if t.kind == kind and (name is None or who == name)][:1]
    return wire.decode_message(t.data)


def test_reliable_message_negotiates_tcp_and_confirms_over_the_new_ma():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(1.0)
    # Query (Q-mode), Response (D-mode), then the MA: OpenMa at 0.02, connected after a
    # round trip at 0.04, the Confirm over it
    assert sent(net) == [(0.0, "mn", "Query", "Q"), (pytest.approx(0.01), "cn", "Response", "D"),
                         (pytest.approx(0.04), "mn", "Confirm", "C")]
    query = decode(net, "Query")
    assert query.stack_proposal == wire.StackProposal(((wire.MA_PROTOCOL_TCP,),))
    assert query.stack_config == wire.StackConfigData(
        60_000, (wire.MaProtocolOption(wire.MA_PROTOCOL_TCP, 1, b""),))
    resp = decode(net, "Response")
    assert resp.stack_proposal == query.stack_proposal
    assert resp.stack_config.options[0].data == b"\x01\x0e"              # port 270
    (at, _, op), = effects(net, core.OpenMa, "mn")
    assert (op.peer, op.port, op.src) == (CN, 270, MN) and at == pytest.approx(0.02)
    confirm = decode(net, "Confirm")
    assert confirm.stack_proposal == resp.stack_proposal               # echoed
    assert confirm.stack_config.ma_hold_time_ms == 60_000
    assert confirm.nslp_data == b"CRE1" and not confirm.q_mode
    (_, _, t), = [w for w in net.wire if w[2].kind == "Confirm"]
    assert t.peer == CN and t.dst == CN and t.port == 270 and t.src == MN
    (at, who, recv), = net.delivered
    assert (who, recv.data, recv.peer) == ("cn", b"CRE1", MN) and at == pytest.approx(0.05)
    mn, cn = net.nodes["mn"], net.nodes["cn"]
    assert mn.states[(NSLP, SID, MRI)].ma == CN and mn.states[(NSLP, SID, MRI)].ma_port == 270
    assert cn.states[(NSLP, SID, MRI.inverted())].ma == MN
    assert mn.mas[CN].status == "up" and cn.mas[MN].status == "up"
    assert ma_events(net, "mn") == [("establishing", None), ("up", None)]
    assert ma_events(net, "cn") == [("idle", None), ("up", None)]    # accepted, then bound
    # more reliable traffic both ways goes straight over the MA; unreliable stays D-mode
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2", reliable=True)
    net.call("cn", "send_message", NSLP, SID, MRI.inverted(), b"RSP1", reliable=True)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE3")
    net.run(2.0)
    assert [(who, k, m) for _, who, k, m in sent(net)[3:]] == \
        [("mn", "Data", "C"), ("cn", "Data", "C"), ("mn", "Data", "D")]
    assert [(who, r.data, r.peer) for _, who, r in net.delivered[1:]] == \
        [("cn", b"CRE2", MN), ("mn", b"RSP1", CN), ("cn", b"CRE3", MN)]
    assert len(effects(net, core.OpenMa)) == 1


def test_d_mode_handshake_is_unchanged_and_carries_no_stack_proposal():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    assert [(k, m) for _, _, k, m in sent(net)] == [("Query", "Q"), ("Response", "D"),
                                                    ("Confirm", "D")]
    assert decode(net, "Query").stack_proposal is None
    assert decode(net, "Response").stack_proposal is None
    assert net.nodes["mn"].mas == {} and net.nodes["cn"].mas == {}


def overhead():
    """Bytes a D-mode Data adds to its NSLP data in this test's session."""
    node = core.GistNode(core.GistConfig(b"mn", (MN,), frozenset({NSLP})))
    return len(node._data_message((NSLP, SID, MRI), b"abcd").encode()) - 4


def test_message_too_large_for_d_mode_goes_over_an_ma():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    fits = b"x" * (core.D_MODE_MAX - overhead())            # exactly 512 bytes on the wire
    assert len(fits) % 4 == 0
    net.call("mn", "send_message", NSLP, SID, MRI, fits)
    assert net.wire[-1][2].mode == "D" and len(net.wire[-1][2].data) == 512
    big = fits + b"yyyy"                                     # 516: C-mode
    net.call("mn", "send_message", NSLP, SID, MRI, big)
    # the D-mode handshake learnt no MA port: a new Query asks for it, the state stays usable
    assert net.wire[-1][2].kind == "Query"
    assert wire.decode_message(net.wire[-1][2].data).stack_proposal is not None
    net.call("mn", "send_message", NSLP, SID, MRI, b"SML1")   # meanwhile: D-mode
    assert net.wire[-1][2].mode == "D"
    net.run(2.0)
    # the Confirm over the new MA carries the queued big message
    assert [(k, m) for _, _, k, m in sent(net)[-2:]] == [("Response", "D"), ("Confirm", "C")]
    (_, _, last_confirm) = [w for w in net.wire if w[2].kind == "Confirm"][-1]
    assert len(last_confirm.data) > core.D_MODE_MAX
    got = [r.data for _, who, r in net.delivered if who == "cn"]
    assert got == [b"CRE1", fits, b"SML1", big]
    assert net.nodes["cn"].states[(NSLP, SID, MRI.inverted())].ma == MN


def test_reliable_message_queued_behind_a_plain_query_asks_again_with_a_new_cookie():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    first = wire.decode_message(net.wire[0][2].data)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2", reliable=True)
    second = wire.decode_message(net.wire[1][2].data)
    assert first.stack_proposal is None and second.stack_proposal is not None
    assert first.query_cookie != second.query_cookie
    net.run(1.0)
    # the Response to the first Query is stale; the second one sets up the MA
    assert net.nodes["mn"].counters["bad_query_cookie"] == 1
    assert [r.data for _, _, r in net.delivered] == [b"CRE1", b"CRE2"]
    assert all(m == "C" for _, _, k, m in sent(net) if k in ("Confirm", "Data"))


def test_responder_without_c_mode_fails_only_the_reliable_messages():
    net = Net()
    net.add("mn", MN)
    net.add("cn", CN, ma_port=None)
    net.call("mn", "send_message", NSLP, SID, MRI, b"REL1", reliable=True)
    net.call("mn", "send_message", NSLP, SID, MRI, b"PLN1")
    net.run(1.0)
    (_, _, failed), = effects(net, core.SendFailed)
    assert failed.reason == "peer offers no messaging association" and failed.dropped == 1
    assert [(k, m) for _, _, k, m in sent(net)] == [("Query", "Q"), ("Response", "D"),
                                                    ("Confirm", "D")]
    assert [r.data for _, _, r in net.delivered] == [b"PLN1"]
    assert decode(net, "Response").stack_proposal is None


def test_ma_hellos_keep_a_used_ma_and_the_hold_time_closes_an_idle_one():
    hold = dict(ma_hold_time_ms=10_000, rs_validity_ms=30_000)
    net = pair(**hold)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(20.0)
    hellos = [(round(at, 2), who) for at, who, k, m in sent(net) if k == "MA-Hello"]
    # each end says hello after half the peer's hold time (5 s) without sending (both
    # ends count from the connection at 0.04 s; the cn has sent nothing over it)
    assert hellos == [(5.04, "mn"), (5.04, "cn"), (10.04, "mn"), (10.04, "cn"),
                      (15.04, "mn"), (15.04, "cn")]
    assert all(m == "C" for _, _, k, m in sent(net) if k == "MA-Hello")
    keepalives = [wire.decode_message(t.data) for _, _, t in net.wire
                  if t.kind == "MA-Hello"]
    assert {(m.nslp_id, m.r_flag, m.hello_id) for m in keepalives} == {(0, False, 0)}
    # the routing state ends (its refresh Queries are lost): the MA is idle, hellos stop,
    # and after the hold time without traffic the MA is closed
    net.drop = lambda who, t: t.kind == "Query"
    net.run(200.0)
    downs = [(round(at, 2), who) for at, who, e in effects(net, core.RoutingStateChanged)
             if e.status == "down"]
    assert downs == [(30.02, "mn"), (30.05, "cn")]       # 30 s after Response / Confirm
    assert ma_events(net, "mn")[-2:] == [("idle", None), ("down", "hold time expired")]
    hellos = [(round(at, 2), who) for at, who, k, _ in sent(net) if k == "MA-Hello"]
    assert hellos[-3:] == [(25.04, "mn"), (25.04, "cn"), (30.04, "cn")]  # cn: up till 30.05
    # the cn's MA was idle from 30.05 with its last traffic at 30.04: closed 10 s later
    # (the mn, which heard that hello at 30.05, would have closed it at 40.05)
    closes = effects(net, core.CloseMa)
    assert {e.reason for _, _, e in closes} == {"hold time expired"}
    assert closes[0][:2] == (pytest.approx(40.04), "cn")
    assert net.nodes["mn"].mas == {} and net.nodes["cn"].mas == {}
    assert net.nodes["mn"].counters["ma_idle_closed"] == 1


def test_a_silent_peer_is_probed_then_declared_failed():
    net = pair(ma_hold_time_ms=10_000)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(1.0)
    net.drop = lambda who, t: who == "cn" and t.mode == "C"   # cn's writes vanish
    net.run(40.0)
    probes = [(round(at, 2), wire.decode_message(t.data).r_flag) for at, who, t in net.wire
              if who == "mn" and t.kind == "MA-Hello"]
    (request,) = [wire.decode_message(t.data) for _, who, t in net.wire
                  if who == "mn" and t.kind == "MA-Hello"
                  and wire.decode_message(t.data).r_flag]
    assert request.hello_id != 0
    # nothing heard since the connection (0.04 s): after the hold time a hello that asks
    # for a reply, and when that brings nothing either, the MA is given up
    assert probes == [(5.04, False), (10.04, True), (15.04, False)]
    closes = [(round(at, 2), e.reason) for at, who, e in effects(net, core.CloseMa, "mn")]
    assert closes == [(20.04, "peer silent")]
    assert CN not in net.nodes["mn"].mas
    assert net.nodes["mn"].states[(NSLP, SID, MRI)].ma is None     # the state stays, D-mode


def test_ma_hello_with_r_flag_is_answered_with_its_hello_id():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(1.0)
    cn = net.nodes["cn"]
    ask = wire.Message(wire.MA_HELLO, 0, r_flag=True, hello_id=0x12345678).encode()
    (reply,) = cn.receive(ask, MN, CN, 1.0, c_mode=True)
    msg = wire.decode_message(reply.data)
    assert reply.mode == "C" and reply.peer == MN
    assert msg.type == wire.MA_HELLO and msg.hello_id == 0x12345678 and not msg.r_flag
    # a request without an identifier is not answered; outside C-mode an MA-Hello means
    # nothing
    no_id = wire.Message(wire.MA_HELLO, 0, r_flag=True, hello_id=0).encode()
    assert cn.receive(no_id, MN, CN, 1.0, c_mode=True)[0].fields["reason"] == \
        "hello_request_without_id"
    assert cn.receive(ask, MN, CN, 1.0)[0].fields["reason"] == "ma_hello_outside_c_mode"


def test_refused_ma_fails_the_queued_messages_and_the_new_state():
    net = pair()
    net.refuse.add("cn")
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2")
    net.run(1.0)
    (at, _, failed), = effects(net, core.SendFailed)
    assert failed.reason == "messaging association failed: connection refused"
    assert failed.dropped == 2 and at == pytest.approx(0.04)
    mn = net.nodes["mn"]
    assert mn.states == {} and mn.mas == {} and mn.counters["ma_failed"] == 1
    # the Response installed it, the failed MA (its Confirm never left) removed it
    assert [e.status for _, _, e in effects(net, core.RoutingStateChanged, "mn")] == \
        ["up", "down"]
    assert net.nodes["cn"].states == {} and net.delivered == []
    assert not any(k[0] == "mn" and k[1][1].startswith("ma_") for k in net.timers)


def test_ma_that_never_connects_times_out():
    net = pair(ma_connect_timeout=3.0)
    net.open_ma = lambda name, op: None                    # the SYNs are lost
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(10.0)
    (at, _, close), = effects(net, core.CloseMa, "mn")
    assert close.reason == "connect timeout" and at == pytest.approx(3.02)
    (_, _, failed), = effects(net, core.SendFailed)
    assert failed.reason == "messaging association failed: connect timeout"


def test_broken_ma_is_reopened_by_the_querier_but_not_by_the_responder():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(1.0)
    net.break_ma("mn", "cn")
    assert net.nodes["mn"].mas == {} and net.nodes["cn"].mas == {}
    assert net.nodes["mn"].states[(NSLP, SID, MRI)].ma is None
    # the responder has no port of the querier's: upstream reliable traffic fails
    (failed,) = net.call("cn", "send_message", NSLP, SID, MRI.inverted(), b"RSP1",
                         reliable=True)
    assert failed.reason == "no messaging association toward upstream peer"
    # the querier reopens it with the port it learnt, no new handshake
    actions = net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2", reliable=True)
    assert [type(a).__name__ for a in actions][:1] == ["OpenMa"]
    net.run(2.0)
    assert net.delivered[-1][2].data == b"CRE2" and sent(net)[-1][2:] == ("Data", "C")
    assert not [k for _, _, k, _ in sent(net)[3:] if k == "Query"]
    # and now the responder can answer reliably again, over the reopened MA
    net.call("cn", "send_message", NSLP, SID, MRI.inverted(), b"RSP2", reliable=True)
    net.run(3.0)
    assert net.delivered[-1][1:] and net.delivered[-1][2].data == b"RSP2"


def test_confirm_with_a_tampered_stack_proposal_creates_nothing():
    net = pair()
    cn = net.nodes["cn"]
    nli = wire.Nli(b"mn", 64, 30000, MN)
    cookie = cn.responder_cookie(nli, MRI, NSLP, SID, 0.0)
    for sp in (wire.StackProposal(((wire.MA_PROTOCOL_TLS, wire.MA_PROTOCOL_TCP),)),
               wire.StackProposal(((wire.MA_PROTOCOL_TCP,), (wire.MA_PROTOCOL_TLS,)))):
        conf = wire.Message(wire.CONFIRM, NSLP, mri=MRI, session_id=SID, nli=nli,
                            responder_cookie=cookie, stack_proposal=sp)
        net.apply("cn", cn.receive(conf.encode(), MN, CN, 0.1, c_mode=True))
    assert cn.states == {} and cn.counters["stack_proposal_mismatch"] == 2
    # a Confirm over an MA whose NLI names another address than the MA's peer
    other = wire.Nli(b"mn", 64, 30000, FW)
    conf = wire.Message(wire.CONFIRM, NSLP, mri=MRI, session_id=SID, nli=other,
                        responder_cookie=cn.responder_cookie(other, MRI, NSLP, SID, 0.1),
                        stack_proposal=core.TCP_PROPOSAL)
    net.apply("cn", cn.receive(conf.encode(), MN, CN, 0.1, c_mode=True))
    assert cn.states == {} and cn.counters["ma_peer_mismatch"] == 1
    # a Query never arrives over an MA
    net.apply("cn", cn.receive(net.nodes["mn"]._query(core.PendingQuery(
        (NSLP, SID, MRI), b"q" * 16, 0.5, 0.0)).data[4:], MN, CN, 0.2, c_mode=True))
    assert cn.counters["malformed"] == 1     # a Query without magic does not even decode


def test_strangers_mas_are_bounded_and_idle_ones_close_after_the_hold_time():
    net = pair(max_mas=2, ma_hold_time_ms=5_000)
    cn = net.nodes["cn"]
    net.apply("cn", cn.ma_connected("2001:db8:99::1", 0.0))
    net.apply("cn", cn.ma_connected("2001:db8:99::2", 0.0))
    refused = net.apply("cn", cn.ma_connected("2001:db8:99::3", 0.0))
    assert isinstance(refused[0], core.CloseMa) and cn.counters["ma_refused"] == 1
    assert len(cn.mas) == 2
    # garbage from a stranger keeps nothing alive beyond the hold time
    net.apply("cn", cn.receive(b"\x01\x00\x00\x00", "2001:db8:99::1", CN, 1.0, c_mode=True))
    net.run(10.0)
    closes = [(at, e.peer) for at, _, e in effects(net, core.CloseMa, "cn")]
    assert closes[1:] == [(5.0, "2001:db8:99::2"), (6.0, "2001:db8:99::1")]
    assert cn.mas == {}


def test_ma_queue_and_message_size_bounds():
    net = pair(max_ma_queue=2)
    net.open_ma = lambda name, op: None
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(0.5)                                         # Confirm queued on the MA
    for i in range(3):
        net.call("mn", "send_message", NSLP, SID, MRI, b"MSG%d" % i, reliable=True)
    reasons = [e.reason for _, _, e in effects(net, core.SendFailed)]
    assert reasons == ["messaging association queue full"] * 2
    with pytest.raises(ValueError):
        net.nodes["mn"].send_message(NSLP, SID2, MRI, b"x" * 16384, 1.0)


def test_three_nodes_each_hop_has_its_own_ma():
    net = Net()
    net.add("mn", MN)
    net.add("fw", FW)
    net.add("cn", CN)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(1.0)
    (_, who, recv), = net.delivered
    assert who == "fw"
    net.call("fw", "send_message", NSLP, SID, MRI, recv.data, reliable=True)
    net.run(2.0)
    assert net.delivered[-1][1] == "cn" and net.delivered[-1][2].peer == FW
    assert set(net.nodes["fw"].mas) == {MN, CN}
    assert [(op.peer, who) for _, who, op in effects(net, core.OpenMa)] == \
        [(FW, "mn"), (CN, "fw")]
    # the answer goes back hop by hop over the MAs
    net.call("cn", "send_message", NSLP, SID, MRI.inverted(), b"RSP1", reliable=True)
    net.run(3.0)
    assert net.delivered[-1][1] == "fw" and sent(net)[-1][2:] == ("Data", "C")


def test_d_mode_confirm_stays_within_the_d_mode_size():
    net = pair()
    fits = b"x" * (core.D_MODE_MAX - overhead())     # fits a Data, not a Confirm + cookie
    net.call("mn", "send_message", NSLP, SID, MRI, fits)
    net.run(1.0)
    assert [(k, m) for _, _, k, m in sent(net)] == [("Query", "Q"), ("Response", "D"),
                                                    ("Confirm", "D"), ("Data", "D")]
    assert max(len(t.data) for _, _, t in net.wire if t.mode == "D") == 512
    assert decode(net, "Confirm").nslp_data is None
    assert [r.data for _, _, r in net.delivered] == [fits]


def test_after_a_handover_the_ma_from_the_old_care_of_address_is_not_reused():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(1.0)
    assert net.nodes["mn"].mas[CN].local == MN
    net.nodes["mn"].set_addresses([COA2])                   # the MN moved
    net.owner[COA2] = "mn"
    moved = wire.Mri(COA2, CN, protocol=17, src_port=5000, dst_port=6000)
    net.call("mn", "send_message", NSLP, SID, moved, b"CRE2", reliable=True)
    net.run(2.0)
    (_, _, close), = effects(net, core.CloseMa, "mn")
    assert close.reason == "local address gone" and net.nodes["mn"].counters["ma_stale"] == 1
    opens = [(op.src, op.peer) for _, _, op in effects(net, core.OpenMa, "mn")]
    assert opens == [(MN, CN), (COA2, CN)]
    (at, who, recv) = net.delivered[-1]
    assert (who, recv.data, recv.peer) == ("cn", b"CRE2", COA2)
    assert net.nodes["cn"].states[(NSLP, SID, moved.inverted())].ma == COA2
    # the old routing state lost its MA; the cn's MA with the old address went with it
    assert net.nodes["mn"].states[(NSLP, SID, MRI)].ma is None
    assert set(net.nodes["cn"].mas) == {COA2}
