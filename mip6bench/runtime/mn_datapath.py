"""The mobile node's data path on the asyncio runtime: the MobileNode core's tunnel and
route-optimisation effects applied to the kernel (mip6bench.net.mobile.MobileNodeKernel,
on the agent's kernel thread through MobilityIO.kernel), and the packets between the
TUN device and the wire rewritten by mip6bench.net.ro.

    dp = MobileNodeDataPath(net, tun, emit=agent.emit, count=agent.count, backend="seg6")
    loop.add_reader(tun.fileno(), dp.on_tun)
    io = MobilityIO(core, ..., on_data=dp.on_data, tunnel_endpoints=dp.tunnel_endpoints)
    dp.activate(core, io)                       # the home side is known
    await dp.apply(effect, interface)           # True if it was a data path effect
    dp.routed(cn)                               # the kernel routes the HoA's packets to cn via RO

Events: mipv6.mn.tunnel_up {coa, ha, interface, backend, kernel_ms, point_ms},
mipv6.mn.tunnel_down {reason}, mipv6.mn.ro_fallback {cn, reason}. Counters (the agent's):
ro.out, ro.out_tunnelled, ro.out_dropped, ro.out_not_from_home_address, ro.in,
ro.in_malformed, ro.in_not_for_us, ro.in_failed.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from mip6bench.mipv6 import effects as fx
from mip6bench.net import ro
from mip6bench.runtime.mobility import packed


class MobileNodeDataPath:
    def __init__(self, net, tun, *, emit: Callable[..., None], count: Callable[[str], None], backend: str):
        self.net, self.tun, self.emit, self.count, self.backend = net, tun, emit, count, backend
        self.core = self.io = None
        self.hoa: bytes | None = None
        self.ro_routes: dict[bytes, bytes] = {}         # packed CN -> packed CoA

    def activate(self, core, io) -> None:
        self.core, self.io, self.hoa = core, io, packed(core.hoa)

    def tunnel_endpoints(self) -> tuple[str, str] | None:
        if self.core is None or self.core.coa is None:
            return None
        return self.core.coa, self.core.ha

    def routed(self, cn: str) -> bool:
        return packed(cn) in self.ro_routes

    async def apply(self, effect: Any, interface: str | None) -> bool:
        """A tunnel or route-optimisation effect (`interface`: where the CoA lives);
        False for any other effect."""
        if isinstance(effect, fx.TunnelUp):
            t0 = time.monotonic()
            point_ms = await self.io.kernel(self.net.point, effect.hoa, effect.local, effect.remote, interface)
            self.emit("mipv6.mn.tunnel_up", coa=effect.local, ha=effect.remote, interface=interface,
                      backend=self.backend, kernel_ms=round((time.monotonic() - t0) * 1000, 3),
                      point_ms=point_ms)
        elif isinstance(effect, fx.TunnelDown):
            await self.io.kernel(self.net.tunnel_down)
            self.emit("mipv6.mn.tunnel_down", reason=effect.reason)
        elif isinstance(effect, fx.RouteOptimizationOn):
            cn = packed(effect.cn)
            fresh = cn not in self.ro_routes
            self.ro_routes[cn] = packed(effect.coa)
            if fresh:
                await self.io.kernel(self.net.ro_route, effect.cn, True)
        elif isinstance(effect, fx.RouteOptimizationOff):
            if self.ro_routes.pop(packed(effect.cn), None) is not None:
                await self.io.kernel(self.net.ro_route, effect.cn, False)
            self.emit("mipv6.mn.ro_fallback", cn=effect.cn, reason=effect.reason)
        else:
            return False
        return True

    def on_tun(self) -> None:
        """What applications send from the home address to a route-optimised
        correspondent (mip6bench.net.ro.mn_outbound decides how it leaves)."""
        while (packet := self.tun.read()) is not None:
            endpoints = self.tunnel_endpoints()
            counter, out = ro.mn_outbound(packet, self.hoa, self.ro_routes,
                                          endpoints and (packed(endpoints[0]), packed(endpoints[1])))
            if out is None or self.io.send_packet(out) or counter != "ro.out":
                self.count(counter)

    def on_data(self, packet: bytes, _ifname: str) -> None:
        """A packet with a type 2 routing header (MobilityIO's tap): to the home address."""
        counter, plain = ro.mn_inbound(packet, self.hoa, self.core.coa and packed(self.core.coa))
        if plain is not None:
            try:
                self.tun.write(plain)
            except OSError:
                counter = "ro.in_failed"
        self.count(counter)
