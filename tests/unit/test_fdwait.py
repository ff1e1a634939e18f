"""Waiting on descriptors above 1023 (select(2)'s FD_SETSIZE).

`mip6bench run bootstrap --param mns=100` ended in `ValueError: filedescriptor out of
range in select()`: the controller holds several descriptors per relay, shell and agent.
Each test here first fills every descriptor number up to HIGH, so whatever the code under
test opens next is numbered above 1023, then exercises one waiting function.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from mip6bench.fdwait import ReadWaiter, select_compatible, timeout_ms, wait_readable

HIGH = 1100  # every descriptor below this is taken while a test runs


@pytest.fixture
def high_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = HIGH + 512
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    fillers = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            fillers.append(fd)
            if fd >= HIGH:
                break
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _pipe_above_limit():
    r, w = os.pipe()
    assert r > 1023 and w > 1023, (r, w)
    return r, w


def test_timeout_ms_never_rounds_down():
    assert timeout_ms(None) is None
    assert timeout_ms(-1) == 0 and timeout_ms(0) == 0
    assert timeout_ms(0.0001) == 1
    assert timeout_ms(0.001) == 1
    assert timeout_ms(0.0015) == 2
    assert timeout_ms(2.5) == 2500


def test_wait_readable_high_fd(high_fds):
    r, w = _pipe_above_limit()
    try:
        assert wait_readable(r, 0) is False
        os.write(w, b"x")
        assert wait_readable(r, 1.0) is True
        os.read(r, 1)
        os.close(w)
        w = -1
        assert wait_readable(r, 1.0) is True  # end of file does not block a read either
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_read_waiter_and_select_compatible_high_fds(high_fds):
    (r1, w1), (r2, w2) = _pipe_above_limit(), os.pipe()
    try:
        waiter = ReadWaiter([r1, r2])
        assert waiter.wait(0) == []
        os.write(w2, b"x")
        assert waiter.wait(1.0) == [r2]
        assert select_compatible([r1, r2], [], [], 0)[0] == [r2]
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_link_relay_client_reads_reply_on_high_fd(high_fds):
    """LinkRelay._readline (wait_ready, every request) on a relay whose pipes are > 1023.
    A stand-in child prints the ready line; no TAPs, no root."""
    from mip6bench.net.linkemu import LinkRelay

    proc = subprocess.Popen([sys.executable, "-c", 'print(\'{"ready": true, "pid": 1}\')'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, close_fds=True)
    relay = LinkRelay(proc, {}, [])
    try:
        assert proc.stdout.fileno() > 1023
        assert relay.wait_ready(10)["ready"] is True
    finally:
        relay.stop()


def test_probe_flows_with_high_socket_fds(high_fds):
    from mip6bench.measure.probe import Flow, probe_flows

    [result] = probe_flows([Flow("lo", None, "::1", None, "::1")], count=3, interval=0.001,
                           linger=5.0)
    assert result.sent == 3 and result.answered == 3 and result.delivered == 3


def test_read_line_until_high_fd(high_fds):
    from mip6bench.testbed.process import read_line_until
    import time

    proc = subprocess.Popen([sys.executable, "-c", "print('noise'); print('ready 1')"],
                            stdout=subprocess.PIPE, close_fds=True)
    try:
        assert proc.stdout.fileno() > 1023
        seen: list[str] = []
        line = read_line_until(proc.stdout, time.monotonic() + 10,
                               lambda text: text.startswith("ready"), seen)
        assert line == "ready 1" and seen == ["noise", "ready 1"]
    finally:
        proc.stdout.close()
        proc.wait()


def test_registry_wait_exit_high_pidfd(high_fds):
    from mip6bench.testbed.registry import wait_exit

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE, close_fds=True)
    try:
        assert proc.stdin.fileno() > 1023  # so the pidfd opened next is too
        assert wait_exit(proc.pid, 0) is False
        proc.stdin.close()  # the child exits on EOF: an event to wait on, not a time
        assert wait_exit(proc.pid, 10) is True
    finally:
        proc.stdin.close()
        proc.wait()


def test_kernel_wait_for_high_netlink_fd(high_fds):
    from mip6bench.net.kernel import wait_for

    calls = []

    def check(_kernel):  # never satisfied: the wait ends at its deadline
        calls.append(1)
        return None

    # Waiting on the netlink socket (> 1023) works; address or link changes elsewhere
    # in this namespace may wake it and re-run the check, which is fine.
    assert wait_for(None, check, 0.01) is None
    assert calls
