"""Home agent (RFC 6275 section 10, RFC 4285): the HomeAgent core on the wire and in the kernel.

Signalling: Binding Updates arrive with a Home Address option, so from the node's
PacketTap (the kernel's copy is dropped in netfilter); Binding Acks leave with a type 2
routing header; both as whole packets built in user space. RFC 4285 SAs come from the
`sas` option, the `sa-add`/`sa-remove` commands, and with ``sadist_peers`` from PANA
bootstrapping: the agent runs the HA end of SA distribution
(mip6bench.runtime.sa_channel.SaChannelHa, UDP ``sadist_port``), which installs the SAs
the PAA pushes, removes revoked and expired ones, and fetches on demand: a Binding Update
whose SPI the agent does not know waits until the SA has been fetched from the PAA
(sa=pull; in push mode it covers a BU that overtakes the push, or an HA restart); when
the fetch fails the core rejects the BU with 146 as usual. The HomeAgent core decides
which BUs wait, within its bounds (SPIs fetched at once, BUs per SPI, BUs in all), and
when SAs expire (its timers, run by MobilityIO's CoreDriver). A change applies from the
next message. A binding lives no longer than the SA that authorised it (the core caps
the granted lifetime), and when an SA leaves the store (the PAA revokes it, it expires,
`sa-remove`) the core ends the binding it authorised (HomeAgent.sa_revoked) and the
agent removes tunnel, reverse-tunnel admission and proxy ND like on expiry; an SA the
PAA revokes because re-authentication replaced it ("rekeyed") leaves the binding to its
granted lifetime, which the MN refreshes with the new SA.

Per accepted home registration the agent
  * defends the home address on the home link: proxy neighbour discovery (proxy_ndp,
    proxy_delay 0) and an unsolicited Neighbor Advertisement; before the first
    registration of a home address it runs Duplicate Address Detection on the MN's
    behalf (``perform_dad``: the agent sends the probe and reports what it hears on
    the home link; the core waits ``dad_timeout_ms`` for a defender and decides);
  * tunnels traffic for the HoA to the CoA and decapsulates what the MN reverse-tunnels,
    in the kernel (mip6bench.net.tunnel: ip6tnl or seg6, option ``tunnel_backend``);
  * admits reverse-tunnelled packets only from the registered CoA with the HoA as inner
    source: an nftables set of (CoA . HoA) pairs, everything else to the HA counted and
    dropped (`counters` shows both).
When a binding is deregistered or expires, all of that is removed again. An HA agent
that was killed (no teardown) leaves it behind: the next one removes it at start
(TunnelBackend.ha_purge, event mipv6.ha.purged), since it holds no bindings.

Control commands (besides status, dump, events):
    bindings                      the binding cache and what the kernel holds for it
    sa-add {spi, key (hex), algorithm, replay, hoa, nai, lifetime, replace}
                                  add an SA (replace=true: also overwrite one with that SPI)
    sa-remove {spi}               remove an SA and end the binding it authorised
    sas                           the SAs (never their keys)
    sa-fetch {spi | hoa | nai}    fetch an SA from the PAA now (with sadist_peers)
    sa-list                       the SAs with their remaining lifetimes (with sadist_peers)
    counters                      core, socket and netfilter counters
    wait-event {event, match, after_ns, within}   block until such an event is logged
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: agents/ha.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.codec import DecodeError
from mip6bench.errors import Mip6benchError
from mip6bench.mipv6.effects import (FetchSA, InstallBinding, MhTransmit, RemoveBinding, RequestDAD, TunnelDown,
                                     TunnelUp)
from mip6bench.mipv6.ha import HomeAgent
from mip6bench.mipv6.sa import SAStore
from mip6bench.net import ndisc, tunnel
from mip6bench.net.intercept import InterceptRules, home_address_option_drop
from mip6bench.net.kernel import BatchOutcome, Kernel
from mip6bench.net.nft import Batch, LibNft
from mip6bench.net.ro import strip_home_address_option
from mip6bench.runtime.agent import Agent, forwarded_commands, run
from mip6bench.runtime.mobility import (MobilityIO, WaitableEvents, add_sa, describe_sa, ntp_clock_offset,
                                        parse_sa)

NFT_TABLE = "mip6bench_ha"
# How long past its DAD wait the core waits for the probe to have been sent before it
# rejects the BU (128): the agent sends the probe when it executes the core's RequestDAD,
# which under a burst of registrations comes well after the core asked (experiment scale,
# 100 MNs at once: 1.07 s late; with a 1 s grace 5 of 100 BUs were rejected, at 300 MNs
# 132). The core's timer only guards against a runtime that never sends it.
DAD_RESULT_GRACE_S = 10.0


@dataclasses.dataclass(frozen=True)
class Options:
    address: str                       # the HA address MNs send Binding Updates to
    home_prefix: str                   # e.g. 2001:db8:1::/64
    home_interface: str                # the home link (proxy ND, DAD)
    uplink: str                        # interface toward the rest of the network
    sas: list[dict] = dataclasses.field(default_factory=list)
    tunnel_backend: str = "auto"       # ip6tnl | seg6 | userspace | auto
    max_lifetime: float = 3600.0
    max_bindings: int | None = None
    perform_dad: bool = True
    dad_timeout_ms: float = 1000.0     # RetransTimer: how long a defender may take to answer
    refresh_advice: float | None = None
    brr_lead: float | None = None
    sadist_peers: dict[str, str] = dataclasses.field(default_factory=dict)  # PAA address -> PSK (hex)
    sadist_port: int = 7716            # mip6bench.aaa.sadist.SADIST_PORT
    nsis: bool = False                 # GIST + a NATFW responder (the HA behind the home
                                       # network's firewall consents to MNs' pinholes)

    def __post_init__(self):
        ipaddress.IPv6Address(self.address)
        net = ipaddress.IPv6Network(self.home_prefix, strict=False)
        if ipaddress.IPv6Address(self.address) not in net:
            raise ValueError(f"HA address {self.address} is not on the home prefix {self.home_prefix}")
        if self.tunnel_backend not in tunnel.BACKENDS + ("auto",):
            raise ValueError(f"tunnel_backend must be one of {tunnel.BACKENDS + ('auto',)}")
        if self.dad_timeout_ms <= 0:
            raise ValueError("dad_timeout_ms must be positive")
        for paa, psk in self.sadist_peers.items():
            ipaddress.IPv6Address(paa)
            if not isinstance(psk, str) or len(bytes.fromhex(psk)) < 16:
                raise ValueError(f"sadist_peers: the key for {paa} must be at least 16 bytes of hex")


class HomeAgentAgent(WaitableEvents, Agent):
    role = "ha"
    Options = Options

    async def start(self) -> None:
        self._init_waitable()
        opts = self.options
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Binding Updates may arrive while the kernel is still being set up (MNs refresh
        # with an HA that restarts); their effects wait for it.
        self.kernel_ready = asyncio.Event()
        self.sa_store = SAStore()
        try:
            for spec in opts.sas:
                self.sa_store.add(parse_sa(spec, now))
        except ValueError as exc:
            raise Mip6benchError(f"bad SA in options: {exc}") from None
        self.backend = tunnel.backend(opts.tunnel_backend)
        self.core = HomeAgent(opts.address, [opts.home_prefix], self.sa_store,
                              max_lifetime=opts.max_lifetime, max_bindings=opts.max_bindings,
                              perform_dad=opts.perform_dad, dad_wait=opts.dad_timeout_ms / 1000,
                              dad_timeout=opts.dad_timeout_ms / 1000 + DAD_RESULT_GRACE_S,
                              refresh_advice=opts.refresh_advice, brr_lead=opts.brr_lead,
                              clock_offset=ntp_clock_offset(loop.time()),
                              natfw_sa_on_demand=bool(opts.sadist_peers))
        self.rules = InterceptRules(None, NFT_TABLE)
        self.tunnelled: dict[str, str] = {}     # hoa -> coa the kernel tunnels to
        self.proxied: set[str] = set()          # addresses we answer ND for
        self.sa_channel = None
        if opts.sadist_peers:
            await self._open_sa_channel()
        self.io = MobilityIO(self.core, apply=self.apply, emit=self.emit, on_data=self.on_data,
                             hold_mh=self._hold_for_sa if opts.sadist_peers else None,
                             apply_many=self.apply_many, batch_key=self.batch_key)
        t0 = time.monotonic()
        try:
            # nftables and routing are independent: set them up side by side.
            await asyncio.gather(self.io.kernel(self._setup_kernel), asyncio.to_thread(self._install_rules))
        except Exception as exc:
            await self.io.close()
            if self.sa_channel is not None:
                await self.sa_channel.close()
            raise Mip6benchError(f"cannot set up the kernel data path: {exc}") from None
        if self.purged:
            self.emit("mipv6.ha.purged", removed=self.purged, reason="left by an earlier agent")
        # multicast_loop off: the NAs it sends for each new home address must not come
        # back to it (a registration burst woke it for every one of its own NAs; a
        # defender of an address under DAD is another node).
        self.icmp = ndisc.IcmpSocket((ndisc.ND_NEIGHBOR_SOLICIT, ndisc.ND_NEIGHBOR_ADVERT), opts.home_interface,
                                     multicast_loop=False)
        loop.add_reader(self.icmp.fileno(), self._on_icmp)
        self.kernel_ready.set()
        self.io.execute(self.core.sa_store_changed(self.io.now()))   # SA expiry
        self.nsis = None
        if opts.nsis:
            await self._open_nsis()
        self.emit("mipv6.ha.started", address=opts.address, backend=self.backend.name,
                  kernel_setup_ms=round((time.monotonic() - t0) * 1000, 3),
                  sas=len(self.sa_store), home_prefix=opts.home_prefix,
                  sadist_port=opts.sadist_port if self.sa_channel else None)

    def _setup_kernel(self) -> None:
        # On the kernel thread: pyroute2's synchronous calls run an event loop of their own.
        self.backend.prepare("ha")
        self.kernel = Kernel()
        # The reverse-tunnel set changes with every new CoA: in-process (libnftables),
        # no nft run per Binding Update.
        self.elements = LibNft(None) if self.backend.kernel_reverse_check else None
        opts, k = self.options, self.kernel
        self.home_index = k.ifindex(opts.home_interface)
        self.home_mac = next(link["mac"] for link in k.links() if link["name"] == opts.home_interface)
        self.local_addresses = sorted({a["address"] for a in k.addresses() if a["scope"] == 0})
        # An earlier HA agent of this node that was killed left its bindings' state.
        self.purged = self.backend.ha_purge(k, opts.home_prefix, opts.home_interface)
        k.sysctl({f"net/ipv6/conf/{opts.home_interface}/proxy_ndp": 1,
                  f"net/ipv6/neigh/{opts.home_interface}/proxy_delay": 0})
        self.backend.ha_setup(k, opts.address, self.local_addresses, opts.home_interface)

    def _install_rules(self) -> None:
        with Kernel() as k:
            local_addresses = sorted({a["address"] for a in k.addresses() if a["scope"] == 0})
        decl, rules = self.backend.ha_nft_rules(NFT_TABLE, self.options.address)
        self.rules.install(rules + [home_address_option_drop(local_addresses)], decl)

    async def _open_sa_channel(self) -> None:
        from mip6bench.runtime.sa_channel import SaChannelHa, bu_spi

        opts = self.options
        self.bu_spi = bu_spi
        self.sa_channel = SaChannelHa({paa: bytes.fromhex(psk) for paa, psk in opts.sadist_peers.items()},
                                      self.sa_store, emit=self.emit, port=opts.sadist_port,
                                      on_change=self._on_sa_change)
        try:
            await self.sa_channel.open()
        except OSError as exc:
            raise Mip6benchError(f"cannot open the SA distribution channel on port {opts.sadist_port}: "
                                 f"{exc.strerror}") from None

    async def _open_nsis(self) -> None:
        """GIST and the NATFW responder: the home network's firewall asks our consent for
        a mobile node's pinholes toward us; HomeAgent.natfw_consent decides."""
        from mip6bench.gist.core import GistConfig
        from mip6bench.natfw import wire as w
        from mip6bench.natfw.core import NrCore
        from mip6bench.runtime.gist import GistService
        from mip6bench.runtime.natfw import NatfwService

        def policy(sid, mri, msg):
            m = msg.get(w.Mip6Flow)
            why = self.core.natfw_consent(mri.source, mri.destination, mri.protocol,
                                          m.kind if m else None, m.mh_type if m else 0,
                                          m.home_address if m else None, self.io.now())
            if why is None:
                return None
            self.count("natfw.refused")
            self.emit("natfw.ha_refused", session=sid.hex(), source=mri.source, reason=why)
            return w.ERR_POLICY_DENIED

        self.gist = GistService(self, GistConfig(peer_identity=b"ha", addresses=(self.options.address,),
                                                 nslps=frozenset({w.NSLPID})), c_mode=True)
        self.nr = NrCore(policy=policy)
        self.nsis = NatfwService(self, self.gist, self.nr)
        try:
            await self.gist.start()
        except OSError as exc:
            raise Mip6benchError(f"cannot open the GIST sockets (UDP 270): {exc.strerror}") from None

    async def stop(self) -> None:
        if getattr(self, "nsis", None) is not None:
            await self.nsis.aclose()
        if self.sa_channel is not None:
            await self.sa_channel.close()
        asyncio.get_running_loop().remove_reader(self.icmp.fileno())
        self.icmp.close()
        await self.io.close()
        await self.io.kernel(self._teardown_kernel)
        await self.io.kernel(self.backend.close)
        await self.io.kernel(self.kernel.close)
        if self.elements is not None:
            self.elements.close()
        self.io.shutdown_pool()

    def _teardown_kernel(self) -> None:
        for hoa in list(self.tunnelled):
            self.backend.ha_unbind(self.kernel, hoa)
        for address in list(self.proxied):
            self._unproxy(address)
        self.backend.ha_teardown(self.kernel, self.local_addresses)
        self.rules.remove()

    # ------------------------------------------------------------------ effects
    async def apply(self, effect) -> None:
        if isinstance(effect, FetchSA):   # (no kernel involved: not behind its set-up)
            self.spawn(self._fetch_sa(effect.spi), f"fetch SPI {effect.spi}")
            return
        if not self.kernel_ready.is_set():
            await self.kernel_ready.wait()
        # The binding's kernel changes are made here, on the loop: netlink requests the
        # kernel answers at once (Kernel sends them itself, no thread hop), applied in the
        # core's order by the driver, which holds the Binding Ack back until the tunnel
        # points at the new care-of address.
        self._apply_now(effect)

    def _apply_now(self, effect) -> None:
        if isinstance(effect, (TunnelUp, InstallBinding)):
            error = (self._tunnel_up_many if isinstance(effect, TunnelUp) else self._install_many)([effect])[0]
            if error is not None:
                raise error
        elif isinstance(effect, TunnelDown):
            self._tunnel_down(effect.hoa)
            self.emit("mipv6.ha.tunnel_down", hoa=effect.hoa, reason=effect.reason)
        elif isinstance(effect, RemoveBinding):
            addresses = [a for a in (effect.hoa, self._link_local(effect.hoa)) if a in self.proxied]
            if addresses:
                with self.kernel.batch():
                    for address in addresses:
                        self._unproxy(address)
            self.emit("mipv6.ha.binding_state_removed", hoa=effect.hoa, reason=effect.reason)
        elif isinstance(effect, RequestDAD):
            # RFC 4862 DAD for the HoA: one NS from ::; the core listens for a defender.
            try:
                self.icmp.join(ndisc.solicited_node(effect.hoa), self.home_index)
            except OSError:
                pass  # already a member (a second DAD for the same address)
            self.io.sender.send(ndisc.dad_probe(effect.hoa), self.home_index)
            self.io.execute(self.core.dad_probe_sent(effect.hoa, self.io.now()))
        else:
            self.emit("mipv6.ha.effect_ignored", effect=type(effect).__name__)

    @staticmethod
    def batch_key(item):
        """The driver's batch_key: a binding's effects and Mobility Headers are keyed by
        its home address (a BA carries it in its type 2 routing header, or goes to it);
        FetchSA, keyed by nothing, is applied alone."""
        if isinstance(item, MhTransmit):
            return item.rh2 or item.dst
        return None if isinstance(item, FetchSA) else getattr(item, "hoa", None)

    async def apply_many(self, effects: list) -> list[Exception | None]:
        """The driver's apply_many: the effects of the Binding Updates served in one
        wake-up, distinct home addresses (see CoreDriver). Their new proxy ND entries go
        to the kernel in one netlink datagram, their tunnel changes in one call of the
        backend (userspace: one forwarder message and one datagram with the new routes);
        the other effects are applied one by one. A home address's effects keep their
        order (its grouped work is done before any other effect of it); each effect's
        error or None."""
        if not self.kernel_ready.is_set():
            await self.kernel_ready.wait()
        results: list[Exception | None] = [None] * len(effects)
        grouped: list[int] = []            # InstallBinding and TunnelUp, by index
        pending: set[str] = set()          # their home addresses

        def flush() -> None:
            installs = [i for i in grouped if isinstance(effects[i], InstallBinding)]
            ups = [i for i in grouped if isinstance(effects[i], TunnelUp)]
            for indexes, fn in ((installs, self._install_many), (ups, self._tunnel_up_many)):
                if indexes:
                    try:
                        errors = fn([effects[i] for i in indexes])
                    except Exception as exc:   # noqa: BLE001 - that group failed, not the other
                        errors = [exc] * len(indexes)
                    for i, error in zip(indexes, errors):
                        results[i] = error
            grouped.clear()
            pending.clear()

        for i, effect in enumerate(effects):
            if isinstance(effect, (InstallBinding, TunnelUp)):
                grouped.append(i)
                pending.add(effect.hoa)
                continue
            if getattr(effect, "hoa", None) in pending:
                flush()
            try:
                self._apply_now(effect)
            except Exception as exc:   # noqa: BLE001 - that effect's failure, logged by the driver
                results[i] = exc
        flush()
        return results

    def _install_many(self, effects: list[InstallBinding]) -> list[Exception | None]:
        """Proxy ND for each binding's home address (and link-local) not yet defended, in
        one netlink datagram; then an unsolicited NA for each (RFC 6275 10.4.1: tell the
        home link the HA now receives for it)."""
        outcome = BatchOutcome()
        spans: list[tuple[int, int, list[str]]] = []
        taken: set[str] = set()
        with self.kernel.batch(outcome):
            for effect in effects:
                addresses = [effect.hoa] + ([self._link_local(effect.hoa)] if effect.link_local else [])
                fresh = [a for a in addresses if a not in self.proxied and a not in taken]
                taken.update(fresh)
                start = outcome.made()
                for address in fresh:
                    self.kernel.add_proxy_ndp(self.options.home_interface, address)
                spans.append((start, outcome.made(), fresh))
        results: list[Exception | None] = []
        for start, end, fresh in spans:
            error = outcome.first_error(start, end)
            if error is None and fresh:
                self.proxied.update(fresh)
                try:
                    for address in fresh:
                        self.icmp.send_multicast(ndisc.neighbor_advert(address, self.home_mac),
                                                 ndisc.ALL_NODES, self.home_index)
                except OSError as exc:     # that binding's NA (its proxy entry stands)
                    error = exc
                self.emit("mipv6.ha.defending", addresses=fresh)
            results.append(error)
        return results

    def _tunnel_up_many(self, effects: list[TunnelUp]) -> list[Exception | None]:
        """Point each home address's tunnel at its care-of address: one backend call for
        all, then (kernel backends) the reverse-tunnel set in one nftables batch. Every
        change's event (mipv6.ha.tunnel_up) says how long the whole batch took (kernel_ms;
        tunnel_ms + nft_ms its parts) and how many changes it made (batch)."""
        t0 = time.perf_counter()
        binds = [(e.hoa, e.remote) for e in effects]
        try:
            errors = self.backend.ha_bind_many(self.kernel, binds, self.options.address, self.options.uplink)
        except Exception as exc:   # noqa: BLE001 - nothing of the batch is known to be in place
            errors = [exc] * len(binds)
        t1 = time.perf_counter()
        if self.backend.kernel_reverse_check:
            elements: list[list[str]] = []
            current = dict(self.tunnelled)
            for (hoa, coa), error in zip(binds, errors):
                if error is not None:
                    elements.append([])
                    continue
                old = current.get(hoa)
                elements.append(([tunnel.reverse_tunnel_element(NFT_TABLE, old, hoa, add=False)]
                                 if old and old != coa else []) + [tunnel.reverse_tunnel_element(NFT_TABLE, coa, hoa)])
                current[hoa] = coa
            try:
                if any(elements):
                    self.elements.apply(Batch([e for each in elements for e in each]).text())
            except Exception:   # noqa: BLE001 - then one by one, to tell whose change failed
                for i, each in enumerate(elements):
                    if each:
                        try:
                            self.elements.apply(Batch(each).text())
                        except Exception as exc:   # noqa: BLE001
                            errors[i] = exc
        t2 = time.perf_counter()
        timing = {"kernel_ms": round((t2 - t0) * 1000, 3), "tunnel_ms": round((t1 - t0) * 1000, 3),
                  "nft_ms": round((t2 - t1) * 1000, 3), "batch": len(binds)}
        for (hoa, coa), error in zip(binds, errors):
            if error is None:
                self.tunnelled[hoa] = coa
                self.emit("mipv6.ha.tunnel_up", hoa=hoa, coa=coa, backend=self.backend.name, **timing)
        return errors

    def _tunnel_down(self, hoa: str) -> None:
        coa = self.tunnelled.pop(hoa, None)
        self.backend.ha_unbind(self.kernel, hoa)
        if coa and self.backend.kernel_reverse_check:
            self.elements.apply(Batch([tunnel.reverse_tunnel_element(NFT_TABLE, coa, hoa, add=False)]).text())

    def _unproxy(self, address: str) -> None:
        self.kernel.del_proxy_ndp(self.options.home_interface, address)
        self.proxied.discard(address)

    @staticmethod
    def _link_local(hoa: str) -> str:
        iid = ipaddress.IPv6Address(hoa).packed[8:]
        return str(ipaddress.IPv6Address(bytes.fromhex("fe80000000000000") + iid))

    # ------------------------------------------------------------------ DAD on behalf
    def _on_icmp(self) -> None:
        """Neighbor Solicitations and Advertisements on the home link: the core decides
        whether one defends an address it runs DAD for."""
        while (item := self.icmp.recv()) is not None:
            body, src, _ifindex, hoplimit = item
            nt = ndisc.neighbor_target(body)
            if nt is None or hoplimit != 255:
                continue
            kind = "na" if nt[0] == ndisc.ND_NEIGHBOR_ADVERT else "ns"
            self.io.execute(self.core.neighbor_seen(kind, nt[1], src, self.io.now()))

    # ------------------------------------------------------------------ data with a HAO
    def on_data(self, packet: bytes, _ifname: str) -> None:
        """A data packet to the HA with a Home Address option: the HA is not a
        correspondent; without a binding the sender gets a Binding Error (9.3.1)."""
        try:
            hoa, _plain = strip_home_address_option(packet)
        except DecodeError:
            self.io.counters["data.malformed"] += 1
            return
        src = str(ipaddress.IPv6Address(packet[8:24]))
        _ok, actions = self.core.check_home_address_option(src, str(ipaddress.IPv6Address(hoa)), self.io.now())
        self.io.counters["data.hao_dropped"] += 1
        self.io.execute(actions)

    # ------------------------------------------------------------------ SAs
    def _hold_for_sa(self, mh: bytes, deliver) -> bool:
        """MobilityIO's hold_mh: the core decides whether a Binding Update waits for its
        SA to be fetched from the PAA (pull on demand, bounded)."""
        held, actions = self.core.hold_binding_update(self.bu_spi(mh), deliver, self.io.now())
        self.io.execute(actions)
        return held

    async def _fetch_sa(self, spi: int) -> None:
        sa = None
        try:
            for paa in self.options.sadist_peers:
                sa = await self.sa_channel.fetch(spi=spi, paa=paa)
                if sa is not None:
                    break
        finally:
            waiting, actions = self.core.sa_fetched(spi, sa is not None, self.io.now())
            self.io.execute(actions)
        for deliver in waiting:           # without the SA the core answers 146
            deliver()

    def _on_sa_change(self, kind: str, spi: int, sa, reason: str, effect) -> None:
        """SA distribution changed the store: the core re-arms expiry and ends what a
        removed SA authorised (before the core's driver exists there is nothing to end,
        and start() arms expiry for the whole store)."""
        if getattr(self, "io", None) is None:
            return
        self.io.execute(self.core.sa_distribution_changed(
            kind, spi, sa is not None, getattr(effect, "hoa", None), reason,
            getattr(effect, "successor", False), self.io.now()))

    # ------------------------------------------------------------------ control
    def commands(self):   # called before start(): the SA channel is looked up per request
        out = {"bindings": self.cmd_bindings, "sa-add": self.cmd_sa_add, "sa-remove": self.cmd_sa_remove,
               "sas": self.cmd_sas, "counters": self.cmd_counters, "wait-event": self.cmd_wait_event}
        if self.options.sadist_peers:
            from mip6bench.runtime.sa_channel import SaChannelHa

            out.update(forwarded_commands(SaChannelHa.COMMANDS, lambda: self.sa_channel))
        return out

    def status(self) -> dict:
        out = {"address": self.options.address, **self.backend.status(),
               "bindings": len(self.core.bindings), "sas": len(self.sa_store),
               "perform_dad": self.options.perform_dad, "dad_timeout_ms": self.options.dad_timeout_ms}
        if self.sa_channel is not None:
            out["sadist"] = dict(self.sa_channel.core.counters)
        if getattr(self, "nsis", None) is not None:
            out.update(natfw=dict(self.nr.counters), gist=self.gist.counters())
        return out

    def dump(self) -> dict:
        return {**self.status(), "binding_cache": self._bindings(), "core_counters": dict(self.core.counters),
                "io_counters": dict(self.io.counters)}

    def _bindings(self) -> list[dict]:
        now = self.io.now()
        return [{"hoa": e.hoa, "coa": e.coa, "seq": e.seq, "lifetime": e.lifetime,
                 "expires_in": round(e.expires_at - now, 3), "spi": e.spi,
                 "tunnel": self.tunnelled.get(e.hoa), "proxied": e.hoa in self.proxied}
                for e in self.core.bindings.values()]

    async def cmd_bindings(self, _req) -> list:
        return self._bindings()

    async def cmd_sa_add(self, req: dict) -> dict:
        sa, old = add_sa(self.sa_store, req, self.io.now())
        self.io.execute(self.core.sa_store_changed(self.io.now()))
        self.emit("mipv6.sa_added", spi=sa.spi, hoa=sa.hoa, nai=sa.nai, replaced=old is not None)
        return describe_sa(sa, self.io.now())

    async def cmd_sa_remove(self, req: dict) -> dict:
        spi = req.get("spi")
        if not isinstance(spi, int):
            raise ValueError("sa-remove needs an integer spi")
        sa = self.sa_store.remove(spi)
        if sa is None:
            raise LookupError(f"no SA with SPI {spi}")
        self.emit("mipv6.sa_removed", spi=spi, hoa=sa.hoa)
        self.io.execute(self.core.sa_store_changed(self.io.now())
                        + self.core.sa_revoked(spi, sa.hoa, "SA removed", self.io.now()))
        return {"spi": spi}

    async def cmd_sas(self, _req) -> list:
        now = self.io.now()
        return [describe_sa(sa, now) for sa in self.sa_store]

    async def cmd_counters(self, _req) -> dict:
        nft = await self.io.kernel(self.rules.counters)
        return {"core": dict(self.core.counters), "io": dict(self.io.counters), "netfilter": nft,
                "tunnel": await self.io.kernel(self.backend.counters)}


if __name__ == "__main__":
    sys.exit(run(HomeAgentAgent))
