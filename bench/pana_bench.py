#!/usr/bin/env python3
"""Benchmark of MIPv6 bootstrapping: PANA + EAP-PSK authentication throughput and the
bootstrap latency against its floor.

1. In-process cores (no I/O, one Python thread, labelled "inproc"): N complete
   authentications (PCI .. PAN[C] with the MIP6 extension, HA/HoA/SA/token granted, the
   SA pushed to the HA end and acknowledged), datagrams handed between the cores in
   memory. Reported: wall-clock authentications/s of the whole exchange (PaC, PAA, AAA
   and HA cores on one core), and authentications per CPU-second of the PAA side alone
   (PaaService incl. pass-through and SA channel, plus the AAA server: time spent inside
   their calls). Backends: "local" (in-process EapServer) and "radius" (RadiusClientCore
   <-> RadiusServerCore with every RADIUS datagram encoded, signed and verified).
2. Real sockets (root): the real agents/aaa.py and agents/paa.py processes in a fresh
   network namespace (RADIUS between them on its loopback), and a load generator
   (PacCores, a UDP socket each, in a second namespace joined to the first by a veth
   link, each PaC from one of 256 addresses in turn, C sessions in flight). Reported:
   authentications/s and the CPU seconds the PAA and AAA processes used per authentication
   (/proc/<pid>/stat), so the PAA's own rate is known even when the generator limits.
3. The bootstrap experiment in the testbed with 10 ms on every link (access, backhaul,
   home_uplink, home_lan): total against floor_ms, for aaa=embedded and aaa=radius
   (hostapd), push, unicast discovery; the difference of eap_ms is what RADIUS through
   hostapd costs against the embedded server.

Prints human-readable lines, then one JSON summary line.
Usage: python bench/pana_bench.py [--quick] [--no-netns] [--no-testbed] [--keep]
(--keep: keep the testbed runs' result directories)
       python bench/pana_bench.py --sockets N,C[,F,G[,H]][,local] [--sources K]
                                  [--profile PATH] [--events] [--callgrind PATH]
(part 2 alone: N PaCs, C in flight, agents pinned to CPU F and the generator to G (the
AAA to H if given),
the PaCs on a link of their own from K source addresses in turn (default 256),
"local": EAP server inside the PAA; reports completed/stalled sessions and the
generator's CPU too; --profile: the PAA under cProfile, the AAA then on CPU G;
--events: the PAA writes its event log as in the testbed, entries and bytes per auth;
--callgrind: the PAA under valgrind's callgrind, its instructions counted: two runs of
different N give the instructions per authentication.)
       python bench/pana_bench.py --per-message
(part 1's cores, one authentication hop by hop: the thread CPU each message costs the
core that receives it, medians of 300, both backends; see README, "PANA at zero link
delay")
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.aaa.credentials import Credential, format_credentials  # noqa: E402
from mip6bench.aaa.paa_service import PaaService, PaaServiceConfig, ServiceTransmit  # noqa: E402
from mip6bench.aaa.radius_client import RadiusClientConfig  # noqa: E402
from mip6bench.aaa.radius_server import RadiusServerConfig, RadiusServerCore  # noqa: E402
from mip6bench.aaa.sadist import SaDistConfig, SaDistHaCore  # noqa: E402
from mip6bench.aaa.token import TokenIssuer  # noqa: E402
from mip6bench.eap.peer import psk_peer_factory  # noqa: E402
from mip6bench.pana import mip6  # noqa: E402
from mip6bench.pana.channel import RetransmitPolicy  # noqa: E402
from mip6bench.pana.paa import PaaConfig  # noqa: E402
from mip6bench.pana.pac import PacConfig, PacCore, PacState  # noqa: E402
from mip6bench.sansio import Event, StartTimer, StopTimer, Transmit  # noqa: E402

QUICK = "--quick" in sys.argv
REPO = Path(__file__).resolve().parent.parent
PAA, AAA, HA = "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::1"
PREFIX = "2001:db8:1::/64"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu() -> float:
    return time.thread_time()


# ---- 1. in-process ------------------------------------------------------------------------

def inproc(n: int, backend: str, per_message: dict | None = None) -> dict:
    """`per_message`, if given, gets the thread CPU (ns) of every message's handling,
    keyed (step, receiving core and message, events the core logged for it), step 1
    the PCI's: the cores' share of one authentication's critical path, hop by hop."""
    users = [Credential(f"mn{k}@bench", secrets.token_bytes(16)) for k in range(n)]
    creds = {u.nai: u.psk for u in users}
    secret, sapsk = b"bench secret", secrets.token_bytes(32)
    policy = mip6.Mip6Policy(HA, PREFIX, mint_token=TokenIssuer(bytes(32), 1).hook(time.time))
    svc = PaaService(PaaServiceConfig(
        PaaConfig(mip6=policy, max_sessions=n + 10), backend=backend,
        radius=RadiusClientConfig(AAA, secret) if backend == "radius" else None,
        credentials=creds.get, sadist=SaDistConfig({HA: sapsk})), rng=random.Random(1))
    aaa = RadiusServerCore(RadiusServerConfig({PAA: secret}, creds.get))
    ha = SaDistHaCore(SaDistConfig({PAA: sapsk}), rng=random.Random(2))
    paa_cpu = 0.0
    now = 0.0
    done = 0
    t_wall, t_cpu = time.perf_counter(), cpu()
    for k, user in enumerate(users):
        addr = f"2001:db8:11::{k + 1:x}"
        pac = PacCore(PacConfig(PAA, psk_peer_factory(user.nai, user.psk), nai=user.nai,
                                mip6_request=mip6.REQUEST_ALL), rng=random.Random(k))
        queue = [("pac", a) for a in pac.start(now)]
        step = 0
        while queue:
            who, action = queue.pop(0)
            if not isinstance(action, Transmit):
                continue
            c0 = cpu()
            t0 = time.thread_time_ns()
            via = action.via if isinstance(action, ServiceTransmit) else None
            if who == "pac":
                out = [("paa", a) for a in svc.receive(action.data, addr, 716, now, "pana")]
            elif via == "pana":
                paa_cpu += cpu() - c0
                out = [("pac", a) for a in pac.receive(action.data, PAA, now, 716)]
                c0 = None
            elif via == "radius":
                replies = aaa.receive(action.data, PAA, 40000, now)
                out = []
                for r in replies:
                    if isinstance(r, Transmit):
                        out += [("paa", a) for a in svc.receive(r.data, AAA, 1812, now,
                                                                 "radius")]
            elif via == "sadist":
                paa_cpu += cpu() - c0
                c0 = None
                out = []
                for r in ha.receive(action.data, PAA, 7716, now):
                    if isinstance(r, Transmit):
                        c1 = cpu()
                        out += [("paa", a) for a in svc.receive(r.data, HA, 7716, now,
                                                                 "sadist")]
                        paa_cpu += cpu() - c1
            if c0 is not None:
                paa_cpu += cpu() - c0
            if per_message is not None:
                step += 1
                spent = time.thread_time_ns() - t0
                receiver = {"pac": "PAA <- PANA", "pana": "PaC <- PANA",
                            "radius": "AAA <- RADIUS, PAA <- its answer",
                            "sadist": "HA <- SA PUSH, PAA <- its ACK"}[via or who]
                events = sum(1 for _, a in out if isinstance(a, Event))
                per_message.setdefault((step, receiver, events), []).append(spent)
            queue += out
        if pac.state is PacState.OPEN:
            done += 1
    wall, total_cpu = time.perf_counter() - t_wall, cpu() - t_cpu
    assert done == n, f"{done}/{n} authenticated"
    return {"backend": backend, "n": n, "auth_per_s_wall": round(n / wall, 1),
            "auth_per_cpu_s_paa_and_aaa": round(n / paa_cpu, 1),
            "paa_aaa_cpu_ms_per_auth": round(1000 * paa_cpu / n, 3),
            "all_cores_cpu_ms_per_auth": round(1000 * total_cpu / n, 3)}


