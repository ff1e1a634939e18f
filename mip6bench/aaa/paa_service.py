"""The PAA as one sans-I/O core: PaaCore + an EAP pass-through authenticator per
(re-)authentication + an AAA backend + the SA distribution channel to the HA + the
firewall's authorization pull (mip6bench.aaa.authz) on the same port.

    svc = PaaService(PaaServiceConfig(...), rng=None)
    svc.receive(data, src, port, now, via="pana" | "radius" | "sadist")
    svc.handle_timer(key, now)                     # every timer any part armed
    svc.start(now)                                 # when the agent starts: the SA distribution's HELLOs
    svc.terminate(session_id, now) / svc.reauthenticate(session_id, now) / ...

The effects the parts produce for each other are consumed inside (SendToAAA ->
RADIUS Access-Request or the in-process EAP server; RADIUS answers -> EAP pass-through
-> PaaCore.aaa_result; MipSaEstablished/Revoked -> SA push/revoke or the pull table), so
what comes out is ServiceTransmit (with `via` "pana" | "radius" | "sadist": which
socket sends it), StartTimer/StopTimer, Event, and PanaSessionOpen/PanaSessionClosed
for the runtime to log.

Backends:
    "radius"  a RadiusClientCore toward a RADIUS server (the embedded AAA agent or
              hostapd); the verdict comes from Access-Accept/Reject, the MSK from the
              MS-MPPE keys, the user's fixed Home Address from Framed-IPv6-Address.
    "local"   an in-process mip6bench.eap.EapServer per conversation with a
              credentials table (for benchmarks and tests: no RADIUS hop).
Identity: the NAI handed to PaaCore is the authenticated one: with "radius" the EAP-PSK
ID_P the pass-through relay forwarded in message 2 (MAC_P covers it; hostapd's
Access-Accept names nobody) or the Accept's User-Name (the embedded AAA sends ID_P
there; both present and different: none, counted), with "local" the EapServer's
peer_id. PaaCore refuses a success whose identity differs from the EAP Identity
Response.
Home Address policy: the HoA the AAA server names for the user (Framed-IPv6-Address,
or the credentials' third field with "local"), else the `hoa_table` entry, else random
from the home prefix ("random") or none ("table" only). An AAA-named HoA outside the
home prefix is ignored (event "paa.bad_aaa_hoa").

Authorization pull: with `authz` configured, datagrams on the SA distribution port whose
sender role is the firewall's go to an AuthzPaaCore (the rest to the HA channel's core),
which answers from the live sessions: every PanaSessionOpen (open or re-authenticated,
with the session's NAI, Home Address, PaC address and lifetime), every AUTH-verified
address change (event pana.pac_address_changed), supersession and PanaSessionClosed
update its table, and at decision time it asks PaaCore whether the session is still
open (not terminating, not failing a re-authentication).

A pass-through discard (an EAP response that answers no outstanding request), an AAA
timeout or an AAA answer without usable EAP all end the phase as an authentication
failure, so no session ever waits for an answer that will not come.
"""
from __future__ import annotations

import ipaddress
import os
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Hashable, Mapping

from mip6bench import ipaddr
from mip6bench.aaa.authz import AuthzConfig, AuthzPaaCore, is_authz_datagram
from mip6bench.aaa.radius_client import (RadiusAnswer, RadiusClientConfig, RadiusClientCore,
                                         RadiusTimeout)
from mip6bench.aaa.sadist import SaDistConfig, SaDistPaaCore, record_from_effect
from mip6bench.eap.actions import EapFailed, EapStatus, EapSucceeded, RelayToBackend, SendEap
from mip6bench.eap.passthrough import EapPassThrough
from mip6bench.pana import effects as fx
from mip6bench.pana.mip6 import table_or_random_hoa
from mip6bench.pana.paa import PaaConfig, PaaCore, PaaState
from mip6bench.randompool import PooledSystemRandom
from mip6bench.sansio import Action, Event, StartTimer, StopTimer, Transmit, quick_init

if TYPE_CHECKING:  # imported on first use: only the local backend needs the EAP server
    from mip6bench.eap.server import EapServer


