"""The firewall's short paths for repeated signalling (issue 12, item 4): a retransmitted
GIST Query answered with the Response its first transmission got, a NATFW CREATE that
repeats the session's last one with a new MSN taken without a decode, the codecs'
memoised values. Each short path must give what the full path gives, and input that is
not an exact repeat (one byte off) must take the full path, malformed input included."""
import random

import pytest

from mip6bench.codec import DecodeError
from mip6bench.gist import core, wire
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import Mri as NMri
from mip6bench.natfw.core import NfCore, NiCore, SendNslp
from mip6bench.runtime.natfw import gist_mri
from mip6bench.sansio import Event

from .natfw_harness import CN, COA, HOA, KEY, T0, tok

FW_OUT, FW_IN = "2001:db8:ff::1", "2001:db8:2::1"
SID = bytes(range(16))
NSLP = core.NATFW_NSLPID


def seeded(seed: int):
    rnd = random.Random(seed)
    return lambda n: bytes(rnd.getrandbits(8) for _ in range(n))


def firewall(seed=1, **config) -> core.GistNode:
    return core.GistNode(core.GistConfig(peer_identity=b"fw", addresses=(FW_OUT, FW_IN),
                                         nslps=frozenset({NSLP}), **config), seeded(seed))


def create_bytes(msn_start=100, lifetime=600) -> tuple[NiCore, bytes]:
    ni = NiCore(tok(), msn_start=msn_start)
    actions = ni.create(SID, NMri(COA, CN, 135), lifetime, 0.0,
                        mip6=w.Mip6Flow(w.MIP6_MH, 2, HOA))
    return ni, next(a for a in actions if isinstance(a, SendNslp)).data


def query_bytes(nslp_data=None) -> bytes:
    mn = core.GistNode(core.GistConfig(peer_identity=b"mn", addresses=(COA,)), seeded(7))
    _, data = create_bytes()
    out = mn.send_message(NSLP, SID, gist_mri(NMri(COA, CN, 135), False), data, 0.0)
    query = next(a for a in out if isinstance(a, core.GistTransmit)).data
    if nslp_data is not None:        # the same Query with NSLP data in it
        msg = wire.decode_message(query)
        query = wire.Message(**{**msg.__dict__, "nslp_data": nslp_data, "raw": b""}).encode()
    return query


def responses(actions):
    return [a for a in actions if isinstance(a, core.GistTransmit) and a.kind == "Response"]


# ---------------------------------------------------------------- GIST Query repeats

def test_retransmitted_query_gets_the_response_the_full_path_gives():
    q = query_bytes()
    fw, twin = firewall(), firewall()
    first = fw.receive(q, COA, CN, 10.0, q_mode=True, ttl=64)
    again = fw.receive(q, COA, CN, 10.5, q_mode=True, ttl=63)
    assert fw.counters["query_repeats_answered"] == 1
    # the same node state, decoding: what the repeat would have got the long way
    twin.receive(q, COA, CN, 10.0, q_mode=True, ttl=64)
    full = twin.receive(q, COA, CN, 10.5, q_mode=True, ttl=63)
    assert responses(again) == responses(full) == responses(first)
    assert len(responses(again)) == 1
    (event,) = [a for a in again if isinstance(a, Event)]
    assert event.name == "gist.response" and event.fields["repeat"] is True


def test_repeat_after_the_cookie_generation_changed_is_answered_anew():
    q = query_bytes()
    fw = firewall()
    first = responses(fw.receive(q, COA, CN, 59.0, q_mode=True, ttl=64))
    later = responses(fw.receive(q, COA, CN, 61.0, q_mode=True, ttl=64))   # generation 1
    assert fw.counters["query_repeats_answered"] == 0
    assert first[0].data != later[0].data
    cookie = wire.decode_message(later[0].data).responder_cookie
    assert cookie[:4] == (1).to_bytes(4, "big")


