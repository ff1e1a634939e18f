"""Sans-I/O GIST node (RFC 5971): Q-mode discovery, D-mode and C-mode messaging,
routing state, messaging associations.

    node = GistNode(GistConfig(peer_identity=b"fw", addresses=("2001:db8:2::1",),
                               nslps=frozenset({33})), random_bytes=os.urandom)
    actions = node.send_message(nslp_id, session_id, mri, data, now,
                                reliable=False, lifetime=None,
                                discover=False)                    # NSLP -> GIST
    actions = node.receive(data, src, dst, now, q_mode=False, ttl=None, c_mode=False)
    actions = node.handle_timer(key, now)                          # key from a StartTimer
    actions = node.ma_connected(peer, now)      # the runtime's MA to `peer` is up (an
                                                # outgoing one connected, or one accepted)
    actions = node.ma_failed(peer, reason, now) # it could not connect, or broke
    actions = node.ma_closed(peer, now)         # the peer closed it
    node.set_addresses(addresses)       # the node's own addresses changed (e.g. a new CoA)
    node.new_session_id() -> bytes      # 16 random bytes for an NSLP that needs one

Every call returns a list of mip6bench.sansio actions:
    GistTransmit(data, dst, src, port=270, mode=..., kind=<message name>, ...)
        mode "Q" (router_alert=<RAO value of the NSLP>, hop_limit=ip_ttl): UDP to the
        flow's destination, with the IPv6 Router Alert option; the data starts with the
        magic number. mode "D" (hop_limit=ip_ttl): plain UDP to the peer's interface
        address (this testbed uses port 270 for D-mode too). mode "C" (peer=<peer
        address>): one GIST message (no magic number) to write on the messaging
        association (MA) with that peer; `port` is the peer's MA port, `src` our end.
    OpenMa(peer, port, src)        open a TCP connection to [peer]:port from src (the MA)
    CloseMa(peer, reason)          close the MA with peer
    StartTimer / StopTimer with keys ("gist", kind, routing key or MA peer)
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

The runtime frames C-mode itself: a message on an MA is the common header and the
number of 32-bit words its length field gives (section 5.4; no magic number), see
wire.c_mode_frame_length; each whole message goes to receive(..., c_mode=True) with
`src` the MA's peer address.

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
  state is installed. A retransmitted Query (the same bytes from the same IP source to
  the same destination) is answered with the Response the first one got, without a
  decode (counted "query_repeats_answered"), while the cookie generation, our addresses,
  the settings a Response depends on and the NSLP being served are unchanged: the
  answer is a function of those and the bytes. At most `query_answer_cache` Responses
  are kept (the oldest go first); a Query that carries NSLP data is not kept.
- Forwarding: an intercepted Q-mode message (Query or Q-mode Data) for an NSLP this node
  does not serve gives a Forward verdict (GIST hops - 1; dropped when that reaches 0);
  an intercepted datagram that does not decode (no magic number, say) is forwarded
  untouched, since the interception was a guess (RFC 5971 5.3.2).
- D-mode Data is accepted only from the peer of an existing routing state (the MRI's D
  flag tells which side sent it); anything else is dropped and counted.
- A different MRI (e.g. a mobile node's new care-of address as flow source) is a
  different routing state: path changes of that kind need a new handshake.
- Upstream discovery (RFC 5971 sections 5.8.1.1 and 4.3.1: an NSLP may ask GIST to find
  the upstream peer of a flow, e.g. the NATFW NSLP's EXT from a data receiver): with
  send_message(..., discover=True) an upstream MRI (D flag set) without routing state
  starts a Query for that MRI, D flag set, sent in Q-mode toward the flow's SOURCE
  (the IP destination is mri.src, the IP source our end, mri.dst), with the NSLP's
  Router Alert value; the first GIST node of the NSLP on the way back toward the
  source intercepts it. From there it is the same handshake with the roles of the
  directions swapped: the responder answers with a Response whose MRI has the D flag
  cleared (RFC 5971 5.1: the Response's MRI is the Query's inverted) and keeps no state;
  the querier's state (key: the MRI with D set, peer upstream) comes from the Response
  that echoes its Query-Cookie; the Confirm repeats the Query's MRI (D set); the
  responder's state (key: D clear, peer downstream) only from a Confirm whose cookie
  verifies. The responder cookie covers the MRI as sent, D flag included, so a cookie
  from a downstream handshake is no good for the upstream one of the same flow and vice
  versa. Retransmission, refresh (a new upstream Query), expiry and the bounds are those
  of the downstream querier. Without discover=True an upstream message without state
  fails as before ("no routing state toward upstream peer"): a responder never starts a
  discovery just to answer.

C-mode (messaging associations, RFC 5971 sections 4.4.3, 5.7, A.3.4, A.3.5):
- Which messages: a message goes in C-mode when the NSLP asks for reliability
  (send_message(..., reliable=True)) or when its D-mode Data would be longer than
  `d_mode_max` = 512 bytes. RFC 5971 section 4.3.3: a message plus an allowance of 64
  bytes for the IP and transport headers must not exceed the least of the path MTU to
  the peer (if known), the first-hop MTU and 576 bytes, for IPv4 and IPv6 alike, else
  it MUST go in C-mode; this node knows no path MTU, so 576 - 64. (A D-mode Confirm
  that would pass it leaves its NSLP message to a following Data.) Everything else
  stays in D-mode as before, and a Q/D-only exchange is byte for byte what it was
  without C-mode.
- Stack negotiation: only a Query for which C-mode is wanted (such a message is
  queued) carries a Stack-Proposal (one profile: Forwards-TCP, MA-Protocol-ID 1) and
  Stack-Configuration-Data (our MA-Hold-Time, a Forwards-TCP entry without data). A
  responder with `ma_port` set answers it with the same Stack-Proposal and SCD whose
  Forwards-TCP entry carries its listening port (16 bits; the testbed listens on TCP
  270, the GIST port, a local choice: RFC 5971 leaves the port to the responder).
  C-mode is on when `ma_port` is set, i.e. when the runtime has a listening MA transport
  (GistMaPlug sets it); without one (the default, None) reliable or oversized messages
  fail at once with "c-mode not enabled" and no Response offers a port nobody listens
  on. A responder without C-mode answers a Stack-Proposal without one, and the querier
  fails the C-mode messages ("peer offers no messaging association"); the rest of its
  queue goes in D-mode.
- MA setup: the querying node opens the MA (OpenMa) to the Response's NLI interface
  address and the offered port, or reuses an MA it already has with that address. The
  Confirm goes over the MA (C-mode) with the Response's Stack-Proposal echoed (the
  responder checks it against what it offers, so a downgrade in transit is seen) and
  our SCD, and the queued messages follow it over the MA in order. The responder binds
  its routing state to the MA the Confirm arrived on.
- An MA we opened from an address we no longer have (a mobile node's old care-of
  address, after set_addresses) is not reused: it is closed ("local address gone") and
  a new one is opened from the current address.
- A routing state that has carried C-mode traffic keeps its MA: later C-mode messages
  of the session go over it, and if it was closed meanwhile the querier reopens it
  (the responder cannot: it has no port of ours; an upstream C-mode message without an
  MA fails with "no messaging association toward upstream peer"). Messages for an MA
  that is still being set up wait in its queue (`max_ma_queue`).
- MA states (Event gist.ma, field status): "establishing" (OpenMa sent, waiting for
  ma_connected, at most `ma_connect_timeout` s), "up" (connected, some routing state
  uses it), "idle" (connected, no routing state uses it).
- Keepalive and hold time: while an MA is up this node sends an MA-Hello whenever it
  has sent nothing for `hello_fraction` of the peer's MA-Hold-Time (from the peer's
  SCD; our own when unknown): NSLPID 0, R clear, Hello-ID 0. An idle MA on which
  nothing was sent or received for our MA-Hold-Time (`ma_hold_time_ms`) is closed
  (CloseMa). An up MA on which nothing was received for our hold time gets an MA-Hello
  request (R set, a non-zero Hello-ID from a sequence with a random start); if still
  nothing arrives within another hold time the MA is declared failed. A request is
  answered with its Hello-ID and R clear; a request with Hello-ID 0 is dropped and
  counted (RFC 5971 5.2.2 wants an Object Value Error; this node sends only the Error
  below).
- MA failure (ma_failed, ma_closed, connect timeout, silent peer): every message still
  queued for the MA is reported in SendFailed (per session, reason "messaging
  association failed: ..."); a routing state whose Confirm had not been sent yet is
  removed ("down"), since the responder never saw the Confirm; other routing states
  lose their MA and keep working in D-mode.

Bounds: `max_routing_states`, `max_pending_queries` and `max_mas` (refusals counted in
`node.counters` as "routing_state_refused" / "pending_query_refused" /
"ma_refused"), at most `max_queued` messages wait per pending Query and `max_ma_queue`
per MA being set up. An MA accepted from a stranger that never sends a valid Confirm is
idle and is closed after our hold time. Every dropped message is counted by reason in
`node.counters` (a collections.Counter).

Not implemented: TLS MAs (MA-Protocol-ID 2) and MA authentication (the peer of an MA is
its address); a Response over an existing MA (Responses always go in D-mode; the
querier reuses MAs); NAT traversal;
Errors: a node sends one Error, "No Routing State" (Protocol-Error, code 5), to the
sender of D-mode or C-mode Data for which it holds no routing state (its IP source, or
the MA it came on), at most `error_rate` a second (burst `error_burst`; the rest are
counted as "error_rate_limited"). A querier that receives it from the peer of its
routing state drops the state and restarts the handshake (RFC 5971 Querying-SM, rule
3: the Confirm was lost or the peer restarted). Other Errors are decoded and logged.
"""
from __future__ import annotations

