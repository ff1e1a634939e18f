"""Cluster mode's per-server helper (mip6bench/testbed/serverd.py): its request
validation and replies, its own private directory, cleanup when its stdin ends, the
event-log streams, and the clock-offset estimator with injected clocks. No root: the
helper's record lives under a temporary directory; nothing here touches a namespace."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

import pytest

from mip6bench.testbed import serverd
from mip6bench.testbed.registry import process_start, wait_exit
from mip6bench.testbed.serverd import ClockOffset, ClockTrack, RequestError, ServerHelper, estimate_offset, parse_request


class Out:
    """The helper's stdout: every message it sends, parsed; wait_for(pred) blocks on a
    condition (the helper answers on its pool's threads)."""

    def __init__(self):
        self.messages: list[dict] = []
        self.cond = threading.Condition()

    def write(self, data: bytes) -> None:
        with self.cond:
            for line in data.decode().splitlines():
                self.messages.append(json.loads(line))
            self.cond.notify_all()

    def flush(self) -> None:
        pass

    def wait_for(self, pred, timeout: float = 10.0) -> dict:
        with self.cond:
            assert self.cond.wait_for(lambda: any(pred(m) for m in self.messages), timeout), self.messages
            return next(m for m in self.messages if pred(m))

    def reply(self, rid) -> dict:
        return self.wait_for(lambda m: m.get("id") == rid and "ok" in m)


@pytest.fixture
def helper(tmp_path):
    out = Out()
    umask = os.umask(0o022)   # the helper sets its own (0077): give the test's back after
    h = ServerHelper("test-run", 2, out=out, root=tmp_path)
    h.out = out
    yield h
    h.cleanup()
    os.umask(umask)


def ask(h: ServerHelper, rid: int, op: str, **args) -> dict:
    h.handle_line(json.dumps({"id": rid, "op": op, **args}).encode())
    return h.out.reply(rid)


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("line, error", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "a request is a JSON object"),
    (b'{"op": "clock"}', "integer id"),
    (b'{"id": true, "op": "clock"}', "integer id"),
])
def test_unreadable_requests_are_refused_without_an_id(line, error):
    with pytest.raises(RequestError, match=error):
        parse_request(line)


@pytest.mark.parametrize("request_, error", [
    ({"op": "rm -rf"}, "unknown op 'rm -rf'"),
    ({"op": "clock", "extra": 1}, "unknown field 'extra'"),
    ({"op": "sysctls", "pid": 5}, "missing field 'values'"),
    ({"op": "sysctls", "pid": "5", "values": {}}, "field 'pid' must be int"),
    ({"op": "sysctls", "pid": True, "values": {}}, "field 'pid' must be int"),
    ({"op": "sysctls", "pid": 1, "values": {}}, "pid 1 is not a node's"),
    ({"op": "agent_stop", "key": "../etc/passwd"}, "not a plain name"),
    ({"op": "hub_add", "a": "x", "a_pid": 9, "b": "y", "b_pid": 9, "params": {}, "carrier": "on"},
     "field 'carrier' must be bool"),
])
def test_bad_requests_get_their_id_and_a_reason(request_, error):
    with pytest.raises(serverd._Refused) as exc:
        parse_request(json.dumps({"id": 7, **request_}))
    assert exc.value.rid == 7 and error in str(exc.value) and "\n" not in str(exc.value)


def test_the_helper_answers_bad_input_with_an_error_line_and_keeps_going(helper):
    helper.handle_line(b"{{{")
    bad = helper.out.wait_for(lambda m: m.get("id") is None)
    assert bad["ok"] is False and "not JSON" in bad["error"]
    assert ask(helper, 1, "launch-missiles")["error"].startswith("unknown op")
    # refused before anything runs: no file, no record entry
    before = sorted(os.listdir(helper.dir))
    for rid, req in enumerate([
            {"op": "sysctls", "pid": os.getpid(), "values": {"kernel/core_pattern": "|/bin/sh"}},
            {"op": "kernel", "pid": os.getpid(), "calls": [["delete_everything", {}]]},
            {"op": "kernel", "pid": os.getpid(), "calls": "set_link"},
            {"op": "ip_batch", "pid": os.getpid(), "lines": ["route flush all"]},
            {"op": "wait", "pid": os.getpid(), "condition": "usable_address", "intf": "eth0; reboot",
             "timeout": 1},
            {"op": "wait", "pid": os.getpid(), "condition": "forever", "intf": "eth0", "timeout": 1},
            {"op": "agent_start", "key": "x", "pid": os.getpid(), "script": "/bin/sh", "config": {}},
            {"op": "agent_start", "key": "x", "pid": os.getpid(), "script": "agents/mn.py",
             "config": {"events": "@dir/../../etc/passwd"}},
            {"op": "hub_link", "link": 3, "command": "stats"},
            {"op": "agent_stop", "key": "nobody"},
            {"op": "rss", "pid": os.getpid()},   # not a process it recorded
            {"op": "capture_start", "key": "mn1", "pid": os.getpid(), "intfs": ["eth0 -w /etc/x"]},
            {"op": "capture_read", "key": "mn1", "offset": 0},
            {"op": "qdisc", "pid": os.getpid(), "intf": "eth0", "kind": "sfq", "params": {}},
            {"op": "qdisc", "pid": os.getpid(), "intf": "eth0", "kind": "netem", "params": {"delay_ms": -1}}],
            start=2):
        reply = ask(helper, rid, **req)
        assert reply["ok"] is False and "\n" not in reply["error"] and "Traceback" not in reply["error"], reply
    assert sorted(os.listdir(helper.dir)) == before
    assert all(r["kind"] != "process" for r in helper.record.resources())
    assert ask(helper, 99, "clock")["ok"] is True


