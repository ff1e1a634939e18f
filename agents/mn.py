"""Mobile node (RFC 6275 section 11): the agent wiring the cores to sockets, the kernel
and control commands.

Cores: the attachment core (mip6bench.mipv6.attachment: movement detection, the home /
foreign / care-of address decision, DAD modes, bootstrap results, PANA restarts) on
mip6bench.runtime.attachment.AttachmentIO (rtnetlink events, Router Advertisements, the
kernel's links and addresses); the MobileNode core (mip6bench.mipv6.mn: home
registration, return routability, route optimisation) on MobilityIO once the home side
is known, its tunnel and route-optimisation effects and packets applied by
mip6bench.runtime.mn_datapath. Kernel state (home address, tunnel, route-optimisation
routes, the pinned default route) is mip6bench.net.mobile.MobileNodeKernel's, on one
kernel thread.

Home agent, home address, home prefix and SA: static options (home_agent, home_address,
home_prefix, sas), or bootstrapped through PANA (option ``pana``: the fields of
mip6bench.runtime.pana_client.PanaOptions, NAI and EAP-PSK key first; static options
given as well fill in what the PAA does not grant). With ``nsis`` GIST and the NATFW
initiator run (mip6bench.runtime.natfw.MobileNsis) and open firewalls for the MobileNode
core's OpenPinholes.

Events for measurements: mipv6.mn.l2_down, l2_up, movement_detected, coa_ready (or
coa_dad_failed), then the core's movement, home_bu_sent, home_registered, hoti_sent,
coti_sent, cn_bu_sent, ro_on; ro_fallback {cn, reason} whenever traffic to a CN falls
back to the tunnel. With PANA also the client's pana.* and bootstrap.* events.

Control commands (besides status, dump, events):
    pana-start, pana-reauth, pana-terminate, pana-ping {paa}, pana-status   (with ``pana``)
    sa-add {spi, key (hex), algorithm, replay, hoa, nai, lifetime, replace}
    sa-remove {spi}
    sas
    ro-start {cn} / ro-stop {cn}        route optimisation with a correspondent
    register                            send the home registration again now
    traversal {enabled}                 (with nsis) open the CN's firewall with NSIS before
                                        RR, or not; RO is tried again at once
    nsis-token {token}                  (with nsis) the SESSION_AUTH token (hex) to present
    wait {until: registered|ro|home, coa, cn, within (s)}   block until the state holds
    wait-event {event, match, after_ns, within}   block until such an event is logged
    counters
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import sys

if __package__ in (None, ""):  # run as a script: agents/mn.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.errors import Mip6benchError
from mip6bench.mipv6 import attachment as at
from mip6bench.mipv6 import effects as fx
from mip6bench.mipv6.mn import MobileNode
from mip6bench.mipv6.sa import SAStore
from mip6bench.net import intercept, tunnel
from mip6bench.net.intercept import TunDevice
from mip6bench.net.kernel import DadMode
from mip6bench.net.mobile import MobileNodeKernel
from mip6bench.runtime.agent import Agent, forwarded_commands, run
from mip6bench.runtime.attachment import AttachmentIO
from mip6bench.runtime.mn_datapath import MobileNodeDataPath
from mip6bench.runtime.mobility import (MobilityIO, WaitableEvents, add_sa, describe_sa, ntp_clock_offset, packed,
                                        parse_sa)
from mip6bench.slowdown import scaled
from mip6bench.threads import ThreadPoolExecutor


@dataclasses.dataclass(frozen=True)
class Options:
    interfaces: list[str]                      # access interfaces (one per network, home included)
    home_address: str | None = None
    home_agent: str | None = None
    home_prefix: str | None = None
    sas: list[dict] = dataclasses.field(default_factory=list)
    nai: str | None = None
    correspondents: list[str] = dataclasses.field(default_factory=list)  # CNs to route-optimise with
    route_optimization: bool = True
    dad: str = "off"                           # standard | optimistic | off, for care-of addresses
    home_lifetime: float = 600.0
    cn_lifetime: float = 420.0
    rr_max_attempts: int = 5
    tunnel_backend: str = "auto"
    pana: dict | None = None                   # PanaOptions: bootstrap through PANA
    nsis: bool = False                         # run GIST + the NATFW initiator
    firewall_traversal: bool | None = None     # open pinholes before RR (default: nsis)
    nsis_token: str | None = None              # hex SESSION_AUTH token (static; PANA brings its own)
    natfw_lifetime: int = 60                   # requested pinhole lifetime (s)
    foreign_firewall: bool = False             # (with nsis) foreign networks' edges are
                                               # stateful firewalls: open them with EXT
    home_traversal: bool = False               # the HA is behind a firewall: open it with
                                               # NSIS before each new CoA's first home BU

    def __post_init__(self):
        if not self.interfaces:
            raise ValueError("a mobile node needs at least one access interface")
        DadMode(self.dad)
        given = [self.home_address is not None, self.home_agent is not None, self.home_prefix is not None]
        if any(given) and not all(given):
            raise ValueError("give home_address, home_agent and home_prefix together (or none, to bootstrap)")
        if self.home_address is None and self.pana is None:
            raise ValueError("give home_address, home_agent and home_prefix, or pana to bootstrap them")
        if self.home_address is not None:
            net = ipaddress.IPv6Network(self.home_prefix, strict=False)
            if ipaddress.IPv6Address(self.home_address) not in net:
                raise ValueError(f"home address {self.home_address} is not on the home prefix {self.home_prefix}")
            ipaddress.IPv6Address(self.home_agent)
        if self.tunnel_backend not in tunnel.BACKENDS + ("auto",):
            raise ValueError(f"tunnel_backend must be one of {tunnel.BACKENDS + ('auto',)}")
        for name in ("firewall_traversal", "foreign_firewall", "home_traversal"):
            if getattr(self, name) and not self.nsis:
                raise ValueError(f"{name} needs nsis")
        if self.nsis_token is not None:
            bytes.fromhex(self.nsis_token)
        if self.natfw_lifetime <= 0:
            raise ValueError("natfw_lifetime must be positive")


class MobileNodeAgent(WaitableEvents, Agent):
    role = "mn"
    Options = Options

    async def start(self) -> None:
        self._init_waitable()
        opts = self.options
        self.loop = asyncio.get_running_loop()
        self.sa_store = SAStore()
        try:
            static_sas = [parse_sa(spec, self.loop.time()) for spec in opts.sas]
        except ValueError as exc:
            raise Mip6benchError(f"bad SA in options: {exc}") from None
        if opts.pana is None:
            for sa in static_sas:
                self.sa_store.add(sa)
        self.backend = tunnel.backend(opts.tunnel_backend)
        self.core: MobileNode | None = None
        self.io: MobilityIO | None = None
        self.changed = asyncio.Condition()
        # Correspondents to route-optimise with (ro-start/ro-stop change the set).
        self.ro_wanted = {str(ipaddress.IPv6Address(cn)) for cn in opts.correspondents} \
            if opts.route_optimization else set()
        self.pana = None                                # PanaClient, with the pana option
        self.nsis_token: bytes | None = bytes.fromhex(opts.nsis_token) if opts.nsis_token else None
        self.nsis = None                                # MobileNsis, with the nsis option
        try:
            self.tun = TunDevice()
        except OSError as exc:
            raise Mip6benchError(f"cannot open TUN device {intercept.TUN_NAME}: {exc.strerror}",
                                 "the kernel needs TUN/TAP (mip6bench doctor)") from None
        self.net = MobileNodeKernel(self.backend, self.tun, opts.interfaces, opts.dad)
        self.datapath = MobileNodeDataPath(self.net, self.tun, emit=self.emit, count=self.count,
                                           backend=self.backend.name)
        # One thread for every kernel call: pyroute2's synchronous calls run an event loop
        # of their own, and one thread keeps the changes in order.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel")
        kernel_ready = self.loop.run_in_executor(self.pool, self.net.open)
        autostart = True
        if opts.pana is not None:   # a statically configured MN never loads PANA, EAP
            # and their cryptography (commands() imported them already, with pana)
            from mip6bench.runtime.pana_client import open_for_mobile_node

            self.pana, pana_options = await open_for_mobile_node(
                opts.pana, home=(opts.home_agent, opts.home_address, opts.home_prefix),
                static_sa=static_sas[0] if static_sas else None, interface=opts.interfaces[0],
                emit=self.emit, on_update=self._on_bootstrap)
            autostart = pana_options.autostart
        try:
            await kernel_ready
        except Exception as exc:
            self.tun.close()
            raise Mip6benchError(f"cannot prepare the access interfaces: {exc}") from None
        static_home = (opts.home_address, opts.home_agent, opts.home_prefix) if opts.pana is None else None
        self.attach = at.Attachment(opts.interfaces, dad=opts.dad, home=static_home, pana=opts.pana is not None,
                                    autostart=autostart)
        self.attachment = AttachmentIO(self.attach, self.net, kernel=self.io_kernel, apply=self._apply_attachment,
                                       emit=self.emit, count=self.count)
        self._starting = self.loop.create_future() if static_home else None
        if opts.nsis:
            await self._open_nsis()
        self.loop.add_reader(self.tun.fileno(), self.datapath.on_tun)
        self.attachment.start(self.loop.time())
        if self._starting is not None:   # a static home side is set up before start() returns
            await self._starting

    async def _open_nsis(self) -> None:
        from mip6bench.runtime.natfw import MobileNsis

        def ready(cn, coa, phase, ok, reason):
            if self.core is not None:
                self.io.execute(self.core.pinholes_ready(cn, coa, phase, ok, reason, self.io.now()))

        self.nsis = MobileNsis(self, identity=(self.options.nai or "mn").encode(), token=self.nsis_token,
                               lifetime=self.options.natfw_lifetime, egress=self._gist_egress, ready=ready)
        try:
            await self.nsis.start()
        except OSError as exc:
            raise Mip6benchError(f"cannot open the GIST sockets (UDP 270): {exc.strerror}") from None

    def _gist_egress(self, source: str) -> int:
        """GIST from the care-of address leaves by the attached interface (0 otherwise:
        the home address's signalling is routed into the tunnel)."""
        core, a = self.core, self.attach
        if core is None or core.coa is None or a.coa_interface != a.attached or packed(source) != packed(core.coa):
            return 0
        return self._egress_ifindex()

    def _egress_ifindex(self) -> int:
        return self.net.egress_ifindex(self.attach.attached)

    def _nsis_addresses(self) -> None:
        """GIST signals from the CoA (and the HoA, reverse-tunnelled)."""
        if self.nsis is not None and self.core is not None:
            self.nsis.set_addresses((self.core.coa, self.core.hoa))

    async def _activate(self, hoa: str, ha: str, prefix: str) -> asyncio.Future:
        """Home side known (the attachment core's Activate, normalised): the MobileNode
        core, and the home side's kernel plumbing queued on the kernel thread; returns
        that set-up. It is needed once the HA has bound us, after its Binding Ack, so the
        first Binding Update does not wait for it: every later kernel call (the tunnel
        pointed on the Ack too) queues behind it on that thread."""
        o = self.options
        self.core = MobileNode(hoa, ha, self.sa_store, nai=o.nai, home_lifetime=o.home_lifetime,
                               cn_lifetime=o.cn_lifetime, rr_max_attempts=o.rr_max_attempts,
                               clock_offset=ntp_clock_offset(self.loop.time()),
                               firewall_traversal=bool(o.nsis if o.firewall_traversal is None
                                                       else o.firewall_traversal),
                               traversal_timeout=scaled(10.0), foreign_firewall=o.foreign_firewall,
                               home_traversal=o.home_traversal)
        self.io = MobilityIO(self.core, apply=self.apply, emit=self.emit, on_data=self.datapath.on_data,
                             tunnel_endpoints=self.datapath.tunnel_endpoints, executor=self.pool,
                             egress_ifindex=self._egress_ifindex)
        self.datapath.activate(self.core, self.io)
        setup = asyncio.ensure_future(self.io.kernel(self.net.setup_home, hoa, ha))
        self.io.execute(self.core.want_route_optimization(self.ro_wanted, self.io.now()))
        return setup

    async def _activated(self, setup: asyncio.Future, hoa: str, ha: str, prefix: str) -> None:
        """The home side's kernel set-up finished (or failed: the agent cannot go on)."""
        try:
            await setup
        except Exception as exc:
            self._activation_failed(Mip6benchError(f"cannot set up the mobile node's data path: {exc}"))
            return
        if self._starting is not None and not self._starting.done():
            self._starting.set_result(None)
        self.emit("mipv6.mn.activated", hoa=hoa, ha=ha, home_prefix=prefix, backend=self.backend.name,
                  sas=len(self.sa_store))

    def _activation_failed(self, exc: Exception) -> None:
        if self._starting is None or self._starting.done():
            self.fatal(f"cannot activate the home side: {exc}")
        else:
            self._starting.set_exception(exc)

    async def stop(self) -> None:
        if self.nsis is not None:
            await self.nsis.aclose()
        if self.pana is not None:
            await self.pana.close()
        self.attachment.close_sockets()
        self.loop.remove_reader(self.tun.fileno())
        if self.io is not None:
            await self.io.close()
        await self.io_kernel(self.net.teardown, self.attach.home if self.io is not None else None)
        await self.attachment.stop()   # the pinned route goes
        await self.io_kernel(self.net.close)
        self.pool.shutdown(wait=True)
        self.tun.close()

    async def io_kernel(self, fn, *args):
        """A kernel call on the agent's one kernel thread (also before activation)."""
        return await self.loop.run_in_executor(self.pool, fn, *args)

    # ------------------------------------------------------------------ attachment core
    def _on_bootstrap(self, update) -> None:
        """PanaClient's on_update (synchronous, on the loop): the attachment core decides,
        its effects apply in the order PANA produced the updates."""
        delay = self.pana.restart_delay(update) if update.kind == "closed" else None
        result = at.BootstrapResult.from_update(update, delay)
        self.attachment.execute(self.attach.bootstrap(result, self.loop.time()))

    async def _apply_attachment(self, effect) -> None:
        """The attachment core's effects other than its kernel ones (AttachmentIO's)."""
        now = self.loop.time()
        if isinstance(effect, at.MoveTo):
            self.io.execute(self.core.move_to(effect.coa, now))
            self._nsis_addresses()
            # Returning home ended route optimisation for good; away again, ask for it
            # anew (the core runs it once the home registration for this CoA is accepted).
            self.io.execute(self.core.want_route_optimization(self.ro_wanted, now))
        elif isinstance(effect, at.ReturnHome):
            self.io.execute(self.core.return_home(now))
        elif isinstance(effect, at.Activate):
            try:
                setup = await self._activate(effect.hoa, effect.ha, effect.home_prefix)
            except Exception as exc:
                self._activation_failed(exc)
                return
            # The first Binding Update goes out from the care-of address the attachment
            # core last saw (its next effects, after this one) while the set-up runs.
            self.spawn(self._activated(setup, effect.hoa, effect.ha, effect.home_prefix), "activation")
            self.attachment.execute(self.attach.activated(self.loop.time()))
        elif isinstance(effect, at.InstallSA):
            self.sa_store.replace(effect.sa)
            self.emit("mipv6.sa_added", spi=effect.sa.spi, hoa=effect.sa.hoa, nai=effect.sa.nai, source=effect.source)
        elif isinstance(effect, at.RemoveSA):
            if self.sa_store.remove(effect.spi) is not None:
                self.emit("mipv6.sa_removed", spi=effect.spi, reason=effect.reason)
        elif isinstance(effect, at.SasChanged):
            if self.core is not None:
                self.io.execute(self.core.security_associations_changed(now))
        elif isinstance(effect, at.SetNsisToken):
            self.nsis_token = effect.token
            if effect.signalling and self.nsis is not None:
                self.nsis.set_token(effect.token)
        elif isinstance(effect, at.SetPanaInterface):
            self.pana.config.interface = effect.interface   # where a multicast PCI leaves
        elif isinstance(effect, at.StartPana):
            self.pana.start()
        elif isinstance(effect, at.PingPana):
            if self.pana.ping():   # the PAA learns the new address from an authenticated ping
                self.attach.pana_pinged(effect.address)
        else:
            self.emit("mipv6.mn.effect_ignored", effect=type(effect).__name__)
        await self._notify()

    # ------------------------------------------------------------------ MobileNode core
    async def apply(self, effect) -> None:
        if await self.datapath.apply(effect, self.attach.coa_interface):
            pass   # the tunnel and route optimisation: the data path's
        elif isinstance(effect, fx.OpenPinholes):
            if self.nsis is None:
                self.io.execute(self.core.pinholes_ready(effect.cn, effect.coa, effect.phase, False,
                                                         "no NSIS on this node", self.io.now()))
            else:
                self._nsis_addresses()
                if effect.phase == "inbound":
                    # Asked for together with the BU, right at the move: the BU leaves by
                    # its own egress interface, and so does GIST from the CoA
                    # (_gist_egress); EXT's path toward the HA is pinned to the new router
                    # as well, as before (the "rr" round, asked at the move too, does not
                    # wait for that kernel change).
                    for pin in self.attach.pin_for_signalling(self.io.now()):
                        await self.attachment.apply_now(pin)
                self.nsis.open(effect.cn, effect.hoa, effect.coa, effect.phase)
        elif isinstance(effect, fx.ClosePinholes):
            if self.nsis is not None:
                self.nsis.close(effect.cn, effect.hoa, effect.coa, effect.reason, effect.moving)
        elif isinstance(effect, fx.RegistrationFailed):
            self.emit("mipv6.mn.registration_failed", ha=effect.ha, coa=effect.coa, status=effect.status,
                      reason=effect.reason)
        elif not isinstance(effect, (fx.HomeRegistered, fx.HomeDeregistered)):
            self.emit("mipv6.mn.effect_ignored", effect=type(effect).__name__)
        await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # ------------------------------------------------------------------ control
    def commands(self):   # called before start(): the PANA client is looked up per request
        out = {"sa-add": self.cmd_sa_add, "sa-remove": self.cmd_sa_remove,
               "sas": self.cmd_sas, "ro-start": self.cmd_ro_start, "ro-stop": self.cmd_ro_stop,
               "register": self.cmd_register, "wait": self.cmd_wait, "counters": self.cmd_counters,
               "wait-event": self.cmd_wait_event, "traversal": self.cmd_traversal,
               "nsis-token": self.cmd_nsis_token}
        if self.options.pana is not None:
            from mip6bench.runtime.pana_client import PanaClient

            out.update(forwarded_commands(PanaClient.COMMANDS, lambda: self.pana))
        return out

    def status(self) -> dict:
        out = {"attached": self.attach.attached, **self.backend.status(), "sas": len(self.sa_store)}
        if self.pana is not None:
            out.update(pana=self.pana.status(), nsis_token=self.nsis_token.hex() if self.nsis_token else None)
        if self.core is None:
            return {**out, "state": "waiting for bootstrap"}
        return {**out, **self.core.summary()}

    def dump(self) -> dict:
        out = self.status()
        if self.core is not None:
            out.update(core_counters=dict(self.core.counters), io_counters=dict(self.io.counters),
                       correspondents=self.core.summary(correspondents=True)["correspondents"])
        return out

    def _need_core(self) -> MobileNode:
        if self.core is None:
            raise LookupError("not bootstrapped: no home agent and home address yet")
        return self.core

    async def cmd_sa_add(self, req: dict) -> dict:
        sa, _old = add_sa(self.sa_store, req, self.loop.time())
        self.emit("mipv6.sa_added", spi=sa.spi, hoa=sa.hoa, nai=sa.nai)
        if self.core is not None:   # the SA we were waiting for, or a replacement
            self.io.execute(self.core.security_associations_changed(self.io.now()))
        return describe_sa(sa, self.loop.time())

    async def cmd_sa_remove(self, req: dict) -> dict:
        spi = req.get("spi")
        if not isinstance(spi, int) or self.sa_store.remove(spi) is None:
            raise LookupError(f"no SA with SPI {spi!r}")
        self.emit("mipv6.sa_removed", spi=spi)
        return {"spi": spi}

    async def cmd_sas(self, _req) -> list:
        now = self.loop.time()
        return [describe_sa(sa, now) for sa in self.sa_store]

    async def cmd_ro_start(self, req: dict) -> dict:
        core = self._need_core()
        cn = str(ipaddress.IPv6Address(req["cn"]))
        self.ro_wanted.add(cn)
        self.io.execute(core.start_route_optimization(cn, self.io.now()))
        return self.status()

    async def cmd_ro_stop(self, req: dict) -> dict:
        core = self._need_core()
        cn = str(ipaddress.IPv6Address(req["cn"]))
        self.ro_wanted.discard(cn)
        self.io.execute(core.stop_route_optimization(cn, self.io.now()))
        return self.status()

    async def cmd_traversal(self, req: dict) -> dict:
        """traversal {enabled}: open the CN's firewall with NSIS before RR (or stop doing
        so); with it on, RO is tried again at once with every wanted correspondent."""
        core = self._need_core()
        enabled = req.get("enabled")
        if not isinstance(enabled, bool):
            raise ValueError("enabled must be true or false")
        if enabled and self.nsis is None:
            raise ValueError("this mobile node runs without NSIS (topology parameter nsis=off)")
        core.firewall_traversal = enabled
        self.emit("mipv6.mn.traversal", enabled=enabled)
        now = self.io.now()
        for cn in sorted(self.ro_wanted):
            self.io.execute(core.start_route_optimization(cn, now))
        return self.status()

    async def cmd_nsis_token(self, req: dict) -> dict:
        """nsis-token {token: hex}: present this SESSION_AUTH token in the CREATEs from
        now on (e.g. to see the firewall refuse a forged or foreign one)."""
        if self.nsis is None:
            raise ValueError("this mobile node runs without NSIS (topology parameter nsis=off)")
        token = bytes.fromhex(req.get("token", ""))
        if not token:
            raise ValueError("token must be a non-empty hex string")
        self.nsis.set_token(token)
        self.nsis_token = token
        self.emit("mipv6.mn.nsis_token", length=len(token), source="command")
        return {"length": len(token)}

    async def cmd_register(self, _req) -> dict:
        core = self._need_core()
        self.io.execute(core.register(self.io.now()))
        return self.status()

    def _holds(self, until: str, req: dict) -> bool:
        """The core's state, and for "ro" the data path switched as well."""
        if self.core is None:
            return False
        cn = str(ipaddress.IPv6Address(req["cn"])) if until == "ro" else None
        return self.core.holds(until, coa=req.get("coa"), cn=cn) and (cn is None or self.datapath.routed(cn))

    async def cmd_wait(self, req: dict) -> dict:
        until = req.get("until")
        timeout = float(req.get("within", 10.0))
        self._holds(until, req)  # validates the request before waiting
        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(lambda: self._holds(until, req)), timeout)
        except asyncio.TimeoutError:
            raise LookupError(f"{until} did not hold within {timeout:g} s: {self.status()}") from None
        return self.status()

    async def cmd_counters(self, _req) -> dict:
        out = {"agent": dict(self.counters), "attachment": dict(self.attach.counters)}
        if self.core is not None:
            out.update(core=dict(self.core.counters), io=dict(self.io.counters),
                       **await self.io.kernel(self.net.counters))
        if self.nsis is not None:
            out.update(self.nsis.counters())
        return out

if __name__ == "__main__":
    sys.exit(run(MobileNodeAgent))
