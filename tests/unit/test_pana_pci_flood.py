"""PCI reflection and state (issue 10, defect 5): a spoofed PANA-Client-Initiation costs
the sender one datagram; the PAA's half-open sessions are bounded in all and per PaC
address, and the PAR[S] toward an address that never answers is sent at most
1 + handshake_retransmit.mrc times before the session goes."""
from __future__ import annotations

import heapq
import random

from mip6bench.pana import PaaConfig, PaaCore
from mip6bench.pana import message as m
from mip6bench.sansio import StartTimer, StopTimer, Transmit

PCI = m.Message(m.PCI, 0, 0, 0).encode()
VICTIM = "2001:db8:66::1"


def run(paa: PaaCore, sends, until: float):
    """Feed (time, src) PCIs and fire the PAA's timers up to `until`; nothing answers.
    Returns every Transmit with its time."""
    timers: dict = {}
    queue = [(t, 0, "pci", (src, 716 if len(rest) == 0 else rest[0]))
             for t, src, *rest in sends]
    heapq.heapify(queue)
    out, n = [], 1
    while queue and queue[0][0] <= until:
        now, _, kind, what = heapq.heappop(queue)
        if kind == "pci":
            actions = paa.receive(PCI, what[0], now, what[1])
        elif timers.get(what) == now:
            del timers[what]
            actions = paa.handle_timer(what, now)
        else:
            continue
        for a in actions:
            if isinstance(a, Transmit):
                out.append((now, a))
            elif isinstance(a, StartTimer):
                timers[a.key] = a.at
                n += 1
                heapq.heappush(queue, (a.at, n, "timer", a.key))
            elif isinstance(a, StopTimer):
                timers.pop(a.key, None)
    return out


def test_one_spoofed_pci_gets_a_bounded_number_of_par_s_and_leaves_nothing():
    paa = PaaCore(PaaConfig(), rng=random.Random(1))
    sent = run(paa, [(0.0, VICTIM)], until=300.0)
    assert all(tx.dst == VICTIM for _, tx in sent)
    assert len(sent) == 1 + paa.config.handshake_retransmit.mrc == 4
    assert paa.sessions == {} and paa._half_open_total == 0 and not paa._half_open


def test_a_flood_toward_one_victim_keeps_few_sessions_and_few_datagrams():
    paa = PaaCore(PaaConfig(), rng=random.Random(2))
    # 10k PCIs in 10 s, "from" the victim's address with ever new ports
    flood = [(i * 0.001, VICTIM, 1024 + i) for i in range(10_000)]
    sent = run(paa, flood, until=10.0)
    limit = paa.config.max_handshakes_per_source
    assert len(paa.sessions) <= limit
    assert paa.counters["too many handshakes from this address"] >= 10_000 - 4 * limit
    # At most `limit` handshakes at a time, each at most 4 PAR[S]: a few dozen datagrams
    # for ten thousand PCIs, not 11 per PCI.
    assert len(sent) <= 4 * limit * 3


def test_a_flood_from_many_spoofed_sources_is_bounded_in_all_and_drains():
    paa = PaaCore(PaaConfig(max_handshakes=50), rng=random.Random(3))
    flood = [(i * 0.0001, f"2001:db8:77::{i:x}") for i in range(1, 5001)]
    run(paa, flood, until=0.6)
    assert len(paa.sessions) == 50 and paa._half_open_total == 50
    assert paa.counters["too many handshakes"] == 4950
    # Nobody answers: the handshakes give up and a PCI that comes later is served.
    paa = PaaCore(PaaConfig(max_handshakes=50), rng=random.Random(3))
    late = "2001:db8:77::ffff"
    sent = run(paa, flood + [(100.0, late)], until=100.0)
    assert [tx.dst for t, tx in sent if t == 100.0] == [late]
    assert list(paa._half_open) == [late]


def test_a_real_pac_answering_frees_its_half_open_slot():
    from .test_pana_harness import NAI, PAA, PAC, PSK, ScriptedAAA, Sim
    from mip6bench.pana import PacConfig, PacCore, PacState
    from .test_pana_harness import ScriptedPeer

    sim = Sim()
    paa = sim.add(PAA, PaaCore(PaaConfig(max_handshakes_per_source=1), rng=random.Random(4)),
                  ScriptedAAA({NAI: PSK}))
    pac = sim.add(PAC, PacCore(PacConfig(paa_address=PAA, new_eap_peer=lambda: ScriptedPeer(
        NAI, PSK), nai=NAI), rng=random.Random(5)))
    sim.call(PAC, "start", 0.0)
    sim.run(until=1.0)
    assert pac.core.state == PacState.OPEN
    assert paa.core._half_open_total == 0
