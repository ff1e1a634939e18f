"""Traffic that runs through an experiment, driven from the controller process.

Sockets are opened inside the nodes' namespaces (they keep their namespace for life) and
served by threads, so the controller can move nodes meanwhile.

`UdpStream`: a constant-rate stream of numbered datagrams (sequence number, send time)
from one node to another; the receiver records every arrival with the kernel's receive
timestamp (SO_TIMESTAMPNS, taken when the datagram reached the socket, not when the
thread got to it), on CLOCK_MONOTONIC like every event. `outage(detach_ns)` gives
disruption and loss around a handover, split by sequence number.

`TcpEcho`: one TCP connection, client on one node, server on the other (e.g. bound to a
mobile node's home address); the client sends a small numbered message every
`interval` seconds and the server echoes it. `survived()` is True when every message
came back in order and the connection never failed. `finish()` waits for what is in
flight as long as TCP itself may take to resume after a stall (`drain_deadline`).
"""
from __future__ import annotations

import bisect
import socket
import threading
import time
from dataclasses import dataclass, field

from mip6bench.net.endpoints import (  # noqa: F401 (kernel_stamp, SO_TIMESTAMPNS: imported from here)
    DATAGRAM, DATAGRAM_SIZE, MESSAGE, MESSAGE_SIZE, SO_TIMESTAMPNS, TcpEchoServer, UdpReceiver, _socket,
    kernel_stamp)
from mip6bench.threads import Thread


# Linux's cap on one retransmission interval (TCP_RTO_MAX, include/net/tcp.h).
TCP_RTO_MAX_S = 120.0


def drain_deadline(start: float, last_progress: float, timeout: float) -> float:
    """Until when (monotonic s) to wait, from `start`, for a TCP connection's data in
    flight when it last made progress (an echo came back) at `last_progress`.

    After a stall (an outage: a handover's DAD or layer-2 gap) both ends sit in
    retransmission backoff: an end whose oldest unacknowledged segment went out at s
    retries at s + RTO (2^k - 1), so at any time t its next try comes within t - s + RTO
    (and never more than TCP_RTO_MAX later). Every such s is after the last progress,
    give or take a round trip; so from `start` each end tries again within the stall so
    far plus one RTO, and `timeout` covers that RTO and the round trips after. A fixed
    drain instead ends, after any outage longer than itself, before the connection's
    next try, and a connection that was about to resume is reported broken."""
    stalled = min(max(0.0, start - last_progress), TCP_RTO_MAX_S)
    return start + stalled + timeout


def is_remote(ns) -> bool:
    """A node on another server (mip6bench.testbed.remote_endpoints.RemoteNs): its end of a flow
    runs in that server's helper."""
    return getattr(ns, "helper", None) is not None


class UdpStream:
    """`rate` datagrams per second from (src_ns, src) to (dst_ns, dst, port). A
    destination on another server (RemoteNs) has its receiver run by that server's
    helper, its arrival times moved onto this clock (`receiver.clock`: the offset and
    its uncertainty)."""

    def __init__(self, src_ns, src: str, dst_ns, dst: str, port: int, rate: float):
        if rate <= 0:
            raise ValueError("rate must be positive")
        if is_remote(src_ns):
            raise ValueError("a UdpStream sends from a node on the controller's server")
        self.rate = rate
        if is_remote(dst_ns):
            from mip6bench.testbed.remote_endpoints import RemoteUdpReceiver
            self.receiver = RemoteUdpReceiver(dst_ns, dst, port)
        else:
            self.receiver = UdpReceiver(dst_ns, dst, port)
        self.arrivals = self.receiver.arrivals           # (seq, arrival ns), the receiver's list
        try:
            self.sender = _socket(src_ns, socket.SOCK_DGRAM, (src, 0))
        except BaseException:
            self.receiver.stop(0)
            raise
        self.target = (dst, port)
        self.sent: list[int] = []                        # send time of seq i
        self.send_errors = 0
        self._stop = threading.Event()
        self._thread = Thread(target=self._send, name="udp-send", daemon=True)

    @property
    def kernel_stamps(self) -> int:
        return self.receiver.kernel_stamps

    def start(self) -> "UdpStream":
        self.receiver.start()
        self._thread.start()
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

    def first_arrival_after(self, t_ns: int, timeout: float) -> int | None:
        """The arrival time of the first datagram that arrived after `t_ns`, waiting up to
        `timeout` seconds for it (None: nothing arrived)."""
        return self.receiver.first_arrival_after(t_ns, timeout)

    def stop(self, linger: float = 0.5) -> None:
        """Stop sending, let stragglers arrive for `linger` seconds, close."""
        self._stop.set()
        self._thread.join()
        self.sender.close()
        self.receiver.stop(linger)

    def outage(self, detach_ns: int) -> dict | None:
        """The interruption around a handover whose old link went down at `detach_ns`,
        split by sequence number: the last datagram through the old path is the highest
        sequence number sent before the detach that arrived; the first through the new
        path is the next sequence number that arrived; loss is the sequence numbers
        between them. Disruption is the gap in delivery up to the new path's first
        arrival (from the old path's last arrival before it). None: nothing arrived on
        one side."""
        return outage(self.arrivals, self.sent, detach_ns)


