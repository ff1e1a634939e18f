"""The link hub's timing, with and without its early wake-up (root: two namespaces of its
own, lt-<random>-a/-b, removed at the end; the hubs are this process's children, stopped
by pid): `.venv/bin/python bench/linkhub_timing_bench.py [--rounds 4] [--early-us 0,120]
[--links 4] [--delay-ms 1] [--probes 200] [--interval-ms 5] [--idle-s 3] [--json]`.

Per round and per early margin (alternating, a fresh hub each time, the margin given
through MIP6BENCH_HUB_EARLY_US): `links` links of `delay-ms` one way between the two
namespaces, then
  * load: UDP echo probes on every link at once, one every `interval-ms` per link (the
    link check's pattern: mip6bench.measure.probe), the round trip's median less twice
    the configured delay (the emulator's delay error as the prober sees it, two
    traversals plus the end hosts), the hub's own lateness per frame (`late_ns_total` /
    frames: how long after its departure time each frame was written), the hub's CPU
    time during the probes and its polls (non-blocking epoll_waits while a departure
    was near);
  * idle, after the probes: the hub's CPU time (schedstat) over `idle-s` with no probes
    (the links' own IPv6 chatter, router solicitations and MLD reports, still carried).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.measure.probe import Flow, probe_flows  # noqa: E402
from mip6bench.net.linkhub import LinkHub  # noqa: E402
from mip6bench.net.shaping import LinkParams  # noqa: E402


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def cpu_ms(pid: int) -> float:
    """The process's CPU time so far (ms): its main thread's run time from schedstat (ns;
    the tick-counted utime + stime are too coarse for an idle hub)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6


def one(a: str, b: str, early_us: float, args) -> dict:
    os.environ["MIP6BENCH_HUB_EARLY_US"] = f"{early_us:g}"
    hub = LinkHub.start()
    try:
        links, flows = [], []
        for i in range(args.links):
            link = hub.add(f"a{i}", a, f"b{i}", b, LinkParams(delay_ms=args.delay_ms), seed=i)
            links.append(link)
            for ns, dev in ((a, f"a{i}"), (b, f"b{i}")):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv6.conf.{dev}.disable_ipv6=0"], check=True, capture_output=True)
            addr_a, addr_b = f"fd2e:{i:x}::1", f"fd2e:{i:x}::2"
            ip("-n", a, "addr", "add", addr_a + "/64", "dev", f"a{i}", "nodad")
            ip("-n", b, "addr", "add", addr_b + "/64", "dev", f"b{i}", "nodad")
            ip("-n", a, "neigh", "replace", addr_b, "lladdr", link.ready["b"]["mac"], "dev", f"a{i}",
               "nud", "permanent")
            ip("-n", b, "neigh", "replace", addr_a, "lladdr", link.ready["a"]["mac"], "dev", f"b{i}",
               "nud", "permanent")
            flows.append(Flow(f"l{i}", a, addr_a, b, addr_b))
        pid = hub.proc.pid
        before = [link.stats() for link in links]
        polls0 = hub.request("links")["polls"]
        c0, t0 = cpu_ms(pid), time.monotonic()
        results = probe_flows(flows, count=args.probes, interval=args.interval_ms / 1e3, linger=0.5)
        busy = (cpu_ms(pid) - c0) / (time.monotonic() - t0)
        polls = hub.request("links")["polls"] - polls0
        after = [link.stats() for link in links]
        c0 = cpu_ms(pid)
        time.sleep(args.idle_s)      # the idle interval measured, not a wait for an event
        idle = (cpu_ms(pid) - c0) / args.idle_s
    finally:
        hub.stop()
    late = sum(x[d]["late_ns_total"] - y[d]["late_ns_total"] for x, y in zip(after, before)
               for d in ("ab", "ba"))
    frames = sum(x[d]["tx"] - y[d]["tx"] for x, y in zip(after, before) for d in ("ab", "ba"))
    late_max = max(x[d]["late_ns_max"] for x in after for d in ("ab", "ba"))
    rtts = [r for f in results for r in f.rtts_ms]
    return {"early_us": early_us, "idle_cpu_ms_per_s": round(idle, 3),
            "load_cpu_ms_per_s": round(busy, 1), "polls": polls, "frames": frames,
            "late_us_per_frame": round(late / max(1, frames) / 1e3, 1),
            "late_us_max": round(late_max / 1e3, 1),
            "rtt_excess_ms_p50": round(statistics.median(rtts) - 2 * args.delay_ms, 3),
            "answered": sum(f.answered for f in results), "sent": sum(f.sent for f in results)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--early-us", default="0,120", help="margins to alternate, comma-separated")
    ap.add_argument("--links", type=int, default=4)
    ap.add_argument("--delay-ms", type=float, default=1.0)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=5.0)
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    margins = [float(x) for x in args.early_us.split(",")]
    tag = secrets.token_hex(3)
    a, b = f"lt-{tag}-a", f"lt-{tag}-b"
    out = []
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            "net.ipv6.conf.default.disable_ipv6=1"], check=True, capture_output=True)
        for r in range(args.rounds):
            for m in (margins if r % 2 == 0 else margins[::-1]):
                res = one(a, b, m, args)
                res["round"] = r
                out.append(res)
                print(json.dumps(res) if args.json else
                      f"round {r} early {m:g} us: idle CPU {res['idle_cpu_ms_per_s']} ms/s, load CPU "
                      f"{res['load_cpu_ms_per_s']} ms/s, late/frame {res['late_us_per_frame']} us (max "
                      f"{res['late_us_max']}), RTT - 2d p50 {res['rtt_excess_ms_p50']} ms, polls "
                      f"{res['polls']} for {res['frames']} frames", flush=True)
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for m in margins:
        rs = [x for x in out if x["early_us"] == m]
        med = {k: statistics.median(x[k] for x in rs) for k in
               ("idle_cpu_ms_per_s", "load_cpu_ms_per_s", "late_us_per_frame", "rtt_excess_ms_p50")}
        print(f"early {m:g} us, medians of {len(rs)} rounds: {json.dumps(med)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
