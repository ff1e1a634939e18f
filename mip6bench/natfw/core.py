"""Sans-I/O NATFW NSLP cores (RFC 5973): NI (data sender, the MN), NF (the firewall),
NR (data receiver, the CN). GIST delivers `(session_id, mri, data, now)`; every method
returns a list of actions (mip6bench.sansio) and effects defined here.

Direction: CREATE travels downstream (NI -> NR), RESPONSE and NOTIFY upstream.
`SendNslp.upstream` says which way GIST must send (upstream = back along the reverse
path state of the session).

NF behaviour: a CREATE is checked (codec, state bounds, token), kept pending and
forwarded downstream; nothing is installed until the NR's success RESPONSE with the
same MSN comes back, then `InstallPinhole` (also for refreshes: the runtime replaces
the rule of that session) and the RESPONSE goes upstream. Refusals (NR or NF) never
install anything. A CREATE whose MSN is not newer (RFC 1982) than the session's is
dropped and counted; lifetime 0 tears down at once (`RemovePinhole`) and is forwarded;
an installed rule not refreshed before its lifetime ends is removed (`RemovePinhole`
reason "expired") and the NI gets a NOTIFY (session terminated). Bounds:
`max_sessions` (installed + pending, default 1024) and `max_pending` (default 256);
a CREATE beyond them is refused with (0x4, 0x01) "resources not available".
"""
from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping

from mip6bench.aaa.token import TokenError, verify_token
from mip6bench.sansio import Action, Effect, Event, StartTimer, StopTimer
from mip6bench.natfw import wire as w


@dataclass(frozen=True)
class Mri:
    """The path-coupled MRI's flow as plain values (GIST builds the real object)."""
    source: str
    destination: str
    protocol: int = 0
    source_port: int = 0
    destination_port: int = 0

    def __post_init__(self):
        object.__setattr__(self, "source", str(ipaddress.IPv6Address(self.source)))
        object.__setattr__(self, "destination", str(ipaddress.IPv6Address(self.destination)))


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


@dataclass(frozen=True)
class DeliverResponse(Effect):
    """At the NI: the outcome of a CREATE (info.success tells)."""
    session_id: bytes
    info: w.InfoCode
    lifetime: int | None


@dataclass(frozen=True)
class DeliverNotify(Effect):
    session_id: bytes
    info: w.InfoCode


def _send(sid, mri, msg: w.NslpMessage, upstream: bool) -> SendNslp:
    return SendNslp(sid, mri, msg.encode(), True, upstream)


# ---------------------------------------------------------------- NI


@dataclass
class _NiSession:
    mri: Mri
    msn: int
    lifetime: int
    objects: tuple
    established: bool = False


class NiCore:
    """NATFW initiator (the MN). `create()` starts or refreshes (same session id, next
    MSN) a session; `teardown()` sends lifetime 0; refreshes are sent on a timer at
    `refresh_fraction` of the granted lifetime."""

    def __init__(self, token: bytes | None = None, msn_start: int = 1,
                 refresh_fraction: float = 0.5):
        self.token = token
        self._next_msn = msn_start & 0xFFFFFFFF
        self.refresh_fraction = refresh_fraction
        self.sessions: dict[bytes, _NiSession] = {}
        self.counters: Counter = Counter()

    def _msn(self) -> int:
        v = self._next_msn
        self._next_msn = (v + 1) & 0xFFFFFFFF
        return v

    def _create(self, sid, s: _NiSession) -> list[Action]:
        extra = list(s.objects)
        if self.token is not None:
            extra.append(w.decode_object(_reader(self.token)))
        msg = w.NslpMessage(w.CREATE, (w.Lifetime(s.lifetime), *extra[:1], w.Msn(s.msn),
                                       *extra[1:]))
        self.counters["create_sent"] += 1
        return [_send(sid, s.mri, msg, upstream=False)]

    def create(self, session_id: bytes, mri: Mri, lifetime: int, now: float, *,
               action: int = w.ACTION_ALLOW, sub_ports: int = 0,
               mip6: w.Mip6Flow | None = None) -> list[Action]:
        objs = (w.ExtFlowInfo(action, sub_ports),) + ((mip6,) if mip6 else ())
        old = self.sessions.get(session_id)
        s = _NiSession(mri, self._msn(), lifetime, objs, old.established if old else False)
        self.sessions[session_id] = s
        return self._create(session_id, s) + [Event("natfw.create", {
            "session": session_id.hex(), "msn": s.msn, "lifetime": lifetime})]

    def teardown(self, session_id: bytes, now: float) -> list[Action]:
        s = self.sessions.pop(session_id, None)
        if s is None:
            return []
        s.msn, s.lifetime = self._msn(), 0
        return self._create(session_id, s) + [StopTimer(("refresh", session_id))]

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
                self.sessions.pop(session_id)
                out.append(StopTimer(("refresh", session_id)))
            return out
        if msg.msg_type != w.RESPONSE or s is None or msg.msn != s.msn:
            self.counters["unexpected"] += 1
            return []
        out = [DeliverResponse(session_id, msg.info, msg.lifetime)]
        if msg.info.success:
            s.established = True
            granted = msg.lifetime if msg.lifetime is not None else s.lifetime
            s.lifetime = granted
            out.append(StartTimer(("refresh", session_id), now + granted * self.refresh_fraction))
        else:
            self.sessions.pop(session_id)
        return out

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        _, sid = key
        s = self.sessions.get(sid)
        if s is None:
            return []
        s.msn = self._msn()
        return self._create(sid, s)


