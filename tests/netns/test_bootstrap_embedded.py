"""PANA bootstrapping in the operational network with the embedded AAA server, composed
into the Mobile IPv6 agents (topology mipv6=bootstrap): each MN agent starts with its NAI
and EAP-PSK key only, authenticates on its first address (multicast discovery across
three routers, or unicast), and registers with the HA, Home Address and SA it learned;
the HA agent takes the SAs the PAA pushes. Re-authentication (automatic, with a short SA
lifetime) re-keys the SA at MN and HA without breaking the binding; termination by the
MN revokes it, and the MN stays out; a session the PAA ends starts again with a new SA;
after a handover the PAA learns the new care-of address; a session set up through a
relay element (RFC 6345) survives a handover and can move to the PAA directly, while
the relay ignores multicast discovery; a newer session of the same NAI supersedes the
MN agent's with a PTR, and the MN takes it back; an MN that vanishes leaves an
SA that expires at the HA; an MN whose PAA ignores the extension falls back to its
static configuration; wrong credentials get nothing; garbage sent to the PAA and the AAA
server is dropped and counted while both keep working.

One testbed for the module (MNs mn1..mn3), tests in file order; waits on agent events
and state over the control sockets, never on fixed sleeps."""
from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from mip6bench.aaa.token import verify_token
from mip6bench.net.netns import in_netns
from mip6bench.testbed.bootstrap import BootstrapSettings
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.operational import HA_ADDRESS, HOME_PREFIX
from mip6bench.testbed.registry import process_start

from ..backends import tunnel_backends
from .bootstrap_util import agent_events, topology, wait_event

SA_LIFETIME = 4      # what mn1 proposes for the re-keying and expiry tests
ALL_PANA = {"ha": "pana", "home_prefix": "pana", "hoa": "pana", "sa": "pana", "token": "pana"}


@pytest.fixture(scope="module", params=tunnel_backends())
def tb(request, tmp_path_factory):
    testbed = Testbed(topology("bootstrap", foreign=2, mns=3, tunnel=request.param), experiment="test-bootstrap",
                      out_dir=tmp_path_factory.mktemp("bootstrap"), capture=False)
    testbed.bootstrap_settings = BootstrapSettings(aaa="embedded", sa="push")
    testbed.start()
    run = testbed.run
    pids = [(r["pid"], r["start"]) for r in run.record.resources() if r["kind"] == "process"]
    yield testbed
    testbed.stop()
    assert testbed.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []


events = agent_events


def ha_sas(tb):
    return {sa["spi"]: sa for sa in tb.mobility_agent("ha").request("sa-list")}


def mn_spis(agent):
    return [sa["spi"] for sa in agent.request("sas")]


def binding(tb, hoa):
    return next((b for b in tb.mobility_agent("ha").request("bindings") if b["hoa"] == hoa), None)


def registered(agent, within=15.0):
    return agent.request("wait", timeout=within + 2, until="registered", within=within)


def restart_mn(tb, mn, **changes):
    old = tb.mobility_agent(mn)
    options = {**old.options, **changes}
    old.stop()
    return tb.start_agent(mn, "mn", "mn", options)


def start_pac(tb, mn, discovery, name="pac", user=2, **extra):
    """The PANA client alone, next to the MN agent (which holds port 716), as mn2's user
    by default: mn2's own session has ended by then, and a session that succeeds for a
    NAI supersedes the PAA's older one (the MN agent of that NAI would lose its SA and
    get a PTR)."""
    credential = tb.bootstrap.user(user)
    options = {**tb.bootstrap.pac_options(mn, discovery), "nai": credential.nai,
               "psk": credential.psk.hex(), "port": 0, **extra}
    return tb.start_agent(mn, name, "pac", options)