def test_hello_clock_and_a_private_directory_per_server(helper, tmp_path):
    hello = ask(helper, 1, "hello")["result"]
    assert hello["protocol"] == serverd.PROTOCOL and hello["pid"] == os.getpid()
    assert hello["dir"] == str(tmp_path / "test-run-server2")
    mode = stat.S_IMODE(os.stat(hello["dir"]).st_mode)
    assert mode == 0o700
    for name in os.listdir(hello["dir"]):
        assert stat.S_IMODE(os.stat(os.path.join(hello["dir"], name)).st_mode) == 0o600, name
    other = ServerHelper("test-run", 3, out=Out(), root=tmp_path)
    try:
        assert other.dir != helper.dir
    finally:
        other.cleanup()
    t = ask(helper, 2, "clock")["result"]["t_ns"]
    assert isinstance(t, int) and t > 0


def test_stdin_eof_ends_what_it_recorded_and_removes_its_directory(helper):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        start = process_start(child.pid)
        assert ask(helper, 1, "track", pid=child.pid, what="node shell")["ok"]
        r, w = os.pipe()
        os.close(w)   # the controller vanished
        helper.serve(r)
        os.close(r)
        assert child.wait(10) is not None
        assert process_start(child.pid) != start
        assert not helper.dir.exists()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def test_shutdown_cleans_up_and_stops_serving(helper):
    r, w = os.pipe()
    os.write(w, b'{"id": 1, "op": "shutdown"}\n{"id": 2, "op": "clock"}\n')
    helper.serve(r)
    os.close(r)
    os.close(w)
    assert helper.out.reply(1)["ok"] is True
    assert not any(m.get("id") == 2 for m in helper.out.messages)
    assert not helper.dir.exists()


def test_streams_send_complete_lines_as_files_grow(helper):
    path = helper.dir / "mn1-mn.events.jsonl"
    path.write_text("")
    helper.streams.add(path.name)
    with open(path, "a") as f:
        f.write('{"t_ns": 1, "event": "a"}\n{"t_ns": 2, "ev')
    helper.out.wait_for(lambda m: m.get("stream") == path.name)
    with open(path, "a") as f:
        f.write('ent": "b"}\n')
    helper.out.wait_for(lambda m: m.get("stream") == path.name and m["lines"] == ['{"t_ns": 2, "event": "b"}'])
    got = [line for m in helper.out.messages if m.get("stream") == path.name for line in m["lines"]]
    assert got == ['{"t_ns": 1, "event": "a"}', '{"t_ns": 2, "event": "b"}']


def test_placed_paths_stay_in_the_helpers_directory(helper):
    placed = helper._place({"control": "@dir/mn1-mn.sock", "options": {"keep": "/etc/x",
                                                                       "list": ["@dir/k.key", 3]}})
    assert placed == {"control": f"{helper.dir}/mn1-mn.sock",
                      "options": {"keep": "/etc/x", "list": [f"{helper.dir}/k.key", 3]}}


def test_the_controller_writes_streamed_events_on_its_own_clock(tmp_path):
    h = serverd.Helper.__new__(serverd.Helper)
    serverd.Helper.__init__(h, type("S", (), {"servers": ["a", "b"]})(), 1, "r")
    h.clock = ClockTrack(ClockOffset(offset_ns=1_000, uncertainty_ns=5, rtt_ns=10, samples=4))
    h._stream("x.events.jsonl", ['{"t_ns":5000,"event":"early"}'])   # before its sink exists
    h.stream_to("x.events.jsonl", tmp_path / "x.jsonl")
    h._stream("x.events.jsonl", ['{"t_ns":7000,"event":"late"}', "torn"])
    for f in h._files:
        f.close()
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert [json.loads(line)["t_ns"] for line in lines[:2]] == [4000, 6000]
    assert lines[2] == "torn"


