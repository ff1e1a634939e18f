"""The vocabulary shared by all sans-I/O protocol cores.

A core never touches sockets, clocks or the kernel. It is driven by
`receive(...)`/`handle_timer(...)`-style methods that take the current time (`now`,
seconds on CLOCK_MONOTONIC as a float) and return a list of actions, which the asyncio
runtime executes: `Transmit` datagrams, `StartTimer`/`StopTimer`, protocol-specific
effects (frozen dataclasses deriving from `Effect`), and `Event`s for the event log.
Timers are identified by a hashable key that is unique within one core.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Hashable


def quick_init(cls: type) -> type:
    """Give a frozen dataclass an __init__ that stores its fields in the instance's
    __dict__ directly: the same parameters, defaults (default_factory included),
    keyword-only fields and __post_init__ call as the generated one, about three times
    quicker. A frozen dataclass's own __init__ goes through object.__setattr__ once a
    field (~1 us for a four-field object here); the cores build ~100 small frozen
    objects (actions, AVPs, messages) for every authentication a PAA serves. Immutability,
    equality, hashing and repr are the dataclass's, unchanged. Apply it above
    @dataclass(frozen=True), to each class (a subclass gets the generated one otherwise).
    The generated __init__ stays available as `_dataclass_init` (tests compare the two)."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
        raise TypeError(f"{cls.__name__}: quick_init is for frozen dataclasses")
    if "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: quick_init needs an instance __dict__")
    names: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    positional, keyword, body = [], [], []
    for f in dataclasses.fields(cls):
        default = ""
        if f.default is not dataclasses.MISSING:
            names[f"_d_{f.name}"] = f.default
            default = f"=_d_{f.name}"
        elif f.default_factory is not dataclasses.MISSING:
            names[f"_f_{f.name}"] = f.default_factory
            default = "=_MISSING"
        if not f.init:
            if f.default is not dataclasses.MISSING:
                body.append(f"d[{f.name!r}] = _d_{f.name}")
            elif f.default_factory is not dataclasses.MISSING:
                body.append(f"d[{f.name!r}] = _f_{f.name}()")
            continue
        (keyword if f.kw_only else positional).append(f"{f.name}{default}")
        if f.default_factory is not dataclasses.MISSING:
            body.append(f"d[{f.name!r}] = _f_{f.name}() if {f.name} is _MISSING else {f.name}")
        else:
            body.append(f"d[{f.name!r}] = {f.name}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    params = ", ".join(["self"] + positional + (["*"] + keyword if keyword else []))
    source = f"def __init__({params}):\n    d = self.__dict__\n" + \
        "".join(f"    {line}\n" for line in body)
    exec(source, names)
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"

    def shape(fn):
        return [(p.name, p.kind, p.default is inspect.Parameter.empty)
                for p in inspect.signature(fn).parameters.values()]

    if shape(init) != shape(cls.__init__):   # e.g. an InitVar: not for quick_init
        raise TypeError(f"{cls.__name__}: quick_init cannot reproduce its __init__")
    cls._dataclass_init = cls.__init__
    cls.__init__ = init
    return cls


class Action:
    """Base class of everything a core asks its runtime to do."""

    __slots__ = ()


@quick_init
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


@quick_init
@dataclass(frozen=True)
class StartTimer(Action):
    """(Re)arm timer `key` to fire at absolute time `at` (replaces an armed one)."""

    key: Hashable
    at: float


@quick_init
@dataclass(frozen=True)
class StopTimer(Action):
    key: Hashable


@quick_init
@dataclass(frozen=True)
class Event(Action):
    """An entry for the event log: a name and fields (JSON-serialisable)."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)


class Effect(Action):
    """A change the runtime applies to the outside world (kernel state, other cores)."""

    __slots__ = ()
