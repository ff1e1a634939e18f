"""The PAA's first EAP request: in PAR[S] or after the handshake (PaaConfig.eap_in_first_par),
and the "auto" fallback for a PaC that ignores a PAR[S] carrying an EAP-Payload and keeps
sending PCIs (OpenPANA's PaC does: it accepts only a PAR[S] without one)."""
from __future__ import annotations

import random

import pytest

from mip6bench.pana import PaaConfig, PaaCore, PaaState, PacState
from mip6bench.pana import message as m
from mip6bench.pana.channel import describe
from mip6bench.sansio import Event, Transmit

from .test_pana_harness import PAA, PAC, ZeroJitter, lose_first, make_pair

PCI = m.Message(m.PCI, 0, 0, 0).encode()


def ignore_eap_in_par_s(src, dst, data):
    """What OpenPANA's PaC does with a PAR[S] that carries an EAP-Payload: nothing."""
    msg = m.decode_message(data)
    if describe(msg) == "PAR[S]" and msg.eap_payload is not None:
        return None
    return data


def decoded(sim, src=None):
    return [m.decode_message(d) for _, s, _, d in sim.wire if src is None or s == src]


def test_a_pac_that_ignores_eap_in_par_s_gets_the_plain_handshake():
    sim, pac, paa = make_pair(rng_class=ZeroJitter)
    sim.filter = ignore_eap_in_par_s
    sim.call(PAC, "start", 0.0)
    sim.run(until=10.0)
    assert pac.core.state == PacState.OPEN
    (session,) = paa.core.sessions.values()
    assert session.state == PaaState.OPEN and not session.eap_in_start
    assert pac.core.sa.auth_key == session.channel.sa.auth_key
    # PCI at 0, 1 and 3 s (RFC 5191 PCI_IRT doubling); the PAR[S] with EAP and its
    # retransmissions went unanswered; the third PCI (the second repeat) brought the
    # plain PAR[S], then the EAP request came in the first PAR after the PAN[S].
    assert sim.sent_times(PAC, "PCI") == pytest.approx([0.0, 1.0, 3.0])
    par_s = [x for x in decoded(sim, PAA) if describe(x) == "PAR[S]"]
    optimized = [x for x in par_s if x.eap_payload is not None]
    (plain,) = [x for x in par_s if x.eap_payload is None]
    assert {x.session_id for x in optimized} == {optimized[0].session_id}
    assert plain.session_id == session.session_id != optimized[0].session_id
    # Its sequence number follows the ignored PAR[S]'s (OpenPANA's PaC insists on it).
    assert plain.seq == (optimized[0].seq + 1) % 2 ** 32
    plain_at = next(t for t, s, _, d in sim.wire
                    if s == PAA and m.decode_message(d).session_id == plain.session_id)
    assert plain_at == pytest.approx(3.01)
    after = [x for x in decoded(sim) if x.session_id == plain.session_id]
    assert [describe(x) for x in after[:3]] == ["PAR[S]", "PAN[S]", "PAR"]
    assert after[2].nonce is not None and after[2].eap_payload[4] == 1   # Identity
    assert paa.core.counters["PaC ignored EAP in PAR[S]"] == 1
    assert paa.core.counters["duplicate PCI"] == 1   # the first repeat
    (fallback,) = paa.events("pana.handshake_fallback")
    assert fallback.fields["plain_session"] == session.session_id
    assert fallback.fields["repeated_pcis"] == 2
    # The first handshake went with the second's PAN[S]: one session, no half-open slot.
    closed = paa.events("pana.session_closed")
    assert [e.fields["reason"] for e in closed] == ["the other handshake was answered"]
    assert paa.core._half_open_total == 0 and not paa.core._handshakes


def test_without_the_fallback_such_a_pac_never_gets_in():
    sim, pac, paa = make_pair(rng_class=ZeroJitter, paa_kwargs={"eap_in_first_par": "always"})
    sim.filter = ignore_eap_in_par_s
    sim.call(PAC, "start", 0.0)
    sim.run(until=30.0)
    assert pac.core.state == PacState.DISCOVERING
    assert paa.core.counters["duplicate PCI"] >= 2
    assert not paa.events("pana.handshake_fallback")


