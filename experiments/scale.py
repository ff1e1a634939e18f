"""Scale: N mobile nodes arriving at once, for each N of a grid, on this one machine.

For every N of `grid` (default 1,10,100,300,1000), ascending, a fresh network with N MNs
(topology mns=N, mipv6=bootstrap) runs the bootstrap experiment (experiments/bootstrap.py):
all N MN agents start PANA at one moment (pana-start), authenticate with EAP-PSK through
the PAA and the AAA server, learn HA, home address, MIPv6 SA and NSIS token; the PAA pushes
each SA to the HA; every MN registers with the HA and, with nsis=on (the default), opens
its pinholes at the CN's firewall with NATFW CREATEs carrying the token.

Per N, metrics.json "scale" "points" has:
    network_s, start_s       network built; network + every agent up (testbed timings)
    total_ms                 p50/p90/p99/max over MNs of first PCI -> home registered
    pana_ms                  the same for PCI -> PANA session open
    floor_ms                 the single-MN floor of total (bootstrap.floors: link delays)
    p50_ratio                p50 of total_ms / floor_ms
    window_s                 trigger -> the last MN registered
    bootstraps_per_s         N / window_s
    pana_msgs_per_s          PANA messages (both directions, all MNs) / window_s: the PAA's
                             signalling rate
    cpu_s, cpu_pct           CPU time (utime+stime from /proc/<pid>/stat) of the PAA, AAA,
                             HA and fw agents, and of the link hubs, from the trigger to the
                             end of the measurement; pct = cpu_s / window_s (100 = one core)
    mem_mb_per_mn            memory (Pss: shared pages counted once, split among their
                             users) of the MN agents and of the MN nodes' shells, plus the
                             link hubs', divided by N
    registered, lost         MNs that registered; MNs that did not (must be 0)
    pinholes                 MNs whose NATFW CREATEs the firewall verified (nsis=on), in
                             their first round or in a retry, within the wait
    nsis                     how: verified_first_round, verified_after_retry (with
                             retried_ms_p50/max: first CREATE -> granted), not_verified,
                             first_round_failures and not_verified_reasons by reason ("no
                             response": the NI gave up unanswered; "timed out": the MN's
                             traversal timeout came first; an information code: refused;
                             "pending": no answer by the end), nsis_ms_p50/p90/max
    runq_wait_s, run_s       of the same agents and hubs, from the trigger to the end: the
                             time their threads waited for a CPU while runnable, and ran
                             (/proc/<pid>/task/*/schedstat)
    cpu_share                the infrastructure's CPU share as applied (topology parameter
                             cpu_share, testbed cpushare: mechanism, nice, the processes)
    fw_loop_cpu_s            of cpu_s["fw"], its event loop's (main thread) share; the rest is
                             its other threads' (pinhole commits through libnftables)
    fw_counters              the firewall's NATFW/GIST counters at the end of the bootstrap
                             (refusals by reason, retransmissions absorbed/answered, drops)
    stalled                  registered MNs whose pinholes did not open in time (must be 0)
    error                    why this N did not complete: the grid stops at an N where MNs
                             did not bootstrap in time, and goes on past lost or stalled
                             sessions (counted)
"largest_completed": the largest N with every MN registered (and, with NSIS, every
CREATE verified). A grid whose largest N cannot fit in memory (testbed.network.mn_memory_mb:
an agent process per MN, or MN hosts from 21 MNs on) is refused before anything starts.

Router Advertisements default to every 1-3 s here (ra_min_ms/ra_max_ms), not the testbed's
30-70 ms: this experiment is about arrival, not movement detection, and a 30-70 ms RA on
an access network with 1,000 attached MNs is 20,000 deliveries a second to agents that
are doing nothing else.

scale.png: total_ms percentiles against N (with the floor), and the servers' CPU against N.
With profile=fw,ha (agent names) those agents run under cProfile (MIP6BENCH_PROFILE) and
each point's "profiles" (and report.md) list the functions they spent their time in.
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import dataclasses
import os
import time
from pathlib import Path

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.experiment import load
from mip6bench.measure.probe import percentile
from mip6bench.params import ParamSpec
from mip6bench.runtime.control import ControlError
from mip6bench.runtime.procstat import children, cpu_s, mem_kb, sched_s

NAME = "scale"
_bootstrap = load("bootstrap")
SWEEP_METRICS = ["scale.largest_completed"]
ESTIMATED_RUN_S = 600.0
DEFAULT_GRID = "1,10,100,300,1000"
_LONGER = {"timeout_s": 120.0, "registration_wait_s": 60.0}  # N MNs at once take longer
PARAMS = [ParamSpec("grid", str, DEFAULT_GRID, "numbers of MNs, one network each, comma-separated"),
          ParamSpec("profile", str, "", "agents to run under cProfile (e.g. fw,ha,paa; slows them "
                    "down, so their times are not the unprofiled ones): the report lists where "
                    "their time went")] + [
    dataclasses.replace(s, default=_LONGER[s.name]) if s.name in _LONGER else s
    for s in _bootstrap.PARAMS if s.name != "plain_probes"]
TOPOLOGY_DEFAULTS = {"mipv6": "bootstrap", "ra_min_ms": 1000.0, "ra_max_ms": 3000.0}
SERVERS = (("paa", "paa"), ("aaa", "aaa"), ("ha", "ha"), ("fw", "fw"))


def parse_grid(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ParameterError(f"grid={text!r} is not a list of whole numbers",
                             f"e.g. grid={DEFAULT_GRID}") from None
    if not values or values[0] < 1:
        raise ParameterError(f"grid={text!r}: every N must be at least 1", f"e.g. grid={DEFAULT_GRID}")
    return values


def check(params, topo) -> None:
    """Refuse a grid that cannot fit in memory, in one line naming the fix."""
    from mip6bench.testbed.network import check_memory, largest_mns_that_fit

    grid = parse_grid(params["grid"])
    if topo.get("cluster"):  # per machine, as the servers report their memory over ssh
        from mip6bench.testbed.network import Testbed

        try:
            Testbed({**topo, "mns": grid[-1]}, experiment=NAME, capture=False).preflight()
        except Mip6benchError as exc:
            raise ParameterError(f"scale: grid N={grid[-1]}: {exc.args[0]}", exc.fix) from None
        return
    try:
        check_memory(grid[-1], "grid N", params=topo)
    except Mip6benchError as exc:
        most = largest_mns_that_fit(params=topo)
        fit = [n for n in grid if n <= most]
        raise ParameterError(f"scale: {exc.args[0]}",
                             f"drop the larger N: grid={','.join(map(str, fit)) or '1'}, or spread "
                             "the MNs over more machines: --cluster HOST1,HOST2,... (README: Cluster "
                             "mode)") from None


def _wait_exit(pid: int, timeout: float) -> None:
    """Until process `pid` has exited (its pidfd turns readable), at most `timeout` s."""
    from mip6bench.fdwait import wait_readable
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return  # already gone
    try:
        wait_readable(fd, timeout)
    finally:
        os.close(fd)


def top_functions(path: Path, n: int = 12) -> list[dict]:
    """The functions an agent spent most time in (its own time, cProfile)."""
    import pstats
    try:
        stats = pstats.Stats(str(path))
    except (OSError, TypeError, ValueError, EOFError):
        return []
    total = stats.total_tt or 1.0
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{"function": f"{Path(file).name}:{line}({name})", "calls": nc,
             "own_s": round(tt, 3), "own_pct": round(100 * tt / total, 1), "cum_s": round(ct, 3)}
            for (file, line, name), (_cc, nc, tt, ct, _callers) in rows]


def _fw_counters(agent) -> dict | None:
    """The firewall's NATFW and GIST counters at the end of the bootstrap (refusals by
    reason, retransmissions absorbed or answered, GIST drops), or None without NSIS."""
    if agent is None:
        return None
    try:
        status = agent.request("status", timeout=30)
    except (ControlError, OSError):
        return None
    natfw, gist = status.get("natfw") or {}, status.get("gist") or {}
    if not natfw:
        return None
    return {"natfw": natfw.get("counters"), "sessions": natfw.get("sessions"),
            "gist": gist.get("counters"), "gist_routing_states": gist.get("routing_states"),
            "gist_pending_queries": gist.get("pending_queries")}


def _dist(values: list[float]) -> dict[str, float | None]:
    return {f"p{q}": _r(percentile(values, q)) for q in (50, 90, 99)} | \
        {"max": _r(max(values)) if values else None}


def _r(v, nd=3):
    return None if v is None else round(v, nd)


def mn_costs(tb, mns: list[str]) -> tuple[int, float, set, int]:
    """(memory kB, CPU s) of the MNs' agents with their children and of their nodes'
    shells, the agents' pids (one per process, on whichever server), and the memory (kB)
    of the link hubs on the other servers: read here for a node on this kernel, asked of
    its server's helper (proc_stats) otherwise."""
    mem, cpu, hub_mem = 0, 0.0, 0
    agent_pids: set = set()   # (helper or None, pid)
    remote: dict = {}         # helper -> pids there
    for m in mns:
        agent = tb.agents[(m, "mn")]
        ns = tb.node_ns(m)
        if isinstance(ns, int):
            mem += mem_kb(ns)
            if agent.pid is not None and (None, agent.pid) not in agent_pids:
                agent_pids.add((None, agent.pid))
                procs = [agent.pid, *children(agent.pid)]
                mem += sum(mem_kb(pid) for pid in procs)
                cpu += sum(cpu_s(pid) or 0.0 for pid in procs)
        else:
            remote.setdefault(ns.helper, set()).add(ns.pid)
            if agent.pid is not None:
                agent_pids.add((ns.helper, agent.pid))
                remote[ns.helper].add(agent.pid)
    for helper in ([] if tb.cluster is None else tb.cluster[1].helpers.values()):
        stats = helper.request("proc_stats", pids=sorted(remote.get(helper, ())), hubs=True)
        mem += stats["mem_kb"]
        cpu += stats["cpu_s"]
        hub_mem += stats["hubs_mem_kb"]
    return mem, cpu, agent_pids, hub_mem