import hmac
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Hashable, Iterable

from ..codec import DecodeError
from ..sansio import Action, Effect, Event, StartTimer, StopTimer, Transmit
from . import wire
from .wire import (CONFIRM, DATA, ERROR, GIST_PORT, MA_HELLO, MA_PROTOCOL_TCP, QUERY, RESPONSE,
                   Message, Mri, Nli, StackConfigData, StackProposal)

NATFW_NSLPID = 33              # RFC 5973 section 9 (IANA NSLP identifier)
NATFW_RAO = 68                 # RFC 5973 section 9 (IPv6 Router Alert value)
# Query retransmission (RFC 5971 section 5.3.3 and the Query retransmission timer of the
# state machine): start at T1, double each time, stop when T2 is passed.
T1 = 0.5
T2 = 64.0
COOKIE_HASH_LEN = 16
# The largest GIST message sent in D-mode (RFC 5971 4.3.3): 576 bytes, less the 64-byte
# allowance for the IP and UDP headers.
D_MODE_MAX = 576 - 64
# The one stack profile this node proposes and accepts: Forwards-TCP alone.
TCP_PROFILE = (MA_PROTOCOL_TCP,)
TCP_PROPOSAL = StackProposal((TCP_PROFILE,))


# ---------------------------------------------------------------- effects to the NSLP

@dataclass(frozen=True)
class GistTransmit(Transmit):
    """A GIST datagram or MA message; `mode` "Q", "D" or "C" says how it is sent (see
    the module docstring), `kind` names the message for logs and tests."""

    mode: str = field(default="D", kw_only=True)
    router_alert: int | None = field(default=None, kw_only=True)
    hop_limit: int | None = field(default=None, kw_only=True)
    peer: str | None = field(default=None, kw_only=True)
    kind: str | None = field(default=None, kw_only=True)

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


# ---------------------------------------------------------------- effects to the runtime
@dataclass(frozen=True)
class OpenMa(Effect):
    """Open a messaging association: TCP from `src` to [peer]:port. The runtime answers
    with node.ma_connected(peer, now) or node.ma_failed(peer, reason, now)."""
    peer: str
    port: int
    src: str | None


@dataclass(frozen=True)
class CloseMa(Effect):
    """Close the messaging association with `peer` (no answer expected)."""
    peer: str
    reason: str


@dataclass
class GistConfig:
    peer_identity: bytes                       # this node's NLI peer identity
    addresses: Iterable[str] = ()              # own addresses; the first is the default
    nslps: frozenset[int] = frozenset()        # NSLPIDs this node serves
    # NSLPIDs served for upstream discovery only: downstream Q-mode messages of these are
    # forwarded as by a node that does not serve them (an edge firewall that only
    # answers EXT, see _intercept)
    upstream_only: frozenset[int] = frozenset()
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
    # C-mode
    ma_port: int | None = None                 # our Forwards-TCP listening port; None: no
                                               # C-mode (runtime/gist_ma.GistMaPlug sets it)
    ma_hold_time_ms: int = 60_000              # our MA-Hold-Time, advertised in our SCD
    hello_fraction: float = 0.5                # MA-Hello after this part of the peer's hold time
    ma_connect_timeout: float = 5.0            # an MA not connected by then has failed
    d_mode_max: int = D_MODE_MAX               # longer messages go in C-mode
    max_mas: int = 256                         # messaging associations at once
    max_ma_queue: int = 64                     # messages waiting for an MA being set up
    # Error messages we send (a token bucket: a stranger can make us answer, not flood)
    error_rate: float = 20.0                   # Errors a second, sustained
    error_burst: int = 20
    # Responses kept for retransmitted Queries (see receive): at most this many; 0: none
    query_answer_cache: int = 4096


