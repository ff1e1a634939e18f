"""Full PaC <-> PAA exchanges in memory with the scripted EAP double."""
import random

import pytest

from mip6bench.pana import PaaConfig, PaaCore, PaaState, PacConfig, PacCore, PacState
from mip6bench.pana import crypto as c
from mip6bench.pana import effects as fx
from mip6bench.pana import message as m
from mip6bench.pana.channel import describe
from mip6bench.pana.pac import TIMER_RTX
from mip6bench.sansio import Transmit

from .test_pana_harness import (NAI, PAA, PAC, PSK, ScriptedAAA, ScriptedPeer, Sim, ZeroJitter,
                                eap, lose_first, make_pair)


def open_pair(**kwargs):
    sim, pac, paa = make_pair(**kwargs)
    sim.call(PAC, "start", 0.0)
    sim.run(until=1.0)
    assert pac.core.state == PacState.OPEN
    return sim, pac, paa


def only_session(paa):
    (session,) = paa.core.sessions.values()
    return session


def wire_messages(sim, src=None):
    return [(t, s, d, m.decode_message(data)) for t, s, d, data in sim.wire
            if src is None or s == src]


def test_successful_authentication():
    sim, pac, paa = open_pair()
    assert sim.names() == ["PCI", "PAR[S]", "PAN[S]", "PAR", "PAN", "PAR[C]", "PAN[C]"]
    session = only_session(paa)
    assert session.state == PaaState.OPEN and session.nai == NAI
    assert pac.core.session_id == session.session_id != 0
    # Both ends derived the same PANA SA.
    assert pac.core.sa.auth_key == session.channel.sa.auth_key
    assert pac.core.sa.key_id == session.channel.sa.key_id
    assert (pac.core.sa.prf_alg, pac.core.sa.integrity_alg) == (c.PRF_HMAC_SHA1,
                                                                c.AUTH_HMAC_SHA1_160)
    msgs = [x[3] for x in wire_messages(sim)]
    pci, par_s, pan_s, par, pan, par_c, pan_c = msgs
    # I_PAR and I_PAN are the S-flagged messages as sent.
    assert pac.core._i_par == session.i_par == par_s.raw
    assert pac.core._i_pan == session.i_pan == pan_s.raw
    # PCI has sequence 0; PAA requests count up from a random start; answers echo.
    assert pci.seq == 0 and pci.session_id == 0
    assert par.seq == par_s.seq + 1 and par_c.seq == par_s.seq + 2
    assert [pan_s.seq, pan.seq, pan_c.seq] == [par_s.seq, par.seq, par_c.seq]
    # EAP-Request/Identity rides in PAR[S]; nonces in the first non-S PAR/PAN.
    assert par_s.eap_payload[0] == 1 and par_s.eap_payload[4] == 1
    assert par.nonce is not None and pan.nonce is not None and par_c.nonce is None
    assert par_s.prf_algorithms == [2, 5] and pan_s.prf_algorithms == [2]
    assert par_s.integrity_algorithms == [7, 12] and pan_s.integrity_algorithms == [7]
    # AUTH from the final PAR on, with the right key.
    assert [x.auth is not None for x in msgs] == [False] * 5 + [True, True]
    assert par_c.result_code == m.PANA_SUCCESS and par_c.session_lifetime == 3600
    assert par_c.key_id == pan_c.key_id == session.channel.sa.key_id
    assert c.verify(par_c, session.channel.sa.auth_key, c.AUTH_HMAC_SHA1_160)
    # Effects on both sides.
    (opened,) = pac.effects(fx.PanaSessionOpen)
    assert opened.peer == PAA and opened.key_id == pac.core.sa.key_id
    assert not opened.reauthentication and opened.lifetime == 3600
    assert paa.effects(fx.PanaSessionOpen)[0].peer == PAC
    assert [e.session_id for e in paa.effects(fx.SendToAAA)] == [session.session_id] * 2
    assert not pac.core.counters and not paa.core.counters


def test_pci_transmit_is_tagged_unicast():
    sim, pac, paa = make_pair()
    actions = sim.call(PAC, "start", 0.0)
    (tx,) = [a for a in actions if isinstance(a, Transmit)]
    assert tx.dst == PAA and tx.port == 716 and tx.discovery == "unicast"
    assert sim.call(PAC, "start", 0.0) == []   # already discovering


