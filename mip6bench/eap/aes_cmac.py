"""AES-128 building blocks of EAP-PSK: the raw block cipher and AES-CMAC.

EAP-PSK (RFC 4764) uses a single primitive, AES-128 (section 3): raw block
encryptions for its key derivations and CMAC (RFC 4493, called OMAC1 in the EAX
paper) for MAC_P, MAC_S and inside EAX. Both come from mip6bench.crypto (the
`cryptography` package); this module only fixes the key size and adds the tweaked OMAC
that EAX needs.

    aes128_encrypt_block(key, block) -> 16 bytes
    aes_cmac(key, data) -> 16-byte tag
    aes_cmac_matches(key, data, tag) -> bool      (constant-time comparison)
    omac_tweaked(key, tweak, data) -> 16 bytes     (EAX's OMAC^t, t in 0..2)
"""
from __future__ import annotations

import hmac

from mip6bench.crypto import BLOCK_SIZE, KEY_SIZE, aes128_cmac, aes128_ecb_encrypt


def _check_key(key: bytes) -> None:
    # EAP-PSK is AES-128 only (RFC 4764 section 3): refuse 24/32-byte keys rather
    # than silently switching to AES-192/256.
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 needs a 16-byte key, got {len(key)} bytes")


def aes128_encrypt_block(key: bytes, block: bytes) -> bytes:
    """AES-128(key, block) for a single 16-byte block (no mode, no padding)."""
    _check_key(key)
    if len(block) != BLOCK_SIZE:
        raise ValueError(f"AES block must be 16 bytes, got {len(block)}")
    return aes128_ecb_encrypt(key, block)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-128-CMAC of data (RFC 4493), full 16-byte tag."""
    _check_key(key)
    return aes128_cmac(key, data)


def aes_cmac_matches(key: bytes, data: bytes, tag: bytes) -> bool:
    """True when tag is the CMAC of data; compares in constant time."""
    return hmac.compare_digest(aes_cmac(key, data), tag)


def omac_tweaked(key: bytes, tweak: int, data: bytes) -> bytes:
    """OMAC^t_K(M) = CMAC_K([t]_16 || M), the tweaked MAC of the EAX paper.

    [t]_16 is the integer t as a 16-byte big-endian block; EAX uses t = 0 for the
    nonce, 1 for the header and 2 for the ciphertext.
    """
    if not 0 <= tweak < 256:
        raise ValueError("tweak out of range")
    return aes_cmac(key, tweak.to_bytes(BLOCK_SIZE, "big") + data)
