"""Root-free checks of the foundation: parameters, the addressing plan, netlink request
building, nftables ruleset building, radvd configuration, the run registry and probes."""
import ipaddress
import os
import signal
import subprocess
import sys

import pytest

from mip6bench.errors import ParameterError
from mip6bench.measure.probe import Flow, percentile, probe_flows
from mip6bench.net import kernel as k
from mip6bench.net.firewall import Pinhole, add_pinholes, ruleset
from mip6bench.params import ParamSpec, parse_params
from mip6bench.testbed.operational import build_plan, topology_params
from mip6bench.testbed.registry import RunRecord, clean_all, process_start
from mip6bench.testbed.services import RouterAdvertising


# ---------------------------------------------------------------- parameters
def test_parameters_defaults_overrides_and_errors():
    specs = topology_params()
    values = parse_params(specs, ["foreign=3", "access_delay_ms=7.5", "dad=optimistic"])
    assert values["foreign"] == 3 and values["access_delay_ms"] == 7.5 and values["mns"] == 1
    for bad, match in ((["colour=red"], "unknown parameter"), (["access_delay_ms=-1"], "below 0"),
                       (["cn_uplink_loss_pct=101"], "above 100"), (["foreign=two"], "not a int"),
                       (["dad=sometimes"], "choose one of"), (["foreign"], "not key=value"),
                       (["access_delay_ms=nan"], "not a number")):
        with pytest.raises(ParameterError, match=match):
            parse_params(specs, bad)
    assert parse_params([ParamSpec("x", bool, False, "")], {"x": "yes"}) == {"x": True}


# ---------------------------------------------------------------- plan
def plan(**overrides):
    return build_plan(parse_params(topology_params(), overrides))


def test_plan_addresses_are_unique_ipv6_in_documentation_prefix():
    p = plan(foreign=4, mns=3)
    addresses = [a for n in p.nodes.values() for _, a in n.addresses]
    assert len(addresses) == len(set(addresses))
    doc = ipaddress.ip_network("2001:db8::/32")
    assert all(ipaddress.ip_interface(a).ip in doc for a in addresses)
    names = [i for l in p.links for i in (l.a_intf, l.b_intf)]
    assert len(names) == len(set(names)) and max(map(len, names)) <= 15


def test_plan_has_every_network_and_one_attachment_per_mn():
    p = plan(foreign=3, mns=2)
    assert {n.name for n in p.by_role("ar")} == {"ar1", "ar2", "ar3"}
    assert {n.name for n in p.lans()} == {"home", "cnet", "f1", "f2", "f3"}
    for mn in ("mn1", "mn2"):
        links = [l for l in p.links if l.a == mn]
        assert sorted(l.b for l in links) == ["f1", "f2", "f3", "home"]
        assert [l.b for l in links if l.attached] == ["f1"]
    # the core routes every prefix; every router's default points at the core
    core_routes = {dst for dst, _, _ in p.nodes["core"].routes}
    assert core_routes == {"2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:11::/64",
                           "2001:db8:12::/64", "2001:db8:13::/64"}


def test_plan_applies_segment_shaping_and_checks_ra_interval():
    p = plan(access_delay_ms=4, backhaul_loss_pct=1.5, home_uplink_bw_mbit=100)
    assert p.link("f1-mn1").shaping.delay_ms == 4
    assert p.link("core-ar1").shaping.loss_pct == 1.5
    assert p.link("core-ha").shaping.bw_mbit == 100
    assert not p.link("f1-ar1").shaping.active  # a router's own LAN port is undelayed
    with pytest.raises(ParameterError, match="ra_max_ms"):
        plan(ra_min_ms=100, ra_max_ms=80)


# ---------------------------------------------------------------- netlink requests
def test_address_requests_carry_the_dad_mode():
    for mode, flags in (("off", k.IFA_F_NODAD), ("optimistic", k.IFA_F_OPTIMISTIC), ("standard", 0)):
        req = k.address_request(4, "2001:db8::1", 64, k.DadMode.parse(mode))
        assert req == {"index": 4, "family": 10, "address": "2001:db8::1", "prefixlen": 64, "flags": flags}
    with pytest.raises(ParameterError):
        k.DadMode.parse("maybe")


