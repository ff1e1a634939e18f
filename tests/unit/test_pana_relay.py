"""RFC 6345 relay: PRY codec, the relay element, and PaC <-> PRE <-> PAA exchanges."""
import ipaddress
import random

import pytest

from mip6bench.pana import PaaConfig, PaaCore, PaaState, PacConfig, PacCore, PacState
from mip6bench.pana import effects as fx
from mip6bench.pana import message as m
from mip6bench.pana import mip6
from mip6bench.pana.channel import describe
from mip6bench.pana.relay import RelayCore
from mip6bench.sansio import Transmit

from .test_pana_harness import HA, NAI, PAA, PAC, PRE, PSK, ScriptedAAA, ScriptedPeer, Sim

PCI = m.Message(m.PCI, 0, 0, 0).encode()


def test_pry_vector():
    # PRY: flags 0, type 5, session 0, seq 0; PaC-Information (IPv6 + port 716, 18 bytes
    # + 2 padding); Relayed-Message holding a 16-byte PCI. 16 + 28 + 24 = 68 bytes.
    expected = bytes.fromhex(
        "0000 0044 0000 0005 00000000 00000000"
        "000a 0000 0012 0000 20010db8000f00000000000000000010 02cc 0000"
        "000b 0000 0010 0000 0000001000000001 0000000000000000".replace(" ", ""))
    pry = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                       m.relayed_message_avp(PCI)))
    assert pry.encode() == expected
    out = m.decode_message(expected)
    assert out.pac_information == m.PacInformation(PAC, 716) and out.relayed_message == PCI


def test_relay_element_wraps_and_unwraps():
    pre = RelayCore(PAA)
    (tx, event) = pre.receive(PCI, PAC, 0.0, port=40000)
    assert isinstance(tx, Transmit) and tx.dst == PAA and tx.port == 716
    pry = m.decode_message(tx.data)
    assert pry.type == m.RELAY and pry.pac_information == m.PacInformation(PAC, 40000)
    assert pry.relayed_message == PCI
    assert event.fields["direction"] == "to_paa"
    back = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 40000),
                                        m.relayed_message_avp(b"\0\0\0\x10\xc0\0\0\2" + b"\0" * 8)))
    (tx, _) = pre.receive(back.encode(), PAA, 0.1)
    assert (tx.dst, tx.port) == (PAC, 40000) and m.decode_message(tx.data).name == "PAR"
    assert pre.counters == {"relayed to PAA": 1, "relayed to PaC": 1}


def test_relay_element_drops_what_it_must_not_relay():
    pre = RelayCore(PAA)
    pry = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                       m.relayed_message_avp(PCI))).encode()
    nested = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                          m.relayed_message_avp(pry))).encode()
    bad_inner = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                             m.relayed_message_avp(b"\1" * 16))).encode()
    for data, src in ((pry, "2001:db8::bad"), (PCI, PAA), (nested, PAA), (bad_inner, PAA),
                      (b"junk", PAC)):
        (event,) = pre.receive(data, src, 0.0)
        assert event.name == "pana.drop"
    assert pre.counters == {"relay from a non-PAA": 1, "unexpected message": 1,
                            "nested relay": 1, "malformed": 2}


def relayed_sim(paa_config=None, pac_request=0, relays=(PRE,)):
    config = paa_config or PaaConfig()
    config.relays = relays
    sim = Sim()
    sim.add(PAA, PaaCore(config, rng=random.Random(1)), ScriptedAAA({NAI: PSK}))
    sim.add(PRE, RelayCore(PAA))
    cfg = PacConfig(paa_address=PRE, new_eap_peer=lambda: ScriptedPeer(NAI, PSK), nai=NAI,
                    mip6_request=pac_request)
    pac = sim.add(PAC, PacCore(cfg, rng=random.Random(2)))
    return sim, pac, sim.nodes[PAA]


