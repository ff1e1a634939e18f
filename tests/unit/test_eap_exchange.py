"""EapPeer <-> EapServer (and EapPassThrough) running EAP-PSK, without I/O."""
from __future__ import annotations

import hashlib
import itertools

import pytest

from mip6bench.eap import (
    EapFailed,
    EapPassThrough,
    EapPeer,
    EapServer,
    EapStatus,
    EapSucceeded,
    InvalidPskError,
    RelayToBackend,
    SendEap,
    psk_peer_factory,
)
from mip6bench.eap.method import Decision, MethodState
from mip6bench.eap.packet import (
    EapCode,
    EapPacket,
    EapType,
    decode_eap_packet,
    failure,
    identity_request,
    identity_response,
    nak_response,
    success,
)
from mip6bench.eap.psk_crypto import (
    compute_mac_s,
    derive_session_keys,
    key_setup,
    open_channel,
    seal_channel,
)
from mip6bench.eap.psk_messages import (
    ChannelPayload,
    ProtectedChannel,
    PskFourth,
    PskSecond,
    PskThird,
    ResultFlag,
    build_psk_packet,
    channel_header,
    channel_packet_length,
    decode_channel_payload,
    decode_psk_message,
)
from mip6bench.eap.psk_method import MAX_CONT_ROUNDS, PskPeerMethod
from mip6bench.sansio import Event

PSK = bytes(range(16))
IDENTITY = "alice@example.org"
SERVER_ID = "aaa.example.org"

# Indexes of the packets of a standard conversation in Dialog.transcript.
ID_REQ, ID_RESP, PSK1, PSK2, PSK3, PSK4, FINAL = range(7)


def det_rng(seed: bytes):
    """Deterministic stand-in for os.urandom, so conversations can be replayed."""
    counter = itertools.count()

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + next(counter).to_bytes(8, "big")).digest()
        return out[:n]
    return rng


def sent(actions) -> list[bytes]:
    return [a.packet for a in actions if isinstance(a, SendEap)]


def discards(actions) -> list[str]:
    return [a.fields["reason"] for a in actions if isinstance(a, Event) and a.name == "eap.discard"]


def make_peer(psk: bytes = PSK, identity: str = IDENTITY, **kwargs) -> EapPeer:
    return EapPeer(identity, psk, rng=det_rng(b"peer"), **kwargs)


def make_server(psk: bytes = PSK, users: dict | None = None, **kwargs) -> EapServer:
    users = {IDENTITY: psk} if users is None else users
    return EapServer(users.get, SERVER_ID, rng=det_rng(b"server"), **kwargs)


class Dialog:
    """Pumps packets between a peer and a server; `pending` is the next packet
    to deliver and `to` who gets it. A discarded delivery leaves both as they were."""

    def __init__(self, peer: EapPeer, server: EapServer):
        self.peer, self.server = peer, server
        (self.pending,) = sent(server.start())
        self.to = "peer"
        self.transcript = [self.pending]

    def deliver(self, packet: bytes | None = None):
        target = self.peer if self.to == "peer" else self.server
        actions = target.receive(self.pending if packet is None else packet)
        out = sent(actions)
        if out:
            (self.pending,) = out
            self.transcript.append(self.pending)
            self.to = "server" if self.to == "peer" else "peer"
        return actions

    def advance_to(self, index: int) -> bytes:
        """Deliver until transcript[index] is pending (not yet delivered)."""
        while len(self.transcript) <= index:
            assert sent(self.deliver()), "conversation stalled"
        assert len(self.transcript) == index + 1
        return self.pending

    def run(self, limit: int = 20):
        actions = []
        for _ in range(limit):
            actions = self.deliver()
            if not sent(actions):
                break
        return actions


def session_keys(dialog: Dialog, psk: bytes = PSK):
    """AK, session keys and RAND_S of a dialog that has got past the second message."""
    second = decode_psk_message(decode_eap_packet(dialog.transcript[PSK2]))
    assert isinstance(second, PskSecond)
    ak, kdk = key_setup(psk)
    return ak, derive_session_keys(kdk, second.rand_p), second.rand_s, second.rand_p


def sealed(tek: bytes, code: int, identifier: int, t: int, rand_s: bytes, nonce: int,
           payload: ChannelPayload, mac_s: bytes = b"") -> bytes:
    """An EAP-PSK T=2/T=3 packet built from the public codec and crypto pieces."""
    plaintext = payload.encode()
    header = channel_header(code, identifier, channel_packet_length(t, len(plaintext)), t, rand_s)
    tag, ciphertext = seal_channel(tek, header, nonce, plaintext)
    channel = ProtectedChannel(nonce, tag, ciphertext)
    message = PskThird(rand_s, mac_s, channel) if t == 2 else PskFourth(rand_s, channel)
    return build_psk_packet(code, identifier, message)


