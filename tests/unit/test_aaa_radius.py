"""RADIUS for EAP: the new radius_attrs helpers, the embedded server core and the client
core (the PAA's), driven against each other and against hand-made bad packets."""
from __future__ import annotations

import hashlib
import ipaddress
import random

import pytest
from pyrad import packet as pyrad_packet
from pyrad.dictionary import Dictionary

from mip6bench.aaa.radius_client import (RadiusAnswer, RadiusClientConfig, RadiusClientCore,
                                         RadiusTimeout)
from mip6bench.aaa.radius_server import SWEEP_TIMER, RadiusServerConfig, RadiusServerCore
from mip6bench.codec import DecodeError
from mip6bench.eap import EapPassThrough, EapPeer, EapStatus, RelayToBackend, SendEap
from mip6bench.eap.packet import identity_response
from mip6bench.aaa.radius_attrs import (
    ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, ACCESS_REQUEST, EAP_MESSAGE,
    FRAMED_IPV6_ADDRESS, MESSAGE_AUTHENTICATOR, NAS_IDENTIFIER, SESSION_TIMEOUT, STATE,
    USER_NAME, build_response, check_radius_packet, encode_radius_packet,
    mppe_keys_from_radius, parse_radius_packet, response_authenticator,
    sign_message_authenticator, verify_message_authenticator, verify_response_authenticator)
from mip6bench.sansio import Event, StartTimer, StopTimer, Transmit

NAS = "2001:db8:1::2"
SERVER = "2001:db8:1::3"
SECRET = b"s3cret"
NAI = "mn1@mip6bench.example"
PSK = bytes(range(16))
HOA = "2001:db8:1::1001"
USERS = {NAI: PSK, "mn2@mip6bench.example": bytes(range(16, 32))}
HOAS = {NAI: HOA}


def seeded(seed: int):
    rng = random.Random(seed)
    return lambda n: rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""


def make_server(**kw):
    return RadiusServerCore(RadiusServerConfig({NAS: SECRET}, USERS.get, fixed_hoa=HOAS.get,
                                               **kw), rng=seeded(1))


def make_client(**kw):
    return RadiusClientCore(RadiusClientConfig(SERVER, SECRET, nas_identifier="paa",
                                               nas_address=NAS, **kw), rng=seeded(2))


def transmits(actions):
    return [a for a in actions if isinstance(a, Transmit)]


def answers(actions):
    return [a for a in actions if isinstance(a, (RadiusAnswer, RadiusTimeout))]


def access_request(eap: bytes, *, identifier=7, authenticator=bytes(range(16)),
                   extra=(), secret=SECRET, nas=True, ma=True) -> bytes:
    attrs = [(USER_NAME, NAI.encode())]
    if nas:
        attrs.append((NAS_IDENTIFIER, b"paa"))
    attrs += [(EAP_MESSAGE, eap), *extra]
    if ma:
        attrs.append((MESSAGE_AUTHENTICATOR, bytes(16)))
    data = encode_radius_packet(ACCESS_REQUEST, identifier, authenticator, attrs)
    return sign_message_authenticator(data, secret) if ma else data


IDENTITY = identity_response(1, NAI.encode()).encode()


# ---- radius_attrs additions -------------------------------------------------------------

def test_encode_parse_round_trip_and_response_authenticator_by_hand():
    data = encode_radius_packet(ACCESS_ACCEPT, 9, bytes(16), [(USER_NAME, b"x"), (STATE, b"st")])
    packet = parse_radius_packet(data)
    assert (packet.code, packet.identifier, packet.attributes) == (2, 9, ((1, b"x"), (24, b"st")))
    request_auth = bytes(range(16, 32))
    expected = hashlib.md5(data[:4] + request_auth + data[20:] + SECRET).digest()
    assert response_authenticator(data, SECRET, request_auth) == expected
    signed = data[:4] + expected + data[20:]
    assert verify_response_authenticator(signed, SECRET, request_auth)
    assert not verify_response_authenticator(signed, b"other", request_auth)


