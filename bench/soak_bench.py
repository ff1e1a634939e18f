#!/usr/bin/env python3
"""Soak: handovers every few seconds with PANA re-authentication, for a long time, and
whether anything grows: RSS and open descriptors of every agent, nftables rules, routes
and binding-cache entries (issue 10, "Soak"). A benchmark, not a test.

The operational testbed (mipv6=bootstrap: the MN authenticates through PANA; nsis=on:
each new care-of address re-signals the CN firewall's pinholes; the MN route-optimises
with the CN) runs for `--duration` seconds. Every `--interval` seconds mn1 moves to the
other foreign network (20 ms layer-2 gap) and the bench waits until it is registered
and route-optimised again; every `--reauth-every` moves it also re-authenticates
(pana-reauth: new MSK, new MIPv6 SA at MN and HA) and the bench waits for
pana.reauth_done. Every `--sample` seconds it records, with CLOCK_MONOTONIC:
  rss_kb.<node>/<agent>, fds.<node>/<agent>   /proc/<pid>/status VmRSS, /proc/<pid>/fd
  nft_rules.<node>, routes.<node>             the node's nftables rules (every table) and
                                              routes (every table), mip6bench.net.snapshot
  bindings.ha, bindings.cn                    the HA's and the CN's binding caches
  malloc_in_use_kb.<node>/<agent>,            the agent's C heap (glibc mallinfo2, the
  malloc_free_kb.<node>/<agent>               `memory` control command): in use, and held
                                              free (RSS growing with free, not in-use, is
                                              allocator fragmentation)
  traced_kb.<node>/<agent>,                   with --tracemalloc: what tracemalloc traces
  tracemalloc_kb.<node>/<agent>               (the Python heap) and its own overhead
and prints, per series, first and last value and the least-squares slope per hour
(with the number of samples), then a JSON summary. A slope is the trend over the run;
with a short run it is dominated by start-up effects (the first minutes' allocations),
so read slopes of runs shorter than the default hour with that in mind. Needs root.

With --tracemalloc FRAMES the agents run under tracemalloc (MIP6BENCH_TRACEMALLOC,
mip6bench/runtime/memory.py); after --warmup seconds every agent keeps a snapshot, and
at the end the bench prints, per agent, the allocation sites that grew since it (by
line, and with FRAMES > 1 by call stack) and keeps them in soak-memory.json. Tracing
costs time and memory (RSS is not comparable with a run without it).

    sudo .venv/bin/python bench/soak_bench.py [--duration 3600] [--interval 3]
        [--reauth-every 1] [--sample 10] [--tracemalloc FRAMES [--warmup 150]]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.net.neighbours import table_stats  # noqa: E402
from mip6bench.net.snapshot import nft, routes  # noqa: E402
from mip6bench.runtime.memory import ENV as MEMORY_ENV  # noqa: E402
from mip6bench.testbed.bootstrap import BootstrapSettings  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402

KERNEL_NODES = ("ha", "cn", "fw", "mn1")


def wait_event(agent, event, after_ns, within=20.0, **match):
    return agent.request("wait-event", timeout=within + 2, event=event, match=match,
                         after_ns=after_ns, within=within)


def fd_count(pid: int | None) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, TypeError):
        return None


def sample(tb) -> dict[str, float]:
    out: dict[str, float] = {}
    for (node, name), agent in sorted(tb.agents.items()):
        rss, fds = agent.rss_kb(), fd_count(agent.pid)
        if rss is not None:
            out[f"rss_kb.{node}/{name}"] = rss
        if fds is not None:
            out[f"fds.{node}/{name}"] = fds
        memory = agent.request("memory")
        if memory.get("tracing"):
            out[f"traced_kb.{node}/{name}"] = memory["traced_kb"]
            out[f"tracemalloc_kb.{node}/{name}"] = memory["tracemalloc_kb"]
        if memory.get("malloc"):
            out[f"malloc_in_use_kb.{node}/{name}"] = memory["malloc"]["in_use_kb"]
            out[f"malloc_free_kb.{node}/{name}"] = memory["malloc"]["free_kb"]
    for node in KERNEL_NODES:
        pid = tb.node(node).pid
        out[f"nft_rules.{node}"] = sum(1 for item in nft(pid) if " rule " in item)
        out[f"routes.{node}"] = len(routes(pid))
    out["bindings.ha"] = len(tb.mobility_agent("ha").request("bindings"))
    out["bindings.cn"] = tb.mobility_agent("cn").request("status").get("bindings", 0)
    return out


def agent_errors(out_dir: str) -> dict[str, tuple[int, str]]:
    """Socket errors every agent logged (`<role>.io_error` events): count and the first
    message per node/agent, reported beside the failures: a handover's transient (a send
    before the new route exists) and a machine-wide problem (EINVAL from a full neighbour
    table) both show here, and the report tells them apart."""
    found: dict[str, tuple[int, str]] = {}
    logs = os.path.join(out_dir, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        if not name.endswith(".events.jsonl"):
            continue
        with open(os.path.join(logs, name)) as f:
            for line in f:
                if '.io_error"' not in line:
                    continue
                event = json.loads(line)
                where = f"{event.get('node')}/{event.get('agent')}"
                count, first = found.get(where, (0, f"{event.get('what')}: {event.get('error')}"))
                found[where] = (count + 1, first)
    return found


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / sxx * 3600


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds (default one hour)")
    ap.add_argument("--interval", type=float, default=3.0, help="seconds between handovers")
    ap.add_argument("--reauth-every", type=int, default=1, help="re-authenticate every N handovers (0: never)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                    help="run the agents under tracemalloc (FRAMES per allocation), sample their "
                         "traced memory, take a baseline after --warmup and report the top "
                         "allocation sites' growth since it at the end")
    ap.add_argument("--warmup", type=float, default=150.0,
                    help="seconds before the tracemalloc baseline (default 150)")
    args = ap.parse_args()
    if args.duration <= 0 or args.interval <= 0 or args.sample <= 0 or args.reauth_every < 0:
        ap.error("durations must be positive, --reauth-every at least 0")
    if not 0 <= args.tracemalloc <= 100 or args.warmup < 0:
        ap.error("--tracemalloc takes 0-100 frames, --warmup at least 0")
    if args.tracemalloc:
        os.environ[MEMORY_ENV] = str(args.tracemalloc)   # the agents inherit it
    # Ctrl-C / kill -INT reports what was sampled and tears the network down, also when
    # the starting shell ignored SIGINT (`cmd &` from a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out_dir = tempfile.mkdtemp(prefix="soak-")
    tb = Testbed({"foreign": 2, "mns": 1, "mipv6": "bootstrap", "nsis": "on"}, experiment="bench-soak",
                 out_dir=out_dir, capture=False)
    tb.bootstrap_settings = BootstrapSettings()
    tb.start()
    fulls_before = table_stats().get("table_fulls", 0)
    cn = tb.plan.nodes["cn"].address()
    series: dict[str, list[tuple[float, float]]] = {}
    moves = reauths = failures = 0
    interrupted = False
    baseline_at = None
    growth: dict[str, dict] = {}
    try:
        mn = tb.mobility_agent("mn1")
        mn.request("wait", timeout=32, until="registered", within=30)
        mn.request("wait", timeout=32, until="ro", cn=cn, within=30)
        t0 = time.monotonic()
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                for key, value in sample(tb).items():
                    series.setdefault(key, []).append((now - t0, value))
                next_sample += args.sample
                print(f"{now - t0:7.0f} s  moves {moves}  reauths {reauths}  failures {failures}",
                      flush=True)
            if args.tracemalloc and baseline_at is None and now - t0 >= args.warmup:
                for agent in tb.agents.values():
                    agent.request("memory", timeout=60, baseline=True, collect=True)
                baseline_at = (now - t0, moves)
            if now - t0 >= args.duration:
                if baseline_at is not None:
                    for (node, name), agent in sorted(tb.agents.items()):
                        growth[f"{node}/{name}"] = agent.request("memory", timeout=120, top=25, collect=True)
                        growth[f"{node}/{name}"]["since_baseline_by_file"] = agent.request(
                            "memory", timeout=120, top=25, by="filename")["since_baseline"]
                        if args.tracemalloc > 1:     # the callers of the growing lines
                            growth[f"{node}/{name}"]["since_baseline_traceback"] = agent.request(
                                "memory", timeout=120, top=25, by="traceback")["since_baseline"]
                break
            target = "f2" if tb.attached_network("mn1") == "f1" else "f1"
            move = tb.move("mn1", target, gap_ms=20)
            moves += 1
            try:
                mn.request("wait", timeout=32, until="ro", cn=cn, coa=move["address"], within=30)
                if args.reauth_every and moves % args.reauth_every == 0:
                    t = time.monotonic_ns()
                    mn.request("pana-reauth")
                    wait_event(mn, "pana.reauth_done", t, 20)
                    reauths += 1
            except Exception as exc:     # counted and reported; the soak goes on
                failures += 1
                print(f"move {moves} -> {target}: {type(exc).__name__}: {exc}"[:300], flush=True)
            time.sleep(max(0.0, args.interval - (time.monotonic() - now)))  # the pace
    except KeyboardInterrupt:        # Ctrl-C: report what was sampled so far
        interrupted = True
    finally:
        tb.stop()
    io_errors = agent_errors(out_dir)
    # The kernel's one IPv6 neighbour table for all namespaces: when it is full a send
    # fails with EINVAL, whichever testbed on the machine filled it.
    table_fulls = table_stats().get("table_fulls", 0) - fulls_before
    elapsed = max(t for points in series.values() for t, _ in points) if series else 0.0
    summary = {"duration_s": round(elapsed, 1), "interrupted": interrupted,
               "moves": moves, "reauths": reauths, "failures": failures,
               "interval_s": args.interval, "samples": len(next(iter(series.values()), [])),
               "series": {}}
    print(f"\nsoak: {elapsed:.0f} s, {moves} handovers, {reauths} re-authentications, {failures} failures")
    print(f"{'series':<34} {'first':>10} {'last':>10} {'slope/h':>10}")
    for key in sorted(series):
        points = series[key]
        slope = slope_per_hour(points)
        summary["series"][key] = {"first": points[0][1], "last": points[-1][1],
                                  "slope_per_hour": None if slope is None else round(slope, 3),
                                  "samples": len(points)}
        print(f"{key:<34} {points[0][1]:>10g} {points[-1][1]:>10g} "
              f"{'-' if slope is None else format(slope, '.2f'):>10}")
    summary["io_errors"] = io_errors
    summary["neighbour_table_fulls"] = table_fulls
    print(f"kernel IPv6 neighbour table full during the run: {table_fulls} times")
    for where, (count, first) in sorted(io_errors.items()):
        print(f"io errors {where}: {count} (first: {first})")
    # Every sample, for a look at the shape of a slope (levelling off or not).
    with open(os.path.join(out_dir, "soak-series.json"), "w") as f:
        json.dump(series, f)
    print(f"samples: {os.path.join(out_dir, 'soak-series.json')}")
    if growth:
        # Where the traced memory grew between the baseline and the end, per agent.
        with open(os.path.join(out_dir, "soak-memory.json"), "w") as f:
            json.dump({"baseline_at_s": baseline_at[0], "baseline_moves": baseline_at[1],
                       "agents": growth}, f, indent=1)
        print(f"\ntraced memory since the baseline ({baseline_at[0]:.0f} s, move {baseline_at[1]}):")
        for where, memory in growth.items():
            print(f"{where}: traced {memory['traced_since_baseline_kb']:+.1f} kB since the baseline, "
                  f"RSS {memory['rss_kb']} kB")
            for stat in memory["since_baseline"][:8]:
                if stat["size_diff_kb"]:
                    print(f"    {stat['size_diff_kb']:+9.1f} kB {stat['count_diff']:+7d}  {stat['where']}")
        print(f"allocation sites: {os.path.join(out_dir, 'soak-memory.json')}")
    print(json.dumps(summary))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
