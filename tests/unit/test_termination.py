"""SIGTERM/SIGHUP end a run by raising Terminated in the main thread; a raise that C code
swallowed (builtin input() clears what its flush of the prompt raised, and the handler
runs inside that flush) is raised again at the CLI's next step, and without a terminal
the CLI reads with Cmd's own calls, where nothing is cleared. The whole path is the
netns test tests/netns/test_testbed.py::test_sigterm_tears_the_cli_session_down."""
import os
import signal

import pytest

from mip6bench.testbed import network
from mip6bench.testbed.network import Terminated, install_termination_handler, raise_pending_termination


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    network._TERMINATION.clear()


def test_nothing_pending_raises_nothing(handlers):
    install_termination_handler()
    raise_pending_termination()


def test_a_swallowed_sigterm_is_raised_again(handlers):
    install_termination_handler()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])   # a call: the handler has run by now
    except Terminated:
        pass   # what input() would have cleared
    with pytest.raises(Terminated) as exc:
        raise_pending_termination()
    assert exc.value.code == 128 + signal.SIGTERM


def test_the_cli_reads_without_input_when_there_is_no_terminal(monkeypatch):
    from mip6bench.testbed import cli

    seen = {}

    def fake_init(self, mininet, **kwargs):
        seen["rawinput"] = self.use_rawinput

    monkeypatch.setattr(cli.CLI, "__init__", fake_init)
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: False, raising=False)
    cli.TestbedCLI(None)
    assert seen["rawinput"] is False