@pytest.mark.parametrize("pac_algs,expected", [
    (((2, 5), (7, 12)), (5, 12)),   # PAA preference order wins
    (((2,), (7,)), (2, 7)),
])
def test_algorithm_negotiation(pac_algs, expected):
    sim, pac, paa = open_pair(
        paa_kwargs={"prf_algorithms": (5, 2), "integrity_algorithms": (12, 7)},
        pac_kwargs={"prf_algorithms": pac_algs[0], "integrity_algorithms": pac_algs[1]})
    assert (pac.core.sa.prf_alg, pac.core.sa.integrity_alg) == expected
    assert only_session(paa).channel.sa.auth_key == pac.core.sa.auth_key
    assert len(pac.core.sa.auth_key) == c.INTEGRITY_ALGORITHMS[expected[1]].key_len


def test_no_common_algorithm_leaves_pac_discovering():
    sim, pac, paa = make_pair(paa_kwargs={"prf_algorithms": (5,)},
                              pac_kwargs={"prf_algorithms": (2,)})
    sim.call(PAC, "start", 0.0)
    sim.run(until=0.5)
    assert pac.core.state == PacState.DISCOVERING
    assert pac.core.counters["no common algorithm"] >= 1


def test_pac_rejects_bad_algorithm_answer_at_paa():
    # A PAN[S] choosing something the PAA never offered is dropped.
    paa = PaaCore(PaaConfig(prf_algorithms=(2,)), rng=random.Random(3))
    par_s = next(a for a in paa.receive(m.Message(m.PCI, 0, 0, 0).encode(), PAC, 0.0)
                 if isinstance(a, Transmit))
    req = m.decode_message(par_s.data)
    pan = m.Message(m.AUTH, m.FLAG_S, req.session_id, req.seq,
                    (m.prf_algorithm_avp(5), m.integrity_algorithm_avp(7))).encode()
    paa.receive(pan, PAC, 0.1)
    assert paa.counters["bad algorithm selection"] == 1
    assert only_session_state(paa) == PaaState.HANDSHAKE


def only_session_state(core):
    (session,) = core.sessions.values()
    return session.state


def test_eap_after_handshake_when_not_optimized():
    sim, pac, paa = open_pair(paa_kwargs={"eap_in_first_par": "never"})
    assert sim.names() == ["PCI", "PAR[S]", "PAN[S]", "PAR", "PAN", "PAR", "PAN", "PAR[C]",
                           "PAN[C]"]
    msgs = [x[3] for x in wire_messages(sim)]
    assert msgs[1].eap_payload is None and msgs[2].eap_payload is None
    assert msgs[3].nonce is not None and msgs[3].eap_payload[4] == 1   # Identity
    assert msgs[4].nonce is not None and msgs[5].nonce is None
    assert pac.core.sa.auth_key == only_session(paa).channel.sa.auth_key


def test_authentication_failure():
    sim, pac, paa = make_pair(pac_kwargs={"psk": b"wrong key 123456"})
    sim.call(PAC, "start", 0.0)
    sim.run(until=2.0)
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions
    par_c = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR[C]"][0]
    assert par_c.result_code == m.PANA_AUTHENTICATION_REJECTED
    assert par_c.auth is None and par_c.key_id is None and par_c.eap_payload[0] == 4
    assert sim.names()[-1] == "PAN[C]"
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "authentication rejected"
    assert paa.effects(fx.PanaSessionClosed)[0].reason == "authentication rejected"
    assert not pac.effects(fx.PanaSessionOpen) and not paa.effects(fx.PanaSessionOpen)


def test_unknown_user_is_rejected():
    sim, pac, paa = make_pair(users={})
    sim.call(PAC, "start", 0.0)
    sim.run(until=2.0)
    assert pac.core.state == PacState.CLOSED
    assert sim.names() == ["PCI", "PAR[S]", "PAN[S]", "PAR[C]", "PAN[C]"]


