"""The home agent's end of the SA distribution channel, alone: receives the MIPv6 SAs the
PAA pushes (or fetches them on request), applies revocations and expiry, and keeps them
in an SAStore, logging each change ("sadist.sa_installed", "sadist.sa_removed").

It stands in for the HA agent until that agent composes
mip6bench.runtime.sa_channel.SaChannelHa itself (both use UDP 7716 on the HA node, so
the testbed starts this one only while the HA agent does not run the channel). With
`ha_control` (the HA agent's control socket) every change is handed on to the HA agent
through its sa-add/sa-remove commands (mip6bench.runtime.bridge.HaBridge).

Control commands: sa-fetch {spi | hoa | nai}, sa-list.
"""
from __future__ import annotations

import dataclasses
import os
import sys

if __package__ in (None, ""):  # run as a script: agents/sa_receiver.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.aaa.sadist import SADIST_PORT
from mip6bench.errors import ParameterError
from mip6bench.mipv6.sa import SAStore
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.sa_channel import SaChannelHa


@dataclasses.dataclass(frozen=True)
class Options:
    peers: dict                       # PAA address -> PSK (hex)
    port: int = SADIST_PORT
    window: float = 30.0
    fetch_timeout: float = 10.0
    ha_control: str | None = None     # the HA agent's control socket: hand SAs over


class SaReceiverAgent(Agent):
    role = "sa_receiver"
    Options = Options

    async def start(self) -> None:
        o = self.options
        try:
            peers = {addr: bytes.fromhex(psk) for addr, psk in o.peers.items()}
        except (ValueError, TypeError, AttributeError):
            raise ParameterError("peers maps PAA addresses to hex PSKs") from None
        self.store = SAStore()
        self.bridge = None
        on_change = None
        if o.ha_control:
            import asyncio

            from mip6bench.runtime.bridge import HaBridge
            self.bridge = HaBridge(o.ha_control, self.emit)
            loop = asyncio.get_running_loop()
            on_change = lambda kind, spi, sa, _reason: self.bridge.change(  # noqa: E731
                kind, spi, sa, loop.time())
        try:
            self.channel = SaChannelHa(peers, self.store, emit=self.emit, port=o.port,
                                       window=o.window, fetch_timeout=o.fetch_timeout,
                                       on_change=on_change)
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        await self.channel.open()

    async def stop(self) -> None:
        await self.channel.close()
        if self.bridge is not None:
            self.bridge.close()

    def status(self) -> dict:
        return {"sas": len(self.store), "sadist": dict(self.channel.core.counters)}

    def commands(self):   # called before start(): resolve the channel per request
        def forward(name):
            async def handler(req):
                return await self.channel.commands()[name](req)
            return handler

        return {"sa-fetch": forward("sa-fetch"), "sa-list": forward("sa-list")}


if __name__ == "__main__":
    sys.exit(run(SaReceiverAgent))
