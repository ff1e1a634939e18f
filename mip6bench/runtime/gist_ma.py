"""GIST messaging associations (C-mode, RFC 5971 section 5.7.2 Forwards-TCP) on asyncio.

    ma = MaTransport(listen_port=270, on_message=recv, on_event=event, host="::")
    await ma.start()                  # listener for MAs opened by querying peers
    ma.open(peer, port=270, src=None) # connect (querying node); answer via on_event
    ma.send(peer, data) -> bool       # one whole GIST message (no magic number)
    ma.close(peer)                    # no event follows (unsent data is discarded)
    await ma.stop()

    on_message(data, src, dst)        # one whole message read from the MA with `src`
    on_event(peer, kind, reason)      # kind "connected" (ours connected, or one accepted),
                                      # "failed" (could not connect, broke, bad framing,
                                      # peer not reading), "closed" (the peer closed it)

One TCP connection per peer address carries every session with that peer (the GIST
core keys its MAs by the peer's address). Framing is the GIST common header: read 8
bytes, check them (wire.c_mode_frame_length: version 1, no C flag, known type, reserved
bits clear, length within `max_frame`), read the rest. A header that fails the check
cannot be resynchronised: the MA is closed, counted in `counters["bad_frame"]` and
reported "failed". What is inside the message is the core's business.

Bounds (every connection a stranger can open is bounded):
- `max_mas` (default 64) connections at once, ours and accepted ones; an accepted one
  beyond it is closed at once (`counters["refused_max_mas"]`), an open() beyond it
  fails.
- a message on an MA is at most `max_frame` bytes (default 65,536; the largest GIST
  message the core can build in C-mode is about 16.5 kB, an NSLP-Data object being at
  most 4095 words); the receive buffer of an MA is bounded by the same figure (the
  StreamReader limit, reading pauses beyond twice it).
- at most `max_write_buffer` bytes (default 262,144) may wait unsent per MA; a peer
  that reads nothing beyond that is dropped (`counters["write_buffer_full"]`).
- an open() that has not connected after `connect_timeout` s (default 5) fails.
- two connections with one peer (both sides opened at once): the one opened by the
  lower address wins on both sides; an accepted connection from a peer that already
  has one otherwise is closed (`counters["duplicate_ma"]`).

GistMaPlug wires this to a GistNode inside a runtime: the runtime hands it Transmits
with mode "C" (plug.transmit, the shape of GistService.register_transport's
send: Transmit -> bool) and the OpenMa/CloseMa effects (plug.apply); the plug feeds what
the transport reports into the node and hands the node's answers to the runtime's
`execute`. It switches the node's C-mode on (config.ma_port = the listening port), so a
node offers MAs only where something listens for them.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import Counter
from typing import Callable, Iterable

from mip6bench.codec import DecodeError
from mip6bench.gist import core, wire
from mip6bench.sansio import Action, Transmit

MAX_FRAME = 65_536
MAX_WRITE_BUFFER = 262_144


def _norm(host: str) -> str:
    host = host.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class _Conn:
    __slots__ = ("peer", "local", "outbound", "reader", "writer", "task", "connected")

    def __init__(self, peer: str, outbound: bool):
        self.peer, self.outbound = peer, outbound
        self.local: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.connected = False


class MaTransport:
    def __init__(self, listen_port: int = wire.GIST_PORT,
                 on_message: Callable[[bytes, str, str], None] | None = None,
                 on_event: Callable[[str, str, str], None] | None = None, *,
                 host: str = "::", max_mas: int = 64, max_frame: int = MAX_FRAME,
                 max_write_buffer: int = MAX_WRITE_BUFFER, connect_timeout: float = 5.0):
        self.listen_port, self.host = listen_port, host
        self.on_message = on_message or (lambda data, src, dst: None)
        self.on_event = on_event or (lambda peer, kind, reason: None)
        self.max_mas, self.max_frame = max_mas, max_frame
        self.max_write_buffer, self.connect_timeout = max_write_buffer, connect_timeout
        self.conns: dict[str, _Conn] = {}
        self.counters: Counter = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accepted, self.host, self.listen_port, family=socket.AF_INET6
            if ":" in self.host else socket.AF_UNSPEC, limit=self.max_frame,
            reuse_address=True)

    @property
    def port(self) -> int:
        """The listening port (the one the kernel chose when listen_port was 0)."""
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for peer in list(self.conns):
            self.close(peer)
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # ------------------------------------------------------------ API
    def open(self, peer: str, port: int = wire.GIST_PORT, src: str | None = None) -> None:
        peer = _norm(peer)
        conn = self.conns.get(peer)
        if conn is not None:
            if conn.connected:
                asyncio.get_running_loop().call_soon(self.on_event, peer, "connected", "")
            return
        if len(self.conns) >= self.max_mas:
            self.counters["refused_max_mas"] += 1
            asyncio.get_running_loop().call_soon(self.on_event, peer, "failed",
                                                 "too many messaging associations")
            return
        conn = _Conn(peer, outbound=True)
        self.conns[peer] = conn
        conn.task = self._spawn(self._connect(conn, port, src))

    def send(self, peer: str, data: bytes) -> bool:
        conn = self.conns.get(_norm(peer))
        if conn is None or not conn.connected or conn.writer.is_closing():
            self.counters["send_without_ma"] += 1
            return False
        conn.writer.write(data)
        if conn.writer.transport.get_write_buffer_size() > self.max_write_buffer:
            self.counters["write_buffer_full"] += 1
            self._drop(conn, "failed", "peer not reading (send buffer full)")
            return False
        self.counters["sent"] += 1
        return True

    def close(self, peer: str) -> None:
        conn = self.conns.pop(_norm(peer), None)
        if conn is not None:
            # what is still unsent goes nowhere useful (the peer went silent, or our
            # address is gone): no lingering close that retransmits it for minutes
            stuck = conn.writer is not None and conn.writer.transport.get_write_buffer_size()
            self._shut(conn, abort=bool(stuck))

    # ------------------------------------------------------------ internals
    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _shut(self, conn: _Conn, abort: bool = False) -> None:
        if conn.writer is not None:
            if abort:               # what is unsent is of no use (or will never be read)
                conn.writer.transport.abort()
            else:
                conn.writer.close()
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    def _drop(self, conn: _Conn, kind: str, reason: str) -> None:
        """Close `conn`; when it is still the peer's MA, report it."""
        self._shut(conn, abort=kind == "failed")
        if self.conns.get(conn.peer) is conn:
            del self.conns[conn.peer]
            self.on_event(conn.peer, kind, reason)

    async def _connect(self, conn: _Conn, port: int, src: str | None) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(conn.peer, port, limit=self.max_frame,
                                        local_addr=(src, 0) if src else None),
                self.connect_timeout)
        except asyncio.TimeoutError:
            self._drop(conn, "failed", "connect timeout")
            return
        except OSError as exc:
            self._drop(conn, "failed", exc.strerror or type(exc).__name__)
            return
        if self.conns.get(conn.peer) is not conn:       # closed, or lost a tie-break
            writer.close()
            return
        self._up(conn, reader, writer)
        await self._read(conn)

    def _up(self, conn: _Conn, reader, writer) -> None:
        conn.reader, conn.writer, conn.connected = reader, writer, True
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.local = _norm(writer.get_extra_info("sockname")[0])
        self.counters["connected"] += 1
        self.on_event(conn.peer, "connected", "")

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        peer = _norm(writer.get_extra_info("peername")[0])
        local = _norm(writer.get_extra_info("sockname")[0])
        old = self.conns.get(peer)
        if old is not None:
            if old.connected or not (old.outbound and self._peer_wins(peer, local)):
                self.counters["duplicate_ma"] += 1
                writer.close()
                return
            self.conns.pop(peer)             # simultaneous open: the peer's connection wins
            self._shut(old)
        elif len(self.conns) >= self.max_mas:
            self.counters["refused_max_mas"] += 1
            writer.close()
            return
        conn = _Conn(peer, outbound=False)
        conn.task = asyncio.current_task()
        self._tasks.add(conn.task)
        conn.task.add_done_callback(self._tasks.discard)
        self.conns[peer] = conn
        self._up(conn, reader, writer)
        await self._read(conn)

    @staticmethod
    def _peer_wins(peer: str, local: str) -> bool:
        try:
            return ipaddress.ip_address(peer) < ipaddress.ip_address(local)
        except (ValueError, TypeError):
            return peer < local

    async def _read(self, conn: _Conn) -> None:
        kind, reason = "closed", "closed by peer"
        try:
            while True:
                header = await conn.reader.readexactly(wire.HEADER_LEN)
                total = wire.c_mode_frame_length(header, self.max_frame)
                body = await conn.reader.readexactly(total - wire.HEADER_LEN)
                self.counters["received"] += 1
                self.on_message(header + body, conn.peer, conn.local)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                self.counters["truncated_frame"] += 1
                kind, reason = "failed", "connection closed inside a message"
        except DecodeError as exc:
            self.counters["bad_frame"] += 1
            kind, reason = "failed", f"bad frame: {exc.reason}"
        except asyncio.CancelledError:
            return
        except OSError as exc:
            kind, reason = "failed", exc.strerror or type(exc).__name__
        except Exception as exc:         # a consumer bug must not leave the MA half alive
            self.counters["handler_error"] += 1
            kind, reason = "failed", f"handler error: {type(exc).__name__}"
        self._drop(conn, kind, reason)


