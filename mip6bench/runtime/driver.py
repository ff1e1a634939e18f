"""The one thing that runs a sans-I/O core: it executes the actions a core returns.

    driver = CoreDriver(send=..., on_timer=core.handle_timer, apply=..., emit=agent.emit)
    driver.execute(core.receive(data, src, driver.now()))

For every action, in the order the core returned them:
    Transmit             `send(transmit)` (a protocol's Transmit subclass carries typed
                         fields saying how: MhTransmit.via, GistTransmit.mode, ...)
    StartTimer/StopTimer arm / cancel; a timer that fires calls `on_timer(key, now)`,
                         whose actions are executed the same way
    Event                `emit(name, **fields)` into the agent's event log (or
                         `emit_fields(name, fields)` when given: Agent.emit_fields, the
                         Event's dict passed as it is, not unpacked into keywords)
    anything else        an effect: `apply(effect)` (a function or a coroutine function)
    a class in `ignore`  nothing (effects that only inform, which the core has logged as
                         events already: the PAA's PanaSessionOpen/Closed), by exact class

Ordering of effects. Effects are applied one at a time in the order they were returned,
each to its end (an awaited apply included) before the next, because kernel changes must
not overtake each other. Transmits and events are not held back, except behind a
*barrier*: when `barriers` names effect types, a Transmit that follows such an effect
(in the same batch or while one is still being applied) is queued behind it and sent
once it has been applied. (The HA's Binding Ack leaves only after the tunnel points at
the new care-of address; a Binding Ack to a MN back home is not tunnelled by the route
it just deregistered.)

`apply_many(effects)` besides `apply` (asyncio mode), with `batch_key(effect)`: the
effects queued when the worker gets to them are applied in batches, one call for all
of a batch (so glue can fold their kernel work: one netlink datagram, one message to a
forwarder), which returns each effect's exception or None in order (or an awaitable of
that list); a failed effect is logged like any other and takes no other with it. The
queued Transmits between them are sent after the batch: never before an effect queued
ahead of them, as above. `batch_key` keys effects and Transmits alike (the HA: the home
address a change or a Binding Ack is for). A batch holds effects with keys only
(batch_key None: applied alone, with `apply`), and each key's effects consecutive and
before any Transmit of that key that follows them: an effect whose key appeared earlier
in the batch, separated from it by another key's effect or by a Transmit, or whose key
is that of a Transmit taken, starts the next batch; a Transmit without a key ends the
batch. So the effects of one key keep their order relative to each other and to that
key's Transmits, and glue may regroup a batch's effects across keys. At most
`max_batch` effects a batch.

`apply_batch(effects)` instead of `apply`: the effects of one execute() call go
together, synchronously, to one call (after that call's transmits, timers and events),
for glue that folds them (the PaC's bootstrap tracker: a re-authentication's new SA and
the old one's revocation make one update).

Two clocks:
    asyncio (default)    the running loop's clock, `loop.time()` = time.monotonic(), i.e.
                         CLOCK_MONOTONIC, the clock the event log stamps, so a core's
                         `now` and the log agree; timers wait in a heap and one
                         loop.call_at, for the earliest, fires the due ones; coroutine
                         effects run on a worker task (`drain()` waits for them).
    synchronous          `CoreDriver(..., clock=fn)`: no event loop. Effects are applied
                         inline (apply must not be a coroutine); timers wait in a heap
                         until `run_timers(now)` (or `advance(to)` with a ManualClock)
                         fires the due ones in time order; `next_timer()` says when. For
                         tests, and for synchronous code such as the testbed's probes.
"""
from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import math
import time
from collections import deque
from typing import Any, Awaitable, Callable, Hashable, Iterable

from mip6bench.sansio import Action, Event, StartTimer, StopTimer, Transmit

Actions = Iterable[Action]
ERRORS_KEPT = 32


