#!/usr/bin/env python3
"""Load benchmark of the home agent end to end over real sockets: the real agents/ha.py
(BUs from its PacketTap, the HomeAgent core with RFC 4285 MN-HA authentication and
timestamp replay protection, and per accepted BU its real kernel changes on this
machine's tunnel backend: the tunnel to the care-of address, the reverse-tunnel
admission set, proxy ND for a new home address) in its own network namespace, and a
load generator in another, veth links without emulated delay:

    gen (MNs' care-of addresses) ── ha-up ─ ha ─ ha-home ── home (the home link)

Every MN's SA (SPI, key, home address, NAI) is installed through the HA's `sa-add`
control command before the run. The generator (`--role gen`, its own process) is N
mobile nodes: per round each sends one home registration (Binding Update with the
Alternate Care-of Address, MN-ID and timestamp options and the MN-HA authenticator,
from its care-of address with a Home Address option, as the MN agent sends it), the N
first transmissions spread evenly over `--window` s; round 0 registers N new bindings,
every further round moves all N to a new care-of address (the HA re-points each tunnel).
The BUs of a round are built (timestamps included) just before it starts, so the
generator offers far more than 5,000 BU/s. It reads the Binding Acks off its link (they carry a type 2 routing header its kernel
does not process), verifies their MN-HA authenticator as the MN does, and retransmits a BU without an Ack after 1.5 s, doubling, 3 times
(RFC 6275's InitialBindackTimeoutFirstReg), with a fresh timestamp.

Reported per round: BUs accepted, refused (by BA status) and lost (no Ack after the
retransmissions); BU/s (accepted over the time from the first BU to the last Ack); BA
latency p50/p99/max (first transmission to its Ack: queueing at the HA included); the CPU
seconds of the HA agent (whole process with the processes it started, such as the
user-space tunnel forwarder, and its event-loop thread, /proc/<pid>/stat,
between the generator's start and its last Ack) and its CPU per BU; the time its threads
waited for a CPU (what other jobs took from it); the packets its tap dropped. With
--cpus F,G the HA is pinned to CPU F and the generator to G; --profile PATH runs the HA
under cProfile and prints its top functions (slower than unprofiled).

Usage (root): python bench/ha_load_bench.py [--mns 2000] [--window 0.25] [--rounds 3]
                    [--tunnel auto] [--dad] [--cpus 0,1] [--profile /tmp/ha.prof] [--runs 1]
Prints one line per round, then a JSON summary line.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from nf_load_bench import (clean_up, namespaces, nsx, print_profile, proc_cpu, runq_wait,  # noqa: E402
                           start_agent, thread_cpu)

HA = "2001:db8:1::1"
HOME = ipaddress.IPv6Network("2001:db8:1::/64")
COA_NETS = (ipaddress.IPv6Network("2001:db8:5::/64"), ipaddress.IPv6Network("2001:db8:6::/64"))
HA_UP, GEN_LINK = "2001:db8:ff::1", "2001:db8:ff::2"
LIFETIME = 600
FIRST_TIMEOUT, RETRIES = 1.5, 3
NO_IFINDEX = bytes(4)     # in_pktinfo6's interface: any


def mn(k: int) -> tuple[int, str, str]:
    """(SPI, home address, NAI) of MN k."""
    return 0x1000 + k, str(HOME[0x1000 + k]), f"mn{k}@bench.example"


def coa(k: int, r: int) -> str:
    return str(COA_NETS[r % 2][0x1000 + k])


def mn_key(seed: bytes, k: int) -> bytes:
    return hmac.new(seed, k.to_bytes(4, "big"), hashlib.sha256).digest()[:20]


def percentile(ordered: list[float], q: float) -> float | None:
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2) if ordered else None


# ------------------------------------------------------------------ generator (in gen)
async def generate(spec: dict) -> None:
    from mip6bench.ipv6 import build_ipv6_packet, parse_ipv6_packet
    from mip6bench.mipv6 import MobilitySA
    from mip6bench.mipv6.constants import IPPROTO_MH
    from mip6bench.mipv6.crypto import encode_with_mn_ha, ntp_timestamp, verify_mn_ha
    from mip6bench.mipv6.wire import (AlternateCareOfAddress, BindingAck, BindingUpdate,
                                      MobileNodeIdentifier, ReplayProtection, decode_mh)
    from mip6bench.net.intercept import PacketTap
    from mip6bench.net.mh_socket import IPV6_PKTINFO, RawSender
    from mip6bench.runtime.mobility import NTP_UNIX_OFFSET

    n, window, rounds = spec["mns"], spec["window"], spec["rounds"]
    seed = bytes.fromhex(spec["seed"])
    sas = []
    by_hoa = {}
    for k in range(n):
        spi, hoa, nai = mn(k)
        sas.append(MobilitySA(spi, mn_key(seed, k), hoa=hoa, nai=nai))
        by_hoa[hoa] = k
    sender, tap = RawSender(), PacketTap("gen-eth0")
    sock = sender.sock
    loop = asyncio.get_running_loop()
    state: dict = {}

    def packet(k: int, r: int) -> bytes:
        sa = sas[k]
        care_of = coa(k, r)
        bu = BindingUpdate(r + 1, LIFETIME, ack=True, home_registration=True,
                           options=(AlternateCareOfAddress(care_of), MobileNodeIdentifier.from_nai(sa.nai),
                                    ReplayProtection(ntp_timestamp(time.time() + NTP_UNIX_OFFSET))))
        mh = encode_with_mn_ha(bu, sa, care_of, sa.hoa, sa.hoa, HA)
        return build_ipv6_packet(care_of, HA, IPPROTO_MH, mh, hao=sa.hoa)

    def send(k: int, tries: int) -> None:
        r = state["round"]
        if k in state["answered"]:
            return
        if tries > RETRIES:
            state["lost"] += 1
            check_done()
            return
        if tries:
            state["retransmits"] += 1
        else:
            state["sent_at"][k] = time.monotonic()
        try:
            data = state["built"].pop(k) if not tries else packet(k, r)
            # The care-of address as the source in IPV6_PKTINFO: without it the kernel
            # picks a source for the route lookup among the generator's thousands of
            # addresses on every send (ipv6_dev_get_saddr: ~0.3 ms of the generator's CPU
            # a BU, which capped what it offered at ~2,500 BU/s).
            sock.sendmsg([data], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, data[8:24] + NO_IFINDEX)], 0,
                         (HA, 0, 0, 0))
        except OSError:
            state["send_failed"] += 1
        state["timers"][k] = loop.call_later(FIRST_TIMEOUT * 2 ** tries, send, k, tries + 1)

    def check_done() -> None:
        if len(state["answered"]) + state["lost"] >= n:
            state["done"].set()

    def on_tap() -> None:
        while (item := tap.recv()) is not None:
            try:
                pkt = parse_ipv6_packet(item[0])
                ba = decode_mh(pkt.payload) if pkt.next_header == IPPROTO_MH else None
            except Exception:                      # noqa: BLE001 - not ours: counted
                state["malformed"] += 1
                continue
            k = by_hoa.get(pkt.rh2_address)
            if not isinstance(ba, BindingAck) or k is None or ba.seq != state["round"] + 1 \
                    or k in state["answered"]:
                continue
            if not verify_mn_ha(pkt.payload, sas[k], coa(k, state["round"]), sas[k].hoa):
                state["bad_auth"] += 1             # as an MN: not the HA's answer
                continue
            now = time.monotonic()
            state["answered"][k] = (now - state["sent_at"][k], ba.status)
            state["last"] = now
            timer = state["timers"].pop(k, None)
            if timer is not None:
                timer.cancel()
            check_done()

    loop.add_reader(tap.fileno(), on_tap)
    for r in range(rounds):
        # Built before the round (a few seconds: well inside the HA's 7 s timestamp
        # window), so the generator can offer more than the HA takes.
        state["built"] = {k: packet(k, r) for k in range(n)}
        print(json.dumps({"round_ready": r}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)     # the harness samples CPU
        state.update(round=r, answered={}, sent_at={}, timers={}, lost=0, retransmits=0,
                     send_failed=0, malformed=0, bad_auth=0, last=0.0, done=asyncio.Event())
        cpu0 = os.times()
        t0 = time.monotonic()
        for k in range(n):
            loop.call_at(loop.time() + window * k / n, send, k, 0)
        try:
            await asyncio.wait_for(state["done"].wait(), window + FIRST_TIMEOUT * (2 ** (RETRIES + 1)) + 5)
        except asyncio.TimeoutError:
            pass
        cpu1 = os.times()
        for timer in state["timers"].values():
            timer.cancel()
        accepted = sorted(lat for lat, status in state["answered"].values() if status < 128)
        refused: dict[str, int] = {}
        for _lat, status in state["answered"].values():
            if status >= 128:
                refused[str(status)] = refused.get(str(status), 0) + 1
        wall = (state["last"] or time.monotonic()) - t0
        print(json.dumps({
            "round": r, "kind": "register" if r == 0 else "move", "bus": n, "accepted": len(accepted),
            "refused": refused, "lost": n - len(state["answered"]), "retransmits": state["retransmits"],
            "send_failed": state["send_failed"], "ba_bad_auth": state["bad_auth"], "wall_s": round(wall, 3),
            "bu_per_s": round(len(accepted) / wall, 1) if wall > 0 else None,
            "p50_ms": percentile(accepted, 0.5), "p99_ms": percentile(accepted, 0.99),
            "max_ms": percentile(accepted, 1.0),
            "gen_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 3)}), flush=True)
    loop.remove_reader(tap.fileno())
    tap.close()
    sender.close()


# ------------------------------------------------------------------ harness (root)
def build(tag: str, n: int, rounds: int) -> dict[str, str]:
    ns = namespaces(f"hab{tag}", ("gen", "ha", "home"),
                    [("ha", "ha-up", "gen", "gen-eth0"), ("ha", "ha-home", "home", "home-eth0")])
    nsx(ns["ha"], "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    nsx(ns["ha"], "ip", "-6", "addr", "add", f"{HA_UP}/64", "dev", "ha-up", "nodad")
    nsx(ns["ha"], "ip", "-6", "addr", "add", f"{HA}/64", "dev", "ha-home", "nodad")
    for net in COA_NETS:
        nsx(ns["ha"], "ip", "-6", "route", "add", str(net), "via", GEN_LINK, "dev", "ha-up")
    nsx(ns["home"], "ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "home-eth0", "nodad")
    batch = [f"addr add {GEN_LINK}/64 dev gen-eth0 nodad",
             f"route add default via {HA_UP} dev gen-eth0"]
    for k in range(n):
        for r in range(min(rounds, 2)):
            batch.append(f"addr add {coa(k, r)}/128 dev gen-eth0 nodad")
    subprocess.run(["ip", "netns", "exec", ns["gen"], "ip", "-6", "-batch", "-"],
                   input="\n".join(batch) + "\n", text=True, check=True)
    # The Binding Acks carry a type 2 routing header the generator's kernel cannot
    # process (it would answer each with an ICMPv6 error to the HA): the generator
    # reads them off its link, its kernel drops them.
    from mip6bench.net.intercept import InterceptRules, type2_routing_header_drop
    InterceptRules(ns["gen"], "hab_gen").install([type2_routing_header_drop()])
    return ns


def descendants(pid: int) -> list[int]:
    """The process's children, theirs, and so on (/proc/<pid>/task/*/children): the
    HA's user-space tunnel forwarder is one (its work is the HA's)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for tid in os.listdir(f"/proc/{p}/task") if os.path.isdir(f"/proc/{p}/task") else ():
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def ha_cpu_all(pid: int) -> float:
    """CPU seconds of the HA agent and every process it started."""
    total = proc_cpu(pid)
    for child in descendants(pid):
        try:
            total += proc_cpu(child)
        except OSError:
            pass
    return total