def test_full_exchange_through_relay():
    policy = mip6.Mip6Policy(HA, "2001:db8:1::/64")
    sim, pac, paa = relayed_sim(PaaConfig(mip6=policy), mip6.REQUEST_ALL)
    sim.call(PAC, "start", 0.0)
    sim.run(until=1.0)
    assert pac.core.state == PacState.OPEN
    (session,) = paa.core.sessions.values()
    assert session.state == PaaState.OPEN
    assert session.peer.address == PAC and session.peer.relay == (PRE, 716)
    # PaC <-> PRE carries plain PANA, PRE <-> PAA only PRYs.
    assert set(sim.names(src=PAA)) == {"PRY"} and set(sim.names(dst=PAA)) == {"PRY"}
    assert sim.names(src=PAC) == ["PCI", "PAN[S]", "PAN", "PAN[C]"]
    assert sim.names(dst=PAC) == ["PAR[S]", "PAR", "PAR[C]"]
    assert pac.core.paa.address == PRE
    assert pac.effects(fx.MipSaEstablished) == paa.effects(fx.MipSaEstablished)
    # Life continues through the relay: ping both ways, re-auth, termination.
    for now, node, command, args in ((2.0, PAC, "ping", ()),
                                     (2.5, PAA, "ping", (session.session_id,)),
                                     (3.0, PAC, "reauthenticate", ())):
        sim.run(until=now)
        sim.call(node, command, *args, now)
    sim.run(until=4.0)
    assert len(pac.events("pana.ping_ok")) == 1 and len(paa.events("pana.ping_ok")) == 1
    assert len(pac.effects(fx.MipSaEstablished)) == 2
    sim.call(PAA, "terminate", session.session_id, 5.0)
    sim.run(until=6.0)
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions


@pytest.mark.parametrize("relays", [(), ("2001:db8:99::1",)])
def test_paa_accepts_relayed_messages_only_from_configured_relays(relays):
    """Issue 10, defect 7: a PRY's PaC-Information decides where the PAA's answers go, so
    one from anybody but a configured relay element is dropped and counted."""
    sim, pac, paa = relayed_sim(relays=relays)
    sim.call(PAC, "start", 0.0)
    sim.run(until=2.0)
    assert pac.core.state == PacState.DISCOVERING and not paa.core.sessions
    assert paa.core.counters["relay not configured"] >= 1
    assert not [name for name in sim.names(src=PAA)]      # nothing sent anywhere


def test_a_configured_relay_is_recognised_in_any_spelling():
    spelled = ipaddress.IPv6Address(PRE).exploded.upper()   # 2001:0DB8:000F:...
    sim, pac, paa = relayed_sim(relays=(spelled,))
    sim.call(PAC, "start", 0.0)
    sim.run(until=1.0)
    assert pac.core.state == PacState.OPEN


def test_paa_rejects_nested_and_broken_relays():
    paa = PaaCore(PaaConfig(relays=(PRE,)), rng=random.Random(1))
    inner_pry = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                             m.relayed_message_avp(PCI))).encode()
    nested = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                          m.relayed_message_avp(inner_pry))).encode()
    broken = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                          m.relayed_message_avp(b"\7" * 20))).encode()
    paa.receive(nested, PRE, 0.0)
    paa.receive(broken, PRE, 0.0)
    assert paa.counters == {"nested relay": 1, "malformed": 1} and not paa.sessions


def test_answers_go_back_through_the_relay_the_pac_used():
    paa = PaaCore(PaaConfig(relays=("192.0.2.1",)), rng=random.Random(9))
    pry = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp("192.0.2.10", 5000),
                                       m.relayed_message_avp(PCI))).encode()
    out = paa.receive(pry, "192.0.2.1", 0.0, port=716)
    (tx,) = [a for a in out if isinstance(a, Transmit)]
    assert (tx.dst, tx.port) == ("192.0.2.1", 716)
    wrapped = m.decode_message(tx.data)
    assert wrapped.pac_information == m.PacInformation("192.0.2.10", 5000)
    assert describe(m.decode_message(wrapped.relayed_message)) == "PAR[S]"