def opened(tek: bytes, wire: bytes) -> tuple[int, ChannelPayload]:
    """(nonce, payload) of a T=2/T=3 packet."""
    packet = decode_eap_packet(wire)
    channel = decode_psk_message(packet).channel
    plaintext = open_channel(tek, wire[:22], channel.nonce, channel.tag, channel.ciphertext)
    return channel.nonce, decode_channel_payload(plaintext)


def flip(wire: bytes, offset: int) -> bytes:
    data = bytearray(wire)
    data[offset] ^= 0x01
    return bytes(data)


# --- the standard exchange ----------------------------------------------------

def test_full_exchange_gives_both_sides_the_same_msk_and_emsk():
    peer, server = make_peer(), make_server()
    dialog = Dialog(peer, server)
    final_peer_actions = dialog.run()

    assert peer.status is EapStatus.SUCCESS and server.status is EapStatus.SUCCESS
    assert len(peer.msk) == 64 and len(peer.emsk) == 64
    assert peer.msk == server.msk and peer.emsk == server.emsk
    assert peer.msk != peer.emsk
    assert server.peer_id == IDENTITY and server.identity == IDENTITY
    assert peer.method.server_id == SERVER_ID

    codes_and_types = [(p[0], p[4] if len(p) > 4 else None) for p in dialog.transcript]
    assert codes_and_types == [(1, 1), (2, 1), (1, 47), (2, 47), (1, 47), (2, 47), (3, None)]
    flags = [dialog.transcript[i][5] >> 6 for i in (PSK1, PSK2, PSK3, PSK4)]
    assert flags == [0, 1, 2, 3]

    succeeded = [a for a in final_peer_actions if isinstance(a, EapSucceeded)]
    assert len(succeeded) == 1 and succeeded[0].msk == peer.msk
    assert peer.msk.hex() not in repr(succeeded[0])


def test_protected_result_indications_and_nonces():
    dialog = Dialog(make_peer(), make_server())
    dialog.run()
    _, keys, _, _ = session_keys(dialog)
    assert opened(keys.tek, dialog.transcript[PSK3]) == (0, ChannelPayload(ResultFlag.DONE_SUCCESS))
    assert opened(keys.tek, dialog.transcript[PSK4]) == (1, ChannelPayload(ResultFlag.DONE_SUCCESS))


def test_server_identifiers_increase_by_one_modulo_256():
    server = EapServer({IDENTITY: PSK}.get, SERVER_ID, rng=lambda n: b"\xfe" * n)
    dialog = Dialog(make_peer(), server)
    dialog.run()
    requests = [p for p in dialog.transcript if p[0] == EapCode.REQUEST]
    assert [p[1] for p in requests] == [0xFE, 0xFF, 0x00]
    assert dialog.transcript[FINAL][1] == 0x00  # Success answers the last Response
    assert server.status is EapStatus.SUCCESS


def test_server_backend_mode_adopts_the_identity_response_identifier():
    server, peer = make_server(), make_peer()
    (response,) = sent(peer.receive(identity_request(77).encode()))
    (request,) = sent(server.receive(response))
    assert decode_eap_packet(request).identifier == 78
    assert server.last_request == request
    with pytest.raises(RuntimeError):
        server.start()


# --- retransmissions and identifiers ------------------------------------------

@pytest.mark.parametrize("index", [ID_REQ, PSK1, PSK3])
def test_peer_answers_a_retransmitted_request_with_the_same_response(index):
    dialog = Dialog(make_peer(), make_server())
    request = dialog.advance_to(index)
    dialog.deliver()
    first_answer = dialog.pending
    state = (dialog.peer._method_state, dialog.peer._decision)

    again = dialog.peer.receive(request)
    assert sent(again) == [first_answer]
    assert any(isinstance(a, Event) and a.name == "eap.retransmit" for a in again)
    assert (dialog.peer._method_state, dialog.peer._decision) == state
    dialog.run()
    assert dialog.peer.status is EapStatus.SUCCESS and dialog.server.status is EapStatus.SUCCESS