def run_point(n: int, params: dict, topo: dict, out_dir: Path) -> dict:
    """One network with n MNs, bootstrapped at once; the point's metrics."""
    from mip6bench.testbed.network import Testbed

    from mip6bench.testbed.agents import PROFILE_ENV

    os.environ[PROFILE_ENV] = params.get("profile", "")  # read as each agent starts
    tb = Testbed({**topo, "mns": n}, experiment=NAME, out_dir=out_dir, capture=False)
    _bootstrap.prepare(tb, params)
    point: dict = {"mns": n}
    t0 = time.monotonic()
    with tb:
        point["network_s"] = _r(tb.timings["network_s"])
        point["cpu_share"] = tb.cpu_share   # the infrastructure's CPU share (cpu_share)
        point["start_s"] = _r(tb.timings["start_s"])
        servers = {name: tb.agents.get(key) for name, key in
                   (("paa", ("paa", "paa")), ("aaa", ("aaa", "aaa")), ("ha", ("ha", "ha")),
                    ("fw", ("fw", "fw")))}
        hubs = list(getattr(tb.run.link_hubs, "pids", []) or [])
        pids = {name: (a.pid if a else None) for name, a in servers.items()}
        pids.update({f"hub{i}": pid for i, pid in enumerate(hubs)})
        cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
        sched0 = {name: sched_s(pid) for name, pid in pids.items()}
        # The firewall's event loop (its main thread) apart from its other threads
        # (pinhole commits through libnftables run in a worker thread).
        fw_loop0 = cpu_s(pids["fw"], pids["fw"])
        t_cpu0 = time.monotonic()
        try:
            boot = _bootstrap.run(tb, params, plain=False)["bootstrap"]
            point["error"] = None
        except (Mip6benchError, ControlError) as exc:  # e.g. an agent died under the load
            boot = None
            dead = [f"{n}/{a}" for (n, a), p in tb.agents.items() if not p.alive()]
            point["error"] = str(exc) + (f" (agents no longer running: {', '.join(dead)})"
                                         if dead else "")
        window_cpu = time.monotonic() - t_cpu0
        cpu1 = {name: cpu_s(pid) for name, pid in pids.items()}
        sched1 = {name: sched_s(pid) for name, pid in pids.items()}
        # Time each server spent runnable but not running (waiting for a CPU), against
        # its time running: how much the shared machine held it back.
        point["runq_wait_s"] = {name: _r(sched1[name][1] - sched0[name][1], 2)
                                for name in pids if sched0[name] and sched1[name]}
        point["run_s"] = {name: _r(sched1[name][0] - sched0[name][0], 2)
                          for name in pids if sched0[name] and sched1[name]}
        fw_loop1 = cpu_s(pids["fw"], pids["fw"])
        point["fw_loop_cpu_s"] = _r(fw_loop1 - fw_loop0, 2) if None not in (fw_loop0, fw_loop1) else None
        point["fw_counters"] = _fw_counters(servers["fw"])
        mns = [node.name for node in tb.plan.by_role("mn")]
        # The processes the MNs cost: their agents (an MN host's pid once, however many
        # MNs it hosts) with their children (user-space tunnel forwarders), and the
        # nodes' shells; MNs on another machine, and the link hubs of every other
        # server, as their server's helper reads them there.
        mn_mem, mn_cpu, mn_pids, hub_mem = mn_costs(tb, mns)
        hub_mem += sum(mem_kb(pid) for pid in hubs)
        profiled = [a.pid for (_n, name), a in tb.agents.items()
                    if name in set(params.get("profile", "").split(",")) and a.pid]
    os.environ.pop(PROFILE_ENV, None)
    for pid in profiled:  # written on the stop signal; wait for the exit all the same
        _wait_exit(pid, 60.0)
    point["profiles"] = {path.name[:-len(".prof")]: top_functions(path)
                         for path in sorted((out_dir / "logs").glob("*.prof"))}
    point["stop_s"] = _r(tb.timings.get("stop_s"))
    point["wall_s"] = _r(time.monotonic() - t0)
    point["mem_mb_per_mn"] = _r((mn_mem + hub_mem) / 1024 / n, 2)
    point["mn_agent_and_shell_mb"] = _r(mn_mem / 1024 / n, 2)
    point["hubs_mb"] = _r(hub_mem / 1024, 1)
    point["mn_processes"] = len(mn_pids)
    point["mn_hosts"] = len(tb.mn_hosts)
    # CPU of the MN agents (their hosts) from their start to the end of the run, per MN.
    point["mn_cpu_ms_per_mn"] = _r(1000 * mn_cpu / n, 1)
    cpu = {name: _r(cpu1[name] - cpu0[name], 2) if None not in (cpu0[name], cpu1[name]) else None
           for name in pids}
    point["cpu_s"] = cpu
    if boot is None:
        point.update(registered=None, lost=None, window_s=_r(window_cpu))
        return point
    per_mn = boot["per_mn"]
    totals = [m["total_ms"] for m in per_mn if m["total_ms"] is not None]
    panas = [m["pana_ms"] for m in per_mn if m["pana_ms"] is not None]
    window_s = max(totals) / 1000 if totals else window_cpu
    point.update({
        "registered": len(totals), "lost": n - len(totals),
        "total_ms": _dist(totals), "pana_ms": _dist(panas),
        "floor_ms": boot["floors"]["total_ms"], "ha_dad_ms": boot["ha_dad_ms"],
        "window_s": _r(window_s),
        "bootstraps_per_s": _r(len(totals) / window_s, 1) if window_s else None,
        "pana_messages": sum(m["pana_messages"] or 0 for m in per_mn),
        "pana_msgs_per_s": _r(sum(m["pana_messages"] or 0 for m in per_mn) / window_s, 1)
        if window_s else None,
        "pci_retransmissions": sum(m["pci_retransmissions"] for m in per_mn),
        "notes": boot["notes"],
    })
    floor = boot["floors"]["total_ms"]
    point["p50_ratio"] = _r(point["total_ms"]["p50"] / floor) if totals and floor else None
    # CPU as a share of one core over the window it was measured in (trigger -> end).
    point["cpu_pct"] = {k: _r(100 * v / window_cpu, 1) if v is not None and window_cpu else None
                        for k, v in cpu.items()}
    point["cpu_window_s"] = _r(window_cpu)
    if "nsis_create_verified" in boot:
        point["pinholes"] = boot["nsis_create_verified"]
        point["nsis"] = boot.get("nsis")
    point["stalled"] = n - point["pinholes"] if "pinholes" in point else 0
    if point["lost"] or point["stalled"]:
        point["error"] = point["error"] or (f"{point['lost']} MNs did not register" if point["lost"]
                                            else f"{n - point['pinholes']} MNs' CREATEs not verified")
    return point


