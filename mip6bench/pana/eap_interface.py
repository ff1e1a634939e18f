"""The EAP interface the PANA cores expect (EAP itself lives in mip6bench.eap).

PaC side: an EAP peer object, a fresh one per authentication and per re-authentication
(the PaC calls `PacConfig.new_eap_peer()` each time), with

    receive(eap_packet: bytes) -> bytes | None
        Process one EAP packet from the authenticator (request, Success or Failure) and
        return the response to send, or None when there is nothing to send.
    status: str        "pending" | "success" | "failure"
    msk: bytes | None  the MSK once status is "success" and the method derives keys

The PaC feeds the EAP-Payload of every PAR to `receive` and piggybacks the response on
its PAN (RFC 5191 4.1 allows that instead of a separate PAR).

PAA side: the AAA backend is asynchronous (RADIUS), so the core holds no EAP object:
it emits `SendToAAA(session_id, eap_payload)` and is later fed
`PaaCore.aaa_result(session_id, kind, eap_payload, msk, attributes, now)`, kind being
"continue" (eap_payload is the next EAP request), "success" or "failure" (eap_payload
is the EAP Success/Failure to deliver, None lets the PAA build one). `attributes` carry
"nai", the identity the EAP method authenticated (required with "success": without it,
or when it differs from the EAP Identity Response or, on re-authentication, from the
session's NAI, the PAA answers PANA_AUTHORIZATION_REJECTED), and may carry
"session_timeout" (seconds).

The PAA sends the first EAP-Request/Identity itself, as a pass-through authenticator
does with RADIUS (RFC 3579 2.1): that lets the very first PAR (S flag) carry it without
an AAA round trip, and the backend's conversation starts with the EAP-Response/Identity.
A runtime that keeps its own pass-through authenticator state (e.g.
mip6bench.eap.passthrough.EapPassThrough, which checks Identifiers) passes
`PaaConfig.first_eap_request=lambda session_id: <its first Request>` instead.
The helpers below are the only EAP building/parsing the PANA package does.
"""
from __future__ import annotations

import struct
from typing import Callable, Protocol

EAP_REQUEST = 1
EAP_RESPONSE = 2
EAP_SUCCESS = 3
EAP_FAILURE = 4
EAP_TYPE_IDENTITY = 1


class EapPeer(Protocol):
    status: str
    msk: bytes | None

    def receive(self, eap_packet: bytes) -> bytes | None: ...


EapPeerFactory = Callable[[], EapPeer]


def identity_request(identifier: int) -> bytes:
    """EAP-Request/Identity without a displayable message (RFC 3748 5.1)."""
    return struct.pack("!BBHB", EAP_REQUEST, identifier & 0xFF, 5, EAP_TYPE_IDENTITY)


def result_packet(success: bool, identifier: int) -> bytes:
    """EAP-Success or EAP-Failure (RFC 3748 4.2)."""
    return struct.pack("!BBH", EAP_SUCCESS if success else EAP_FAILURE, identifier & 0xFF, 4)


def identity_from_response(packet: bytes) -> str | None:
    """The identity carried by an EAP-Response/Identity, else None."""
    if len(packet) < 5 or packet[0] != EAP_RESPONSE or packet[4] != EAP_TYPE_IDENTITY:
        return None
    length = struct.unpack("!H", packet[2:4])[0]
    if not 5 <= length <= len(packet):
        return None
    return packet[5:length].decode("utf-8", "replace")
