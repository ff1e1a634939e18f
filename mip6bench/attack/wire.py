"""The attacker's wire: sending whole forged packets from the attacker node, and taps on
the LANs it shares with its victims.

    atk = Attacker(tb.node("atk").pid)
    atk.send(packet)                 # a whole IPv6 packet; the attacker's routes pick the way
    tap = Tap(tb.node("f1").pid, "f1-mn1", keep=lambda p: ...)   # frames to and from mn1
    tap.wait_for(lambda p: ..., timeout)                        # the first such packet
    tap.close()

Sending: an IPPROTO_RAW socket in the attacker's namespace (mip6bench.net.mh_socket.
RawSender): the kernel takes the IPv6 header as built, forged source included, and
routes by the destination (the attacker's LANs on-link, everything else via the core).
Tapping: an AF_PACKET socket on one port of a LAN segment's bridge (in the segment's
namespace), which sees what the station on that port sends and receives, as a
listener on a shared (wireless) medium would; a thread keeps the IPv6 packets `keep`
selects (bounded), so a busy link (the probe stream) does not fill the socket.
"""
from __future__ import annotations

import socket
import threading
import time
from collections import deque
from typing import Callable

from mip6bench.net.mh_socket import RawSender
from mip6bench.net.netns import in_netns
from mip6bench.threads import Thread

ETH_P_IPV6 = 0x86DD
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class Attacker:
    def __init__(self, pid: int):
        self.pid = pid
        self.sender = in_netns(pid, lambda: RawSender(mark=0))
        self.sent = 0

    def send(self, packet: bytes) -> None:
        self.sender.sock.setblocking(True)
        self.sender.send(packet)
        self.sent += 1

    def close(self) -> None:
        self.sender.close()


class Tap:
    MAX_KEPT = 4096

    def __init__(self, pid: int, port: str, keep: Callable[[bytes], bool]):
        def make() -> socket.socket:
            # ETH_P_ALL: a bridge port's frames reach only the taps for every protocol
            # (the bridge takes what arrives before protocol handlers see it; what leaves
            # goes to ETH_P_ALL taps only)
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            s.bind((port, ETH_P_ALL))
            s.settimeout(0.1)
            return s

        self.port = port
        self.sock = in_netns(pid, make)
        self.keep = keep
        self.packets: deque[tuple[int, bytes]] = deque(maxlen=self.MAX_KEPT)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = Thread(target=self._run, name=f"tap-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[1] != ETH_P_IPV6:
                continue
            try:
                wanted = self.keep(data)
            except Exception:   # a packet the filter cannot read is not one we want
                wanted = False
            if wanted:
                with self._cond:
                    self.packets.append((time.monotonic_ns(), data))
                    self._cond.notify_all()

    def matching(self, pred: Callable[[bytes], bool], after_ns: int = 0) -> list[bytes]:
        with self._cond:
            return [p for t, p in self.packets if t >= after_ns and pred(p)]

    def wait_for(self, pred: Callable[[bytes], bool], timeout: float,
                 after_ns: int = 0) -> bytes | None:
        """The first kept packet since `after_ns` that `pred` accepts, waiting up to
        `timeout` s for one to arrive."""
        with self._cond:
            self._cond.wait_for(lambda: any(t >= after_ns and pred(p) for t, p in self.packets),
                                timeout)
        found = self.matching(pred, after_ns)
        return found[0] if found else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def upper_layer(packet: bytes) -> tuple[int, int] | None:
    """(protocol, offset) of what follows the IPv6 header and its hop-by-hop,
    destination options and routing headers; None for a truncated packet."""
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    nh, off = packet[6], 40
    while nh in (0, 43, 60):
        if len(packet) < off + 2:
            return None
        nh, off = packet[off], off + 8 * (packet[off + 1] + 1)
    return (nh, off) if off <= len(packet) else None


def udp(packet: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of a UDP packet, else None."""
    layer = upper_layer(packet)
    if layer is None or layer[0] != 17 or len(packet) < layer[1] + 8:
        return None
    off = layer[1]
    sport, dport = int.from_bytes(packet[off:off + 2], "big"), int.from_bytes(packet[off + 2:off + 4], "big")
    return sport, dport, packet[off + 8:]


def mh_type(packet: bytes) -> int | None:
    """The Mobility Header type of an MH packet, else None."""
    layer = upper_layer(packet)
    if layer is None or layer[0] != 135 or len(packet) < layer[1] + 4:
        return None
    return packet[layer[1] + 2]


def decapsulated(packet: bytes) -> bytes:
    """The inner packet of IPv6-in-IPv6 (next header 41 right after the IPv6 header:
    what the HA tunnels to the MN), else the packet itself."""
    return packet[40:] if len(packet) > 80 and packet[6] == 41 else packet


def addresses(packet: bytes) -> tuple[str, str]:
    return (socket.inet_ntop(socket.AF_INET6, packet[8:24]),
            socket.inet_ntop(socket.AF_INET6, packet[24:40]))
