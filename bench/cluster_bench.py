#!/usr/bin/env python3
"""Cluster mode on loopback (issue 12, item 6): how start-up, registration and the cost
of ssh grow with the number of MNs and of "servers", all of them this machine.

Starts its own sshd on loopback (mip6bench.testbed.loopback_sshd: 127.0.0.1 .. 127.0.0.S,
keys in a temporary directory), then for each server count S and each N builds the
network (mipv6=bootstrap, foreign=2, nsis=off, no capture), waits until every MN is
registered with the HA (PANA bootstrap first), and tears it down. S=0 is the baseline
without cluster mode (no ssh at all); S=1 puts every node on 127.0.0.1 through ssh.
Reports per run:
  network_s   Mininet build and start (node shells, links, LAN segments, trunks)
  start_s     up to every MN having an address (agents included)
  register_s  from then until the last MN's home registration
  stop_s      teardown
  ssh_pss_mb  Pss of the ssh clients and sshd sessions while up (what cluster mode adds)
  ssh_cpu_s   CPU time of the sshd sessions while up (server side of the shells/tunnels)
  tunnels     ssh Ethernet tunnels (trunks)
  helper_pss_mb, helper_cpu_s  Pss and CPU time of the servers' helpers (testbed.serverd)
              while up (their agents and link hubs not included)
Needs root and openssh-server. Prints a table and a JSON line per run.

    sudo .venv/bin/python bench/cluster_bench.py --servers 0,1,2,3 --mns 2,20,50 [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.testbed.loopback_sshd import LoopbackSshd, sshd_available  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, int, int]:
    text = Path(f"/proc/{pid}/stat").read_text()
    comm = text[text.index("(") + 1:text.rindex(")")]
    rest = text.rsplit(")", 1)[1].split()
    return comm, int(rest[1]), int(rest[11]), int(rest[12])  # comm, ppid, utime, stime


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ssh_usage(sshd_pid: int) -> tuple[float, float]:
    """(Pss MB, sshd-session CPU s) of ssh clients under this process and sshd sessions,
    and (Pss MB, CPU s) of the servers' helpers (testbed.serverd, under the sshd)."""
    me, table = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                table[int(entry)] = _stat(int(entry))
            except (OSError, ValueError):
                pass

    def under(pid, root):
        while pid > 1 and pid in table:
            pid = table[pid][1]
            if pid == root:
                return True
        return False

    pss = cpu = helper_pss = helper_cpu = 0
    for pid, (comm, _ppid, ut, st) in table.items():
        if comm == "ssh" and under(pid, me):
            pss += _pss_kb(pid)
        elif comm.startswith("sshd") and under(pid, sshd_pid):
            pss += _pss_kb(pid)
            cpu += ut + st
        elif under(pid, sshd_pid) and _is_helper(pid):
            helper_pss += _pss_kb(pid)
            helper_cpu += ut + st
    return pss / 1024, cpu / TICK, helper_pss / 1024, helper_cpu / TICK


def _is_helper(pid: int) -> bool:
    try:
        return b"mip6bench.testbed.serverd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def one_run(servers: int, mns: int, sshd: LoopbackSshd, out: Path) -> dict:
    cluster = ",".join(f"127.0.0.{i + 1}" for i in range(servers)) if servers else None
    tb = Testbed({"mipv6": "bootstrap", "mns": mns, "foreign": 2, "nsis": "off"},
                 experiment="bench-cluster", out_dir=out, capture=False, cluster=cluster,
                 ssh_config=str(sshd.ssh_config) if cluster else None)
    row = {"servers": servers, "mns": mns}
    try:
        tb.start()
        t0 = time.monotonic()
        for k in range(1, mns + 1):
            tb.wait_registered(f"mn{k}", timeout=120)
        row["register_s"] = round(time.monotonic() - t0, 2)
        row["network_s"] = round(tb.timings["network_s"], 2)
        row["start_s"] = round(tb.timings["start_s"], 2)
        pss, cpu, helper_pss, helper_cpu = ssh_usage(sshd.proc.pid)
        row["ssh_pss_mb"], row["ssh_cpu_s"] = round(pss, 1), round(cpu, 2)
        row["helper_pss_mb"], row["helper_cpu_s"] = round(helper_pss, 1), round(helper_cpu, 2)
        row["helper_requests"] = sum(h.requests for h in tb.cluster[1].helpers.values()) if cluster else 0
        row["tunnels"] = sum(1 for link in tb.net.links if getattr(link, "backend", None) == "tunnel")
    finally:
        tb.stop()
    row["stop_s"] = round(tb.timings["stop_s"], 2)
    row["teardown_errors"] = len(tb.teardown_errors)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="0,2", help="server counts (0: no cluster mode)")
    ap.add_argument("--mns", default="2,20", help="numbers of MNs")
    ap.add_argument("--reps", type=int, default=1, help="runs per point, interleaved (medians reported)")
    args = ap.parse_args()
    why = sshd_available()
    if why:
        print(f"cluster_bench: {why}", file=sys.stderr)
        return 0
    counts = [int(s) for s in args.servers.split(",")]
    sizes = [int(n) for n in args.mns.split(",")]
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        addresses = [f"127.0.0.{i + 1}" for i in range(max(max(counts), 1))]
        sshd = LoopbackSshd(Path(tmp) / "ssh", addresses).start()
        rows = []
        try:
            print(f"{'servers':>7} {'mns':>4} {'network_s':>9} {'start_s':>7} {'register_s':>10} "
                  f"{'stop_s':>6} {'ssh_pss_mb':>10} {'ssh_cpu_s':>9} {'tunnels':>7} {'helper_mb':>9} "
                  f"{'helper_cpu_s':>12}")
            # Repetitions interleaved (every point once, then again): load that changes
            # over the minutes spreads over all points alike.
            for rep in range(args.reps):
                for s in counts:
                    for n in sizes:
                        row = one_run(s, n, sshd, Path(tmp) / f"run-{s}-{n}-{rep}")
                        rows.append(row)
                        print(f"{s:>7} {n:>4} {row['network_s']:>9} {row['start_s']:>7} "
                              f"{row['register_s']:>10} {row['stop_s']:>6} {row['ssh_pss_mb']:>10} "
                              f"{row['ssh_cpu_s']:>9} {row['tunnels']:>7} {row['helper_pss_mb']:>9} "
                              f"{row['helper_cpu_s']:>12}", flush=True)
        finally:
            sshd.stop()
        for row in rows:
            print(json.dumps(row))
        if args.reps > 1:
            keys = ("network_s", "start_s", "register_s", "stop_s", "ssh_pss_mb", "ssh_cpu_s",
                    "helper_pss_mb", "helper_cpu_s")
            for s in counts:
                for n in sizes:
                    mine = [r for r in rows if r["servers"] == s and r["mns"] == n]
                    print(json.dumps({"servers": s, "mns": n, "runs": len(mine), "median": {
                        k: statistics.median(r[k] for r in mine) for k in keys}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