def test_relay_element_relays_only_what_was_sent_to_it():
    """A PCI to the discovery group is the Router Alert forwarders' job, not the PRE's:
    relaying it too would give the PAA two sessions for one PCI."""
    pre = RelayCore(PAA)
    (event,) = pre.receive(PCI, PAC, 0.0, dst="ff05::8000:716")
    assert event.name == "pana.drop" and event.fields["reason"] == "not addressed to the PRE"
    assert event.fields["dst"] == "ff05::8000:716" and event.fields["message"] == "PCI"
    for dst in (PRE, "fe80::1%eth0", None):          # unicast, or unknown: relayed
        tx, _ = pre.receive(PCI, PAC, 0.0, dst=dst)
        assert isinstance(tx, Transmit) and tx.dst == PAA
    # PRYs from the PAA are unaffected by the destination check.
    back = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(PAC, 716),
                                        m.relayed_message_avp(PCI))).encode()
    assert isinstance(pre.receive(back, PAA, 0.1, dst=PRE)[0], Transmit)
    assert pre.counters == {"not addressed to the PRE": 1, "relayed to PAA": 3,
                            "relayed to PaC": 1}


def capture_to_pac(sim, name):
    """A sim filter that takes the first `name` message to the PaC off the wire."""
    taken = []

    def take(src, dst, data):
        if not taken and dst == PAC and describe(m.decode_message(data)) == name:
            taken.append(data)
            return None
        return data
    sim.filter = take
    return taken


def open_relayed():
    policy = mip6.Mip6Policy(HA, "2001:db8:1::/64")
    sim, pac, paa = relayed_sim(PaaConfig(mip6=policy), mip6.REQUEST_ALL)
    sim.call(PAC, "start", 0.0)
    sim.run(until=1.0)
    assert pac.core.state == PacState.OPEN
    return sim, pac, paa


PRE_OTHER = "2001:db8:ff:12::2"   # another address of the PRE (its core side)


def test_pac_follows_an_authenticated_answer_from_another_address_of_its_relay():
    """After a handover the PRE answers a PaC off its link from the address its route
    selects; the answer's AUTH proves it comes from the PAA, so the PaC follows it (RFC
    5191's peer-address update, as the PAA does for the PaC). Before that, anything from
    that address that fails AUTH changes nothing."""
    sim, pac, paa = open_relayed()
    taken = capture_to_pac(sim, "PNA[P]")
    sim.call(PAC, "ping", 2.0)
    sim.run(until=2.5)
    (pna,) = taken
    sim.filter = None
    forged = pna[:-1] + bytes([pna[-1] ^ 1])
    assert pac.core.receive(forged, PRE_OTHER, 2.6)[0].fields["reason"] == "bad AUTH"
    assert pac.core.paa.address == PRE
    actions = pac.core.receive(pna, PRE_OTHER, 2.6)
    names = [a.name for a in actions if hasattr(a, "name")]
    assert names == ["pana.paa_address_changed", "pana.ping_ok"]
    assert actions[0].fields == {"old": PRE, "new": PRE_OTHER, "port": 716,
                                 "why": "verified message", "session_id": pac.core.session_id,
                                 "role": "pac"}
    assert pac.core.paa.address == PRE_OTHER
    (tx,) = [a for a in pac.core.ping(3.0) if isinstance(a, Transmit)]
    assert tx.dst == PRE_OTHER           # the PaC talks to where the PAA's answer came from


def test_pac_answers_an_authenticated_request_from_a_new_address_there():
    sim, pac, paa = open_relayed()
    (session,) = paa.core.sessions.values()
    taken = capture_to_pac(sim, "PNR[P]")
    sim.call(PAA, "ping", session.session_id, 2.0)
    sim.run(until=2.5)
    (pnr,) = taken
    sim.filter = None
    out = pac.core.receive(pnr, PRE_OTHER, 2.6)
    (tx,) = [a for a in out if isinstance(a, Transmit)]
    assert tx.dst == PRE_OTHER and describe(m.decode_message(tx.data)) == "PNA[P]"
    # The same request again from yet another address: a retransmission moves nothing.
    out = pac.core.receive(pnr, "2001:db8:66::1", 2.7)
    assert out[0].fields["reason"] == "unexpected source" and pac.core.paa.address == PRE_OTHER


def test_unauthenticated_messages_from_another_address_are_dropped_before_the_sa():
    sim, pac, paa = make_handshaking()
    par = [data for _, s, d, data in sim.wire if d == PAC
           and describe(m.decode_message(data)) == "PAR[S]"][0]
    out = pac.core.receive(par, PRE_OTHER, 0.5)
    assert out[0].fields["reason"] == "unexpected source" and pac.core.paa.address == PRE


