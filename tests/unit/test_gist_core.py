"""GIST node core on simulated time: Query/Response/Confirm/Data between two and three
nodes, retransmission timing, refresh and expiry, cookies, forwarding, caps."""
import pytest

from mip6bench.gist import core, wire
from mip6bench.sansio import Transmit

from .gist_harness import Net

MN, FW, CN = "2001:db8:11::100", "2001:db8:2::1", "2001:db8:2::10"
COA2 = "2001:db8:12::100"
SID = bytes(range(16))
SID2 = bytes(range(16, 32))
MRI = wire.Mri(MN, CN, protocol=17, src_port=5000, dst_port=6000)
NSLP = core.NATFW_NSLPID


def pair(**config):
    net = Net()
    net.add("mn", MN, **config)
    net.add("cn", CN, **config)
    return net


def kinds(net, name=None):
    return [t.kind for _, who, t in net.wire if name is None or who == name]


def test_handshake_then_data_both_ways():
    net = pair()
    actions = net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    query = [a for a in actions if isinstance(a, Transmit)][0]
    assert query.dst == CN and query.src == MN and query.port == wire.GIST_PORT
    assert query.mode == "Q" and query.router_alert == core.NATFW_RAO == 68
    assert query.data[:4] == bytes.fromhex("4e04bda5")
    net.run(1.0)
    assert kinds(net) == ["Query", "Response", "Confirm"]
    assert [at for at, _, _ in net.wire] == pytest.approx([0.0, 0.01, 0.02])
    (at, who, recv), = net.delivered
    assert (who, recv.data, recv.peer, recv.session_id, recv.mri) == ("cn", b"CRE1", MN, SID, MRI)
    assert at == pytest.approx(0.03) and recv.hop_count == 4     # ip_ttl 64, received 60
    assert net.nodes["mn"].states[(NSLP, SID, MRI)].peer_address == CN
    assert net.nodes["cn"].states[(NSLP, SID, MRI.inverted())].peer_address == MN
    up = [(who, e.status) for _, who, e in net.effects if isinstance(e, core.RoutingStateChanged)]
    assert up == [("mn", "up"), ("cn", "up")]
    # the responder answers upstream, the querier sends more: D-mode Data, no new Query
    net.call("cn", "send_message", NSLP, SID, MRI.inverted(), b"RSP1")
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2")
    net.run(2.0)
    assert kinds(net)[3:] == ["Data", "Data"]
    assert all(t.mode == "D" for _, _, t in net.wire[1:])
    got = [(who, r.data, r.peer) for _, who, r in net.delivered[1:]]
    assert got == [("mn", b"RSP1", CN), ("cn", b"CRE2", MN)]


def test_response_is_sent_to_the_querier_with_a_cookie_and_no_responder_state():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.drop = lambda who, t: t.kind == "Confirm"
    net.run(0.4)
    (_, _, resp), = net.sent("cn", "Response")
    msg = wire.decode_message(resp.data, q_mode=False)
    assert resp.dst == MN and msg.r_flag and msg.responder_cookie and msg.mri == MRI.inverted()
    assert msg.query_cookie == wire.decode_message(net.wire[0][2].data).query_cookie
    assert net.nodes["cn"].states == {}          # nothing before a Confirm


def test_queued_messages_follow_the_handshake_in_order():
    net = pair()
    for i in range(3):
        net.call("mn", "send_message", NSLP, SID, MRI, b"MSG%d" % i)
    net.run(1.0)
    assert kinds(net) == ["Query", "Response", "Confirm", "Data", "Data"]
    assert [r.data for _, _, r in net.delivered] == [b"MSG0", b"MSG1", b"MSG2"]


def test_query_retransmission_doubles_from_t1_and_gives_up_after_t2():
    net = pair()
    net.drop = lambda who, t: True
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(500.0)
    assert [at for at, _, _ in net.sent("mn", "Query")] == \
        pytest.approx([0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5])
    (at, _, failed), = [(at, w, e) for at, w, e in net.effects if isinstance(e, core.SendFailed)]
    assert at == pytest.approx(127.5) and failed.dropped == 1
    assert failed.reason == "no response to query"
    mn = net.nodes["mn"]
    assert mn.pending == {} and mn.counters["query_gave_up"] == 1
    assert not any(k[0] == "mn" for k in net.timers)           # nothing left armed


def test_retransmitted_query_completes_the_handshake():
    net = pair()
    lost = []
    net.drop = lambda who, t: t.kind == "Query" and len(lost) < 2 and not lost.append(1)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(5.0)
    assert [at for at, _, _ in net.sent("mn", "Query")] == pytest.approx([0, 0.5, 1.5])
    (at, _, recv), = net.delivered
    assert at == pytest.approx(1.53) and recv.data == b"CRE1"


