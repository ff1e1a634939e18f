"""The infrastructure's CPU share (mip6bench.testbed.cpushare): the decision from the
parameter, the hosting and the kernel, and the autogroup line parser. Applying it to
processes is tested over a real network in tests/netns/test_cpu_share.py."""
import os
import subprocess
import sys

import pytest

from mip6bench.errors import ParameterError
from mip6bench.params import parse_params
from mip6bench.testbed import cpushare
from mip6bench.testbed.operational import topology_params


def test_auto_raises_the_infrastructure_when_mns_are_hosted_only():
    hosted = cpushare.decide("auto", hosted=True, autogroup=True)
    assert (hosted.mechanism, hosted.infra_nice) == ("autogroup", cpushare.INFRA_NICE) and cpushare.INFRA_NICE < 0
    # A process per MN (single-MN runs, the small networks of the tests): as before.
    alone = cpushare.decide("auto", hosted=False, autogroup=True)
    assert (alone.mechanism, alone.infra_nice) == ("none", 0)


def test_infra_and_fair_are_what_they_say_whatever_the_hosting():
    for hosted in (True, False):
        assert cpushare.decide("infra", hosted, autogroup=True).infra_nice == cpushare.INFRA_NICE
        assert cpushare.decide("fair", hosted, autogroup=True).mechanism == "none"
        assert cpushare.decide("fair", hosted, autogroup=False).infra_nice == 0


def test_without_autogroup_the_processes_own_nice():
    share = cpushare.decide("auto", hosted=True, autogroup=False)
    assert (share.mechanism, share.infra_nice) == ("nice", cpushare.INFRA_NICE)
    assert "sched_autogroup off" in share.reason
    assert share.as_dict() == {"setting": "auto", "mechanism": "nice", "infra_nice": cpushare.INFRA_NICE,
                               "reason": share.reason}


def test_unknown_setting_refused():
    with pytest.raises(ValueError):
        cpushare.decide("high", hosted=True, autogroup=True)
    with pytest.raises(ParameterError):   # the topology parameter refuses it in one line
        parse_params(topology_params(), {"cpu_share": "high"})
    assert parse_params(topology_params(), {})["cpu_share"] == "auto"


def test_autogroup_line():
    assert cpushare.parse_autogroup("/autogroup-160732 nice 0\n") == ("/autogroup-160732", 0)
    assert cpushare.parse_autogroup("/autogroup-7 nice -5") == ("/autogroup-7", -5)
    # Empty: the process is in the kernel's root group (its session never got an autogroup:
    # e.g. a job started by PID 1 without setsid, as on the CI machine).
    assert cpushare.parse_autogroup("") == cpushare.parse_autogroup("\n") == (cpushare.ROOT_GROUP, 0)
    for bad in ("/autogroup-7 nice", "/autogroup-7 prio 3", "/autogroup-7 nice x"):
        with pytest.raises(ValueError):
            cpushare.parse_autogroup(bad)