def test_server_retransmission_helper_and_duplicate_responses():
    dialog = Dialog(make_peer(), make_server())
    dialog.advance_to(PSK2)
    assert dialog.server.last_request == dialog.transcript[PSK1]
    psk2 = dialog.pending
    dialog.deliver()                       # server answers with PSK3
    assert discards(dialog.server.receive(psk2)) == [
        f"Identifier {psk2[1]} does not match the outstanding Request ({dialog.pending[1]})"]
    dialog.run()
    assert dialog.server.status is EapStatus.SUCCESS
    assert dialog.server.last_request is None


def test_server_discards_responses_with_another_identifier_or_type():
    dialog = Dialog(make_peer(), make_server())
    response = dialog.advance_to(ID_RESP)
    wrong_id = identity_response((response[1] + 1) % 256, IDENTITY.encode()).encode()
    assert "does not match the outstanding Request" in discards(dialog.server.receive(wrong_id))[0]
    dialog.deliver()
    notification = EapPacket(EapCode.RESPONSE, dialog.pending[1], EapType.NOTIFICATION).encode()
    assert discards(dialog.server.receive(notification)) == [
        "Response Type 2 does not match the Request"]
    assert discards(dialog.server.receive(success(1).encode())) == [
        "an EAP server only accepts Responses"]
    dialog.run()
    assert dialog.server.status is EapStatus.SUCCESS


def test_success_and_failure_need_the_last_response_identifier():
    dialog = Dialog(make_peer(), make_server())
    final = dialog.advance_to(FINAL)
    other = (final[1] + 1) % 256
    assert discards(dialog.peer.receive(success(other).encode())) == [
        "EAP Success whose Identifier is not the last Response's"]
    assert discards(dialog.peer.receive(failure(other).encode())) == [
        "EAP Failure whose Identifier is not the last Response's"]
    dialog.deliver()
    assert dialog.peer.status is EapStatus.SUCCESS


def test_success_before_the_method_completes_is_discarded():
    dialog = Dialog(make_peer(), make_server())
    dialog.advance_to(PSK3)
    last_id = dialog.transcript[PSK2][1]
    assert discards(dialog.peer.receive(success(last_id).encode())) == [
        "EAP Success before the method allowed it"]
    assert dialog.peer.status is EapStatus.PENDING


def test_failure_during_the_method_is_accepted():
    dialog = Dialog(make_peer(), make_server())
    dialog.advance_to(PSK3)
    actions = dialog.peer.receive(failure(dialog.transcript[PSK2][1]).encode())
    assert [a.reason for a in actions if isinstance(a, EapFailed)] == [
        "EAP Failure from the authenticator"]
    assert dialog.peer.status is EapStatus.FAILURE and dialog.peer.msk is None


def test_everything_after_the_end_is_discarded():
    dialog = Dialog(make_peer(), make_server())
    dialog.run()
    for packet in dialog.transcript:
        assert discards(dialog.peer.receive(packet)) == ["EAP conversation already finished"]
        assert discards(dialog.server.receive(packet)) == ["EAP conversation already finished"]


# --- failure paths ------------------------------------------------------------

def test_wrong_psk_makes_the_server_send_failure():
    dialog = Dialog(make_peer(psk=bytes(16)), make_server())
    actions = dialog.run()
    assert dialog.server.status is EapStatus.FAILURE
    assert dialog.server.failure_reason == "invalid MAC_P: wrong PSK for this ID_P"
    assert dialog.transcript[-1] == failure(dialog.transcript[PSK2][1]).encode()
    assert dialog.peer.status is EapStatus.FAILURE
    assert any(isinstance(a, EapFailed) for a in actions)
    assert dialog.peer.msk is None and dialog.server.msk is None and dialog.server.peer_id is None


def test_wrong_psk_can_be_discarded_while_waiting_for_the_genuine_peer():
    server = make_server(discard_bad_mac_p=True)
    dialog = Dialog(make_peer(), server)
    genuine = dialog.advance_to(PSK2)
    forged = bytearray(genuine)
    forged[5 + 1 + 32] ^= 0xFF            # first byte of MAC_P
    assert discards(server.receive(bytes(forged))) == ["invalid MAC_P"]
    dialog.run()
    assert server.status is EapStatus.SUCCESS and dialog.peer.msk == server.msk


def test_unknown_identity_gets_failure():
    server = make_server(users={})
    dialog = Dialog(make_peer(), server)
    dialog.run()
    assert server.failure_reason == f"unknown identity {IDENTITY!r}"
    assert dialog.transcript[-1] == failure(dialog.transcript[ID_RESP][1]).encode()
    assert dialog.peer.status is EapStatus.FAILURE


