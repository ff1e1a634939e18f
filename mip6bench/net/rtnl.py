"""A small read-only rtnetlink client: links and IPv6 addresses, as dumps and as the
notifications a monitor socket receives.

The Mobile IPv6 agents need only these reads (the MN's movement detection runs on them),
and importing pyroute2 costs an agent about 55 ms and 4.5 MB at start-up; writes go
through iproute2 (mip6bench.net.tunnel.MobilityKernel). Messages are parsed strictly
enough to skip anything malformed (a torn or foreign message never raises).
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Iterator

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFLA_ADDRESS, IFLA_IFNAME, IFLA_CARRIER = 1, 3, 33
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
IFA_F_OPTIMISTIC, IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x04, 0x08, 0x40
NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBi")


def _attributes(data: bytes, pos: int, end: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while pos + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4 or pos + length > end:
            break
        attrs[kind & 0x3FFF] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return attrs


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of each netlink message in a datagram."""
    pos = 0
    while pos + NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, pos)
        if length < NLMSGHDR.size or pos + length > len(data):
            return
        yield kind, data[pos + NLMSGHDR.size:pos + length]
        pos += (length + 3) & ~3


def parse_link(kind: int, body: bytes) -> dict | None:
    if kind not in (RTM_NEWLINK, RTM_DELLINK) or len(body) < IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(body)
    attrs = _attributes(body, IFINFOMSG.size, len(body))
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    carrier = attrs.get(IFLA_CARRIER)
    mac = attrs.get(IFLA_ADDRESS, b"")
    return {"name": name, "index": index, "up": bool(flags & IFF_UP), "deleted": kind == RTM_DELLINK,
            "carrier": bool(carrier[0]) if carrier else bool(flags & IFF_LOWER_UP),
            "mac": ":".join(f"{b:02x}" for b in mac) if len(mac) == 6 else None}


def parse_address(kind: int, body: bytes) -> dict | None:
    if kind not in (RTM_NEWADDR, RTM_DELADDR) or len(body) < IFADDRMSG.size:
        return None
    family, prefixlen, flags, scope, index = IFADDRMSG.unpack_from(body)
    if family != socket.AF_INET6:
        return None
    attrs = _attributes(body, IFADDRMSG.size, len(body))
    raw = attrs.get(IFA_ADDRESS) or attrs.get(IFA_LOCAL)
    if raw is None or len(raw) != 16:
        return None
    if IFA_FLAGS in attrs and len(attrs[IFA_FLAGS]) >= 4:
        flags = struct.unpack("=I", attrs[IFA_FLAGS][:4])[0]
    return {"address": str(ipaddress.IPv6Address(raw)), "prefixlen": prefixlen, "index": index,
            "scope": scope, "deleted": kind == RTM_DELADDR, "tentative": bool(flags & IFA_F_TENTATIVE),
            "optimistic": bool(flags & IFA_F_OPTIMISTIC), "dadfailed": bool(flags & IFA_F_DADFAILED)}


def _dump(request_type: int, header: bytes) -> list[tuple[int, bytes]]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.send(NLMSGHDR.pack(NLMSGHDR.size + len(header), request_type, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + header)
        out: list[tuple[int, bytes]] = []
        while True:
            data = s.recv(1 << 16)
            for kind, body in messages(data):
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    raise OSError(code, f"rtnetlink dump failed: {code}")
                out.append((kind, body))


def links() -> list[dict]:
    """Every interface of this namespace: name, index, up, carrier, mac."""
    return [link for kind, body in _dump(RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
            if (link := parse_link(kind, body)) is not None]


def addresses() -> list[dict]:
    """Every IPv6 address of this namespace with its DAD state."""
    return [a for kind, body in _dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_INET6, 0, 0, 0, 0))
            if (a := parse_address(kind, body)) is not None]
