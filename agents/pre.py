"""PANA Relay Element (RFC 6345) agent: for PaCs that cannot reach the PAA themselves, runs
mip6bench.pana.relay.RelayCore on UDP 716 of (typically) an access router. A PaC sends its
PANA messages to this node as if it were the PAA; they reach the PAA inside PANA-Relay
messages with the PaC's address and port, and the PAA's answers come back the same way.

It relays only what a PaC sent to one of this node's unicast addresses (the socket
reports each datagram's destination, IPV6_PKTINFO): PANA messages to a multicast group
(the discovery PCIs the Router Alert forwarders carry to the PAA) are dropped and
counted ("not addressed to the PRE"), so a PRE left running on an access router does
not turn an MN's multicast PCI into a second, relayed session.

Two sockets: PaCs talk to `port` (716), and the PRE talks to the PAA from a socket of
its own (`paa_side_port`, 0: any free port), where the PAA's answers come back. A PRY is
accepted only from the PAA (`paa`, `paa_port`) and a PaC message only on the PaC side,
so PaC traffic is told from PAA traffic by the socket it arrived on, not by address: a
PaC on the PAA's own host (or everything on one host, on loopback) is relayed too.

Control commands: counters, wait-event {event, match, after_ns, within}, status (the
ports in use).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import sys

if __package__ in (None, ""):  # run as a script: agents/pre.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.errors import ParameterError
from mip6bench.pana.message import PANA_PORT
from mip6bench.pana.relay import RelayCore
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.driver import CoreDriver
from mip6bench.runtime.mobility import WaitableEvents
from mip6bench.runtime.udp import UdpSocket


@dataclasses.dataclass(frozen=True)
class Options:
    paa: str                      # the PAA's address
    paa_port: int = PANA_PORT
    port: int = PANA_PORT         # where PaCs talk to the PRE
    paa_side_port: int = 0        # where the PRE talks to the PAA from (0: any free port)


def pktinfo_destination(ancdata) -> str | None:
    """The destination address from an IPV6_PKTINFO control message (None without one)."""
    for level, kind, data in ancdata or ():
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
            return str(ipaddress.IPv6Address(data[:16]))
    return None


class PreAgent(WaitableEvents, Agent):
    role = "pre"
    Options = Options

    async def start(self) -> None:
        self._init_waitable()
        try:
            paa = str(ipaddress.IPv6Address(self.options.paa))
        except ValueError:
            raise ParameterError(f"paa {self.options.paa!r} is not an IPv6 address") from None
        self.core = RelayCore(paa, self.options.paa_port)
        self.driver = CoreDriver(send=self._send, on_timer=lambda key, now: [],
                                 apply=lambda effect: None, emit=self.emit)
        o = self.options
        for name in ("port", "paa_port", "paa_side_port"):
            value = getattr(o, name)
            if not (0 if name != "paa_port" else 1) <= value <= 65535:
                raise ParameterError(f"option {name!r}: {value} is not a UDP port")
        on_error = lambda what, exc: self.emit("pre.io_error", what=what, error=str(exc))  # noqa: E731
        self.sockets = {}
        self.sockets["pac"] = UdpSocket.bind("::", o.port, self._on("pac"), ancillary=True,
                                             on_error=on_error)
        self.sockets["pac"].sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        try:
            self.sockets["paa"] = UdpSocket.bind("::", o.paa_side_port, self._on("paa"),
                                                 on_error=on_error)
        except OSError:
            self.sockets["pac"].close()
            raise
        self.emit("pre.listening", port=self.sockets["pac"].port,
                  paa_side_port=self.sockets["paa"].port, paa=paa, paa_port=o.paa_port)

    async def stop(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.driver.close()

    def _on(self, via: str):
        def handler(data: bytes, src: str, port: int, ancdata=None) -> None:
            self.driver.execute(self.core.receive(
                data, src.split("%", 1)[0], self.driver.now(), port,
                dst=pktinfo_destination(ancdata) if via == "pac" else None, via=via))
        return handler

    def _send(self, tx) -> None:
        self.sockets[tx.via].send(tx.data, tx.dst, tx.port)

    def status(self) -> dict:
        return {"relay": dict(self.core.counters), "port": self.sockets["pac"].port,
                "paa_side_port": self.sockets["paa"].port}

    def commands(self):
        async def counters(_req):
            return dict(self.core.counters)

        return {"counters": counters, "wait-event": self.cmd_wait_event}


if __name__ == "__main__":
    sys.exit(run(PreAgent))
