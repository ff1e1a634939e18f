"""Sans-I/O NATFW NSLP cores (RFC 5973): NI (data sender, the MN), NF (the firewall),
NR (data receiver, the CN). GIST delivers `(session_id, mri, data, now)`; every method
returns a list of actions (mip6bench.sansio) and the effects defined here.

Direction: CREATE travels downstream (NI -> NR), RESPONSE and NOTIFY upstream.
`SendNslp.upstream` says which way GIST must send (upstream = back along the reverse
path state of the session).

NI (`NiCore`). `create()` sends CREATE (lifetime, EFI, MSN, the optional MIPv6 flow
object 0x7D0 and the optional SESSION_AUTH token). The first MSN is random (RFC 5973
section 3.5) and every message sent takes the next one. Without an answer the CREATE is
sent again (new MSN) after `rto`, doubling, `max_retransmit` times (by default GIST's
Query schedule: NI_MAX_RETRANSMIT, NI_MAX_RTO); then the session fails (`SessionFailed`,
reason "no response"). A success RESPONSE gives `SessionReady`
with the granted lifetime and arms a refresh at `refresh_fraction` of it; an error
RESPONSE or a NOTIFY "session terminated" gives `SessionFailed` with the information
code. `teardown()` sends lifetime 0. `state(session_id)` is "pending", "ready" or None.

NF (`NfCore`). A CREATE is decoded, checked against the session's MSN (RFC 1982: not
newer -> dropped and counted "stale_msn"), the lifetime cap, the state bounds and the
authorization; only then is it kept pending and forwarded downstream. Nothing is
installed until the NR's success RESPONSE with the pending MSN (or the MSN of an earlier
retransmission of the same request: the NI's retransmissions carry new MSNs) comes back: then
`InstallPinhole` (also on refreshes: the runtime replaces the session's rule) and the
RESPONSE goes upstream with the granted lifetime. The NR's refusal is forwarded upstream
unchanged. Lifetime 0 tears down at once (`RemovePinhole` "teardown") and is forwarded;
an installed rule that is not refreshed before its lifetime ends is removed
(`RemovePinhole` "expired") and the NI gets a NOTIFY (0x7, 0x01). A pending CREATE that
the NR does not answer within `pending_timeout` is dropped (the NI retransmits).

Authorization (`authorization=`):
  "token"          the CREATE must carry a SESSION_AUTH token (mip6bench.aaa.token) that
                   verifies with `keys[Key-ID]`, is inside START/END (wall clock), names
                   the flow (protocol, destination, port; port+1 too when sub_ports=1),
                   and whose SOURCE_ADDR (the MN's Home Address) is the MRI source --
                   or, when `coa_binding` is on, the CREATE carries the MIPv6 flow object
                   naming that Home Address (a CoA-sourced flow of that MN, see README);
  "pull"           every new or changed flow is put to the AAA side: `AuthorizeRequest`
                   effect, resumed by `authorization_result()`, refused after
                   `auth_timeout`;
  "token-or-pull"  a token if the CREATE has one, else pull;
  "none"           no check (the default when no keys are given; tests and labs).
Replay: a token is bound to at most `token_sessions` (default 1) open NSIS sessions at a
time (a session torn down or expired frees its place); another session presenting it
is refused "replayed token". A CREATE of an open session with the same token bytes
for the same flow as its last authorization (a retransmission or a refresh; its key
still configured, its END_TIME not passed) is not verified again ("token_check_skipped").
Retransmissions (the NI retries with the same session ID and newer MSNs, RFC 5973 3.5):
one repeating the pending request is forwarded only if the request went downstream
`reforward_wait` ago or more, else only its MSN is noted ("retransmissions_absorbed":
the NR's answer to an earlier MSN completes the NI). `reforward_wait` is
`reforward_after` (2 s) or, when answers take longer, the time the NR's answers take
to be handled here, as TCP's RTO follows the round trip (RFC 6298: smoothed time plus
four times its variation, from answers to requests forwarded once only, at most
`reforward_max` (8 s) and half of `pending_timeout`, so that a forward that was lost
is still sent again in time): under a burst that time is this node's own queue, where a
request forwarded again only adds to it (~3,000 of 7,000 forwards for 4,000 sessions
in nf_load_bench with 1,000 MNs, each answered by the NR for nothing); one
repeating a request the NR has just granted (within RETRANSMISSION_WINDOW, at most a
quarter of the lifetime) is answered by the NF with the lifetime left
("retransmissions_answered"). A token travels in the clear, so whoever listens on the
MN's link can present it too: once sessions from a care-of address are bound to it, a
new session with another care-of address as its MN end is refused "token used from
another address" (the MN itself moves its sessions, same session IDs, to a new CoA
and so opens new ones from where its sessions are; its home address always passes);
the listener can then only open flows from the MN's own addresses. Every refusal
answers a RESPONSE upstream with the RFC 5973 information code, creates no pending state,
installs nothing and is counted as counters["refused.<reason>"]:
  (0x5, 0x01) authentication failed: "forged", "malformed token";
  (0x5, 0x02) authorization failed: "no token", "expired", "another MN", "flow not
              authorized", "replayed token", "token used from another address", "pull
              denied", "authorization timeout", "closed session";
  (0x4, 0x01) resources not available: "max sessions", "max pending", "max per source",
              "token store full";
  (0x7, 0x02) lifetime too big: "lifetime too big".

Bounds (every piece of state a stranger can create is bounded):
  max_sessions    (1024) sessions in any phase (authorizing, pending, installed);
  max_pending      (256) sessions with a CREATE awaiting the AAA or the NR;
  max_per_source    (16) sessions per source, the source being GIST's upstream peer
                         (`peer=` given to receive) or else the MRI source address, so
                         one flooding source exhausts its own share and not what other
                         MNs need;
  replay_memory  (65536) remembered token bindings (entries leave when no open session
                 is bound to the token, or at its END_TIME);
  closed_memory   (4096) recently closed session ids (a CREATE reusing one is refused).
Pending and authorizing state is further bounded in time by `pending_timeout` and
`auth_timeout`, installed state by the lifetime (at most `max_lifetime`, the AAA's
max_lifetime and the token's END_TIME).

EXT at the edge (RFC 5973 sections 3.7.2 and 4.3.2; the MN behind its foreign network's
firewall, RFC 4487 3.2). A data receiver (NI+, the MN) that expects traffic it does not
start itself sends EXT upstream, toward the data sender: `NiCore.ext()` (the MRI is the
inbound flow, source = data sender, destination = the MN; GIST finds the upstream peer
with a Query toward the flow's source, `SendNslp.discover`). An NF configured with
`inside=` prefixes is the edge of those networks: an EXT whose flow destination and GIST
peer are inside is handled HERE and not forwarded (this NF is the edge: the flow's
traffic enters the network through it), with the same MSN, lifetime cap, bounds and
authorization as a CREATE, then installed at once (there is no NR whose consent is
awaited: the receiver asking IS the consent) and answered with a success RESPONSE
downstream (lifetime granted, the EXT's nonce echoed). Refresh is an EXT with a newer
MSN (a changed flow, e.g. a new CoA, replaces the rule), lifetime 0 tears down, an
unrefreshed rule expires and the NI+ gets the NOTIFY (0x7, 0x01) downstream.
Authorization of an EXT: the token's SOURCE_ADDR (the HoA) must be the flow's
DESTINATION, or, with `coa_binding`, the MIP6 flow object (kind RH2 or tunnel) names it
(a CoA-destined flow of that MN); the token's flow allowances must cover the data
sender (the peer: protocol, the flow's source, source port), except for the HA's tunnel
(MIP6 kind 4), which comes from the MN's own home agent. Pull asks the AAA side with the
MN's end (the destination) as the source (the PAA applies the same rules). Refusals go
downstream with the codes above, plus:
  (0x3, 0x0B) EXT on the external side: the flow destination or the signalling peer is
              not inside (an EXT from the outside would open the network to itself);
  (0x5, 0x06) no edge device here: an NF without `inside` prefixes (not an edge; this
              NF does not forward EXT further upstream).

NR (`NrCore`): `policy(session_id, mri, create)` returns None to consent or the
(class, code) to refuse with; `consent()` builds one from allow-predicates over the flow.
"""
from __future__ import annotations