def test_a_remembered_pac_gets_the_plain_par_s_at_once():
    sim, pac, paa = make_pair(rng_class=ZeroJitter)
    sim.filter = ignore_eap_in_par_s
    sim.call(PAC, "start", 0.0)
    sim.run(until=10.0)
    sim.call(PAC, "terminate", 10.0)
    sim.run(until=11.0)
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions
    start = len(sim.wire)
    sim.call(PAC, "start", 20.0)
    sim.run(until=21.0)
    assert pac.core.state == PacState.OPEN
    again = [m.decode_message(d) for _, _, _, d in sim.wire[start:]]
    assert [describe(x) for x in again[:3]] == ["PCI", "PAR[S]", "PAN[S]"]
    assert again[1].eap_payload is None
    assert paa.core.counters["PaC ignored EAP in PAR[S]"] == 1


def test_a_conformant_pac_keeps_the_optimized_handshake():
    sim, pac, paa = make_pair(rng_class=ZeroJitter)
    sim.call(PAC, "start", 0.0)
    sim.run(until=1.0)
    assert pac.core.state == PacState.OPEN
    assert sim.names()[:3] == ["PCI", "PAR[S]", "PAN[S]"]
    assert decoded(sim, PAA)[0].eap_payload is not None
    assert not paa.events("pana.handshake_fallback") and not paa.core._plain_peers


def test_one_pci_crossing_a_lost_par_s_does_not_fall_back():
    sim, pac, paa = make_pair(rng_class=ZeroJitter)
    sim.filter = lose_first("PAR[S]")
    sim.call(PAC, "start", 0.0)
    sim.run(until=3.0)
    assert pac.core.state == PacState.OPEN
    assert paa.core.counters["duplicate PCI"] == 1
    assert not paa.events("pana.handshake_fallback")
    assert only(paa.core.sessions).eap_in_start


def only(sessions):
    (session,) = sessions.values()
    return session


def par_s_from(actions):
    return [m.decode_message(a.data) for a in actions if isinstance(a, Transmit)
            and describe(m.decode_message(a.data)) == "PAR[S]"]


def pan_s(par_s, eap_response: bytes | None = None) -> bytes:
    avps = [m.prf_algorithm_avp(par_s.prf_algorithms[0]),
            m.integrity_algorithm_avp(par_s.integrity_algorithms[0])]
    if eap_response is not None:
        avps.insert(0, m.eap_payload_avp(eap_response))
    return m.Message(m.AUTH, m.FLAG_S, par_s.session_id, par_s.seq, tuple(avps)).encode()


def test_the_first_par_s_answered_after_the_fallback_still_wins():
    # A PAR[S] with EAP that crossed the repeated PCIs may still be answered by a PaC
    # that accepted it: that handshake goes on and the plain one goes.
    paa = PaaCore(PaaConfig(), rng=random.Random(7))
    (first,) = par_s_from(paa.receive(PCI, PAC, 0.0))
    assert first.eap_payload is not None
    assert par_s_from(paa.receive(PCI, PAC, 1.0)) == []       # one repeat: a duplicate
    (plain,) = par_s_from(paa.receive(PCI, PAC, 3.0))          # two: the plain handshake
    assert plain.eap_payload is None and plain.session_id != first.session_id
    assert len(paa.sessions) == 2 and paa._half_open_total == 2
    identity = bytes([2, first.eap_payload[1], 0, 9, 1]) + b"mn1"
    identity = identity[:2] + len(identity).to_bytes(2, "big") + identity[4:]
    actions = paa.receive(pan_s(first, identity), PAC, 3.1)
    assert set(paa.sessions) == {first.session_id}
    assert paa.sessions[first.session_id].state == PaaState.WAIT_AAA
    assert paa._half_open_total == 0 and not paa._plain_peers
    closed = [a for a in actions if isinstance(a, Event) and a.name == "pana.session_closed"]
    assert [e.fields["session_id"] for e in closed] == [plain.session_id]
    # A late PAN[S] for the plain one finds nothing.
    paa.receive(pan_s(plain), PAC, 3.2)
    assert paa.counters["unknown session"] == 1


