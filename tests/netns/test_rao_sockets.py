"""PANA discovery's sockets (mip6bench.net.rao) on a real kernel, two namespaces on a
veth pair: P (the PaC, p0) and F (a forwarding router, f0).

What net/rao.py's docstring says the kernel does: a multicast PCI with the discovery
Router Alert option reaches a raw UDP socket joined to the group (with the Hop-by-Hop
header, destination and hop limit as ancillary data), and never an IPV6_ROUTER_ALERT
socket, even on a forwarding node."""
from __future__ import annotations

import secrets
import socket
import struct
import subprocess

import pytest

from mip6bench import ipv6
from mip6bench.net import rao
from mip6bench.net.netns import in_netns, write_sysctls
from mip6bench.pana.discovery import DEFAULT_HOP_LIMIT, DISCOVERY_GROUP, DISCOVERY_RAO

PA, FA = "2001:db8:77::2", "2001:db8:77::1"
TIMEOUT = 10.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def pair():
    tag = secrets.token_hex(3)
    p, f = f"rao-{tag}-p", f"rao-{tag}-f"
    try:
        for ns in (p, f):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", p, "link", "add", "p0", "type", "veth", "peer", "name", "f0", "netns", f)
        for ns, dev, addr in ((p, "p0", PA), (f, "f0", FA)):
            ip("-n", ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")
        write_sysctls(f, {"net.ipv6.conf.all.forwarding": 1})
        # The echo reply says the veth has carrier in both namespaces.
        ip("netns", "exec", p, "ping", "-c1", "-W5", FA)
        yield p, f
    finally:
        for ns in (p, f):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_multicast_pci_reaches_the_group_listener_and_never_a_router_alert_socket(pair):
    p, f = pair

    def listener() -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
        for opt in (rao.IPV6_RECVPKTINFO, rao.IPV6_RECVHOPOPTS, rao.IPV6_RECVHOPLIMIT):
            s.setsockopt(socket.IPPROTO_IPV6, opt, 1)
        rao.join_group(s, DISCOVERY_GROUP, "f0")
        s.settimeout(TIMEOUT)
        return s

    def router_alert_socket() -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        s.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_ROUTER_ALERT, DISCOVERY_RAO)
        s.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_ROUTER_ALERT_ISOLATE, 1)
        s.setblocking(False)
        return s

    def pac() -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::", 0))
        return s

    group, ra, sender = in_netns(f, listener), in_netns(f, router_alert_socket), in_netns(p, pac)
    try:
        in_netns(p, lambda: rao.send_with_router_alert(     # names p0 in P's namespace
            sender, b"PANA-PCI", DISCOVERY_GROUP, 716, DISCOVERY_RAO, "p0", DEFAULT_HOP_LIMIT))
        # The raw UDP socket may also see other local UDP: wait for the PCI itself.
        while True:
            data, anc, _flags, addr = group.recvmsg(2048, 256)
            if data[8:] == b"PANA-PCI":
                break
        fields = {kind: value for level, kind, value in anc if level == socket.IPPROTO_IPV6}
        assert addr[0].split("%")[0] == PA
        assert struct.unpack("!H", data[2:4])[0] == 716
        assert socket.inet_ntop(socket.AF_INET6, fields[rao.IPV6_PKTINFO][:16]) == DISCOVERY_GROUP
        assert struct.unpack("@i", fields[rao.IPV6_HOPLIMIT][:4])[0] == DEFAULT_HOP_LIMIT
        assert ipv6.router_alert_value(fields[rao.IPV6_HOPOPTS]) == DISCOVERY_RAO
        # The kernel delivered the packet to the group's listeners in the same receive
        # path where a Router Alert socket would have had it: nothing is coming for it.
        with pytest.raises(BlockingIOError):
            ra.recv(2048)
    finally:
        for s in (group, ra, sender):
            s.close()
