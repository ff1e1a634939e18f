"""The NATFW authorization pull in the operational network (topology mipv6=bootstrap):
the testbed writes the fw-PAA key 0600 in a 0700 directory and gives the PAA agent the
firewall as a peer; a client in the firewall's namespace, configured exactly as the fw
agent would be (BootstrapServices.fw_authz_options), asks the PAA agent across the
network and gets allow for the MN's care-of and home address, deny for a stranger and
for a flow outside the allowances, and, after a handover, the new care-of address
instead of the old one. Waits on agent events, no fixed sleeps."""
from __future__ import annotations

import asyncio
import os
import stat
import time

import pytest

from mip6bench.aaa import authz as az
from mip6bench.aaa.authz import AuthzQuery
from mip6bench.net.netns import in_netns
from mip6bench.runtime.authz_client import authorization_client_for
from mip6bench.testbed.bootstrap import BootstrapSettings
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.operational import CN_PREFIX
from mip6bench.testbed.registry import process_start

from .bootstrap_util import agent_events, topology, wait_event

CN = CN_PREFIX.split("/")[0] + "10"


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    testbed = Testbed(topology("bootstrap", foreign=2, mns=1, tunnel="userspace"),
                      experiment="test-authz", out_dir=tmp_path_factory.mktemp("authz"),
                      capture=False)
    testbed.bootstrap_settings = BootstrapSettings(aaa="embedded", sa="push")
    testbed.start()
    pids = [(r["pid"], r["start"]) for r in testbed.run.record.resources()
            if r["kind"] == "process"]
    yield testbed
    testbed.stop()
    assert testbed.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []


class _Agent:
    def __init__(self):
        self.events = []

    def emit(self, name, **fields):
        self.events.append((name, fields))


def ask_from_fw(tb, queries):
    """Answers to `queries`, asked from the firewall's namespace with the fw's options."""
    options = tb.bootstrap.fw_authz_options()

    async def scenario():
        client = await authorization_client_for(_Agent(), options)
        try:
            return [await asyncio.wait_for(client.authorize(q), 10) for q in queries]
        finally:
            await client.close()

    return in_netns(tb.node("fw").pid, lambda: asyncio.run(scenario()))


def mh(source, mh_type=2):
    return AuthzQuery(source, CN, 135, mip6_kind=az.MIP6_MH, mh_type=mh_type,
                      session_id=os.urandom(16))


def test_the_key_is_private_from_the_start_and_the_paa_knows_the_firewall(tb):
    options = tb.bootstrap.fw_authz_options()
    path = options["psk_file"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert options["bind"] == tb.plan.nodes["fw"].address("fw-core")
    (listening,) = agent_events(tb, "paa", "paa", "paa.listening")
    assert listening["authz_peers"] == [options["bind"]]
    assert tb.bootstrap.authz_psk.hex() not in (tb.run.state_dir / "paa-paa.json").read_text()


def test_the_paa_authorizes_the_mn_s_addresses_and_denies_the_rest(tb):
    mn = tb.mobility_agent("mn1")
    st = mn.request("wait", timeout=17, until="registered", within=15)
    coa, hoa = st["coa"], st["hoa"]
    coti, hoti, stranger, outside = ask_from_fw(tb, [
        mh(coa), mh(hoa, 1), mh("2001:db8:99::1"),
        AuthzQuery(coa, "2001:db8:1::10", 135, mip6_kind=az.MIP6_MH, mh_type=2)])
    assert coti.allowed and hoti.allowed and coti.nai == tb.bootstrap.user(1).nai
    assert coti.authority == "aaa.mip6bench.example" and 1 <= coti.max_lifetime <= 3600
    assert stranger.code == az.UNKNOWN_SOURCE and not stranger.allowed
    assert outside.code == az.FLOW_NOT_AUTHORIZED
    counters = tb.agents[("paa", "paa")].request("counters")["authz"]
    assert counters["requests"] == 4 and counters["allowed"] == 2


def test_after_a_handover_the_new_care_of_address_is_authorized_and_the_old_is_not(tb):
    mn = tb.mobility_agent("mn1")
    before = mn.request("wait", timeout=17, until="registered", within=15)
    t0 = time.monotonic_ns()
    move = tb.move("mn1", "f2")
    st = mn.request("wait", timeout=12, until="registered", coa=move["address"], within=10)
    wait_event(mn, "pana.ping_ok", t0)              # the PAA has seen the new CoA
    old, new = ask_from_fw(tb, [mh(before["coa"]), mh(st["coa"])])
    assert old.code == az.UNKNOWN_SOURCE and new.allowed