def test_the_first_handshake_stops_retransmitting_and_both_go_unanswered():
    paa = PaaCore(PaaConfig(), rng=random.Random(8))
    first = par_s_from(paa.receive(PCI, PAC, 0.0))[0]
    paa.receive(PCI, PAC, 1.0)
    actions = paa.receive(PCI, PAC, 3.0)
    stopped = [a for a in actions if getattr(a, "key", None) == ("pana-paa", "rtx",
                                                                  first.session_id)]
    assert stopped and all(type(a).__name__ == "StopTimer" for a in stopped)
    assert paa.handle_timer(("pana-paa", "rtx", first.session_id), 4.0) == []
    # The plain handshake's retransmissions give up; the first one goes with it.
    plain_sid = next(s for s in paa.sessions if s != first.session_id)
    now = 3.0
    for _ in range(10):
        deadline = paa.timers.deadlines.get(("pana-paa", "rtx", plain_sid))
        if deadline is None:
            break
        now = deadline
        paa.handle_timer(("pana-paa", "rtx", plain_sid), now)
    assert paa.sessions == {} and paa._half_open_total == 0 and not paa._half_open
    assert not paa._handshakes and not paa._plain_peers


def test_never_puts_no_eap_in_par_s_and_does_not_fall_back():
    paa = PaaCore(PaaConfig(eap_in_first_par="never"), rng=random.Random(9))
    (par,) = par_s_from(paa.receive(PCI, PAC, 0.0))
    assert par.eap_payload is None
    for t in (1.0, 3.0, 7.0):
        assert par_s_from(paa.receive(PCI, PAC, t)) == []
    assert paa.counters["duplicate PCI"] == 3 and len(paa.sessions) == 1


def test_the_remembered_pacs_are_bounded():
    paa = PaaCore(PaaConfig(plain_peers_max=3), rng=random.Random(10))
    for k in range(5):
        address = f"2001:db8:f::{k + 1:x}"
        paa.receive(PCI, address, 0.0)
        paa.receive(PCI, address, 1.0)
        (plain,) = par_s_from(paa.receive(PCI, address, 3.0))
        paa.receive(pan_s(plain), address, 3.1)
    assert list(paa._plain_peers) == [(f"2001:db8:f::{k:x}", None) for k in (3, 4, 5)]
    # Remembered by address: the same host from another port gets the plain PAR[S].
    (plain,) = par_s_from(paa.receive(PCI, "2001:db8:f::5", 4.0, port=40000))
    assert plain.eap_payload is None
    assert paa.counters["PaC ignored EAP in PAR[S]"] == 5


def test_the_fallback_respects_the_half_open_bounds():
    paa = PaaCore(PaaConfig(max_handshakes_per_source=1), rng=random.Random(11))
    paa.receive(PCI, PAC, 0.0)
    paa.receive(PCI, PAC, 1.0)
    assert par_s_from(paa.receive(PCI, PAC, 3.0)) == []
    assert paa.counters["too many handshakes from this address"] == 1
    assert len(paa.sessions) == 1


@pytest.mark.parametrize("bad", [{"eap_in_first_par": "sometimes"},
                                 {"fallback_after_pcis": 0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        PaaConfig(**bad)


def test_the_choice_is_an_option_of_the_paa_agent_and_a_testbed_setting():
    from agents import paa as paa_agent
    from mip6bench.errors import ParameterError
    from mip6bench.runtime.config import parse_options
    from mip6bench.testbed.bootstrap import BootstrapSettings

    base = {"address": "2001:db8:1::2", "ha_address": "2001:db8:1::1",
            "home_prefix": "2001:db8:1::/64"}
    assert parse_options(paa_agent.Options, base).eap_in_first_par == "auto"
    assert parse_options(paa_agent.Options, {**base, "eap_in_first_par": "never"}
                         ).eap_in_first_par == "never"
    assert BootstrapSettings().eap_in_first_par == "auto"
    assert BootstrapSettings(eap_in_first_par="always").eap_in_first_par == "always"
    with pytest.raises(ParameterError, match="choose auto, always or never"):
        BootstrapSettings(eap_in_first_par="sometimes")