class ManualClock:
    """A clock for the synchronous mode that moves only when told (tests)."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def __call__(self) -> float:
        return self.t


class _AfterBarrier:
    """A Transmit queued behind a barrier effect."""

    __slots__ = ("transmit",)

    def __init__(self, transmit: Transmit):
        self.transmit = transmit


# What execute() does with an action, by the action's class (subclasses of Transmit and
# Event included): looked up once per class, then by a dict lookup instead of a chain of
# isinstance checks per action.
_TRANSMIT, _START, _STOP, _EVENT, _EFFECT = "transmit", "start", "stop", "event", "effect"
_IGNORE = "ignore"


def _kind_of(cls: type) -> str:
    for base, kind in ((Transmit, _TRANSMIT), (StartTimer, _START), (StopTimer, _STOP),
                       (Event, _EVENT)):
        if issubclass(cls, base):
            return kind
    return _EFFECT


class CoreDriver:
    def __init__(self, *, send: Callable[[Transmit], None],
                 on_timer: Callable[[Hashable, float], Actions],
                 emit: Callable[..., None],
                 emit_fields: Callable[[str, dict], None] | None = None,
                 apply: Callable[[Any], Awaitable[None] | None] | None = None,
                 apply_batch: Callable[[list], None] | None = None,
                 apply_many: Callable[[list], Any] | None = None,
                 batch_key: Callable[[Any], Hashable] | None = None,
                 max_batch: int = 256,
                 barriers: tuple[type, ...] = (),
                 ignore: Iterable[type] = (),
                 clock: Callable[[], float] | None = None):
        if apply is not None and apply_batch is not None:
            raise ValueError("give apply or apply_batch, not both")
        if apply_many is not None and (apply is None or batch_key is None or clock is not None):
            raise ValueError("apply_many needs apply and batch_key, and the asyncio mode")
        self._send, self._on_timer, self._emit = send, on_timer, emit
        self._emit_fields = emit_fields
        self._apply, self._apply_batch = apply, apply_batch
        self._apply_many, self._batch_key, self._max_batch = apply_many, batch_key, max_batch
        self._barriers = tuple(barriers)
        self._barriers_pending = 0
        # what execute() does with each class of action, filled as classes come
        self._kinds: dict[type, str] = {cls: _IGNORE for cls in ignore}
        # The last failed effects (the event log has each): an effect that fails on every
        # handover must not grow the driver; errors_total counts them all.
        self.errors: deque[str] = deque(maxlen=ERRORS_KEPT)
        self.errors_total = 0
        self.synchronous = clock is not None
        # Armed timers: key -> (deadline, sequence number), and a heap of the same entries
        # (a re-armed or stopped timer's old entry stays in the heap until it comes up or
        # the heap is compacted, and is skipped).
        self._heap: list[tuple[float, int, Hashable]] = []
        self._armed: dict[Hashable, tuple[float, int]] = {}
        self._seq = itertools.count()
        if self.synchronous:
            self.loop = None
            self._clock = clock
        else:
            self.loop = asyncio.get_running_loop()
            self._clock = self.loop.time
            # One loop timer, for the earliest deadline: arming and stopping a timer is a
            # heap push or a dict update, not an asyncio TimerHandle each (a PAA under a
            # burst arms ~9 timers an authentication and stops most of them).
            self._wakeup: asyncio.TimerHandle | None = None
            self._wakeup_at = math.inf
            self._resolution = time.get_clock_info("monotonic").resolution
            self._effects: deque = deque()
            self._idle = asyncio.Event()
            self._idle.set()
            self._worker: asyncio.Task | None = None
        self._closed = False

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------------ executing
    def execute(self, actions: Actions) -> None:
        batch = [] if self._apply_batch is not None else None
        kinds = self._kinds
        for action in actions:
            kind = kinds.get(action.__class__)
            if kind is None:
                kind = kinds[action.__class__] = _kind_of(action.__class__)
            if kind is _TRANSMIT:
                if self._barriers_pending and not self._closed:
                    self._effect(_AfterBarrier(action))
                else:
                    self._send(action)
            elif kind is _START:
                self._arm(action.key, action.at)
            elif kind is _STOP:
                self._armed.pop(action.key, None)   # its heap entry is skipped when it comes up
            elif kind is _EVENT:
                if self._emit_fields is not None:
                    self._emit_fields(action.name, action.fields)
                else:
                    self._emit(action.name, **action.fields)
            elif kind is _IGNORE:
                continue
            elif batch is not None:
                batch.append(action)
            else:
                if isinstance(action, self._barriers):
                    self._barriers_pending += 1
                self._effect(action)
        if batch:
            try:
                self._apply_batch(batch)
            except Exception as exc:  # glue that fails is logged, not fatal
                self._failed(batch[0], exc)

    def _effect(self, effect) -> None:
        if self._closed:                # as the worker it had: nothing is applied after close
            return
        if self.synchronous:
            self._apply_one_sync(effect)
            return
        self._effects.append(effect)
        if self._worker is None or self._worker.done():
            self._idle.clear()
            self._worker = self.loop.create_task(self._run_effects(), name="effects")

    def _start(self, effect):
        """Apply `effect` (a queued Transmit: send it); an awaitable result is the rest."""
        if isinstance(effect, _AfterBarrier):
            self._send(effect.transmit)
            return None
        if self._apply is None:
            raise TypeError("this driver takes no effects")
        return self._apply(effect)

    def _finish(self, effect) -> None:
        if isinstance(effect, self._barriers):
            self._barriers_pending -= 1

    def _apply_one_sync(self, effect) -> None:
        try:
            result = self._start(effect)
            if inspect.isawaitable(result):
                getattr(result, "close", lambda: None)()
                raise TypeError("a synchronous driver cannot await an effect")
        except Exception as exc:  # an effect that fails is logged, not fatal
            self._failed(effect, exc)
        finally:
            self._finish(effect)

    def _take_batch(self) -> tuple[list, list[_AfterBarrier]]:
        """From the head of the queue: the effects of the next batch and the Transmits
        queued among them (see the module docstring); ([], []) when the head is an
        effect to apply alone. Transmits at the head (their effects were applied) are
        sent at once."""
        queue, key_of = self._effects, self._batch_key
        while queue and isinstance(queue[0], _AfterBarrier):
            self._send(queue.popleft().transmit)
        effects: list = []
        transmits: list[_AfterBarrier] = []
        seen: set = set()
        last = None          # the key of the effect just taken (None after a Transmit)
        while queue and len(effects) < self._max_batch:
            item = queue[0]
            if isinstance(item, _AfterBarrier):
                transmits.append(queue.popleft())
                key = key_of(item.transmit)
                if key is None:      # a Transmit of no key: nothing after it joins
                    break
                seen.add(key)
                last = None
                continue
            key = key_of(item)
            if key is None or (key in seen and key != last):
                break
            effects.append(queue.popleft())
            seen.add(key)
            last = key
        return effects, transmits

    async def _run_many(self) -> bool:
        """Apply the next batch; False when the head of the queue is not batched."""
        effects, transmits = self._take_batch()
        if not effects:
            for t in transmits:
                self._send(t.transmit)
            return bool(transmits)
        try:
            try:
                results = self._apply_many(effects)
                if inspect.isawaitable(results):
                    results = await results
            except Exception as exc:   # the whole call failed: every effect did
                results = [exc] * len(effects)
            for effect, error in zip(effects, results):
                if error is not None:
                    self._failed(effect, error)
        finally:
            for effect in effects:
                self._finish(effect)
        for t in transmits:
            self._send(t.transmit)
        return True

    async def _run_effects(self) -> None:
        try:
            while self._effects:
                if self._apply_many is not None and await self._run_many():
                    continue
                effect = self._effects.popleft()
                try:
                    result = self._start(effect)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # CancelledError is not one: close() ends this
                    self._failed(effect, exc)
                finally:
                    self._finish(effect)
        finally:
            self._idle.set()

    def _failed(self, effect, exc: BaseException) -> None:
        name = type(effect).__name__
        self.errors.append(f"{name}: {exc}")
        self.errors_total += 1
        self._emit("effect.failed", effect=name, error=str(exc))

    # ------------------------------------------------------------------ timers
    def _arm(self, key: Hashable, at: float) -> None:
        if self._closed:
            return
        seq = next(self._seq)
        self._armed[key] = (at, seq)
        heapq.heappush(self._heap, (at, seq, key))
        if len(self._heap) > 2 * len(self._armed) + 64:
            self._compact()
        if not self.synchronous and at < self._wakeup_at:
            self._wake_at(at)

    def _compact(self) -> None:
        """Drop the heap entries of timers re-armed or stopped since (timers re-armed far
        ahead, again and again, must not grow the heap)."""
        self._heap = [(at, seq, key) for key, (at, seq) in self._armed.items()]
        heapq.heapify(self._heap)

    def _wake_at(self, at: float) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
        self._wakeup = self.loop.call_at(at, self._fire_due)
        self._wakeup_at = at

    def _fire_due(self) -> None:
        """The loop timer: fire every timer due (as the loop would have fired their own
        handles: due within the clock's resolution), earliest first, then wait for the
        next. A timer whose glue raises is reported as a failed loop callback is, and the
        others still fire."""
        self._wakeup, self._wakeup_at = None, math.inf
        end = self.loop.time() + self._resolution
        heap, armed = self._heap, self._armed
        try:
            while heap and not self._closed:
                at, seq, key = heap[0]
                if armed.get(key) != (at, seq):
                    heapq.heappop(heap)
                    continue
                if at > end:
                    break
                heapq.heappop(heap)
                del armed[key]
                try:
                    self.execute(self._on_timer(key, self.loop.time()))
                except Exception as exc:
                    self.loop.call_exception_handler({
                        "message": f"timer {key!r} failed", "exception": exc})
                heap = self._heap       # a compaction (a timer armed above) replaces it
        finally:
            if not self._closed:
                at = self.next_timer()
                if at is not None and at < self._wakeup_at:
                    self._wake_at(at)

    def next_timer(self) -> float | None:
        """When the next armed timer is due (None: none armed); stale heap entries on the
        way are dropped."""
        while self._heap:
            at, seq, key = self._heap[0]
            if self._armed.get(key) == (at, seq):
                return at
            heapq.heappop(self._heap)
        return None

    def run_timers(self, now: float | None = None) -> int:
        """Synchronous mode: fire every timer due at `now` (default: the clock), earliest
        first, including ones armed by those that fire; returns how many fired."""
        if not self.synchronous:
            raise RuntimeError("run_timers is for the synchronous mode; the loop fires timers")
        fired = 0
        while True:
            now_ = self._clock() if now is None else now
            at = self.next_timer()
            if at is None or at > now_:
                return fired
            _, _, key = heapq.heappop(self._heap)
            del self._armed[key]
            fired += 1
            self.execute(self._on_timer(key, now_))

    def advance(self, to: float) -> int:
        """Synchronous mode with a ManualClock: move the clock to `to`, firing the timers
        due on the way at their own times."""
        if not isinstance(self._clock, ManualClock):
            raise RuntimeError("advance needs a ManualClock")
        fired = 0
        while True:
            at = self.next_timer()
            if at is None or at > to:
                break
            self._clock.t = max(self._clock.t, at)
            fired += self.run_timers(self._clock.t)
        self._clock.t = max(self._clock.t, to)
        return fired

    # ------------------------------------------------------------------ lifecycle
    async def drain(self) -> None:
        """Wait until every queued effect has been applied (asyncio mode)."""
        if not self.synchronous:
            await self._idle.wait()

    def close(self) -> None:
        """Cancel the timers and drop the effects not yet applied; from now on effects and
        timers are ignored (Transmits still go to `send`)."""
        self._closed = True
        self._heap.clear()
        self._armed.clear()
        if self.synchronous:
            return
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup, self._wakeup_at = None, math.inf
        self._effects.clear()
        if self._worker is not None:
            self._worker.cancel()
        # Nothing will be applied any more: idle now (a worker cancelled before it ran
        # never reaches the finally that would say so, and drain() would wait for ever).
        self._idle.set()
