"""In-memory network that drives the Mobile IPv6 cores (used by the other test_mipv6_* files).

It plays the runtime's part: executes Transmit (routing by address, reverse tunnelling for
MhTransmit.via "tunnel", HA interception of the home address while the MN is away), arms and fires
timers in time order, and records effects and events. Links have a fixed one-way delay.
"""
from __future__ import annotations

import heapq
import itertools

from mip6bench.codec import inet_checksum, ipv6_pseudo_header
from mip6bench.mipv6 import CorrespondentNode, HomeAgent, MobileNode, MobilitySA, SAStore
from mip6bench.mipv6.wire import address_bytes
from mip6bench.sansio import Effect, Event, StartTimer, StopTimer, Transmit

HA = "2001:db8:1::1"
HOA = "2001:db8:1::100"
HOME_PREFIX = "2001:db8:1::/64"
CN = "2001:db8:3::10"
COA1 = "2001:db8:2::100"
COA2 = "2001:db8:4::100"
NAI = "mn1@example.net"
KEY = bytes(range(16))
SPI = 0x1000


def counting_random():
    """Deterministic stand-in for os.urandom: distinct, reproducible bytes."""
    counter = itertools.count(1)

    def random_bytes(n: int) -> bytes:
        value = next(counter)
        return (value.to_bytes(8, "big") * ((n + 7) // 8))[:n]
    return random_bytes


def fix_checksum(raw: bytes, src: str, dst: str) -> bytes:
    """Recompute the MH checksum of hand-modified bytes."""
    raw = bytearray(raw)
    raw[4:6] = b"\0\0"
    ck = inet_checksum(ipv6_pseudo_header(address_bytes(src), address_bytes(dst), len(raw), 135) + bytes(raw))
    raw[4:6] = ck.to_bytes(2, "big")
    return bytes(raw)


def make_sa(**kw) -> MobilitySA:
    args = dict(spi=SPI, key=KEY, hoa=HOA, nai=NAI)
    args.update(kw)
    return MobilitySA(**args)


class Sim:
    def __init__(self, *, delay: float = 0.01, ha_kwargs=None, cn_kwargs=None, mn_kwargs=None,
                 sa: MobilitySA | None = None):
        self.now = 0.0
        self.delay = delay
        self.sa_ha = SAStore([sa or make_sa()])
        self.sa_mn = SAStore([sa or make_sa()])
        self.ha = HomeAgent(HA, [HOME_PREFIX], self.sa_ha, random_bytes=counting_random(), **(ha_kwargs or {}))
        self.cn = CorrespondentNode(CN, random_bytes=counting_random(), **(cn_kwargs or {}))
        self.mn = MobileNode(HOA, HA, self.sa_mn, random_bytes=counting_random(), **(mn_kwargs or {}))
        self.cores = {"ha": self.ha, "cn": self.cn, "mn": self.mn}
        self._queue: list = []
        self._order = itertools.count()
        self.timers: dict[tuple, float] = {}
        self.effects: list[tuple[float, str, Effect]] = []
        self.events: list[tuple[float, str, Event]] = []
        self.sent: list[tuple[float, str, Transmit]] = []
        self.drop = None   # callable(sender, transmit) -> True to lose the packet

    # -- the runtime's job
    def apply(self, name: str, actions) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self.sent.append((self.now, name, action))
                if self.drop is None or not self.drop(name, action):
                    self._route(name, action)
            elif isinstance(action, StartTimer):
                assert action.at >= self.now - 1e-9, (name, action, self.now)
                self.timers[(name, action.key)] = action.at
            elif isinstance(action, StopTimer):
                self.timers.pop((name, action.key), None)
            elif isinstance(action, Effect):
                self.effects.append((self.now, name, action))
            elif isinstance(action, Event):
                self.events.append((self.now, name, action))
            else:
                raise AssertionError(f"unknown action {action!r}")

    def _schedule(self, at: float, fn) -> None:
        heapq.heappush(self._queue, (at, next(self._order), fn))

    def _route(self, sender: str, tr: Transmit) -> None:
        if tr.via == "tunnel":
            # Reverse tunnel: MN -> HA, the HA decapsulates and forwards the inner packet.
            assert sender == "mn"
            self._schedule(self.now + self.delay, lambda: self._forward(tr))
            return
        self._forward(tr)

    def _forward(self, tr: Transmit) -> None:
        target, extra = self._destination(tr.dst)
        if target is None:
            return
        self._schedule(self.now + self.delay + extra, lambda: self._deliver(target, tr))

    def _destination(self, dst: str):
        if dst == HA:
            return "ha", 0.0
        if dst in self.cn.addresses:
            return "cn", 0.0
        if dst == HOA:
            if self.mn.at_home:
                return "mn", 0.0
            entry = self.ha.binding(HOA)
            if entry is not None and entry.coa == self.mn.coa:
                return "mn", self.delay   # intercepted by the HA and tunnelled to the CoA
            return None, 0.0
        if dst == self.mn.coa:
            return "mn", 0.0
        return None, 0.0

    def _deliver(self, target: str, tr: Transmit) -> None:
        core = self.cores[target]
        self.apply(target, core.receive(tr.data, tr.src, tr.dst, self.now,
                                        hao=tr.hao, rh2=tr.rh2))

    # -- driving
    def call(self, name: str, method: str, *args):
        self.apply(name, getattr(self.cores[name], method)(*args, self.now))

    def run_until(self, until: float) -> None:
        while True:
            next_timer = min(self.timers.items(), key=lambda kv: kv[1], default=None)
            next_packet = self._queue[0][0] if self._queue else None
            candidates = [t for t in (next_timer[1] if next_timer else None, next_packet) if t is not None]
            if not candidates or min(candidates) > until:
                break
            if next_packet is not None and (next_timer is None or next_packet <= next_timer[1]):
                at, _, fn = heapq.heappop(self._queue)
                self.now = max(self.now, at)
                fn()
            else:
                (name, key), at = next_timer
                del self.timers[(name, key)]
                self.now = max(self.now, at)
                self.apply(name, self.cores[name].handle_timer(key, self.now))
        self.now = max(self.now, until)

    def run(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    # -- inspection
    def effects_of(self, name: str, kind: type) -> list:
        return [e for _, n, e in self.effects if n == name and isinstance(e, kind)]

    def last_effect(self, name: str, kind: type):
        found = self.effects_of(name, kind)
        return found[-1] if found else None


def test_sim_orders_timers_and_packets():
    sim = Sim()
    sim.apply("mn", [StartTimer(("x",), 5.0), StartTimer(("y",), 2.0), StopTimer(("x",))])
    assert sim.timers == {("mn", ("y",)): 2.0}
    sim.run_until(3.0)
    assert sim.timers == {} and sim.now == 3.0


def test_counting_random_is_deterministic():
    a, b = counting_random(), counting_random()
    assert [a(8) for _ in range(3)] == [b(8) for _ in range(3)]
    assert len({a(8) for _ in range(5)}) == 5
