"""prf+, PANA_AUTH_KEY and the AUTH AVP against values computed independently here."""
import hashlib
import hmac

import pytest

from mip6bench.pana import crypto as c
from mip6bench.pana import message as m
from mip6bench.pana import mip6


def reference_prf_plus(key, seed, length, digest):
    # RFC 7296 2.13 written out: T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), ...
    t1 = hmac.new(key, seed + b"\x01", digest).digest()
    t2 = hmac.new(key, t1 + seed + b"\x02", digest).digest()
    t3 = hmac.new(key, t2 + seed + b"\x03", digest).digest()
    return (t1 + t2 + t3)[:length]


MSK = bytes(range(64))


@pytest.mark.parametrize("alg,digest", [(c.PRF_HMAC_SHA1, "sha1"),
                                        (c.PRF_HMAC_SHA2_256, "sha256")])
@pytest.mark.parametrize("length", [1, 20, 32, 41, 60])
def test_prf_plus_matches_rfc7296(alg, digest, length):
    seed = b"seed material"
    assert c.prf_plus(alg, MSK, seed, length) == reference_prf_plus(MSK, seed, length, digest)


def test_prf_plus_limits():
    assert len(c.prf_plus(c.PRF_HMAC_SHA1, b"k", b"s", 255 * 20)) == 255 * 20
    with pytest.raises(ValueError):
        c.prf_plus(c.PRF_HMAC_SHA1, b"k", b"s", 255 * 20 + 1)
    with pytest.raises(ValueError):
        c.prf(4, b"k", b"s")   # PRF_AES128_XCBC is not implemented


def test_pana_auth_key_sha1():
    i_par, i_pan = b"I_PAR bytes", b"I_PAN bytes"
    pac_nonce, paa_nonce = b"P" * 20, b"A" * 20
    key_id = 0x01020304
    seed = b"IETF PANA" + i_par + i_pan + pac_nonce + paa_nonce + b"\x01\x02\x03\x04"
    expected = hmac.new(MSK, seed + b"\x01", hashlib.sha1).digest()   # 20 bytes: one block
    key = c.pana_auth_key(c.PRF_HMAC_SHA1, c.AUTH_HMAC_SHA1_160, MSK, i_par, i_pan,
                          pac_nonce, paa_nonce, key_id)
    assert key == expected and len(key) == 20


def test_pana_auth_key_length_follows_integrity_algorithm():
    args = (MSK, b"r", b"n", b"p" * 8, b"a" * 8, 7)
    assert len(c.pana_auth_key(c.PRF_HMAC_SHA1, c.AUTH_HMAC_SHA2_256_128, *args)) == 32
    k = c.pana_auth_key(c.PRF_HMAC_SHA2_256, c.AUTH_HMAC_SHA2_256_128, *args)
    seed = b"IETF PANA" + b"r" + b"n" + b"p" * 8 + b"a" * 8 + b"\0\0\0\x07"
    assert k == hmac.new(MSK, seed + b"\x01", "sha256").digest()
    # any input change changes the key
    assert k != c.pana_auth_key(c.PRF_HMAC_SHA2_256, c.AUTH_HMAC_SHA2_256_128,
                                MSK, b"r", b"n", b"p" * 8, b"a" * 8, 8)


def sample_message():
    return m.Message(m.NOTIFICATION, m.FLAG_R | m.FLAG_P, 0xCAFE, 42,
                     (m.Avp(777, b"other"),))


@pytest.mark.parametrize("alg,digest,size", [(c.AUTH_HMAC_SHA1_160, "sha1", 20),
                                             (c.AUTH_HMAC_SHA2_256_128, "sha256", 16)])
def test_auth_avp_sign_and_verify(alg, digest, size):
    key = b"K" * c.INTEGRITY_ALGORITHMS[alg].key_len
    data = c.sign(sample_message(), key, alg)
    # Independent computation: the whole message with the AUTH value zeroed, HMAC, truncate.
    zeroed = data[:-size] + b"\0" * size
    assert data[-size:] == hmac.new(key, zeroed, digest).digest()[:size]
    assert data[-size - 8:-size - 4] == b"\x00\x01\x00\x00"   # AUTH code 1, no V flag
    msg = m.decode_message(data)
    assert msg.auth == data[-size:]
    assert c.verify(msg, key, alg)
    assert not c.verify(msg, b"x" * len(key), alg)
    other = c.AUTH_HMAC_SHA1_160 if alg != c.AUTH_HMAC_SHA1_160 else c.AUTH_HMAC_SHA2_256_128
    assert not c.verify(msg, key, other)      # wrong length for that algorithm


def test_auth_detects_any_modification():
    key = b"K" * 20
    data = c.sign(sample_message(), key, c.AUTH_HMAC_SHA1_160)
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        try:
            msg = m.decode_message(bytes(tampered))
        except Exception:
            continue
        assert not c.verify(msg, key, c.AUTH_HMAC_SHA1_160), i


def test_auth_avp_not_last_still_verifies():
    # A peer may put AUTH anywhere; verification zeroes it in place.
    key = b"K" * 20
    body = (m.auth_avp(b"\0" * 20), m.Avp(777, b"after"))
    raw = m.Message(m.NOTIFICATION, m.FLAG_P, 1, 2, body).encode()
    value = hmac.new(key, raw, "sha1").digest()
    raw = raw[:24] + value + raw[44:]
    assert c.verify(m.decode_message(raw), key, c.AUTH_HMAC_SHA1_160)


def test_sign_refuses_double_auth_and_unknown_algorithms():
    with pytest.raises(ValueError):
        c.sign(m.Message(m.TERMINATION, 0, 1, 1, (m.auth_avp(b"a" * 20),)), b"k",
               c.AUTH_HMAC_SHA1_160)
    with pytest.raises(ValueError):
        c.sign(sample_message(), b"k", 99)
    assert not c.verify(sample_message(), b"k", c.AUTH_HMAC_SHA1_160)   # not decoded, no AUTH


def test_mn_ha_key_derivation():
    spi, pac_nonce, paa_nonce = 0x1234, b"p" * 20, b"a" * 20
    seed = b"mip6bench MIP6 MN-HA" + b"\0\0\x12\x34" + pac_nonce + paa_nonce
    k1 = mip6.mn_ha_key(c.PRF_HMAC_SHA1, MSK, spi, pac_nonce, paa_nonce, mip6.ALG_HMAC_SHA1_96)
    assert k1 == hmac.new(MSK, seed + b"\x01", "sha1").digest()
    k2 = mip6.mn_ha_key(c.PRF_HMAC_SHA1, MSK, spi, pac_nonce, paa_nonce, mip6.ALG_HMAC_SHA256)
    assert len(k2) == 32 and k2 == reference_prf_plus(MSK, seed, 32, "sha1")
