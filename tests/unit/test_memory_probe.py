"""The agents' `memory` control command (mip6bench/runtime/memory.py): off unless
MIP6BENCH_TRACEMALLOC asks, a baseline and the sites that grew since it, bad input
refused in one line without a change."""
from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from mip6bench.runtime import memory
from mip6bench.runtime.memory import MemoryProbe, start_from_env


def run(probe, **req):
    return asyncio.run(probe.command(req))


@pytest.mark.parametrize("value", ["x", "-1", "101", "1.5"])
def test_a_bad_frame_count_is_one_line(value):
    with pytest.raises(ValueError, match=r"MIP6BENCH_TRACEMALLOC must be a number of frames"):
        start_from_env({memory.ENV: value})


def test_off_by_default_and_snapshots_refused_then():
    assert not start_from_env({}) and not start_from_env({memory.ENV: "0"})
    if tracemalloc.is_tracing():
        pytest.skip("the test run itself traces allocations")
    probe = MemoryProbe()
    out = run(probe)
    assert out["tracing"] is False and out["rss_kb"] > 0 and len(out["gc"]) == 3
    assert "collected" not in out
    assert isinstance(run(probe, collect=True)["collected"], int)
    with pytest.raises(ValueError, match="tracemalloc is off"):
        run(probe, baseline=True)
    assert probe.baseline is None


def test_the_growth_since_the_baseline_names_the_growing_line():
    was_tracing = tracemalloc.is_tracing()
    try:
        assert start_from_env({memory.ENV: "3"})
        probe = MemoryProbe()
        for bad in ({"top": 1000}, {"top": 5, "by": "colour"}):
            with pytest.raises(ValueError):
                run(probe, **bad)
        assert probe.baseline is None
        assert run(probe, baseline=True)["baseline_taken"]
        kept = [bytearray(4096) for _ in range(64)]                 # the growing line
        out = run(probe, top=3)
        first = out["since_baseline"][0]
        assert first["where"].endswith(f"test_memory_probe.py:{_line_of('kept = [bytearray')}")
        assert first["size_diff_kb"] >= 256 and first["count_diff"] >= 64
        assert out["traced_kb"] >= out["baseline_traced_kb"] + 256
        assert len(kept) == 64
    finally:
        if not was_tracing:
            tracemalloc.stop()


def _line_of(text: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line and "_line_of" not in line)
