"""PANA bootstrapping with hostapd as the RADIUS server (aaa=radius): the testbed starts
hostapd in the aaa node with a configuration made from the same credentials file, waits
until it answers an Access-Request, and stops it by pid; MNs bootstrap through it; a wrong
key is rejected; an unknown NAI fails too.

hostapd 2.10 cannot send an Access-Reject for an identity it does not know over IPv6 (its
sendto gets an IPv4-sized address: EINVAL, see the hostapd log); the PAA's RADIUS client
then times out and the PAA rejects the PaC, which this module checks with a short RADIUS
retransmission schedule."""
from __future__ import annotations

import os

import pytest

from mip6bench.runtime.eventlog import read_events
from mip6bench.testbed.bootstrap import BootstrapSettings
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.registry import process_start

from .bootstrap_util import topology, wait_for

pytestmark = pytest.mark.skipif(
    not os.access("/usr/sbin/hostapd", os.X_OK),
    reason="hostapd is not installed (Debian package 'hostapd')")


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    testbed = Testbed(topology(foreign=1, mns=2), experiment="test-hostapd", out_dir=tmp_path_factory.mktemp("hapd"),
                      capture=False)
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


def test_bootstrap_through_hostapd_and_pull(tb):
    pac = tb.start_agent("mn1", "pac", "pac", tb.bootstrap.pac_options("mn1", "multicast"))
    b = wait_for(lambda: pac.request("bootstrap"), 10, "the bootstrap")
    assert b["hoa"] == tb.plan.hoa(1)             # from the credentials file (no Framed-IPv6)
    receiver = tb.agents[("ha", "sa")]
    assert receiver.request("sa-list") == []         # pull: nothing until the HA asks
    got = receiver.request("sa-fetch", spi=b["spi"])
    assert got == {"found": True, "spi": b["spi"], "hoa": tb.plan.hoa(1)}
    answers = [e for e in read_events(tb.run.logs_dir / "paa-paa.events.jsonl")
               if e["event"] == "radius.answer"]
    assert [e["code"] for e in answers] == ["challenge", "challenge", "accept"]


@pytest.mark.parametrize("case", ["wrong psk", "unknown nai"])
def test_rejections_through_hostapd(tb, case):
    extra = {"psk": "11" * 16} if case == "wrong psk" else {"nai": "eve@mip6bench.example"}
    name = "bad" + case.split()[0]
    pac = tb.start_agent("mn2", name, "pac", {**tb.bootstrap.pac_options("mn2", "unicast"),
                                               **extra})
    status = wait_for(lambda: (s := pac.request("pana-status"))["state"] == "closed" and s,
                      10, "the rejection")
    assert status["bootstrap"] is None
    closed = [e for e in read_events(tb.run.logs_dir / f"mn2-{name}.events.jsonl")
              if e["event"] == "pana.session_closed"]
    assert closed[-1]["reason"] == "authentication rejected"
    paa_events = [e for e in read_events(tb.run.logs_dir / "paa-paa.events.jsonl")]
    if case == "wrong psk":
        assert any(e["event"] == "radius.answer" and e["code"] == "reject" for e in paa_events)
    else:
        assert any(e["event"] == "paa.aaa_failed" and e["reason"] == "AAA timeout"
                   for e in paa_events)
    pac.stop()
