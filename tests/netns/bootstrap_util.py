"""Helpers of the bootstrap namespace tests (no tests collected here)."""
from __future__ import annotations

import time

import pytest

from mip6bench.runtime.eventlog import read_events
from mip6bench.testbed.operational import topology_params


def topology(**params) -> dict:
    """Topology parameters without MIPv6 agents (where the topology has that switch)."""
    if "mipv6" in {s.name for s in topology_params()}:
        params["mipv6"] = "off"
    return params


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # poll interval of a control socket, not a wait for an outcome


def agent_events(tb, node: str, agent: str, name: str | None = None) -> list[dict]:
    path = tb.run.logs_dir / f"{node}-{agent}.events.jsonl"
    return [e for e in read_events(path) if name is None or e["event"] == name]
