"""Sans-I/O RADIUS client for EAP (RFC 2865, RFC 3579, RFC 5080), used by the PAA as the
NAS toward an AAA server (the embedded one, or hostapd).

    client = RadiusClientCore(RadiusClientConfig(server="2001:db8:1::3", secret=b"s",
                                                 nas_identifier="paa"))
    actions = client.request(key, eap_packet, now, user_name=..., state=...)
    actions = client.receive(data, src, port, now)   # datagrams from the server
    actions = client.handle_timer(timer_key, now)
    actions = client.cancel(key)                     # the PANA session went away

`key` is the caller's handle (the PANA session id). Results come back as effects:

    RadiusAnswer(key, code, eap, state, msk, attributes)
        code: "challenge" | "accept" | "reject"; eap: the EAP packet of the
        EAP-Message attributes (None if there were none); state: the State to echo in
        the next request; msk: MS-MPPE-Recv-Key || MS-MPPE-Send-Key of an
        Access-Accept (None if absent or malformed); attributes: "user_name",
        "session_timeout", "framed_ipv6_address", "reply_message" when present.
    RadiusTimeout(key, attempts)
        no valid answer after the last retransmission.

Requests: Access-Request with User-Name, NAS-Identifier, NAS-IPv6-Address (if given),
Calling-Station-Id (the PaC's address, if given), the EAP packet split into
EAP-Message attributes, State (if given) and a Message-Authenticator; the Request
Authenticator is 16 random bytes. Identifiers are taken in turn from 0..255 among those
not outstanding; with all 256 in use new requests wait in a queue (RFC 2865: the
Identifier tells outstanding requests apart). A retransmission resends the very same
packet (same Identifier and Request Authenticator, RFC 5080 2.2.1) after `irt` seconds,
doubling up to `mrt`, `mrc` times at most; then RadiusTimeout.

Responses are accepted only from the server's address and port, for an outstanding
Identifier, with a valid Response Authenticator and, when they carry EAP-Message (RFC
3579 3.2 requires it then) or any Message-Authenticator, a valid one. Everything else
is dropped and counted in `counters` ("bad Message-Authenticator", "bad Response
Authenticator", "unknown Identifier", "unexpected source", "malformed", "unexpected
Code") with a "radius.drop" event; the request stays outstanding.
"""
from __future__ import annotations

import ipaddress
import os
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from mip6bench import ipaddr
from mip6bench.codec import DecodeError
from mip6bench.aaa.radius_attrs import (
    ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, ACCESS_REQUEST, CALLING_STATION_ID,
    EAP_MESSAGE, FRAMED_IPV6_ADDRESS, MESSAGE_AUTHENTICATOR, NAS_IDENTIFIER, NAS_IPV6_ADDRESS,
    REPLY_MESSAGE, SESSION_TIMEOUT, STATE, USER_NAME, check_radius_packet,
    encode_signed_packet, join_eap_message, mppe_keys_from_radius, parse_radius_packet,
    split_eap_message, verify_message_authenticator, verify_response_authenticator)
from mip6bench.sansio import (Action, Effect, Event, StartTimer, StopTimer, Transmit,
                               quick_init)

RADIUS_AUTH_PORT = 1812
_CODES = {ACCESS_CHALLENGE: "challenge", ACCESS_ACCEPT: "accept", ACCESS_REJECT: "reject"}


@quick_init
@dataclass(frozen=True)
class RadiusAnswer(Effect):
    key: Hashable
    code: str
    eap: bytes | None
    state: bytes | None
    msk: bytes | None = field(repr=False)
    attributes: dict[str, Any] = field(default_factory=dict)


@quick_init
@dataclass(frozen=True)
class RadiusTimeout(Effect):
    key: Hashable
    attempts: int


@dataclass
class RadiusClientConfig:
    server: str
    secret: bytes
    nas_identifier: str = "mip6bench-paa"
    nas_address: str | None = None      # NAS-IPv6-Address
    port: int = RADIUS_AUTH_PORT
    irt: float = 1.0                    # initial retransmission timeout, s
    mrt: float = 8.0                    # cap of the doubling, s
    mrc: int = 4                        # retransmissions before giving up

    def __post_init__(self):
        self.server = str(ipaddress.ip_address(self.server))
        if not isinstance(self.secret, (bytes, bytearray)) or not self.secret:
            raise ValueError("the RADIUS shared secret must be non-empty bytes")
        self.secret = bytes(self.secret)
        if not self.nas_identifier:
            raise ValueError("nas_identifier must not be empty")
        if self.nas_address is not None:
            self.nas_address = str(ipaddress.IPv6Address(self.nas_address))
        if self.irt <= 0 or self.mrt < self.irt or self.mrc < 0:
            raise ValueError("retransmission needs irt > 0, mrt >= irt, mrc >= 0")


