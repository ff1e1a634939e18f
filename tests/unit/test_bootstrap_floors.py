"""The bootstrap experiment: its settings and its summary table (the floors themselves:
tests/unit/test_floors.py)."""
from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from experiments import bootstrap  # noqa: E402


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


def test_summary_table_has_overhead_and_ratio_with_the_dad_left_out():
    b = {"aaa": "embedded", "discovery": "multicast", "sa": "push", "mns": 1, "pana_messages": 9,
         "discovery_ms": 48.0, "eap_ms": 130.0, "pana_ms": 178.0, "sa_push_ms": 2.0,
         "ha_registration_ms": 1051.0, "total_ms": 1229.0, "ha_dad_ms": 1000.0, "notes": [],
         "floors": {"discovery_ms": 36, "eap_ms": 120, "pana_ms": 156, "sa_push_ms": 1,
                    "ha_registration_ms": 1034, "total_ms": 1190}}
    rows = {r["phase"]: r for r in bootstrap.phase_rows(b)}
    reg = rows["home registration (BU/BA)"]
    assert reg["overhead_ms"] == 17.0 and reg["ratio"] == round(51 / 34, 3)
    assert rows["total"]["ratio"] == round(229 / 190, 3)
    assert rows["PAA discovery (PCI, PAR[S])"]["ratio"] == round(48 / 36, 3)
    text = bootstrap.summarize({"bootstrap": b})
    assert "overhead" in text and "ratio" in text and "1000 ms DAD" in text
