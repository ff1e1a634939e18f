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


def test_layout_rfc5981_session_auth_object():
    t = token()
    # NSLP object header: A/B 10 (forward), type 0x016 SESSION_AUTH_OBJECT, length in words
    assert struct.unpack("!HH", t[:4]) == (0x8016, (len(t) - 4) // 4)
    # first attribute: AUTH_ENT_ID (X-Type 1) / FQDN (3) naming the authorizing entity
    issuer = b"aaa.mip6bench.example"
    assert struct.unpack("!HBB", t[4:8]) == (4 + len(issuer), 1, 3)
    assert t[8:8 + len(issuer)] == issuer
    off = 8 + len(issuer) + (-len(issuer) % 4)
    # AUTH_ENT_ID / HMAC_SIGNED (10): reserved | transform 12 (AUTH_HMAC_SHA2_256_128)
    assert t[off:off + 8] == struct.pack("!HBBHH", 8, 1, 10, 0, 12)
    # last attribute: AUTHENTICATION_DATA (8) with Key-ID 7 and a 128-bit HMAC over the
    # whole object with the HMAC field zeroed
    assert struct.unpack("!HBBI", t[-24:-16]) == (24, 8, 0, 7)
    assert t[-16:] == hmac.new(KEY, t[:-16] + bytes(16), hashlib.sha256).digest()[:16]
    # NSLP_OBJECT_LIST (7): one entry, SESSION_AUTH itself
    assert struct.pack("!HBBHH", 8, 7, 0, 1, 0x016) in t


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


def test_whole_token_vector_written_out_by_hand():
    """Every attribute of a minted token, in order, with its RFC 5981 X-Type/SubType:
    AUTH_ENT_ID 1 (FQDN 3, HMAC_SIGNED 10), SESSION_ID 2, SOURCE_ADDR 3 (IPv6 2),
    DEST_ADDR 4 (testbed flow 250), START_TIME 5 / END_TIME 6 (NTP 1),
    NSLP_OBJECT_LIST 7, AUTHENTICATION_DATA 8."""
    ntp = lambda unix: struct.pack("!II", int(unix) + 2208988800, 0)  # noqa: E731
    body = bytes.fromhex(
        "000f0103" + b"aaa.example".hex() + "00"            # AUTH_ENT_ID / FQDN
        "0008010a" "0000000c"                               # HMAC_SIGNED, transform 12
        "000f0200" "0101010101010101" + b"a@b".hex() + "00"  # SESSION_ID: token id | NAI
        "00140302" "20010db8000100000000000000001001"       # SOURCE_ADDR / IPv6 = HoA
        "001804fa" "87400000" "20010db8000200000000000000000000")   # MH to 2001:db8:2::/64
    body += bytes.fromhex("000c0501") + ntp(NOW) + bytes.fromhex("000c0601") + ntp(NOW + 60)
    body += bytes.fromhex("00080700" "00010016")           # NSLP_OBJECT_LIST: SESSION_AUTH
    body += bytes.fromhex("00180800" "00000007") + bytes(16)   # Key-ID 7, HMAC zeroed
    unsigned = struct.pack("!HH", 0x8016, len(body) // 4) + body
    mac = hmac.new(KEY, unsigned, hashlib.sha256).digest()[:16]
    got = mint_token(KEY, 7, "a@b", HOA, (Flow(135, "2001:db8:2::/64"),), NOW, NOW + 60,
                     token_id=b"\x01" * 8, issuer="aaa.example")
    assert got == unsigned[:-16] + mac
    claims = verify_token(got, {7: KEY}, NOW + 1)
    assert (claims.issuer, claims.nai, claims.hoa) == ("aaa.example", "a@b", HOA)