def test_switch_file(tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    on.write_text("1\n")
    off.write_text("0\n")
    assert cpushare.autogroup_enabled(str(on)) and not cpushare.autogroup_enabled(str(off))
    assert not cpushare.autogroup_enabled(str(tmp_path / "missing"))   # no such kernel option


def test_nothing_applied_for_none():
    assert cpushare.apply(1, cpushare.decide("fair", True, True)) is None


def test_the_controller_itself_is_refused():
    share = cpushare.decide("infra", hosted=True, autogroup=True)
    before = open("/proc/self/autogroup").read() if os.path.exists("/proc/self/autogroup") else None
    prio = os.getpriority(os.PRIO_PROCESS, 0)
    with pytest.raises(ValueError, match="controller"):
        cpushare.apply(os.getpid(), share)
    nice = cpushare.CpuShare("infra", "nice", 5, "test")
    with pytest.raises(ValueError, match="controller"):
        cpushare.apply(os.getpid(), nice)
    assert os.getpriority(os.PRIO_PROCESS, 0) == prio
    if before is not None:
        assert open("/proc/self/autogroup").read() == before


# A controller in a session group of its own (as started from a shell): a process of that
# group (its child without setsid) is refused, the group's nice is untouched.
SHARED_GROUP = """
import os, subprocess, sys
from mip6bench.testbed import cpushare
child = subprocess.Popen(["sleep", "30"])
try:
    cpushare.apply(child.pid, cpushare.CpuShare("infra", "autogroup", 5, "test"))
    print("applied")
except ValueError as exc:
    print("refused", exc)
finally:
    child.kill()
    child.wait()
print(open("/proc/self/autogroup").read().split()[-1])
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="kernel without sched_autogroup")
def test_a_process_in_the_controllers_session_group_is_refused():
    out = subprocess.run([sys.executable, "-c", SHARED_GROUP], capture_output=True, text=True,
                         start_new_session=True, timeout=60, check=True).stdout.splitlines()
    assert out[0].startswith("refused") and "shares the controller's scheduling group" in out[0], out
    assert out[1] == "0"


def test_a_process_in_the_root_group_gets_its_own_nice(monkeypatch):
    """The kernel's root group has no autogroup nice (a write is refused with EINVAL): an
    infrastructure process there gets the nice itself, which is its weight at the root."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        monkeypatch.setattr(cpushare, "read_autogroup", lambda pid: (cpushare.ROOT_GROUP, 0))
        done = cpushare.apply(child.pid, cpushare.CpuShare("infra", "autogroup", 5, "test"))
        assert done == f"nice 5 on {child.pid}'s threads"
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 5
    finally:
        child.kill()
        child.wait()


def test_a_share_sent_as_data_comes_back_as_decided_and_nothing_else_is_taken():
    for share in (cpushare.decide("infra", True, True), cpushare.decide("auto", True, False),
                  cpushare.decide("fair", True, True)):
        assert cpushare.CpuShare.from_dict(share.as_dict()) == share
    good = cpushare.decide("infra", True, True).as_dict()
    for bad in ([], {}, {**good, "extra": 1}, {**good, "setting": "high"}, {**good, "mechanism": "cgroup"},
                {**good, "infra_nice": -21}, {**good, "infra_nice": "-10"}, {**good, "infra_nice": True},
                {**good, "mechanism": "none"}, {**good, "reason": 3}):
        with pytest.raises(ValueError) as exc:
            cpushare.CpuShare.from_dict(bad)
        assert "\n" not in str(exc.value)


# --------------------------------------------------------- what goes where (Testbed.share_cpu)

class _Node:
    def __init__(self, name, server=None):
        self.name = name
        if server is not None:
            self.server_index = server


class _Agent:
    def __init__(self, node, agent, pid):
        self.node, self.agent, self.pid = node, agent, pid


class _Helper:
    """A server's helper as the controller sees it: its hello, and the requests sent."""

    def __init__(self, host, autogroup=True, problems=()):
        self.host, self.hello, self.sent, self.problems = host, {"autogroup": autogroup}, [], list(problems)

    def request(self, op, reply_s=None, **args):
        self.sent.append((op, args))
        done = [{"process": f"agent k{p}", "pid": p, "done": f"/autogroup-{p} nice {args['share']['infra_nice']}"}
                for p in args["pids"]]
        if args.get("hubs"):
            done.append({"process": "link hub 0", "pid": 900, "done": "/autogroup-900 nice -10"})
        return {"processes": done, "problems": self.problems}


def _testbed(monkeypatch, agents, helpers=None, hubs=(), params=None):
    from types import SimpleNamespace

    from mip6bench.testbed.network import Testbed

    tb = Testbed.__new__(Testbed)
    tb.params = {"cpu_share": "auto", **(params or {})}
    tb.agents = {(a.node.name, a.agent): a for a in agents}
    tb.run = SimpleNamespace(link_hubs=SimpleNamespace(pids=list(hubs)))
    tb.cluster = None if helpers is None else (
        SimpleNamespace(servers=["10.0.0.1"] + [h.host for h in helpers.values()]), SimpleNamespace(helpers=helpers))
    tb._shares = {}
    tb.log = SimpleNamespace(events=[], emit=lambda name, **kw: tb.log.events.append((name, kw)))
    applied = []
    monkeypatch.setattr(cpushare, "autogroup_enabled", lambda path=None: True)
    monkeypatch.setattr(cpushare, "apply", lambda pid, share: applied.append(pid) or f"/autogroup-{pid} nice {share.infra_nice}")
    return tb, applied


def test_on_one_machine_every_infrastructure_process_is_given_the_share_here(monkeypatch):
    agents = [_Agent(_Node("ha"), "ha", 11), _Agent(_Node("fw"), "fw", 12), _Agent(_Node("mn1"), "mn", 13)]
    tb, applied = _testbed(monkeypatch, agents, hubs=[21])
    tb.share_cpu(hosted=True)
    assert sorted(applied) == [11, 12, 21]              # never the MN host
    assert tb.cpu_share["mechanism"] == "autogroup" and "servers" not in tb.cpu_share
    assert [e for e, _ in tb.log.events] == ["testbed.cpu_share"]


def test_in_a_cluster_each_server_gets_its_own_share_for_its_own_processes(monkeypatch):
    """The controller's processes by pid here; the second server's through its helper:
    the agents there by pid, its link hubs, with the share decided for its kernel (no
    autogroup there: the processes' own nice); the MNs nowhere."""
    second = _Helper("10.0.0.2", autogroup=False, problems=["agent r9/x (pid 77): gone"])
    agents = [_Agent(_Node("ha", 0), "ha", 11), _Agent(_Node("ar1", 1), "ra", 31),
              _Agent(_Node("mn1", 1), "mn", 32)]
    tb, applied = _testbed(monkeypatch, agents, helpers={1: second}, hubs=[21])
    tb.share_cpu(hosted=True)
    assert sorted(applied) == [11, 21]
    [(op, args)] = second.sent
    assert op == "cpu_share" and args["pids"] == [31] and args["hubs"] is True
    assert (args["share"]["mechanism"], args["share"]["infra_nice"]) == ("nice", cpushare.INFRA_NICE)
    share = tb.cpu_share
    assert [(s["server"], s["mechanism"], s["applied"]) for s in share["servers"]] == \
        [("10.0.0.1", "autogroup", 2), ("10.0.0.2", "nice", 2)]
    assert {(p["server"], p["process"]) for p in share["processes"]} == \
        {("10.0.0.1", "ha/ha"), ("10.0.0.1", "link hub 0"), ("10.0.0.2", "ar1/ra"), ("10.0.0.2", "link hub 0")}
    assert share["problems"] == ["server 10.0.0.2: agent r9/x (pid 77): gone"]


def test_a_server_that_refuses_is_named_and_the_others_still_get_theirs(monkeypatch):
    from mip6bench.errors import Mip6benchError

    class Refusing(_Helper):
        def request(self, op, reply_s=None, **args):
            raise Mip6benchError("helper on 10.0.0.2: cpu_share: unknown op")

    tb, applied = _testbed(monkeypatch, [_Agent(_Node("ha", 0), "ha", 11)], helpers={1: Refusing("10.0.0.2")})
    tb.share_cpu(hosted=True)
    assert applied == [11]
    assert tb.cpu_share["problems"] == ["server 10.0.0.2: helper on 10.0.0.2: cpu_share: unknown op"]


def test_a_restarted_infrastructure_agent_gets_the_runs_share_again(monkeypatch):
    ha, ra, mn = _Agent(_Node("ha", 0), "ha", 11), _Agent(_Node("ar1", 1), "ra", 31), _Agent(_Node("mn1", 0), "mn", 13)
    second = _Helper("10.0.0.2")
    tb, applied = _testbed(monkeypatch, [ha, ra, mn], helpers={1: second})
    tb.share_cpu(hosted=True)
    ha.pid, ra.pid = 111, 311    # new processes
    assert tb._share_again("ha", ha) == {"done": "/autogroup-111 nice -10"} and applied[-1] == 111
    assert tb._share_again("ar1", ra) == {"done": "/autogroup-311 nice -10"}
    assert second.sent[-1][1]["pids"] == [311] and second.sent[-1][1]["hubs"] is False
    assert tb._share_again("mn1", mn) is None
    again = [(p["server"], p["pid"]) for p in tb.cpu_share["processes"] if p.get("restarted")]
    assert again == [("10.0.0.1", 111), ("10.0.0.2", 311)]
    # cpu_share=fair: nothing to give again.
    tb, applied = _testbed(monkeypatch, [ha], params={"cpu_share": "fair"})
    tb.share_cpu(hosted=True)
    assert tb._share_again("ha", ha) is None and applied == []
