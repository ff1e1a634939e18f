"""The plain path: a bare UDP datagram over the same emulated path as a protocol message,
timed in the same run, so a phase can be read against what the path and the machine
give any process (the charter: "compare against the analytic floor or the plain path in
the same run").

A minimal receiver (`python -m mip6bench.measure.plainpath`, started in the destination
node's namespace) sits in epoll_wait as an agent's event loop does, for the same idle
gap the agent had before the message being compared; one datagram from the source
node's namespace then carries its send time (CLOCK_MONOTONIC, read just before sendto).
The receiver answers with two times of its own: the kernel's receive time
(SO_TIMESTAMPNS, converted to CLOCK_MONOTONIC) and the moment it had the datagram in
user space after its wake-up (monotonic, right after recvmsg). Its answer goes back over
the path after both stamps, so it costs the measurement nothing.

    serve(sock, count)                   the receiver's loop (one answer per datagram)
    probe(tb, src, dst, address, ...)    run it in a testbed: the samples
    idle_gap_ms(events, node, agent, t)  how long an agent had been idle before t_ns
    summarize(samples, floor, measured)  the figures a report shows (pure)
"""
from __future__ import annotations

import argparse
import json
import select
import socket
import statistics
import struct
import sys
import time

from mip6bench.measure.streams import SO_TIMESTAMPNS, kernel_stamp

PROBE = struct.Struct("!IQ")      # sequence number, send time (CLOCK_MONOTONIC ns)
ANSWER = struct.Struct("!IQQQ")   # sequence number, send time, kernel receive, user space
GAP_MAX_MS = 2000.0               # an agent idle longer is taken as idle this long
GAP_MIN_MS = 1.0


def serve(sock: socket.socket, count: int) -> None:
    """Answer `count` probes on a bound UDP socket (SO_TIMESTAMPNS on): each waited for
    in epoll_wait, read with recvmsg, stamped, then answered to its sender."""
    ep = select.epoll()
    ep.register(sock.fileno(), select.EPOLLIN)
    answered = 0
    try:
        while answered < count:
            ep.poll()
            data, ancdata, _flags, peer = sock.recvmsg(256, 64)
            awake = time.monotonic_ns()
            offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.monotonic_ns()
            if len(data) < PROBE.size:
                continue
            seq, sent = PROBE.unpack_from(data)
            stamp = kernel_stamp(ancdata)
            kernel = stamp - offset if stamp is not None else 0
            sock.sendto(ANSWER.pack(seq, sent, kernel, awake), peer)
            answered += 1
    finally:
        ep.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mip6bench.measure.plainpath",
                                 description="answer plain-path probes with their receive times")
    ap.add_argument("--bind", required=True, help="the address to listen on")
    ap.add_argument("--count", type=int, required=True, help="probes to answer, then exit")
    args = ap.parse_args(argv)
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((args.bind, 0))
    except OSError as exc:
        print(f"plainpath: cannot listen on {args.bind}: {exc.strerror}", file=sys.stderr)
        return 2
    print(json.dumps({"ready": True, "port": sock.getsockname()[1]}), flush=True)
    serve(sock, args.count)
    return 0


# ---- the controller's side ------------------------------------------------------------------

def probe(tb, src: str, src_address: str, dst: str, dst_address: str, gap_s: float,
          count: int, timeout_s: float = 2.0) -> list[dict]:
    """`count` probes from node `src` to node `dst`, each after the receiver has been idle
    `gap_s`; one dict per answered probe (sent_ns, kernel_ns, awake_ns; kernel_ns 0 when
    the kernel gave no time). A probe or answer lost on the way is left out."""
    from mip6bench.net.netns import in_netns
    from mip6bench.slowdown import scaled
    from mip6bench.testbed.process import NodeProcess

    receiver = NodeProcess(tb.node(dst), [sys.executable, "-m", "mip6bench.measure.plainpath",
                                          "--bind", dst_address, "--count", str(count)],
                           "plain-path receiver", tb.run, ready=lambda line: line.startswith('{"ready"'),
                           log_path=tb.run.logs_dir / f"{dst}-plainpath.stderr")
    receiver.start()
    port = json.loads(receiver.ready_line)["port"]

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind((src_address, 0))
        return s

    sock = in_netns(tb.node_pid(src), make)
    sock.settimeout(scaled(timeout_s))
    samples = []
    try:
        for seq in range(count):
            # The idle gap is the condition measured (the receiver blocked in epoll_wait
            # this long, as the agent was before its message), not a wait for an event.
            time.sleep(gap_s)
            sent = time.monotonic_ns()
            sock.sendto(PROBE.pack(seq, sent), (dst_address, port))
            while True:
                try:
                    data = sock.recv(256)
                except socket.timeout:
                    break
                if len(data) == ANSWER.size and ANSWER.unpack(data)[0] == seq:
                    _seq, t_sent, kernel, awake = ANSWER.unpack(data)
                    samples.append({"sent_ns": t_sent, "kernel_ns": kernel, "awake_ns": awake})
                    break
    finally:
        sock.close()
        receiver.stop()
    return samples