# ----------------------------------------------------------------------------- clock offset

def clocks(offset: int, delays: list[tuple[int, int]]):
    """A local clock and a server whose clock is local + offset; each request takes
    delays[i] = (out, back) ns on the way there and back."""
    now = [1_000_000]
    trips = iter(delays)

    def local() -> int:
        return now[0]

    def ask() -> int:
        out, back = next(trips)
        now[0] += out
        remote = now[0] + offset
        now[0] += back
        return remote

    return ask, local


def test_offset_from_the_sample_with_the_smallest_round_trip():
    ask, local = clocks(offset=-250_000, delays=[(900, 100), (40, 60), (5_000, 5_000), (300, 300)])
    est = estimate_offset(ask, local, samples=4)
    assert est.rtt_ns == 100 and est.uncertainty_ns == 50 and est.samples == 4
    assert est.offset_ns == -250_000 + 40 - 50   # the asymmetry of that trip, within rtt/2
    assert abs(est.offset_ns - (-250_000)) <= est.uncertainty_ns


def test_offset_exact_with_symmetric_trips_and_zero_on_one_clock():
    ask, local = clocks(offset=12_345_678, delays=[(700, 700), (200, 200)])
    est = estimate_offset(ask, local, samples=2)
    assert est.offset_ns == 12_345_678 and est.uncertainty_ns == 200
    ask, local = clocks(offset=0, delays=[(10, 990)])
    est = estimate_offset(ask, local, samples=1)
    assert abs(est.offset_ns) <= est.uncertainty_ns == 500
    assert est.as_dict() == {"offset_ns": est.offset_ns, "uncertainty_ns": 500, "rtt_ns": 1000, "samples": 1}
    assert est.at_ns == 1_000_000 + 500  # the controller's time at that round trip's midpoint
    with pytest.raises(ValueError):
        estimate_offset(ask, local, samples=0)


def test_drift_between_the_clocks_is_followed_not_frozen_at_start():
    """The server's clock runs 50 ppm fast: one offset from the start is 3 ms wrong a
    minute later; the track, measured every 10 s, converts within a few microseconds,
    and a measurement delayed by load (a long round trip) does not bend the line."""
    ppm, base = 50e-6, -37_747_800_000_000
    now = [10**12]

    def local() -> int:
        return now[0]

    def server_at(t: int) -> int:
        return t + base + round((t - 10**12) * ppm)

    trip = [(200, 200)]

    def ask() -> int:
        out, back = trip[0]
        now[0] += out
        remote = server_at(now[0])
        now[0] += back
        return remote

    track = ClockTrack(estimate_offset(ask, local, samples=4))
    for minute_tenth in range(1, 7):          # six more measurements, 10 s apart
        now[0] = 10**12 + minute_tenth * 10**10
        trip[0] = (200, 200) if minute_tenth != 3 else (40_000_000, 200)   # one delayed by load
        track.add(estimate_offset(ask, local, samples=1 if minute_tenth == 3 else 4))
    t = 10**12 + 65 * 10**9                  # 65 s after the start, 5 s past the last
    start_only = ClockTrack(track.measured[0])
    assert abs(start_only.to_local(server_at(t)) - t) > 3_000_000
    assert abs(track.to_local(server_at(t)) - t) < 5_000
    assert abs(track.to_remote(t) - server_at(t)) < 5_000
    d = track.as_dict()
    assert d["measurements"] == 7 and abs(d["drift_ppm"] - 50) < 0.1
    assert d["offset_ns"] == track.measured[0].offset_ns


def test_a_track_without_time_between_measurements_has_no_rate():
    first = ClockOffset(offset_ns=7_000, uncertainty_ns=50, rtt_ns=100, samples=8, at_ns=1_000)
    track = ClockTrack(first)
    track.add(ClockOffset(offset_ns=9_000, uncertainty_ns=60, rtt_ns=120, samples=8, at_ns=2_000))
    assert track.to_remote(10**12) == 10**12 + 7_000   # the better of the two, no slope
    assert track.as_dict()["drift_ppm"] is None
    # 30 s apart but each +-1 ms (an emulated server): a rate from them would be noise.
    noisy = ClockTrack(ClockOffset(offset_ns=0, uncertainty_ns=1_000_000, rtt_ns=2_000_000, samples=8, at_ns=0))
    noisy.add(ClockOffset(offset_ns=800_000, uncertainty_ns=1_100_000, rtt_ns=2_200_000, samples=8,
                          at_ns=30 * 10**9))
    assert noisy.offset_at(60 * 10**9) == 0 and noisy.as_dict()["drift_ppm"] is None


