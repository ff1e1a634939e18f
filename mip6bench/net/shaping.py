"""Pure link-shaping core for the user-space link emulator (no I/O, no clock).

One `Shaper` models one direction of a point-to-point link, the way one netem qdisc
models the egress of one interface:

    arrival --loss?--> queue full? --> serialisation (rate) --> propagation (delay+jitter)
                                                                        |
                         departure = the moment the frame is handed to the far end

* Time is injected: every call takes `now_ns` (integer nanoseconds on any monotonic
  clock; the relay passes CLOCK_MONOTONIC). Randomness comes from `random.Random`
  instances seeded from (seed, label), so a run is reproducible and the two directions
  of a link, and loss and jitter within one direction, use independent streams:
  changing the jitter does not change which frames are lost.
* Loss is Bernoulli per frame (netem `loss random P%`), checked first: a lost frame
  takes no queue slot and no serialisation time (as in netem_enqueue).
* Queue limit: the number of frames held (waiting for serialisation or for their
  delay to pass), netem's `limit` (default 1000). A frame arriving at a full queue is
  tail-dropped. Like netem, the limit caps throughput on long links:
  at most `limit / delay` frames per second get through (1000 / 10 ms = 100 kpps).
* Rate (serialisation): the transmitter is busy for len*8/rate after the previous frame
  finishes, `end = max(now, previous_end) + len*8/rate`, rounded up to the next ns so
  the configured rate is never exceeded; `len` is the Ethernet frame as read from the
  TAP (header included, no preamble/FCS), the same `skb->len` netem uses. The
  propagation delay is added after serialisation.
* Jitter: with `distribution="uniform"` (netem's default when no table is loaded) the
  delay is uniform in [delay - jitter, delay + jitter]; with `"normal"` it is Gaussian
  with mean `delay` and standard deviation `jitter` (netem's table-based normal is
  bounded at about +-3.7 jitter; this one is not). A negative draw is clamped to 0, so
  when jitter > delay the distribution is truncated and its mean moves above `delay`.
* Reordering: frames leave in order of their departure time, not of arrival (a heap,
  like netem's time-sorted tfifo). With jitter, a frame can therefore overtake one sent
  before it, exactly as with netem; frames with equal departure times keep their
  arrival order. Without jitter and with fixed parameters the link is FIFO. Lowering
  the delay at run time can also let new frames overtake queued ones (netem too).
"""
from __future__ import annotations

import math
import random
from heapq import heappop, heappush

if False:  # annotations only: `typing` costs ~2 ms of cold start
    from typing import Any

from mip6bench.errors import ParameterError

DISTRIBUTIONS = ("uniform", "normal")
DEFAULT_LIMIT = 1000  # netem's default queue limit, in packets
_NS_PER_MS = 1_000_000


def _number(name: str, value: Any, lo: float, hi: float | None = None) -> float:
    """Validate one numeric parameter; the message names the parameter and the range."""
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a number, got {value!r}",
                             f"give {name} as a plain number")
    if not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be a number, got {value!r}",
                                 f"give {name} as a plain number") from None
    value = float(value)
    if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        rng = f"between {lo:g} and {hi:g}" if hi is not None else f">= {lo:g}"
        raise ParameterError(f"{name}={value:g} is out of range", f"{name} must be {rng}")
    return value


class LinkParams:
    """Shaping parameters of one direction. Immutable; validated on construction.

    delay_ms, jitter_ms: one-way propagation delay and its jitter (ms, >= 0).
    loss_pct: Bernoulli loss probability in percent (0..100).
    rate_mbit: serialisation rate in Mbit/s (10^6 bit/s); 0 means unlimited.
    limit: queue limit in frames (>= 1).
    distribution: "uniform" or "normal" jitter.
    """

    __slots__ = ("delay_ms", "jitter_ms", "loss_pct", "rate_mbit", "limit", "distribution")
    FIELDS = __slots__

    def __init__(self, delay_ms: float = 0.0, jitter_ms: float = 0.0, loss_pct: float = 0.0,
                 rate_mbit: float = 0.0, limit: int = DEFAULT_LIMIT,
                 distribution: str = "uniform"):
        # A plain slotted class rather than a dataclass: dataclasses pulls in `inspect`,
        # which costs milliseconds on the relay's cold start.
        set_ = object.__setattr__
        set_(self, "delay_ms", _number("delay_ms", delay_ms, 0.0))
        set_(self, "jitter_ms", _number("jitter_ms", jitter_ms, 0.0))
        set_(self, "loss_pct", _number("loss_pct", loss_pct, 0.0, 100.0))
        set_(self, "rate_mbit", _number("rate_mbit", rate_mbit, 0.0))
        lim = _number("limit", limit, 1.0)
        if lim != int(lim):
            raise ParameterError(f"limit={lim:g} is not a whole number of packets",
                                 "limit must be an integer >= 1")
        set_(self, "limit", int(lim))
        if distribution not in DISTRIBUTIONS:
            raise ParameterError(f"unknown jitter distribution {distribution!r}",
                                 f"use one of: {', '.join(DISTRIBUTIONS)}")
        set_(self, "distribution", distribution)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("LinkParams is immutable; use .replace(...)")

    def replace(self, **changes: Any) -> "LinkParams":
        unknown = set(changes) - set(self.FIELDS)
        if unknown:
            raise ParameterError(f"unknown link parameter(s): {', '.join(sorted(unknown))}",
                                 f"use: {', '.join(self.FIELDS)}")
        return LinkParams(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinkParams) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"LinkParams({inner})"