def test_refresh_keeps_state_and_silence_expires_it_on_both_sides():
    net = pair(rs_validity_ms=10_000)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(8.0)
    # refresh at 0.75 x 10 s after the Response arrived (0.02 s)
    assert [at for at, _, _ in net.sent("mn", "Query")] == pytest.approx([0, 7.52])
    assert kinds(net)[-3:] == ["Query", "Response", "Confirm"]
    mn_state = net.nodes["mn"].states[(NSLP, SID, MRI)]
    cn_state = net.nodes["cn"].states[(NSLP, SID, MRI.inverted())]
    assert mn_state.expires_at == pytest.approx(17.54)       # refresh Response at 7.54
    assert cn_state.expires_at == pytest.approx(17.55)       # its Confirm at 7.55
    net.drop = lambda who, t: True                              # the path breaks
    net.run(40.0)
    downs = [(at, who) for at, who, e in net.effects
             if isinstance(e, core.RoutingStateChanged) and e.status == "down"]
    assert downs == [(pytest.approx(17.54), "mn"), (pytest.approx(17.55), "cn")]
    assert net.nodes["mn"].states == {} and net.nodes["cn"].states == {}
    # the querier keeps trying to rediscover until T2 runs out
    assert net.nodes["mn"].pending


def test_forged_response_and_confirm_create_nothing():
    net = pair()
    mn, cn = net.nodes["mn"], net.nodes["cn"]
    nli = wire.Nli(b"evil", 64, 30000, "2001:db8:99::1")
    # a Response nobody asked for
    resp = wire.Message(wire.RESPONSE, NSLP, r_flag=True, mri=MRI.inverted(), session_id=SID,
                        nli=nli, query_cookie=b"x" * 16, responder_cookie=b"y" * 20)
    net.apply("mn", mn.receive(resp.encode(), "2001:db8:99::1", MN, 0.0, q_mode=False))
    # a Response with the wrong Query-Cookie while a Query is pending
    net.drop = lambda who, t: True
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.apply("mn", mn.receive(resp.encode(), "2001:db8:99::1", MN, 0.1, q_mode=False))
    assert mn.states == {} and mn.counters["unexpected_response"] == 1
    assert mn.counters["bad_query_cookie"] == 1 and mn.pending
    # Confirms with a made-up cookie, a cookie issued to another querier, a stale one
    conf = wire.Message(wire.CONFIRM, NSLP, mri=MRI, session_id=SID, nli=nli,
                        responder_cookie=b"z" * 20)
    net.apply("cn", cn.receive(conf.encode(), "2001:db8:99::1", CN, 0.2, q_mode=False))
    honest = wire.Nli(b"mn", 64, 30000, MN)
    stolen = cn.responder_cookie(honest, MRI, NSLP, SID, 0.2)
    conf2 = wire.Message(wire.CONFIRM, NSLP, mri=MRI, session_id=SID, nli=nli,
                         responder_cookie=stolen)
    net.apply("cn", cn.receive(conf2.encode(), "2001:db8:99::1", CN, 0.3, q_mode=False))
    no_cookie = wire.Message(wire.CONFIRM, NSLP, mri=MRI, session_id=SID, nli=honest)
    net.apply("cn", cn.receive(no_cookie.encode(), MN, CN, 0.3, q_mode=False))
    assert cn.states == {} and cn.counters["bad_responder_cookie"] == 3
    # the honest cookie verifies in its own and the next generation, not later
    good = wire.Message(wire.CONFIRM, NSLP, mri=MRI, session_id=SID, nli=honest,
                        responder_cookie=stolen)
    net.apply("cn", cn.receive(good.encode(), MN, CN, 130.0, q_mode=False))
    assert cn.states == {} and cn.counters["bad_responder_cookie"] == 4
    net.apply("cn", cn.receive(good.encode(), MN, CN, 61.0, q_mode=False))
    assert list(cn.states) == [(NSLP, SID, MRI.inverted())]


def test_three_nodes_interceptor_answers_and_relays():
    net = Net()
    net.add("mn", MN)
    fw = net.add("fw", FW)
    net.add("cn", CN)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    # the firewall intercepted the Query and answered it itself
    assert [(who, k) for k, who in [(t.kind, w) for _, w, t in net.wire]] == \
        [("mn", "Query"), ("fw", "Response"), ("mn", "Confirm")]
    (_, who, recv), = net.delivered
    assert who == "fw" and recv.peer == MN
    # its NSLP passes the message on along the flow: a Query of its own toward the CN
    net.call("fw", "send_message", NSLP, SID, MRI, recv.data)
    net.run(2.0)
    assert kinds(net)[3:] == ["Query", "Response", "Confirm"]
    (_, who, recv2) = net.delivered[1]
    assert who == "cn" and recv2.peer == FW and recv2.data == b"CRE1"
    assert fw.states[(NSLP, SID, MRI.inverted())].peer_address == MN   # upstream peer
    assert fw.states[(NSLP, SID, MRI)].peer_address == CN              # downstream peer
    # the CN's answer goes back hop by hop
    net.call("cn", "send_message", NSLP, SID, MRI.inverted(), b"RSP1")
    net.run(3.0)
    assert net.delivered[-1][1] == "fw" and net.delivered[-1][2].peer == CN