@dataclass
class _Pending:
    key: Hashable
    identifier: int
    authenticator: bytes
    data: bytes
    timeout: float
    attempts: int = 1
    sent_at: float = 0.0


def _timer(identifier: int) -> tuple:
    return ("radius-client", identifier)


class RadiusClientCore:
    def __init__(self, config: RadiusClientConfig, rng: Callable[[int], bytes] = os.urandom,
                 first_identifier: int | None = None):
        self.config = config
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self.outstanding: dict[int, _Pending] = {}     # Identifier -> request
        self._by_key: dict[Hashable, int] = {}
        self._queue: deque[tuple[Hashable, bytes, dict]] = deque()
        self._next_id = random.Random(rng(8)).randrange(256) if first_identifier is None \
            else first_identifier % 256
        # the attributes every request carries the same, encoded once
        self._nas_attributes = [(NAS_IDENTIFIER, config.nas_identifier.encode("utf-8")[:253])]
        if config.nas_address:
            self._nas_attributes.append((NAS_IPV6_ADDRESS, ipaddr.packed6(config.nas_address)))

    # ---- commands
    def request(self, key: Hashable, eap: bytes, now: float, *, user_name: str | None = None,
                state: bytes | None = None, calling_station: str | None = None) -> list[Action]:
        """Send one EAP packet to the server as an Access-Request (replacing any request
        still outstanding for `key`)."""
        if not eap:
            raise ValueError("an Access-Request for EAP needs an EAP packet")
        actions = self.cancel(key)
        params = {"user_name": user_name, "state": state, "calling_station": calling_station}
        if len(self.outstanding) >= 256:
            self._queue.append((key, eap, params))
            self.counters["queued"] += 1
            return actions + [Event("radius.queued", {"role": "client", "key": str(key)})]
        return actions + self._send_new(key, eap, params, now)

    def cancel(self, key: Hashable) -> list[Action]:
        ident = self._by_key.pop(key, None)
        if ident is None:
            self._queue = deque(q for q in self._queue if q[0] != key)
            return []
        del self.outstanding[ident]
        return [StopTimer(_timer(ident))]

    # ---- input
    def receive(self, data: bytes, src: str, port: int, now: float) -> list[Action]:
        try:
            address = ipaddr.text(src.split("%", 1)[0])
        except ValueError:
            return self._drop("unexpected source", src=src)
        if address != self.config.server or port != self.config.port:
            return self._drop("unexpected source", src=src, port=port)
        try:
            packet = check_radius_packet(parse_radius_packet(data))
        except DecodeError as err:
            return self._drop("malformed", detail=err.reason)
        if packet.code not in _CODES:
            return self._drop("unexpected Code", code=packet.code)
        pending = self.outstanding.get(packet.identifier)
        if pending is None:
            return self._drop("unknown Identifier", id=packet.identifier)
        secret = self.config.secret
        if not verify_response_authenticator(data, secret, pending.authenticator):
            return self._drop("bad Response Authenticator", id=packet.identifier)
        by_type = packet.by_type      # each type's values, read here, not copied
        eap_values = by_type.get(EAP_MESSAGE)
        if eap_values or MESSAGE_AUTHENTICATOR in by_type:
            if not verify_message_authenticator(data, secret, pending.authenticator):
                return self._drop("bad Message-Authenticator", id=packet.identifier)
        eap = None
        if eap_values:
            try:
                eap = join_eap_message(eap_values)
            except DecodeError as err:
                return self._drop("malformed", detail=err.reason, id=packet.identifier)
        code = _CODES[packet.code]
        msk = None
        if code == "accept":
            try:
                recv_key, send_key = mppe_keys_from_radius(data, secret, pending.authenticator)
                msk = recv_key + send_key
            except DecodeError as err:
                self.counters["Access-Accept without MPPE keys"] += 1
                msk = None
                detail = err.reason
            else:
                detail = ""
        attributes = _attributes(by_type)
        state = by_type.get(STATE)
        del self.outstanding[packet.identifier]
        self._by_key.pop(pending.key, None)
        actions: list[Action] = [StopTimer(_timer(packet.identifier))]
        fields = {"role": "client", "key": str(pending.key), "id": packet.identifier,
                  "code": code, "rtt_ms": round((now - pending.sent_at) * 1000, 3),
                  "attempts": pending.attempts}
        if code == "accept" and msk is None:
            fields["mppe"] = detail
        actions.append(Event("radius.answer", fields))
        actions.append(RadiusAnswer(pending.key, code, eap, state[0] if state else None, msk,
                                    attributes))
        return actions + self._dequeue(now)

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] == "radius-client"):
            return []
        pending = self.outstanding.get(key[1])
        if pending is None:
            return []
        if pending.attempts > self.config.mrc:
            del self.outstanding[pending.identifier]
            self._by_key.pop(pending.key, None)
            self.counters["timeout"] += 1
            return [Event("radius.timeout", {"role": "client", "key": str(pending.key),
                                             "attempts": pending.attempts}),
                    RadiusTimeout(pending.key, pending.attempts)] + self._dequeue(now)
        pending.attempts += 1
        pending.timeout = min(2 * pending.timeout, self.config.mrt)
        self.counters["retransmission"] += 1
        return [Transmit(pending.data, dst=self.config.server, port=self.config.port),
                StartTimer(key, now + pending.timeout),
                Event("radius.retransmit", {"role": "client", "key": str(pending.key),
                                            "id": pending.identifier,
                                            "attempt": pending.attempts})]

    # ---- helpers
    def _allocate_identifier(self) -> int:
        for _ in range(256):
            ident = self._next_id
            self._next_id = (self._next_id + 1) % 256
            if ident not in self.outstanding:
                return ident
        raise RuntimeError("no free RADIUS Identifier")  # guarded by the queue

    def _send_new(self, key: Hashable, eap: bytes, params: dict, now: float) -> list[Action]:
        cfg = self.config
        ident = self._allocate_identifier()
        authenticator = self.rng(16)
        attrs: list[tuple[int, bytes]] = []
        if params["user_name"]:
            attrs.append((USER_NAME, params["user_name"].encode("utf-8")[:253]))
        attrs += self._nas_attributes
        if params["calling_station"]:
            attrs.append((CALLING_STATION_ID, params["calling_station"].encode()[:253]))
        attrs += [(EAP_MESSAGE, v) for v in split_eap_message(eap)]
        if params["state"]:
            attrs.append((STATE, params["state"]))
        # the Message-Authenticator last, signed as the packet is built
        data = encode_signed_packet(ACCESS_REQUEST, ident, authenticator, attrs, cfg.secret)
        self.outstanding[ident] = _Pending(key, ident, authenticator, data, cfg.irt, 1, now)
        self._by_key[key] = ident
        return [Transmit(data, dst=cfg.server, port=cfg.port),
                StartTimer(_timer(ident), now + cfg.irt),
                Event("radius.request", {"role": "client", "key": str(key), "id": ident,
                                         "state": bool(params["state"])})]

    def _dequeue(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self._queue and len(self.outstanding) < 256:
            key, eap, params = self._queue.popleft()
            actions += self._send_new(key, eap, params, now)
        return actions

    def _drop(self, reason: str, **fields) -> list[Action]:
        self.counters[reason] += 1
        return [Event("radius.drop", {"role": "client", "reason": reason, **fields})]


def _attributes(by_type: dict[int, list[bytes]]) -> dict[str, Any]:
    """What the PAA uses of an answer's attributes (RadiusPacket.by_type)."""
    out: dict[str, Any] = {}
    get = by_type.get
    user = get(USER_NAME)
    if user:
        out["user_name"] = user[0].decode("utf-8", "replace")
    timeout = get(SESSION_TIMEOUT)
    if timeout:
        out["session_timeout"] = int.from_bytes(timeout[0], "big")
    framed = get(FRAMED_IPV6_ADDRESS)
    if framed:
        out["framed_ipv6_address"] = ipaddr.text6(framed[0])
    reply = get(REPLY_MESSAGE)
    if reply:
        out["reply_message"] = b"".join(reply).decode("utf-8", "replace")
    return out
