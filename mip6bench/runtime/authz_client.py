"""The firewall's end of the NATFW authorization pull on the asyncio runtime: asks the
PAA whether a pinhole request may be honoured (mip6bench.aaa.authz: the question, the
policy, the wire).

    client = NsisAuthzClient(paa_address, psk, emit=agent.emit, bind=fw_address)
    await client.open()                            # an ephemeral UDP port on `bind`
    decision = await client.authorize(AuthzQuery(...))       # AuthzDecision
    client.submit(request_id, query, on_decision)  # effect style: on_decision(AuthzDecision)
    client.cancel(request_id)
    await client.close()

For the fw agent and mip6bench.natfw.core.NfCore (its AuthorizeRequest effect and
`authorization_result` method):

    self.authz = await authorization_client_for(self, options.authz)
    ...
    if isinstance(effect, AuthorizeRequest):
        self.authz.submit_request(effect, lambda rid, allowed, reason, max_lifetime:
            self._run(self.nf.authorization_result(rid, allowed, reason, max_lifetime,
                                                   self.driver.now())))

`authorization_client_for(agent, config)` takes the agent (its `emit` and `count`) and a
dict (the testbed's BootstrapServices.fw_authz_options()): {"paa": address, "psk_file":
path of the fw-PAA PSK (mode 0600), "port": the PAA's port (7716), "bind": the
firewall's address toward the PAA (the PAA knows the firewall by it), optional "irt",
"mrc", "max_pending"}. `submit_request(request, callback)` takes any object with
`request_id`, `session_id`, `flow` (a natfw PinholeFlow: `mri` with source, destination,
protocol, source_port, destination_port; `sub_ports`; `mip6` with kind, mh_type,
home_address, or None) and `source` (the address the CREATE came from, named to the PAA
as the requester; empty, None or not an IPv6 address: not named), and calls `callback(request_id, allowed,
reason, max_lifetime)` exactly once: with the PAA's answer, or a local denial when the
request cannot be expressed, too many are pending, or the PAA does not answer.
"""
from __future__ import annotations

import asyncio
import ipaddress
import itertools
import random
import time
from typing import Any, Callable

from mip6bench.aaa.authz import (AUTHZ_PORT, MIP6_NONE, AuthzConfig, AuthzDecision,
                                 AuthzFwCore, AuthzQuery)
from mip6bench.sansio import Action, Effect, Transmit

Callback = Callable[[int, bool, str, "int | None"], None]


def query_from_request(request: Any) -> AuthzQuery:
    """The AuthzQuery of a natfw AuthorizeRequest-like object (ValueError if it cannot be
    expressed)."""
    flow = request.flow
    mri = flow.mri
    mip6 = getattr(flow, "mip6", None)
    source = getattr(request, "source", None) or None
    try:
        source = str(ipaddress.IPv6Address(str(source).split("%", 1)[0])) if source else None
    except ValueError:   # not an address (e.g. a label): no requester to check
        source = None
    return AuthzQuery(mri.source, mri.destination, mri.protocol, mri.source_port,
                      mri.destination_port,
                      mip6.kind if mip6 is not None else MIP6_NONE,
                      mip6.mh_type if mip6 is not None else 0,
                      mip6.home_address if mip6 is not None else None,
                      source, bytes(request.session_id), getattr(flow, "sub_ports", 0))