def test_node_without_the_nslp_forwards_the_query():
    net = Net()
    net.add("mn", MN)
    fw = net.add("fw", FW, nslps=())
    cn = net.add("cn", CN)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    fwd = [e for _, who, e in net.effects if isinstance(e, core.Forward)]
    assert len(fwd) == 1 and fwd[0].dst == CN and fwd[0].src == MN
    assert fwd[0].router_alert == 68 and fwd[0].hop_limit == 59
    assert wire.decode_message(fwd[0].data).hops == wire.DEFAULT_GIST_HOPS - 1
    assert fw.counters["forwarded"] == 1 and fw.states == {}
    assert cn.states[(NSLP, SID, MRI.inverted())].peer_address == MN
    assert net.delivered[0][1] == "cn"


def test_gist_hop_limit_stops_forwarding():
    net = Net()
    net.add("mn", MN, gist_hops=1)
    fw = net.add("fw", FW, nslps=())
    net.add("cn", CN)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(0.2)
    assert fw.counters["hop_limit"] == 1 and net.delivered == []


def test_routing_state_and_pending_query_caps():
    net = pair(max_routing_states=1, max_pending_queries=1)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    refused = net.call("mn", "send_message", NSLP, SID2, MRI, b"CRE2")
    assert [e.reason for e in refused] == ["too many pending queries"]
    assert net.nodes["mn"].counters["pending_query_refused"] == 1
    net.run(1.0)
    # the second session's handshake: the querier is full, the responder too
    net.nodes["mn"].config.max_routing_states = 2
    net.call("mn", "send_message", NSLP, SID2, MRI, b"CRE2")
    net.run(2.0)
    cn = net.nodes["cn"]
    assert len(cn.states) == 1 and cn.counters["routing_state_refused"] == 1
    assert [r.data for _, _, r in net.delivered] == [b"CRE1"]


def test_new_care_of_address_is_a_new_routing_state():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    net.nodes["mn"].set_addresses([COA2])
    net.owner[COA2] = "mn"
    moved = wire.Mri(COA2, CN, protocol=17, src_port=5000, dst_port=6000)
    actions = net.call("mn", "send_message", NSLP, SID, moved, b"CRE2")
    assert [a.kind for a in actions if isinstance(a, Transmit)] == ["Query"]
    assert actions[0].src == COA2
    net.run(2.0)
    cn = net.nodes["cn"]
    assert set(cn.states) == {(NSLP, SID, MRI.inverted()), (NSLP, SID, moved.inverted())}
    assert cn.states[(NSLP, SID, moved.inverted())].peer_address == COA2
    assert net.delivered[-1][2].peer == COA2


def test_state_of_an_address_we_lost_is_not_refreshed_from_another():
    """An MN that moved from MN to COA2 keeps GIST state for the old CoA's flow until it
    expires; refreshing it would send a Query with COA2 in the NLI and point the CN's
    state for the old flow at COA2 (issue 10 soak: back on the old network, the answers
    to its CREATEs went to the other CoA). It is left to run out instead."""
    net = pair(rs_validity_ms=10_000)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    mn, cn = net.nodes["mn"], net.nodes["cn"]
    mn.set_addresses([COA2])
    net.owner[COA2] = "mn"
    net.run(30.0)
    assert [at for at, _, _ in net.sent("mn", "Query")] == pytest.approx([0])
    assert mn.counters["refresh_skipped_address_gone"] == 1
    assert (NSLP, SID, MRI) not in mn.states and (NSLP, SID, MRI.inverted()) not in cn.states
    # back on the old address: a new handshake, and the CN's state names it
    mn.set_addresses([MN])
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2")
    net.run(31.0)
    assert cn.states[(NSLP, SID, MRI.inverted())].peer_address == MN
    assert net.delivered[-1][2].data == b"CRE2"