import ipaddress
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping

from mip6bench import ipaddr
from mip6bench.aaa.token import AuthToken, TokenError, forget_token, verify_token
from mip6bench.codec import Reader
from mip6bench.natfw import wire as w
from mip6bench.sansio import Action, Effect, Event, StartTimer, StopTimer


@dataclass(frozen=True)
class Mri:
    """The path-coupled MRI's flow as plain values (GIST builds the real object)."""
    source: str
    destination: str
    protocol: int = 0
    source_port: int = 0
    destination_port: int = 0

    def __post_init__(self):
        object.__setattr__(self, "source", ipaddr.text6(self.source))
        object.__setattr__(self, "destination", ipaddr.text6(self.destination))


@dataclass(frozen=True)
class PinholeFlow:
    """What the firewall opens: the MRI's 5-tuple, EFI sub-ports and MIPv6 selectors."""
    mri: Mri
    action: int = w.ACTION_ALLOW
    sub_ports: int = 0
    mip6: w.Mip6Flow | None = None


@dataclass(frozen=True)
class InstallPinhole(Effect):
    session_id: bytes
    flow: PinholeFlow
    lifetime: int


@dataclass(frozen=True)
class RemovePinhole(Effect):
    session_id: bytes
    reason: str


@dataclass(frozen=True)
class SendNslp(Effect):
    session_id: bytes
    mri: Mri
    data: bytes
    reliable: bool = True
    upstream: bool = False
    discover: bool = False      # upstream: GIST may discover the upstream peer (EXT)
    supersede: bool = False     # replaces the session's messages still queued in GIST (NI)


@dataclass(frozen=True)
class DeliverResponse(Effect):
    """At the NI: every RESPONSE that answers the session (info.success tells)."""
    session_id: bytes
    info: w.InfoCode
    lifetime: int | None


@dataclass(frozen=True)
class DeliverNotify(Effect):
    session_id: bytes
    info: w.InfoCode


@dataclass(frozen=True)
class SessionReady(Effect):
    """At the NI: the path granted the session (first success and every refresh)."""
    session_id: bytes
    lifetime: int
    info: w.InfoCode


@dataclass(frozen=True)
class SessionFailed(Effect):
    """At the NI: the session is gone; `info` is the RFC 5973 code (None: no answer)."""
    session_id: bytes
    info: w.InfoCode | None
    reason: str


@dataclass(frozen=True)
class AuthorizeRequest(Effect):
    """At the NF in pull mode: ask the AAA side whether `source` may open `flow`;
    answer with `NfCore.authorization_result(request_id, ...)`."""
    request_id: int
    session_id: bytes
    flow: PinholeFlow
    source: str


def _send(sid, mri, msg: w.NslpMessage, upstream: bool, discover: bool = False) -> SendNslp:
    return SendNslp(sid, mri, msg.encode(), True, upstream, discover)


# ---------------------------------------------------------------- NI


@dataclass
class _NiSession:
    mri: Mri
    lifetime: int                     # asked (before the first answer) or granted
    objects: tuple                    # EFI, MIP6 flow, token: everything but LT and MSN
    msn: int = 0                      # the newest MSN sent
    outstanding: frozenset = frozenset()   # MSNs sent and not yet answered
    established: bool = False
    tries: int = 0
    rto: float = 0.0
    ext: bool = False                 # an EXT session (this node receives the flow)


# The NI's retransmission schedule, GIST's for its Query (RFC 5971 T1 = 500 ms, doubling,
# given up when the interval would pass T2 = 64 s): sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5,
# 31.5 and 63.5 s, failure at 127.5 s. It was 4 retransmissions capped at 8 s (failure
# at 15.5 s): under the 1,000-MN burst, where the firewall answered tens of seconds late,
# each session was given up and signalled again (back at 0.5 s) several times a minute
# (~20 CREATEs per session a minute against 7 now), and those retransmissions were most
# of the firewall's work.
NI_MAX_RETRANSMIT = 7
NI_MAX_RTO = 64.0


