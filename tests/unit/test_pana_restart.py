"""When a PaC starts PANA again after its session ended (RestartPolicy, as the MN agent
uses it), and two PaCs with the same credentials: superseded by each other a bounded
number of times, then one gives up and the other keeps the session."""
from mip6bench.pana import PacState
from mip6bench.pana import effects as fx
from mip6bench.pana.message import TERMINATION_ADMINISTRATIVE, TERMINATION_SESSION_TIMEOUT
from mip6bench.pana.bootstrap import SUPERSEDED_MAX, RestartPolicy

from .test_pana_harness import PAA, PAC, make_pair

ADMIN = TERMINATION_ADMINISTRATIVE


def delays(policy, closes, now=0.0):
    return [policy.decide(reason, cause, now).delay for reason, cause in closes]


def test_failures_back_off_and_an_open_session_resets_them():
    p = RestartPolicy(irt=1.0, max_delay=60.0)
    assert delays(p, [("PAA unreachable", None)] * 9) == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    p.opened(100.0)
    assert delays(p, [("session lifetime expired", None)] * 2) == [0, 1]
    # A timeout PTR from the PAA is a failure like any other, not a supersession.
    assert p.decide("terminated by PAA", TERMINATION_SESSION_TIMEOUT, 0).superseded is False


def test_the_pacs_own_termination_is_never_restarted():
    p = RestartPolicy()
    assert p.decide("terminated", None, 0.0).delay is None
    assert p.failures == 0 and p.superseded == 0


def test_administrative_terminations_give_up_after_a_few_in_a_row():
    p = RestartPolicy(irt=1.0, max_superseded=3, stable_s=60.0)
    out = []
    for now in (10.0, 20.0, 30.0, 40.0):
        p.opened(now - 5)                    # each new session opened, briefly
        out.append(p.decide("terminated by PAA", ADMIN, now))
    assert [(d.delay, d.superseded, d.count) for d in out] == [
        (0, True, 1), (1, True, 2), (2, True, 3), (None, True, 4)]
    p.reset()                                # pana-start: a new run
    assert p.decide("terminated by PAA", ADMIN, 50.0).delay == 0


def test_a_session_that_stayed_open_ends_a_run_of_supersessions():
    p = RestartPolicy(max_superseded=3, stable_s=60.0)
    for now in (10.0, 20.0, 30.0):
        p.opened(now - 5)
        p.decide("terminated by PAA", ADMIN, now)
    p.opened(31.0)
    d = p.decide("terminated by PAA", ADMIN, 31.0 + 60.0)
    assert (d.delay, d.count) == (0, 1)


def test_two_pacs_with_the_same_credentials_do_not_take_the_session_forever():
    """Each restart runs as the MN agent runs it: the PAA supersedes the older session
    with a PTR, the PaC that lost it starts again after RestartPolicy's delay."""
    sim, a, paa = make_pair(seed=1)
    sim, b, _ = make_pair(sim, pac_kwargs={"address": "2001:db8:f::99"}, seed=2)
    nodes = {PAC: a, "2001:db8:f::99": b}
    policies = {addr: RestartPolicy() for addr in nodes}
    seen_open = dict.fromkeys(nodes, 0)
    seen_closed = dict.fromkeys(nodes, 0)
    decisions = {addr: [] for addr in nodes}
    due = {PAC: 0.0, "2001:db8:f::99": 0.5}
    t, step = 0.0, 0.05
    while t < 120.0:
        for addr, at in list(due.items()):
            if at <= t:
                del due[addr]
                sim.call(addr, "start", t)
        t = round(t + step, 6)
        sim.run(until=t)
        for addr, node in nodes.items():
            opened = [e for e in node.effects(fx.PanaSessionOpen) if not e.reauthentication]
            for _ in opened[seen_open[addr]:]:
                policies[addr].opened(t)
            seen_open[addr] = len(opened)
            closed = node.effects(fx.PanaSessionClosed)
            for c in closed[seen_closed[addr]:]:
                d = policies[addr].decide(c.reason, c.cause, t)
                decisions[addr].append(d)
                if d.delay is not None:
                    due[addr] = t + d.delay
            seen_closed[addr] = len(closed)
    gave_up = [addr for addr, ds in decisions.items() if ds and ds[-1].delay is None]
    assert len(gave_up) == 1
    winner = next(addr for addr in nodes if addr not in gave_up)
    assert nodes[winner].core.state == PacState.OPEN
    assert nodes[gave_up[0]].core.state == PacState.CLOSED
    assert len(paa.core.sessions) == 1
    assert all(d.superseded for ds in decisions.values() for d in ds)
    assert len(decisions[gave_up[0]]) == SUPERSEDED_MAX + 1
    assert len(decisions[winner]) <= SUPERSEDED_MAX
    # It settled within seconds: no PCI in the last 100 s of the run.
    assert max(sim.sent_times(PAC, "PCI") + sim.sent_times("2001:db8:f::99", "PCI")) < 20
    assert {e.reason for e in paa.effects(fx.PanaSessionClosed)} == {"superseded"}
    assert PAA in sim.nodes
