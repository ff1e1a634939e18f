"""NATFW authorization pull (firewall <-> PAA over the SA distribution channel): codec
vectors both ways, strict decoding, fuzz, the PAA's policy, retransmission, replay,
bounds, and the PAA service answering from real PANA sessions."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mip6bench.aaa import authz as az
from mip6bench.aaa import sadist as sd
from mip6bench.aaa.authz import (AuthzConfig, AuthzDecision, AuthzFwCore, AuthzMessage,
                                 AuthzPaaCore, AuthzQuery, Verdict)
from mip6bench.aaa.token import Flow, parse_flows
from mip6bench.codec import DecodeError, Reader
from mip6bench.sansio import Event, StartTimer, StopTimer, Transmit

PAA, FW, HA = "2001:db8:1::2", "2001:db8:ff:2::2", "2001:db8:1::1"
PSK = bytes(range(100, 132))
HOA, COA, COA2, CN = "2001:db8:1::1001", "2001:db8:11::101", "2001:db8:12::101", "2001:db8:2::10"
NAI = "mn1@mip6bench.example"
FLOWS = parse_flows(["mh:2001:db8:2::/64", "udp:2001:db8:2::/64:5001"])
SID = bytes(range(16))

QUERY_HEX = ("03" "87" "01" "01" "0000" "0000"
             "20010db8001100000000000000000101" "20010db8000200000000000000000010"
             "20010db8000100000000000000001001" "20010db8001100000000000000000101"
             "10" "000102030405060708090a0b0c0d0e0f")
VERDICT_HEX = ("00" "00" "00000258" "15" + b"aaa.mip6bench.example".hex()
               + "15" + NAI.encode().hex() + "02" + b"ok".hex())


def query(**kw) -> AuthzQuery:
    base = dict(source=COA, destination=CN, protocol=135, mip6_kind=az.MIP6_MH, mh_type=2,
                session_id=SID)
    base.update(kw)
    return AuthzQuery(**base)


def tx(actions):
    return [a for a in actions if isinstance(a, Transmit)]


def decisions(actions):
    return [a for a in actions if isinstance(a, AuthzDecision)]


# ---- codec -----------------------------------------------------------------------------

def test_query_vector_both_ways():
    q = AuthzQuery(COA, CN, 135, 0, 0, az.MIP6_MH, 1, HOA, COA, SID)
    assert q.encode().hex() == QUERY_HEX
    assert AuthzQuery.decode(Reader(bytes.fromhex(QUERY_HEX))) == q


def test_verdict_vector_both_ways():
    v = Verdict(True, az.OK, "ok", "aaa.mip6bench.example", NAI, 600)
    assert v.encode().hex() == VERDICT_HEX
    assert Verdict.decode(Reader(bytes.fromhex(VERDICT_HEX))) == v


def test_messages_round_trip_through_seal_and_open():
    sealer = sd.Sealer(sd.ROLE_FW, random.Random(1))
    opener = sd.Opener(sd.ROLE_FW, 30.0, parse=AuthzMessage.parse)
    msg = AuthzMessage(sd.AUTHZ_REQUEST, 0xDEADBEEF, 5_000, query=query(sub_ports=0))
    data = sealer.seal(PSK, msg)
    assert data[:4] == bytes([1, sd.AUTHZ_REQUEST, sd.ROLE_FW, 0]) and az.is_authz_datagram(data)
    assert opener.open(PSK, FW, data, 0.0, 5_000) == msg
    with pytest.raises(sd.SaDistError, match="replayed"):
        opener.open(PSK, FW, data, 0.0, 5_000)
    # The HA channel's parser refuses the new types, and a firewall cannot speak for the HA.
    with pytest.raises(sd.SaDistError, match="unknown message type"):
        sd.Message.parse(sd.AUTHZ_REQUEST, msg.plaintext())
    with pytest.raises(sd.SaDistError, match="wrong sender role"):
        sd.Opener(sd.ROLE_HA, 30.0).open(PSK, FW, sealer.seal(PSK, msg), 0.0, 5_000)


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b"\x08" + b[1:], "unknown flags"),
    (lambda b: b[:2] + b"\x05" + b[3:], "MIPv6 kind 5"),
    (lambda b: b[:4] + b"\x00\x01" + b[6:], "without ports"),          # MH with a port
    (lambda b: b[:1] + b"\x11" + b[2:], "protocol 135"),                # MH over UDP
    (lambda b: b[:-17] + b"\x00", "session id"),                        # empty session id
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b[:-1], "truncated|short|need"),
    (lambda b: b[:8] + bytes(16) + b[24:], "not a unicast"),            # source ::
    (lambda b: b[:24] + b"\xff" + b[25:], "not a unicast"),             # destination ff..
])
def test_query_decode_is_strict(mutate, reason):
    plain = struct.pack("!QI", 1, 2) + mutate(bytes.fromhex(QUERY_HEX))
    with pytest.raises(DecodeError, match=reason):
        AuthzMessage.parse(sd.AUTHZ_REQUEST, plain)


def test_hao_flow_without_home_address_is_refused():
    body = bytearray(bytes.fromhex(QUERY_HEX))
    body[0], body[1], body[2], body[3] = 0x02, 17, az.MIP6_HAO, 0   # no home address flag
    body = bytes(body[:40]) + bytes(body[56:])                      # drop the home address
    with pytest.raises(DecodeError, match="name the home address"):
        AuthzMessage.parse(sd.AUTHZ_REQUEST, struct.pack("!QI", 1, 2) + body)


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b"\x02" + b[1:], "decision 2"),
    (lambda b: b[:1] + b"\x06" + b[2:], "answer code 6"),     # local codes never travel
    (lambda b: b[:1] + b"\x05" + b[2:], "if and only if"),    # allow with a denial code
    (lambda b: b[:2] + bytes(4) + b[6:], "if and only if"),   # allowed for 0 s
    (lambda b: b[:6] + b"\x00" + b[7 + 21:], "authority"),    # empty authority
    (lambda b: b[:7] + b"\xe9" + b[8:], "encoding|authority"),
    (lambda b: b + b"x", "trailing"),
])
def test_verdict_decode_is_strict(mutate, reason):
    plain = struct.pack("!QI", 1, 2) + mutate(bytes.fromhex(VERDICT_HEX))
    with pytest.raises(DecodeError, match=reason):
        AuthzMessage.parse(sd.AUTHZ_ANSWER, plain)


def test_long_reasons_are_clipped_at_a_character_boundary():
    v = Verdict(False, az.FLOW_NOT_AUTHORIZED, "é" * 200, "aaa.example")
    back = Verdict.decode(Reader(v.encode()))
    assert back.reason == "é" * 127 and back.code == az.FLOW_NOT_AUTHORIZED


@settings(max_examples=400, deadline=None)
@given(msg_type=st.sampled_from([sd.AUTHZ_REQUEST, sd.AUTHZ_ANSWER, sd.PUSH, 0, 9]),
       data=st.binary(max_size=200))
def test_fuzz_parse_only_raises_decode_errors(msg_type, data):
    try:
        AuthzMessage.parse(msg_type, data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(body=st.binary(min_size=0, max_size=120), flip=st.integers(0, 10_000))
def test_fuzz_valid_plaintexts_mutated(body, flip):
    for plain in (struct.pack("!QI", 1, 2) + bytes.fromhex(QUERY_HEX),
                  struct.pack("!QI", 1, 2) + bytes.fromhex(VERDICT_HEX)):
        b = bytearray(plain)
        b[flip % len(b)] ^= 1 + flip % 255
        for data in (bytes(b), plain[:flip % len(plain)] + body):
            for t in (sd.AUTHZ_REQUEST, sd.AUTHZ_ANSWER):
                try:
                    AuthzMessage.parse(t, data)
                except DecodeError:
                    pass


# ---- the two ends on simulated time ------------------------------------------------------

class Pair:
    def __init__(self, flows=FLOWS, max_lifetime=3600, **fw_kw):
        self.live = {}
        self.paa = AuthzPaaCore(AuthzConfig({FW: PSK}, flows=flows, max_lifetime=max_lifetime,
                                            authority="aaa.mip6bench.example"),
                                rng=random.Random(1), live=lambda sid: self.live.get(sid, True))
        self.fw = AuthzFwCore(AuthzConfig({PAA: PSK}, **fw_kw), rng=random.Random(2))
        self.now = 100.0

    def open(self, sid=7, nai=NAI, hoa=HOA, coa=COA, lifetime=3600):
        assert self.paa.session_open(sid, nai, hoa, coa, lifetime, self.now) == []

    def ask(self, q, request_id=1):
        out = self.fw.request(request_id, q, self.now)
        return self.deliver(out)

    def deliver(self, fw_actions, lose_request=False):
        answers = []
        for t in tx(fw_actions):
            assert (t.dst, t.port) == (PAA, az.AUTHZ_PORT)
            if lose_request:
                continue
            answers += self.paa.receive(t.data, FW, 40001, self.now)
        out = list(fw_actions)
        for t in tx(answers):
            assert (t.dst, t.port) == (FW, 40001)
            out += self.fw.receive(t.data, PAA, az.AUTHZ_PORT, self.now)
        return out

    def decide(self, q, request_id=1) -> AuthzDecision:
        (d,) = decisions(self.ask(q, request_id))
        return d


def test_allowed_from_the_care_of_and_the_home_address_with_the_session_s_identity():
    p = Pair()
    p.open()
    d = p.decide(query())                                             # CoTI from the CoA
    assert d.allowed and d.code == az.OK and d.nai == NAI
    assert d.authority == "aaa.mip6bench.example" and d.max_lifetime == 3600
    assert "care-of address" in d.reason
    d = p.decide(query(source=HOA, mh_type=1), 2)                    # HoTI via the HA
    assert d.allowed and "home address" in d.reason
    d = p.decide(query(protocol=17, mip6_kind=az.MIP6_HAO, mh_type=0, home_address=HOA,
                       destination_port=5001, source_port=4000), 3)  # data with HAO
    assert d.allowed
    d = p.decide(query(source=CN, destination=COA, protocol=17, mip6_kind=az.MIP6_RH2,
                       mh_type=0, home_address=HOA, source_port=5001), 4)   # CN -> MN, RH2
    assert d.allowed and d.nai == NAI
    assert p.paa.counters["allowed"] == 4 and p.fw.counters["allowed"] == 4


@pytest.mark.parametrize("q, code, text", [
    (query(source="2001:db8:11::999"), az.UNKNOWN_SOURCE, "neither the home nor"),
    (query(home_address="2001:db8:1::2002"), az.ADDRESS_MISMATCH, "home address"),
    (query(requester="2001:db8:11::999"), az.ADDRESS_MISMATCH, "requester"),
    (query(destination="2001:db8:3::10"), az.FLOW_NOT_AUTHORIZED, "not within"),
    (query(protocol=6, mip6_kind=az.MIP6_NONE, mh_type=0, destination_port=5001),
     az.FLOW_NOT_AUTHORIZED, "protocol 6"),
    (query(protocol=17, mip6_kind=az.MIP6_NONE, mh_type=0, destination_port=5002),
     az.FLOW_NOT_AUTHORIZED, "port 5002"),
    (query(protocol=17, mip6_kind=az.MIP6_NONE, mh_type=0, destination_port=5001,
           sub_ports=1), az.FLOW_NOT_AUTHORIZED, "port 5002"),     # 5001 yes, 5002 no
    (query(protocol=0, mip6_kind=az.MIP6_NONE, mh_type=0), az.FLOW_NOT_AUTHORIZED,
     "protocol 0"),                                                 # "any" needs "any"
    (query(source=CN, destination=HOA, protocol=17, mip6_kind=az.MIP6_RH2, mh_type=0,
           home_address="2001:db8:1::2002"), az.ADDRESS_MISMATCH, "home address"),
])
def test_denials_name_their_reason(q, code, text):
    p = Pair()
    p.open()
    d = p.decide(q)
    assert not d.allowed and d.code == code and text in d.reason and d.max_lifetime is None
    assert p.paa.counters[f"denied: {az.CODE_NAMES[code]}"] == 1


def test_a_handover_moves_the_authorization_to_the_new_care_of_address():
    p = Pair()
    p.open()
    p.paa.session_moved(7, COA2)
    assert p.decide(query(), 1).code == az.UNKNOWN_SOURCE
    assert p.decide(query(source=COA2), 2).allowed
    assert p.decide(query(source=HOA, mh_type=1), 3).allowed
    p.paa.session_closed(7)
    assert p.decide(query(source=COA2), 4).code == az.UNKNOWN_SOURCE
    assert p.paa._by_address == {}


def test_expired_and_closing_sessions_are_refused_and_lifetime_ends_with_the_session():
    p = Pair(max_lifetime=7200)
    p.open(lifetime=600)
    assert p.decide(query()).max_lifetime == 600
    p.now += 599.4
    assert p.decide(query(), 2).code == az.SESSION_EXPIRED          # under a second left
    p.now += 1
    d = p.decide(query(), 3)
    assert d.code == az.SESSION_EXPIRED and d.nai == NAI
    p.open(lifetime=600)                                              # re-authenticated
    assert p.decide(query(), 4).max_lifetime == 600
    p.live[7] = False                                                 # PAA: terminating
    assert p.decide(query(), 5).code == az.SESSION_NOT_OPEN
    # A newer session of the same address (the MN restarted) is preferred.
    p.now += 1
    p.open(sid=8, lifetime=100)
    d = p.decide(query(), 6)
    assert d.allowed and d.max_lifetime == 100 and "session 8" in d.reason


def test_retransmission_then_answer_and_give_up_when_the_paa_is_silent():
    p = Pair(irt=0.5, mrc=2)
    p.open()
    out = p.fw.request(1, query(), p.now)
    assert p.deliver(out, lose_request=True) == out                   # lost
    (timer,) = [a for a in out if isinstance(a, StartTimer)]
    assert timer.at == p.now + 0.5
    p.now = timer.at
    again = p.fw.handle_timer(timer.key, p.now)
    assert [a.at for a in again if isinstance(a, StartTimer)] == [p.now + 1.0]
    done = p.deliver(again)
    (d,) = decisions(done)
    assert d.allowed and StopTimer(timer.key) in done
    (event,) = [a for a in done if isinstance(a, Event) and a.name == "authz.decision"]
    assert event.fields["attempts"] == 2 and event.fields["rtt_ms"] == 500.0
    assert p.fw.handle_timer(timer.key, p.now + 5) == []             # answered: no more
    # Silent PAA: 1 + mrc sends, then a local denial.
    out = p.fw.request(2, query(), p.now)
    sends, key = len(tx(out)), timer.key[:2] + (next(
        a.key[2] for a in out if isinstance(a, StartTimer)),)
    while True:
        p.now += 10
        more = p.fw.handle_timer(key, p.now)
        sends += len(tx(more))
        if decisions(more):
            break
    (d,) = decisions(more)
    assert sends == 3 and not d.allowed and d.code == az.UNREACHABLE and p.fw.pending_count == 0


def test_a_retransmitted_request_is_answered_from_the_cache_without_deciding_again():
    p = Pair()
    p.open()
    out = p.fw.request(1, query(), p.now)
    first = p.paa.receive(tx(out)[0].data, FW, 40001, p.now)
    p.paa.session_closed(7)                          # would now be denied
    (timer,) = [a for a in out if isinstance(a, StartTimer)]
    again = tx(p.fw.handle_timer(timer.key, p.now + 0.5))
    second = p.paa.receive(again[0].data, FW, 40001, p.now + 0.5)
    assert p.paa.counters["repeated request answered"] == 1 and p.paa.counters["requests"] == 2
    assert p.paa.counters["answers"] == 2
    assert not [a for a in second if isinstance(a, Event)]          # no second decision
    (d,) = decisions(p.fw.receive(tx(second)[0].data, PAA, az.AUTHZ_PORT, p.now + 0.5))
    assert d.allowed                                                  # the cached answer
    assert p.fw.receive(tx(first)[0].data, PAA, az.AUTHZ_PORT, p.now + 0.6)[0].fields[
        "reason"] == "answer to no pending request"


def test_replays_forgeries_strangers_and_old_datagrams_are_dropped_and_counted():
    p = Pair()
    p.open()
    out = p.fw.request(1, query(), p.now)
    data = tx(out)[0].data
    assert tx(p.paa.receive(data, FW, 40001, p.now))
    assert p.paa.receive(data, FW, 40001, p.now) == [Event("authz.drop", {
        "role": "paa", "reason": "replayed sequence number", "src": FW})]
    forger = AuthzFwCore(AuthzConfig({PAA: bytes(32)}), rng=random.Random(99))
    bad = tx(forger.request(1, query(), p.now))[0].data
    assert p.paa.receive(bad, FW, 40001, p.now)[0].fields["reason"] == "authentication failed"
    assert p.paa.receive(data, "2001:db8:66::1", 40001, p.now)[0].fields["reason"] == \
        "unknown peer"
    late = tx(p.fw.request(2, query(), p.now))[0].data
    assert p.paa.receive(late, FW, 40001, p.now + 31)[0].fields["reason"] == \
        "timestamp outside the window"
    flipped = bytearray(tx(p.fw.request(3, query(), p.now))[0].data)
    flipped[-1] ^= 1
    assert p.paa.receive(bytes(flipped), FW, 40001, p.now)[0].fields["reason"] == \
        "authentication failed"
    # A datagram in the HA's role (2) from the firewall's address is not for this core.
    ha_role = b"\x01\x01\x02\x00" + bytes(8) + struct.pack("!Q", 1) + bytes(40)
    assert p.paa.receive(ha_role, FW, 1, p.now)[0].fields["reason"] == "wrong sender role"
    assert p.paa.counters["requests"] == 1
    assert sum(v for k, v in p.paa.counters.items() if k.startswith("drop: ")) == 6


def test_a_transaction_id_reused_for_another_question_is_dropped():
    p = Pair()
    p.open()
    out = p.fw.request(1, query(), p.now)
    p.paa.receive(tx(out)[0].data, FW, 40001, p.now)
    txid = next(a.key[2] for a in out if isinstance(a, StartTimer))
    other = AuthzMessage(sd.AUTHZ_REQUEST, txid, p.fw._wall_ms(p.now),
                         query=query(destination="2001:db8:2::11"))
    data = p.fw._seal(PAA, other, az.AUTHZ_PORT).data
    assert p.paa.receive(data, FW, 40001, p.now)[0].fields["reason"] == \
        "transaction id reused for another question"


def test_bounds_pending_requests_answer_cache_and_session_table():
    p = Pair(max_pending=3)
    for rid in range(3):
        assert tx(p.fw.request(rid, query(), p.now))
    (busy,) = decisions(p.fw.request(99, query(), p.now))
    assert busy.code == az.BUSY and not busy.allowed and p.fw.pending_count == 3
    assert p.fw.request(1, query(), p.now)[0].name == "authz.duplicate"
    assert p.fw.cancel(1) and p.fw.pending_count == 2 and p.fw.cancel(1) == []
    paa = AuthzPaaCore(AuthzConfig({FW: PSK}, max_answers=5, max_sessions=2),
                       rng=random.Random(3))
    fw = AuthzFwCore(AuthzConfig({PAA: PSK}, max_pending=100), rng=random.Random(4))
    for rid in range(20):
        for t in tx(fw.request(rid, query(), 0.0)):
            paa.receive(t.data, FW, 40001, 0.0)
    assert len(paa._answers) == 5 and paa.counters["requests"] == 20
    paa.session_open(1, "a", None, COA, 10, 0.0)
    paa.session_open(2, "b", None, COA2, 10, 0.0)
    assert paa.session_open(3, "c", None, "2001:db8:13::1", 10, 1.0)[0].fields["reason"] == \
        "session table full"
    assert paa.session_open(3, "c", None, "2001:db8:13::1", 10, 11.0) == []  # expired gone
    assert sorted(paa.sessions) == [3]


def test_config_refuses_short_keys_and_empty_allowances():
    with pytest.raises(ValueError, match="PSK"):
        AuthzConfig({FW: b"short"})
    with pytest.raises(ValueError, match="no flow"):
        AuthzConfig({FW: PSK}, flows=())
    with pytest.raises(ValueError, match="authority"):
        AuthzConfig({FW: PSK}, authority="has space")
    with pytest.raises(ValueError, match="MH type"):
        AuthzQuery(COA, CN, 17, mh_type=1)
    assert Flow(135, "2001:db8:2::/64") in FLOWS


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), role=st.sampled_from([1, 2, 3]),
       msg_type=st.integers(0, 8))
def test_fuzz_datagrams_into_both_ends_never_crash(data, role, msg_type):
    p = Pair()
    p.open()
    framed = bytes([1, msg_type, role, 0]) + data
    for raw in (data, framed):
        for out in (p.paa.receive(raw, FW, 1, p.now), p.fw.receive(raw, PAA, 7716, p.now)):
            assert all(isinstance(a, Event) and a.name == "authz.drop" for a in out)


def test_mip6_kinds_match_the_natfw_flow_object():
    from mip6bench.natfw import wire as w
    assert (az.MIP6_MH, az.MIP6_HAO, az.MIP6_RH2) == (w.MIP6_MH, w.MIP6_HAO, w.MIP6_RH2)


# ---- the PAA service answers from real PANA sessions ------------------------------------------

def test_paa_service_answers_from_its_live_pana_sessions_and_follows_a_handover():
    from tests.unit.bootstrap_harness import PAA as H_PAA
    from tests.unit.bootstrap_harness import USERS, BootstrapNet, pac_address

    fw_core = AuthzFwCore(AuthzConfig({H_PAA: PSK}), rng=random.Random(5))
    net = BootstrapNet(backend="local", session_lifetime=900,
                       authz=AuthzConfig({FW: PSK}, flows=FLOWS, max_lifetime=3600))
    fw = net._add("fw", FW, lambda d, s, sp, dp, now: fw_core.receive(d, s, sp, now),
                  fw_core.handle_timer)
    net.add_pac("pac1", 1)

    def ask(q, rid):
        net.call("fw", fw_core.request, rid, q, net.now)
        net.run(until=net.now + 1)
        return [d for d in fw.effects(AuthzDecision) if d.request_id == rid][-1]

    coa = pac_address(1)
    assert ask(query(source=coa), 1).code == az.UNKNOWN_SOURCE        # before PANA
    net.start_pac("pac1")
    net.run(until=5.0)
    (session,) = net.paa.paa.sessions.values()
    hoa = USERS[0].hoa
    assert session.hoa == hoa and session.peer.address == coa
    d = ask(query(source=coa, home_address=hoa), 2)
    assert d.allowed and d.nai == NAI and 895 <= d.max_lifetime <= 900
    assert ask(query(source=hoa, mh_type=1), 3).allowed
    # Handover: the PaC pings from a new address; only the AUTH-verified move counts.
    node = net.nodes["pac1"]
    del net.by_address[node.address]
    node.address = new = "2001:db8:12::101"
    net.by_address[new] = node
    net.call("pac1", net.pacs["pac1"].ping, net.now)
    net.run(until=net.now + 1)
    assert ask(query(source=coa), 4).code == az.UNKNOWN_SOURCE
    assert ask(query(source=new), 5).allowed
    # Terminated: nothing is authorized any more.
    (sid,) = net.paa.paa.sessions
    net.call("paa", net.paa.terminate, sid, net.now)
    net.run(until=net.now + 0.001)          # PTR sent, PTA not yet back: terminating
    assert ask(query(source=new), 6).code == az.SESSION_NOT_OPEN
    net.run(until=net.now + 2)
    assert ask(query(source=new), 7).code == az.UNKNOWN_SOURCE
    assert net.paa.authz.counters["requests"] == 7 and net.paa.authz.counters["allowed"] == 3