class NiCore:
    """NATFW initiator (the MN); see the module docstring."""

    def __init__(self, token: bytes | None = None, msn_start: int | None = None,
                 refresh_fraction: float = 0.5, *, rng: random.Random | None = None,
                 rto: float = 0.5, max_retransmit: int = NI_MAX_RETRANSMIT,
                 max_rto: float = NI_MAX_RTO):
        if not 0 < refresh_fraction < 1:
            raise ValueError("refresh_fraction is in (0, 1)")
        self.token = self._token_object(token)
        rng = rng or random.SystemRandom()
        self._next_msn = (rng.getrandbits(32) if msn_start is None else msn_start) & 0xFFFFFFFF
        self.refresh_fraction = refresh_fraction
        self.rto, self.max_retransmit, self.max_rto = rto, max_retransmit, max_rto
        self.sessions: dict[bytes, _NiSession] = {}
        self.counters: Counter = Counter()

    def set_token(self, token: bytes | None) -> None:
        """The token for CREATEs from now on (PANA re-authentication brings a new one);
        ValueError if it is not a well-formed SESSION_AUTH object."""
        self.token = self._token_object(token)

    @staticmethod
    def _token_object(token: bytes | None) -> w.SessionAuth | None:
        if token is None:
            return None
        r = Reader(bytes(token))
        obj = w.decode_object(r)
        r.expect_end("token")
        if not isinstance(obj, w.SessionAuth):
            raise ValueError("the token is not a SESSION_AUTH object")
        return obj

    def state(self, session_id: bytes) -> str | None:
        s = self.sessions.get(session_id)
        return None if s is None else ("ready" if s.established else "pending")

    def _msn(self) -> int:
        v = self._next_msn
        self._next_msn = (v + 1) & 0xFFFFFFFF
        return v

    def _send_create(self, sid, s: _NiSession, now, lifetime=None) -> list[Action]:
        s.msn = self._msn()
        s.outstanding = s.outstanding | {s.msn}
        lt = s.lifetime if lifetime is None else lifetime
        efi, *rest = s.objects
        msg = w.NslpMessage(w.EXT if s.ext else w.CREATE, (w.Lifetime(lt), efi, w.Msn(s.msn),
                                                          *rest))
        self.counters["ext_sent" if s.ext else "create_sent"] += 1
        # EXT travels upstream, toward the data sender; GIST discovers that peer. Each
        # message supersedes the session's earlier ones (the next MSN, the newest state).
        return [SendNslp(sid, s.mri, msg.encode(), True, s.ext, s.ext, supersede=True)]

    def _arm(self, sid, s: _NiSession, now, first: bool) -> list[Action]:
        if first:
            s.tries, s.rto = 0, self.rto
        return [StartTimer(("retransmit", sid), now + s.rto)]

    def create(self, session_id: bytes, mri: Mri, lifetime: int, now: float, *,
               action: int = w.ACTION_ALLOW, sub_ports: int = 0,
               mip6: w.Mip6Flow | None = None, token: bytes | None = None) -> list[Action]:
        """Open a session, or refresh/change it when `session_id` is known."""
        if not 0 < lifetime <= 0xFFFFFFFF:
            raise ValueError("lifetime is 1..2^32-1 seconds (teardown() sends 0)")
        tok = self._token_object(token) if token is not None else self.token
        objs = (w.ExtFlowInfo(action, sub_ports),) + ((mip6,) if mip6 else ()) + \
            ((tok,) if tok else ())
        old = self.sessions.get(session_id)
        s = _NiSession(mri, lifetime, objs, established=bool(old and old.established))
        self.sessions[session_id] = s
        # timers before sends: a runtime may deliver the answer before it arms them
        arm = self._arm(session_id, s, now, True) + [StopTimer(("refresh", session_id))]
        return arm + self._send_create(session_id, s, now) + [
            Event("natfw.create", {"session": session_id.hex(), "msn": s.msn,
                                   "lifetime": lifetime})]

    def ext(self, session_id: bytes, mri: Mri, lifetime: int, now: float, *,
            action: int = w.ACTION_ALLOW, sender_prefix: int = 128,
            mip6: w.Mip6Flow | None = None, token: bytes | None = None,
            nonce: int | None = None) -> list[Action]:
        """As the data receiver (NI+): ask the edge NF upstream to let the flow `mri`
        (source = the data sender, destination = this node) in, with EXT (RFC 5973
        4.3.2). Refresh or change it with the same `session_id`; teardown() ends it.
        The DTINFO names the data sender (`sender_prefix` bits of mri.source) and the
        ports when the MRI has them."""
        if not 0 < lifetime <= 0xFFFFFFFF:
            raise ValueError("lifetime is 1..2^32-1 seconds (teardown() sends 0)")
        ports = (mri.source_port, mri.destination_port) if (
            mri.source_port or mri.destination_port) else (None, None)
        dtinfo = w.DataTerminalInfo(mri.protocol, sender_prefix, ports[0], ports[1],
                                    sender=mri.source)
        tok = self._token_object(token) if token is not None else self.token
        objs = ((w.ExtFlowInfo(action, 0), dtinfo) + ((mip6,) if mip6 else ())
                + ((tok,) if tok else ()) + ((w.Nonce(nonce),) if nonce is not None else ()))
        old = self.sessions.get(session_id)
        if old is not None and not old.ext:
            raise ValueError("session is a CREATE session")
        s = _NiSession(mri, lifetime, objs, established=bool(old and old.established),
                       ext=True)
        self.sessions[session_id] = s
        arm = self._arm(session_id, s, now, True) + [StopTimer(("refresh", session_id))]
        return arm + self._send_create(session_id, s, now) + [
            Event("natfw.ext", {"session": session_id.hex(), "msn": s.msn,
                                "lifetime": lifetime})]

    def teardown(self, session_id: bytes, now: float) -> list[Action]:
        s = self.sessions.pop(session_id, None)
        if s is None:
            return []
        self.counters["teardowns"] += 1
        return self._send_create(session_id, s, now, lifetime=0) + [
            StopTimer(("refresh", session_id)), StopTimer(("retransmit", session_id)),
            Event("natfw.teardown", {"session": session_id.hex()})]

    def _fail(self, sid, info, reason) -> list[Action]:
        self.sessions.pop(sid, None)
        self.counters[f"failed.{reason}"] += 1
        return [SessionFailed(sid, info, reason), StopTimer(("refresh", sid)),
                StopTimer(("retransmit", sid)),
                Event("natfw.failed", {"session": sid.hex(), "reason": reason,
                                       **({"class": info.severity, "code": info.code}
                                          if info else {})})]

    def receive(self, session_id: bytes, mri: Mri, data: bytes, now: float) -> list[Action]:
        try:
            msg = w.decode(data)
        except w.NslpDecodeError as err:
            self.counters["malformed"] += 1
            return [Event("natfw.malformed", {"reason": err.reason})]
        s = self.sessions.get(session_id)
        if msg.msg_type == w.NOTIFY:
            out: list[Action] = [DeliverNotify(session_id, msg.info)]
            if s is not None and msg.info.pair == w.ERR_SESSION_TERMINATED:
                out += self._fail(session_id, msg.info, "terminated")
            return out
        if msg.msg_type != w.RESPONSE or s is None or msg.msn not in s.outstanding:
            self.counters["unexpected"] += 1
            return []
        out = [DeliverResponse(session_id, msg.info, msg.lifetime)]
        if not msg.info.success:
            return out + self._fail(session_id, msg.info, "refused")
        s.outstanding = frozenset()
        s.established = True
        granted = msg.lifetime if msg.lifetime is not None else s.lifetime
        s.lifetime = granted
        self.counters["ready"] += 1
        return out + [SessionReady(session_id, granted, msg.info),
                      StopTimer(("retransmit", session_id)),
                      StartTimer(("refresh", session_id),
                                 now + max(granted * self.refresh_fraction, 0.001)),
                      Event("natfw.ready", {"session": session_id.hex(), "lifetime": granted})]

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        kind, sid = key
        s = self.sessions.get(sid)
        if s is None:
            return []
        if kind == "refresh":
            self.counters["refreshes"] += 1
            arm = self._arm(sid, s, now, True)
            return arm + self._send_create(sid, s, now)
        if kind == "retransmit":
            if s.tries >= self.max_retransmit:
                return self._fail(sid, None, "no response")
            s.tries += 1
            s.rto = min(s.rto * 2, self.max_rto)
            self.counters["retransmits"] += 1
            arm = self._arm(sid, s, now, False)
            return arm + self._send_create(sid, s, now)
        return []