def one_run(args, tag: str) -> list[dict]:
    from mip6bench.runtime.control import request

    work = Path(tempfile.mkdtemp(prefix="ha-bench-"))
    ns = build(tag, args.mns, args.rounds)
    procs: list[subprocess.Popen] = []
    ha_cpu, gen_cpu = (args.cpus.split(",") + [None, None])[:2] if args.cpus else (None, None)
    try:
        seed = os.urandom(32)
        ha = start_agent(ns["ha"], "ha", work, {
            "address": HA, "home_prefix": str(HOME), "home_interface": "ha-home", "uplink": "ha-up",
            "tunnel_backend": args.tunnel, "perform_dad": args.dad, "max_lifetime": 3600}, ha_cpu,
            args.profile)
        procs.append(ha)
        control = str(work / "ha.sock")
        for k in range(args.mns):
            spi, hoa, nai = mn(k)
            request(control, "sa-add", spi=spi, key=mn_key(seed, k).hex(), hoa=hoa, nai=nai)
        backend = request(control, "status")["backend"]
        spec = {"mns": args.mns, "window": args.window, "rounds": args.rounds, "seed": seed.hex()}
        spec_file = work / "gen.json"
        spec_file.touch(mode=0o600)
        spec_file.write_text(json.dumps(spec))
        argv = [sys.executable, __file__, "--role", "gen", "--spec", str(spec_file)]
        if gen_cpu is not None:
            argv = ["taskset", "-c", gen_cpu] + argv
        gen = subprocess.Popen(["ip", "netns", "exec", ns["gen"]] + argv, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        procs.append(gen)
        results = []
        for _ in range(args.rounds):
            line = gen.stdout.readline()
            if not line.startswith('{"round_ready"'):
                raise SystemExit(f"generator: {line.strip() or 'exited'}")
            io0 = request(control, "dump")["io_counters"]
            c0 = ha_cpu_all(ha.agent_pid), runq_wait(ha.agent_pid), thread_cpu(ha.agent_pid)
            gen.stdin.write("go\n")
            gen.stdin.flush()
            res = json.loads(gen.stdout.readline())
            c1 = ha_cpu_all(ha.agent_pid), runq_wait(ha.agent_pid), thread_cpu(ha.agent_pid)
            io1 = request(control, "dump")["io_counters"]
            cpu = c1[0] - c0[0]
            res.update(mns=args.mns, window_s=args.window, backend=backend, dad=args.dad,
                       ha_cpu_s=round(cpu, 3), ha_loop_cpu_s=round(c1[2].get("main", 0) - c0[2].get("main", 0), 3),
                       ha_runq_wait_s=round(c1[1] - c0[1], 3),
                       ha_cpu_ms_per_bu=round(1000 * cpu / max(1, res["accepted"]), 3),
                       ha_bu_per_cpu_s=round(res["accepted"] / cpu, 1) if cpu else None,
                       ha_tap_rx=io1.get("tap.rx", 0) - io0.get("tap.rx", 0))
            results.append(res)
        gen.wait(timeout=30)
        return results
    finally:
        clean_up(procs, ns, work, args.keep)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", default="harness", choices=("harness", "gen"))
    ap.add_argument("--spec")
    ap.add_argument("--mns", type=int, default=2000)
    ap.add_argument("--window", type=float, default=0.25)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tunnel", default="auto")
    ap.add_argument("--dad", action="store_true", help="the HA runs DAD for each new home address")
    ap.add_argument("--cpus", default=None, help="F,G: pin the HA agent to CPU F, the generator to G")
    ap.add_argument("--profile", default=None, help="run the HA agent under cProfile into this file")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the agent's event log")
    args = ap.parse_args()
    if args.role == "gen":
        asyncio.run(generate(json.loads(Path(args.spec).read_text())))
        return 0
    if os.geteuid() != 0:
        print("ha_load_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.mns < 1 or args.rounds < 1 or args.window < 0:
        print("ha_load_bench: --mns and --rounds must be positive, --window not negative", file=sys.stderr)
        return 2
    rounds = []
    for r in range(args.runs):
        for res in one_run(args, f"{os.getpid() % 10000}{r}"):
            rounds.append(res)
            print(f"round {res['round']} ({res['kind']}, {res['bus']} BUs in {res['window_s']} s, "
                  f"{res['backend']}): accepted {res['accepted']} refused {res['refused']} lost {res['lost']}; "
                  f"{res['bu_per_s']} BU/s; BA latency p50 {res['p50_ms']} p99 {res['p99_ms']} "
                  f"max {res['max_ms']} ms; HA CPU {res['ha_cpu_s']} s = {res['ha_cpu_ms_per_bu']} ms/BU "
                  f"({res['ha_bu_per_cpu_s']}/CPU-s), event loop {res['ha_loop_cpu_s']} s, waited for a CPU "
                  f"{res['ha_runq_wait_s']} s; tap rx {res['ha_tap_rx']}; retransmits {res['retransmits']}; "
                  f"gen {res['gen_cpu_s']} s", flush=True)
    if args.profile:
        print_profile(args.profile)
    summary: dict = {"rounds": rounds}
    moves = [r for r in rounds if r["kind"] == "move"]
    if moves:
        summary["median_move"] = {k: statistics.median(r[k] for r in moves)
                                  for k in ("bu_per_s", "ha_cpu_ms_per_bu", "ha_bu_per_cpu_s", "p50_ms", "lost")
                                  if all(r.get(k) is not None for r in moves)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
