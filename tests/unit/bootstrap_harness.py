"""An in-memory network for the bootstrap cores (no tests collected here).

Nodes are sans-I/O cores at addresses; datagrams take `latency` seconds; StartTimer /
StopTimer are honoured like the asyncio runtime would. Real cores everywhere: PacCore
with the EAP-PSK peer, PaaService, RadiusServerCore with EapServer, SaDistHaCore.

    net = BootstrapNet()                      # PaC, PAA (radius or local backend), AAA, HA
    net.start_pac("pac1")                     # PCI
    net.run(until=5.0)
    net.effects("ha", SaInstall)              # what the HA end produced
"""
from __future__ import annotations

import heapq
import itertools
import random

from mip6bench.aaa.credentials import Credential, Credentials
from mip6bench.aaa.paa_service import PaaService, PaaServiceConfig
from mip6bench.aaa.radius_client import RadiusClientConfig
from mip6bench.aaa.radius_server import RadiusServerConfig, RadiusServerCore
from mip6bench.aaa.sadist import SaDistConfig, SaDistHaCore
from mip6bench.eap.packet import EapType
from mip6bench.eap.peer import SimpleEapPeer, psk_peer_factory
from mip6bench.eap.psk_method import PskPeerMethod
from mip6bench.pana import mip6
from mip6bench.pana.paa import PaaConfig
from mip6bench.pana.pac import PacConfig, PacCore
from mip6bench.sansio import StartTimer, StopTimer, Transmit

from .test_pana_harness import Node as PanaNode

PAA, AAA, HA = "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::1"
PREFIX = "2001:db8:1::/64"
SECRET = b"radius shared secret"
SADIST_PSK = bytes(range(32))
RADIUS_CLIENT_PORT = 40000
USERS = [Credential("mn1@mip6bench.example", bytes(range(16)), "2001:db8:1::1001"),
         Credential("mn2@mip6bench.example", bytes(range(16, 32)), None)]


def pac_address(k: int) -> str:
    return f"2001:db8:11::{0x100 + k:x}"


class Node(PanaNode):
    """A node of the PANA harness (effects(), events()) driven by any core's functions."""

    def __init__(self, name, address, receive, timer):
        super().__init__(address, None)
        self.name, self.receive, self.timer = name, receive, timer


