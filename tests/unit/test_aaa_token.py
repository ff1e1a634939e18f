"""NSIS authorization tokens: layout, mint/verify, tampering, validity, binding."""
from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mip6bench.aaa.token import (Flow, TokenError, TokenIssuer, decode_token, mint_token,
                                 parse_flows, verify_token)

KEY = bytes(range(32))
NAI = "mn1@mip6bench.example"
HOA = "2001:db8:1::1001"
NOW = 1_800_000_000.0
FLOWS = (Flow(135, "2001:db8:2::/64"), Flow(6, "2001:db8:2::10/128", 5001))


def token(**kw):
    args = dict(key=KEY, key_id=7, nai=NAI, hoa=HOA, flows=FLOWS, start=NOW, end=NOW + 600,
                token_id=b"\x01" * 8)
    args.update(kw)
    return mint_token(**args)


def test_layout_header_attributes_and_hmac():
    t = token()
    version, reserved, length, key_id = struct.unpack("!BBHI", t[:8])
    assert (version, reserved, length, key_id) == (1, 0, len(t), 7)
    # first attribute: AUTH_ENT_ID (1/1) with the NAI, padded to 4
    alen, xt, sub = struct.unpack("!HBB", t[8:12])
    assert (alen, xt, sub) == (4 + len(NAI), 1, 1)
    assert t[12:12 + len(NAI)] == NAI.encode()
    # last attribute: AUTHENTICATION_DATA (8/1), HMAC-SHA256 over everything before it
    assert struct.unpack("!HBB", t[-36:-32]) == (36, 8, 1)
    assert t[-32:] == hmac.new(KEY, t[:-32], hashlib.sha256).digest()


def test_verify_returns_the_claims():
    claims = verify_token(token(), {7: KEY}, NOW + 10, nai=NAI, hoa=HOA)
    assert (claims.nai, claims.hoa, claims.key_id, claims.token_id) == (NAI, HOA, 7, b"\x01" * 8)
    assert claims.start == pytest.approx(NOW) and claims.end == pytest.approx(NOW + 600)
    assert claims.flows == FLOWS
    assert claims.allows(135, "2001:db8:2::10")
    assert claims.allows(6, "2001:db8:2::10", 5001)
    assert not claims.allows(6, "2001:db8:2::10", 80)
    assert not claims.allows(17, "2001:db8:3::1", 53)


@pytest.mark.parametrize("kwargs, reason", [
    ({"keys": {8: KEY}}, "unknown key id"),
    ({"keys": {7: bytes(32)}}, "bad signature"),
    ({"now": NOW - 100}, "not yet valid"),
    ({"now": NOW + 602}, "expired"),          # 2 s of clock skew tolerated
    ({"nai": "mn2@mip6bench.example"}, "identity mismatch"),
    ({"hoa": "2001:db8:1::1002"}, "address mismatch"),
])
def test_rejections(kwargs, reason):
    args = {"keys": {7: KEY}, "now": NOW + 1, "nai": NAI, "hoa": HOA}
    args.update(kwargs)
    with pytest.raises(TokenError) as err:
        verify_token(token(), args.pop("keys"), args.pop("now"), **args)
    assert err.value.reason == reason


def test_every_single_bit_flip_is_caught():
    t = token()
    for i in range(len(t)):
        for bit in (0, 7):
            bad = bytearray(t)
            bad[i] ^= 1 << bit
            with pytest.raises(TokenError):
                verify_token(bytes(bad), {7: KEY}, NOW + 1)


def test_truncation_and_extension_are_malformed():
    t = token()
    for bad in (t[:-1], t + b"\0\0\0\0", t[:20]):
        with pytest.raises(TokenError, match="malformed"):
            verify_token(bad, {7: KEY}, NOW + 1)


def test_issuer_and_wall_clock_hook():
    issuer = TokenIssuer(KEY, 3, lifetime=60, flows=FLOWS)
    hook = issuer.hook(lambda: NOW)
    claims = verify_token(hook(NAI, HOA, 12.5), {3: KEY}, NOW + 59)
    assert claims.end - claims.start == pytest.approx(60)
    with pytest.raises(ValueError):
        TokenIssuer(b"short", 1)


def test_mint_refuses_bad_input():
    with pytest.raises(ValueError):
        token(flows=())
    with pytest.raises(ValueError):
        token(end=NOW)
    with pytest.raises(ValueError):
        token(nai="")
    with pytest.raises(ValueError):
        token(key=b"k" * 8)


def test_parse_flows():
    assert parse_flows(["mh:2001:db8:2::/64", "tcp:2001:db8:2::10/128:5001", "any:::/0"]) == (
        Flow(135, "2001:db8:2::/64"), Flow(6, "2001:db8:2::10/128", 5001), Flow())
    with pytest.raises(ValueError):
        parse_flows(["mh"])


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_decoder_raises_only_token_errors(data):
    try:
        decode_token(data)
    except TokenError as err:
        assert err.reason


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(0, 300), st.binary(min_size=1, max_size=4))
def test_mutated_tokens_never_verify(pos, junk):
    t = token()
    pos %= len(t)
    bad = t[:pos] + junk + t[pos + len(junk):]
    if bad == t:
        return
    with pytest.raises(TokenError):
        verify_token(bad, {7: KEY}, NOW + 1)