@quick_init
@dataclass(frozen=True)
class ServiceTransmit(Transmit):
    """A datagram of the PAA service; `via` names the socket it leaves from."""

    via: str = field(default="pana", kw_only=True)


@dataclass
class PaaServiceConfig:
    paa: PaaConfig                                   # mip6 policy inside (or None)
    backend: str = "radius"                          # "radius" | "local"
    radius: RadiusClientConfig | None = None
    credentials: Callable[[str], bytes | None] | None = None   # "local" backend
    fixed_hoa: Callable[[str], str | None] = lambda nai: None  # "local" backend
    server_id: str = "aaa.mip6bench.example"         # "local" backend (EAP-PSK ID_S)
    sadist: SaDistConfig | None = None
    authz: AuthzConfig | None = None                 # the firewall's authorization pull
    hoa_table: Mapping[str, str] = field(default_factory=dict)
    hoa_mode: str = "random"                         # "random" | "table"

    def __post_init__(self):
        if self.backend not in ("radius", "local"):
            raise ValueError("backend must be 'radius' or 'local'")
        if self.backend == "radius" and self.radius is None:
            raise ValueError("the radius backend needs a RadiusClientConfig")
        if self.backend == "local" and self.credentials is None:
            raise ValueError("the local backend needs credentials")
        if self.hoa_mode not in ("random", "table"):
            raise ValueError("hoa_mode must be 'random' or 'table'")