def run_grid(params, topo, run_dir: Path, capture: bool, quiet: bool) -> dict:
    from mip6bench.measure.progress import Steps
    from mip6bench.testbed.network import available_memory_mb

    grid = parse_grid(params["grid"])
    steps = Steps(len(grid)) if not quiet else None
    points, largest = [], 0
    for n in grid:
        if steps:
            steps.begin(f"N={n}: network, {n} MNs bootstrapping and registering at once")
        avail = available_memory_mb()
        point = run_point(n, params, topo, run_dir / f"n{n}")
        point["mem_available_mb_before"] = avail
        points.append(point)
        if point["error"]:
            if steps:
                steps.end(f"failed: {point['error']}")
            if point.get("lost") is None:
                break  # the bootstrap itself failed (MNs did not bootstrap in time): stop
            continue  # sessions lost or stalled: counted; the grid goes on
        largest = n
        if steps:
            steps.end(f"network {point['network_s']:.1f} s, up {point['start_s']:.1f} s, "
                      f"p50 {point['total_ms']['p50']:.0f} ms, lost {point['lost']}")
    shares = {p["mns"]: {k: v for k, v in p["cpu_share"].items() if k != "processes"}
              for p in points if p.get("cpu_share")}
    return {"scale": {"grid": grid, "points": points, "largest_completed": largest,
                      "cores": os.cpu_count(), "mem_total_mb": _mem_total_mb()},
            "manifest": {"cpu_share": shares}}


