"""Traffic endpoints in a node on another server (mip6bench/testbed/remote_endpoints.py, the
serverd requests udp_recv_*, tcp_echo_*, probe_*): request validation (refused in one
line, nothing made), arrival times moved onto the controller's clock by the server's
offset, the handover's clock figures (offset, drift, uncertainty), and, as root, the
whole path through a helper served in this process (the same endpoint classes the
controller runs locally, their results through JSON)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from mip6bench.errors import Mip6benchError
from mip6bench.measure.probe import Flow, probe_flows
from mip6bench.testbed.remote_endpoints import RemoteNs, RemoteUdpReceiver, to_controller
from mip6bench.measure.streams import TcpEcho, UdpStream
from mip6bench.testbed.serverd import ClockOffset, ServerHelper

from .test_serverd import Out, ask, helper  # noqa: F401 (the fixture)


@pytest.fixture
def node():
    """A process standing for a node's shell (in this namespace): the helper records
    it, and ends it at its cleanup as it would a node's."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc.pid
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET6, kind) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- validation

def test_bad_endpoint_requests_are_one_line_and_make_nothing(helper, node):  # noqa: F811
    me = node
    helper.record.add_process(me, "node mn1")   # a node's shell it recorded (stands in)
    before = sorted(os.listdir(helper.dir))
    for rid, req in enumerate([
            {"op": "udp_recv_start", "key": "u", "pid": 4242424, "address": "::1", "port": 9000},
            {"op": "udp_recv_start", "key": "u", "pid": me, "address": "::1; rm -rf /", "port": 9000},
            {"op": "udp_recv_start", "key": "u", "pid": me, "address": "10.0.0.1", "port": 9000},
            {"op": "udp_recv_start", "key": "u", "pid": me, "address": "::1", "port": 70000},
            {"op": "udp_recv_start", "key": "../u", "pid": me, "address": "::1", "port": 9000},
            {"op": "udp_recv_start", "key": "u", "pid": me, "address": "::1"},
            {"op": "udp_recv_stop", "key": "nobody"},
            {"op": "tcp_echo_start", "key": "t", "pid": me, "address": "::1", "port": 0},
            {"op": "tcp_echo_stop", "key": "nobody"},
            {"op": "probe_open", "key": "p", "echoes": [], "senders": []},
            {"op": "probe_open", "key": "p", "echoes": [[0, me]], "senders": []},
            {"op": "probe_open", "key": "p", "echoes": [[0, 4242424, "::1"]], "senders": []},
            {"op": "probe_open", "key": "p", "echoes": [[0, me, "::1"], [0, me, "::1"]], "senders": []},
            {"op": "probe_open", "key": "p", "echoes": [[-1, me, "::1"]], "senders": []},
            {"op": "probe_open", "key": "p", "echoes": "all", "senders": []},
            {"op": "probe_start", "key": "nobody", "targets": {}, "count": 1, "interval": 0.1, "linger": 0},
            {"op": "probe_wait", "key": "nobody", "timeout": 1},
            {"op": "probe_close", "key": "nobody"}], start=1):
        reply = ask(helper, rid, **req)
        assert reply["ok"] is False and "\n" not in reply["error"] and "Traceback" not in reply["error"], reply
    assert helper.endpoints == {}
    assert sorted(os.listdir(helper.dir)) == before
    assert "not a node this helper recorded" in ask(helper, 50, "udp_recv_start", key="u", pid=4242424,
                                                    address="::1", port=9000)["error"]


# ----------------------------------------------------------------------------- clocks

class FakeHelper:
    """What RemoteUdpReceiver asks of a Helper: requests answered from a table, streams
    fed by the test; its server's clock is the controller's + offset."""

    host = "server2"

    def __init__(self, offset_ns: int, uncertainty_ns: int = 2_000_000):
        self.offset = ClockOffset(offset_ns, uncertainty_ns, 2 * uncertainty_ns, 8)
        self.sinks: dict = {}
        self.calls: list = []
        self.answers: dict = {}

    def on_stream(self, name, sink):
        self.sinks[name] = sink

    def to_local(self, t_remote: int) -> int:
        return t_remote - self.offset.offset_ns

    def request(self, op, reply_s=30.0, **args):
        self.calls.append((op, args))
        return self.answers.get(op, {})