def test_build_response_verifies_with_pyrad(tmp_path):
    (tmp_path / "dict").write_text("ATTRIBUTE\tUser-Name\t1\tstring\n"
                                   "ATTRIBUTE\tEAP-Message\t79\toctets\n"
                                   "ATTRIBUTE\tMessage-Authenticator\t80\toctets\n")
    request = pyrad_packet.AuthPacket(code=ACCESS_REQUEST, id=5, secret=SECRET,
                                      authenticator=bytes(range(16)),
                                      dict=Dictionary(str(tmp_path / "dict")))
    reply = build_response(ACCESS_ACCEPT, 5, bytes(range(16)), SECRET,
                           [(USER_NAME, b"alice"), (EAP_MESSAGE, b"\x03\x01\x00\x04")])
    parsed = request.CreateReply(packet=reply)
    # pyrad's own checks: Response Authenticator and (BlastRADIUS) Message-Authenticator.
    assert request.VerifyReply(parsed, reply, enforce_ma=True)
    assert verify_message_authenticator(reply, SECRET, bytes(range(16)))


@pytest.mark.parametrize("attrs, reason", [
    ([(STATE, b"a"), (STATE, b"b")], "more than one attribute 24"),
    ([(SESSION_TIMEOUT, b"\0\0\1")], "attribute 27 of 3 bytes"),
    ([(FRAMED_IPV6_ADDRESS, bytes(15))], "attribute 168 of 15 bytes"),
    ([(USER_NAME, b"")], "empty attribute 1"),
])
def test_check_radius_packet_rejects(attrs, reason):
    data = encode_radius_packet(ACCESS_ACCEPT, 1, bytes(16), attrs)
    with pytest.raises(DecodeError, match=reason):
        check_radius_packet(parse_radius_packet(data))


# ---- whole conversations: client core <-> server core -------------------------------------

class Conversation:
    """EapPeer <-> EapPassThrough + RadiusClientCore <-> RadiusServerCore, in memory."""

    def __init__(self, nai=NAI, psk=PSK, server=None, client=None):
        self.server = server or make_server()
        self.client = client or make_client()
        self.peer = EapPeer(nai, psk)
        self.relay = EapPassThrough(rng=seeded(3))
        self.state = None
        self.now = 0.0
        self.answers = []

    def run(self, max_rounds=10):
        to_peer = [a.packet for a in self.relay.start() if isinstance(a, SendEap)]
        for _ in range(max_rounds):
            response = [a.packet for p in to_peer for a in self.peer.receive(p)
                        if isinstance(a, SendEap)]
            relayed = [a.packet for a in self.relay.from_peer(response[0])
                       if isinstance(a, RelayToBackend)]
            out = self.client.request("s1", relayed[0], self.now, user_name=self.relay.identity,
                                      state=self.state)
            (tx,) = transmits(out)
            self.now += 0.01
            server_out = self.server.receive(tx.data, NAS, 40000, self.now)
            (reply,) = transmits(server_out)
            assert (reply.dst, reply.port) == (NAS, 40000)
            got = answers(self.client.receive(reply.data, SERVER, 1812, self.now))
            (answer,) = got
            self.answers.append(answer)
            self.state = answer.state
            accept = {"challenge": None, "accept": True, "reject": False}[answer.code]
            result = self.relay.from_backend(answer.eap, accept=accept, msk=answer.msk)
            to_peer = [a.packet for a in result if isinstance(a, SendEap)]
            if accept is not None:
                for p in to_peer:
                    self.peer.receive(p)
                return answer
        raise AssertionError("no verdict")


def test_eap_psk_through_both_cores_gives_accept_with_msk_hoa_and_user():
    conv = Conversation(server=make_server(session_timeout=900))
    final = conv.run()
    assert [a.code for a in conv.answers] == ["challenge", "challenge", "accept"]
    assert conv.peer.status is EapStatus.SUCCESS and conv.relay.status is EapStatus.SUCCESS
    assert final.msk == conv.peer.msk and len(final.msk) == 64
    assert final.attributes == {"user_name": NAI, "session_timeout": 900,
                                "framed_ipv6_address": HOA}
    assert conv.server.conversations == {}      # finished conversations are forgotten
    assert conv.client.outstanding == {}


@pytest.mark.parametrize("nai, psk, reason", [
    (NAI, bytes(16), "MAC_P"),                                   # wrong PSK
    ("nobody@mip6bench.example", PSK, "unknown identity"),
])
def test_wrong_psk_and_unknown_nai_get_access_reject_without_keys(nai, psk, reason):
    conv = Conversation(nai=nai, psk=psk)
    final = conv.run()
    assert final.code == "reject" and final.msk is None
    assert conv.peer.status is EapStatus.FAILURE and conv.relay.status is EapStatus.FAILURE
    events = [e for e in conv.server.counters]
    assert conv.server.counters["Access-Reject"] == 1, events