def test_repeat_is_not_answered_from_stale_settings_or_addresses():
    q = query_bytes()
    fw = firewall()
    fw.receive(q, COA, CN, 1.0, q_mode=True, ttl=64)
    fw.config.ma_port = 270                    # now offers C-mode: another Response
    fw.receive(q, COA, CN, 1.5, q_mode=True, ttl=64)
    fw.set_addresses([FW_OUT, FW_IN])          # forgets what was kept
    fw.receive(q, COA, CN, 2.0, q_mode=True, ttl=64)
    fw.config.nslps = frozenset()              # no longer served: forwarded, not answered
    out = fw.receive(q, COA, CN, 2.5, q_mode=True, ttl=64)
    assert fw.counters["query_repeats_answered"] == 0
    assert not responses(out) and isinstance(out[0], core.Forward)


@pytest.mark.parametrize("offset", [4 + 6, 4 + 7, 4 + 8 + 4 + 1, 12 + 4 + 20, 12 + 40 + 4 + 2])
def test_near_duplicate_query_takes_the_full_path(offset):
    """One byte off: a reserved bit, a flag, an MRI address byte, the Session-ID: never
    taken for a repeat; the malformed ones are forwarded untouched as undecodable (the
    firewall's runtime drops those), the well-formed get a Response of their own."""
    q = query_bytes()
    fw = firewall()
    (kept,) = responses(fw.receive(q, COA, CN, 1.0, q_mode=True, ttl=64))
    bad = bytearray(q)
    bad[offset] ^= 0x01 if offset != 4 + 7 else 0x10
    out = fw.receive(bytes(bad), COA, CN, 1.5, q_mode=True, ttl=64)
    assert fw.counters["query_repeats_answered"] == 0
    try:
        wire.decode_message(bytes(bad), q_mode=True)
    except DecodeError:
        assert fw.counters["forwarded_undecodable"] == 1 and not responses(out)
    else:
        (other,) = responses(out)
        assert other.data != kept.data


def test_query_with_nslp_data_is_delivered_each_time():
    q = query_bytes(nslp_data=b"DATA")
    fw = firewall()
    for now in (1.0, 1.5):
        out = fw.receive(q, COA, CN, now, q_mode=True, ttl=64)
        assert [a.data for a in out if isinstance(a, core.RecvMessage)] == [b"DATA"]
    assert fw.counters["query_repeats_answered"] == 0


def test_kept_answers_are_bounded():
    fw = firewall(query_answer_cache=3)
    mn = core.GistNode(core.GistConfig(peer_identity=b"mn", addresses=(COA,)), seeded(7))
    queries = []
    for k in range(5):
        out = mn.send_message(NSLP, bytes([k]) * 16, gist_mri(NMri(COA, CN, 135), False),
                              b"DATA", 0.0)
        queries.append(next(a for a in out if isinstance(a, core.GistTransmit)).data)
        fw.receive(queries[-1], COA, CN, 1.0, q_mode=True, ttl=64)
    assert len(fw._query_answers) == 3
    fw.receive(queries[0], COA, CN, 1.5, q_mode=True, ttl=64)      # dropped: answered anew
    fw.receive(queries[4], COA, CN, 1.5, q_mode=True, ttl=64)      # kept
    assert fw.counters["query_repeats_answered"] == 1


# ---------------------------------------------------------------- NATFW CREATE repeats

def test_other_msn_gives_what_decode_gives():
    ni, first = create_bytes()
    msg = w.decode(first)
    offset = w.msn_offset(first)
    rnd = random.Random(5)
    for _ in range(50):
        msn = rnd.getrandbits(32)
        data = first[:offset] + msn.to_bytes(4, "big") + first[offset + 4:]
        fast = w.with_other_msn(first, msg, offset, data)
        assert fast == w.decode(data) and fast.msn == msn and fast.raw == data