def test_authorization_rejected():
    seen = []
    sim, pac, paa = make_pair(paa_kwargs={"authorize": lambda nai, attrs: seen.append(
        (nai, attrs)) or False})
    sim.call(PAC, "start", 0.0)
    sim.run(until=2.0)
    assert seen == [(NAI, {"nai": NAI})]
    par_c = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR[C]"][0]
    assert par_c.result_code == m.PANA_AUTHORIZATION_REJECTED
    assert par_c.key_id is not None and par_c.auth is not None   # EAP succeeded: key exists
    pan_c = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAN[C]"][0]
    assert pan_c.auth is not None
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "authorization rejected"


def flip_last_byte_once(name):
    done = []

    def filt(src, dst, data):
        if not done and describe(m.decode_message(data)) == name:
            done.append(True)
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data
    return filt


def test_wrong_auth_is_silently_discarded():
    sim, pac, paa = make_pair(rng_class=ZeroJitter)
    sim.filter = flip_last_byte_once("PAR[C]")
    sim.call(PAC, "start", 0.0)
    sim.run(until=0.5)
    assert pac.core.state == PacState.AUTHENTICATING
    assert pac.core.counters["bad AUTH"] == 1
    assert sim.names(src=PAC)[-1] == "PAN"      # no answer to the forged PAR[C]
    sim.run(until=3.0)                          # the PAA retransmits the genuine PAR[C]
    assert pac.core.state == PacState.OPEN
    assert only_session(paa).state == PaaState.OPEN
    assert sim.names().count("PAR[C]") == 2


def signed(core_session_channel, msg_type, flags, avps, seq, key=None):
    ch = core_session_channel
    sa = ch.sa
    msg = m.Message(msg_type, flags, ch.session_id, seq, tuple(avps))
    return c.sign(msg, key or sa.auth_key, sa.integrity_alg)


def test_auth_required_once_sa_exists():
    sim, pac, paa = open_pair()
    ch = only_session(paa).channel
    seq = ch.next_seq
    unsigned = m.Message(m.NOTIFICATION, m.FLAG_R | m.FLAG_P, ch.session_id, seq).encode()
    assert not [a for a in pac.core.receive(unsigned, PAA, 2.0) if isinstance(a, Transmit)]
    forged = signed(ch, m.NOTIFICATION, m.FLAG_R | m.FLAG_P, [], seq, key=b"f" * 20)
    assert not [a for a in pac.core.receive(forged, PAA, 2.0) if isinstance(a, Transmit)]
    assert pac.core.counters["missing AUTH"] == 1 and pac.core.counters["bad AUTH"] == 1
    good = signed(ch, m.NOTIFICATION, m.FLAG_R | m.FLAG_P, [], seq)
    (answer,) = [a for a in pac.core.receive(good, PAA, 2.0) if isinstance(a, Transmit)]
    pna = m.decode_message(answer.data)
    assert describe(pna) == "PNA[P]" and pna.seq == seq
    assert c.verify(pna, ch.sa.auth_key, ch.sa.integrity_alg)


def test_sequence_numbers_replay_and_window():
    sim, pac, paa = open_pair()
    ch = only_session(paa).channel
    old_par = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR"][0]
    last_par_c = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR[C]"][0]
    # A replayed older request: wrong sequence number, dropped.
    assert pac.core.receive(old_par.raw, PAA, 2.0)[0].fields["reason"] == "bad sequence number"
    # Out of window (ahead): dropped even though correctly signed.
    ahead = signed(ch, m.NOTIFICATION, m.FLAG_R | m.FLAG_P, [], ch.next_seq + 5)
    assert pac.core.receive(ahead, PAA, 2.0)[0].fields["reason"] == "bad sequence number"
    # The last request again (a retransmission): the cached answer is sent again.
    actions = pac.core.receive(last_par_c.raw, PAA, 2.0)
    (tx,) = actions
    assert tx.data == sim.wire[-1][3]   # the PAN[C] sent before, byte for byte
    assert pac.core.counters["request retransmission answered"] == 1
    assert pac.core.counters["bad sequence number"] == 2
    # An answer that matches no outstanding request is dropped.
    stray = signed(ch, m.NOTIFICATION, m.FLAG_P, [], 12345)
    assert paa.core.receive(stray, PAC, 2.0)[0].fields["reason"] == "unexpected answer"