def test_duplicate_request_gets_the_cached_response_and_no_reprocessing():
    server = make_server()
    data = access_request(IDENTITY)
    first = transmits(server.receive(data, NAS, 5000, 0.0))
    again = server.receive(data, NAS, 5000, 1.0)
    assert transmits(again)[0].data == first[0].data
    assert server.counters["duplicate answered"] == 1
    assert len(server.conversations) == 1
    # Same Identifier from another port is a new request.
    server.receive(data, NAS, 5001, 1.0)
    assert len(server.conversations) == 2


def test_duplicate_cache_and_conversations_expire_with_the_sweep_timer():
    server = make_server(duplicate_window=2.0, conversation_timeout=5.0)
    out = server.receive(access_request(IDENTITY), NAS, 5000, 0.0)
    (timer,) = [a for a in out if isinstance(a, StartTimer)]
    assert timer.key == SWEEP_TIMER and timer.at == 2.0
    assert server.handle_timer(SWEEP_TIMER, 2.0)          # re-armed: a conversation is open
    assert len(server.conversations) == 1
    server.handle_timer(SWEEP_TIMER, 6.0)
    assert server.conversations == {} and server.counters["conversation expired"] == 1


@pytest.mark.parametrize("mutate, reason", [
    (lambda: access_request(IDENTITY, secret=b"wrong"), "bad Message-Authenticator"),
    (lambda: access_request(IDENTITY, ma=False), "no Message-Authenticator"),
    (lambda: access_request(IDENTITY, nas=False), "no NAS identification"),
    (lambda: access_request(IDENTITY[:-1] + b"\xff" * 2), "malformed EAP-Message"),
    (lambda: access_request(IDENTITY)[:-3], "malformed"),
    (lambda: sign_message_authenticator(encode_radius_packet(
        ACCESS_ACCEPT, 1, bytes(16), [(MESSAGE_AUTHENTICATOR, bytes(16))]), SECRET),
     "not an Access-Request"),
])
def test_server_silently_discards_bad_requests(mutate, reason):
    server = make_server()
    out = server.receive(mutate(), NAS, 5000, 0.0)
    assert transmits(out) == []
    assert server.counters[reason] == 1
    assert server.conversations == {}


@pytest.mark.parametrize("nas_attribute", [(4, bytes([127, 0, 0, 1])),      # NAS-IP-Address
                                            (95, ipaddress.IPv6Address("::1").packed)])
def test_server_takes_a_nas_named_by_its_address(nas_attribute):
    """RFC 2865 4.1: NAS-IP-Address or NAS-Identifier (RFC 3162: or NAS-IPv6-Address).
    OpenPANA's PAA names itself with NAS-IP-Address only."""
    server = make_server()
    out = server.receive(access_request(IDENTITY, nas=False, extra=[nas_attribute]), NAS,
                         5000, 0.0)
    (reply,) = transmits(out)
    assert parse_radius_packet(reply.data).code == ACCESS_CHALLENGE
    assert server.counters == {"Access-Challenge": 1}      # nothing dropped


def test_server_refuses_a_nas_ip_address_of_the_wrong_size():
    server = make_server()
    out = server.receive(access_request(IDENTITY, nas=False, extra=[(4, bytes(16))]), NAS,
                         5000, 0.0)
    assert transmits(out) == [] and server.counters["malformed"] == 1


def test_server_ignores_unknown_clients():
    server = make_server()
    out = server.receive(access_request(IDENTITY), "2001:db8:1::99", 5000, 0.0)
    assert transmits(out) == [] and server.counters["unknown client"] == 1


def test_unknown_state_and_a_start_without_identity_are_rejected():
    server = make_server()
    out = server.receive(access_request(IDENTITY, extra=[(STATE, b"x" * 16)]), NAS, 5000, 0.0)
    reply = parse_radius_packet(transmits(out)[0].data)
    assert reply.code == ACCESS_REJECT and server.counters["unknown State"] == 1
    nak = bytes([2, 1, 0, 6, 3, 47])    # a Response that is not an Identity, no State
    out = server.receive(access_request(nak, identifier=8), NAS, 5000, 0.0)
    assert parse_radius_packet(transmits(out)[0].data).code == ACCESS_REJECT


