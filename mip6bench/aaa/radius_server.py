"""Sans-I/O RADIUS authentication server with an embedded EAP-PSK server (RFC 2865,
RFC 3579, RFC 2548), the testbed's AAA server.

    core = RadiusServerCore(RadiusServerConfig(clients={"2001:db8:1::2": b"secret"},
                                               credentials=creds, server_id="aaa.example"))
    actions = core.receive(data, src, port, now)   # every datagram on UDP 1812
    actions = core.handle_timer(key, now)          # the sweep timer

Actions: Transmit (the response, to the request's source address and port), StartTimer
(one sweep timer) and Events ("radius.*": access_request, access_challenge,
access_accept, access_reject, drop). `core.counters` counts drops by reason.

Requests (checked in this order; every failure is a silent discard, counted, as RFC 2865
section 3 and RFC 3579 section 3.2 want):
  1. the source address is a configured client (its shared secret is used from here on);
  2. the packet decodes (Length, attribute walk, single-valued attributes, fixed sizes);
  3. the Code is Access-Request (1); anything else is not served here;
  4. it carries EAP-Message attributes whose concatenation is one EAP packet, and one
     Message-Authenticator that verifies with the client's secret (RFC 3579 3.2: an
     Access-Request with EAP-Message but without a valid Message-Authenticator is
     silently discarded);
  5. it names its NAS (NAS-Identifier, NAS-IP-Address or NAS-IPv6-Address: RFC 2865 4.1
     says it MUST carry NAS-IP-Address or NAS-Identifier, RFC 3162 adds the IPv6 one;
     OpenPANA's PAA sends NAS-IP-Address only).
A request with the same source address, port, Identifier and Request Authenticator as
one answered within `duplicate_window` seconds is a retransmission: the cached response
goes out again and nothing is reprocessed (RFC 5080 2.2.2).

EAP (RFC 3579 2.6): a request without State must carry an EAP-Response/Identity; it
starts a conversation with a fresh mip6bench.eap.EapServer (backend mode: the NAS sent
the Identity Request). Each Access-Challenge carries the next EAP Request and a State of
16 random bytes that names the conversation; the NAS echoes it. A State the server does
not know (expired, forged, another client's) gets an Access-Reject. The conversation
ends with Access-Accept (EAP-Success, User-Name = the authenticated EAP-PSK ID_P, the
MSK as MS-MPPE-Recv-Key (MSK[0:32]) and MS-MPPE-Send-Key (MSK[32:64]) encrypted per
RFC 2548 2.4, optional Session-Timeout, and Framed-IPv6-Address (RFC 6911) when the
user has a fixed Home Address in the credentials file) or Access-Reject (EAP-Failure):
unknown NAI, wrong PSK, EAP-PSK failure or Nak. If the EAP server discards the response
(wrong Identifier, a bad MAC_P with `discard_bad_mac_p`) the request is discarded too
and the NAS retransmits or times out. Every response carries a Message-Authenticator
and a Response Authenticator. Conversations idle for `conversation_timeout` seconds are
forgotten.
"""
from __future__ import annotations

import ipaddress
import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping

from mip6bench import ipaddr
from mip6bench.codec import DecodeError
from mip6bench.eap.actions import EapFailed, EapStatus, EapSucceeded, SendEap
from mip6bench.eap.packet import EapCode, EapType, decode_eap_packet, failure
from mip6bench.aaa.radius_attrs import (
    ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, ACCESS_REQUEST, CODE_NAMES, EAP_MESSAGE,
    FRAMED_IPV6_ADDRESS, MESSAGE_AUTHENTICATOR, NAS_IDENTIFIER, NAS_IP_ADDRESS,
    NAS_IPV6_ADDRESS,
    SESSION_TIMEOUT, STATE, USER_NAME, build_response, check_radius_packet,
    join_eap_message, mppe_key_attributes, parse_radius_packet, split_eap_message,
    verify_message_authenticator)
from mip6bench.eap.server import EapServer
from mip6bench.sansio import Action, Event, StartTimer, Transmit

RADIUS_AUTH_PORT = 1812
STATE_LEN = 16
SWEEP_TIMER = ("radius-server", "sweep")


