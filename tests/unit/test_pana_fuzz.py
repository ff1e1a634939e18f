"""Fuzzing (bounded to a few seconds): decoders raise only DecodeError, cores never crash.

The corpus is every datagram of real exchanges (plain, with the MIPv6 extension, through
a relay, re-authentication, ping, termination). Inputs are random bytes, mutations of
corpus messages (with or without a repaired length field), and well-formed messages with
random flags, session ids, sequence numbers and AVPs, fed to copies of the cores taken at
several points of a session's life.
"""
import copy
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mip6bench.codec import DecodeError
from mip6bench.pana import PacCore, mip6
from mip6bench.pana import message as m
from mip6bench.pana.relay import RelayCore
from mip6bench.sansio import Action

from .test_pana_harness import HA, PAA, PAC, PRE, Sim, make_pair

FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _build_corpus():
    """Run real sessions; keep every datagram and snapshots of the cores."""
    policy = mip6.Mip6Policy(HA, "2001:db8:1::/64", mint_token=lambda n, h, t: b"tok")
    sim, pac, paa = make_pair(pac_kwargs={"mip6_request": mip6.REQUEST_ALL},
                              paa_kwargs={"mip6": policy, "session_lifetime": 100})
    snapshots = []

    def snap():
        snapshots.append((copy.deepcopy(pac.core), copy.deepcopy(paa.core), sim.now))
    snap()
    sim.call(PAC, "start", 0.0)
    sim.run(until=0.025)            # mid-handshake
    snap()
    sim.run(until=0.045)            # EAP in progress
    snap()
    sim.run(until=1.0)              # open
    snap()
    sim.call(PAC, "ping", 2.0)
    sim.call(PAC, "reauthenticate", 3.0)
    sim.run(until=3.03)             # re-authenticating
    snap()
    sim.run(until=4.0)
    sim.call(PAC, "terminate", 5.0)
    sim.run(until=5.011)            # terminating
    snap()
    sim.run(until=6.0)
    snap()
    corpus = [data for _, _, _, data in sim.wire]

    relay_sim = Sim()
    relay_sim.add(PRE, RelayCore(PAA))
    relay_sim, rpac, rpaa = make_pair(sim=relay_sim, pac_kwargs={"paa_address": PRE})
    relay_sim.call(PAC, "start", 0.0)
    relay_sim.run(until=1.0)
    corpus += [data for _, _, _, data in relay_sim.wire]
    return corpus, snapshots


CORPUS, SNAPSHOTS = _build_corpus()


def assert_actions(actions):
    assert isinstance(actions, list)
    assert all(isinstance(a, Action) for a in actions)


@FUZZ
@given(st.binary(max_size=400))
def test_decoder_only_raises_decode_error_on_random_bytes(data):
    try:
        msg = m.decode_message(data)
    except DecodeError as err:
        assert err.reason
        return
    assert msg.encode() == data   # strict mode accepts canonical encodings only


mutation = st.tuples(
    st.sampled_from(range(len(CORPUS))),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 2000)),
    st.binary(max_size=24),
    st.booleans(),
)


def mutate(index, flips, cut, tail, fix_length):
    data = bytearray(CORPUS[index])
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    data += tail
    if fix_length and len(data) >= 4:
        data[2:4] = struct.pack("!H", len(data) & 0xFFFF)
    return bytes(data)


@FUZZ
@given(mutation)
def test_decoders_only_raise_decode_error_on_mutations(case):
    data = mutate(*case)
    for strict in (True, False):
        try:
            msg = m.decode_message(data, strict_reserved=strict)
        except DecodeError:
            continue
        # Typed accessors and extension parsers fail only with DecodeError too.
        for getter in (lambda: msg.pac_information, lambda: msg.key_id,
                       lambda: msg.prf_algorithms, lambda: mip6.parse_grant(msg),
                       lambda: mip6.bootstrap_request(msg), lambda: mip6.sa_proposal(msg),
                       lambda: m.decode_message(msg.relayed_message or b"")):
            try:
                getter()
            except DecodeError:
                pass


def fresh(snapshot_index):
    pac, paa, now = SNAPSHOTS[snapshot_index]
    return copy.deepcopy(pac), copy.deepcopy(paa), now


sources = st.sampled_from([PAC, PAA, PRE, "2001:db8::66", "192.0.2.1"])


@FUZZ
@given(st.integers(0, len(SNAPSHOTS) - 1), mutation, sources, st.sampled_from([716, 5000]))
def test_cores_survive_mutated_messages(snapshot, case, src, port):
    pac, paa, now = fresh(snapshot)
    data = mutate(*case)
    for core in (pac, paa, RelayCore(PAA)):
        assert_actions(core.receive(data, src, now + 0.5, port))


