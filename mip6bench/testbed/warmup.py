"""Warm-up: one answered ping per path, so that every hop has its neighbour entry before
an experiment measures. The one helper for every warm-up.

A ping can be lost (links with configured loss, an NS lost on a cold hop), so each path
gets up to `attempts` pings, each waiting for its reply up to `timeout_s` (ping returns
as soon as the reply is in: no fixed wait). A path that never answers does not fail the
run: loss alone must not end an experiment, and the experiment's own protocol exchange
(with its retransmissions) finds out whether the path works. It is reported instead.
Paths are warmed in parallel (one ping process per path, from the node's namespace).
"""
from __future__ import annotations

from mip6bench.retry import AttemptFailed, RetryExhausted, retry
from mip6bench.threads import ThreadPoolExecutor, results_of

ATTEMPTS = 10
TIMEOUT_S = 2.0  # one lost Neighbour Solicitation (RetransTimer 1 s) still fits
PARALLEL = 16


def ping_once(node, address: str, timeout_s: float) -> None:
    """One echo request from `node` (a Mininet node) to `address`, waiting up to
    `timeout_s` for its reply; AttemptFailed when none came."""
    out, err, code = node.pexec(["ping", "-6", "-n", "-q", "-c", "1", "-W", f"{timeout_s:g}",
                                 address])
    if code != 0:
        text = " ".join((out + err).split())
        raise AttemptFailed(f"exit {code}: {text[-160:]}" if text else f"exit {code}")


def warm_up(tb, pairs: list[tuple[str, str]], attempts: int = ATTEMPTS,
            timeout_s: float = TIMEOUT_S) -> list[str]:
    """Ping every (node, address) pair until it answers once (at most `attempts` tries).
    Returns a note for each pair that never answered (empty when all did)."""
    def warm(pair: tuple[str, str]) -> str | None:
        node, address = pair
        try:
            retry(lambda: ping_once(tb.node(node), address, timeout_s), attempts,
                  f"warm-up ping {node} -> {address}")
        except RetryExhausted as exc:
            return f"{exc}; its first exchange may include Neighbour Discovery"
        return None

    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(pairs)),
                            thread_name_prefix="warm-up") as pool:
        return [note for note in results_of(pool.submit(warm, pair) for pair in pairs) if note]


def link_pairs(plan) -> list[tuple[str, str]]:
    """One pair per attached link between two nodes with addresses (the links the link
    check probes: routers and servers; an MN's access link has no fixed address): a
    router's neighbour entries for its neighbours, which a running network keeps warm."""
    return [(probe[0], probe[3]) for link in plan.links
            if link.attached and (probe := link.probe) and probe[1] and probe[3]]
