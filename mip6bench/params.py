"""Typed parameters for topologies and experiments (`--param key=value`).

A `ParamSpec` table says which keys exist, their type, default, bounds and meaning;
`parse_params` turns `key=value` strings into checked values and refuses unknown keys
and impossible values with a message that says what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from mip6bench.errors import ParameterError


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def convert(self, raw: Any) -> Any:
        if isinstance(raw, str):
            value: Any
            try:
                if self.type is bool:
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError
                    value = raw.lower() in ("1", "true", "yes", "on")
                elif self.type is int:
                    value = int(raw)
                elif self.type is float:
                    value = float(raw)
                else:
                    value = raw
            except ValueError:
                raise ParameterError(f"parameter {self.name}={raw!r} is not a {self.type.__name__}",
                                     self.help) from None
        else:
            value = raw
            if self.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
                raise ParameterError(f"parameter {self.name}={value!r} is not a {self.type.__name__}",
                                     self.help)
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter {self.name}={value!r} is not allowed",
                                 f"choose one of: {', '.join(self.choices)}")
        if self.type in (int, float):
            if value != value:  # NaN
                raise ParameterError(f"parameter {self.name} is not a number")
            if self.min is not None and value < self.min:
                raise ParameterError(f"parameter {self.name}={value} is below {self.min}", self.help)
            if self.max is not None and value > self.max:
                raise ParameterError(f"parameter {self.name}={value} is above {self.max}", self.help)
        return value


def parse_params(specs: Iterable[ParamSpec], given: dict[str, Any] | Iterable[str]) -> dict[str, Any]:
    """Defaults overridden by `given` (a dict, or `key=value` strings)."""
    table = {s.name: s for s in specs}
    if not isinstance(given, dict):
        pairs = {}
        for item in given:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ParameterError(f"parameter {item!r} is not key=value")
            pairs[key.strip()] = value.strip()
        given = pairs
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}",
                             f"known: {', '.join(sorted(table))}")
    values = {name: spec.default for name, spec in table.items()}
    for key, raw in given.items():
        values[key] = table[key].convert(raw)
    return values


def describe(specs: Iterable[ParamSpec]) -> str:
    lines = []
    for s in specs:
        bounds = ""
        if s.choices:
            bounds = f" [{'|'.join(s.choices)}]"
        elif s.min is not None or s.max is not None:
            bounds = f" [{'' if s.min is None else s.min}..{'' if s.max is None else s.max}]"
        lines.append(f"  {s.name:<22} {s.type.__name__:<6} default {s.default!s:<10}{bounds}  {s.help}")
    return "\n".join(lines)
