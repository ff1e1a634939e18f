"""PANA bootstrapping with hostapd as the RADIUS server (aaa=radius) and SA pull: the
testbed starts hostapd in the aaa node with a configuration made from the same
credentials file, waits until it answers an Access-Request, and stops it by pid; the MN
agents bootstrap through it and the HA agent fetches each SA from the PAA when the first
Binding Update signed with it arrives; a failed fetch gets the BU rejected with 146; a
wrong key is rejected; an unknown NAI fails too.

hostapd 2.10 cannot send an Access-Reject for an identity it does not know over IPv6 (its
sendto gets an IPv4-sized address: EINVAL, see the hostapd log); the PAA's RADIUS client
then times out and the PAA rejects the PaC, which this module checks with a short RADIUS
retransmission schedule."""
from __future__ import annotations

import os
import socket
import time
from collections import defaultdict

import pytest

from mip6bench.mipv6.crypto import encode_with_mn_ha, ntp_timestamp
from mip6bench.mipv6.sa import MobilitySA
from mip6bench.mipv6.wire import (AlternateCareOfAddress, BindingUpdate, MobileNodeIdentifier,
                                  ReplayProtection, build_ipv6_packet)
from mip6bench.net.netns import in_netns
from mip6bench.runtime.eventlog import read_events
from mip6bench.runtime.mobility import NTP_UNIX_OFFSET
from mip6bench.testbed.bootstrap import BootstrapSettings
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.operational import HA_ADDRESS
from mip6bench.testbed.registry import process_start

from ..backends import tunnel_backends
from .bootstrap_util import agent_events, topology, wait_event

pytestmark = pytest.mark.skipif(
    not os.access("/usr/sbin/hostapd", os.X_OK),
    reason="hostapd is not installed (Debian package 'hostapd')")


@pytest.fixture(scope="module", params=tunnel_backends())
def tb(request, tmp_path_factory):
    testbed = Testbed(topology("bootstrap", foreign=1, mns=2, tunnel=request.param), experiment="test-hostapd",
                      out_dir=tmp_path_factory.mktemp("hapd"), capture=False)
    testbed.bootstrap_settings = BootstrapSettings(
        aaa="radius", sa="pull", extra_paa_options={"radius_irt": 0.3, "radius_mrc": 1})
    testbed.start()
    hostapd = testbed.bootstrap.hostapd
    pid, start = hostapd.pid, process_start(hostapd.pid)
    yield testbed
    testbed.stop()
    assert testbed.teardown_errors == []
    assert process_start(pid) != start, "hostapd is still running"


def test_hostapd_answers_and_has_the_generated_users(tb):
    assert tb.bootstrap.hostapd.alive()
    ready = [e for e in read_events(tb.run.logs_dir / "testbed.events.jsonl")
             if e["event"] == "hostapd.ready"]
    assert ready and ready[0]["probes"] >= 1
    eap_user = (tb.run.state_dir / "hostapd.eap_user").read_text()
    assert f'"{tb.bootstrap.user(1).nai}"\tPSK\t{tb.bootstrap.user(1).psk.hex()}' in eap_user
    assert ("aaa", "aaa") not in tb.agents            # no embedded AAA in this mode


def test_bootstrap_through_hostapd_with_the_ha_pulling_on_the_binding_update(tb):
    mn = tb.mobility_agent("mn1")
    st = mn.request("wait", timeout=17, until="registered", within=15)
    b = mn.request("pana-status")["bootstrap"]
    assert st["hoa"] == b["hoa"] == tb.plan.hoa(1)   # from the credentials file (no Framed-IPv6)
    ha = agent_events(tb, "ha", "ha")

    def first(name, **match):
        return next(e for e in ha if e["event"] == name and all(e.get(k) == v for k, v in match.items()))

    fetched = first("sadist.fetch_sent", selector=f"spi={b['spi']}")
    installed = first("sadist.sa_installed", spi=b["spi"])
    accepted = first("mipv6.ha.bu_accepted", spi=b["spi"])
    # pull: the PAA pushed nothing; the HA asked when the BU came, then accepted it
    assert installed["source"] == "pull" and fetched["t_ns"] < installed["t_ns"] < accepted["t_ns"]
    assert not agent_events(tb, "paa", "paa", "sadist.push_sent")
    assert "sadist" in tb.mobility_agent("ha").request("status")
    assert tb.mobility_agent("ha").request("counters")["core"]["sa.fetched"] >= 1
    codes = defaultdict(list)
    for e in read_events(tb.run.logs_dir / "paa-paa.events.jsonl"):
        if e["event"] == "radius.answer":
            codes[e["key"]].append(e["code"])
    assert ["challenge", "challenge", "accept"] in codes.values()


def test_a_failed_fetch_gets_the_binding_update_rejected_with_146(tb):
    """A BU signed with an SPI the PAA never handed out: the HA fetches, the PAA has no
    such SA, and the core answers as without the channel."""
    mn2 = tb.mobility_agent("mn2").request("wait", timeout=17, until="registered", within=15)
    sa = MobilitySA(0x7777, bytes(20), hoa=mn2["hoa"], nai="mallory@mip6bench.example")
    now_ntp = ntp_timestamp(time.time() + NTP_UNIX_OFFSET)
    bu = BindingUpdate(0x4000, 100, ack=True, home_registration=True,
                       options=(AlternateCareOfAddress(mn2["coa"]), MobileNodeIdentifier.from_nai(sa.nai),
                                ReplayProtection(now_ntp)))
    mh = encode_with_mn_ha(bu, sa, mn2["coa"], mn2["hoa"], mn2["hoa"], HA_ADDRESS)
    packet = build_ipv6_packet(mn2["coa"], HA_ADDRESS, 135, mh, hao=mn2["hoa"])
    ha = tb.mobility_agent("ha")
    t0 = time.monotonic_ns()

    def send():
        with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
            s.sendto(packet, (HA_ADDRESS, 0))
    in_netns(tb.node("mn2").pid, send)
    failed = wait_event(ha, "sadist.fetch_failed", t0, selector=f"spi={0x7777}")
    assert failed["reason"] == "not found"
    rejected = wait_event(ha, "mipv6.ha.bu_rejected", t0, hoa=mn2["hoa"])
    assert rejected["status"] == 146 and rejected["seq"] == 0x4000
    [binding] = [b for b in ha.request("bindings") if b["hoa"] == mn2["hoa"]]
    assert binding["coa"] == mn2["coa"] and binding["spi"] != 0x7777


@pytest.mark.parametrize("case", ["wrong psk", "unknown nai"])
def test_rejections_through_hostapd(tb, case):
    extra = {"psk": "11" * 16} if case == "wrong psk" else {"nai": "eve@mip6bench.example"}
    name = "bad" + case.split()[0]
    t0 = time.monotonic_ns()
    pac = tb.start_agent("mn2", name, "pac", {**tb.bootstrap.pac_options("mn2", "unicast"),
                                               "port": 0, **extra})   # the MN agent has 716
    closed = wait_event(pac, "pana.session_closed", t0, within=10)
    assert closed["reason"] == "authentication rejected"
    status = pac.request("pana-status")
    assert status["state"] == "closed" and status["bootstrap"] is None
    paa_events = [e for e in read_events(tb.run.logs_dir / "paa-paa.events.jsonl")]
    if case == "wrong psk":
        assert any(e["event"] == "radius.answer" and e["code"] == "reject" for e in paa_events)
    else:
        assert any(e["event"] == "paa.aaa_failed" and e["reason"] == "AAA timeout"
                   for e in paa_events)
    pac.stop()