def test_state_of_another_client_is_not_honoured():
    server = RadiusServerCore(RadiusServerConfig({NAS: SECRET, "2001:db8:1::9": SECRET},
                                                 USERS.get), rng=seeded(1))
    out = server.receive(access_request(IDENTITY), NAS, 5000, 0.0)
    state = parse_radius_packet(transmits(out)[0].data).values(STATE)[0]
    out = server.receive(access_request(IDENTITY, identifier=9, extra=[(STATE, state)]),
                         "2001:db8:1::9", 5000, 0.0)
    assert parse_radius_packet(transmits(out)[0].data).code == ACCESS_REJECT


# ---- client core ------------------------------------------------------------------------

def test_client_identifiers_are_taken_in_turn_and_queue_beyond_256():
    client = RadiusClientCore(RadiusClientConfig(SERVER, SECRET), rng=seeded(4),
                              first_identifier=254)
    ids = []
    for key in range(256):
        (tx,) = transmits(client.request(key, IDENTITY, 0.0))
        ids.append(tx.data[1])
    assert ids[:3] == [254, 255, 0] and sorted(ids) == list(range(256))
    out = client.request("late", IDENTITY, 0.0)
    assert transmits(out) == [] and client.counters["queued"] == 1
    # The first answer frees Identifier 254; the queued request takes it.
    pending = client.outstanding[254]
    reply = build_response(ACCESS_CHALLENGE, 254, pending.authenticator, SECRET,
                           [(EAP_MESSAGE, bytes([1, 2, 0, 6, 47, 1]))])
    out = client.receive(reply, SERVER, 1812, 0.1)
    assert answers(out)[0].key == 0
    (tx,) = transmits(out)
    assert tx.data[1] == 254 and client.outstanding[254].key == "late"


def test_client_retransmits_the_same_packet_with_backoff_then_times_out():
    client = make_client(irt=1.0, mrt=3.0, mrc=3)
    out = client.request("s", IDENTITY, 0.0)
    (tx,) = transmits(out)
    (timer,) = [a for a in out if isinstance(a, StartTimer)]
    times = []
    now = timer.at
    for _ in range(3):
        out = client.handle_timer(timer.key, now)
        assert transmits(out)[0].data == tx.data          # same Identifier and authenticator
        (timer,) = [a for a in out if isinstance(a, StartTimer)]
        times.append(timer.at - now)
        now = timer.at
    assert times == [2.0, 3.0, 3.0]
    out = client.handle_timer(timer.key, now)
    assert answers(out) == [RadiusTimeout("s", 4)] and client.outstanding == {}


def reply_for(client, key, code=ACCESS_CHALLENGE, secret=SECRET, attrs=None, raw=b""):
    pending = next(p for p in client.outstanding.values() if p.key == key)
    attrs = attrs if attrs is not None else [(EAP_MESSAGE, bytes([1, 2, 0, 6, 47, 1])),
                                             (STATE, b"state")]
    return build_response(code, pending.identifier, pending.authenticator, secret, attrs, raw)


def test_reply_with_bad_message_authenticator_is_rejected_counted_and_the_request_waits():
    client = make_client()
    client.request("s", IDENTITY, 0.0)
    good = reply_for(client, "s")
    bad = bytearray(good)
    bad[-1] ^= 1                                            # Message-Authenticator is last
    # Recompute the Response Authenticator so only the Message-Authenticator is wrong.
    pending = client.outstanding[good[1]]
    bad[4:20] = response_authenticator(bytes(bad), SECRET, pending.authenticator)
    out = client.receive(bytes(bad), SERVER, 1812, 0.1)
    assert answers(out) == [] and client.counters["bad Message-Authenticator"] == 1
    assert [e.fields["reason"] for e in out if isinstance(e, Event)] == \
        ["bad Message-Authenticator"]
    assert client.outstanding
    got = answers(client.receive(good, SERVER, 1812, 0.2))
    assert got[0].code == "challenge" and got[0].state == b"state"


def test_reply_signed_with_another_secret_fails_the_response_authenticator():
    client = make_client()
    client.request("s", IDENTITY, 0.0)
    out = client.receive(reply_for(client, "s", secret=b"other"), SERVER, 1812, 0.1)
    assert answers(out) == [] and client.counters["bad Response Authenticator"] == 1