def _mem_total_mb() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


def table(metrics: dict) -> str:
    s = metrics["scale"]
    head = ("| N | network s | up s | p50 ms | p90 ms | p99 ms | max ms | floor ms | boot/s | "
            "PANA msg/s | CPU s PAA | AAA | HA | fw | fw waited s | hubs | MB/MN | pinholes 1st / retry / not | lost |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in s["points"]:
        t = p.get("total_ms") or {}
        c = p.get("cpu_s") or {}
        hubs = sum(v for k, v in c.items() if k.startswith("hub") and v is not None)

        def f(v, fmt="{:.0f}"):
            return "-" if v is None else fmt.format(v)
        rows.append(f"| {p['mns']} | {f(p.get('network_s'), '{:.1f}')} | {f(p.get('start_s'), '{:.1f}')} | "
                    f"{f(t.get('p50'))} | {f(t.get('p90'))} | {f(t.get('p99'))} | {f(t.get('max'))} | "
                    f"{f(p.get('floor_ms'))} | {f(p.get('bootstraps_per_s'), '{:.1f}')} | "
                    f"{f(p.get('pana_msgs_per_s'))} | {f(c.get('paa'), '{:.2f}')} | "
                    f"{f(c.get('aaa'), '{:.2f}')} | {f(c.get('ha'), '{:.2f}')} | {f(c.get('fw'), '{:.2f}')} | "
                    f"{f((p.get('runq_wait_s') or {}).get('fw'), '{:.2f}')} | "
                    f"{hubs:.2f} | {f(p.get('mem_mb_per_mn'), '{:.1f}')} | {_pinholes(p)} | "
                    f"{f(p.get('lost'))}{' (' + p['error'] + ')' if p.get('error') else ''} |")
    return "\n".join(rows)


def _pinholes(point: dict) -> str:
    """Verified in the first round / after retries / not verified (nsis=on), else -."""
    n = point.get("nsis")
    if not n:
        return "-"
    return f"{n['verified_first_round']} / {n['verified_after_retry']} / {n['not_verified']}"


def summarize(metrics: dict) -> str:
    s = metrics["scale"]
    return (f"scale: N MNs bootstrapping and registering at once, grid {s['grid']} on "
            f"{s['cores']} cores / {s['mem_total_mb'] / 1024:.0f} GB\n" + table(metrics) +
            f"\nlargest N completed: {s['largest_completed']}")


def report(metrics: dict, run_dir: Path) -> None:
    from mip6bench.measure.report import _write

    s = metrics["scale"]
    done = [p for p in s["points"] if p.get("total_ms")]
    lines = [f"# mip6bench scale: {run_dir.name}", "", summarize(metrics).split("\n", 1)[0], "",
             table(metrics), "", f"Largest N completed: **{s['largest_completed']}**.", ""]
    if done:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ns = [p["mns"] for p in done]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for key in ("p50", "p90", "p99", "max"):
            ax1.plot(ns, [p["total_ms"][key] for p in done], marker="o", label=key)
        ax1.plot(ns, [p["floor_ms"] for p in done], linestyle="--", color="grey", label="floor (1 MN)")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel("MNs arriving at once")
        ax1.set_ylabel("bootstrap + registration (ms)")
        ax1.legend()
        ax1.grid(True, which="both", alpha=.3)
        for name in ("paa", "aaa", "ha", "fw"):
            ax2.plot(ns, [p["cpu_s"].get(name) or 0 for p in done], marker="o", label=name)
        ax2.plot(ns, [sum(v or 0 for k, v in p["cpu_s"].items() if k.startswith("hub")) for p in done],
                 marker="o", label="link hubs")
        ax2.set_xscale("log")
        ax2.set_xlabel("MNs arriving at once")
        ax2.set_ylabel("CPU seconds during the bootstrap")
        ax2.legend()
        ax2.grid(True, which="both", alpha=.3)
        fig.tight_layout()
        fig.savefig(run_dir / "scale.png", dpi=100)
        plt.close(fig)
        lines += ['<img alt="latency percentiles and CPU against N" src="scale.png">', ""]
    for p in s["points"]:
        for agent, rows in (p.get("profiles") or {}).items():
            lines += [f"Profile of {agent} at N={p['mns']} (own time, cProfile):", "",
                      "| function | calls | own s | own % | cumulative s |", "|---|---|---|---|---|"]
            lines += [f"| `{r['function']}` | {r['calls']} | {r['own_s']} | {r['own_pct']} | {r['cum_s']} |"
                      for r in rows]
            lines.append("")
    _write(run_dir / "report.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
