"""The EAP peer state machine (RFC 3748, simplified after RFC 4137's peer).

    peer = EapPeer("alice@example.org", psk)      # psk: exactly 16 bytes
    actions = peer.receive(eap_request_bytes)     # -> [SendEap(response), Event, ...]
    peer.status                                   # EapStatus.PENDING/SUCCESS/FAILURE
    peer.msk, peer.emsk                           # 64 bytes each once status is SUCCESS

`receive` never raises on bad input: it returns `[Event("eap.discard", ...)]`.
On the final packet it also returns `EapSucceeded(msk, emsk, peer_id)` or
`EapFailed(reason)`. There are no timers: EAP relies on its lower layer
(PANA, RADIUS) for retransmission; the peer only answers.

Rules implemented:
- Identity Request (before a method starts): answered with `identity`.
- Notification Request: answered with an empty Notification Response, but not
  while EAP-PSK runs (RFC 4764 section 8.8 advises against interleaving);
  the text goes to an `eap.notification` event.
- A Request of a Type we do not have (including Expanded Types) is answered
  with a legacy Nak listing our Types (RFC 3748 section 5.3.1); once a method
  is selected, Requests of another Type are discarded.
- A Request carrying the Identifier of the last Response is a retransmission:
  the last Response is sent again without reprocessing (RFC 3748 section 4.1).
- Success is accepted only with the Identifier of the last Response and once
  the method's decision allows it; Failure likewise unless the method decided
  unconditional success (RFC 4137 methodState/decision). An EAP-PSK failure that the
  peer detects itself (invalid MAC_S) ends the conversation at once.

`SimpleEapPeer` wraps an EapPeer in the bytes-in/bytes-out shape the PANA PaC
expects (`receive(bytes) -> bytes | None`, `status`, `msk`), and
`psk_peer_factory(identity, psk)` makes one per (re-)authentication.

`methods` maps EAP Types to zero-argument factories of `PeerMethod`s, to plug
other methods in; by default the only one is EAP-PSK with `psk`. The identity
is used both in the Identity Response and as EAP-PSK's ID_P; `expected_server_id`
(optional) makes the peer discard a first EAP-PSK message with another ID_S.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping

from mip6bench.codec import DecodeError
from mip6bench.eap.actions import EapFailed, EapStatus, EapSucceeded, SendEap, discard
from mip6bench.eap.method import Decision, MethodState, PeerMethod
from mip6bench.eap.packet import (
    EapCode,
    EapPacket,
    EapType,
    decode_eap_packet,
    identity_response,
    nak_response,
    notification_response,
)
from mip6bench.eap.psk_crypto import check_psk
from mip6bench.eap.psk_method import PskPeerMethod
from mip6bench.sansio import Action, Event

ROLE = "peer"


class EapPeer:
    def __init__(self, identity: str, psk: bytes | None = None, *,
                 methods: Mapping[int, Callable[[], PeerMethod]] | None = None,
                 expected_server_id: str | None = None,
                 rng: Callable[[int], bytes] = os.urandom):
        self.identity = identity
        self._identity_bytes = identity.encode("utf-8")
        if methods is None:
            if psk is None:
                raise ValueError("EapPeer needs an EAP-PSK key (psk) or its own methods")
            key = check_psk(psk)
            server_id = None if expected_server_id is None else expected_server_id.encode("utf-8")
            # Build one now so a bad identity fails here, not inside receive().
            PskPeerMethod(self._identity_bytes, key, rng=rng)
            methods = {EapType.PSK: lambda: PskPeerMethod(
                self._identity_bytes, key, expected_server_id=server_id, rng=rng)}
        elif psk is not None:
            raise ValueError("give either psk or methods, not both")
        self._factories = dict(methods)
        self.status = EapStatus.PENDING
        self.msk: bytes | None = None
        self.emsk: bytes | None = None
        self.failure_reason: str | None = None
        self._method: PeerMethod | None = None
        self._method_type: int | None = None
        self._method_state = MethodState.CONT
        self._decision = Decision.FAIL
        self._last_id: int | None = None
        self._last_response: bytes | None = None

    @property
    def method(self) -> PeerMethod | None:
        """The selected method (e.g. a PskPeerMethod), None before one is chosen."""
        return self._method

    def receive(self, data: bytes) -> list[Action]:
        """Process one EAP packet from the authenticator."""
        if self.status is not EapStatus.PENDING:
            return [discard(ROLE, "EAP conversation already finished")]
        try:
            packet = decode_eap_packet(data)
        except DecodeError as err:
            return [discard(ROLE, err.reason)]
        if packet.code == EapCode.RESPONSE:
            return [discard(ROLE, "a peer does not accept EAP Responses")]
        if packet.code == EapCode.SUCCESS:
            return self._on_success(packet)
        if packet.code == EapCode.FAILURE:
            return self._on_failure(packet)
        if packet.identifier == self._last_id and self._last_response is not None:
            # RFC 3748 section 4.1: resend the original Response, do not reprocess.
            return [SendEap(self._last_response),
                    Event("eap.retransmit", {"role": ROLE, "identifier": packet.identifier})]
        return self._on_request(packet)

    def _on_request(self, packet: EapPacket) -> list[Action]:
        events: list[Action] = []
        if packet.type == EapType.IDENTITY:
            if self._method is not None:
                return [discard(ROLE, "Identity Request after a method started")]
            response = identity_response(packet.identifier, self._identity_bytes).encode()
        elif packet.type == EapType.NOTIFICATION:
            if self._method is not None and self._method_state is not MethodState.DONE:
                return [discard(ROLE, "Notification during a method (RFC 4764 section 8.8)")]
            events.append(Event("eap.notification", {
                "role": ROLE, "text": packet.type_data.decode("utf-8", "replace")}))
            response = notification_response(packet.identifier).encode()
        elif self._method is None and packet.type not in self._factories:
            offered = sorted(self._factories)
            events.append(Event("eap.nak", {"role": ROLE, "requested": packet.type,
                                            "offered": offered}))
            response = nak_response(packet.identifier, offered).encode()
        else:
            if self._method is None:
                self._method = self._factories[packet.type]()
                self._method_type = packet.type
                events.append(Event("eap.method", {"role": ROLE, "type": packet.type}))
            if packet.type != self._method_type:
                return [discard(ROLE, f"Request for Type {packet.type} while Type "
                                      f"{self._method_type} runs")]
            if self._method_state is MethodState.DONE:
                return [discard(ROLE, "the method has already finished")]
            step = self._method.process(packet)
            self._method_state = step.state
            self._decision = step.decision
            if step.response is None:
                if step.state is MethodState.DONE and step.decision is Decision.FAIL:
                    return events + self._finish_failure(step.reason)
                return events + [discard(ROLE, step.reason)]
            response = step.response
        self._last_id = packet.identifier
        self._last_response = response
        return events + [SendEap(response)]

    def _on_success(self, packet: EapPacket) -> list[Action]:
        if self._last_id is None or packet.identifier != self._last_id:
            return [discard(ROLE, "EAP Success whose Identifier is not the last Response's")]
        if self._decision is Decision.FAIL:
            return [discard(ROLE, "EAP Success before the method allowed it")]
        keys = self._method.keys() if self._method is not None else None
        self.status = EapStatus.SUCCESS
        if keys is not None:
            self.msk, self.emsk = keys
        return [Event("eap.success", {"role": ROLE, "identity": self.identity}),
                EapSucceeded(self.msk, self.emsk, self.identity)]

    def _on_failure(self, packet: EapPacket) -> list[Action]:
        if self._last_id is None or packet.identifier != self._last_id:
            return [discard(ROLE, "EAP Failure whose Identifier is not the last Response's")]
        if self._decision is Decision.UNCOND_SUCC:
            return [discard(ROLE, "EAP Failure after the method succeeded unconditionally")]
        return self._finish_failure("EAP Failure from the authenticator")

    def _finish_failure(self, reason: str) -> list[Action]:
        self.status = EapStatus.FAILURE
        self.failure_reason = reason
        return [Event("eap.failure", {"role": ROLE, "reason": reason}), EapFailed(reason)]


class SimpleEapPeer:
    """An EapPeer behind the bytes-in/bytes-out interface of the PANA PaC
    (`mip6bench.pana.eap_interface.EapPeer`):

        receive(eap_packet) -> the Response to send, or None
        status              "pending" | "success" | "failure" (an EapStatus)
        msk, emsk           once status is "success"

    The actions other than SendEap (events, EapSucceeded/EapFailed) are kept in
    `events` for the caller's event log; `core` is the wrapped EapPeer.
    """

    def __init__(self, identity: str, psk: bytes, **kwargs):
        self.core = EapPeer(identity, psk, **kwargs)
        self.events: list[Action] = []

    @property
    def status(self) -> EapStatus:
        return self.core.status

    @property
    def msk(self) -> bytes | None:
        return self.core.msk

    @property
    def emsk(self) -> bytes | None:
        return self.core.emsk

    def receive(self, eap_packet: bytes) -> bytes | None:
        response = None
        for action in self.core.receive(eap_packet):
            if isinstance(action, SendEap):
                response = action.packet
            else:
                self.events.append(action)
        return response


def psk_peer_factory(identity: str, psk: bytes, **kwargs) -> Callable[[], SimpleEapPeer]:
    """A factory of fresh EAP-PSK peers (one per (re-)authentication), e.g. for
    the PaC's `new_eap_peer`. The PSK is checked now, not at first use."""
    key = check_psk(psk)
    return lambda: SimpleEapPeer(identity, key, **kwargs)
