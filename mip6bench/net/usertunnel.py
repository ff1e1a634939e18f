"""The Mobile IPv6 bidirectional tunnel (RFC 6275 10.4.2, 11.3.1) in user space, for
kernels with neither ip6tnl nor seg6: only TUN and raw/packet sockets are needed.

On the wire it is what ip6tnl sends with `encaplimit none ttl 64`: RFC 2473 IPv6-in-IPv6
(next header 41, no Tunnel Encapsulation Limit option), outer hop limit 64, traffic
class and flow label 0, outer source the HA address (HA) or the care-of address (MN).

Data path (one forwarder process per agent, so a busy tunnel never delays the agent's
signalling and signalling never stalls data):

  encapsulation  the kernel routes what goes into the tunnel to a TUN device the
                 forwarder owns (HA: `HoA/128 dev mip6tun`; MN: the tunnel table's
                 default route); the forwarder puts the outer header on and sends it on
                 a raw socket (IPPROTO_RAW, the header is ours).
  decapsulation  an AF_PACKET socket sees the outer packets before netfilter (a classic
                 BPF filter passes only next header 41 to the HA address, or from the HA
                 address on a MN); an nftables rule at priority raw drops the kernel's own
                 copy (without a tunnel handler the kernel would answer it with an ICMPv6
                 Parameter Problem). The forwarder checks the packet and writes the inner
                 packet to the TUN device: the kernel receives it as if it arrived there,
                 then forwards it (HA) or delivers it to the home address (MN).

Checks (what the kernel backends enforce with their nftables set or device endpoints):
the HA decapsulates only packets from a registered care-of address whose inner source
is that binding's home address (RFC 6275 10.4.5); a MN only packets from its HA to its
current care-of address whose inner destination is its home address. Everything else is
dropped and counted.

MTU (RFC 2473 section 7): the tunnel MTU is the egress link MTU less 40. The TUN device
gets that MTU, so the kernel itself answers forwarded packets that do not fit with an
ICMPv6 Packet Too Big; a packet that still arrives too large (the link MTU shrank under
a running tunnel) is answered by the forwarder with a Packet Too Big to its source.

`TunnelState` is the whole decision logic, pure (bytes in, verdicts out) and tested
without root; `serve` is the forwarder's I/O loop (run as `python -m
mip6bench.net.usertunnel`); `Forwarder` starts one and talks to it over a SEQPACKET
socket pair with one JSON object per message. The forwarder ends when that socket
closes, so it never outlives its agent.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import ipaddress
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

from mip6bench.ipv6 import IPPROTO_ICMPV6, IPPROTO_IPV6, IPV6_HEADER_LEN, icmpv6_packet, ipv6_header
from mip6bench.net.intercept import (
    AGENT_MARK,
    ETH_P_IPV6,
    PACKET_IGNORE_OUTGOING,
    SOL_PACKET,
    TunDevice,
    attach_bpf,
)
from mip6bench.threads import Thread

ICMPV6_PACKET_TOO_BIG = 2
OUTER_HOP_LIMIT = 64
MIN_MTU = 1280
HA_DEVICE = "mip6tun"
MN_DEVICE = "mip6tnl"
BATCH = 256            # packets read from one source before looking at the others
START_TIMEOUT_S = 10.0
MAX_MESSAGE = 1 << 16   # control messages (SEQPACKET: a longer one would be cut)
MAX_BINDS = 256         # bindings in one "binds" request (at most ~90 bytes each, and
                        # each failure's reason in the answer at most ~120)
REQUEST_TIMEOUT_S = 5.0

SEND, DELIVER = "send", "deliver"
SIOCGIFMTU = 0x8921


def packed(address: str) -> bytes:
    """The 16 bytes of an IPv6 address in text (inet_pton: the forwarder binds a batch
    of them per message); ValueError if it is not one."""
    try:
        return socket.inet_pton(socket.AF_INET6, address)
    except (OSError, TypeError):
        raise ValueError(f"not an IPv6 address: {address!r}") from None


def outer_header(src: bytes, dst: bytes, payload_len: int) -> bytes:
    """RFC 2473 outer header: version 6, traffic class and flow label 0, next header 41."""
    return ipv6_header(src, dst, IPPROTO_IPV6, payload_len, OUTER_HOP_LIMIT)


def packet_too_big(packet: bytes, mtu: int, src: bytes) -> bytes | None:
    """An ICMPv6 Packet Too Big (RFC 4443 3.2) from `src` to the source of `packet`,
    carrying as much of it as fits in the minimum MTU; None where RFC 4443 2.4(e)
    forbids an error (unspecified or multicast source, an ICMPv6 error message)."""
    source = packet[8:24]
    if source == bytes(16) or source[0] == 0xFF:
        return None
    if packet[6] == IPPROTO_ICMPV6 and len(packet) > IPV6_HEADER_LEN and packet[IPV6_HEADER_LEN] < 128:
        return None
    quoted = packet[:MIN_MTU - IPV6_HEADER_LEN - 8]
    body = struct.pack("!BBHI", ICMPV6_PACKET_TOO_BIG, 0, 0, mtu) + quoted
    return icmpv6_packet(src, source, body, hop_limit=64)


class TunnelState:
    """What the forwarder of one tunnel end does with a packet.

    role "ha": `bind(hoa, coa)` / `unbind(hoa)`; packets from the TUN device go to the
    CoA bound to their destination; outer packets are admitted from a bound CoA with the
    binding's HoA as inner source.
    role "mn": `point(hoa, coa, ha)` / `down()`; packets from the TUN device (sent from
    the HoA) go to the HA; outer packets are admitted from the HA to the current CoA with
    the HoA as inner destination.

    `from_tun(packet)` -> (SEND, outer packet, outer destination text) or (DELIVER,
    ICMPv6 error for the TUN device) or None (dropped, counted); `from_wire(packet)` ->
    the inner packet to write to the TUN device, or None.
    """

    def __init__(self, role: str, local: str | None = None, mtu: int = 1500 - IPV6_HEADER_LEN):
        if role not in ("ha", "mn"):
            raise ValueError("role is ha or mn")
        self.role = role
        self.is_ha = role == "ha"
        self.local = packed(local) if local else None    # HA: the HA address
        self.mtu = mtu                                    # tunnel MTU (inner packets)
        self.bindings: dict[bytes, bytes] = {}            # HA: packed HoA -> packed CoA
        # Per destination, what encapsulation appends after the payload length (next
        # header, hop limit, source, destination) and the destination as text for
        # sendto: built once per binding change, not per packet.
        self.routes: dict[bytes, tuple[bytes, str]] = {}  # HA: packed HoA -> (tail, CoA)
        self.route: tuple[bytes, str] | None = None       # MN while pointed: (tail, HA)
        self.hoa: bytes | None = None                     # MN
        self.coa: bytes | None = None
        self.ha: bytes | None = None
        # The per-packet successes are plain attributes (cheap to increment); every
        # other outcome is counted by name.
        self.encapsulated = 0
        self.decapsulated = 0
        self.other: dict[str, int] = {}

    @property
    def counters(self) -> dict[str, int]:
        out = dict(self.other)
        if self.encapsulated:
            out["encap"] = self.encapsulated
        if self.decapsulated:
            out["decap"] = self.decapsulated
        return out

    def count(self, name: str, n: int = 1) -> None:
        self.other[name] = self.other.get(name, 0) + n

    # ------------------------------------------------------------ configuration
    @staticmethod
    def _tail(src: bytes, dst: bytes) -> bytes:
        return outer_header(src, dst, 0)[6:]

    def bind(self, hoa: str, coa: str) -> None:
        self._need("ha")
        h, c = packed(hoa), packed(coa)
        self.bindings[h] = c
        self.routes[h] = (self._tail(self.local, c), socket.inet_ntop(socket.AF_INET6, c))

    def unbind(self, hoa: str) -> None:
        self._need("ha")
        self.bindings.pop(packed(hoa), None)
        self.routes.pop(packed(hoa), None)

    def point(self, hoa: str, coa: str, ha: str) -> None:
        self._need("mn")
        self.hoa, self.coa, self.ha = packed(hoa), packed(coa), packed(ha)
        self.route = (self._tail(self.coa, self.ha), str(ipaddress.IPv6Address(ha)))

    def down(self) -> None:
        self._need("mn")
        self.coa = self.route = None

    def set_mtu(self, mtu: int) -> None:
        if not MIN_MTU <= mtu <= 65535:
            raise ValueError(f"tunnel MTU {mtu} outside {MIN_MTU}..65535")
        self.mtu = mtu

    def _need(self, role: str) -> None:
        if self.role != role:
            raise ValueError(f"not a {role} tunnel end")

    # ------------------------------------------------------------ packets
    # Written for speed (every tunnelled packet passes here): the forwarder reads into
    # one preallocated buffer and sends from it, so these work in place on (buffer,
    # length) with slices and byte comparisons, no decoding; what they check is spelled
    # out in the comments. `from_tun`/`from_wire` are the same on plain bytes.
    def encapsulate(self, buf: bytearray, n: int):
        """The inner packet is buf[40:40 + n]. -> (SEND, outer destination text) with the
        outer header written into buf[:40], (DELIVER, ICMPv6 error for the TUN device),
        or None (dropped, counted)."""
        # An IPv6 header whose payload length matches what was read.
        if n < IPV6_HEADER_LEN or buf[40] >> 4 != 6 or (buf[44] << 8 | buf[45]) != n - IPV6_HEADER_LEN:
            self.count("encap.malformed")
            return None
        if self.is_ha:
            route = self.routes.get(bytes(buf[64:80]))      # bound to the destination HoA?
            if route is None:
                self.count("encap.no_binding")
                return None
        else:
            route = self.route
            if route is None:
                self.count("encap.not_pointed")
                return None
            if buf[48:64] != self.hoa:
                self.count("encap.not_from_home_address")
                return None
        if n > self.mtu:
            self.count("encap.too_big")
            error = packet_too_big(bytes(buf[40:40 + n]), self.mtu, route[0][2:18])
            return (DELIVER, error) if error is not None else None
        buf[0:6] = b"\x60\x00\x00\x00" + n.to_bytes(2, "big")
        buf[6:40] = route[0]
        self.encapsulated += 1
        return SEND, route[1]

    def decapsulate(self, buf, n: int) -> bool:
        """The outer packet is buf[:n]; True: deliver the inner packet buf[40:n]."""
        # Outer and inner IPv6 headers with consistent payload lengths, next header 41.
        if n < 2 * IPV6_HEADER_LEN or buf[6] != IPPROTO_IPV6 or buf[0] >> 4 != 6 \
                or (buf[4] << 8 | buf[5]) != n - IPV6_HEADER_LEN or buf[40] >> 4 != 6 \
                or (buf[44] << 8 | buf[45]) != n - 2 * IPV6_HEADER_LEN:
            self.count("decap.malformed")
            return False
        if self.is_ha:
            # To us, from the CoA bound to the inner source (RFC 6275 10.4.5).
            if buf[24:40] != self.local or self.bindings.get(bytes(buf[48:64])) != buf[8:24]:
                self.count("decap.not_registered")
                return False
        else:
            # From our HA to our current CoA, for our HoA.
            if self.coa is None or buf[8:24] != self.ha or buf[24:40] != self.coa:
                self.count("decap.not_from_ha_to_coa")
                return False
            if buf[64:80] != self.hoa:
                self.count("decap.not_to_home_address")
                return False
        self.decapsulated += 1
        return True

    def from_tun(self, packet: bytes):
        """`encapsulate` on a packet: (SEND, outer packet, destination), (DELIVER, error)
        or None."""
        buf = bytearray(IPV6_HEADER_LEN) + packet
        verdict = self.encapsulate(buf, len(packet))
        if verdict is not None and verdict[0] is SEND:
            return SEND, bytes(buf), verdict[1]
        return verdict

    def from_wire(self, packet: bytes) -> bytes | None:
        """`decapsulate` on a packet: the inner packet, or None."""
        return packet[IPV6_HEADER_LEN:] if self.decapsulate(packet, len(packet)) else None


def bpf_tunnel_filter(address: str, at_source: bool) -> list[tuple[int, int, int, int]]:
    """Classic BPF over the IPv6 header (SOCK_DGRAM offsets): next header 41 and the
    source (at_source) or destination address equal to `address`."""
    words = struct.unpack("!4I", packed(address))
    base = 8 if at_source else 24
    prog = [(0x30, 0, 0, 6), (0x15, 0, 9, IPPROTO_IPV6)]   # ldb [6]; jne 41 -> drop
    for i, word in enumerate(words):
        prog.append((0x20, 0, 0, base + 4 * i))             # ld [base + 4i]
        prog.append((0x15, 0, 7 - 2 * i, word))              # jne word -> drop
    prog.append((0x06, 0, 0, 0x40000))                     # accept
    prog.append((0x06, 0, 0, 0))                           # drop
    return prog


# ---------------------------------------------------------------- forwarder process
def open_tun(name: str, within: float = 2.0) -> TunDevice:
    """The TUN device `name`; if a forwarder of a killed agent still holds it (EBUSY),
    wait for that device to go (an rtnetlink link event), at most `within` seconds."""
    try:
        return TunDevice(name)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
    from mip6bench.net.kernel import RTMGRP_LINK, Monitor

    deadline = time.monotonic() + within
    with Monitor(None, RTMGRP_LINK) as monitor:
        poller = select.poll()
        poller.register(monitor, select.POLLIN)
        while True:
            try:
                return TunDevice(name)   # subscribed first: a removal from now on wakes us
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise
            if poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                monitor.read()


DROP_ALL = [(0x06, 0, 0, 0)]   # classic BPF "ret #0": until the tunnel's address is known


class _Sockets:
    def __init__(self, tun_name: str):
        self.tun = open_tun(tun_name)
        try:
            self.wire = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
            attach_bpf(self.wire, DROP_ALL)
            self.wire.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            self.wire.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            self.wire.setblocking(False)
            while True:   # what arrived before the filter was attached was not filtered
                try:
                    self.wire.recv(65535)
                except BlockingIOError:
                    break
            self.send = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.send.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, AGENT_MARK)
            self.send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        except OSError:
            self.tun.close()
            raise

    def filter_for(self, address: str, at_source: bool) -> None:
        """Outer packets to (HA) or from (MN: at_source) `address` from now on."""
        attach_bpf(self.wire, bpf_tunnel_filter(address, at_source))

    def close(self) -> None:
        self.tun.close()
        self.wire.close()
        self.send.close()

    def bind_device(self, ifname: str | None) -> None:
        """An MN's outer packets leave by the attached interface, whatever the routing
        table still says right after a move (see MobilityIO.egress_ifindex)."""
        self.send.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, (ifname or "").encode())



def link_mtu(ifname: str, sock: socket.socket | None = None) -> int:
    """The MTU of an interface of the namespace `sock` (a datagram socket the caller
    keeps for asking again) was opened in; without one, of this thread's namespace."""
    if sock is None:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            return link_mtu(ifname, s)
    reply = fcntl.ioctl(sock, SIOCGIFMTU, struct.pack("16s16x", ifname.encode()))
    return struct.unpack_from("i", reply, 16)[0]


