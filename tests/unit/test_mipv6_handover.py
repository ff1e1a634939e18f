"""The handover experiment's arithmetic (phases, outage, summary table; the floors
themselves: tests/unit/test_floors.py), the plan's Mobile IPv6 data, and two core fixes
the agents rely on (found composing the cores in the testbed)."""
from __future__ import annotations

import importlib.util

import pytest

from mip6bench import REPO_ROOT
from mip6bench.aaa.credentials import read_psk_file
from mip6bench.measure.streams import UdpStream
from mip6bench.mipv6 import CorrespondentNode
from mip6bench.params import parse_params
from mip6bench.runtime.mobility import parse_sa
from mip6bench.testbed.operational import (
    HA_ADDRESS,
    build_plan,
    mobility_agent_options,
    static_mipv6_pinholes,
    static_sa,
    static_sa_key_files,
    topology_params,
)
from tests.unit.test_mipv6_harness import CN, COA1, HOA, Sim

spec = importlib.util.spec_from_file_location("handover_experiment", REPO_ROOT / "experiments" / "handover.py")
handover = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handover)


def topo(**given):
    return parse_params(topology_params(), given)


T, MS = 1_000_000_000, 1_000_000


def arrival() -> list[dict]:
    """The events every handover log starts with: on f2 at +5 ms, CoA at +8, home BU at +9."""
    return [
        {"t_ns": T + 5 * MS, "event": "mipv6.mn.movement_detected", "interface": "mn1-f2"},
        {"t_ns": T + 8 * MS, "event": "mipv6.mn.coa_ready", "interface": "mn1-f2", "coa": "c2"},
        {"t_ns": T + 9 * MS, "event": "mipv6.mn.home_bu_sent", "coa": "c2"},
    ]


def test_phases_from_an_event_log():
    t, ms = T, MS
    events = arrival() + [
        {"t_ns": t + 45 * ms, "event": "mipv6.mn.home_registered", "coa": "c2"},
        {"t_ns": t + 46 * ms, "event": "mipv6.mn.coti_sent"},
        {"t_ns": t + 84 * ms, "event": "mipv6.mn.cn_bu_sent", "coa": "c2"},
        {"t_ns": t + 122 * ms, "event": "mipv6.mn.ro_on", "coa": "c2"},
    ]
    p = handover.phases(events, {"attach_ns": t, "detach_ns": t - 50 * ms}, None, "mn1-f2")
    assert p == {"coa": "c2", "movement_detection_ms": 5.0, "coa_ms": 3.0, "ha_registration_ms": 36.0,
                 "rr_ms": 38.0, "cn_binding_ms": 38.0, "home_test": False, "handover_ms": 172.0,
                 "nsis_ms": None, "nsis_data_ms": None,
                 "nsis_handshake": False}      # (no NSIS events in this log)
    # Events of the next handover do not count for this one.
    assert handover.phases(events, {"attach_ns": t, "detach_ns": t}, t + 1, "mn1-f2")["coa"] is None


def test_phases_when_the_coti_and_nsis_go_out_with_the_home_bu():
    """The MN core starts the CoA's NATFW sessions and the CoTI with the home BU: the
    phases are found before the home BA too."""
    t, ms = T, MS
    events = arrival() + [
        {"t_ns": t + 9 * ms, "event": "mipv6.mn.traversal_started", "coa": "c2", "phase": "rr"},
        {"t_ns": t + 30 * ms, "event": "nsis.gist_up"},
        {"t_ns": t + 45 * ms, "event": "mipv6.mn.home_registered", "coa": "c2"},
        {"t_ns": t + 81 * ms, "event": "mipv6.mn.traversal_done", "coa": "c2", "phase": "rr", "ok": True},
        {"t_ns": t + 82 * ms, "event": "mipv6.mn.coti_sent"},
        {"t_ns": t + 120 * ms, "event": "mipv6.mn.cn_bu_sent", "coa": "c2"},
        {"t_ns": t + 160 * ms, "event": "mipv6.mn.ro_on", "coa": "c2"},
    ]
    p = handover.phases(events, {"attach_ns": t, "detach_ns": t - 50 * ms}, None, "mn1-f2")
    assert (p["nsis_ms"], p["nsis_handshake"], p["rr_ms"], p["ha_registration_ms"]) == (72.0, True, 38.0, 36.0)