def test_mn_agent_bootstraps_through_multicast_discovery_and_registers(tb):
    mn = tb.mobility_agent("mn1")
    st = registered(mn)
    pana = mn.request("pana-status")
    b = pana["bootstrap"]
    assert st["hoa"] == b["hoa"] == tb.plan.hoa(1) and st["ha"] == b["ha"] == tb.bootstrap.ha_address
    assert b["home_prefix"] == HOME_PREFIX and b["sources"] == ALL_PANA
    assert pana["paa"] == tb.bootstrap.paa_address and pana["state"] == "open"
    token = bytes.fromhex(mn.request("status")["nsis_token"])      # kept for NATFW
    assert verify_token(token, {1: tb.bootstrap.token_key}, time.time(),
                        nai=tb.bootstrap.user(1).nai, hoa=tb.plan.hoa(1))
    forwarded = {node: events(tb, node, "rao", "rao.forwarded") for node in ("ar1", "core", "ha")}
    assert all(forwarded.values()), forwarded
    assert forwarded["ha"][0]["egress"] == ["ha-home"]
    assert events(tb, "paa", "paa", "pana.session_created")[0]["discovery"] is True
    # The MN signs with the SA the PAA pushed to the HA agent, which registered it.
    assert mn_spis(mn) == [b["spi"]] and ha_sas(tb)[b["spi"]]["hoa"] == tb.plan.hoa(1)
    assert binding(tb, tb.plan.hoa(1))["spi"] == b["spi"]
    assert binding(tb, tb.plan.hoa(1))["coa"] == st["coa"]
    assert not events(tb, "mn1", "mn", "mipv6.mn.static_fallback")
    assert ("ha", "sa") not in tb.agents and ("mn1", "pac") not in tb.agents


def test_unicast_discovery(tb):
    t0 = time.monotonic_ns()
    agent = restart_mn(tb, "mn2", pana=tb.bootstrap.pac_options("mn2", "unicast"))
    st = registered(agent)
    pana = agent.request("pana-status")
    assert st["hoa"] == tb.plan.hoa(2) and pana["paa"] == tb.bootstrap.paa_address
    created = [e for e in events(tb, "paa", "paa", "pana.session_created")
               if e["session_id"] == pana["session_id"]]
    assert created[0]["pac"] == st["coa"]            # the PaC authenticated from its CoA
    assert not [e for e in events(tb, "ar1", "rao", "rao.forwarded")   # not multicast
                if e["t_ns"] >= t0 and e["src"] == st["coa"]]
    assert binding(tb, st["hoa"])["spi"] == pana["bootstrap"]["spi"]


def test_reauthentication_rekeys_at_mn_and_ha_and_the_binding_stays(tb):
    pana = {**tb.bootstrap.pac_options("mn1", "multicast"), "sa_lifetime": SA_LIFETIME}
    t_start = time.monotonic_ns()
    mn, ha = restart_mn(tb, "mn1", pana=pana), tb.mobility_agent("ha")
    st = registered(mn)
    first = wait_event(mn, "bootstrap.ready", t_start)["spi"]
    assert wait_event(ha, "sadist.sa_installed", t_start, spi=first)["lifetime"] == SA_LIFETIME
    t0 = time.monotonic_ns()
    # The PaC re-authenticates at 0.8 x the 4 s SA lifetime on its own, well before the
    # SA (and the session) runs out.
    rekeyed = wait_event(mn, "bootstrap.rekeyed", t0, within=SA_LIFETIME + 2)
    old, new = rekeyed["old_spi"], rekeyed["spi"]
    assert old is not None and new != old and rekeyed["hoa"] == st["hoa"]
    assert wait_event(ha, "sadist.sa_removed", t0, spi=old)["reason"] == "revoked: rekeyed"
    assert wait_event(ha, "sadist.sa_installed", t0, spi=new)["source"] == "push"
    assert old not in mn_spis(mn) and old not in ha_sas(tb)
    # The HA capped the binding by the SA's remaining lifetime (less than 4 s left: the
    # BA says 4 s, the wire's least), and the MN refreshed it with the new SA at once.
    first_bu = wait_event(ha, "mipv6.ha.bu_accepted", t_start, hoa=st["hoa"], spi=first)
    assert first_bu["sa_capped"] is True and first_bu["lifetime"] == 4
    refreshed = wait_event(mn, "mipv6.mn.refresh_new_sa", t0, spi=new)
    assert refreshed["old_spi"] in (old, first)
    assert wait_event(ha, "mipv6.ha.bu_accepted", t0, hoa=st["hoa"], spi=new)["new"] is False
    # The binding is untouched: same care-of address, no removal, still registered.
    assert binding(tb, st["hoa"])["coa"] == st["coa"]
    # (The old agent's session ended when restart_mn stopped it, and its binding with it.)
    assert not [e for e in events(tb, "ha", "ha", "mipv6.ha.binding_removed")
                if e["t_ns"] >= first_bu["t_ns"]]
    assert registered(mn, within=0.5)["coa"] == st["coa"]    # (a refresh may be in flight)
    # The next Binding Update is signed with the new SA, and the HA accepts it.
    t1 = time.monotonic_ns()
    mn.request("register")
    accepted = wait_event(ha, "mipv6.ha.bu_accepted", t1, hoa=st["hoa"])
    wait_event(mn, "mipv6.mn.home_registered", t1)
    since = {e["spi"] for e in events(tb, "mn1", "mn", "bootstrap.rekeyed") if e["t_ns"] >= rekeyed["t_ns"]}
    assert accepted["spi"] in since and accepted["spi"] != old and accepted["new"] is False