def outage(arrivals: list[tuple[int, int]], sent: list[int], detach_ns: int) -> dict | None:
    """UdpStream.outage on recorded data: arrivals (seq, arrival ns), sent[seq] = send ns."""
    received = dict(arrivals)
    before = [seq for seq in received if seq < len(sent) and sent[seq] < detach_ns]
    if not before:
        return None
    last = max(before)
    after = [seq for seq in received if seq > last]
    if not after:
        return None
    first = min(after)
    # The old path's last delivery before the new path's first (a straggler of the old
    # path arriving later does not shorten the gap in delivery).
    old = [received[seq] for seq in received if seq <= last and received[seq] <= received[first]]
    if not old:
        return None
    return {"disruption_ms": round((received[first] - max(old)) / 1e6, 3),
            "lost_packets": first - last - 1,
            "last_before_ns": max(old), "first_after_ns": received[first],
            "last_seq": last, "first_seq": first}


@dataclass
class TcpEchoResult:
    sent: int = 0
    echoed: int = 0
    out_of_order: int = 0
    error: str | None = None
    max_gap_ms: float = 0.0
    rtts_ms: list[float] = field(default_factory=list)


class TcpEcho:
    """A TCP connection from (client_ns, client) to (server_ns, server, port). A server
    on another server (RemoteNs) is that server's helper's TcpEchoServer."""

    def __init__(self, client_ns, client: str, server_ns, server: str, port: int, interval: float = 0.01):
        if is_remote(client_ns):
            raise ValueError("a TcpEcho's client runs on the controller's server")
        self.interval = interval
        if is_remote(server_ns):
            from mip6bench.testbed.remote_endpoints import RemoteTcpEchoServer
            self.server = RemoteTcpEchoServer(server_ns, server, port)
        else:
            self.server = TcpEchoServer(server_ns, server, port).start()
        try:
            self.client = _socket(client_ns, socket.SOCK_STREAM, (client, 0))
            self.client.settimeout(10)
            self.client.connect((server, port))
            self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connected_ns = time.monotonic_ns()
        except BaseException:
            self.server.close(0)
            raise
        self.result = TcpEchoResult()
        self._stop = threading.Event()
        self._echoed = threading.Condition()
        self.echoes: list[tuple[int, int]] = []   # (send ns, arrival ns) of each message back
        self._threads = [Thread(target=self._send, name="tcp-send", daemon=True),
                         Thread(target=self._read, name="tcp-read", daemon=True)]

    def start(self) -> "TcpEcho":
        for t in self._threads:
            t.start()
        return self

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
                    with self._echoed:
                        self.echoes.append((sent_ns, now))
                        self._echoed.notify_all()
                self.result.max_gap_ms = max(self.result.max_gap_ms, (now - last) / 1e6)
                last = now
        except OSError as exc:
            if not self._stop.is_set():
                self._fail(f"client receive: {exc}")

    def wait_echo(self, sent_after_ns: int, timeout: float) -> int | None:
        """Block until a message sent at or after `sent_after_ns` (CLOCK_MONOTONIC) has
        come back; the arrival time (ns) of the first such message, or None after
        `timeout` seconds (or when the connection failed)."""
        def first():
            i = bisect.bisect_left(self.echoes, (sent_after_ns, 0))
            return self.echoes[i][1] if i < len(self.echoes) else None

        with self._echoed:
            if not self._echoed.wait_for(lambda: first() is not None or self.result.error is not None,
                                         timeout):
                return None
            return first()

    def _fail(self, why: str) -> None:
        if self.result.error is None:
            self.result.error = why
        with self._echoed:
            self._echoed.notify_all()

    def _last_progress(self) -> float:
        """When (monotonic s) the connection last made progress: the last echo back,
        else the connection's start."""
        return (self.echoes[-1][1] if self.echoes else self._connected_ns) / 1e9

    def finish(self, timeout: float = 10.0) -> TcpEchoResult:
        """Stop sending, wait for every echo, close cleanly. The wait ends `timeout`
        seconds after the last echo, and after a stall not before either end's next
        retransmission can have come (drain_deadline): at least as long again as the
        stall so far, at most TCP_RTO_MAX_S more."""
        self._stop.set()
        self._threads[0].join()
        with self._echoed:
            start = time.monotonic()
            stalled_until = drain_deadline(start, self._last_progress(), timeout)
            while True:
                deadline = max(stalled_until, self._last_progress() + timeout)
                if self.result.echoed >= self.result.sent or self.result.error is not None \
                        or time.monotonic() >= deadline:
                    break
                self._echoed.wait(deadline - time.monotonic())
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        server = self.server.close(max(0.1, deadline - time.monotonic()))
        if server.get("error"):
            self._fail(server["error"])
        self.client.close()
        self._threads[1].join(timeout=1)
        return self.result

    def survived(self) -> bool:
        r = self.result
        return r.error is None and r.sent > 0 and r.echoed == r.sent and r.out_of_order == 0