def test_unknown_id_p_gets_failure():
    # Identity Response known, but EAP-PSK's ID_P is another, unknown NAI.
    peer = EapPeer(IDENTITY, methods={47: lambda: PskPeerMethod(b"bob@example.org", PSK)})
    dialog = Dialog(peer, make_server())
    dialog.run()
    assert dialog.server.failure_reason == "unknown ID_P 'bob@example.org'"
    assert peer.status is EapStatus.FAILURE


def test_invalid_psk_in_the_credential_store_gets_failure():
    server = make_server(users={IDENTITY: b"short"})
    dialog = Dialog(make_peer(), server)
    dialog.run()
    assert "must be exactly 16 bytes" in server.failure_reason
    assert server.status is EapStatus.FAILURE


def test_bad_mac_s_makes_the_peer_fail():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    actions = dialog.deliver(flip(third, 22))   # first byte of MAC_S
    assert not sent(actions)
    assert [a.reason for a in actions if isinstance(a, EapFailed)] == [
        "invalid MAC_S: the server does not know our PSK"]
    assert dialog.peer.status is EapStatus.FAILURE and dialog.peer.msk is None


def test_impostor_server_with_another_psk_is_detected_by_mac_s():
    # The impostor accepts any MAC_P (it does not know the PSK), so only MAC_S tells.
    dialog = Dialog(make_peer(), make_server())
    dialog.advance_to(PSK2)
    ak, keys, rand_s, rand_p = session_keys(dialog, psk=bytes(16))
    third = sealed(keys.tek, 1, (dialog.pending[1] + 1) % 256, 2, rand_s, 0,
                   ChannelPayload(ResultFlag.DONE_SUCCESS), compute_mac_s(ak, SERVER_ID.encode(), rand_p))
    dialog.to = "peer"
    dialog.deliver(third)
    assert dialog.peer.status is EapStatus.FAILURE
    assert dialog.peer.failure_reason.startswith("invalid MAC_S")


def test_wrong_rand_s_echo_is_discarded_by_both_sides():
    dialog = Dialog(make_peer(), make_server())
    second = dialog.advance_to(PSK2)
    assert discards(dialog.deliver(flip(second, 6))) == ["RAND_S does not match this EAP-PSK dialog"]
    third = dialog.advance_to(PSK3)
    assert discards(dialog.deliver(flip(third, 6))) == ["RAND_S does not match this EAP-PSK dialog"]
    fourth = dialog.advance_to(PSK4)
    assert discards(dialog.deliver(flip(fourth, 21))) == ["RAND_S does not match this EAP-PSK dialog"]
    dialog.run()
    assert dialog.peer.status is EapStatus.SUCCESS and dialog.server.status is EapStatus.SUCCESS


def test_tampered_pchannel_is_discarded_then_the_genuine_message_succeeds():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    assert discards(dialog.deliver(flip(third, len(third) - 1))) == ["PCHANNEL tag does not verify"]
    assert discards(dialog.deliver(flip(third, 42))) == ["PCHANNEL tag does not verify"]  # tag
    fourth = dialog.advance_to(PSK4)
    assert discards(dialog.deliver(flip(fourth, len(fourth) - 1))) == ["PCHANNEL tag does not verify"]
    dialog.run()
    assert dialog.peer.status is EapStatus.SUCCESS and dialog.server.status is EapStatus.SUCCESS


def test_a_changed_header_breaks_the_pchannel_tag():
    # The tag covers the EAP header: the same PSK-3 under another Identifier fails.
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    assert discards(dialog.deliver(flip(third, 1))) == ["PCHANNEL tag does not verify"]
    dialog.run()
    assert dialog.peer.status is EapStatus.SUCCESS


def test_wrong_nonces_are_discarded_even_with_a_valid_tag():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    ak, keys, rand_s, rand_p = session_keys(dialog)
    mac_s = compute_mac_s(ak, SERVER_ID.encode(), rand_p)
    bad_third = sealed(keys.tek, 1, third[1], 2, rand_s, 1,
                       ChannelPayload(ResultFlag.DONE_SUCCESS), mac_s)
    assert discards(dialog.deliver(bad_third)) == ["PCHANNEL nonce 1, expected 0"]
    fourth = dialog.advance_to(PSK4)
    for nonce in (0, 2):   # a replayed 0, a skipped 2
        bad_fourth = sealed(keys.tek, 2, fourth[1], 3, rand_s, nonce,
                            ChannelPayload(ResultFlag.DONE_SUCCESS))
        assert discards(dialog.deliver(bad_fourth)) == [f"PCHANNEL nonce {nonce}, expected 1"]
    dialog.run()
    assert dialog.peer.status is EapStatus.SUCCESS and dialog.server.status is EapStatus.SUCCESS