def test_lost_answer_is_resent_from_cache():
    sim, pac, paa = make_pair(rng_class=ZeroJitter)
    sim.filter = lose_first("PAN")
    sim.call(PAC, "start", 0.0)
    sim.run(until=3.0)
    assert pac.core.state == PacState.OPEN
    assert pac.core.counters["request retransmission answered"] == 1
    pans = [data for _, s, _, data in sim.wire if s == PAC
            and describe(m.decode_message(data)) == "PAN"]
    assert pans[0] == pans[1] == sim.filter.lost[0]


def test_retransmission_backoff_and_giving_up():
    sim, pac, paa = open_pair(rng_class=ZeroJitter)
    sim.filter = lambda src, dst, data: None      # the PAA vanishes
    t0 = 10.0
    sim.run(until=t0)
    sim.call(PAC, "terminate", t0)
    sim.run(until=t0 + 1000)
    times = [round(t - t0, 6) for t in sim.sent_times(PAC, "PTR")]
    # RT = 1, 2, 4, 8, 16, then capped at REQ_MRT 30; REQ_MRC = 10 retransmissions.
    assert times == [0, 1, 3, 7, 15, 31, 61, 91, 121, 151, 181]
    assert pac.core.state == PacState.CLOSED
    assert pac.core.counters["retransmission"] == 10


@pytest.mark.parametrize("call, name", [("ping", "PNR[P]"), ("reauthenticate", "PNR[A]")])
def test_pac_notification_gives_up_after_three_retransmissions(call, name):
    """A PAA that restarted has lost the session and drops the PaC's ping or re-auth
    request silently: the PaC gives up after PNR_RETRANSMIT (3 retransmissions, 15 s)
    rather than REQ_MRC's 10 (181 s), closes, and the runtime discovers again."""
    sim, pac, paa = open_pair(rng_class=ZeroJitter)
    sim.filter = lambda src, dst, data: None      # the PAA lost the session
    t0 = 10.0
    sim.run(until=t0)
    sim.call(PAC, call, t0)
    sim.run(until=t0 + 1000)
    times = [round(t - t0, 6) for t in sim.sent_times(PAC, name)]
    assert times == [0, 1, 3, 7]
    assert pac.core.state == PacState.CLOSED
    (closed,) = pac.effects(fx.PanaSessionClosed)
    assert closed.reason == "PAA unreachable"
    assert pac.events("pana.session_closed")[-1].fields["reason"] == "PAA unreachable"


def test_retransmission_jitter_is_bounded():
    sim, pac, paa = open_pair(rng_class=random.Random, seed=7)
    sim.filter = lambda src, dst, data: None
    sim.run(until=10.0)
    sim.call(PAC, "terminate", 10.0)
    sim.run(until=1000)
    times = sim.sent_times(PAC, "PTR")
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 10
    assert 0.9 <= gaps[0] <= 1.1
    for prev, gap in zip(gaps, gaps[1:5]):
        assert 1.9 <= gap / prev <= 2.1
    assert all(27 <= g <= 33 for g in gaps[5:])
    assert len(set(round(g, 9) for g in gaps)) > 5     # really randomised


def test_pci_retransmission_never_gives_up():
    sim = Sim()
    sim, pac, paa = make_pair(sim=sim, rng_class=ZeroJitter)
    del sim.nodes[PAA]                                 # nobody answers
    sim.call(PAC, "start", 0.0)
    sim.run(until=1000)
    times = sim.sent_times(PAC, "PCI")
    # PCI_IRT 1 s, doubling, capped at PCI_MRT 120 s; PCI_MRC 0 = no limit.
    assert times[:10] == [0, 1, 3, 7, 15, 31, 63, 127, 247, 367]
    assert pac.core.state == PacState.DISCOVERING


def test_aaa_silence_times_out_both_sides():
    sim, pac, paa = make_pair()
    sim.aaa_hold = True
    sim.call(PAC, "start", 0.0)
    sim.run(until=200)
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "authentication timeout"
    assert paa.effects(fx.PanaSessionClosed)[0].reason == "authentication timeout"
    assert paa.effects(fx.AaaCancel)


