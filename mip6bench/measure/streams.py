"""Traffic that runs through an experiment, driven from the controller process.

Sockets are opened inside the nodes' namespaces (they keep their namespace for life) and
served by threads, so the controller can move nodes meanwhile.

`UdpStream`: a constant-rate stream of numbered datagrams (sequence number, send time)
from one node to another; the receiver records every arrival. `outages(after_ns)` and
the arrival list give disruption and loss around a handover.

`TcpEcho`: one TCP connection, client on one node, server on the other (e.g. bound to a
mobile node's home address); the client sends a small numbered message every
`interval` seconds and the server echoes it. `survived()` is True when every message
came back in order and the connection never failed.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from mip6bench.net.netns import in_netns

DATAGRAM = struct.Struct("!IQ")   # sequence number, send time (CLOCK_MONOTONIC ns)
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


class UdpStream:
    """`rate` datagrams per second from (src_ns, src) to (dst_ns, dst, port)."""

    def __init__(self, src_ns, src: str, dst_ns, dst: str, port: int, rate: float):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.receiver = _socket(dst_ns, socket.SOCK_DGRAM, (dst, port))
        self.receiver.settimeout(0.1)
        self.sender = _socket(src_ns, socket.SOCK_DGRAM, (src, 0))
        self.target = (dst, port)
        self.sent: list[int] = []                        # send time of seq i
        self.arrivals: list[tuple[int, int]] = []        # (seq, arrival ns)
        self.send_errors = 0
        self._stop = threading.Event()
        self._arrived = threading.Condition()
        self._receiving_until = float("inf")
        self._threads = [threading.Thread(target=self._send, name="udp-send", daemon=True),
                         threading.Thread(target=self._receive, name="udp-recv", daemon=True)]

    def start(self) -> "UdpStream":
        for t in self._threads:
            t.start()
        return self

    def _send(self) -> None:
        interval = 1 / self.rate
        next_at = time.monotonic()
        seq = 0
        pad = bytes(DATAGRAM_SIZE - DATAGRAM.size)
        while not self._stop.is_set():
            now_ns = time.monotonic_ns()
            try:
                self.sender.sendto(DATAGRAM.pack(seq, now_ns) + pad, self.target)
            except OSError:
                self.send_errors += 1
            self.sent.append(now_ns)
            seq += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.1:  # far behind (the controller stalled): do not burst
                next_at = time.monotonic()

    def _receive(self) -> None:
        while not self._stop.is_set() or time.monotonic() < self._receiving_until:
            try:
                data = self.receiver.recv(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) >= DATAGRAM.size:
                with self._arrived:
                    self.arrivals.append((DATAGRAM.unpack_from(data)[0], time.monotonic_ns()))
                    self._arrived.notify_all()

    def first_arrival_after(self, t_ns: int, timeout: float) -> int | None:
        """The arrival time of the first datagram that arrived after `t_ns`, waiting up to
        `timeout` seconds for it (None: nothing arrived)."""
        with self._arrived:
            self._arrived.wait_for(lambda: self.arrivals and self.arrivals[-1][1] > t_ns, timeout)
            return next((t for _seq, t in self.arrivals if t > t_ns), None)

    def stop(self, linger: float = 0.5) -> None:
        """Stop sending, let stragglers arrive for `linger` seconds, close."""
        self._stop.set()
        self._threads[0].join()
        self._receiving_until = time.monotonic() + linger
        self._threads[1].join()
        self.sender.close()
        self.receiver.close()

    def outage(self, attach_ns: int) -> dict | None:
        """The interruption around a handover whose new link came up at `attach_ns`:
        from the last arrival before it to the first after it, and the sequence numbers
        lost in between."""
        before = [a for a in self.arrivals if a[1] <= attach_ns]
        after = [a for a in self.arrivals if a[1] > attach_ns]
        if not before or not after:
            return None
        last, first = before[-1], after[0]
        return {"disruption_ms": round((first[1] - last[1]) / 1e6, 3),
                "lost_packets": max(0, first[0] - last[0] - 1),
                "last_before_ns": last[1], "first_after_ns": first[1]}


@dataclass
class TcpEchoResult:
    sent: int = 0
    echoed: int = 0
    out_of_order: int = 0
    error: str | None = None
    max_gap_ms: float = 0.0
    rtts_ms: list[float] = field(default_factory=list)


class TcpEcho:
    """A TCP connection from (client_ns, client) to (server_ns, server, port)."""

    def __init__(self, client_ns, client: str, server_ns, server: str, port: int, interval: float = 0.01):
        self.interval = interval
        self.listener = _socket(server_ns, socket.SOCK_STREAM, (server, port))
        self.listener.listen(1)
        self.client = _socket(client_ns, socket.SOCK_STREAM, (client, 0))
        self.client.settimeout(10)
        self.client.connect((server, port))
        self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.listener.settimeout(10)
        self.server, _ = self.listener.accept()
        self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.result = TcpEchoResult()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._echo, name="tcp-echo", daemon=True),
                         threading.Thread(target=self._send, name="tcp-send", daemon=True),
                         threading.Thread(target=self._read, name="tcp-read", daemon=True)]

    def start(self) -> "TcpEcho":
        for t in self._threads:
            t.start()
        return self

    def _echo(self) -> None:
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    return
                self.server.sendall(data)
        except OSError as exc:
            self._fail(f"server: {exc}")

    def _send(self) -> None:
        seq = 0
        pad = bytes(MESSAGE_SIZE - MESSAGE.size)
        try:
            while not self._stop.is_set():
                self.client.sendall(MESSAGE.pack(seq, time.monotonic_ns()) + pad)
                self.result.sent += 1
                seq += 1
                self._stop.wait(self.interval)
        except OSError as exc:
            self._fail(f"client send: {exc}")

    def _read(self) -> None:
        buf = b""
        expected = 0
        last = time.monotonic_ns()
        self.client.settimeout(None)
        try:
            while True:
                chunk = self.client.recv(65536)
                if not chunk:
                    if not self._stop.is_set():
                        self._fail("connection closed by the peer")
                    return
                buf += chunk
                now = time.monotonic_ns()
                while len(buf) >= MESSAGE_SIZE:
                    seq, sent_ns = MESSAGE.unpack_from(buf)
                    buf = buf[MESSAGE_SIZE:]
                    if seq != expected:
                        self.result.out_of_order += 1
                    expected = seq + 1
                    self.result.echoed += 1
                    self.result.rtts_ms.append((now - sent_ns) / 1e6)
                self.result.max_gap_ms = max(self.result.max_gap_ms, (now - last) / 1e6)
                last = now
        except OSError as exc:
            if not self._stop.is_set():
                self._fail(f"client receive: {exc}")

    def _fail(self, why: str) -> None:
        if self.result.error is None:
            self.result.error = why

    def finish(self, timeout: float = 10.0) -> TcpEchoResult:
        """Stop sending, wait up to `timeout` for every echo, close cleanly."""
        self._stop.set()
        self._threads[1].join()
        deadline = time.monotonic() + timeout
        while self.result.echoed < self.result.sent and self.result.error is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._threads[0].join(timeout=max(0.1, deadline - time.monotonic()))
        for s in (self.client, self.server, self.listener):
            s.close()
        self._threads[2].join(timeout=1)
        return self.result

    def survived(self) -> bool:
        r = self.result
        return r.error is None and r.sent > 0 and r.echoed == r.sent and r.out_of_order == 0
