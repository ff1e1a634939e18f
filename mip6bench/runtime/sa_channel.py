"""The home agent's end of the SA distribution channel on the asyncio runtime: receives
pushed SAs, fetches SAs on demand, applies revocations and expiry, all into the
SAStore the HA's Mobile IPv6 core reads (mip6bench.mipv6.sa).

    channel = SaChannelHa({paa_address: psk}, store, emit=agent.emit)
    await channel.open()                       # UDP 7716
    sa = await channel.fetch(spi=0x1234)       # pull: MobilitySA or None (not found,
                                               # refused, PAA unreachable)
    channel.commands()                         # "sa-fetch", "sa-list" for the control socket
    await channel.close()

What it does to the store: SaInstall -> store.replace(sa); SaRemove (revoked, expired)
-> store.remove(spi) if the store still holds that SPI for the same HoA. `on_change(kind,
spi, sa, reason, effect)` (optional) is told of each change once the datagram's (or
timer's) actions are done, its answer sent: kind "install" (sa the new SA) or "remove"
(sa the SA taken out of the store, or None; effect the SaRemove with its hoa and
`successor`), e.g. for the HA agent to end the binding of an MN whose SA was revoked
(HomeAgent.sa_revoked).

A pushed SA, in this order: into the store, `sadist.sa_installed` logged, the ACK sealed
and sent (the core's AfterInstall), the expiry timer armed, `on_change`. What precedes
the event is what the install needs, and the event carries the time read as the SA went
into the store (`emit(name, t_ns=..., **fields)`), not the later moment it is logged:
the bootstrap times the push by it (see README, "SA push at the home agent").

Pull on demand: `bu_spi(mh)` is the SPI of the MN-HA Authentication option of a Binding
Update (None for anything else); an HA that gets a BU whose SPI its store lacks awaits
`channel.fetch(spi=...)` before handing the BU to its core.
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Callable

from mip6bench.aaa.sadist import (SADIST_PORT, AfterInstall, SaDistConfig, SaDistHaCore,
                                  SaFetchFailed, SaInstall, SaRemove, warm_up)
from mip6bench.mipv6.sa import MobilitySA, SAStore
from mip6bench.sansio import Action, Effect, Event, Transmit


def bu_spi(mh: bytes) -> int | None:
    """The MN-HA SPI of a Binding Update's Authentication option (RFC 4285), if any."""
    from mip6bench.codec import DecodeError
    from mip6bench.mipv6.constants import AUTH_SUBTYPE_MN_HA, MHType
    from mip6bench.mipv6.wire import Authentication, BindingUpdate, decode_mh
    if len(mh) < 3 or mh[2] != MHType.BINDING_UPDATE:
        return None   # not a BU: no need to decode it
    try:
        msg = decode_mh(mh)
    except (DecodeError, ValueError):
        return None
    if not isinstance(msg, BindingUpdate):
        return None
    for option in msg.options:
        if isinstance(option, Authentication) and option.subtype == AUTH_SUBTYPE_MN_HA:
            return option.spi
    return None