def make_handshaking():
    sim, pac, paa = relayed_sim()
    sim.aaa_hold = True
    sim.call(PAC, "start", 0.0)
    sim.run(until=0.2)
    assert pac.core.sa is None and pac.core.state == PacState.AUTHENTICATING
    return sim, pac, paa


def test_pac_moves_to_the_paa_directly_and_the_paa_follows():
    """The PaC moved to a network without a PRE: told to, it pings the PAA itself; the
    PAA follows the AUTH-verified ping from the relay to the direct path."""
    sim, pac, paa = open_relayed()
    (session,) = paa.core.sessions.values()
    new_address = "2001:db8:e::10"
    sim.nodes[new_address] = sim.nodes[PAC]           # the PaC's CoA changed too (its
    # timers stay filed under the old address in this simulator)
    sim.apply(new_address, pac.core.ping(2.0, paa=PAA))
    sim.run(until=3.0)
    assert pac.events("pana.paa_address_changed")[-1].fields["why"] == "moved"
    assert pac.core.paa.address == PAA and pac.events("pana.ping_ok")
    assert session.peer.address == new_address and session.peer.relay is None
    changed = paa.events("pana.pac_address_changed")[-1].fields
    assert changed["new"] == new_address
    # From now on PAA and PaC talk directly: a PAA ping goes to the PaC, not the PRE.
    sim.call(PAA, "ping", session.session_id, 4.0)
    sim.run(until=5.0)
    assert sim.names(src=PAA)[-1] == "PNR[P]" and sim.names(dst=new_address)[-1] == "PNR[P]"
    assert sim.names(dst=PAA)[-1] == "PNA[P]" and paa.events("pana.ping_ok")


def test_a_ping_to_a_new_agent_replaces_one_still_outstanding():
    sim, pac, paa = open_relayed()
    sim.filter = lambda src, dst, data: None if dst == PRE else data   # old PRE unreachable
    sim.call(PAC, "ping", 2.0)
    assert pac.core.ping(2.1) == []                   # one ping at a time...
    sim.run(until=2.2)
    sim.apply(PAC, pac.core.ping(2.2, paa=PAA))       # ...unless it goes somewhere new
    sim.run(until=3.0)
    assert pac.events("pana.ping_ok") and pac.core.paa.address == PAA
    assert pac.core.ping(3.0, paa=PAA)[0].dst == PAA  # same agent: a plain ping


def test_pac_closes_when_nobody_answers_at_the_new_agent():
    sim, pac, paa = relayed_sim()
    sim.call(PAC, "start", 0.0)
    sim.run(until=1.0)
    sim.apply(PAC, pac.core.ping(2.0, paa="2001:db8:dead::1"))   # nobody there
    sim.run(until=400.0)
    assert pac.core.state == PacState.CLOSED
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "PAA unreachable"


# ---- PaC, PRE and PAA on one host -------------------------------------------------------
# Traffic is told apart by message type and by the socket it came in on, never by the
# source address alone: everything below has the same address.

HOST = "::1"
PAA_PORT, PRE_PORT, PRE_PAA_SIDE, PAC_PORT = 7160, 7170, 40001, 40002


def test_relay_on_the_paas_host_relays_a_pac_of_that_host():
    pre = RelayCore(HOST, PAA_PORT)
    (tx, _) = pre.receive(PCI, HOST, 0.0, port=PAC_PORT, dst=HOST, via="pac")
    assert (tx.dst, tx.port, tx.via) == (HOST, PAA_PORT, "paa")
    assert m.decode_message(tx.data).pac_information == m.PacInformation(HOST, PAC_PORT)
    back = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(HOST, PAC_PORT),
                                        m.relayed_message_avp(PCI))).encode()
    (tx, _) = pre.receive(back, HOST, 0.1, port=PAA_PORT, via="paa")
    assert (tx.dst, tx.port, tx.via) == (HOST, PAC_PORT, "pac")
    assert pre.counters == {"relayed to PAA": 1, "relayed to PaC": 1}


