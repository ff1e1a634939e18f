"""PANA discovery with the IPv6 Router Alert option: the sockets (the protocol
constants and the router's decision are in mip6bench.pana.discovery, the packets in
mip6bench.ipv6).

How the kernel treats it (Linux, verified on the development VMs): an IPv6 packet with
a Router Alert option goes to IPV6_ROUTER_ALERT sockets only on the unicast forwarding
path (ip6_forward calls the RA chain); a multicast packet never takes that path, so a
router alert socket never sees a multicast PCI. For multicast with Router Alert the
kernel does what it does for MLD: it delivers the packet to local listeners of the
group. So a forwarder joins the group on its interfaces, receives the datagram with
IPV6_RECVHOPOPTS/IPV6_RECVPKTINFO/IPV6_RECVHOPLIMIT, passes on only datagrams whose
Hop-by-Hop header carries the discovery value, and re-emits the whole packet (original
source, hop limit - 1, same options, same UDP payload) with a raw socket (IPPROTO_RAW)
bound to each egress device. Linux does not forward multicast without a multicast
router, so nothing else copies it. (The IPV6_ROUTER_ALERT + IPV6_ROUTER_ALERT_ISOLATE
socket that DESIGN.md describes for GIST works for unicast-addressed Q-mode messages
only; with a multicast PCI it receives nothing, which
tests/netns/test_rao_sockets.py checks.)
"""
from __future__ import annotations

import ipaddress
import socket
import struct

from mip6bench.ipv6 import router_alert_hopopts
# The discovery constants, where the PaC glue and agents have always found them.
from mip6bench.pana.discovery import DEFAULT_HOP_LIMIT, DISCOVERY_GROUP, DISCOVERY_RAO  # noqa: F401

IPV6_ROUTER_ALERT = 22          # for the check that multicast never reaches such a socket
IPV6_ROUTER_ALERT_ISOLATE = 30
# Linux socket option numbers (socket module lacks some on older Pythons).
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVHOPOPTS = getattr(socket, "IPV6_RECVHOPOPTS", 53)
IPV6_HOPOPTS = getattr(socket, "IPV6_HOPOPTS", 54)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)


def join_group(sock: socket.socket, group: str, interface: str) -> None:
    mreq = ipaddress.IPv6Address(group).packed + struct.pack("@I", socket.if_nametoindex(interface))
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)


def send_with_router_alert(sock: socket.socket, data: bytes, dst: str, port: int,
                           value: int, interface: str | None, hop_limit: int) -> None:
    """Send a UDP datagram with a Hop-by-Hop Router Alert option (IPV6_HOPOPTS ancillary
    data); for a multicast destination out of `interface` with `hop_limit`."""
    scope = socket.if_nametoindex(interface) if interface else 0
    if ipaddress.IPv6Address(dst).is_multicast:
        if scope:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hop_limit)
    sock.sendmsg([data], [(socket.IPPROTO_IPV6, IPV6_HOPOPTS, router_alert_hopopts(value))], 0,
                 (dst, port, 0, scope if ipaddress.IPv6Address(dst).is_multicast else 0))