def serve(ctrl: socket.socket, role: str, tun_name: str) -> int:
    """The forwarder: data between the TUN device and the wire, commands on `ctrl`."""
    state = TunnelState(role)
    try:
        io = _Sockets(tun_name)
    except OSError as exc:
        what = "/dev/net/tun" if isinstance(exc, FileNotFoundError) else f"TUN device {tun_name}"
        ctrl.send(json.dumps({"ready": False, "error": f"{what}: {exc.strerror or exc}"}).encode())
        return 1
    ctrl.send(json.dumps({"ready": True, "ifindex": socket.if_nametoindex(tun_name),
                          "pid": os.getpid()}).encode())
    tun_fd, wire, sender = io.tun.fd, io.wire, io.send
    wire_fd = wire.fileno()
    count, write, sendto = state.count, os.write, sender.sendto

    # One buffer per direction, reused for every packet: the TUN read lands 40 bytes in,
    # leaving room for the outer header, and the send goes out of the same buffer.
    out_buf = bytearray(IPV6_HEADER_LEN + 65535)
    out_view = memoryview(out_buf)
    out_inner = [out_view[IPV6_HEADER_LEN:]]
    in_buf = bytearray(65535)
    in_view = memoryview(in_buf)
    encapsulate, decapsulate = state.encapsulate, state.decapsulate
    readv, recv_into = os.readv, wire.recv_into

    def pump_tun(limit: int) -> int:
        """Encapsulate up to `limit` packets the kernel routed into the tunnel."""
        for i in range(limit):
            try:
                n = readv(tun_fd, out_inner)
            except BlockingIOError:
                return i
            verdict = encapsulate(out_buf, n)
            if verdict is None:
                continue
            try:
                if verdict[0] is SEND:
                    sendto(out_view[:IPV6_HEADER_LEN + n], (verdict[1], 0))
                else:
                    write(tun_fd, verdict[1])
            except OSError:
                count("encap.tx_failed")
        return limit

    def pump_wire(limit: int) -> int:
        """Decapsulate up to `limit` outer packets from the wire."""
        for i in range(limit):
            try:
                n = recv_into(in_buf)
            except BlockingIOError:
                return i
            if decapsulate(in_buf, n):
                try:
                    write(tun_fd, in_view[IPV6_HEADER_LEN:n])
                except OSError:
                    count("decap.tx_failed")
        return limit

    def drain() -> None:
        """Everything already queued, so that counters read after a packet arrived
        include it (tests wait on such events, not on time)."""
        while pump_tun(BATCH) + pump_wire(BATCH):
            pass

    poller = select.epoll()
    for fd in (tun_fd, wire_fd, ctrl.fileno()):
        poller.register(fd, select.EPOLLIN)
    try:
        while True:
            for fd, _events in poller.poll():
                if fd == tun_fd:
                    pump_tun(BATCH)
                elif fd == wire_fd:
                    pump_wire(BATCH)
                elif not _command(ctrl, state, io, drain):
                    return 0
    finally:
        poller.close()
        io.close()