@dataclass
class RoutingState:
    key: tuple                 # (nslp_id, session_id, mri) — mri.upstream: peer side
    peer: Nli
    peer_address: str
    expires_at: float
    refresh_at: float | None = None            # querier side only
    hop_count: int | None = None
    ma_port: int | None = None                 # the peer's Forwards-TCP port (querier side)
    ma: str | None = None                      # peer of the MA this state uses


@dataclass
class PendingQuery:
    key: tuple
    cookie: bytes
    interval: float
    sent_at: float
    queue: list[tuple[bytes, bool]] = field(default_factory=list)   # (data, C-mode)
    refresh: bool = False      # a refresh of existing state (state still usable)
    want_ma: bool = False      # the Query carries a Stack-Proposal


@dataclass
class QueuedMessage:
    data: bytes                # the encoded GIST message
    kind: str                  # "Confirm", "Data", ...
    rkey: tuple | None         # the routing key it belongs to (for SendFailed)
    nslp_messages: int         # NSLP messages it carries (0 or 1)
    new_state: bool = False    # a Confirm that completes a new routing state


@dataclass
class MessagingAssociation:
    peer: str                  # the peer's address (the TCP remote address)
    local: str | None
    port: int                  # the peer's port (ours for an accepted MA: not used)
    outbound: bool
    connected: bool = False
    status: str = "establishing"
    peer_hold: float | None = None             # the peer's MA-Hold-Time, seconds
    last_rx: float = 0.0
    last_tx: float = 0.0
    probing: bool = False                      # an R-flag MA-Hello awaits any answer
    queue: list[QueuedMessage] = field(default_factory=list)
    users: set = field(default_factory=set)    # routing keys bound to this MA


@dataclass(frozen=True)
class _QueryAnswer:
    """The Response this node sent for a Query, kept to answer its retransmissions."""
    generation: int            # of the Responder-Cookie in it
    settings: tuple            # GistNode._answer_settings() when it was made
    nslp_id: int
    upstream: bool             # the Query's D flag
    transmit: Transmit
    event: Event


def _timer(kind: str, key) -> tuple:
    return ("gist", kind, key)


MAX_FORMER_ADDRESSES = 64   # lost addresses remembered (an MN's earlier CoAs)


