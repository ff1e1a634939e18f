"""TcpEcho.wait_echo: block until a message sent after a moment has come back (the
faults experiment's "TCP back" after a restart), on loopback without root."""
from __future__ import annotations

import socket
import time

from mip6bench.measure.streams import TcpEcho


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def test_wait_echo_returns_the_arrival_of_a_later_message_or_none():
    echo = TcpEcho(None, "::1", None, "::1", free_port(), interval=0.01).start()
    try:
        t0 = time.monotonic_ns()
        back = echo.wait_echo(t0, 5.0)
        assert back is not None and back >= t0
        # asked later, it is still the first message sent after t0 that came back
        assert echo.wait_echo(time.monotonic_ns(), 5.0) is not None
        assert echo.wait_echo(t0, 0.1) == back
        # nothing sent in the future has come back
        assert echo.wait_echo(time.monotonic_ns() + 3_600_000_000_000, 0.1) is None
    finally:
        result = echo.finish()
    assert echo.survived() and result.echoed == result.sent
