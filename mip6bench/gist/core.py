"""Sans-I/O GIST node (RFC 5971): Q-mode discovery, D-mode messaging, routing state.

    node = GistNode(GistConfig(peer_identity=b"fw", addresses=("2001:db8:2::1",),
                               nslps=frozenset({33})), random_bytes=os.urandom)
    actions = node.send_message(nslp_id, session_id, mri, data, now,
                                reliable=False, lifetime=None)     # NSLP -> GIST
    actions = node.receive(data, src, dst, now, q_mode=True|False, ttl=hop_limit_or_None)
    actions = node.handle_timer(key, now)                          # key from a StartTimer
    node.set_addresses(addresses)       # the node's own addresses changed (e.g. a new CoA)
    node.new_session_id() -> bytes      # 16 random bytes for an NSLP that needs one

Every call returns a list of mip6bench.sansio actions:
    Transmit(data, dst, src, port=270, meta)
        meta {"mode": "Q", "router_alert": <RAO value of the NSLP>, "hop_limit": ip_ttl}
        Q-mode: UDP to the flow's destination, with the IPv6 Router Alert option; the
        data starts with the magic number. meta {"mode": "D", "hop_limit": ip_ttl}:
        plain UDP to the peer's interface address (this testbed uses port 270 for
        D-mode too).
    StartTimer / StopTimer with keys ("gist", kind, routing key)
    Event(name, fields)            gist.* entries for the event log
    RecvMessage(nslp_id, session_id, mri, data, peer, hop_count)     to the NSLP
    SendFailed(nslp_id, session_id, mri, reason, dropped)            to the NSLP
    RoutingStateChanged(nslp_id, session_id, mri, peer, status)      to the NSLP
        status "up" (new routing state), "peer_changed" (a refresh found another
        peer: a path change), "down" (expired or discovery gave up)
    Forward(data, src, dst, hop_limit, router_alert)
        the verdict for an intercepted Q-mode message of an NSLP this node does not
        serve: send `data` (GIST hop count already decremented) on toward `dst` with
        the original source, as the kernel would have forwarded it.

Roles (one node plays all of them, per session):
- Querying node: send_message() for a downstream MRI (D flag clear) with no routing
  state sends a Query in Q-mode toward the flow destination and queues the message.
  The Query is retransmitted after T1 = 500 ms, the interval doubling each time; when
  it would exceed T2 = 64 s discovery gives up (transmissions at 0, 0.5, 1.5, 3.5, ...,
  63.5 s, failure at 127.5 s) and the queue is reported in SendFailed. A Response that
  echoes the Query-Cookie creates the routing state (peer = the Response's NLI), is
  answered by a Confirm carrying the Responder-Cookie and the first queued message,
  and the rest of the queue follows as D-mode Data. The state is refreshed by a new
  Query at `refresh_fraction` of the peer's RS validity time and expires at the full
  time unless a refresh was answered.
- Responding node: an intercepted Query for a served NSLP is answered with a Response
  that carries a Responder-Cookie and asks for a Confirm (R flag). No per-Query state
  is kept: the cookie is a generation number plus HMAC-SHA256 over the querier's peer
  identity, interface address, the MRI, NSLPID and Session-ID, keyed with a secret
  derived from a random local master secret and that generation; a cookie verifies for
  the current and the previous generation only. The Query-Cookie is deliberately not
  an input: a Confirm does not carry it (section 5.1), so a cookie bound to it could not
  be checked without per-Query state. The Query-Cookie protects the querier instead:
  a Response that does not echo it creates nothing. The routing state (peer = upstream,
  stored under the MRI with the D flag set) is created ONLY by a Confirm whose cookie
  verifies; it lives for the RS validity time this node advertised, renewed by every
  valid Confirm. NSLP data in a Query is delivered at once; data in a Confirm after the
  state is installed.
- Forwarding: an intercepted Q-mode message (Query or Q-mode Data) for an NSLP this node
  does not serve gives a Forward verdict (GIST hops - 1; dropped when that reaches 0);
  an intercepted datagram that does not decode (no magic number, say) is forwarded
  untouched, since the interception was a guess (RFC 5971 5.3.2).
- D-mode Data is accepted only from the peer of an existing routing state (the MRI's D
  flag tells which side sent it); anything else is dropped and counted.
- A different MRI (e.g. a mobile node's new care-of address as flow source) is a
  different routing state: path changes of that kind need a new handshake.

Bounds: `max_routing_states` and `max_pending_queries` (refusals counted in
`node.counters` as "routing_state_refused" / "pending_query_refused"), at most
`max_queued` messages wait per pending Query. Every dropped message is counted by
reason in `node.counters` (a collections.Counter).

Not implemented in this step: C-mode (messaging associations over TCP or TLS, the
MA-Hello exchange, Stack-Proposal negotiation), so `reliable=True` is refused with
SendFailed("c-mode not implemented"); NAT traversal; upstream discovery (a Query for an
MRI with the D flag set); Error messages are decoded and logged but never sent.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable

from ..codec import DecodeError
from ..sansio import Action, Effect, Event, StartTimer, StopTimer, Transmit
from . import wire
from .wire import CONFIRM, DATA, ERROR, GIST_PORT, MA_HELLO, QUERY, RESPONSE, Message, Mri, Nli

NATFW_NSLPID = 33              # RFC 5973 section 9 (IANA NSLP identifier)
NATFW_RAO = 68                 # RFC 5973 section 9 (IPv6 Router Alert value)
# Query retransmission (RFC 5971 section 5.3.3 and the Query retransmission timer of the
# state machine): start at T1, double each time, stop when T2 is passed.
T1 = 0.5
T2 = 64.0
COOKIE_HASH_LEN = 16


# ---------------------------------------------------------------- effects to the NSLP
@dataclass(frozen=True)
class RecvMessage(Effect):
    nslp_id: int
    session_id: bytes
    mri: Mri
    data: bytes
    peer: str                  # the sending peer's interface address (from its NLI/state)
    hop_count: int | None      # IP hops from that peer (NLI IP-TTL - received TTL)


@dataclass(frozen=True)
class SendFailed(Effect):
    nslp_id: int
    session_id: bytes
    mri: Mri
    reason: str
    dropped: int               # NSLP messages that will not be delivered


@dataclass(frozen=True)
class RoutingStateChanged(Effect):
    nslp_id: int
    session_id: bytes
    mri: Mri                   # D flag set: the peer is upstream
    peer: str | None
    status: str                # "up", "peer_changed", "down"


@dataclass(frozen=True)
class Forward(Effect):
    data: bytes
    src: str
    dst: str
    hop_limit: int | None
    router_alert: int | None


@dataclass
class GistConfig:
    peer_identity: bytes                       # this node's NLI peer identity
    addresses: Iterable[str] = ()              # own addresses; the first is the default
    nslps: frozenset[int] = frozenset()        # NSLPIDs this node serves
    rao_values: dict[int, int] = field(default_factory=lambda: {NATFW_NSLPID: NATFW_RAO})
    rs_validity_ms: int = 30_000               # advertised in our NLI
    refresh_fraction: float = 0.75             # querier refreshes at this part of the peer's time
    ip_ttl: int = 64                           # initial hop limit of what we send
    gist_hops: int = wire.DEFAULT_GIST_HOPS
    t1: float = T1
    t2: float = T2
    cookie_generation_s: float = 60.0          # responder secret rotation period
    query_cookie_len: int = 16
    max_routing_states: int = 10_000
    max_pending_queries: int = 1_000
    max_queued: int = 32                       # NSLP messages waiting per pending Query


@dataclass
class RoutingState:
    key: tuple                 # (nslp_id, session_id, mri) — mri.upstream: peer side
    peer: Nli
    peer_address: str
    expires_at: float
    refresh_at: float | None = None            # querier side only
    hop_count: int | None = None


@dataclass
class PendingQuery:
    key: tuple
    cookie: bytes
    interval: float
    sent_at: float
    queue: list[bytes] = field(default_factory=list)
    refresh: bool = False      # a refresh of existing state (state still usable)


def _timer(kind: str, key: tuple) -> tuple:
    return ("gist", kind, key)


class GistNode:
    def __init__(self, config: GistConfig, random_bytes: Callable[[int], bytes] | None = None):
        self.config = config
        self.random_bytes = random_bytes or os.urandom
        self.addresses: list[str] = [wire._norm_addr(a) for a in config.addresses]
        self._master = self.random_bytes(32)
        self.states: dict[tuple, RoutingState] = {}
        self.pending: dict[tuple, PendingQuery] = {}
        self.counters: Counter = Counter()

    # ------------------------------------------------------------ helpers
    def set_addresses(self, addresses: Iterable[str]) -> None:
        self.addresses = [wire._norm_addr(a) for a in addresses]

    def new_session_id(self) -> bytes:
        return self.random_bytes(wire.SESSION_ID_LEN)

    def _local_address(self, mri: Mri) -> str:
        """Our signalling address for a flow: its source when that is ours (an MN's
        current CoA), else the first configured address."""
        near = mri.dst if mri.upstream else mri.src
        if near in self.addresses:
            return near
        if not self.addresses:
            raise ValueError("GIST node without an address")
        return self.addresses[0]

    def _nli(self, mri: Mri) -> Nli:
        return Nli(self.config.peer_identity, self.config.ip_ttl, self.config.rs_validity_ms,
                   self._local_address(mri))

    def _d_transmit(self, msg: Message, dst: str, src: str, kind: str) -> Transmit:
        return Transmit(msg.encode(), dst, src, GIST_PORT,
                        meta={"mode": "D", "hop_limit": self.config.ip_ttl, "gist": kind})

    def _drop(self, reason: str, **fields) -> list[Action]:
        self.counters[reason] += 1
        return [Event("gist.drop", {"reason": reason, **fields})]

    def _generation_secret(self, generation: int) -> bytes:
        return hmac.digest(self._master, struct.pack("!Q", generation & (1 << 64) - 1), "sha256")

    def _generation(self, now: float) -> int:
        return int(math.floor(now / self.config.cookie_generation_s)) & 0xFFFFFFFF

    def _cookie_mac(self, generation: int, nli: Nli, mri: Mri, nslp_id: int, sid: bytes) -> bytes:
        ident = (struct.pack("!IHB", generation, nslp_id, len(nli.peer_identity))
                 + nli.peer_identity + wire._ip(nli.interface_address).packed
                 + mri.downstream().encode_value() + sid)
        return hmac.digest(self._generation_secret(generation), ident, "sha256")[:COOKIE_HASH_LEN]

    def responder_cookie(self, nli: Nli, mri: Mri, nslp_id: int, sid: bytes, now: float) -> bytes:
        gen = self._generation(now)
        return struct.pack("!I", gen) + self._cookie_mac(gen, nli, mri, nslp_id, sid)

    def _cookie_ok(self, cookie: bytes, nli: Nli, mri: Mri, nslp_id: int, sid: bytes,
                   now: float) -> bool:
        if len(cookie) != 4 + COOKIE_HASH_LEN:
            return False
        gen = struct.unpack("!I", cookie[:4])[0]
        current = self._generation(now)
        if gen not in (current, (current - 1) & 0xFFFFFFFF):
            return False
        return hmac.compare_digest(cookie[4:], self._cookie_mac(gen, nli, mri, nslp_id, sid))

    # ------------------------------------------------------------ NSLP API
    def send_message(self, nslp_id: int, session_id: bytes, mri: Mri, data: bytes, now: float,
                     *, reliable: bool = False, lifetime: float | None = None) -> list[Action]:
        """Send an NSLP message along the flow: downstream (mri.upstream False) or
        upstream (True). `lifetime` bounds how long it may wait for a handshake."""
        key = (nslp_id, bytes(session_id), mri)
        if reliable:
            self.counters["reliable_refused"] += 1
            return [SendFailed(nslp_id, key[1], mri, "c-mode not implemented", 1)]
        if len(data) % 4 or not data:
            raise ValueError("NSLP data must be a non-empty multiple of 4 bytes")
        state = self.states.get(key)
        if state is not None and state.expires_at > now:
            return [self._data(key, state, data)]
        pending = self.pending.get(key)
        if pending is not None:
            if len(pending.queue) >= self.config.max_queued:
                self.counters["queue_full"] += 1
                return [SendFailed(nslp_id, key[1], mri, "queue full", 1)]
            pending.queue.append(data)
            return []
        if mri.upstream:
            self.counters["no_upstream_state"] += 1
            return [SendFailed(nslp_id, key[1], mri, "no routing state toward upstream peer", 1)]
        if len(self.pending) >= self.config.max_pending_queries:
            self.counters["pending_query_refused"] += 1
            return [SendFailed(nslp_id, key[1], mri, "too many pending queries", 1)]
        actions = self._start_query(key, now, refresh=False)
        self.pending[key].queue.append(data)
        if lifetime is not None:
            actions.append(StartTimer(_timer("lifetime", key), now + lifetime))
        return actions

    def _data(self, key: tuple, state: RoutingState, data: bytes) -> Transmit:
        nslp_id, sid, mri = key
        msg = Message(DATA, nslp_id, self.config.gist_hops, mri=mri, session_id=sid,
                      nli=self._nli(mri), nslp_data=data)
        return self._d_transmit(msg, state.peer_address, self._local_address(mri), "Data")

    def _start_query(self, key: tuple, now: float, refresh: bool) -> list[Action]:
        cookie = self.random_bytes(self.config.query_cookie_len)
        pq = PendingQuery(key, cookie, self.config.t1, now, refresh=refresh)
        self.pending[key] = pq
        return [self._query(pq), StartTimer(_timer("retx", key), now + pq.interval),
                Event("gist.query", {"nslp": key[0], "sid": key[1].hex(), "refresh": refresh})]

    def _query(self, pq: PendingQuery) -> Transmit:
        nslp_id, sid, mri = pq.key
        msg = Message(QUERY, nslp_id, self.config.gist_hops, r_flag=True, q_mode=True,
                      mri=mri, session_id=sid, nli=self._nli(mri), query_cookie=pq.cookie)
        return Transmit(msg.encode(), mri.dst, self._local_address(mri), GIST_PORT,
                        meta={"mode": "Q", "router_alert": self.config.rao_values.get(nslp_id),
                              "hop_limit": self.config.ip_ttl, "gist": "Query"})

    # ------------------------------------------------------------ timers
    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        if not (isinstance(key, tuple) and len(key) == 3 and key[0] == "gist"):
            return []
        _, kind, rkey = key
        if kind == "retx":
            return self._retransmit(rkey, now)
        if kind == "refresh":
            state = self.states.get(rkey)
            if state is None or rkey in self.pending:
                return []
            return self._start_query(rkey, now, refresh=True)
        if kind == "expire":
            state = self.states.get(rkey)
            if state is None or state.expires_at > now:
                return []
            return self._remove_state(rkey, "expired")
        if kind == "lifetime":
            pq = self.pending.get(rkey)
            if pq is None or pq.refresh or not pq.queue:
                return []
            dropped = len(pq.queue)
            pq.queue.clear()
            self.counters["lifetime_expired"] += dropped
            return [SendFailed(rkey[0], rkey[1], rkey[2], "lifetime expired", dropped)]
        return []

    def _retransmit(self, rkey: tuple, now: float) -> list[Action]:
        pq = self.pending.get(rkey)
        if pq is None:
            return []
        if pq.interval * 2 > self.config.t2:
            del self.pending[rkey]
            self.counters["query_gave_up"] += 1
            actions: list[Action] = [StopTimer(_timer("lifetime", rkey)),
                                     Event("gist.query_failed", {"nslp": rkey[0],
                                                                 "sid": rkey[1].hex()})]
            if pq.queue:
                actions.append(SendFailed(rkey[0], rkey[1], rkey[2], "no response to query",
                                          len(pq.queue)))
            if rkey in self.states:
                actions += self._remove_state(rkey, "refresh failed")
            return actions
        pq.interval *= 2
        pq.sent_at = now
        return [self._query(pq), StartTimer(_timer("retx", rkey), now + pq.interval)]

    def _remove_state(self, rkey: tuple, why: str) -> list[Action]:
        state = self.states.pop(rkey)
        self.counters[f"state_{why.replace(' ', '_')}"] += 1
        return [StopTimer(_timer("refresh", rkey)), StopTimer(_timer("expire", rkey)),
                RoutingStateChanged(rkey[0], rkey[1], rkey[2], state.peer_address, "down"),
                Event("gist.state_down", {"nslp": rkey[0], "sid": rkey[1].hex(),
                                          "peer": state.peer_address, "why": why})]

    # ------------------------------------------------------------ receive path
    def receive(self, data: bytes, src: str, dst: str, now: float, *, q_mode: bool,
                ttl: int | None = None) -> list[Action]:
        """A datagram for UDP port 270: `q_mode` True when it was intercepted by Router
        Alert (or arrived with the magic number), `ttl` the received IP hop limit."""
        try:
            msg = wire.decode_message(data, q_mode=q_mode)
        except DecodeError as err:
            if q_mode and dst not in self.addresses:
                # Intercepted, but not GIST (no magic number) or not understood: it goes
                # on untouched, as it would through a router without GIST (5.3.2).
                self.counters["forwarded_undecodable"] += 1
                return [Forward(bytes(data), src, dst, None if ttl is None else ttl - 1,
                                None)]
            return self._drop("malformed", detail=err.reason, src=src)
        handler = {QUERY: self._on_query, RESPONSE: self._on_response,
                   CONFIRM: self._on_confirm, DATA: self._on_data,
                   ERROR: self._on_error, MA_HELLO: self._on_ma_hello}[msg.type]
        return handler(msg, data, src, dst, now, ttl)

    def _hop_count(self, nli: Nli | None, ttl: int | None) -> int | None:
        if nli is None or ttl is None or ttl > nli.ip_ttl:
            return None
        return nli.ip_ttl - ttl

    def _intercept(self, msg: Message, data: bytes, src: str, dst: str,
                   ttl: int | None) -> list[Action] | None:
        """Forward verdict for Q-mode traffic of NSLPs we do not serve (None: ours)."""
        if msg.nslp_id in self.config.nslps:
            return None
        if dst in self.addresses:
            return self._drop("unknown_nslpid", nslp=msg.nslp_id)
        if msg.hops <= 1:
            return self._drop("hop_limit", nslp=msg.nslp_id)
        self.counters["forwarded"] += 1
        return [Forward(wire.with_hops(data, msg.hops - 1), src, dst,
                        None if ttl is None else ttl - 1,
                        self.config.rao_values.get(msg.nslp_id))]

    def _on_query(self, msg, data, src, dst, now, ttl) -> list[Action]:
        verdict = self._intercept(msg, data, src, dst, ttl)
        if verdict is not None:
            return verdict
        if msg.mri.upstream:
            return self._drop("upstream_query")
        nli = msg.nli
        rkey = (msg.nslp_id, msg.session_id, msg.mri.inverted())
        cookie = self.responder_cookie(nli, msg.mri, msg.nslp_id, msg.session_id, now)
        resp = Message(RESPONSE, msg.nslp_id, self.config.gist_hops, r_flag=True,
                       mri=msg.mri.inverted(), session_id=msg.session_id,
                       nli=self._nli(rkey[2]), query_cookie=msg.query_cookie,
                       responder_cookie=cookie)
        actions: list[Action] = [
            self._d_transmit(resp, nli.interface_address, self._local_address(rkey[2]),
                             "Response"),
            Event("gist.response", {"nslp": msg.nslp_id, "sid": msg.session_id.hex(),
                                    "querier": nli.interface_address})]
        if msg.nslp_data is not None:
            actions.append(RecvMessage(msg.nslp_id, msg.session_id, msg.mri, msg.nslp_data,
                                       nli.interface_address, self._hop_count(nli, ttl)))
        return actions

    def _on_response(self, msg, data, src, dst, now, ttl) -> list[Action]:
        key = (msg.nslp_id, msg.session_id, msg.mri.downstream())
        pq = self.pending.get(key)
        if pq is None:
            return self._drop("unexpected_response", src=src)
        if not hmac.compare_digest(msg.query_cookie, pq.cookie):
            return self._drop("bad_query_cookie", src=src)
        old = self.states.get(key)
        if old is None and len(self.states) >= self.config.max_routing_states:
            return self._drop("routing_state_refused", src=src)
        del self.pending[key]
        nli = msg.nli
        validity = nli.rs_validity_ms / 1000.0
        state = RoutingState(key, nli, nli.interface_address, now + validity,
                             now + validity * self.config.refresh_fraction,
                             self._hop_count(nli, ttl))
        self.states[key] = state
        actions: list[Action] = [StopTimer(_timer("retx", key)),
                                 StopTimer(_timer("lifetime", key)),
                                 StartTimer(_timer("refresh", key), state.refresh_at),
                                 StartTimer(_timer("expire", key), state.expires_at)]
        queue = list(pq.queue)
        if msg.r_flag:
            first = queue.pop(0) if queue else None
            confirm = Message(CONFIRM, key[0], self.config.gist_hops, mri=key[2],
                              session_id=key[1], nli=self._nli(key[2]),
                              responder_cookie=msg.responder_cookie, nslp_data=first)
            actions.append(self._d_transmit(confirm, state.peer_address,
                                            self._local_address(key[2]), "Confirm"))
        actions += [self._data(key, state, item) for item in queue]
        return actions + self._installed(state, old, msg, "downstream")

    def _installed(self, state: RoutingState, old: RoutingState | None, msg: Message,
                   side: str) -> list[Action]:
        """What a new or renewed routing state tells the NSLP and the event log."""
        nslp_id, sid, mri = state.key
        actions: list[Action] = []
        if old is None:
            actions.append(RoutingStateChanged(nslp_id, sid, mri, state.peer_address, "up"))
        elif old.peer != state.peer:
            actions.append(RoutingStateChanged(nslp_id, sid, mri, state.peer_address,
                                               "peer_changed"))
        actions.append(Event("gist.state_up", {"nslp": nslp_id, "sid": sid.hex(),
                                               "peer": state.peer_address, "side": side,
                                               "refresh": old is not None}))
        if msg.nslp_data is not None:
            actions.append(RecvMessage(nslp_id, sid, msg.mri, msg.nslp_data,
                                       state.peer_address, state.hop_count))
        return actions

    def _on_confirm(self, msg, data, src, dst, now, ttl) -> list[Action]:
        if msg.nslp_id not in self.config.nslps:
            return self._drop("unknown_nslpid", nslp=msg.nslp_id)
        if msg.mri.upstream:
            return self._drop("upstream_confirm")
        cookie = msg.responder_cookie
        if cookie is None or not self._cookie_ok(cookie, msg.nli, msg.mri, msg.nslp_id,
                                                 msg.session_id, now):
            return self._drop("bad_responder_cookie", src=src)
        key = (msg.nslp_id, msg.session_id, msg.mri.inverted())
        old = self.states.get(key)
        if old is None and len(self.states) >= self.config.max_routing_states:
            return self._drop("routing_state_refused", src=src)
        nli = msg.nli
        state = RoutingState(key, nli, nli.interface_address,
                             now + self.config.rs_validity_ms / 1000.0,
                             hop_count=self._hop_count(nli, ttl))
        self.states[key] = state
        return [StartTimer(_timer("expire", key), state.expires_at),
                *self._installed(state, old, msg, "upstream")]

    def _on_data(self, msg, data, src, dst, now, ttl) -> list[Action]:
        if msg.q_mode:
            verdict = self._intercept(msg, data, src, dst, ttl)
            if verdict is not None:
                return verdict
            peer = msg.nli.interface_address if msg.nli is not None else src
            return [RecvMessage(msg.nslp_id, msg.session_id, msg.mri, msg.nslp_data, peer,
                                self._hop_count(msg.nli, ttl))]
        if msg.nslp_id not in self.config.nslps:
            return self._drop("unknown_nslpid", nslp=msg.nslp_id)
        # The sender is on the side the message came from: against its direction.
        key = (msg.nslp_id, msg.session_id, msg.mri.inverted())
        state = self.states.get(key)
        if state is None or state.expires_at <= now:
            return self._drop("no_routing_state", src=src)
        if msg.nli is not None and msg.nli.peer_identity != state.peer.peer_identity:
            return self._drop("peer_mismatch", src=src)
        if msg.nli is None and src != state.peer_address:
            return self._drop("peer_mismatch", src=src)
        return [RecvMessage(msg.nslp_id, msg.session_id, msg.mri, msg.nslp_data,
                            state.peer_address, state.hop_count)]

    def _on_error(self, msg, data, src, dst, now, ttl) -> list[Action]:
        err = msg.error
        self.counters["error_received"] += 1
        return [Event("gist.error_received", {"src": src, "class": err.error_class,
                                              "code": err.code, "subcode": err.subcode,
                                              "comment": err.comment})]

    def _on_ma_hello(self, msg, data, src, dst, now, ttl) -> list[Action]:
        return self._drop("c_mode_unsupported", src=src)