def ha_route_to(tb, hoa) -> str:
    """How the HA's kernel forwards a packet to `hoa`: through the tunnel (seg6 encap,
    the ip6tnl device, the user-space forwarder's TUN) or onto the home link."""
    return tb.node("ha").cmd(f"ip -6 route get {hoa}").strip()


def tunnelled(route: str) -> bool:
    return any(mark in route for mark in ("encap seg6", "dev m6t", "dev mip6tun"))


def test_termination_revokes_the_sa_at_the_ha_and_the_mn_stays_out(tb):
    """RFC 5191 4.4: a terminated PANA session ends the authorization it gave; the HA
    drops the binding its SA authorised at once (event-driven: the REVOKE), with tunnel,
    reverse-tunnel admission and proxy ND, and traffic to the HoA is no longer
    tunnelled to the old care-of address."""
    mn, ha, node = tb.mobility_agent("mn2"), tb.mobility_agent("ha"), tb.node("ha")
    st = registered(mn)
    hoa = st["hoa"]
    assert binding(tb, hoa)["coa"] == st["coa"] and tunnelled(ha_route_to(tb, hoa))
    assert hoa in node.cmd("ip -6 neigh show proxy")
    t0 = time.monotonic_ns()
    mn.request("pana-terminate")
    closed = wait_event(mn, "bootstrap.closed", t0)
    assert closed["reason"] == "terminated" and closed["old_spi"] is not None
    removed = wait_event(ha, "sadist.sa_removed", t0, spi=closed["old_spi"])
    assert removed["reason"] == "revoked: terminated by PaC"
    gone = wait_event(ha, "mipv6.ha.binding_removed", t0, hoa=hoa)
    assert gone["reason"] == "revoked: terminated by PaC" and gone["coa"] == st["coa"]
    # Kernel state is applied before these events are logged.
    wait_event(ha, "mipv6.ha.tunnel_down", t0, hoa=hoa)
    wait_event(ha, "mipv6.ha.binding_state_removed", t0, hoa=hoa)
    assert binding(tb, hoa) is None
    route = ha_route_to(tb, hoa)
    assert not tunnelled(route) and "dev ha-home" in route, route
    assert node.cmd(f"ip -6 route show {hoa}").strip() == ""
    assert hoa not in node.cmd("ip -6 neigh show proxy")
    if tb.tunnel_backend == "userspace":
        assert ha.request("counters")["tunnel"]["bindings"] == len(ha.request("bindings"))
    else:
        assert hoa not in node.cmd("nft list set ip6 mip6bench_ha reverse_tunnel")
    status = mn.request("status")
    assert status["pana"]["state"] == "closed" and status["nsis_token"] is None
    assert mn_spis(mn) == []
    # Ended by the PaC itself: no new session until pana-start.
    assert not [e for e in events(tb, "mn2", "mn", "pana.pci_sent") if e["t_ns"] >= t0]
    assert not [e for e in events(tb, "mn2", "mn", "mipv6.mn.pana_restart") if e["t_ns"] >= t0]


