#!/usr/bin/env python3
"""Benchmark of the user-space link relay (mip6bench.net.linkemu). Needs root.

Measures, between two throwaway namespaces le-bench-<rand>-a/-b:
  * the shaping core's cost per frame (no I/O);
  * relay cold start (Popen to ready line) and resident memory;
  * delay accuracy of a 10 ms link, ONE-WAY: the sender stamps CLOCK_MONOTONIC into
    the payload, the receiver (same process, other namespace; all namespaces share
    the clock) subtracts on recv(); error = measured - 10 ms, so it includes the
    kernel's UDP/IPv6 path and the receiver's wakeup as well as the relay's lateness;
    a 0 ms link gives that path's baseline;
  * sustained packet rate of one relay, one direction at a time, for 64-byte and
    1514-byte Ethernet frames (14 + 40 + 8 + payload, FCS not counted; 1514 = a full
    1500-byte MTU), with 0 and 10 ms delay: a separate sender process blasts IPv6/UDP
    frames as fast as it can into A's TAP (AF_PACKET, qdisc bypassed), a separate
    receiver process counts them in B; the rate is the relay's own tx counter over a
    steady-state window, with the relay's CPU time per frame (user+sys, which includes
    B's kernel receive path: a TAP write delivers the frame synchronously). The relay
    is pinned to CPU 1, sender and receiver share CPU 0 (2-core VM); the sender's
    "errors" are frames refused because A's TAP queue was full (relay behind).

Prints human-readable lines, then one JSON summary line.
Usage: python bench/linkemu_bench.py [--quick]
"""
from __future__ import annotations

import ctypes
import json
import os
import secrets
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.net.linkemu import LinkParams, LinkRelay  # noqa: E402
from mip6bench.net.shaping import Shaper  # noqa: E402

QUICK = "--quick" in sys.argv
ADDR_A, ADDR_B, PORT = "fd1e::1", "fd1e::2", 9999
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl(29, 1, 0, 0, 0)  # timer slack 1 ns: this process times wakeups too
CLK_TCK = os.sysconf("SC_CLK_TCK")


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ns_socket(ns: str) -> socket.socket:
    box = {}

    def make():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            box["s"] = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        finally:
            os.close(fd)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    return box["s"]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, val = line.split(":")
                out[key] = int(val.split()[0])
    return out