class PaaService:
    def __init__(self, config: PaaServiceConfig, rng: random.Random | None = None):
        self.config = config
        # identifiers, nonces, authenticators and jitter, no keys: from a pool of the
        # kernel's random bytes (mip6bench.randompool), not one getrandom(2) a value
        self.rng = rng or PooledSystemRandom()
        self.counters: Counter[str] = Counter()
        self._aaa_hoa: dict[str, str] = {}
        paa_cfg = replace(config.paa, first_eap_request=self._first_eap_request)
        if paa_cfg.mip6 is not None:
            paa_cfg.mip6 = replace(paa_cfg.mip6, assign_hoa=self._assign_hoa)
            prefix = paa_cfg.mip6.home_prefix
            self._network = ipaddress.IPv6Network(prefix)
            self._fallback_hoa = table_or_random_hoa(prefix, dict(config.hoa_table))
        else:
            self._network = None
            self._fallback_hoa = None
        self.paa = PaaCore(paa_cfg, rng=self.rng)
        self.radius = RadiusClientCore(config.radius, rng=_bytes_from(self.rng)) \
            if config.backend == "radius" else None
        self.sadist = SaDistPaaCore(config.sadist, rng=self.rng) if config.sadist else None
        self.authz = AuthzPaaCore(config.authz, rng=self.rng, live=self._session_live) \
            if config.authz else None
        self._passthrough: dict[int, EapPassThrough] = {}
        self._servers: dict[int, EapServer] = {}
        self._radius_state: dict[int, bytes | None] = {}

    # ---- input
    def receive(self, data: bytes, src: str, port: int, now: float, via: str = "pana"
                ) -> list[Action]:
        if via == "pana":
            out = self.paa.receive(data, src, now, port)
        elif via == "radius" and self.radius is not None:
            out = self.radius.receive(data, src, port, now)
        elif via == "sadist" and self.authz is not None and is_authz_datagram(data):
            out = self.authz.receive(data, src, port, now)
        elif via == "sadist" and self.sadist is not None:
            out = self.sadist.receive(data, src, port, now)
        elif via == "sadist" and self.authz is not None:
            self.counters["drop: not the firewall's"] += 1
            out = [Event("paa.drop", {"reason": "SA distribution datagram, no HA channel",
                                      "src": src})]
        else:
            raise ValueError(f"no {via!r} part in this PAA")
        return self._process(out, via, now)

    def handle_timer(self, key: Hashable, now: float) -> list[Action]:
        owner = key[0] if isinstance(key, tuple) and key else None
        if owner == "pana-paa":
            return self._process(self.paa.handle_timer(key, now), "pana", now)
        if owner == "radius-client" and self.radius is not None:
            return self._process(self.radius.handle_timer(key, now), "radius", now)
        if owner == "sadist-paa" and self.sadist is not None:
            return self._process(self.sadist.handle_timer(key, now), "sadist", now)
        return []

    def start(self, now: float) -> list[Action]:
        """What the service sends when it starts: a HELLO to each HA of the SA
        distribution (see mip6bench.aaa.sadist, HELLO)."""
        if self.sadist is None:
            return []
        return self._tag(self.sadist.hello(now), "sadist")

    # ---- commands (PaaCore's)
    def terminate(self, session_id: int, now: float) -> list[Action]:
        return self._process(self.paa.terminate(session_id, now), "pana", now)

    def reauthenticate(self, session_id: int, now: float) -> list[Action]:
        return self._process(self.paa.reauthenticate(session_id, now), "pana", now)

    def ping(self, session_id: int, now: float) -> list[Action]:
        return self._process(self.paa.ping(session_id, now), "pana", now)

    # ---- composition
    def _first_eap_request(self, session_id: int) -> bytes:
        pt = EapPassThrough(rng=_bytes_from(self.rng))
        self._passthrough[session_id] = pt
        self._radius_state[session_id] = None
        self._servers.pop(session_id, None)
        (start,) = [a for a in pt.start() if isinstance(a, SendEap)]
        return start.packet

    def _assign_hoa(self, nai: str, live: frozenset, rng: random.Random) -> str | None:
        hoa = self._aaa_hoa.get(nai)
        if hoa is not None and hoa not in live:
            return hoa
        if self.config.hoa_mode == "table":
            table = self.config.hoa_table
            return table.get(nai) if table.get(nai) not in live else None
        return self._fallback_hoa(nai, live, rng)

    def _process(self, actions: list[Action], via: str, now: float) -> list[Action]:
        out: list[Action] = []
        routes = _ROUTES
        for action in actions:
            route = routes.get(action.__class__) or _route_of(action.__class__)
            if route is _OUT:                   # timers, other effects: the runtime's
                out.append(action)
            elif route is _TRANSMIT:
                out.append(ServiceTransmit(action.data, action.dst, action.src, action.port,
                                           via=via))
            elif route is _EVENT:
                if self.authz is not None and action.name in _AUTHZ_EVENTS:
                    if action.name == "pana.superseded":
                        self.authz.session_closed(action.fields["session_id"])
                    else:
                        self.authz.session_moved(action.fields["session_id"],
                                                 action.fields["new"])
                out.append(action)
            else:
                route(self, action, via, now, out)
        return out

    # what _process does with each kind of action the parts return (by class, see _ROUTES)
    def _on_send_to_aaa(self, action: fx.SendToAAA, via: str, now: float, out: list) -> None:
        out += self._to_backend(action, now)

    def _on_aaa_cancel(self, action: fx.AaaCancel, via: str, now: float, out: list) -> None:
        out += self._cancel(action.session_id)

    def _on_radius(self, action, via: str, now: float, out: list) -> None:
        out += self._from_radius(action, now)

    def _on_sa_established(self, action: fx.MipSaEstablished, via: str, now: float,
                           out: list) -> None:
        out.append(Event("paa.sa_established", {
            "session_id": action.session_id, "nai": action.nai, "hoa": action.hoa,
            "ha": action.ha, "spi": action.spi, "lifetime": action.lifetime,
            "algorithm": action.algorithm}))
        if self.sadist is not None:
            out += self._tag(self.sadist.sa_established(record_from_effect(action), now),
                             "sadist")

    def _on_sa_revoked(self, action: fx.MipSaRevoked, via: str, now: float,
                       out: list) -> None:
        out.append(Event("paa.sa_revoked", {"session_id": action.session_id,
                                            "spi": action.spi, "reason": action.reason}))
        if self.sadist is not None:
            out += self._tag(self.sadist.sa_revoked(action.spi, action.hoa, action.reason,
                                                    now), "sadist")

    def _on_session_open(self, action: fx.PanaSessionOpen, via: str, now: float,
                         out: list) -> None:
        if self.authz is not None:
            session = self.paa.sessions.get(action.session_id)
            out += self.authz.session_open(action.session_id, action.nai,
                                           session.hoa if session else None,
                                           action.peer, action.lifetime, now)
        out.append(action)

    def _on_session_closed(self, action: fx.PanaSessionClosed, via: str, now: float,
                           out: list) -> None:
        self._forget(action.session_id)
        if self.authz is not None:
            self.authz.session_closed(action.session_id)
        out.append(action)

    def _session_live(self, session_id: int) -> bool:
        session = self.paa.sessions.get(session_id)
        return session is not None and session.ever_open and \
            session.state not in (PaaState.TERMINATING, PaaState.WAIT_FAIL_PAN)

    def _tag(self, actions: list[Action], via: str) -> list[Action]:
        # the parts' datagrams are plain Transmits (by class: no isinstance per action)
        return [ServiceTransmit(a.data, a.dst, a.src, a.port, via=via)
                if a.__class__ is Transmit or isinstance(a, Transmit) else a
                for a in actions]

    def _forget(self, session_id: int) -> None:
        self._passthrough.pop(session_id, None)
        self._servers.pop(session_id, None)
        self._radius_state.pop(session_id, None)

    def _cancel(self, session_id: int) -> list[Action]:
        actions = self._tag(self.radius.cancel(session_id), "radius") if self.radius else []
        self._forget(session_id)
        return actions

    def _fail(self, session_id: int, reason: str, now: float) -> list[Action]:
        self.counters[reason] += 1
        return [Event("paa.aaa_failed", {"session_id": session_id, "reason": reason})] + \
            self._process(self.paa.aaa_result(session_id, "failure", None, None, {}, now),
                          "pana", now)

    def _to_backend(self, effect: fx.SendToAAA, now: float) -> list[Action]:
        sid = effect.session_id
        pt = self._passthrough.get(sid)
        if pt is None:
            return self._fail(sid, "no pass-through state", now)
        packets, events, _ = _split(pt.from_peer(effect.eap_payload), RelayToBackend)
        if not packets:
            return events + self._fail(sid, "EAP response discarded", now)
        if self.config.backend == "local":
            server = self._servers.get(sid)
            if server is None:
                from mip6bench.eap.server import EapServer   # the local backend only
                server = self._servers[sid] = EapServer(self.config.credentials,
                                                        self.config.server_id,
                                                        rng=_bytes_from(self.rng))
            result = pt.from_embedded_server(server, server.receive(packets[0]))
            attrs = {}
            if server.status is EapStatus.SUCCESS and server.peer_id:
                attrs["nai"] = server.peer_id
                hoa = self.config.fixed_hoa(server.peer_id)
                if hoa:
                    attrs["framed_ipv6_address"] = hoa
            return events + self._verdict(sid, result, attrs, now)
        return events + self._tag(self.radius.request(
            sid, packets[0], now, user_name=pt.identity, state=self._radius_state.get(sid),
            calling_station=effect.pac_address or None), "radius")

    def _from_radius(self, answer, now: float) -> list[Action]:
        sid = answer.key
        pt = self._passthrough.get(sid)
        if pt is None:
            self.counters["answer for a gone session"] += 1
            return [Event("paa.drop", {"reason": "AAA answer for a gone session",
                                       "session_id": sid})]
        if isinstance(answer, RadiusTimeout):
            return self._fail(sid, "AAA timeout", now)
        self._radius_state[sid] = answer.state
        accept = {"challenge": None, "accept": True, "reject": False}[answer.code]
        result = pt.from_backend(answer.eap, accept=accept, msk=answer.msk)
        attrs = {}
        if accept:
            nai = self._authenticated_identity(pt, answer.attributes.get("user_name"))
            if nai:
                attrs["nai"] = nai
        if "session_timeout" in answer.attributes:
            attrs["session_timeout"] = answer.attributes["session_timeout"]
        if "framed_ipv6_address" in answer.attributes:
            attrs["framed_ipv6_address"] = answer.attributes["framed_ipv6_address"]
        return self._verdict(sid, result, attrs, now)

    def _verdict(self, sid: int, result: list[Action], attrs: dict, now: float
                 ) -> list[Action]:
        packets, events, done = _split(result, SendEap)
        if not packets:
            return events + self._fail(sid, "AAA answer without usable EAP", now)
        if done is None:
            return events + self._process(self.paa.aaa_result(sid, "continue", packets[-1],
                                                              None, {}, now), "pana", now)
        hoa = attrs.pop("framed_ipv6_address", None)
        if isinstance(done, EapSucceeded):
            nai = attrs.get("nai")   # authenticated; PaaCore refuses a success without
            if hoa and nai:
                if self._network is not None and ipaddr.ip6(hoa) in self._network:
                    self._aaa_hoa[nai] = hoa
                else:
                    events.append(Event("paa.bad_aaa_hoa", {"session_id": sid, "hoa": hoa}))
            kind, msk, emsk = "success", done.msk, done.emsk   # emsk: embedded server only
        else:
            kind, msk, emsk = "failure", None, None
        events.append(Event("paa.aaa_result", {"session_id": sid, "result": kind,
                                               "nai": attrs.get("nai")}))
        return events + self._process(self.paa.aaa_result(sid, kind, packets[-1], msk, attrs,
                                                          now, emsk=emsk), "pana", now)

    def _authenticated_identity(self, pt: EapPassThrough,
                                user_name: str | None) -> str | None:
        """The identity the AAA server authenticated: EAP-PSK's ID_P as relayed in message
        2 (MAC_P covers it; hostapd names nobody in its Access-Accept) or the Accept's
        User-Name (the embedded AAA server sends ID_P there). Never the Identity
        Response, which PaaCore compares with this. Both present and different: none."""
        id_p = pt.authenticated_id
        if id_p and user_name and id_p != user_name:
            self.counters["AAA User-Name differs from ID_P"] += 1
            return None
        return id_p or user_name


