"""An HA agent killed with SIGKILL leaves its bindings' kernel state behind; the next
agent on the node removes it before it sets up (TunnelBackend.ha_purge)."""
from __future__ import annotations

import pytest

from mip6bench.net import tunnel

HOME = "2001:db8:1::/64"


class LeftoverKernel(tunnel.MobilityKernel):
    """What the kernel of a node holds after its HA agent died; run() records."""

    def __init__(self, routes, proxies, links):
        super().__init__()
        self._routes, self._proxies, self._links = routes, proxies, links
        self.batches: list[list[str]] = []

    def routes(self, table="main"):
        assert table == "main"
        return self._routes

    def proxy_entries(self, ifname):
        assert ifname == "ha-home"
        return self._proxies

    def links(self):
        return [{"name": n} for n in self._links]

    def run(self, *commands, quiet=False):
        self.batches.append(list(commands))


LEFT = [
    {"dst": "2001:db8:1::1001", "dev": "ha-core", "encap": "seg6", "type": "unicast"},    # a binding's
    {"dst": "2001:db8:1::1002", "dev": "mip6tun"},                                       # userspace's
    {"dst": "2001:db8:1::/64", "dev": "ha-home"},                                        # the home link
    {"dst": "2001:db8:1::1", "dev": "lo", "type": "local"},                              # the HA's own
    {"dst": "2001:db8:11::5", "dev": "ha-core"},                                         # not home
    {"dst": "default", "gateway": "2001:db8:ff:1::1", "dev": "ha-core"},
]


@pytest.mark.parametrize("backend", [tunnel.Seg6Backend, tunnel.Ip6tnlBackend, tunnel.UserspaceBackend])
def test_purge_removes_what_a_killed_home_agent_left(backend):
    k = LeftoverKernel(LEFT, ["2001:db8:1::1001", "fe80::1001"], ["lo", "ha-home", "m6t0123456789"])
    removed = backend().ha_purge(k, HOME, "ha-home")
    assert removed == ["route 2001:db8:1::1001", "route 2001:db8:1::1002", "proxy 2001:db8:1::1001",
                       "proxy fe80::1001", "link m6t0123456789"]
    assert k.batches == [["route del 2001:db8:1::1001/128 table main",
                          "route del 2001:db8:1::1002/128 table main",
                          "neigh del proxy 2001:db8:1::1001 dev ha-home",
                          "neigh del proxy fe80::1001 dev ha-home",
                          "link del dev m6t0123456789"]]


def test_purge_of_a_clean_node_changes_nothing():
    k = LeftoverKernel(LEFT[2:], [], ["lo", "ha-home"])
    assert tunnel.Seg6Backend().ha_purge(k, HOME, "ha-home") == []
    assert k.batches == [[]]
