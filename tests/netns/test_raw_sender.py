"""The Mobile IPv6 agents' raw sender honours an explicit egress interface.

Right after a handover the kernel may still route by the interface the MN just left: a
carrier loss reaches the routing table through linkwatch, which handles such events at
most once a second, so the old default route is not yet marked linkdown. The MN agent
therefore sends its packets out of the attached interface (IPV6_PKTINFO), whatever the
routing table prefers. Here: two default routes, the preferred one toward b1; the same
destination address lives on both b1 and b2, so who receives shows where it left."""
import secrets
import socket
import struct
import subprocess

import pytest

from mip6bench.codec import inet_checksum, ipv6_pseudo_header
from mip6bench.mipv6.wire import build_ipv6_packet
from mip6bench.net.mh_socket import RawSender
from mip6bench.net.netns import in_netns

DST = "2001:db8:99::1"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def nets():
    tag = secrets.token_hex(3)
    a, b1, b2 = f"rs-{tag}-a", f"rs-{tag}-b1", f"rs-{tag}-b2"
    try:
        for ns in (a, b1, b2):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for i, b in ((1, b1), (2, b2)):
            ip("-n", a, "link", "add", f"x{i}", "type", "veth", "peer", "name", "y", "netns", b)
            ip("-n", a, "link", "set", f"x{i}", "up")
            ip("-n", b, "link", "set", "y", "up")
            ip("-n", a, "addr", "add", f"2001:db8:{i}::1/64", "dev", f"x{i}", "nodad")
            ip("-n", b, "addr", "add", f"2001:db8:{i}::2/64", "dev", "y", "nodad")
            ip("-n", b, "addr", "add", f"{DST}/128", "dev", "lo")
            ip("-n", a, "route", "add", "default", "via", f"2001:db8:{i}::2", "dev", f"x{i}",
               "metric", str(i))
        yield a, b1, b2
    finally:
        for ns in (a, b1, b2):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def receiver(ns: str) -> socket.socket:
    s = in_netns(ns, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
    s.bind((DST, 4000))
    s.settimeout(5)
    return s


def udp_packet(src: str, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 4000, 4000, 8 + len(payload), 0) + payload
    pseudo = ipv6_pseudo_header(socket.inet_pton(socket.AF_INET6, src),
                                socket.inet_pton(socket.AF_INET6, DST), len(udp), 17)
    checksum = inet_checksum(pseudo + udp) or 0xFFFF
    return build_ipv6_packet(src, DST, 17, udp[:6] + struct.pack("!H", checksum) + udp[8:])


def test_egress_interface_overrides_the_routing_table(nets):
    a, b1, b2 = nets
    r1, r2 = receiver(b1), receiver(b2)
    sender = in_netns(a, RawSender)
    x2 = in_netns(a, lambda: socket.if_nametoindex("x2"))
    try:
        sender.send(udp_packet("2001:db8:2::1", b"pinned"), oif=x2)
        sender.send(udp_packet("2001:db8:1::1", b"routed"))
        assert r2.recv(100) == b"pinned"  # left where we asked
        # "routed" took the routing table's choice; had "pinned" gone that way too, it
        # would have arrived first on the same path.
        assert r1.recv(100) == b"routed"
    finally:
        sender.close()
        r1.close()
        r2.close()
