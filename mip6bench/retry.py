"""Bounded retries of an action that may fail for reasons that pass (a lost packet).

Each attempt waits for its own outcome (a reply, an exit status) and signals failure by
raising AttemptFailed; `retry` starts the next attempt at once, with no sleep between
them, and gives up with RetryExhausted after `attempts` tries.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from mip6bench.errors import Mip6benchError

T = TypeVar("T")


class AttemptFailed(Exception):
    """One attempt did not succeed; str(exc) says why (kept for the final error)."""


class RetryExhausted(Mip6benchError):
    """Every attempt failed."""

    def __init__(self, what: str, attempts: int, last: str, fix: str = ""):
        super().__init__(f"{what} failed {attempts} time{'s' if attempts != 1 else ''} "
                         f"in a row (last: {last})", fix)
        self.what, self.attempts, self.last = what, attempts, last


def retry(attempt: Callable[[], T], attempts: int, what: str, fix: str = "") -> T:
    """Call attempt() until it returns instead of raising AttemptFailed, at most
    `attempts` times; its value is returned. Other exceptions pass through at once."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, not {attempts}")
    last = ""
    for _ in range(attempts):
        try:
            return attempt()
        except AttemptFailed as exc:
            last = str(exc) or type(exc).__name__
    raise RetryExhausted(what, attempts, last, fix)
