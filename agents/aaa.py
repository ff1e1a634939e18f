"""AAA server agent: the embedded RADIUS authentication server with EAP-PSK
(mip6bench.aaa.radius_server) on UDP 1812.

Users come from a credentials file (NAI, 16-byte PSK in hex, optional fixed Home
Address, see mip6bench.aaa.credentials); RADIUS clients (the PAAs) and their shared
secrets from the options. A fixed Home Address goes back to the PAA as
Framed-IPv6-Address in the Access-Accept.

Control commands: conversations (how many EAP conversations are open), counters.
"""
from __future__ import annotations

import dataclasses
import os
import sys

if __package__ in (None, ""):  # run as a script: agents/aaa.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.aaa.credentials import load_credentials
from mip6bench.aaa.radius_server import RADIUS_AUTH_PORT, RadiusServerConfig, RadiusServerCore
from mip6bench.errors import ParameterError
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.driver import CoreDriver
from mip6bench.runtime.udp import UdpSocket


@dataclasses.dataclass(frozen=True)
class Options:
    credentials: str                      # path of the credentials file
    clients: dict                         # NAS address -> shared secret (text)
    server_id: str = "aaa.mip6bench.example"
    bind: str = "::"
    port: int = RADIUS_AUTH_PORT
    session_timeout: int = 0              # Session-Timeout in Access-Accept (0: none)
    discard_bad_mac_p: bool = False


class AaaAgent(Agent):
    role = "aaa"
    Options = Options

    async def start(self) -> None:
        o = self.options
        creds = load_credentials(o.credentials)
        if not o.clients:
            raise ParameterError("no RADIUS clients configured", "give clients {address: secret}")
        try:
            config = RadiusServerConfig(
                {addr: str(secret).encode() for addr, secret in o.clients.items()},
                creds.psk, server_id=o.server_id, fixed_hoa=creds.hoa,
                session_timeout=o.session_timeout or None,
                discard_bad_mac_p=o.discard_bad_mac_p)
        except ValueError as exc:
            raise ParameterError(f"bad RADIUS client list: {exc}") from None
        self.core = RadiusServerCore(config)
        self.driver = CoreDriver(send=self._send, on_timer=self.core.handle_timer,
                                 apply=lambda effect: None, emit=self.emit,
                                 emit_fields=self.emit_fields)
        self.sock = UdpSocket.bind(o.bind, o.port, self._datagram, on_error=self._io_error)
        self.emit("aaa.listening", port=o.port, users=len(creds), clients=sorted(config.clients))

    async def stop(self) -> None:
        self.sock.close()
        self.driver.close()

    def _datagram(self, data: bytes, src: str, port: int) -> None:
        self.driver.execute(self.core.receive(data, src, port, self.driver.now()))

    def _send(self, tx) -> None:
        self.sock.send(tx.data, tx.dst, tx.port)

    def _io_error(self, what: str, exc: BaseException) -> None:
        self.count(f"io error ({what})")
        self.emit("aaa.io_error", what=what, error=str(exc))

    def status(self) -> dict:
        return {"conversations": len(self.core.conversations),
                "radius": dict(self.core.counters)}

    def commands(self):
        async def conversations(_req):
            return {"open": len(self.core.conversations)}

        async def counters(_req):
            return dict(self.core.counters)

        return {"conversations": conversations, "counters": counters}


if __name__ == "__main__":
    sys.exit(run(AaaAgent))