def test_streamed_arrivals_come_onto_the_controllers_clock_and_the_outage_with_them():
    ms = 1_000_000
    offset = -37_747_800 * ms            # the VM server's clock, 37,747.8 s behind
    fake = FakeHelper(offset)
    stream = UdpStream.__new__(UdpStream)
    stream.receiver = RemoteUdpReceiver(RemoteNs(fake, 77, "mn1"), "2001:db8:1::100", 9000)
    stream.arrivals = stream.receiver.arrivals
    assert fake.calls == [("udp_recv_start", {"key": stream.receiver.key, "pid": 77,
                                              "address": "2001:db8:1::100", "port": 9000})]
    assert stream.receiver.clock == {"server": "server2", "offset_ns": offset, "uncertainty_ns": 2 * ms}
    # seq i sent at i x 100 ms (the controller's clock), arriving 10 ms later (the server's)
    stream.sent = [i * 100 * ms for i in range(11)]
    sink = fake.sinks[stream.receiver.key]
    sink([f"{i},{i * 100 * ms + 10 * ms + offset}" for i in (0, 1, 2)])
    sink([f"{i},{i * 100 * ms + 10 * ms + offset}" for i in (9, 10)] + ["torn", "1,2,3", "-1,5"])
    assert stream.arrivals == [(i, i * 100 * ms + 10 * ms) for i in (0, 1, 2, 9, 10)]
    assert stream.first_arrival_after(500 * ms, 0.1) == 910 * ms
    out = stream.outage(350 * ms)
    assert out["disruption_ms"] == 700.0 and out["lost_packets"] == 6
    fake.answers["udp_recv_stop"] = {"arrivals": 5, "kernel_stamps": 5}
    stream.receiver.stop(0.2)
    assert stream.kernel_stamps == 5 and fake.calls[-1][0] == "udp_recv_stop"
    fake.answers["udp_recv_stop"] = {"arrivals": 6, "kernel_stamps": 6}   # one never came back
    with pytest.raises(Mip6benchError, match="recorded 6 arrivals, 5 came back"):
        stream.receiver.stop(0.2)
    assert to_controller("3,1000", lambda t: t - 400) == (3, 600)
    assert to_controller("x,1", lambda t: t) is None


def test_the_handovers_clock_figures_carry_the_offsets_uncertainty_and_drift():
    import importlib.util
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from mip6bench import REPO_ROOT
    sys.path.insert(0, str(Path(REPO_ROOT) / "experiments"))
    spec = importlib.util.spec_from_file_location("handover_x", Path(REPO_ROOT) / "experiments" / "handover.py")
    handover = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handover)

    ms = 1_000_000
    fake = FakeHelper(5_000 * ms, uncertainty_ns=1 * ms)
    fake.hello = {"boot_id": "another machine"}
    # Its clock now runs 3 ms further ahead than when the offset was measured.
    fake.request = lambda op, reply_s=30.0, **a: {"t_ns": time.monotonic_ns() + 5_003 * ms}
    node = SimpleNamespace(helper=fake, pid=77)
    tb = SimpleNamespace(node=lambda name: node, node_ns=lambda name: RemoteNs(fake, 77, name))
    clock = handover.mn_clock(tb, "mn1")
    assert clock["server"] == "server2" and clock["offset_ns"] == 5_000 * ms and clock["endpoints"] == "helper"
    assert 2.9 * ms <= clock["drift_ns"] <= 3.1 * ms
    assert clock["uncertainty_ms"] >= 1.0 + clock["drift_ns"] / ms - 0.001
    assert handover.mn_clock(SimpleNamespace(node=lambda name: SimpleNamespace(pid=5)), "mn1") is None
    # With the helper's clock track, which followed that drift (measured 20 and 10 s ago),
    # the times were moved right: only the track's error now is added, not the drift.
    from mip6bench.testbed.serverd import ClockTrack
    now = time.monotonic_ns()
    fake.clock = ClockTrack(ClockOffset(5_000 * ms, 10_000, 20_000, 8, now - 20_000 * ms))
    fake.clock.add(ClockOffset(5_001_500_000, 10_000, 20_000, 8, now - 10_000 * ms))
    tracked = handover.mn_clock(tb, "mn1")
    assert 2.9 * ms <= tracked["drift_ns"] <= 3.1 * ms and tracked["track_error_ns"] < 0.1 * ms
    assert tracked["uncertainty_ms"] < 1.1
    metrics = {"handover": [], "tcp": {"echoed": 1, "sent": 1, "max_gap_ms": 1, "error": None},
               "tcp_survived": True, "udp": {"received": 1, "sent": 1, "rate": 1}, "mn_clock": clock}
    text = handover.summarize(metrics)
    assert "the MN runs on server2" in text and f"+- {clock['uncertainty_ms']:g} ms" in text