class GistMaPlug:
    """Connects a GistNode's C-mode to a MaTransport inside a runtime.

        plug = GistMaPlug(node, transport, execute=driver.execute, now=driver.now)
        plug.transmit(t)       # a GistTransmit with mode "C"; True when written
        plug.apply(effect)     # True when it was an OpenMa/CloseMa (and was done)

    It installs the transport's on_message/on_event; what the node answers goes to
    `execute` (the runtime's one driver).
    """

    def __init__(self, node: core.GistNode, transport: MaTransport, *,
                 execute: Callable[[Iterable[Action]], None], now: Callable[[], float]):
        self.node, self.transport, self.execute, self.now = node, transport, execute, now
        transport.on_message = self._message
        transport.on_event = self._event
        if transport.listen_port:
            node.config.ma_port = transport.listen_port

    def transmit(self, t: core.GistTransmit) -> bool:
        peer = t.peer
        if self.transport.send(peer, t.data):
            return True
        if peer not in self.transport.conns:      # gone without the node being told
            self.execute(self.node.ma_failed(peer, "not connected", self.now()))
        return False

    def apply(self, effect) -> bool:
        if isinstance(effect, core.OpenMa):
            self.transport.open(effect.peer, effect.port, effect.src)
            return True
        if isinstance(effect, core.CloseMa):
            self.transport.close(effect.peer)
            return True
        return False

    def _message(self, data: bytes, src: str, dst: str) -> None:
        self.execute(self.node.receive(data, src, dst, self.now(), c_mode=True))

    def _event(self, peer: str, kind: str, reason: str) -> None:
        now = self.now()
        if kind == "connected":
            self.execute(self.node.ma_connected(peer, now))
        elif kind == "closed":
            self.execute(self.node.ma_closed(peer, now))
        else:
            self.execute(self.node.ma_failed(peer, reason, now))
