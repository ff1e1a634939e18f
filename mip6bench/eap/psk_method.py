"""EAP-PSK method state machines (RFC 4764 sections 4 and 6), peer and server.

`PskPeerMethod(peer_id, psk)` and `PskServerMethod(server_id, credentials)` plug
into `EapPeer` / `EapServer` (see `method.py` for the contract); they are not
meant to be driven directly except in tests.

Identities. ID_S is the server NAI sent in the first message: exactly the
UTF-8 bytes of the `server_id` string given to the server, with no terminator;
RFC 4764 section 4 wants one ID_S for every dialog, so give the same string to
every EapServer of a deployment (hostapd's equivalent is its `server_id`
setting, default "hostapd"). ID_P is the UTF-8 peer identity given to EapPeer;
the server looks the PSK up by ID_P, which is also what it reports as the
authenticated `peer_id`.

Validity checks follow section 4.1: a message that is malformed, echoes the
wrong RAND_S, carries an unexpected PCHANNEL nonce (8.4: the server starts at 0,
the peer answers with nonce+1) or a tag that does not verify is silently
discarded. Section 8.8 leaves the handling of a bad MAC to the implementation;
here an invalid MAC_S ends the peer method with failure, and an invalid MAC_P
(a wrong PSK) makes the server send EAP-Failure, as hostapd does, unless
`discard_bad_mac_p=True` asks it to keep waiting for a valid second message.

Protected result indications (section 6.1): the server sends DONE_SUCCESS in
the third message; the peer answers DONE_SUCCESS (keys exported), DONE_FAILURE
(after a server DONE_FAILURE) or CONT (after a server CONT, then waits for the
next server message with nonce+2). An extension started by the server (E=1) is
answered with the same EXT_Type and an empty EXT_Payload, meaning "not
supported" (section 6.2); no extension type is implemented. The server never
starts an extension and answers a peer CONT with DONE_SUCCESS again, for at
most MAX_CONT_ROUNDS rounds (section 8.2).
"""
from __future__ import annotations

import hmac
import os
from typing import Callable

from mip6bench.codec import DecodeError
from mip6bench.eap.aes_eax import EaxAuthenticationError
from mip6bench.eap.method import Decision, MethodState, Outcome, PeerStep, ServerStep
from mip6bench.eap.packet import EapCode, EapPacket, EapType
from mip6bench.eap.psk_crypto import (
    MAX_CHANNEL_NONCE,
    RAND_LEN,
    InvalidPskError,
    SessionKeys,
    compute_mac_p,
    compute_mac_s,
    derive_session_keys,
    key_setup,
    open_channel,
    seal_channel,
)
from mip6bench.eap.psk_messages import (
    MAX_NAI_LEN,
    ChannelPayload,
    PskFirst,
    PskFourth,
    PskSecond,
    PskThird,
    ProtectedChannel,
    ResultFlag,
    build_psk_packet,
    channel_header,
    channel_packet_length,
    decode_channel_payload,
    decode_psk_message,
    received_channel_header,
)

MAX_CONT_ROUNDS = 8

Rng = Callable[[int], bytes]


def _seal_channel_packet(tek: bytes, code: int, identifier: int, t: int, rand_s: bytes,
                         nonce: int, payload: ChannelPayload, mac_s: bytes = b"") -> bytes:
    """Build a T=2 (with MAC_S) or T=3 EAP-PSK packet with an EAX-sealed PCHANNEL."""
    plaintext = payload.encode()
    length = channel_packet_length(t, len(plaintext))
    header = channel_header(code, identifier, length, t, rand_s)
    tag, ciphertext = seal_channel(tek, header, nonce, plaintext)
    channel = ProtectedChannel(nonce, tag, ciphertext)
    message = PskThird(rand_s, mac_s, channel) if t == 2 else PskFourth(rand_s, channel)
    return build_psk_packet(code, identifier, message)


