"""Idle CPUs polling for a run (topology parameter cpu_idle) on a real network: the
controller holds the kernel's PM QoS request (/dev/cpu_dma_latency) at 0 us while the
network runs, records it, and the request ends with the teardown (its descriptor
closed); cpu_idle=sleep holds nothing."""
from __future__ import annotations

import os

import pytest

from mip6bench.net import cpuidle
from mip6bench.runtime.eventlog import read_events
from mip6bench.testbed.network import Testbed

from .bootstrap_util import topology

pytestmark = pytest.mark.skipif(not os.path.exists(cpuidle.DEVICE),
                                reason=f"{cpuidle.DEVICE} absent (kernel without PM QoS)")


def held_by_me() -> list[int]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == cpuidle.DEVICE:
                out.append(int(fd))
        except OSError:
            continue   # the listing's own descriptor
    return out


@pytest.mark.parametrize("setting", ["poll", "sleep"])
def test_the_request_lasts_as_long_as_the_network(tmp_path, setting):
    tb = Testbed(topology("off", foreign=1, cpu_idle=setting), experiment="test-cpuidle",
                 out_dir=tmp_path, capture=False, agents=False)
    tb.start()
    try:
        during = held_by_me()
        limit = cpuidle.current_limit_us()
    finally:
        tb.stop()
    assert held_by_me() == []                      # ended with the teardown
    [logged] = [e for e in read_events(tb.run_dir / "logs" / "testbed.events.jsonl")
                if e["event"] == "testbed.cpu_idle"]
    assert logged["setting"] == setting
    if setting == "poll":
        assert len(during) == 1 and limit == 0 and logged["held"] is True
        assert logged["latency_us"] == 0
    else:
        assert during == [] and logged["held"] is False