@pytest.mark.parametrize("index", [ID_REQ, ID_RESP, PSK1, PSK2, PSK3, PSK4, FINAL])
def test_every_truncation_is_discarded_and_the_dialog_still_completes(index):
    dialog = Dialog(make_peer(), make_server())
    packet = dialog.advance_to(index)
    for cut in range(len(packet)):
        actions = dialog.deliver(packet[:cut])
        assert not sent(actions) and len(discards(actions)) == 1
    dialog.run()
    assert dialog.peer.status is EapStatus.SUCCESS and dialog.server.status is EapStatus.SUCCESS


def test_wrong_message_order_is_discarded():
    dialog = Dialog(make_peer(), make_server())
    first = dialog.advance_to(PSK1)
    dialog.deliver()
    dialog.deliver()    # server answers PSK-2 with PSK-3
    # A new Request (fresh Identifier) carrying the first message again.
    replay = bytearray(first)
    replay[1] = (dialog.pending[1] + 1) % 256
    assert discards(dialog.peer.receive(bytes(replay))) == [
        "expected the third EAP-PSK message, got T=0"]
    # A second message sent to the peer, a first one sent to the server.
    assert discards(dialog.peer.receive(
        EapPacket(1, replay[1], 47, b"\x40" + bytes(49)).encode())) == [
        "malformed EAP-PSK message: EAP-PSK T=1 in an EAP Request"]
    dialog.run()
    assert dialog.peer.status is EapStatus.SUCCESS


def test_server_done_failure_is_answered_with_done_failure():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    ak, keys, rand_s, rand_p = session_keys(dialog)
    mac_s = compute_mac_s(ak, SERVER_ID.encode(), rand_p)
    dialog.deliver(sealed(keys.tek, 1, third[1], 2, rand_s, 0,
                          ChannelPayload(ResultFlag.DONE_FAILURE), mac_s))
    assert opened(keys.tek, dialog.pending) == (1, ChannelPayload(ResultFlag.DONE_FAILURE))
    assert dialog.peer.method.keys() is None
    assert discards(dialog.peer.receive(success(third[1]).encode())) == [
        "EAP Success before the method allowed it"]
    dialog.peer.receive(failure(third[1]).encode())
    assert dialog.peer.status is EapStatus.FAILURE and dialog.peer.msk is None


def test_peer_done_failure_ends_the_server_without_another_message():
    dialog = Dialog(make_peer(), make_server())
    fourth = dialog.advance_to(PSK4)
    _, keys, rand_s, _ = session_keys(dialog)
    actions = dialog.deliver(sealed(keys.tek, 2, fourth[1], 3, rand_s, 1,
                                    ChannelPayload(ResultFlag.DONE_FAILURE)))
    assert sent(actions) == [failure(fourth[1]).encode()]
    assert dialog.server.failure_reason == "peer ended EAP-PSK with DONE_FAILURE"
    assert dialog.server.msk is None


def test_peer_cont_then_server_done_success():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    ak, keys, rand_s, rand_p = session_keys(dialog)
    mac_s = compute_mac_s(ak, SERVER_ID.encode(), rand_p)
    dialog.deliver(sealed(keys.tek, 1, third[1], 2, rand_s, 0, ChannelPayload(ResultFlag.CONT), mac_s))
    assert opened(keys.tek, dialog.pending) == (1, ChannelPayload(ResultFlag.CONT))
    assert dialog.peer._method_state is MethodState.CONT
    # The server's fifth message: T=3 in a Request, nonce 2.
    fifth_id = (third[1] + 1) % 256
    dialog.to = "peer"
    dialog.deliver(sealed(keys.tek, 1, fifth_id, 3, rand_s, 2, ChannelPayload(ResultFlag.DONE_SUCCESS)))
    assert opened(keys.tek, dialog.pending) == (3, ChannelPayload(ResultFlag.DONE_SUCCESS))
    assert dialog.peer._decision is Decision.COND_SUCC
    dialog.peer.receive(success(fifth_id).encode())
    assert dialog.peer.status is EapStatus.SUCCESS and dialog.peer.msk == keys.msk


