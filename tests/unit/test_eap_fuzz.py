"""Fuzzing: decoders raise only DecodeError, state machines only drop input.

Each test is bounded (max_examples) so the module runs in a few seconds.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mip6bench.codec import DecodeError
from mip6bench.eap import EapPassThrough, EapStatus
from mip6bench.eap.packet import EapPacket, EapType, decode_eap_packet
from mip6bench.eap.psk_messages import build_psk_packet, decode_channel_payload, decode_psk_message
from mip6bench.aaa.radius_attrs import (
    decrypt_mppe_key,
    join_eap_message,
    mppe_keys_from_radius,
    parse_radius_packet,
    verify_message_authenticator,
)
from mip6bench.sansio import Action
from tests.unit.test_eap_exchange import FINAL, Dialog, make_peer, make_server, sent

# database=None: nothing is written to .hypothesis/ in the working tree.
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=80))
def test_eap_decoder_raises_only_decode_error_and_round_trips(data):
    try:
        packet = decode_eap_packet(data)
    except DecodeError as err:
        assert err.reason
        return
    assert packet.encode() == data[:packet.length]


@FUZZ
@given(st.sampled_from([1, 2]), st.binary(max_size=120))
def test_psk_decoder_raises_only_decode_error(code, type_data):
    packet = EapPacket(code, 1, EapType.PSK, type_data)
    try:
        message = decode_psk_message(packet)
    except DecodeError as err:
        assert err.reason
        return
    rebuilt = decode_eap_packet(build_psk_packet(code, 1, message))
    assert rebuilt.type_data[1:] == type_data[1:]         # reserved flag bits aside
    assert rebuilt.type_data[0] == type_data[0] & 0xC0


@FUZZ
@given(st.binary(max_size=40))
def test_channel_payload_decoder_raises_only_decode_error(data):
    try:
        payload = decode_channel_payload(data)
    except DecodeError:
        return
    assert decode_channel_payload(payload.encode()) == payload


@FUZZ
@given(st.binary(max_size=120), st.binary(min_size=16, max_size=16))
def test_radius_helpers_raise_only_decode_error(data, authenticator):
    for call in (lambda: parse_radius_packet(data),
                 lambda: join_eap_message([data]),
                 lambda: decrypt_mppe_key(data, b"secret", authenticator),
                 lambda: mppe_keys_from_radius(data, b"secret", authenticator)):
        try:
            call()
        except DecodeError as err:
            assert err.reason
    assert verify_message_authenticator(data, b"secret", authenticator) in (True, False)


def mutate(packet: bytes, kind: str, position: int, noise: bytes) -> bytes:
    if kind == "random":
        return noise
    position %= max(len(packet), 1)
    if kind == "flip":
        data = bytearray(packet)
        data[position] ^= 1 << (noise[0] % 8 if noise else 0)
        return bytes(data)
    if kind == "truncate":
        return packet[:position]
    return packet[:position] + noise       # splice


@FUZZ
@given(index=st.integers(0, FINAL), kind=st.sampled_from(["random", "flip", "truncate", "splice"]),
       position=st.integers(0, 200), noise=st.binary(max_size=60))
def test_peer_and_server_only_drop_mutated_packets(index, kind, position, noise):
    dialog = Dialog(make_peer(), make_server())
    packet = dialog.advance_to(index)
    actions = dialog.deliver(mutate(packet, kind, position, noise))
    assert all(isinstance(a, Action) for a in actions)
    # Whatever happened, the genuine conversation can go on without raising, and
    # both ends never disagree on the keys.
    dialog.run()
    peer, server = dialog.peer, dialog.server
    if peer.status is EapStatus.SUCCESS and server.status is EapStatus.SUCCESS:
        assert peer.msk == server.msk and peer.emsk == server.emsk
    if peer.status is not EapStatus.SUCCESS:
        assert peer.msk is None


@FUZZ
@given(st.lists(st.binary(max_size=70), max_size=8))
def test_state_machines_survive_any_packet_sequence(packets):
    peer, server, relay = make_peer(), make_server(), EapPassThrough()
    server.start()
    relay.start()
    for data in packets:
        for actions in (peer.receive(data), server.receive(data),
                        relay.from_peer(data), relay.from_backend(data)):
            assert all(isinstance(a, Action) for a in actions)
            for packet in sent(actions):
                decode_eap_packet(packet)       # whatever they send is valid EAP
