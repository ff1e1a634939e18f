"""Mininet node classes of the testbed: IPv6-only hosts and routers, the firewall, the
access routers and home agent node (with radvd), and LAN segments as Linux bridges in
their own namespaces (so no segment ever touches the root namespace).

Nodes configure themselves in `config()`, which Mininet calls once all links exist:
sysctls, addresses, routes, and their standard services. That keeps
`mn --custom topologies/operational.py --topo operational` working with nothing else.
"""
from __future__ import annotations

import zlib
from pathlib import Path

from mininet.node import Node, Switch

from mip6bench.net.firewall import Firewall
from mip6bench.net.kernel import DadMode, Kernel, usable_address, wait_for
from mip6bench.net.netns import write_sysctls
from mip6bench.testbed.context import current_run
from mip6bench.testbed.operational import NodeSpec, is_firewall
from mip6bench.testbed.process import NodeProcess
from mip6bench.testbed.services import RouterAdvertising


class LocalOps:
    """What the testbed does to a node's namespace, by its pid on the controller's own
    kernel. A node on another server (cluster mode) does the same through that server's
    helper instead (testbed.cluster.ClusterNodeMixin, testbed.serverd)."""

    def record_self(self, what: str) -> None:
        current_run().record.add_process(self.pid, what)

    def set_sysctls(self, values: dict[str, int]) -> None:
        write_sysctls(self.pid, values)

    def ip_batch(self, lines: list[str]) -> None:
        """`ip -batch` of link commands in the node's namespace (one process, one
        netlink socket)."""
        import subprocess
        done = subprocess.run(["nsenter", "-t", str(self.pid), "-n", "ip", "-batch", "-"],
                              input="\n".join(lines) + "\n", capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: ip -batch failed: {done.stderr.strip()}")

    def wait_usable_address(self, intf: str, prefix: str, timeout: float) -> str | None:
        """A usable (not tentative) address in `prefix` on `intf`, waited for on netlink."""
        return wait_for(self.pid, lambda k: usable_address(k, intf, prefix), timeout)

    def wait_link_local(self, intf: str, timeout: float) -> bool:
        return bool(wait_for(self.pid, lambda kernel: any(
            a["address"].startswith("fe80:") and not a["tentative"] for a in kernel.addresses(intf)), timeout))


class Mip6Node(LocalOps, Node):
    """A node in its own network namespace that speaks IPv6 only."""

    def __init__(self, name: str, spec: NodeSpec | None = None, **params):
        self.spec = spec or NodeSpec(name, params.get("role", "host"))
        self.services: list[NodeProcess] = []
        self._kernel: Kernel | None = None
        params.pop("inNamespace", None)
        super().__init__(name, inNamespace=True, **params)
        self.record_self(f"node {name}")
        # Before any interface arrives: interfaces created later inherit "default".
        self.set_sysctls(self.initial_sysctls())

    def initial_sysctls(self) -> dict[str, int]:
        forwarding = int(self.spec.forwarding)
        return {
            "net/ipv6/conf/all/forwarding": forwarding,
            "net/ipv6/conf/default/forwarding": forwarding,
            # Infrastructure addresses are static; DAD only matters for the MN.
            "net/ipv6/conf/all/accept_dad": 0,
            "net/ipv6/conf/default/accept_dad": 0,
            "net/ipv6/conf/default/accept_ra": 0,
            "net/ipv6/conf/all/accept_ra": 0,
        }

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            self._kernel = Kernel(self.pid)
        return self._kernel

    def links_ready(self) -> None:
        """Wait for this node's links that a link hub is still creating (their add
        requests are pipelined: testbed.links.ShapedLink.finish)."""
        for intf in self.intfList():
            finish = getattr(getattr(intf, "link", None), "finish", None)
            if finish is not None:
                finish()

    def config(self, **_params):
        """Addresses and routes from the plan (Mininet's IPv4 defaults are not used)."""
        self.links_ready()
        k = self.kernel
        k.set_link("lo", up=True)
        for intf, cidr in self.spec.addresses:
            address, _, length = cidr.partition("/")
            k.set_link(intf, up=True)
            k.add_address(intf, address, int(length), dad=DadMode.OFF)
        for dst, gateway, intf in self.spec.routes:
            k.add_route(dst, gateway=gateway, dev=intf, replace=False)
        if is_firewall(self.spec):
            # The base stateful ruleset (default-deny inbound, established allowed) from
            # the start, whether or not a fw agent ever runs here.
            self.firewall.install()
        return {}

    @property
    def firewall(self) -> Firewall:
        """The node's stateful packet filter (nodes the plan marks as firewalls)."""
        if not is_firewall(self.spec):
            raise AttributeError(f"{self.name} is not a firewall")
        extra = self.spec.extra
        return Firewall(self.pid, extra["inside"], extra["outside"],
                        services=extra.get("services", ()),
                        input_services=extra.get("input_services", ()))

    def start_service(self, argv: list[str], what: str, **kw) -> NodeProcess:
        run = current_run()
        proc = NodeProcess(self, argv, what, run, log_path=run.logs_dir / f"{self.name}-{what}.log", **kw)
        self.services.append(proc.start())
        return proc

    def terminate(self):
        for proc in reversed(self.services):
            proc.stop()
        self.services.clear()
        if self._kernel is not None:
            self._kernel.close()
            self._kernel = None
        super().terminate()

    # Mininet's defaults describe IPv4; report the first IPv6 address instead.
    def IP(self, intf=None):
        return self.spec.address(str(intf) if intf else None)


class Router(Mip6Node):
    pass


class AdvertisingRouter(Router):
    """A router that sends Router Advertisements on its LAN (radvd): access routers,
    and the home agent on the home link (with the Home Agent flag). An access router
    whose plan marks it as a firewall (topology parameter foreign_firewall=on) is also the
    stateful packet filter of its network (Mip6Node.config installs the table)."""

    def config(self, **params):
        result = super().config(**params)
        plan = self.spec.extra
        ra = RouterAdvertising(plan["lan_intf"], plan["prefix"],
                               plan.get("ra_min_ms", 30.0), plan.get("ra_max_ms", 70.0),
                               home_agent=self.spec.role == "ha")
        run = current_run()
        conf = run.state_dir / f"{self.name}-radvd.conf"
        conf.write_text(ra.radvd_conf())
        conf.chmod(0o644)
        self.start_service(["radvd", "--nodaemon", "-C", str(conf), "-m", "stderr",
                            "-p", str(run.state_dir / f"{self.name}-radvd.pid")], "radvd")
        return result


class FirewallNode(Router):
    """A stateful packet filter (role "fw": the one in front of the CN network, and the
    home network's with ha_firewall=on); Mip6Node.config installs its base ruleset."""


class MobileNode(Mip6Node):
    """A mobile node: one interface per access network, one attached at a time, and
    addresses from Router Advertisements (SLAAC) with the configured DAD mode."""

    def initial_sysctls(self) -> dict[str, int]:
        dad = DadMode.parse(self.spec.extra.get("dad", "off"))
        values = super().initial_sysctls()
        values.update({
            "net/ipv6/conf/all/accept_ra": 1,
            "net/ipv6/conf/default/accept_ra": 1,
            "net/ipv6/conf/all/accept_dad": 0 if dad is DadMode.OFF else 1,
            "net/ipv6/conf/default/accept_dad": 0 if dad is DadMode.OFF else 1,
            "net/ipv6/conf/all/optimistic_dad": int(dad is DadMode.OPTIMISTIC),
            "net/ipv6/conf/default/optimistic_dad": int(dad is DadMode.OPTIMISTIC),
            # RAs every 30-70 ms: take the router from each one, don't rate-limit RS.
            "net/ipv6/conf/default/router_solicitation_delay": 0,
            # A detached interface's routes (carrier off) must not attract traffic.
            "net/ipv6/conf/all/ignore_routes_with_linkdown": 1,
            "net/ipv6/conf/default/ignore_routes_with_linkdown": 1,
        })
        return values

    def config(self, **_params):
        self.links_ready()
        k = self.kernel
        k.set_link("lo", up=True)
        hub_made = {intf.name for intf in self.intfList()
                    if getattr(getattr(intf, "link", None), "relay", None) is not None}
        for intf in self.spec.extra["interfaces"].values():
            if intf not in hub_made:  # a link hub's TAP is created up
                k.set_link(intf, up=True)
        return {}


class LanSegment(LocalOps, Switch):
    """A LAN: a Linux bridge in its own network namespace, with IPv6 off there except
    on the bridge device itself, which is the segment's MLD querier.

    MLD snooping (RFC 4541), as switches and access points of operational networks do
    it: multicast to a group that a port's host reported reaches only those ports (and
    the querier), so a Neighbor Solicitation for an MN's address or a multicast PANA
    discovery (ff05::8000:716, which the access router joins) is not copied to every
    other MN of the LAN. Without it a LAN of N emulated attachments carried every such
    frame N times through the link hubs: ~2 frames per arriving MN to every other MN,
    98 % of the hubs' frames (and most of their CPU) at N=1,000. Traffic to all nodes
    (RAs) and to groups nobody reported still goes to every port, so nothing that was
    delivered before is lost; the bridge's querier needs a link-local address, so IPv6 is
    on for br0 alone, without DAD, RAs, router solicitations or echo replies (its only
    traffic: a general MLD query every 125 s, and its own MLD reports). The querier
    starts once br0 is up with its link-local address (a query without a source
    address would switch it off for 31 s), and the kernel forwards by group one query
    response interval (set to 1 s) after that, flooding until then; a host re-reports
    its groups whenever its link's carrier comes back (Linux addrconf), so a handover's
    new LAN learns them at once."""

    def __init__(self, name: str, **params):
        params.pop("spec", None)
        params.pop("inNamespace", None)
        dpid = params.pop("dpid", None) or f"{zlib.crc32(name.encode()):016x}"
        super().__init__(name, dpid=dpid, inNamespace=True, **params)
        self.record_self(f"lan {name}")
        self.set_sysctls({"net/ipv6/conf/all/disable_ipv6": 1,
                                 "net/ipv6/conf/default/disable_ipv6": 1,
                                 "net/ipv6/conf/all/accept_dad": 0,
                                 "net/ipv6/icmp/echo_ignore_all": 1})

    @property
    def kernel(self) -> Kernel:
        if getattr(self, "_kernel", None) is None:
            self._kernel = Kernel(self.pid)
        return self._kernel

    @classmethod
    def setup(cls):
        pass

    def start(self, _controllers):
        k = self.kernel
        # A LAN split over servers (cluster mode: segments joined by trunks) floods as
        # before: with a querier on each segment the MNs' discovery did not get through
        # (tests/netns/test_cluster.py), not investigated further.
        snooping = not any(getattr(getattr(i, "link", None), "backend", None) == "tunnel"
                           for i in self.intfList())
        k.add_bridge("br0", snooping=snooping)
        if snooping:
            # The querier's link-local address (see the class docstring), nothing else.
            self.set_sysctls({"net/ipv6/conf/br0/accept_dad": 0, "net/ipv6/conf/br0/accept_ra": 0,
                                     "net/ipv6/conf/br0/router_solicitations": 0,
                                     "net/ipv6/conf/br0/disable_ipv6": 0})
        for intf in self.intfList():  # the hubs' TAPs exist before the index dump
            finish = getattr(getattr(intf, "link", None), "finish", None)
            if finish is not None:
                finish()
        # Every port in one `ip -batch` (one process, one netlink socket): through
        # pyroute2 a LAN with a thousand ports took ~9 ms a port.
        lines = []
        for intf in self.intfList():
            if intf.name != "lo":
                # A detached veth link is detached by keeping this (LAN) end down.
                link = intf.link
                up = getattr(link, "attached", True) or getattr(link, "relay", None) is not None
                lines.append(f"link set dev {intf.name} master br0 {'up' if up else 'down'}")
        lines.append("link set dev br0 up")
        self.ip_batch(lines)
        if not snooping:
            return
        # The querier once br0 has its link-local address (Kernel.start_querier); should
        # it not come, the querier starts anyway and the LAN floods until a query goes out.
        self.wait_link_local("br0", 5.0)
        k.start_querier("br0")   # the kernel forwards by group one response interval later

    def stop(self, deleteIntfs=True):
        # The namespace, the bridge and its ports vanish with the segment's shell.
        if getattr(self, "_kernel", None) is not None:
            self._kernel.close()
            self._kernel = None
        super().stop(deleteIntfs=False)

    def connected(self):
        return True


NODE_CLASSES = {"ha": AdvertisingRouter, "ar": AdvertisingRouter, "core": Router,
                "fw": FirewallNode, "mn": MobileNode, "paa": Mip6Node, "aaa": Mip6Node,
                "cn": Mip6Node, "atk": Mip6Node}
