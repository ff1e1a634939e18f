"""RFC 6345 relay: PRY codec, the relay element, and PaC <-> PRE <-> PAA exchanges."""
import random

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


def relayed_sim(paa_config=None, pac_request=0):
    sim = Sim()
    sim.add(PAA, PaaCore(paa_config or PaaConfig(), rng=random.Random(1)),
            ScriptedAAA({NAI: PSK}))
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


def test_paa_can_refuse_relayed_messages():
    sim, pac, paa = relayed_sim(PaaConfig(accept_relay=False))
    sim.call(PAC, "start", 0.0)
    sim.run(until=2.0)
    assert pac.core.state == PacState.DISCOVERING and not paa.core.sessions
    assert paa.core.counters["relay not accepted"] >= 1


def test_paa_rejects_nested_and_broken_relays():
    paa = PaaCore(PaaConfig(), rng=random.Random(1))
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
    paa = PaaCore(PaaConfig(), rng=random.Random(9))
    pry = m.Message(m.RELAY, 0, 0, 0, (m.pac_information_avp("192.0.2.10", 5000),
                                       m.relayed_message_avp(PCI))).encode()
    out = paa.receive(pry, "192.0.2.1", 0.0, port=716)
    (tx,) = [a for a in out if isinstance(a, Transmit)]
    assert (tx.dst, tx.port) == ("192.0.2.1", 716)
    wrapped = m.decode_message(tx.data)
    assert wrapped.pac_information == m.PacInformation("192.0.2.10", 5000)
    assert describe(m.decode_message(wrapped.relayed_message)) == "PAR[S]"
