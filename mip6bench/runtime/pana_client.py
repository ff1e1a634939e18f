"""The PaC side of Mobile IPv6 bootstrapping on the asyncio runtime: PacCore over UDP 716
(unicast PCI to a known PAA, or multicast PCI with the Router Alert option, see
mip6bench.net.rao), EAP-PSK with the MN's NAI and key, and the bootstrap result handed to
whoever composes it (the MN agent, or agents/pac.py on its own).

    client = PanaClient(PanaClientConfig(nai=..., psk=..., paa=..., discovery=...),
                        emit=agent.emit, on_update=callback)
    await client.open()          # socket (or an in-memory transport) and driver
    client.start()               # send the PCI; also the "pana-start" control command
    client.reauthenticate() / client.terminate() / client.ping(paa=None)
    client.restart_delay(update)   # after "closed": when to start again (RestartPolicy)
    await client.close()
    client.bootstrap             # the current Bootstrap (None before/after a session)
    client.commands()            # control commands to merge into an agent's commands()

`on_update(update: BootstrapUpdate)` is called on the loop, synchronously, when
    "ready"    the first (re-)authentication completed: update.bootstrap has ha, hoa,
               home_prefix, the MobilitySA (key derived from the MSK, expires_at on the
               loop clock = CLOCK_MONOTONIC), the NSIS token, and `sources` saying for
               each item whether PANA granted it or the static configuration filled in
               (the PAA ignored the extension or refused an item: StaticConfigFallback);
    "rekeyed"  a re-authentication brought a new SA (new SPI); update.old_spi is the
               SA to remove once the new one is installed;
    "revoked"  the SA went away without replacement (re-authentication without an SA);
    "closed"   the PANA session ended (terminated, expired, failed, PAA unreachable):
               update.reason, update.cause (the PAA's Termination-Cause when it ended
               the session with a PTR); update.old_spi is the SA that went with it.
An MN installs update.bootstrap.sa in its SAStore (store.replace), removes old_spi, and
registers with update.bootstrap.ha for update.bootstrap.hoa.

Composed into an agent (what agents/pac.py does; the MN agent likewise):

    self.client = PanaClient(config, emit=self.emit, on_update=self.on_bootstrap)
    await self.client.open()            # in start()
    self.client.start()                 # once the MN has a care-of address
    commands(): {**self.client.commands(), ...}   # resolve self.client per request
    await self.client.close()           # in stop()

Restarting (RestartPolicy, used by the MN agent): a session the PaC ended itself stays
ended; one that failed starts again at once, then with backoff (1 s doubling to 60 s)
while it keeps failing; one the PAA terminated with Termination-Cause ADMINISTRATIVE
(this PAA does so when a newer session of the same NAI superseded it, and on its
`terminate` command; the PaC cannot tell the two apart) logs pana.superseded and starts
again at once, then after 1 s, 2 s, ...: a session opening in between does not reset
that count, only one that stays open 60 s (or pana-start) does, and after 3 such
terminations in a row the client stops (pana.superseded gave_up=true) until
pana-start. Two MNs configured with the same credentials therefore take the session
from each other a bounded number of times (about 6 s), then the one that gave up stays
out and says so.

Events (the agent's log): PacCore's "pana.*" (pana.pci_sent, pana.handshake,
pana.session_open, pana.reauth_done, pana.session_closed, pana.drop, ...) and
"bootstrap.ready|rekeyed|revoked|closed" with session_id, ha, hoa, spi, lifetime,
token_len, sources and `messages` (PANA messages sent and received in the session so
far, the PAN[C] included).
"""
from __future__ import annotations

import ipaddress
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from mip6bench.eap.peer import psk_peer_factory
from mip6bench.eap.psk_crypto import psk_from_hex
from mip6bench.errors import ParameterError
from mip6bench.net import rao
from mip6bench.pana import effects as fx
from mip6bench.pana import mip6
# The pure part lives in mip6bench.pana.bootstrap; re-exported for existing imports.
from mip6bench.pana.bootstrap import (PANA_RESTART_MAX_S, SUPERSEDED_MAX,  # noqa: F401
                                      SUPERSEDED_STABLE_S, Bootstrap, BootstrapTracker,
                                      BootstrapUpdate, RestartDecision, RestartPolicy,
                                      StaticMip6)