def move_metrics(**over):
    h = {"from": "f1", "to": "f2", "l2_gap_ms": 50.0, "l2_gap_actual_ms": 52.0, "dad_ms": 0.0,
         "movement_detection_ms": 12.0, "coa_ms": 1.0, "ha_registration_ms": 36.0, "nsis_ms": 80.0,
         "rr_ms": 40.0, "cn_binding_ms": 38.0, "disruption_ms": 230.0, "lost_packets": 200,
         "floor_ms": 166.0, "floor_mn_ms": 166.0, "home_test": False,
         "floors": {"movement_detection_ms": 2.0, "coa_ms": 0.0, "ha_registration_ms": 34.0,
                    "nsis_ms": 72.0, "rr_ms": 36.0, "cn_binding_ms": 36.0}}
    return {**h, **over}


def test_handover_table_rows_overhead_and_ratio_per_phase():
    rows = {r["phase"]: r for r in handover.phase_rows(move_metrics(), access_ms=2.0)}
    assert list(rows) == ["movement detection (link up -> RA)", "CoA usable (DAD)",
                          "home registration (BU/BA)", "NATFW re-signalling", "return routability",
                          "BU/BA with the CN", "f1->f2: disruption"]
    assert rows["NATFW re-signalling"]["overhead_ms"] == 8.0 and rows["NATFW re-signalling"]["ratio"] == 1.111
    # The 10 ms waited for the next RA are no overhead of the agent's and no ratio.
    assert rows["movement detection (link up -> RA)"]["ratio"] is None
    d = rows["f1->f2: disruption"]
    assert d["waits_ms"] == 52.0 + 10.0 and d["floor_waits_ms"] == 52.0
    assert d["overhead_ms"] == 64.0 and d["ratio"] == round((230 - 62) / (166 - 52), 3)


def test_handover_summary_says_where_the_mns_sequencing_differs():
    metrics = {"handover": [move_metrics(), move_metrics(floor_mn_ms=200.0, home_test=True)],
               "access_ms": 2.0, "tcp_survived": True, "udp": {"received": 9, "sent": 10, "rate": 1000.0},
               "tcp": {"echoed": 5, "sent": 5, "max_gap_ms": 300.0, "error": None}}
    text = handover.summarize(metrics)
    assert text.count("overhead") == 2 and "disruption" in text
    assert "stale in handover 2" in text and "200 ms against the best legal 166 ms" in text
    metrics["handover"] = metrics["handover"][:1]
    assert "stale" not in handover.summarize(metrics)


def test_udp_outage_split_by_sequence_number():
    stream = UdpStream.__new__(UdpStream)
    ms = 1_000_000
    stream.sent = [i * 100 * ms for i in range(11)]          # seq i sent at i x 100 ms
    # seq 3 was sent before the detach at 350 ms and arrives late (after the new path's
    # first datagram); 4..8 are lost; 9 is the first through the new path.
    stream.arrivals = [(0, 10 * ms), (1, 110 * ms), (2, 210 * ms), (9, 910 * ms), (3, 920 * ms),
                       (10, 1010 * ms)]
    assert stream.outage(350 * ms) == {"disruption_ms": 700.0, "lost_packets": 5,
                                       "last_before_ns": 210 * ms, "first_after_ns": 910 * ms,
                                       "last_seq": 3, "first_seq": 9}
    # Split by arrival time instead, seq 3 would count after the attach and 3 as lost.
    stream.arrivals = [(0, 10 * ms), (1, 110 * ms), (2, 210 * ms), (9, 910 * ms), (10, 1010 * ms)]
    assert stream.outage(350 * ms)["lost_packets"] == 6
    assert stream.outage(350 * ms)["disruption_ms"] == 700.0
    assert stream.outage(0) is None                          # nothing sent before
    assert stream.outage(2000 * ms) is None                  # nothing after


