"""The floor model (mip6bench/measure/floors.py): per-phase floors of the bootstrap, the
firewall traversal and the handover from the configured delays, lower bounds with jitter,
the handover's sequencings, and a phase's overhead and ratio."""
from __future__ import annotations

import pytest

from mip6bench.measure import floors
from mip6bench.params import parse_params
from mip6bench.testbed.operational import build_plan, topology_params


def topo(**given):
    return parse_params(topology_params(), given)


def plan(**given):
    return build_plan(topo(**given))


# ---- delays ----------------------------------------------------------------------------

def test_path_delays_follow_the_configured_segments():
    p = plan()
    assert floors.path_delay_ms(p, "mn1", "paa") == 2 + 5 + 10 + 1
    assert floors.path_delay_ms(p, "paa", "aaa") == 2
    assert floors.path_delay_ms(p, "paa", "ha") == 1
    assert floors.path_delay_ms(p, "mn1", "ha") == 17


def test_jitter_comes_off_the_delay_so_floors_stay_lower_bounds():
    p = plan(backhaul_jitter_ms=2, home_uplink_jitter_ms=30)
    assert floors.path_delay_ms(p, "mn1", "ha") == 2 + (5 - 2) + 0
    assert floors.path_delay_ms(p, "mn1", "paa") == 2 + 3 + 0 + 1
    t = topo(access_delay_ms=4, access_jitter_ms=1, cn_lan_jitter_ms=5)
    assert floors.one_way(t, "access") == 3 and floors.one_way(t, "cn_lan") == 0


# ---- bootstrap -------------------------------------------------------------------------

def test_bootstrap_floor_counts_per_phase():
    f = floors.bootstrap_floors(plan(), "mn1", "push")
    assert f == {"discovery_ms": 36, "eap_ms": 6 * 18 + 6 * 2, "pana_ms": 156,
                 "sa_push_ms": 1, "ha_registration_ms": 34, "total_ms": 190}
    # pull: the HA fetches on the Binding Update, one round trip to the PAA more
    f = floors.bootstrap_floors(plan(), "mn1", "pull", ha_dad_ms=1000.0)
    assert f["sa_push_ms"] == 2 and f["ha_registration_ms"] == 34 + 1000 + 2
    assert f["total_ms"] == 156 + 34 + 1000 + 2
    ten = {f"{s}_delay_ms": 10 for s in ("access", "backhaul", "home_uplink", "home_lan")}
    f = floors.bootstrap_floors(plan(**ten), "mn1", "push")
    assert f["pana_ms"] == 2 * 40 + 6 * 40 + 6 * 20 and f["sa_push_ms"] == 10
    assert f["ha_registration_ms"] == 2 * 30


# ---- traversal -------------------------------------------------------------------------

def test_traversal_floors_at_default_delays():
    # d(MN,HA)=2+5+10=17, d(HA,FW)=10+10=20, d(MN,FW)=2+5+10=17, d(FW,CN)=1,
    # d(MN,CN)=18, d(HA,CN)=21
    f = floors.traversal_floors(plan(), "mn1", via_home_agent=True)
    assert f["gist_handshake_ms"] == 2 * 37
    assert f["natfw_create_ms"] == 2 * 37 + 4 * 1
    assert f["rr_ms"] == max(2 * (17 + 21), 2 * 18)
    assert f["cn_binding_ms"] == 2 * 18
    assert f["natfw_data_ms"] == 4 * 17 + 4 * 1
    assert f["total_ms"] == 74 + 78 + 0 + 76 + 36 + 72
    assert floors.traversal_floors(plan(), "mn1", via_home_agent=False)["gist_handshake_ms"] == 34


def test_traversal_pull_authorization_adds_the_round_trip_to_the_paa():
    # d(FW,PAA) = cn_uplink 10 + home_uplink 10 + home_lan 1
    pull = floors.traversal_floors(plan(), "mn1", via_home_agent=True, pull=True)
    assert pull["natfw_create_ms"] == 2 * 37 + 4 + 2 * 21
    assert pull["natfw_data_ms"] == 4 * 17 + 4 + 2 * 21


def test_traversal_floors_scale_with_the_cn_uplink():
    slow = floors.traversal_floors(plan(cn_uplink_delay_ms=50), "mn1", via_home_agent=False)
    assert slow["gist_handshake_ms"] == 2 * (2 + 5 + 50)
    assert slow["natfw_create_ms"] == 2 * 57 + 4


# ---- handover --------------------------------------------------------------------------
# Defaults: access 2, backhaul 5, home uplink 10, cn uplink 10, cn lan 1:
# d(MN,HA) = 17, d(MN,CN) = 18, d(HA,CN) = 21, d(MN,FW) = 17, d(FW,CN) = 1.