def _reader(data: bytes):
    from mip6bench.codec import Reader
    return Reader(bytes(data))


# ---------------------------------------------------------------- NF


@dataclass
class _NfSession:
    mri: Mri
    flow: PinholeFlow
    msn: int                          # newest MSN accepted
    pending: tuple[int, int] | None   # (msn, lifetime) awaiting the NR's RESPONSE
    installed: bool = False
    expires: float = 0.0


class NfCore:
    """NATFW forwarder (the firewall). `keys` (key id -> key) turns token checking on:
    then every CREATE with a lifetime must carry a valid SESSION_AUTH token. `wall_clock`
    maps the core's monotonic `now` to Unix seconds for token validity."""

    def __init__(self, keys: Mapping[int, bytes] | None = None, *,
                 wall_clock: Callable[[float], float] = lambda now: now,
                 max_sessions: int = 1024, max_pending: int = 256,
                 max_lifetime: int = 3600, pending_timeout: float = 30.0,
                 closed_memory: int = 4096):
        self.keys = keys
        self.wall_clock = wall_clock
        self.max_sessions, self.max_pending = max_sessions, max_pending
        self.max_lifetime, self.pending_timeout = max_lifetime, pending_timeout
        self.sessions: dict[bytes, _NfSession] = {}
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self._closed_memory = closed_memory
        self.counters: Counter = Counter()

    @property
    def pending_count(self) -> int:
        return sum(1 for s in self.sessions.values() if s.pending)

    def _refuse(self, sid, mri, msn, pair, why, object_type=0) -> list[Action]:
        self.counters[f"refused.{why}"] += 1
        msg = w.response(msn or 0, w.InfoCode.of(pair, object_type))
        return [_send(sid, mri, msg, upstream=True),
                Event("natfw.refused", {"session": sid.hex(), "reason": why,
                                        "class": pair[0], "code": pair[1]})]

    def _close(self, sid, reason) -> list[Action]:
        s = self.sessions.pop(sid, None)
        self._closed[sid] = None
        while len(self._closed) > self._closed_memory:
            self._closed.popitem(last=False)
        out: list[Action] = [StopTimer(("expire", sid)), StopTimer(("pending", sid))]
        if s is not None and s.installed:
            out.append(RemovePinhole(sid, reason))
            self.counters["pinholes_removed"] += 1
        return out

    def _check_token(self, msg: w.NslpMessage, mri: Mri, mip6, now) -> str | None:
        if self.keys is None:
            return None
        auth = msg.get(w.SessionAuth)
        if auth is None:
            return "no token"
        token = w.encode_object(auth)
        bound = mip6.home_address if mip6 is not None and mip6.home_address else mri.source
        try:
            claims = verify_token(token, self.keys, self.wall_clock(now), hoa=bound)
        except TokenError as err:
            return {"unknown key id": "forged", "bad signature": "forged",
                    "address mismatch": "another MN's token"}.get(
                        err.reason, "expired" if err.reason in ("expired", "not yet valid")
                        else "malformed token")
        if not claims.allows(mri.protocol, mri.destination, mri.destination_port):
            return "flow not authorized"
        return None

    def receive(self, session_id: bytes, mri: Mri, data: bytes, now: float, *,
                upstream: bool = False) -> list[Action]:
        """A NATFW message GIST delivered; `upstream` is its direction of travel."""
        try:
            msg = w.decode(data)
        except w.NslpDecodeError as err:
            self.counters["malformed"] += 1
            if upstream:                   # never answer an answer
                return [Event("natfw.malformed", {"reason": err.reason})]
            return self._refuse(session_id, mri, 0, err.info, "malformed", err.object_type)
        if msg.msg_type == w.CREATE and not upstream:
            return self._on_create(session_id, mri, msg, data, now)
        if msg.msg_type == w.RESPONSE and upstream:
            return self._on_response(session_id, mri, msg, data, now)
        if msg.msg_type == w.NOTIFY and upstream:
            return [SendNslp(session_id, mri, bytes(data), True, True)]
        self.counters["unexpected"] += 1
        return []

    def _on_create(self, sid, mri, msg, data, now) -> list[Action]:
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
            return self._close(sid, "teardown") + [SendNslp(sid, mri, bytes(data), True, False)]
        if s is None and sid in self._closed:
            return self._refuse(sid, mri, msn, w.ERR_AUTHORIZATION_FAILED, "replayed")
        if lifetime > self.max_lifetime:
            return self._refuse(sid, mri, msn, w.ERR_LIFETIME_TOO_BIG, "lifetime too big",
                                w.T_LT)
        mip6 = msg.get(w.Mip6Flow)
        why = self._check_token(msg, mri, mip6, now)
        if why is not None:
            return self._refuse(sid, mri, msn, w.ERR_AUTHORIZATION_FAILED, why,
                                w.T_SESSION_AUTH)
        if s is None and len(self.sessions) >= self.max_sessions:
            return self._refuse(sid, mri, msn, w.ERR_RESOURCES_UNAVAILABLE, "max sessions")
        if (s is None or s.pending is None) and self.pending_count >= self.max_pending:
            return self._refuse(sid, mri, msn, w.ERR_RESOURCES_UNAVAILABLE, "max pending")
        efi = msg.get(w.ExtFlowInfo)
        flow = PinholeFlow(mri, efi.action, efi.sub_ports, mip6)
        if s is None:
            s = self.sessions[sid] = _NfSession(mri, flow, msn, None)
        elif flow != s.flow:
            return self._refuse(sid, mri, msn, w.ERR_POLICY_DENIED, "flow changed")
        s.msn, s.pending = msn, (msn, lifetime)
        self.counters["creates_forwarded"] += 1
        return [SendNslp(sid, mri, bytes(data), True, False),
                StartTimer(("pending", sid), now + self.pending_timeout),
                Event("natfw.pending", {"session": sid.hex(), "msn": msn})]

    def _on_response(self, sid, mri, msg, data, now) -> list[Action]:
        s = self.sessions.get(sid)
        if s is None or s.pending is None or s.pending[0] != msg.msn:
            self.counters["unmatched_response"] += 1
            return []
        _, asked = s.pending
        s.pending = None
        out: list[Action] = [StopTimer(("pending", sid))]
        if not msg.info.success:
            self.counters["nr_refusals"] += 1
            if not s.installed:
                out += self._close(sid, "refused")
            return out + [SendNslp(sid, mri, bytes(data), True, True)]
        granted = min(asked, msg.lifetime if msg.lifetime is not None else asked)
        s.installed, s.expires = True, now + granted
        self.counters["pinholes_installed"] += 1
        fwd = w.response(msg.msn, msg.info, granted)
        return out + [InstallPinhole(sid, s.flow, granted), StartTimer(("expire", sid), s.expires),
                      _send(sid, mri, fwd, upstream=True)]

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        kind, sid = key
        s = self.sessions.get(sid)
        if s is None:
            return []
        if kind == "pending" and s.pending is not None:
            self.counters["pending_timeouts"] += 1
            s.pending = None
            if not s.installed:
                return self._close(sid, "no response")
            return []
        if kind == "expire" and s.installed and now >= s.expires:
            self.counters["expired"] += 1
            return self._close(sid, "expired") + [_send(
                sid, s.mri, w.notify(w.InfoCode.of(w.ERR_SESSION_TERMINATED)), upstream=True)]
        return []


# ---------------------------------------------------------------- NR


Policy = Callable[[bytes, Mri, w.NslpMessage], "tuple[int, int] | None"]


class NrCore:
    """NATFW responder (the CN). `policy(session_id, mri, create)` returns None to
    accept or the (class, code) information code to refuse with; the default accepts."""

    def __init__(self, policy: Policy | None = None, max_lifetime: int = 3600):
        self.policy = policy or (lambda sid, mri, msg: None)
        self.max_lifetime = max_lifetime
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
            return [_send(session_id, mri, w.response(msg.msn, w.InfoCode.of(refusal)), True)]
        granted = min(msg.lifetime, self.max_lifetime)
        self.sessions[session_id] = (msg.msn, now + granted)
        self.counters["accepted"] += 1
        return [_send(session_id, mri, w.response(msg.msn, w.InfoCode.of(w.INFO_SUCCESS),
                                                  granted), True)]
