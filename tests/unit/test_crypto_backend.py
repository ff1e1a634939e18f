"""mip6bench.crypto (AES-128 ECB/CTR/CMAC/GCM and HKDF-SHA256 from the `cryptography`
package, pinned to AES-128) against published vectors, its input checks, and the EAX
composed from it against an EAX built on `cryptography` directly.

Vector sources: RFC 4493 section 4 (CMAC); NIST SP 800-38A F.1.1 (ECB) and F.5.1 (CTR);
McGrew and Viega, "The Galois/Counter Mode of Operation", appendix B, test cases 1-6
(AES-128), as OpenSSL carries them in test/recipes/30-test_evp_data/
evpciph_aes_common.txt together with the tampered-tag case; RFC 5869 appendix A.1-A.3.
"""
from __future__ import annotations

import subprocess
import sys

import cryptography.exceptions
import pytest
from cryptography.hazmat.primitives import cmac as cg_cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from mip6bench.crypto import (Aes128Gcm, InvalidTag, aes128_cmac, aes128_ctr,
                              aes128_ecb_encrypt, hkdf_sha256)

H = bytes.fromhex
PROPERTY = settings(max_examples=300, deadline=None, database=None)

# ---- RFC 4493 section 4 ------------------------------------------------------------------

RFC4493_KEY = H("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MESSAGE = H("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")


@pytest.mark.parametrize("length, tag", [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_cmac_rfc4493_examples(length, tag):
    assert aes128_cmac(RFC4493_KEY, RFC4493_MESSAGE[:length]) == H(tag)


def test_rfc4493_subkey_input_is_aes_of_zero():
    assert aes128_ecb_encrypt(RFC4493_KEY, bytes(16)) == H("7df76b0c1ab899b33e42f047b91b546f")


# ---- NIST SP 800-38A -----------------------------------------------------------------------

def test_ecb_sp800_38a_f_1_1():
    assert aes128_ecb_encrypt(RFC4493_KEY, RFC4493_MESSAGE) == H(
        "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf"
        "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4")


def test_ctr_sp800_38a_f_5_1():
    expected = H("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
                 "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee")
    counter = H("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    assert aes128_ctr(RFC4493_KEY, counter, RFC4493_MESSAGE) == expected
    assert aes128_ctr(RFC4493_KEY, counter, expected) == RFC4493_MESSAGE   # F.5.2
    assert aes128_ctr(RFC4493_KEY, counter, RFC4493_MESSAGE[:23]) == expected[:23]


def test_ctr_counter_is_the_whole_block_wrapping_mod_2_128():
    key = bytes(range(16))
    assert aes128_ctr(key, b"\xff" * 16, bytes(48)) == aes128_ecb_encrypt(
        key, b"\xff" * 16 + bytes(16) + bytes(15) + b"\x01")
    carry = bytes(8) + b"\xff" * 8            # the carry crosses the 64-bit halves
    assert aes128_ctr(key, carry, bytes(32)) == aes128_ecb_encrypt(
        key, carry + bytes(7) + b"\x01" + bytes(8))


# ---- GCM: McGrew-Viega test cases 1-6 (AES-128) ------------------------------------------------

GCM_P = H("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
GCM_K = H("feffe9928665731c6d6a8f9467308308")
GCM_A = H("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_IV6 = H("9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
            "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b")
GCM_VECTORS = [  # (case, key, iv, aad, plaintext, ciphertext, tag)
    (1, bytes(16), bytes(12), b"", b"", b"", H("58e2fccefa7e3061367f1d57a4e7455a")),
    (2, bytes(16), bytes(12), b"", bytes(16), H("0388dace60b6a392f328c2b971b2fe78"),
     H("ab6e47d42cec13bdf53a67b21257bddf")),
    (3, GCM_K, H("cafebabefacedbaddecaf888"), b"", GCM_P,
     H("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
       "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985"),
     H("4d5c2af327cd64a62cf35abd2ba6fab4")),
    (4, GCM_K, H("cafebabefacedbaddecaf888"), GCM_A, GCM_P[:60],
     H("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
       "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"),
     H("5bc94fbc3221a5db94fae95ae7121a47")),
    (5, GCM_K, H("cafebabefacedbad"), GCM_A, GCM_P[:60],
     H("61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423"
       "73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598"),
     H("3612d2e79e3b0785561be14aaca2fccb")),
    (6, GCM_K, GCM_IV6, GCM_A, GCM_P[:60],
     H("8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"
       "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5"),
     H("619cc5aefffe0bfa462af43c1699d050")),
]


@pytest.mark.parametrize("case, key, iv, aad, plaintext, ciphertext, tag", GCM_VECTORS,
                         ids=[f"case{v[0]}" for v in GCM_VECTORS])
def test_gcm_mcgrew_viega_vectors(case, key, iv, aad, plaintext, ciphertext, tag):
    gcm = Aes128Gcm(key)
    assert gcm.encrypt(iv, plaintext, aad) == ciphertext + tag
    assert gcm.decrypt(iv, ciphertext + tag, aad) == plaintext


def test_gcm_case_6_with_a_wrong_tag_fails():
    # OpenSSL's vector: case 6 with the tag's last bit flipped (Result = CIPHERFINAL_ERROR).
    _, key, iv, aad, _, ciphertext, _ = GCM_VECTORS[5]
    with pytest.raises(InvalidTag):
        Aes128Gcm(key).decrypt(iv, ciphertext + H("619cc5aefffe0bfa462af43c1699d051"), aad)


@pytest.mark.parametrize("part", ["nonce", "aad", "ciphertext", "tag", "key"])
def test_gcm_any_tampering_fails(part):
    _, key, iv, aad, plaintext, ciphertext, tag = GCM_VECTORS[3]
    parts = {"key": key, "nonce": iv, "aad": aad, "ciphertext": ciphertext, "tag": tag}
    for bit in (0, 7, 8 * len(parts[part]) - 1):
        value = bytearray(parts[part])
        value[bit // 8] ^= 1 << (bit % 8)
        p = {**parts, part: bytes(value)}
        with pytest.raises(InvalidTag):
            Aes128Gcm(p["key"]).decrypt(p["nonce"], p["ciphertext"] + p["tag"], p["aad"])
    assert Aes128Gcm(key).decrypt(iv, ciphertext + tag, aad) == plaintext


def test_gcm_truncated_input_and_invalid_tag_type():
    with pytest.raises(InvalidTag):
        Aes128Gcm(bytes(16)).decrypt(bytes(12), bytes(15))
    assert InvalidTag is cryptography.exceptions.InvalidTag


# ---- RFC 5869 appendix A (SHA-256) ------------------------------------------------------------

@pytest.mark.parametrize("ikm, salt, info, okm", [
    ("0b" * 22, "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9",
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    ("".join(f"{i:02x}" for i in range(0x00, 0x50)),
     "".join(f"{i:02x}" for i in range(0x60, 0xb0)),
     "".join(f"{i:02x}" for i in range(0xb0, 0x100)),
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
     "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
     "cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    ("0b" * 22, "", "",
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
], ids=["A.1", "A.2", "A.3"])
def test_hkdf_rfc5869_vectors(ikm, salt, info, okm):
    assert hkdf_sha256(H(ikm), H(salt), H(info), len(H(okm))) == H(okm)
    if not salt:
        assert hkdf_sha256(H(ikm), None, H(info), len(H(okm))) == H(okm)


# ---- EAX (composed here) against an EAX built on cryptography directly --------------------

keys = st.binary(min_size=16, max_size=16)


def _oracle_eax(key, nonce, header, plaintext):
    """EAX from the paper over cryptography's CTR and CMAC, as an independent oracle."""
    def omac(t, data):
        mac = cg_cmac.CMAC(algorithms.AES(key))
        mac.update(t.to_bytes(16, "big") + data)
        return mac.finalize()
    n = omac(0, nonce)
    e = Cipher(algorithms.AES(key), modes.CTR(n)).encryptor()
    c = e.update(plaintext) + e.finalize()
    return c, bytes(a ^ b ^ d for a, b, d in zip(n, omac(1, header), omac(2, c)))


@PROPERTY
@given(keys, st.binary(max_size=40), st.binary(max_size=60), st.binary(max_size=300))
def test_eax_matches_an_eax_built_on_cryptography(key, nonce, header, plaintext):
    from mip6bench.eap.aes_eax import eax_open, eax_seal
    assert eax_seal(key, nonce, header, plaintext) == _oracle_eax(key, nonce, header, plaintext)
    ciphertext, tag = _oracle_eax(key, nonce, header, plaintext)
    assert eax_open(key, nonce, header, ciphertext, tag) == plaintext


# ---- inputs, errors, the library ----------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda k: aes128_ecb_encrypt(k, bytes(16)),
    lambda k: aes128_ctr(k, bytes(16), b"x"),
    lambda k: aes128_cmac(k, b"x"),
    lambda k: Aes128Gcm(k),
])
@pytest.mark.parametrize("size", [0, 15, 17, 24, 32])
def test_only_aes_128_keys(call, size):
    with pytest.raises(ValueError, match="16-byte key"):
        call(bytes(size))


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError, match="whole 16-byte blocks"):
        aes128_ecb_encrypt(bytes(16), bytes(17))
    with pytest.raises(ValueError, match="whole 16-byte blocks"):
        aes128_ecb_encrypt(bytes(16), b"")
    with pytest.raises(ValueError, match="counter block"):
        aes128_ctr(bytes(16), bytes(12), b"x")
    for nonce in (bytes(7), bytes(129)):
        with pytest.raises(ValueError, match="nonce"):
            Aes128Gcm(bytes(16)).encrypt(nonce, b"x")
    with pytest.raises(ValueError):
        hkdf_sha256(b"k", b"s", b"i", 255 * 32 + 1)
    assert aes128_ctr(bytes(16), bytes(16), b"") == b""


def test_bytes_like_inputs():
    key = bytearray(range(16))
    assert aes128_cmac(key, memoryview(b"abc")) == aes128_cmac(bytes(key), b"abc")
    gcm = Aes128Gcm(key)
    sealed = gcm.encrypt(bytearray(12), bytearray(b"data"), memoryview(b"aad"))
    assert gcm.decrypt(bytes(12), sealed, b"aad") == b"data"
    assert gcm.encrypt(bytes(12), b"data", None) == gcm.encrypt(bytes(12), b"data", b"")
    assert "key" in repr(gcm) and str(bytes(key)) not in repr(gcm)


def test_no_ffi_left():
    """The crypto layer is the `cryptography` package: importing it loads no ctypes."""
    code = ("import sys\nimport mip6bench.crypto, mip6bench.eap.psk_crypto, "
            "mip6bench.aaa.sadist, mip6bench.pana.crypto\n"
            "print('ctypes' in sys.modules, 'cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.split() == ["False", "True"]
