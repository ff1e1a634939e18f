"""NSIS firewall traversal in the operational topology (GIST + NATFW NSLP between the
MN, the firewall and the CN, nftables pinholes): return routability dies at the firewall
without NSIS and works with it; the pinholes are exactly the flows asked for; they follow
the MN through a handover; the CN's refusal and bad tokens open nothing; teardown and
expiry remove them; the capture decodes with the project's Lua dissector.

One testbed for the module (static SAs, the MN's token minted by the testbed with the AAA
side's key); the tests run in file order."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mip6bench.aaa.credentials import read_psk_file
from mip6bench.aaa.token import TokenIssuer, parse_flows
from mip6bench.measure.probe import Flow, probe_flows
from mip6bench.measure.tshark import run_tshark, tshark_binary
from mip6bench.testbed.bootstrap import TOKEN_KEY_ID
from mip6bench.testbed.network import Testbed

pytestmark = [pytest.mark.netns, pytest.mark.slow]

CN = "2001:db8:2::10"
LIFETIME = 8          # the MN's requested pinhole lifetime (s): expiry is tested


@pytest.fixture(scope="module")
def tb(tmp_path_factory):
    testbed = Testbed({"foreign": 2, "nsis": "on", "mipv6": "static"}, experiment="test-nsis",
                      capture=tshark_binary() is not None, out_dir=tmp_path_factory.mktemp("nsis"))
    # Starts without traversal (RR must die at the firewall first); 2 RR tries: 1 s + 2 s.
    testbed.mn_extra_options = {"firewall_traversal": False, "rr_max_attempts": 2,
                                "natfw_lifetime": LIFETIME}
    testbed.start()
    try:
        testbed.wait_registered("mn1", timeout=15)
        yield testbed
    finally:
        testbed.stop()


def mn(tb):
    return tb.mobility_agent("mn1")


def fw(tb):
    return tb.agents[("fw", "fw")]


def wait_event(agent, event, after_ns, within=10.0, **match):
    return agent.request("wait-event", timeout=within + 2, event=event, match=match,
                         after_ns=after_ns, within=within)


def nsis_pinholes(tb) -> list[dict]:
    return [p for p in fw(tb).request("pinholes") if p.get("kind") == "nsis"]


def unsolicited(tb) -> int:
    return fw(tb).request("counters").get("unsolicited", {}).get("packets", 0)


def probe(tb, src_node, src, dst_node, dst, count=5):
    [result] = probe_flows([Flow(f"{src_node}->{dst_node}", tb.node(src_node).pid, src,
                                 tb.node(dst_node).pid, dst)], count=count, interval=0.005, linger=1.0)
    return result


def wait_removed(tb, after_ns, count, reason, within) -> None:
    """`count` distinct nsis.pinhole_removed events (for `reason`) after `after_ns`."""
    for _ in range(count):
        event = wait_event(fw(tb), "nsis.pinhole_removed", after_ns, within=within, reason=reason)
        after_ns = event["t_ns"] + 1


def restart_ro(tb) -> int:
    """RO stopped (pinholes torn down) and asked for again; the time it was asked for."""
    mn(tb).request("ro-stop", cn=CN)
    t0 = time.monotonic_ns()
    mn(tb).request("ro-start", cn=CN)
    return t0


@pytest.fixture
def traversing(tb):
    """Traversal on and route optimisation with the CN up: what the tests after the
    second one start from. Brought about here when a test runs without its predecessors
    (pytest -k), a no-op when they ran."""
    if CN not in mn(tb).request("status")["route_optimized"]:
        mn(tb).request("traversal", enabled=True)
        mn(tb).request("wait", timeout=17, until="ro", cn=CN, within=15)


def test_return_routability_dies_at_the_firewall_without_nsis(tb):
    event = wait_event(mn(tb), "mipv6.mn.ro_fallback", 0, within=15, cn=CN)
    assert event["reason"].startswith("return routability timed out")
    assert CN not in mn(tb).request("status")["route_optimized"]
    assert unsolicited(tb) >= 2                    # HoTI/CoTI dropped by the default policy
    assert nsis_pinholes(tb) == []


def test_with_nsis_the_pinholes_open_and_route_optimisation_comes_up(tb):
    t0 = time.monotonic_ns()
    mn(tb).request("traversal", enabled=True)
    st = mn(tb).request("wait", timeout=17, until="ro", cn=CN, within=15)
    hoa, coa = st["hoa"], st["coa"]
    holes = nsis_pinholes(tb)
    flows = sorted((p["flow"]["source"], p["flow"]["mip6"]["kind"], p["flow"]["mip6"].get("mh_type"))
                   for p in holes)
    assert flows == sorted([(hoa, "mh", "HoTI"), (hoa, "mh", "BU"), (coa, "mh", "CoTI"),
                            (coa, "mh", "BU"), (coa, "hao", None)])
    assert all(p["flow"]["destination"] == CN and 0 < p["remaining"] <= LIFETIME for p in holes)
    # The firewall held each CREATE until the CN consented, then installed, then answered.
    done = wait_event(mn(tb), "mipv6.mn.traversal_done", t0, cn=CN, phase="rr")
    assert done["ok"]


def test_pinholes_pass_exactly_what_was_asked(tb, traversing):
    st = mn(tb).request("status")
    hoa, coa = st["hoa"], st["coa"]
    data = next(p for p in nsis_pinholes(tb) if p["flow"]["mip6"]["kind"] == "hao")
    # Route-optimised data (from the CoA with a Home Address option) passes its pinhole.
    result = probe(tb, "mn1", hoa, "cn", CN)
    assert result.delivered == result.sent
    after = next(p for p in nsis_pinholes(tb) if p["session"] == data["session"])
    assert after["packets"] >= data["packets"] + 1   # the first; the rest are established
    # The same data from the CoA without the option is not in any pinhole.
    before = unsolicited(tb)
    plain = probe(tb, "mn1", coa, "cn", CN, count=3)
    assert plain.delivered == 0
    assert unsolicited(tb) >= before + 3


def test_a_handover_re_signals_the_pinholes_for_the_new_coa(tb, traversing):
    old = mn(tb).request("status")["coa"]
    t0 = time.monotonic_ns()
    move = tb.move("mn1", "f2", gap_ms=20)
    st = mn(tb).request("wait", timeout=17, until="ro", cn=CN, coa=move["address"], within=15)
    new = st["coa"]
    assert new != old
    sources = {p["flow"]["source"] for p in nsis_pinholes(tb)}
    assert sources == {st["hoa"], new}            # the old CoA's rules were replaced
    done = wait_event(mn(tb), "mipv6.mn.traversal_done", t0, cn=CN, phase="rr", coa=new)
    assert done["ok"]
    result = probe(tb, "mn1", st["hoa"], "cn", CN)
    assert result.delivered == result.sent


def test_the_cn_can_refuse(tb, traversing):
    cn = tb.mobility_agent("cn")
    cn.request("policy", natfw_consent=False)
    try:
        before = {p["session"] for p in nsis_pinholes(tb)}
        t0 = restart_ro(tb)
        event = wait_event(mn(tb), "mipv6.mn.traversal_done", t0, within=10, cn=CN, phase="rr", ok=False)
        assert "0x7" in event["reason"]                  # RFC 5973 session failure class
        assert not ({p["session"] for p in nsis_pinholes(tb)} - before)   # nothing new opened
    finally:
        cn.request("policy", natfw_consent=True)


def mint(tb, nai, hoa, start, lifetime=3600.0) -> str:
    key = read_psk_file(tb.bootstrap.token_key_path())
    issuer = TokenIssuer(key, TOKEN_KEY_ID, lifetime, parse_flows(tb.bootstrap.settings.token_flows))
    return issuer.mint(nai, hoa, start).hex()


@pytest.mark.parametrize("case", ["forged", "expired", "another MN"])
def test_bad_tokens_open_nothing(tb, traversing, case):
    st = mn(tb).request("status")
    good = st.get("nsis_token") or mint(tb, "mn1@mip6bench.example", st["hoa"], time.time())
    if case == "forged":
        raw = bytearray(bytes.fromhex(good))
        raw[-1] ^= 0x01                            # the HMAC no longer verifies
        token = raw.hex()
    elif case == "expired":
        token = mint(tb, "mn1@mip6bench.example", st["hoa"], time.time() - 7200, lifetime=60)
    else:
        token = mint(tb, "mn9@mip6bench.example", "2001:db8:1::1009", time.time())
    mn(tb).request("nsis-token", token=token)
    try:
        t0 = restart_ro(tb)
        event = wait_event(mn(tb), "mipv6.mn.traversal_done", t0, within=10, cn=CN, phase="rr", ok=False)
        assert "0x5" in event["reason"]                  # authentication/authorization failed
        refused = wait_event(fw(tb), "natfw.refused", t0)
        assert refused["class"] == 5
    finally:
        mn(tb).request("nsis-token", token=good)
    t0 = restart_ro(tb)
    mn(tb).request("wait", timeout=17, until="ro", cn=CN, within=15)


FLOOD = os.path.join(os.path.dirname(__file__), "natfw_flood.py")


def test_a_create_flood_from_one_source_leaves_bounded_state(tb, traversing):
    """200 CREATEs without a token from one node on a foreign network while the MN
    re-opens its pinholes: every flood session is refused (no token, or the per-source
    bound of 16 first), nothing of it stays, and the MN is served as usual."""
    st = mn(tb).request("status")
    spec = {"source": "2001:db8:11::1", "cn": CN, "count": 200, "home_address": st["hoa"], "within": 30}
    flood = subprocess.Popen(["nsenter", "-t", str(tb.node("ar1").pid), "-n", sys.executable, FLOOD,
                              json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        restart_ro(tb)
        mn(tb).request("wait", timeout=22, until="ro", cn=CN, within=20)
        out, err = flood.communicate(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    assert flood.returncode == 0, err
    result = json.loads(out)
    answers = result["answers"]
    assert answers.get("ready", 0) == 0 and answers.get("no answer", 0) == 0, answers
    assert set(answers) <= {"0x5/0x2", "0x4/0x1"}, answers        # no token / resources
    assert sum(answers.values()) == 200
    status = fw(tb).request("status")
    assert status["natfw"]["sessions"] == 5                       # the MN's, nothing of the flood
    assert status["gist"]["routing_states"] <= 10_000


def test_ro_stop_tears_the_pinholes_down(tb, traversing):
    holes = nsis_pinholes(tb)
    assert len(holes) == 5
    t0 = time.monotonic_ns()
    mn(tb).request("ro-stop", cn=CN)
    wait_removed(tb, t0, len(holes), "teardown", within=5)
    assert nsis_pinholes(tb) == []
    mn(tb).request("ro-start", cn=CN)
    mn(tb).request("wait", timeout=17, until="ro", cn=CN, within=15)


def test_capture_decodes_with_the_lua_dissector(tb):
    if tb.capture is None:
        pytest.skip("tshark is not installed")
    path = tb.capture.stop()          # merged now (the tests after this one need no capture)
    assert run_tshark(path, "-Y", "(gist || natfw) && (_ws.malformed || _ws.expert.severity >= error)") == ""
    assert run_tshark(path, "-Y", "natfw.msg_type == 1")      # CREATEs on the wire
    assert run_tshark(path, "-Y", "natfw.msg_type == 3")      # and RESPONSEs


def test_a_vanished_mn_s_pinholes_expire(tb, traversing):
    """Last: kills the MN agent (no teardown) and waits for the firewall to expire its
    pinholes after their lifetime."""
    holes = nsis_pinholes(tb)
    assert holes
    t0 = time.monotonic_ns()
    os.kill(mn(tb).pid, signal.SIGKILL)
    wait_removed(tb, t0, len(holes), "expired", within=LIFETIME + 5)
    assert nsis_pinholes(tb) == []