def _command(ctrl: socket.socket, state: TunnelState, io: _Sockets, drain) -> bool:
    """One control message; False when the agent closed its end."""
    try:
        data = ctrl.recv(MAX_MESSAGE)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
    if not data:
        return False
    try:
        req = json.loads(data)
        op = req.pop("op")
        reply: dict = {"ok": True}
        if op == "address":
            # The tunnel's fixed end: the HA address (HA: ours; MN: our HA's).
            if state.is_ha:
                state.local = packed(req["address"])
            io.filter_for(req["address"], at_source=not state.is_ha)
        elif op == "bind":
            if "mtu" in req:
                state.set_mtu(req["mtu"])
            state.bind(req["hoa"], req["coa"])
        elif op == "binds":
            # Several bindings in one message (the HA's changes of one wake-up); each
            # stands alone: one that fails is reported by its index, the others hold.
            if "mtu" in req:
                state.set_mtu(req["mtu"])
            failed = {}
            for i, (hoa, coa) in enumerate(req["binds"]):
                try:
                    state.bind(hoa, coa)
                except (ValueError, TypeError) as exc:
                    failed[i] = f"{type(exc).__name__}: {exc}"
            reply["failed"] = failed
        elif op == "unbind":
            state.unbind(req["hoa"])
        elif op == "point":
            if "mtu" in req:
                state.set_mtu(req["mtu"])
            io.bind_device(req.get("ifname"))
            state.point(req["hoa"], req["coa"], req["ha"])
        elif op == "down":
            state.down()
        elif op == "counters":
            drain()
            reply["counters"] = {**state.counters, "bindings": len(state.bindings)}
        else:
            raise ValueError(f"unknown op {op!r}")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ctrl.send(json.dumps(reply).encode())
    return True


