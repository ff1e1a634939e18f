"""The relay loop: frames between two TAP descriptors through two `shaping.Shaper`s,
and the line commands (carrier, stats, set, wait) on its control descriptor."""
from __future__ import annotations

import errno
import json
import os
import select
import time

if False:  # annotations only: `typing` costs ~2 ms of cold start
    from typing import Any, Mapping

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.fdwait import select_compatible
from mip6bench.net.shaping import Shaper
from mip6bench.net.linkemu.tap import TUNSETCARRIER, _ioctl_int

# Largest frame a TAP can hand us: max MTU 65535 + Ethernet and VLAN headers. Kept
# below glibc's 128 KiB mmap threshold so each read is a cheap heap allocation that
# is shrunk in place to the frame's size.
READ_SIZE = 65535 + 32
# Frames read from one TAP per wakeup before the loop looks at departures again:
# large enough to amortise select(), small enough to keep due frames on time.
BATCH = 64
FD_SETSIZE = 1024  # select(2) takes descriptors below this only

PARAM_OPTIONS = {  # CLI/`set` spelling -> LinkParams field
    "delay-ms": "delay_ms", "jitter-ms": "jitter_ms", "loss-pct": "loss_pct",
    "rate-mbit": "rate_mbit", "limit": "limit", "distribution": "distribution",
}


class _Stop(Exception):
    """Raised from the SIGTERM handler to leave the loop."""


class TapGone(Exception):
    """A TAP was deleted under us (its namespace died or someone ran `ip link del`)."""


