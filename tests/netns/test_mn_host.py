"""MN hosts (topology parameter mns_per_agent): three MNs in one agent process, each in
its own node's namespace with its own sockets, TUN device, tunnel forwarder, event log
and control socket. Every MN bootstraps through PANA and registers; one of them moves
and registers its new care-of address while the others stay bound; one MN alone cannot
be restarted (one line); the teardown ends the host by pid and leaves nothing behind."""
from __future__ import annotations

import socket

import pytest

from mip6bench.errors import Mip6benchError
from mip6bench.net.netns import in_netns
from mip6bench.net.tunnel import MN_TUNNEL_DEVICE
from mip6bench.testbed.bootstrap import BootstrapSettings
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.registry import process_start

from .bootstrap_util import agent_events, topology
from .test_testbed import root_state

MNS = ("mn1", "mn2", "mn3")


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    before = root_state()
    testbed = Testbed(topology("bootstrap", foreign=2, mns=3, mns_per_agent=3, tunnel="userspace"),
                      experiment="test-mnhost", out_dir=tmp_path_factory.mktemp("mnhost"), capture=False)
    testbed.bootstrap_settings = BootstrapSettings(aaa="embedded", sa="push")
    testbed.start()
    pids = [(r["pid"], r["start"]) for r in testbed.run.record.resources() if r["kind"] == "process"]
    yield testbed
    testbed.stop()
    assert testbed.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []
    after = root_state()
    # Named namespaces are not the testbed's (Mininet's are unnamed): on a shared machine
    # other jobs come and go there.
    assert (after["links"], after["nft"]) == (before["links"], before["nft"])


def registered(agent, within=20.0, **args):
    return agent.request("wait", timeout=within + 2, until="registered", within=within, **args)


def test_one_host_process_runs_the_three_mns(tb):
    [host] = tb.mn_hosts
    assert host.nodes == list(MNS)
    agents = [tb.mobility_agent(mn) for mn in MNS]
    assert {a.pid for a in agents} == {host.proc.pid}
    for mn, agent in zip(MNS, agents):
        status = agent.request("status")
        assert (status["node"], status["pid"]) == (mn, host.proc.pid)
        assert agent.startup_ms is not None and agent.startup_ms > 0
    # The controller's record names the host process and the MNs it serves.
    [what] = [r["what"] for r in tb.run.record.resources()
              if r["kind"] == "process" and r["pid"] == host.proc.pid]
    assert "MN host 1 (mn1..mn3, 3 MNs)" in what


def test_every_mn_bootstraps_and_registers_in_its_own_namespace(tb):
    hoas = set()
    for mn in MNS:
        status = registered(tb.mobility_agent(mn))
        hoas.add(status["hoa"])
        assert status["backend"] == "userspace"
        # The forwarder is a thread of the host; its TUN device is in the MN's namespace.
        assert status["forwarder_pid"] == tb.mobility_agent(mn).pid
        assert in_netns(tb.net[mn].pid, lambda: socket.if_nametoindex(MN_TUNNEL_DEVICE)) > 0
        # Its own event log, with the PANA exchange and the registration.
        names = {e["event"] for e in agent_events(tb, mn, "mn")}
        assert {"agent.ready", "bootstrap.ready", "mipv6.mn.home_registered"} <= names, names
    assert len(hoas) == 3
    bindings = {b["hoa"] for b in tb.mobility_agent("ha").request("bindings")}
    assert hoas <= bindings


def test_one_hosted_mn_moves_while_the_others_stay_bound(tb):
    before = {mn: tb.mobility_agent(mn).request("status")["coa"] for mn in MNS}
    moved = tb.move("mn2", "f2")
    status = registered(tb.mobility_agent("mn2"), coa=moved["address"])
    assert status["coa"] == moved["address"] != before["mn2"]
    for mn in ("mn1", "mn3"):
        assert registered(tb.mobility_agent(mn))["coa"] == before[mn]


def test_one_hosted_mn_cannot_be_restarted_alone(tb):
    with pytest.raises(Mip6benchError, match="runs in MN host 1 with 2 other MNs"):
        tb.restart_agent("mn1")
    with pytest.raises(Mip6benchError, match="mns_per_agent=1"):
        tb.crash_agent("mn3")
    assert all(tb.mobility_agent(mn).alive() for mn in MNS)
    registered(tb.mobility_agent("mn1"))
