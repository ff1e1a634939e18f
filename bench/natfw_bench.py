#!/usr/bin/env python3
"""Benchmark of the firewall's NSIS pinhole engine (mip6bench.net.pinholes) with real nft
commits, in a throw-away network namespace holding the project's firewall ruleset.

For N sessions arriving at once (default 1000 and 5000; each MN opens four: HoTI from
its home address, CoTI, BU with a Home Address option and a UDP data flow with one,
from its care-of address, as the NATFW core's PinholeFlows turn into nft matches):
  - installs/s: N over the time from the first request to the last commit;
  - CPU ms per install: this process's user+system time (the kernel's work for the
    netlink transactions runs in it too) plus, for the plain path, the nft processes';
  - install latency p50/p99: from the request to the commit that holds it;
  - memory: the process's RSS growth per session (after malloc_trim, so the parser's
    freed buffers do not count), and the ruleset (nft's text listing)
    bytes per session; clear_s: removing all N at once;
  - single_ms: one more install on top of the N (no group to share the commit with).
Engines: "group" (PinholeTable: group commit through in-process libnftables), "renew"
(the same with a fresh libnftables context after every commit: no ruleset copy kept in
the process) and "plain" (the same transactions, one `nft -f` process per install, one
at a time).

The NATFW NF core is not in the loop yet: this times the install engine alone (the
requests are what the core's InstallPinhole effects carry).

Prints a table, then one JSON summary line.
Also: the same N paced at --rate requests/s (default 2000) on the group engine, where
each commit takes what arrived during the previous one. Every run is its own process.

Usage: python bench/natfw_bench.py [--sizes 1000,5000] [--plain-max 1000] [--rate 2000]
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import ipaddress
import json
import os
import resource
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.natfw import wire as w  # noqa: E402
from mip6bench.natfw.core import Mri, PinholeFlow  # noqa: E402
from mip6bench.net.firewall import Firewall  # noqa: E402
from mip6bench.net.nft import Batch, Nft, NftError  # noqa: E402
from mip6bench.net.pinholes import (PinholeTable, flow_description, flow_matches,  # noqa: E402
                                    flow_verdict)

CN = "2001:db8:2::10"
HOME = ipaddress.IPv6Network("2001:db8:1::/64")
FOREIGN = ipaddress.IPv6Network("2001:db8:11::/64")


def session_flows(n: int) -> list[tuple[str, PinholeFlow]]:
    out = []
    for k in range(n // 4 + 1):
        hoa, coa = str(HOME[k + 0x100]), str(FOREIGN[k + 0x100])
        for f in (PinholeFlow(Mri(hoa, CN), mip6=w.Mip6Flow(w.MIP6_MH, 1)),
                  PinholeFlow(Mri(coa, CN), mip6=w.Mip6Flow(w.MIP6_MH, 2, hoa)),
                  PinholeFlow(Mri(coa, CN), mip6=w.Mip6Flow(w.MIP6_MH, 5, hoa)),
                  PinholeFlow(Mri(coa, CN, 17, 0, 5001), mip6=w.Mip6Flow(w.MIP6_HAO, 0, hoa))):
            out.append((secrets.token_hex(16), f))
    return out[:n]


class NftProcess:
    """The plain path: every transaction is its own `nft -f -` run."""

    def __init__(self, netns: str):
        self.nft = Nft(netns)

    def run(self, text: str, flags: int = 0) -> tuple[bool, str, str]:
        try:
            self.nft.apply(Batch(text.splitlines()))
            return True, "", ""
        except NftError as exc:
            return False, "", str(exc)

    def close(self) -> None:
        pass


def rss_kb() -> int:
    """Resident memory after handing freed heap back (malloc_trim): what stays in use."""
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(children: bool) -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    total = r.ru_utime + r.ru_stime
    if children:
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += c.ru_utime + c.ru_stime
    return total


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def measure(netns: str, engine: str, n: int, rate: float = 0.0) -> dict:
    Firewall(netns, "in0", "out0").install()  # fresh table
    plain = engine == "plain"
    table = (PinholeTable(netns, nft=NftProcess(netns), max_group=1) if plain
             else PinholeTable(netns, renew_context=engine == "renew"))
    flows = session_flows(n)
    requests = [(s, flow_matches(f), flow_description(f), flow_verdict(f)) for s, f in flows]
    latencies: list[float] = []

    async def one(i, session, matches, desc, verdict):
        if rate:  # the load's schedule: request i at t0 + i/rate
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        t = time.perf_counter()
        await table.install(session, matches, 60, desc, verdict)
        latencies.append(time.perf_counter() - t)

    rss0, cpu0 = rss_kb(), cpu_s(plain)
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, *r) for i, r in enumerate(requests)))
    wall = time.perf_counter() - t0
    cpu = cpu_s(plain) - cpu0
    rss = rss_kb() - rss0
    commits = table.stats["commits"]
    listing = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "inet",
                              "mip6bench"], capture_output=True, text=True, check=True).stdout
    installed = len(table.list())
    singles = []
    for s, f in session_flows(4 * 5)[-5:]:
        t = time.perf_counter()
        await table.install_flow("x" + s, f, 60)
        singles.append(time.perf_counter() - t)
    t = time.perf_counter()
    await table.clear()
    clear_s = time.perf_counter() - t
    stats = dict(table.stats)
    table.close()
    assert installed == n, f"{installed} of {n} sessions installed"
    return {"engine": engine, "n": n, "rate": rate or None, "installed": installed, "wall_s": wall,
            "installs_per_s": n / wall, "cpu_ms_per_install": 1000 * cpu / n,
            "p50_ms": 1000 * pct(latencies, 50), "p99_ms": 1000 * pct(latencies, 99),
            "commits": commits, "failed": stats.get("failed_ops", 0), "rss_kb_per_session": rss / n,
            "ruleset_bytes_per_session": len(listing) / n,
            "single_ms": 1000 * pct(singles, 50), "clear_s": clear_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--plain-max", type=int, default=1000,
                    help="largest N run on the plain path (one nft process per install)")
    ap.add_argument("--rate", type=float, default=2000.0,
                    help="also: N requests paced at this rate (per s) on the group engine")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # netns:engine:n:rate, in a child
    args = ap.parse_args()
    if args.one:
        netns, engine, n, rate = args.one.split(":")
        print(json.dumps(asyncio.run(measure(netns, engine, int(n), float(rate)))))
        return 0
    if os.geteuid() != 0:
        print("natfw_bench: needs root (network namespace, nftables)")
        return 0
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = []
    for n in sizes:
        runs += [("group", n, 0.0), ("renew", n, 0.0)]
        if n <= args.plain_max:
            runs.append(("plain", n, 0.0))
        if args.rate:
            runs.append(("group", n, args.rate))
    netns = f"nb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    results = []
    try:
        for engine, n, rate in runs:  # each in its own process: memory figures of its own
            out = subprocess.run([sys.executable, __file__, "--one", f"{netns}:{engine}:{n}:{rate}"],
                                 capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        subprocess.run(["ip", "netns", "del", netns])
    head = (f"{'engine':<7}{'arrival':>9}{'N':>6}{'inst/s':>9}{'cpu ms':>8}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'commits':>8}{'RSS kB':>8}{'rules B':>8}{'single ms':>10}{'clear s':>8}")
    print("NSIS pinhole installs, N sessions arriving at once or paced (per install / per session)")
    print(head)
    for r in results:
        arrival = f"{r['rate']:.0f}/s" if r["rate"] else "at once"
        print(f"{r['engine']:<7}{arrival:>9}{r['n']:>6}{r['installs_per_s']:>9.0f}{r['cpu_ms_per_install']:>8.3f}"
              f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['commits']:>8}"
              f"{r['rss_kb_per_session']:>8.2f}{r['ruleset_bytes_per_session']:>8.0f}"
              f"{r['single_ms']:>10.1f}{r['clear_s']:>8.2f}")
    print(json.dumps({"natfw_bench": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
