"""How much slower than real time this machine runs: the one knob for slow machines.

`MIP6BENCH_SLOWDOWN=<factor>` (the full-kernel lane sets 16: QEMU without KVM runs
Python about 16x slower) stretches every wait for an event the testbed or a test does
(agent ready lines, control requests, `wait`/`wait-event` deadlines, address and link
waits, relay start), and turns off assertions about timing (delay accuracy, latency
bounds), which mean nothing on such a machine. Protocol timers are not stretched: they
are part of the behaviour under test.
"""
from __future__ import annotations

import os

ENV = "MIP6BENCH_SLOWDOWN"


def factor() -> float:
    """The slowdown factor (>= 1); 1 where the variable is unset."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: not a number") from None
    return max(1.0, value)


def scaled(seconds: float) -> float:
    """A deadline for waiting on an event, stretched by the slowdown factor."""
    return seconds * factor()


def timing_meaningful() -> bool:
    """Whether measured times may be asserted (not on a slowed-down machine)."""
    return factor() == 1.0


def timing_skip_reason() -> str:
    return (f"timing assertion skipped: {ENV}={factor():g} (an emulated machine; "
            f"the full-kernel lane checks function only)")
