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
