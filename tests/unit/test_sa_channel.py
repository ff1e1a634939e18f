"""The HA end of SA distribution on asyncio over real UDP sockets on loopback (no root):
push into an SAStore, pull on demand, revocation, and the SPI of a Binding Update."""
from __future__ import annotations

import asyncio
import random
import socket
import time

from mip6bench.aaa.sadist import SaDistConfig, SaDistPaaCore, SaRecord
from mip6bench.mipv6.crypto import encode_with_mn_ha
from mip6bench.mipv6.sa import MobilitySA, SAStore
from mip6bench.mipv6.wire import BindingUpdate, encode_mh
from mip6bench.runtime.sa_channel import SaChannelHa, bu_spi
from mip6bench.sansio import Transmit

PSK = bytes(range(32))
RECORD = SaRecord(0x4000, "hmac-sha256", "sequence", 30.0, "2001:db8:1::1001", "::1",
                  bytes(32), "mn1@x")


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


class Woken:
    """Set by the code under test's callbacks (an SA installed or removed at the HA, a
    datagram the PAA end handled); `until` re-checks its predicate on each wake-up."""

    def __init__(self):
        self.event = asyncio.Event()

    def set(self, *_args) -> None:
        self.event.set()

    async def until(self, predicate, timeout=3.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not predicate():
            self.event.clear()
            left = end - loop.time()
            assert left > 0, "timed out"
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except asyncio.TimeoutError:
                pass


def test_push_pull_and_revoke_over_loopback():
    async def scenario():
        ha_port, paa_port = free_port(), free_port()
        store, changes, events, woken = SAStore(), [], [], Woken()
        effects = []

        def on_change(*args):
            changes.append(args[:2] + args[3:4])
            effects.append(args)
            woken.set()

        channel = SaChannelHa({"::1": PSK}, store, emit=lambda n, **f: events.append(n),
                              port=ha_port, bind="::1", on_change=on_change)
        await channel.open()
        # The PAA end in this test: a core on its own socket.
        paa = SaDistPaaCore(SaDistConfig({"::1": PSK}, port=ha_port,
                                         wall_offset=time.time() - time.monotonic()),
                            rng=random.Random(1))
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", paa_port))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()

        def send(actions):
            for a in actions:
                if isinstance(a, Transmit):
                    sock.sendto(a.data, (a.dst, a.port))

        def readable():
            data, addr = sock.recvfrom(4096)
            send(paa.receive(data, addr[0], addr[1], time.monotonic()))
            woken.set()

        loop.add_reader(sock.fileno(), readable)
        send(paa.sa_established(RECORD, time.monotonic()))
        await woken.until(lambda: store.lookup_spi(RECORD.spi) is not None)
        sa = store.lookup_spi(RECORD.spi)
        assert (sa.algorithm, sa.replay, sa.hoa) == ("hmac-sha256-128", "sequence", RECORD.hoa)
        await woken.until(lambda: not paa._outstanding)     # acknowledged
        # Pull: the SA of another MN, asked for by NAI.
        paa.config.mode = "pull"
        other = SaRecord(0x5000, "hmac-sha1-96", "timestamp", 30.0, "2001:db8:1::1002", "::1",
                         bytes(20), "mn2@x")
        paa.sa_established(other, time.monotonic())
        channel.core.config.port = paa_port                 # the PAA listens there
        got = await channel.fetch(nai="mn2@x")
        assert got.spi == 0x5000 and store.lookup_hoa("2001:db8:1::1002").spi == 0x5000
        assert await channel.fetch(spi=0x6000) is None      # not found
        paa.config.mode = "push"                            # RECORD was pushed: revoke it
        send(paa.sa_revoked(RECORD.spi, RECORD.hoa, "terminated by PaC", time.monotonic()))
        await woken.until(lambda: store.lookup_spi(RECORD.spi) is None)
        assert ("remove", RECORD.spi, "revoked: terminated by PaC") in changes
        # The HA agent learns which SA left the store and that nothing replaced it.
        [(_, _, removed, _, effect)] = [a for a in effects if a[0] == "remove"]
        assert removed.spi == RECORD.spi and effect.hoa == RECORD.hoa and effect.successor is False
        assert [c[0] for c in changes].count("install") == 2
        listing = channel.list()
        assert [s["spi"] for s in listing] == [0x5000] and "key" not in listing[0]
        loop.remove_reader(sock.fileno())
        sock.close()
        await channel.close()

    asyncio.run(scenario())


def test_bu_spi():
    sa = MobilitySA(0x1234, bytes(20), hoa="2001:db8:1::1001")
    bu = BindingUpdate(seq=1, lifetime=600, ack=True, home_registration=True)
    signed = encode_with_mn_ha(bu, sa, "2001:db8:11::5", "2001:db8:1::1001", "2001:db8:11::5",
                               "2001:db8:1::1")
    assert bu_spi(signed) == 0x1234
    assert bu_spi(encode_mh(bu, "2001:db8:11::5", "2001:db8:1::1")) is None
    assert bu_spi(b"\x00garbage") is None


def test_a_push_is_stored_then_logged_then_acknowledged_then_reported():
    """The HA's order for a pushed SA: into the store, sadist.sa_installed logged (the
    time the bootstrap's SA phase ends on), only then the ACK sealed and sent, and the
    HA's Mobile IPv6 side told (on_change) last."""
    async def scenario():
        store = SAStore()
        steps = []
        channel = None

        def emit(name, **fields):
            if name == "sadist.sa_installed":
                steps.append(("event", store.lookup_spi(RECORD.spi) is not None,
                              channel.core._sealer.seq))

        channel = SaChannelHa({"::1": PSK}, store, emit=emit, port=free_port(), bind="::1",
                              on_change=lambda kind, *a: steps.append(("change", kind)))
        channel._send = lambda tx: steps.append(("send", store.lookup_spi(RECORD.spi) is not None,
                                                 channel.core._sealer.seq))
        await channel.open()
        paa = SaDistPaaCore(SaDistConfig({"::1": PSK}, wall_offset=time.time() - time.monotonic()),
                            rng=random.Random(1))
        push = next(a for a in paa.sa_established(RECORD, time.monotonic()) if isinstance(a, Transmit))
        channel._datagram(push.data, "::1", 7716)
        await channel.close()
        return steps

    # seq: the HA end's datagrams sealed so far (none before the event, the ACK after)
    assert asyncio.run(scenario()) == [("event", True, 0), ("send", True, 1), ("change", "install")]


def test_the_install_event_carries_the_time_the_sa_went_into_the_store(monkeypatch):
    """sadist.sa_installed is stamped by the clock read right after the store change, not
    when it is logged later (the bootstrap's SA phase ends on this time); other events are
    stamped by the log as before."""
    import mip6bench.runtime.sa_channel as sa_channel

    async def scenario():
        store = SAStore()
        reads = []      # per clock read: did the store hold the SA then?

        def clock():
            reads.append(store.lookup_spi(RECORD.spi) is not None)
            return 1000 + len(reads)

        monkeypatch.setattr(sa_channel.time, "monotonic_ns", clock)
        logged = []
        channel = SaChannelHa({"::1": PSK}, store, port=free_port(), bind="::1",
                              emit=lambda name, **f: logged.append((name, f.get("t_ns"), len(reads))))
        channel._send = lambda tx: None
        await channel.open()
        paa = SaDistPaaCore(SaDistConfig({"::1": PSK}, wall_offset=time.time() - time.monotonic()),
                            rng=random.Random(1))
        hello = next(a for a in paa.hello(time.monotonic()) if isinstance(a, Transmit))
        channel._datagram(hello.data, "::1", 7716)
        push = next(a for a in paa.sa_established(RECORD, time.monotonic()) if isinstance(a, Transmit))
        channel._datagram(push.data, "::1", 7716)
        await channel.close()
        return logged, reads

    logged, reads = asyncio.run(scenario())
    assert reads == [True]      # one read, once the SA was in the store
    assert logged == [("sadist.hello", None, 0), ("sadist.sa_installed", 1001, 1)]
