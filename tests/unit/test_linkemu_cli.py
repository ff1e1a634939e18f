"""Link emulator glue that needs no root: command line, control commands, the relay
loop over socketpairs standing in for TAPs, and the netem command builder."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from mip6bench.errors import ParameterError
from mip6bench.net import linkemu
from mip6bench.net.linkemu import (Endpoint, LinkParams, Relay, build_parser, netem_clear_commands,
                                   netem_commands, params_from_args, relay_argv)
from mip6bench.net.shaping import Shaper

MS = 1_000_000


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mip6bench.net.linkemu", *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


# -- command line validation (fails before touching anything) ------------------------


@pytest.mark.parametrize("extra, word", [
    (["--delay-ms", "-1"], "delay_ms"),
    (["--loss-pct", "101"], "loss_pct"),
    (["--jitter-ms", "abc"], "jitter-ms"),
    (["--limit", "0"], "limit"),
    (["--ba-loss-pct", "200"], "loss_pct"),
    (["--rate-mbit", "nan"], "rate_mbit"),
    (["--distribution", "pareto"], "distribution"),
    (["--bogus"], "unrecognized"),
])
def test_cli_rejects_bad_values_with_one_line_and_exit_2(extra, word):
    r = run_cli("--a", "x@le-none-a", "--b", "y@le-none-b", *extra)
    assert r.returncode == 2
    assert r.stdout == ""  # no ready line
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("linkemu: error:")
    assert word in lines[0]
    assert "(" in lines[0]  # the fix, in parentheses


@pytest.mark.parametrize("spec", ["toolongname12345@ns", "a/b@ns", "x@", "@ns", "x y@ns",
                                  "x@pid:12ab", "x@../etc", "eth%d@ns"])
def test_cli_rejects_bad_endpoints(spec):
    r = run_cli("--a", spec, "--b", "y@le-none-b")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def test_cli_missing_endpoint():
    r = run_cli("--a", "x@ns")
    assert r.returncode == 2 and "--b" in r.stderr and r.stderr.count("\n") == 1


# -- endpoints ----------------------------------------------------------------------


def test_endpoint_forms():
    assert Endpoint.parse("h1-eth0@pid:1234").path == "/proc/1234/ns/net"
    assert Endpoint.parse("h1-eth0@le-x-a").path == "/var/run/netns/le-x-a"
    assert Endpoint.parse("h1-eth0@/proc/1/ns/net").path == "/proc/1/ns/net"
    own = Endpoint.parse("h1-eth0")
    assert own.path is None and own.spec() == "h1-eth0"
    assert Endpoint.parse("a.b-c_d@x").spec() == "a.b-c_d@x"


# -- API argv <-> CLI round trip ----------------------------------------------------


def test_relay_argv_round_trips_through_the_parser():
    argv = relay_argv("h1-eth0", 1234, "r1-eth0", "le-x-b",
                      LinkParams(delay_ms=10, jitter_ms=1.5, loss_pct=0.5, rate_mbit=100,
                                 limit=500, distribution="normal"),
                      ab={"loss_pct": 20}, ba={"delay_ms": 3}, seed=7, carrier=False, up=False)
    assert argv[1:3] == ["-m", "mip6bench.net.linkemu"]
    args = build_parser().parse_args(argv[3:])
    assert (args.a, args.b, args.seed, args.carrier, args.up) == (
        "h1-eth0@pid:1234", "r1-eth0@le-x-b", 7, "off", False)
    ab, ba = params_from_args(args)
    base = dict(jitter_ms=1.5, rate_mbit=100, limit=500, distribution="normal")
    assert ab == LinkParams(delay_ms=10, loss_pct=20, **base)
    assert ba == LinkParams(delay_ms=3, loss_pct=0.5, **base)


def test_relay_argv_validates_in_the_caller():
    with pytest.raises(ParameterError):
        relay_argv("a", None, "b", None, {"delay_ms": -3})
    with pytest.raises(ParameterError):
        relay_argv("a", None, "b", None, ab={"loss_pct": 101})
    with pytest.raises(ParameterError):
        relay_argv("a", None, "b", None, ab={"dleay_ms": 1})
    with pytest.raises(ParameterError):
        relay_argv("a" * 16, None, "b", None)


# -- control commands (no I/O) ------------------------------------------------------


def make_relay(**kw) -> Relay:
    return Relay(-1, -1, Shaper(LinkParams(**kw), 1, "ab"), Shaper(LinkParams(**kw), 1, "ba"),
                 ctl_fd=None)


def test_set_command_both_and_one_direction():
    r = make_relay(delay_ms=10)
    reply = r.command("set delay-ms=5 ab-loss-pct=20 ba_rate_mbit=1.5")
    assert reply["ok"]
    assert r.ab.params == LinkParams(delay_ms=5, loss_pct=20)
    assert r.ba.params == LinkParams(delay_ms=5, rate_mbit=1.5)


def test_set_command_is_atomic_on_error():
    r = make_relay(delay_ms=10)
    for bad in ("set delay-ms=1 loss-pct=150", "set delay-ms=x", "set colour=red",
                "set delay-ms", "set ab-limit=0"):
        reply = r.command(bad)
        assert reply["ok"] is False and reply["error"], bad
    assert r.ab.params == r.ba.params == LinkParams(delay_ms=10)


def test_stats_and_unknown_commands():
    r = make_relay()
    r.ab.offer(0, b"x")
    s = r.command("stats")
    assert s["ok"] and s["carrier"] == "on"
    assert s["ab"]["rx"] == 1 and s["ab"]["queued"] == 1 and s["ba"]["rx"] == 0
    assert s["ab"]["params"]["limit"] == 1000
    json.dumps(s)
    assert r.command("   ") is None
    assert r.command("carrier sideways")["ok"] is False
    assert r.command("launch")["ok"] is False


def test_wait_command_answers_when_true_and_keeps_order():
    out_r, out_w = os.pipe()
    try:
        r = Relay(-1, -1, Shaper(LinkParams(), 1, "ab"), Shaper(LinkParams(), 1, "ba"),
                  ctl_fd=None, out_fd=out_w)
        # Already true: answered at once, with both directions' counters.
        now = r.command("wait idle")
        assert now["ok"] and now["wait"] == "idle" and now["ab"]["queued"] == 0
        # Not yet true: pending; later commands wait behind it, in order.
        r._handle_line("wait ab-rx>=2 within=5")
        r._handle_line("stats")
        assert r._waiting is not None and r._backlog == ["stats"]
        r.ab.offer(0, b"x")
        r.poll_wait(time.monotonic_ns())
        assert r._waiting is not None                  # rx is 1
        r.ab.offer(0, b"y")
        r.poll_wait(time.monotonic_ns())
        first, second = os.read(out_r, 65536).decode().splitlines()
        assert json.loads(first)["ok"] and json.loads(first)["ab"]["rx"] == 2
        assert json.loads(second)["ab"]["rx"] == 2 and "params" in json.loads(second)["ab"]
        # A condition that does not come true fails at its deadline.
        r._handle_line("wait ba-tx==5 within=0.5")
        r.poll_wait(r.wait_deadline())
        failed = json.loads(os.read(out_r, 65536))
        assert failed["ok"] is False and "not true in time" in failed["error"]
        assert r._waiting is None
        for bad in ("wait", "wait ab-colour>=1", "wait xy-rx>=1", "wait ab-rx>1",
                    "wait ab-rx>=x", "wait idle within=-1", "wait idle ab-rx>=1"):
            reply = r.command(bad)
            assert reply["ok"] is False and reply["error"], bad
    finally:
        os.close(out_r)
        os.close(out_w)


# -- the relay loop, with datagram socketpairs standing in for the TAPs --------------


class LoopHarness:
    """Relay.run() in a thread; A/B 'wires' are AF_UNIX datagram socketpairs (one
    datagram = one frame, like a TAP fd), control over a pipe."""

    def __init__(self, **params):
        self.a_far, a_near = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.b_far, b_near = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._keep = (a_near, b_near)
        for s in (a_near, b_near):
            s.setblocking(False)
        ctl_r, self.ctl_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.relay = Relay(a_near.fileno(), b_near.fileno(),
                           Shaper(LinkParams(**params), 1, "ab"),
                           Shaper(LinkParams(**params), 1, "ba"), ctl_fd=ctl_r, out_fd=out_w)
        self._fds = (ctl_r, out_w)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.relay.run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def request(self, line: str) -> dict:
        os.write(self.ctl_w, line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            buf += os.read(self.out_r, 65536)
        return json.loads(buf)

    def close(self):
        os.close(self.ctl_w)  # EOF: the loop must return
        self.thread.join(5)
        alive = self.thread.is_alive()
        for fd in (*self._fds, self.out_r):
            os.close(fd)
        for s in (self.a_far, self.b_far, *self._keep):
            s.close()
        assert not alive, "relay loop did not stop on EOF"
        assert self.error is None, self.error


def test_loop_delays_both_directions_and_stops_on_eof():
    h = LoopHarness(delay_ms=20)
    try:
        h.b_far.settimeout(2)
        h.a_far.settimeout(2)
        t0 = time.monotonic_ns()
        h.a_far.send(b"A->B frame")
        assert h.b_far.recv(100) == b"A->B frame"
        t1 = time.monotonic_ns()
        h.b_far.send(b"B->A frame")
        assert h.a_far.recv(100) == b"B->A frame"
        t2 = time.monotonic_ns()
        assert 20 * MS <= t1 - t0 < 60 * MS  # never early; late only by scheduling
        assert 20 * MS <= t2 - t1 < 60 * MS
        s = h.request("stats")
        assert (s["ab"]["rx"], s["ab"]["tx"], s["ba"]["rx"], s["ba"]["tx"]) == (1, 1, 1, 1)
    finally:
        h.close()


def test_loop_keeps_order_and_applies_set_at_run_time():
    BLOCK = 100  # > BATCH: the relay reads each block in several batches
    h = LoopHarness()
    try:
        h.b_far.settimeout(2)
        # In blocks of BLOCK frames, each read back before the next is sent: B's socket
        # holds only ~278 small datagrams (its send buffer), and the relay's write of one
        # more fails with EAGAIN and is dropped (counted in write_errors), as a TAP drops
        # what its kernel cannot take. With all 300 in flight at once the test failed
        # whenever its thread was descheduled long enough for the relay to move them all.
        got = []
        for start in range(0, 300, BLOCK):
            for i in range(start, start + BLOCK):
                h.a_far.send(i.to_bytes(2, "big"))
            got += [int.from_bytes(h.b_far.recv(10), "big") for _ in range(BLOCK)]
        assert got == list(range(300))
        assert h.request("set ab-loss-pct=100")["ab"]["loss_pct"] == 100
        h.a_far.send(b"lost")
        h.b_far.send(b"still flows")
        h.a_far.settimeout(2)
        assert h.a_far.recv(100) == b"still flows"
        s = h.request("stats")
        assert s["ab"]["dropped_loss"] == 1 and s["ab"]["tx"] == 300
        assert s["ab"]["write_errors"] == 0
    finally:
        h.close()


def test_loop_answers_wait_when_frames_have_passed():
    h = LoopHarness(delay_ms=5)
    try:
        h.b_far.settimeout(2)
        for i in range(50):
            h.a_far.send(i.to_bytes(2, "big"))
        done = h.request("wait ab-tx>=50 within=5")   # blocks in the relay, not here
        assert done["ok"] and done["ab"]["tx"] == 50
        assert h.request("wait idle within=1")["ab"]["queued"] == 0
        assert h.request("wait ba-rx>=1 within=0.05")["ok"] is False
        assert h.request("stats")["ok"]                 # still serving
    finally:
        h.close()


def test_loop_reports_failed_carrier_ioctl_without_dying():
    h = LoopHarness()
    try:
        reply = h.request("carrier off")  # sockets are not TAPs: the ioctl fails
        assert reply["ok"] is False and "carrier" in reply["error"]
        assert h.request("stats")["ok"]
    finally:
        h.close()


# -- netem command builder ----------------------------------------------------------


def test_netem_commands_full():
    p = LinkParams(delay_ms=10, jitter_ms=2.5, loss_pct=0.25, rate_mbit=100, limit=500,
                   distribution="normal")
    assert netem_commands("h1-eth0", p) == [[
        "tc", "qdisc", "replace", "dev", "h1-eth0", "root", "netem", "limit", "500",
        "delay", "10000us", "2500us", "distribution", "normal", "loss", "random", "0.25%",
        "rate", "100000000bit"]]


def test_netem_commands_minimal_and_namespaces():
    assert netem_commands("x", {}) == [
        ["tc", "qdisc", "replace", "dev", "x", "root", "netem", "limit", "1000"]]
    # Uniform jitter is netem's default: no distribution table is named.
    assert netem_commands("x", {"delay_ms": 5, "jitter_ms": 1}, netns="le-x")[0] == [
        "tc", "-n", "le-x", "qdisc", "replace", "dev", "x", "root", "netem", "limit", "1000",
        "delay", "5000us", "1000us"]
    assert netem_commands("x", {"loss_pct": 20}, netns=4242)[0][:6] == [
        "nsenter", "-t", "4242", "-n", "tc", "qdisc"]
    assert netem_clear_commands("x", netns="le-x") == [
        ["tc", "-n", "le-x", "qdisc", "del", "dev", "x", "root"]]
    with pytest.raises(ParameterError):
        netem_commands("x", {"loss_pct": -1})


def test_import_stays_light():
    # The relay's cold start matters (one process per link): no pyroute2, no scapy,
    # no subprocess/threading until the API is used.
    code = ("import sys, mip6bench.net.linkemu; "
            "print(sorted(m for m in ('scapy', 'pyroute2', 'subprocess', 'threading', "
            "'dataclasses', 'inspect', 'typing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    assert linkemu.READ_SIZE < 128 * 1024