def test_any_other_byte_changed_is_not_a_repeat():
    _, first = create_bytes()
    msg, offset = w.decode(first), w.msn_offset(first)
    for i in range(len(first)):
        if offset <= i < offset + 4:
            continue
        data = bytearray(first)
        data[i] ^= 0x01
        assert w.with_other_msn(first, msg, offset, bytes(data)) is None
    assert w.with_other_msn(first, msg, offset, first + b"\0\0\0\0") is None


def nf():
    return NfCore({1: KEY}, wall_clock=lambda now: T0 + now, token_sessions=8)


def test_retransmitted_create_short_path_matches_the_full_path():
    """The NI's retransmissions (a new MSN each): the NF that skips their decode does
    what one that decodes them does, step by step (absorbed, then forwarded again)."""
    ni, first = create_bytes(lifetime=60)      # within the token's validity: not capped
    mri = NMri(COA, CN, 135)
    fast, full = nf(), nf()
    steps = [(0.0, first)]
    for at in (0.5, 1.5, 3.5):                 # retransmissions
        steps.append((at, next(a for a in ni.handle_timer(("retransmit", SID), at)
                               if isinstance(a, SendNslp)).data))
    for now, data in steps:
        a = fast.receive(SID, mri, data, now, peer=COA)
        b = full.receive(SID, mri, data, now, peer=COA)
        full.sessions[SID].last_create = None  # `full` decodes every one
        assert a == b
    assert fast.counters["create_repeats_decoded_fast"] == 3
    assert full.counters["create_repeats_decoded_fast"] == 0
    assert {k: v for k, v in fast.counters.items() if k != "create_repeats_decoded_fast"} \
        == dict(full.counters)
    assert fast.counters["retransmissions_absorbed"] == 2     # within 2 s of the forward
    assert fast.counters["creates_forwarded"] == 2            # 3.5 s: forwarded again


def test_malformed_near_duplicate_create_is_refused_after_a_good_one():
    _, first = create_bytes()
    mri = NMri(COA, CN, 135)
    core_ = nf()
    core_.receive(SID, mri, first, 0.0, peer=COA)
    efi = first.index(w.encode_object(w.ExtFlowInfo()))
    bad = bytearray(first)
    bad[efi + 4 + 1] = 7                       # rule action 7: not allow or deny
    offset = w.msn_offset(first)
    bad[offset + 3] ^= 0x01                    # and a new MSN, as a retransmission has
    out = core_.receive(SID, mri, bytes(bad), 0.5, peer=COA)
    assert core_.counters["create_repeats_decoded_fast"] == 0
    assert core_.counters["refused.malformed"] == 1
    (resp,) = [a for a in out if isinstance(a, SendNslp)]
    assert w.decode(resp.data).info.pair == w.ERR_UNKNOWN_RULE_ACTION


def test_unchanged_create_goes_on_as_it_came_and_a_capped_one_is_encoded():
    _, first = create_bytes(lifetime=600)
    mri = NMri(COA, CN, 135)
    out = nf().receive(SID, mri, first, 0.0, peer=COA)
    (fwd,) = [a for a in out if isinstance(a, SendNslp)]
    assert fwd.data == first and not fwd.upstream
    capped = NfCore({1: KEY}, wall_clock=lambda now: T0 + now, token_sessions=8,
                    max_lifetime=300)
    _, long_ = create_bytes(lifetime=300)
    out = capped.receive(SID, mri, long_, 0.0, peer=COA)
    (fwd,) = [a for a in out if isinstance(a, SendNslp)]
    assert w.decode(fwd.data).lifetime == 300
    # lifetime above the cap is refused before anything is forwarded (RFC 5973 0x7/0x02)
    _, too_long = create_bytes(lifetime=600)
    out = NfCore({1: KEY}, wall_clock=lambda now: T0 + now, max_lifetime=300).receive(
        SID, mri, too_long, 0.0, peer=COA)
    assert w.decode(next(a for a in out if isinstance(a, SendNslp)).data).info.pair \
        == w.ERR_LIFETIME_TOO_BIG