def test_ping_from_both_sides():
    sim, pac, paa = open_pair()
    sid = pac.core.session_id
    sim.call(PAC, "ping", 1.0)
    sim.run(until=2.0)
    sim.call(PAA, "ping", sid, 2.0)
    sim.run(until=3.0)
    assert sim.names()[-4:] == ["PNR[P]", "PNA[P]", "PNR[P]", "PNA[P]"]
    assert pac.events("pana.ping_ok")[0].fields["rtt"] == pytest.approx(0.02)
    assert paa.events("pana.ping_ok")[0].fields["rtt"] == pytest.approx(0.02)
    assert all(x[3].auth is not None for x in wire_messages(sim)[-4:])
    assert sim.call(PAA, "ping", 999, 3.0) == []


def test_pac_initiated_reauthentication_rekeys():
    sim, pac, paa = open_pair()
    old = pac.core.sa
    sim.call(PAC, "reauthenticate", 5.0)
    assert pac.core.state == PacState.REAUTHENTICATING
    sim.run(until=6.0)
    # The re-authentication is a new EAP conversation: Identity, one method round, result.
    assert sim.names()[7:] == ["PNR[A]", "PNA[A]", "PAR", "PAN", "PAR", "PAN", "PAR[C]",
                               "PAN[C]"]
    new = pac.core.sa
    session = only_session(paa)
    assert pac.core.state == PacState.OPEN and session.state == PaaState.OPEN
    assert new.key_id != old.key_id and new.auth_key != old.auth_key and new.msk != old.msk
    assert session.channel.sa == new and pac.core.session_id == session.session_id
    # The re-auth PAR is protected with the old key, the final PAR with the new one.
    reauth_pars = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR"][-2:]
    assert reauth_pars[0].nonce is not None and reauth_pars[0].eap_payload[4] == 1
    assert all(c.verify(p, old.auth_key, old.integrity_alg) for p in reauth_pars)
    final = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR[C]"][-1]
    assert c.verify(final, new.auth_key, new.integrity_alg)
    assert [e.reauthentication for e in pac.effects(fx.PanaSessionOpen)] == [False, True]
    assert [e.reauthentication for e in paa.effects(fx.PanaSessionOpen)] == [False, True]
    assert pac.events("pana.reauth_started")[0].fields["by"] == "PaC"


def test_paa_initiated_reauthentication_rekeys():
    sim, pac, paa = open_pair()
    old = pac.core.sa
    sim.call(PAA, "reauthenticate", pac.core.session_id, 5.0)
    sim.run(until=6.0)
    assert sim.names()[7:] == ["PAR", "PAN", "PAR", "PAN", "PAR[C]", "PAN[C]"]
    assert pac.core.sa.key_id != old.key_id
    assert only_session(paa).channel.sa == pac.core.sa
    assert pac.events("pana.reauth_started")[0].fields["by"] == "PAA"


def test_pac_reauthenticates_before_lifetime_expiry():
    sim, pac, paa = open_pair(paa_kwargs={"session_lifetime": 100})
    sim.run(until=500)
    assert pac.core.state == PacState.OPEN and only_session(paa).state == PaaState.OPEN
    starts = [t for t, s, _, data in sim.wire
              if s == PAC and describe(m.decode_message(data)) == "PNR[A]"]
    assert len(starts) == 6 and starts[0] == pytest.approx(80, abs=0.2)
    key_ids = {e.key_id for e in pac.effects(fx.PanaSessionOpen)}
    assert len(key_ids) == 7   # the initial key plus six re-keys


def test_reauthentication_failure_closes_session():
    sim, pac, paa = open_pair()
    paa.aaa.users[NAI] = b"credential revoked"
    sim.call(PAC, "reauthenticate", 5.0)
    sim.run(until=7.0)
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions
    final = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR[C]"][-1]
    assert final.result_code == m.PANA_AUTHENTICATION_REJECTED
    assert final.key_id is None and final.auth is not None   # protected by the old key
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "authentication rejected"


