#!/usr/bin/env python3
"""Load benchmark of the NATFW firewall (NF) end to end over real sockets: the real
agents/fw.py (GIST intercepting on its outside interface, NfCore with token
authorization, nftables pinholes) between a load generator and the real agents/cn.py
(the NR), each in its own network namespace, veth links without emulated delay:

    gen (MNs) ── out ─ fw ─ in ── cn (2001:db8:2::10)

The generator (`--role gen`, its own process in `gen`) is N mobile nodes, each with its
home address (2001:db8:1::/64) and care-of address (2001:db8:5::/64) on its link and a
token minted with the firewall's key, opening the four "rr" sessions of
natfw.mobile.phase_flows toward the CN: 4N NATFW CREATEs through GIST (Query, Response,
Confirm with the CREATE, the NF's own handshake toward the CN, RESPONSE back), the MNs'
first CREATEs spread evenly over `--window` seconds (default 1: N MNs arriving within a
second). One NiCore and one GistService carry all of them (retransmissions as the MN's
defaults: 0.5 s, doubling, 4 times).

Reported: sessions answered OK, refused, and lost (no answer when the generator gives up,
`--within` s after the last arrival); CREATE/s (sessions over the time from the first
CREATE to the last answer); latency p50/p99/max (CREATE sent to RESPONSE received); the
CPU seconds of the fw agent, the CN agent and the generator (/proc/<pid>/stat, from just
before the first CREATE to the last answer) and the fw's CPU ms per CREATE; its
retransmissions, and what the fw did with the repeats (from its status: Queries answered
again from the kept Response, CREATEs forwarded, CREATEs taken without a decode,
retransmissions absorbed or answered, NR answers no longer matched). With --cpus F,G the fw agent is pinned to CPU F and the generator and CN
to G (taskset). With --profile PATH the fw agent runs under cProfile and its top
functions are printed (slower: its rate is not the unprofiled one).

Usage (root): python bench/nf_load_bench.py [--mns 250] [--window 1] [--within 20]
                                            [--cpus 0,1] [--profile /tmp/fw.prof] [--runs 1]
Prints one line per run, then a JSON summary line.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mip6bench.aaa.credentials import write_psk_file  # noqa: E402
from mip6bench.aaa.token import Flow, TokenIssuer  # noqa: E402

CN = "2001:db8:2::10"
HOME = ipaddress.IPv6Network("2001:db8:1::/64")
FOREIGN = ipaddress.IPv6Network("2001:db8:5::/64")
FW_OUT, GEN_LINK = "2001:db8:ff::1", "2001:db8:ff::2"
FW_IN = "2001:db8:2::1"
TOKEN_FLOWS = (Flow(135, "2001:db8:2::/64"),)    # what the PAA lets every MN open
LIFETIME = 600
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (/proc/<pid>/task/*/stat; the main thread is the
    event loop, the pinhole table's commit thread runs libnftables and the kernel's
    netlink work)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            name = "main" if int(tid) == pid else head.split("(", 1)[1]
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return out


def socket_drops(ns: str) -> dict[str, int]:
    """Datagrams the namespace's sockets dropped for want of buffer: UDP
    (Udp6RcvbufErrors) and raw (the drops column of /proc/net/raw6: Router Alert
    interception)."""
    snmp = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp6", "/proc/net/raw6"],
                          capture_output=True, text=True).stdout
    out = {"udp": 0, "raw": 0}
    for line in snmp.splitlines():
        fields = line.split()
        if fields[:1] == ["Udp6RcvbufErrors"]:
            out["udp"] = int(fields[1])
        elif len(fields) > 5 and fields[0].rstrip(":").isdigit():
            out["raw"] += int(fields[-1])
    return out


def runq_wait(pid: int) -> float:
    """Seconds the process's threads waited for a CPU (/proc/<pid>/task/*/schedstat):
    on a shared machine, the time other jobs took from it."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def mn_addresses(k: int) -> tuple[str, str]:
    return str(HOME[0x1000 + k]), str(FOREIGN[0x1000 + k])


