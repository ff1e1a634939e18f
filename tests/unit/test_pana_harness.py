"""Test doubles and an in-memory network for the PANA cores (no tests collected here).

ScriptedPeer / ScriptedAAA implement a toy EAP method (type 254, "expanded" space used
only here): the server sends a 16-byte challenge, the peer answers HMAC-SHA256(psk,
challenge), success gives MSK = SHA-512(psk | challenge). That is enough to exercise
every PANA path that depends on EAP (identity, one method round, success, failure, MSK).

Sim is a discrete-event network: nodes are cores at addresses, datagrams take `latency`
seconds, StartTimer/StopTimer are honoured like the asyncio runtime would, and
SendToAAA effects are answered by the node's ScriptedAAA after `aaa_delay`.
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import random
import struct

from mip6bench.pana import effects as fx
from mip6bench.pana.message import decode_message, message_name
from mip6bench.pana.channel import describe
from mip6bench.sansio import Event, StartTimer, StopTimer, Transmit

TOY_TYPE = 254


def eap(code: int, ident: int, eap_type: int | None = None, data: bytes = b"") -> bytes:
    if eap_type is None:
        return struct.pack("!BBH", code, ident, 4)
    return struct.pack("!BBHB", code, ident, 5 + len(data), eap_type) + data


class ScriptedPeer:
    """EAP peer double following the PANA EapPeer interface."""

    def __init__(self, nai: str, psk: bytes):
        self.nai, self.psk = nai, psk
        self.status = "pending"
        self.msk = None
        self.challenge = None
        self.received = []

    def receive(self, packet: bytes):
        self.received.append(packet)
        code, ident = packet[0], packet[1]
        if code == 1 and len(packet) >= 5 and packet[4] == 1:
            return eap(2, ident, 1, self.nai.encode())
        if code == 1 and len(packet) >= 5 and packet[4] == TOY_TYPE:
            self.challenge = packet[5:]
            return eap(2, ident, TOY_TYPE, hmac.new(self.psk, self.challenge, "sha256").digest())
        if code == 3 and self.challenge is not None and self.status != "failure":
            self.status = "success"
            self.msk = hashlib.sha512(self.psk + self.challenge).digest()
        elif code == 4:
            self.status = "failure"
        return None


class ScriptedAAA:
    """AAA server double: answers SendToAAA effects with (kind, payload, msk, attributes)."""

    def __init__(self, users: dict[str, bytes], session_timeout: int | None = None,
                 give_msk: bool = True):
        self.users = users
        self.session_timeout = session_timeout
        self.give_msk = give_msk
        self.pending = {}
        self.requests = []

    def handle(self, effect: fx.SendToAAA):
        self.requests.append(effect)
        packet = effect.eap_payload
        ident = packet[1]
        if len(packet) >= 5 and packet[4] == 1:
            nai = packet[5:].decode()
            if nai not in self.users:
                return "failure", eap(4, ident), None, {}
            challenge = hashlib.sha256(f"{effect.session_id}{nai}".encode()
                                       + bytes([len(self.requests)])).digest()[:16]
            self.pending[effect.session_id] = (nai, challenge)
            return "continue", eap(1, (ident + 1) & 0xFF, TOY_TYPE, challenge), None, {}
        nai, challenge = self.pending.pop(effect.session_id)
        expected = hmac.new(self.users[nai], challenge, "sha256").digest()
        if packet[5:] != expected:
            return "failure", eap(4, ident), None, {"nai": nai}
        msk = hashlib.sha512(self.users[nai] + challenge).digest() if self.give_msk else None
        attrs = {"nai": nai}
        if self.session_timeout:
            attrs["session_timeout"] = self.session_timeout
        return "success", eap(3, ident), msk, attrs


class ZeroJitter(random.Random):
    """A seeded Random whose backoff jitter is always 0 (exact RFC 3315 doubling)."""

    def uniform(self, a, b):
        return 0.0


class Node:
    def __init__(self, address, core, aaa=None, groups=()):
        self.address, self.core, self.aaa = address, core, aaa
        self.groups = set(groups)
        self.timers = {}
        self.actions = []

    def effects(self, kind=None):
        out = [a for a in self.actions if not isinstance(a, (Transmit, StartTimer, StopTimer,
                                                              Event))]
        return [a for a in out if kind is None or isinstance(a, kind)]

    def events(self, name=None):
        return [a for a in self.actions if isinstance(a, Event)
                and (name is None or a.name == name)]


class Sim:
    def __init__(self, latency: float = 0.01, aaa_delay: float = 0.005):
        self.now = 0.0
        self.latency = latency
        self.aaa_delay = aaa_delay
        self.nodes: dict[str, Node] = {}
        self.queue = []
        self.counter = itertools.count()
        self.wire = []          # (time, src, dst, bytes) of every datagram sent
        self.filter = None      # f(src, dst, data) -> bytes | None (None drops)
        self.aaa_hold = False   # True: SendToAAA effects are never answered

    def add(self, address, core, aaa=None, groups=()):
        node = Node(address, core, aaa, groups)
        self.nodes[address] = node
        return node

    def apply(self, address, actions):
        node = self.nodes[address]
        for action in actions:
            node.actions.append(action)
            if isinstance(action, Transmit):
                self.wire.append((self.now, address, action.dst, action.data))
                data = action.data
                if self.filter is not None:
                    data = self.filter(address, action.dst, data)
                    if data is None:
                        continue
                for dst in self._destinations(action.dst):
                    self._push(self.now + self.latency, "packet",
                               (dst, address, action.port or 716, data))
            elif isinstance(action, StartTimer):
                node.timers[action.key] = action.at
                self._push(action.at, "timer", (address, action.key, action.at))
            elif isinstance(action, StopTimer):
                node.timers.pop(action.key, None)
            elif isinstance(action, fx.SendToAAA) and node.aaa is not None and not self.aaa_hold:
                self._push(self.now + self.aaa_delay, "aaa", (address, action))

    def _destinations(self, dst):
        if dst in self.nodes:
            return [dst]
        return [a for a, n in self.nodes.items() if dst in n.groups]

    def _push(self, at, kind, payload):
        heapq.heappush(self.queue, (at, next(self.counter), kind, payload))

    def call(self, address, method, *args, **kwargs):
        """Invoke a core command and apply its actions. Every command takes `now` as its
        last argument; the simulation is advanced to that time first."""
        now = args[-1]
        if now > self.now:
            self.run(until=now)
        node = self.nodes[address]
        actions = getattr(node.core, method)(*args, **kwargs)
        self.apply(address, actions)
        return actions

    def run(self, until: float | None = None, max_steps: int = 100_000):
        for _ in range(max_steps):
            if not self.queue or (until is not None and self.queue[0][0] > until):
                break
            at, _, kind, payload = heapq.heappop(self.queue)
            self.now = max(self.now, at)
            if kind == "packet":
                dst, src, port, data = payload
                node = self.nodes[dst]
                self.apply(dst, node.core.receive(data, src, self.now, port))
            elif kind == "timer":
                address, key, at = payload
                node = self.nodes[address]
                if node.timers.get(key) == at:
                    del node.timers[key]
                    self.apply(address, node.core.handle_timer(key, self.now))
            elif kind == "aaa":
                address, effect = payload
                node = self.nodes[address]
                kind_, eap_payload, msk, attrs = node.aaa.handle(effect)
                self.apply(address, node.core.aaa_result(effect.session_id, kind_, eap_payload,
                                                         msk, attrs, self.now))
        else:
            raise AssertionError("simulation did not settle")
        if until is not None:
            self.now = max(self.now, until)

    def names(self, src=None, dst=None):
        """The PANA message names on the wire (PAR[S], PAN[C], PRY, ...) in order."""
        out = []
        for _, s, d, data in self.wire:
            if (src is None or s == src) and (dst is None or d == dst):
                out.append(describe(decode_message(data)))
        return out

    def sent_times(self, src, name):
        return [t for t, s, _, data in self.wire
                if s == src and describe(decode_message(data)) == name]


PAC = "2001:db8:f::10"
PAA = "2001:db8:a::1"
PRE = "2001:db8:f::1"
HA = "2001:db8:1::1"
NAI = "mn1@example.net"
PSK = b"0123456789abcdef"


def lose_first(name: str):
    """A Sim filter that loses the first message described as `name` (e.g. "PAR[S]");
    the lost datagram is kept in the filter's `lost` list."""
    def filt(src, dst, data):
        if not filt.lost and describe(decode_message(data)) == name:
            filt.lost.append(data)
            return None
        return data
    filt.lost = []
    return filt


