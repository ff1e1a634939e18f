"""The operational topology as a Mininet Topo (the plan, turned into nodes and links)."""
from __future__ import annotations

from mininet.topo import Topo

from mip6bench.params import parse_params
from mip6bench.testbed.links import ShapedLink
from mip6bench.testbed.nodes import NODE_CLASSES, LanSegment
from mip6bench.testbed.operational import Plan, build_plan, topology_params


class OperationalTopo(Topo):
    """Home network, foreign access networks, core, firewalled CN network, MNs."""

    def build(self, plan: Plan | None = None, layout=None, ssh=None, **params):
        """With a cluster `layout` (testbed.cluster), every node is a remote node on its
        server, each MN server has its own segment of the LANs its MNs attach to, and
        the trunks join those segments to the LANs."""
        self.plan = plan or build_plan(parse_params(topology_params(), params))
        self.layout = layout
        if layout is None and self.plan.params.get("cluster"):
            from mip6bench.errors import ParameterError
            raise ParameterError("cluster= needs the testbed's own runner (it places the nodes)",
                                 "use `mip6bench run|cli --cluster ...`, not `mn --topo`")

        def placed(cls, name):
            if layout is None:
                return {"cls": cls}
            from mip6bench.testbed.cluster import cluster_class
            return {"cls": cluster_class(cls), "server": layout.node_server[name], "ssh": ssh}

        for node in self.plan.nodes.values():
            if node.role == "lan":
                self.addSwitch(node.name, **placed(LanSegment, node.name))
            else:
                self.addHost(node.name, spec=node, **placed(NODE_CLASSES[node.role], node.name))
        if layout is not None:
            from mip6bench.testbed.cluster import TrunkLink
            for segment in layout.segments:
                self.addSwitch(segment, **placed(LanSegment, segment))
            for trunk in layout.trunks:
                self.addLink(trunk.lan, trunk.segment, intfName1=trunk.lan_intf,
                             intfName2=trunk.segment_intf, cls=TrunkLink)
        seed = self.plan.params["seed"]
        lans = {n.name for n in self.plan.lans()}

        def end(name, other):  # the LAN segment on the other node's server
            return layout.lan_for(name, other) if layout is not None and name in lans else name

        for i, link in enumerate(self.plan.links):
            self.addLink(end(link.a, link.b), end(link.b, link.a),
                         intfName1=link.a_intf, intfName2=link.b_intf,
                         cls=ShapedLink, shaping=link.shaping, attached=link.attached,
                         seed=seed * 1000 + i, spec=link, emulation=self.plan.params["links"])
