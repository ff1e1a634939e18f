"""PANA key derivation and message integrity (RFC 5191 sections 5.3 and 5.4).

    prf(algorithm, key, data) -> bytes
    prf_plus(algorithm, key, seed, length) -> bytes        RFC 7296 section 2.13
    pana_auth_key(prf_alg, integrity_alg, msk, i_par, i_pan, pac_nonce, paa_nonce, key_id)
    sign(msg, key, integrity_alg) -> bytes                 appends the AUTH AVP
    verify(msg, key, integrity_alg) -> bool                checks a decoded message

PANA_AUTH_KEY = prf+(MSK, "IETF PANA" | I_PAR | I_PAN | PaC_nonce | PAA_nonce | Key_ID)
where I_PAR and I_PAN are the whole initial PANA-Auth-Request/-Answer (the ones with the
S flag, header and AVPs as sent), the nonces are the Nonce AVP values of the current
authentication or re-authentication phase and Key_ID is the 4-byte Key-Id AVP value.
The key is as long as the integrity algorithm's key. The AUTH AVP value is the integrity
algorithm over the whole PANA message with the AUTH value set to zeros.

Algorithm identifiers are IKEv2 transform IDs (RFC 5191 8.3/8.6): PRF_HMAC_SHA1 (2,
mandatory), PRF_HMAC_SHA2_256 (5); AUTH_HMAC_SHA1_160 (7, mandatory, RFC 4595),
AUTH_HMAC_SHA2_256_128 (12).
"""
from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from .message import Message, auth_avp, encode_message, AVP_AUTH

PRF_HMAC_SHA1 = 2
PRF_HMAC_SHA2_256 = 5
AUTH_HMAC_SHA1_160 = 7
AUTH_HMAC_SHA2_256_128 = 12


@dataclass(frozen=True)
class IntegrityAlgorithm:
    ident: int
    name: str
    digest: str
    key_len: int
    output_len: int


PRF_DIGESTS = {PRF_HMAC_SHA1: "sha1", PRF_HMAC_SHA2_256: "sha256"}
_PRF_HASHES = {PRF_HMAC_SHA1: hashes.SHA1(), PRF_HMAC_SHA2_256: hashes.SHA256()}
INTEGRITY_ALGORITHMS = {
    AUTH_HMAC_SHA1_160: IntegrityAlgorithm(AUTH_HMAC_SHA1_160, "AUTH_HMAC_SHA1_160", "sha1", 20, 20),
    AUTH_HMAC_SHA2_256_128: IntegrityAlgorithm(
        AUTH_HMAC_SHA2_256_128, "AUTH_HMAC_SHA2_256_128", "sha256", 32, 16),
}

PANA_LABEL = b"IETF PANA"


def prf(algorithm: int, key: bytes, data: bytes) -> bytes:
    try:
        digest = PRF_DIGESTS[algorithm]
    except KeyError:
        raise ValueError(f"unsupported PRF algorithm {algorithm}") from None
    return hmac.digest(key, data, digest)


def prf_plus(algorithm: int, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+ of RFC 7296 2.13: T1 = prf(K, S|0x01), Tn = prf(K, Tn-1|S|n), concatenated.

    With an HMAC prf this is, step for step, HKDF-Expand (RFC 5869 2.3) with PRK = K and
    info = S, including the one-octet counter's limit of 255 blocks: cryptography's."""
    try:
        digest = _PRF_HASHES[algorithm]
    except KeyError:
        raise ValueError(f"unsupported PRF algorithm {algorithm}") from None
    if length > 255 * digest.digest_size:  # the counter is one octet
        raise ValueError("prf+ cannot produce that much keying material")
    return HKDFExpand(digest, length, seed).derive(key)


def integrity_algorithm(ident: int) -> IntegrityAlgorithm:
    try:
        return INTEGRITY_ALGORITHMS[ident]
    except KeyError:
        raise ValueError(f"unsupported integrity algorithm {ident}") from None


def pana_auth_key(prf_alg: int, integrity_alg: int, msk: bytes, i_par: bytes, i_pan: bytes,
                  pac_nonce: bytes, paa_nonce: bytes, key_id: int) -> bytes:
    """PANA_AUTH_KEY (RFC 5191 5.3)."""
    seed = (PANA_LABEL + i_par + i_pan + pac_nonce + paa_nonce + struct.pack("!I", key_id))
    return prf_plus(prf_alg, msk, seed, integrity_algorithm(integrity_alg).key_len)


def auth_value(key: bytes, integrity_alg: int, zeroed_message: bytes) -> bytes:
    """PANA_AUTH_HASH(PANA_AUTH_KEY, PANA_PDU) with the AUTH value already zeroed."""
    alg = integrity_algorithm(integrity_alg)
    return hmac.digest(key, zeroed_message, alg.digest)[:alg.output_len]


def sign(msg: Message, key: bytes, integrity_alg: int) -> bytes:
    """Encode `msg` (which must not carry AUTH) with an AUTH AVP appended (RFC 5191 5.4)."""
    if msg.find(AVP_AUTH) is not None:
        raise ValueError("message already carries an AUTH AVP")
    size = integrity_algorithm(integrity_alg).output_len
    unsigned = Message(msg.type, msg.flags, msg.session_id, msg.seq,
                       msg.avps + (auth_avp(b"\0" * size),))
    data = encode_message(unsigned)
    # The AUTH AVP is last and its value is a multiple of 4 bytes, so it ends the message.
    return data[:-size] + auth_value(key, integrity_alg, data)


def verify(msg: Message, key: bytes, integrity_alg: int) -> bool:
    """True if the decoded `msg` carries an AUTH AVP that matches `key`."""
    avp = msg.find(AVP_AUTH)
    alg = INTEGRITY_ALGORITHMS.get(integrity_alg)
    if avp is None or alg is None or not msg.raw or avp.offset < 0:
        return False
    if len(avp.value) != alg.output_len:
        return False
    start, end = avp.offset, avp.offset + len(avp.value)
    zeroed = msg.raw[:start] + b"\0" * (end - start) + msg.raw[end:]
    return hmac.compare_digest(auth_value(key, integrity_alg, zeroed), avp.value)