class NsisAuthzClient:
    def __init__(self, paa: str, psk: bytes, *, emit: Callable[..., None], bind: str = "::",
                 port: int = AUTHZ_PORT, irt: float = 0.5, mrc: int = 4,
                 max_pending: int = 256, window: float = 30.0,
                 count: Callable[[str], None] | None = None,
                 rng: random.Random | None = None):
        self.paa = str(ipaddress.IPv6Address(paa))
        self.emit = emit
        self.count = count or (lambda what: None)
        self.bind = bind
        self._config = AuthzConfig({self.paa: psk}, port=port, irt=irt, mrc=mrc,
                                   max_pending=max_pending, window=window)
        self._rng = rng
        self.core: AuthzFwCore | None = None
        self._sock = None
        self._driver = None
        self._callbacks: dict[int, Callable[[AuthzDecision], None]] = {}
        self._ids = itertools.count(1 << 62)     # authorize()'s own request ids

    async def open(self) -> "NsisAuthzClient":
        from mip6bench.runtime.driver import CoreDriver
        from mip6bench.runtime.udp import UdpSocket
        loop = asyncio.get_running_loop()
        self._config.wall_offset = time.time() - loop.time()
        self.core = AuthzFwCore(self._config, rng=self._rng)
        self._driver = CoreDriver(send=self._send, on_timer=self.core.handle_timer,
                                  apply_batch=self._decisions, emit=self.emit)
        self._sock = UdpSocket.bind(self.bind, 0, self._datagram,
                                    on_error=self._io_error)
        return self

    async def close(self) -> None:
        """Stops retransmitting; requests still pending get no answer."""
        self._callbacks.clear()
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def local_port(self) -> int:
        return self._sock.port

    def status(self) -> dict[str, Any]:
        return {"paa": self.paa, "pending": self.core.pending_count if self.core else 0,
                **(dict(self.core.counters) if self.core else {})}

    # ---- asking
    def submit(self, request_id: int, query: AuthzQuery,
               on_decision: Callable[[AuthzDecision], None]) -> None:
        """Ask; `on_decision(AuthzDecision)` runs once, on the loop (possibly at once)."""
        if request_id in self._callbacks:
            raise ValueError(f"request {request_id} is pending already")
        self._callbacks[request_id] = on_decision
        self._run(self.core.request(request_id, query, self._driver.now()))

    def submit_request(self, request: Any, callback: Callback) -> None:
        """The adapter for NfCore's AuthorizeRequest (see the module docstring)."""
        request_id = request.request_id
        try:
            query = query_from_request(request)
        except (ValueError, AttributeError, TypeError) as err:
            self.count("authz request not expressible")
            self.emit("authz.bad_request", request_id=request_id, error=str(err))
            callback(request_id, False, f"authorization request not expressible: {err}", None)
            return
        self.submit(request_id, query, lambda d: callback(d.request_id, d.allowed, d.reason,
                                                          d.max_lifetime))

    async def authorize(self, query: AuthzQuery) -> AuthzDecision:
        future = asyncio.get_running_loop().create_future()
        self.submit(next(self._ids), query,
                    lambda d: future.done() or future.set_result(d))
        return await future

    def cancel(self, request_id: int) -> None:
        self._callbacks.pop(request_id, None)
        self._run(self.core.cancel(request_id))

    # ---- plumbing
    def _datagram(self, data: bytes, src: str, port: int) -> None:
        self._run(self.core.receive(data, src, port, self._driver.now()))

    def _send(self, tx: Transmit) -> None:
        self._sock.send(tx.data, tx.dst, tx.port)

    def _io_error(self, what: str, exc: BaseException) -> None:
        self.count(f"authz io error ({what})")
        self.emit("authz.io_error", what=what, error=str(exc))

    def _run(self, actions: list[Action]) -> None:
        self._driver.execute(actions)

    def _decisions(self, effects: list[Effect]) -> None:
        """The driver's apply_batch: each decision to its callback, at once."""
        for effect in effects:
            if isinstance(effect, AuthzDecision):
                callback = self._callbacks.pop(effect.request_id, None)
                if callback is not None:
                    callback(effect)
            else:
                self.emit("authz.unexpected_effect", effect=type(effect).__name__)


async def authorization_client_for(agent: Any, config: dict[str, Any]) -> NsisAuthzClient:
    """An opened NsisAuthzClient for the fw agent from its options (see the module
    docstring); the PSK is read from its file (refused unless mode 0600)."""
    from mip6bench.aaa.credentials import read_psk_file
    from mip6bench.errors import ParameterError
    unknown = set(config) - {"paa", "psk_file", "port", "bind", "irt", "mrc", "max_pending"}
    if unknown or "paa" not in config or "psk_file" not in config:
        raise ParameterError(f"authorization client options {sorted(config)}",
                             "give paa, psk_file and optionally port, bind, irt, mrc, "
                             "max_pending")
    try:
        client = NsisAuthzClient(config["paa"], read_psk_file(config["psk_file"]),
                                 emit=agent.emit, count=getattr(agent, "count", None),
                                 bind=config.get("bind", "::"),
                                 port=int(config.get("port", AUTHZ_PORT)),
                                 irt=float(config.get("irt", 0.5)),
                                 mrc=int(config.get("mrc", 4)),
                                 max_pending=int(config.get("max_pending", 256)))
    except ValueError as err:
        raise ParameterError(f"authorization client: {err}") from None
    return await client.open()
