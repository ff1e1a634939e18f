"""Mobile IPv6 cryptography: return routability (RFC 6275 5.2) and RFC 4285 authentication.

Return routability (RFC 6275 5.2.5, 6.2.7):
    home_keygen_token(kcn, hoa, nonce)      First(64, HMAC_SHA1(Kcn, HoA | nonce | 0))
    care_of_keygen_token(kcn, coa, nonce)   First(64, HMAC_SHA1(Kcn, CoA | nonce | 1))
    binding_management_key(home, care_of)   Kbm = SHA1(home | care-of), or SHA1(home)
                                            when deregistering (care_of=None)
    bad_authenticator(kbm, coa, cn, mh_data)  First(96, HMAC_SHA1(Kbm, CoA | CN | MH data))
    bad_mh_data(raw_mh)                     "MH Data" of 6.2.7: the Mobility Header with
                                            the checksum zeroed and the Authenticator field
                                            itself left out (its option type and length stay)
    encode_with_bad(msg, kbm, coa, cn, src, dst) / verify_bad(raw_mh, kbm, coa, cn)

RFC 4285 (section 5):
    MN-HA:  Authenticator = First(96, HMAC_SHA1(key, CoA | HoA | MH data)) where MH data
            runs from the start of the Mobility Header up to and including the SPI field of
            the Authentication option, with the checksum zeroed.
            Algorithm "hmac-sha1-96" is RFC 4285's. "hmac-sha256-128" (alias
            "hmac-sha256") is this project's extension: the same construction with
            HMAC-SHA-256 truncated to 128 bits, the truncation RFC 4868 uses for IPsec.
    MN-AAA: Authenticator = HMAC_SHA1(key, SHA1(CoA | HoA | MH data)) (RFC 4285 5.2, no
            truncation is specified there). Provided for completeness; the cores use MN-HA.
    encode_with_mn_ha(msg, sa, coa, hoa, src, dst) / verify_mn_ha(raw_mh, sa, coa, hoa)

Replay protection timestamps (RFC 4285 section 6) are 64-bit NTP format: seconds in the
high 32 bits, fraction in the low 32 bits: ntp_timestamp(seconds) / ntp_seconds(ts).
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac

from mip6bench.codec import DecodeError
from mip6bench.mipv6.constants import AUTH_SUBTYPE_MN_HA, OptionType
from mip6bench.mipv6.wire import (
    BAD_AUTHENTICATOR_LEN,
    Authentication,
    BindingAuthorizationData,
    MobilityMessage,
    address_bytes,
    encode_mh,
    mh_body,
    mh_body_with_options,
    option_offset,
    with_checksum,
)

KCN_LEN = 20       # RFC 6275 5.2.1: Kcn is 20 octets
NONCE_LEN = 8      # nonces never leave the CN; 64 bits as suggested in RFC 6275 5.2.2
TOKEN_LEN = 8      # keygen tokens are 64 bits (RFC 6275 5.2.5)

# algorithm name -> (hash constructor name, authenticator length in bytes)
AUTH_ALGORITHMS: dict[str, tuple[str, int]] = {
    "hmac-sha1-96": ("sha1", 12),
    "hmac-sha256-128": ("sha256", 16),
}
ALGORITHM_ALIASES = {"hmac-sha256": "hmac-sha256-128", "hmac_sha1": "hmac-sha1-96"}


def canonical_algorithm(name: str) -> str:
    name = ALGORITHM_ALIASES.get(name, name)
    if name not in AUTH_ALGORITHMS:
        raise ValueError(f"unknown authentication algorithm {name!r}; known: {sorted(AUTH_ALGORITHMS)}")
    return name


def authenticator_length(algorithm: str) -> int:
    return AUTH_ALGORITHMS[canonical_algorithm(algorithm)][1]


# --------------------------------------------------------------------------- return routability

def _keygen_token(kcn: bytes, address: str, nonce: bytes, which: int) -> bytes:
    mac = hmac.new(kcn, address_bytes(address) + nonce + bytes((which,)), hashlib.sha1).digest()
    return mac[:TOKEN_LEN]


def home_keygen_token(kcn: bytes, home_address: str, nonce: bytes) -> bytes:
    """RFC 6275 5.2.5; the trailing 0 is a single zero octet."""
    return _keygen_token(kcn, home_address, nonce, 0)


def care_of_keygen_token(kcn: bytes, care_of_address: str, nonce: bytes) -> bytes:
    return _keygen_token(kcn, care_of_address, nonce, 1)


def binding_management_key(home_token: bytes, care_of_token: bytes | None = None) -> bytes:
    """Kbm (RFC 6275 5.2.5). Without a care-of token: the deregistration form SHA1(home token)."""
    return hashlib.sha1(home_token + (care_of_token or b"")).digest()


def bad_mh_data(raw_mh: bytes) -> bytes:
    """RFC 6275 6.2.7 "MH Data": the Mobility Header without the Authenticator field,
    computed as if the checksum were zero. Raises DecodeError if there is no BAD option."""
    offset = option_offset(raw_mh, OptionType.BINDING_AUTHORIZATION_DATA)
    if offset is None:
        raise DecodeError("no binding authorization data option")
    start = offset + 2
    end = start + raw_mh[offset + 1]
    return raw_mh[:4] + b"\x00\x00" + raw_mh[6:start] + raw_mh[end:]


def bad_authenticator(kbm: bytes, care_of_address: str, correspondent: str, mh_data: bytes) -> bytes:
    data = address_bytes(care_of_address) + address_bytes(correspondent) + mh_data
    return hmac.new(kbm, data, hashlib.sha1).digest()[:BAD_AUTHENTICATOR_LEN]


def _without(msg: MobilityMessage, option_class) -> tuple:
    return tuple(o for o in msg.options if not isinstance(o, option_class))


def encode_with_bad(msg: MobilityMessage, kbm: bytes, care_of_address: str, correspondent: str,
                    src: str, dst: str) -> bytes:
    """Append a Binding Authorization Data option (last) to a BU/BA and encode it.

    ``care_of_address`` is the CoA being registered (the HoA when deregistering from
    home); ``src``/``dst`` are the checksum pseudo-header addresses (see wire.encode_mh).
    """
    placeholder = dataclasses.replace(
        msg, options=_without(msg, BindingAuthorizationData) + (BindingAuthorizationData(bytes(12)),))
    auth = bad_authenticator(kbm, care_of_address, correspondent, bad_mh_data(mh_body(placeholder)))
    final = dataclasses.replace(
        placeholder, options=placeholder.options[:-1] + (BindingAuthorizationData(auth),))
    return encode_mh(final, src, dst)


def verify_bad(raw_mh: bytes, kbm: bytes, care_of_address: str, correspondent: str) -> bool:
    offset = option_offset(raw_mh, OptionType.BINDING_AUTHORIZATION_DATA)
    if offset is None:
        return False
    received = raw_mh[offset + 2:offset + 2 + raw_mh[offset + 1]]
    expected = bad_authenticator(kbm, care_of_address, correspondent, bad_mh_data(raw_mh))
    return hmac.compare_digest(received, expected)


# --------------------------------------------------------------------------- RFC 4285

def mn_ha_mh_data(raw_mh: bytes) -> bytes:
    """RFC 4285 section 5 "MH Data": from the start of the MH up to and including the SPI
    of the Authentication option, checksum zeroed. Raises DecodeError if there is none."""
    offset = option_offset(raw_mh, OptionType.AUTHENTICATION)
    if offset is None:
        raise DecodeError("no authentication option")
    end = offset + 7  # type, length, subtype, 4-byte SPI
    if raw_mh[offset + 1] < 5:
        raise DecodeError("authentication option too short")
    return raw_mh[:4] + b"\x00\x00" + raw_mh[6:end]


def mn_ha_authenticator(key: bytes, algorithm: str, care_of_address: str, home_address: str,
                        mh_data: bytes) -> bytes:
    digest, length = AUTH_ALGORITHMS[canonical_algorithm(algorithm)]
    data = address_bytes(care_of_address) + address_bytes(home_address) + mh_data
    return hmac.digest(key, data, digest)[:length]     # one-shot: OpenSSL's HMAC in one call


def mn_aaa_authenticator(key: bytes, care_of_address: str, home_address: str, mh_data: bytes) -> bytes:
    """RFC 4285 5.2 with the HMAC_SHA1_SPI hash function: HMAC_SHA1(key, SHA1(CoA|HoA|MH data))."""
    inner = hashlib.sha1(address_bytes(care_of_address) + address_bytes(home_address) + mh_data).digest()
    return hmac.new(key, inner, hashlib.sha1).digest()


def encode_with_mn_ha(msg: MobilityMessage, sa, care_of_address: str, home_address: str,
                      src: str, dst: str) -> bytes:
    """Append an MN-HA Authentication option (last) computed with ``sa`` (a MobilitySA)."""
    length = authenticator_length(sa.algorithm)
    body, offset = mh_body_with_options(
        msg, _without(msg, Authentication) + (Authentication(sa.spi, bytes(length), AUTH_SUBTYPE_MN_HA),))
    # MH data (section 5): up to and including the SPI, checksum zero (it is, in body).
    start = offset + 7
    auth = mn_ha_authenticator(sa.key, sa.algorithm, care_of_address, home_address, body[:start])
    # The authenticator goes where the placeholder's zeros are (after the option's
    # subtype and SPI): the message encoded once, not again with the final option.
    return with_checksum(body[:start] + auth + body[start + length:], src, dst)


def verify_mn_ha(raw_mh: bytes, sa, care_of_address: str, home_address: str) -> bool:
    """True if the first Authentication option is MN-HA, carries ``sa.spi`` and a correct
    authenticator of the length ``sa.algorithm`` produces."""
    offset = option_offset(raw_mh, OptionType.AUTHENTICATION)
    if offset is None:
        return False
    olen = raw_mh[offset + 1]
    if olen < 6 or raw_mh[offset + 2] != AUTH_SUBTYPE_MN_HA:
        return False
    if int.from_bytes(raw_mh[offset + 3:offset + 7], "big") != sa.spi:
        return False
    received = raw_mh[offset + 7:offset + 2 + olen]
    if len(received) != authenticator_length(sa.algorithm):
        return False
    # MH data (mn_ha_mh_data, the option found once): up to the SPI, checksum zeroed.
    expected = mn_ha_authenticator(sa.key, sa.algorithm, care_of_address, home_address,
                                   raw_mh[:4] + b"\x00\x00" + raw_mh[6:offset + 7])
    return hmac.compare_digest(received, expected)


# --------------------------------------------------------------------------- timestamps

def ntp_timestamp(seconds: float) -> int:
    """64-bit NTP format (RFC 4285 section 6): integer seconds << 32 | 32-bit fraction."""
    if seconds < 0:
        raise ValueError("NTP timestamps cannot be negative")
    whole = int(seconds)
    fraction = int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole & 0xFFFFFFFF) << 32) | fraction


def ntp_seconds(timestamp: int) -> float:
    return (timestamp >> 32) + (timestamp & 0xFFFFFFFF) / (1 << 32)
