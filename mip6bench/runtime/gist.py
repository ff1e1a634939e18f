"""GIST over real sockets: the asyncio runtime of the sans-I/O GistNode (gist/core.py).

    svc = GistService(agent, GistConfig(peer_identity=b"fw", addresses=(...,)),
                      intercept_interfaces=("fw-eth0",), random_bytes=os.urandom)
    svc.register_nslp(33, handler)     # handler(effect): RecvMessage / SendFailed /
                                       # RoutingStateChanged (sync or async)
    await svc.start()
    svc.send(33, session_id, mri, data, reliable=False, lifetime=None)
    svc.set_addresses(["2001:db8:5::100"])      # e.g. a mobile node's new CoA
    svc.counters() -> {"<core counter>": n, ..., "io.<runtime counter>": n}
    svc.register_transport("C", send)           # send(Transmit) -> bool, for C-mode
    svc.close()

One service per agent process; a node hosts several NSLPs by registering each (a
registered NSLP is served: the core answers its Queries and accepts its Confirms and
D-mode Data). Every core Event, and the runtime's own gist.* events, go to agent.emit.

Sockets
- One UDP socket bound to [::]:270 sends and receives. Received datagrams carry their
  destination (IPV6_RECVPKTINFO) and hop limit (IPV6_RECVHOPLIMIT); one that starts
  with the GIST magic number goes to the core as Q-mode, anything else as D-mode.
- Sending dispatches on GistTransmit.mode through `self.transports`:
  "Q": sendmsg to the flow destination, port 270, with ancillary IPV6_HOPOPTS (a
       Hop-by-Hop header with one Router Alert option, GistTransmit.router_alert; 68
       for NATFW), IPV6_HOPLIMIT (.hop_limit) and IPV6_PKTINFO with Transmit.src.
  "D": the same without the Hop-by-Hop header, to the peer.
  Other modes (C-mode, messaging associations) plug in with register_transport(); an
  unknown mode is dropped, counted (io.drop.unknown_mode) and logged.
- Interception on a forwarding node: per ingress interface and Router Alert value a
  SOCK_RAW/IPPROTO_RAW socket with IPV6_ROUTER_ALERT=value, IPV6_ROUTER_ALERT_ISOLATE=1
  and SO_BINDTODEVICE. It receives the whole IPv6 packet, header included, and the
  kernel then does not forward it: whatever the runtime does not re-emit is gone. The
  packet is parsed strictly (IPv6 header, Hop-by-Hop header, UDP with its checksum);
  what is not a GIST datagram (not UDP, not port 270, a UDP length or checksum that does
  not add up) is re-injected as the kernel would have forwarded it: the same bytes with
  the hop limit decremented. A GIST datagram goes to the core as Q-mode with the
  packet's source, destination and (not yet decremented) hop limit; the core's Forward
  verdicts (an NSLP this node does not serve, an undecodable datagram) are re-emitted as
  whole packets: original source, hop limit - 1, the same Hop-by-Hop header, the UDP
  datagram rebuilt around the core's bytes, through an unbound IPPROTO_RAW socket
  routed by the destination. A hop limit that would reach 0 is dropped and counted (no
  ICMP Time Exceeded is sent). By default the Router Alert values intercepted are those
  of config.rao_values, served or not, so a node that does not serve an NSLP still runs
  its Query through the core (forwarded, GIST hop count - 1); pass intercept_values=()
  to let the kernel forward those untouched instead.

Pitfalls (Linux; found or confirmed while building this)
- The kernel keeps ONE Router Alert chain for all network namespaces and checks it in
  ip6_forward before the hop limit and before netfilter's FORWARD hook. Without
  IPV6_ROUTER_ALERT_ISOLATE a socket in another namespace (same value, unbound, or bound
  to an ifindex that happens to be equal there) steals the packet: with F forwarding
  Q -> R, an unbound socket in R took the packet inside F and R's UDP socket never saw it
  (tests/netns/test_gist_runtime.py checks this with an experimental value). With
  ISOLATE a socket only sees packets that arrive in its own namespace. ISOLATE protects
  other namespaces' packets from OUR sockets, not ours from theirs: every RA socket on
  the machine must set it. IPV6_ROUTER_ALERT is refused (ENOPROTOOPT) unless the socket is
  SOCK_RAW/IPPROTO_RAW, and a socket carries one value.
- Only the forwarding path consults the chain: with net.ipv6.conf.all.forwarding=0 the
  sockets see nothing (start() refuses), locally addressed Q-mode messages arrive on the
  UDP socket, and what the node itself sends never passes its own RA sockets. For the
  same reason an intercepted packet never reaches netfilter's FORWARD hook, and what is
  re-emitted passes OUTPUT: a firewall's forward rules do not see Q-mode traffic that a
  GIST node on it intercepts. So a firewall runs with pass_through=False: it handles
  the NSLPs it serves and drops (and counts) everything else it intercepted, instead of
  re-emitting it past its own policy.
- An IPPROTO_RAW packet is sent as built: the kernel computes no UDP checksum, so the
  re-emitted UDP datagram gets a fresh one over the IPv6 pseudo-header (the GIST hop
  count changed). The checksum of intercepted datagrams is verified, not trusted: on the
  veth links of the tests it arrived complete (no CHECKSUM_PARTIAL leaking into the raw
  copy), but a datagram whose checksum fails is passed on untouched, never to the core.
- Source selection: IPV6_PKTINFO's ipi6_addr makes the kernel route with that source,
  so source-based policy rules apply (a mobile node's home address goes into its tunnel,
  its care-of address out of the visited link), and sendmsg fails with EADDRNOTAVAIL for
  an address the node no longer has (counted as io.send_error, logged). With `egress`
  (a mobile node) ipi6_ifindex pins the egress interface of a source address: right
  after a move the care-of address's packets leave by the new link even while the
  kernel's default route still points at the link just left. IPV6_HOPOPTS
  ancillary data needs CAP_NET_RAW.
- Not a socket matter, but it looked like one: right after a veth pair is created the
  first neighbour solicitation goes unanswered (the link is not ready until linkwatch
  has seen the carrier, up to a second), so the first Query and its retransmission wait
  about a second in the neighbour queue and arrive together (the second Response is then
  dropped as unexpected_response). Tests wait for one echo reply before they start.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import struct
from collections import Counter
from functools import partial
from typing import Any, Awaitable, Callable, Iterable

from mip6bench import ipaddr, ipv6
from mip6bench.codec import DecodeError
from mip6bench.errors import EnvironmentProblem, ParameterError
from mip6bench.gist.core import Forward, GistConfig, GistNode, GistTransmit
from mip6bench.gist.wire import GIST_PORT, MAGIC_BYTES, Mri
from mip6bench.ipv6 import (RouterAlertPacket, parse_router_alert_packet,  # noqa: F401
                            parse_udp, with_hop_limit)
from mip6bench.net import rao
from mip6bench.runtime.driver import CoreDriver
from mip6bench.runtime.udp import UdpSocket
from mip6bench.sansio import Action, Transmit

ANCBUF = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)
Handler = Callable[[Any], Awaitable[None] | None]
TransportSend = Callable[[Transmit], bool]


def _parse_ancillary(ancdata) -> tuple[str | None, int | None]:
    dst, hop_limit = None, None
    for level, kind, value in ancdata or ():
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == rao.IPV6_PKTINFO and len(value) >= 20:
            dst = socket.inet_ntop(socket.AF_INET6, value[:16])
        elif kind == rao.IPV6_HOPLIMIT and len(value) >= 4:
            hop_limit = struct.unpack("@i", value[:4])[0]
    return dst, hop_limit


class GistService:
    def __init__(self, agent, config: GistConfig, intercept_interfaces: Iterable[str] = (),
                 random_bytes: Callable[[int], bytes] = os.urandom, *,
                 intercept_values: Iterable[int] | None = None, port: int = GIST_PORT,
                 pass_through: bool = True, c_mode: bool = False,
                 egress: Callable[[str], int] | None = None):
        self.agent = agent
        # egress(source) -> the ifindex what we send from that address must leave by (0:
        # routing decides): a mobile node's care-of address leaves by the interface it
        # lives on, also right after a move, before the default route follows (the MH
        # sender's oif does the same for the BU).
        self.egress = egress
        # C-mode: messaging associations over TCP on the GIST port (runtime/gist_ma.py),
        # for NSLP messages sent reliably or too large for D-mode.
        self.c_mode = c_mode
        self.ma = None                     # GistMaPlug
        # What an intercepting node re-sends goes out through OUTPUT, past the FORWARD
        # hook: a firewall (pass_through False) must not re-send what it does not handle
        # itself, or any datagram with a Router Alert option would bypass its policy.
        self.pass_through = pass_through
        # Our own copy: register_nslp() adds to the served set.
        self.config = dataclasses.replace(config, nslps=frozenset(config.nslps),
                                          rao_values=dict(config.rao_values))
        self.core = GistNode(self.config, random_bytes)
        self.intercept_interfaces = tuple(intercept_interfaces)
        self.intercept_values = tuple(sorted(set(
            self.config.rao_values.values() if intercept_values is None else intercept_values)))
        self.port = port
        self.handlers: dict[int, Handler] = {}
        self.transports: dict[str, TransportSend] = {"Q": self._send_q, "D": self._send_d}
        self.io: Counter = Counter()
        self.driver: CoreDriver | None = None
        self.udp: UdpSocket | None = None
        self.interceptors: list[UdpSocket] = []
        self.tx: socket.socket | None = None

    # ------------------------------------------------------------ API
    def register_nslp(self, nslp_id: int, handler: Handler) -> None:
        """Serve `nslp_id`; its RecvMessage / SendFailed / RoutingStateChanged effects go
        to `handler`."""
        if not 0 <= nslp_id <= 0xFFFF:
            raise ValueError("NSLPID is 16 bits")
        self.handlers[nslp_id] = handler
        self.config.nslps = self.config.nslps | {nslp_id}

    def register_transport(self, mode: str, send: TransportSend) -> None:
        """Send GistTransmits whose mode is `mode` with `send` (True: sent)."""
        self.transports[mode] = send

    async def start(self) -> None:
        self.driver = CoreDriver(send=self._transmit, on_timer=self.core.handle_timer,
                                 apply=self._apply, emit=self.agent.emit)
        try:
            self._open_udp()
            if self.intercept_interfaces:
                self._open_interceptors()
            if self.c_mode:
                await self._open_ma()
        except BaseException:
            self.close()
            raise
        self.agent.emit("gist.listening", port=self.port, nslps=sorted(self.config.nslps),
                        intercept=list(self.intercept_interfaces),
                        router_alert=list(self.intercept_values) if self.interceptors else [])

    def send(self, nslp_id: int, session_id: bytes, mri: Mri, data: bytes,
             reliable: bool = False, lifetime: float | None = None,
             discover: bool = False, supersede: bool = False) -> None:
        """core.send_message, executed; its SendFailed effects reach the NSLP's handler.
        `discover`: an upstream message may start upstream discovery (EXT);
        `supersede`: it replaces the session's messages still waiting for the handshake."""
        self._execute(self.core.send_message(nslp_id, session_id, mri, data, self._now(),
                                             reliable=reliable, lifetime=lifetime,
                                             discover=discover, supersede=supersede))

    def set_addresses(self, addresses: Iterable[str]) -> None:
        self.core.set_addresses(addresses)

    def counters(self) -> dict[str, int]:
        out = {**self.core.counters, **{f"io.{k}": v for k, v in self.io.items()}}
        if self.ma is not None:
            out.update({f"ma.{k}": v for k, v in self.ma.transport.counters.items()})
        return out

    async def _open_ma(self) -> None:
        from mip6bench.runtime.gist_ma import GistMaPlug, MaTransport

        transport = MaTransport(self.port)
        self.ma = GistMaPlug(self.core, transport, execute=self._execute, now=self._now)
        self.register_transport("C", self.ma.transmit)
        try:
            await transport.start()
        except OSError as exc:
            raise EnvironmentProblem(f"GIST TCP port {self.port}: {exc.strerror}",
                                     "one GistService per network namespace") from None

    async def aclose(self) -> None:
        """close(), and the messaging associations' listener and connections."""
        self.close()
        if self.ma is not None:
            await self.ma.transport.stop()

    def close(self) -> None:
        for s in [self.udp, *self.interceptors]:
            if s is not None:
                s.close()
        self.udp, self.interceptors = None, []
        if self.tx is not None:
            self.tx.close()
            self.tx = None
        if self.driver is not None:
            self.driver.close()

    # ------------------------------------------------------------ sockets
    def _open_udp(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_RECVHOPLIMIT, 1)
            sock.bind(("::", self.port))
        except OSError as exc:
            sock.close()
            raise EnvironmentProblem(f"GIST UDP port {self.port}: {exc.strerror}",
                                     "one GistService per network namespace") from None
        self.udp = UdpSocket(sock, self._on_udp, on_error=self._io_error, ancillary=True,
                             ancbufsize=ANCBUF)

    def _open_interceptors(self) -> None:
        try:
            with open("/proc/sys/net/ipv6/conf/all/forwarding") as f:
                forwarding = f.read().strip()
        except OSError:
            forwarding = "?"
        if forwarding != "1":
            raise EnvironmentProblem(
                "Router Alert interception on a node that does not forward IPv6",
                "set net.ipv6.conf.all.forwarding=1 or pass no intercept_interfaces")
        for ifname in self.intercept_interfaces:
            try:
                socket.if_nametoindex(ifname)
            except OSError:
                raise ParameterError(f"GIST intercept interface {ifname!r} does not exist") \
                    from None
            for value in self.intercept_values:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
                try:
                    sock.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_ROUTER_ALERT, value)
                    sock.setsockopt(socket.IPPROTO_IPV6, rao.IPV6_ROUTER_ALERT_ISOLATE, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                except OSError as exc:
                    sock.close()
                    raise EnvironmentProblem(
                        f"Router Alert socket on {ifname} (value {value}): {exc.strerror}",
                        "needs CAP_NET_RAW and a kernel with IPV6_ROUTER_ALERT_ISOLATE "
                        "(Linux 4.20+)") from None
                self.interceptors.append(UdpSocket(
                    sock, partial(self._on_intercepted, ifname), on_error=self._io_error))
        self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx.setblocking(False)

    # ------------------------------------------------------------ receive
    def _on_udp(self, data: bytes, src: str, _port: int, ancdata) -> None:
        self.io["received"] += 1
        dst, hop_limit = _parse_ancillary(ancdata)
        src = src.split("%", 1)[0]
        if dst is None:
            self._drop("no_pktinfo", src=src)
            return
        q_mode = bytes(data[:4]) == MAGIC_BYTES
        self._execute(self.core.receive(bytes(data), src, dst, self._now(), q_mode=q_mode,
                                        ttl=hop_limit))

    def _on_intercepted(self, ifname: str, packet: bytes, _src: str, _port: int) -> None:
        self.io["intercepted"] += 1
        try:
            pkt = parse_router_alert_packet(packet)
        except DecodeError as err:
            self._drop("malformed_ipv6", ifname=ifname, detail=err.reason)
            return
        if pkt.next_header != ipv6.IPPROTO_UDP:
            self._reinject(packet, pkt, "not_udp", ifname)
            return
        try:
            sport, dport, payload = parse_udp(pkt.src, pkt.dst, pkt.upper)
        except DecodeError as err:
            self._reinject(packet, pkt, "bad_udp", ifname, detail=err.reason)
            return
        if dport != self.port:
            self._reinject(packet, pkt, "not_gist_port", ifname)
            return
        actions = self.core.receive(payload, pkt.src, pkt.dst, self._now(), q_mode=True,
                                    ttl=pkt.hop_limit)
        rest = []
        for action in actions:
            if isinstance(action, Forward):
                self._forward(action, pkt, sport, dport, ifname)
            else:
                rest.append(action)
        self._execute(rest)

    def _forward(self, fwd: Forward, pkt: RouterAlertPacket, sport: int, dport: int,
                 ifname: str) -> None:
        if not self.pass_through:
            self._drop("not_passed_through", src=fwd.src, dst=fwd.dst, ifname=ifname)
            return
        if fwd.hop_limit is None or fwd.hop_limit < 1:
            self._drop("hop_limit_exceeded", src=fwd.src, dst=fwd.dst, ifname=ifname)
            return
        udp = ipv6.udp_datagram(fwd.src, fwd.dst, sport, dport, fwd.data)
        packet = ipv6.ipv6_packet_with_hopopts(fwd.src, fwd.dst, fwd.hop_limit, pkt.hopopts,
                                              ipv6.IPPROTO_UDP, udp)
        if self._send_raw(packet, fwd.dst):
            self.io["forwarded"] += 1
            self.agent.emit("gist.forwarded", src=fwd.src, dst=fwd.dst,
                            hop_limit=fwd.hop_limit, ingress=ifname,
                            router_alert=pkt.router_alert)

    def _reinject(self, packet: bytes, pkt: RouterAlertPacket, reason: str, ifname: str,
                  **fields) -> None:
        if not self.pass_through:
            self._drop("not_passed_through", src=pkt.src, dst=pkt.dst, ifname=ifname, why=reason)
            return
        if pkt.hop_limit <= 1:
            self._drop("hop_limit_exceeded", src=pkt.src, dst=pkt.dst, ifname=ifname)
            return
        if self._send_raw(with_hop_limit(packet, pkt.hop_limit - 1), pkt.dst):
            self.io[f"reinjected.{reason}"] += 1
            self.agent.emit("gist.reinjected", reason=reason, src=pkt.src, dst=pkt.dst,
                            ingress=ifname, hop_limit=pkt.hop_limit - 1, **fields)

    def _send_raw(self, packet: bytes, dst: str) -> bool:
        try:
            self.tx.sendto(packet, (dst, 0))
        except OSError as exc:
            self._io_error("raw send", exc)
            return False
        return True

    # ------------------------------------------------------------ send
    def _transmit(self, t: GistTransmit) -> None:
        mode = t.mode
        send = self.transports.get(mode)
        if send is None:
            self._drop("unknown_mode", mode=str(mode), dst=t.dst, message=t.kind)
            return
        if send(t):
            self.io[f"sent.{mode}"] += 1

    def _send_q(self, t: GistTransmit) -> bool:
        value = t.router_alert
        if value is None:
            self._drop("no_router_alert_value", dst=t.dst, message=t.kind)
            return False
        return self._sendmsg(t, [(socket.IPPROTO_IPV6, rao.IPV6_HOPOPTS,
                                  ipv6.router_alert_hopopts(value))])

    def _send_d(self, t: GistTransmit) -> bool:
        return self._sendmsg(t, [])

    def _sendmsg(self, t: GistTransmit, cmsgs: list) -> bool:
        cmsgs = list(cmsgs)
        if t.hop_limit is not None:
            cmsgs.append((socket.IPPROTO_IPV6, rao.IPV6_HOPLIMIT,
                          struct.pack("@i", t.hop_limit)))
        if t.src is not None:
            oif = self.egress(t.src) if self.egress is not None else 0
            cmsgs.append((socket.IPPROTO_IPV6, rao.IPV6_PKTINFO,
                          ipaddr.packed6(t.src) + struct.pack("@I", oif)))
        try:
            self.udp.sock.sendmsg([t.data], cmsgs, 0, (t.dst, t.port or self.port))
        except OSError as exc:
            self._io_error(f"send {t.mode} {t.kind or ''}".strip(), exc,
                           src=t.src, dst=t.dst)
            return False
        return True

    # ------------------------------------------------------------ core plumbing
    def _now(self) -> float:
        if self.driver is None:
            raise RuntimeError("GistService.start() has not run")
        return self.driver.now()

    def _execute(self, actions: list[Action]) -> None:
        self.driver.execute(actions)

    def _apply(self, effect) -> Awaitable[None] | None:
        if self.ma is not None and self.ma.apply(effect):   # OpenMa / CloseMa
            return None
        if isinstance(effect, Forward):   # only intercepted packets can be forwarded
            self._drop("forward_not_intercepted", src=effect.src, dst=effect.dst)
            return None
        nslp_id = getattr(effect, "nslp_id", None)
        handler = self.handlers.get(nslp_id)
        if handler is None:
            self._drop("no_nslp_handler", nslp=nslp_id, effect=type(effect).__name__)
            return None
        return handler(effect)

    def _drop(self, reason: str, **fields) -> None:
        self.io[f"drop.{reason}"] += 1
        self.agent.emit("gist.io_drop", reason=reason, **fields)

    def _io_error(self, what: str, exc: BaseException, **fields) -> None:
        key = "send_error" if what.startswith(("send", "raw send")) else what.replace(" ", "_")
        self.io[key] += 1
        self.agent.emit("gist.io_error", what=what, error=str(exc), **fields)
