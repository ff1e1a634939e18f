"""Waiting for file descriptors to become readable, for any descriptor number.

select(2) only takes descriptors below FD_SETSIZE (1024): Python's select.select raises
`ValueError: filedescriptor out of range in select()` for a larger one. The testbed
controller holds several descriptors per link relay, node shell and agent, so with
around a hundred mobile nodes its descriptors pass 1023. Everything in the controller
therefore waits through poll(2), here. (The link relay's own loop keeps select(2) for
its microsecond timeout while its descriptors are small; see linkemu.Relay.run.)

Standard library only: the link relay imports this at its cold start.
"""
from __future__ import annotations

import select

_READ_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def timeout_ms(timeout: float | None) -> int | None:
    """poll(2)'s timeout for `timeout` seconds: None (forever) stays None, anything else
    is rounded up to whole milliseconds, so a wait never ends before its deadline."""
    if timeout is None:
        return None
    if timeout <= 0:
        return 0
    ms = int(timeout * 1000)
    return ms if ms >= timeout * 1000 else ms + 1


class ReadWaiter:
    """A set of descriptors to wait on, registered once, waited on many times.

    `wait(timeout)` returns the descriptors that are readable, at end of file or in
    error (a read on them does not block), or [] when `timeout` seconds passed first.
    """

    __slots__ = ("_poll",)

    def __init__(self, fds=()):
        self._poll = select.poll()
        for fd in fds:
            self.register(fd)

    def register(self, fd) -> None:
        self._poll.register(fd, _READ_EVENTS)

    def unregister(self, fd) -> None:
        self._poll.unregister(fd)

    def wait(self, timeout: float | None) -> list[int]:
        return [fd for fd, _events in self._poll.poll(timeout_ms(timeout))]


def wait_readable(fd, timeout: float | None) -> bool:
    """True when `fd` (a descriptor or an object with fileno()) is readable, at end of
    file or in error within `timeout` seconds (None: no limit); False on timeout."""
    return bool(ReadWaiter((fd,)).wait(timeout))


def select_compatible(rlist, _wlist, _xlist, timeout: float | None = None):
    """select.select's calling convention for readability only, through poll(2): for a
    loop written around select that may meet descriptors above 1023."""
    return ReadWaiter(rlist).wait(timeout), [], []
