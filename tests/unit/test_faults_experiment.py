"""The faults experiment's pieces that need no network: percentiles, which kernel items
of the HA no binding accounts for, the nftables snapshot parser, the summary."""
from __future__ import annotations

import pytest

from mip6bench.experiment import load
from mip6bench.net import snapshot
from mip6bench.net.tunnel import hex128

faults = load("faults")
HOA, COA = "2001:db8:1::1001", "2001:db8:11::5"


def test_percentiles_nearest_rank():
    assert faults.percentiles([]) == {"p50": None, "p90": None, "max": None}
    assert faults.percentiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {"p50": 3.0, "p90": 5.0, "max": 5.0}
    values = [float(v) for v in range(1, 11)]
    assert faults.percentiles(values) == {"p50": 5.0, "p90": 9.0, "max": 10.0}


def test_ha_items_without_a_binding_are_orphans():
    held = [{"hoa": HOA, "coa": COA}]
    route = f'route table=main dev="ha-core" dst="{HOA}" encap="seg6" type="unicast"'
    stray = 'route table=main dev="ha-core" dst="2001:db8:1::1002" encap="seg6" type="unicast"'
    own = 'route table=main dev="lo" dst="2001:db8:1::1" type="local"'
    prefix = 'route table=main dev="ha-home" dst="2001:db8:1::/64" type="unicast"'
    element = f"nft table ip6 mip6bench_ha set reverse_tunnel element {COA} . {hex128(HOA)}"
    old_element = f"nft table ip6 mip6bench_ha set reverse_tunnel element 2001:db8:12::5 . {hex128(HOA)}"
    items = {route, stray, own, prefix, element, old_element, f"proxy {HOA} dev ha-home",
             "proxy fe80::1001 dev ha-home", "proxy 2001:db8:1::1002 dev ha-home",
             "link m6tdeadbeef00 kind=ip6tnl"}
    assert faults._ha_unheld(None, items, held) == sorted(
        [stray, old_element, "proxy 2001:db8:1::1002 dev ha-home", "link m6tdeadbeef00 kind=ip6tnl"])
    assert faults._ha_unheld(None, {route, element}, []) == sorted([route, element])


RULESET = """table inet mip6bench {
\tset allowed {
\t\ttype ipv6_addr . ipv6_addr
\t\telements = { 2001:db8:11::5 . 2001:db8:2::10,
\t\t\t     2001:db8:12::5 . 2001:db8:2::10 }
\t}

\tchain nsis-abc {
\t\tip6 saddr 2001:db8:11::5 counter packets 12 bytes 960 accept comment "nsis:abc"
\t}
}
"""


def test_nft_snapshot_items_ignore_counters(monkeypatch):
    monkeypatch.setattr(snapshot, "_run", lambda pid, argv: RULESET)
    items = snapshot.nft(None)
    assert "nft table inet mip6bench set allowed element 2001:db8:11::5 . 2001:db8:2::10" in items
    assert "nft table inet mip6bench set allowed element 2001:db8:12::5 . 2001:db8:2::10" in items
    assert 'nft table inet mip6bench chain nsis-abc rule ip6 saddr 2001:db8:11::5 accept comment "nsis:abc"' \
        in items
    monkeypatch.setattr(snapshot, "_run", lambda pid, argv: RULESET.replace("packets 12 bytes 960",
                                                                           "packets 99 bytes 7920"))
    assert snapshot.nft(None) == items
    assert snapshot.diff(items, items) == {"added": [], "removed": []}


def test_summary_names_each_agent_and_the_loss_distribution():
    metrics = {
        "loss": {"loss_pct": 5.0, "links": 22, "mns": 2, "completed": 2,
                 "bootstrap_ms": {"p50": 3000.0, "p90": 9000.0, "max": 9000.0},
                 "registered_ms": {"p50": 4000.0, "p90": 10000.0, "max": 10000.0},
                 "handover": {"from": "f1", "to": "f2", "disruption_ms": 1100.0,
                              "tcp": {"sent": 10, "echoed": 10, "max_gap_ms": 2000.0, "error": None}},
                 "tcp_survived": True},
        "crashes": [{"agent": "ha", "node": "ha", "recovered": True, "recovery_ms": 4000.0,
                     "orphans": 0, "leftover_at_restart": [], "tcp_resumed_ms": 5000.0,
                     "event": "mipv6.mn.home_registered at mn1"},
                    {"agent": "paa", "node": "paa", "recovered": False, "recovery_ms": None,
                     "orphans": 0, "leftover_at_restart": [], "event": "bootstrap.ready at mn1",
                     "note": "no bootstrap.ready at mn1 within 60 s of the restart"}],
        "tcp_across_crashes": {"survived": True, "sent": 5, "echoed": 5, "error": None}}
    text = faults.summarize(metrics)
    assert "2/2 MNs bootstrapped" in text and "p90 9000 ms" in text and "TCP survived" in text
    assert any(line.split()[:3] == ["ha", "y", "4000"] for line in text.splitlines())
    assert any(line.split()[:3] == ["paa", "n", "-"] for line in text.splitlines())
    assert "note: no bootstrap.ready" in text


def test_crash_list_and_refresh_advice_are_checked():
    from mip6bench.errors import ParameterError
    assert faults._crash_list("ha, paa,") == ["ha", "paa"]
    with pytest.raises(ParameterError, match="unknown agent"):
        faults._crash_list("ha,router")
