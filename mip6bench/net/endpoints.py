"""Traffic endpoints in a node's network namespace: the sockets experiments put into
nodes, each served by its own thread or poll loop. The controller runs them for nodes
on its own kernel (mip6bench.measure.streams, .probe compose them); a cluster server's
helper (mip6bench.testbed.serverd) runs the same classes for nodes on its server.

`UdpReceiver`: a UDP stream's receiving end (sequence numbers, kernel receive
timestamps). `TcpEchoServer`: one TCP connection's echoing end. `ProbeSide`: the echo
and sender sockets of the UDP probe flows whose ends are on one server.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from mip6bench.fdwait import ReadWaiter
from mip6bench.net.netns import in_netns
from mip6bench.threads import Thread

DATAGRAM = struct.Struct("!IQ")   # sequence number, send time (CLOCK_MONOTONIC ns)
TIMESPEC = struct.Struct("@qq")   # struct timespec of SCM_TIMESTAMPNS (64-bit Linux)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
DATAGRAM_SIZE = 64
MESSAGE = struct.Struct("!IQ")
MESSAGE_SIZE = 64


def _socket(ns, kind: int, bind: tuple | None = None) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if kind == socket.SOCK_DGRAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        if bind is not None:
            s.bind(bind)
        return s

    return in_netns(ns, make)


PROBE = struct.Struct("!IIQ")  # flow index, sequence number, send time (ns)
PAD = 64 - PROBE.size

class Arrivals:
    """What a UdpStream's receiver records: (sequence number, arrival ns) in order of
    arrival, and a wait for the first arrival after a moment."""

    def __init__(self):
        self.kernel_stamps = 0   # arrivals timed by the kernel (the rest: by the thread)
        self.arrivals: list[tuple[int, int]] = []
        self._arrived = threading.Condition()

    def add(self, arrivals: list[tuple[int, int]]) -> None:
        with self._arrived:
            self.arrivals.extend(arrivals)
            self._arrived.notify_all()

    def wait_arrivals(self, count: int, timeout: float) -> bool:
        """Until `count` datagrams have arrived (False if not within `timeout`)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.arrivals) >= count, timeout)

    def first_arrival_after(self, t_ns: int, timeout: float) -> int | None:
        with self._arrived:
            self._arrived.wait_for(lambda: self.arrivals and self.arrivals[-1][1] > t_ns, timeout)
            return next((t for _seq, t in self.arrivals if t > t_ns), None)


class UdpReceiver(Arrivals):
    """The receiving end of a UdpStream, in node `ns`: every arrival (sequence number,
    CLOCK_MONOTONIC ns of this kernel) in `arrivals`, timed by the kernel where it can."""

    def __init__(self, ns, address: str, port: int):
        super().__init__()
        self.sock = _socket(ns, socket.SOCK_DGRAM, (address, port))
        self.sock.settimeout(0.1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._stop = threading.Event()
        self._receiving_until = float("inf")
        self._thread = Thread(target=self._receive, name="udp-recv", daemon=True)

    def start(self) -> "UdpReceiver":
        self._thread.start()
        return self

    def _receive(self) -> None:
        # SO_TIMESTAMPNS stamps with CLOCK_REALTIME; the offset to CLOCK_MONOTONIC is
        # taken once (a stream lasts seconds; the testbed does not step the clock).
        offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.monotonic_ns()
        while not self._stop.is_set() or time.monotonic() < self._receiving_until:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(2048, 64)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic_ns()
            if len(data) >= DATAGRAM.size:
                stamp = kernel_stamp(ancdata)
                if stamp is not None:
                    now = stamp - offset
                    self.kernel_stamps += 1
                self.add([(DATAGRAM.unpack_from(data)[0], now)])

    def stop(self, linger: float = 0.5) -> None:
        """Let stragglers arrive for `linger` seconds, close."""
        self._receiving_until = time.monotonic() + linger
        self._stop.set()
        self._thread.join()
        self.sock.close()


class TcpEchoServer:
    """The server end of a TcpEcho, in node `ns`: accepts one connection and echoes what
    it reads until the client closes."""

    def __init__(self, ns, address: str, port: int, accept_s: float = 10.0):
        self.listener = _socket(ns, socket.SOCK_STREAM, (address, port))
        self.listener.listen(1)
        self.listener.settimeout(accept_s)
        self.conn: socket.socket | None = None
        self.error: str | None = None
        self.echoed = 0            # bytes
        self._thread = Thread(target=self._serve, name="tcp-echo", daemon=True)

    def start(self) -> "TcpEchoServer":
        self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            self.conn, _ = self.listener.accept()
            self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn.settimeout(None)
            while True:
                data = self.conn.recv(65536)
                if not data:
                    return
                self.conn.sendall(data)
                self.echoed += len(data)
        except OSError as exc:
            self.error = f"server: {exc}"

    def close(self, timeout: float = 10.0) -> dict:
        """Wait up to `timeout` s for the client's end (it closes first), close; what
        it did."""
        self._thread.join(timeout)
        for s in (self.conn, self.listener):
            if s is not None:
                s.close()
        return {"echoed_bytes": self.echoed, "error": self.error}


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
        self._thread = Thread(target=self._run, args=(targets, count, interval, linger),
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


def kernel_stamp(ancdata) -> int | None:
    """The SCM_TIMESTAMPNS receive time (CLOCK_REALTIME ns) in recvmsg's ancillary data."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None