def test_reply_from_elsewhere_or_for_no_request_is_dropped():
    client = make_client()
    client.request("s", IDENTITY, 0.0)
    good = reply_for(client, "s")
    assert answers(client.receive(good, "2001:db8:1::66", 1812, 0.1)) == []
    assert answers(client.receive(good, SERVER, 1813, 0.1)) == []
    assert client.counters["unexpected source"] == 2
    stray = bytearray(good)
    stray[1] = (stray[1] + 1) % 256
    assert answers(client.receive(bytes(stray), SERVER, 1812, 0.1)) == []
    assert client.counters["unknown Identifier"] == 1


def test_accept_without_mppe_keys_gives_no_msk():
    client = make_client()
    client.request("s", IDENTITY, 0.0)
    out = client.receive(reply_for(client, "s", ACCESS_ACCEPT,
                                   attrs=[(EAP_MESSAGE, bytes([3, 2, 0, 4]))]), SERVER, 1812, 0.1)
    (answer,) = answers(out)
    assert answer.code == "accept" and answer.msk is None
    assert client.counters["Access-Accept without MPPE keys"] == 1


def test_cancel_forgets_the_request_and_its_timer():
    client = make_client()
    client.request("s", IDENTITY, 0.0)
    (ident,) = client.outstanding
    assert client.cancel("s") == [StopTimer(("radius-client", ident))]
    assert client.outstanding == {} and client.cancel("s") == []


def test_server_accept_keys_decrypt_with_the_request_authenticator():
    server = make_server()
    conv = Conversation(server=server)
    conv.run()
    assert conv.answers[-1].msk == conv.peer.msk
    # and the same bytes through the independent decrypt helper
    client = make_client()
    client.request("x", IDENTITY, 0.0)
    pending = next(iter(client.outstanding.values()))
    msk = bytes(range(64))
    from mip6bench.aaa.radius_attrs import mppe_key_attributes
    reply = build_response(ACCESS_ACCEPT, pending.identifier, pending.authenticator, SECRET,
                           [(EAP_MESSAGE, bytes([3, 2, 0, 4]))],
                           b"".join(mppe_key_attributes(msk, SECRET, pending.authenticator,
                                                        seeded(5))))
    assert mppe_keys_from_radius(reply, SECRET, pending.authenticator) == (msk[:32], msk[32:])
    (answer,) = answers(client.receive(reply, SERVER, 1812, 0.1))
    assert answer.msk == msk


def test_config_validation():
    with pytest.raises(ValueError):
        RadiusClientConfig(SERVER, b"")
    with pytest.raises(ValueError):
        RadiusClientConfig("not-an-address", SECRET)
    with pytest.raises(ValueError):
        RadiusServerConfig({NAS: b""}, USERS.get)
    assert ipaddress.ip_address(RadiusClientConfig("2001:DB8:1::3", SECRET).server)


# ---- fuzzing: never an exception, never an answer to garbage ------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, database=None)


@FUZZ
@given(st.binary(max_size=300))
def test_server_and_client_survive_random_datagrams(data):
    server = make_server()
    assert transmits(server.receive(data, NAS, 5000, 0.0)) == []
    client = make_client()
    client.request("s", IDENTITY, 0.0)
    assert answers(client.receive(data, SERVER, 1812, 0.1)) == []


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=8),
       st.binary(min_size=1, max_size=60))
def test_server_survives_well_signed_requests_with_random_attributes(attrs, eap):
    """Correct Message-Authenticator (so the deep paths run), arbitrary content."""
    attrs = [(t, v) for t, v in attrs if t != MESSAGE_AUTHENTICATOR]
    data = encode_radius_packet(ACCESS_REQUEST, 1, bytes(16),
                                attrs + [(EAP_MESSAGE, eap), (NAS_IDENTIFIER, b"n"),
                                         (MESSAGE_AUTHENTICATOR, bytes(16))])
    server = make_server()
    for reply in transmits(server.receive(sign_message_authenticator(data, SECRET), NAS,
                                          5000, 0.0)):
        packet = parse_radius_packet(reply.data)
        assert packet.code in (ACCESS_CHALLENGE, ACCESS_REJECT)
        assert verify_message_authenticator(reply.data, SECRET, bytes(16))
