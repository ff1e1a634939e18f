"""runtime.udp.UdpSocket on loopback (no root): send errors name the destination; the
receive buffer is raised (never lowered) so a burst of signalling waits in the kernel
instead of being dropped (Udp6RcvbufErrors) while the agent is busy."""
import asyncio
import socket

from mip6bench.runtime.udp import RECEIVE_BUFFER, UdpSocket, grow_receive_buffer


def test_send_error_names_the_destination():
    """A failed send is reported once, with the destination in the message (errors such
    as EINVAL depend on it), and counted as not sent."""
    errors = []

    async def main():
        sock = UdpSocket.bind("::1", 0, lambda *a: None,
                              on_error=lambda what, exc: errors.append((what, exc)))
        try:
            return sock.send(b"x" * 7, "::1", 0)      # port 0: EINVAL from the kernel
        finally:
            sock.close()

    assert asyncio.run(main()) is False
    ((what, exc),) = errors
    assert what == "send" and exc.errno == 22
    assert "to [::1]:0, 7 bytes" in str(exc)


def _allowed() -> int:
    """What the socket can get: all of it with CAP_NET_ADMIN (SO_RCVBUFFORCE), else
    up to net.core.rmem_max (the kernel doubles the value asked for either way)."""
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, 33, RECEIVE_BUFFER)  # SO_RCVBUFFORCE
        return 2 * RECEIVE_BUFFER
    except OSError:
        with open("/proc/sys/net/core/rmem_max") as f:
            return 2 * min(RECEIVE_BUFFER, int(f.read()))
    finally:
        probe.close()


def test_bound_sockets_get_the_larger_receive_buffer():
    async def main():
        sock = UdpSocket.bind("::1", 0, lambda *a: None)
        try:
            return sock.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        finally:
            sock.close()

    default = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    before = default.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    default.close()
    got = asyncio.run(main())
    assert got == max(before, _allowed())


def test_never_lowered():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        first = grow_receive_buffer(s, 1 << 16)
        assert grow_receive_buffer(s, 1 << 12) == first
    finally:
        s.close()
