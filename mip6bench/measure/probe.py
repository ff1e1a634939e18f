"""UDP echo probes between nodes, driven from the controller process.

Each flow gets a sender socket opened in the source node's namespace and an echo socket
in the destination's (sockets keep the namespace they were created in), so one
single-threaded poll(2) loop measures many flows at once, with no process per probe.
A probe carries its flow, sequence number and send time; the echo socket returns it
at once. For every flow we learn what was sent, what reached the destination
(`delivered`) and what came back (`answered`), and each answered probe's RTT.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

from mip6bench.fdwait import ReadWaiter
from mip6bench.net.netns import in_netns

PROBE = struct.Struct("!IIQ")  # flow index, sequence number, send time (ns)
PAD = 64 - PROBE.size


@dataclass(frozen=True)
class Flow:
    name: str
    src_ns: int | str | None
    src: str
    dst_ns: int | str | None
    dst: str


@dataclass
class FlowResult:
    name: str
    sent: int = 0
    delivered: int = 0
    answered: int = 0
    rtts_ms: list[float] = field(default_factory=list)

    @property
    def rtt_avg_ms(self) -> float | None:
        return sum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else None

    @property
    def round_trip_loss(self) -> float:
        return 1 - self.answered / self.sent if self.sent else 0.0

    def one_way_loss(self) -> float:
        """Per-direction loss estimate, assuming both directions lose alike:
        (1 - p)^2 = answered / sent."""
        if not self.sent:
            return 0.0
        return 1 - (self.answered / self.sent) ** 0.5


def _udp_socket(ns, address: str) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((address, 0))
        s.setblocking(False)
        return s

    return in_netns(ns, make)


def probe_flows(flows: list[Flow], count: int = 20, interval: float = 0.01,
                linger: float = 1.0) -> list[FlowResult]:
    """Send `count` probes per flow, `interval` s apart (all flows interleaved), then
    wait for stragglers until every probe is answered or nothing has arrived for
    `linger` s (counted from the last packet, so a loop that was itself descheduled
    still reads what waited for it before giving up)."""
    senders, echoes, results = [], [], [FlowResult(f.name) for f in flows]
    try:
        for f in flows:
            echoes.append(_udp_socket(f.dst_ns, f.dst))
            senders.append(_udp_socket(f.src_ns, f.src))
        targets = [(f.dst, e.getsockname()[1]) for f, e in zip(flows, echoes)]
        by_fd = {s.fileno(): ("sender", i, s) for i, s in enumerate(senders)}
        by_fd.update({e.fileno(): ("echo", i, e) for i, e in enumerate(echoes)})
        waiter = ReadWaiter(by_fd)  # poll(2): socket descriptors may be above 1023
        next_send, seq = time.monotonic(), 0
        end = None
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                for i, s in enumerate(senders):
                    try:
                        s.sendto(PROBE.pack(i, seq, time.monotonic_ns()) + bytes(PAD), targets[i])
                        results[i].sent += 1
                    except OSError:
                        results[i].sent += 1  # e.g. no route: counts as sent, never answered
                seq += 1
                next_send += interval
                if seq == count:
                    end = time.monotonic() + linger
            if end is not None and all(r.answered == r.sent for r in results):
                break
            wake = next_send if seq < count else end
            readable = waiter.wait(max(0.0, wake - time.monotonic()))
            if end is not None:
                if not readable and time.monotonic() >= end:
                    break
                if readable:
                    end = time.monotonic() + linger
            for fd in readable:
                role, i, sock = by_fd[fd]
                while True:
                    try:
                        data, peer = sock.recvfrom(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # ICMP errors surface here (e.g. unreachable)
                        break
                    if len(data) < PROBE.size:
                        continue
                    flow, _seq, t_ns = PROBE.unpack_from(data)
                    if flow != i:
                        continue
                    if role == "echo":
                        results[i].delivered += 1
                        try:
                            sock.sendto(data, peer)
                        except OSError:
                            pass
                    else:
                        results[i].answered += 1
                        results[i].rtts_ms.append((time.monotonic_ns() - t_ns) / 1e6)
    finally:
        for s in senders + echoes:
            s.close()
    return results


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