class SaChannelHa:
    COMMANDS = ("sa-fetch", "sa-list")

    def __init__(self, peers: dict[str, bytes], store: SAStore, *, emit: Callable[..., None],
                 port: int = SADIST_PORT, bind: str = "::", window: float = 30.0,
                 on_change: Callable[[str, int, MobilitySA | None, str, Effect], None] | None = None,
                 rng: random.Random | None = None, fetch_timeout: float | None = None):
        self.store = store
        self.emit = emit
        self.on_change = on_change
        self.bind, self.port = bind, port
        self._config = SaDistConfig(peers, port=port, window=window)
        self._rng = rng
        self.core: SaDistHaCore | None = None
        self._sock = None
        self._driver = None
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self.fetch_timeout = fetch_timeout
        self._installed_ns: int | None = None   # when the last SaInstall hit the store

    async def open(self) -> None:
        from mip6bench.runtime.driver import CoreDriver
        from mip6bench.runtime.udp import UdpSocket
        loop = asyncio.get_running_loop()
        self._config.wall_offset = time.time() - loop.time()
        self.core = SaDistHaCore(self._config, rng=self._rng)
        self._driver = CoreDriver(send=self._send, on_timer=self.core.handle_timer,
                                  apply_batch=self._apply_all, emit=self.emit)
        self._sock = UdpSocket.bind(self.bind, self.port, self._datagram,
                                    on_error=lambda what, exc: self.emit(
                                        "sadist.io_error", what=what, error=str(exc)))
        warm_up()   # the first push is not the process's first pass through the code

    async def close(self) -> None:
        for futures in self._waiters.values():
            for f in futures:
                if not f.done():
                    f.cancel()
        self._waiters.clear()
        if self._driver is not None:
            self._driver.close()
            self._driver = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def fetch(self, *, spi: int | None = None, hoa: str | None = None,
                    nai: str | None = None, paa: str | None = None) -> MobilitySA | None:
        actions = self.core.fetch(self._driver.now(), spi=spi, hoa=hoa, nai=nai, paa=paa)
        selector = next(a.fields["selector"] for a in actions
                        if isinstance(a, Event) and a.name == "sadist.fetch_sent")
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(selector, []).append(future)
        self._run(actions)
        if self.fetch_timeout is None:
            return await future
        return await asyncio.wait_for(future, self.fetch_timeout)

    def commands(self) -> dict[str, Callable]:
        async def fetch(req):
            args = {k: req[k] for k in ("spi", "hoa", "nai", "paa") if req.get(k) is not None}
            if "spi" in args:
                args["spi"] = int(args["spi"])
            sa = await self.fetch(**args)
            return {"found": sa is not None, "spi": sa.spi if sa else None,
                    "hoa": sa.hoa if sa else None}

        async def list_sas(_req):
            return self.list()

        return {"sa-fetch": fetch, "sa-list": list_sas}

    def list(self) -> list[dict[str, Any]]:
        now = self._driver.now() if self._driver else 0.0
        return [{"spi": sa.spi, "hoa": sa.hoa, "nai": sa.nai, "algorithm": sa.algorithm,
                 "replay": sa.replay,
                 "remaining_s": None if sa.expires_at is None else round(sa.expires_at - now, 3)}
                for sa in self.store]

    # ---- plumbing
    def _datagram(self, data: bytes, src: str, port: int) -> None:
        self._run(self.core.receive(data, src, port, self._driver.now(), staged=True))

    def _send(self, tx: Transmit) -> None:
        self._sock.send(tx.data, tx.dst, tx.port)

    def _run(self, actions: list[Action]) -> None:
        """In the core's order, effects included (the driver would apply a batch of
        effects after the call's transmits): an SA is in the store before its event is
        logged and before the ACK after it is sealed (AfterInstall). The store changes
        are reported to on_change after all of it."""
        changes: list[tuple] = []
        self._execute(actions, changes)
        if self.on_change:
            for change in changes:
                self.on_change(*change)

    def _execute(self, actions: list[Action], changes: list[tuple]) -> None:
        pending: list[Action] = []
        for action in actions:
            if isinstance(action, Effect):
                if pending:
                    self._driver.execute(pending)
                    pending = []
                self._apply(action, changes)
            elif isinstance(action, Event):    # logged here, in order, as the driver would
                if pending:
                    self._driver.execute(pending)
                    pending = []
                if action.name == "sadist.sa_installed" and self._installed_ns is not None:
                    # The core puts the install's event right after its SaInstall: its
                    # time is the store change's (_apply), not this later call's.
                    self.emit(action.name, t_ns=self._installed_ns, **action.fields)
                    self._installed_ns = None
                else:
                    self.emit(action.name, **action.fields)
            elif isinstance(action, AfterInstall):
                if pending:
                    self._driver.execute(pending)
                    pending = []
                self._execute(action.step(), changes)
            else:
                pending.append(action)
        if pending:
            self._driver.execute(pending)

    def _apply_all(self, effects: list[Effect]) -> None:
        """The driver's apply_batch (for actions that reach it other than through _run)."""
        changes: list[tuple] = []
        for effect in effects:
            self._apply(effect, changes)
        self._installed_ns = None   # the driver logs these effects' events itself
        if self.on_change:
            for change in changes:
                self.on_change(*change)

    def _apply(self, effect: Effect, changes: list[tuple]) -> None:
        """The effect on the store; the change for on_change goes to `changes`."""
        if isinstance(effect, SaInstall):
            self.store.replace(effect.sa)
            self._installed_ns = time.monotonic_ns()
            if effect.selector:
                self._resolve(effect.selector, effect.sa)
            changes.append(("install", effect.sa.spi, effect.sa, effect.source, effect))
        elif isinstance(effect, SaRemove):
            held = self.store.lookup_spi(effect.spi)
            if held is not None and (effect.hoa is None or held.hoa == effect.hoa):
                self.store.remove(effect.spi)
            else:
                held = None
            changes.append(("remove", effect.spi, held, effect.reason, effect))
        elif isinstance(effect, SaFetchFailed):
            self._resolve(effect.selector, None)

    def _resolve(self, selector: str, sa: MobilitySA | None) -> None:
        for future in self._waiters.pop(selector, []):
            if not future.done():
                future.set_result(sa)