# ---------------------------------------------------------------- NF


AUTH_MODES = ("none", "token", "pull", "token-or-pull")
_AUTHN = {"forged", "malformed token"}


@dataclass
class _NfSession:
    mri: Mri
    flow: PinholeFlow
    source: str                        # the per-source bound's key
    msn: int                           # newest MSN accepted
    pending: tuple | None = None       # (msn, lifetime, flow) awaiting the NR
    # every MSN forwarded for that same request (the NI's retransmissions carry new
    # MSNs): the NR's answer to any of them completes it (at most PENDING_MSNS kept)
    pending_msns: tuple = ()
    installed: bool = False
    expires: float = 0.0
    authorized_flow: PinholeFlow | None = None  # what the authorization covered
    cap: int | None = None             # lifetime cap from the AAA or the token
    auth_request: int | None = None    # pull request under way
    held: tuple | None = None          # (msg, msn, lifetime) waiting for the AAA
    forwarded: bool = False            # a CREATE went downstream (the NR may hold state)
    ext: bool = False                  # an EXT session handled here as the edge
    # the token and flow the session was last authorized for: (SESSION_AUTH object,
    # key id, key, END_TIME, flow); the same token for the same flow is not verified
    # again (see _same_token)
    verified: tuple | None = None
    forwarded_at: float = 0.0          # when the pending request last went downstream
    answered: tuple | None = None      # (when, lifetime asked, flow) of the NR's last success
    # the session's last CREATE that was decoded in full: (bytes, message, where its
    # MSN value is); the NI's next ones differ in the MSN only (wire.with_other_msn)
    last_create: tuple | None = None


PENDING_MSNS = 8    # MSNs of one pending request an NR answer may carry (NI: 1 + 4 retries)
# How long after the NR's success a CREATE repeating the request is taken for a
# retransmission and answered by the NF (at most a quarter of the lifetime granted, so a
# refresh, sent at half of it, always goes to the NR): NiCore's defaults give up 15.5 s
# after the first CREATE.
RETRANSMISSION_WINDOW = 16.0


