"""RADIUS pieces that carry EAP and its keys (RFC 2865, RFC 3579, RFC 2548).

Pure functions over raw RADIUS packet bytes, stdlib only, for the AAA code
(client and server side) and the hostapd interop test:

- `parse_radius_packet(data)`: strict header + attribute walk (RFC 2865
  sections 3 and 5), raises DecodeError;
- `split_eap_message(eap)` / `join_eap_message(values)`: EAP in EAP-Message
  attributes (79) of at most 253 bytes each, concatenated in order (RFC 3579
  section 3.1); `eap_from_radius(data)` joins those of a packet;
- `compute_message_authenticator`, `sign_message_authenticator`,
  `verify_message_authenticator`: Message-Authenticator (80) =
  HMAC-MD5(secret, Code|Identifier|Length|Request Authenticator|Attributes)
  with its own value zeroed (RFC 3579 section 3.2, RFC 2869 section 5.14).
  For Access-Request the Request Authenticator is the packet's own; for
  Access-Accept/Reject/Challenge pass the Request Authenticator of the
  Access-Request they answer. Sign before computing a Response Authenticator;
- `encrypt_mppe_key` / `decrypt_mppe_key`: the salted MD5 stream of RFC 2548
  section 2.4.2 (b(1) = MD5(S + R + A), b(i) = MD5(S + c(i-1))), with the
  Key-Length octet in front and zero padding to 16;
- `mppe_key_attributes(msk, ...)` / `mppe_keys_from_radius(data, ...)`: the
  MSK as MS-MPPE-Recv-Key = MSK[0:32] and MS-MPPE-Send-Key = MSK[32:64] (the
  convention hostapd and FreeRADIUS follow; the interop test checks it against
  hostapd), inside Vendor-Specific (26) for Microsoft (311), vendor types 17
  and 16;
- `encode_radius_packet(code, identifier, authenticator, attributes)`: the
  inverse of `parse_radius_packet` (attributes as (type, value) pairs);
- `response_authenticator` / `verify_response_authenticator`: the Response
  Authenticator of Access-Accept/Reject/Challenge, MD5(Code | Identifier |
  Length | Request Authenticator | Attributes | Secret) (RFC 2865 section 3);
- `build_response(...)`: a whole signed response (Message-Authenticator, then
  Response Authenticator), as an AAA server sends it;
- `check_radius_packet(packet)`: RFC 2865 section 5.44 table checks the
  testbed's RADIUS code relies on (at most one of the single-valued attributes,
  fixed sizes), raising DecodeError.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable, Iterable

from mip6bench.codec import DecodeError, Reader
from mip6bench.sansio import quick_init

HEADER_LEN = 20
MAX_PACKET_LEN = 4096
MAX_VALUE_LEN = 253
AUTHENTICATOR_LEN = 16

ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCESS_CHALLENGE = 11

USER_NAME = 1
NAS_IP_ADDRESS = 4
REPLY_MESSAGE = 18
STATE = 24
VENDOR_SPECIFIC = 26
SESSION_TIMEOUT = 27
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
EAP_MESSAGE = 79
MESSAGE_AUTHENTICATOR = 80
NAS_IPV6_ADDRESS = 95        # RFC 3162
FRAMED_IPV6_ADDRESS = 168    # RFC 6911

CODE_NAMES = {ACCESS_REQUEST: "Access-Request", ACCESS_ACCEPT: "Access-Accept",
              ACCESS_REJECT: "Access-Reject", ACCESS_CHALLENGE: "Access-Challenge"}
# Attributes that may appear at most once in the packets this code handles, and the
# value sizes RFC 2865/3162/3579/6911 fix.
_SINGLE = (USER_NAME, STATE, SESSION_TIMEOUT, CALLING_STATION_ID, NAS_IDENTIFIER,
           MESSAGE_AUTHENTICATOR, NAS_IP_ADDRESS, NAS_IPV6_ADDRESS, FRAMED_IPV6_ADDRESS)
_FIXED_SIZE = {SESSION_TIMEOUT: 4, MESSAGE_AUTHENTICATOR: 16, NAS_IP_ADDRESS: 4,
               NAS_IPV6_ADDRESS: 16, FRAMED_IPV6_ADDRESS: 16}

VENDOR_MICROSOFT = 311
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17


@quick_init
@dataclass(frozen=True)
class RadiusPacket:
    code: int
    identifier: int
    authenticator: bytes
    attributes: tuple[tuple[int, bytes], ...]
    # Where each attribute's value starts in the packet (the Message-Authenticator check
    # zeroes its value there); () for a packet not made by parse_radius_packet.
    offsets: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def values(self, attr_type: int) -> list[bytes]:
        return list(self.by_type.get(attr_type, ()))

    @cached_property
    def by_type(self) -> dict[int, list[bytes]]:
        """The values of each attribute type, in order (a response is asked for several
        types, and parsed packets are shared: parse_radius_packet's cache). Read it, do
        not change it: `values` gives a copy."""
        out: dict[int, list[bytes]] = {}
        for attr_type, value in self.attributes:
            out.setdefault(attr_type, []).append(value)
        return out


def parse_radius_packet(data: bytes) -> RadiusPacket:
    """Decode a RADIUS packet; octets past Length are padding (RFC 2865 section 3)."""
    return _parse_radius_packet(bytes(data))


# The last few packets parsed: a response is walked by the client's checks, both
# authenticator checks and the MPPE key extraction (four walks of the same bytes, ~5 % of
# the PAA's time under load). The result is immutable; malformed input is not kept.
@lru_cache(maxsize=64)
def _parse_radius_packet(data: bytes) -> RadiusPacket:
    if len(data) < HEADER_LEN:   # raises, naming the field cut short
        reader = Reader(data)
        reader.u8("RADIUS Code")
        reader.u8("RADIUS Identifier")
        reader.u16("RADIUS Length")
        reader.take(AUTHENTICATOR_LEN, "RADIUS Authenticator")
    code, identifier, length = _HEADER.unpack_from(data)
    if not HEADER_LEN <= length <= MAX_PACKET_LEN:
        raise DecodeError(f"RADIUS Length {length} outside 20..4096")
    if length > len(data):
        raise DecodeError(f"RADIUS Length {length} exceeds the {len(data)} bytes received")
    attributes, offsets = [], []
    by_type: dict[int, list[bytes]] = {}
    pos = HEADER_LEN
    while pos < length:
        if pos + 2 > length:
            raise DecodeError("truncated attribute Length: need 1 bytes, have 0")
        attr_type, attr_len = data[pos], data[pos + 1]
        if attr_len < 2:
            raise DecodeError(f"RADIUS attribute {attr_type} with Length {attr_len}")
        end = pos + attr_len
        if end > length:
            raise DecodeError(f"truncated attribute {attr_type}: need {attr_len - 2} bytes, "
                              f"have {length - pos - 2}")
        value = data[pos + 2:end]
        attributes.append((attr_type, value))
        offsets.append(pos + 2)
        values = by_type.get(attr_type)
        if values is None:
            by_type[attr_type] = [value]
        else:
            values.append(value)
        pos = end
    packet = RadiusPacket(code, identifier, data[4:HEADER_LEN], tuple(attributes),
                          tuple(offsets))
    # by_type made in the same walk, stored where the cached_property keeps its value
    # (its __get__ takes a lock on every first access in Python 3.11)
    packet.__dict__["by_type"] = by_type
    return packet


_HEADER = struct.Struct("!BBH")


def check_radius_packet(packet: RadiusPacket) -> RadiusPacket:
    """Attribute rules beyond the walk: single-valued attributes at most once, fixed
    sizes, non-empty User-Name/State/NAS-Identifier (RFC 2865 section 5)."""
    seen: set[int] = set()
    for attr_type, value in packet.attributes:
        if attr_type in _SINGLE:
            if attr_type in seen:
                raise DecodeError(f"more than one attribute {attr_type}")
            seen.add(attr_type)
        size = _FIXED_SIZE.get(attr_type)
        if size is not None and len(value) != size:
            raise DecodeError(f"attribute {attr_type} of {len(value)} bytes, must be {size}")
        if attr_type in (USER_NAME, STATE, NAS_IDENTIFIER, EAP_MESSAGE) and not value:
            raise DecodeError(f"empty attribute {attr_type}")
    return packet


def encode_radius_packet(code: int, identifier: int, authenticator: bytes,
                         attributes: Iterable[tuple[int, bytes]]) -> bytes:
    """A RADIUS packet from its fields; attribute values are raw bytes (Vendor-Specific
    values include their Vendor-Id, see `vendor_attribute` for a whole attribute)."""
    if not 0 <= identifier <= 255:
        raise ValueError("RADIUS Identifier must be 0..255")
    if len(authenticator) != AUTHENTICATOR_LEN:
        raise ValueError("RADIUS Authenticator must be 16 bytes")
    body = b"".join(encode_attribute(t, v) for t, v in attributes)
    length = HEADER_LEN + len(body)
    if length > MAX_PACKET_LEN:
        raise ValueError(f"RADIUS packet of {length} bytes exceeds 4096")
    return struct.pack("!BBH", code, identifier, length) + authenticator + body


def response_authenticator(data: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """MD5(Code | Identifier | Length | Request Authenticator | Attributes | Secret),
    RFC 2865 section 3, over the first Length bytes of `data`."""
    if len(request_authenticator) != AUTHENTICATOR_LEN:
        raise ValueError("Request Authenticator must be 16 bytes")
    if len(data) < HEADER_LEN:
        raise DecodeError("RADIUS packet shorter than its header")
    length = struct.unpack("!H", data[2:4])[0]
    return hashlib.md5(bytes(data[:4]) + request_authenticator
                       + bytes(data[HEADER_LEN:length]) + secret).digest()


def verify_response_authenticator(data: bytes, secret: bytes,
                                  request_authenticator: bytes) -> bool:
    try:
        expected = response_authenticator(data, secret, request_authenticator)
    except DecodeError:
        return False
    return hmac.compare_digest(expected, bytes(data[4:HEADER_LEN]))


def build_response(code: int, identifier: int, request_authenticator: bytes, secret: bytes,
                   attributes: Iterable[tuple[int, bytes]], raw_attributes: bytes = b"") -> bytes:
    """A signed Access-Accept/Reject/Challenge answering a request: the attributes,
    then `raw_attributes` (already encoded, e.g. MS-MPPE keys), then a
    Message-Authenticator; the Message-Authenticator is computed with the Request
    Authenticator in place, then the Response Authenticator is filled in."""
    signed = encode_signed_packet(code, identifier, request_authenticator, attributes, secret,
                                  raw_attributes)
    auth = response_authenticator(signed, secret, request_authenticator)
    return signed[:4] + auth + signed[HEADER_LEN:]


def encode_attribute(attr_type: int, value: bytes) -> bytes:
    if len(value) > MAX_VALUE_LEN:
        raise ValueError(f"RADIUS attribute value of {len(value)} bytes exceeds 253")
    return bytes([attr_type, len(value) + 2]) + value


# --- EAP-Message (RFC 3579 section 3.1) -------------------------------------

def split_eap_message(eap: bytes) -> list[bytes]:
    """EAP packet -> EAP-Message attribute values of at most 253 bytes."""
    if not eap:
        raise ValueError("empty EAP packet")
    return [eap[i:i + MAX_VALUE_LEN] for i in range(0, len(eap), MAX_VALUE_LEN)]


def join_eap_message(values: Iterable[bytes]) -> bytes:
    """Concatenate EAP-Message values; the result must be exactly one EAP packet."""
    eap = b"".join(values)
    if len(eap) < 4:
        raise DecodeError(f"EAP-Message attributes hold {len(eap)} bytes, less than an EAP header")
    eap_len = struct.unpack("!H", eap[2:4])[0]
    if eap_len != len(eap):
        raise DecodeError(f"EAP-Message attributes hold {len(eap)} bytes, "
                          f"the EAP Length says {eap_len}")
    return eap


def eap_from_radius(data: bytes) -> bytes | None:
    """The EAP packet of a RADIUS packet, or None if it has no EAP-Message."""
    values = parse_radius_packet(data).values(EAP_MESSAGE)
    return join_eap_message(values) if values else None


# --- Message-Authenticator (RFC 3579 section 3.2) ---------------------------

def _message_authenticator_input(data: bytes,
                                 request_authenticator: bytes | None) -> tuple[bytes, int]:
    """The packet with Message-Authenticator zeroed (and the Request Authenticator
    put in for a response), and the offset of the Message-Authenticator value."""
    packet = parse_radius_packet(data)
    found = None
    for (attr_type, value), offset in zip(packet.attributes, packet.offsets):
        if attr_type == MESSAGE_AUTHENTICATOR:
            if found is not None:
                raise DecodeError("more than one Message-Authenticator")
            if len(value) != 16:
                raise DecodeError(f"Message-Authenticator of {len(value)} bytes, must be 16")
            found = offset
    if found is None:
        raise DecodeError("no Message-Authenticator attribute")
    length = struct.unpack_from("!H", data, 2)[0]
    if request_authenticator is None:
        head = data[:found]
    else:
        if len(request_authenticator) != AUTHENTICATOR_LEN:
            raise ValueError("Request Authenticator must be 16 bytes")
        head = data[:4] + request_authenticator + data[HEADER_LEN:found]
    return bytes(head) + _ZERO16 + bytes(data[found + 16:length]), found


_ZERO16 = bytes(16)


def compute_message_authenticator(data: bytes, secret: bytes,
                                  request_authenticator: bytes | None = None) -> bytes:
    """HMAC-MD5 over the packet as RFC 3579 section 3.2 defines it."""
    zeroed, _ = _message_authenticator_input(data, request_authenticator)
    return hmac.digest(secret, zeroed, "md5")


def sign_message_authenticator(data: bytes, secret: bytes,
                               request_authenticator: bytes | None = None) -> bytes:
    """The packet with its Message-Authenticator value filled in (the attribute
    must be present, any value). The Authenticator field is left as it was."""
    length = struct.unpack("!H", data[2:4])[0]
    zeroed, offset = _message_authenticator_input(data, request_authenticator)
    mac = hmac.digest(secret, zeroed, "md5")
    return bytes(data[:offset]) + mac + bytes(data[offset + 16:length])


def encode_signed_packet(code: int, identifier: int, authenticator: bytes,
                         attributes: Iterable[tuple[int, bytes]], secret: bytes,
                         raw_attributes: bytes = b"") -> bytes:
    """encode_radius_packet with `raw_attributes` (already encoded) and a
    Message-Authenticator appended, signed over the packet as built (the Authenticator
    given is the one the MAC covers: a request's own, or for a response the Request
    Authenticator it answers). The same bytes as sign_message_authenticator gives for
    that packet, without walking it again to find the attribute: it is the last."""
    body = b"".join([encode_attribute(t, v) for t, v in attributes]) + raw_attributes \
        + _MA_HEADER + _ZERO16
    length = HEADER_LEN + len(body)
    if length > MAX_PACKET_LEN:
        raise ValueError(f"RADIUS packet of {length} bytes exceeds 4096")
    if not 0 <= identifier <= 255:
        raise ValueError("RADIUS Identifier must be 0..255")
    if len(authenticator) != AUTHENTICATOR_LEN:
        raise ValueError("RADIUS Authenticator must be 16 bytes")
    unsigned = _HEADER.pack(code, identifier, length) + authenticator + body
    return unsigned[:-16] + hmac.digest(secret, unsigned, "md5")


_MA_HEADER = bytes([MESSAGE_AUTHENTICATOR, 18])


def verify_message_authenticator(data: bytes, secret: bytes,
                                 request_authenticator: bytes | None = None) -> bool:
    """True if the packet carries exactly one Message-Authenticator and it verifies."""
    try:
        zeroed, offset = _message_authenticator_input(data, request_authenticator)
    except DecodeError:
        return False
    expected = hmac.digest(secret, zeroed, "md5")
    return hmac.compare_digest(expected, bytes(data[offset:offset + 16]))


# --- MS-MPPE-Send/Recv-Key (RFC 2548 section 2.4.2, 2.4.3) ------------------

def _mppe_stream(secret: bytes, request_authenticator: bytes, salt: bytes,
                 data: bytes, encrypt: bool) -> bytes:
    out = bytearray()
    chain = request_authenticator + salt
    for i in range(0, len(data), 16):
        block = data[i:i + 16]
        pad = hashlib.md5(secret + chain).digest()[:len(block)]
        result = (int.from_bytes(block, "big") ^ int.from_bytes(pad, "big")).to_bytes(
            len(block), "big")
        out += result
        # b(i) chains on the ciphertext block c(i-1) in both directions.
        chain = result if encrypt else block
    return bytes(out)


def _check_salt(salt: bytes) -> None:
    # RFC 2548: the most significant bit of the Salt MUST be set.
    if len(salt) != 2 or not salt[0] & 0x80:
        raise ValueError("MPPE Salt must be 2 bytes with the high bit set")


def encrypt_mppe_key(key: bytes, secret: bytes, request_authenticator: bytes,
                     salt: bytes) -> bytes:
    """Salt || encrypted String, the value of an MS-MPPE-Send/Recv-Key attribute."""
    _check_salt(salt)
    if len(request_authenticator) != AUTHENTICATOR_LEN:
        raise ValueError("Request Authenticator must be 16 bytes")
    if not 1 <= len(key) <= 255:
        raise ValueError("MPPE key must be 1..255 bytes")
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    return salt + _mppe_stream(secret, request_authenticator, salt, plain, encrypt=True)


def decrypt_mppe_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """Inverse of encrypt_mppe_key; raises DecodeError on a malformed value."""
    if len(value) < 18 or (len(value) - 2) % 16:
        raise DecodeError(f"MPPE key value of {len(value)} bytes, needs 2 + a multiple of 16")
    if len(request_authenticator) != AUTHENTICATOR_LEN:
        raise ValueError("Request Authenticator must be 16 bytes")
    salt = value[:2]
    if not salt[0] & 0x80:
        raise DecodeError("MPPE Salt without its high bit set")
    plain = _mppe_stream(secret, request_authenticator, salt, value[2:], encrypt=False)
    key_len = plain[0]
    if key_len == 0 or key_len > len(plain) - 1:
        raise DecodeError(f"MPPE Key-Length {key_len} does not fit the {len(plain) - 1} bytes")
    return plain[1:1 + key_len]


def vendor_attribute(vendor_id: int, vendor_type: int, value: bytes) -> bytes:
    """A Vendor-Specific (26) attribute holding one vendor sub-attribute."""
    sub = bytes([vendor_type, len(value) + 2]) + value
    return encode_attribute(VENDOR_SPECIFIC, struct.pack("!I", vendor_id) + sub)


def parse_vendor_specific(value: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """Vendor-Id and the (vendor type, value) sub-attributes of a type-26 value."""
    reader = Reader(value)
    vendor_id = reader.u32("Vendor-Id")
    subs = []
    while reader.remaining:
        sub_type = reader.u8("vendor attribute type")
        sub_len = reader.u8("vendor attribute length")
        if sub_len < 2:
            raise DecodeError(f"vendor attribute {sub_type} with length {sub_len}")
        subs.append((sub_type, reader.take(sub_len - 2, f"vendor attribute {sub_type}")))
    return vendor_id, subs


def mppe_key_attributes(msk: bytes, secret: bytes, request_authenticator: bytes,
                        rng: Callable[[int], bytes]) -> list[bytes]:
    """MS-MPPE-Recv-Key (MSK[0:32]) and MS-MPPE-Send-Key (MSK[32:64]) attributes,
    with two distinct salts as RFC 2548 requires within one packet."""
    if len(msk) < 64:
        raise ValueError("the MSK must be at least 64 bytes")
    while True:
        raw = rng(4)
        recv_salt = bytes([raw[0] | 0x80, raw[1]])
        send_salt = bytes([raw[2] | 0x80, raw[3]])
        if recv_salt != send_salt:
            break
    return [
        vendor_attribute(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY,
                         encrypt_mppe_key(msk[:32], secret, request_authenticator, recv_salt)),
        vendor_attribute(VENDOR_MICROSOFT, MS_MPPE_SEND_KEY,
                         encrypt_mppe_key(msk[32:64], secret, request_authenticator, send_salt)),
    ]


def mppe_keys_from_radius(data: bytes, secret: bytes,
                          request_authenticator: bytes) -> tuple[bytes, bytes]:
    """(MS-MPPE-Recv-Key, MS-MPPE-Send-Key) decrypted from a RADIUS response.

    Their concatenation is the MSK (for a 64-byte MSK). Raises DecodeError if
    either key is missing or repeated.
    """
    found: dict[int, list[bytes]] = {MS_MPPE_RECV_KEY: [], MS_MPPE_SEND_KEY: []}
    for value in parse_radius_packet(data).values(VENDOR_SPECIFIC):
        vendor_id, subs = parse_vendor_specific(value)
        if vendor_id != VENDOR_MICROSOFT:
            continue
        for sub_type, sub_value in subs:
            if sub_type in found:
                found[sub_type].append(decrypt_mppe_key(sub_value, secret, request_authenticator))
    for sub_type, name in ((MS_MPPE_RECV_KEY, "MS-MPPE-Recv-Key"),
                           (MS_MPPE_SEND_KEY, "MS-MPPE-Send-Key")):
        if len(found[sub_type]) != 1:
            raise DecodeError(f"{len(found[sub_type])} {name} attributes, expected one")
    return found[MS_MPPE_RECV_KEY][0], found[MS_MPPE_SEND_KEY][0]