def test_an_ipv4_address_request_has_its_family_and_no_dad_flags():
    assert k.address_request(4, "10.200.3.1", 30) == {
        "index": 4, "family": 2, "address": "10.200.3.1", "prefixlen": 30}


def test_route_requests():
    assert k.route_request("default", gateway="fe80::1", oif=3) == {
        "family": 10, "dst": "::/0", "gateway": "fe80::1", "oif": 3}
    assert k.route_request("2001:db8:1::1000", oif=2, table=138, metric=5) == {
        "family": 10, "dst": "2001:db8:1::1000/128", "oif": 2, "table": 138, "priority": 5}


# ---------------------------------------------------------------- nftables
def test_firewall_ruleset_is_one_atomic_batch_with_default_drop():
    text = ruleset("fw-cnet", "fw-core").text()
    assert text.startswith("add table inet mip6bench\ndelete table inet mip6bench\n")
    assert "hook forward priority filter; policy drop;" in text
    assert 'forward ct state established,related counter accept' in text
    assert 'iifname "fw-core" jump pinholes' in text
    assert text.rstrip().endswith('input counter drop comment "input-drop"')


def test_pinhole_rules_and_validation():
    p = Pinhole("rr-mn1", src="2001:db8:11::/64", dst="2001:db8:2::10", proto="mh",
                mh_types=("hoti", "coti", "bu"))
    assert p.rule() == ('ip6 saddr 2001:db8:11::/64 ip6 daddr 2001:db8:2::10 meta l4proto 135 '
                        'mh type { home-test-init, careof-test-init, binding-update } counter accept '
                        'comment "pinhole:rr-mn1"')
    batch = add_pinholes([Pinhole("u", proto="udp", dport=5000)])
    assert batch.commands == ['add rule inet mip6bench pinholes meta l4proto 17 udp dport 5000 '
                              'counter accept comment "pinhole:u"']
    for kwargs, match in (({"id": "a b"}, "pinhole id"), ({"id": "x", "src": "10.0.0.0/8"}, "not IPv6"),
                          ({"id": "x", "dport": 80}, "ports need"), ({"id": "x", "proto": "udp", "dport": 0}, "range"),
                          ({"id": "x", "proto": "mh", "mh_types": ("bogus",)}, "unknown MH"),
                          ({"id": "x", "mh_types": ("bu",)}, "need proto mh")):
        with pytest.raises(ValueError, match=match):
            Pinhole(**kwargs)


# ---------------------------------------------------------------- radvd
def test_radvd_config_for_fast_mobile_ipv6_advertisements():
    conf = RouterAdvertising("ar1-f1", "2001:db8:11::/64", 30, 70).radvd_conf()
    assert "MinRtrAdvInterval 0.03;" in conf and "MaxRtrAdvInterval 0.07;" in conf
    assert "AdvIntervalOpt on;" in conf and "AdvHomeAgentFlag off;" in conf
    ha = RouterAdvertising("ha-home", "2001:db8:1::/64", home_agent=True).radvd_conf()
    assert "AdvHomeAgentFlag on;" in ha and "AdvHomeAgentInfo on;" in ha


# ---------------------------------------------------------------- registry
def test_run_record_cleans_only_what_it_recorded(tmp_path):
    run = RunRecord("test-run", root=tmp_path).create("unit")
    mine = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    other = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        run.add_process(mine.pid, "sleeper")
        # a recycled pid: recorded with another start time, must not be touched
        run.add("process", pid=other.pid, start=(process_start(other.pid) or 0) + 1, what="stale")
        removed = run.clean()
        assert mine.wait(timeout=10) == -signal.SIGTERM
        assert other.poll() is None
        assert removed == [f"process {mine.pid} (sleeper)"]
        assert not run.dir.exists()
    finally:
        for p in (mine, other):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_clean_all_leaves_live_runs_alone(tmp_path):
    live = RunRecord("live", root=tmp_path).create("unit")  # controller: this process
    dead = RunRecord("dead", root=tmp_path)  # a run whose controller is gone
    dead.dir.mkdir(parents=True)
    (dead.dir / "controller.json").write_text('{"pid": 999999999, "start": 1}')
    removed, running = clean_all(tmp_path)
    assert not dead.dir.exists() and live.dir.exists()
    assert running == ["live"] and removed == []