class NfCore:
    """NATFW forwarder (the firewall); see the module docstring for behaviour and bounds.
    `keys` maps Key-ID -> key shared with the AAA side; `wall_clock` maps the core's
    monotonic `now` to Unix seconds for token validity."""

    def __init__(self, keys: Mapping[int, bytes] | None = None, *,
                 authorization: str | None = None,
                 wall_clock: Callable[[float], float] = lambda now: now,
                 max_sessions: int = 1024, max_pending: int = 256, max_per_source: int = 16,
                 max_lifetime: int = 3600, pending_timeout: float = 30.0,
                 auth_timeout: float = 5.0, coa_binding: bool = True,
                 token_sessions: int = 1, replay_memory: int = 65536,
                 closed_memory: int = 4096, inside: "tuple[str, ...] | None" = None,
                 reforward_after: float = 2.0, reforward_max: float = 8.0):
        if authorization is None:
            authorization = "none" if keys is None else "token"
        if authorization not in AUTH_MODES:
            raise ValueError(f"authorization is one of {AUTH_MODES}")
        if authorization in ("token", "token-or-pull") and keys is None:
            raise ValueError(f"authorization={authorization!r} needs keys")
        if min(max_sessions, max_pending, max_per_source, token_sessions, replay_memory) < 1:
            raise ValueError("bounds must be positive")
        self.keys = keys
        self.authorization = authorization
        self.wall_clock = wall_clock
        self.max_sessions, self.max_pending = max_sessions, max_pending
        self.max_per_source = max_per_source
        self.max_lifetime, self.pending_timeout = max_lifetime, pending_timeout
        self.auth_timeout, self.coa_binding = auth_timeout, coa_binding
        self.token_sessions, self.replay_memory = token_sessions, replay_memory
        self.reforward_after = reforward_after
        # at most this long: a forward that was lost (a routing state toward the NR that
        # went down under the same load, say) is sent again by then
        self.reforward_max = reforward_max
        self._answer_srtt: float | None = None   # the NR's answers (see reforward_wait)
        self._answer_rttvar = 0.0
        # the prefixes behind this NF when it is the edge of a network (EXT handled here)
        self.inside = None if inside is None else tuple(
            ipaddress.IPv6Network(p, strict=False) for p in inside)
        self.sessions: dict[bytes, _NfSession] = {}
        self._per_source: Counter = Counter()
        self._pending = 0
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self._closed_memory = closed_memory
        # (key id, token id) -> (session ids bound, token end as Unix time)
        self._tokens: OrderedDict[tuple, tuple[tuple[bytes, ...], float]] = OrderedDict()
        self._token_bytes: dict[tuple, bytes] = {}   # a bound token's bytes: its parse is dropped with it
        self._token_of: dict[bytes, tuple] = {}     # session -> the token it is bound to
        self._requests: dict[int, bytes] = {}
        self._next_request = 1
        self.counters: Counter = Counter()

    # -- bookkeeping

    @property
    def reforward_wait(self) -> float:
        """How long after a forward a retransmission of the same request is absorbed
        rather than forwarded again (see the module docstring)."""
        if self._answer_srtt is None:
            return self.reforward_after
        rto = self._answer_srtt + 4 * self._answer_rttvar
        return max(self.reforward_after, min(rto, self.reforward_max, self.pending_timeout / 2))

    def _answer_time(self, sample: float) -> None:
        """RFC 6298's estimator (alpha 1/8, beta 1/4) over the NR's answer times."""
        if self._answer_srtt is None:
            self._answer_srtt, self._answer_rttvar = sample, sample / 2
        else:
            self._answer_rttvar += (abs(self._answer_srtt - sample) - self._answer_rttvar) / 4
            self._answer_srtt += (sample - self._answer_srtt) / 8

    @property
    def pending_count(self) -> int:
        return self._pending

    def _track(self, s: _NfSession, before: bool):
        """Keep the pending count in step after `s` changed (`before`: was it pending)."""
        after = self._is_pending(s)
        if before != after:
            self._pending += 1 if after else -1

    def _is_pending(self, s: _NfSession) -> bool:
        return s.pending is not None or s.auth_request is not None

    def _refuse(self, sid, mri, msn, pair, why, object_type=0, *,
                upstream: bool = True) -> list[Action]:
        self.counters[f"refused.{why}"] += 1
        msg = w.response(msn or 0, w.InfoCode.of(pair, object_type))
        return [_send(sid, mri, msg, upstream=upstream),
                Event("natfw.refused", {"session": sid.hex(), "reason": why,
                                        "class": pair[0], "code": pair[1]})]

    def _close(self, sid, reason) -> list[Action]:
        s = self.sessions.pop(sid, None)
        self._closed[sid] = None
        while len(self._closed) > self._closed_memory:
            self._closed.popitem(last=False)
        out: list[Action] = [StopTimer(("expire", sid)), StopTimer(("pending", sid))]
        # A closed session no longer counts against its token's sessions (the session id
        # itself can never come back: it is remembered as closed).
        self._unbind_token(sid)
        if s is None:
            return out
        if self._is_pending(s):
            self._pending -= 1
        if s.auth_request is not None:
            self._requests.pop(s.auth_request, None)
            out.append(StopTimer(("auth", s.auth_request)))
        self._per_source[s.source] -= 1
        if self._per_source[s.source] <= 0:
            del self._per_source[s.source]
        if s.installed:
            out.append(RemovePinhole(sid, reason))
            self.counters["pinholes_removed"] += 1
        out.append(Event("natfw.closed", {"session": sid.hex(), "reason": reason}))
        return out

    # -- authorization

    def _token_check(self, sid, msg, flow: PinholeFlow, now,
                     ext: bool = False) -> tuple[str | None, int | None, tuple | None]:
        """(refusal reason or None, lifetime cap from the token's END_TIME, what
        _same_token needs to recognise the same token again)."""
        auth = msg.get(w.SessionAuth)
        if auth is None:
            return "no token", None, None
        wall = self.wall_clock(now)
        try:
            raw = w.encode_object(auth)
            claims = verify_token(raw, self.keys, wall)
        except TokenError as err:
            if err.reason in ("unknown key id", "bad signature"):
                return "forged", None, None
            if err.reason in ("expired", "not yet valid"):
                return "expired", None, None
            return "malformed token", None, None
        why = self._source_check(claims, flow, ext)
        if why is None and not self._flow_allowed(claims, flow, ext):
            why = "flow not authorized"
        if why is None:
            why = self._bind_token(sid, claims, wall, flow.mri.destination if ext else flow.mri.source)
            if why is None:
                self._token_bytes.setdefault((claims.key_id, claims.token_id), raw)
        return why, max(1, int(claims.end - wall)), (auth, claims.key_id,
                                                     self.keys.get(claims.key_id), claims.end,
                                                     flow)

    def _same_token(self, s: "_NfSession | None", msg, flow: PinholeFlow, now) -> int | None:
        """The lifetime cap when this CREATE of an open session carries the very token
        its last authorization verified, for the same flow, its key still configured and
        its END_TIME not passed (a retransmission: the NI's retries under the same
        session ID carry new MSNs, RFC 5973 3.5; or a refresh); else None: verify it in
        full. Nothing skipped could decide otherwise: the HMAC, the claims and the flow
        allowances are those of the same bytes and flow, and the session is already one
        of those bound to the token (its binding leaves only with the session)."""
        v = s.verified if s is not None and not s.ext else None
        if v is None:
            return None
        auth, key_id, key, end, verified_flow = v
        if verified_flow != flow or msg.get(w.SessionAuth) != auth \
                or self.keys.get(key_id) is not key:
            return None
        wall = self.wall_clock(now)
        if wall >= end:
            return None
        self.counters["token_check_skipped"] += 1
        return max(1, int(end - wall))

    def _source_check(self, claims: AuthToken, flow: PinholeFlow,
                      ext: bool = False) -> str | None:
        """Is the MN's end of the flow (the source of a CREATE's flow, the destination
        of an EXT's) the token's home address, or a CoA the MIP6 flow object ties to it?"""
        hoa = ipaddr.ip6(claims.hoa)
        named = flow.mip6.home_address if flow.mip6 is not None else None
        if named is not None and ipaddr.ip6(named) != hoa:
            return "another MN"
        mn_end = flow.mri.destination if ext else flow.mri.source
        if ipaddr.ip6(mn_end) == hoa:
            return None
        if self.coa_binding and named is not None:
            return None                 # a CoA-sourced flow of the MN with this HoA
        return "another MN"

    @staticmethod
    def _flow_allowed(claims: AuthToken, flow: PinholeFlow, ext: bool = False) -> bool:
        m = flow.mri
        if ext:
            # inbound: the allowances name the peer, here the data sender; the HA's
            # tunnel comes from the MN's own home agent and needs none
            if flow.mip6 is not None and flow.mip6.kind == w.MIP6_TUNNEL:
                return True
            return claims.allows(m.protocol, m.source, m.source_port)
        ports = [m.destination_port] + ([m.destination_port + 1] if flow.sub_ports else [])
        return all(claims.allows(m.protocol, m.destination, p) for p in ports if p <= 0xFFFF)

    def _unbind_token(self, sid) -> None:
        """The session no longer counts against the token it was bound to. A token no open
        session is bound to is forgotten, its parse too: binding it again is what binding
        it the first time is (every re-authentication brings a new token, and the store
        kept each until it filled)."""
        key = self._token_of.pop(sid, None)
        if key in self._tokens:
            bound, end = self._tokens[key]
            bound = tuple(b for b in bound if b != sid)
            if bound:
                self._tokens[key] = (bound, end)
            else:
                del self._tokens[key]
                forget_token(self._token_bytes.pop(key, b""))

    def _bind_token(self, sid, claims: AuthToken, wall, mn_end: str) -> str | None:
        key = (claims.key_id, claims.token_id)
        entry = self._tokens.get(key)
        if entry is not None:
            bound, end = entry
            if sid in bound:
                return None
            ends = self._care_of_ends(bound, claims.hoa)
            if ends and ipaddr.ip6(mn_end) != ipaddr.ip6(claims.hoa) \
                    and ipaddr.ip6(mn_end) not in ends:
                return "token used from another address"
            if len(bound) >= self.token_sessions:
                return "replayed token"
            self._unbind_token(sid)     # a session re-authorized by a newer token leaves the old
            self._tokens[key] = (bound + (sid,), end)
            self._token_of[sid] = key
            return None
        if len(self._tokens) >= self.replay_memory:
            for k in [k for k, (_, end) in self._tokens.items() if end <= wall]:
                del self._tokens[k]
                forget_token(self._token_bytes.pop(k, b""))
            if len(self._tokens) >= self.replay_memory:
                return "token store full"
        self._unbind_token(sid)
        self._tokens[key] = ((sid,), claims.end)
        self._token_of[sid] = key
        return None

    def _care_of_ends(self, bound: tuple[bytes, ...], hoa: str) -> set:
        """The care-of addresses (MN ends other than the token's home address) of the
        open sessions bound to a token, as installed, pending or last authorized: where
        the MN that holds the token signals from."""
        home = ipaddr.ip6(hoa)
        ends = set()
        for b in bound:
            s = self.sessions.get(b)
            if s is None:
                continue
            for flow in (s.flow, s.authorized_flow, s.pending[2] if s.pending else None):
                if flow is not None:
                    end = ipaddr.ip6(flow.mri.destination if s.ext else flow.mri.source)
                    if end != home:
                        ends.add(end)
        return ends

    # -- messages

    def receive(self, session_id: bytes, mri: Mri, data: bytes, now: float, *,
                upstream: bool = False, peer: str | None = None) -> list[Action]:
        """A NATFW message GIST delivered; `upstream` is its direction of travel and
        `peer` the GIST peer it came from (the per-source bound's key, if given)."""
        msg = None
        if not upstream:
            # A retransmission or refresh of the session's last CREATE (only its MSN
            # differs) needs no decode; everything after the decode still runs.
            s = self.sessions.get(session_id)
            if s is not None and s.last_create is not None:
                msg = w.with_other_msn(*s.last_create, data)
                if msg is not None:
                    self.counters["create_repeats_decoded_fast"] += 1
        fresh = msg is None
        if fresh:
            try:
                msg = w.decode(data)
            except w.NslpDecodeError as err:
                self.counters["malformed"] += 1
                if upstream:                   # never answer an answer
                    return [Event("natfw.malformed", {"reason": err.reason})]
                return self._refuse(session_id, mri, 0, err.info, "malformed", err.object_type)
        if msg.msg_type == w.CREATE and not upstream:
            actions = self._on_create(session_id, mri, msg, data, now, peer or mri.source)
            s = self.sessions.get(session_id)
            if fresh and s is not None and msg.raw:
                offset = w.msn_offset(msg.raw)
                if offset is not None:
                    s.last_create = (msg.raw, msg, offset)
            return actions
        if msg.msg_type == w.EXT and upstream:
            return self._on_ext(session_id, mri, msg, data, now, peer)
        if msg.msg_type == w.RESPONSE and upstream:
            return self._on_response(session_id, mri, msg, now)
        if msg.msg_type == w.NOTIFY and upstream:
            self.counters["notify_forwarded"] += 1
            return [SendNslp(session_id, mri, bytes(data), True, True)]
        self.counters["unexpected"] += 1
        return []

    def _is_inside(self, address: str) -> bool:
        a = ipaddr.ip6(address)
        return any(a in net for net in self.inside or ())

    def _on_ext(self, sid, mri, msg, data, now, peer) -> list[Action]:
        """An EXT travelling upstream (toward the data sender): handled here when this
        NF is the edge for the flow's destination (see the module docstring)."""
        if self.inside is None:
            return self._refuse(sid, mri, msg.msn, w.ERR_NO_EDGE_DEVICE_HERE,
                                "no edge device here", upstream=False)
        if not self._is_inside(mri.destination) or (peer is not None
                                                    and not self._is_inside(peer)):
            return self._refuse(sid, mri, msg.msn, w.ERR_EXT_ON_EXTERNAL_SIDE,
                                "EXT on external side", upstream=False)
        s = self.sessions.get(sid)
        if s is not None and not s.ext:
            return self._refuse(sid, mri, msg.msn, w.ERR_ILLEGAL_MESSAGE_TYPE,
                                "EXT for a CREATE session", upstream=False)
        return self._on_create(sid, mri, msg, data, now, peer or mri.destination, ext=True)

    def _on_create(self, sid, mri, msg, data, now, source, ext: bool = False) -> list[Action]:
        """A CREATE (or, with `ext`, an EXT at the edge): checks, authorization, then
        forwarded downstream (CREATE) or installed here (EXT)."""
        up = not ext                      # which way answers go: toward the NI
        s = self.sessions.get(sid)
        msn, lifetime = msg.msn, msg.lifetime
        if s is not None and not w.serial_newer(msn, s.msn):
            self.counters["stale_msn"] += 1
            return [Event("natfw.stale", {"session": sid.hex(), "msn": msn, "have": s.msn})]
        if lifetime == 0:
            if s is None:
                self.counters["unexpected"] += 1
                return []
            self.counters["teardowns"] += 1
            fwd = [SendNslp(sid, mri, bytes(data), True, False)] if s.forwarded else []
            return self._close(sid, "teardown") + fwd
        if s is None and sid in self._closed:
            return self._refuse(sid, mri, msn, w.ERR_AUTHORIZATION_FAILED, "closed session",
                                upstream=up)
        if lifetime > self.max_lifetime:
            return self._refuse(sid, mri, msn, w.ERR_LIFETIME_TOO_BIG, "lifetime too big",
                                w.T_LT, upstream=up)
        efi = msg.get(w.ExtFlowInfo)
        flow = PinholeFlow(mri, efi.action, efi.sub_ports, msg.get(w.Mip6Flow))
        # bounds first: a flood is refused before any crypto or AAA round trip
        if s is None:
            if len(self.sessions) >= self.max_sessions:
                return self._refuse(sid, mri, msn, w.ERR_RESOURCES_UNAVAILABLE, "max sessions",
                                    upstream=up)
            if self._per_source[source] >= self.max_per_source:
                return self._refuse(sid, mri, msn, w.ERR_RESOURCES_UNAVAILABLE,
                                    "max per source", upstream=up)
        if (s is None or not self._is_pending(s)) and self._pending >= self.max_pending:
            return self._refuse(sid, mri, msn, w.ERR_RESOURCES_UNAVAILABLE, "max pending",
                                upstream=up)
        # authorization
        use_token = self.authorization == "token" or (
            self.authorization == "token-or-pull" and msg.get(w.SessionAuth) is not None)
        pull = self.authorization == "pull" or (
            self.authorization == "token-or-pull" and not use_token)
        cap = verified = None
        if use_token and (cap := self._same_token(s, msg, flow, now)) is not None:
            verified = s.verified
        elif use_token:
            why, cap, verified = self._token_check(sid, msg, flow, now, ext)
            if why is not None:
                pair = w.ERR_AUTHENTICATION_FAILED if why in _AUTHN else (
                    w.ERR_RESOURCES_UNAVAILABLE if why == "token store full"
                    else w.ERR_AUTHORIZATION_FAILED)
                return self._refuse(sid, mri, msn, pair, why, w.T_SESSION_AUTH, upstream=up)
        if s is None:
            s = self.sessions[sid] = _NfSession(mri, flow, source, msn, ext=ext)
            self._per_source[source] += 1
        if pull and s.authorized_flow != flow:
            return self._pull(sid, s, msg, msn, lifetime, flow, now)
        s.authorized_flow = flow
        if use_token:
            s.cap = cap
        s.verified = verified
        return self._proceed(sid, s, msg, msn, lifetime, flow, now)

    def _pull(self, sid, s: _NfSession, msg, msn, lifetime, flow, now) -> list[Action]:
        out: list[Action] = []
        before = self._is_pending(s)
        if s.auth_request is not None:          # a newer CREATE replaces the held one
            self._requests.pop(s.auth_request, None)
            out.append(StopTimer(("auth", s.auth_request)))
        rid = self._next_request
        self._next_request += 1
        self._requests[rid] = sid
        s.auth_request, s.held, s.msn = rid, (msg, msn, lifetime, flow), msn
        self._track(s, before)
        self.counters["authorize_requests"] += 1
        mn_end = flow.mri.destination if s.ext else flow.mri.source
        return out + [AuthorizeRequest(rid, sid, flow, mn_end),
                      StartTimer(("auth", rid), now + self.auth_timeout),
                      Event("natfw.authorizing", {"session": sid.hex(), "request": rid})]

    def authorization_result(self, request_id: int, allowed: bool, reason: str,
                             max_lifetime: int | None, now: float) -> list[Action]:
        """The AAA side's answer to `AuthorizeRequest(request_id, ...)`."""
        sid = self._requests.pop(request_id, None)
        s = self.sessions.get(sid) if sid is not None else None
        if s is None or s.auth_request != request_id:
            self.counters["late_auth_result"] += 1
            return []
        msg, msn, lifetime, flow = s.held
        before = self._is_pending(s)
        s.auth_request = s.held = None
        self._track(s, before)
        out: list[Action] = [StopTimer(("auth", request_id))]
        if not allowed:
            return out + self._pull_refused(sid, s, msn, "pull denied", reason)
        s.authorized_flow = flow
        s.cap = max_lifetime if max_lifetime is None else max(1, int(max_lifetime))
        self.counters["authorized"] += 1
        return out + self._proceed(sid, s, msg, msn, lifetime, flow, now)

    def _pull_refused(self, sid, s, msn, why, detail="") -> list[Action]:
        out = self._refuse(sid, s.mri, msn, w.ERR_AUTHORIZATION_FAILED, why,
                           w.T_SESSION_AUTH, upstream=not s.ext)
        if detail:
            out.append(Event("natfw.pull_refused", {"session": sid.hex(), "detail": detail}))
        if not s.installed:
            out += self._close(sid, why)
        return out

    def _proceed(self, sid, s: _NfSession, msg, msn, lifetime, flow, now) -> list[Action]:
        if s.ext:
            return self._install_ext(sid, s, msg, msn, lifetime, flow, now)
        return self._forward(sid, s, msg, msn, lifetime, flow, now)

    def _install_ext(self, sid, s: _NfSession, msg, msn, lifetime, flow, now) -> list[Action]:
        """The edge's answer to an authorized EXT: install now, RESPONSE downstream."""
        lt = min([lifetime, self.max_lifetime] + ([s.cap] if s.cap is not None else []))
        s.msn = msn
        s.installed, s.expires, s.flow, s.mri = True, now + lt, flow, flow.mri
        self.counters["pinholes_installed"] += 1
        self.counters["ext_installed"] += 1
        nonce = msg.get(w.Nonce)
        answer = w.response(msn, w.InfoCode.of(w.INFO_SUCCESS), lt,
                            *((nonce,) if nonce is not None else ()))
        return [StopTimer(("pending", sid)), InstallPinhole(sid, flow, lt),
                StartTimer(("expire", sid), s.expires),
                _send(sid, flow.mri, answer, upstream=False),
                Event("natfw.installed", {"session": sid.hex(), "lifetime": lt, "ext": True})]

    def _forward(self, sid, s: _NfSession, msg, msn, lifetime, flow, now) -> list[Action]:
        caps = [lifetime, self.max_lifetime] + ([s.cap] if s.cap is not None else [])
        lt = min(caps)
        same = s.pending is not None and s.pending[1:] == (lt, flow)
        # A retransmission (same request, newer MSN) of a request forwarded moments ago
        # is not forwarded again: the NR's answer to the MSN forwarded completes the NI,
        # which still waits for every MSN it sent. Under a burst whose answers come
        # later than the NIs' timeout, forwarding each one multiplied the work of the
        # firewall and the NR (4,000 CREATEs of 1,000 MNs: ~12,000 retransmissions).
        # One forwarded longer ago is sent again (the first may have been lost).
        if same and now - s.forwarded_at < self.reforward_wait:
            s.msn = msn
            self.counters["retransmissions_absorbed"] += 1
            return []
        # The same, arriving after the NR's success was forwarded: answered here, with
        # the lifetime that state has left (the NI refreshes from that).
        a = s.answered
        if a is not None and s.pending is None and s.installed and a[1:] == (lt, flow) \
                and now - a[0] < min(RETRANSMISSION_WINDOW, (s.expires - a[0]) / 4):
            s.msn = msn
            self.counters["retransmissions_answered"] += 1
            left = max(1, int(s.expires - now))
            return [_send(sid, s.mri, w.response(msn, w.InfoCode.of(w.INFO_SUCCESS), left),
                          upstream=True)]
        if lt != lifetime:
            msg = w.NslpMessage(w.CREATE, tuple(w.Lifetime(lt) if isinstance(o, w.Lifetime)
                                                else o for o in msg.objects), msg.proxy)
        # unchanged: on as it came (its bytes are its encoding), else encoded
        before = self._is_pending(s)
        s.pending_msns = (s.pending_msns + (msn,))[-PENDING_MSNS:] if same else (msn,)
        s.pending, s.msn, s.forwarded = (msn, lt, flow), msn, True
        s.forwarded_at = now
        self._track(s, before)
        self.counters["creates_forwarded"] += 1
        return [StartTimer(("pending", sid), now + self.pending_timeout),
                SendNslp(sid, flow.mri, msg.raw or msg.encode(), True, False),
                Event("natfw.pending", {"session": sid.hex(), "msn": msn, "lifetime": lt})]

    def _on_response(self, sid, mri, msg, now) -> list[Action]:
        s = self.sessions.get(sid)
        # The answer to the newest CREATE, or to an earlier retransmission of the same
        # request: when the NR's answers take longer than the NI's retransmission
        # timeout, every answer was to an MSN already superseded, and under load no
        # session completed (4,000 CREATEs from 1,000 MNs: 0 installed).
        if s is None or s.pending is None or msg.msn not in s.pending_msns:
            self.counters["unmatched_response"] += 1
            return []
        last, asked, flow = s.pending
        if s.pending_msns == (last,) == (msg.msn,):
            # the answer to a request forwarded once: how long answers take (Karn: an
            # answer to a request forwarded again could be to either forward)
            self._answer_time(max(0.0, now - s.forwarded_at))
        before = self._is_pending(s)
        s.pending, s.pending_msns = None, ()
        self._track(s, before)
        out: list[Action] = [StopTimer(("pending", sid))]
        if not msg.info.success:
            self.counters["nr_refusals"] += 1
            fwd = _send(sid, s.mri, msg, upstream=True)
            if not s.installed:
                out += self._close(sid, "refused")
            return out + [fwd]
        granted = min(asked, msg.lifetime if msg.lifetime is not None else asked)
        if granted < 1:
            granted = 1
        s.installed, s.expires, s.flow, s.mri = True, now + granted, flow, flow.mri
        s.answered = (now, asked, flow)
        self.counters["pinholes_installed"] += 1
        fwd = w.response(msg.msn, msg.info, granted)
        # the NR's own RESPONSE when that is what goes on (its bytes as they came)
        data = msg.raw if msg.raw and fwd == msg else fwd.encode()
        return out + [InstallPinhole(sid, s.flow, granted), StartTimer(("expire", sid), s.expires),
                      SendNslp(sid, s.mri, data, True, True),
                      Event("natfw.installed", {"session": sid.hex(), "lifetime": granted})]

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        kind, ident = key
        if kind == "auth":
            sid = self._requests.pop(ident, None)
            s = self.sessions.get(sid) if sid is not None else None
            if s is None or s.auth_request != ident:
                return []
            _, msn, _, _ = s.held
            before = self._is_pending(s)
            s.auth_request = s.held = None
            self._track(s, before)
            return self._pull_refused(sid, s, msn, "authorization timeout")
        s = self.sessions.get(ident)
        if s is None:
            return []
        if kind == "pending" and s.pending is not None:
            self.counters["pending_timeouts"] += 1
            before = self._is_pending(s)
            s.pending, s.pending_msns = None, ()
            self._track(s, before)
            return [] if s.installed else self._close(ident, "no response")
        if kind == "expire" and s.installed and now >= s.expires:
            self.counters["expired"] += 1
            mri = s.mri
            # the NOTIFY goes toward the NI: upstream for a CREATE, downstream for an EXT
            return self._close(ident, "expired") + [_send(
                ident, mri, w.notify(w.InfoCode.of(w.ERR_SESSION_TERMINATED)),
                upstream=not s.ext)]
        return []


