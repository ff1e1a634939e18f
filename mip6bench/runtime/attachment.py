"""The mobile node's attachment core (mip6bench.mipv6.attachment) on the asyncio runtime.

    aio = AttachmentIO(core, net, kernel=agent.io_kernel, apply=agent.apply_attachment,
                       emit=agent.emit, count=agent.count)
    aio.start(now)              # the RA socket, and the core's start
    aio.execute(core.bootstrap(result, now))      # anything the agent asks of the core
    await aio.apply_now(effect) # one of its kernel effects at once (out of the queue)
    aio.close_sockets(); await aio.stop(now)

It feeds the core link and address events from rtnetlink (net.kernel.Monitor, read
again in full when notifications were lost), Router Advertisements from a raw ICMPv6
socket, and the kernel's links and addresses when it asks (ObserveLinks). The kernel
effects (ObserveLinks, PinDefaultRoute, HomeLinkAddress) run here, on the agent's kernel
thread (`kernel(fn, *args)`) through mip6bench.net.mobile.MobileNodeKernel; a failed one
is reported (mipv6.mn.reconcile_failed) and the core forgets what it set. Every other
effect (MoveTo, Activate, InstallSA, StartPana, ...) goes to the agent's `apply`, one at
a time, in order (CoreDriver).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from mip6bench.codec import DecodeError
from mip6bench.mipv6 import attachment as at
from mip6bench.net import ndisc
from mip6bench.net.kernel import LinkEvent, Monitor
from mip6bench.runtime.driver import CoreDriver

KERNEL_EFFECTS = (at.ObserveLinks, at.PinDefaultRoute, at.HomeLinkAddress)


class AttachmentIO:
    def __init__(self, core: at.Attachment, net, *, kernel: Callable[..., Awaitable[Any]],
                 apply: Callable[[Any], Awaitable[None]], emit: Callable[..., None],
                 count: Callable[[str], None]):
        self.core, self.net, self.kernel = core, net, kernel
        self._apply_other, self.emit, self.count = apply, emit, count
        self.loop = asyncio.get_running_loop()
        self.driver = CoreDriver(send=self._no_transmit, on_timer=core.handle_timer,
                                 apply=self._apply, emit=emit)
        self.monitor = Monitor()
        self.loop.add_reader(self.monitor.fileno(), self._on_netlink)
        self.ra_socket = None

    def now(self) -> float:
        return self.loop.time()

    def execute(self, actions) -> None:
        self.driver.execute(actions)

    def start(self, now: float) -> None:
        self.ra_socket = ndisc.IcmpSocket((ndisc.ND_ROUTER_ADVERT,))
        self.loop.add_reader(self.ra_socket.fileno(), self._on_ra)
        self.execute(self.core.start(now))

    def close_sockets(self) -> None:
        for sock in (self.monitor, self.ra_socket):
            if sock is not None:
                self.loop.remove_reader(sock.fileno())
                sock.close()

    async def stop(self, timeout: float = 5.0) -> None:
        """The core's stop (the pinned route goes), its effects applied (at most
        `timeout`), the driver closed."""
        self.execute(self.core.stop(self.now()))
        try:
            await asyncio.wait_for(self.driver.drain(), timeout)
        except asyncio.TimeoutError:
            self.emit("mipv6.mn.stop_timeout", pending="attachment effects")
        self.driver.close()

    @staticmethod
    def _no_transmit(transmit) -> None:
        raise TypeError("the attachment core sends nothing")

    # ---------------------------------------------------------------- events
    def _on_netlink(self) -> None:
        now, overruns = self.now(), self.monitor.overruns
        core, execute = self.core, self.execute
        for event in self.monitor.read():
            name = self.net.interface_name(event.index)
            if name is None:
                continue   # not an access interface
            if isinstance(event, LinkEvent):
                execute(core.link_event(name, event.deleted or not event.lower_up, now))
            else:
                execute(core.address_event(at.AddressState(name, event.address, event.scope, event.tentative,
                                                           event.optimistic, event.dadfailed), event.deleted, now))
        if self.monitor.overruns != overruns:   # notifications were lost: read it all again
            execute(core.link_event(None, False, now))

    def _on_ra(self) -> None:
        while (item := self.ra_socket.recv()) is not None:
            body, src, ifindex, hoplimit = item
            try:
                ra = ndisc.parse_router_advert(body)
            except DecodeError:
                self.count("ra.malformed")
                continue
            self.execute(self.core.router_advertisement(
                self.net.interface_name(ifindex), src, hoplimit, ra.prefixes, ra.router_lifetime,
                self.now(), interval_ms=ra.advertisement_interval_ms, home_agent=ra.home_agent))

    # ---------------------------------------------------------------- effects
    async def apply_now(self, effect) -> None:
        await self._apply(effect)

    async def _apply(self, effect) -> None:
        if not isinstance(effect, KERNEL_EFFECTS):
            await self._apply_other(effect)
            return
        core = self.core
        try:
            if isinstance(effect, at.ObserveLinks):
                core.observing()
                carrier, addresses = await self.kernel(self.net.observe)
                self.execute(core.observed(carrier, [at.AddressState(*a) for a in addresses], self.now()))
            elif isinstance(effect, at.PinDefaultRoute):
                await self.kernel(self.net.pin_default_route, effect.interface, effect.router)
                core.route_pinned(effect)
            else:
                hoa, _ha, prefix = core.home
                await self.kernel(self.net.home_link_address, effect.interface, hoa, prefix, effect.present)
        except Exception as exc:  # a kernel call failed: report it, keep running
            core.kernel_failed(effect)
            self.count("reconcile.failed")
            self.emit("mipv6.mn.reconcile_failed", error=f"{type(exc).__name__}: {exc}")