# ---- 2. real sockets in a namespace ---------------------------------------------------------

def proc_cpu(pid: int) -> float:
    return sum(proc_cpu_split(pid))


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process's threads: the times it
    waited for a datagram, and the times another task took its CPU."""
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    invol += int(line.split()[1])
    return vol, invol


PAA_LINK, PACS_PREFIX = "2001:db8:ff::1", "2001:db8:ff::"
MAX_SOURCES = 1000   # the PaCs' addresses: the PAA's neighbour cache holds one entry each


def sources_problem(sources: int) -> str | None:
    """Why `sources` PaC addresses cannot be used (one line), or None."""
    if 1 <= sources <= MAX_SOURCES:
        return None
    return (f"--sources takes 1 to {MAX_SOURCES}, not {sources} (the PaCs' addresses; the "
            f"PAA's neighbour cache holds one entry each)")


def sockets(n: int, concurrency: int, backend_note: str = "embedded AAA agent", *,
            cpus: tuple[str, str] | None = None, profile: str | None = None,
            backend: str = "radius", events: bool = False,
            callgrind: str | None = None, sources: int = 256,
            aaa_cpu: str | None = None) -> dict:
    """The PAA and AAA agents in a fresh namespace, the PaCs in a second one joined to
    it by a veth link (the PAA's address on it is PAA_LINK; the AAA talks to the PAA over
    that namespace's loopback). The PaCs take their source addresses in turn from
    `sources` addresses on their end of the link, as MNs arriving at a PAA each come
    from their own: the PAA allows 4 half-open handshakes per address, so PaCs sharing
    one (`sources` 1) have PCIs dropped and sent again after 1 s, and the PAA idles.
    The addresses are not on the agents' side: a socket bound to "::" (the PAA's, the
    AAA's) has the kernel choose a source address for every datagram it sends, among
    all the addresses of the outgoing device, and with the PaCs' hundreds of addresses
    on the same loopback that choice took a third of the PAA's CPU.
    `cpus` (F, G): the PAA and AAA agents pinned to CPU F, this load generator to G
    (`aaa_cpu`: the AAA to that CPU instead);
    `profile`: the PAA runs under cProfile into that file; `backend` "radius" (the AAA
    agent behind the PAA) or "local" (EAP server inside the PAA); `events`: the PAA writes
    its event log to a file, as it does in the testbed (else it keeps no file), and the
    result says how many entries and bytes an authentication wrote; `callgrind`: the PAA
    runs under valgrind's callgrind, its instruction counts written to that file when it
    ends (start-up included: compare two runs of different N for a per-authentication
    count; hash seed fixed)."""
    from mip6bench.net.netns import in_fresh_netns, in_netns

    if sources_problem(sources):
        raise ValueError(sources_problem(sources))

    def body():
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        # the PaCs' namespace: held open by this descriptor while the run lasts
        pacs_fd = in_fresh_netns(
            lambda: os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        try:
            return run(f"/proc/{os.getpid()}/fd/{pacs_fd}")
        finally:
            os.close(pacs_fd)

    def run(pacs_ns: str):
        subprocess.run(["ip", "link", "add", "paa0", "type", "veth", "peer", "name",
                        "pacs0", "netns", pacs_ns], check=True)
        subprocess.run(["ip", "-batch", "-"], check=True, input=(
            f"addr add {PAA_LINK}/64 dev paa0 nodad\nlink set paa0 up\n").encode())
        pac_addresses = [f"{PACS_PREFIX}{k + 2:x}" for k in range(sources)]
        in_netns(pacs_ns, lambda: subprocess.run(["ip", "-batch", "-"], check=True, input=(
            "link set lo up\nlink set pacs0 up\n" + "".join(
                f"addr add {a}/64 dev pacs0 nodad\n" for a in pac_addresses)).encode()))
        work = Path(tempfile.mkdtemp(prefix="pana-bench-"))
        users = [Credential(f"mn{k}@bench", secrets.token_bytes(16)) for k in range(n)]
        (work / "creds").write_text(format_credentials(users))
        secret = secrets.token_hex(8)
        procs = []
        log, result = work / "paa.events.jsonl", None

        def agent(role, options):
            cfg = work / f"{role}.json"
            cfg.write_text(json.dumps({"node": "bench", "agent": role,
                                       "control": str(work / f"{role}.sock"),
                                       "events": str(work / f"{role}.events.jsonl")
                                       if events and role == "paa" else None,
                                       "options": options}))
            argv = [sys.executable]
            env = None
            if callgrind and role == "paa":
                argv = ["valgrind", "--tool=callgrind", "--quiet",
                        f"--callgrind-out-file={callgrind}"] + argv
                env = dict(os.environ, PYTHONHASHSEED="0")
            if profile and role == "paa":
                argv += ["-m", "cProfile", "-o", profile]
            argv += [str(REPO / "agents" / f"{role}.py"), "--config", str(cfg)]
            if cpus:
                # cProfile times the wall clock: profiled, the PAA keeps its CPU to itself,
                # or its sendto would include the AAA it wakes on the same CPU
                cpu = cpus[0]
                if role == "aaa":
                    cpu = aaa_cpu or (cpus[1] if profile else cpus[0])
                argv = ["taskset", "-c", cpu] + argv
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            line = p.stdout.readline()
            assert line.startswith(b'{"ready"'), p.stderr.read()
            procs.append(p)
            return p

        try:
            if backend == "radius":
                aaa = agent("aaa", {"credentials": str(work / "creds"),
                                    "clients": {"::1": secret}, "port": 18120})
                paa = agent("paa", {"address": PAA_LINK, "ha_address": HA,
                                    "home_prefix": PREFIX, "backend": "radius",
                                    "radius_server": "::1",
                                    "radius_port": 18120, "radius_secret": secret,
                                    "port": 7160, "token_key": "00" * 32,
                                    # under callgrind: no RADIUS retransmission either
                                    "radius_irt": 8.0 if callgrind else 1.0})
            else:
                aaa = None
                paa = agent("paa", {"address": PAA_LINK, "ha_address": HA,
                                    "home_prefix": PREFIX, "backend": "local",
                                    "credentials": str(work / "creds"),
                                    "port": 7160, "token_key": "00" * 32})
            if cpus:
                os.sched_setaffinity(0, {int(cpus[1])})
            before = log.stat().st_size if events else 0
            # the generator's thread (its CPU affinity inherited) opens every PaC
            # socket in the PaCs' namespace
            result = dict(in_netns(pacs_ns, lambda: asyncio.run(load(
                users, concurrency, agent_pid(paa), agent_pid(aaa) if aaa else None,
                slow_rtx=callgrind is not None, paa_address=PAA_LINK,
                pac_addresses=pac_addresses))), backend=backend, sources=sources)
            return result
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=60 if callgrind else 5)
            if events and result:
                # counted once the PAA has ended (it writes what is pending then): the
                # last PaC is done before the PAA has handled its last PAN
                logged = [line for line in log.read_bytes()[before:].splitlines(True)
                          if b'"event":"agent.' not in line]   # its stopping, stopped
                done = max(1, result["completed"])
                result["paa_events_per_auth"] = round(len(logged) / done, 2)
                result["paa_event_bytes_per_auth"] = round(sum(map(len, logged)) / done)
            shutil.rmtree(work, ignore_errors=True)

    return in_fresh_netns(body)


def agent_pid(p: subprocess.Popen) -> int:
    """The agent's own pid (under taskset/cProfile the Popen is the agent's process too:
    taskset execs it)."""
    return p.pid


async def load(users, concurrency, paa_pid, aaa_pid, stall_s: float = 30.0,
               slow_rtx: bool = False, *, paa_address: str, pac_addresses: list[str]) -> dict:
    """`concurrency` PaCs in flight, each on its own UDP socket bound to the next of
    `pac_addresses` in turn (the PAA tells PaCs apart by address and port), a new one
    started as soon as one is authenticated. A session
    not open `stall_s` after the last one completed is counted as stalled (the run ends
    there). `slow_rtx`: the PaCs retransmit after 60 s, not 1 s (a PAA under callgrind is
    ~70 times slower: every authentication then has the same datagrams)."""
    rtx = {"pci_retransmit": RetransmitPolicy(60.0, 120.0, 0, 0.0),
           "req_retransmit": RetransmitPolicy(60.0, 120.0, 10, 0.0)} if slow_rtx else {}
    loop = asyncio.get_running_loop()
    pending = list(users)
    done = asyncio.Event()
    completed = 0
    in_flight = 0
    last_done = [time.perf_counter()]
    retransmits = [0]
    launched = [0]

    def launch():
        nonlocal in_flight
        while pending and in_flight < concurrency:
            user = pending.pop()
            in_flight += 1
            PacClient(user)

    class PacClient:
        def __init__(self, user):
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self.sock.bind((pac_addresses[launched[0] % len(pac_addresses)], 0))
            launched[0] += 1
            self.sock.setblocking(False)
            self.pac = PacCore(PacConfig(paa_address, psk_peer_factory(user.nai, user.psk),
                                         nai=user.nai, paa_port=7160,
                                         mip6_request=mip6.REQUEST_ALL, **rtx))
            self.timers: dict = {}
            self.closed = False
            loop.add_reader(self.sock.fileno(), self.readable)
            self.run(self.pac.start(loop.time()))

        def fire(self, key):
            self.timers.pop(key, None)
            if not self.closed:
                if "rtx" in str(key):
                    retransmits[0] += 1
                self.run(self.pac.handle_timer(key, loop.time()))

        def run(self, actions):
            # the PaC's timers too (its retransmissions), as the MN agent's driver runs them
            nonlocal completed, in_flight
            if self.closed:
                return
            for a in actions:
                if isinstance(a, Transmit):
                    self.sock.sendto(a.data, (paa_address, a.port or 7160))
                elif isinstance(a, StartTimer):
                    old = self.timers.pop(a.key, None)
                    if old:
                        old.cancel()
                    self.timers[a.key] = loop.call_at(a.at, self.fire, a.key)
                elif isinstance(a, StopTimer):
                    old = self.timers.pop(a.key, None)
                    if old:
                        old.cancel()
            if self.pac.state is PacState.OPEN:
                self.closed = True
                for h in self.timers.values():
                    h.cancel()
                loop.remove_reader(self.sock.fileno())
                self.sock.close()
                completed += 1
                last_done[0] = time.perf_counter()
                in_flight -= 1
                if completed == len(users):
                    done.set()
                else:
                    launch()

        def readable(self):
            try:
                data, addr = self.sock.recvfrom(4096)
            except BlockingIOError:
                return
            self.run(self.pac.receive(data, addr[0], loop.time(), addr[1]))

    def agents_cpu():
        return (proc_cpu(paa_pid), proc_cpu(aaa_pid) if aaa_pid else 0.0,
                proc_cpu_split(paa_pid)[1])

    c0, g0, s0 = agents_cpu(), os.times(), proc_switches(paa_pid)
    t0 = time.perf_counter()
    launch()
    seen = -1
    while not done.is_set() and completed != seen:   # progress within stall_s, or stop
        seen = completed
        try:
            await asyncio.wait_for(done.wait(), timeout=stall_s)
        except asyncio.TimeoutError:
            pass
    wall = last_done[0] - t0
    c1, g1, s1 = agents_cpu(), os.times(), proc_switches(paa_pid)
    n = completed
    return {"n": len(users), "completed": n, "stalled": len(users) - n,
            "concurrency": concurrency, "auth_per_s": round(n / wall, 1),
            "pac_retransmits": retransmits[0],
            "paa_cpu_ms_per_auth": round(1000 * (c1[0] - c0[0]) / max(1, n), 3),
            "aaa_cpu_ms_per_auth": round(1000 * (c1[1] - c0[1]) / max(1, n), 3),
            "paa_auth_per_cpu_s": round(n / max(1e-9, c1[0] - c0[0]), 1),
            "paa_sys_ms_per_auth": round(1000 * (c1[2] - c0[2]) / max(1, n), 3),
            "paa_waits_per_auth": round((s1[0] - s0[0]) / max(1, n), 2),
            "paa_preempted_per_auth": round((s1[1] - s0[1]) / max(1, n), 2),
            "gen_cpu_ms_per_auth": round(1000 * (g1.user + g1.system - g0.user - g0.system)
                                         / max(1, n), 3)}


# ---- 3. testbed ---------------------------------------------------------------------------

def testbed(aaa: str) -> dict:
    out = Path(tempfile.mkdtemp(prefix="pana-bench-run-"))
    args = [str(REPO / ".venv" / "bin" / "mip6bench"), "run", "bootstrap", "--no-capture",
            "--out", str(out), "-p", f"aaa={aaa}", "-p", "discovery=unicast", "-p", "sa=push"]
    for seg in ("access", "backhaul", "home_uplink", "home_lan"):
        args += ["-p", f"{seg}_delay_ms=10"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return {"aaa": aaa, "error": proc.stderr.strip()[-300:]}
        m = json.loads((out / "metrics.json").read_text())["bootstrap"]
    finally:
        if "--keep" not in sys.argv:
            shutil.rmtree(out, ignore_errors=True)
    return {"aaa": aaa, **{k: m[k] for k in ("discovery_ms", "eap_ms", "pana_ms", "sa_push_ms",
                                              "ha_registration_ms", "total_ms", "floor_ms",
                                              "ratio", "pana_messages")},
            "floors": m["floors"]}


def sockets_only(spec: str) -> int:
    """--sockets N,C[,F,G][,local]: only part 2, N authentications with C in flight (agents
    on CPU F, generator on G); --profile PATH runs the PAA under cProfile; --events: the
    PAA writes its event log (as in the testbed)."""
    parts = spec.split(",")
    backend = "local" if "local" in parts else "radius"
    parts = [x for x in parts if x != "local"]
    n, c = int(parts[0]), int(parts[1])
    cpus = (parts[2], parts[3]) if len(parts) >= 4 else None
    aaa_cpu = parts[4] if len(parts) >= 5 else None
    profile = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else None
    callgrind = sys.argv[sys.argv.index("--callgrind") + 1] \
        if "--callgrind" in sys.argv else None
    sources = 256
    if "--sources" in sys.argv:
        raw = "".join(sys.argv[sys.argv.index("--sources") + 1:][:1])
        sources = int(raw) if raw.isdigit() else 0
        problem = sources_problem(sources) if raw.isdigit() else \
            f"--sources takes a number of addresses, 1 to {MAX_SOURCES}, not {raw!r}"
        if problem:
            print(f"pana_bench: {problem}", file=sys.stderr)
            return 2
    r = sockets(n, c, cpus=cpus, profile=profile, backend=backend,
                events="--events" in sys.argv, callgrind=callgrind, sources=sources,
                aaa_cpu=aaa_cpu)
    print(f"sockets ({backend}, {n} PaCs, {c} in flight, {sources} addresses): {r['auth_per_s']:.1f} auth/s, "
          f"completed {r['completed']} stalled {r['stalled']} (PaC retransmits {r['pac_retransmits']}); PAA {r['paa_cpu_ms_per_auth']:.3f} "
          f"ms CPU/auth ({r['paa_auth_per_cpu_s']:.0f}/CPU-s), AAA {r['aaa_cpu_ms_per_auth']:.3f} "
          f"ms, generator {r['gen_cpu_ms_per_auth']:.3f} ms; the PAA waited "
          f"{r['paa_waits_per_auth']} times an authentication")
    print(json.dumps(r))
    if callgrind:
        print(f"callgrind: {callgrind_instructions(callgrind):,} instructions in the PAA "
              f"(start-up and {r['completed']} authentications)")
    if profile:
        import pstats
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


def callgrind_instructions(path: str) -> int:
    """The total instruction count of a callgrind output file."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no summary line")