@pytest.mark.parametrize("initiator", ["PaC", "PAA"])
def test_unfinished_reauthentication_ends_after_failed_sess_timeout(initiator):
    """RFC 5609 restarts the session timer with FAILED_SESS_TIMEOUT when a
    re-authentication starts: if the PAA's PARs never arrive, the PaC closes the
    session at that timeout instead of staying "reauthenticating" for the lifetime."""
    sim, pac, paa = open_pair(pac_kwargs={"auth_timeout": 30.0})
    if initiator == "PaC":
        sim.call(PAC, "reauthenticate", 5.0)
        # Let PNR[A]/PNA[A] through, then lose everything the PAA sends.
        sim.filter = lambda src, dst, data: (
            None if src == PAA and describe(m.decode_message(data)) != "PNA[A]" else data)
    else:
        sim.call(PAA, "reauthenticate", pac.core.session_id, 5.0)
        sim.run(until=5.015)       # the first re-auth PAR reaches the PaC, nothing after
        sim.filter = lambda src, dst, data: None if src == PAA else data
    sim.run(until=34.0)
    assert pac.core.state == PacState.REAUTHENTICATING
    sim.run(until=36.0)
    assert pac.core.state == PacState.CLOSED
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "re-authentication timeout"
    if initiator == "PaC":
        assert pac.events("pana.reauth_accepted") and not pac.events("pana.reauth_started")
    else:
        assert pac.events("pana.reauth_started")[0].fields["by"] == "PAA"


def test_pac_terminates():
    sim, pac, paa = open_pair()
    sim.call(PAC, "terminate", 5.0)
    sim.run(until=6.0)
    ptr = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PTR"][0]
    assert ptr.termination_cause == m.TERMINATION_LOGOUT and ptr.auth is not None
    assert sim.names()[-2:] == ["PTR", "PTA"]
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "terminated"
    assert paa.effects(fx.PanaSessionClosed)[0].reason == "terminated by PaC"


def test_paa_terminates():
    sim, pac, paa = open_pair()
    sim.call(PAA, "terminate", pac.core.session_id, 5.0)
    sim.run(until=6.0)
    ptr = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PTR"][0]
    assert ptr.termination_cause == m.TERMINATION_ADMINISTRATIVE
    assert pac.core.state == PacState.CLOSED and not paa.core.sessions
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "terminated by PAA"
    assert paa.effects(fx.PanaSessionClosed)[0].reason == "terminated"


def test_lost_pta_is_answered_after_close():
    sim, pac, paa = open_pair(rng_class=ZeroJitter)
    sim.filter = lose_first("PTA")
    sim.call(PAC, "terminate", 5.0)
    sim.run(until=7.0)
    assert pac.core.state == PacState.CLOSED
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "terminated"
    assert paa.core.counters["request retransmission answered"] == 1


def test_session_lifetime_expiry():
    # (40 s: the PaC's re-authentication request at 32 s gives up at 47 s, after the
    # lifetime ran out; with a longer one the PaC would close first, "PAA unreachable")
    sim, pac, paa = open_pair(paa_kwargs={"session_lifetime": 40}, rng_class=ZeroJitter)
    sim.run(until=10)
    sim.filter = lambda src, dst, data: None      # PaC and PAA lose each other
    sim.run(until=200)
    assert not paa.core.sessions
    (closed,) = paa.effects(fx.PanaSessionClosed)
    assert closed.reason == "session lifetime expired"
    assert paa.events("pana.session_closed")[-1].fields["reason"] == "session lifetime expired"
    assert pac.core.state == PacState.CLOSED
    assert pac.effects(fx.PanaSessionClosed)[0].reason == "session lifetime expired"


def test_aaa_session_timeout_caps_lifetime():
    sim, pac, paa = open_pair(aaa_kwargs={"session_timeout": 50})
    assert pac.core.lifetime == 50 and only_session(paa).lifetime == 50


def test_duplicate_pci_while_handshaking():
    sim, pac, paa = make_pair(rng_class=ZeroJitter)
    sim.filter = lose_first("PAR[S]")
    sim.call(PAC, "start", 0.0)
    sim.run(until=3.0)
    assert pac.core.state == PacState.OPEN and len(paa.core.sessions) == 1
    assert paa.core.counters["duplicate PCI"] == 1


