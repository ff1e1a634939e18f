"""The home agent behind its home network's stateful firewall (ha_firewall=on, RFC 4487
section 3): without NSIS the MN's Binding Update dies at hfw (counted drops) and it never
registers; with NSIS the MN opens hfw first (GIST + NATFW through the fw agent on hfw,
the HA's NR consenting), registers, and traffic runs both ways through the tunnel; the
pinholes at hfw are exactly the BU with HAO and the reverse tunnel, and nothing else from
the care-of address gets in; a handover re-signals them for the new CoA under the same
sessions; returning home tears them down."""
from __future__ import annotations

import time

import pytest

from mip6bench.measure.probe import Flow, probe_flows
from mip6bench.testbed.network import Testbed

pytestmark = [pytest.mark.netns, pytest.mark.slow]

HA, PAA, CN = "2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::10"


def start(tmp_path_factory, nsis: str) -> Testbed:
    return Testbed({"foreign": 2, "nsis": nsis, "mipv6": "static", "ha_firewall": "on"},
                   experiment=f"test-hfw-{nsis}", capture=False,
                   out_dir=tmp_path_factory.mktemp(f"hfw-{nsis}")).start()


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    testbed = start(tmp_path_factory, "on")
    try:
        testbed.wait_registered("mn1", timeout=15)
        yield testbed
    finally:
        testbed.stop()


def mn(tb):
    return tb.mobility_agent("mn1")


def hfw(tb):
    return tb.agents[("hfw", "fw")]


def all_holes(tb) -> list[dict]:
    return [p for p in hfw(tb).request("pinholes") if p.get("kind") == "nsis"]


def holes(tb) -> list[dict]:
    """hfw's pinholes toward the HA (the home phase's)."""
    return [p for p in all_holes(tb) if p["flow"]["destination"] == HA]


def counter(tb, name: str) -> int:
    return hfw(tb).request("counters").get(name, {}).get("packets", 0)


def probe(tb, src_node, src, dst_node, dst, count=5):
    [result] = probe_flows([Flow(f"{src_node}->{dst_node}", tb.node(src_node).pid, src,
                                 tb.node(dst_node).pid, dst)], count=count, interval=0.005, linger=1.0)
    return result


def wait_event(agent, event, after_ns, within=10.0, **match):
    return agent.request("wait-event", timeout=within + 2, event=event, match=match,
                         after_ns=after_ns, within=within)


def test_without_nsis_the_binding_update_dies_at_the_home_firewall(tmp_path_factory):
    testbed = start(tmp_path_factory, "off")
    try:
        agent = testbed.mobility_agent("mn1")
        with pytest.raises(Exception, match="did not hold"):
            agent.request("wait", timeout=8, until="registered", within=6)
        st = agent.request("status")
        assert st["registered_coa"] is None and st["coa"]
        assert testbed.agents[("hfw", "fw")].request("counters")["unsolicited"]["packets"] >= 2
        assert testbed.mobility_agent("ha").request("status")["bindings"] == 0
    finally:
        testbed.stop()


def test_with_nsis_the_mn_opens_the_home_firewall_and_registers(tb):
    # Registered; and return routability to the CN came through too (its home-address
    # sessions cross hfw, see below).
    st = mn(tb).request("wait", timeout=14, until="ro", cn=CN, within=12)
    hoa, coa = st["hoa"], st["coa"]
    assert st["registered_coa"] == coa
    got = sorted((p["flow"]["source"], p["flow"]["destination"], p["flow"]["protocol"],
                  p["flow"]["mip6"]["kind"], p["flow"]["mip6"].get("mh_type"),
                  p["flow"]["mip6"]["home_address"]) for p in all_holes(tb))
    # The home phase's two (the BU and the reverse tunnel from the CoA), and the home
    # address's sessions toward the CN, which leave the reverse tunnel at the HA and are
    # signalled path-coupled through hfw too (their rules are outbound: inert there).
    assert got == sorted([(coa, HA, 135, "mh", "BU", hoa), (coa, HA, 41, "tunnel", None, hoa),
                          (hoa, CN, 135, "mh", "HoTI", None), (hoa, CN, 135, "mh", "BU", None)])
    bu = next(p for p in holes(tb) if p["flow"]["mip6"]["kind"] == "mh")
    assert bu["packets"] >= 1                                  # the BU came in through it
    assert tb.mobility_agent("ha").request("status")["natfw"]["accepted"] >= 2
    # The GIST Responses of the CN's firewall for the home address's sessions came back
    # to hfw (which intercepted the Queries), so nothing was dropped at hfw.
    assert counter(tb, "unsolicited") == 0


