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


def test_jitter_comes_off_the_delay_so_floors_stay_lower_bounds():
    p = plan(backhaul_jitter_ms=2, home_uplink_jitter_ms=30)
    assert bootstrap.path_delay_ms(p, "mn1", "ha") == 2 + (5 - 2) + 0
    assert bootstrap.path_delay_ms(p, "mn1", "paa") == 2 + 3 + 0 + 1


def test_floor_counts_per_phase():
    f = bootstrap.floors(plan(), "mn1", "push")
    assert f == {"discovery_ms": 36, "eap_ms": 6 * 18 + 6 * 2, "pana_ms": 156,
                 "sa_push_ms": 1, "ha_registration_ms": 34, "total_ms": 190}
    # pull: the HA fetches on the Binding Update, one round trip to the PAA more
    f = bootstrap.floors(plan(), "mn1", "pull", ha_dad_ms=1000.0)
    assert f["sa_push_ms"] == 2 and f["ha_registration_ms"] == 34 + 1000 + 2
    assert f["total_ms"] == 156 + 34 + 1000 + 2
    ten = {f"{s}_delay_ms": 10 for s in ("access", "backhaul", "home_uplink", "home_lan")}
    f = bootstrap.floors(plan(**ten), "mn1", "push")
    assert f["pana_ms"] == 2 * 40 + 6 * 40 + 6 * 20 and f["sa_push_ms"] == 10
    assert f["ha_registration_ms"] == 2 * 30


def test_the_experiment_drives_bootstrapping_mn_agents_only():
    import pytest

    from mip6bench.errors import ParameterError

    class FakeTestbed:
        def __init__(self, mipv6):
            self.params = {"mipv6": mipv6}

    params = {"aaa": "radius", "sa": "pull", "discovery": "unicast", "sa_lifetime": 60}
    tb = FakeTestbed("bootstrap")
    bootstrap.prepare(tb, params)
    s = tb.bootstrap_settings
    assert (s.aaa, s.sa, s.discovery, s.sa_lifetime) == ("radius", "pull", "unicast", 60)
    assert s.autostart is False          # all MNs start PANA at one moment, after the warm-up
    assert bootstrap.TOPOLOGY_DEFAULTS == {"mipv6": "bootstrap"}
    with pytest.raises(ParameterError, match="mipv6=bootstrap"):
        bootstrap.prepare(FakeTestbed("static"), params)