def test_dropped_ignorable_object_is_not_forwarded_as_it_came():
    msg = w.NslpMessage(w.CREATE, (w.Lifetime(60), w.ExtFlowInfo(), w.Msn(5),
                                   w.UnknownObject(0x7F0, w.AB_IGNORE, b"\0\0\0\0")))
    data = msg.encode()
    decoded = w.decode(data)
    assert decoded.raw == b"" and w.UnknownObject not in map(type, decoded.objects)
    assert w.decode(decoded.encode()).raw == decoded.encode()


# ---------------------------------------------------------------- memoised codec values

def test_memoised_mri_and_nli_values():
    q = query_bytes()
    a, b = wire.decode_message(q), wire.decode_message(q)
    assert a.mri is b.mri and a.nli is b.nli            # decoded once
    # an MRI's cached encoding is not carried into its inverted copy
    inv = a.mri.inverted()
    assert inv.encode_value() != a.mri.encode_value()
    assert wire.Mri.decode_value(wire.Reader(inv.encode_value())) == inv
    assert inv.inverted().encode_value() == a.mri.encode_value()


def test_malformed_value_is_refused_every_time():
    q = bytearray(query_bytes())
    q[12 + 4 + 1] = 0x01                       # a reserved MRI bit (after the MRM-ID)
    for _ in range(2):
        with pytest.raises(DecodeError, match="reserved MRI bits"):
            wire.decode_message(bytes(q))


# ---------------------------------------------------------------- re-forwarding under load

def test_retransmissions_are_forwarded_again_after_the_time_answers_take():
    """The NF forwards a retransmitted request again once `reforward_wait` has passed:
    2 s while the NR's answers come at once, longer while they take longer to be handled
    (a burst queued at the firewall), back to 2 s when they are quick again."""
    from mip6bench.natfw.core import NrCore

    nf_, nr = nf(), NrCore()
    mri = NMri(COA, CN, 135)

    def session(k: int, start: float, answer_after: float | None, retry_at: float):
        sid = bytes([k]) * 16
        ni = NiCore(tok(token_id=bytes([k]) * 8), msn_start=100)
        (c,) = [a for a in ni.create(sid, mri, 60, start, mip6=w.Mip6Flow(w.MIP6_MH, 2, HOA))
                if isinstance(a, SendNslp)]
        peer = f"2001:db8:11::{k:x}"                # each its own source (max per source)
        (fwd,) = [a for a in nf_.receive(sid, mri, c.data, start, peer=peer)
                  if isinstance(a, SendNslp)]
        assert not fwd.upstream
        retry = next(a for a in ni.handle_timer(("retransmit", sid), retry_at)
                     if isinstance(a, SendNslp))
        again = [a for a in nf_.receive(sid, mri, retry.data, retry_at, peer=peer)
                 if isinstance(a, SendNslp)]
        if answer_after is not None:
            (ans,) = [a for a in nr.receive(sid, mri, fwd.data, start) if isinstance(a, SendNslp)]
            nf_.receive(sid, mri, ans.data, start + answer_after, upstream=True)
        return len(again)

    assert nf_.reforward_wait == 2.0
    assert session(1, 0.0, None, 3.5) == 1          # no answer yet: forwarded again
    for k in range(2, 6):                           # answers taking 6 s (retries absorbed)
        assert session(k, 5.0 * k, 6.0, 5.0 * k + 0.5) == 0
    assert 6.0 < nf_.reforward_wait <= nf_.reforward_max == 8.0
    assert session(6, 30.0, None, 33.5) == 0        # 3.5 s: absorbed now
    for k in range(7, 60):                          # quick answers again
        session(k, 5.0 * k, 0.01, 5.0 * k + 0.5)
    assert nf_.reforward_wait == 2.0
    assert session(60, 300.0, None, 303.5) == 1
