"""A leak finder for the soak's unit tests: the sizes of every container reachable from
some objects (attributes of mip6bench objects, followed into containers' values), keyed
by the path that reaches them. Run N more of something that should leave no trace
(a handover, a re-authentication) and compare: a path whose size grew by about N is a
structure that keeps one entry per repetition."""
from __future__ import annotations

from collections import deque
from typing import Any

CONTAINERS = (dict, list, set, deque, frozenset, tuple)


def _ours(obj: Any) -> bool:
    return type(obj).__module__.startswith(("mip6bench", "tests", "agents"))


def _attributes(obj: Any) -> dict[str, Any]:
    out = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(obj, name):
                out[name] = getattr(obj, name)
    return out


def container_sizes(roots: dict[str, Any], depth: int = 8, skip: tuple = ()) -> dict[str, int]:
    """{path: total length} of the containers reachable from `roots`; a container
    reached more than once counts once (at its first path). Objects in `skip` (the
    test's own fakes and records) are not entered."""
    sizes: dict[str, int] = {}
    seen: set[int] = {id(obj) for obj in skip}

    def walk(obj: Any, path: str, left: int) -> None:
        if left < 0 or id(obj) in seen:
            return
        if isinstance(obj, CONTAINERS):
            seen.add(id(obj))
            sizes[path] = sizes.get(path, 0) + len(obj)
            values = obj.values() if isinstance(obj, dict) else obj
            for value in list(values):
                walk(value, f"{path}[*]", left - 1)
        elif _ours(obj):
            seen.add(id(obj))
            for name, value in _attributes(obj).items():
                walk(value, f"{path}.{name}", left - 1)

    for name, root in roots.items():
        walk(root, name, depth)
    return sizes


def grown(before: dict[str, int], after: dict[str, int], by: int) -> dict[str, tuple[int, int]]:
    """The paths that grew by at least `by` entries."""
    return {path: (before.get(path, 0), size) for path, size in after.items()
            if size - before.get(path, 0) >= by}
