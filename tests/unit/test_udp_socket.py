"""runtime.udp.UdpSocket on loopback (no root)."""
import asyncio

from mip6bench.runtime.udp import UdpSocket


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