def test_sa_of_a_vanished_mn_expires_at_the_ha(tb):
    mn, ha = tb.mobility_agent("mn1"), tb.mobility_agent("ha")
    t0 = time.monotonic_ns()
    mn.request("pana-reauth")                 # a fresh SA: the next re-keying is 3.2 s away
    spi = wait_event(mn, "bootstrap.rekeyed", t0)["spi"]
    os.kill(mn.pid, signal.SIGKILL)            # no PTR, no re-authentication any more
    mn.proc.popen.wait()
    removed = wait_event(ha, "sadist.sa_removed", t0, within=SA_LIFETIME + 3, spi=spi)
    assert removed["reason"] == "expired" and spi not in ha_sas(tb)
    # ... and the binding it authorised went with it, not an hour later.
    wait_event(ha, "mipv6.ha.binding_removed", t0, hoa=tb.plan.hoa(1))
    assert binding(tb, tb.plan.hoa(1)) is None


@pytest.mark.parametrize("case", ["wrong psk", "unknown nai"])
def test_wrong_credentials_get_nothing(tb, case):
    extra = {"psk": "00" * 16} if case == "wrong psk" else {"nai": "eve@mip6bench.example"}
    before = set(ha_sas(tb))
    name = "bad" + case.split()[0]
    t0 = time.monotonic_ns()
    pac = start_pac(tb, "mn3", "unicast", name, **extra)
    closed = wait_event(pac, "pana.session_closed", t0, within=10)
    assert closed["reason"] == "authentication rejected"
    status = pac.request("pana-status")
    assert status["state"] == "closed" and status["bootstrap"] is None
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
    # ... and it still serves: a fresh PaC bootstraps. Its PCI leaves mn3 after the junk
    # and its RADIUS requests leave the paa node after the junk, on the same (FIFO)
    # links: once it is bootstrapped, PAA and AAA have handled every junk datagram, so
    # their counters are read once, without polling.
    t0 = time.monotonic_ns()
    pac = start_pac(tb, "mn3", "multicast", "fresh")
    wait_event(pac, "bootstrap.ready", t0, within=10)
    assert pac.request("bootstrap")["hoa"] == tb.plan.hoa(2)
    pac.stop()
    assert paa.request("status")["pana"].get("malformed", 0) >= before_paa + 4
    assert sum(aaa.request("status")["radius"].values()) >= sum(before_aaa.values()) + len(junk)
    assert paa.alive() and aaa.alive()


def test_a_session_the_paa_ends_starts_again_with_a_new_sa(tb):
    mn, ha = tb.mobility_agent("mn3"), tb.mobility_agent("ha")
    st = registered(mn)
    before = mn.request("pana-status")
    t0 = time.monotonic_ns()
    tb.agents[("paa", "paa")].request("terminate", session_id=before["session_id"])
    closed = wait_event(mn, "bootstrap.closed", t0)
    assert closed["reason"] == "terminated by PAA" and closed["old_spi"] == before["bootstrap"]["spi"]
    assert wait_event(mn, "mipv6.mn.pana_restart", t0)["delay_s"] == 0
    ready = wait_event(mn, "bootstrap.ready", t0)
    assert ready["session_id"] != before["session_id"] and ready["hoa"] == st["hoa"]
    assert mn_spis(mn) == [ready["spi"]] and mn.request("status")["nsis_token"]
    wait_event(ha, "sadist.sa_installed", t0, spi=ready["spi"])
    wait_event(ha, "sadist.sa_removed", t0, spi=before["bootstrap"]["spi"])
    assert before["bootstrap"]["spi"] not in ha_sas(tb)
    # The ended session's binding ended with it; the MN registers again with the new SA.
    gone = wait_event(ha, "mipv6.ha.binding_removed", t0, hoa=st["hoa"])
    assert gone["reason"].startswith("revoked: ")
    wait_event(ha, "mipv6.ha.bu_accepted", t0, within=10, hoa=st["hoa"], spi=ready["spi"])
    assert binding(tb, st["hoa"])["coa"] == st["coa"]


def test_after_a_handover_the_paa_learns_the_new_care_of_address(tb):
    mn = tb.mobility_agent("mn3")
    before = registered(mn)
    t0 = time.monotonic_ns()
    move = tb.move("mn3", "f2")
    st = mn.request("wait", timeout=12, until="registered", coa=move["address"], within=10)
    assert st["coa"] != before["coa"]
    wait_event(mn, "pana.ping_ok", t0)              # the authenticated PANA ping from the new CoA
    sid = mn.request("pana-status")["session_id"]
    [session] = [s for s in tb.agents[("paa", "paa")].request("sessions") if s["session_id"] == sid]
    assert session["pac"] == st["coa"]