# "process": every Forwarder is a process of its own (a busy tunnel never delays the
# agent's signalling); "thread": a thread of the agent's process (an MN host sets this:
# hundreds of MNs, no data traffic to speak of, one process).
FORWARDER_MODE = "process"


def _serve_in_thread(ctrl: socket.socket, role: str, tun_name: str) -> None:
    try:
        serve(ctrl, role, tun_name)
    except OSError:
        pass   # the agent sees the forwarder gone on its next request
    finally:
        ctrl.close()


class ForwarderError(OSError):
    """The forwarder could not start or refused a command; the message says why."""


class Forwarder:
    """The agent's handle on its forwarder process (calls are synchronous and
    thread-safe; an agent makes them on its kernel worker thread)."""

    def __init__(self, role: str, tun_name: str, nice: int = -10):
        """Start the process; its readiness is waited for by the first request (so an
        agent starts its forwarder early and goes on with its own start meanwhile)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.tun_name = tun_name
        self._lock = threading.Lock()
        self.ifindex: int | None = None
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.sock = parent
        if FORWARDER_MODE == "thread":
            # A thread of this process: started from the calling thread, it is in that
            # thread's network namespace (the agent's kernel thread, in an MN host).
            self.thread = Thread(target=_serve_in_thread, args=(child, role, tun_name),
                                 name=f"forwarder:{tun_name}", daemon=True)
            self.thread.start()
            return
        argv = [sys.executable, "-m", "mip6bench.net.usertunnel", "--fd", str(child.fileno()),
                "--role", role, "--tun", tun_name, "--nice", str(nice)]
        try:
            self.proc = subprocess.Popen(argv, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            child.close()

    def wait_ready(self) -> None:
        """Block until the forwarder has its TUN device and sockets (ForwarderError if
        it could not make them); at once when it already has."""
        with self._lock:
            if self.ifindex is not None:
                return
            self.sock.settimeout(START_TIMEOUT_S)
            try:
                hello = json.loads(self.sock.recv(65536) or b"{}")
            except (OSError, ValueError) as exc:
                raise ForwarderError(f"user-space tunnel forwarder did not start: {exc}") from None
            if not hello.get("ready"):
                raise ForwarderError(f"user-space tunnel forwarder: {hello.get('error', 'exited')}")
            self.ifindex = hello["ifindex"]
            self.sock.settimeout(REQUEST_TIMEOUT_S)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else os.getpid()

    def request(self, op: str, **fields) -> dict:
        self.wait_ready()
        with self._lock:
            try:
                self.sock.send(json.dumps({"op": op, **fields}).encode())
                reply = json.loads(self.sock.recv(MAX_MESSAGE) or b"{}")
            except (OSError, ValueError) as exc:
                raise ForwarderError(f"user-space tunnel forwarder: {op}: {exc}") from None
        if not reply.get("ok"):
            raise ForwarderError(f"user-space tunnel forwarder: {op}: {reply.get('error', 'no answer')}")
        return reply

    def bind_many(self, binds: list[tuple[str, str]], mtu: int | None = None) -> list[ForwarderError | None]:
        """Bind every (hoa, coa), MAX_BINDS a message: each one's ForwarderError or
        None, in order (one refused takes no other with it; a failed exchange fails
        every binding it carried)."""
        out: list[ForwarderError | None] = []
        for i in range(0, len(binds), MAX_BINDS):
            chunk = binds[i:i + MAX_BINDS]
            fields: dict = {"binds": chunk}
            if mtu is not None:
                fields["mtu"] = mtu
            try:
                failed = self.request("binds", **fields)["failed"]
            except ForwarderError as exc:
                out += [exc] * len(chunk)
                continue
            out += [ForwarderError(f"user-space tunnel forwarder: bind: {failed[str(j)]}")
                    if str(j) in failed else None for j in range(len(chunk))]
        return out

    def close(self) -> None:
        """Close the control socket (the forwarder exits on it) and reap the process."""
        self.sock.close()
        if self.thread is not None:
            self.thread.join(REQUEST_TIMEOUT_S)
            return
        try:
            self.proc.wait(timeout=REQUEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="user-space IPv6-in-IPv6 tunnel forwarder (started by an agent)")
    p.add_argument("--fd", type=int, required=True, help="control socket (SEQPACKET) inherited from the agent")
    p.add_argument("--role", choices=("ha", "mn"), required=True)
    p.add_argument("--tun", required=True, help="TUN device to create")
    p.add_argument("--nice", type=int, default=0)
    args = p.parse_args(argv)
    ctrl = socket.socket(fileno=args.fd)
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError:
            pass   # not permitted: run at normal priority
    try:
        return serve(ctrl, args.role, args.tun)
    except KeyboardInterrupt:
        return 0
    finally:
        ctrl.close()


if __name__ == "__main__":
    sys.exit(main())
