"""PANA bootstrapping in the operational network with the embedded AAA server: multicast
discovery across three routers and unicast discovery, re-authentication (automatic, with
a short SA lifetime) re-keys the SA at the HA, termination revokes it, an MN that
vanishes leaves an SA that expires at the HA, wrong credentials get nothing, and garbage
sent to the PAA and the AAA server is dropped and counted while both keep working.

One testbed for the module (MNs mn1..mn3; no MIPv6 agents: mipv6=off), waits on agent
state over the control sockets, never on fixed sleeps."""
from __future__ import annotations

import os
import signal
import socket

import pytest

from mip6bench.net.netns import in_netns
from mip6bench.testbed.bootstrap import BootstrapSettings
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.registry import process_start

from .bootstrap_util import agent_events, topology, wait_for

SA_LIFETIME = 4


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    testbed = Testbed(topology(foreign=2, mns=3), experiment="test-bootstrap",
                      out_dir=tmp_path_factory.mktemp("bootstrap"), capture=False)
    testbed.bootstrap_settings = BootstrapSettings(aaa="embedded", sa="push",
                                                   sa_lifetime=SA_LIFETIME)
    testbed.start()
    run = testbed.run
    pids = [(r["pid"], r["start"]) for r in run.record.resources() if r["kind"] == "process"]
    yield testbed
    testbed.stop()
    assert testbed.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []


events = agent_events


def ha_sas(tb):
    return {sa["spi"]: sa for sa in tb.agents[("ha", "sa")].request("sa-list")}


def start_pac(tb, mn, discovery, **extra):
    return tb.start_agent(mn, "pac", "pac", tb.bootstrap.pac_options(mn, discovery, **extra))


def bootstrapped(pac):
    return wait_for(lambda: pac.request("bootstrap"), 10, "the bootstrap result")


def test_multicast_discovery_through_three_routers(tb):
    pac = start_pac(tb, "mn1", "multicast")
    b = bootstrapped(pac)
    assert b["ha"] == tb.bootstrap.ha_address and b["hoa"] == tb.plan.hoa(1)
    assert b["home_prefix"] == "2001:db8:1::/64" and b["key_len"] == 20 and b["token"]
    assert b["sources"] == {"ha": "pana", "home_prefix": "pana", "hoa": "pana", "sa": "pana",
                            "token": "pana"}
    assert pac.request("pana-status")["paa"] == tb.bootstrap.paa_address
    forwarded = {node: events(tb, node, "rao", "rao.forwarded") for node in ("ar1", "core", "ha")}
    assert all(forwarded.values()), forwarded
    assert forwarded["ha"][0]["egress"] == ["ha-home"]
    assert not events(tb, "ar2", "rao", "rao.forwarded") or \
        events(tb, "ar2", "rao", "rao.forwarded")[0]["ingress"] == "ar2-core"
    created = events(tb, "paa", "paa", "pana.session_created")
    assert created[0]["discovery"] is True
    wait_for(lambda: b["spi"] in ha_sas(tb), 5, "the SA at the HA end")
    assert ha_sas(tb)[b["spi"]]["hoa"] == tb.plan.hoa(1)


def test_unicast_discovery(tb):
    pac = start_pac(tb, "mn2", "unicast")
    b = bootstrapped(pac)
    assert b["hoa"] == tb.plan.hoa(2)
    wait_for(lambda: b["spi"] in ha_sas(tb), 5, "the SA at the HA end")


def test_reauthentication_rekeys_the_sa_at_the_ha(tb):
    pac = tb.agents[("mn1", "pac")]
    first = pac.request("bootstrap")["spi"]
    # SA lifetime 4 s: the PaC re-authenticates at 0.8 x 4 s on its own.
    wait_for(lambda: pac.request("bootstrap")["spi"] != first, 8, "re-authentication")
    second = pac.request("bootstrap")["spi"]
    wait_for(lambda: second in ha_sas(tb) and first not in ha_sas(tb), 5, "the swap at the HA")
    removed = [e for e in events(tb, "ha", "sa", "sadist.sa_removed") if e["spi"] == first]
    assert removed[0]["reason"] == "revoked: rekeyed"
    assert events(tb, "mn1", "pac", "bootstrap.rekeyed")[0]["old_spi"] == first


def test_termination_revokes_the_sa_at_the_ha(tb):
    pac = tb.agents[("mn2", "pac")]
    spi = pac.request("bootstrap")["spi"]
    pac.request("pana-terminate")
    wait_for(lambda: pac.request("pana-status")["state"] == "closed", 5, "the PTA")
    wait_for(lambda: spi not in ha_sas(tb), 5, "the revocation at the HA")
    removed = [e for e in events(tb, "ha", "sa", "sadist.sa_removed") if e["spi"] == spi]
    assert removed[0]["reason"] == "revoked: terminated by PaC"
    assert pac.request("bootstrap") is None


