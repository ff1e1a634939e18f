"""Threads that leave the termination signals to the main thread.

The kernel hands a process-directed signal (`kill -INT pid`, Ctrl-C, SIGTERM) to the main
thread if it can take it at that moment, else to any thread that does not block it (the
main thread cannot while, for one, CPython forks a child for it: it blocks every signal
around vfork). CPython runs the Python handler in the main thread only, at its next
bytecode; when the kernel chose another thread, a main thread that has gone on into a C
wait (a lock, Thread.join, Future.result) is not woken, and Ctrl-C can sit unhandled
until that wait ends, or for ever. So every thread the testbed starts is started with
SIGINT, SIGTERM, SIGHUP and SIGQUIT blocked, through `Thread` or `ThreadPoolExecutor`
here: the kernel then always picks the main thread, whose wait the signal interrupts.

The mask is set by the starting thread around `start()` (a new thread inherits its
creator's mask), so there is no moment at which the new thread can take a signal; one
that comes meanwhile stays pending and reaches the main thread as it unblocks again.

A child process inherits the mask of the thread that forks it, through exec: an agent
spawned from such a thread would start with SIGTERM blocked and ignore the testbed's
stop. Importing this module therefore makes every `subprocess.Popen` started from a
thread that blocks them unblock them for the fork (the child starts with the signals as
the main thread has them). A signal that comes just then may be taken by that thread:
its handler then runs at the main thread's next bytecode, so the main thread waits for
workers in steps of POLL_S (`result_of`, `results_of`, `join`), never in one unbounded wait.
Standard library only.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import subprocess
import threading
import time

TERMINATION_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})

# What the process was started with blocked (normally nothing): children keep that.
_BLOCKED_AT_START = (signal.pthread_sigmask(signal.SIG_BLOCK, ())
                     if threading.current_thread() is threading.main_thread() else frozenset())
_OURS = TERMINATION_SIGNALS - set(_BLOCKED_AT_START)

POLL_S = 0.5   # the longest a handled signal waits for the main thread's next bytecode


@contextlib.contextmanager
def termination_signals_blocked():
    """Block the termination signals in the calling thread for the block; threads
    created meanwhile inherit the mask. A signal that came meanwhile is delivered
    as the mask is restored."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Thread(threading.Thread):
    """threading.Thread that never takes SIGINT/SIGTERM/SIGHUP/SIGQUIT."""

    def start(self) -> None:
        with termination_signals_blocked():
            super().start()


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """concurrent.futures.ThreadPoolExecutor whose workers never take the termination
    signals (they are created in submit(), under the blocked mask)."""

    def submit(self, fn, /, *args, **kwargs):
        with termination_signals_blocked():
            return super().submit(fn, *args, **kwargs)


def _steps(timeout: float | None):
    """Timeouts of POLL_S or less until `timeout` (None: for ever) has passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            yield POLL_S
            continue
        left = deadline - time.monotonic()
        yield min(POLL_S, max(left, 0.0))
        if left <= POLL_S:
            return


def result_of(future: concurrent.futures.Future, timeout: float | None = None):
    """future.result(timeout), waited for in steps (see the module's doc)."""
    for step in _steps(timeout):
        try:
            return future.result(step)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise          # what the call itself raised
    return future.result(0)   # raises TimeoutError


def results_of(futures):
    """The futures' results in order, each waited for in steps; as Executor.map's
    iterator, the ones not yet started are cancelled when it stops early (an error)."""
    futures = list(futures)
    try:
        for future in futures:
            yield result_of(future)
    finally:
        for future in futures:
            future.cancel()


def join(thread: threading.Thread, timeout: float | None = None) -> None:
    """thread.join(timeout), in steps."""
    for step in _steps(timeout):
        thread.join(step)
        if not thread.is_alive():
            return


def _spawn_with_signals_unblocked(execute_child):
    def _execute_child(self, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            return execute_child(self, *args, **kwargs)
        held = _OURS & signal.pthread_sigmask(signal.SIG_BLOCK, ())
        if not held:
            return execute_child(self, *args, **kwargs)
        # Only for the fork: a signal that comes in this short window may be taken by
        # this thread; the main thread's waits are in steps, so it is still handled.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
        try:
            return execute_child(self, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, held)

    _execute_child.spawns_with_signals_unblocked = True
    return _execute_child


if not getattr(subprocess.Popen._execute_child, "spawns_with_signals_unblocked", False):
    subprocess.Popen._execute_child = _spawn_with_signals_unblocked(subprocess.Popen._execute_child)