def test_handover_sequencings_with_route_optimization():
    p = topo()
    mn_ha, mn_cn, ha_cn = 17, 18, 21
    home_rr = 2 * (mn_ha + ha_cn)
    seq = floors.handover_floor_ms(p, 50, 0, True, sequencing="sequential")
    assert seq == 50 + 2 + 2 * mn_ha + home_rr + 2 * mn_cn == 198
    # Best legal: the HoTI right behind the home BU, the CoTI at once; the BU to the CN
    # after the slowest of home registration, home test and care-of test.
    assert floors.handover_floor_ms(p, 50, 0, True) == 50 + 2 + home_rr + 2 * mn_cn == 164
    # This MN: the HoTI after the home BA (the HA forwards only from a bound CoA).
    assert floors.handover_floor_ms(p, 50, 0, True, sequencing="mn") == 50 + 2 + 2 * mn_ha + home_rr + 36 == 198
    # A fresh home token: only the care-of test; the MN's sequencing is the best one.
    fresh = [floors.handover_floor_ms(p, 50, 0, True, home_test=False, sequencing=s) for s in floors.SEQUENCINGS]
    assert fresh == [50 + 2 + 36 + 36, 50 + 2 + 36 + 36, 50 + 2 + 34 + 36 + 36]
    with pytest.raises(ValueError, match="sequencing"):
        floors.handover_floor_ms(p, 50, 0, True, sequencing="fast")


def test_handover_with_nsis_adds_the_coa_sessions_re_signalling():
    p = topo()
    assert floors.natfw_resignal_floor_ms(p) == 4 * 17 + 4 * 1 == 72
    assert floors.natfw_resignal_floor_ms(p, handshake=False) == 2 * 17 + 2 * 1 == 36
    assert floors.handover_floor_ms(p, 50, 0, True, nsis=True, sequencing="sequential") == 198 + 72
    # Best legal and this MN: the CoA's sessions, then the CoTI, in parallel with the BU.
    for s in ("best", "mn"):
        assert floors.handover_floor_ms(p, 50, 0, True, home_test=False, nsis=True,
                                        sequencing=s) == 50 + 2 + 72 + 36 + 36
    assert floors.handover_floor_ms(p, 50, 0, True, home_test=False, nsis=True, nsis_handshake=False) \
        == 50 + 2 + 36 + 36 + 36
    assert floors.handover_floor_ms(p, 50, 0, False, nsis=True) == 50 + 2 + 34   # no RO: no NSIS


def test_handover_without_route_optimization_with_dad_and_jitter():
    p = topo(access_delay_ms=4, access_jitter_ms=1, home_uplink_delay_ms=20)
    # d(MN,HA) = 3 + 5 + 20; best case takes the jitter off each delay.
    assert floors.handover_floor_ms(p, 0, 1000, False) == 3 + 1000 + 2 * 28


def test_handover_phase_floors():
    p = topo()
    f = floors.handover_phase_floors(p, 0.0, True, home_test=False, nsis=True)
    assert f == {"movement_detection_ms": 2, "coa_ms": 0, "ha_registration_ms": 34, "nsis_ms": 72,
                 "rr_ms": 36, "cn_binding_ms": 36}
    f = floors.handover_phase_floors(p, 1000.0, True, home_test=True, nsis=True, nsis_handshake=False)
    assert f["coa_ms"] == 1000 and f["rr_ms"] == 2 * (17 + 21) and f["nsis_ms"] == 36
    tunnel = floors.handover_phase_floors(p, 0.0, False, nsis=True)
    assert tunnel["rr_ms"] is None and tunnel["cn_binding_ms"] is None and tunnel["nsis_ms"] is None


# ---- overhead and ratio ----------------------------------------------------------------

def test_phase_row_overhead_and_ratio_without_waits():
    r = floors.phase_row("home registration", 1063.4, 1034.0, 1000.0)
    assert r["overhead_ms"] == 29.4
    assert r["ratio"] == round(63.4 / 34.0, 3)
    assert floors.phase_row("pinhole install", 1.5, 0.0)["ratio"] is None
    missing = floors.phase_row("x", None, 10.0)
    assert missing["overhead_ms"] is None and missing["ratio"] is None
    # Waits in the measured time that the floor holds only in part (an RA wait).
    r = floors.phase_row("disruption", 297.0, 230.0, 60.0, floor_waits=50.0)
    assert r["ratio"] == round(237.0 / 180.0, 3) and r["overhead_ms"] == 67.0


def test_format_phase_rows_has_every_column():
    rows = [floors.phase_row("a", 12.34, 10.0), floors.phase_row("b", None, 5.0)]
    header, a, b = floors.format_phase_rows(rows, width=4)
    assert header.split() == ["phase", "measured", "floor", "overhead", "ratio"]
    assert a.split() == ["a", "12.3", "10.0", "2.3", "1.23"]
    assert b.split() == ["b", "-", "5.0", "-", "-"]
