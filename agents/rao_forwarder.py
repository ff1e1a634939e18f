"""Router Alert forwarder for PANA discovery: runs on routers (access routers, core, home
agent) and passes multicast PANA-Client-Initiation messages that carry the discovery
Router Alert option on, hop by hop, out of every other interface, until they reach a
link where a PAA listens. mip6bench.pana.discovery has the RAO value, the group and the
decisions (RaoForwarderCore, run here on a CoreDriver); mip6bench.net.rao explains why
the kernel needs the group joined rather than a router alert socket.

Receives with a raw UDP socket (so it never takes port 716 from a PANA relay or agent on
the same router) joined to the group on each interface, with IPV6_RECVPKTINFO,
IPV6_RECVHOPOPTS and IPV6_RECVHOPLIMIT; re-emits whole packets with one IPPROTO_RAW
socket per interface (SO_BINDTODEVICE, multicast loop off).

Control commands: counters.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import struct
import sys

if __package__ in (None, ""):  # run as a script: agents/rao_forwarder.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.errors import ParameterError
from mip6bench.net import rao
from mip6bench.pana import discovery
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.driver import CoreDriver
from mip6bench.runtime.udp import UdpSocket


@dataclasses.dataclass(frozen=True)
class Options:
    interfaces: list[str]
    group: str = discovery.DISCOVERY_GROUP
    rao_value: int = discovery.DISCOVERY_RAO
    port: int = 716
    dedup_window: float = 0.5


class RaoForwarderAgent(Agent):
    role = "rao_forwarder"
    Options = Options

    async def start(self) -> None:
        o = self.options
        try:
            self.core = discovery.RaoForwarderCore(o.interfaces, o.group, o.rao_value, o.port,
                                             o.dedup_window)
            self.ifnames = {socket.if_nametoindex(i): i for i in o.interfaces}
        except (ValueError, OSError) as exc:
            raise ParameterError(f"forwarder interfaces: {exc}") from None
        rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
        for opt in (rao.IPV6_RECVPKTINFO, rao.IPV6_RECVHOPOPTS, rao.IPV6_RECVHOPLIMIT):
            rx.setsockopt(socket.IPPROTO_IPV6, opt, 1)
        for interface in o.interfaces:
            rao.join_group(rx, o.group, interface)
        self.driver = CoreDriver(send=self._forward, on_timer=lambda key, now: [],
                                 emit=self._event)
        self.rx = UdpSocket(rx, self._datagram, on_error=self._io_error, ancillary=True)
        self.tx = {}
        for interface in o.interfaces:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                         socket.if_nametoindex(interface))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setblocking(False)
            self.tx[interface] = s
        self.emit("rao.listening", interfaces=list(o.interfaces), group=o.group,
                  value=o.rao_value)

    async def stop(self) -> None:
        self.driver.close()
        self.rx.close()
        for s in self.tx.values():
            s.close()

    def _datagram(self, data: bytes, src: str, _port: int, ancdata) -> None:
        dst, ifindex, hop_limit, hopopts = None, None, None, None
        for level, kind, value in ancdata:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == rao.IPV6_PKTINFO and len(value) >= 20:
                dst = socket.inet_ntop(socket.AF_INET6, value[:16])
                ifindex = struct.unpack("@I", value[16:20])[0]
            elif kind == rao.IPV6_HOPLIMIT and len(value) >= 4:
                hop_limit = struct.unpack("@i", value[:4])[0]
            elif kind == rao.IPV6_HOPOPTS:
                hopopts = bytes(value)
        if dst is None or hop_limit is None:
            self.count("no packet info")
            return
        ingress = self.ifnames.get(ifindex, f"if{ifindex}")
        self.driver.execute(self.core.receive(data, src.split("%", 1)[0], dst, ingress,
                                              hop_limit, hopopts, self.driver.now()))

    def _forward(self, t: discovery.ForwardTransmit) -> None:
        try:
            self.tx[t.egress].sendto(t.data, (t.dst, 0, 0, socket.if_nametoindex(t.egress)))
        except OSError as exc:
            self._io_error(f"send on {t.egress}", exc)

    def _event(self, name: str, **fields) -> None:
        if name == "rao.drop" and fields.get("reason") in ("not the discovery group",
                                                           "not a PANA datagram"):
            self.count("other UDP")   # the raw socket sees all local UDP: no event
            return
        self.emit(name, **fields)

    def _io_error(self, what: str, exc: BaseException) -> None:
        self.count(f"io error ({what})")
        self.emit("rao.io_error", what=what, error=str(exc))

    def status(self) -> dict:
        return {"rao": dict(self.core.counters)}

    def commands(self):
        async def counters(_req):
            return dict(self.core.counters)

        return {"counters": counters}


if __name__ == "__main__":
    sys.exit(run(RaoForwarderAgent))