def test_relay_tells_the_paa_from_a_pac_by_port_and_socket():
    pre = RelayCore("0:0:0:0:0:0:0:1", PAA_PORT)           # any spelling of the address
    pry = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp(HOST, PAC_PORT),
                                       m.relayed_message_avp(PCI))).encode()
    cases = [
        (PCI, PAA_PORT, "pac", "unexpected message"),      # the PAA's own PANA endpoint
        (PCI, PAC_PORT, "paa", "PaC message on the PAA side"),
        (pry, PAC_PORT, "pac", "relay from a non-PAA"),    # same address, not the PAA
        (pry, PAC_PORT, "paa", "relay from a non-PAA"),
    ]
    for data, port, via, reason in cases:
        (event,) = pre.receive(data, HOST, 0.0, port=port, via=via)
        assert event.name == "pana.drop" and event.fields["reason"] == reason, (port, via)
    assert sum(pre.counters.values()) == 4
    with pytest.raises(ValueError):
        pre.receive(PCI, HOST, 0.0, via="elsewhere")


def test_full_exchange_with_pac_relay_and_paa_on_one_host():
    """PaC -> PRE (port 7170) -> PAA (port 7160), all at ::1: the PaC is pointed at the
    PRE's port, the PRE talks to the PAA from a socket of its own, and the PAA lists the
    host's own address as a relay element."""
    paa = PaaCore(PaaConfig(relays=(HOST,)), rng=random.Random(1))
    pre = RelayCore(HOST, PAA_PORT)
    pac = PacCore(PacConfig(paa_address=HOST, paa_port=PRE_PORT, new_eap_peer=lambda: ScriptedPeer(
        NAI, PSK), nai=NAI), rng=random.Random(2))
    aaa = ScriptedAAA({NAI: PSK})
    # (port) -> (what listens there, how it is called); every datagram is from/to ::1
    endpoints = {PAA_PORT: lambda d, sport, now: paa.receive(d, HOST, now, sport),
                 PRE_PORT: lambda d, sport, now: pre.receive(d, HOST, now, sport, dst=HOST,
                                                             via="pac"),
                 PRE_PAA_SIDE: lambda d, sport, now: pre.receive(d, HOST, now, sport,
                                                                 via="paa"),
                 PAC_PORT: lambda d, sport, now: pac.receive(d, HOST, now, sport)}
    wire = []

    def source_port(who, tx):
        if who == "pre":
            return PRE_PAA_SIDE if tx.via == "paa" else PRE_PORT
        return {"paa": PAA_PORT, "pac": PAC_PORT}[who]

    queue = [("pac", a) for a in pac.start(0.0)]
    now = 0.0
    for _ in range(200):
        if not queue:
            break
        who, action = queue.pop(0)
        if isinstance(action, fx.SendToAAA):
            kind, eap_payload, msk, attrs = aaa.handle(action)
            queue += [("paa", a) for a in paa.aaa_result(action.session_id, kind, eap_payload,
                                                         msk, attrs, now)]
        elif isinstance(action, Transmit):
            assert action.dst == HOST
            sport = source_port(who, action)
            wire.append((sport, action.port, describe(m.decode_message(action.data))))
            now += 0.001
            receiver = {PAA_PORT: "paa", PRE_PORT: "pre", PRE_PAA_SIDE: "pre",
                        PAC_PORT: "pac"}[action.port]
            queue += [(receiver, a) for a in endpoints[action.port](action.data, sport, now)]
    assert pac.state == PacState.OPEN
    (session,) = paa.sessions.values()
    assert session.state == PaaState.OPEN and session.peer.relay == (HOST, PRE_PAA_SIDE)
    assert session.peer.address == HOST and session.peer.port == PAC_PORT
    assert {w for w in wire if PAA_PORT in w[:2]} == {(PRE_PAA_SIDE, PAA_PORT, "PRY"),
                                                      (PAA_PORT, PRE_PAA_SIDE, "PRY")}
    assert [w[2] for w in wire if w[0] == PAC_PORT] == ["PCI", "PAN[S]", "PAN", "PAN[C]"]
    assert not pre.counters.keys() - {"relayed to PAA", "relayed to PaC"}
