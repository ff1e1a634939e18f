"""Interim bridges from the bootstrap agents to the Mobile IPv6 agents, through the MIPv6
agents' control sockets (their `bootstrap`, `sa-add` and `sa-remove` commands), for as
long as agents/mn.py and agents/ha.py do not compose PanaClient and SaChannelHa
themselves:

    MnBridge(path, emit)    agents/pac.py -> the MN agent on the same node:
                            "ready": bootstrap {home_address, home_agent, home_prefix} (once),
                            then sa-add {...SA, replace: true}; "rekeyed": sa-add the new SA,
                            sa-remove the old SPI; "revoked"/"closed": sa-remove the old SPI.
    HaBridge(path, emit)    agents/sa_receiver.py -> the HA agent on the same node:
                            install -> sa-add {...SA, lifetime: remaining, replace: true};
                            remove -> sa-remove {spi}.

Each request is one JSON line over the Unix socket (a fraction of a millisecond on the
same node); requests go out in order from one task, failures become "bridge.failed"
events and never stop the agent. Once the MIPv6 agents compose the bootstrap runtime
directly these bridges (and their small IPC delay in the measurements) go away.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable


async def control_request(path: str, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
    """One command to an agent's control socket (asyncio; see runtime.control)."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        writer.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ConnectionError(f"agent at {path} closed the connection")
    response = json.loads(line)
    if not response.get("ok"):
        raise RuntimeError(response.get("error", "unknown error"))
    return response.get("result")


def sa_spec(sa, now: float) -> dict[str, Any]:
    """A MobilitySA as the MIPv6 agents' sa-add takes it (lifetime: what remains)."""
    spec = {"spi": sa.spi, "key": sa.key.hex(), "algorithm": sa.algorithm,
            "replay": sa.replay, "hoa": sa.hoa, "nai": sa.nai, "replace": True}
    if sa.expires_at is not None:
        spec["lifetime"] = max(0.001, sa.expires_at - now)
    return spec


class _Bridge:
    def __init__(self, path: str, emit: Callable[..., None], name: str):
        self.path, self.emit, self.name = path, emit, name
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._worker(), name=name)
        self.sent = 0

    def submit(self, cmd: str, **args: Any) -> None:
        self._queue.put_nowait((cmd, args))

    async def _worker(self) -> None:
        while True:
            cmd, args = await self._queue.get()
            try:
                await control_request(self.path, cmd, **args)
                self.sent += 1
                self.emit("bridge.sent", bridge=self.name, command=cmd,
                          spi=args.get("spi"))
            except Exception as exc:  # the MIPv6 agent refused or is gone: log, go on
                self.emit("bridge.failed", bridge=self.name, command=cmd,
                          error=f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        await self._queue.join()

    def close(self) -> None:
        self._task.cancel()


class MnBridge(_Bridge):
    def __init__(self, path: str, emit: Callable[..., None]):
        super().__init__(path, emit, "mn")
        self._configured = False

    def update(self, update, now: float) -> None:
        """A mip6bench.runtime.pana_client.BootstrapUpdate."""
        b = update.bootstrap
        if update.kind in ("ready", "rekeyed") and b is not None and b.complete:
            if not self._configured and b.home_prefix:
                self.submit("bootstrap", home_address=b.hoa, home_agent=b.ha,
                            home_prefix=b.home_prefix)
                self._configured = True
            self.submit("sa-add", **sa_spec(b.sa, now))
        if update.old_spi is not None:
            self.submit("sa-remove", spi=update.old_spi)


class HaBridge(_Bridge):
    def __init__(self, path: str, emit: Callable[..., None]):
        super().__init__(path, emit, "ha")

    def change(self, kind: str, spi: int, sa, now: float) -> None:
        if kind == "install" and sa is not None:
            self.submit("sa-add", **sa_spec(sa, now))
        elif kind == "remove":
            self.submit("sa-remove", spi=spi)
