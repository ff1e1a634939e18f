"""MaTransport over real TCP on ::1 (no root): two instances exchange framed GIST
messages, bad framing closes the MA and is counted, the bounds hold; and two GistNodes
joined by GistMaPlug run a reliable exchange end to end on the asyncio loop."""
import asyncio
import socket
import struct

import pytest

from mip6bench.gist import core, wire
from mip6bench.runtime.driver import CoreDriver
from mip6bench.runtime.gist_ma import GistMaPlug, MaTransport, _Conn
from mip6bench.sansio import Transmit

LO = "::1"
TIMEOUT = 5.0


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind((LO, 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1")


class Ends:
    """A transport whose callbacks land in queues the test awaits."""

    def __init__(self, **kw):
        self.messages: asyncio.Queue = asyncio.Queue()
        self.events: asyncio.Queue = asyncio.Queue()
        self.ma = MaTransport(0, lambda d, s, t: self.messages.put_nowait((d, s, t)),
                              lambda p, k, r: self.events.put_nowait((p, k, r)),
                              host=LO, **kw)

    async def event(self):
        return await asyncio.wait_for(self.events.get(), TIMEOUT)

    async def message(self):
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind((LO, 0))
        return s.getsockname()[1]


def msg(i: int, size: int = 4) -> bytes:
    mri = wire.Mri("2001:db8::1", "2001:db8::2")
    return wire.Message(wire.DATA, 33, mri=mri, session_id=bytes(16),
                        nslp_data=struct.pack("!I", i) + b"z" * (size - 4)).encode()


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 30))


def test_two_transports_exchange_framed_messages_both_ways():
    async def scenario():
        a, b = Ends(), Ends()
        await a.ma.start()
        await b.ma.start()
        a.ma.open(LO, b.ma.port)
        assert await a.event() == (LO, "connected", "")
        assert await b.event() == (LO, "connected", "")        # accepted
        sent = [msg(i) for i in range(50)] + [msg(99, 16_000)]
        for data in sent:
            assert a.ma.send(LO, data)
        got = [await b.message() for _ in sent]
        assert [d for d, _, _ in got] == sent                  # whole, in order
        assert {(s, t) for _, s, t in got} == {(LO, LO)}
        assert b.ma.send(LO, msg(7))                           # the accepted end answers
        assert (await a.message())[0] == msg(7)
        a.ma.close(LO)                                         # no event for the closer
        assert await b.event() == (LO, "closed", "closed by peer")
        assert a.events.empty() and b.ma.conns == {} and a.ma.conns == {}
        assert a.ma.counters["sent"] == 51 and b.ma.counters["received"] == 51
        await a.ma.stop()
        await b.ma.stop()
    run(scenario())


async def raw_client(port: int):
    return await asyncio.open_connection(LO, port)


@pytest.mark.parametrize("frame,counter,reason", [
    (b"\x02\x10\x00\x00\x00\x21\x03\x80", "bad_frame", "version"),      # version 2
    (wire.MAGIC_BYTES + msg(1), "bad_frame", "version"),               # a Q-mode datagram
    (b"\x01\x10\x00\x00\x00\x21\x83\x80", "bad_frame", "C flag"),
    (b"\x01\x10\x00\x00\x00\x21\x09\x80", "bad_frame", "message type"),
    (b"\x01\x10\x00\x00\x00\x21\x03\x81", "bad_frame", "reserved"),
    (b"\x01\x10\x10\x00\x00\x21\x03\x80", "bad_frame", "exceeds"),     # 4096 words > 8 KiB
    (msg(1)[:-2], "truncated_frame", "inside a message"),
])
def test_bad_framing_closes_the_ma_and_is_counted(frame, counter, reason):
    async def scenario():
        b = Ends(max_frame=8192)
        await b.ma.start()
        reader, writer = await raw_client(b.ma.port)
        assert (await b.event())[1] == "connected"
        writer.write(msg(5) + frame)                          # a good message, then the bad
        if counter == "truncated_frame":
            writer.write_eof()
        assert (await b.message())[0] == msg(5)
        peer, kind, why = await b.event()
        assert kind == "failed" and reason in why and b.ma.counters[counter] == 1
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""   # closed on us
        assert b.ma.conns == {} and b.messages.empty()
        writer.close()
        await b.ma.stop()
    run(scenario())


