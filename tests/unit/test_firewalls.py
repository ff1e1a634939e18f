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