class GistNode:
    def __init__(self, config: GistConfig, random_bytes: Callable[[int], bytes] | None = None):
        self.config = config
        self.random_bytes = random_bytes or os.urandom
        self.addresses: list[str] = [wire._norm_addr(a) for a in config.addresses]
        self._former: dict[str, None] = {}     # addresses we had and lost, oldest first
        self._master = self.random_bytes(32)
        self.states: dict[tuple, RoutingState] = {}
        self.pending: dict[tuple, PendingQuery] = {}
        self.mas: dict[str, MessagingAssociation] = {}
        self._hello_seq = struct.unpack("!I", self.random_bytes(4))[0]
        self.counters: Counter = Counter()
        self._error_tokens = float(config.error_burst)
        self._error_refill_at: float | None = None
        # (Query bytes, IP source, IP destination) -> _QueryAnswer: see receive
        self._query_answers: dict[tuple, _QueryAnswer] = {}
        self._nlis: dict[str, Nli] = {}        # our NLI per local address (_nli)

    # ------------------------------------------------------------ helpers
    def set_addresses(self, addresses: Iterable[str]) -> None:
        """Our addresses from now on (an MN's current CoA and its HoA). Addresses we had
        and lost are remembered (the last MAX_FORMER_ADDRESSES): routing state whose
        near end is one of them is not refreshed any more (see handle_timer)."""
        new = [wire._norm_addr(a) for a in addresses]
        for gone in self.addresses:
            if gone not in new:
                self._former.pop(gone, None)
                self._former[gone] = None
        for back in new:
            self._former.pop(back, None)
        while len(self._former) > MAX_FORMER_ADDRESSES:
            self._former.pop(next(iter(self._former)))
        self.addresses = new
        self._query_answers.clear()            # their NLI names a local address

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
        local = self._local_address(mri)
        c = self.config
        nli = self._nlis.get(local)
        if nli is None or (nli.peer_identity, nli.ip_ttl, nli.rs_validity_ms) != (
                c.peer_identity, c.ip_ttl, c.rs_validity_ms):
            # one object per local address (frozen; its encoding is kept with it)
            if len(self._nlis) >= 2 * MAX_FORMER_ADDRESSES:
                self._nlis.clear()
            nli = self._nlis[local] = Nli(c.peer_identity, c.ip_ttl, c.rs_validity_ms, local)
        return nli

    def _d_transmit(self, msg: Message, dst: str, src: str, kind: str) -> Transmit:
        return GistTransmit(msg.encode(), dst, src, GIST_PORT, mode="D",
                            hop_limit=self.config.ip_ttl, kind=kind)

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
                 + mri.encode_value() + sid)
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
                     *, reliable: bool = False, lifetime: float | None = None,
                     discover: bool = False, supersede: bool = False) -> list[Action]:
        """Send an NSLP message along the flow: downstream (mri.upstream False) or
        upstream (True). `lifetime` bounds how long it may wait for a handshake.
        `reliable` (or a message too long for D-mode) sends it in C-mode. `discover`:
        an upstream message without routing state starts upstream discovery (a Query
        toward the flow's source) instead of failing. `supersede`: the message makes
        the NSLP's earlier ones for this session and flow obsolete (a NATFW
        retransmission, refresh or teardown carries the next MSN): those still queued
        for the handshake are dropped (counted "superseded"), so a handshake that took
        several retransmission intervals delivers one message, not each of them."""
        key = (nslp_id, bytes(session_id), mri)
        if len(data) % 4 or not data:
            raise ValueError("NSLP data must be a non-empty multiple of 4 bytes")
        if len(data) // 4 > wire.MAX_OBJECT_WORDS:
            raise ValueError("NSLP data longer than 16380 bytes")
        msg = self._data_message(key, data)
        encoded = msg.encode()
        c_mode = reliable or len(encoded) > self.config.d_mode_max
        if c_mode and self.config.ma_port is None:
            self.counters["c_mode_disabled"] += 1
            return [SendFailed(nslp_id, key[1], mri, "c-mode not enabled", 1)]
        pre: list[Action] = []
        state = self.states.get(key)
        if state is not None and state.expires_at > now:
            if not c_mode:
                return [GistTransmit(encoded, state.peer_address, self._local_address(mri),
                                     GIST_PORT, mode="D", hop_limit=self.config.ip_ttl,
                                     kind="Data")]
            ma, stale = self._reusable_ma(state.peer_address)
            if ma is not None:
                return self._bind(state, ma) + self._ma_send(
                    ma, QueuedMessage(encoded, "Data", key, 1), now)
            if state.ma_port is not None:
                return stale + self._open_ma(state.peer_address, state.ma_port,
                                             self._local_address(mri), now,
                                             [QueuedMessage(encoded, "Data", key, 1)], state)
            if mri.upstream:
                self.counters["no_upstream_ma"] += 1
                return stale + [SendFailed(nslp_id, key[1], mri,
                                           "no messaging association toward upstream peer", 1)]
            # the peer's MA port is unknown (a D-mode handshake): ask it in a new Query
            pre = stale
        pending = self.pending.get(key)
        if pending is not None:
            if supersede and pending.queue:
                self.counters["superseded"] += len(pending.queue)
                pending.queue.clear()
            if len(pending.queue) >= self.config.max_queued:
                self.counters["queue_full"] += 1
                return pre + [SendFailed(nslp_id, key[1], mri, "queue full", 1)]
            pending.queue.append((data, c_mode))
            if c_mode and not pending.want_ma:
                # The Query out there asks for no MA: ask again, with a Stack-Proposal
                # and a new cookie (a Response to the old Query is then ignored).
                pending.want_ma = True
                pending.cookie = self.random_bytes(self.config.query_cookie_len)
                return pre + [self._query(pending)]
            return pre
        if mri.upstream and not discover:
            self.counters["no_upstream_state"] += 1
            return pre + [SendFailed(nslp_id, key[1], mri,
                                     "no routing state toward upstream peer", 1)]
        if len(self.pending) >= self.config.max_pending_queries:
            self.counters["pending_query_refused"] += 1
            return pre + [SendFailed(nslp_id, key[1], mri, "too many pending queries", 1)]
        refresh = state is not None and state.expires_at > now
        actions = self._start_query(key, now, refresh=refresh, want_ma=c_mode)
        self.pending[key].queue.append((data, c_mode))
        if lifetime is not None:
            actions.append(StartTimer(_timer("lifetime", key), now + lifetime))
        return pre + actions

    def _data_message(self, key: tuple, data: bytes) -> Message:
        nslp_id, sid, mri = key
        return Message(DATA, nslp_id, self.config.gist_hops, mri=mri, session_id=sid,
                       nli=self._nli(mri), nslp_data=data)

    def _data(self, key: tuple, state: RoutingState, data: bytes) -> Transmit:
        return self._d_transmit(self._data_message(key, data), state.peer_address,
                                self._local_address(key[2]), "Data")

    def _start_query(self, key: tuple, now: float, refresh: bool,
                     want_ma: bool = False) -> list[Action]:
        cookie = self.random_bytes(self.config.query_cookie_len)
        pq = PendingQuery(key, cookie, self.config.t1, now, refresh=refresh, want_ma=want_ma)
        self.pending[key] = pq
        return [self._query(pq), StartTimer(_timer("retx", key), now + pq.interval),
                Event("gist.query", {"nslp": key[0], "sid": key[1].hex(), "refresh": refresh,
                                     "upstream": key[2].upstream})]

    def _our_scd(self, port: int | None) -> StackConfigData:
        port_data = b"" if port is None else wire.forwards_tcp_option(port)
        return StackConfigData(self.config.ma_hold_time_ms,
                               (wire.MaProtocolOption(MA_PROTOCOL_TCP, 1, port_data),))

    def _query(self, pq: PendingQuery) -> Transmit:
        nslp_id, sid, mri = pq.key
        sp = scd = None
        if pq.want_ma:
            sp, scd = TCP_PROPOSAL, self._our_scd(None)
        msg = Message(QUERY, nslp_id, self.config.gist_hops, r_flag=True, q_mode=True,
                      mri=mri, session_id=sid, nli=self._nli(mri), query_cookie=pq.cookie,
                      stack_proposal=sp, stack_config=scd)
        # upstream discovery: toward the flow's source (RFC 5971 5.8.1)
        return GistTransmit(msg.encode(), mri.src if mri.upstream else mri.dst,
                            self._local_address(mri), GIST_PORT, mode="Q",
                            router_alert=self.config.rao_values.get(nslp_id),
                            hop_limit=self.config.ip_ttl, kind="Query")

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
            mri = rkey[2]
            near = mri.dst if mri.upstream else mri.src
            if near in self._former:
                # Our end of the flow is an address we no longer have (an MN that moved
                # on): the refresh Query would carry another of our addresses in its NLI
                # and point the peer's state for this flow there, so that a later answer
                # for this flow, once we are back on that address, goes astray. Let the
                # state run out instead; it still serves if the address comes back
                # before that, and a new handshake follows after.
                self.counters["refresh_skipped_address_gone"] += 1
                return [Event("gist.refresh_skipped", {"nslp": rkey[0], "sid": rkey[1].hex(),
                                                       "address": near})]
            return self._start_query(rkey, now, refresh=True, want_ma=state.ma is not None)
        if kind == "expire":
            state = self.states.get(rkey)
            if state is None or state.expires_at > now:
                return []
            return self._remove_state(rkey, "expired")
        if kind == "lifetime":
            pq = self.pending.get(rkey)
            if pq is None or not pq.queue:
                return []
            dropped = len(pq.queue)
            pq.queue.clear()
            self.counters["lifetime_expired"] += dropped
            return [SendFailed(rkey[0], rkey[1], rkey[2], "lifetime expired", dropped)]
        if kind == "ma_connect":
            ma = self.mas.get(rkey)
            if ma is None or ma.connected:
                return []
            self.counters["ma_connect_timeout"] += 1
            return [CloseMa(rkey, "connect timeout")] + self._ma_down(rkey, "connect timeout")
        if kind == "ma_hold":
            return self._ma_hold(rkey, now)
        if kind == "ma_hello":
            return self._ma_hello(rkey, now)
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
        actions: list[Action] = [
            StopTimer(_timer("refresh", rkey)), StopTimer(_timer("expire", rkey)),
            RoutingStateChanged(rkey[0], rkey[1], rkey[2], state.peer_address, "down"),
            Event("gist.state_down", {"nslp": rkey[0], "sid": rkey[1].hex(),
                                      "peer": state.peer_address, "why": why})]
        ma = self.mas.get(state.ma) if state.ma is not None else None
        if ma is not None:
            ma.users.discard(rkey)
            actions += self._ma_status(ma)
        return actions

    # ------------------------------------------------------------ messaging associations
    def _ma_status(self, ma: MessagingAssociation) -> list[Action]:
        """Recompute an MA's status; an Event when it changed (and hellos when it is up)."""
        status = "establishing" if not ma.connected else ("up" if ma.users else "idle")
        if status == ma.status:
            return []
        ma.status = status
        actions: list[Action] = [Event("gist.ma", {"peer": ma.peer, "status": status})]
        if status == "up":
            actions.append(StartTimer(_timer("ma_hello", ma.peer),
                                      ma.last_tx + self._hello_interval(ma)))
        return actions

    def _hello_interval(self, ma: MessagingAssociation) -> float:
        hold = ma.peer_hold if ma.peer_hold else self.config.ma_hold_time_ms / 1000.0
        return hold * self.config.hello_fraction

    def _bind(self, state: RoutingState, ma: MessagingAssociation) -> list[Action]:
        """Tie a routing state to the MA its C-mode traffic uses."""
        if state.ma is not None and state.ma != ma.peer:
            old = self.mas.get(state.ma)
            if old is not None:
                old.users.discard(state.key)
        state.ma = ma.peer
        ma.users.add(state.key)
        return self._ma_status(ma)

    def _open_ma(self, peer: str, port: int, src: str, now: float,
                 items: list[QueuedMessage], state: RoutingState | None) -> list[Action]:
        """A new outbound MA with `items` waiting for it (the caller knows none exists)."""
        if len(self.mas) >= self.config.max_mas:
            self.counters["ma_refused"] += 1
            return self._fail_items(items, "too many messaging associations")
        ma = MessagingAssociation(peer, src, port, outbound=True, last_rx=now, last_tx=now)
        self.mas[peer] = ma
        ma.queue.extend(items)
        actions: list[Action] = [OpenMa(peer, port, src),
                                 StartTimer(_timer("ma_connect", peer),
                                            now + self.config.ma_connect_timeout),
                                 Event("gist.ma", {"peer": peer, "status": "establishing",
                                                   "port": port})]
        if state is not None:
            actions += self._bind(state, ma)
        return actions

    def _reusable_ma(self, peer: str) -> tuple[MessagingAssociation | None, list[Action]]:
        """The MA with `peer`, unless ours was opened from an address we no longer have
        (a mobile node moved on): that one is closed, and the actions say so."""
        ma = self.mas.get(peer)
        if ma is None or not ma.outbound or ma.local is None or ma.local in self.addresses:
            return ma, []
        self.counters["ma_stale"] += 1
        return None, [CloseMa(peer, "local address gone")] + self._ma_down(
            peer, "local address gone")

    def _c_transmit(self, ma: MessagingAssociation, data: bytes, kind: str) -> Transmit:
        return GistTransmit(data, ma.peer, ma.local, ma.port, mode="C", peer=ma.peer,
                            kind=kind)

    def _ma_send(self, ma: MessagingAssociation, item: QueuedMessage,
                 now: float) -> list[Action]:
        if ma.connected:
            ma.last_tx = now
            return [self._c_transmit(ma, item.data, item.kind)]
        if len(ma.queue) >= self.config.max_ma_queue:
            self.counters["ma_queue_full"] += 1
            return self._fail_items([item], "messaging association queue full")
        ma.queue.append(item)
        return []

    def _fail_items(self, items: list[QueuedMessage], reason: str) -> list[Action]:
        """SendFailed per session for queued C-mode messages; routing states whose
        Confirm never left are removed (the responder has none)."""
        actions: list[Action] = []
        counts: dict[tuple, int] = {}
        for item in items:
            if item.rkey is None:
                continue
            counts[item.rkey] = counts.get(item.rkey, 0) + item.nslp_messages
            if item.new_state and item.rkey in self.states:
                actions += self._remove_state(item.rkey, "ma failed")
        for rkey, dropped in counts.items():
            if dropped:
                self.counters["ma_send_failed"] += dropped
                actions.append(SendFailed(rkey[0], rkey[1], rkey[2], reason, dropped))
        return actions

    def _ma_down(self, peer: str, reason: str) -> list[Action]:
        ma = self.mas.pop(peer, None)
        if ma is None:
            return []
        actions: list[Action] = [StopTimer(_timer("ma_connect", peer)),
                                 StopTimer(_timer("ma_hold", peer)),
                                 StopTimer(_timer("ma_hello", peer)),
                                 Event("gist.ma", {"peer": peer, "status": "down",
                                                   "reason": reason})]
        for rkey in list(ma.users):
            state = self.states.get(rkey)
            if state is not None and state.ma == peer:
                state.ma = None
        actions += self._fail_items(ma.queue, f"messaging association failed: {reason}")
        return actions

    def ma_connected(self, peer: str, now: float) -> list[Action]:
        """The runtime's MA with `peer` is up: ours connected, or one was accepted."""
        peer = wire._norm_addr(peer)
        ma = self.mas.get(peer)
        if ma is None:
            if len(self.mas) >= self.config.max_mas:
                self.counters["ma_refused"] += 1
                return [CloseMa(peer, "too many messaging associations"),
                        Event("gist.drop", {"reason": "ma_refused", "src": peer})]
            ma = MessagingAssociation(peer, None, GIST_PORT, outbound=False, last_rx=now,
                                      last_tx=now)
            self.mas[peer] = ma
        elif ma.connected:
            return []
        ma.connected = True
        ma.last_rx = ma.last_tx = now
        actions: list[Action] = [StopTimer(_timer("ma_connect", peer)),
                                 StartTimer(_timer("ma_hold", peer),
                                            now + self.config.ma_hold_time_ms / 1000.0)]
        actions += self._ma_status(ma)
        queue, ma.queue = ma.queue, []
        actions += [self._c_transmit(ma, item.data, item.kind) for item in queue]
        return actions

    def ma_failed(self, peer: str, reason: str, now: float) -> list[Action]:
        """The MA with `peer` could not be set up, or broke."""
        peer = wire._norm_addr(peer)
        if peer in self.mas:
            self.counters["ma_failed"] += 1
        return self._ma_down(peer, reason)

    def ma_closed(self, peer: str, now: float) -> list[Action]:
        """The peer closed the MA."""
        return self._ma_down(wire._norm_addr(peer), "closed by peer")

    def _ma_hold(self, peer: str, now: float) -> list[Action]:
        ma = self.mas.get(peer)
        if ma is None or not ma.connected:
            return []
        hold = self.config.ma_hold_time_ms / 1000.0
        if not ma.users:
            last = max(ma.last_rx, ma.last_tx)
            if now < last + hold:
                return [StartTimer(_timer("ma_hold", peer), last + hold)]
            self.counters["ma_idle_closed"] += 1
            return [CloseMa(peer, "hold time expired")] + self._ma_down(peer, "hold time expired")
        if now < ma.last_rx + hold:
            return [StartTimer(_timer("ma_hold", peer), ma.last_rx + hold)]
        if ma.probing:
            self.counters["ma_silent"] += 1
            return [CloseMa(peer, "peer silent")] + self._ma_down(peer, "peer silent")
        ma.probing = True
        self._hello_seq = self._hello_seq % 0xFFFFFFFF + 1          # never 0 in a request
        return [self._hello(ma, now, self._hello_seq, request=True),
                StartTimer(_timer("ma_hold", peer), now + hold)]

    def _hello(self, ma: MessagingAssociation, now: float, hello_id: int = 0, *,
               request: bool = False) -> Transmit:
        """An MA-Hello: NSLPID 0; a keepalive has R=0 and Hello-ID 0, a request R=1 and
        a non-zero Hello-ID, its reply R=0 and the request's Hello-ID."""
        ma.last_tx = now
        msg = Message(MA_HELLO, 0, self.config.gist_hops, r_flag=request, hello_id=hello_id)
        return self._c_transmit(ma, msg.encode(), "MA-Hello")

    def _ma_hello(self, peer: str, now: float) -> list[Action]:
        ma = self.mas.get(peer)
        if ma is None or not ma.connected or not ma.users:
            return []
        interval = self._hello_interval(ma)
        actions: list[Action] = []
        if now >= ma.last_tx + interval:
            actions.append(self._hello(ma, now))
        actions.append(StartTimer(_timer("ma_hello", peer), ma.last_tx + interval))
        return actions

    def _peer_hold(self, ma: MessagingAssociation | None, scd: StackConfigData | None) -> None:
        if ma is not None and scd is not None and scd.ma_hold_time_ms:
            ma.peer_hold = scd.ma_hold_time_ms / 1000.0

    # ------------------------------------------------------------ receive path
    def receive(self, data: bytes, src: str, dst: str, now: float, *, q_mode: bool = False,
                ttl: int | None = None, c_mode: bool = False) -> list[Action]:
        """A datagram for UDP port 270: `q_mode` True when it was intercepted by Router
        Alert (or arrived with the magic number), `ttl` the received IP hop limit. With
        `c_mode` True: one whole message read from the MA with peer `src`."""
        ma = None
        pre: list[Action] = []
        if c_mode:
            q_mode = False
            src = wire._norm_addr(src)
            ma = self.mas.get(src)
            if ma is None or not ma.connected:
                pre = self.ma_connected(src, now)
                ma = self.mas.get(src)
                if ma is None:
                    return pre
            ma.last_rx = now
            ma.probing = False
        elif q_mode and self._query_answers:
            answer = self._query_answers.get((data if type(data) is bytes else bytes(data),
                                              src, dst))
            if answer is not None and self._still_valid(answer, now):
                # A retransmitted Query (the same bytes from the same querier): the
                # Response is the one the first got, as a decode would have built it
                # again (the responder keeps no per-Query state, RFC 5971: its answer
                # depends on the Query's bytes, our settings and the cookie generation,
                # all checked here). A Query differing in any byte is decoded.
                self.counters["query_repeats_answered"] += 1
                return [answer.transmit, answer.event]
        try:
            msg = wire.decode_message(data, q_mode=q_mode)
        except DecodeError as err:
            if q_mode and dst not in self.addresses:
                # Intercepted, but not GIST (no magic number) or not understood: it goes
                # on untouched, as it would through a router without GIST (5.3.2).
                self.counters["forwarded_undecodable"] += 1
                return [Forward(bytes(data), src, dst, None if ttl is None else ttl - 1,
                                None)]
            return pre + self._drop("malformed", detail=err.reason, src=src)
        handler = {QUERY: self._on_query, RESPONSE: self._on_response,
                   CONFIRM: self._on_confirm, DATA: self._on_data,
                   ERROR: self._on_error, MA_HELLO: self._on_ma_hello}[msg.type]
        return pre + handler(msg, data, src, dst, now, ttl, ma)

    def _hop_count(self, nli: Nli | None, ttl: int | None) -> int | None:
        if nli is None or ttl is None or ttl > nli.ip_ttl:
            return None
        return nli.ip_ttl - ttl

    def _intercept(self, msg: Message, data: bytes, src: str, dst: str,
                   ttl: int | None) -> list[Action] | None:
        """Forward verdict for Q-mode traffic of NSLPs we do not serve (None: ours). An
        NSLP in config.upstream_only is ours only for upstream MRIs (D flag set)."""
        if msg.nslp_id in self.config.nslps and not (
                msg.nslp_id in self.config.upstream_only and not msg.mri.upstream):
            return None
        if dst in self.addresses:
            return self._drop("unknown_nslpid", nslp=msg.nslp_id)
        if msg.hops <= 1:
            return self._drop("hop_limit", nslp=msg.nslp_id)
        self.counters["forwarded"] += 1
        return [Forward(wire.with_hops(data, msg.hops - 1), src, dst,
                        None if ttl is None else ttl - 1,
                        self.config.rao_values.get(msg.nslp_id))]

    def _offer(self, sp: StackProposal | None) -> bool:
        """Whether we answer a Stack-Proposal with our Forwards-TCP offer."""
        return (sp is not None and self.config.ma_port is not None
                and TCP_PROFILE in sp.profiles)

    def _on_query(self, msg, data, src, dst, now, ttl, ma) -> list[Action]:
        if ma is not None:
            return self._drop("query_in_c_mode", src=src)
        verdict = self._intercept(msg, data, src, dst, ttl)
        if verdict is not None:
            return verdict
        nli = msg.nli
        rkey = (msg.nslp_id, msg.session_id, msg.mri.inverted())
        cookie = self.responder_cookie(nli, msg.mri, msg.nslp_id, msg.session_id, now)
        sp = scd = None
        if self._offer(msg.stack_proposal):
            sp, scd = TCP_PROPOSAL, self._our_scd(self.config.ma_port)
        resp = Message(RESPONSE, msg.nslp_id, self.config.gist_hops, r_flag=True,
                       mri=msg.mri.inverted(), session_id=msg.session_id,
                       nli=self._nli(rkey[2]), query_cookie=msg.query_cookie,
                       responder_cookie=cookie, stack_proposal=sp, stack_config=scd)
        transmit = self._d_transmit(resp, nli.interface_address, self._local_address(rkey[2]),
                                    "Response")
        event = Event("gist.response", {"nslp": msg.nslp_id, "sid": msg.session_id.hex(),
                                        "querier": nli.interface_address,
                                        "ma_offered": sp is not None})
        actions: list[Action] = [transmit, event]
        if msg.nslp_data is not None:
            actions.append(RecvMessage(msg.nslp_id, msg.session_id, msg.mri, msg.nslp_data,
                                       nli.interface_address, self._hop_count(nli, ttl)))
        elif self.config.query_answer_cache > 0:
            # kept for its retransmissions (a Query with NSLP data is not: that data
            # goes to the NSLP each time)
            answers = self._query_answers
            while len(answers) >= self.config.query_answer_cache:
                del answers[next(iter(answers))]
            answers[(msg.raw, src, dst)] = _QueryAnswer(
                self._generation(now), self._answer_settings(), msg.nslp_id, msg.mri.upstream,
                transmit, Event("gist.response", {**event.fields, "repeat": True}))
        return actions

    def _answer_settings(self) -> tuple:
        """What a Response depends on besides the Query, our addresses (set_addresses
        forgets the kept answers) and the cookie generation."""
        c = self.config
        return (c.peer_identity, c.ip_ttl, c.rs_validity_ms, c.gist_hops, c.ma_port,
                c.ma_hold_time_ms)

    def _still_valid(self, answer: _QueryAnswer, now: float) -> bool:
        """Would the Query of this kept answer get the same Response now?"""
        nslps = self.config.nslps
        return (answer.generation == self._generation(now)
                and answer.nslp_id in nslps
                and not (answer.nslp_id in self.config.upstream_only and not answer.upstream)
                and answer.settings == self._answer_settings())

    def _offered_port(self, msg: Message) -> int | None:
        """The responder's Forwards-TCP port from a Response (None: no usable offer)."""
        if msg.stack_proposal is None or msg.stack_config is None:
            return None
        try:
            profile = msg.stack_proposal.profiles.index(TCP_PROFILE) + 1
        except ValueError:
            return None
        for opt in msg.stack_config.options:
            if opt.protocol_id == MA_PROTOCOL_TCP and opt.profile in (0, profile) \
                    and not opt.do_not_use:
                try:
                    return wire.forwards_tcp_port(opt.data)
                except DecodeError:
                    self.counters["bad_ma_option"] += 1
                    return None
        return None

    def _on_response(self, msg, data, src, dst, now, ttl, ma) -> list[Action]:
        # the Response's MRI is the Query's inverted: downstream or upstream discovery
        key = (msg.nslp_id, msg.session_id, msg.mri.inverted())
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
                             self._hop_count(nli, ttl), ma_port=self._offered_port(msg))
        if old is not None and old.peer_address == state.peer_address:
            state.ma = old.ma          # the MA binding survives a refresh to the same peer
        self.states[key] = state
        actions: list[Action] = [StopTimer(_timer("retx", key)),
                                 StopTimer(_timer("lifetime", key)),
                                 StartTimer(_timer("refresh", key), state.refresh_at),
                                 StartTimer(_timer("expire", key), state.expires_at)]
        if old is not None and old.ma is not None and state.ma is None:
            old_ma = self.mas.get(old.ma)
            if old_ma is not None:
                old_ma.users.discard(key)
                actions += self._ma_status(old_ma)
        queue = list(pq.queue)
        use, stale = self._reusable_ma(state.peer_address)
        actions += stale
        if any(c for _, c in queue) and use is None:
            if state.ma_port is None:
                self.counters["no_ma_offered"] += 1
                failed = sum(1 for _, c in queue if c)
                queue = [(d, c) for d, c in queue if not c]
                actions.append(SendFailed(key[0], key[1], key[2],
                                          "peer offers no messaging association", failed))
            else:
                actions += self._open_ma(state.peer_address, state.ma_port,
                                         self._local_address(key[2]), now, [], None)
                use = self.mas.get(state.peer_address)
                if use is None:              # refused: the C-mode messages were not queued
                    failed = sum(1 for _, c in queue if c)
                    queue = [(d, c) for d, c in queue if not c]
                    actions.append(SendFailed(key[0], key[1], key[2],
                                              "too many messaging associations", failed))
        c_mode = use is not None and (any(c for _, c in queue) or state.ma == use.peer)
        first = queue.pop(0)[0] if queue and msg.r_flag else None
        if c_mode:
            actions += self._bind(state, use)
            self._peer_hold(use, msg.stack_config)
            if msg.r_flag:
                confirm = Message(CONFIRM, key[0], self.config.gist_hops, mri=key[2],
                                  session_id=key[1], nli=self._nli(key[2]),
                                  responder_cookie=msg.responder_cookie,
                                  stack_proposal=msg.stack_proposal,
                                  stack_config=(self._our_scd(None) if msg.stack_proposal
                                                else None),
                                  nslp_data=first)
                actions += self._ma_send(use, QueuedMessage(
                    confirm.encode(), "Confirm", key, int(first is not None),
                    new_state=old is None), now)
            for item, _ in queue:
                actions += self._ma_send(use, QueuedMessage(
                    self._data_message(key, item).encode(), "Data", key, 1), now)
        else:
            if msg.r_flag:
                confirm = Message(CONFIRM, key[0], self.config.gist_hops, mri=key[2],
                                  session_id=key[1], nli=self._nli(key[2]),
                                  responder_cookie=msg.responder_cookie, nslp_data=first)
                encoded = confirm.encode()
                if first is not None and len(encoded) > self.config.d_mode_max:
                    # the cookie made it too long for D-mode: the message follows as Data
                    encoded = replace(confirm, nslp_data=None).encode()
                    queue.insert(0, (first, False))
                actions.append(GistTransmit(encoded, state.peer_address,
                                            self._local_address(key[2]), GIST_PORT, mode="D",
                                            hop_limit=self.config.ip_ttl, kind="Confirm"))
            actions += [self._data(key, state, item) for item, _ in queue]
        if key not in self.states:        # an MA refusal removed it again
            return actions
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
                                               "refresh": old is not None,
                                               "ma": state.ma is not None}))
        if msg.nslp_data is not None:
            actions.append(RecvMessage(nslp_id, sid, msg.mri, msg.nslp_data,
                                       state.peer_address, state.hop_count))
        return actions

    def _on_confirm(self, msg, data, src, dst, now, ttl, ma) -> list[Action]:
        if msg.nslp_id not in self.config.nslps:
            return self._drop("unknown_nslpid", nslp=msg.nslp_id)
        cookie = msg.responder_cookie
        if cookie is None or not self._cookie_ok(cookie, msg.nli, msg.mri, msg.nslp_id,
                                                 msg.session_id, now):
            return self._drop("bad_responder_cookie", src=src)
        if msg.stack_proposal is not None and (not self._offer(msg.stack_proposal)
                                               or msg.stack_proposal != TCP_PROPOSAL):
            # not what we offered: a downgrade or a tampered echo (section 4.4.2)
            return self._drop("stack_proposal_mismatch", src=src)
        if ma is not None and msg.nli.interface_address != ma.peer:
            return self._drop("ma_peer_mismatch", src=src)
        key = (msg.nslp_id, msg.session_id, msg.mri.inverted())
        old = self.states.get(key)
        if old is None and len(self.states) >= self.config.max_routing_states:
            return self._drop("routing_state_refused", src=src)
        nli = msg.nli
        state = RoutingState(key, nli, nli.interface_address,
                             now + self.config.rs_validity_ms / 1000.0,
                             hop_count=self._hop_count(nli, ttl))
        if old is not None and old.peer_address == state.peer_address:
            state.ma = old.ma
        self.states[key] = state
        actions: list[Action] = [StartTimer(_timer("expire", key), state.expires_at)]
        if ma is not None:
            actions += self._bind(state, ma)
            self._peer_hold(ma, msg.stack_config)
        return actions + self._installed(state, old, msg, "upstream")

    def _on_data(self, msg, data, src, dst, now, ttl, ma) -> list[Action]:
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
            # The querier believes in a routing state we do not have (its Confirm was
            # lost, or we restarted): tell it, so that it restarts the handshake.
            return self._drop("no_routing_state", src=src) + self._error(
                msg, data, wire.ERR_NO_ROUTING_STATE, src, dst, now, ma)
        if msg.nli is not None and msg.nli.peer_identity != state.peer.peer_identity:
            return self._drop("peer_mismatch", src=src)
        if (msg.nli is None or ma is not None) and src != state.peer_address:
            return self._drop("peer_mismatch", src=src)
        actions: list[Action] = []
        if ma is not None and state.ma != ma.peer:
            actions += self._bind(state, ma)
        return actions + [RecvMessage(msg.nslp_id, msg.session_id, msg.mri, msg.nslp_data,
                                      state.peer_address, state.hop_count)]

    def _on_error(self, msg, data, src, dst, now, ttl, ma) -> list[Action]:
        err = msg.error
        self.counters["error_received"] += 1
        actions: list[Action] = [Event("gist.error_received", {
            "src": src, "class": err.error_class, "code": err.code, "subcode": err.subcode,
            "comment": err.comment})]
        if err.error_class == wire.ERROR_CLASS_PROTOCOL \
                and err.code == wire.ERR_NO_ROUTING_STATE:
            actions += self._peer_lost_state(err, src, now)
        return actions

    def _peer_lost_state(self, err: wire.GistError, src: str, now: float) -> list[Action]:
        """A "No Routing State" Error from the peer of one of our routing states: the
        peer has none for the flow (our Confirm was lost, or it restarted). Our state
        goes; a querier restarts the handshake, as RFC 5971's Querying-SM does, and NSLP
        messages sent meanwhile wait for it. Only the state's own peer is believed."""
        if err.session_id is None or err.mri is None:
            return self._drop("error_without_session", src=src)
        nslp_id = struct.unpack("!H", err.original_header[4:6])[0]
        key = (nslp_id, err.session_id, err.mri)
        state = self.states.get(key)
        if state is None or src != state.peer_address:
            return self._drop("error_not_from_peer", src=src)
        want_ma, querier = state.ma is not None, state.refresh_at is not None
        actions = self._remove_state(key, "peer lost state")
        if not querier:                     # a responder has no handshake to restart
            return actions
        pending = self.pending.get(key)
        if pending is not None:
            pending.refresh = False         # its Response now creates the state anew
            return actions
        return actions + self._start_query(key, now, refresh=False, want_ma=want_ma)

    def _error(self, msg: Message, data: bytes, code: int, src: str, dst: str, now: float,
               ma: MessagingAssociation | None, subcode: int = 0) -> list[Action]:
        """A Protocol-Error about `msg` back to its sender (RFC 5971 A.4): over the MA
        it came on, else in D-mode to its IP source (not to an address its NLI merely
        claims). Rate-limited, so that spoofed sources cannot make us a reflector."""
        if self._error_refill_at is not None:
            self._error_tokens = min(float(self.config.error_burst), self._error_tokens + (
                now - self._error_refill_at) * self.config.error_rate)
        self._error_refill_at = now
        if self._error_tokens < 1.0:
            self.counters["error_rate_limited"] += 1
            return []
        self._error_tokens -= 1.0
        header = bytes(data[4:4 + wire.HEADER_LEN] if msg.q_mode else data[:wire.HEADER_LEN])
        error = wire.GistError(wire.ERROR_CLASS_PROTOCOL, code, subcode, header,
                               session_id=msg.session_id, mri=msg.mri,
                               d_mode=ma is None, q_mode=msg.q_mode)
        local = dst if dst in self.addresses else self._local_address(msg.mri)
        nli = None if ma is not None else Nli(self.config.peer_identity, self.config.ip_ttl,
                                               self.config.rs_validity_ms, local)
        reply = Message(ERROR, msg.nslp_id, self.config.gist_hops, nli=nli, error=error)
        self.counters["error_sent"] += 1
        event = Event("gist.error_sent", {"to": src, "code": code, "subcode": subcode})
        if ma is not None:
            return [event] + self._ma_send(ma, QueuedMessage(reply.encode(), "Error", None, 0),
                                           now)
        return [event, self._d_transmit(reply, src, local, "Error")]

    def _on_ma_hello(self, msg, data, src, dst, now, ttl, ma) -> list[Action]:
        if ma is None:
            return self._drop("ma_hello_outside_c_mode", src=src)
        self.counters["ma_hello_received"] += 1
        if msg.r_flag:
            if msg.hello_id == 0:        # a request must carry an identifier (5.2.2)
                return self._drop("hello_request_without_id", src=src)
            return [self._hello(ma, now, msg.hello_id)]
        return []