def test_message_split_across_segments_is_reassembled():
    async def scenario():
        b = Ends()
        await b.ma.start()
        _, writer = await raw_client(b.ma.port)
        await b.event()
        data = msg(3, 400) + msg(4)
        for i in range(0, len(data), 7):
            writer.write(data[i:i + 7])
            await writer.drain()
        assert (await b.message())[0] == msg(3, 400)
        assert (await b.message())[0] == msg(4)
        writer.close()
        assert (await b.event())[1] == "closed"
        await b.ma.stop()
    run(scenario())


def test_number_of_mas_is_bounded_and_failures_are_reported():
    async def scenario():
        b = Ends(max_mas=2)
        await b.ma.start()
        first_r, first_w = await raw_client(b.ma.port)
        assert (await b.event())[1] == "connected"
        # one MA per peer address: a second connection from ::1 is refused
        second_r, second_w = await raw_client(b.ma.port)
        assert await asyncio.wait_for(second_r.read(), TIMEOUT) == b""
        assert b.ma.counters["duplicate_ma"] == 1 and len(b.ma.conns) == 1
        # the table full (connections to two other peers still being set up): refused
        b.ma.close(LO)
        assert await asyncio.wait_for(first_r.read(), TIMEOUT) == b""
        for other in ("2001:db8::7", "2001:db8::8"):
            b.ma.conns[other] = _Conn(other, outbound=True)
        third_r, third_w = await raw_client(b.ma.port)
        assert await asyncio.wait_for(third_r.read(), TIMEOUT) == b""
        assert b.ma.counters["refused_max_mas"] == 1 and LO not in b.ma.conns
        del b.ma.conns["2001:db8::8"]                           # a place again
        fourth_r, fourth_w = await raw_client(b.ma.port)
        assert (await b.event()) == (LO, "connected", "")
        b.ma.close(LO)
        b.ma.conns.clear()
        # open() beyond the bound fails; open() to a port nobody listens on fails
        a = Ends(max_mas=1)
        await a.ma.start()
        a.ma.open(LO, b.ma.port)
        assert await a.event() == (LO, "connected", "")
        a.ma.open("::2", 9)                                     # over the bound
        assert await a.event() == ("::2", "failed", "too many messaging associations")
        a.ma.close(LO)
        a.ma.open(LO, free_port())                              # nobody listens there
        peer, kind, why = await a.event()
        assert (peer, kind) == (LO, "failed") and why
        assert not a.ma.send(LO, msg(1)) and a.ma.counters["send_without_ma"] == 1
        for w in (first_w, second_w, third_w, fourth_w):
            w.close()
        await a.ma.stop()
        await b.ma.stop()
    run(scenario())


def test_peer_that_does_not_read_is_dropped():
    async def scenario():
        b = Ends(max_write_buffer=64 * 1024)
        await b.ma.start()
        reader, writer = await raw_client(b.ma.port)          # never reads
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await b.event()
        big = msg(1, 16_000)
        for _ in range(5000):                                 # at most 80 MB
            if not b.ma.send(LO, big):
                break
        assert b.ma.counters["write_buffer_full"] == 1
        assert await b.event() == (LO, "failed", "peer not reading (send buffer full)")
        writer.close()
        await b.ma.stop()
    run(scenario())


