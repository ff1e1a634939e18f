"""What the servers need to keep up with many MNs arriving at once (issue 12, item 4):
the firewall's NfCore admits a burst of 1,000 MNs' CREATEs, the shortcuts taken for
speed give the same results as the long way (inverted MRIs, parsed tokens, bucket chains,
RADIUS packets), and verification still refuses what it refused before. (The PAA's
session indexes are checked in test_pana_mip6.py after every call.)"""
from __future__ import annotations

import dataclasses
import time

import pytest

from mip6bench.aaa import radius_attrs as ra
from mip6bench.aaa.token import Flow, TokenError, TokenIssuer, decode_token, verify_token
from mip6bench.gist.wire import Mri as GistMri
from mip6bench.natfw.core import Mri, NiCore, SendNslp
from mip6bench.natfw.mobile import phase_flows
from mip6bench.net.pinholes import Entry, Op, bucket_name, build_batch
from mip6bench.runtime.natfw import NF_MAX_PENDING, NF_MAX_SESSIONS, forwarder_core

KEY = bytes(range(32))
CN = "2001:db8:2::10"
FLOWS = (Flow(135, "2001:db8:2::/64"),)


def test_the_firewall_core_admits_a_thousand_mns_arriving_at_once():
    """4,000 CREATEs (four "rr" sessions from each of 1,000 MNs, tokens checked) all
    wait for the NR at the same time: none is refused "max pending" / "max sessions"."""
    t0 = 1_800_000_000.0
    issuer = TokenIssuer(KEY, 1, 3600.0, FLOWS)
    nf = forwarder_core({1: KEY}, offset=t0)
    ni = NiCore(msn_start=1)
    forwarded = 0
    for k in range(1000):
        hoa, coa = f"2001:db8:1::{0x1000 + k:x}", f"2001:db8:5::{0x1000 + k:x}"
        token = issuer.mint(f"mn{k}@example", hoa, t0)
        for _role, fs in phase_flows(CN, hoa, coa, "rr"):
            sid = k.to_bytes(4, "big") + fs.mip6.mh_type.to_bytes(2, "big") + \
                fs.source.encode()[-10:]
            send = next(a for a in ni.create(sid, Mri(fs.source, fs.destination, fs.protocol),
                                             600, 0.0, mip6=fs.mip6, token=token)
                        if isinstance(a, SendNslp))
            out = nf.receive(sid, send.mri, send.data, 0.0, peer=fs.source)
            forwarded += sum(1 for a in out if isinstance(a, SendNslp) and not a.upstream)
    refused = {k: v for k, v in nf.counters.items() if k.startswith("refused")}
    assert refused == {} and forwarded == 4000 and len(nf.sessions) == 4000
    assert NF_MAX_PENDING >= 4000 and NF_MAX_SESSIONS >= 5 * 1000 * 2


def test_inverted_mri_equals_the_replaced_one_and_leaves_the_original():
    mri = GistMri("2001:DB8::0001", "2001:db8:2:0::10", protocol=135, src_port=None,
                  dst_port=7, upstream=False)
    up = mri.inverted()
    assert up == dataclasses.replace(mri, upstream=True) and up.upstream is True
    assert mri.upstream is False and up.src == "2001:db8::1" and up.dst_prefix == 128
    assert up.inverted() == mri and hash(up.inverted()) == hash(mri)
    assert up.downstream() == mri and mri.downstream() is mri
    with pytest.raises(dataclasses.FrozenInstanceError):
        up.upstream = False


def test_a_parsed_token_is_still_verified_every_time():
    now = time.time()
    issuer = TokenIssuer(KEY, 1, 60.0, FLOWS)
    good = issuer.mint("mn1@example", "2001:db8:1::1001", now)
    claims = verify_token(good, {1: KEY}, now, hoa="2001:DB8:1::1001")
    assert verify_token(good, {1: KEY}, now) == claims and decode_token(good) == decode_token(good)
    forged = bytearray(good)
    forged[-1] ^= 1                         # same claims, the HMAC no longer verifies
    for _ in range(2):
        with pytest.raises(TokenError, match="bad signature"):
            verify_token(bytes(forged), {1: KEY}, now)
    with pytest.raises(TokenError, match="unknown key id"):
        verify_token(good, {2: KEY}, now)
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(good, {1: bytes(32)}, now)
    with pytest.raises(TokenError, match="expired"):
        verify_token(good, {1: KEY}, now + 3600)     # the cached parse, a later time
    with pytest.raises(TokenError, match="address mismatch"):
        verify_token(good, {1: KEY}, now, hoa="2001:db8:1::1002")
    for _ in range(2):                          # malformed: refused each time, not kept
        with pytest.raises(TokenError, match="malformed"):
            decode_token(good[:-4])
    assert claims.allows(135, "2001:db8:2::10") and not claims.allows(135, "2001:db8:3::1")
    assert not claims.allows(17, "2001:db8:2::10")


