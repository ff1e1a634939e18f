"""Progress of a run on the terminal (controller only): one line per step (rich)."""
from __future__ import annotations

import time


class Steps:
    """`begin(what)` announces a step (with the time left, estimated from the steps
    done), `end(result)` closes it with its duration; a step announced only when it is
    over passes its name to end(begin=...)."""

    def __init__(self, total: int, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.total, self.done = total, 0
        self.t0 = self.t = time.monotonic()
        self.what = ""

    def begin(self, what: str) -> None:
        self.what, self.t = what, time.monotonic()
        eta = ""
        if self.done:
            eta = f", about {(self.t - self.t0) / self.done * (self.total - self.done):.0f} s to go"
        self.console.print(f"[{self.done + 1}/{self.total}] {what} ...{eta}")

    def end(self, result: str, begin: str | None = None) -> None:
        if begin:
            self.what = begin
        self.done += 1
        self.console.print(f"[{self.done}/{self.total}] {self.what}: {result} "
                           f"({time.monotonic() - self.t:.1f} s)")
        self.t = time.monotonic()


class StartupProgress:
    """Testbed start-up stages as Steps lines: the testbed calls it with each stage it
    begins, (what, total), and with (None, total) once it is up; each call closes the
    stage before."""

    def __init__(self, console=None):
        self.console = console
        self.steps: Steps | None = None
        self.open = False

    def __call__(self, what: str | None, total: int) -> None:
        if self.steps is None:
            self.steps = Steps(total, self.console)
        if self.open:
            self.steps.end("done")
            self.open = False
        if what is not None:
            self.steps.begin(what)
            self.open = True
