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

Also: the same N paced at --rate requests/s (default 2000) on the group engine, where
each commit takes what arrived during the previous one. Every run is its own process.

CREATE to pinhole (second table; --core off leaves it out, --core only runs just it):
the firewall's whole path as the fw agent runs it, against the engine alone on the same
flows, N sessions at once and paced at --rate. Four sessions per MN, the Mobile IPv6
"rr" flows of natfw.mobile.phase_flows (HoTI and BU from the HoA, CoTI and BU with the
HoA named from the CoA), each MN with its own NiCore and PANA token (aaa.token.TokenIssuer).
  - "engine": PinholeTable.install_flow(session, flow, lifetime) per session, alone;
  - "core": each CREATE goes into the NfCore that runtime/natfw.open_forwarder builds
    (authorization "token", token_sessions 8; session bounds raised to N, see below),
    from the MN's CoA as GIST peer, on the runtime's CoreDriver (timers armed as in the
    agent); every CREATE it forwards is answered by a real NrCore at once (no network:
    no CREATE waits pending) and handed back; each InstallPinhole goes to install_flow
    as NatfwService._install does. GIST and the event log are not in the loop.
Columns, per session: sess/s = N over the time from the first CREATE to the last
commit (one core: the loop thread does core and batch building, the commit thread
libnftables and the kernel's netlink work); latency p50/p99 from the CREATE entering
NfCore (or the request, for "engine") to the commit holding its pinhole; CPU of the
firewall's side split into "core" (thread CPU inside NfCore.receive: decoding, token
HMAC and checks, state), "nft" (the commit thread: libnftables and the kernel) and
"loop" (the rest of the loop thread: the pinhole table's batch text, the driver, asyncio);
the NR's CPU is measured apart and left out. RSS kB: the process's RSS growth over the
run per session (after malloc_trim; the NR's sessions dropped first); core B: what a
fresh NfCore keeps per installed session (tracemalloc, its own untimed pass).
The fw agent's NfCore keeps the default bounds (1024 sessions, 256 pending): of more
than 256 CREATEs inside one NR round trip, the rest are refused "max pending" (0x4,
0x01; the NIs retry), and sessions beyond 1024 "max sessions"; the benchmark raises
both bounds to N to time the install path itself.

Prints a table (then the second one), then one JSON summary line.

Usage: python bench/natfw_bench.py [--sizes 1000,5000] [--plain-max 1000] [--rate 2000]
                                   [--core on|off|only]
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import ipaddress
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.aaa.token import Flow, TokenIssuer  # noqa: E402
from mip6bench.natfw import wire as w  # noqa: E402
from mip6bench.natfw.core import (InstallPinhole, Mri, NfCore, NiCore, NrCore,  # noqa: E402
                                  PinholeFlow, SendNslp)
from mip6bench.natfw.mobile import phase_flows  # noqa: E402
from mip6bench.net.firewall import Firewall  # noqa: E402
from mip6bench.net.nft import Batch, Nft, NftError  # noqa: E402
from mip6bench.net.pinholes import (PinholeTable, flow_description, flow_matches,  # noqa: E402
                                    flow_verdict)
from mip6bench.runtime.driver import CoreDriver  # noqa: E402
from mip6bench.runtime.natfw import TOKEN_SESSIONS  # noqa: E402

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


# ---------------------------------------------------------------- CREATE to pinhole

LIFETIME = 60
PATHS = ("engine", "core")
TOKEN_FLOWS = (Flow(135, "2001:db8:2::/64"),)    # what the PAA lets every MN open


def mobile_creates(n: int, issuer: TokenIssuer) -> list[tuple[bytes, Mri, bytes, str, PinholeFlow]]:
    """N NATFW sessions, four per MN (the "rr" phase: HoTI and BU from the HoA, CoTI and
    BU from the CoA), each MN with its own token and NiCore: (session id, MRI, the CREATE
    as the NF receives it, the GIST peer it comes from (the MN's CoA), the PinholeFlow
    the NF installs for it)."""
    out = []
    for k in range(n // 4 + 1):
        hoa, coa = str(HOME[k + 0x100]), str(FOREIGN[k + 0x100])
        ni = NiCore(token=issuer.mint(f"mn{k}@bench.example", hoa, time.time()))
        for _role, fs in phase_flows(CN, hoa, coa, "rr"):
            sid, mri = secrets.token_bytes(16), Mri(fs.source, fs.destination, fs.protocol)
            send = next(a for a in ni.create(sid, mri, LIFETIME, 0.0, mip6=fs.mip6)
                        if isinstance(a, SendNslp))
            out.append((sid, send.mri, send.data, coa, PinholeFlow(mri, mip6=fs.mip6)))
    return out[:n]


def fw_nf_core(keys: dict[int, bytes], offset: float, n: int) -> NfCore:
    """The NfCore as the fw agent builds it (runtime/natfw.open_forwarder), with the
    session bounds raised to N so that the burst is not refused."""
    return NfCore(keys, wall_clock=lambda now: now + offset, max_lifetime=3600,
                  authorization="token", token_sessions=TOKEN_SESSIONS,
                  max_sessions=max(1024, n), max_pending=max(256, n))


def exchange(nf: NfCore, nr: NrCore, effect: SendNslp, now: float) -> list:
    """The NR's answer to a CREATE the NF forwarded, handed back to the NF."""
    out = []
    for a in nr.receive(effect.session_id, effect.mri, effect.data, now):
        if isinstance(a, SendNslp):
            out += nf.receive(a.session_id, a.mri, a.data, now, upstream=True)
    return out


def core_state_bytes(keys: dict[int, bytes], creates: list) -> float:
    """tracemalloc: what a fresh NfCore keeps per installed session (no nft, no driver)."""
    n = len(creates)
    gc.collect()
    tracemalloc.start()
    try:
        now = time.monotonic()
        nf, nr = fw_nf_core(keys, time.time() - now, n), NrCore(max_sessions=n)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for sid, mri, data, peer, _flow in creates:
            for fwd in [a for a in nf.receive(sid, mri, data, now, peer=peer)
                        if isinstance(a, SendNslp) and not a.upstream]:
                exchange(nf, nr, fwd, now)
        assert nf.counters["pinholes_installed"] == n, dict(nf.counters)
        del nr, fwd
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - base) / n
    finally:
        tracemalloc.stop()


async def measure_path(netns: str, path: str, n: int, rate: float = 0.0) -> dict:
    """path "engine": PinholeTable.install_flow alone; "core": CREATE into the fw agent's
    NfCore (token authorization) on the runtime's CoreDriver, the NR's answer from an
    NrCore, each InstallPinhole to install_flow as NatfwService does; both on the same
    Mobile IPv6 flows, group commit."""
    Firewall(netns, "in0", "out0").install()  # fresh table
    table = PinholeTable(netns)
    issuer = TokenIssuer(secrets.token_bytes(32), 1, 3600.0, TOKEN_FLOWS)
    keys = {issuer.key_id: issuer.key}
    creates = mobile_creates(n, issuer)
    loop = asyncio.get_running_loop()
    nf = fw_nf_core(keys, time.time() - loop.time(), n) if path == "core" else None
    nr = NrCore(max_sessions=n)
    entered: dict[bytes, float] = {}
    latencies: list[float] = []
    installs: list[asyncio.Future] = []
    cpu = {"core": 0.0, "nr": 0.0}
    seen = {"upstream": 0, "other": 0}

    def timed(kind, fn, *a, **kw):
        c = time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            cpu[kind] += time.thread_time() - c

    async def install(session: bytes, flow: PinholeFlow, lifetime: float):
        await table.install_flow(session.hex(), flow, lifetime)
        latencies.append(time.perf_counter() - entered[session])

    def apply(effect):
        if isinstance(effect, SendNslp) and not effect.upstream:
            # the NR's work is timed apart: it is not the firewall's
            c = time.thread_time()
            answer = nr.receive(effect.session_id, effect.mri, effect.data, loop.time())
            cpu["nr"] += time.thread_time() - c
            for a in answer:
                if isinstance(a, SendNslp):
                    driver.execute(timed("core", nf.receive, a.session_id, a.mri, a.data,
                                         loop.time(), upstream=True))
        elif isinstance(effect, InstallPinhole):
            installs.append(asyncio.ensure_future(
                install(effect.session_id, effect.flow, effect.lifetime)))
        elif isinstance(effect, SendNslp):
            seen["upstream"] += 1      # the RESPONSE to the MN (GIST's part is not timed)
        else:
            seen["other"] += 1

    driver = CoreDriver(send=lambda _t: None, emit=lambda _name, **_f: None, apply=apply,
                        on_timer=nf.handle_timer if nf else lambda _k, _now: [])

    async def one(i, sid, mri, data, peer, flow):
        if rate:  # the load's schedule: CREATE i at t0 + i/rate
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        entered[sid] = time.perf_counter()
        if nf is None:
            await install(sid, flow, LIFETIME)
        else:
            driver.execute(timed("core", nf.receive, sid, mri, data, loop.time(), peer=peer))

    gc.collect()
    rss0, cpu0, main0 = rss_kb(), cpu_s(False), time.thread_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, *c) for i, c in enumerate(creates)))
    await driver.drain()
    await asyncio.gather(*installs)
    wall = time.perf_counter() - t0
    total, main = cpu_s(False) - cpu0, time.thread_time() - main0
    nr.sessions.clear()  # the CN's state is not the firewall's
    gc.collect()
    rss = rss_kb() - rss0
    stats = dict(table.stats)
    installed = len(table.list())
    driver.close()
    table.close()
    counters = nf.counters if nf is not None else {}
    refused = {k: v for k, v in counters.items() if k.startswith("refused")}
    assert not refused and installed == n == len(latencies), (refused, installed, n)
    if nf is not None:
        assert seen == {"upstream": n, "other": 0}, seen
    state = core_state_bytes(keys, creates) if nf is not None else 0.0
    per = 1000 / n
    return {"path": path, "n": n, "rate": rate or None, "installed": installed, "wall_s": wall,
            "sessions_per_s": n / wall, "cpu_ms_per_session": per * (total - cpu["nr"]),
            "core_ms_per_session": per * cpu["core"], "nft_ms_per_session": per * (total - main),
            "loop_ms_per_session": per * (main - cpu["core"] - cpu["nr"]),
            "nr_ms_per_session": per * cpu["nr"],
            "p50_ms": 1000 * pct(latencies, 50), "p99_ms": 1000 * pct(latencies, 99),
            "commits": stats.get("commits", 0), "failed": stats.get("failed_ops", 0),
            "rss_kb_per_session": rss / n, "core_bytes_per_session": state}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--plain-max", type=int, default=1000,
                    help="largest N run on the plain path (one nft process per install)")
    ap.add_argument("--rate", type=float, default=2000.0,
                    help="also: N requests paced at this rate (per s) on the group engine")
    ap.add_argument("--core", choices=("on", "off", "only"), default="on",
                    help="the CREATE-to-pinhole path through the NF core: also (on), not "
                         "(off), or alone (only, without the engine table)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # netns:engine:n:rate, in a child
    args = ap.parse_args()
    if args.one:
        netns, engine, n, rate = args.one.split(":")
        run = measure_path if engine in PATHS else measure
        print(json.dumps(asyncio.run(run(netns, engine, int(n), float(rate)))))
        return 0
    if os.geteuid() != 0:
        print("natfw_bench: needs root (network namespace, nftables)")
        return 0
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = []
    for n in sizes:
        if args.core != "only":
            runs += [("group", n, 0.0), ("renew", n, 0.0)]
            if n <= args.plain_max:
                runs.append(("plain", n, 0.0))
            if args.rate:
                runs.append(("group", n, args.rate))
        if args.core != "off":
            for rate in [0.0] + ([args.rate] if args.rate else []):
                runs += [(path, n, rate) for path in PATHS]
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
    engines = [r for r in results if "engine" in r]
    paths = [r for r in results if "path" in r]
    if engines:
        head = (f"{'engine':<7}{'arrival':>9}{'N':>6}{'inst/s':>9}{'cpu ms':>8}{'p50 ms':>9}"
                f"{'p99 ms':>9}{'commits':>8}{'RSS kB':>8}{'rules B':>8}{'single ms':>10}"
                f"{'clear s':>8}")
        print("NSIS pinhole installs, N sessions arriving at once or paced "
              "(per install / per session)")
        print(head)
    for r in engines:
        arrival = f"{r['rate']:.0f}/s" if r["rate"] else "at once"
        print(f"{r['engine']:<7}{arrival:>9}{r['n']:>6}{r['installs_per_s']:>9.0f}{r['cpu_ms_per_install']:>8.3f}"
              f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['commits']:>8}"
              f"{r['rss_kb_per_session']:>8.2f}{r['ruleset_bytes_per_session']:>8.0f}"
              f"{r['single_ms']:>10.1f}{r['clear_s']:>8.2f}")
    if paths:
        print("CREATE to committed pinhole at the NF, Mobile IPv6 rr flows, group commit: "
              "engine alone vs. NfCore (token) + engine (per session)")
        print(f"{'path':<7}{'arrival':>9}{'N':>6}{'sess/s':>8}{'cpu ms':>9}{'core ms':>9}"
              f"{'nft ms':>9}{'loop ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'commits':>8}{'RSS kB':>8}"
              f"{'core B':>8}")
    for r in paths:
        arrival = f"{r['rate']:.0f}/s" if r["rate"] else "at once"
        print(f"{r['path']:<7}{arrival:>9}{r['n']:>6}{r['sessions_per_s']:>8.0f}"
              f"{r['cpu_ms_per_session']:>9.3f}{r['core_ms_per_session']:>9.3f}"
              f"{r['nft_ms_per_session']:>9.3f}{r['loop_ms_per_session']:>9.3f}"
              f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['commits']:>8}"
              f"{r['rss_kb_per_session']:>8.2f}{r['core_bytes_per_session']:>8.0f}")
    print(json.dumps({"natfw_bench": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
