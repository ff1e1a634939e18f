"""Runs a sans-I/O core's actions on an asyncio loop.

The loop clock (`loop.time()`) is time.monotonic(), i.e. CLOCK_MONOTONIC, the same
clock the event log stamps, so a core's `now` and the log agree.

`CoreDriver.execute(actions)` sends Transmits through `send`, arms and cancels timers
(firing calls `on_timer(key, now)`, which returns more actions), writes Events to the
agent's log, and hands every other action (effects) to `apply`. Effects are applied in
order by one worker, because their kernel changes must not overtake each other.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Hashable, Iterable

from mip6bench.sansio import Action, Event, StartTimer, StopTimer, Transmit

Actions = Iterable[Action]


class CoreDriver:
    def __init__(self, *, send: Callable[[Transmit], None],
                 on_timer: Callable[[Hashable, float], Actions],
                 apply: Callable[[Any], Awaitable[None] | None],
                 emit: Callable[..., None]):
        self.loop = asyncio.get_running_loop()
        self._send, self._on_timer, self._apply, self._emit = send, on_timer, apply, emit
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._effects: asyncio.Queue = asyncio.Queue()
        self._worker = self.loop.create_task(self._effect_worker(), name="effects")
        self.errors: list[str] = []

    def now(self) -> float:
        return self.loop.time()

    def execute(self, actions: Actions) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self._send(action)
            elif isinstance(action, StartTimer):
                self._arm(action.key, action.at)
            elif isinstance(action, StopTimer):
                handle = self._timers.pop(action.key, None)
                if handle:
                    handle.cancel()
            elif isinstance(action, Event):
                self._emit(action.name, **action.fields)
            else:
                self._effects.put_nowait(action)

    def _arm(self, key: Hashable, at: float) -> None:
        old = self._timers.pop(key, None)
        if old:
            old.cancel()
        self._timers[key] = self.loop.call_at(at, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.execute(self._on_timer(key, self.loop.time()))

    async def _effect_worker(self) -> None:
        while True:
            effect = await self._effects.get()
            try:
                result = self._apply(effect)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except Exception as exc:  # an effect that fails is logged, not fatal
                self.errors.append(f"{type(effect).__name__}: {exc}")
                self._emit("effect.failed", effect=type(effect).__name__, error=str(exc))
            finally:
                self._effects.task_done()

    async def drain(self) -> None:
        """Wait until every queued effect has been applied."""
        await self._effects.join()

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._worker.cancel()
