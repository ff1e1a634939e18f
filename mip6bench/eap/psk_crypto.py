"""EAP-PSK cryptography (RFC 4764 sections 3.1-3.3): key setup, session keys,
MAC_P / MAC_S and the EAX protected channel.

The PSK is exactly 16 bytes (section 2.1.1); `check_psk` rejects anything else
with an `InvalidPskError` naming the fix, and `psk_from_hex` reads the 32 hex
digits that configuration files (and hostapd's eap_user file) use.

    ak, kdk = key_setup(psk)                        # section 3.1
    keys = derive_session_keys(kdk, rand_p)         # section 3.2: tek, msk, emsk
    compute_mac_p(ak, id_p, id_s, rand_s, rand_p)   # section 4.1
    compute_mac_s(ak, id_s, rand_p)
    seal_channel(tek, header, nonce, plaintext) -> (tag, ciphertext)   # section 3.3
    open_channel(tek, header, nonce, tag, ciphertext) -> plaintext

Both derivations are the "modified counter mode" of AES-128: one encryption of
the input block, then one encryption per output block of that value XOR the
16-byte big-endian counter i (i = 1, 2, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mip6bench.crypto import aes128_ecb_encrypt
from mip6bench.eap.aes_cmac import BLOCK_SIZE, aes128_encrypt_block, aes_cmac
from mip6bench.eap.aes_eax import eax_open, eax_seal
from mip6bench.errors import ParameterError

PSK_LEN = 16
RAND_LEN = 16
MAC_LEN = 16
MSK_LEN = 64
EMSK_LEN = 64
# Section 3.3: the header H is Code, Identifier, Length, Type, Flags and RAND_S.
CHANNEL_HEADER_LEN = 22
CHANNEL_TAG_LEN = 16
MAX_CHANNEL_NONCE = 2**32 - 1


class InvalidPskError(ParameterError, ValueError):
    """The PSK is not exactly 16 bytes."""


def check_psk(psk: bytes) -> bytes:
    """Return psk as bytes if it is a valid EAP-PSK key, else raise InvalidPskError."""
    if not isinstance(psk, (bytes, bytearray, memoryview)):
        raise InvalidPskError(
            f"EAP-PSK key must be bytes, got {type(psk).__name__}",
            "pass 16 raw bytes, or 32 hex digits through psk_from_hex()")
    psk = bytes(psk)
    if len(psk) != PSK_LEN:
        raise InvalidPskError(
            f"EAP-PSK key must be exactly 16 bytes (RFC 4764 section 2.1.1), "
            f"got {len(psk)} bytes",
            "use a random 16-byte key, e.g. 32 hex digits through psk_from_hex()")
    return psk


def psk_from_hex(text: str) -> bytes:
    """Parse a PSK written as 32 hex digits (spaces and colons allowed)."""
    digits = text.replace(":", "").replace(" ", "").strip()
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise InvalidPskError(f"EAP-PSK key {text!r} is not hexadecimal",
                              "write the key as 32 hex digits") from None
    return check_psk(raw)


def modified_counter_mode(key: bytes, input_block: bytes, blocks: int) -> list[bytes]:
    """Output blocks 1..blocks of AES-128's modified counter mode (sections 3.1, 3.2)."""
    seed = int.from_bytes(aes128_encrypt_block(key, input_block), "big")
    if blocks < 1:
        return []
    counters = b"".join((seed ^ i).to_bytes(BLOCK_SIZE, "big") for i in range(1, blocks + 1))
    out = aes128_ecb_encrypt(key, counters)      # the counter blocks in one ECB call
    return [out[k:k + BLOCK_SIZE] for k in range(0, len(out), BLOCK_SIZE)]


def key_setup(psk: bytes) -> tuple[bytes, bytes]:
    """(AK, KDK) from the PSK: input block "0", counters 1 and 2 (section 3.1)."""
    ak, kdk = modified_counter_mode(check_psk(psk), bytes(BLOCK_SIZE), 2)
    return ak, kdk


@dataclass(frozen=True)
class SessionKeys:
    tek: bytes = field(repr=False)
    msk: bytes = field(repr=False)
    emsk: bytes = field(repr=False)


def derive_session_keys(kdk: bytes, rand_p: bytes) -> SessionKeys:
    """TEK (block 1), MSK (blocks 2-5), EMSK (blocks 6-9) from KDK and RAND_P (3.2)."""
    if len(rand_p) != RAND_LEN:
        raise ValueError("RAND_P must be 16 bytes")
    out = modified_counter_mode(kdk, rand_p, 9)
    return SessionKeys(tek=out[0], msk=b"".join(out[1:5]), emsk=b"".join(out[5:9]))


def compute_mac_p(ak: bytes, id_p: bytes, id_s: bytes, rand_s: bytes, rand_p: bytes) -> bytes:
    """MAC_P = CMAC-AES-128(AK, ID_P || ID_S || RAND_S || RAND_P)."""
    return aes_cmac(ak, id_p + id_s + rand_s + rand_p)


def compute_mac_s(ak: bytes, id_s: bytes, rand_p: bytes) -> bytes:
    """MAC_S = CMAC-AES-128(AK, ID_S || RAND_P)."""
    return aes_cmac(ak, id_s + rand_p)


def channel_nonce(nonce: int) -> bytes:
    """The 16-byte EAX nonce: the 4-byte N padded with 96 zero bits in front."""
    if not 0 <= nonce <= MAX_CHANNEL_NONCE:
        raise ValueError("PCHANNEL nonce out of range")
    return nonce.to_bytes(BLOCK_SIZE, "big")


def seal_channel(tek: bytes, header: bytes, nonce: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """EAX-encrypt a PCHANNEL payload; returns (tag, ciphertext)."""
    if len(header) != CHANNEL_HEADER_LEN:
        raise ValueError("PCHANNEL header must be the first 22 bytes of the EAP packet")
    ciphertext, tag = eax_seal(tek, channel_nonce(nonce), header, plaintext)
    return tag, ciphertext


def open_channel(tek: bytes, header: bytes, nonce: int, tag: bytes, ciphertext: bytes) -> bytes:
    """Verify and decrypt a PCHANNEL payload; raises EaxAuthenticationError."""
    if len(header) != CHANNEL_HEADER_LEN:
        raise ValueError("PCHANNEL header must be the first 22 bytes of the EAP packet")
    return eax_open(tek, channel_nonce(nonce), header, ciphertext, tag)