from mip6bench.pana.channel import PCI_RETRANSMIT, REQ_RETRANSMIT, RetransmitPolicy
from mip6bench.pana.message import PANA_PORT
from mip6bench.pana.pac import PacConfig, PacCore, PacState, PciTransmit
from mip6bench.sansio import Action, Effect, Transmit

class Transport(Protocol):
    def send(self, data: bytes, dst: str, port: int, discovery: str | None) -> None: ...
    def close(self) -> None: ...


@dataclass
class PanaClientConfig:
    nai: str
    psk: bytes = field(repr=False)
    paa: str                                # PAA address, or the discovery group
    discovery: str = "unicast"              # "unicast" | "multicast"
    interface: str | None = None            # egress of the multicast PCI
    bind: str = "::"
    port: int = PANA_PORT                   # local port (0: any, for tests)
    paa_port: int = PANA_PORT
    rao_value: int = rao.DISCOVERY_RAO
    hop_limit: int = rao.DEFAULT_HOP_LIMIT
    request: int = mip6.REQUEST_ALL         # 0: plain PANA, no extension
    sa_proposal: mip6.SaParameters | None = None
    static: StaticMip6 | None = None
    expected_server_id: str | None = None
    reauth_fraction: float = 0.8
    pci_retransmit: RetransmitPolicy = PCI_RETRANSMIT
    req_retransmit: RetransmitPolicy = REQ_RETRANSMIT

    def __post_init__(self):
        if self.discovery not in ("unicast", "multicast"):
            raise ValueError("discovery must be 'unicast' or 'multicast'")
        address = ipaddress.IPv6Address(self.paa)
        if (self.discovery == "multicast") != address.is_multicast:
            raise ValueError(f"discovery {self.discovery!r} does not fit PAA address {self.paa}")
        if self.discovery == "multicast" and not self.interface:
            raise ValueError("multicast discovery needs the egress interface")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a UDP port (0: any)")
        if not 1 <= self.paa_port <= 65535:
            raise ValueError(f"paa_port {self.paa_port} is not a UDP port")


# The last bootstrap updates the client keeps (for a look in a debugger or a test): one
# comes with every re-authentication, so they are bounded; `updates_total` counts all.
UPDATES_KEPT = 8

REQUEST_NAMES = {"ha_info": mip6.REQUEST_HA_INFO, "home_address": mip6.REQUEST_HOME_ADDRESS,
                 "mip6_sa": mip6.REQUEST_MIP6_SA, "nsis_token": mip6.REQUEST_NSIS_TOKEN}


@dataclass(frozen=True)
class PanaOptions:
    """The PANA client as agent options (JSON): agents/pac.py's options, and the MN agent's
    `pana` option (mip6bench.testbed.bootstrap.BootstrapServices.pac_options builds them)."""

    nai: str
    psk: str                                  # 32 hex digits
    paa: str                                  # PAA address or the discovery group
    discovery: str = "unicast"                # "unicast" | "multicast"
    interface: str | None = None              # egress for multicast discovery
    request: list[str] = field(default_factory=lambda: list(REQUEST_NAMES))
    sa_lifetime: int = 0                      # proposal (0: no preference)
    sa_replay: str = ""                       # proposal: "timestamp" | "sequence" ("": the PAA's choice)
    autostart: bool = True                    # start by itself (else: pana-start)
    port: int = PANA_PORT                     # local UDP port (0: any)
    paa_port: int = PANA_PORT                 # the PAA's (or PRE's) UDP port
    rao_value: int = rao.DISCOVERY_RAO
    hop_limit: int = rao.DEFAULT_HOP_LIMIT
    pci_irt: float = PCI_RETRANSMIT.irt
    reauth_fraction: float = 0.8
    expected_server_id: str | None = None

    def client_config(self, static: StaticMip6 | None = None,
                      interface: str | None = None) -> PanaClientConfig:
        """The PanaClientConfig; ParameterError names what is wrong. `interface` stands in
        for the option when given (an MN knows where it is attached)."""
        unknown = [r for r in self.request if r not in REQUEST_NAMES]
        if unknown:
            raise ParameterError(f"unknown request items {unknown}", f"known: {sorted(REQUEST_NAMES)}")
        replay = {"": 0, "timestamp": mip6.REPLAY_TIMESTAMP, "sequence": mip6.REPLAY_SEQUENCE}
        if self.sa_replay not in replay:
            raise ParameterError(f"sa_replay={self.sa_replay!r}", "choose timestamp or sequence")
        flags = 0
        for name in self.request:
            flags |= REQUEST_NAMES[name]
        psk = psk_from_hex(self.psk)
        try:
            return PanaClientConfig(
                nai=self.nai, psk=psk, paa=self.paa, discovery=self.discovery,
                interface=interface or self.interface, port=self.port,
                paa_port=self.paa_port, rao_value=self.rao_value,
                hop_limit=self.hop_limit, request=flags,
                sa_proposal=mip6.SaParameters(replay=replay[self.sa_replay], lifetime=self.sa_lifetime)
                if self.sa_lifetime or self.sa_replay else None,
                static=static, expected_server_id=self.expected_server_id,
                reauth_fraction=self.reauth_fraction,
                pci_retransmit=RetransmitPolicy(self.pci_irt, PCI_RETRANSMIT.mrt,
                                                PCI_RETRANSMIT.mrc, PCI_RETRANSMIT.mrd))
        except ValueError as exc:
            raise ParameterError(str(exc)) from None


