"""Agent configuration files (JSON) checked against a dataclass schema.

Every agent gets one file: the common keys below plus `options`, which the agent's own
Options dataclass validates: unknown keys and wrong types are errors that name the key.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from mip6bench.errors import ParameterError

COMMON_KEYS = {"node", "agent", "control", "events", "options"}


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    node: str
    agent: str  # the agent's name on its node (usually its role: ha, mn, fw, ...)
    control: str  # path of the control socket
    events: str | None  # path of the event log (None: keep counts only)
    options: dict[str, Any]


def read_config_file(path: str) -> Any:
    """The JSON document of a config file; a ParameterError naming the problem."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as exc:
        raise ParameterError(f"cannot read config {path}: {exc.strerror}", "check the path") from None
    except json.JSONDecodeError as exc:
        raise ParameterError(f"config {path} is not JSON: {exc.msg} at line {exc.lineno}") from None


def agent_config_from(data: Any, where: str, extra_keys: frozenset[str] = frozenset()) -> AgentConfig:
    """An agent's config from its JSON object (`where` names it in errors; `extra_keys`
    are allowed besides the common ones, for the caller to read)."""
    if not isinstance(data, dict):
        raise ParameterError(f"{where} must be a JSON object")
    unknown = set(data) - COMMON_KEYS - extra_keys
    if unknown:
        raise ParameterError(f"{where}: unknown keys {sorted(unknown)}",
                             f"known keys: {sorted(COMMON_KEYS | extra_keys)}")
    for key in ("node", "agent", "control"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ParameterError(f"{where}: {key!r} must be a non-empty string")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ParameterError(f"{where}: 'options' must be an object")
    return AgentConfig(node=data["node"], agent=data["agent"], control=data["control"],
                       events=data.get("events"), options=options)


def load_agent_config(path: str) -> AgentConfig:
    return agent_config_from(read_config_file(path), f"config {path}")


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(annotation):
            try:
                return _check_type(name, value, arm)
            except ParameterError as exc:
                errors.append(str(exc))
        raise ParameterError(f"option {name!r}: {value!r} does not fit {annotation}")
    if annotation is type(None):
        if value is None:
            return None
        raise ParameterError(f"option {name!r} must be null")
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ParameterError(f"option {name!r} must be a list")
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        items = [_check_type(f"{name}[]", v, item) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ParameterError(f"option {name!r} must be an object")
        return value
    if isinstance(annotation, type):
        if annotation is bool and not isinstance(value, bool):
            raise ParameterError(f"option {name!r} must be true or false")
        if annotation in (int, float) and isinstance(value, bool):
            raise ParameterError(f"option {name!r} must be a number")
        if not isinstance(value, annotation):
            raise ParameterError(f"option {name!r} must be {annotation.__name__}, got {value!r}")
    return value


def parse_options(cls: type, raw: dict[str, Any]) -> Any:
    """Build the dataclass `cls` from `raw`, refusing unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ParameterError(f"unknown options {sorted(unknown)}", f"known options: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        values[name] = _check_type(name, value, hints[name])
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ParameterError(f"missing options {missing}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ParameterError(str(exc)) from None