def test_buckets_of_many_pairs_hold_exactly_their_sessions():
    def entry(session, pair, verdict="accept"):
        return Entry(session, ("meta l4proto 135",), verdict, pair,
                     {"source": pair[0], "destination": pair[1]}, 30)

    pairs = [(f"2001:db8:5::{k:x}", CN) for k in range(1, 40)]
    committed = {f"s{k}": entry(f"s{k}", pairs[k % len(pairs)]) for k in range(200)}
    ops = [Op(f"n{k}", entry(f"n{k}", pairs[k % 3], "drop" if k % 2 else "accept"))
           for k in range(6)] + [Op("s1", None)]
    lines = build_batch(committed, ops).text.splitlines()
    for pair in pairs[:3]:
        bucket = bucket_name(pair)
        jumps = [line.rsplit(" ", 1)[1] for line in lines
                 if line.startswith(f"add rule inet mip6bench {bucket} jump")]
        state = {**committed, **{op.session: op.entry for op in ops if op.entry}}
        state.pop("s1")
        want = [e for e in state.values() if e.pair == pair]
        want = sorted(want, key=lambda e: e.verdict != "drop")
        assert jumps == [f"nsis-{e.session}" for e in want]
        assert f"flush chain inet mip6bench {bucket}" in lines      # it existed: flushed
    untouched = bucket_name(pairs[10])
    assert not any(untouched in line for line in lines)


def test_a_parsed_radius_packet_is_the_same_and_its_authenticators_still_checked():
    secret, req_auth = b"s3cret", bytes(range(16))
    attrs = [(ra.EAP_MESSAGE, b"\x03\x01\x00\x04"), (ra.MESSAGE_AUTHENTICATOR, bytes(16))]
    body = ra.encode_radius_packet(ra.ACCESS_ACCEPT, 7, req_auth, attrs)
    signed = ra.sign_message_authenticator(body, secret, req_auth)
    first = ra.parse_radius_packet(signed)
    assert ra.parse_radius_packet(bytearray(signed)) == first and first.identifier == 7
    assert ra.verify_message_authenticator(signed, secret, req_auth)
    tampered = bytearray(signed)
    tampered[-1] ^= 1
    for _ in range(2):
        assert not ra.verify_message_authenticator(bytes(tampered), secret, req_auth)
        assert ra.parse_radius_packet(bytes(tampered)) != first
    for _ in range(2):                        # malformed: refused each time
        with pytest.raises(ra.DecodeError):
            ra.parse_radius_packet(signed[:-3])    # Length says more than arrived


def test_the_nr_answer_to_an_earlier_retransmission_completes_the_create():
    """Under load the NR's answer can come after the NI retransmitted (with a new MSN):
    the NF installs on the answer to any MSN it forwarded for the same request (answers
    only to the newest MSN left every session of a 1,000-MN burst pending), but not on
    one to a request that has since changed. A retransmission within `reforward_after`
    of the forward is not forwarded at all (absorbed): the answer to the first completes
    it the same way."""
    from mip6bench.natfw import wire as w
    from mip6bench.natfw.core import InstallPinhole, NfCore, NrCore, SessionReady

    from .natfw_harness import COA, COTI, HOA, SID, T0, tok

    def sends(actions, upstream=None):
        return [a for a in actions if isinstance(a, SendNslp)
                and (upstream is None or a.upstream == upstream)]

    for changed, reforward in ((False, 0.0), (True, 2.0), (False, 2.0)):
        nf = NfCore({1: KEY}, wall_clock=lambda now: T0 + now, reforward_after=reforward)
        ni, nr = NiCore(tok(), msn_start=100), NrCore()
        mip6 = w.Mip6Flow(w.MIP6_MH, 2, HOA)
        (c1,) = sends(ni.create(SID, COTI, 60, 0.0, mip6=mip6))
        (f1,) = sends(nf.receive(SID, c1.mri, c1.data, 0.0, peer=COA), upstream=False)
        if changed:   # the NI asks for another lifetime before the answer comes
            (c2,) = sends(ni.create(SID, COTI, 30, 0.4, mip6=mip6))
        else:         # its retransmission timer fires: the same request, a new MSN
            (c2,) = sends(ni.handle_timer(("retransmit", SID), 0.5))
        assert w.decode(c2.data).msn == 101
        forwarded = sends(nf.receive(SID, c2.mri, c2.data, 0.5, peer=COA), upstream=False)
        absorbed = not changed and reforward > 0.5
        assert len(forwarded) == (0 if absorbed else 1)
        assert nf.counters["retransmissions_absorbed"] == (1 if absorbed else 0)
        f2 = forwarded[0] if forwarded else None
        (a1,) = sends(nr.receive(SID, f1.mri, f1.data, 0.6))       # answers MSN 100, late
        out = nf.receive(SID, a1.mri, a1.data, 0.7, upstream=True)
        if changed:
            assert out == [] and nf.counters["unmatched_response"] == 1
            (a2,) = sends(nr.receive(SID, f2.mri, f2.data, 0.8))
            out = nf.receive(SID, a2.mri, a2.data, 0.9, upstream=True)
        installs = [a for a in out if isinstance(a, InstallPinhole)]
        assert len(installs) == 1 and nf.counters["pinholes_installed"] == 1
        (up,) = sends(out, upstream=True)
        assert w.decode(up.data).msn == (101 if changed else 100)
        assert any(isinstance(a, SessionReady) for a in ni.receive(SID, up.mri, up.data, 1.0))
        if f2 is not None and not changed:   # the answer to the retransmission finds nothing pending
            (a2,) = sends(nr.receive(SID, f2.mri, f2.data, 0.8))
            assert nf.receive(SID, a2.mri, a2.data, 1.1, upstream=True) == []
            assert nf.counters["pinholes_installed"] == 1
