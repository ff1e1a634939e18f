"""Taking Mobile IPv6 packets the kernel cannot handle into user space, and giving them back.

Without CONFIG_IPV6_MIP6 a packet carrying a Home Address option (destination option
201) or a type 2 routing header is answered by the kernel with an ICMPv6 Parameter
Problem. The agents therefore

  * see such packets on a `PacketTap`: an AF_PACKET socket (it gets the frame before
    netfilter) with a classic BPF filter that passes only IPv6 packets whose first
    next header is a Destination Options (60) or Routing (43) header, so the agent
    wakes up for nothing else, and that ignores the node's own outgoing packets;
  * stop the kernel's own copy with an nftables rule in a prerouting chain at priority
    raw (`InterceptRules`): `rt type 2 drop` on a mobile node, `ip6 nexthdr 60 drop`
    for the node's own addresses on a correspondent node or home agent;
  * hand the rewritten, plain packet back to the kernel through a `TunDevice`: what an
    agent writes to it is received by the kernel as if it arrived on that interface,
    and what the kernel routes to it (the agents' route-optimisation routes) the agent
    reads.

The agents' own packets carry a firewall mark (`AGENT_MARK`); a policy rule sends
marked packets to the main table, so they never loop back into the TUN device
(mip6bench.net.tunnel installs the rules and routes).
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

from mip6bench.net.nft import Batch, Nft

ETH_P_IPV6 = 0x86DD
SO_ATTACH_FILTER = 26
PACKET_IGNORE_OUTGOING = 23
SOL_PACKET = 263
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000

# "m6" in the mark: packets the agents send themselves.
AGENT_MARK = 0x6D36
# Policy routing: the agents' own packets take the main table before any table of ours.
AGENT_MARK_PREF = 12
RO_TABLE = 136
RO_PREF = 30
TUN_NAME = "mip6ro"


def bpf_first_header_filter(next_headers: tuple[int, ...] = (60, 43)) -> list[tuple[int, int, int, int]]:
    """Classic BPF: accept an IPv6 packet (SOCK_DGRAM offsets start at the IPv6 header)
    whose Next Header field is one of ``next_headers``; drop everything else."""
    if not next_headers or len(next_headers) > 250:
        raise ValueError("give 1..250 next header values")
    n = len(next_headers)
    prog = [(0x30, 0, 0, 6)]  # ldb [6]
    for i, value in enumerate(next_headers):
        # jeq #value: on match jump to the accept at the end
        prog.append((0x15, n - i, 0, value))
    prog.append((0x06, 0, 0, 0))        # ret #0: drop
    prog.append((0x06, 0, 0, 0x40000))  # ret #262144: whole packet
    return prog


def attach_bpf(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class PacketTap:
    """IPv6 packets with a Destination Options or Routing header first, as received on
    ``ifname`` (None: every interface). ``recv()`` -> (packet, interface name) or None."""

    def __init__(self, ifname: str | None = None):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
        try:
            attach_bpf(self.sock, bpf_first_header_filter())
            self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            if ifname:
                self.sock.bind((ifname, ETH_P_IPV6))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            self.sock.setblocking(False)
            # What arrived before the filter was attached was not filtered: discard it.
            while self.recv() is not None:
                pass
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> tuple[bytes, str] | None:
        try:
            data, addr = self.sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return None
        return data, addr[0]

    def close(self) -> None:
        self.sock.close()


class TunDevice:
    """A layer-3 TUN interface owned by this process: it disappears when the process
    does, and with it every route through it. Configure it (up, MTU) with Kernel."""

    def __init__(self, name: str = TUN_NAME):
        if len(name.encode()) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 bytes")
        self.name = name
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(self.fd)
            raise
        os.set_blocking(self.fd, False)

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, 65535)
        except (BlockingIOError, InterruptedError):
            return None

    def write(self, packet: bytes) -> None:
        """Hand a packet to the kernel as received on this interface."""
        os.write(self.fd, packet)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class InterceptRules:
    """The nftables table of one agent: drop rules for the packets it takes from a
    PacketTap (so the kernel does not answer them), with counters. The table (family
    ip6, one name per role) is the agent's alone, so installing replaces an earlier one
    atomically and removing leaves nothing behind."""

    def __init__(self, netns, table: str):
        self.nft = Nft(netns)
        self.table = table

    def batch(self, rules: list[str], extra: list[str] = ()) -> Batch:
        b = Batch()
        b.add(f"add table ip6 {self.table}")
        b.add(f"delete table ip6 {self.table}")
        b.add(f"add table ip6 {self.table}")
        for line in extra:
            b.add(line)
        b.add(f"add chain ip6 {self.table} intercept {{ type filter hook prerouting priority raw; }}")
        for rule in rules:
            b.add(f"add rule ip6 {self.table} intercept {rule}")
        return b

    def install(self, rules: list[str], extra: list[str] = ()) -> None:
        self.nft.apply(self.batch(rules, extra))

    def remove(self) -> None:
        b = Batch()
        b.add(f"add table ip6 {self.table}")
        b.add(f"delete table ip6 {self.table}")
        self.nft.apply(b)

    def counters(self) -> dict[str, int]:
        from mip6bench.net.nft import rule_counters

        return {r["comment"]: r["packets"] for r in rule_counters(self.nft.list_json("table", "ip6", self.table))
                if r["comment"]}


def home_address_option_drop(addresses: list[str]) -> str:
    """Packets to this node that start with a Destination Options header (where the Home
    Address option lives): the agent takes them from its tap."""
    return (f"ip6 daddr {{ {', '.join(addresses)} }} ip6 nexthdr 60 counter drop "
            f'comment "home-address-option"')


def type2_routing_header_drop() -> str:
    return 'rt type 2 counter drop comment "type2-routing-header"'