def test_sa_of_a_vanished_mn_expires_at_the_ha(tb):
    pac = tb.agents[("mn1", "pac")]
    spi = pac.request("bootstrap")["spi"]
    os.kill(pac.pid, signal.SIGKILL)            # no PTR, no re-authentication any more
    pac.proc.popen.wait()
    wait_for(lambda: spi not in ha_sas(tb), SA_LIFETIME + 3, "expiry at the HA")
    removed = [e for e in events(tb, "ha", "sa", "sadist.sa_removed") if e["spi"] == spi]
    assert removed[0]["reason"] == "expired"


@pytest.mark.parametrize("case", ["wrong psk", "unknown nai"])
def test_wrong_credentials_get_nothing(tb, case):
    extra = {"psk": "00" * 16} if case == "wrong psk" else {"nai": "eve@mip6bench.example"}
    before = set(ha_sas(tb))
    name = "bad" + case.split()[0]
    options = {**tb.bootstrap.pac_options("mn3", "unicast"), **extra}
    pac = tb.start_agent("mn3", name, "pac", options)
    status = wait_for(lambda: (s := pac.request("pana-status"))["state"] == "closed" and s,
                      10, "the rejection")
    assert status["bootstrap"] is None
    closed = [e for e in events(tb, "mn3", name, "pana.session_closed")]
    assert closed[-1]["reason"] == "authentication rejected"
    assert set(ha_sas(tb)) == before
    rejects = events(tb, "aaa", "aaa", "radius.access_reject")
    assert rejects, "the AAA server said Access-Reject"
    pac.stop()


def test_garbage_is_dropped_and_counted_and_service_goes_on(tb):
    paa, aaa = tb.agents[("paa", "paa")], tb.agents[("aaa", "aaa")]
    before_paa = paa.request("status")["pana"].get("malformed", 0)
    before_aaa = aaa.request("status")["radius"]

    def blast(pid, dst, port, payloads):
        sock = in_netns(pid, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        with sock:
            for p in payloads:
                sock.sendto(p, (dst, port))

    junk = [b"", b"\x00" * 3, b"\xff" * 16, bytes(range(40)), b"\x00\x00\x00\x10" + bytes(12)]
    blast(tb.node("mn3").pid, tb.bootstrap.paa_address, 716, junk)
    blast(tb.node("paa").pid, tb.bootstrap.aaa_address, 1812, junk)
    wait_for(lambda: paa.request("status")["pana"].get("malformed", 0) >= before_paa + 4, 5,
             "the PAA's drop counters")
    wait_for(lambda: sum(aaa.request("status")["radius"].values()) >= sum(before_aaa.values())
             + len(junk), 5, "the AAA server's drop counters")
    assert paa.alive() and aaa.alive()
    # ... and it still serves: a fresh MN bootstraps.
    pac = tb.start_agent("mn3", "pac", "pac", tb.bootstrap.pac_options("mn3", "multicast"))
    assert bootstrapped(pac)["hoa"] == tb.plan.hoa(3)


def test_relayed_pana_through_a_relay_element_on_the_access_router(tb):
    """RFC 6345: the PaC talks to a PRE on ar1, which relays to the PAA in PRY messages."""
    ar1 = tb.plan.nodes["ar1"]
    pre_address = ar1.address(ar1.extra["lan_intf"])
    tb.start_agent("ar1", "pre", "pre", {"paa": tb.bootstrap.paa_address})
    earlier = tb.agents.get(("mn3", "pac"))
    if earlier is not None:
        earlier.stop()                       # PANA's port 716 on mn3 is free again
    options = {**tb.bootstrap.pac_options("mn3", "unicast"), "paa": pre_address}
    pac = tb.start_agent("mn3", "relayed", "pac", options)
    b = bootstrapped(pac)
    assert b["hoa"] == tb.plan.hoa(3)
    assert pac.request("pana-status")["paa"] == pre_address
    ar1_addresses = {a.split("/")[0] for _, a in ar1.addresses}
    created = [e for e in events(tb, "paa", "paa", "pana.session_created")
               if e.get("relay") in ar1_addresses]
    assert created, "the PAA saw the session through the relay"
    relay = tb.agents[("ar1", "pre")].request("counters")
    assert relay["relayed to PAA"] >= 4 and relay["relayed to PaC"] >= 4
    wait_for(lambda: b["spi"] in ha_sas(tb), 5, "the SA at the HA end")
