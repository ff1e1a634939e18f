"""What a process on this kernel costs, from /proc: CPU time, memory (Pss), its
children. The scale experiment reads them here for nodes on the controller's server,
and a cluster server's helper (testbed.serverd `proc_stats`) for its own."""
from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None, thread: int | None = None) -> float | None:
    """utime + stime of process `pid` (all its threads), or of its thread `thread`."""
    try:
        with open(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, TypeError, ValueError, IndexError):
        return None


def mem_kb(pid: int | None) -> int:
    """The process's proportional set size (Pss: its private pages plus its share of
    pages it shares, e.g. the interpreter and libraries), else its RSS."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except (OSError, TypeError):
            continue
    return 0


def children(pid: int) -> list[int]:
    """The process's children (from its threads' /proc children lists)."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        pass
    return out


def sched_s(pid: int | None) -> tuple[float, float] | None:
    """(time on a CPU, time runnable but waiting for one) of process `pid`, all its
    threads, in s (/proc/<pid>/task/*/schedstat: the scheduler's own accounting)."""
    run = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (OSError, TypeError):
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                r, w, _slices = f.read().split()
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
        run, wait = run + int(r), wait + int(w)
    return run / 1e9, wait / 1e9


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from one scan of /proc/*/stat (what `children` cannot
    give: the children of processes that are not ours to list task by task)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue   # ended meanwhile
            kids.setdefault(parent, []).append(int(entry))
    return kids