def make_pair(sim=None, pac_kwargs=None, paa_kwargs=None, users=None, seed=1,
              rng_class=random.Random, aaa_kwargs=None):
    """A PaC and a PAA wired in `sim`; returns (sim, pac_node, paa_node)."""
    from mip6bench.pana import PaaConfig, PaaCore, PacConfig, PacCore

    sim = sim or Sim()
    users = users if users is not None else {NAI: PSK}
    pac_kwargs = dict(pac_kwargs or {})
    nai = pac_kwargs.pop("nai", NAI)
    psk = pac_kwargs.pop("psk", PSK)
    pac_addr = pac_kwargs.pop("address", PAC)
    pac_cfg = PacConfig(paa_address=pac_kwargs.pop("paa_address", PAA),
                        new_eap_peer=lambda: ScriptedPeer(nai, psk), nai=nai, **pac_kwargs)
    paa_node = sim.nodes.get(PAA)
    if paa_node is None:
        paa_core = PaaCore(PaaConfig(**(paa_kwargs or {})), rng=rng_class(seed + 1000))
        paa_node = sim.add(PAA, paa_core, ScriptedAAA(users, **(aaa_kwargs or {})))
    pac_node = sim.add(pac_addr, PacCore(pac_cfg, rng=rng_class(seed)))
    return sim, pac_node, paa_node


__all__ = ["ScriptedPeer", "ScriptedAAA", "ZeroJitter", "Sim", "Node", "make_pair", "lose_first", "eap",
           "PAC", "PAA", "PRE", "HA", "NAI", "PSK", "message_name"]
