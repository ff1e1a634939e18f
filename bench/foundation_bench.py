#!/usr/bin/env python3
"""Benchmarks of the testbed foundation (root). Prints readable lines and a JSON line.

  * topology start and stop time (default operational topology, agents on, capture off
    and on), over --reps repetitions;
  * link emulation in the topology: one-way delay error of the 10 ms core-ha link as
    RTT/2 - 10 ms from UDP probes between the link's end nodes (p50/p99), next to a
    probe over loopback in the same run (the measuring path's own cost);
  * the relay on its own (packet rate per link, one-way delay error): bench/linkemu_bench.py
    (run with --linkemu);
  * agent cold start (Popen to ready line, interpreter start included) and RSS, for the
    fw agent started repeatedly in its node.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.measure.probe import Flow, percentile, probe_flows  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402


def stats(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def topology_times(reps: int, capture: bool, tmp: str) -> dict:
    starts, stops = [], []
    for i in range(reps):
        tb = Testbed({}, experiment="bench", out_dir=f"{tmp}/topo-{capture}-{i}", capture=capture)
        t0 = time.monotonic()
        tb.start()
        starts.append(time.monotonic() - t0)
        t1 = time.monotonic()
        tb.stop()
        stops.append(time.monotonic() - t1)
    return {"start_s": stats(starts), "stop_s": stats(stops)}


def link_and_agents(tmp: str, probes: int, agent_starts: int) -> dict:
    out = {}
    with Testbed({}, experiment="bench", out_dir=f"{tmp}/links", capture=False) as tb:
        spec = tb.plan.link("core-ha")
        a, a_addr, b, b_addr = spec.probe
        [link, lo] = probe_flows([Flow("core-ha", tb.node(a).pid, a_addr, tb.node(b).pid, b_addr),
                                  Flow("loopback", tb.node(a).pid, "::1", tb.node(a).pid, "::1")],
                                 count=probes, interval=0.002, linger=1.0)
        err_us = [(rtt / 2 - spec.shaping.delay_ms) * 1000 for rtt in link.rtts_ms]
        out["delay_error_10ms_link_us"] = {
            "p50": round(percentile(err_us, 50), 1), "p99": round(percentile(err_us, 99), 1),
            "probes": link.sent, "answered": link.answered,
            "probe_path_rtt_us_p50": round(percentile(lo.rtts_ms, 50) * 1000, 1)}
        agent = tb.agents[("fw", "fw")]
        times, rss = [], []
        for _ in range(agent_starts):
            agent.restart()
            times.append(agent.startup_ms)
            rss.append(agent.rss_kb())
        out["agent_cold_start_ms"] = stats(times)
        out["agent_rss_kb"] = stats(rss)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--probes", type=int, default=2000)
    parser.add_argument("--agent-starts", type=int, default=10)
    parser.add_argument("--linkemu", action="store_true", help="also run bench/linkemu_bench.py")
    parser.add_argument("--tmp", default="/tmp/mip6bench-bench")
    args = parser.parse_args()
    results = {
        "topology_no_capture": topology_times(args.reps, False, args.tmp),
        "topology_with_capture": topology_times(args.reps, True, args.tmp),
        **link_and_agents(args.tmp, args.probes, args.agent_starts),
    }
    for name in ("topology_no_capture", "topology_with_capture"):
        r = results[name]
        print(f"{name}: start {r['start_s']['mean']:.2f} s (min {r['start_s']['min']:.2f}, max "
              f"{r['start_s']['max']:.2f}), stop {r['stop_s']['mean']:.2f} s over {r['start_s']['n']} runs")
    d = results["delay_error_10ms_link_us"]
    print(f"10 ms link, one-way error (RTT/2 - 10 ms): p50 {d['p50']} us, p99 {d['p99']} us over "
          f"{d['answered']}/{d['probes']} probes; probe path alone (loopback RTT p50) "
          f"{d['probe_path_rtt_us_p50']} us")
    a, m = results["agent_cold_start_ms"], results["agent_rss_kb"]
    print(f"agent cold start (fw): mean {a['mean']:.1f} ms (min {a['min']:.1f}, max {a['max']:.1f}); "
          f"RSS mean {m['mean'] / 1024:.1f} MiB (max {m['max'] / 1024:.1f})")
    if args.linkemu:
        proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "linkemu_bench.py")],
                              capture_output=True, text=True)
        print(proc.stdout.rstrip())
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
        results.update(json.loads(last))
    print(json.dumps({"foundation_bench": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