def test_traffic_runs_both_ways_through_the_tunnel_and_only_there(tb):
    st = mn(tb).request("status")
    hoa, coa = st["hoa"], st["coa"]
    result = probe(tb, "mn1", hoa, "paa", PAA, count=5)      # HoA -> home link, and back
    assert result.delivered == result.sent == result.answered == 5
    # The reverse tunnel's first packets (RR's HoTI, GIST from the HoA) came in through its
    # pinhole; once the HA's tunnelled answers made the flow established in conntrack,
    # the established rule takes the rest.
    tunnel = next(p for p in holes(tb) if p["flow"]["mip6"]["kind"] == "tunnel")
    assert tunnel["packets"] >= 1
    # The care-of address itself is not let in: only the tunnel of the HoA and the BU.
    dropped = counter(tb, "unsolicited")
    stray = probe(tb, "mn1", coa, "paa", PAA, count=3)
    assert stray.delivered == 0 and counter(tb, "unsolicited") - dropped >= 3


def test_a_handover_re_signals_the_same_sessions_for_the_new_coa(tb):
    sessions = {p["session"] for p in holes(tb)}
    old = mn(tb).request("status")["coa"]
    t0 = time.monotonic_ns()
    move = tb.move("mn1", "f2", gap_ms=20)
    st = tb.wait_registered("mn1", coa=move["address"], timeout=15)
    assert st["coa"] != old
    done = wait_event(mn(tb), "mipv6.mn.traversal_done", t0, phase="home", coa=st["coa"])
    assert done["ok"]
    now = holes(tb)
    assert {p["session"] for p in now} == sessions           # replaced in place
    assert {p["flow"]["source"] for p in now} == {st["coa"]}
    # The MN's data path follows the registration (its kernel tunnel moves to the new CoA).
    wait_event(mn(tb), "mipv6.mn.tunnel_up", t0, coa=st["coa"])
    result = probe(tb, "mn1", st["hoa"], "paa", PAA, count=5)
    assert result.answered == 5


def test_returning_home_tears_the_home_pinholes_down(tb):
    sessions = {p["session"] for p in holes(tb)}
    t0 = time.monotonic_ns()
    tb.move("mn1", "home", gap_ms=20)
    mn(tb).request("wait", timeout=12, until="home", within=10)
    removed = set()
    for _ in sessions:
        event = wait_event(hfw(tb), "nsis.pinhole_removed", t0, reason="teardown")
        removed.add(event["session"])
        t0 = event["t_ns"] + 1
    assert removed == sessions and holes(tb) == []


def test_bootstrap_and_pull_authorization_through_the_home_firewall(tmp_path_factory):
    """PANA (discovery through the Router Alert forwarder on hfw, then unicast) reaches the
    PAA behind hfw; hfw asks the PAA over its own channel (pull), and the CN's firewall
    reaches the PAA through hfw's static service for that."""
    testbed = Testbed({"foreign": 2, "nsis": "on", "mipv6": "bootstrap", "ha_firewall": "on",
                       "nsis_authz": "pull"}, experiment="test-hfw-pull", capture=False,
                      out_dir=tmp_path_factory.mktemp("hfw-pull")).start()
    try:
        testbed.wait_registered("mn1", timeout=20)
        st = testbed.mobility_agent("mn1").request("wait", timeout=14, until="ro", cn=CN, within=12)
        assert CN in st["route_optimized"]
        home_fw = testbed.agents[("hfw", "fw")]
        natfw = home_fw.request("status")["natfw"]["counters"]
        assert natfw["authorized"] == natfw["authorize_requests"] >= 2
        assert testbed.agents[("fw", "fw")].request("status")["natfw"]["counters"]["authorized"] >= 1
        counters = home_fw.request("counters")
        assert counters["service:pana-discovery"]["packets"] >= 1
        assert counters["service:nsis-authz"]["packets"] >= 1
        assert counters["unsolicited"]["packets"] == 0
        # Each firewall its own key toward the PAA.
        a, b = (testbed.bootstrap.fw_authz_options(f)["psk_file"] for f in ("fw", "hfw"))
        assert a != b and open(a).read() != open(b).read()
    finally:
        testbed.stop()