def idle_gap_ms(events: list[dict], node: str, agent: str, t_ns: int) -> float | None:
    """How long the agent `agent` on `node` had logged nothing before `t_ns` (ms), or None
    when it logged nothing before it."""
    last = None
    for e in events:
        if e["t_ns"] >= t_ns:
            break
        if e["node"] == node and e["agent"] == agent:
            last = e["t_ns"]
    return None if last is None else round((t_ns - last) / 1e6, 3)


def probe_gap_ms(gap_ms: float | None) -> float:
    """The idle gap to give the receiver: the agent's, within [GAP_MIN_MS, GAP_MAX_MS]."""
    return GAP_MAX_MS if gap_ms is None else min(GAP_MAX_MS, max(GAP_MIN_MS, gap_ms))


def summarize(samples: list[dict], floor_ms: float | None, measured_ms: float | None,
              gap_ms: float, sent: int) -> dict:
    """The plain path's figures (medians over the answered probes): kernel_ms (send ->
    the kernel's receive time), awake_ms (send -> the receiver has the datagram in user
    space after its wake-up), wake_ms (the difference), the phase measured and its floor,
    and over_plain_ms = measured - awake_ms: what the implementation adds to what any
    process gets over the same path after the same idle."""
    def ms(a: int, b: int) -> float:
        return round((b - a) / 1e6, 3)

    awake = [ms(s["sent_ns"], s["awake_ns"]) for s in samples]
    kernel = [ms(s["sent_ns"], s["kernel_ns"]) for s in samples if s["kernel_ns"]]
    wake = [ms(s["kernel_ns"], s["awake_ns"]) for s in samples if s["kernel_ns"]]
    out = {"probes": sent, "answered": len(samples), "gap_ms": round(gap_ms, 3),
           "floor_ms": floor_ms, "measured_ms": measured_ms,
           "awake_ms": round(statistics.median(awake), 3) if awake else None,
           "kernel_ms": round(statistics.median(kernel), 3) if kernel else None,
           "wake_ms": round(statistics.median(wake), 3) if wake else None,
           "awake_each_ms": awake, "kernel_each_ms": kernel}
    out["over_plain_ms"] = round(measured_ms - out["awake_ms"], 3) \
        if measured_ms is not None and out["awake_ms"] is not None else None
    out["plain_ratio"] = round(out["awake_ms"] / floor_ms, 3) \
        if out["awake_ms"] is not None and floor_ms else None
    return out


def format_line(p: dict, what: str = "MIPv6 SA to the HA") -> str:
    """One line for a summary: the phase, the plain path, the floor, the difference."""
    if p.get("awake_ms") is None:
        return f"{what}: plain path not measured ({p.get('answered', 0)}/{p.get('probes', 0)} probes answered)"
    return (f"{what} {p['measured_ms']} ms against the plain path (a bare UDP datagram over the same "
            f"path, {p['answered']} probes after {p['gap_ms']:g} ms idle, medians): in the receiver "
            f"{p['awake_ms']} ms (kernel receive {p['kernel_ms']}), floor {p['floor_ms']}; "
            f"the implementation over the plain path {p['over_plain_ms']} ms")


if __name__ == "__main__":
    raise SystemExit(main())