def test_server_answers_peer_cont_with_done_success_a_bounded_number_of_times():
    dialog = Dialog(make_peer(), make_server())
    fourth = dialog.advance_to(PSK4)
    _, keys, rand_s, _ = session_keys(dialog)
    identifier, nonce = fourth[1], 1
    for _ in range(MAX_CONT_ROUNDS):
        actions = dialog.server.receive(sealed(keys.tek, 2, identifier, 3, rand_s, nonce,
                                               ChannelPayload(ResultFlag.CONT)))
        (request,) = sent(actions)
        assert request[0] == EapCode.REQUEST and request[5] >> 6 == 3
        assert opened(keys.tek, request) == (nonce + 1, ChannelPayload(ResultFlag.DONE_SUCCESS))
        identifier, nonce = request[1], nonce + 2
    actions = dialog.server.receive(sealed(keys.tek, 2, identifier, 3, rand_s, nonce,
                                           ChannelPayload(ResultFlag.CONT)))
    assert dialog.server.failure_reason == "peer keeps answering CONT"


def test_server_accepts_done_success_after_a_cont_round():
    dialog = Dialog(make_peer(), make_server())
    fourth = dialog.advance_to(PSK4)
    _, keys, rand_s, _ = session_keys(dialog)
    (request,) = sent(dialog.server.receive(sealed(keys.tek, 2, fourth[1], 3, rand_s, 1,
                                                   ChannelPayload(ResultFlag.CONT))))
    actions = dialog.server.receive(sealed(keys.tek, 2, request[1], 3, rand_s, 3,
                                           ChannelPayload(ResultFlag.DONE_SUCCESS)))
    assert sent(actions) == [success(request[1]).encode()]
    assert dialog.server.msk == keys.msk


def test_unsupported_extension_is_answered_with_an_empty_ext_payload():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    ak, keys, rand_s, rand_p = session_keys(dialog)
    mac_s = compute_mac_s(ak, SERVER_ID.encode(), rand_p)
    offer = ChannelPayload(ResultFlag.DONE_SUCCESS, 255, b"experimental")
    dialog.deliver(sealed(keys.tek, 1, third[1], 2, rand_s, 0, offer, mac_s))
    assert opened(keys.tek, dialog.pending) == (1, ChannelPayload(ResultFlag.DONE_SUCCESS, 255))
    dialog.peer.receive(success(third[1]).encode())
    assert dialog.peer.status is EapStatus.SUCCESS


def test_extension_started_with_an_empty_payload_is_discarded():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    ak, keys, rand_s, rand_p = session_keys(dialog)
    mac_s = compute_mac_s(ak, SERVER_ID.encode(), rand_p)
    offer = ChannelPayload(ResultFlag.DONE_SUCCESS, 255)
    assert discards(dialog.deliver(sealed(keys.tek, 1, third[1], 2, rand_s, 0, offer, mac_s))) == [
        "server started an extension with an empty EXT_Payload"]


def test_server_discards_an_extension_from_the_peer():
    dialog = Dialog(make_peer(), make_server())
    fourth = dialog.advance_to(PSK4)
    _, keys, rand_s, _ = session_keys(dialog)
    assert discards(dialog.deliver(sealed(keys.tek, 2, fourth[1], 3, rand_s, 1,
                                          ChannelPayload(ResultFlag.DONE_SUCCESS, 9, b"x")))) == [
        "peer sent an extension the server did not start"]


# --- Nak, Notification, Identity ----------------------------------------------

@pytest.mark.parametrize("eap_type, type_data", [(4, b"\x10" + bytes(16)), (254, bytes(7)), (255, b"x")])
def test_peer_naks_methods_it_does_not_have(eap_type, type_data):
    peer = make_peer()
    actions = peer.receive(EapPacket(1, 5, eap_type, type_data).encode())
    assert sent(actions) == [nak_response(5, [47]).encode()]
    assert peer.method is None


def test_server_fails_when_the_peer_naks_eap_psk():
    dialog = Dialog(make_peer(), make_server())
    first = dialog.advance_to(PSK1)
    dialog.to = "server"
    actions = dialog.server.receive(nak_response(first[1], [4]).encode())
    assert sent(actions) == [failure(first[1]).encode()]
    assert dialog.server.failure_reason == "peer refused EAP-PSK (Nak, wants [4])"


def test_notifications_are_answered_outside_eap_psk_only():
    peer = make_peer()
    actions = peer.receive(EapPacket(1, 3, EapType.NOTIFICATION, b"welcome").encode())
    assert sent(actions) == [EapPacket(2, 3, EapType.NOTIFICATION).encode()]
    assert [a.fields["text"] for a in actions if isinstance(a, Event)
            and a.name == "eap.notification"] == ["welcome"]

    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    notification = EapPacket(1, (third[1] + 7) % 256, EapType.NOTIFICATION, b"spoofed").encode()
    assert discards(dialog.peer.receive(notification)) == [
        "Notification during a method (RFC 4764 section 8.8)"]