class PanaClient:
    COMMANDS = ("pana-start", "pana-reauth", "pana-terminate", "pana-ping", "pana-status")

    def __init__(self, config: PanaClientConfig, *, emit: Callable[..., None],
                 on_update: Callable[[BootstrapUpdate], None] | None = None,
                 transport: Transport | None = None, rng: random.Random | None = None,
                 on_error: Callable[[str, BaseException], None] | None = None):
        self.config = config
        self.emit = emit
        self.on_update = on_update
        self.on_error = on_error or (lambda what, exc: emit("pana.io_error", what=what,
                                                            error=str(exc)))
        self.transport = transport
        new_peer = psk_peer_factory(config.nai, config.psk,
                                    expected_server_id=config.expected_server_id)
        self.core = PacCore(PacConfig(
            paa_address=config.paa, new_eap_peer=new_peer, nai=config.nai,
            discovery=config.discovery, paa_port=config.paa_port, mip6_request=config.request,
            mip6_sa_proposal=config.sa_proposal, reauth_fraction=config.reauth_fraction,
            pci_retransmit=config.pci_retransmit, req_retransmit=config.req_retransmit),
            rng=rng)
        self.tracker = BootstrapTracker(config.nai, config.static)
        self.restarts = RestartPolicy(irt=config.pci_retransmit.irt)
        self.updates: deque[BootstrapUpdate] = deque(maxlen=UPDATES_KEPT)
        self.updates_total = 0
        self.sent = self.received = 0
        self._session_messages = 0
        self._driver = None

    # ---- lifecycle
    async def open(self) -> None:
        from mip6bench.runtime.driver import CoreDriver
        if self.transport is None:
            self.transport = _UdpTransport(self.config, self._datagram, self.on_error)
        self._driver = CoreDriver(send=self._send, on_timer=self.core.handle_timer,
                                  apply_batch=self._effects, emit=self.emit)

    async def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    @property
    def bootstrap(self) -> Bootstrap | None:
        return self.tracker.current

    # ---- commands
    def start(self) -> bool:
        if self.core.state not in (PacState.IDLE, PacState.CLOSED):
            return False
        self._session_messages = 0
        self._run(self.core.start(self._now()))
        return True

    def reauthenticate(self) -> bool:
        return self._run(self.core.reauthenticate(self._now()))

    def terminate(self) -> bool:
        return self._run(self.core.terminate(self._now()))

    def ping(self, paa: str | None = None, port: int | None = None) -> bool:
        """PNR[P]; `paa`: the PANA agent (PRE or PAA) to talk to from now on."""
        if paa is not None:
            paa = str(ipaddress.IPv6Address(paa))
        return self._run(self.core.ping(self._now(), paa, port))

    def restart_delay(self, update: BootstrapUpdate) -> float | None:
        """After a "closed" update: seconds until the session should start again, None
        for never (see RestartPolicy); logs pana.superseded when the PAA ended it
        administratively."""
        decision = self.restarts.decide(update.reason, update.cause, self._now())
        if decision.superseded:
            self.emit("pana.superseded", session_id=self.core.session_id,
                      count=decision.count, delay_s=decision.delay,
                      gave_up=decision.delay is None)
        return decision.delay

    def status(self) -> dict[str, Any]:
        return {"state": self.core.state.value, "session_id": self.core.session_id,
                "paa": self.core.paa.address if self.core.paa else None,
                "bootstrap": self.bootstrap.summary() if self.bootstrap else None,
                "sent": self.sent, "received": self.received, "updates": self.updates_total,
                "superseded": self.restarts.superseded,
                "drops": dict(self.core.counters)}

    def commands(self) -> dict[str, Callable]:
        async def start(_req):
            self.restarts.reset()      # an explicit start ends any run of give-ups
            return {"started": self.start()}

        async def reauth(_req):
            return {"started": self.reauthenticate()}

        async def terminate(_req):
            return {"terminating": self.terminate()}

        async def ping(req):
            return {"sent": self.ping(req.get("paa"), req.get("port"))}

        async def status(_req):
            return self.status()

        return {"pana-start": start, "pana-reauth": reauth, "pana-terminate": terminate,
                "pana-ping": ping, "pana-status": status}

    # ---- plumbing
    def _now(self) -> float:
        if self._driver is None:
            raise RuntimeError("PanaClient.open() first")
        return self._driver.now()

    def _datagram(self, data: bytes, src: str, port: int) -> None:
        self.received += 1
        self._session_messages += 1
        self._run(self.core.receive(data, src.split("%", 1)[0], self._now(), port))

    def _run(self, actions: list[Action]) -> bool:
        if not actions:
            return False
        self._driver.execute(actions)
        return True

    def _effects(self, effects: list[Effect]) -> None:
        """The driver's apply_batch: one call's effects, after its transmits, timers and
        events, folded into bootstrap updates."""
        now = self._now()
        if any(isinstance(a, fx.PanaSessionOpen) and not a.reauthentication for a in effects):
            self.restarts.opened(now)
        for update in self.tracker.apply(effects, now):
            self.updates.append(update)
            self.updates_total += 1
            b = update.bootstrap
            fields = {"reason": update.reason or None, "old_spi": update.old_spi,
                      "messages": self._session_messages}
            if update.cause is not None:
                fields["cause"] = update.cause
            if b is not None:
                fields.update(b.summary())
                fields.pop("expires_at", None)
            self.emit(f"bootstrap.{update.kind}", **fields)
            if self.on_update is not None:
                self.on_update(update)

    def _send(self, tx: Transmit) -> None:
        self.sent += 1
        self._session_messages += 1
        self.transport.send(tx.data, tx.dst, tx.port or self.config.paa_port,
                            tx.discovery if isinstance(tx, PciTransmit) else None)


