"""The infrastructure's CPU share (topology parameter cpu_share) on a real network: with
MN hosts the scheduling groups of the infrastructure's processes (every agent but the
MNs', the link hubs) get nice -10 and nothing else does (the MN hosts, the controller);
cpu_share=fair and a process per MN (single-MN runs) leave every group as it was; the
setting is in the run's record; the teardown ends the processes it was applied to, no
process is left in a group it changed, and the controller's group is as it was."""
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


def groups_in_use() -> set[str]:
    groups = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            groups.add(cpushare.read_autogroup(pid)[0])
        except (OSError, ValueError):
            continue  # ended meanwhile
    return groups


def run_network(tmp_path, during=None, **params):
    own = cpushare.read_autogroup("self")
    tb = Testbed(topology("static", foreign=1, tunnel="userspace", **params),
                 experiment="test-cpushare", out_dir=tmp_path, capture=False)
    tb.start()
    try:
        seen = {"during": during(tb) if during else None}
        infra = tb.infrastructure_pids()
        seen |= {"share": tb.cpu_share, "infra_names": sorted(infra),
                "mn": {pid: cpushare.read_autogroup(pid) for pid in
                       {tb.mobility_agent(m.name).pid for m in tb.plan.by_role("mn")}},
                "infra": {name: cpushare.read_autogroup(pid) for name, pid in infra.items()}}
        pids = [(r["pid"], r["start"]) for r in tb.run.record.resources() if r["kind"] == "process"]
    finally:
        tb.stop()
    assert tb.teardown_errors == []
    assert [p for p, s in pids if process_start(p) == s] == []    # every process ended, by pid
    assert cpushare.read_autogroup("self") == own                  # the controller's group untouched
    # No process is left in a group the setting changed (the group ended with them).
    changed = {a["done"].split()[0] for a in seen["share"]["processes"]}
    assert changed.isdisjoint(groups_in_use())
    events = list(read_events(tb.run_dir / "logs" / "testbed.events.jsonl"))
    seen["logged"] = [e for e in events if e["event"] == "testbed.cpu_share"]
    seen["restarted"] = [e for e in events if e["event"] == "agent.restarted"]
    return seen, own


def test_with_mn_hosts_the_infrastructure_gets_the_larger_share(tmp_path):
    seen, own = run_network(tmp_path, mns=3, mns_per_agent=3)
    share = seen["share"]
    assert (share["setting"], share["mechanism"], share["infra_nice"]) == \
        ("auto", "autogroup", cpushare.INFRA_NICE) and share["problems"] == []
    # The servers, the CN, the routers' agents and the link hubs, each by pid.
    assert {"fw/fw", "ha/ha", "cn/cn"} <= set(seen["infra_names"]), seen["infra_names"]
    assert any(n.startswith("link hub") for n in seen["infra_names"]), seen["infra_names"]
    assert sorted(a["process"] for a in share["processes"]) == seen["infra_names"]
    assert all(n == cpushare.INFRA_NICE for _g, n in seen["infra"].values()), seen["infra"]
    # The MN host (one for the three MNs) and the controller keep theirs.
    [(group, nice)] = seen["mn"].values()
    assert nice == 0 and group != own[0] and group not in {g for g, _n in seen["infra"].values()}
    [logged] = seen["logged"]
    assert (logged["mechanism"], logged["infra_nice"], len(logged["processes"])) == \
        ("autogroup", cpushare.INFRA_NICE, len(seen["infra_names"]))


@pytest.mark.parametrize("params", [{"mns": 3, "mns_per_agent": 3, "cpu_share": "fair"},
                                    {"mns": 1}], ids=["fair", "single-mn"])
def test_fair_and_single_mn_leave_every_group_as_it_was(tmp_path, params):
    seen, _own = run_network(tmp_path, **params)
    assert (seen["share"]["mechanism"], seen["share"]["processes"]) == ("none", [])
    assert all(n == 0 for _g, n in [*seen["mn"].values(), *seen["infra"].values()])


def test_an_infrastructure_agent_restarted_mid_run_keeps_the_share(tmp_path):
    """The faults experiment's restart (Testbed.restart_agent): the HA's new process is a
    new session, so a new group; it gets the run's share again, recorded in the restart's
    event and with the run's share (`restarted`), and its group ends with it too."""
    def restart_ha(tb):
        old = tb.agent("ha").pid
        out = tb.restart_agent("ha")
        assert out["pid"] != old
        return {"old": old, "out": out, "group": cpushare.read_autogroup(out["pid"])}

    seen, own = run_network(tmp_path, during=restart_ha, mns=2, mns_per_agent=2, cpu_share="infra")
    new = seen["during"]
    assert new["group"][1] == cpushare.INFRA_NICE and new["group"][0] != own[0]
    assert seen["infra"]["ha/ha"] == new["group"]          # the one that runs now
    assert new["out"]["cpu_share"] == {"done": f"{new['group'][0]} nice {cpushare.INFRA_NICE}"}
    [event] = seen["restarted"]
    assert event["pid"] == new["out"]["pid"] and event["cpu_share"] == new["out"]["cpu_share"]
    again = [p for p in seen["share"]["processes"] if p.get("restarted")]
    assert [(p["process"], p["pid"]) for p in again] == [("ha/ha", new["out"]["pid"])]
    assert seen["share"]["problems"] == []