def test_data_without_state_or_from_another_peer_is_dropped():
    net = pair()
    cn = net.nodes["cn"]
    data = wire.Message(wire.DATA, NSLP, mri=MRI, session_id=SID,
                        nli=wire.Nli(b"mn", 64, 30000, MN), nslp_data=b"DATA")
    assert not any(isinstance(a, core.RecvMessage)
                   for a in cn.receive(data.encode(), MN, CN, 0.0, q_mode=False))
    assert cn.counters["no_routing_state"] == 1
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    other = wire.Message(wire.DATA, NSLP, mri=MRI, session_id=SID,
                         nli=wire.Nli(b"evil", 64, 30000, MN), nslp_data=b"DATA")
    assert cn.receive(other.encode(), MN, CN, 1.0, q_mode=False)[0].name == "gist.drop"
    assert cn.counters["peer_mismatch"] == 1


def test_refusals_of_the_nslp_api_and_garbage():
    net = pair()
    mn = net.nodes["mn"]
    # C-mode is off by default (no MA transport listening): reliable is refused at once
    plain = core.GistNode(core.GistConfig(b"mn", (MN,), frozenset({NSLP})))
    (failed,) = plain.send_message(NSLP, SID, MRI, b"CRE1", 0.0, reliable=True)
    assert failed.reason == "c-mode not enabled" and plain.counters["c_mode_disabled"] == 1
    (failed,) = mn.send_message(NSLP, SID, MRI.inverted(), b"CRE1", 0.0)
    assert failed.reason == "no routing state toward upstream peer"
    with pytest.raises(ValueError):
        mn.send_message(NSLP, SID, MRI, b"odd", 0.0)
    assert mn.receive(b"\x01\x02", CN, MN, 0.0, q_mode=False)[0].fields["reason"] == "malformed"
    assert mn.counters["malformed"] == 1


def test_message_lifetime_bounds_the_wait_for_a_handshake():
    net = pair()
    net.drop = lambda who, t: True
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", lifetime=1.0)
    net.run(2.0)
    (at, _, failed), = [(at, w, e) for at, w, e in net.effects if isinstance(e, core.SendFailed)]
    assert at == pytest.approx(1.0) and failed.reason == "lifetime expired"


def test_q_mode_data_is_delivered_by_a_serving_interceptor():
    net = pair()
    cn = net.nodes["cn"]
    qdata = wire.Message(wire.DATA, NSLP, q_mode=True, mri=MRI, session_id=SID,
                         nli=wire.Nli(b"mn", 64, 30000, MN), nslp_data=b"QDAT")
    (recv,) = cn.receive(qdata.encode(), MN, CN, 0.0, q_mode=True, ttl=63)
    assert isinstance(recv, core.RecvMessage) and recv.data == b"QDAT" and recv.hop_count == 1


def test_refresh_through_a_new_interceptor_reports_a_peer_change():
    net = pair(rs_validity_ms=10_000)
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    fw = net.add("fw", FW, rs_validity_ms=10_000)   # a GIST firewall appears on the path
    net.chain.remove("fw")
    net.chain.insert(1, "fw")
    net.run(9.0)
    changes = [(who, e.status, e.peer) for _, who, e in net.effects
               if isinstance(e, core.RoutingStateChanged)]
    assert changes[-2:] == [("mn", "peer_changed", FW), ("fw", "up", MN)]
    assert net.nodes["mn"].states[(NSLP, SID, MRI)].peer_address == FW
    assert fw.states[(NSLP, SID, MRI.inverted())].peer_address == MN


def test_intercepted_non_gist_datagram_goes_on_untouched():
    net = Net()
    fw = net.add("fw", FW, nslps=())
    junk = b"\x00\x01\x02\x03" * 5
    (fwd,) = fw.receive(junk, MN, CN, 0.0, q_mode=True, ttl=10)
    assert isinstance(fwd, core.Forward) and fwd.data == junk and fwd.hop_limit == 9
    assert fw.receive(junk, MN, FW, 0.0, q_mode=True, ttl=10)[0].fields["reason"] == "malformed"


def test_a_superseding_message_replaces_what_waits_for_the_handshake():
    """A NATFW NI's retransmissions (each the next MSN) while the Query is unanswered:
    with supersede only the newest goes out after the handshake; without, every one."""
    net = pair()
    net.drop = lambda who, t: t.kind == "Query" and net.now < 1.0   # the first two lost
    for i in range(3):
        net.call("mn", "send_message", NSLP, SID, MRI, b"CRE%d" % i, supersede=True)
        net.run(net.now + 0.5)
    net.run(5.0)
    assert [r.data for _, _, r in net.delivered] == [b"CRE2"]
    assert net.nodes["mn"].counters["superseded"] == 2
    assert kinds(net, "mn").count("Data") == 0                  # it rode in the Confirm
    # Once the state is up nothing is queued: each message goes (D-mode Data).
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE3", supersede=True)
    net.run(6.0)
    assert [r.data for _, _, r in net.delivered] == [b"CRE2", b"CRE3"]
