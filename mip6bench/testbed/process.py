"""Processes the testbed starts inside nodes (agents, radvd, packet capture, ...).

Every process is recorded in the run's registry as soon as it exists, waited for on a
readiness line it prints (never on a fixed time), and ended by pid.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from mip6bench.errors import Mip6benchError
from mip6bench.fdwait import wait_readable
from mip6bench.slowdown import scaled
from mip6bench.testbed.context import RunContext
from mip6bench.testbed.registry import process_start, terminate
from mip6bench.threads import Thread


class ProcessStartError(Mip6benchError):
    pass


@contextlib.contextmanager
def signals_deferred(signals=(signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C and SIGTERM back while a process is started and written down: an
    interrupt between its fork and the assignment of its Popen would leave a process
    nobody knows the pid of. A signal that came meanwhile is handled as the block ends
    (by the handler that was in place). Only the main thread receives them; elsewhere a
    no-op. (Not the signal mask: a child would inherit it across exec.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in caught[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def read_line_until(stream, deadline: float, want: Callable[[str], bool],
                    seen: list[str]) -> str | None:
    """Read lines from a pipe until one satisfies `want` or the deadline passes.
    Returns the matching line, or None on timeout/EOF; `seen` collects every line."""
    fd = stream.fileno()
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if not wait_readable(fd, remaining):
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            if buf:
                seen.append(buf.decode(errors="replace"))
            return None
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace")
            seen.append(text)
            if want(text):
                return text


class NodeProcess:
    """A process running in a node's network namespace."""

    def __init__(self, node, argv: Sequence[str], what: str, run: RunContext,
                 ready: Callable[[str], bool] | None = None, ready_stream: str = "stdout",
                 log_path: Path | None = None):
        self.node, self.argv, self.what, self.run = node, list(argv), what, run
        self.ready, self.ready_stream, self.log_path = ready, ready_stream, log_path
        self.popen: subprocess.Popen | None = None
        self.start_ns = 0
        self.ready_ns = 0
        self.ready_line: str | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self, timeout: float = 10.0) -> "NodeProcess":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "NodeProcess":
        """Start the process without waiting for its ready line (wait_ready does):
        many processes launched first, then waited for, start in parallel."""
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        stdout = subprocess.PIPE if (self.ready and self.ready_stream == "stdout") else log
        stderr = subprocess.PIPE if (self.ready and self.ready_stream == "stderr") else log
        self.start_ns = time.monotonic_ns()
        try:
            self.popen = subprocess.Popen(["mnexec", "-da", str(self.node.pid), *self.argv],
                                          stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.run.record.add_process(self.popen.pid, f"{self.what} on {self.node.name}")
        self._timeout_from = time.monotonic()
        return self

    def wait_ready(self, timeout: float = 10.0) -> "NodeProcess":
        """Wait (up to `timeout` s from the launch) for the ready line."""
        if self.ready:
            stream = self.popen.stdout if self.ready_stream == "stdout" else self.popen.stderr
            seen: list[str] = []
            timeout = scaled(timeout)
            line = read_line_until(stream, self._timeout_from + timeout, self.ready, seen)
            if line is None:
                self.stop()
                detail = self._log_tail() or " | ".join(seen[-3:]) or "no output"
                raise ProcessStartError(f"{self.what} on {self.node.name} did not become ready "
                                        f"within {timeout:g} s: {detail}")
            self.ready_ns = time.monotonic_ns()
            self.ready_line = line
            # Keep draining the pipe into the log so the process never blocks on it
            # (or dies of SIGPIPE) when it writes more later.
            Thread(target=_drain, args=(stream, self.log_path),
                   name=f"drain:{self.what}", daemon=True).start()
        return self

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
            return lines[-1] if lines else ""
        return ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.popen is None:
            return None
        grace = scaled(grace)
        if self.popen.poll() is None:
            terminate(self.popen.pid, process_start(self.popen.pid), grace)
        try:
            return self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen:
            self.popen.wait()


def _drain(stream, log_path: Path | None) -> None:
    with stream:
        out = open(log_path, "ab") if log_path else None
        try:
            while chunk := os.read(stream.fileno(), 65536):
                if out:
                    out.write(chunk)
                    out.flush()
        except OSError:
            pass
        finally:
            if out:
                out.close()
