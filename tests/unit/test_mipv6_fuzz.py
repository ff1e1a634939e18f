"""Fuzzing: decoders only ever raise DecodeError, and the cores never raise on garbage
(they drop and count), also for mutated messages that get past the checksum."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mip6bench.codec import DecodeError
from mip6bench.mipv6.crypto import encode_with_bad, encode_with_mn_ha, ntp_timestamp
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingAuthorizationData,
    BindingError,
    BindingRefreshAdvice,
    BindingRefreshRequest,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    MobileNodeIdentifier,
    NonceIndices,
    ReplayProtection,
    UnknownOption,
    build_ipv6_packet,
    decode_destination_options,
    decode_mh,
    decode_routing_header,
    encode_mh,
    parse_ipv6_packet,
)
from mip6bench.sansio import Action
from tests.unit.test_mipv6_harness import CN, COA1, HA, HOA, Sim, make_sa

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SA = make_sa()
SEEDS = [
    encode_with_mn_ha(BindingUpdate(7, 400, ack=True, home_registration=True, options=(
        AlternateCareOfAddress(COA1), MobileNodeIdentifier.from_nai("mn1@example.net"),
        ReplayProtection(ntp_timestamp(1.0)))), SA, COA1, HOA, HOA, HA),
    encode_with_mn_ha(BindingAck(0, 7, 400, options=(BindingRefreshAdvice(100), ReplayProtection(5))),
                      SA, COA1, HOA, HA, HOA),
    encode_with_bad(BindingUpdate(3, 420, ack=True, options=(NonceIndices(1, 2),)), bytes(20), COA1, CN, HOA, CN),
    encode_with_bad(BindingAck(0, 3, 420), bytes(20), COA1, CN, CN, HOA),
    encode_mh(HomeTestInit(b"12345678"), HOA, CN),
    encode_mh(CareOfTestInit(b"12345678"), COA1, CN),
    encode_mh(HomeTest(1, b"12345678", b"abcdefgh"), CN, HOA),
    encode_mh(CareOfTest(1, b"12345678", b"abcdefgh"), CN, COA1),
    encode_mh(BindingRefreshRequest(options=(UnknownOption(33, b"zz"),)), HA, HOA),
    encode_mh(BindingError(1, HOA), CN, COA1),
    encode_mh(BindingUpdate(1, 8, options=(Authentication(300, bytes(12)), )), HOA, HA),
    encode_mh(BindingUpdate(1, 0, options=(BindingAuthorizationData(bytes(12)),)), HOA, CN),
]

mutation = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4096), st.integers(0, 255)), max_size=6)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in ops:
        if kind == 0 and buf:
            buf[pos % len(buf)] ^= value or 1          # flip bits
        elif kind == 1:
            del buf[pos % (len(buf) + 1):]                # truncate
        else:
            buf.insert(pos % (len(buf) + 1), value)     # insert a byte
    return bytes(buf)


def decoders_only_raise_decode_error(data: bytes) -> None:
    for decode in (decode_mh, decode_destination_options, decode_routing_header, parse_ipv6_packet,
                   lambda d: decode_mh(d, HOA, CN)):
        try:
            decode(data)
        except DecodeError as exc:
            assert isinstance(exc.reason, str) and exc.reason


@FUZZ
@given(st.binary(max_size=300))
def test_decoders_on_arbitrary_bytes(data):
    decoders_only_raise_decode_error(data)


@FUZZ
@given(st.sampled_from(SEEDS), mutation)
def test_decoders_on_mutated_messages(seed, ops):
    decoders_only_raise_decode_error(mutate(seed, ops))
    decoders_only_raise_decode_error(mutate(build_ipv6_packet(COA1, CN, 135, seed, hao=HOA, rh2=HOA), ops))


def _fresh_sim() -> Sim:
    sim = Sim()
    sim.call("mn", "move_to", COA1)
    sim.run(1)
    sim.call("mn", "start_route_optimization", CN)
    sim.drop = lambda sender, tr: sender == "mn" and tr.dst == CN and tr.hao  # keep a BU pending
    sim.run(0.5)
    sim.drop = None
    return sim


ADDRESSES = st.sampled_from([HOA, COA1, HA, CN, "::", "ff02::1", "fe80::1", "2001:db8:9::9"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), mutation, ADDRESSES, ADDRESSES, st.one_of(st.none(), ADDRESSES),
       st.one_of(st.none(), ADDRESSES), st.floats(0, 5000, allow_nan=False))
def test_cores_never_raise_on_garbage(seed, ops, src, dst, hao, rh2, dt):
    sim = _fresh_sim()
    data = mutate(seed, ops)
    for name, core in sim.cores.items():
        # verify_checksum=False lets mutated messages reach the message handlers
        for verify in (True, False):
            actions = core.receive(data, src, dst, sim.now + dt, hao=hao, rh2=rh2, verify_checksum=verify)
            assert isinstance(actions, list) and all(isinstance(a, Action) for a in actions)
            sim.apply(name, actions)
    sim.run(100)
    assert sim.cores["ha"].counters["rx"] >= 1


@FUZZ
@given(st.binary(max_size=200), ADDRESSES, ADDRESSES)
def test_cores_never_raise_on_random_bytes(data, src, dst):
    sim = Sim()
    for core in sim.cores.values():
        assert isinstance(core.receive(data, src, dst, 1.0), list)
        assert isinstance(core.receive(data, "garbage", dst, 1.0), list)


def test_cores_still_work_after_a_garbage_storm():
    sim = _fresh_sim()
    for i, seed in enumerate(SEEDS):
        for core in sim.cores.values():
            core.receive(seed[: i + 3] + b"\xff" * i, COA1, HA, sim.now, verify_checksum=False)
    sim.run(5)
    assert sim.mn.home_registered and sim.mn.route_optimized(CN)
    assert sim.mn.counters["drop"] and sim.ha.counters["drop"] and sim.cn.counters["drop"]
