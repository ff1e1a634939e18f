"""The traversal experiment's floors follow the configured delays of the paths the
signalling takes (experiments/traversal.py's docstring)."""
from __future__ import annotations

from experiments.traversal import floors, with_nsis_phases
from mip6bench.params import parse_params
from mip6bench.testbed.operational import build_plan, topology_params


def plan(**params):
    return build_plan(parse_params(topology_params(), params))


def test_default_delays():
    # d(MN,HA)=2+5+10=17, d(HA,FW)=10+10=20, d(MN,FW)=2+5+10=17, d(FW,CN)=1,
    # d(MN,CN)=18, d(HA,CN)=21
    f = floors(plan(), "mn1", via_home_agent=True)
    assert f["gist_handshake_ms"] == 2 * 37
    assert f["natfw_create_ms"] == 2 * 37 + 4 * 1
    assert f["rr_ms"] == max(2 * (17 + 21), 2 * 18)
    assert f["cn_binding_ms"] == 2 * 18
    assert f["natfw_data_ms"] == 4 * 17 + 4 * 1
    assert f["total_ms"] == 74 + 78 + 0 + 76 + 36 + 72
    direct = floors(plan(), "mn1", via_home_agent=False)
    assert direct["gist_handshake_ms"] == 34


def test_pull_authorization_adds_the_round_trip_to_the_paa():
    # d(FW,PAA) = cn_uplink 10 + home_uplink 10 + home_lan 1
    pull = floors(plan(), "mn1", via_home_agent=True, pull=True)
    assert pull["natfw_create_ms"] == 2 * 37 + 4 + 2 * 21
    assert pull["natfw_data_ms"] == 4 * 17 + 4 + 2 * 21


def test_floors_scale_with_the_cn_uplink():
    slow = floors(plan(cn_uplink_delay_ms=50), "mn1", via_home_agent=False)
    assert slow["gist_handshake_ms"] == 2 * (2 + 5 + 50)
    assert slow["natfw_create_ms"] == 2 * 57 + 4


def ev(t_ms, name, **fields):
    return {"t_ns": int(t_ms * 1e6), "event": name, **fields}


def test_phases_from_events():
    cn, hoa, coa = "2001:db8:2::10", "2001:db8:1::1000", "2001:db8:11::5"
    mn = [ev(100, "mipv6.mn.traversal_started", cn=cn, coa=coa, phase="rr"),
          ev(100, "natfw.traversal_open", cn=cn, coa=coa, phase="rr", sessions=["aa", "bb"]),
          ev(140, "nsis.gist_up", session="bb", source=coa),
          ev(180, "nsis.gist_up", session="aa", source=hoa),
          ev(200, "nsis.response", session="bb", source=coa, ok=True),
          ev(260, "nsis.response", session="aa", source=hoa, ok=True),
          ev(260, "mipv6.mn.traversal_done", cn=cn, coa=coa, phase="rr", ok=True),
          ev(340, "mipv6.mn.cn_bu_sent", cn=cn),
          ev(380, "mipv6.mn.traversal_started", cn=cn, coa=coa, phase="data"),
          ev(460, "mipv6.mn.traversal_done", cn=cn, coa=coa, phase="data", ok=True),
          ev(460, "mipv6.mn.ro_on", cn=cn)]
    fw = [ev(150, "nsis.pinhole_installed", session="bb", install_ms=1.5),
          ev(230, "nsis.pinhole_installed", session="aa", install_ms=2.5)]
    p = with_nsis_phases(mn, fw, cn, hoa, after_ns=0)
    assert p["gist_handshake_ms"] == 80 and p["natfw_create_ms"] == 80
    assert p["pinhole_install_ms"] == 2.5 and p["via_home_agent"]
    assert (p["rr_ms"], p["cn_binding_ms"], p["natfw_data_ms"], p["total_ms"]) == (80, 40, 80, 360)