# ----------------------------------------------------------------------------- through a helper

root = pytest.mark.skipif(os.geteuid() != 0, reason="setns into a node's namespace needs root")


class LoopHelper:
    """A Helper whose server is a ServerHelper in this process: requests as JSON lines,
    replies and streams parsed back as the controller's reader does."""

    host = "loop"

    def __init__(self, server: ServerHelper):
        self.server, self.offset = server, ClockOffset(0, 0, 0, 1)
        self.sinks: dict = {}
        self.replies: dict = {}
        self.cond = threading.Condition()
        self.next = 0
        server._out = self

    def write(self, data: bytes) -> None:
        for line in data.decode().splitlines():
            msg = json.loads(line)
            if "stream" in msg:
                self.sinks[msg["stream"]](msg["lines"])
            else:
                with self.cond:
                    self.replies[msg["id"]] = msg
                    self.cond.notify_all()

    def flush(self) -> None:
        pass

    def to_local(self, t_remote: int) -> int:
        return t_remote   # one process, one clock

    def on_stream(self, name, sink):
        self.sinks[name] = sink

    def request(self, op, reply_s=30.0, **args):
        with self.cond:
            self.next += 1
            rid = self.next
        self.server.handle_line(json.dumps({"id": rid, "op": op, **args}).encode())
        with self.cond:
            assert self.cond.wait_for(lambda: rid in self.replies, reply_s)
            reply = self.replies.pop(rid)
        if not reply["ok"]:
            raise Mip6benchError(f"{op}: {reply['error']}")
        return reply["result"]


@root
def test_the_stream_the_echo_and_probes_through_a_helper(tmp_path, node):
    umask = os.umask(0o022)
    server = ServerHelper("test-endpoints", 2, out=Out(), root=tmp_path)
    try:
        server.record.add_process(node, "node mn1")
        loop = LoopHelper(server)
        there = RemoteNs(loop, node, "mn1")
        # UDP: sent here, received there (kernel timestamps), streamed back while it runs.
        stream = UdpStream(None, "::1", there, "::1", free_port(), rate=500).start()
        assert stream.first_arrival_after(time.monotonic_ns(), 5.0) is not None
        assert stream.receiver.wait_arrivals(50, 5.0)
        stream.stop(0.3)
        assert len(stream.sent) >= 50 and len(stream.arrivals) == len(stream.sent)
        assert stream.kernel_stamps == len(stream.arrivals)
        assert [seq for seq, _t in stream.arrivals] == list(range(len(stream.sent)))
        assert all(stream.sent[seq] < t < time.monotonic_ns() for seq, t in stream.arrivals)
        # TCP: the echo server there.
        echo = TcpEcho(None, "::1", there, "::1", free_port(socket.SOCK_STREAM), interval=0.005).start()
        assert echo.wait_echo(time.monotonic_ns(), 5.0) is not None
        result = echo.finish(5.0)
        assert echo.survived() and result.echoed == result.sent > 0
        # Probes: one flow from here to there, one from there to here, one there to there.
        flows = [Flow("out", None, "::1", there, "::1"), Flow("in", there, "::1", None, "::1"),
                 Flow("there", there, "::1", there, "::1")]
        results = probe_flows(flows, count=20, interval=0.002, linger=0.5)
        for r in results:
            assert (r.sent, r.delivered, r.answered) == (20, 20, 20), r
            assert len(r.rtts_ms) == 20 and all(0 <= x < 1000 for x in r.rtts_ms)
        assert server.endpoints == {}   # each closed when the controller was done with it
        # One left running is closed with the helper.
        loop.request("udp_recv_start", key="left", pid=node, address="::1", port=free_port())
        assert set(server.endpoints) == {"left"}
    finally:
        server.cleanup()
        os.umask(umask)
    assert server.endpoints == {}
