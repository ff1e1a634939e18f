"""The operational topology as a Mininet Topo (the plan, turned into nodes and links)."""
from __future__ import annotations

from mininet.topo import Topo

from mip6bench.params import parse_params
from mip6bench.testbed.links import ShapedLink
from mip6bench.testbed.nodes import NODE_CLASSES, LanSegment
from mip6bench.testbed.operational import Plan, build_plan, topology_params


class OperationalTopo(Topo):
    """Home network, foreign access networks, core, firewalled CN network, MNs."""

    def build(self, plan: Plan | None = None, **params):
        self.plan = plan or build_plan(parse_params(topology_params(), params))
        for node in self.plan.nodes.values():
            if node.role == "lan":
                self.addSwitch(node.name, cls=LanSegment)
            else:
                self.addHost(node.name, cls=NODE_CLASSES[node.role], spec=node)
        seed = self.plan.params["seed"]
        for i, link in enumerate(self.plan.links):
            self.addLink(link.a, link.b, intfName1=link.a_intf, intfName2=link.b_intf,
                         cls=ShapedLink, shaping=link.shaping, attached=link.attached,
                         seed=seed * 1000 + i, spec=link, emulation=self.plan.params["links"])
