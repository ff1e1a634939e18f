"""The mobile node's kernel state (agents/mn.py): access interfaces, home address,
tunnel to the HA, route-optimisation routes and the pinned default route.

Home address: it lives on `lo` (/128, no DAD) for the agent's whole life, so sockets
bound to it survive every handover. Away from home, policy routing sends what the
applications send from it into the tunnel to the HA (mip6bench.net.tunnel), or, for
route-optimised correspondents, into the TUN device, where the agent rewrites it to come
from the CoA with a Home Address option (mip6bench.net.ro). At home the address is also
put on the home interface (/64) so the home link reaches it directly.

Every method but `egress_ifindex` and `interface_name` runs on the agent's one kernel
thread (pyroute2's synchronous calls run an event loop of their own, and one thread
keeps the changes in order).
"""
from __future__ import annotations

import ipaddress
import time

from mip6bench.net import ro
from mip6bench.net.intercept import InterceptRules, TunDevice, type2_routing_header_drop
from mip6bench.net.kernel import DadMode, Kernel

NFT_TABLE = "mip6bench_mn"
ATTACHED_METRIC = 1   # our default route via the attached network's router beats RA-learned ones (1024)


class MobileNodeKernel:
    def __init__(self, backend, tun: TunDevice, interfaces: list[str], dad: str):
        self.backend, self.tun, self.interfaces, self.dad = backend, tun, list(interfaces), DadMode(dad)
        self.rules = InterceptRules(None, NFT_TABLE)
        self.index_to_name: dict[int, str] = {}
        self.kernel: Kernel | None = None

    def open(self) -> None:
        """The kernel handle, and per-interface settings for fast movement detection,
        DAD as configured."""
        self.backend.prepare("mn")
        self.kernel = k = Kernel()
        dad = self.dad
        values: dict[str, int] = {"net/ipv6/conf/all/ignore_routes_with_linkdown": 1}
        for ifname in self.interfaces:
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
        # The type 2 routing header drop rule needs nothing from the home side: in place
        # from the start, its `nft` run (15-25 ms) is off the first Binding Update's path.
        self.rules.install([type2_routing_header_drop()])

    def interface_name(self, index: int) -> str | None:
        """The access interface with that index (None: not one of them)."""
        return self.index_to_name.get(index)

    def egress_ifindex(self, attached: str | None) -> int:
        """The attached interface, where the care-of address (or, at home, the home
        address) lives: the MN's own packets leave there (0: detached, routing decides)."""
        for index, name in self.index_to_name.items():
            if name == attached:
                return index
        return 0

    def observe(self) -> tuple[dict[str, bool], list[tuple]]:
        """Carrier of the access interfaces, and their addresses as (interface, address,
        scope, tentative, optimistic, dadfailed)."""
        k = self.kernel
        carrier = {link["name"]: link["carrier"] and link["up"] for link in k.links()
                   if link["name"] in self.interfaces}
        addresses = [(name, a["address"], a["scope"], a["tentative"], a["optimistic"], a["dadfailed"])
                     for a in k.addresses() if (name := self.index_to_name.get(a["index"]))]
        return carrier, addresses

    def pin_default_route(self, interface: str | None, router: str | None) -> None:
        """The default route through the router of the network we are attached to, ahead
        of the RA-learned ones (metric ATTACHED_METRIC): right after a move the kernel may
        still route by the interface just left (carrier loss reaches routing through
        linkwatch up to 1 s later), which would lose what applications send, e.g. from
        the home address once back home. No interface: detached, no pin."""
        if interface is None:
            self.kernel.del_route("default", metric=ATTACHED_METRIC, missing_ok=True)
        else:
            self.kernel.add_route("default", gateway=router, dev=interface, metric=ATTACHED_METRIC)

    def home_link_address(self, ifname: str, hoa: str, prefix: str, present: bool) -> None:
        """At home the HoA must answer neighbour discovery on the home link itself."""
        plen = ipaddress.IPv6Network(prefix).prefixlen
        if present:
            self.kernel.add_address(ifname, hoa, plen, dad=DadMode.OFF, replace=True)
        else:
            self.kernel.del_address(ifname, hoa, plen, missing_ok=True)

    def setup_home(self, hoa: str, ha: str) -> None:
        """The home side: the home address on lo, decapsulation of what the HA tunnels."""
        k = self.kernel
        if not any(a["address"] == hoa and a["index"] == k.ifindex("lo") for a in k.addresses("lo")):
            k.add_address("lo", hoa, 128, dad=DadMode.OFF)
        self.backend.mn_setup(k, ha, self.tun.name)
        extra = self.backend.mn_nft_rules(ha)
        if extra:   # (the user-space tunnel's: what comes from the HA is its forwarder's)
            self.rules.install([type2_routing_header_drop()] + extra)

    def point(self, hoa: str, coa: str, ha: str, dev: str) -> float:
        """The tunnel to the HA from `coa`; ms it took."""
        t0 = time.perf_counter()
        self.backend.mn_point(self.kernel, hoa, coa, ha, dev)
        return round((time.perf_counter() - t0) * 1000, 3)

    def tunnel_down(self) -> None:
        self.backend.mn_down(self.kernel)

    def ro_route(self, cn: str, present: bool) -> None:
        """What applications send from the home address to `cn` goes to the TUN device
        (route-optimised), or no longer."""
        from mip6bench.net import tunnel

        if present:
            self.kernel.add_route(cn, dev=self.tun.name, table=tunnel.TUNNEL_TABLE)
        else:
            self.kernel.del_route(cn, table=tunnel.TUNNEL_TABLE, missing_ok=True)

    def counters(self) -> dict:
        return {"netfilter": self.rules.counters(), "tunnel": self.backend.counters()}

    def teardown(self, home: tuple[str, str, str] | None) -> None:
        """Undo the home side (`home`: HoA, HA, home prefix; None: never set up) and the
        interception rules."""
        if home is None:
            self.rules.remove()
            return
        from mip6bench.net import tunnel

        k = self.kernel
        hoa, _ha, prefix = home
        self.backend.mn_teardown(k)
        k.flush_table(tunnel.TUNNEL_TABLE)
        self.rules.remove()
        plen = ipaddress.IPv6Network(prefix).prefixlen
        for a in k.addresses():
            if a["address"] == hoa:
                name = next((n for i, n in self.index_to_name.items() if i == a["index"]), "lo")
                k.del_address(name, hoa, 128 if name == "lo" else plen, missing_ok=True)

    def close(self) -> None:
        self.backend.close()
        if self.kernel is not None:
            self.kernel.close()
