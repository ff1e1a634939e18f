"""The event log's encoder: orjson for plain entries, the standard library's for the
rest, with the same fields and values either way (mip6bench.runtime.eventlog)."""
from __future__ import annotations

import enum
import json

from mip6bench.runtime.eventlog import _ENCODER, EventLog, encode_entry, read_events


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def old(entry):
    return (_ENCODER.encode(entry) + "\n").encode()


def test_plain_entries_decode_to_what_the_standard_encoder_wrote():
    entry = {"t_ns": 123456789012345, "node": "n", "agent": "paa", "event": "radius.answer",
             "key": "17", "id": 3, "rtt_ms": 0.532, "ok": True, "mppe": None,
             "nai": "mn\u00e9@example", "big": 2 ** 63 - 1, "neg": -5}
    line = encode_entry(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == json.loads(old(entry)) == entry
    assert list(json.loads(line)) == list(entry)           # same field order


def test_flat_lists_of_plain_scalars_are_written_as_the_standard_encoder_did():
    for entry in ({"peers": ["a", "b"]}, {"when": (1, 2)}, {"none": []},
                  {"mixed": ["x", 1, 2.5, True, None], "n": 3}):
        assert encode_entry(entry) == old(entry), entry


def test_entries_orjson_would_write_otherwise_take_the_standard_encoder():
    for entry in ({"state": Color.RED}, {"level": Level.HIGH}, {"peers": ["a", b"b"]},
                  {"sub": {"x": 1}}, {"nested": [[1]]}, {"odd": [Color.RED]},
                  {"nan": [float("nan")]}, {"raw": b"\x00\x01"}, {"n": 2 ** 70},
                  {"v": float("nan")}, {"v": float("inf")}, {"s": "\ud800"},
                  {"when": (1, 2)}):
        assert encode_entry(entry) == old(entry), entry


def test_a_log_file_holds_both_kinds_of_line(tmp_path):
    path = tmp_path / "a.jsonl"
    log = EventLog(path, "paa", "paa")
    log.emit("plain", session_id=7, nai="mn1@x")
    log.emit("other", peers=["fw1"], state=Color.RED)
    log.close()
    entries = list(read_events(path))
    assert [(e["event"], e.get("session_id"), e.get("peers"), e.get("state"))
            for e in entries] == [("plain", 7, None, None), ("other", None, ["fw1"], "Color.RED")]
