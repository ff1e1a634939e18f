"""Firewalls as a role: every node the plan marks as a firewall gets the ruleset, a fw
agent and (with NSIS) its own authorization channel to the PAA."""
from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest

from mip6bench.errors import Mip6benchError
from mip6bench.params import parse_params
from mip6bench.testbed.bootstrap import BootstrapServices
from mip6bench.testbed.operational import (NodeSpec, Plan, build_plan, is_firewall,
                                           topology_params)


def plan(**params) -> Plan:
    return build_plan(parse_params(topology_params(), params))


def test_the_default_plan_has_one_firewall_fw():
    p = plan()
    assert [n.name for n in p.firewalls()] == ["fw"]


def test_a_node_flagged_in_its_extra_is_a_firewall_too():
    p = plan()
    ar = p.nodes["ar1"]
    p.nodes["ar1"] = NodeSpec(ar.name, ar.role, ar.addresses, ar.routes, ar.forwarding,
                              dict(ar.extra, firewall=True, inside="ar1-f1", outside="ar1-core"))
    assert is_firewall(p.nodes["ar1"]) and not is_firewall(p.nodes["ar2"])
    assert [n.name for n in p.firewalls()] == ["fw", "ar1"]   # the CN's first


def test_each_firewall_has_its_own_private_psk_and_the_paa_knows_them_all(tmp_path):
    p = plan()
    ar = p.nodes["ar1"]
    p.nodes["ar1"] = NodeSpec(ar.name, ar.role, ar.addresses, ar.routes, ar.forwarding,
                              dict(ar.extra, firewall=True, inside="ar1-f1", outside="ar1-core"))
    tb = SimpleNamespace(plan=p, run=SimpleNamespace(state_dir=tmp_path))
    svc = BootstrapServices(tb)
    fw, ar1 = svc.fw_authz_options("fw"), svc.fw_authz_options("ar1")
    assert fw["bind"] == p.nodes["fw"].address("fw-core")
    assert ar1["bind"] == p.nodes["ar1"].address("ar1-core")
    assert fw["psk_file"] != ar1["psk_file"]
    keys = {open(f).read().strip() for f in (fw["psk_file"], ar1["psk_file"])}
    assert len(keys) == 2
    for f in (fw["psk_file"], ar1["psk_file"]):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(f)).st_mode) == 0o700
    assert svc.fw_authz_options() == fw                  # default: the CN's firewall
    with pytest.raises(Mip6benchError):
        svc.fw_authz_options("cn")


def test_link_check_expectations_follow_every_firewall():
    from experiments.linkcheck import expected_reach

    p = plan()
    reach = lambda a, b: expected_reach(p, a, b)[0]   # noqa: E731
    assert not reach("core", "fw") and not reach("ha", "cn") and reach("fw", "cn")
    assert reach("cn", "fw") and reach("cn", "ha") and reach("core", "ha")
    h = plan(ha_firewall="on")
    assert [n.name for n in h.firewalls()] == ["fw", "hfw"]
    hr = lambda a, b: expected_reach(h, a, b)[0]      # noqa: E731
    assert not hr("core", "ha") and not hr("mn1", "paa") and not hr("cn", "ha")
    assert not hr("ha", "cn") and not hr("core", "hfw") and not hr("hfw", "cn")
    assert hr("ha", "core") and hr("paa", "hfw") and hr("hfw", "ha") and hr("ha", "paa")
    assert hr("cn", "core") and hr("mn1", "core")


def test_the_home_firewall_in_the_plan():
    h = plan(ha_firewall="on")
    hfw, ha = h.nodes["hfw"], h.nodes["ha"]
    assert (hfw.role, hfw.extra["inside"], hfw.extra["outside"]) == ("fw", "hfw-ha", "hfw-core")
    assert h.link("core-hfw").shaping.delay_ms == 10.0          # home_uplink on the core side
    assert not h.link("hfw-ha").shaping.active                 # inside port undelayed
    assert ha.routes == (("default", hfw.address("hfw-ha"), "ha-hfw"),)
    assert ("2001:db8:1::/64", hfw.address("hfw-core"), "core-hfw") in h.nodes["core"].routes
    services = dict(hfw.extra["services"])
    assert services["pana"] == "ip6 daddr 2001:db8:1::2 udp dport 716"
    assert "core-ha" not in {l.name for l in h.links}


def test_static_services_come_before_the_pinholes_and_the_drop():
    from mip6bench.net.firewall import ruleset

    text = ruleset("hfw-ha", "hfw-core", services=(("pana", "ip6 daddr 2001:db8:1::2 udp dport 716"),),
                   input_services=(("pana-discovery", "ip6 daddr ff05::8000:716 udp dport 716"),)).text()
    lines = text.splitlines()
    service = next(i for i, l in enumerate(lines) if 'comment "service:pana"' in l)
    assert 'iifname "hfw-core" ip6 daddr 2001:db8:1::2 udp dport 716 counter accept' in lines[service]
    assert service < next(i for i, l in enumerate(lines) if "jump pinholes" in l)
    discovery = next(i for i, l in enumerate(lines) if "service:pana-discovery" in l)
    assert lines[discovery].startswith("add rule inet mip6bench input")
    assert discovery < next(i for i, l in enumerate(lines) if "input-drop" in l)
    assert "service:" not in ruleset("fw-cnet", "fw-core").text()


def test_cli_pinholes_takes_a_firewall_name(monkeypatch):
    from mip6bench.testbed import cli

    p = plan(ha_firewall="on")
    lines = []
    monkeypatch.setattr(cli, "output", lines.append)

    class FakeFirewall:
        def counters(self):
            return {"unsolicited": {"packets": 3}}

    class Node:
        def __init__(self, name):
            self.name, self.spec = name, p.nodes[name]
            self.firewall = FakeFirewall()

    class Agent:
        def __init__(self, node):
            self.node = node

        def request(self, what):
            return [{"kind": "nsis", "session": f"{self.node}-s1", "remaining": 5.0,
                     "packets": 1, "bytes": 2, "flow": {"text": "a -> b"}}]

    nodes = {n: Node(n) for n in ("fw", "hfw", "ha")}
    fake = SimpleNamespace(mn=SimpleNamespace(nameToNode=nodes, hosts=list(nodes.values())),
                           testbed=SimpleNamespace(agents={(n, "fw"): Agent(n) for n in ("fw", "hfw")}))
    cli.TestbedCLI.do_pinholes(fake, "")
    assert "fw-s1" in "".join(lines) and "hfw-s1" not in "".join(lines)
    lines.clear()
    cli.TestbedCLI.do_pinholes(fake, "hfw")
    assert "hfw-s1" in "".join(lines) and "unsolicited" in "".join(lines)
    lines.clear()
    cli.TestbedCLI.do_pinholes(fake, "ha")
    assert lines == ["no firewall named ha; firewalls: fw, hfw\n"]
