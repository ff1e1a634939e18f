"""The EAP server state machine running EAP-PSK (RFC 3748; after RFC 4137's
stand-alone and backend authenticators).

    server = EapServer(lookup, "aaa.example.org")   # lookup(nai) -> 16-byte PSK or None
    actions = server.start()                        # [SendEap(Identity Request)]
    actions = server.receive(eap_response_bytes)    # next Request, or Success/Failure
    server.status, server.msk, server.emsk          # keys once status is SUCCESS
    server.peer_id                                  # authenticated EAP-PSK ID_P
    server.identity                                 # Identity Response (not authenticated)

Conversation: Identity Request -> Identity Response -> EAP-PSK (four messages)
-> Success, or Failure when the identity is unknown to `lookup`, the peer Naks
EAP-PSK, MAC_P is wrong or the peer ends EAP-PSK with DONE_FAILURE. The final
actions include `EapSucceeded(msk, emsk, peer_id)` or `EapFailed(reason)`.

Identifiers: the first is random, each new Request takes the next value mod 256
(RFC 3748 section 4.1); Responses with another Identifier, and repeated
Responses to a Request already answered, are discarded. Success and Failure
carry the Identifier of the Response they answer (RFC 3748 section 4.2).

Backend use (embedded AAA behind a pass-through authenticator, or a RADIUS
server): skip `start()` and feed the Identity Response the authenticator
obtained; the server adopts its Identifier. `last_request` is the outstanding
Request, for lower layers that must retransmit it themselves. `server_id` is
ID_S, see `psk_method` for the exact bytes; `discard_bad_mac_p` chooses how a
wrong PSK is treated (RFC 4764 section 8.8).
"""
from __future__ import annotations

import os
from typing import Callable

from mip6bench.codec import DecodeError
from mip6bench.eap.actions import EapFailed, EapStatus, EapSucceeded, SendEap, discard
from mip6bench.eap.method import Outcome
from mip6bench.eap.packet import (
    EapCode,
    EapPacket,
    EapType,
    decode_eap_packet,
    failure,
    identity_request,
    nak_desired_types,
    success,
)
from mip6bench.eap.psk_messages import MAX_NAI_LEN
from mip6bench.eap.psk_method import PskServerMethod
from mip6bench.sansio import Action, Event

ROLE = "server"


class EapServer:
    def __init__(self, credentials: Callable[[str], bytes | None], server_id: str, *,
                 rng: Callable[[int], bytes] = os.urandom, discard_bad_mac_p: bool = False):
        self._credentials = credentials
        self.server_id = server_id
        self._server_id_bytes = server_id.encode("utf-8")
        if not 1 <= len(self._server_id_bytes) <= MAX_NAI_LEN:
            raise ValueError("server_id (EAP-PSK ID_S) must be 1..966 bytes of UTF-8")
        self._rng = rng
        self._discard_bad_mac_p = discard_bad_mac_p
        self.status = EapStatus.PENDING
        self.msk: bytes | None = None
        self.emsk: bytes | None = None
        self.identity: str | None = None
        self.failure_reason: str | None = None
        self._phase = "idle"   # idle -> identity -> method -> done
        self._current_id: int | None = None
        self._last_request: bytes | None = None
        self._method: PskServerMethod | None = None

    @property
    def peer_id(self) -> str | None:
        return self._method.peer_id if self._method is not None else None

    @property
    def last_request(self) -> bytes | None:
        return self._last_request if self._phase in ("identity", "method") else None

    def start(self) -> list[Action]:
        """Begin the conversation with an Identity Request."""
        if self._phase != "idle":
            raise RuntimeError("EapServer.start() called twice")
        self._current_id = self._rng(1)[0]
        self._phase = "identity"
        return self._send_request(identity_request(self._current_id).encode())

    def receive(self, data: bytes) -> list[Action]:
        """Process one EAP packet from the peer."""
        if self._phase == "done":
            return [discard(ROLE, "EAP conversation already finished")]
        try:
            packet = decode_eap_packet(data)
        except DecodeError as err:
            return [discard(ROLE, err.reason)]
        if packet.code != EapCode.RESPONSE:
            return [discard(ROLE, "an EAP server only accepts Responses")]
        if self._phase == "idle":
            if packet.type != EapType.IDENTITY:
                return [discard(ROLE, "a conversation starts with an Identity Response")]
            self._current_id = packet.identifier
            self._phase = "identity"
        if packet.identifier != self._current_id:
            return [discard(ROLE, f"Identifier {packet.identifier} does not match the "
                                  f"outstanding Request ({self._current_id})")]
        if self._phase == "identity":
            return self._on_identity(packet)
        return self._on_method_response(packet)

    def _next_id(self) -> int:
        assert self._current_id is not None
        return (self._current_id + 1) % 256

    def _send_request(self, request: bytes) -> list[Action]:
        self._last_request = request
        return [SendEap(request)]

    def _on_identity(self, packet: EapPacket) -> list[Action]:
        if packet.type != EapType.IDENTITY:
            return [discard(ROLE, f"expected an Identity Response, got Type {packet.type}")]
        try:
            identity = packet.type_data.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail("Identity Response is not UTF-8")
        self.identity = identity
        events: list[Action] = [Event("eap.identity", {"role": ROLE, "identity": identity})]
        if self._credentials(identity) is None:
            return events + self._fail(f"unknown identity {identity!r}")
        self._method = PskServerMethod(self._server_id_bytes, self._credentials, rng=self._rng,
                                       discard_bad_mac_p=self._discard_bad_mac_p)
        self._current_id = self._next_id()
        self._phase = "method"
        return events + self._send_request(self._method.initial_request(self._current_id))

    def _on_method_response(self, packet: EapPacket) -> list[Action]:
        assert self._method is not None
        if packet.type == EapType.NAK:
            wanted = list(nak_desired_types(packet))
            return [Event("eap.nak", {"role": ROLE, "wanted": wanted})] + self._fail(
                f"peer refused EAP-PSK (Nak, wants {wanted or 'nothing'})")
        if packet.type != self._method.method_type:
            return [discard(ROLE, f"Response Type {packet.type} does not match the Request")]
        step = self._method.process(packet, self._next_id())
        if step.outcome is Outcome.DISCARD:
            return [discard(ROLE, step.reason)]
        if step.outcome is Outcome.FAILURE:
            return self._fail(step.reason)
        if step.outcome is Outcome.SUCCESS:
            return self._succeed()
        assert step.request is not None
        self._current_id = self._next_id()
        return self._send_request(step.request)

    def _succeed(self) -> list[Action]:
        assert self._method is not None and self._current_id is not None
        keys = self._method.keys()
        assert keys is not None
        self.msk, self.emsk = keys
        self.status = EapStatus.SUCCESS
        self._phase = "done"
        return [SendEap(success(self._current_id).encode()),
                Event("eap.success", {"role": ROLE, "peer_id": self.peer_id}),
                EapSucceeded(self.msk, self.emsk, self.peer_id)]

    def _fail(self, reason: str) -> list[Action]:
        assert self._current_id is not None
        self.status = EapStatus.FAILURE
        self.failure_reason = reason
        self._phase = "done"
        return [SendEap(failure(self._current_id).encode()),
                Event("eap.failure", {"role": ROLE, "reason": reason}),
                EapFailed(reason)]
