#!/usr/bin/env python3
"""Agent budgets (issue 9): an agent starts in under 300 ms and one MN costs under 40 MB.

Starts the operational testbed (mipv6=bootstrap: the MN authenticates through PANA and
runs NSIS, the heaviest MN there is; or --mipv6 static), waits until mn1 is registered,
then restarts every agent --restarts times (the MN last, each time until it is
registered again) and reports per agent kind (the role's script: fw, ha, cn, paa, aaa,
rao_forwarder, mn):
  start_ms   the agent's own agent.ready startup_ms: from the process's start (its
             /proc starttime, 10 ms ticks) to the ready line, the interpreter included
  launch_ms  the testbed's view: from launching the process (mnexec) to its ready line
  cpu_ms     CPU time (user + system) the process used up to just after its ready line:
             start-up work, less sensitive than the times above to what else the
             machine runs
  rss_mb     VmRSS once running (the MN: after its bootstrap and home registration)
  pss_mb / uss_mb  /proc/<pid>/smaps_rollup: proportional and private memory, what one
             more agent of the kind really adds (shared libraries counted once)
Medians over the restarts, with min and max. Needs root. Prints a table and a JSON line.

    sudo .venv/bin/python bench/agent_budget_bench.py [--restarts 5] [--mipv6 bootstrap]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.testbed.network import Testbed  # noqa: E402

START_BUDGET_MS = 300.0
MN_BUDGET_MB = 40.0


def memory_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Pss", "Private_Clean", "Private_Dirty"):
                out[key] = int(rest.split()[0])
    out["uss"] = out.pop("Private_Clean", 0) + out.pop("Private_Dirty", 0)
    out["pss"] = out.pop("Pss", 0)
    return out


def cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")   # utime, stime


def ready_ms(tb, node: str, agent: str) -> float | None:
    """startup_ms of the agent's last agent.ready event."""
    path = tb.run.logs_dir / f"{node}-{agent}.events.jsonl"
    found = None
    with open(path) as f:
        for line in f:
            if '"agent.ready"' in line:
                found = json.loads(line).get("startup_ms")
    return found


def restart(tb, node: str, agent: str) -> float:
    """Restart the agent; the CPU time it used up to its ready line."""
    tb.restart_agent(node, agent)
    return cpu_ms(tb.agents[(node, agent)].pid)


def sample(tb, node: str, agent: str, cpu: float, series: dict) -> None:
    proc = tb.agents[(node, agent)]
    kind = series.setdefault(proc.role, {"start_ms": [], "launch_ms": [], "cpu_ms": [], "rss_mb": [],
                                         "pss_mb": [], "uss_mb": []})
    mem = memory_kb(proc.pid)
    kind["start_ms"].append(ready_ms(tb, node, agent))
    kind["cpu_ms"].append(cpu)
    kind["launch_ms"].append(proc.startup_ms)
    for key in ("rss", "pss", "uss"):
        kind[f"{key}_mb"].append(mem[key] / 1024)


def summary(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "n": len(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--mipv6", choices=("bootstrap", "static"), default="bootstrap")
    args = ap.parse_args()
    tb = Testbed({"mipv6": args.mipv6, "nsis": "on"}, experiment="bench-budget",
                 out_dir=tempfile.mkdtemp(prefix="budget-"), capture=False)
    series: dict[str, dict[str, list]] = {}
    with tb:
        mn = tb.mobility_agent("mn1")
        mn.request("wait", timeout=32, until="registered", within=30)
        others = sorted(key for key in tb.agents if tb.agents[key].role != "mn")
        for _ in range(args.restarts):
            for node, agent in others:
                sample(tb, node, agent, restart(tb, node, agent), series)
            cpu = restart(tb, "mn1", "mn")
            mn.request("wait", timeout=32, until="registered", within=30)
            sample(tb, "mn1", "mn", cpu, series)
    out = {kind: {key: summary(v) for key, v in values.items()} for kind, values in sorted(series.items())}
    print(f"{'agent':<14}{'start ms':>10}{'(max)':>8}{'launch ms':>11}{'CPU ms':>8}{'RSS MB':>9}{'PSS MB':>9}"
          f"{'USS MB':>9}   median of {args.restarts} restarts, mipv6={args.mipv6}, "
          f"load {open('/proc/loadavg').read().split()[0]}")
    for kind, r in out.items():
        print(f"{kind:<14}{r['start_ms']['median']:>10.1f}{r['start_ms']['max']:>8.1f}"
              f"{r['launch_ms']['median']:>11.1f}{r['cpu_ms']['median']:>8.0f}{r['rss_mb']['median']:>9.1f}"
              f"{r['pss_mb']['median']:>9.1f}{r['uss_mb']['median']:>9.1f}")
    slow = [k for k, r in out.items() if r["start_ms"]["median"] > START_BUDGET_MS]
    mn_rss = out.get("mn", {}).get("rss_mb", {}).get("median")
    print(f"budgets: start < {START_BUDGET_MS:.0f} ms: {'met' if not slow else 'missed by ' + ', '.join(slow)}; "
          f"MN < {MN_BUDGET_MB:.0f} MB RSS: {'met' if mn_rss is not None and mn_rss < MN_BUDGET_MB else 'missed'} "
          f"({mn_rss} MB)")
    print(json.dumps({"agent_budget_bench": {"mipv6": args.mipv6, "restarts": args.restarts, "agents": out}},
                     separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