@st.composite
def forged_messages(draw, pac: PacCore):
    """Well-formed PANA messages with hostile contents, aimed at the live session."""
    msg_type = draw(st.sampled_from([m.PCI, m.AUTH, m.TERMINATION, m.NOTIFICATION, m.RELAY]))
    allowed = {m.PCI: [0], m.RELAY: [0],
               m.AUTH: [m.FLAG_R, m.FLAG_R | m.FLAG_S, m.FLAG_R | m.FLAG_C, 0, m.FLAG_S,
                        m.FLAG_C, m.FLAG_R | m.FLAG_I],
               m.TERMINATION: [m.FLAG_R, 0],
               m.NOTIFICATION: [m.FLAG_R | m.FLAG_A, m.FLAG_R | m.FLAG_P, m.FLAG_A, m.FLAG_P]}
    flags = draw(st.sampled_from(allowed[msg_type]))
    sids = [0, 1, draw(st.integers(0, 2**32 - 1))]
    if pac.session_id:
        sids.append(pac.session_id)
    sid = 0 if msg_type in (m.PCI, m.RELAY) else draw(st.sampled_from(sids))
    seqs = [0, draw(st.integers(0, 2**32 - 1))]
    ch = pac.channel
    if ch is not None:
        seqs += [ch.next_seq, (ch.next_seq - 1) % 2**32]
        if ch.rx_expected is not None:
            seqs += [ch.rx_expected, (ch.rx_expected - 1) % 2**32]
    seq = 0 if msg_type in (m.PCI, m.RELAY) else draw(st.sampled_from(seqs))
    pool = [
        m.eap_payload_avp(draw(st.binary(min_size=4, max_size=40))),
        m.prf_algorithm_avp(draw(st.sampled_from([2, 5, 0, 99]))),
        m.integrity_algorithm_avp(draw(st.sampled_from([7, 12, 0, 99]))),
        m.key_id_avp(draw(st.integers(0, 2**32 - 1))),
        m.nonce_avp(draw(st.binary(min_size=8, max_size=32))),
        m.result_code_avp(draw(st.integers(0, 4))),
        m.session_lifetime_avp(draw(st.integers(0, 2**32 - 1))),
        m.termination_cause_avp(draw(st.integers(0, 9))),
        m.auth_avp(draw(st.binary(min_size=1, max_size=24))),
        m.pac_information_avp(draw(st.sampled_from([PAC, "192.0.2.9"])), 716),
        m.relayed_message_avp(draw(st.sampled_from(CORPUS))),
        mip6.bootstrap_request_avp(draw(st.integers(0, 2**32 - 1))),
        m.Avp(mip6.AVP_MIP6_SA, draw(st.binary(max_size=16)), mip6.VENDOR_ID),
        m.Avp(mip6.AVP_MIP6_AGENT_INFO, draw(st.binary(max_size=40)), mip6.VENDOR_ID),
        m.Avp(draw(st.integers(0, 0xFFFF)), draw(st.binary(max_size=12)),
              draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)))),
    ]
    chosen = draw(st.lists(st.sampled_from(range(len(pool))), max_size=6, unique=True))
    return m.Message(msg_type, flags, sid, seq, tuple(pool[i] for i in chosen)).encode()


@FUZZ
@given(st.data())
def test_cores_survive_hostile_well_formed_messages(data):
    pac, paa, now = fresh(data.draw(st.integers(0, len(SNAPSHOTS) - 1)))
    for _ in range(data.draw(st.integers(1, 4))):
        message = data.draw(forged_messages(pac))
        src = data.draw(sources)
        now += data.draw(st.floats(0, 5))
        assert_actions(pac.receive(message, src, now))
        assert_actions(paa.receive(message, src, now))
        assert_actions(RelayCore(PAA).receive(message, src, now))
        # Timers and commands interleaved with the garbage must not crash either.
        assert_actions(pac.handle_timer(data.draw(st.sampled_from(
            list(pac.timers.deadlines) or [("pana-pac", "rtx")])), now + 100))
        for key in list(paa.timers.deadlines)[:2]:
            assert_actions(paa.handle_timer(key, now + 100))
        command = data.draw(st.sampled_from(["ping", "reauthenticate", "terminate", "start"]))
        assert_actions(getattr(pac, command)(now))
        for sid in list(paa.sessions)[:1]:
            assert_actions(paa.aaa_result(sid, data.draw(st.sampled_from(
                ["continue", "success", "failure"])), b"\1\2\0\4", b"k" * 64, {}, now))
            assert_actions(paa.ping(sid, now))


@FUZZ
@given(st.binary(max_size=64))
def test_extension_value_parsers_only_raise_decode_error(value):
    for parse in (mip6.AgentInfo.from_value, mip6.HomeAddress.from_value,
                  mip6.SaParameters.from_value, m.PacInformation.decode):
        try:
            parse(value)
        except DecodeError:
            pass


def test_fuzz_corpus_is_rich():
    names = {m.decode_message(d).name for d in CORPUS}
    assert names == {"PCI", "PAR", "PAN", "PNR", "PNA", "PTR", "PTA", "PRY"}
    states = {s[0].state for s in SNAPSHOTS}
    assert len(states) >= 4
