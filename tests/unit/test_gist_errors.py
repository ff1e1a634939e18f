"""GIST "No Routing State" Errors (RFC 5971 A.4.4.5 and the Querying-SM's rule 3): a
responder answers Data for which it has no routing state; the querier's peer, and only
it, makes the querier drop its state and restart the handshake; the answers are
rate-limited."""
import pytest

from mip6bench.gist import core, wire

from .gist_harness import Net

MN, CN, EVIL = "2001:db8:11::100", "2001:db8:2::10", "2001:db8:66::6"
SID = bytes(range(16))
MRI = wire.Mri(MN, CN, protocol=17, src_port=5000, dst_port=6000)
NSLP = core.NATFW_NSLPID
KEY = (NSLP, SID, MRI)


def pair(**config):
    net = Net()
    net.add("mn", MN, **config)
    net.add("cn", CN, **config)
    return net


def stray_data(sid=SID) -> bytes:
    return wire.Message(wire.DATA, NSLP, mri=MRI, session_id=sid,
                        nli=wire.Nli(b"mn", 64, 30000, MN), nslp_data=b"DATA").encode()


def test_lost_confirm_is_repaired_by_the_responders_error():
    net = pair()
    net.drop = lambda who, t: t.kind == "Confirm"          # the querier believes; cn not
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    assert KEY in net.nodes["mn"].states and net.nodes["cn"].states == {}
    net.drop = lambda who, t: False
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2")
    net.run(1.02)
    (_, _, error), = net.sent("cn", "Error")
    assert error.dst == MN and error.src == CN and error.mode == "D"
    msg = wire.decode_message(error.data, q_mode=False)
    err = msg.error
    assert (err.error_class, err.code, err.subcode) == (wire.ERROR_CLASS_PROTOCOL,
                                                        wire.ERR_NO_ROUTING_STATE, 0)
    assert err.session_id == SID and err.mri == MRI and err.d_mode and not err.q_mode
    assert err.original_header == net.sent("mn", "Data")[0][2].data[:wire.HEADER_LEN]
    assert msg.nli.interface_address == CN and msg.nslp_id == NSLP
    # the querier drops its state and asks again; what the NSLP sends now waits for it
    net.run(1.03)
    assert net.nodes["mn"].counters["state_peer_lost_state"] == 1
    assert [t.kind for _, _, t in net.sent("mn")][-1] == "Query"
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE3")
    net.run(2.0)
    assert [r.data for _, who, r in net.delivered if who == "cn"] == [b"CRE3"]
    assert KEY in net.nodes["mn"].states
    assert (NSLP, SID, MRI.inverted()) in net.nodes["cn"].states
    statuses = [e.status for _, who, e in net.effects
                if who == "mn" and isinstance(e, core.RoutingStateChanged)]
    assert statuses == ["up", "down", "up"]


def test_error_from_anyone_but_the_peer_changes_nothing():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    mn = net.nodes["mn"]
    state = mn.states[KEY]
    header = stray_data()[:wire.HEADER_LEN]
    forged = wire.Message(wire.ERROR, NSLP, nli=wire.Nli(b"cn", 64, 30000, CN), error=(
        wire.GistError(wire.ERROR_CLASS_PROTOCOL, wire.ERR_NO_ROUTING_STATE, 0, header,
                       session_id=SID, mri=MRI, d_mode=True))).encode()
    actions = mn.receive(forged, EVIL, MN, 1.0, q_mode=False)
    assert mn.states[KEY] is state and KEY not in mn.pending
    assert not any(isinstance(a, core.RoutingStateChanged) for a in actions)
    assert mn.counters["error_not_from_peer"] == 1
    # the same Error from the peer itself is believed
    mn.receive(forged, CN, MN, 1.0, q_mode=False)
    assert KEY not in mn.states and KEY in mn.pending


def test_responder_that_loses_its_peer_drops_its_state_without_a_query():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    cn = net.nodes["cn"]
    back = (NSLP, SID, MRI.inverted())
    mn_header = stray_data()[:wire.HEADER_LEN]
    error = wire.Message(wire.ERROR, NSLP, nli=wire.Nli(b"mn", 64, 30000, MN), error=(
        wire.GistError(wire.ERROR_CLASS_PROTOCOL, wire.ERR_NO_ROUTING_STATE, 0, mn_header,
                       session_id=SID, mri=MRI.inverted(), d_mode=True))).encode()
    actions = cn.receive(error, MN, CN, 1.0, q_mode=False)
    assert back not in cn.states and cn.pending == {}
    assert [a.status for a in actions if isinstance(a, core.RoutingStateChanged)] == ["down"]


def test_errors_are_rate_limited_per_node():
    net = pair(error_rate=10.0, error_burst=5)
    cn = net.nodes["cn"]

    def errors_for(count, now):
        return sum(isinstance(a, core.GistTransmit) and a.kind == "Error"
                   for i in range(count)
                   for a in cn.receive(stray_data(bytes([i]) * 16), EVIL, CN, now,
                                       q_mode=False))

    assert errors_for(8, 0.0) == 5                     # the burst, then silence
    assert cn.counters["error_rate_limited"] == 3
    assert errors_for(8, 0.2) == 2                     # 10 a second refill
    assert cn.counters["no_routing_state"] == 16       # every one counted as dropped


def test_error_over_a_messaging_association_goes_back_on_it():
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1", reliable=True)
    net.run(1.0)
    assert net.nodes["mn"].states[KEY].ma == CN
    cn = net.nodes["cn"]
    cn.states.clear()                                  # cn restarted its NSLP state
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE2", reliable=True)
    net.run(1.02)
    (_, _, error), = net.sent("cn", "Error")
    assert error.mode == "C" and error.peer == MN
    err = wire.decode_message(error.data, q_mode=False).error
    assert err.code == wire.ERR_NO_ROUTING_STATE and not err.d_mode
    net.run(3.0)
    assert net.nodes["mn"].counters["state_peer_lost_state"] == 1
    assert KEY in net.nodes["mn"].states            # the handshake was done again


@pytest.mark.parametrize("field", ["session_id", "mri"])
def test_error_without_session_or_mri_is_dropped(field):
    net = pair()
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(1.0)
    mn = net.nodes["mn"]
    kwargs = {"session_id": SID, "mri": MRI, field: None}
    error = wire.Message(wire.ERROR, NSLP, nli=wire.Nli(b"cn", 64, 30000, CN), error=(
        wire.GistError(wire.ERROR_CLASS_PROTOCOL, wire.ERR_NO_ROUTING_STATE, 0,
                       stray_data()[:wire.HEADER_LEN], d_mode=True, **kwargs))).encode()
    mn.receive(error, CN, MN, 1.0, q_mode=False)
    assert KEY in mn.states and mn.counters["error_without_session"] == 1
