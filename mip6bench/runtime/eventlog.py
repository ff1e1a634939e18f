"""The event log: one JSON object per line.

Each entry: `t_ns` (CLOCK_MONOTONIC in ns: every network namespace shares that clock,
so times compare across nodes exactly), `node`, `agent`, `event` and the event's own
fields (ids such as a PANA session, a binding or an NSIS session go in fields).
Experiments compute phases as differences between events.

Entries whose fields are all plain scalars (str, int, float, bool, None: nearly all of
them) or flat lists and tuples of them are encoded by orjson (about a tenth of the standard library's time: a PAA writes
13 entries per authentication); any other entry, and one orjson refuses (an integer past
64 bits, a string that is not valid Unicode), by the standard library's encoder with
`default=str`, as every entry was before. Both write the same fields with the same
values; orjson writes non-ASCII text as UTF-8 where the standard library escapes it.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

RESERVED = ("t_ns", "node", "agent", "event")
_RESERVED = frozenset(RESERVED)
MAX_DEFERRED = 512   # entries held for the loop's next wait, at most
# One encoder for every entry (json.dumps with arguments builds one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
# what orjson encodes exactly as _ENCODER does (by class: an enum or another subclass
# of these goes to _ENCODER, as containers do)
_SCALARS = frozenset((str, int, bool, type(None)))


def _plain(value) -> bool:
    cls = value.__class__
    return cls in _SCALARS or (cls is float and math.isfinite(value))


def encode_entry(entry: dict[str, Any]) -> bytes:
    """One entry as a JSON line (UTF-8, newline-terminated); see the module docstring."""
    for value in entry.values():
        cls = value.__class__
        if cls not in _SCALARS and (cls is not float or not math.isfinite(value)):
            # NaN and infinities: the standard library's tokens, as before; a flat list
            # or tuple of plain scalars (e.g. PANA's handshake_done names) is plain too
            if (cls is list or cls is tuple) and all(map(_plain, value)):
                continue
            break
    else:
        try:
            return orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            pass
    return (_ENCODER.encode(entry) + "\n").encode()


class EventLog:
    """Append-only JSON-lines writer. Each entry is stamped when it is emitted; it is
    written at once, or, after `write_after_callback(loop)` (the agents), when the event
    loop's current callback has returned: an agent handling a message sends its answer
    before it encodes and writes that message's events (json and a write(2) cost 20-100
    us per event here, several events per message), and every callback's entries go out
    in one write before the loop waits again, and before any control reply (the agent's
    ControlServer calls flush()), so what happened before an answer is in the file when
    the answer arrives. An agent killed inside a callback loses that callback's entries;
    close() writes what is pending.

    After `write_before_wait(loop, hooks)` instead (the agents, on their
    PreciseEpollSelector): the entries wait until the loop is about to wait for its next
    event, so the several callbacks that serve one wake-up (a burst of Binding Updates:
    the core's answers, then the kernel changes' events) make one write; and at most
    MAX_DEFERRED entries wait while the loop has work without waiting in between."""

    def __init__(self, path: str | os.PathLike | None, node: str, agent: str):
        self.node, self.agent = node, agent
        self.path = Path(path) if path else None
        self._file = open(self.path, "ab", buffering=0) if self.path else None
        self.counts: dict[str, int] = {}
        self._loop = None
        self._hold = 1          # pending entries that make emit schedule a write
        self._pending: list[dict[str, Any]] = []
        # Where each entry goes besides the file (an agent's `recent` events), and what
        # is called after each one (set only while an agent's wait-event command waits):
        # the agent's own emit is this one call (CoreDriver(emit_fields=...)).
        self.recent: deque[dict[str, Any]] | None = None
        self.on_entry: Callable[[], Any] | None = None

    def write_after_callback(self, loop) -> None:
        """Write entries when `loop`'s current callback has returned (see the class)."""
        self._loop, self._hold = loop, 1

    def write_before_wait(self, loop, hooks: list) -> None:
        """Write entries when `loop` is about to wait: `hooks` are the functions its
        selector calls then (PreciseEpollSelector.before_wait); see the class."""
        self._loop, self._hold = loop, MAX_DEFERRED
        hooks.append(self.flush)

    def emit(self, event: str, t_ns: int | None = None, **fields: Any) -> dict[str, Any]:
        return self.emit_fields(event, fields, t_ns)

    def emit_fields(self, event: str, fields: dict[str, Any],
                    t_ns: int | None = None) -> dict[str, Any]:
        """emit() with the fields as a dict (read, not kept: the entry is a new dict), for
        callers that hold one already (a core's Event): no keyword packing on the way."""
        if not _RESERVED.isdisjoint(fields):
            clash = [k for k in fields if k in _RESERVED]
            raise ValueError(f"event fields may not be named {clash}")
        entry = {"t_ns": time.monotonic_ns() if t_ns is None else t_ns,
                 "node": self.node, "agent": self.agent, "event": event, **fields}
        self.counts[event] = self.counts.get(event, 0) + 1
        if self._file:
            if self._loop is None or self._loop.is_closed():
                self._write(encode_entry(entry))
            else:
                self._pending.append(entry)
                if len(self._pending) == self._hold:
                    self._loop.call_soon(self.flush)
        if self.recent is not None:
            self.recent.append(entry)
        if self.on_entry is not None:
            self.on_entry()
        return entry

    def flush(self) -> None:
        """Write the entries emitted since the last write."""
        if self._pending and self._file:
            pending, self._pending = self._pending, []
            self._write(b"".join(map(encode_entry, pending)))

    def _write(self, data: bytes) -> None:
        written = self._file.write(data)
        while written < len(data):   # an unbuffered write may be short; the rest follows
            written += self._file.write(data[written:])

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