@dataclass
class RadiusServerConfig:
    clients: Mapping[str, bytes]                 # NAS address -> shared secret
    credentials: Callable[[str], bytes | None]   # NAI -> 16-byte PSK (None: unknown)
    server_id: str = "aaa.mip6bench.example"     # EAP-PSK ID_S
    fixed_hoa: Callable[[str], str | None] = lambda nai: None
    session_timeout: int | None = None           # Session-Timeout in Access-Accept
    duplicate_window: float = 10.0
    conversation_timeout: float = 30.0
    max_conversations: int = 100_000
    discard_bad_mac_p: bool = False

    def __post_init__(self):
        clients = {}
        for address, secret in dict(self.clients).items():
            if not isinstance(secret, (bytes, bytearray)) or not secret:
                raise ValueError(f"RADIUS client {address}: the shared secret must be "
                                 "non-empty bytes")
            clients[str(ipaddress.ip_address(address))] = bytes(secret)
        self.clients = clients


@dataclass
class _Conversation:
    state: bytes
    client: str
    eap: EapServer
    last_seen: float
    identity: str | None = None


@dataclass
class _Cached:
    response: bytes
    expires: float


class RadiusServerCore:
    def __init__(self, config: RadiusServerConfig, rng: Callable[[int], bytes] = os.urandom):
        self.config = config
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self.conversations: dict[bytes, _Conversation] = {}
        self._cache: dict[tuple, _Cached] = {}
        self._sweep_at: float | None = None

    # ---- input
    def receive(self, data: bytes, src: str, port: int, now: float) -> list[Action]:
        try:
            client = ipaddr.text(src.split("%", 1)[0])
        except ValueError:
            return self._drop("unknown client", src=src)
        secret = self.config.clients.get(client)
        if secret is None:
            return self._drop("unknown client", src=src)
        try:
            packet = check_radius_packet(parse_radius_packet(data))
        except DecodeError as err:
            return self._drop("malformed", src=src, detail=err.reason)
        if packet.code != ACCESS_REQUEST:
            return self._drop("not an Access-Request", src=src, code=packet.code)
        key = (client, port, packet.identifier, packet.authenticator)
        cached = self._cache.get(key)
        if cached is not None and cached.expires > now:
            self.counters["duplicate answered"] += 1
            return [Transmit(cached.response, dst=src, port=port),
                    Event("radius.duplicate", {"role": "server", "client": client,
                                               "id": packet.identifier})]
        if not packet.values(MESSAGE_AUTHENTICATOR):
            return self._drop("no Message-Authenticator", src=src)
        if not verify_message_authenticator(data, secret):
            return self._drop("bad Message-Authenticator", src=src)
        values = packet.values(EAP_MESSAGE)
        if not values:
            return self._drop("no EAP-Message", src=src)
        try:
            eap = join_eap_message(values)
            eap_packet = decode_eap_packet(eap)
        except DecodeError as err:
            return self._drop("malformed EAP-Message", src=src, detail=err.reason)
        if not any(packet.values(a) for a in (NAS_IDENTIFIER, NAS_IP_ADDRESS,
                                              NAS_IPV6_ADDRESS)):
            return self._drop("no NAS identification", src=src)
        actions = self._arm_sweep(now)
        actions.append(Event("radius.access_request", {
            "role": "server", "client": client, "id": packet.identifier,
            "user": _text(packet.values(USER_NAME)), "state": bool(packet.values(STATE))}))
        state = packet.values(STATE)
        if state:
            conv = self.conversations.get(state[0])
            if conv is None or conv.client != client:
                self.counters["unknown State"] += 1
                return actions + self._reply(key, packet, secret, src, port, now, ACCESS_REJECT,
                                             failure(eap_packet.identifier).encode(),
                                             reason="unknown State")
            conv.last_seen = now
        else:
            if eap_packet.code != EapCode.RESPONSE or eap_packet.type != EapType.IDENTITY:
                self.counters["no State, no Identity"] += 1
                return actions + self._reply(key, packet, secret, src, port, now, ACCESS_REJECT,
                                             failure(eap_packet.identifier).encode(),
                                             reason="conversation must start with an Identity")
            if len(self.conversations) >= self.config.max_conversations:
                return actions + self._drop("too many conversations", src=src)
            conv = _Conversation(self._new_state(), client,
                                 EapServer(self.config.credentials, self.config.server_id,
                                           rng=self.rng,
                                           discard_bad_mac_p=self.config.discard_bad_mac_p),
                                 now)
        eap_actions = conv.eap.receive(eap)
        out = [a for a in eap_actions if isinstance(a, SendEap)]
        events = [a for a in eap_actions if isinstance(a, Event)]
        actions += events
        if not out:
            self.counters["EAP discarded"] += 1
            return actions + [Event("radius.drop", {"role": "server", "client": client,
                                                    "reason": "EAP discarded"})]
        if conv.identity is None:
            conv.identity = conv.eap.identity
        reply = out[-1].packet
        if conv.eap.status is EapStatus.PENDING:
            self.conversations[conv.state] = conv
            return actions + self._reply(key, packet, secret, src, port, now, ACCESS_CHALLENGE,
                                         reply, state=conv.state)
        self.conversations.pop(conv.state, None)
        result = next((a for a in eap_actions if isinstance(a, (EapSucceeded, EapFailed))), None)
        if conv.eap.status is EapStatus.SUCCESS and isinstance(result, EapSucceeded):
            return actions + self._reply(key, packet, secret, src, port, now, ACCESS_ACCEPT,
                                         reply, peer_id=conv.eap.peer_id, msk=conv.eap.msk)
        reason = result.reason if isinstance(result, EapFailed) else "EAP failure"
        return actions + self._reply(key, packet, secret, src, port, now, ACCESS_REJECT, reply,
                                     reason=reason)

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        if key != SWEEP_TIMER:
            return []
        self._sweep_at = None
        self._cache = {k: c for k, c in self._cache.items() if c.expires > now}
        idle = now - self.config.conversation_timeout
        for state in [s for s, c in self.conversations.items() if c.last_seen <= idle]:
            del self.conversations[state]
            self.counters["conversation expired"] += 1
        if self._cache or self.conversations:
            return self._arm_sweep(now)
        return []

    # ---- helpers
    def _new_state(self) -> bytes:
        while True:
            state = self.rng(STATE_LEN)
            if state not in self.conversations:
                return state

    def _arm_sweep(self, now: float) -> list[Action]:
        if self._sweep_at is not None:
            return []
        period = min(self.config.duplicate_window, self.config.conversation_timeout)
        self._sweep_at = now + period
        return [StartTimer(SWEEP_TIMER, self._sweep_at)]

    def _reply(self, key, request, secret: bytes, src: str, port: int, now: float, code: int,
               eap: bytes, *, state: bytes | None = None, peer_id: str | None = None,
               msk: bytes | None = None, reason: str = "") -> list[Action]:
        attrs: list[tuple[int, bytes]] = []
        raw = b""
        fields = {"role": "server", "client": key[0], "id": request.identifier}
        if code == ACCESS_ACCEPT:
            user = peer_id or ""
            if user:
                attrs.append((USER_NAME, user.encode("utf-8")[:253]))
            if self.config.session_timeout:
                attrs.append((SESSION_TIMEOUT, self.config.session_timeout.to_bytes(4, "big")))
            hoa = self.config.fixed_hoa(user) if user else None
            if hoa:
                attrs.append((FRAMED_IPV6_ADDRESS, ipaddr.packed6(hoa)))
                fields["hoa"] = hoa
            raw = b"".join(mppe_key_attributes(msk, secret, request.authenticator, self.rng))
            fields["user"] = user
        attrs += [(EAP_MESSAGE, v) for v in split_eap_message(eap)]
        if state is not None:
            attrs.append((STATE, state))
        response = build_response(code, request.identifier, request.authenticator, secret,
                                  attrs, raw)
        self._cache[key] = _Cached(response, now + self.config.duplicate_window)
        if reason:
            fields["reason"] = reason
        name = {ACCESS_ACCEPT: "radius.access_accept", ACCESS_REJECT: "radius.access_reject",
                ACCESS_CHALLENGE: "radius.access_challenge"}[code]
        self.counters[CODE_NAMES[code]] += 1
        return [Transmit(response, dst=src, port=port), Event(name, fields)]

    def _drop(self, reason: str, **fields) -> list[Action]:
        self.counters[reason] += 1
        return [Event("radius.drop", {"role": "server", "reason": reason, **fields})]


def _text(values: list[bytes]) -> str | None:
    return values[0].decode("utf-8", "replace") if values else None
