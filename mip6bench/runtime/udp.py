"""UDP sockets on the asyncio loop, for agents that drive sans-I/O cores.

    sock = UdpSocket.bind("::", 716, on_datagram, on_error=agent.count_error)
    sock.send(data, "2001:db8:1::2", 716)      # errors are reported, never raised
    sock.close()

`on_datagram(data, src, port)` runs on the loop for every datagram (the socket is
drained on each readiness event); `ancillary=True` gives `on_datagram(data, src, port,
ancdata)` with recvmsg's ancillary data (the caller sets the IPV6_RECV* options). An
exception in the handler and an OSError while sending go to `on_error(what, exc)` and
the socket keeps working: one bad datagram or an unreachable peer never stops an agent.

Every socket's receive buffer is raised to RECEIVE_BUFFER (a limit, not memory taken up
front): with the kernel's default (~208 KB) a firewall agent busy with a burst of 50 MNs'
NSIS signalling dropped 137 datagrams on its GIST port (Udp6RcvbufErrors), among them
GIST Confirms, whose sessions then never came up (their NSLP data dropped for "no
routing state"). SO_RCVBUFFORCE (agents run as root) passes net.core.rmem_max; without
CAP_NET_ADMIN SO_RCVBUF gets what rmem_max allows.
"""
from __future__ import annotations

import asyncio
import socket
from typing import Callable

MAX_DATAGRAM = 65535
RECEIVE_BUFFER = 4 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def grow_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> int:
    """Raise sock's receive buffer to `size` bytes (never lower it); the size it got."""
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError:  # no CAP_NET_ADMIN: as far as net.core.rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class UdpSocket:
    def __init__(self, sock: socket.socket, on_datagram: Callable[..., None], *,
                 on_error: Callable[[str, BaseException], None] | None = None,
                 ancillary: bool = False, ancbufsize: int = 1024):
        self.sock = sock
        self.sock.setblocking(False)
        grow_receive_buffer(sock)
        self.on_datagram = on_datagram
        self.on_error = on_error or (lambda what, exc: None)
        self.ancillary = ancillary
        self.ancbufsize = ancbufsize
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.received = 0
        self.sent = 0

    @classmethod
    def bind(cls, host: str, port: int, on_datagram: Callable[..., None], *,
             reuse: bool = False, device: str | None = None, **kw) -> "UdpSocket":
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            if reuse:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if device:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return cls(sock, on_datagram, **kw)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _readable(self) -> None:
        while True:
            try:
                if self.ancillary:
                    data, anc, _flags, addr = self.sock.recvmsg(MAX_DATAGRAM, self.ancbufsize)
                else:
                    data, addr = self.sock.recvfrom(MAX_DATAGRAM)
                    anc = None
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # e.g. ICMP errors reported on the socket
                self.on_error("receive", exc)
                return
            self.received += 1
            try:
                if self.ancillary:
                    self.on_datagram(data, addr[0], addr[1], anc)
                else:
                    self.on_datagram(data, addr[0], addr[1])
            except Exception as exc:  # a handler bug must not stop the agent
                self.on_error("handler", exc)

    def send(self, data: bytes, dst: str, port: int) -> bool:
        try:
            self.sock.sendto(data, (dst, port))
        except OSError as exc:   # the destination goes into the message: errors such as
            # EINVAL depend on it (port 0, a path MTU, a route type), not on the socket
            self.on_error("send", OSError(exc.errno, f"{exc.strerror} (to [{dst}]:{port}, "
                                                     f"{len(data)} bytes)"))
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
