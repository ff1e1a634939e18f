"""An HA agent killed with SIGKILL leaves its bindings' kernel state behind; the next
agent on the node removes it before it sets up (TunnelBackend.ha_purge)."""
from __future__ import annotations

import pytest

from mip6bench.net import kernel as kn
from mip6bench.net import tunnel

HOME = "2001:db8:1::/64"


class LeftoverKernel(kn.Kernel):
    """What the kernel of a node holds after its HA agent died; changes are recorded."""

    def __init__(self, routes, proxies, links):
        self.netns, self._index, self._seg6 = None, {}, None
        self._routes, self._proxies, self._links = routes, proxies, links
        self.calls: list[tuple] = []

    def routes(self, table=kn.RT_TABLE_MAIN):
        assert table == kn.RT_TABLE_MAIN
        return self._routes

    def proxy_entries(self, ifname):
        assert ifname == "ha-home"
        return self._proxies

    def links(self):
        return [{"name": n} for n in self._links]

    def del_route(self, dst, *, table=None, missing_ok=False, **kw):
        self.calls.append(("route del", dst, table, missing_ok))

    def del_proxy_ndp(self, ifname, address):
        self.calls.append(("proxy del", address, ifname))

    def delete_link(self, name, *, missing_ok=False):
        self.calls.append(("link del", name, missing_ok))


def route(dst, type_=kn.RTN_UNICAST):
    return {"dst": dst, "type": type_}


LEFT = [
    route("2001:db8:1::1001/128"),                 # a binding's (seg6 encap or tunnel device)
    route("2001:db8:1::1002/128"),                 # userspace's
    route("2001:db8:1::/64"),                      # the home link
    route("2001:db8:1::1/128", type_=2),           # the HA's own (RTN_LOCAL)
    route("2001:db8:11::5/128"),                   # not home
    route("::/0"),                                 # default
]


@pytest.mark.parametrize("backend", [tunnel.Seg6Backend, tunnel.Ip6tnlBackend, tunnel.UserspaceBackend])
def test_purge_removes_what_a_killed_home_agent_left(backend):
    k = LeftoverKernel(LEFT, ["2001:db8:1::1001", "fe80::1001"], ["lo", "ha-home", "m6t0123456789"])
    removed = backend().ha_purge(k, HOME, "ha-home")
    assert removed == ["route 2001:db8:1::1001", "route 2001:db8:1::1002", "proxy 2001:db8:1::1001",
                       "proxy fe80::1001", "link m6t0123456789"]
    assert k.calls == [("route del", "2001:db8:1::1001/128", kn.RT_TABLE_MAIN, True),
                       ("route del", "2001:db8:1::1002/128", kn.RT_TABLE_MAIN, True),
                       ("proxy del", "2001:db8:1::1001", "ha-home"),
                       ("proxy del", "fe80::1001", "ha-home"),
                       ("link del", "m6t0123456789", True)]


def test_purge_of_a_clean_node_changes_nothing():
    k = LeftoverKernel(LEFT[2:], [], ["lo", "ha-home"])
    assert tunnel.Seg6Backend().ha_purge(k, HOME, "ha-home") == []
    assert k.calls == []
