"""Random, truncated and mutated NATFW messages (and tokens inside them) fed to all three
cores in both directions: only counted drops, protocol-error answers or ordinary
processing, never an exception, and the NF's state stays within its bounds."""
from __future__ import annotations

import random

from mip6bench.natfw import wire as w
from mip6bench.natfw.core import NfCore, NiCore, NrCore, SendNslp

from .natfw_harness import COTI, HOA, KEY, T0, mutate, tok


def test_cores_survive_mutated_messages():
    rnd = random.Random(5981)
    token = w.SessionAuth(tok()[4:])
    seeds = [w.create(60, 9, w.ACTION_ALLOW, w.Mip6Flow(w.MIP6_MH, 2, HOA), token).encode(),
             w.create(0, 10).encode(),
             w.response(9, w.InfoCode.of(w.INFO_SUCCESS), 60).encode(),
             w.response(9, w.InfoCode.of(w.ERR_POLICY_DENIED)).encode(),
             w.notify(w.InfoCode.of(w.ERR_SESSION_TERMINATED)).encode(),
             # EXT (upstream, toward the data sender) at an edge NF
             w.NslpMessage(w.EXT, (w.Lifetime(60), w.ExtFlowInfo(w.ACTION_ALLOW, 0), w.Msn(11),
                                   w.DataTerminalInfo(135, 128, sender=COTI.source),
                                   w.Mip6Flow(w.MIP6_TUNNEL, 0, HOA), token)).encode(),
             w.NslpMessage(w.EXT, (w.Lifetime(0), w.ExtFlowInfo(w.ACTION_ALLOW, 0), w.Msn(12),
                                   w.DataTerminalInfo(135))).encode()]
    nf = NfCore({1: KEY}, wall_clock=lambda now: T0 + now, max_sessions=50, max_pending=20,
                max_per_source=100, token_sessions=1000)
    nfp = NfCore(None, authorization="pull", max_sessions=50, max_pending=20)
    # an edge NF whose inside holds the MRI's destination: EXTs are handled there
    nfe = NfCore({1: KEY}, wall_clock=lambda now: T0 + now, max_sessions=50, max_pending=20,
                 max_per_source=100, token_sessions=1000, inside=(COTI.destination + "/64",))
    ni, nr = NiCore(None, msn_start=1), NrCore()
    sids = [bytes([i]) * 16 for i in range(8)]
    for sid in sids[:4]:
        ni.create(sid, COTI, 60, 0.0)
    sent = 0
    for i in range(20000):
        now = i * 0.01
        raw = rnd.choice(seeds)
        if rnd.random() < 0.8:
            raw = mutate(rnd, raw)
        sid = rnd.choice(sids)
        up = rnd.random() < 0.5
        for core in (nf, nfp, nfe):
            out = core.receive(sid, COTI, raw, now, upstream=up)
            sent += sum(isinstance(a, SendNslp) for a in out)
            assert len(core.sessions) <= 50 and core.pending_count <= 20
            assert core.pending_count == sum(
                1 for s in core.sessions.values()
                if s.pending is not None or s.auth_request is not None)
        ni.receive(sid, COTI, raw, now)
        nr.receive(sid, COTI, raw, now)
        if i % 97 == 0:
            for core in (nf, nfp, nfe):
                core.handle_timer((rnd.choice(("pending", "expire")), sid), now + 100)
                core.handle_timer(("auth", rnd.randrange(100)), now)
            nfp.authorization_result(rnd.randrange(200), rnd.random() < 0.5, "x", None, now)
    assert nf.counters["malformed"] > 1000 and sent > 0
    assert nfe.counters["ext_installed"] > 0                 # EXTs reached the edge logic
