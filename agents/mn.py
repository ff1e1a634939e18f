"""Mobile node (RFC 6275 section 11): movement detection, care-of addresses, home
registration, return routability and route optimisation, with the home address usable
by applications on the node at all times.

Home address: it lives on `lo` (/128, no DAD) for the agent's whole life, so sockets
bound to it survive every handover. Away from home, policy routing sends what the
applications send from it into the tunnel to the HA (mip6bench.net.tunnel), or, for
route-optimised correspondents, into the TUN device, where the agent rewrites it to come
from the CoA with a Home Address option. At home the address is also put on the home
interface (/64) so the home link reaches it directly.

Movement detection, the home / foreign / care-of address decision, DAD modes, applying
bootstrap results and the PANA restart policy are the attachment core's
(mip6bench.mipv6.attachment.Attachment, run by a CoreDriver): this agent feeds it link
and address events from rtnetlink, Router Advertisements from a raw ICMPv6 socket and
the kernel's links and addresses when it asks (ObserveLinks), and applies what it asks
for: the default route pinned through the attached network's router, the home address
on the home interface, MobileNode.move_to / return_home, activation of the home side,
SAs, the NSIS token, PANA start and ping. Duplicate Address Detection for care-of
addresses is as the ``dad`` option says (standard, optimistic or off: set per access
interface at start; the core uses an address only once DAD allows it).

Home agent, home address, home prefix and SA: static options (home_agent, home_address,
home_prefix, sas), or bootstrapped through PANA (option ``pana``: the fields of
mip6bench.runtime.pana_client.PanaOptions, NAI and EAP-PSK key first). With ``pana`` the
agent composes PanaClient: on its first usable address (``autostart``, else on
pana-start) it authenticates; the result (HA, HoA, home prefix, MN-HA SA, NSIS token)
sets up the home side and the agent registers. Until then it only tracks the
attachment. Static options given as well are the fallback for whatever the PAA does not
grant (a PAA without the extension: mipv6.mn.static_fallback {items}); their first SA
is the static SA. After every handover a PANA ping tells the PAA the new address.
Re-authentication (at 0.8 of the SA or session lifetime) brings a new SPI and key: the
new SA replaces the old one at once, the binding stays and its next BU uses the new SA.
A PANA session that ends starts again as mip6bench.runtime.pana_client.RestartPolicy
says (at once, then with backoff while it keeps failing; never after pana-terminate, nor
after 3 supersessions in a row, until pana-start); the attachment core arms the restart.

Events for measurements: mipv6.mn.l2_down, l2_up, movement_detected, coa_ready (or
coa_dad_failed), then the
core's movement, home_bu_sent, home_registered, hoti_sent, coti_sent, cn_bu_sent, ro_on;
ro_fallback {cn, reason} whenever traffic to a CN falls back to the tunnel. With PANA
also the client's pana.* and bootstrap.ready|rekeyed|revoked|closed events.

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
import time
from concurrent.futures import ThreadPoolExecutor

if __package__ in (None, ""):  # run as a script: agents/mn.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.codec import DecodeError
from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.mipv6.effects import (
    ClosePinholes,
    HomeDeregistered,
    OpenPinholes,
    HomeRegistered,
    RegistrationFailed,
    RouteOptimizationOff,
    RouteOptimizationOn,
    TunnelDown,
    TunnelUp,
)
from mip6bench.mipv6.attachment import (
    Activate,
    AddressState,
    Attachment,
    BootstrapResult,
    HomeLinkAddress,
    InstallSA,
    MoveTo,
    ObserveLinks,
    PingPana,
    PinDefaultRoute,
    RemoveSA,
    ReturnHome,
    SasChanged,
    SetNsisToken,
    SetPanaInterface,
    StartPana,
)
from mip6bench.mipv6.mn import MobileNode
from mip6bench.mipv6.sa import SAStore
from mip6bench.net import intercept, ndisc, ro, tunnel
from mip6bench.net.intercept import InterceptRules, TunDevice, type2_routing_header_drop
from mip6bench.net.kernel import DadMode, Kernel, LinkEvent, Monitor
from mip6bench.runtime.agent import Agent, forwarded_commands, run
from mip6bench.runtime.driver import CoreDriver
from mip6bench.slowdown import scaled
from mip6bench.runtime.mobility import MobilityIO, WaitableEvents, describe_sa, ntp_clock_offset, packed, parse_sa

NFT_TABLE = "mip6bench_mn"
ATTACHED_METRIC = 1   # our default route via the attached network's router beats RA-learned ones (1024)


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
            _check_home(self.home_address, self.home_agent, self.home_prefix)
        if self.tunnel_backend not in tunnel.BACKENDS + ("auto",):
            raise ValueError(f"tunnel_backend must be one of {tunnel.BACKENDS + ('auto',)}")
        if self.firewall_traversal and not self.nsis:
            raise ValueError("firewall_traversal needs nsis")
        if self.foreign_firewall and not self.nsis:
            raise ValueError("foreign_firewall needs nsis")
        if self.home_traversal and not self.nsis:
            raise ValueError("home_traversal needs nsis")
        if self.nsis_token is not None:
            bytes.fromhex(self.nsis_token)
        if self.natfw_lifetime <= 0:
            raise ValueError("natfw_lifetime must be positive")


def _check_home(hoa: str, ha: str, prefix: str) -> None:
    net = ipaddress.IPv6Network(prefix, strict=False)
    if ipaddress.IPv6Address(hoa) not in net:
        raise ValueError(f"home address {hoa} is not on the home prefix {prefix}")
    ipaddress.IPv6Address(ha)


def _is_gist(packet: bytes) -> bool:
    """A UDP datagram to the GIST port, with or without a Hop-by-Hop header first."""
    nh, pos = packet[6], 40
    if nh == 0 and len(packet) >= 42:
        nh, pos = packet[40], 40 + (packet[41] + 1) * 8
    return nh == 17 and len(packet) >= pos + 4 and packet[pos + 2:pos + 4] == b"\x01\x0e"


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
        self.rules = InterceptRules(None, NFT_TABLE)
        self.core: MobileNode | None = None
        self.io: MobilityIO | None = None
        self.ro_routes: dict[bytes, bytes] = {}         # packed CN -> packed CoA
        self.changed = asyncio.Condition()
        # Correspondents to route-optimise with (ro-start/ro-stop change the set).
        self.ro_wanted = {str(ipaddress.IPv6Address(cn)) for cn in opts.correspondents} \
            if opts.route_optimization else set()
        self.pana = None                                # PanaClient, with the pana option
        self.nsis_token: bytes | None = bytes.fromhex(opts.nsis_token) if opts.nsis_token else None
        self.nsis = None                                # NatfwService (NI) with the nsis option
        try:
            self.tun = TunDevice()
        except OSError as exc:
            raise Mip6benchError(f"cannot open TUN device {intercept.TUN_NAME}: {exc.strerror}",
                                 "the kernel needs TUN/TAP (mip6bench doctor)") from None
        self.index_to_name: dict[int, str] = {}
        # One thread for every kernel call: pyroute2's synchronous calls run an event loop
        # of their own, and one thread keeps the changes in order.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel")
        kernel_ready = self.loop.run_in_executor(self.pool, self._open_kernel)
        if opts.pana is not None:   # its imports run while the kernel thread works
            await self._open_pana(static_sas[0] if static_sas else None)
        try:
            await kernel_ready
        except Exception as exc:
            self.tun.close()
            raise Mip6benchError(f"cannot prepare the access interfaces: {exc}") from None
        # Movement detection, the CoA decision and bootstrap results: the attachment core.
        static_home = (opts.home_address, opts.home_agent, opts.home_prefix) if opts.pana is None else None
        self.attach = Attachment(opts.interfaces, dad=opts.dad, home=static_home, pana=opts.pana is not None,
                                 autostart=opts.pana is None or self.pana_options.autostart)
        self.attach_driver = CoreDriver(send=self._no_transmit, on_timer=self.attach.handle_timer,
                                        apply=self._apply_attachment, emit=self.emit)
        self._starting = self.loop.create_future() if static_home else None
        self.monitor = Monitor()
        self.loop.add_reader(self.monitor.fileno(), self._on_netlink)
        if opts.nsis:
            await self._open_nsis()
        self.ra_socket = ndisc.IcmpSocket((ndisc.ND_ROUTER_ADVERT,))
        self.loop.add_reader(self.ra_socket.fileno(), self._on_ra)
        self.loop.add_reader(self.tun.fileno(), self._on_tun)
        self.attach_driver.execute(self.attach.start(self.loop.time()))
        if self._starting is not None:   # a static home side is set up before start() returns
            await self._starting

    async def _open_pana(self, static_sa) -> None:
        """The PANA client (imported here: a statically configured MN never loads PANA,
        EAP and their cryptography)."""
        from mip6bench.runtime.config import parse_options
        from mip6bench.runtime.pana_client import PanaClient, PanaOptions, StaticMip6

        opts = self.options
        try:
            self.pana_options = parse_options(PanaOptions, opts.pana)
        except ParameterError as exc:
            raise ParameterError(f"option 'pana': {exc}") from None
        static = None
        if opts.home_address is not None or static_sa is not None:
            static = StaticMip6(opts.home_agent, opts.home_address, opts.home_prefix,
                                *((static_sa.spi, static_sa.key, static_sa.algorithm, static_sa.replay)
                                  if static_sa else ()))
        config = self.pana_options.client_config(static, interface=opts.interfaces[0])
        self.pana = PanaClient(config, emit=self.emit, on_update=self._on_bootstrap)
        try:
            await self.pana.open()
        except OSError as exc:
            raise Mip6benchError(f"cannot open the PANA socket (UDP {config.port}): {exc.strerror}") from None

    async def _open_nsis(self) -> None:
        """GIST and the NATFW initiator; MobileTraversal decides which sessions to signal."""
        from mip6bench.gist.core import GistConfig
        from mip6bench.natfw.core import NiCore
        from mip6bench.natfw.mobile import MobileTraversal
        from mip6bench.runtime.gist import GistService
        from mip6bench.runtime.natfw import NatfwService

        name = (self.options.nai or "mn").encode()
        self.gist = GistService(self, GistConfig(peer_identity=name, addresses=()), c_mode=True,
                                egress=self._gist_egress)
        self.ni = NiCore(token=self.nsis_token)
        self.traversal = MobileTraversal(self.ni, lifetime=self.options.natfw_lifetime)
        self.nsis = NatfwService(self, self.gist, self.ni, apply=self._apply_natfw)
        try:
            await self.gist.start()
        except OSError as exc:
            raise Mip6benchError(f"cannot open the GIST sockets (UDP 270): {exc.strerror}") from None

    def _gist_egress(self, source: str) -> int:
        """GIST from the care-of address leaves by the attached interface (0 otherwise:
        the home address's signalling is routed into the tunnel)."""
        core = self.core
        at = self.attach
        if core is None or core.coa is None or at.coa_interface != at.attached or packed(source) != packed(core.coa):
            return 0
        return self._egress_ifindex()

    def _nsis_addresses(self) -> None:
        """GIST signals from the CoA (and the HoA, reverse-tunnelled)."""
        if self.nsis is None or self.core is None:
            return
        self.gist.set_addresses([a for a in (self.core.coa, self.core.hoa) if a])

    async def _apply_natfw(self, effect) -> None:
        from mip6bench.natfw.core import DeliverNotify, DeliverResponse, SessionFailed
        from mip6bench.natfw.mobile import PinholesReady

        if isinstance(effect, (DeliverResponse, DeliverNotify, SessionFailed)):
            self.nsis.execute(self.traversal.on_ni_effect(effect, self.nsis.now()))
        elif isinstance(effect, PinholesReady) and self.core is not None:
            self.io.execute(self.core.pinholes_ready(effect.cn, effect.coa, effect.phase, effect.ok,
                                                     effect.reason, self.io.now()))

    def _open_kernel(self) -> None:
        """On the kernel thread: the kernel handle, and per-interface settings for fast
        movement detection, DAD as configured."""
        self.backend.prepare("mn")
        self.kernel = k = Kernel()
        dad = DadMode(self.options.dad)
        values: dict[str, int] = {"net/ipv6/conf/all/ignore_routes_with_linkdown": 1}
        for ifname in self.options.interfaces:
            self.index_to_name[k.ifindex(ifname)] = ifname
            values.update({
                # A detached interface keeps its routes; they must not be used.
                f"net/ipv6/conf/{ifname}/ignore_routes_with_linkdown": 1,
                f"net/ipv6/conf/{ifname}/accept_dad": 0 if dad is DadMode.OFF else 1,
                f"net/ipv6/conf/{ifname}/optimistic_dad": int(dad is DadMode.OPTIMISTIC),
                f"net/ipv6/conf/{ifname}/use_optimistic": int(dad is DadMode.OPTIMISTIC),
                f"net/ipv6/conf/{ifname}/router_solicitation_delay": 0,
            })
        k.sysctl(values)
        # No link-local address on the TUN device: nothing of the kernel's own (MLD, RS)
        # comes out of it, only what is routed there.
        k.sysctl({f"net/ipv6/conf/{self.tun.name}/addr_gen_mode": 1})
        k.set_link(self.tun.name, up=True, mtu=1500 - ro.RO_OVERHEAD)
        self.tun_index = k.ifindex(self.tun.name)
        # The type 2 routing header drop rule needs nothing from the home side: in place
        # from the start, its `nft` run (15-25 ms) is off the first Binding Update's path.
        self.rules.install([type2_routing_header_drop()])

    def _egress_ifindex(self) -> int:
        """The attached interface, where the care-of address (or, at home, the home
        address) lives: the MN's own packets leave there (0: detached, routing decides)."""
        for index, name in self.index_to_name.items():
            if name == self.attach.attached:
                return index
        return 0

    async def _activate(self, hoa: str, ha: str, prefix: str) -> asyncio.Future:
        """Home side known (the attachment core's Activate, normalised): the MobileNode
        core, and the home side's kernel plumbing (home address on lo, decapsulation of
        what the HA tunnels) queued on the kernel thread; returns that set-up. It is
        needed once the HA has bound us, after its Binding Ack, so the first Binding
        Update does not wait for it: every later kernel call (the tunnel pointed on the
        Ack too) queues behind it on that thread."""
        self.hoa_packed = packed(hoa)
        self.core = MobileNode(hoa, ha, self.sa_store, nai=self.options.nai,
                               home_lifetime=self.options.home_lifetime, cn_lifetime=self.options.cn_lifetime,
                               rr_max_attempts=self.options.rr_max_attempts,
                               clock_offset=ntp_clock_offset(self.loop.time()),
                               firewall_traversal=self._traversal_wanted(),
                               traversal_timeout=scaled(10.0),
                               foreign_firewall=self.options.foreign_firewall,
                               home_traversal=self.options.home_traversal)
        self.io = MobilityIO(self.core, apply=self.apply, emit=self.emit, on_data=self.on_data,
                             tunnel_endpoints=self._tunnel_endpoints, executor=self.pool,
                             egress_ifindex=self._egress_ifindex)
        setup = asyncio.ensure_future(self.io.kernel(self._setup_home_kernel))
        self._want_route_optimization(self.io.now())
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

    def _traversal_wanted(self) -> bool:
        o = self.options
        return bool(o.nsis if o.firewall_traversal is None else o.firewall_traversal)

    def _want_route_optimization(self, now: float) -> None:
        for cn in sorted(self.ro_wanted):
            entry = self.core.correspondents.get(cn)
            if entry is None or not entry.wanted:
                self.io.execute(self.core.start_route_optimization(cn, now))

    def _setup_home_kernel(self) -> None:
        k = self.kernel
        hoa, ha, _prefix = self.attach.home
        if not any(a["address"] == hoa and a["index"] == k.ifindex("lo") for a in k.addresses("lo")):
            k.add_address("lo", hoa, 128, dad=DadMode.OFF)
        self.backend.mn_setup(k, ha, self.tun.name)
        extra = self.backend.mn_nft_rules(ha)
        if extra:   # (the user-space tunnel's: what comes from the HA is its forwarder's)
            self.rules.install([type2_routing_header_drop()] + extra)

    async def stop(self) -> None:
        if self.nsis is not None:
            await self.nsis.aclose()
        if self.pana is not None:
            await self.pana.close()
        for fd in (self.monitor.fileno(), self.ra_socket.fileno(), self.tun.fileno()):
            self.loop.remove_reader(fd)
        self.monitor.close()
        self.ra_socket.close()
        if self.io is not None:
            await self.io.close()
            await self.io.kernel(self._teardown_kernel)
        else:
            await self.io_kernel(self.rules.remove)
        self.attach_driver.execute(self.attach.stop(self.loop.time()))   # the pinned route goes
        try:
            await asyncio.wait_for(self.attach_driver.drain(), 5.0)
        except asyncio.TimeoutError:
            self.emit("mipv6.mn.stop_timeout", pending="attachment effects")
        self.attach_driver.close()
        await self.io_kernel(self.backend.close)
        await self.loop.run_in_executor(self.pool, self.kernel.close)
        self.pool.shutdown(wait=True)
        self.tun.close()

    def _teardown_kernel(self) -> None:
        k = self.kernel
        hoa, _ha, prefix = self.attach.home
        self.backend.mn_teardown(k)
        k.flush_table(tunnel.TUNNEL_TABLE)
        self.rules.remove()
        plen = ipaddress.IPv6Network(prefix).prefixlen
        for a in k.addresses():
            if a["address"] == hoa:
                name = next((n for i, n in self.index_to_name.items() if i == a["index"]), "lo")
                k.del_address(name, hoa, 128 if name == "lo" else plen, missing_ok=True)

    # ------------------------------------------------------------------ movement detection
    # The decisions are the attachment core's (mip6bench.mipv6.attachment); here only
    # what it reads and what it asks for.
    def _on_netlink(self) -> None:
        now, overruns = self.loop.time(), self.monitor.overruns
        at, execute = self.attach, self.attach_driver.execute
        for event in self.monitor.read():
            name = self.index_to_name.get(event.index)
            if name is None:
                continue   # not an access interface
            if isinstance(event, LinkEvent):
                execute(at.link_event(name, event.deleted or not event.lower_up, now))
            else:
                execute(at.address_event(AddressState(name, event.address, event.scope, event.tentative,
                                                      event.optimistic, event.dadfailed), event.deleted, now))
        if self.monitor.overruns != overruns:   # notifications were lost: read it all again
            execute(at.link_event(None, False, now))

    def _on_ra(self) -> None:
        while (item := self.ra_socket.recv()) is not None:
            body, src, ifindex, hoplimit = item
            try:
                ra = ndisc.parse_router_advert(body)
            except DecodeError:
                self.count("ra.malformed")
                continue
            self.attach_driver.execute(self.attach.router_advertisement(
                self.index_to_name.get(ifindex), src, hoplimit, ra.prefixes, ra.router_lifetime,
                self.loop.time(), interval_ms=ra.advertisement_interval_ms, home_agent=ra.home_agent))

    def _observe(self) -> tuple[dict[str, bool], list[AddressState]]:
        """On the kernel thread: carrier and addresses of the access interfaces."""
        k = self.kernel
        carrier = {link["name"]: link["carrier"] and link["up"] for link in k.links()
                   if link["name"] in self.options.interfaces}
        addresses = [AddressState(name, a["address"], a["scope"], a["tentative"], a["optimistic"], a["dadfailed"])
                     for a in k.addresses() if (name := self.index_to_name.get(a["index"]))]
        return carrier, addresses

    @staticmethod
    def _no_transmit(transmit) -> None:
        raise TypeError("the attachment core sends nothing")

    async def _apply_attachment(self, effect) -> None:
        """The attachment core's effects, in order (CoreDriver's worker)."""
        now = self.loop.time()
        if isinstance(effect, (ObserveLinks, PinDefaultRoute, HomeLinkAddress)):
            try:
                if isinstance(effect, ObserveLinks):
                    self.attach.observing()
                    carrier, addresses = await self.io_kernel(self._observe)
                    self.attach_driver.execute(self.attach.observed(carrier, addresses, self.loop.time()))
                elif isinstance(effect, PinDefaultRoute):
                    await self.io_kernel(self._pin_default_route, effect)
                    self.attach.route_pinned(effect)
                else:
                    await self.io_kernel(self._home_link_address, effect.interface, effect.present)
            except Exception as exc:  # a kernel call failed: report it, keep running
                self.attach.kernel_failed(effect)
                self.count("reconcile.failed")
                self.emit("mipv6.mn.reconcile_failed", error=f"{type(exc).__name__}: {exc}")
            return
        if isinstance(effect, MoveTo):
            self.io.execute(self.core.move_to(effect.coa, now))
            self._nsis_addresses()
            # Returning home ended route optimisation for good; away again, ask for it
            # anew (the core runs it once the home registration for this CoA is accepted).
            self._want_route_optimization(now)
        elif isinstance(effect, ReturnHome):
            self.io.execute(self.core.return_home(now))
        elif isinstance(effect, Activate):
            try:
                setup = await self._activate(effect.hoa, effect.ha, effect.home_prefix)
            except Exception as exc:
                self._activation_failed(exc)
                return
            # The first Binding Update goes out from the care-of address the attachment
            # core last saw (its next effects, after this one) while the set-up runs.
            self.spawn(self._activated(setup, effect.hoa, effect.ha, effect.home_prefix), "activation")
            self.attach_driver.execute(self.attach.activated(self.loop.time()))
        elif isinstance(effect, InstallSA):
            self.sa_store.replace(effect.sa)
            self.emit("mipv6.sa_added", spi=effect.sa.spi, hoa=effect.sa.hoa, nai=effect.sa.nai, source=effect.source)
        elif isinstance(effect, RemoveSA):
            if self.sa_store.remove(effect.spi) is not None:
                self.emit("mipv6.sa_removed", spi=effect.spi, reason=effect.reason)
        elif isinstance(effect, SasChanged):
            if self.core is not None:
                self.io.execute(self.core.security_associations_changed(now))
        elif isinstance(effect, SetNsisToken):
            self.nsis_token = effect.token
            if effect.signalling and self.nsis is not None:
                self.ni.set_token(effect.token)
        elif isinstance(effect, SetPanaInterface):
            self.pana.config.interface = effect.interface   # where a multicast PCI leaves
        elif isinstance(effect, StartPana):
            self.pana.start()
        elif isinstance(effect, PingPana):
            if self.pana.ping():   # the PAA learns the new address from an authenticated ping
                self.attach.pana_pinged(effect.address)
        else:
            self.emit("mipv6.mn.effect_ignored", effect=type(effect).__name__)
        await self._notify()

    async def io_kernel(self, fn, *args):
        """A kernel call on the agent's one kernel thread (also before activation)."""
        return await self.loop.run_in_executor(self.pool, fn, *args)

    def _pin_default_route(self, pin: PinDefaultRoute) -> None:
        """The default route through the router of the network we are attached to, ahead
        of the RA-learned ones (metric ATTACHED_METRIC): right after a move the kernel may
        still route by the interface just left (carrier loss reaches routing through
        linkwatch up to 1 s later), which would lose what applications send, e.g. from
        the home address once back home. No interface: detached, no pin."""
        if pin.interface is None:
            self.kernel.del_route("default", metric=ATTACHED_METRIC, missing_ok=True)
        else:
            self.kernel.add_route("default", gateway=pin.router, dev=pin.interface, metric=ATTACHED_METRIC)

    def _home_link_address(self, ifname: str, present: bool) -> None:
        """At home the HoA must answer neighbour discovery on the home link itself."""
        hoa, _ha, prefix = self.attach.home
        plen = ipaddress.IPv6Network(prefix).prefixlen
        if present:
            self.kernel.add_address(ifname, hoa, plen, dad=DadMode.OFF, replace=True)
        else:
            self.kernel.del_address(ifname, hoa, plen, missing_ok=True)

    # ------------------------------------------------------------------ PANA bootstrapping
    def _on_bootstrap(self, update) -> None:
        """PanaClient's on_update (synchronous, on the loop): the attachment core decides,
        its effects apply in the order PANA produced the updates."""
        b = update.bootstrap
        delay = self.pana.restart_delay(update) if update.kind == "closed" else None
        result = BootstrapResult(update.kind, old_spi=update.old_spi, reason=update.reason, restart_delay=delay)
        if b is not None:
            result = dataclasses.replace(result, hoa=b.hoa, ha=b.ha, home_prefix=b.home_prefix, sa=b.sa,
                                         token=b.token, sources=dict(b.sources), session_id=b.session_id)
        self.attach_driver.execute(self.attach.bootstrap(result, self.loop.time()))

    # ------------------------------------------------------------------ effects
    def _tunnel_endpoints(self) -> tuple[str, str] | None:
        if self.core is None or self.core.coa is None:
            return None
        return self.core.coa, self.core.ha

    def _point(self, hoa: str, coa: str, ha: str, dev: str) -> float:
        """On the kernel thread: the tunnel to the HA from `coa`; ms it took there."""
        t0 = time.perf_counter()
        self.backend.mn_point(self.kernel, hoa, coa, ha, dev)
        return round((time.perf_counter() - t0) * 1000, 3)

    async def apply(self, effect) -> None:
        if isinstance(effect, TunnelUp):
            dev = self.attach.coa_interface
            t0 = time.monotonic()
            point_ms = await self.io.kernel(self._point, effect.hoa, effect.local, effect.remote, dev)
            self.emit("mipv6.mn.tunnel_up", coa=effect.local, ha=effect.remote, interface=dev,
                      backend=self.backend.name, kernel_ms=round((time.monotonic() - t0) * 1000, 3),
                      point_ms=point_ms)
        elif isinstance(effect, TunnelDown):
            await self.io.kernel(self.backend.mn_down, self.kernel)
            self.emit("mipv6.mn.tunnel_down", reason=effect.reason)
        elif isinstance(effect, RouteOptimizationOn):
            cn, coa = packed(effect.cn), packed(effect.coa)
            fresh = cn not in self.ro_routes
            self.ro_routes[cn] = coa
            if fresh:
                await self.io.kernel(lambda: self.kernel.add_route(
                    effect.cn, dev=self.tun.name, table=tunnel.TUNNEL_TABLE))
        elif isinstance(effect, RouteOptimizationOff):
            if self.ro_routes.pop(packed(effect.cn), None) is not None:
                await self.io.kernel(lambda: self.kernel.del_route(effect.cn, table=tunnel.TUNNEL_TABLE,
                                                                   missing_ok=True))
            self.emit("mipv6.mn.ro_fallback", cn=effect.cn, reason=effect.reason)
        elif isinstance(effect, OpenPinholes):
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
                        await self._apply_attachment(pin)
                self.nsis.execute(self.traversal.open(effect.cn, effect.hoa, effect.coa, effect.phase,
                                                      self.nsis.now()))
        elif isinstance(effect, ClosePinholes):
            if self.nsis is not None:
                self.nsis.execute(self.traversal.close(effect.cn, effect.hoa, effect.coa, effect.reason,
                                                       self.nsis.now(), moving=effect.moving))
        elif isinstance(effect, RegistrationFailed):
            self.emit("mipv6.mn.registration_failed", ha=effect.ha, coa=effect.coa, status=effect.status,
                      reason=effect.reason)
        elif not isinstance(effect, (HomeRegistered, HomeDeregistered)):
            self.emit("mipv6.mn.effect_ignored", effect=type(effect).__name__)
        await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # ------------------------------------------------------------------ data path
    def _on_tun(self) -> None:
        counters = self.count
        while (packet := self.tun.read()) is not None:
            if self.io is None or len(packet) < 40 or packet[8:24] != self.hoa_packed:
                counters("ro.out_not_from_home_address")
                continue
            coa = self.ro_routes.get(packet[24:40])
            if coa is not None and _is_gist(packet):
                # Path-coupled signalling for the home address's flows (HoTI, BU) must
                # take their path, the reverse tunnel, not the route-optimised one.
                coa = None
            if coa is not None and self.core.coa is not None:
                if self.io.send_packet(ro.add_home_address_option(packet, coa)):
                    counters("ro.out")
                continue
            # RO ended after the kernel routed this packet here: reverse-tunnel it ourselves.
            endpoints = self._tunnel_endpoints()
            if endpoints is None:
                counters("ro.out_dropped")
                continue
            self.io.send_packet(ro.encapsulate(packet, packed(endpoints[0]), packed(endpoints[1])))
            counters("ro.out_tunnelled")

    def on_data(self, packet: bytes, _ifname: str) -> None:
        """RFC 6275 11.3.3: a type 2 routing header must name our home address, and the
        packet must be addressed to one of our care-of addresses."""
        try:
            hoa, plain = ro.strip_type2_routing_header(packet)
        except DecodeError:
            self.count("ro.in_malformed")
            return
        if hoa != self.hoa_packed or self.core.coa is None or packet[24:40] != packed(self.core.coa):
            self.count("ro.in_not_for_us")
            return
        try:
            self.tun.write(plain)
            self.count("ro.in")
        except OSError:
            self.count("ro.in_failed")

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
        home = self.core.home
        return {**out, "hoa": self.core.hoa, "ha": self.core.ha, "coa": self.core.coa,
                "at_home": self.core.at_home, "home_state": home.state,
                "registered_coa": home.registered_coa,
                "route_optimized": sorted(cn for cn, e in self.core.correspondents.items() if e.ro_on)}

    def dump(self) -> dict:
        out = self.status()
        if self.core is not None:
            out.update(core_counters=dict(self.core.counters), io_counters=dict(self.io.counters),
                       correspondents={cn: {"state": e.state, "ro_on": e.ro_on, "ro_coa": e.ro_coa,
                                            "disabled": e.disabled_reason}
                                       for cn, e in self.core.correspondents.items()})
        return out

    def _need_core(self) -> MobileNode:
        if self.core is None:
            raise LookupError("not bootstrapped: no home agent and home address yet")
        return self.core

    async def cmd_sa_add(self, req: dict) -> dict:
        spec = {k: v for k, v in req.items() if k not in ("cmd", "replace")}
        sa = parse_sa(spec, self.loop.time())
        if req.get("replace"):
            self.sa_store.replace(sa)
        else:
            self.sa_store.add(sa)
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
        try:
            self.ni.set_token(token)
        except (ValueError, DecodeError) as exc:
            raise ValueError(f"not a SESSION_AUTH token: {exc}") from None
        self.nsis_token = token
        self.emit("mipv6.mn.nsis_token", length=len(token), source="command")
        return {"length": len(token)}

    async def cmd_register(self, _req) -> dict:
        core = self._need_core()
        self.io.execute(core.register(self.io.now()))
        return self.status()

    def _holds(self, until: str, req: dict) -> bool:
        core = self.core
        if core is None:
            return False
        if until == "registered":
            coa = req.get("coa")
            return (core.coa is not None and core.home_registered
                    and core.home.registered_coa == core.coa and (coa is None or core.coa == coa))
        if until == "ro":
            cn = str(ipaddress.IPv6Address(req["cn"]))
            entry = core.correspondents.get(cn)
            return bool(entry and entry.ro_on and packed(cn) in self.ro_routes
                        and (req.get("coa") is None or entry.ro_coa == req["coa"]))
        if until == "home":
            return core.at_home and core.home.state == "idle" and core.home.registered_coa is None
        raise ValueError("until must be registered, ro or home")

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
                       netfilter=await self.io.kernel(self.rules.counters),
                       tunnel=await self.io.kernel(self.backend.counters))
        if self.nsis is not None:
            out.update(natfw=dict(self.ni.counters), gist=self.gist.counters())
        return out


if __name__ == "__main__":
    sys.exit(run(MobileNodeAgent))
