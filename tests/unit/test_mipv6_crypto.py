"""Return routability (RFC 6275 5.2.5, 6.2.7) and RFC 4285 authenticators, each checked
against a value computed here with hmac/hashlib over hand-assembled byte strings."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct

import pytest

from mip6bench.codec import DecodeError
from mip6bench.mipv6.crypto import (
    bad_authenticator,
    bad_mh_data,
    binding_management_key,
    canonical_algorithm,
    care_of_keygen_token,
    encode_with_bad,
    encode_with_mn_ha,
    home_keygen_token,
    mn_aaa_authenticator,
    mn_ha_authenticator,
    mn_ha_mh_data,
    ntp_seconds,
    ntp_timestamp,
    verify_bad,
    verify_mn_ha,
)
from mip6bench.mipv6.sa import MobilitySA
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingAuthorizationData,
    BindingUpdate,
    MobileNodeIdentifier,
    NonceIndices,
    ReplayProtection,
    decode_mh,
)

HOA = "2001:db8:1::100"
COA = "2001:db8:2::100"
CN = "2001:db8:3::10"
HA = "2001:db8:1::1"
KCN = bytes(range(20))
NONCE = bytes.fromhex("0102030405060708")


def a(addr: str) -> bytes:
    return ipaddress.IPv6Address(addr).packed


def test_keygen_tokens():
    expected_home = hmac.new(KCN, a(HOA) + NONCE + b"\x00", hashlib.sha1).digest()[:8]
    expected_coa = hmac.new(KCN, a(COA) + NONCE + b"\x01", hashlib.sha1).digest()[:8]
    assert home_keygen_token(KCN, HOA, NONCE) == expected_home
    assert care_of_keygen_token(KCN, COA, NONCE) == expected_coa
    assert home_keygen_token(KCN, COA, NONCE) != care_of_keygen_token(KCN, COA, NONCE)


def test_binding_management_key():
    home, care = b"H" * 8, b"C" * 8
    assert binding_management_key(home, care) == hashlib.sha1(home + care).digest()
    assert binding_management_key(home) == hashlib.sha1(home).digest()   # deregistration


def test_bad_over_hand_built_binding_update():
    """RFC 6275 6.2.7: MH Data is the Mobility Header without the Authenticator field,
    with the checksum taken as zero; the option type and length octets stay in."""
    kbm = hashlib.sha1(b"home-tok" + b"care-tok").digest()
    bu = BindingUpdate(seq=0x0102, lifetime=420, ack=True, options=(NonceIndices(0x1111, 0x2222),))
    data = encode_with_bad(bu, kbm, COA, CN, HOA, CN)
    # Hand-built: header (len 3 = 32 bytes), fixed part, NI at 12 (2n), BAD at 18 (8n+2), no padding.
    fixed = bytes([59, 3, 5, 0, 0, 0]) + struct.pack("!HHH", 0x0102, 0x8000, 105)
    options = bytes([4, 4, 0x11, 0x11, 0x22, 0x22]) + bytes([5, 12])
    mh_data = fixed + options
    expected = hmac.new(kbm, a(COA) + a(CN) + mh_data, hashlib.sha1).digest()[:12]
    assert data[:4] == fixed[:4] and data[6:20] == fixed[6:] + options and len(data) == 32
    assert data[18:20] == bytes([5, 12]) and data[20:] == expected
    assert bad_mh_data(data) == mh_data
    assert bad_authenticator(kbm, COA, CN, mh_data) == expected
    assert verify_bad(data, kbm, COA, CN)
    assert decode_mh(data, HOA, CN).find(BindingAuthorizationData).authenticator == expected


def test_bad_verification_fails_on_any_change():
    kbm = bytes(20)
    ba = BindingAck(0, 7, 420)
    data = encode_with_bad(ba, kbm, COA, CN, CN, HOA)
    assert verify_bad(data, kbm, COA, CN)
    assert not verify_bad(data, bytes([1]) + kbm[1:], COA, CN)
    assert not verify_bad(data, kbm, HOA, CN)
    tampered = bytearray(data)
    tampered[8] ^= 0xFF   # sequence number
    assert not verify_bad(bytes(tampered), kbm, COA, CN)
    # the checksum is outside what the authenticator covers
    other_checksum = bytearray(data)
    other_checksum[4] ^= 0xFF
    assert verify_bad(bytes(other_checksum), kbm, COA, CN)
    assert not verify_bad(encode_with_bad(ba, kbm, COA, CN, CN, HOA)[:-12] + bytes(12), kbm, COA, CN)
    with pytest.raises(DecodeError, match="no binding authorization data"):
        bad_mh_data(_encode(BindingAck(0, 1, 4)))


def _mn_ha_expected(key, digest, length, mh_through_spi):
    return hmac.new(key, a(COA) + a(HOA) + mh_through_spi, digest).digest()[:length]


@pytest.mark.parametrize("algorithm, digest, length", [
    ("hmac-sha1-96", hashlib.sha1, 12),
    ("hmac-sha256", hashlib.sha256, 16),
])
def test_mn_ha_authenticator_over_hand_built_binding_update(algorithm, digest, length):
    """RFC 4285 section 5: Mobility Data = CoA | HoA | MH Data, MH Data up to and
    including the SPI of the Authentication option, checksum zero."""
    key = b"0123456789abcdef"
    sa = MobilitySA(spi=0x00ABCDEF, key=key, algorithm=algorithm)
    bu = BindingUpdate(seq=9, lifetime=600, ack=True, home_registration=True,
                       options=(AlternateCareOfAddress(COA), ReplayProtection(0x1122334455667788)))
    data = encode_with_mn_ha(bu, sa, COA, HOA, HOA, HA)
    fixed = struct.pack("!HHH", 9, 0xC000, 150)
    altcoa = bytes([1, 0]) + bytes([3, 16]) + a(COA)                  # PadN(2), AltCoA at 14
    replay = bytes([1, 0]) + bytes([10, 8]) + struct.pack("!Q", 0x1122334455667788)  # at 34
    total = 44 + (1 if length == 12 else 5) + 7 + length
    units = total // 8 - 1
    pad = bytes([0]) if length == 12 else bytes([1, 3, 0, 0, 0])       # Auth ends on 8n
    auth_head = bytes([9, 5 + length, 1]) + struct.pack("!I", 0x00ABCDEF)
    mh_through_spi = bytes([59, units, 5, 0, 0, 0]) + fixed + altcoa + replay + pad + auth_head
    expected = _mn_ha_expected(key, digest, length, mh_through_spi)
    assert len(data) == total
    assert mn_ha_mh_data(data) == mh_through_spi
    assert data[len(mh_through_spi):] == expected
    assert mn_ha_authenticator(key, algorithm, COA, HOA, mh_through_spi) == expected
    assert verify_mn_ha(data, sa, COA, HOA)
    assert not verify_mn_ha(data, sa, HOA, HOA)
    assert not verify_mn_ha(data, MobilitySA(spi=0x00ABCDEF, key=b"x" * 16, algorithm=algorithm), COA, HOA)
    assert not verify_mn_ha(data, MobilitySA(spi=0x00ABCDEE, key=key, algorithm=algorithm), COA, HOA)


def test_mn_ha_rejects_wrong_subtype_or_length():
    key = b"k" * 16
    sa = MobilitySA(spi=300, key=key)
    bu = BindingUpdate(seq=1, lifetime=4, options=(MobileNodeIdentifier.from_nai("a@b"),))
    good = encode_with_mn_ha(bu, sa, COA, HOA, HOA, HA)
    assert verify_mn_ha(good, sa, COA, HOA)
    aaa = BindingUpdate(seq=1, lifetime=4, options=(Authentication(300, bytes(12), subtype=2),))
    assert not verify_mn_ha(_encode(aaa), sa, COA, HOA)
    short = BindingUpdate(seq=1, lifetime=4, options=(Authentication(300, bytes(8)),))
    assert not verify_mn_ha(_encode(short), sa, COA, HOA)
    assert not verify_mn_ha(_encode(BindingUpdate(seq=1, lifetime=4)), sa, COA, HOA)
    with pytest.raises(DecodeError):
        mn_ha_mh_data(_encode(BindingUpdate(seq=1, lifetime=4)))


def _encode(msg):
    from mip6bench.mipv6.wire import encode_mh
    return encode_mh(msg, HOA, HA)


def test_mn_aaa_authenticator():
    key = b"aaa-shared-key"
    mh = b"\x3b\x01\x05\x00\x00\x00" + bytes(10)
    inner = hashlib.sha1(a(COA) + a(HOA) + mh).digest()
    assert mn_aaa_authenticator(key, COA, HOA, mh) == hmac.new(key, inner, hashlib.sha1).digest()


def test_signing_replaces_an_existing_authenticator_option():
    sa = MobilitySA(spi=300, key=b"k" * 16)
    bu = BindingUpdate(seq=1, lifetime=4, options=(Authentication(300, b"z" * 12),))
    assert encode_with_mn_ha(bu, sa, COA, HOA, HOA, HA) == encode_with_mn_ha(
        BindingUpdate(seq=1, lifetime=4), sa, COA, HOA, HOA, HA)
    kbm = bytes(20)
    ba = BindingAck(0, 1, 4, options=(BindingAuthorizationData(b"q" * 12),))
    assert encode_with_bad(ba, kbm, COA, CN, CN, HOA) == encode_with_bad(BindingAck(0, 1, 4), kbm, COA, CN, CN, HOA)


def test_ntp_timestamps():
    assert ntp_timestamp(1.5) == (1 << 32) | (1 << 31)
    assert ntp_timestamp(0) == 0
    assert ntp_seconds(ntp_timestamp(1234.25)) == 1234.25
    assert abs(ntp_seconds(ntp_timestamp(3.1)) - 3.1) < 1e-9
    with pytest.raises(ValueError):
        ntp_timestamp(-1)


def test_algorithm_names():
    assert canonical_algorithm("hmac-sha256") == "hmac-sha256-128"
    assert canonical_algorithm("hmac-sha1-96") == "hmac-sha1-96"
    with pytest.raises(ValueError):
        canonical_algorithm("md5")


def test_mn_ha_encoding_is_the_option_filled_in_after_encoding_once():
    """encode_with_mn_ha patches the authenticator into the message it encoded once: the
    same bytes as encoding the message again with the final option (what it did
    before), for BUs and BAs with and without other options, and every algorithm."""
    import dataclasses

    from mip6bench.mipv6.constants import AUTH_SUBTYPE_MN_HA
    from mip6bench.mipv6.crypto import encode_with_mn_ha, mn_ha_authenticator, mn_ha_mh_data
    from mip6bench.mipv6.sa import MobilitySA
    from mip6bench.mipv6.wire import (AlternateCareOfAddress, Authentication, BindingAck,
                                      BindingUpdate, MobileNodeIdentifier, ReplayProtection,
                                      encode_mh, mh_body)

    coa, hoa, ha = "2001:db8:5::7", "2001:db8:1::1000", "2001:db8:1::1"
    messages = [BindingUpdate(7, 600, ack=True, home_registration=True),
                BindingUpdate(8, 600, ack=True, home_registration=True,
                              options=(AlternateCareOfAddress(coa), MobileNodeIdentifier.from_nai("mn@x.example"),
                                       ReplayProtection(0x0123456789ABCDEF))),
                BindingAck(0, 7, 600), BindingAck(129, 9, 0, options=(ReplayProtection(42),))]
    for algorithm in ("hmac-sha1-96", "hmac-sha256-128"):
        sa = MobilitySA(0x1234, bytes(range(20)), algorithm=algorithm)
        for msg in messages:
            length = len(mn_ha_authenticator(sa.key, sa.algorithm, coa, hoa, b""))
            placeholder = dataclasses.replace(msg, options=msg.options + (
                Authentication(sa.spi, bytes(length), AUTH_SUBTYPE_MN_HA),))
            auth = mn_ha_authenticator(sa.key, sa.algorithm, coa, hoa, mn_ha_mh_data(mh_body(placeholder)))
            final = dataclasses.replace(placeholder, options=msg.options + (
                Authentication(sa.spi, auth, AUTH_SUBTYPE_MN_HA),))
            assert encode_with_mn_ha(msg, sa, coa, hoa, coa, ha) == encode_mh(final, coa, ha)
