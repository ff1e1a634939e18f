"""Correspondent node (RFC 6275 section 9): return routability responder, route-optimisation
binding cache, and the route-optimised data path in user space.

Return routability: HoTI (reverse-tunnelled through the MN's HA, so plain MH from the
HoA) and CoTI (plain MH from the CoA) arrive on the MH socket; Binding Updates carry a
Home Address option and arrive on the PacketTap. The CorrespondentNode core answers.

Route-optimised data (the kernel here cannot process the extension headers, see
mip6bench/net/intercept.py):
  * out: a binding for a HoA puts `HoA/128 dev mip6ro` into the RO table; what the
    applications send to the HoA comes out of the TUN device, gets the destination CoA
    and a type 2 routing header (net/ro.py), and leaves on a raw socket;
  * in: packets with a Home Address option are dropped in netfilter and taken from the
    tap; with a binding for (HoA, source CoA) they are rewritten to come from the HoA and
    handed to the kernel through the TUN device; without one the sender gets a Binding
    Error, status 1 (rate limited), and the packet is dropped.

Control commands (besides status, dump, events):
    bindings                           the RO binding cache
    policy {route_optimization: bool}  accept (true) or refuse with status 129 (false)
                                       new route-optimisation bindings
    policy {natfw_consent: bool}       (with nsis) consent to NATFW pinholes toward us,
                                       or refuse them (RFC 5973 policy denied)
    counters                           core, socket, data path and netfilter counters
    wait-event {event, match, after_ns, within}   block until such an event is logged
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: agents/cn.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.codec import DecodeError
from mip6bench.errors import Mip6benchError
from mip6bench.mipv6.cn import CorrespondentNode
from mip6bench.mipv6.effects import InstallBinding, RemoveBinding
from mip6bench.net import intercept, ro, tunnel
from mip6bench.net.kernel import Kernel
from mip6bench.net.intercept import InterceptRules, TunDevice, home_address_option_drop
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.mobility import MobilityIO, WaitableEvents, packed

NFT_TABLE = "mip6bench_cn"


@dataclasses.dataclass(frozen=True)
class Options:
    addresses: list[str]                 # this node's addresses (the ones MNs talk to)
    interface: str | None = None         # where route-optimised packets arrive (None: any)
    route_optimization: bool = True      # False: refuse RO bindings (status 129)
    max_lifetime: float = 420.0
    max_bindings: int | None = None
    nonce_interval: float = 30.0
    brr_lead: float | None = None
    nsis: bool = False                   # run GIST + the NATFW responder (the CN's consent)
    natfw_consent: bool = True           # the responder's policy: consent to pinholes or refuse

    def __post_init__(self):
        if not self.addresses:
            raise ValueError("a correspondent node needs at least one address")
        for a in self.addresses:
            ipaddress.IPv6Address(a)


class CorrespondentAgent(WaitableEvents, Agent):
    role = "cn"
    Options = Options

    async def start(self) -> None:
        self._init_waitable()
        opts = self.options
        self.allow_ro = opts.route_optimization
        self.core = CorrespondentNode(opts.addresses, max_lifetime=opts.max_lifetime,
                                      max_bindings=opts.max_bindings, nonce_interval=opts.nonce_interval,
                                      brr_lead=opts.brr_lead, policy=lambda _hoa, _coa: self.allow_ro)
        self.rules = InterceptRules(None, NFT_TABLE)
        self.routes: dict[bytes, bytes] = {}   # packed HoA -> packed CoA, as installed
        try:
            self.tun = TunDevice()
        except OSError as exc:
            raise Mip6benchError(f"cannot open TUN device {intercept.TUN_NAME}: {exc.strerror}",
                                 "the kernel needs TUN/TAP (mip6bench doctor)") from None
        self.io = MobilityIO(self.core, apply=self.apply, emit=self.emit, on_data=self.on_data,
                             tap_ifname=opts.interface)
        t0 = time.monotonic()
        try:
            # nftables and routing are independent: set them up side by side.
            await asyncio.gather(self.io.kernel(self._setup_kernel), asyncio.to_thread(
                self.rules.install, [home_address_option_drop(list(self.options.addresses))]))
        except Exception as exc:
            await self.io.close()
            self.tun.close()
            raise Mip6benchError(f"cannot set up the route-optimisation data path: {exc}") from None
        asyncio.get_running_loop().add_reader(self.tun.fileno(), self._on_tun)
        self.nsis = None
        if opts.nsis:
            await self._open_nsis()
        self.emit("mipv6.cn.started", addresses=list(opts.addresses), route_optimization=self.allow_ro,
                  kernel_setup_ms=round((time.monotonic() - t0) * 1000, 3))

    async def _open_nsis(self) -> None:
        """The NATFW responder: a CREATE toward one of our addresses is answered with our
        consent (or the policy's refusal, RFC 5973's information code)."""
        from mip6bench.gist.core import GistConfig
        from mip6bench.natfw import wire as w
        from mip6bench.natfw.core import NrCore
        from mip6bench.runtime.gist import GistService
        from mip6bench.runtime.natfw import NatfwService

        self.consent = self.options.natfw_consent
        self.gist = GistService(self, GistConfig(peer_identity=b"cn", addresses=tuple(self.options.addresses),
                                                 nslps=frozenset({w.NSLPID})), c_mode=True)
        from mip6bench.runtime.natfw import NF_MAX_SESSIONS
        # as many sessions as the firewall in front of it admits (1,000 MNs' burst)
        self.nr = NrCore(policy=lambda _sid, _mri, _msg: None if self.consent else w.ERR_POLICY_DENIED,
                         max_sessions=NF_MAX_SESSIONS)
        self.nsis = NatfwService(self, self.gist, self.nr)
        try:
            await self.gist.start()
        except OSError as exc:
            raise Mip6benchError(f"cannot open the GIST sockets (UDP 270): {exc.strerror}") from None

    def _setup_kernel(self) -> None:
        # On the kernel thread: pyroute2's synchronous calls run an event loop of their own.
        self.kernel = k = Kernel()
        # No link-local address on the TUN device: nothing of the kernel's own (MLD, RS)
        # comes out of it, only what is routed there.
        k.sysctl({f"net/ipv6/conf/{self.tun.name}/addr_gen_mode": 1})

        def apply():
            k.set_link(self.tun.name, mtu=1500 - ro.RO_OVERHEAD, up=True)
            tunnel.mark_rule(k)
            k.add_rule(intercept.RO_PREF, intercept.RO_TABLE)
        k.reconfigure((intercept.AGENT_MARK_PREF, intercept.RO_PREF), (intercept.RO_TABLE,), apply,
                      local_pref=None, moved_local_pref=tunnel.LOCAL_PREF)

    async def stop(self) -> None:
        if self.nsis is not None:
            await self.nsis.aclose()
        asyncio.get_running_loop().remove_reader(self.tun.fileno())
        await self.io.close()
        await self.io.kernel(self._teardown_kernel)
        await self.io.kernel(self.kernel.close)
        self.io.shutdown_pool()
        self.tun.close()  # its routes go with it

    def _teardown_kernel(self) -> None:
        self.kernel.reconfigure((intercept.AGENT_MARK_PREF, intercept.RO_PREF), (intercept.RO_TABLE,), None,
                                local_pref=None, moved_local_pref=tunnel.LOCAL_PREF)
        self.rules.remove()

    # ------------------------------------------------------------------ effects
    async def apply(self, effect) -> None:
        if isinstance(effect, InstallBinding):
            hoa, coa = packed(effect.hoa), packed(effect.coa)
            fresh = hoa not in self.routes
            self.routes[hoa] = coa
            if fresh:
                await self.io.kernel(lambda: self.kernel.add_route(
                    effect.hoa, dev=self.tun.name, table=intercept.RO_TABLE))
            self.emit("mipv6.cn.ro_route", hoa=effect.hoa, coa=effect.coa, new=fresh)
        elif isinstance(effect, RemoveBinding):
            if self.routes.pop(packed(effect.hoa), None) is not None:
                await self.io.kernel(lambda: self.kernel.del_route(effect.hoa, table=intercept.RO_TABLE,
                                                                   missing_ok=True))
            self.emit("mipv6.cn.ro_route_removed", hoa=effect.hoa, reason=effect.reason)
        else:
            self.emit("mipv6.cn.effect_ignored", effect=type(effect).__name__)

    # ------------------------------------------------------------------ data path
    def _on_tun(self) -> None:
        counters = self.io.counters
        while (packet := self.tun.read()) is not None:
            if len(packet) < 40 or packet[0] >> 4 != 6:
                counters["ro.out_not_ipv6"] += 1
                continue
            coa = self.routes.get(packet[24:40])
            if coa is None:
                # The binding went away after the kernel routed this packet here.
                counters["ro.out_without_binding"] += 1
                self.io.send_packet(packet)
                continue
            if self.io.send_packet(ro.add_type2_routing_header(packet, coa)):
                counters["ro.out"] += 1

    def on_data(self, packet: bytes, _ifname: str) -> None:
        counters = self.io.counters
        try:
            hoa, plain = ro.strip_home_address_option(packet)
        except DecodeError:
            counters["ro.in_malformed"] += 1
            return
        if self.routes.get(hoa) == packet[8:24]:
            try:
                self.tun.write(plain)
                counters["ro.in"] += 1
            except OSError:
                counters["ro.in_failed"] += 1
            return
        counters["ro.in_without_binding"] += 1
        src = str(ipaddress.IPv6Address(packet[8:24]))
        _ok, actions = self.core.check_home_address_option(src, str(ipaddress.IPv6Address(hoa)), self.io.now())
        self.io.execute(actions)

    # ------------------------------------------------------------------ control
    def commands(self):
        return {"bindings": self.cmd_bindings, "policy": self.cmd_policy, "counters": self.cmd_counters,
                "wait-event": self.cmd_wait_event}

    def status(self) -> dict:
        return {"addresses": list(self.options.addresses), "bindings": len(self.core.bindings),
                "route_optimization": self.allow_ro}

    def dump(self) -> dict:
        return {**self.status(), "binding_cache": self._bindings(), "core_counters": dict(self.core.counters),
                "io_counters": dict(self.io.counters)}

    def _bindings(self) -> list[dict]:
        now = self.io.now()
        return [{"hoa": e.hoa, "coa": e.coa, "seq": e.seq, "lifetime": e.lifetime,
                 "expires_in": round(e.expires_at - now, 3),
                 "route": packed(e.hoa) in self.routes} for e in self.core.bindings.values()]

    async def cmd_bindings(self, _req) -> list:
        return self._bindings()

    async def cmd_policy(self, req: dict) -> dict:
        out = {}
        if "route_optimization" in req:
            value = req["route_optimization"]
            if not isinstance(value, bool):
                raise ValueError("route_optimization must be true or false")
            self.allow_ro = out["route_optimization"] = value
        if "natfw_consent" in req:
            value = req["natfw_consent"]
            if not isinstance(value, bool):
                raise ValueError("natfw_consent must be true or false")
            if self.nsis is None:
                raise ValueError("this correspondent runs without NSIS (topology parameter nsis=off)")
            self.consent = out["natfw_consent"] = value
        if not out:
            raise ValueError("policy needs route_optimization and/or natfw_consent: true or false")
        self.emit("mipv6.cn.policy", **out)
        return out

    async def cmd_counters(self, _req) -> dict:
        nft = await self.io.kernel(self.rules.counters)
        out = {"core": dict(self.core.counters), "io": dict(self.io.counters), "netfilter": nft}
        if self.nsis is not None:
            out.update(natfw=dict(self.nr.counters), gist=self.gist.counters())
        return out


if __name__ == "__main__":
    sys.exit(run(CorrespondentAgent))