def _open_channel_message(tek: bytes, packet: EapPacket, channel: ProtectedChannel,
                          expected_nonce: int) -> ChannelPayload | str:
    """Decrypted payload, or the reason to discard the message (section 3.3 order:
    nonce first, then tag, then the payload syntax)."""
    if channel.nonce != expected_nonce:
        return f"PCHANNEL nonce {channel.nonce}, expected {expected_nonce}"
    try:
        plaintext = open_channel(tek, received_channel_header(packet), channel.nonce,
                                 channel.tag, channel.ciphertext)
    except EaxAuthenticationError:
        return "PCHANNEL tag does not verify"
    try:
        return decode_channel_payload(plaintext)
    except DecodeError as err:
        return f"malformed PCHANNEL payload: {err.reason}"


class PskPeerMethod:
    """The peer side of EAP-PSK."""

    method_type = EapType.PSK

    def __init__(self, peer_id: bytes, psk: bytes, *, expected_server_id: bytes | None = None,
                 rng: Rng = os.urandom):
        if not 1 <= len(peer_id) <= MAX_NAI_LEN:
            raise ValueError("EAP-PSK peer identity (ID_P) must be 1..966 bytes (section 5.2)")
        # Section 3.1: derive AK and KDK once; the PSK itself is not kept.
        self._ak, self._kdk = key_setup(psk)
        self._peer_id = bytes(peer_id)
        self._expected_server_id = expected_server_id
        self._rng = rng
        self._phase = "first"       # first -> third -> (channel)* -> done
        self._rand_s = b""
        self._rand_p = b""
        self._id_s = b""
        self._keys: SessionKeys | None = None
        self._next_server_nonce = 0
        self._ext_type: int | None = None
        self._rounds = 0
        self._state = MethodState.CONT
        self._decision = Decision.FAIL

    @property
    def server_id(self) -> str | None:
        """ID_S as received in the first message (None before it)."""
        return self._id_s.decode("utf-8", "replace") if self._id_s else None

    def keys(self) -> tuple[bytes, bytes] | None:
        if self._keys is None or self._decision == Decision.FAIL:
            return None
        return self._keys.msk, self._keys.emsk

    def _step(self, response: bytes | None, reason: str = "") -> PeerStep:
        return PeerStep(response, self._state, self._decision, reason)

    def _fail(self, reason: str) -> PeerStep:
        self._phase = "done"
        self._state = MethodState.DONE
        self._decision = Decision.FAIL
        return self._step(None, reason)

    def process(self, request: EapPacket) -> PeerStep:
        if self._phase == "done":
            return self._step(None, "EAP-PSK dialog already finished")
        try:
            message = decode_psk_message(request)
        except DecodeError as err:
            return self._step(None, f"malformed EAP-PSK message: {err.reason}")
        if self._phase == "first":
            if not isinstance(message, PskFirst):
                return self._step(None, f"expected the first EAP-PSK message, got T={message.T}")
            return self._on_first(request, message)
        if message.rand_s != self._rand_s:
            return self._step(None, "RAND_S does not match this EAP-PSK dialog")
        if self._phase == "third":
            if not isinstance(message, PskThird):
                return self._step(None, f"expected the third EAP-PSK message, got T={message.T}")
            return self._on_third(request, message)
        if not isinstance(message, PskFourth):
            return self._step(None, f"expected an EAP-PSK T=3 message, got T={message.T}")
        return self._on_channel(request, message.channel)

    def _on_first(self, request: EapPacket, message: PskFirst) -> PeerStep:
        if self._expected_server_id is not None and message.id_s != self._expected_server_id:
            return self._step(None, f"ID_S {message.id_s!r} is not the expected server")
        self._rand_s = message.rand_s
        self._id_s = message.id_s
        self._rand_p = self._rng(RAND_LEN)
        mac_p = compute_mac_p(self._ak, self._peer_id, self._id_s, self._rand_s, self._rand_p)
        self._phase = "third"
        second = PskSecond(self._rand_s, self._rand_p, mac_p, self._peer_id)
        return self._step(build_psk_packet(EapCode.RESPONSE, request.identifier, second))

    def _on_third(self, request: EapPacket, message: PskThird) -> PeerStep:
        # Section 4.1: check MAC_S before deriving any key.
        expected = compute_mac_s(self._ak, self._id_s, self._rand_p)
        if not hmac.compare_digest(expected, message.mac_s):
            return self._fail("invalid MAC_S: the server does not know our PSK")
        if self._keys is None:
            self._keys = derive_session_keys(self._kdk, self._rand_p)
        return self._on_channel(request, message.channel, first=True)

    def _on_channel(self, request: EapPacket, channel: ProtectedChannel,
                    first: bool = False) -> PeerStep:
        assert self._keys is not None
        opened = _open_channel_message(self._keys.tek, request, channel, self._next_server_nonce)
        if isinstance(opened, str):
            return self._step(None, opened)
        if first and opened.ext_type is not None:
            if not opened.ext_payload:
                # Section 6.2: an extension must not start with an empty payload.
                return self._step(None, "server started an extension with an empty EXT_Payload")
            self._ext_type = opened.ext_type
        elif opened.ext_type != self._ext_type:
            return self._step(None, "PCHANNEL extension flag differs from the dialog's")

        if opened.result == ResultFlag.CONT:
            self._rounds += 1
            reply = ResultFlag.CONT if self._rounds <= MAX_CONT_ROUNDS else ResultFlag.DONE_FAILURE
        else:
            # Section 6.1: answer DONE_SUCCESS with DONE_SUCCESS (this peer accepts
            # an unsupported extension) and DONE_FAILURE with DONE_FAILURE.
            reply = opened.result
        reply_nonce = channel.nonce + 1
        if reply_nonce + 1 > MAX_CHANNEL_NONCE and reply == ResultFlag.CONT:
            reply = ResultFlag.DONE_FAILURE  # section 3.3: the nonce must not wrap
        payload = ChannelPayload(reply, self._ext_type) if self._ext_type else ChannelPayload(reply)
        response = _seal_channel_packet(self._keys.tek, EapCode.RESPONSE, request.identifier,
                                        3, self._rand_s, reply_nonce, payload)
        if reply == ResultFlag.CONT:
            self._phase = "channel"
            self._next_server_nonce = reply_nonce + 1
            self._state = MethodState.CONT
            self._decision = Decision.FAIL
        else:
            self._phase = "done"
            self._state = MethodState.DONE
            # COND_SUCC: the server may still fail to verify our last message and
            # answer EAP-Failure, which the EAP layer must then accept.
            self._decision = (Decision.COND_SUCC if reply == ResultFlag.DONE_SUCCESS
                              else Decision.FAIL)
        return self._step(response)


