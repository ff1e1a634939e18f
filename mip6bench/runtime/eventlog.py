"""The event log: one JSON object per line.

Each entry: `t_ns` (CLOCK_MONOTONIC in ns: every network namespace shares that clock,
so times compare across nodes exactly), `node`, `agent`, `event` and the event's own
fields (ids such as a PANA session, a binding or an NSIS session go in fields).
Experiments compute phases as differences between events.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

RESERVED = ("t_ns", "node", "agent", "event")
_RESERVED = frozenset(RESERVED)
# One encoder for every entry (json.dumps with arguments builds one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


class EventLog:
    """Append-only JSON-lines writer. Each entry is stamped when it is emitted; it is
    written at once, or, after `write_after_callback(loop)` (the agents), when the event
    loop's current callback has returned: an agent handling a message sends its answer
    before it encodes and writes that message's events (json and a write(2) cost 20-100
    us per event here, several events per message), and every callback's entries go out
    in one write before the loop waits again, and before any control reply (the agent's
    ControlServer calls flush()), so what happened before an answer is in the file when
    the answer arrives. An agent killed inside a callback loses that callback's entries;
    close() writes what is pending."""

    def __init__(self, path: str | os.PathLike | None, node: str, agent: str):
        self.node, self.agent = node, agent
        self.path = Path(path) if path else None
        self._file = open(self.path, "a", buffering=1) if self.path else None
        self.counts: dict[str, int] = {}
        self._loop = None
        self._pending: list[dict[str, Any]] = []

    def write_after_callback(self, loop) -> None:
        """Write entries when `loop`'s current callback has returned (see the class)."""
        self._loop = loop

    def emit(self, event: str, t_ns: int | None = None, **fields: Any) -> dict[str, Any]:
        if not _RESERVED.isdisjoint(fields):    # a set operation: no comprehension's frame
            raise ValueError(f"event fields may not be named {[k for k in fields if k in RESERVED]}")
        entry = {"t_ns": time.monotonic_ns() if t_ns is None else t_ns,
                 "node": self.node, "agent": self.agent, "event": event, **fields}
        self.counts[event] = self.counts.get(event, 0) + 1
        if self._file:
            if self._loop is None or self._loop.is_closed():
                self._file.write(_ENCODER.encode(entry) + "\n")
            else:
                if not self._pending:
                    self._loop.call_soon(self.flush)
                self._pending.append(entry)
        return entry

    def flush(self) -> None:
        """Write the entries emitted since the last write."""
        if self._pending and self._file:
            pending, self._pending = self._pending, []
            self._file.write("".join(_ENCODER.encode(e) + "\n" for e in pending))

    def close(self) -> None:
        if self._file:
            self.flush()
            self._file.close()
            self._file = None


def read_events(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Entries of one log; a torn last line (writer killed mid-write) is skipped."""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def merge_logs(paths: Iterable[str | os.PathLike], out: str | os.PathLike) -> int:
    """Merge several logs into one, ordered by time; returns the number of entries."""
    entries = [e for p in paths if os.path.exists(p) for e in read_events(p)]
    entries.sort(key=lambda e: e.get("t_ns", 0))
    with open(out, "w") as f:
        for e in entries:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    return len(entries)


def find(entries: Iterable[dict[str, Any]], event: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("event") == event
            and all(e.get(k) == v for k, v in match.items())]
