"""GIST upstream discovery (RFC 5971 5.8.1): a data receiver (a mobile node's CoA) finds
the first NATFW node toward the flow's source, on simulated time."""
import pytest

from mip6bench.gist import core, wire
from mip6bench.sansio import Transmit

from .gist_harness import Net

HA, AR, COA = "2001:db8:1::1", "2001:db8:11::1", "2001:db8:11::100"
SID = bytes(range(16))
FLOW = wire.Mri(HA, COA, protocol=41)              # HA -> CoA tunnel, seen by the CoA
UP = FLOW.inverted()                              # D flag set: toward the flow's source
NSLP = core.NATFW_NSLPID


def chain():
    net = Net()
    net.add("ha", HA, nslps=())                    # the flow's source: no NATFW here
    net.add("ar", AR)                              # the edge firewall of the CoA's network
    net.add("mn", COA)
    return net


def test_upstream_query_goes_toward_the_source_and_the_first_node_answers():
    net = chain()
    actions = net.call("mn", "send_message", NSLP, SID, UP, b"EXT1", discover=True)
    (query,) = [a for a in actions if isinstance(a, Transmit)]
    assert query.dst == HA and query.src == COA and query.mode == "Q"
    assert query.router_alert == 68
    decoded = wire.decode_message(query.data, q_mode=True)
    assert decoded.mri.upstream and decoded.mri.src == HA and decoded.mri.dst == COA
    net.run(1.0)
    assert [(who, t.kind) for _, who, t in net.wire] == [
        ("mn", "Query"), ("ar", "Response"), ("mn", "Confirm")]
    (_, _, resp), = net.sent("ar", "Response")
    assert resp.dst == COA and not wire.decode_message(resp.data).mri.upstream
    # the querier's state: peer upstream; the responder's: peer downstream
    assert net.nodes["mn"].states[(NSLP, SID, UP)].peer_address == AR
    assert net.nodes["ar"].states[(NSLP, SID, FLOW)].peer_address == COA
    assert net.nodes["ha"].counters == {}          # the Query never went past the AR
    (_, who, recv), = net.delivered
    assert (who, recv.data, recv.mri, recv.peer) == ("ar", b"EXT1", UP, COA)
    # the answer goes downstream on the AR's state; more EXT upstream as D-mode Data
    net.call("ar", "send_message", NSLP, SID, FLOW, b"RSP1")
    net.call("mn", "send_message", NSLP, SID, UP, b"EXT2", discover=True)
    net.run(2.0)
    assert [t.kind for _, _, t in net.wire[3:]] == ["Data", "Data"]
    got = [(who, r.data) for _, who, r in net.delivered[1:]]
    assert got == [("mn", b"RSP1"), ("ar", b"EXT2")]


def test_without_discover_an_upstream_message_still_fails():
    net = chain()
    (failed,) = net.call("mn", "send_message", NSLP, SID, UP, b"EXT1")
    assert failed.reason == "no routing state toward upstream peer"
    assert net.wire == []


def test_upstream_state_is_refreshed_and_expires_without_answers():
    net = chain()
    net.call("mn", "send_message", NSLP, SID, UP, b"EXT1", discover=True)
    net.run(1.0)
    # RS validity 30 s from the Response (0.02 s), refresh at 75 %: a new Query at 22.52 s
    net.run(23.0)
    queries = net.sent("mn", "Query")
    assert [round(at, 2) for at, _, _ in queries] == [0.0, 22.52]
    assert wire.decode_message(queries[1][2].data, q_mode=True).mri.upstream
    assert net.nodes["ar"].states[(NSLP, SID, FLOW)].expires_at == pytest.approx(52.55)
    # the AR goes silent: the querier's state expires at 30 s after the last Response
    net.drop = lambda who, t: who == "ar"
    net.run(60.0)
    assert (NSLP, SID, UP) not in net.nodes["mn"].states
    downs = [e for _, who, e in net.effects
             if who == "mn" and isinstance(e, core.RoutingStateChanged) and e.status == "down"]
    assert len(downs) == 1 and downs[0].mri == UP


def test_upstream_confirm_needs_the_cookie_and_cookies_do_not_cross_directions():
    net = chain()
    ar = net.nodes["ar"]
    nli = wire.Nli(b"mn", 64, 30000, COA)
    good = ar.responder_cookie(nli, UP, NSLP, SID, 0.0)
    down_cookie = ar.responder_cookie(nli, FLOW, NSLP, SID, 0.0)
    assert good != down_cookie
    for cookie, installed in ((down_cookie, False), (b"\0" * 20, False), (good, True)):
        confirm = wire.Message(wire.CONFIRM, NSLP, 16, mri=UP, session_id=SID, nli=nli,
                               responder_cookie=cookie)
        ar.receive(confirm.encode(), COA, AR, 0.1)
        assert ((NSLP, SID, FLOW) in ar.states) is installed
    assert ar.counters["bad_responder_cookie"] == 2


def test_a_response_for_the_other_direction_creates_nothing():
    net = chain()
    net.call("mn", "send_message", NSLP, SID, UP, b"EXT1", discover=True)
    mn = net.nodes["mn"]
    cookie = mn.pending[(NSLP, SID, UP)].cookie
    # a Response whose MRI says it answers a downstream Query for the same flow
    resp = wire.Message(wire.RESPONSE, NSLP, 16, r_flag=True, mri=UP, session_id=SID,
                        nli=wire.Nli(b"ar", 64, 30000, AR), query_cookie=cookie,
                        responder_cookie=b"\1" * 20)
    mn.receive(resp.encode(), AR, COA, 0.05)
    assert mn.states == {} and mn.counters["unexpected_response"] == 1