def paa_session(tb, session_id):
    return next(s for s in tb.agents[("paa", "paa")].request("sessions")
                if s["session_id"] == session_id)


def test_relayed_session_survives_a_handover_and_the_relay_ignores_multicast(tb):
    """RFC 6345: the PaC talks to a PRE on ar2 (mn3 is on f2 now), which relays to the
    PAA in PRY messages. A multicast PCI on that link is not the PRE's to relay (the
    Router Alert forwarders carry it to the PAA). mn3 moves to f1, which has no PRE: its
    ping still reaches the PRE's address by routing, the PAA follows the AUTH-verified
    ping, and the PRE answers from another of its addresses, which the PaC follows
    because the answer's AUTH checks. Then the PaC talks to the PAA directly."""
    ar2 = tb.plan.nodes["ar2"]
    pre_address = ar2.address(ar2.extra["lan_intf"])
    ar2_addresses = {a.split("/")[0] for _, a in ar2.addresses}
    paa = tb.agents[("paa", "paa")]
    t0 = time.monotonic_ns()
    pre = tb.start_agent("ar2", "pre", "pre", {"paa": tb.bootstrap.paa_address})
    try:
        pac = start_pac(tb, "mn3", "unicast", "relayed", paa=pre_address)
        wait_event(pac, "bootstrap.ready", t0, within=10)
        b = pac.request("bootstrap")
        assert b["hoa"] == tb.plan.hoa(2)
        status = pac.request("pana-status")
        assert status["paa"] == pre_address
        session = paa_session(tb, status["session_id"])
        assert session["relay"] in ar2_addresses
        relay = pre.request("counters")
        assert relay["relayed to PAA"] >= 4 and relay["relayed to PaC"] >= 4
        wait_event(tb.mobility_agent("ha"), "sadist.sa_installed", t0, spi=b["spi"])

        # A multicast PCI on the PRE's link (mn1's free credentials): dropped by the PRE,
        # answered by the PAA directly.
        t1 = time.monotonic_ns()
        multi = start_pac(tb, "mn3", "multicast", "multi", user=1)
        wait_event(multi, "bootstrap.ready", t1, within=10)
        drop = wait_event(pre, "pana.drop", t1, reason="not addressed to the PRE")
        assert drop["dst"] == "ff05::8000:716" and drop["message"] == "PCI"
        multi_sid = multi.request("pana-status")["session_id"]
        assert paa_session(tb, multi_sid)["relay"] is None
        assert not [e for e in events(tb, "paa", "paa", "pana.session_created")
                    if e["t_ns"] >= t1 and e.get("relay") in ar2_addresses]
        multi.request("pana-terminate")
        wait_event(multi, "pana.session_closed", t1)
        multi.stop()

        # Handover to f1, which has no PRE.
        mn = tb.mobility_agent("mn3")
        move = tb.move("mn3", "f1")
        mn.request("wait", timeout=12, until="registered", coa=move["address"], within=10)
        t2 = time.monotonic_ns()
        assert pac.request("pana-ping")["sent"]
        wait_event(pac, "pana.ping_ok", t2, within=10)
        changed = wait_event(pac, "pana.paa_address_changed", t2)
        assert changed["old"] == pre_address and changed["new"] in ar2_addresses
        session = paa_session(tb, status["session_id"])
        assert session["pac"] == move["address"] and session["relay"] in ar2_addresses
        assert not [e for e in events(tb, "mn3", "relayed", "pana.drop") if e["t_ns"] >= t2]
        # The PaC is told to use the PAA itself (the new network has no PRE).
        t3 = time.monotonic_ns()
        assert pac.request("pana-ping", paa=tb.bootstrap.paa_address)["sent"]
        wait_event(pac, "pana.ping_ok", t3)
        session = paa_session(tb, status["session_id"])
        assert session["relay"] is None and session["pac"] == move["address"]
        assert pac.request("pana-status")["paa"] == tb.bootstrap.paa_address
        pac.stop()
    finally:
        pre.stop()


