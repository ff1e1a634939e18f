"""UDP echo probes between nodes, driven from the controller process.

Each flow gets a sender socket opened in the source node's namespace and an echo socket
in the destination's (sockets keep the namespace they were created in), so one
single-threaded poll(2) loop measures many flows at once, with no process per probe.
A probe carries its flow, sequence number and send time; the echo socket returns it
at once. For every flow we learn what was sent, what reached the destination
(`delivered`) and what came back (`answered`), and each answered probe's RTT. The
sockets of one server's ends are a ProbeSide (mip6bench.net.endpoints); ends in a node on
another server are its helper's ProbeSide (mip6bench.testbed.remote_endpoints).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mip6bench.net.endpoints import ProbeSide


@dataclass(frozen=True)
class Flow:
    name: str
    src_ns: int | str | None
    src: str
    dst_ns: int | str | None
    dst: str


@dataclass
class FlowResult:
    name: str
    sent: int = 0
    delivered: int = 0
    answered: int = 0
    rtts_ms: list[float] = field(default_factory=list)

    @property
    def rtt_avg_ms(self) -> float | None:
        return sum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else None

    @property
    def round_trip_loss(self) -> float:
        return 1 - self.answered / self.sent if self.sent else 0.0

    def one_way_loss(self) -> float:
        """Per-direction loss estimate, assuming both directions lose alike:
        (1 - p)^2 = answered / sent."""
        if not self.sent:
            return 0.0
        return 1 - (self.answered / self.sent) ** 0.5


def probe_flows(flows: list[Flow], count: int = 20, interval: float = 0.01,
                linger: float = 1.0) -> list[FlowResult]:
    """Send `count` probes per flow, `interval` s apart (all flows interleaved), then
    wait for stragglers until every probe is answered or nothing has arrived for
    `linger` s. An end on another server (RemoteNs) is served by that server's helper
    (a ProbeSide there): RTTs are taken on the sender's clock alone, so no clock offset
    enters them."""
    from mip6bench.testbed.remote_endpoints import RemoteProbeSide, place_of

    places: dict[Any, tuple[list, list]] = {}
    for i, f in enumerate(flows):
        places.setdefault(place_of(f.dst_ns), ([], []))[0].append((i, f.dst_ns, f.dst))
        places.setdefault(place_of(f.src_ns), ([], []))[1].append((i, f.src_ns, f.src))
    sides = []
    try:
        for place, (echoes, senders) in places.items():
            sides.append(ProbeSide(echoes, senders) if place is None
                         else RemoteProbeSide(place, echoes, senders))
        targets = {}
        for side in sides:
            targets.update({i: (flows[i].dst, port) for i, port in side.ports().items()})
        for side in sides:
            side.start({i: targets[i] for i in side.senders}, count, interval, linger)
        # Every side has sent and heard back (a lost probe: given up after `linger` idle).
        for side in sides:
            side.wait(count * interval + linger + 60 + 10 * linger)
    finally:
        figures = [side.close() for side in sides]
    results = [FlowResult(f.name) for f in flows]
    for side, numbers in zip(sides, figures):
        for i, r in numbers.items():
            if i in side.senders:
                results[i].sent, results[i].answered = r["sent"], r["answered"]
                results[i].rtts_ms = list(r["rtts_ms"])
            if i in side.echoes:
                results[i].delivered = r["delivered"]
    return results


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