# ----------------------------------------------------------------------------- cpu_share

class _Started:
    """An agent the helper started (NodeProcess's interface as cleanup uses it)."""

    def __init__(self):
        self.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def stop(self, grace: float = 5.0):
        self.proc.kill()
        return self.proc.wait()


def test_cpu_share_is_applied_to_what_the_helper_started_and_to_nothing_else(helper):
    """The share the controller sent (here the processes' own nice, 5: no privilege
    needed) goes to an agent it started; a pid it did not start (the helper itself, a
    stranger) or a share that is not one refuses the whole request, in one line, before
    any process is changed."""
    from mip6bench.testbed import cpushare

    ours, stranger = _Started(), subprocess.Popen(["sleep", "60"], start_new_session=True)
    helper.agents["ar1-ra"] = ours
    share = cpushare.CpuShare("infra", "nice", 5, "sent by the controller").as_dict()
    try:
        for rid, req in enumerate([{"share": share, "pids": [ours.pid, stranger.pid]},
                                   {"share": share, "pids": [os.getpid()]},
                                   {"share": share, "pids": ["1"]},
                                   {"share": {**share, "infra_nice": -40}, "pids": [ours.pid]},
                                   {"share": {**share, "mechanism": "cgroup"}, "pids": [ours.pid]},
                                   {"share": share, "pids": [ours.pid], "hubs": "yes"}], start=1):
            reply = ask(helper, rid, "cpu_share", **req)
            assert reply["ok"] is False and "\n" not in reply["error"], reply
        assert f"pid {stranger.pid} is not an agent or link hub this helper started" in \
            ask(helper, 20, "cpu_share", share=share, pids=[stranger.pid])["error"]
        assert os.getpriority(os.PRIO_PROCESS, ours.pid) == 0
        assert os.getpriority(os.PRIO_PROCESS, stranger.pid) == 0
        reply = ask(helper, 30, "cpu_share", share=share, pids=[ours.pid], hubs=True)   # no hubs yet
        assert reply["ok"] is True, reply
        assert reply["result"] == {"processes": [{"process": "agent ar1-ra", "pid": ours.pid,
                                                  "done": f"nice 5 on {ours.pid}'s threads"}], "problems": []}
        assert os.getpriority(os.PRIO_PROCESS, ours.pid) == 5
        assert os.getpriority(os.PRIO_PROCESS, stranger.pid) == 0
        # fair: nothing to do, nothing done
        fair = cpushare.decide("fair", True, True).as_dict()
        assert ask(helper, 31, "cpu_share", share=fair, pids=[ours.pid])["result"]["processes"] == []
        # An agent that has ended is not one to renice any more (its pid may be reused).
        ours.stop()
        assert "is not an agent" in ask(helper, 32, "cpu_share", share=share, pids=[ours.pid])["error"]
    finally:
        stranger.kill()
        stranger.wait()
        ours.stop()


def test_hello_says_whether_the_server_groups_sessions(helper):
    from mip6bench.testbed import cpushare

    assert ask(helper, 1, "hello")["result"]["autogroup"] == cpushare.autogroup_enabled()


def test_cpu_idle_is_held_by_the_helper_until_it_ends(helper, tmp_path, monkeypatch):
    """Op cpu_idle: the helper holds the PM QoS request (here a stand-in file for the
    device), a new request replaces the one held, a bad setting is refused in one line
    and changes nothing, and the helper's end releases it."""
    import struct

    from mip6bench.net import cpuidle

    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(struct.pack("=i", 2000000000))
    monkeypatch.setattr(cpuidle, "DEVICE", str(device))

    def held_fds() -> list[int]:
        return [int(fd) for fd in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{fd}") == str(device)]

    for rid, req in enumerate([{"setting": "deep"}, {"setting": 0}, {}], start=1):
        reply = ask(helper, rid, "cpu_idle", **req)
        assert reply["ok"] is False and "\n" not in reply["error"], reply
    assert held_fds() == [] and helper.cpu_idle is None
    reply = ask(helper, 10, "cpu_idle", setting="poll")
    assert reply["ok"] is True and reply["result"]["held"] is True and reply["result"]["latency_us"] == 0
    assert cpuidle.current_limit_us() == 0 and len(held_fds()) == 1
    reply = ask(helper, 11, "cpu_idle", setting="sleep")   # replaces it: the request ends
    assert reply["ok"] is True and reply["result"]["held"] is False and held_fds() == []
    ask(helper, 12, "cpu_idle", setting="poll")
    assert len(held_fds()) == 1
    helper.cleanup()
    assert held_fds() == []
