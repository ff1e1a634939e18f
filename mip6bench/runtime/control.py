"""The control socket: JSON lines over a Unix stream socket.

Request:  {"cmd": "status", ...arguments}
Response: {"ok": true, "result": ...} or {"ok": false, "error": "..."}

Every agent answers `status`, `dump`, `events` (recent entries) and `memory`
(runtime/memory.py: tracemalloc snapshots when started with MIP6BENCH_TRACEMALLOC), plus its own
commands. The testbed and the Mininet CLI talk to agents with `request()`.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any, Awaitable, Callable

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_LINE = 1 << 20


class ControlError(RuntimeError):
    pass


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler],
                 before_reply: Callable[[], None] | None = None):
        self.path = path
        self.handlers = handlers
        # Called before every reply is written: an agent writes out its pending event
        # log entries, so whoever asked finds in the file what happened before the answer.
        self.before_reply = before_reply
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)  # a stale socket of an earlier, dead agent
        self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_LINE)

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if os.path.exists(self.path):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await self._reply(writer, {"ok": False, "error": "request line too long"})
                    break
                if not line:
                    break
                response = await self._dispatch(line)
                if self.before_reply is not None:
                    self.before_reply()
                await self._reply(writer, response)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass   # the agent is stopping with this connection open: nothing to report
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"not JSON: {exc.msg}"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is an object with a "cmd" string'}
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return {"ok": False, "error": f"unknown command {request['cmd']!r}; "
                                          f"known: {sorted(self.handlers)}"}
        try:
            return {"ok": True, "result": await handler(request)}
        except (ValueError, KeyError, TypeError, LookupError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
        writer.write(json.dumps(response, default=str).encode() + b"\n")
        await writer.drain()


def request(path: str, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
    """Send one command and return its result; raises ControlError on an error reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as exc:
            raise ControlError(f"cannot reach agent at {path}: {exc.strerror}") from None
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                raise ControlError(f"agent at {path} did not answer {cmd!r} within {timeout:g} s") from None
            if not chunk:
                raise ControlError(f"agent at {path} closed the connection")
            buf += chunk
    response = json.loads(buf)
    if not response.get("ok"):
        raise ControlError(response.get("error", "unknown error"))
    return response.get("result")