def test_multicast_discovery_locks_onto_first_answer():
    group = "ff05::716"
    sim = Sim()
    paa2 = "2001:db8:b::1"
    users = {NAI: PSK}
    sim.add(PAA, PaaCore(PaaConfig(), rng=random.Random(1)), ScriptedAAA(users), groups=[group])
    sim.add(paa2, PaaCore(PaaConfig(), rng=random.Random(2)), ScriptedAAA(users),
            groups=[group])
    cfg = PacConfig(paa_address=group, discovery="multicast",
                    new_eap_peer=lambda: ScriptedPeer(NAI, PSK), nai=NAI)
    pac = sim.add(PAC, PacCore(cfg, rng=random.Random(3)))
    actions = sim.call(PAC, "start", 0.0)
    (pci,) = [a for a in actions if isinstance(a, Transmit)]
    assert pci.dst == group and pci.discovery == "multicast"
    sim.run(until=100)
    assert pac.core.state == PacState.OPEN
    winner = pac.core.paa.address
    loser = paa2 if winner == PAA else PAA
    assert sim.nodes[winner].core.sessions
    assert not sim.nodes[loser].core.sessions          # gave up, or timed out
    assert pac.core.counters["unknown session"] >= 1   # the loser's PAR[S]
    # Every PaC message after the PCI went unicast to the winner.
    assert {d for _, s, d, _ in sim.wire if s == PAC} == {group, winner}


def test_pac_address_change_is_learnt_from_authenticated_ping():
    sim, pac, paa = open_pair()
    new_address = "2001:db8:e::10"
    sim.nodes[new_address] = sim.nodes.pop(PAC)
    sim.call(new_address, "ping", 2.0)
    sim.run(until=3.0)
    assert only_session(paa).peer.address == new_address
    assert paa.events("pana.pac_address_changed")[0].fields["new"] == new_address
    assert pac.events("pana.ping_ok")


def test_unauthenticated_message_from_new_address_is_dropped():
    sim, pac, paa = make_pair()
    sim.aaa_hold = True
    sim.call(PAC, "start", 0.0)
    sim.run(until=0.5)
    ch = only_session(paa).channel
    ptr = m.Message(m.TERMINATION, m.FLAG_R, ch.session_id, 77,
                    (m.termination_cause_avp(1),)).encode()
    assert paa.core.receive(ptr, "2001:db8:66::1", 0.6)[0].fields["reason"] == \
        "unexpected source"
    assert paa.core.sessions


def test_paa_accepts_pac_originated_eap_par():
    """RFC 5191 4.1: the PaC may answer an EAP request in a PAR of its own."""
    paa = PaaCore(PaaConfig(), rng=random.Random(5))
    out = paa.receive(m.Message(m.PCI, 0, 0, 0).encode(), PAC, 0.0)
    par_s = m.decode_message(next(a for a in out if isinstance(a, Transmit)).data)
    sid = par_s.session_id
    pan_s = m.Message(m.AUTH, m.FLAG_S, sid, par_s.seq,
                      (m.prf_algorithm_avp(2), m.integrity_algorithm_avp(7))).encode()
    assert not [a for a in paa.receive(pan_s, PAC, 0.1) if isinstance(a, fx.SendToAAA)]
    assert paa.sessions[sid].state == PaaState.WAIT_PAC_EAP
    identity = eap(2, par_s.eap_payload[1], 1, NAI.encode())
    pac_par = m.Message(m.AUTH, m.FLAG_R, sid, 4000,
                        (m.nonce_avp(b"n" * 20), m.eap_payload_avp(identity))).encode()
    out = paa.receive(pac_par, PAC, 0.2)
    (tx,) = [a for a in out if isinstance(a, Transmit)]
    pan = m.decode_message(tx.data)
    assert describe(pan) == "PAN" and pan.seq == 4000
    (to_aaa,) = [a for a in out if isinstance(a, fx.SendToAAA)]
    assert to_aaa.eap_payload == identity and paa.sessions[sid].claimed_nai == NAI \
        and paa.sessions[sid].nai is None   # a claim until the AAA backend authenticates it
    assert paa.sessions[sid].pac_nonce == b"n" * 20
    # The next PaC request must use sequence 4001.
    bad = m.Message(m.AUTH, m.FLAG_R, sid, 4005, (m.eap_payload_avp(identity),)).encode()
    assert paa.receive(bad, PAC, 0.3)[0].fields["reason"] == "bad sequence number"


