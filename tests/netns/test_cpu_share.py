"""The MN processes' CPU share (topology parameter mn_cpu_share) on a real network: with
MN hosts the hosts' scheduling groups get nice 10 and nothing else does (servers,
routers' agents, link hubs, the controller); mn_cpu_share=fair and a process per MN
(single-MN runs) leave every group as it was; the setting is in the run's record; the
teardown ends the processes it was applied to and leaves the controller's group as it
found it."""
from __future__ import annotations

import os

import pytest

from mip6bench.runtime.eventlog import read_events
from mip6bench.testbed import cpushare
from mip6bench.testbed.network import Testbed
from mip6bench.testbed.registry import process_start

from .bootstrap_util import topology

pytestmark = pytest.mark.skipif(not cpushare.autogroup_enabled(),
                                reason="kernel.sched_autogroup_enabled is not 1 here (the nice "
                                       "fallback is decided in tests/unit/test_cpushare.py)")


def infrastructure_pids(tb) -> dict[str, int]:
    pids = {f"{node}/{agent}": a.pid for (node, agent), a in tb.agents.items()
            if agent != "mn" and a.pid}
    pids.update({f"hub{i}": pid for i, pid in enumerate(getattr(tb.run.link_hubs, "pids", []) or [])})
    return pids


def groups_in_use() -> set[str]:
    groups = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            groups.add(cpushare.read_autogroup(pid)[0])
        except (OSError, ValueError):
            continue  # ended meanwhile
    return groups


def run_network(tmp_path, **params):
    own = cpushare.read_autogroup("self")
    tb = Testbed(topology("static", foreign=1, tunnel="userspace", **params),
                 experiment="test-cpushare", out_dir=tmp_path, capture=False)
    tb.start()
    try:
        seen = {"share": tb.cpu_share,
                "mn": {pid: cpushare.read_autogroup(pid) for pid in
                       {tb.mobility_agent(m.name).pid for m in tb.plan.by_role("mn")}},
                "infra": {name: cpushare.read_autogroup(pid) for name, pid in infrastructure_pids(tb).items()}}
        pids = [(r["pid"], r["start"]) for r in tb.run.record.resources() if r["kind"] == "process"]
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []    # every process ended, by pid
    assert cpushare.read_autogroup("self") == own                  # the controller's group untouched
    # No process is left in a group the setting was applied to (the group ended with them).
    lowered = {a["done"].split()[0] for a in (seen["share"] or {}).get("mn_processes", [])}
    assert lowered.isdisjoint(groups_in_use())
    seen["logged"] = [e for e in read_events(tb.run_dir / "logs" / "testbed.events.jsonl")
                      if e["event"] == "testbed.cpu_share"]
    return seen, own


def test_mn_hosts_get_the_lower_share_and_nothing_else_does(tmp_path):
    seen, own = run_network(tmp_path, mns=3, mns_per_agent=3)
    share = seen["share"]
    assert (share["setting"], share["mechanism"], share["mn_nice"]) == ("auto", "autogroup", cpushare.MN_NICE)
    [(pid, (group, nice))] = seen["mn"].items()           # one host for the three MNs
    assert nice == cpushare.MN_NICE and group != own[0]
    assert [a["pid"] for a in share["mn_processes"]] == [pid] and share["problems"] == []
    assert seen["infra"] and all(n == 0 for _g, n in seen["infra"].values()), seen["infra"]
    assert group not in {g for g, _n in seen["infra"].values()}
    [logged] = seen["logged"]
    assert (logged["mechanism"], logged["mn_nice"]) == ("autogroup", cpushare.MN_NICE)


@pytest.mark.parametrize("params", [{"mns": 3, "mns_per_agent": 3, "mn_cpu_share": "fair"},
                                    {"mns": 1}], ids=["fair", "single-mn"])
def test_fair_and_single_mn_leave_every_group_as_it_was(tmp_path, params):
    seen, _own = run_network(tmp_path, **params)
    assert (seen["share"]["mechanism"], seen["share"]["mn_processes"]) == ("none", [])
    assert all(n == 0 for _g, n in [*seen["mn"].values(), *seen["infra"].values()])
