"""The traversal experiment: its phases from the event logs and its summary table (the
floors themselves: tests/unit/test_floors.py)."""
from __future__ import annotations

from experiments.traversal import summarize, with_nsis_phases
from mip6bench.measure.floors import traversal_floors
from mip6bench.params import parse_params
from mip6bench.testbed.operational import build_plan, topology_params


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


def test_summary_has_overhead_and_ratio_for_every_phase():
    fl = traversal_floors(build_plan(parse_params(topology_params(), {})), "mn1", via_home_agent=True)
    w = {"gist_handshake_ms": 100.0, "natfw_create_ms": 90.0, "pinhole_install_ms": 1.5, "rr_ms": 80.0,
         "cn_binding_ms": 40.0, "natfw_data_ms": 84.0, "total_ms": 400.0, "floors": fl,
         "ro_established": True, "pinholes": 5}
    text = summarize({"traversal": {"with_nsis": w, "without_nsis": {
        "rr_timeout_ms": 7000.0, "firewall_drops": 9, "fallback": "tunnel"}}})
    lines = {line.split("  ")[0].strip(): line.split() for line in text.splitlines()}
    assert "overhead" in text.splitlines()[1]
    gist = next(v for k, v in lines.items() if k.startswith("GIST handshake"))
    assert gist[-3:] == ["74.0", "26.0", "1.35"]
    install = next(v for k, v in lines.items() if k.startswith("pinhole install"))
    assert install[-3:] == ["0.0", "1.5", "-"]