def test_identity_request_after_the_method_started_is_discarded():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    assert discards(dialog.peer.receive(identity_request((third[1] + 9) % 256).encode())) == [
        "Identity Request after a method started"]


def test_other_method_requests_during_eap_psk_are_discarded():
    dialog = Dialog(make_peer(), make_server())
    third = dialog.advance_to(PSK3)
    md5 = EapPacket(1, (third[1] + 9) % 256, 4, b"\x10" + bytes(16)).encode()
    assert discards(dialog.peer.receive(md5)) == ["Request for Type 4 while Type 47 runs"]


def test_peer_discards_responses_and_garbage():
    peer = make_peer()
    assert discards(peer.receive(identity_response(1, b"x").encode())) == [
        "a peer does not accept EAP Responses"]
    assert discards(peer.receive(b"\x01")) == ["truncated EAP Identifier: need 1 bytes, have 0"]


def test_peer_can_pin_the_server_identity():
    dialog = Dialog(make_peer(expected_server_id="other.example.org"), make_server())
    dialog.advance_to(PSK1)
    reasons = discards(dialog.deliver())
    assert reasons == ["ID_S b'aaa.example.org' is not the expected server"]


def test_peer_constructor_checks_the_psk():
    with pytest.raises(InvalidPskError, match="exactly 16 bytes"):
        EapPeer(IDENTITY, bytes(15))
    with pytest.raises(ValueError):
        EapPeer(IDENTITY)
    with pytest.raises(ValueError):
        EapPeer(IDENTITY, PSK, methods={})


@pytest.mark.parametrize("identity", ["", "x" * 967])
def test_peer_constructor_checks_the_identity_fits_id_p(identity):
    with pytest.raises(ValueError, match="1..966 bytes"):
        EapPeer(identity, PSK)


def test_server_constructor_checks_the_server_id():
    with pytest.raises(ValueError):
        EapServer({}.get, "")
    with pytest.raises(ValueError):
        EapServer({}.get, "x" * 967)


# --- pass-through -------------------------------------------------------------

def relay_dialog(relay: EapPassThrough, peer: EapPeer, server: EapServer):
    """PaC <-> PAA (pass-through) <-> embedded AAA, until nothing moves."""
    to_peer = relay.start()
    for _ in range(20):
        from_peer = [a for p in sent(to_peer) for a in peer.receive(p)]
        relayed = [a for p in sent(from_peer) for a in relay.from_peer(p)]
        to_backend = [a.packet for a in relayed if isinstance(a, RelayToBackend)]
        if not to_backend:
            return
        to_peer = relay.from_embedded_server(server, server.receive(to_backend[0]))


def test_pass_through_relays_and_learns_the_msk_from_the_backend():
    relay, peer, server = EapPassThrough(rng=det_rng(b"paa")), make_peer(), make_server()
    relay_dialog(relay, peer, server)
    assert relay.status is peer.status is server.status is EapStatus.SUCCESS
    assert relay.msk == peer.msk == server.msk and relay.emsk == peer.emsk
    assert relay.identity == IDENTITY


def test_pass_through_failure_reaches_the_peer():
    relay, peer, server = EapPassThrough(), make_peer(psk=bytes(16)), make_server()
    relay_dialog(relay, peer, server)
    assert relay.status is EapStatus.FAILURE and peer.status is EapStatus.FAILURE
    assert relay.msk is None


def test_pass_through_checks_identifiers_and_duplicates():
    relay = EapPassThrough(rng=lambda n: b"\x05" * n)
    (request,) = sent(relay.start())
    assert request == identity_request(5).encode()
    with pytest.raises(RuntimeError):
        relay.start()
    assert discards(relay.from_peer(identity_response(6, b"a").encode())) == [
        "Identifier 6 does not match the outstanding Request (5)"]
    assert discards(relay.from_peer(identity_request(5).encode())) == [
        "the peer may only send Responses"]
    assert [type(a) for a in relay.from_peer(identity_response(5, b"a").encode())] == [RelayToBackend]
    assert discards(relay.from_peer(identity_response(5, b"a").encode())) == [
        "duplicate Response, already relayed"]
    assert discards(relay.from_backend(identity_response(5, b"a").encode())) == [
        "the backend may not send Responses"]
    assert discards(relay.from_backend(identity_request(6).encode(), accept=True)) == [
        "backend gave a verdict with an EAP Request"]
    assert discards(relay.from_backend(b"\x01\x02")) == ["from backend: truncated EAP Length: need 2 bytes, have 0"]


