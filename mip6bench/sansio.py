"""The vocabulary shared by all sans-I/O protocol cores.

A core never touches sockets, clocks or the kernel. It is driven by
`receive(...)`/`handle_timer(...)`-style methods that take the current time (`now`,
seconds on CLOCK_MONOTONIC as a float) and return a list of actions, which the asyncio
runtime executes: `Transmit` datagrams, `StartTimer`/`StopTimer`, protocol-specific
effects (frozen dataclasses deriving from `Effect`), and `Event`s for the event log.
Timers are identified by a hashable key that is unique within one core.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable


class Action:
    """Base class of everything a core asks its runtime to do."""

    __slots__ = ()


@dataclass(frozen=True)
class Transmit(Action):
    """Send `data` to `dst` (an address string); `src`/`port` refine where needed.

    A protocol whose datagrams need more than that says how to send them with a
    subclass and typed keyword-only fields (mipv6.effects.MhTransmit: via, hao, rh2;
    gist.core.GistTransmit: mode, router_alert, hop_limit, peer; pana.pac.PciTransmit:
    discovery; pana.discovery.ForwardTransmit: egress; aaa.paa_service.ServiceTransmit:
    via)."""

    data: bytes
    dst: str
    src: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class StartTimer(Action):
    """(Re)arm timer `key` to fire at absolute time `at` (replaces an armed one)."""

    key: Hashable
    at: float


@dataclass(frozen=True)
class StopTimer(Action):
    key: Hashable


@dataclass(frozen=True)
class Event(Action):
    """An entry for the event log: a name and fields (JSON-serialisable)."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)


class Effect(Action):
    """A change the runtime applies to the outside world (kernel state, other cores)."""

    __slots__ = ()
