"""The bootstrap experiment's analytic floors (pure: the plan's configured delays)."""
from __future__ import annotations

import os
import sys

from mip6bench.params import parse_params
from mip6bench.testbed.operational import build_plan, topology_params

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from experiments import bootstrap  # noqa: E402


def plan(**params):
    return build_plan(parse_params(topology_params(), params))


def test_path_delays_follow_the_configured_segments():
    p = plan()
    assert bootstrap.path_delay_ms(p, "mn1", "paa") == 2 + 5 + 10 + 1
    assert bootstrap.path_delay_ms(p, "paa", "aaa") == 2
    assert bootstrap.path_delay_ms(p, "paa", "ha") == 1
    assert bootstrap.path_delay_ms(p, "mn1", "ha") == 17


def test_floor_counts_per_phase():
    f = bootstrap.floors(plan(), "mn1", "push", registration=True)
    assert f == {"discovery_ms": 36, "eap_ms": 6 * 18 + 6 * 2, "pana_ms": 156,
                 "sa_push_ms": 1, "ha_registration_ms": 34, "total_ms": 190}
    f = bootstrap.floors(plan(), "mn1", "pull", registration=True, ha_dad=True, fetch_on_bu=True)
    assert f["sa_push_ms"] == 2 and f["ha_registration_ms"] == 34 + 1000 + 2
    f = bootstrap.floors(plan(), "mn1", "pull", registration=False)
    assert f["ha_registration_ms"] is None and f["total_ms"] == 156 + 2
    ten = {f"{s}_delay_ms": 10 for s in ("access", "backhaul", "home_uplink", "home_lan")}
    f = bootstrap.floors(plan(**ten), "mn1", "push", registration=False)
    assert f["pana_ms"] == 2 * 40 + 6 * 40 + 6 * 20 and f["sa_push_ms"] == 10