def test_a_newer_session_of_the_same_nai_supersedes_the_mn_with_a_ptr(tb):
    """Another PaC with mn3's own credentials authenticates: the PAA revokes the MN
    agent's SA at the HA and ends its session with a PTR (Termination-Cause
    ADMINISTRATIVE). The MN logs pana.superseded, starts again, takes the session back
    (the other PaC gets the PTR now) and keeps its Home Address and binding."""
    mn, ha = tb.mobility_agent("mn3"), tb.mobility_agent("ha")
    st = registered(mn)
    before = mn.request("pana-status")
    old_spi = before["bootstrap"]["spi"]
    t0 = time.monotonic_ns()
    twin = start_pac(tb, "mn3", "unicast", "twin", user=3)
    wait_event(twin, "bootstrap.ready", t0, within=10)
    closed = wait_event(mn, "bootstrap.closed", t0)
    assert closed["reason"] == "terminated by PAA" and closed["cause"] == 4
    assert closed["old_spi"] == old_spi
    superseded = wait_event(mn, "pana.superseded", t0)
    assert superseded["count"] >= 1 and superseded["gave_up"] is False
    assert superseded["delay_s"] <= 1.0
    removed = wait_event(ha, "sadist.sa_removed", t0, spi=old_spi)
    assert removed["reason"] == "revoked: superseded"
    paa_said = [e for e in events(tb, "paa", "paa", "pana.superseded") if e["t_ns"] >= t0]
    assert paa_said[0]["session_id"] == before["session_id"]
    # The MN takes it back: the twin is superseded in turn and stays closed.
    ready = wait_event(mn, "bootstrap.ready", t0, within=10)
    assert ready["hoa"] == st["hoa"] and ready["session_id"] != before["session_id"]
    twin_closed = wait_event(twin, "pana.session_closed", t0)
    assert twin_closed["reason"] == "terminated by PAA" and twin_closed["cause"] == 4
    wait_event(ha, "sadist.sa_installed", t0, spi=ready["spi"])
    assert mn_spis(mn) == [ready["spi"]]
    # The superseded session's binding ended with its SA; the MN registers again with
    # its new session's SA (the twin never registered).
    gone = wait_event(ha, "mipv6.ha.binding_removed", t0, hoa=st["hoa"])
    assert gone["reason"] == "revoked: superseded"
    wait_event(ha, "mipv6.ha.bu_accepted", t0, within=10, hoa=st["hoa"], spi=ready["spi"])
    assert binding(tb, st["hoa"])["coa"] == st["coa"]
    twin.stop()


def test_mn_falls_back_to_its_static_configuration_when_the_paa_ignores_the_extension(tb):
    """A PAA without the extension (a second, plain PAA on the aaa node): the MN agent
    authenticates, gets nothing for Mobile IPv6, says so, and registers with its static
    home agent, Home Address and SA."""
    aaa = tb.bootstrap.aaa_address
    plain = tb.start_agent("aaa", "plainpaa", "paa", {
        "address": aaa, "ha_address": HA_ADDRESS, "home_prefix": HOME_PREFIX, "backend": "local",
        "credentials": str(tb.bootstrap.credentials_path), "mip6": False})
    static = tb.static_sa(3)
    ha = tb.mobility_agent("ha")
    ha.request("sa-add", **static)               # the HA's half of the static configuration
    try:
        mn = restart_mn(tb, "mn3", home_address=tb.plan.hoa(3), home_agent=HA_ADDRESS,
                        home_prefix=HOME_PREFIX, sas=[static],
                        pana={**tb.bootstrap.pac_options("mn3", "unicast"), "paa": aaa})
        st = registered(mn)
        assert mn.request("pana-status")["paa"] == aaa
        fallback = wait_event(mn, "pana.mip6_fallback", 0)
        assert set(fallback["missing"]) == {"ha_info", "home_address", "mip6_sa", "nsis_token"}
        said = wait_event(mn, "mipv6.mn.static_fallback", 0)
        assert said["items"] == ["ha", "hoa", "home_prefix", "sa"]
        ready = wait_event(mn, "bootstrap.ready", 0)
        assert ready["spi"] == static["spi"] and set(ready["sources"].values()) == {"static"}
        assert mn_spis(mn) == [static["spi"]] and mn.request("status")["nsis_token"] is None
        assert binding(tb, st["hoa"])["spi"] == static["spi"] and binding(tb, st["hoa"])["coa"] == st["coa"]
    finally:
        ha.request("sa-remove", spi=static["spi"])
        plain.stop()
