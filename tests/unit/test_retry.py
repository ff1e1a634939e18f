"""Bounded retries (mip6bench.retry) and the warm-up built on them."""
from __future__ import annotations

import pytest

from mip6bench.errors import Mip6benchError
from mip6bench.retry import AttemptFailed, RetryExhausted, retry
from mip6bench.testbed import warmup


def failing(times: int, value="ok"):
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) <= times:
            raise AttemptFailed(f"lost #{len(calls)}")
        return value

    return attempt, calls


def test_first_success_returns_at_once():
    attempt, calls = failing(0)
    assert retry(attempt, 5, "x") == "ok" and len(calls) == 1


def test_succeeds_after_n_failures():
    attempt, calls = failing(4, value=42)
    assert retry(attempt, 5, "x") == 42 and len(calls) == 5


def test_bounded_with_a_clear_error():
    attempt, calls = failing(100)
    with pytest.raises(RetryExhausted) as info:
        retry(attempt, 3, "warm-up ping mn1 -> 2001:db8:1::2", "check the links")
    assert len(calls) == 3  # exactly the bound, not one more
    err = info.value
    assert isinstance(err, Mip6benchError)  # the CLI prints it as one line
    assert err.attempts == 3 and err.last == "lost #3"
    assert str(err) == ("warm-up ping mn1 -> 2001:db8:1::2 failed 3 times in a row "
                        "(last: lost #3) (check the links)")


def test_other_exceptions_are_not_retried():
    calls = []

    def attempt():
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry(attempt, 5, "x")
    assert len(calls) == 1


def test_bound_must_be_positive():
    with pytest.raises(ValueError):
        retry(lambda: None, 0, "x")


class FakeNode:
    """pexec answers with a scripted sequence of ping exit codes."""

    def __init__(self, codes):
        self.codes, self.argvs = list(codes), []

    def pexec(self, argv):
        self.argvs.append(argv)
        code = self.codes.pop(0)
        return ("1 packets transmitted, 1 received" if code == 0
                else "1 packets transmitted, 0 received, 100% packet loss"), "", code


class FakeTestbed:
    def __init__(self, nodes):
        self.nodes = nodes

    def node(self, name):
        return self.nodes[name]


def test_warm_up_retries_lost_pings_and_never_fails_on_loss():
    nodes = {"mn1": FakeNode([1, 1, 0]), "mn2": FakeNode([0]), "paa": FakeNode([1] * 3)}
    notes = warmup.warm_up(FakeTestbed(nodes), [("mn1", "2001:db8:1::2"),
                                                ("mn2", "2001:db8:1::2"),
                                                ("paa", "2001:db8:1::3")],
                           attempts=3, timeout_s=0.5)
    assert len(nodes["mn1"].argvs) == 3 and len(nodes["mn2"].argvs) == 1
    assert len(nodes["paa"].argvs) == 3  # bounded
    assert nodes["mn1"].argvs[0] == ["ping", "-6", "-n", "-q", "-c", "1", "-W", "0.5",
                                     "2001:db8:1::2"]
    # The silent path is reported, not raised.
    assert len(notes) == 1 and notes[0].startswith(
        "warm-up ping paa -> 2001:db8:1::3 failed 3 times in a row (last: exit 1: ")