def test_plan_gives_every_agent_the_same_static_sa(tmp_path):
    plan = build_plan(topo(mns=2))
    keys = static_sa_key_files(tmp_path, [1, 2])
    specs = mobility_agent_options(plan, "seg6", keys)
    assert [(n, r) for n, r, _ in specs] == [("ha", "ha"), ("cn", "cn"), ("mn1", "mn"), ("mn2", "mn")]
    ha, mn2 = specs[0][2], specs[3][2]
    assert ha["address"] == HA_ADDRESS and ha["uplink"] == "ha-core" and len(ha["sas"]) == 2
    assert mn2["sas"] == [static_sa(plan, 2, keys[2])] == [ha["sas"][1]]
    assert mn2["home_address"] == "2001:db8:1::1002" and mn2["interfaces"][0] == "mn2-home"
    assert parse_sa(mn2["sas"][0], 0.0).key == read_psk_file(keys[2])
    assert len(read_psk_file(keys[1])) == 16
    with pytest.raises(ValueError, match="key files"):
        mobility_agent_options(plan, "seg6")


def test_static_sa_keys_are_random_per_run_private_and_stable_within_a_run(tmp_path):
    """Issue 10, defect 3: no public constant (the old key was sha256 of a fixed text)."""
    import hashlib
    import os
    import stat

    run1 = static_sa_key_files(tmp_path / "run1", [1, 2])
    run2 = static_sa_key_files(tmp_path / "run2", [1, 2])
    keys1 = {k: read_psk_file(p) for k, p in run1.items()}
    keys2 = {k: read_psk_file(p) for k, p in run2.items()}
    assert keys1[1] != keys1[2] and keys1[1] != keys2[1] and keys1[2] != keys2[2]
    public = hashlib.sha256(b"mip6bench static MN-HA key 1").digest()[:16]
    assert public not in (keys1[1], keys2[1])
    assert stat.S_IMODE(os.stat(run1[1]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(run1[1].parent).st_mode) == 0o700
    again = static_sa_key_files(tmp_path / "run1", [1, 2, 3])     # HA and MN read the same
    assert {k: read_psk_file(again[k]) for k in (1, 2)} == keys1 and 3 in again
    # The agents' SA specs carry the file, not the key.
    spec = static_sa(build_plan(topo(mns=1)), 1, run1[1])
    assert "key" not in spec and parse_sa(spec, 0.0).key == keys1[1]


def test_bootstrap_mode_leaves_home_configuration_out():
    plan = build_plan(topo(mipv6="bootstrap"))
    specs = dict(((n, o) for n, _r, o in mobility_agent_options(plan, "seg6")))
    assert specs["ha"]["sas"] == [] and "home_address" not in specs["mn1"]
    assert mobility_agent_options(build_plan(topo(mipv6="off")), "seg6") == []


def test_static_pinholes_cover_the_home_prefix_and_each_foreign_network():
    holes = static_mipv6_pinholes(build_plan(topo(foreign=3)))
    assert [h["id"] for h in holes] == ["mip6-home", "mip6-f1", "mip6-f2", "mip6-f3"]
    assert holes[0]["mh_types"] == ["hoti", "bu"] and holes[3]["src"] == "2001:db8:13::/64"


def route_optimized_sim() -> Sim:
    sim = Sim(delay=0.01)
    sim.call("mn", "move_to", COA1)
    sim.call("mn", "start_route_optimization", CN)
    sim.run(2)
    assert sim.mn.route_optimized(CN) and sim.cn.binding(HOA) is not None
    return sim


def test_route_optimization_wanted_again_during_deregistration_registers():
    sim = route_optimized_sim()
    sim.call("mn", "stop_route_optimization", CN)
    assert sim.mn.correspondents[CN].state == "dereg"
    sim.call("mn", "start_route_optimization", CN)   # before the deregistration's BA
    sim.run(2)
    assert sim.mn.route_optimized(CN)
    assert sim.cn.binding(HOA) is not None


def test_correspondent_policy_does_not_block_deregistration():
    sim = route_optimized_sim()
    sim.cn.policy = lambda hoa, coa: False
    sim.call("mn", "stop_route_optimization", CN)
    sim.run(2)
    assert sim.cn.binding(HOA) is None
    assert sim.cn.counters["bu.deregistered"] == 1
    assert not any(k.startswith("bu.rejected") for k in sim.cn.counters)