def test_paa_initiated_handshake():
    sim, pac, paa = make_pair()
    sim.call(PAA, "start_session", PAC, 0.0)
    sim.run(until=1.0)
    assert pac.core.state == PacState.OPEN
    assert sim.names()[0] == "PAR[S]"


def test_stray_timers_and_stale_aaa_results_are_harmless():
    sim, pac, paa = open_pair()
    assert pac.core.handle_timer(TIMER_RTX, 2.0) == []
    assert pac.core.handle_timer("nonsense", 2.0) == []
    assert paa.core.handle_timer(("pana-paa", "rtx", 12345), 2.0) == []
    stale = paa.core.aaa_result(pac.core.session_id, "success", None, b"k" * 64, {}, 2.0)
    assert stale[0].fields["reason"] == "stale AAA result"
    assert paa.core.aaa_result(424242, "continue", b"\1\1\0\4", None, {}, 2.0)
    assert paa.core.counters["stale AAA result"] == 2
    with pytest.raises(ValueError):
        paa.core.aaa_result(pac.core.session_id, "maybe")
    assert pac.core.state == PacState.OPEN


def test_garbage_is_counted_by_reason():
    sim, pac, paa = open_pair()
    (drop,) = pac.core.receive(b"\0\1", PAA, 2.0)
    paa.core.receive(b"\xff" * 40, PAC, 2.0)
    paa.core.receive(m.Message(m.AUTH, m.FLAG_R, 999, 1).encode(), PAC, 2.0)
    assert pac.core.counters["malformed"] == 1
    assert paa.core.counters["malformed"] == 1 and paa.core.counters["unknown session"] == 1
    assert drop.name == "pana.drop" and drop.fields["reason"] == "malformed" and "shorter" in drop.fields["detail"]


def test_pac_terminate_before_session_and_restart():
    sim, pac, paa = make_pair()
    sim.call(PAC, "start", 0.0)
    assert sim.call(PAC, "terminate", 0.001)   # stops discovery
    assert pac.core.state == PacState.CLOSED
    sim.run(until=1.0)
    sim.call(PAC, "start", 1.0)
    sim.run(until=2.0)
    assert pac.core.state == PacState.OPEN


def test_first_eap_request_hook():
    calls = []

    def first(session_id):
        calls.append(session_id)
        return eap(1, 0x42, 1)
    sim, pac, paa = open_pair(paa_kwargs={"first_eap_request": first})
    sid = pac.core.session_id
    par_s = [x[3] for x in wire_messages(sim) if describe(x[3]) == "PAR[S]"][0]
    assert par_s.eap_payload == eap(1, 0x42, 1) and calls == [sid]
    sim.call(PAA, "reauthenticate", sid, 5.0)
    sim.run(until=6.0)
    assert calls == [sid, sid] and pac.core.state == PacState.OPEN


def test_backoff_duration_limit_and_uncapped_growth():
    from mip6bench.pana.channel import Backoff, RetransmitPolicy
    backoff = Backoff(RetransmitPolicy(irt=1.0, mrt=0.0, mrc=0, mrd=10.0), ZeroJitter(0), 0.0)
    deadlines = [backoff.deadline]
    while True:
        nxt = backoff.next(deadlines[-1])
        if nxt is None:
            break
        deadlines.append(nxt)
    assert deadlines == [1, 3, 7, 15]      # MRT 0: no cap; MRD 10 s ends it at t=15


def test_paa_session_limit():
    paa = PaaCore(PaaConfig(max_sessions=2), rng=random.Random(1))
    for i in range(3):
        paa.receive(m.Message(m.PCI, 0, 0, 0).encode(), f"2001:db8::{i + 1}", 0.0)
    assert len(paa.sessions) == 2 and paa.counters["too many sessions"] == 1
    assert paa.start_session("2001:db8::9", 0.0) == []