# ---------------------------------------------------------------- NR


Policy = Callable[[bytes, Mri, w.NslpMessage], "tuple[int, int] | None"]


def consent(*allow: Callable[[Mri, "w.Mip6Flow | None"], bool],
            refuse: tuple[int, int] = w.ERR_POLICY_DENIED) -> Policy:
    """An NR policy: consent when any `allow(mri, mip6_flow)` holds, else refuse with
    `refuse` (default (0x7, 0x04), the rule is denied by the NR's policy)."""
    def policy(sid, mri, msg):
        mip6 = msg.get(w.Mip6Flow)
        return None if any(a(mri, mip6) for a in allow) else refuse
    return policy


def mh_types(*types: int) -> Callable[[Mri, "w.Mip6Flow | None"], bool]:
    """A `consent` predicate: Mobility Header flows of these MH types (RFC 6275)."""
    wanted = frozenset(types)
    return lambda mri, mip6: (mri.protocol == 135 and mip6 is not None
                              and mip6.kind == w.MIP6_MH and mip6.mh_type in wanted)


class NrCore:
    """NATFW responder (the CN). `policy(session_id, mri, create)` returns None to
    accept or the (class, code) information code to refuse with; the default accepts.
    Session state is bounded by `max_sessions` and by the granted lifetimes."""

    def __init__(self, policy: Policy | None = None, max_lifetime: int = 3600,
                 max_sessions: int = 4096):
        self.policy = policy or (lambda sid, mri, msg: None)
        self.max_lifetime, self.max_sessions = max_lifetime, max_sessions
        self.sessions: dict[bytes, tuple[int, float]] = {}    # sid -> (msn, expires)
        self.counters: Counter = Counter()

    def receive(self, session_id: bytes, mri: Mri, data: bytes, now: float) -> list[Action]:
        try:
            msg = w.decode(data)
        except w.NslpDecodeError as err:
            self.counters["malformed"] += 1
            return [_send(session_id, mri, w.response(0, w.InfoCode.of(err.info,
                                                                        err.object_type)), True)]
        if msg.msg_type != w.CREATE:
            self.counters["unexpected"] += 1
            return []
        have = self.sessions.get(session_id)
        if have is not None and have[1] <= now:
            self.sessions.pop(session_id)
            have = None
        if have is not None and not w.serial_newer(msg.msn, have[0]):
            self.counters["stale_msn"] += 1
            return []
        if msg.lifetime == 0:
            self.sessions.pop(session_id, None)
            self.counters["teardowns"] += 1
            return []
        refusal = self.policy(session_id, mri, msg)
        if refusal is not None:
            self.counters["refused"] += 1
            self.sessions.pop(session_id, None)
            return [_send(session_id, mri, w.response(msg.msn, w.InfoCode.of(refusal)), True),
                    Event("natfw.nr_refused", {"session": session_id.hex(),
                                               "class": refusal[0], "code": refusal[1]})]
        if have is None and len(self.sessions) >= self.max_sessions:
            for sid in [k for k, (_, exp) in self.sessions.items() if exp <= now]:
                del self.sessions[sid]
            if len(self.sessions) >= self.max_sessions:
                self.counters["refused.max sessions"] += 1
                return [_send(session_id, mri, w.response(
                    msg.msn, w.InfoCode.of(w.ERR_RESOURCES_UNAVAILABLE)), True)]
        granted = min(msg.lifetime, self.max_lifetime)
        self.sessions[session_id] = (msg.msn, now + granted)
        self.counters["accepted"] += 1
        return [_send(session_id, mri, w.response(msg.msn, w.InfoCode.of(w.INFO_SUCCESS),
                                                  granted), True)]


__all__ = ["Mri", "PinholeFlow", "InstallPinhole", "RemovePinhole", "SendNslp",
           "DeliverResponse", "DeliverNotify", "SessionReady", "SessionFailed",
           "AuthorizeRequest", "NiCore", "NfCore", "NrCore", "consent", "mh_types",
           "AUTH_MODES"]