def per_message_only() -> int:
    """The cores' CPU per message of one authentication (both backends, 300 each):
    median thread CPU per step in microseconds, and their sum."""
    out = {}
    for backend in ("radius", "local"):
        steps: dict = {}
        inproc(300, backend, steps)
        rows = [(key, statistics.median(v) / 1000) for key, v in sorted(steps.items())]
        print(f"{backend}: step, receiver, events the core logged, median CPU us")
        for (step, receiver, events), us in rows:
            print(f"  {step:3d} {receiver:34s} {events:2d} {us:8.1f}")
        total = round(sum(us for _, us in rows), 1)
        print(f"  sum {total} us (all cores, one authentication, warm, in one thread)")
        out[backend] = {"steps": [[k[0], k[1], k[2], round(us, 1)] for k, us in rows],
                        "sum_us": total}
    print(json.dumps({"per_message": out}))
    return 0


def main() -> int:
    if "--sockets" in sys.argv:
        return sockets_only(sys.argv[sys.argv.index("--sockets") + 1])
    if "--per-message" in sys.argv:
        return per_message_only()
    summary: dict = {}
    n = 100 if QUICK else 1000
    for backend in ("local", "radius"):
        r = inproc(n, backend)
        summary[f"inproc_{backend}"] = r
        print(f"inproc ({backend:6}): {r['auth_per_s_wall']:8.1f} auth/s wall (all cores in one "
              f"thread), PAA+AAA {r['paa_aaa_cpu_ms_per_auth']:.3f} ms CPU/auth = "
              f"{r['auth_per_cpu_s_paa_and_aaa']:.0f} auth per CPU-s")
    if os.geteuid() == 0 and "--no-netns" not in sys.argv:
        r = sockets(100 if QUICK else 400, 32)
        summary["sockets"] = r
        print(f"sockets (agents/paa.py + agents/aaa.py, PaCs over a veth link from 256 "
              f"addresses): {r['auth_per_s']:.1f} auth/s "
              f"with {r['concurrency']} in flight; PAA {r['paa_cpu_ms_per_auth']:.3f} ms CPU/auth "
              f"({r['paa_auth_per_cpu_s']:.0f}/CPU-s), AAA {r['aaa_cpu_ms_per_auth']:.3f} ms")
    if os.geteuid() == 0 and "--no-testbed" not in sys.argv:
        for aaa in ("embedded", "radius"):
            r = testbed(aaa)
            summary[f"testbed_{aaa}"] = r
            if "error" in r:
                print(f"testbed aaa={aaa}: error {r['error']}")
                continue
            print(f"testbed aaa={aaa:8} 10 ms/link: discovery {r['discovery_ms']} eap "
                  f"{r['eap_ms']} pana {r['pana_ms']} sa_push {r['sa_push_ms']} "
                  f"ha_reg {r['ha_registration_ms']} total {r['total_ms']} ms, floor "
                  f"{r['floor_ms']} ms, ratio {r['ratio']}")
        e, h = summary.get("testbed_embedded", {}), summary.get("testbed_radius", {})
        if "eap_ms" in e and "eap_ms" in h:
            summary["radius_hostapd_minus_embedded_eap_ms"] = round(h["eap_ms"] - e["eap_ms"], 3)
            print(f"hostapd vs embedded AAA: eap_ms {h['eap_ms']} vs {e['eap_ms']} "
                  f"({summary['radius_hostapd_minus_embedded_eap_ms']:+.3f} ms over 3 RADIUS "
                  f"round trips)")
    summary["max_rss_kb_bench"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