# ---------------------------------------------------------------- two nodes, real TCP
class Node:
    """A GistNode on the loop: CoreDriver for timers, Q/D-mode handed straight to the
    other node (the UDP path is not what is tested here), C-mode through GistMaPlug and
    a MaTransport on ::1."""

    def __init__(self, name, port):
        self.node = core.GistNode(core.GistConfig(name.encode(), (LO,), frozenset({33})))
        self.other: "Node" = None
        self.recv: asyncio.Queue = asyncio.Queue()
        self.failed: asyncio.Queue = asyncio.Queue()
        self.events: asyncio.Queue = asyncio.Queue()
        self.transport = MaTransport(port, host=LO)
        self.driver = CoreDriver(send=self._send, on_timer=self.node.handle_timer,
                                 apply=self._apply,
                                 emit=lambda name, **f: self.events.put_nowait((name, f)))
        self.plug = GistMaPlug(self.node, self.transport, execute=self.driver.execute,
                               now=self.driver.now)

    def _send(self, t: Transmit):
        if t.mode == "C":
            self.plug.transmit(t)
            return
        other = self.other
        asyncio.get_running_loop().call_soon(lambda: other.driver.execute(other.node.receive(
            t.data, t.src, t.dst, other.driver.now(), q_mode=t.mode == "Q", ttl=64)))

    def _apply(self, effect):
        if self.plug.apply(effect):
            return
        if isinstance(effect, core.RecvMessage):
            self.recv.put_nowait(effect)
        elif isinstance(effect, core.SendFailed):
            self.failed.put_nowait(effect)

    async def event(self, name, **match):
        while True:
            got, fields = await asyncio.wait_for(self.events.get(), TIMEOUT)
            if got == name and all(fields.get(k) == v for k, v in match.items()):
                return fields


def test_two_gist_nodes_run_a_reliable_exchange_over_tcp():
    async def scenario():
        # one address (::1), two ports: the querier reaches the responder's listener
        mn, cn = Node("mn", free_port()), Node("cn", free_port())
        mn.other, cn.other = cn, mn
        await mn.transport.start()
        await cn.transport.start()
        mri = wire.Mri(LO, LO, protocol=17, src_port=1, dst_port=2)
        assert (mn.node.config.ma_port, cn.node.config.ma_port) == \
            (mn.transport.listen_port, cn.transport.listen_port)   # switched on by the plug
        mn.driver.execute(mn.node.send_message(33, bytes(16), mri, b"CRE1", mn.driver.now(),
                                               reliable=True))
        got = await asyncio.wait_for(cn.recv.get(), TIMEOUT)
        assert got.data == b"CRE1" and got.peer == LO
        assert mn.node.mas[LO].status == "up" and cn.node.mas[LO].status == "up"
        assert mn.transport.counters["sent"] == 1 and cn.transport.counters["received"] == 1
        big = b"B" * 4000                                       # C-mode for its size too
        mn.driver.execute(mn.node.send_message(33, bytes(16), mri, big, mn.driver.now()))
        assert (await asyncio.wait_for(cn.recv.get(), TIMEOUT)).data == big
        cn.driver.execute(cn.node.send_message(33, bytes(16), mri.inverted(), b"RSP1",
                                               cn.driver.now(), reliable=True))
        assert (await asyncio.wait_for(mn.recv.get(), TIMEOUT)).data == b"RSP1"
        assert mn.transport.counters["sent"] == 2 and cn.transport.counters["sent"] == 1
        # the responder drops the MA: the querier hears of it; nothing was queued
        cn.transport.close(LO)
        fields = await mn.event("gist.ma", status="down")
        assert fields["reason"] == "closed by peer" and LO not in mn.node.mas
        assert mn.failed.empty()
        for n in (mn, cn):
            await n.transport.stop()
    run(scenario())


def test_plug_reports_a_write_to_a_vanished_ma_to_the_node():
    node = core.GistNode(core.GistConfig(b"mn", ("2001:db8::1",), frozenset({33})))
    transport = MaTransport(270, host=LO)
    done = []
    plug = GistMaPlug(node, transport, execute=done.extend, now=lambda: 5.0)
    assert node.config.ma_port == 270                       # C-mode switched on
    node.ma_connected("2001:db8::2", 1.0)                   # the node thinks it is up
    t = core.GistTransmit(b"\x01" * 8, "2001:db8::2", None, 270, mode="C", peer="2001:db8::2")
    assert plug.transmit(t) is False                        # the transport has no such MA
    assert "2001:db8::2" not in node.mas and transport.counters["send_without_ma"] == 1
    assert [e.fields["reason"] for e in done if getattr(e, "name", "") == "gist.ma"] == \
        ["not connected"]
    assert plug.apply(core.CloseMa("2001:db8::2", "x")) is True
    assert plug.apply(core.RecvMessage(33, bytes(16), None, b"", "::", None)) is False