# _process's routes, by the action's class: the first of these bases it derives from
# (subclasses included, as isinstance would), looked up once per class.
_OUT, _TRANSMIT, _EVENT = "out", "transmit", "event"
_AUTHZ_EVENTS = ("pana.pac_address_changed", "pana.superseded")
_ROUTE_BASES = ((Transmit, _TRANSMIT), (Event, _EVENT), (StartTimer, _OUT), (StopTimer, _OUT),
                (fx.SendToAAA, PaaService._on_send_to_aaa),
                (fx.AaaCancel, PaaService._on_aaa_cancel),
                (RadiusAnswer, PaaService._on_radius), (RadiusTimeout, PaaService._on_radius),
                (fx.MipSaEstablished, PaaService._on_sa_established),
                (fx.MipSaRevoked, PaaService._on_sa_revoked),
                (fx.PanaSessionOpen, PaaService._on_session_open),
                (fx.PanaSessionClosed, PaaService._on_session_closed))
_ROUTES: dict[type, object] = {}


def _route_of(cls: type):
    route = next((r for base, r in _ROUTE_BASES if issubclass(cls, base)), _OUT)
    _ROUTES[cls] = route
    return route


def _split(actions: list[Action], packet_class: type) -> tuple[list[bytes], list[Event],
                                                                Action | None]:
    """One pass over an EAP authenticator's actions: the packets of `packet_class`
    (SendEap or RelayToBackend), the Events, and the first verdict (EapSucceeded or
    EapFailed), or None."""
    packets: list[bytes] = []
    events: list[Event] = []
    done = None
    for a in actions:
        cls = a.__class__
        if cls is packet_class:
            packets.append(a.packet)
        elif cls is Event:
            events.append(a)
        elif isinstance(a, packet_class):
            packets.append(a.packet)
        elif isinstance(a, Event):
            events.append(a)
        elif done is None and isinstance(a, (EapSucceeded, EapFailed)):
            done = a
    return packets, events, done


def _bytes_from(rng: random.Random) -> Callable[[int], bytes]:
    if isinstance(rng, PooledSystemRandom):
        return rng.bytes_source()
    if isinstance(rng, random.SystemRandom):
        return os.urandom
    return lambda n: rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""
