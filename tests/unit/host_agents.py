"""Agents for tests/unit/test_agent_host.py, run in an agent host (runtime/host.py):
`python tests/unit/host_agents.py --config <host config>`."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mip6bench.runtime.agent import Agent  # noqa: E402
from mip6bench.runtime.host import run_host  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Options:
    fail_start: bool = False


class FaultyAgent(Agent):
    """A UDP echo on loopback, plus commands that misbehave in every way a handler can."""

    role = "test"
    Options = Options

    async def start(self) -> None:
        if self.options.fail_start:
            raise RuntimeError("refusing to start")
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._on_datagram)
        self.ticks = 0

    def _on_datagram(self) -> None:
        data, addr = self.sock.recvfrom(2048)
        if data == b"crash":   # malformed input that the handler does not survive
            raise ValueError("malformed datagram")
        self.count("echoed")
        self.sock.sendto(data, addr)

    async def stop(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def status(self) -> dict:
        return {"port": self.sock.getsockname()[1], "thread_pid": os.getpid()}

    def commands(self):
        async def boom(_req):
            raise RuntimeError("handler bug")

        async def callback_raises(_req):
            def bad():
                raise ZeroDivisionError("in a loop callback")
            asyncio.get_running_loop().call_soon(bad)
            return "scheduled"

        async def die(_req):
            self.fatal("asked to die")
            return "dying"

        return {"boom": boom, "callback-raises": callback_raises, "die": die}


if __name__ == "__main__":
    sys.exit(run_host(FaultyAgent))
