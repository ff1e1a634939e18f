"""Where an agent's memory goes: tracemalloc snapshots inside a running agent.

Off by default (tracing costs time and memory). `MIP6BENCH_TRACEMALLOC=<frames>` in an
agent's environment (1 or more: the frames kept per allocation; the testbed's agents
inherit the environment) starts tracemalloc before the agent starts, and the `memory`
control command answers:

    memory {}                      totals: traced (current, peak), RSS, heap of the allocator,
                                   the cyclic collector's runs per generation
    memory {collect: true, ...}    ... after a full collection (`collected`: objects freed)
    memory {baseline: true}        ... and keep a snapshot as the baseline
    memory {top: N, by: lineno|traceback}
                                   ... and the N largest allocation sites now, or, with a
                                   baseline, the N largest changes since it

The totals say whether growth is Python objects (traced grows with RSS) or something
tracemalloc does not see (RSS grows, traced does not: allocator fragmentation, C
libraries' own allocations). `malloc` is glibc's heap only: Python's small objects live
in the interpreter's own arenas (mmap), which it does not count.
"""
from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tracemalloc

# tracemalloc (with the pickle and fnmatch it imports) is imported when tracing is asked
# for, by the environment or the `memory` command: every agent imports this module.

ENV = "MIP6BENCH_TRACEMALLOC"
MAX_TOP = 200


def start_from_env(environ=os.environ) -> bool:
    """Start tracemalloc when the environment asks for it; returns whether it traces.
    A value that is not a positive number of frames is a one-line error."""
    value = environ.get(ENV, "").strip()
    if not value or value == "0":
        return False
    try:
        frames = int(value)
    except ValueError:
        raise ValueError(f"{ENV} must be a number of frames (1-100), not {value!r}") from None
    if not 1 <= frames <= 100:
        raise ValueError(f"{ENV} must be a number of frames (1-100), not {value!r}")
    import tracemalloc
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    return True


def rss_kb(pid: int | str = "self") -> int | None:
    """VmRSS (kB) of a process on this kernel (this one by default), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


_mallinfo2: list = []      # glibc's mallinfo2, looked up on first use (None: none)


def _malloc_heap() -> dict[str, int] | None:
    """glibc's view of its heap (mallinfo2): bytes held from the system, in use (which
    includes what tracemalloc does not see: C libraries' own allocations) and held free.
    None where the C library has no mallinfo2."""
    if not _mallinfo2:
        import ctypes   # only when asked: agents do not pay for it at start

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]

        try:
            fn = ctypes.CDLL(None).mallinfo2
            fn.restype, fn.argtypes = MallInfo2, []
        except (OSError, AttributeError):
            fn = None
        _mallinfo2.append(fn)
    if _mallinfo2[0] is None:
        return None
    info = _mallinfo2[0]()
    return {"arena_kb": (info.arena + info.hblkhd) // 1024, "in_use_kb": (info.uordblks + info.hblkhd) // 1024,
            "free_kb": info.fordblks // 1024}


def _stat(stat: Any, cumulative_diff: bool) -> dict[str, Any]:
    # The allocating line first, then its callers.
    frames = [f"{frame.filename}:{frame.lineno}" for frame in reversed(stat.traceback)]
    out = {"where": frames[0] if len(frames) == 1 else frames,
           "size_kb": round(stat.size / 1024, 1), "count": stat.count}
    if cumulative_diff:
        out["size_diff_kb"] = round(stat.size_diff / 1024, 1)
        out["count_diff"] = stat.count_diff
    return out


class MemoryProbe:
    """The `memory` control command's state: the baseline snapshot."""

    def __init__(self) -> None:
        self.baseline: tracemalloc.Snapshot | None = None

    @staticmethod
    def _filtered(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
        import tracemalloc
        return snapshot.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))

    async def command(self, req: dict[str, Any]) -> dict[str, Any]:
        top = int(req.get("top", 0))
        if not 0 <= top <= MAX_TOP:
            raise ValueError(f"top must be 0-{MAX_TOP}")
        import tracemalloc
        by = req.get("by", "lineno")
        if by not in ("lineno", "traceback", "filename"):
            raise ValueError("by must be lineno, traceback or filename")
        out: dict[str, Any] = {}
        if req.get("collect"):
            # Cyclic garbage waits for the collector (pyroute2's messages, for one, are
            # cycles): collected first, the figures say what is alive.
            out["collected"] = gc.collect()
        out.update(tracing=tracemalloc.is_tracing(), rss_kb=rss_kb(), malloc=_malloc_heap(),
                   gc=[{"collections": g["collections"], "collected": g["collected"]}
                       for g in gc.get_stats()], gc_frozen=gc.get_freeze_count())
        if not tracemalloc.is_tracing():
            if req.get("baseline") or top:
                raise ValueError(f"tracemalloc is off: start the agent with {ENV}=<frames>")
            return out
        current, peak = tracemalloc.get_traced_memory()
        out.update(traced_kb=current // 1024, traced_peak_kb=peak // 1024,
                   tracemalloc_kb=tracemalloc.get_tracemalloc_memory() // 1024)
        if top:
            snapshot = self._filtered(tracemalloc.take_snapshot())
            if self.baseline is not None:
                diff = snapshot.compare_to(self.baseline, by)
                diff.sort(key=lambda s: abs(s.size_diff), reverse=True)
                # What grew in all (the snapshots themselves left out, unlike traced_kb).
                out["traced_since_baseline_kb"] = round(sum(s.size_diff for s in diff) / 1024, 1)
                out["since_baseline"] = [_stat(s, True) for s in diff[:top]]
                out["baseline_traced_kb"] = sum(t.size for t in self.baseline.traces) // 1024
            else:
                out["top"] = [_stat(s, False) for s in snapshot.statistics(by)[:top]]
        if req.get("baseline"):
            self.baseline = self._filtered(tracemalloc.take_snapshot())
            out["baseline_taken"] = True
        return out
