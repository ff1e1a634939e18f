"""NI (MN) -> NF (firewall) -> NR (CN) on simulated time, wired by a tiny harness that
plays GIST: SendNslp downstream goes NI->NF->NR, upstream NR->NF->NI. Timers are kept
per node; `run(until)` fires them in time order."""
from __future__ import annotations

from mip6bench.aaa.token import Flow, mint_token
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import Mri, NfCore, NiCore, NrCore, SendNslp
from mip6bench.sansio import StartTimer, StopTimer

KEY = bytes(range(32))
HOA, COA, CN = "2001:db8:1::1001", "2001:db8:11::5", "2001:db8:2::10"
NAI = "mn1@mip6bench.example"
T0 = 1_800_000_000.0
COTI = Mri(COA, CN, 135)
HOTI = Mri(HOA, CN, 135)
SID = b"\x01" * 16
MH_FLOWS = (Flow(135, "2001:db8:2::/64"),)


def tok(hoa=HOA, key=KEY, start=T0, end=T0 + 600, flows=MH_FLOWS, token_id=b"\x07" * 8,
        key_id=1):
    return mint_token(key, key_id, NAI, hoa, flows, start, end, token_id=token_id)


class Net:
    def __init__(self, token=None, keys={1: KEY}, policy=None, drop=None, **nf):
        self.now = 0.0
        self.ni = NiCore(token, msn_start=100)
        self.nf = NfCore(keys, wall_clock=lambda now: T0 + now, **nf)
        self.nr = NrCore(policy)
        self.timers = {}            # (node, key) -> at
        self.effects = {"ni": [], "nf": [], "nr": []}
        self.wire = []              # (from, to, message)
        self.drop = drop            # drop(from, to, message) -> bool: lose it on the way
        self.peer = None            # what the NF is told the GIST peer is

    def apply(self, node, actions):
        for a in actions:
            if isinstance(a, StartTimer):
                self.timers[(node, a.key)] = a.at
            elif isinstance(a, StopTimer):
                self.timers.pop((node, a.key), None)
            elif isinstance(a, SendNslp):
                nxt = {("ni", False): "nf", ("nf", False): "nr", ("nr", True): "nf",
                       ("nf", True): "ni"}[(node, a.upstream)]
                msg = w.decode(a.data)
                self.wire.append((node, nxt, msg))
                if self.drop and self.drop(node, nxt, msg):
                    continue
                core = getattr(self, nxt)
                kw = {"upstream": a.upstream, "peer": self.peer} if nxt == "nf" else {}
                self.apply(nxt, core.receive(a.session_id, a.mri, a.data, self.now, **kw))
            else:
                self.effects[node].append(a)

    def run(self, until):
        while True:
            due = sorted((at, k) for k, at in self.timers.items() if at <= until)
            if not due:
                break
            at, (node, key) = due[0]
            del self.timers[(node, key)]
            self.now = at
            self.apply(node, getattr(self, node).handle_timer(key, at))
        self.now = until

    def of(self, node, cls):
        return [e for e in self.effects[node] if isinstance(e, cls)]

    def open(self, mri=COTI, lifetime=60, sid=SID, mip6=w.Mip6Flow(w.MIP6_MH, 2, HOA),
             **kw):
        self.apply("ni", self.ni.create(sid, mri, lifetime, self.now, mip6=mip6, **kw))

    def names(self, frm=None):
        return [m.name for f, _, m in self.wire if frm is None or f == frm]


def mutate(rnd, b: bytes) -> bytes:
    """1-4 random edits of `b`: overwrite a byte, insert 1/4/8 random bytes, delete 1/4
    bytes, or truncate."""
    b = bytearray(b)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(4)
        pos = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[pos % len(b)] = rnd.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.choice((1, 4, 8))))
        elif op == 2:
            del b[pos:pos + rnd.choice((1, 4))]
        else:
            b = b[:pos]
    return bytes(b)
