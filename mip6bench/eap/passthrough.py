"""A pass-through EAP authenticator (RFC 4137 full authenticator; RFC 3579 for RADIUS).

The PANA PAA does not run EAP-PSK itself: it relays EAP between the PaC (the
peer) and a backend EAP server (an embedded `EapServer`, or a RADIUS server),
and learns the result and the MSK from the backend.

    relay = EapPassThrough()
    relay.start()                  -> [SendEap(Identity Request)]  (optional: the
                                      backend may send the first Request instead)
    relay.from_peer(packet)        -> [RelayToBackend(packet)]     or a discard event
    relay.from_backend(packet, accept=None | True | False, msk=..., emsk=...)
                                   -> [SendEap(packet)], plus EapSucceeded/EapFailed
                                      when the packet is Success/Failure
    relay.status, relay.msk, relay.emsk, relay.identity

`accept` is the backend's own verdict where it has one (RADIUS Access-Accept =
True, Access-Reject = False, Access-Challenge = None); the authenticator must
follow it rather than the EAP Code (RFC 3579, "Conflicting Messages"). A Success only
counts with `accept` not False and an MSK of at least 64 bytes (RADIUS:
MS-MPPE-Recv-Key || MS-MPPE-Send-Key); otherwise the peer gets EAP Failure.
`data` may be None for a verdict without EAP (an Access-Reject without
EAP-Message). The final Success/Failure sent to the peer carries the
Identifier of the Request the peer last answered (RFC 3748 section 4.2),
whatever the backend used: hostapd, for one, rejects an unknown User-Name with
an EAP Failure of Identifier 0, which the peer would rightly discard.

The relay checks that each peer Response answers the outstanding Request
(same Identifier) and forwards only the first one; `identity` is the
peer's Identity Response, unauthenticated (useful as RADIUS User-Name).
`authenticated_id` is the EAP-PSK ID_P of the message 2 the relay forwarded (RFC 4764
section 5.2: MAC_P covers it, and the server looks the PSK up by it), once the backend
accepted the peer; None before, after a failure, when the method is not EAP-PSK, or when
two forwarded messages 2 named different identities. It is the identity a backend that
names none (hostapd's Access-Accept carries no User-Name) authenticated.

With an in-process backend, `from_embedded_server(server, actions)` feeds the
actions an `EapServer` returned (accept and keys taken from the server):

    for action in relay.from_peer(data):
        if isinstance(action, RelayToBackend):
            out = relay.from_embedded_server(aaa, aaa.receive(action.packet))
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterable

from mip6bench.codec import DecodeError
from mip6bench.eap.actions import (
    EapFailed,
    EapStatus,
    EapSucceeded,
    RelayToBackend,
    SendEap,
    discard,
)
from mip6bench.eap.packet import (
    EapCode,
    EapType,
    decode_eap_packet,
    failure,
    identity_request,
    success,
)
from mip6bench.eap.psk_messages import PskSecond, decode_psk_message
from mip6bench.sansio import Action, Event

if TYPE_CHECKING:
    from mip6bench.eap.server import EapServer

ROLE = "passthrough"
MIN_MSK_LEN = 64  # RFC 3748 section 7.10


class EapPassThrough:
    def __init__(self, *, rng: Callable[[int], bytes] = os.urandom):
        self._rng = rng
        self.status = EapStatus.PENDING
        self.msk: bytes | None = None
        self.emsk: bytes | None = None
        self.identity: str | None = None
        self.failure_reason: str | None = None
        self._outstanding_id: int | None = None
        self._forwarded = False
        self._psk_id_p: str | None = None
        self._psk_id_conflict = False

    @property
    def authenticated_id(self) -> str | None:
        if self.status is not EapStatus.SUCCESS or self._psk_id_conflict:
            return None
        return self._psk_id_p

    def start(self) -> list[Action]:
        """Send the Identity Request from the authenticator itself."""
        if self._outstanding_id is not None:
            raise RuntimeError("EapPassThrough.start() after the conversation began")
        self._outstanding_id = self._rng(1)[0]
        return [SendEap(identity_request(self._outstanding_id).encode())]

    def from_peer(self, data: bytes) -> list[Action]:
        if self.status is not EapStatus.PENDING:
            return [discard(ROLE, "EAP conversation already finished")]
        try:
            packet = decode_eap_packet(data)
        except DecodeError as err:
            return [discard(ROLE, err.reason)]
        if packet.code != EapCode.RESPONSE:
            return [discard(ROLE, "the peer may only send Responses")]
        if self._outstanding_id is None:
            return [discard(ROLE, "no Request is outstanding")]
        if packet.identifier != self._outstanding_id:
            return [discard(ROLE, f"Identifier {packet.identifier} does not match the "
                                  f"outstanding Request ({self._outstanding_id})")]
        if self._forwarded:
            return [discard(ROLE, "duplicate Response, already relayed")]
        self._forwarded = True
        if packet.type == EapType.IDENTITY and self.identity is None:
            self.identity = packet.type_data.decode("utf-8", "replace")
        elif packet.type == EapType.PSK:
            self._note_psk_id(packet)
        return [RelayToBackend(_as_received(data, packet))]

    def _note_psk_id(self, packet) -> None:
        try:
            message = decode_psk_message(packet)
        except DecodeError:
            return   # the backend rejects it; nothing authenticated here
        if not isinstance(message, PskSecond):
            return
        id_p = message.id_p.decode("utf-8", "replace")
        if self._psk_id_p is not None and id_p != self._psk_id_p:
            self._psk_id_conflict = True
        self._psk_id_p = id_p

    def from_backend(self, data: bytes | None, *, accept: bool | None = None,
                     msk: bytes | None = None, emsk: bytes | None = None) -> list[Action]:
        if self.status is not EapStatus.PENDING:
            return [discard(ROLE, "EAP conversation already finished")]
        if data is None:
            if accept is None:
                return [discard(ROLE, "backend sent neither EAP nor a verdict")]
            code, identifier = (EapCode.SUCCESS if accept else EapCode.FAILURE), None
        else:
            try:
                packet = decode_eap_packet(data)
            except DecodeError as err:
                return [discard(ROLE, f"from backend: {err.reason}")]
            code, identifier = packet.code, packet.identifier
            if code == EapCode.RESPONSE:
                return [discard(ROLE, "the backend may not send Responses")]
            if code == EapCode.REQUEST:
                if accept is not None:
                    return [discard(ROLE, "backend gave a verdict with an EAP Request")]
                self._outstanding_id = packet.identifier
                self._forwarded = False
                return [SendEap(_as_received(data, packet))]
        if self._outstanding_id is not None:
            identifier = self._outstanding_id
        if identifier is None:
            return [discard(ROLE, "verdict before any EAP exchange")]
        return self._finish(code == EapCode.SUCCESS and accept is not False,
                            code, identifier, msk, emsk)

    def _finish(self, succeeded: bool, code: int, identifier: int,
                msk: bytes | None, emsk: bytes | None) -> list[Action]:
        if succeeded and (msk is None or len(msk) < MIN_MSK_LEN):
            succeeded, reason = False, "backend accepted without an MSK of 64 bytes"
        elif succeeded:
            reason = ""
        elif code == EapCode.SUCCESS:
            reason = "backend rejected the peer despite EAP Success"
        else:
            reason = "backend rejected the peer"
        if not succeeded:
            self.status = EapStatus.FAILURE
            self.failure_reason = reason
            return [SendEap(failure(identifier).encode()),
                    Event("eap.failure", {"role": ROLE, "reason": reason}),
                    EapFailed(reason)]
        self.status = EapStatus.SUCCESS
        self.msk, self.emsk = msk, emsk
        return [SendEap(success(identifier).encode()),
                Event("eap.success", {"role": ROLE, "identity": self.identity}),
                EapSucceeded(msk, emsk, self.identity)]

    def from_embedded_server(self, server: "EapServer",
                             actions: Iterable[Action]) -> list[Action]:
        """Relay what an in-process EapServer returned, with its verdict and keys."""
        out: list[Action] = []
        for action in actions:
            if not isinstance(action, SendEap):
                continue  # the server's own events/effects stay with the caller
            if server.status is EapStatus.PENDING:
                out += self.from_backend(action.packet)
            else:
                out += self.from_backend(action.packet,
                                         accept=server.status is EapStatus.SUCCESS,
                                         msk=server.msk, emsk=server.emsk)
        return out


def _as_received(data: bytes, packet) -> bytes:
    """The bytes to relay for `packet`, decoded from `data`: `data` itself when it is
    exactly the packet (what encode() would build again), else the packet re-encoded
    without the bytes past its EAP Length."""
    return bytes(data) if len(data) == packet.length else packet.encode()
