"""A discrete-event network for GIST cores (no tests collected here).

Nodes sit on a chain (the flow path, in order). A Q-mode Transmit travels along the
chain from its sender toward the node that owns the destination; every GIST node on the
way intercepts it (as a Router Alert socket would) and either answers it or returns a
Forward verdict, after which it moves on to the next node. D-mode goes straight to the
owner of the destination address. Every hop takes `latency` seconds; StartTimer and
StopTimer are kept the way the asyncio runtime keeps them.

Messaging associations: OpenMa connects after one round trip (2 x latency) when the
node owning the peer address listens on that port (its config.ma_port) and is not in
`refuse`; both ends are then told ma_connected (the accepting end first), else the
opener gets ma_failed("connection refused"). A C-mode Transmit reaches the other end of
its MA one latency later (receive(..., c_mode=True) with the sender's end address);
CloseMa tells the other end ma_closed; break_ma() fails both ends at once.
"""
from __future__ import annotations

import heapq
import itertools
import random

from mip6bench.gist import core, wire
from mip6bench.sansio import Event, StartTimer, StopTimer, Transmit


def seeded_bytes(seed: int):
    rng = random.Random(seed)
    return lambda n: bytes(rng.getrandbits(8) for _ in range(n))


class Net:
    def __init__(self, latency: float = 0.01):
        self.latency = latency
        self.now = 0.0
        self.chain: list[str] = []           # node names in path order
        self.nodes: dict[str, core.GistNode] = {}
        self.owner: dict[str, str] = {}      # address -> node name
        self.timers: dict[tuple, float] = {}  # (node, key) -> due
        self.queue: list = []
        self.seq = itertools.count()
        self.wire: list[tuple] = []          # (time, sender, Transmit)
        self.delivered: list[tuple] = []     # (time, node, effect)
        self.effects: list[tuple] = []       # (time, node, action) every non-Transmit action
        self.drop = lambda sender, transmit: False
        self.links: dict[tuple, str] = {}    # (node, peer address) -> the node's own end
        self.refuse: set[str] = set()        # nodes that refuse MAs

    def add(self, name: str, address: str, nslps=(core.NATFW_NSLPID,), seed: int = 0,
            **config) -> core.GistNode:
        config.setdefault("ma_port", wire.GIST_PORT)      # every node listens for MAs
        node = core.GistNode(core.GistConfig(peer_identity=name.encode(), addresses=(address,),
                                             nslps=frozenset(nslps), **config),
                             random_bytes=seeded_bytes(seed or len(self.nodes) + 1))
        self.nodes[name] = node
        self.chain.append(name)
        self.owner[address] = name
        return node

    def push(self, at: float, item):
        heapq.heappush(self.queue, (at, next(self.seq), item))

    def apply(self, name: str, actions: list):
        for action in actions:
            if isinstance(action, Transmit):
                self.wire.append((self.now, name, action))
                if not self.drop(name, action):
                    self.route(name, action)
            elif isinstance(action, StartTimer):
                self.timers[(name, action.key)] = action.at
                self.push(action.at, ("timer", name, action.key, action.at))
            elif isinstance(action, StopTimer):
                self.timers.pop((name, action.key), None)
            else:
                self.effects.append((self.now, name, action))
                if isinstance(action, core.OpenMa):
                    self.open_ma(name, action)
                elif isinstance(action, core.CloseMa):
                    self.close_ma(name, action.peer)
                elif isinstance(action, core.RecvMessage):
                    self.delivered.append((self.now, name, action))
                elif isinstance(action, core.Forward):
                    self.push(self.now, ("forward", name, action))
        return actions

    def open_ma(self, name: str, op):
        target = self.owner.get(op.peer)
        node = self.nodes.get(target) if target else None
        if node is None or target in self.refuse or node.config.ma_port != op.port:
            self.push(self.now + 2 * self.latency, ("ma_failed", name, op.peer,
                                                    "connection refused"))
            return
        src = op.src or self.address(name)
        self.links[(name, op.peer)] = src
        self.links[(target, src)] = op.peer
        self.push(self.now + 2 * self.latency, ("ma_up", target, src))
        self.push(self.now + 2 * self.latency, ("ma_up", name, op.peer))

    def close_ma(self, name: str, peer: str):
        mine = self.links.pop((name, peer), None)
        target = self.owner.get(peer)
        if mine is not None and self.links.pop((target, mine), None) is not None:
            self.push(self.now + self.latency, ("ma_closed", target, mine))

    def break_ma(self, a: str, b: str, reason: str = "connection reset"):
        """The TCP connection between nodes a and b breaks: both ends are told now."""
        for name, other in ((a, b), (b, a)):
            for (who, peer) in list(self.links):
                if who == name and self.owner.get(peer) == other:
                    del self.links[(who, peer)]
                    self.apply(name, self.nodes[name].ma_failed(peer, reason, self.now))

    def address(self, name: str) -> str:
        return next(a for a, n in self.owner.items() if n == name)

    def route(self, sender: str, t: Transmit):
        if t.mode == "C":
            mine = self.links.get((sender, t.peer))
            target = self.owner.get(t.peer)
            if mine is not None and target is not None:
                self.push(self.now + self.latency, ("c", target, t.data, mine, t.peer))
            return
        if t.mode == "Q":
            self.push(self.now + self.latency, ("q", self.next_hop(sender, t.dst), t.data,
                                                t.src, t.dst))
        else:
            target = self.owner.get(t.dst)
            if target is not None:
                self.push(self.now + self.latency, ("d", target, t.data, t.src, t.dst))

    def next_hop(self, at: str, dst: str) -> str | None:
        target = self.owner.get(dst)
        if target is None:
            return None
        i, j = self.chain.index(at), self.chain.index(target)
        return self.chain[i + (1 if j > i else -1)] if i != j else None

    def run(self, until: float):
        while self.queue and self.queue[0][0] <= until:
            at, _, item = heapq.heappop(self.queue)
            self.now = at
            kind, name = item[0], item[1]
            if name is None:
                continue
            node = self.nodes[name]
            if kind == "timer":
                key, due = item[2], item[3]
                if self.timers.get((name, key)) != due:
                    continue
                del self.timers[(name, key)]
                self.apply(name, node.handle_timer(key, at))
            elif kind == "ma_up":
                self.apply(name, node.ma_connected(item[2], at))
            elif kind == "ma_failed":
                self.apply(name, node.ma_failed(item[2], item[3], at))
            elif kind == "ma_closed":
                self.apply(name, node.ma_closed(item[2], at))
            elif kind == "c":
                self.apply(name, node.receive(item[2], item[3], item[4], at, c_mode=True))
            elif kind == "forward":
                fwd = item[2]
                self.push(at + self.latency, ("q", self.next_hop(name, fwd.dst), fwd.data,
                                              fwd.src, fwd.dst))
            else:
                data, src, dst = item[2], item[3], item[4]
                self.apply(name, node.receive(data, src, dst, at, q_mode=(kind == "q"),
                                              ttl=60))
        self.now = until

    def call(self, name: str, method: str, *args, **kwargs):
        return self.apply(name, getattr(self.nodes[name], method)(*args, self.now, **kwargs))

    def sent(self, name: str | None = None, kind: str | None = None) -> list[tuple]:
        return [(at, who, t) for at, who, t in self.wire
                if (name is None or who == name) and (kind is None or t.kind == kind)]

    def events(self, name: str) -> list[str]:
        return [a.name for _, who, a in self.effects if who == name and isinstance(a, Event)]