def _json_line(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _num(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ParameterError(f"{name}: {value!r} is not a number",
                             f"give {name} as a plain number, e.g. {name}=10") from None


def control_lines(owner, handle) -> bool:
    """Read what `owner.ctl_fd` has and `handle` each complete line (the rest waits in
    `owner._ctl_buf`); False on EOF."""
    data = os.read(owner.ctl_fd, 65536)
    if not data:
        return False
    *lines, owner._ctl_buf = (owner._ctl_buf + data).split(b"\n")
    for raw in lines:
        handle(raw.decode(errors="replace"))
    return True


_PENDING = object()   # Relay.command(): a wait that is not answered yet
_WAIT_OPS = {">=": int.__ge__, "<=": int.__le__, "==": int.__eq__}
WAIT_DEFAULT_S = 10.0


class Relay:
    """Moves frames between two TAP fds through two Shapers; commands on ctl_fd."""

    def __init__(self, fd_a: int, fd_b: int, ab: Shaper, ba: Shaper, *,
                 carrier: bool = True, ctl_fd: int | None = 0, out_fd: int = 1):
        self.fd_a, self.fd_b, self.ab, self.ba = fd_a, fd_b, ab, ba
        self.carrier = carrier
        self.ctl_fd, self.out_fd = ctl_fd, out_fd
        self._ctl_buf = b""
        # The pending `wait`: (condition, deadline ns, text); commands behind it.
        self._waiting: tuple[Any, int, str] | None = None
        self._backlog: list[str] = []

    # -- commands -----------------------------------------------------------------

    def set_carrier(self, on: bool) -> int:
        """TUNSETCARRIER on both TAPs; returns CLOCK_MONOTONIC ns once both changed."""
        if on and not self.carrier:
            # Frames the kernels handed over while the carrier was off and that this
            # loop has not read yet were sent into a dead link: drop them, don't let
            # them through just because this command was handled first.
            for fd, shaper in ((self.fd_a, self.ab), (self.fd_b, self.ba)):
                while True:
                    try:
                        frame = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.EBADFD:
                            raise TapGone() from None
                        raise
                    if not frame:
                        break
                    shaper.drop_carrier()
        for fd in (self.fd_a, self.fd_b):
            try:
                _ioctl_int(fd, TUNSETCARRIER, 1 if on else 0)
            except OSError as exc:
                if exc.errno == errno.EBADFD:
                    raise TapGone() from None
                raise
        if not on:
            # A cut link loses what was in flight.
            self.ab.flush()
            self.ba.flush()
        self.carrier = on
        return time.monotonic_ns()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True, "t_ns": time.monotonic_ns(),
                               "carrier": "on" if self.carrier else "off"}
        for key, sh in (("ab", self.ab), ("ba", self.ba)):
            out[key] = {**sh.counters(), "params": sh.params.as_dict()}
        return out

    def apply_set(self, words: list[str]) -> dict[str, Any]:
        """`set [ab-|ba-]key=value ...`: validated as a whole, then applied."""
        changes: dict[str, dict[str, Any]] = {"ab": {}, "ba": {}}
        for word in words:
            key, eq, value = word.partition("=")
            if not eq:
                raise ParameterError(f"expected key=value, got {word!r}",
                                     "e.g. set delay-ms=10 ab-loss-pct=5")
            key = key.replace("_", "-")
            dirs = ("ab", "ba")
            if key[:3] in ("ab-", "ba-"):
                dirs, key = (key[:2],), key[3:]
            field = PARAM_OPTIONS.get(key)
            if field is None:
                raise ParameterError(f"unknown parameter {key!r}",
                                     f"use: {', '.join(PARAM_OPTIONS)}, optionally "
                                     "prefixed ab- or ba-")
            for d in dirs:
                changes[d][field] = value if field == "distribution" else _num(key, value)
        new = {d: getattr(self, d).params.replace(**c) for d, c in changes.items()}
        for d, params in new.items():
            getattr(self, d).configure(params)
        return {"ok": True, "ab": new["ab"].as_dict(), "ba": new["ba"].as_dict()}

    def _parse_wait(self, words: list[str]):
        """`wait COND [within=S]` -> (condition(), deadline ns, text)."""
        within = WAIT_DEFAULT_S
        rest = []
        for word in words:
            if word.startswith("within="):
                within = _num("within", word[7:])
                if not 0 <= within <= 3600:
                    raise ParameterError("within must be 0..3600 s")
            else:
                rest.append(word)
        if len(rest) != 1:
            raise ParameterError("wait needs one condition",
                                 "e.g. wait ab-rx>=100 within=5, or wait idle")
        text = rest[0]
        if text == "idle":
            ab, ba = self.ab, self.ba
            cond = lambda: ab.queued == 0 and ba.queued == 0  # noqa: E731
        else:
            op = next((o for o in _WAIT_OPS if o in text), None)
            left, _, right = text.partition(op) if op else (text, "", "")
            direction, _, counter = left.partition("-")
            shaper = {"ab": self.ab, "ba": self.ba}.get(direction)
            if op is None or shaper is None or counter.replace("-", "_") not in \
                    shaper.counters():
                raise ParameterError(f"bad wait condition {text!r}",
                                     "use idle or DIR-COUNTER>=N (DIR ab|ba, COUNTER from "
                                     "stats; ops >= <= ==)")
            try:
                target = int(right)
            except ValueError:
                raise ParameterError(f"wait: {right!r} is not an integer") from None
            key, test = counter.replace("-", "_"), _WAIT_OPS[op]
            cond = lambda: test(shaper.counters()[key], target)  # noqa: E731
        return cond, time.monotonic_ns() + int(within * 1e9), text

    def _wait_reply(self, ok: bool, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": ok, "t_ns": time.monotonic_ns(), "wait": text,
                               "ab": self.ab.counters(), "ba": self.ba.counters()}
        if not ok:
            out["error"] = f"wait {text}: not true in time"
        return out

    def poll_wait(self, now_ns: int) -> None:
        """Answer the pending wait if its condition holds or its time is up; then run the
        commands queued behind it."""
        while self._waiting is not None:
            cond, deadline, text = self._waiting
            if cond():
                reply = self._wait_reply(True, text)
            elif now_ns >= deadline:
                reply = self._wait_reply(False, text)
            else:
                return
            self._waiting = None
            os.write(self.out_fd, _json_line(reply))
            backlog, self._backlog = self._backlog, []
            for line in backlog:
                self._handle_line(line)

    def wait_deadline(self) -> int | None:
        return self._waiting[1] if self._waiting is not None else None

    def _handle_line(self, line: str) -> None:
        if self._waiting is not None:
            self._backlog.append(line)
            return
        reply = self.command(line)
        if reply is not None and reply is not _PENDING:
            os.write(self.out_fd, _json_line(reply))

    def command(self, line: str) -> dict[str, Any] | None:
        """One command line -> its reply (None for a blank line; for a `wait` whose
        condition does not hold yet the sentinel _PENDING: poll_wait() answers it)."""
        words = line.split()
        if not words:
            return None
        cmd = words[0]
        try:
            if cmd == "wait" and len(words) > 1:
                cond, deadline, text = self._parse_wait(words[1:])
                if cond():
                    return self._wait_reply(True, text)
                self._waiting = (cond, deadline, text)
                return _PENDING
            if cmd == "carrier" and len(words) == 2 and words[1] in ("on", "off"):
                t = self.set_carrier(words[1] == "on")
                return {"ok": True, "carrier": words[1], "t_ns": t}
            if cmd == "stats" and len(words) == 1:
                return self.stats()
            if cmd == "set" and len(words) > 1:
                return self.apply_set(words[1:])
        except Mip6benchError as exc:
            return {"ok": False, "error": str(exc)}
        except OSError as exc:  # e.g. TUNSETCARRIER refused; the relay keeps running
            return {"ok": False, "error": f"{cmd}: {exc.strerror or exc}"}
        return {"ok": False, "error": f"unknown command {line.strip()!r} (use: carrier on|off, "
                                      "stats, set key=value ..., wait COND)"}

    def _control(self) -> bool:
        """Handle readable stdin; False on EOF (the parent is gone or done)."""
        return control_lines(self, self._handle_line)

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        """Relay until stdin EOF, SIGTERM, or a TAP disappears (raises TapGone)."""
        # Everything the per-frame path touches is bound to a local name: attribute and
        # global lookups are a measurable share of the per-frame cost in CPython.
        fd_a, fd_b, ctl = self.fd_a, self.fd_b, self.ctl_fd
        ab, ba = self.ab, self.ba
        rlist = [fd_a, fd_b] + ([ctl] if ctl is not None else [])
        routes = ((ab, fd_b), (ba, fd_a))
        read, write, now_ns = os.read, os.write, time.monotonic_ns
        # select(2) for its microsecond timeout; it takes descriptors below 1024 only,
        # which a relay started by LinkRelay (close_fds) always has. Should it inherit
        # enough descriptors to pass that, poll(2) (millisecond timeouts) takes over.
        sel = select.select if max(rlist) < FD_SETSIZE else select_compatible
        ab_next, ba_next = ab.next_departure, ba.next_departure
        batch = range(BATCH)
        while True:
            na, nb = ab_next(), ba_next()
            nw = self._waiting[1] if self._waiting is not None else None
            if na is None and nb is None and nw is None:
                timeout = None
            else:
                due = min(t for t in (na, nb, nw) if t is not None)
                wait = due - now_ns()
                # select() rounds the float up to whole microseconds: never early.
                timeout = wait / 1e9 if wait > 0 else 0
            ready = sel(rlist, (), (), timeout)[0]
            now = now_ns()  # arrival stamp for the whole batch
            for fd in ready:
                if fd == ctl:
                    if not self._control():
                        return
                    continue
                shaper = ab if fd == fd_a else ba
                for _ in batch:
                    try:
                        frame = read(fd, READ_SIZE)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.EBADFD:
                            raise TapGone() from None
                        raise
                    if not frame:
                        break
                    if self.carrier:
                        shaper.offer(now, frame)
                    else:
                        shaper.drop_carrier()
            now = now_ns()
            for shaper, out in routes:
                frame = shaper.pop_due(now)
                while frame is not None:
                    try:
                        write(out, frame)
                    except OSError:
                        # EIO: far end administratively down; EINVAL: runt frame.
                        shaper.write_errors += 1
                    frame = shaper.pop_due(now)
            if self._waiting is not None:
                self.poll_wait(now)