def test_pass_through_without_start_relays_the_backend_first_request():
    relay = EapPassThrough()
    assert discards(relay.from_peer(identity_response(1, b"a").encode())) == [
        "no Request is outstanding"]
    assert sent(relay.from_backend(identity_request(9).encode())) == [identity_request(9).encode()]
    assert sent(relay.from_peer(identity_response(9, b"a").encode())) == []


def test_pass_through_relays_packets_as_received_without_trailing_bytes():
    relay = EapPassThrough(rng=lambda n: b"\x04" * n)
    relay.start()
    response = identity_response(4, b"alice").encode()
    (relayed,) = relay.from_peer(response + b"\0\0")       # bytes past the EAP Length
    assert relayed.packet == response
    request = identity_request(7).encode()
    assert sent(relay.from_backend(request)) == [request]
    (relayed,) = relay.from_peer(identity_response(7, b"alice").encode())
    assert relayed.packet == identity_response(7, b"alice").encode()
    assert sent(relay.from_backend(identity_request(8).encode() + b"pad")) == [
        identity_request(8).encode()]


@pytest.mark.parametrize("packet, accept, msk, expected_code, status", [
    (success(3).encode(), True, bytes(64), EapCode.SUCCESS, EapStatus.SUCCESS),
    (success(3).encode(), None, bytes(64), EapCode.SUCCESS, EapStatus.SUCCESS),
    (success(3).encode(), False, bytes(64), EapCode.FAILURE, EapStatus.FAILURE),
    (success(3).encode(), True, None, EapCode.FAILURE, EapStatus.FAILURE),
    (success(3).encode(), True, bytes(32), EapCode.FAILURE, EapStatus.FAILURE),
    (failure(0).encode(), False, None, EapCode.FAILURE, EapStatus.FAILURE),
    (None, False, None, EapCode.FAILURE, EapStatus.FAILURE),
    (None, True, bytes(64), EapCode.SUCCESS, EapStatus.SUCCESS),
])
def test_pass_through_follows_the_backend_verdict(packet, accept, msk, expected_code, status):
    relay = EapPassThrough(rng=lambda n: b"\x03" * n)
    relay.start()
    relay.from_peer(identity_response(3, b"alice").encode())
    actions = relay.from_backend(packet, accept=accept, msk=msk)
    # Whatever Identifier the backend used, the peer gets its last Request's.
    assert sent(actions) == [EapPacket(expected_code, 3).encode()]
    assert relay.status is status
    effects = [a for a in actions if isinstance(a, (EapSucceeded, EapFailed))]
    assert len(effects) == 1
    assert discards(relay.from_backend(success(3).encode(), accept=True, msk=bytes(64))) == [
        "EAP conversation already finished"]


def test_pass_through_needs_a_request_before_a_verdict():
    relay = EapPassThrough()
    assert discards(relay.from_backend(None)) == ["backend sent neither EAP nor a verdict"]
    assert discards(relay.from_backend(None, accept=False)) == ["verdict before any EAP exchange"]


# --- the bytes-in/bytes-out peer the PANA PaC uses ----------------------------

def test_simple_peer_against_a_backend_server_started_by_the_identity_response():
    new_eap_peer = psk_peer_factory(IDENTITY, PSK, rng=det_rng(b"pac"))
    peer, server = new_eap_peer(), make_server()
    # The PAA sends the Identity Request itself; the backend starts from the answer.
    response = peer.receive(identity_request(200).encode())
    assert peer.status == "pending"
    for _ in range(10):
        (to_peer,) = sent(server.receive(response))
        response = peer.receive(to_peer)
        if response is None:
            break
    assert peer.status == "success" and server.status == "success"
    assert peer.msk == server.msk and peer.emsk == server.emsk
    assert any(isinstance(e, EapSucceeded) for e in peer.events)
    assert new_eap_peer() is not peer and new_eap_peer().status == "pending"


def test_simple_peer_returns_none_for_dropped_input_and_factory_checks_the_psk():
    peer = psk_peer_factory(IDENTITY, PSK)()
    assert peer.receive(b"garbage") is None
    assert discards(peer.events) == ["unknown EAP Code 103"]
    with pytest.raises(InvalidPskError):
        psk_peer_factory(IDENTITY, bytes(8))
