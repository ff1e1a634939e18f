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
import threading
import time
from dataclasses import dataclass, field
from typing import Any

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


class ProbeSide:
    """The ends of some flows that live on one server: echo sockets (flow index, node,
    address) and sender sockets (flow index, node, address), served by one poll(2) loop.
    `probe_flows` makes one per server (a server's helper runs its own: the same class),
    gives every sender its flow's target, starts them all, waits until every side has
    sent and heard back what it will, and closes them (an echo keeps answering until
    then: its sender may be on another server)."""

    def __init__(self, echoes: list[tuple[int, Any, str]], senders: list[tuple[int, Any, str]]):
        self.echoes: dict[int, socket.socket] = {}
        self.senders: dict[int, socket.socket] = {}
        self.results: dict[int, dict] = {}
        self._done = threading.Event()     # its senders are done (sent, answered or given up)
        self._release = threading.Event()  # every side is: stop serving the echoes
        self._thread: threading.Thread | None = None
        try:
            for i, ns, address in echoes:
                self.echoes[i] = _udp_socket(ns, address)
            for i, ns, address in senders:
                self.senders[i] = _udp_socket(ns, address)
        except BaseException:
            self._close()
            raise
        for i in [*self.echoes, *self.senders]:
            self.results[i] = {"sent": 0, "delivered": 0, "answered": 0, "rtts_ms": []}

    def ports(self) -> dict[int, int]:
        """The echo sockets' ports, by flow."""
        return {i: s.getsockname()[1] for i, s in self.echoes.items()}

    def start(self, targets: dict[int, tuple[str, int]], count: int, interval: float,
              linger: float) -> "ProbeSide":
        missing = set(self.senders) - set(targets)
        if missing:
            raise ValueError(f"no target for flow(s) {sorted(missing)}")
        self._thread = threading.Thread(target=self._run, args=(targets, count, interval, linger),
                                        name="probe", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        """Whether its senders are done (within `timeout` s)."""
        return self._done.wait(timeout)

    def close(self, timeout: float = 10.0) -> dict[int, dict]:
        """Stop serving, close the sockets; each flow's figures on this side."""
        self._release.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()
        return self.results

    def _close(self) -> None:
        for s in [*self.echoes.values(), *self.senders.values()]:
            s.close()

    def _run(self, targets, count: int, interval: float, linger: float) -> None:
        """Send `count` probes per flow, `interval` s apart (all flows interleaved), then
        wait for stragglers until every probe is answered or nothing has arrived for
        `linger` s (counted from the last packet, so a loop that was itself descheduled
        still reads what waited for it before giving up); echo what arrives meanwhile
        and after, until released."""
        results = self.results
        by_fd = {s.fileno(): ("sender", i, s) for i, s in self.senders.items()}
        by_fd.update({e.fileno(): ("echo", i, e) for i, e in self.echoes.items()})
        waiter = ReadWaiter(by_fd)  # poll(2): socket descriptors may be above 1023
        senders = list(self.senders.items())
        next_send, seq = time.monotonic(), 0
        end = None if senders else time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if senders and seq < count and now >= next_send:
                    for i, s in senders:
                        results[i]["sent"] += 1   # no route: counts as sent, never answered
                        try:
                            s.sendto(PROBE.pack(i, seq, time.monotonic_ns()) + bytes(PAD), targets[i])
                        except OSError:
                            pass
                    seq += 1
                    next_send += interval
                    if seq == count:
                        end = time.monotonic() + linger
                if end is not None and not self._done.is_set() and \
                        all(results[i]["answered"] == results[i]["sent"] for i, _ in senders):
                    self._done.set()
                if self._release.is_set() or (self._done.is_set() and not self.echoes):
                    return
                if self._done.is_set():
                    wake = 0.05     # serving echoes until released
                else:
                    wake = max(0.0, (next_send if seq < count else end) - time.monotonic())
                readable = waiter.wait(min(wake, 0.05) if self.echoes else wake)
                if end is not None and not self._done.is_set():
                    if not readable and time.monotonic() >= end:
                        self._done.set()
                    elif readable:
                        end = time.monotonic() + linger
                for fd in readable:
                    self._read(*by_fd[fd])
        finally:
            self._done.set()

    def _read(self, role: str, i: int, sock: socket.socket) -> None:
        result = self.results[i]
        while True:
            try:
                data, peer = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP errors surface here (e.g. unreachable)
                return
            if len(data) < PROBE.size:
                continue
            flow, _seq, t_ns = PROBE.unpack_from(data)
            if flow != i:
                continue
            if role == "echo":
                result["delivered"] += 1
                try:
                    sock.sendto(data, peer)
                except OSError:
                    pass
            else:
                result["answered"] += 1
                result["rtts_ms"].append((time.monotonic_ns() - t_ns) / 1e6)


def probe_flows(flows: list[Flow], count: int = 20, interval: float = 0.01,
                linger: float = 1.0) -> list[FlowResult]:
    """Send `count` probes per flow, `interval` s apart (all flows interleaved), then
    wait for stragglers until every probe is answered or nothing has arrived for
    `linger` s. An end on another server (RemoteNs) is served by that server's helper
    (a ProbeSide there): RTTs are taken on the sender's clock alone, so no clock offset
    enters them."""
    from mip6bench.measure.remote import RemoteProbeSide, place_of

    places: dict[Any, tuple[list, list]] = {}
    for i, f in enumerate(flows):
        places.setdefault(place_of(f.dst_ns), ([], []))[0].append((i, f.dst_ns, f.dst))
        places.setdefault(place_of(f.src_ns), ([], []))[1].append((i, f.src_ns, f.src))
    sides = []
    try:
        for place, (echoes, senders) in places.items():
            sides.append(ProbeSide(echoes, senders) if place is None
                         else RemoteProbeSide(place, echoes, senders))
        targets = {}
        for side in sides:
            targets.update({i: (flows[i].dst, port) for i, port in side.ports().items()})
        for side in sides:
            side.start({i: targets[i] for i in side.senders}, count, interval, linger)
        # Every side has sent and heard back (a lost probe: given up after `linger` idle).
        for side in sides:
            side.wait(count * interval + linger + 60 + 10 * linger)
    finally:
        figures = [side.close() for side in sides]
    results = [FlowResult(f.name) for f in flows]
    for side, numbers in zip(sides, figures):
        for i, r in numbers.items():
            if i in side.senders:
                results[i].sent, results[i].answered = r["sent"], r["answered"]
                results[i].rtts_ms = list(r["rtts_ms"])
            if i in side.echoes:
                results[i].delivered = r["delivered"]
    return results


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
