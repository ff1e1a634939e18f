"""TcpEcho.finish after a stall: each end of a TCP connection that lost its segments
for a while retries in exponential backoff, so it tries again about as long after the
path came back as the stall had lasted. A fixed drain shorter than that called a
connection that was about to resume broken (the handover experiment with its MN on the
TCG VM: a 24.8 s outage, 8 of 846 messages back, no error on either end; here on this
machine, a 32 s layer-2 gap: 40 of 729, the CN's next retransmission 32 s away).

On loopback, root-free: the echo server stands for the stalled path. It holds what it
reads from a moment on, and gives it back only well after the client has stopped
sending, as a connection in backoff would; finish() must still be waiting then."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from mip6bench.measure import streams
from mip6bench.measure.streams import TCP_RTO_MAX_S, TcpEcho, drain_deadline
from mip6bench.net.endpoints import MESSAGE_SIZE, TcpEchoServer

HELD = 40           # messages the server holds before the client stops (2 s at 50 ms)
RESUME_AFTER = 2.0  # s after the last of them: beyond a 1 s drain, within 1 s + the stall


class StallingEchoServer(TcpEchoServer):
    """Echoes until `stall` is set, then holds what it reads; once HELD messages are
    held it sets `held`, and RESUME_AFTER seconds later sends them all and echoes on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stall, self.held = threading.Event(), threading.Event()

    def _serve(self) -> None:
        self.conn, _ = self.listener.accept()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        held, resume_at = b"", None
        while True:
            if resume_at is not None:
                self.conn.settimeout(max(0.001, resume_at - time.monotonic()))
            try:
                data = self.conn.recv(65536)
            except (TimeoutError, BlockingIOError):
                data = None
            if resume_at is not None and time.monotonic() >= resume_at:
                self.conn.settimeout(None)
                self.conn.sendall(held)
                self.echoed += len(held)
                held, resume_at = b"", None
                self.stall.clear()
            if data is None:
                continue
            if not data:
                return
            if self.stall.is_set():
                held += data
                if len(held) >= HELD * MESSAGE_SIZE and not self.held.is_set():
                    resume_at = time.monotonic() + RESUME_AFTER
                    self.held.set()
                continue
            self.conn.sendall(data)
            self.echoed += len(data)


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def test_drain_lasts_as_long_again_as_the_stall_capped_by_tcp_rto_max():
    assert drain_deadline(100.0, 99.9, 10.0) == pytest.approx(110.1)     # flowing: the timeout
    assert drain_deadline(100.0, 68.0, 10.0) == pytest.approx(142.0)     # a 32 s stall
    assert drain_deadline(1000.0, 0.0, 10.0) == pytest.approx(1000.0 + TCP_RTO_MAX_S + 10.0)
    assert drain_deadline(100.0, 100.5, 10.0) == pytest.approx(110.0)    # progress after start


def test_finish_waits_for_a_connection_that_resumes_after_a_stall(monkeypatch):
    servers = []

    def server(*args, **kwargs):
        servers.append(StallingEchoServer(*args, **kwargs))
        return servers[-1]

    monkeypatch.setattr(streams, "TcpEchoServer", server)
    echo = TcpEcho(None, "::1", None, "::1", free_port(), interval=0.05).start()
    try:
        assert echo.wait_echo(time.monotonic_ns(), 5.0) is not None
        servers[0].stall.set()
        assert servers[0].held.wait(20.0), "the server never held its messages"
    finally:
        result = echo.finish(1.0)
    # Nothing came back for 2 s, then the client stopped; the held messages come back
    # RESUME_AFTER (2 s) later, after a fixed 1 s drain, within 1 s + the stall.
    assert result.error is None
    assert result.echoed == result.sent > HELD, result
    assert echo.survived()
    assert result.max_gap_ms >= 1000 * RESUME_AFTER