class Bench:
    def __init__(self):
        tag = secrets.token_hex(3)
        self.a, self.b = f"le-bench-{tag}-a", f"le-bench-{tag}-b"
        self.if_a, self.if_b = "bench-a", "bench-b"
        self.children: list[subprocess.Popen] = []
        self.results: dict = {}

    def setup(self):
        run("ip", "netns", "add", self.a)
        run("ip", "netns", "add", self.b)

    def cleanup(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()  # our own children, by pid
            p.wait()
        for ns in (self.a, self.b):
            run("ip", "netns", "del", ns, check=False)

    def relay(self, params: LinkParams, **kw) -> LinkRelay:
        r = LinkRelay.start(self.if_a, self.a, self.if_b, self.b, params, **kw)
        self.children.append(r.proc)
        run("ip", "-n", self.a, "addr", "add", f"{ADDR_A}/64", "dev", self.if_a, "nodad")
        run("ip", "-n", self.b, "addr", "add", f"{ADDR_B}/64", "dev", self.if_b, "nodad")
        run("ip", "-n", self.a, "neigh", "replace", ADDR_B, "lladdr", r.ready["b"]["mac"],
            "dev", self.if_a, "nud", "permanent")
        run("ip", "-n", self.b, "neigh", "replace", ADDR_A, "lladdr", r.ready["a"]["mac"],
            "dev", self.if_b, "nud", "permanent")
        for ns, dev in ((self.a, self.if_a), (self.b, self.if_b)):
            run("ip", "-n", ns, "link", "set", "dev", dev, "txqueuelen", "10000")
        return r

    # -- 1. core ----------------------------------------------------------------------

    def core(self):
        n = 200_000
        frame = bytes(64)
        for name, params in (("delay", LinkParams(delay_ms=10)),
                             ("delay+jitter+loss+rate", LinkParams(delay_ms=10, jitter_ms=1,
                                                                   loss_pct=1, rate_mbit=10_000,
                                                                   limit=10**6))):
            sh = Shaper(params, 1, "bench")
            t0 = time.perf_counter_ns()
            for i in range(n):
                sh.offer(i * 1000, frame)
                sh.pop_due(i * 1000)
            per = (time.perf_counter_ns() - t0) / n
            print(f"core: offer+pop_due, {name}: {per:.0f} ns/frame")
            self.results[f"core_ns_per_frame_{name}"] = round(per)

    # -- 2. cold start ----------------------------------------------------------------

    def cold_start(self):
        times = []
        for _ in range(5 if QUICK else 10):
            t0 = time.perf_counter()
            r = LinkRelay.start(self.if_a, self.a, self.if_b, self.b, LinkParams(delay_ms=10))
            times.append((time.perf_counter() - t0) * 1000)
            rss = rss_kib(r.pid)
            r.stop()
        print(f"cold start (Popen -> ready line): median {statistics.median(times):.1f} ms, "
              f"min {min(times):.1f}, max {max(times):.1f} over {len(times)} starts")
        print(f"relay RSS when idle: {rss['VmRSS']} KiB")
        # Many links: launch all, then wait; stop_all overlaps the TAP teardowns.
        n = 10
        t0 = time.perf_counter()
        relays = [LinkRelay.launch(f"m{i}", self.a, f"n{i}", self.b) for i in range(n)]
        for r in relays:
            self.children.append(r.proc)
            r.wait_ready(30)
        t_start = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        LinkRelay.stop_all(relays)
        t_stop = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        r = LinkRelay.start(self.if_a, self.a, self.if_b, self.b)
        t1 = time.perf_counter()
        r.stop()
        t_stop1 = (time.perf_counter() - t1) * 1000
        print(f"{n} relays launched together: all ready in {t_start:.0f} ms; stop_all "
              f"{t_stop:.0f} ms (one relay's stop: {t_stop1:.0f} ms)")
        self.results.update(cold_start_ms_median=round(statistics.median(times), 1),
                            cold_start_ms_min=round(min(times), 1),
                            rss_idle_kib=rss["VmRSS"], parallel10_ready_ms=round(t_start),
                            parallel10_stop_all_ms=round(t_stop), stop_one_ms=round(t_stop1))

    # -- 3. delay accuracy ------------------------------------------------------------

    def one_way(self, delay_ms: float, n: int, spacing_s: float = 0.001) -> list[float]:
        relay = self.relay(LinkParams(delay_ms=delay_ms))
        tx, rx = ns_socket(self.a), ns_socket(self.b)
        try:
            rx.bind((ADDR_B, PORT))
            rx.setblocking(False)
            samples: list[float] = []
            next_send = time.monotonic()
            sent = 0
            deadline = next_send + n * spacing_s + 2
            while len(samples) < n and time.monotonic() < deadline:
                now = time.monotonic()
                if sent < n and now >= next_send:
                    tx.sendto(struct.pack("Q", time.monotonic_ns()), (ADDR_B, PORT))
                    sent += 1
                    next_send += spacing_s
                wait = max(0.0, next_send - time.monotonic()) if sent < n else 0.5
                if select.select([rx], [], [], wait)[0]:
                    while True:
                        try:
                            data = rx.recv(64)
                        except BlockingIOError:
                            break
                        samples.append((time.monotonic_ns() - struct.unpack("Q", data)[0]) / 1e6)
        finally:
            tx.close()
            rx.close()
            relay.stop()
        return samples

    def accuracy(self):
        n = 1000 if QUICK else 3000
        base = self.one_way(0, n)
        d10 = self.one_way(10, n)
        err = [(x - 10) * 1000 for x in d10]  # us
        b = [x * 1000 for x in base]
        print(f"one-way delay, 0 ms link (path baseline): p50 {pct(b, .5):.0f} us, "
              f"p99 {pct(b, .99):.0f} us, max {max(b):.0f} us ({len(b)} packets, 1 ms apart)")
        print(f"one-way delay error, 10 ms link: p50 {pct(err, .5):+.0f} us, "
              f"p99 {pct(err, .99):+.0f} us, min {min(err):+.0f} us, max {max(err):+.0f} us "
              f"({len(err)} packets)")
        self.results.update(
            one_way_0ms_p50_us=round(pct(b, .5)), one_way_0ms_p99_us=round(pct(b, .99)),
            delay10_err_p50_us=round(pct(err, .5)), delay10_err_p99_us=round(pct(err, .99)),
            delay10_err_min_us=round(min(err)), delay10_err_max_us=round(max(err)))

    # -- 4. throughput ----------------------------------------------------------------

    # The sender writes whole Ethernet frames with an AF_PACKET socket straight into
    # A's TAP (qdisc bypassed): about half the CPU per frame of a UDP socket sendto(),
    # so one core can offer more than the relay can take. The frames are valid
    # IPv6/UDP (checksum computed once), so B's stack delivers them to the receiver.
    SENDER = r"""
import socket, struct, sys, time, json
size, dur, dev, src_mac, dst_mac = int(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:6]
src, dst, port = socket.inet_pton(socket.AF_INET6, sys.argv[6]), \
    socket.inet_pton(socket.AF_INET6, sys.argv[7]), int(sys.argv[8])
payload = bytes(size)
ulen = 8 + size
pseudo = (src + dst + struct.pack("!IxxxB", ulen, 17)
          + struct.pack("!HHHH", 40000, port, ulen, 0) + payload)
if len(pseudo) % 2:
    pseudo += b"\0"
c = sum(struct.unpack("!%dH" % (len(pseudo) // 2), pseudo))
while c >> 16:
    c = (c & 0xFFFF) + (c >> 16)
csum = (~c & 0xFFFF) or 0xFFFF
frame = (bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
         + b"\x86\xdd" + struct.pack("!IHBB", 6 << 28, ulen, 17, 64) + src + dst
         + struct.pack("!HHHH", 40000, port, ulen, csum) + payload)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.setsockopt(263, 20, 1)  # SOL_PACKET, PACKET_QDISC_BYPASS
s.bind((dev, 0))
sent = err = 0
end = time.monotonic() + dur
send = s.send
while True:
    for _ in range(1000):
        try:
            send(frame); sent += 1
        except OSError:
            err += 1
    if time.monotonic() >= end:
        break
print(json.dumps({"sent": sent, "errors": err, "frame": len(frame)}))
"""
    RECEIVER = r"""
import socket, sys, time, json, select
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
buf = bytearray(2048); n = 0
print("ready", flush=True)
s.settimeout(1.0)
recv = s.recv_into
try:
    while True:
        recv(buf); n += 1
except socket.timeout:
    pass
print(json.dumps({"received": n}))
"""

    def throughput(self, frame: int, delay_ms: float, dur: float) -> dict:
        payload = frame - 14 - 40 - 8
        # Queue limit raised so that the 10 ms case measures the relay, not netem's
        # default cap of limit/delay = 100 kpps.
        relay = self.relay(LinkParams(delay_ms=delay_ms, limit=100_000))
        os.sched_setaffinity(relay.pid, {1})
        pin = ["taskset", "-c", "0"]
        recv = subprocess.Popen(["ip", "netns", "exec", self.b, *pin, sys.executable, "-c",
                                 self.RECEIVER, ADDR_B, str(PORT)],
                                stdout=subprocess.PIPE, text=True)
        self.children.append(recv)
        assert recv.stdout.readline().strip() == "ready"
        send = subprocess.Popen(["ip", "netns", "exec", self.a, *pin, sys.executable, "-c",
                                 self.SENDER, str(payload), str(dur), self.if_a,
                                 relay.ready["a"]["mac"], relay.ready["b"]["mac"], ADDR_A,
                                 ADDR_B, str(PORT)],
                                stdout=subprocess.PIPE, text=True)
        self.children.append(send)
        # Steady-state window: skip the first and last 0.5 s (and the delay).
        time.sleep(0.5 + delay_ms / 1000)  # bench pacing, not a test synchronisation
        s0, c0, t0 = relay.stats()["ab"], cpu_seconds(relay.pid), time.monotonic()
        time.sleep(dur - 1.0)
        s1, c1, t1 = relay.stats()["ab"], cpu_seconds(relay.pid), time.monotonic()
        sent = json.loads(send.stdout.read())
        send.wait()
        assert sent["frame"] == frame, sent
        got = json.loads(recv.stdout.read())
        recv.wait()
        final = relay.stats()["ab"]
        rss = rss_kib(relay.pid)
        relay.stop()
        span = t1 - t0
        tx_rate = (s1["tx"] - s0["tx"]) / span
        rx_rate = (s1["rx"] - s0["rx"]) / span
        cpu = (c1 - c0) / span
        per_frame_us = (c1 - c0) / max(1, s1["tx"] - s0["tx"]) * 1e6
        res = dict(frame=frame, delay_ms=delay_ms, relay_tx_pps=round(tx_rate),
                   relay_rx_pps=round(rx_rate), relay_cpu=round(cpu, 2),
                   relay_cpu_us_per_frame=round(per_frame_us, 2),
                   offered_pps=round(sent["sent"] / dur), sender_errors=sent["errors"],
                   received_total=got["received"], relay_tx_total=final["tx"],
                   mbit=round(tx_rate * frame * 8 / 1e6, 1), rss_kib=rss["VmRSS"],
                   hwm_kib=rss["VmHWM"], dropped_queue=final["dropped_queue"])
        print(f"rate A->B, {frame:4d}-byte frames, {delay_ms:2g} ms delay: "
              f"{tx_rate / 1000:6.1f} kpps relayed ({res['mbit']} Mbit/s), "
              f"relay CPU {100 * cpu:.0f}% = {per_frame_us:.2f} us/frame; "
              f"offered {res['offered_pps'] / 1000:.0f} kpps, receiver got "
              f"{got['received']} of {final['tx']} relayed; relay RSS {rss['VmRSS']} KiB "
              f"(peak {rss['VmHWM']})")
        return res

    def rates(self):
        dur = 3.0 if QUICK else 5.0
        out = []
        for frame in (64, 1514):
            for delay in (0, 10):
                out.append(self.throughput(frame, delay, dur))
        self.results["rates"] = out


def main() -> int:
    if os.geteuid() != 0:
        print("linkemu_bench: needs root (namespaces, TAP devices)", file=sys.stderr)
        return 1
    b = Bench()
    try:
        b.setup()
        print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, python "
              f"{sys.version.split()[0]}")
        b.core()
        b.cold_start()
        b.accuracy()
        b.rates()
    finally:
        b.cleanup()
    print(json.dumps({"linkemu_bench": b.results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