# ---------------------------------------------------------------- probes
def test_probes_over_loopback_measure_rtt_and_loss():
    [ok, dead] = probe_flows([Flow("lo", None, "::1", None, "::1"),
                              Flow("nowhere", None, "::1", None, "::1")], count=20, interval=0.001,
                             linger=0.2)
    assert ok.sent == ok.delivered == ok.answered == 20
    assert ok.round_trip_loss == 0 and ok.one_way_loss() == 0
    assert 0 < percentile(ok.rtts_ms, 50) < 50
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 50) is None


# ---------------------------------------------------------------- preflight
def test_preflight_names_the_fix(monkeypatch):
    from mip6bench.errors import EnvironmentProblem
    from mip6bench.testbed import network

    p = plan()
    monkeypatch.setattr(network.os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="needs root.*sudo"):
        network.preflight(p, capture=False)
    monkeypatch.setattr(network.os, "geteuid", lambda: 0)
    monkeypatch.setattr(network, "which", lambda b: None if b == "radvd" else "/bin/" + b)
    with pytest.raises(EnvironmentProblem, match=r"radvd is missing \(apt install radvd"):
        network.preflight(p, capture=False)
    monkeypatch.setattr(network, "which", lambda b: None if b == "dumpcap" else "/bin/" + b)
    network.preflight(p, capture=False)  # dumpcap only matters with capture
    with pytest.raises(EnvironmentProblem, match="dumpcap is missing"):
        network.preflight(p, capture=True)


def test_link_backend_choice(monkeypatch):
    from mip6bench.testbed import links
    from mip6bench.testbed.operational import Shaping

    monkeypatch.setattr(links, "tbf_available", lambda: True)
    monkeypatch.setattr(links, "netem_available", lambda: False)
    delay, rate = Shaping(delay_ms=5), Shaping(bw_mbit=10)
    assert links.choose_backend(Shaping()) == links.choose_backend(Shaping(), "netem") == "veth"
    assert (links.choose_backend(delay), links.choose_backend(rate)) == ("relay", "tbf")
    assert links.choose_backend(rate, "relay") == links.choose_backend(delay, "relay") == "relay"
    assert links.choose_backend(rate, "netem") == "netem"
    monkeypatch.setattr(links, "netem_available", lambda: True)
    assert links.choose_backend(delay) == "netem"


def test_forced_but_missing_backends_name_the_kernel_option(monkeypatch):
    from mip6bench.errors import EnvironmentProblem
    from mip6bench.net import linkemu
    from mip6bench.testbed import network

    monkeypatch.setattr(network.os, "geteuid", lambda: 0)
    monkeypatch.setattr(network, "which", lambda b: "/bin/" + b)
    monkeypatch.setattr(linkemu, "netem_probe", lambda: (False, "Specified qdisc kind is unknown."))
    with pytest.raises(EnvironmentProblem, match="modprobe sch_netem"):
        network.preflight(plan(links="netem"), capture=False)
    from mip6bench.net import tunnel

    monkeypatch.setattr(tunnel, "probe_backends", lambda: {
        "ip6tnl": (False, "Unknown device type"), "seg6": (False, "lwt"), "userspace": (True, "")})
    assert network.resolve_tunnel_backend({"mipv6": "static", "tunnel": "auto"}) == "userspace"
    assert network.resolve_tunnel_backend({"mipv6": "off", "tunnel": "ip6tnl"}) is None
    with pytest.raises(EnvironmentProblem, match="CONFIG_IPV6_TUNNEL"):
        network.resolve_tunnel_backend({"mipv6": "static", "tunnel": "ip6tnl"})


def test_experiment_parameters_are_checked_before_anything_runs():
    from mip6bench.experiment import load, split_params

    module = load("linkcheck")
    mine, topo = split_params(module, ["probes=10", "foreign=3"])
    assert mine["probes"] == 10 and topo["foreign"] == 3
    with pytest.raises(ParameterError, match="unknown parameter 'speed'"):
        split_params(module, ["speed=1"])
    with pytest.raises(ParameterError, match="below 1"):
        split_params(module, ["probes=0"])
    with pytest.raises(ParameterError, match="unknown experiment"):
        load("../etc/passwd")
