"""The machine-wide IPv6 neighbour table limit (net/neighbours.py) and the testbed's
estimate of what a network needs (testbed/operational.neighbour_entries)."""
import os

import pytest

from mip6bench.net.neighbours import ensure_capacity, table_stats
from mip6bench.testbed.operational import build_plan, neighbour_entries, topology_params
from mip6bench.params import parse_params


def sysctls(tmp_path, thresh2=512, thresh3=1024):
    for name, value in (("gc_thresh2", thresh2), ("gc_thresh3", thresh3)):
        (tmp_path / name).write_text(f"{value}\n")
    return str(tmp_path)


def read(d, name):
    return int(open(os.path.join(d, name)).read())


def test_enough_room_changes_nothing(tmp_path):
    d = sysctls(tmp_path)
    assert ensure_capacity(1024, d) is None
    assert (read(d, "gc_thresh2"), read(d, "gc_thresh3")) == (512, 1024)


def test_too_little_room_is_raised_and_said(tmp_path):
    d = sysctls(tmp_path)
    change = ensure_capacity(8000, d)
    assert (change.before, change.after, change.problem) == (1024, 8000, "")
    assert (read(d, "gc_thresh2"), read(d, "gc_thresh3")) == (6000, 8000)
    assert "from 1024 to 8000" in change.describe()


def test_a_raised_gc_thresh2_is_kept(tmp_path):
    d = sysctls(tmp_path, thresh2=7000, thresh3=7000)
    ensure_capacity(8000, d)
    assert (read(d, "gc_thresh2"), read(d, "gc_thresh3")) == (7000, 8000)


def test_unreadable_limit_names_the_fix(tmp_path):
    change = ensure_capacity(5000, str(tmp_path / "missing"))
    assert change.after is None and "sysctl -w net.ipv6.neigh.default.gc_thresh3=5000" in change.describe()


def test_unwritable_limit_names_the_fix(tmp_path, monkeypatch):
    d = sysctls(tmp_path)

    def refuse(name, value, sysctl_dir):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("mip6bench.net.neighbours._write", refuse)
    change = ensure_capacity(5000, d)
    assert change.after is None and change.before == 1024
    assert "Permission denied" in change.describe() and "sysctl -w" in change.describe()
    assert read(d, "gc_thresh3") == 1024


def plan(**params):
    return build_plan(parse_params(topology_params(), params))


def test_estimate_grows_with_the_mobile_nodes_on_a_lan():
    one, ten, hundred = (neighbour_entries(plan(mns=n, foreign=2)) for n in (1, 10, 100))
    assert one < ten < hundred
    # each extra MN is a member of three LANs (home, both foreign): 4 entries per LAN
    # with one router
    assert hundred - ten == 90 * 3 * 4
    assert 4 * one < 1024          # the default network fits the default limit


def test_table_stats_parse_the_kernel_counters(tmp_path):
    stat = tmp_path / "ndisc_cache"
    stat.write_text("entries  allocs table_fulls\n00000133 0000abcd 000055cc\n")
    assert table_stats(str(stat)) == {"entries": 0x133, "allocs": 0xabcd, "table_fulls": 0x55cc}
    assert table_stats(str(tmp_path / "missing")) == {}


def test_the_testbed_asks_for_room_for_what_is_there_and_four_times_its_estimate(monkeypatch, capsys):
    """Testbed start-up (its _neighbour_capacity step) asks the kernel for the entries
    other namespaces hold now plus four times its own estimate, and says in one line
    what it changed."""
    from mip6bench.net import neighbours
    from mip6bench.net.neighbours import CapacityChange
    from mip6bench.testbed.network import Testbed

    asked, logged = [], []
    monkeypatch.setattr(neighbours, "table_stats", lambda: {"entries": 300})
    monkeypatch.setattr(neighbours, "ensure_capacity",
                        lambda needed: asked.append(needed) or CapacityChange(needed, 1024, needed))
    tb = Testbed({"mns": 100, "foreign": 2}, capture=False)
    tb.log = type("Log", (), {"emit": lambda self, name, **f: logged.append((name, f))})()
    tb._neighbour_capacity()
    assert asked == [300 + 4 * neighbour_entries(tb.plan)]
    assert logged[0][0] == "testbed.neighbour_limit" and logged[0][1]["after"] == asked[0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"from 1024 to {asked[0]}" in err