class _UdpTransport:
    def __init__(self, config: PanaClientConfig, on_datagram, on_error):
        from mip6bench.runtime.udp import UdpSocket
        self.config = config
        self.sock = UdpSocket.bind(config.bind, config.port, on_datagram, on_error=on_error)
        self.on_error = on_error

    def send(self, data: bytes, dst: str, port: int, discovery: str | None) -> None:
        if discovery == "multicast":
            try:
                rao.send_with_router_alert(self.sock.sock, data, dst, port,
                                           self.config.rao_value, self.config.interface,
                                           self.config.hop_limit)
            except OSError as exc:
                self.on_error("send", exc)
            return
        self.sock.send(data, dst, port)

    def close(self) -> None:
        self.sock.close()


async def open_for_mobile_node(spec: dict[str, Any], *, home: tuple[str | None, str | None, str | None],
                               static_sa, interface: str, emit: Callable[..., None],
                               on_update: Callable[[BootstrapUpdate], None]) -> tuple[PanaClient, PanaOptions]:
    """The MN agent's PANA client from its ``pana`` option (PanaOptions as JSON), its
    socket open. The static home configuration (ha, hoa, home prefix) and SA, where
    given, fill in what the PAA does not grant."""
    from mip6bench.errors import Mip6benchError
    from mip6bench.runtime.config import parse_options

    try:
        options = parse_options(PanaOptions, spec)
    except ParameterError as exc:
        raise ParameterError(f"option 'pana': {exc}") from None
    ha, hoa, prefix = home
    static = None
    if hoa is not None or static_sa is not None:
        static = StaticMip6(ha, hoa, prefix, *((static_sa.spi, static_sa.key, static_sa.algorithm, static_sa.replay)
                                               if static_sa else ()))
    config = options.client_config(static, interface=interface)
    client = PanaClient(config, emit=emit, on_update=on_update)
    try:
        await client.open()
    except OSError as exc:
        raise Mip6benchError(f"cannot open the PANA socket (UDP {config.port}): {exc.strerror}") from None
    return client, options
