"""EAX authenticated encryption (Bellare, Rogaway, Wagner, "The EAX Mode of
Operation", FSE 2004) over AES-128, built from AES-CTR and CMAC.

EAP-PSK's protected channel is EAX with AES-128 keyed by the TEK (RFC 4764
section 3.3); OpenSSL has no EAX, so it is composed here from the paper's
definition, over mip6bench.crypto's AES-CTR and CMAC:

    N' = OMAC^0_K(N)          H' = OMAC^1_K(H)
    C  = CTR_K(N', M)         (128-bit counter starting at N', wrapping mod 2^128)
    C' = OMAC^2_K(C)          Tag = (N' xor C' xor H') truncated to tag_len

    eax_seal(key, nonce, header, plaintext, tag_len=16) -> (ciphertext, tag)
    eax_open(key, nonce, header, ciphertext, tag) -> plaintext
        raises EaxAuthenticationError when the tag does not verify; the tag is
        checked before anything is decrypted (RFC 4764 section 3.3 asks for that).
"""
from __future__ import annotations

import hmac

from mip6bench.crypto import aes128_ctr
from mip6bench.eap.aes_cmac import BLOCK_SIZE, KEY_SIZE, omac_tweaked


class EaxAuthenticationError(ValueError):
    """The EAX tag did not verify: header, nonce, ciphertext or key is wrong."""


def _ctr(key: bytes, initial_counter: bytes, data: bytes) -> bytes:
    # AES-CTR (cryptography's) increments the whole 16-byte block as one big-endian integer,
    # which is exactly EAX's counter (the paper's N' + i mod 2^128).
    return aes128_ctr(key, initial_counter, data)


def _tag(key: bytes, nonce_mac: bytes, header: bytes, ciphertext: bytes) -> bytes:
    header_mac = omac_tweaked(key, 1, header)
    ciphertext_mac = omac_tweaked(key, 2, ciphertext)
    tag = (int.from_bytes(nonce_mac, "big") ^ int.from_bytes(header_mac, "big")
           ^ int.from_bytes(ciphertext_mac, "big"))
    return tag.to_bytes(BLOCK_SIZE, "big")


def _check(key: bytes, tag_len: int) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"EAX-AES-128 needs a 16-byte key, got {len(key)} bytes")
    if not 1 <= tag_len <= BLOCK_SIZE:
        raise ValueError("EAX tag length must be 1..16 bytes")


def eax_seal(key: bytes, nonce: bytes, header: bytes, plaintext: bytes,
             tag_len: int = BLOCK_SIZE) -> tuple[bytes, bytes]:
    """Encrypt plaintext and authenticate it with header; returns (ciphertext, tag)."""
    _check(key, tag_len)
    nonce_mac = omac_tweaked(key, 0, nonce)
    ciphertext = _ctr(key, nonce_mac, plaintext)
    return ciphertext, _tag(key, nonce_mac, header, ciphertext)[:tag_len]


def eax_open(key: bytes, nonce: bytes, header: bytes, ciphertext: bytes,
             tag: bytes) -> bytes:
    """Verify tag over (nonce, header, ciphertext), then decrypt."""
    _check(key, len(tag))
    nonce_mac = omac_tweaked(key, 0, nonce)
    expected = _tag(key, nonce_mac, header, ciphertext)[:len(tag)]
    if not hmac.compare_digest(expected, tag):
        raise EaxAuthenticationError("EAX tag does not verify")
    return _ctr(key, nonce_mac, ciphertext)
