"""PANA Authentication Agent with the Mobile IPv6 bootstrapping extension.

Composes mip6bench.aaa.paa_service.PaaService (PaaCore + EAP pass-through + RADIUS
client or in-process EAP server + SA distribution toward the HA + the firewall's
authorization pull) with three UDP sockets: PANA on port 716 (unicast, relayed PANA
(RFC 6345) and the discovery group with the Router Alert option, joined on
`interface`), the RADIUS client (any port, to the embedded AAA agent or hostapd) and the
SA distribution channel (port 7716), which also carries the firewalls' authorization
requests (`authz_peers`: firewall address -> path of the PSK file, mode 0600; the flows
a session may open are `token_flows`, as in its token; see mip6bench.aaa.authz).

MIPv6 policy from the options (``mip6`` false: a plain PAA that ignores the extension,
as one that does not know it would): HA address and home prefix (from the testbed plan),
Home Address per user (the AAA's Framed-IPv6-Address, the credentials file's third
field) or random from the home prefix, random unique SPIs, SA lifetime (default and
maximum), NSIS authorization tokens minted with `token_key`, SA push or pull.

Where the first EAP request goes (option `eap_in_first_par`): "auto" (default) puts it
in PAR[S] and falls back to the plain handshake for a PaC that answers that PAR[S] only
with repeated PCIs (OpenPANA's PaC), "always" in PAR[S], "never" in the PAR after the
PAN[S]; see mip6bench.pana.paa.

A newer session of a NAI supersedes the older one: its MIPv6 SA is revoked at the HA
at once and the PaC gets a PTR (Termination-Cause ADMINISTRATIVE), see
mip6bench.pana.paa.

Control commands: sessions, terminate {session_id}, reauth {session_id},
ping {session_id}, counters, wait-event {event, match, after_ns, within}.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: agents/paa.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.aaa.authz import AuthzConfig
from mip6bench.aaa.credentials import load_credentials, read_psk_file
from mip6bench.aaa.paa_service import PaaService, PaaServiceConfig
from mip6bench.aaa.radius_client import RADIUS_AUTH_PORT, RadiusClientConfig
from mip6bench.aaa.sadist import SADIST_PORT, SaDistConfig
from mip6bench.aaa.token import TokenIssuer, parse_flows
from mip6bench.errors import ParameterError
from mip6bench.net import rao
from mip6bench.pana import effects as fx
from mip6bench.pana.discovery import DISCOVERY_GROUP
from mip6bench.pana.message import PANA_PORT
from mip6bench.pana.mip6 import Mip6Policy
from mip6bench.pana.paa import PaaConfig
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.driver import CoreDriver
from mip6bench.runtime.mobility import WaitableEvents
from mip6bench.runtime.udp import UdpSocket


@dataclasses.dataclass(frozen=True)
class Options:
    address: str                          # this PAA's address (NAS-IPv6-Address)
    ha_address: str
    home_prefix: str                      # "2001:db8:1::/64"
    interface: str | None = None          # join the discovery group here (None: no)
    group: str = DISCOVERY_GROUP
    backend: str = "radius"               # "radius" | "local"
    aaa_kind: str = "embedded"            # what the RADIUS server is: "embedded" | "hostapd"
    radius_server: str | None = None
    radius_port: int = RADIUS_AUTH_PORT
    radius_secret: str | None = None
    radius_irt: float = 1.0
    radius_mrc: int = 4
    credentials: str | None = None        # local backend users; HoA table in any mode
    server_id: str = "aaa.mip6bench.example"
    hoa_mode: str = "random"              # "random" | "table"
    session_lifetime: int = 3600
    sa_lifetime: int = 600
    sa_max_lifetime: int = 86400
    sa_mode: str = "push"                 # "push" | "pull"
    sadist_psk: str | None = None         # hex, >= 16 bytes; None: no SA distribution
    sadist_port: int = SADIST_PORT
    token_key: str | None = None          # hex; None: no NSIS token
    token_key_id: int = 1
    token_lifetime: int = 3600
    token_flows: list[str] = dataclasses.field(default_factory=lambda: ["any:::/0"])
    authz_peers: dict = dataclasses.field(default_factory=dict)  # fw address -> PSK file
    authz_max_lifetime: int = 3600        # longest pinhole authorization granted, s
    relays: list[str] = dataclasses.field(default_factory=list)  # RFC 6345 relay addresses
    port: int = PANA_PORT
    mip6: bool = True                     # the MIPv6 bootstrapping extension
    # The first EAP request in PAR[S] ("always"), after the handshake ("never"), or in
    # PAR[S] with the plain handshake for a PaC that ignores it ("auto"): pana.paa
    eap_in_first_par: str = "auto"


def _hex(name: str, text: str, minimum: int) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ParameterError(f"option {name!r} is not hexadecimal") from None
    if len(raw) < minimum:
        raise ParameterError(f"option {name!r} must be at least {minimum} bytes")
    return raw


# effects the PAA service returns that the agent has nothing to do with (PaaCore has
# logged them as events): the driver skips them (CoreDriver(ignore=...), by class)
_INFORMATIVE = (fx.PanaSessionOpen, fx.PanaSessionClosed)


class PaaAgent(WaitableEvents, Agent):
    role = "paa"
    Options = Options
    gc_young_threshold = 10_000     # see Agent.gc_young_threshold

    async def start(self) -> None:
        self._init_waitable()
        o = self.options
        loop_time = time.monotonic  # the loop clock (CoreDriver.now())
        wall_offset = time.time() - loop_time()
        creds = load_credentials(o.credentials) if o.credentials else None
        for relay in o.relays:
            try:
                ipaddress.ip_address(relay)
            except ValueError:
                raise ParameterError(f"option 'relays': {relay!r} is not an IP address",
                                     "list the relay elements' addresses") from None
        try:
            issuer = TokenIssuer(_hex("token_key", o.token_key, 16), o.token_key_id,
                                 o.token_lifetime, parse_flows(o.token_flows)) \
                if o.token_key else None
            policy = Mip6Policy(o.ha_address, o.home_prefix,
                                mint_token=issuer.hook(time.time) if issuer else None,
                                default_lifetime=o.sa_lifetime, max_lifetime=o.sa_max_lifetime)
            radius = None
            if o.backend == "radius":
                if not o.radius_server or not o.radius_secret:
                    raise ParameterError("the radius backend needs radius_server and "
                                         "radius_secret")
                radius = RadiusClientConfig(o.radius_server, o.radius_secret.encode(),
                                            nas_identifier=f"{self.config.node}-paa",
                                            nas_address=o.address, port=o.radius_port,
                                            irt=o.radius_irt, mrc=o.radius_mrc)
            elif creds is None:
                raise ParameterError("the local backend needs a credentials file")
            sadist = SaDistConfig({o.ha_address: _hex("sadist_psk", o.sadist_psk, 16)},
                                  port=o.sadist_port, mode=o.sa_mode,
                                  wall_offset=wall_offset) if o.sadist_psk else None
            authz = AuthzConfig({fw: read_psk_file(path) for fw, path in o.authz_peers.items()},
                                port=o.sadist_port, wall_offset=wall_offset,
                                authority=issuer.issuer if issuer else o.server_id,
                                flows=parse_flows(o.token_flows),
                                max_lifetime=o.authz_max_lifetime) if o.authz_peers else None
            self.service = PaaService(PaaServiceConfig(
                PaaConfig(session_lifetime=o.session_lifetime, mip6=policy if o.mip6 else None,
                          relays=tuple(o.relays), eap_in_first_par=o.eap_in_first_par),
                backend=o.backend, radius=radius,
                credentials=creds.psk if creds else None,
                fixed_hoa=creds.hoa if creds else (lambda nai: None),
                server_id=o.server_id, sadist=sadist, authz=authz,
                hoa_table=creds.hoa_table() if creds else {}, hoa_mode=o.hoa_mode))
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        self.driver = CoreDriver(send=self._send, on_timer=self._on_timer,
                                 apply=lambda effect: None, emit=self.emit,
                                 emit_fields=self.emit_fields, ignore=_INFORMATIVE)
        self.sockets = {}
        self.sockets["pana"] = UdpSocket.bind("::", o.port, self._on("pana"),
                                              on_error=self._io_error)
        if o.interface:
            rao.join_group(self.sockets["pana"].sock, o.group, o.interface)
        if radius is not None:
            self.sockets["radius"] = UdpSocket.bind("::", 0, self._on("radius"),
                                                    on_error=self._io_error)
        if sadist is not None or authz is not None:
            self.sockets["sadist"] = UdpSocket.bind("::", o.sadist_port, self._on("sadist"),
                                                    on_error=self._io_error)
        self.emit("paa.listening", port=o.port, group=o.group if o.interface else None,
                  backend=o.backend, aaa=o.aaa_kind, sa_mode=o.sa_mode, mip6=o.mip6,
                  token=issuer is not None, authz_peers=sorted(authz.peers) if authz else [])
        self._run(self.service.start(self.driver.now()))

    async def stop(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.driver.close()

    # ---- plumbing
    def _on(self, via: str):
        # looked up once: one datagram after another in a burst (the clock is the loop's,
        # CoreDriver.now(): the event loop's time is time.monotonic)
        receive, execute, clock = self.service.receive, self.driver.execute, time.monotonic

        def handler(data: bytes, src: str, port: int) -> None:
            if "%" in src:            # a link-local source's zone
                src = src.split("%", 1)[0]
            execute(receive(data, src, port, clock(), via))
        return handler

    def _on_timer(self, key, now: float):
        return self.service.handle_timer(key, now)   # the driver executes them

    def _run(self, actions) -> None:
        self.driver.execute(actions)

    def _send(self, tx) -> None:
        via = tx.via
        sock = self.sockets.get(via)
        if sock is None:
            self.count(f"no socket for {via}")
            return
        sock.send(tx.data, tx.dst, tx.port)

    def _io_error(self, what: str, exc: BaseException) -> None:
        self.count(f"io error ({what})")
        self.emit("paa.io_error", what=what, error=str(exc))

    # ---- control
    def status(self) -> dict:
        svc = self.service
        out = {"sessions": len(svc.paa.sessions), "pana": dict(svc.paa.counters),
               "service": dict(svc.counters)}
        if svc.radius is not None:
            out["radius"] = dict(svc.radius.counters)
        if svc.sadist is not None:
            out["sadist"] = dict(svc.sadist.counters)
            out["sas"] = len(svc.sadist.table)
        if svc.authz is not None:
            out["authz"] = dict(svc.authz.counters)
            out["authz_sessions"] = len(svc.authz.sessions)
        return out

    def commands(self):   # called before start(): look self.service up per request
        async def sessions(_req):
            svc = self.service
            return [{"session_id": s.session_id, "state": s.state.value, "nai": s.nai,
                     "pac": s.peer.address, "relay": s.peer.relay[0] if s.peer.relay else None,
                     "hoa": s.hoa,
                     "spi": s.mip_sa.spi if s.mip_sa else None}
                    for s in svc.paa.sessions.values()]

        def session_command(method):
            async def handler(req):
                svc = self.service
                sid = int(req["session_id"])
                if sid not in svc.paa.sessions:
                    raise KeyError(f"no session {sid}")
                self._run(getattr(svc, method)(sid, self.driver.now()))
                return {"session_id": sid}
            return handler

        async def counters(_req):
            return self.status()

        return {"sessions": sessions, "terminate": session_command("terminate"),
                "reauth": session_command("reauthenticate"),
                "ping": session_command("ping"), "counters": counters,
                "wait-event": self.cmd_wait_event}


if __name__ == "__main__":
    sys.exit(run(PaaAgent))
