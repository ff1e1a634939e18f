"""Sockets for Mobility Header signalling and for whole IPv6 packets built in user space.

`MHSocket` receives Mobility Headers the kernel delivers normally (no Home Address option,
no type 2 routing header: those arrive on a PacketTap, see net/intercept.py). It is a raw
socket for protocol 135 with IPV6_CHECKSUM at offset 4, so the kernel verifies the MH
checksum (and silently drops bad ones) and, because a raw socket listens, does not answer
MH with a Parameter Problem; IPV6_RECVPKTINFO gives the destination address.

`RawSender` sends complete IPv6 packets (IPPROTO_RAW: the header is ours), e.g. a Binding
Update with a Home Address option, a Binding Ack with a type 2 routing header, a HoTI
already encapsulated toward the home agent. Every packet carries AGENT_MARK, so policy
routing sends it by the main table, never into a tunnel or TUN device of ours.
"""
from __future__ import annotations

import socket
import struct

from mip6bench.net.intercept import AGENT_MARK

IPPROTO_MH = 135
IPV6_CHECKSUM = 7
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
MH_CHECKSUM_OFFSET = 4


class MHSocket:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        try:
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, MH_CHECKSUM_OFFSET)
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> tuple[bytes, str, str | None] | None:
        """(mobility header, source, destination) or None when nothing is queued."""
        try:
            data, ancdata, _flags, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(20))
        except (BlockingIOError, InterruptedError):
            return None
        dst = None
        for level, kind, value in ancdata:
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= 16:
                dst = socket.inet_ntop(socket.AF_INET6, value[:16])
        return data, addr[0].split("%", 1)[0], dst

    def close(self) -> None:
        self.sock.close()


class RawSender:
    def __init__(self, mark: int = AGENT_MARK):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
            # Our own multicast (a DAD probe) must not come back to our listeners.
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def send(self, packet: bytes, ifindex: int = 0, oif: int = 0) -> None:
        """Send a whole IPv6 packet to its header's destination (OSError on failure);
        ``ifindex`` picks the interface for link-local and multicast destinations,
        ``oif`` (IPV6_PKTINFO) the egress interface for any destination: a mobile node
        sends from its care-of address out of the interface that address lives on, even
        while the kernel still routes by the interface it just left (a carrier loss
        reaches the routing table through linkwatch, up to a second later)."""
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
        if oif:
            pktinfo = bytes(16) + struct.pack("@I", oif)
            self.sock.sendmsg([packet], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo)],
                              0, (dst, 0, 0, ifindex))
        else:
            self.sock.sendto(packet, (dst, 0, 0, ifindex))

    def close(self) -> None:
        self.sock.close()