class PskServerMethod:
    """The server side of EAP-PSK; `credentials(id_p)` returns the 16-byte PSK or None."""

    method_type = EapType.PSK

    def __init__(self, server_id: bytes, credentials: Callable[[str], bytes | None], *,
                 rng: Rng = os.urandom, discard_bad_mac_p: bool = False):
        if not 1 <= len(server_id) <= MAX_NAI_LEN:
            raise ValueError("EAP-PSK server identity (ID_S) must be 1..966 bytes (section 5.1)")
        self._server_id = bytes(server_id)
        self._credentials = credentials
        self._rng = rng
        self._discard_bad_mac_p = discard_bad_mac_p
        self._phase = "second"
        self._rand_s = b""
        self._rand_p = b""
        self._id_p: str | None = None
        self._keys: SessionKeys | None = None
        self._next_peer_nonce = 1
        self._rounds = 0
        self._succeeded = False

    @property
    def peer_id(self) -> str | None:
        """ID_P once MAC_P has been verified."""
        return self._id_p if self._keys is not None else None

    def keys(self) -> tuple[bytes, bytes] | None:
        if not self._succeeded or self._keys is None:
            return None
        return self._keys.msk, self._keys.emsk

    def initial_request(self, identifier: int) -> bytes:
        self._rand_s = self._rng(RAND_LEN)
        first = PskFirst(self._rand_s, self._server_id)
        return build_psk_packet(EapCode.REQUEST, identifier, first)

    def process(self, response: EapPacket, next_identifier: int) -> ServerStep:
        if self._phase == "done":
            return ServerStep(Outcome.DISCARD, reason="EAP-PSK dialog already finished")
        try:
            message = decode_psk_message(response)
        except DecodeError as err:
            return ServerStep(Outcome.DISCARD, reason=f"malformed EAP-PSK message: {err.reason}")
        if message.rand_s != self._rand_s:
            return ServerStep(Outcome.DISCARD, reason="RAND_S does not match this EAP-PSK dialog")
        if self._phase == "second":
            if not isinstance(message, PskSecond):
                return ServerStep(Outcome.DISCARD,
                                  reason=f"expected the second EAP-PSK message, got T={message.T}")
            return self._on_second(message, next_identifier)
        if not isinstance(message, PskFourth):
            return ServerStep(Outcome.DISCARD,
                              reason=f"expected an EAP-PSK T=3 message, got T={message.T}")
        return self._on_channel(response, message.channel, next_identifier)

    def _finish(self, outcome: Outcome, reason: str = "") -> ServerStep:
        self._phase = "done"
        self._succeeded = outcome == Outcome.SUCCESS
        return ServerStep(outcome, reason=reason)

    def _on_second(self, message: PskSecond, next_identifier: int) -> ServerStep:
        try:
            id_p = message.id_p.decode("utf-8")
        except UnicodeDecodeError:
            return self._finish(Outcome.FAILURE, "ID_P is not UTF-8")
        psk = self._credentials(id_p)
        if psk is None:
            return self._finish(Outcome.FAILURE, f"unknown ID_P {id_p!r}")
        try:
            ak, kdk = key_setup(psk)
        except InvalidPskError as err:
            return self._finish(Outcome.FAILURE, f"credential store entry for {id_p!r}: {err}")
        expected = compute_mac_p(ak, message.id_p, self._server_id, self._rand_s, message.rand_p)
        if not hmac.compare_digest(expected, message.mac_p):
            if self._discard_bad_mac_p:
                return ServerStep(Outcome.DISCARD, reason="invalid MAC_P")
            return self._finish(Outcome.FAILURE, "invalid MAC_P: wrong PSK for this ID_P")
        self._id_p = id_p
        self._rand_p = message.rand_p
        self._keys = derive_session_keys(kdk, self._rand_p)
        mac_s = compute_mac_s(ak, self._server_id, self._rand_p)
        self._phase = "fourth"
        self._next_peer_nonce = 1
        request = _seal_channel_packet(self._keys.tek, EapCode.REQUEST, next_identifier, 2,
                                       self._rand_s, 0, ChannelPayload(ResultFlag.DONE_SUCCESS),
                                       mac_s)
        return ServerStep(Outcome.CONTINUE, request)

    def _on_channel(self, response: EapPacket, channel: ProtectedChannel,
                    next_identifier: int) -> ServerStep:
        assert self._keys is not None
        opened = _open_channel_message(self._keys.tek, response, channel, self._next_peer_nonce)
        if isinstance(opened, str):
            return ServerStep(Outcome.DISCARD, reason=opened)
        if opened.ext_type is not None:
            # Section 6.2: only the server starts an extension, and this one never does.
            return ServerStep(Outcome.DISCARD,
                              reason="peer sent an extension the server did not start")
        if opened.result == ResultFlag.DONE_SUCCESS:
            return self._finish(Outcome.SUCCESS)
        if opened.result == ResultFlag.DONE_FAILURE:
            # Section 6.1.3: end at once, without another EAP-PSK message.
            return self._finish(Outcome.FAILURE, "peer ended EAP-PSK with DONE_FAILURE")
        self._rounds += 1
        nonce = channel.nonce + 1
        if self._rounds > MAX_CONT_ROUNDS or nonce + 1 > MAX_CHANNEL_NONCE:
            return self._finish(Outcome.FAILURE, "peer keeps answering CONT")
        self._next_peer_nonce = nonce + 1
        # Section 6.1.2: once DONE_SUCCESS is sent, the server keeps sending it.
        request = _seal_channel_packet(self._keys.tek, EapCode.REQUEST, next_identifier, 3,
                                       self._rand_s, nonce, ChannelPayload(ResultFlag.DONE_SUCCESS))
        return ServerStep(Outcome.CONTINUE, request)
