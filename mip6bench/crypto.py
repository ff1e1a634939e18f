"""The symmetric primitives mip6bench needs, from the `cryptography` package.

EAP-PSK wants AES-128 (raw block encryptions, CTR and CMAC, for its key derivations,
MACs and EAX channel, which `eap/aes_eax.py` composes from these), the PAA-HA SA channel
AES-128-GCM and HKDF-SHA256. This module only pins them to AES-128 and to the shapes the
callers use; every operation is `cryptography`'s (OpenSSL underneath).

    aes128_ecb_encrypt(key, data) -> bytes          data: whole 16-byte blocks, no padding
    aes128_ctr(key, counter_block, data) -> bytes   the 16-byte block is one big-endian
                                                    counter, +1 per block, mod 2^128
    aes128_cmac(key, data) -> 16-byte tag           RFC 4493
    gcm = Aes128Gcm(key)                            AES-128-GCM, 16-byte tag appended
    gcm.encrypt(nonce, plaintext, aad) -> ciphertext || tag
    gcm.decrypt(nonce, ciphertext || tag, aad) -> plaintext, or raises InvalidTag
    hkdf_sha256(ikm, salt, info, length) -> bytes   RFC 5869
    warm_up()                                       each primitive once (see below)

Keys are exactly 16 bytes (ValueError otherwise: EAP-PSK and the SA channel are AES-128
only, so a 24- or 32-byte key is a mistake, not a request for AES-192/256); GCM nonces
8..128 bytes (12 is the norm). InvalidTag is `cryptography.exceptions.InvalidTag`.
Stateless: nothing is kept between calls, so threads need nothing of their own.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["Aes128Gcm", "InvalidTag", "aes128_cmac", "aes128_ctr", "aes128_ecb_encrypt",
           "hkdf_sha256", "warm_up"]

BLOCK_SIZE = 16
KEY_SIZE = 16
GCM_NONCE_MIN, GCM_NONCE_MAX = 8, 128
_ECB = modes.ECB()


def _aes128(key) -> algorithms.AES:
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 needs a 16-byte key, got {len(key)} bytes")
    return algorithms.AES(key)


def aes128_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-128 applied to each 16-byte block of data (no padding: len(data) % 16 == 0)."""
    aes = _aes128(key)
    n = len(data)
    if n == 0 or n % BLOCK_SIZE:
        raise ValueError(f"AES-ECB input must be whole 16-byte blocks, got {n} bytes")
    return Cipher(aes, _ECB).encryptor().update(data)


def aes128_ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """AES-128-CTR (encryption and decryption alike) starting at counter_block, which is
    incremented as one 128-bit big-endian integer (wrapping to zero after all ones)."""
    aes = _aes128(key)
    if len(counter_block) != BLOCK_SIZE:
        raise ValueError(f"CTR counter block must be 16 bytes, got {len(counter_block)}")
    if not data:
        return b""
    return Cipher(aes, modes.CTR(counter_block)).encryptor().update(data)


def aes128_cmac(key: bytes, data: bytes) -> bytes:
    """AES-128-CMAC (RFC 4493) of data: the full 16-byte tag."""
    mac = CMAC(_aes128(key))
    mac.update(data)
    return mac.finalize()


class Aes128Gcm:
    """AES-128-GCM with a 16-byte tag, the output as ciphertext || tag (cryptography's
    AESGCM, limited to 16-byte keys)."""
    __slots__ = ("_aead",)

    def __init__(self, key: bytes):
        _aes128(key)
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "Aes128Gcm(<key>)"

    @staticmethod
    def _nonce(nonce) -> bytes:
        if not GCM_NONCE_MIN <= len(nonce) <= GCM_NONCE_MAX:
            raise ValueError(f"GCM nonce must be {GCM_NONCE_MIN}..{GCM_NONCE_MAX} bytes, "
                             f"got {len(nonce)}")
        return nonce

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None = b"") -> bytes:
        return self._aead.encrypt(self._nonce(nonce), data, associated_data or None)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None = b"") -> bytes:
        """The plaintext of data (ciphertext || tag); raises InvalidTag unless it verifies."""
        return self._aead.decrypt(self._nonce(nonce), data, associated_data or None)


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-Extract then HKDF-Expand (RFC 5869) with HMAC-SHA256; no (or an empty) salt
    means HashLen zero bytes (section 2.2)."""
    return HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)


def warm_up() -> None:
    """Run every primitive once on throwaway input, and the hashlib HMACs the protocols
    use (MD5 for RADIUS, SHA-1 for RFC 6275 and RFC 4285's HMAC-SHA1, SHA-256 for tokens
    and RFC 4285's HMAC-SHA256). The first use of each in a process costs OpenSSL's
    algorithm fetch and set-up, 0.1-2.6 ms here (the very first the most); an agent
    calls this when it starts (mip6bench.runtime.agent), so its first message does not
    pay it: a PAA's first SA push and the HA's first open, a PaC's and an AAA server's
    first EAP-PSK computation."""
    import hashlib
    import hmac

    key = bytes(KEY_SIZE)
    aes128_ecb_encrypt(key, bytes(BLOCK_SIZE))
    aes128_ctr(key, bytes(BLOCK_SIZE), bytes(BLOCK_SIZE))
    aes128_cmac(key, bytes(BLOCK_SIZE))
    gcm = Aes128Gcm(hkdf_sha256(key, None, b"mip6bench warm-up", KEY_SIZE))
    gcm.decrypt(bytes(12), gcm.encrypt(bytes(12), key, key), key)
    for digest in (hashlib.md5, hashlib.sha1, hashlib.sha256):
        hmac.new(key, key, digest).digest()