class BootstrapNet:
    def __init__(self, backend: str = "radius", sa_mode: str = "push", latency: float = 0.005,
                 users=USERS, paa_kwargs=None, server_kwargs=None, sa_lifetime: int = 600,
                 session_lifetime: int = 3600, seed: int = 7, mint_token=None,
                 radius_secret_at_server: bytes = SECRET, authz=None):
        self.now = 0.0
        self.latency = latency
        self.queue = []
        self.counter = itertools.count()
        self.nodes: dict[str, Node] = {}
        self.by_address: dict[str, Node] = {}
        self.wire = []            # (time, src, sport, dst, dport, data)
        self.filter = None        # f(src, dst, dport, data) -> data | None
        self.rng = random.Random(seed)
        creds = Credentials(users)
        self.creds = creds
        policy = mip6.Mip6Policy(HA, PREFIX, default_lifetime=sa_lifetime, max_lifetime=86400,
                                 mint_token=mint_token)
        radius = RadiusClientConfig(AAA, SECRET, nas_identifier="paa", nas_address=PAA)
        svc_cfg = PaaServiceConfig(
            PaaConfig(mip6=policy, session_lifetime=session_lifetime, **(paa_kwargs or {})),
            backend=backend, radius=radius if backend == "radius" else None,
            credentials=creds.psk, fixed_hoa=creds.hoa,
            sadist=SaDistConfig({HA: SADIST_PSK}, mode=sa_mode), authz=authz)
        self.paa = PaaService(svc_cfg, rng=random.Random(seed + 1))
        self.aaa = RadiusServerCore(RadiusServerConfig(
            {PAA: radius_secret_at_server}, creds.psk, fixed_hoa=creds.hoa,
            **(server_kwargs or {})), rng=_bytes(random.Random(seed + 2)))
        self.ha = SaDistHaCore(SaDistConfig({PAA: SADIST_PSK}), rng=random.Random(seed + 3))
        self._add("paa", PAA, self._paa_receive, self.paa.handle_timer)
        self._add("aaa", AAA, lambda d, s, sp, dp, now: self.aaa.receive(d, s, sp, now),
                  self.aaa.handle_timer)
        self._add("ha", HA, lambda d, s, sp, dp, now: self.ha.receive(d, s, sp, now),
                  self.ha.handle_timer)
        self.pacs: dict[str, PacCore] = {}

    def _paa_receive(self, data, src, sport, dport, now):
        via = {716: "pana", RADIUS_CLIENT_PORT: "radius", 7716: "sadist"}[dport]
        return self.paa.receive(data, src, sport, now, via=via)

    def _add(self, name, address, receive, timer):
        node = Node(name, address, receive, timer)
        self.nodes[name] = node
        self.by_address[address] = node
        return node

    def add_pac(self, name: str, k: int = 1, user: Credential | None = None,
                claim: str | None = None, **pac_kwargs):
        """claim: the EAP Identity Response (and PaC NAI) to send instead of the user's
        NAI, while EAP-PSK proves the user's ID_P with the user's PSK."""
        user = user or USERS[k - 1]
        psk = pac_kwargs.pop("psk", user.psk)
        if claim is None:
            new_eap_peer = psk_peer_factory(user.nai, psk)
        else:
            id_p = user.nai.encode()
            new_eap_peer = lambda: SimpleEapPeer(  # noqa: E731
                claim, None, methods={EapType.PSK: lambda: PskPeerMethod(id_p, psk)})
        cfg = PacConfig(paa_address=pac_kwargs.pop("paa_address", PAA),
                        new_eap_peer=new_eap_peer,
                        nai=claim or user.nai, mip6_request=pac_kwargs.pop("mip6_request",
                                                                   mip6.REQUEST_ALL),
                        **pac_kwargs)
        core = PacCore(cfg, rng=random.Random(self.rng.getrandbits(32)))
        self.pacs[name] = core
        self._add(name, pac_address(k), lambda d, s, sp, dp, now: core.receive(d, s, now, sp),
                  core.handle_timer)
        return core

    # ---- running
    def call(self, name, fn, *args):
        node = self.nodes[name]
        self.apply(node, fn(*args))

    def start_pac(self, name):
        self.call(name, self.pacs[name].start, self.now)

    def apply(self, node: Node, actions):
        for action in actions:
            node.actions.append(action)
            if isinstance(action, Transmit):
                sport = self._sport(node, action)
                data = action.data
                self.wire.append((self.now, node.address, sport, action.dst, action.port, data))
                if self.filter is not None:
                    data = self.filter(node.address, action.dst, action.port, data)
                    if data is None:
                        continue
                self._push(self.now + self.latency, "packet",
                           (action.dst, node.address, sport, action.port, data))
            elif isinstance(action, StartTimer):
                node.timers[action.key] = action.at
                self._push(action.at, "timer", (node.name, action.key, action.at))
            elif isinstance(action, StopTimer):
                node.timers.pop(action.key, None)

    def _sport(self, node, action):
        if node.name == "paa":
            return {"pana": 716, "radius": RADIUS_CLIENT_PORT, "sadist": 7716}[action.via]
        if node.name == "aaa":
            return 1812
        if node.name == "ha":
            return 7716
        return 716

    def _push(self, at, kind, payload):
        heapq.heappush(self.queue, (at, next(self.counter), kind, payload))

    def run(self, until: float | None = None, max_steps: int = 200_000):
        for _ in range(max_steps):
            if not self.queue or (until is not None and self.queue[0][0] > until):
                break
            at, _, kind, payload = heapq.heappop(self.queue)
            self.now = max(self.now, at)
            if kind == "packet":
                dst, src, sport, dport, data = payload
                node = self.by_address.get(dst)
                if node is not None:
                    self.apply(node, node.receive(data, src, sport, dport, self.now))
            else:
                name, key, at = payload
                node = self.nodes[name]
                if node.timers.get(key) == at:
                    del node.timers[key]
                    self.apply(node, node.timer(key, self.now))
        else:
            raise AssertionError("simulation did not settle")
        if until is not None:
            self.now = max(self.now, until)


def _bytes(rng: random.Random):
    return lambda n: rng.getrandbits(8 * n).to_bytes(n, "big") if n else b""