class Shaper:
    """One direction of an emulated link: admits frames, releases them when due.

    The frame objects are opaque (the relay passes bytes; tests pass anything).
    Counters: rx (offered), tx (released), dropped_loss, dropped_queue,
    dropped_carrier (flushed or refused while the carrier is off), write_errors
    (kept here for the relay, which counts frames the far TAP refused), late_ns_total
    and late_ns_max (how long after their departure time released frames were handed
    out: the emulator's own delay error, from its wake-ups, not the configured delay).
    """

    __slots__ = ("params", "rx", "tx", "dropped_loss", "dropped_queue", "dropped_carrier",
                 "write_errors", "late_ns_total", "late_ns_max", "_heap", "_seq", "_busy_until", "_loss_rng", "_delay_rng",
                 "_delay_ns", "_jitter_ns", "_loss_p", "_rate_bps", "_limit", "_normal")

    def __init__(self, params: LinkParams, seed: int = 0, label: str = ""):
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = 0  # tie-breaker: equal departure times keep arrival order
        self._busy_until = 0  # when the (rate-limited) transmitter is free again
        # String seeds are hashed with SHA-512 by random.seed: stable across runs and
        # independent of PYTHONHASHSEED.
        self._loss_rng = random.Random(f"{seed}/{label}/loss")
        self._delay_rng = random.Random(f"{seed}/{label}/delay")
        self.rx = self.tx = 0
        self.dropped_loss = self.dropped_queue = self.dropped_carrier = self.write_errors = 0
        self.late_ns_total = self.late_ns_max = 0
        self.configure(params)

    def configure(self, params: LinkParams) -> None:
        """Change parameters from now on; frames already queued keep their departure."""
        self.params = params
        # Precompute integer forms so offer() does no float parsing or unit juggling.
        self._delay_ns = round(params.delay_ms * _NS_PER_MS)
        self._jitter_ns = round(params.jitter_ms * _NS_PER_MS)
        self._loss_p = params.loss_pct / 100.0
        self._rate_bps = round(params.rate_mbit * 1_000_000)
        self._limit = params.limit
        self._normal = params.distribution == "normal"

    # -- the per-frame path -------------------------------------------------------

    def offer(self, now_ns: int, frame: Any) -> int | None:
        """Admit a frame that arrived at now_ns; return its departure time, or None if
        it was dropped (loss or full queue, counted)."""
        self.rx += 1
        if self._loss_p and self._loss_rng.random() < self._loss_p:
            self.dropped_loss += 1
            return None
        heap = self._heap
        if len(heap) >= self._limit:
            self.dropped_queue += 1
            return None
        start = now_ns
        if self._rate_bps:
            if self._busy_until > start:
                start = self._busy_until
            # ceil(len * 8 bit / rate) in ns: never faster than the configured rate.
            start += -(-len(frame) * 8_000_000_000 // self._rate_bps)
            self._busy_until = start
        delay = self._delay_ns
        if self._jitter_ns:
            if self._normal:
                delay = round(self._delay_rng.gauss(delay, self._jitter_ns))
            else:
                delay += round(self._delay_rng.uniform(-self._jitter_ns, self._jitter_ns))
            if delay < 0:
                delay = 0
        departure = start + delay
        self._seq += 1
        heappush(heap, (departure, self._seq, frame))
        return departure

    def next_departure(self) -> int | None:
        """Departure time of the earliest queued frame (None when empty)."""
        heap = self._heap
        return heap[0][0] if heap else None

    def pop_due(self, now_ns: int) -> Any:
        """Release the earliest frame if it is due at now_ns, else return None."""
        heap = self._heap
        if heap and heap[0][0] <= now_ns:
            self.tx += 1
            departure, _seq, frame = heappop(heap)
            late = now_ns - departure
            self.late_ns_total += late
            if late > self.late_ns_max:
                self.late_ns_max = late
            return frame
        return None

    # -- carrier and bookkeeping --------------------------------------------------

    def flush(self) -> int:
        """Drop every queued frame (carrier lost: frames in flight are gone)."""
        n = len(self._heap)
        self._heap.clear()
        self.dropped_carrier += n
        # The transmitter was idle while the link was down.
        self._busy_until = 0
        return n

    def drop_carrier(self) -> None:
        """Count a frame that arrived while the carrier was off."""
        self.rx += 1
        self.dropped_carrier += 1

    @property
    def queued(self) -> int:
        return len(self._heap)

    def counters(self) -> dict[str, int]:
        return {"rx": self.rx, "tx": self.tx, "dropped_loss": self.dropped_loss,
                "dropped_queue": self.dropped_queue, "dropped_carrier": self.dropped_carrier,
                "write_errors": self.write_errors, "queued": len(self._heap),
                "late_ns_total": self.late_ns_total, "late_ns_max": self.late_ns_max}