# ------------------------------------------------------------------ generator (in gen)
async def generate(spec: dict) -> dict:
    from mip6bench.attack.natfw_attacker import MiniAgent
    from mip6bench.gist.core import GistConfig
    from mip6bench.natfw.core import Mri, NiCore, SessionFailed, SessionReady
    from mip6bench.natfw.mobile import phase_flows
    from mip6bench.runtime.gist import GistService
    from mip6bench.runtime.natfw import NatfwService

    n, window = spec["mns"], spec["window"]
    issuer = TokenIssuer(bytes.fromhex(spec["key"]), 1, 3600.0, TOKEN_FLOWS)
    mns = []
    for k in range(n):
        hoa, coa = mn_addresses(k)
        mns.append((issuer.mint(f"mn{k}@bench.example", hoa, time.time()),
                    [(secrets.token_bytes(16), fs) for _role, fs in phase_flows(CN, hoa, coa, "rr")]))
    total = 4 * n
    sent_at: dict[bytes, float] = {}
    latency: dict[bytes, float] = {}
    failed: dict[bytes, str] = {}
    done = asyncio.Event()
    last = [0.0]

    def on_effect(effect) -> None:
        sid = getattr(effect, "session_id", None)
        if sid not in sent_at or sid in latency or sid in failed:
            return
        if isinstance(effect, SessionReady):
            latency[sid] = time.monotonic() - sent_at[sid]
        elif isinstance(effect, SessionFailed):
            failed[sid] = (f"{effect.info.severity:#x}/{effect.info.code:#x}" if effect.info
                           else effect.reason)
        else:
            return
        last[0] = time.monotonic()
        if len(latency) + len(failed) >= total:
            done.set()

    agent = MiniAgent()
    addresses = [a for k in range(n) for a in mn_addresses(k)]
    gist = GistService(agent, GistConfig(peer_identity=b"gen", addresses=tuple(addresses)))
    ni = NiCore()
    service = NatfwService(agent, gist, ni, apply=on_effect)
    await gist.start()
    loop = asyncio.get_running_loop()
    cpu0 = os.times()
    t0 = time.monotonic()
    print(json.dumps({"started": True}), flush=True)

    def arrive(k: int) -> None:
        token, sessions = mns[k]
        now = service.now()
        for sid, fs in sessions:
            sent_at[sid] = time.monotonic()
            service.execute(ni.create(sid, Mri(fs.source, fs.destination, fs.protocol), LIFETIME,
                                      now, mip6=fs.mip6, token=token))

    for k in range(n):
        loop.call_at(loop.time() + window * k / n, arrive, k)
    try:
        await asyncio.wait_for(done.wait(), window + spec["within"])
    except asyncio.TimeoutError:
        pass
    cpu1 = os.times()
    lat = sorted(latency.values())
    reasons: dict[str, int] = {}
    for why in failed.values():
        reasons[why] = reasons.get(why, 0) + 1
    out = {"sessions": total, "ok": len(latency), "failed": reasons,
           "lost": total - len(latency) - len(failed),
           "wall_s": round((last[0] or time.monotonic()) - t0, 3),
           "p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
           "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None,
           "max_ms": round(1000 * lat[-1], 1) if lat else None,
           "retransmits": ni.counters.get("retransmits", 0),
           "gen_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 3)}
    await service.aclose()
    return out


# ------------------------------------------------------------------ harness (root)
def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def nsx(ns: str, *args: str) -> None:
    sh("ip", "netns", "exec", ns, *args)


def namespaces(prefix: str, roles: tuple[str, ...],
               links: list[tuple[str, str, str, str]]) -> dict[str, str]:
    """A namespace per role (named prefix-role), veth pairs (role, interface, peer role,
    peer interface), every interface and lo up, DAD off (the benchmarks' addresses are
    configured nodad and must be usable at once)."""
    ns = {role: f"{prefix}-{role}" for role in roles}
    for name in ns.values():
        sh("ip", "netns", "add", name)
    intfs: dict[str, list[str]] = {role: [] for role in roles}
    for role, intf, peer_role, peer in links:
        sh("ip", "link", "add", intf, "netns", ns[role], "type", "veth", "peer", peer,
           "netns", ns[peer_role])
        intfs[role].append(intf)
        intfs[peer_role].append(peer)
    for role in roles:
        nsx(ns[role], "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0")
        nsx(ns[role], "ip", "link", "set", "lo", "up")
        for intf in intfs[role]:
            nsx(ns[role], "sysctl", "-qw", f"net.ipv6.conf.{intf}.accept_dad=0")
            nsx(ns[role], "ip", "link", "set", intf, "up")
    return ns


def build(tag: str, n: int) -> dict[str, str]:
    ns = namespaces(f"nfb{tag}", ("gen", "fw", "cn"),
                    [("fw", "fw-out", "gen", "gen-eth0"), ("fw", "fw-in", "cn", "cn-eth0")])
    nsx(ns["fw"], "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    nsx(ns["fw"], "ip", "-6", "addr", "add", f"{FW_OUT}/64", "dev", "fw-out", "nodad")
    nsx(ns["fw"], "ip", "-6", "addr", "add", f"{FW_IN}/64", "dev", "fw-in", "nodad")
    for prefix in (HOME, FOREIGN):
        nsx(ns["fw"], "ip", "-6", "route", "add", str(prefix), "via", GEN_LINK, "dev", "fw-out")
    nsx(ns["cn"], "ip", "-6", "addr", "add", f"{CN}/64", "dev", "cn-eth0", "nodad")
    nsx(ns["cn"], "ip", "-6", "route", "add", "default", "via", FW_IN, "dev", "cn-eth0")
    batch = [f"addr add {GEN_LINK}/64 dev gen-eth0 nodad",
             f"route add default via {FW_OUT} dev gen-eth0"]
    for k in range(n):
        for a in mn_addresses(k):
            batch.append(f"addr add {a}/128 dev gen-eth0 nodad")
    subprocess.run(["ip", "netns", "exec", ns["gen"], "ip", "-6", "-batch", "-"],
                   input="\n".join(batch) + "\n", text=True, check=True)
    from mip6bench.net.firewall import Firewall
    Firewall(ns["fw"], "fw-in", "fw-out").install()
    return ns


def teardown(ns: dict[str, str]) -> None:
    for name in ns.values():
        subprocess.run(["ip", "netns", "del", name], check=False)


def start_agent(ns: str, role: str, work: Path, options: dict, cpu: str | None,
                profile: str | None = None) -> subprocess.Popen:
    cfg = work / f"{role}.json"
    cfg.write_text(json.dumps({"node": role, "agent": role, "control": str(work / f"{role}.sock"),
                               "events": str(work / f"{role}.events"), "options": options}))
    argv = [sys.executable, str(REPO / "agents" / f"{role}.py"), "--config", str(cfg)]
    if profile:          # written when the agent is told to stop (its teardown left out)
        argv += ["--profile", profile]
    if cpu is not None:
        argv = ["taskset", "-c", cpu] + argv
    p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    line = p.stdout.readline()
    if not line.startswith(b'{"ready"'):
        p.kill()
        raise SystemExit(f"{role} agent did not start: {p.stderr.read().decode().strip()[-500:]}")
    p.agent_pid = json.loads(line)["pid"]
    return p


def one_run(args, tag: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="nf-bench-"))
    ns = build(tag, args.mns)
    procs: list[subprocess.Popen] = []
    fw_cpu, gen_cpu = (args.cpus.split(",") + [None, None])[:2] if args.cpus else (None, None)
    try:
        key = secrets.token_bytes(32)
        write_psk_file(work / "token.key", key)
        fw = start_agent(ns["fw"], "fw", work, {
            "inside": "fw-in", "outside": "fw-out", "nsis": True, "addresses": [FW_OUT, FW_IN],
            "token_key_file": str(work / "token.key"), "token_key_id": 1}, fw_cpu, args.profile)
        procs.append(fw)
        cn = start_agent(ns["cn"], "cn", work, {"addresses": [CN], "nsis": True}, gen_cpu)
        procs.append(cn)
        spec = {"mns": args.mns, "window": args.window, "within": args.within, "key": key.hex()}
        argv = [sys.executable, __file__, "--role", "gen", "--spec", json.dumps(spec)]
        if gen_cpu is not None:
            argv = ["taskset", "-c", gen_cpu] + argv
        gen = subprocess.Popen(["ip", "netns", "exec", ns["gen"]] + argv, stdout=subprocess.PIPE,
                               text=True)
        assert json.loads(gen.stdout.readline()).get("started"), "generator did not start"
        c0 = proc_cpu(fw.agent_pid), proc_cpu(cn.agent_pid), runq_wait(fw.agent_pid)
        t0 = thread_cpu(fw.agent_pid)
        result = json.loads(gen.stdout.readline())
        c1 = proc_cpu(fw.agent_pid), proc_cpu(cn.agent_pid), runq_wait(fw.agent_pid)
        t1 = thread_cpu(fw.agent_pid)
        result["fw_loop_cpu_s"] = round(t1.get("main", 0) - t0.get("main", 0), 3)
        result["fw_repeats"] = fw_repeat_counters(work / "fw.sock")
        result["fw_socket_drops"] = socket_drops(ns["fw"])
        gen.wait(timeout=30)
        fw_s, cn_s = c1[0] - c0[0], c1[1] - c0[1]
        ok = result["ok"]
        result.update(mns=args.mns, window_s=args.window,
                      create_per_s=round(ok / result["wall_s"], 1) if result["wall_s"] else None,
                      fw_cpu_s=round(fw_s, 3), cn_cpu_s=round(cn_s, 3),
                      fw_runq_wait_s=round(c1[2] - c0[2], 3),
                      fw_cpu_ms_per_create=round(1000 * fw_s / max(1, ok), 3),
                      fw_create_per_cpu_s=round(ok / fw_s, 1) if fw_s else None)
        return result
    finally:
        clean_up(procs, ns, work, args.keep)



def fw_repeat_counters(sock: Path) -> dict[str, int]:
    """The firewall's counts of repeated signalling and of what it did with them (its
    status command: GIST and NATFW core counters)."""
    from mip6bench.runtime import control

    status = control.request(str(sock), "status", timeout=30)
    gist, natfw = status["gist"]["counters"], status["natfw"]["counters"]
    return {"queries_answered_again": gist.get("query_repeats_answered", 0),
            "creates_forwarded": natfw.get("creates_forwarded", 0),
            "creates_decoded_fast": natfw.get("create_repeats_decoded_fast", 0),
            "retransmissions_absorbed": natfw.get("retransmissions_absorbed", 0),
            "retransmissions_answered": natfw.get("retransmissions_answered", 0),
            "unmatched_responses": natfw.get("unmatched_response", 0)}


def clean_up(procs: list, ns, work: str, keep: bool) -> None:
    """End the processes this bench started (last first, by pid), remove its namespaces and,
    unless kept, its work directory."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    teardown(ns)
    if keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)

def print_profile(path: str, top: int = 25) -> None:
    import pstats
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", default="harness", choices=("harness", "gen"))
    ap.add_argument("--spec")
    ap.add_argument("--mns", type=int, default=250)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--within", type=float, default=20.0)
    ap.add_argument("--cpus", default=None, help="F,G: pin the fw agent to CPU F, CN and generator to G")
    ap.add_argument("--profile", default=None, help="run the fw agent under cProfile into this file")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the agents' event logs")
    args = ap.parse_args()
    if args.role == "gen":
        print(json.dumps(asyncio.run(generate(json.loads(args.spec)))), flush=True)
        return 0
    if os.geteuid() != 0:
        print("nf_load_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    runs = []
    for r in range(args.runs):
        res = one_run(args, f"{os.getpid() % 10000}{r}")
        runs.append(res)
        print(f"mns {res['mns']} ({res['sessions']} CREATEs in {res['window_s']} s): ok {res['ok']} "
              f"failed {res['failed']} lost {res['lost']}; {res['create_per_s']} CREATE/s; "
              f"latency p50 {res['p50_ms']} p99 {res['p99_ms']} max {res['max_ms']} ms; "
              f"fw CPU {res['fw_cpu_s']} s = {res['fw_cpu_ms_per_create']} ms/CREATE "
              f"({res['fw_create_per_cpu_s']}/CPU-s), waited for a CPU {res['fw_runq_wait_s']} s, event loop thread {res['fw_loop_cpu_s']} s; cn {res['cn_cpu_s']} s, gen "
              f"{res['gen_cpu_s']} s; retransmits {res['retransmits']}; fw socket drops "
              f"{res['fw_socket_drops']}; fw {res['fw_repeats']}", flush=True)
    if args.profile:
        print_profile(args.profile)
    summary = {"runs": runs}
    if len(runs) > 1:
        summary["median"] = {k: statistics.median(r[k] for r in runs)
                             for k in ("create_per_s", "fw_cpu_ms_per_create", "p50_ms", "lost")
                             if all(r.get(k) is not None for r in runs)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
