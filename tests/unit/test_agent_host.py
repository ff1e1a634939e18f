"""The agent host (runtime/host.py) runs many agents in one process; one agent's fault
(a handler's exception, an exception in a loop callback, malformed input, a fatal
error, a failed start) never affects another. Runs without root (no namespaces)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mip6bench.errors import ParameterError
from mip6bench.runtime import control
from mip6bench.runtime.host import load_host_config
from mip6bench.testbed.process import read_line_until

HOST = Path(__file__).with_name("host_agents.py")


def host_config(tmp_path, names, options=None):
    agents = [{"node": n, "agent": "t", "control": str(tmp_path / f"{n}.sock"),
               "events": str(tmp_path / f"{n}.events.jsonl"), "options": (options or {}).get(n, {})}
              for n in names]
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"agents": agents}))
    return path


def start_host(tmp_path, names, options=None):
    proc = subprocess.Popen([sys.executable, str(HOST), "--config", str(host_config(tmp_path, names, options))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc


def ready_line(proc, timeout=30.0):
    line = read_line_until(proc.stdout, time.monotonic() + timeout, lambda l: l.startswith("{"), [])
    return json.loads(line) if line else None


def ask(tmp_path, name, cmd, **args):
    return control.request(str(tmp_path / f"{name}.sock"), cmd, **args)


def echo(port, data=b"ping"):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(data, ("::1", port))
        if data == b"crash":
            return None
        return s.recv(2048)


def test_one_agents_faults_leave_the_others_running(tmp_path):
    proc = start_host(tmp_path, ["a", "b", "c"])
    try:
        ready = ready_line(proc)
        assert ready["ready"] and [a["node"] for a in ready["agents"]] == ["a", "b", "c"]
        ports = {n: ask(tmp_path, n, "status")["port"] for n in "abc"}
        assert len({ask(tmp_path, n, "status")["pid"] for n in "abc"}) == 1   # one process
        # Malformed control input and a handler that raises: that request fails, nothing else.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(tmp_path / "a.sock"))
            s.sendall(b"{not json\n")
            assert b"not JSON" in s.recv(4096)
        with pytest.raises(control.ControlError):
            ask(tmp_path, "a", "boom")
        assert ask(tmp_path, "a", "callback-raises") == "scheduled"
        # Malformed datagram whose handler raises in the loop: a keeps serving.
        echo(ports["a"], b"crash")
        for n in "abc":
            assert echo(ports[n]) == b"ping"
            assert ask(tmp_path, n, "status")["node"] == n
        # A fatal error ends b alone: one line on the host's stderr, its socket gone.
        assert ask(tmp_path, "b", "die") == "dying"
        line = read_line_until(proc.stderr, time.monotonic() + 10, lambda l: "@b:" in l, [])
        assert line == "test agent t@b: error: asked to die"
        assert not (tmp_path / "b.sock").exists()
        for n in "ac":
            assert echo(ports[n]) == b"ping"
            assert ask(tmp_path, n, "status")["counters"]["echoed"] >= 1
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0
    for n in "ac":   # each stopped cleanly, its control socket removed
        events = [json.loads(l)["event"] for l in (tmp_path / f"{n}.events.jsonl").read_text().splitlines()]
        assert events[-2:] == ["agent.stopping", "agent.stopped"]
        assert not (tmp_path / f"{n}.sock").exists()
    assert "Traceback" not in proc.stderr.read().decode()


def test_an_agent_that_cannot_start_fails_the_host_and_stops_the_others(tmp_path):
    proc = start_host(tmp_path, ["a", "b", "c"], {"b": {"fail_start": True}})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == b""
    assert err.decode().strip().splitlines() == ["test agent t@b: error: RuntimeError: refusing to start"]
    assert not list(tmp_path.glob("*.sock"))


def test_a_bad_option_is_a_config_error(tmp_path):
    proc = start_host(tmp_path, ["a", "b"], {"a": {"no_such_option": 1}})
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("test agent t@a: config error: unknown options")


@pytest.mark.parametrize("text, message", [
    ("[]", "'agents' must be a non-empty list"),
    ('{"agents": []}', "'agents' must be a non-empty list"),
    ('{"agents": [{"node": "a", "agent": "t"}]}', "'control' must be a non-empty string"),
    ('{"agents": [{"node": "a", "agent": "t", "control": "/x", "color": 1}]}', "unknown keys ['color']"),
    ('{"agents": [{"node": "a", "agent": "t", "control": "/x"}, {"node": "b", "agent": "t", "control": "/x"}]}',
     "control socket /x used twice"),
    ('{"agents": [{"node": "a", "agent": "t", "control": "/x", "netns": 5}]}', "'netns' must be a path"),
])
def test_host_config_is_checked(tmp_path, text, message):
    path = tmp_path / "h.json"
    path.write_text(text)
    with pytest.raises(ParameterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_host_config(str(path))
