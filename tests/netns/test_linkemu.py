"""The user-space link relay between two real network namespaces (root).

Every namespace is named le-<random>-a/-b and removed in the fixture's teardown, even on
failure; every relay is our own child and is stopped by pid. Waits are on events (the
ready line, rtnetlink link events, the relay's own `wait` command that answers when its
counters say so), never fixed sleeps or polls.
"""
import ctypes
import gzip
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mip6bench.fdwait import wait_readable
from mip6bench.net.kernel import wait_for as kernel_wait_for
from mip6bench.net.linkemu import LinkEmuError, LinkParams, LinkRelay, netem_probe
from mip6bench.net.netns import in_netns

ADDR_A, ADDR_B = "fd1e::1", "fd1e::2"
PORT = 9999
_libc = ctypes.CDLL(None, use_errno=True)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def wait_link(ns: str, dev: str, want: bool | None, timeout: float, what: str) -> None:
    """Wait on rtnetlink link events in `ns` until dev's carrier is `want` (True/False)
    or dev is gone (None)."""
    def check(kernel) -> bool:
        for l in kernel.links():
            if l["name"] == dev:
                return want is not None and l["carrier"] == want
        return want is None

    try:
        ok = kernel_wait_for(ns, check, timeout)
    except OSError:  # the namespace itself is gone
        ok = want is None
    if not ok:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


def link(ns: str, dev: str) -> dict | None:
    r = run("ip", "-n", ns, "-j", "link", "show", "dev", dev, check=False)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


def carrier(ns: str, dev: str) -> bool | None:
    """Kernel's view: LOWER_UP when the carrier is on, NO-CARRIER when off."""
    info = link(ns, dev)
    if info is None:
        return None
    flags = info["flags"]
    assert ("LOWER_UP" in flags) != ("NO-CARRIER" in flags), flags
    return "LOWER_UP" in flags


def ns_socket(ns: str, family=socket.AF_INET6, kind=socket.SOCK_DGRAM) -> socket.socket:
    """A socket living in netns `ns` (setns in a short-lived thread; sockets keep the
    namespace they were created in)."""
    box = {}

    def make():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            box["sock"] = socket.socket(family, kind)
        except BaseException as exc:
            box["error"] = exc
        finally:
            os.close(fd)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["sock"]


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(2048))
    except BlockingIOError:
        return out


class Pair:
    """Two namespaces le-<rand>-a / le-<rand>-b and the relays started between them."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.a, self.b = f"le-{tag}-a", f"le-{tag}-b"
        self.relays: list[LinkRelay] = []
        self.procs: list[subprocess.Popen] = []
        self.if_a, self.if_b = f"a{tag}", f"b{tag}"

    def start(self, params=None, a_netns=None, **kw) -> LinkRelay:
        relay = LinkRelay.start(self.if_a, a_netns or self.a, self.if_b, self.b, params, **kw)
        self.relays.append(relay)
        return relay

    def configure(self, ready: dict) -> None:
        """Addresses without DAD and permanent neighbours (MACs from the ready line):
        no ND over a lossy or carrier-less link, so every measured packet is data."""
        run("ip", "-n", self.a, "addr", "add", f"{ADDR_A}/64", "dev", self.if_a, "nodad")
        run("ip", "-n", self.b, "addr", "add", f"{ADDR_B}/64", "dev", self.if_b, "nodad")
        run("ip", "-n", self.a, "neigh", "replace", ADDR_B, "lladdr", ready["b"]["mac"],
            "dev", self.if_a, "nud", "permanent")
        run("ip", "-n", self.b, "neigh", "replace", ADDR_A, "lladdr", ready["a"]["mac"],
            "dev", self.if_b, "nud", "permanent")

    def holder(self, ns: str) -> int:
        """A process sitting in `ns`, to address the namespace as pid:PID (Mininet style).
        Started from a thread inside ns, so it is born there: nothing to wait for."""
        p = in_netns(ns, lambda: subprocess.Popen([sys.executable, "-c",
                                                   "import signal; signal.pause()"]))
        self.procs.append(p)
        assert os.stat(f"/proc/{p.pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
        return p.pid

    def cleanup(self) -> None:
        for relay in self.relays:
            relay.stop(timeout=3)
        for p in self.procs:
            if p.poll() is None:
                p.kill()  # our own child, by pid
            p.wait()
        for ns in (self.a, self.b):
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def pair():
    p = Pair()
    try:
        run("ip", "netns", "add", p.a)
        run("ip", "netns", "add", p.b)
        yield p
    finally:
        p.cleanup()
    assert not [ns for ns in (p.a, p.b) if os.path.exists(f"/run/netns/{ns}")]


def ping_rtt(ns: str, dst: str, count: int) -> dict:
    """ping's summary, plus the median of its per-packet round trips: the delay the link
    adds, without the occasional late wake-up of a busy 2-core machine in the average."""
    r = run("ip", "netns", "exec", ns, "ping", "-6", "-n", "-c", str(count), "-i", "0.01",
            dst, check=False)
    m = re.search(r"(\d+) received.*?rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+)",
                  r.stdout, re.S)
    assert m, r.stdout + r.stderr
    times = sorted(float(t) for t in re.findall(r"time=([\d.]+) ms", r.stdout))
    return dict(received=int(m[1]), min=float(m[2]), avg=float(m[3]), max=float(m[4]),
                mdev=float(m[5]), median=times[len(times) // 2] if times else None)


# -- delay --------------------------------------------------------------------------


@pytest.mark.timing
def test_ping_rtt_matches_twice_the_one_way_delay(pair):
    relay = pair.start(LinkParams(delay_ms=10))
    assert relay.ready["ready"] is True and relay.ready["pid"] == relay.pid
    assert link(pair.a, pair.if_a) and link(pair.b, pair.if_b)
    pair.configure(relay.ready)
    rtt = ping_rtt(pair.a, ADDR_B, 50)
    print(f"\nRTT over 2 x 10 ms: {rtt}")
    assert rtt["received"] == 50
    assert rtt["min"] >= 20.0  # never early
    # The delay the relay adds is measured against the same relay with no delay (ping,
    # TAPs and the relay's own forwarding take ~0.3 ms a round trip on these machines).
    relay.set(delay_ms=0)
    base = ping_rtt(pair.a, ADDR_B, 30)["median"]
    print(f"RTT with no delay configured: median {base} ms")
    assert abs(rtt["median"] - base - 20.0) <= 0.05 * 20.0
    # Parameters change at run time.
    relay.set(delay_ms=5)
    rtt5 = ping_rtt(pair.a, ADDR_B, 30)
    print(f"RTT over 2 x 5 ms after `set`: {rtt5}")
    assert rtt5["min"] >= 10.0 and abs(rtt5["median"] - base - 10.0) <= 0.05 * 10.0
    relay.set("ab", delay_ms=15)  # asymmetric: 15 + 5
    rtt_asym = ping_rtt(pair.a, ADDR_B, 30)
    print(f"RTT over 15 ms + 5 ms: {rtt_asym}")
    assert rtt_asym["min"] >= 20.0 and abs(rtt_asym["median"] - base - 20.0) <= 0.05 * 20.0


# -- loss ---------------------------------------------------------------------------


def test_configured_loss_is_measured_within_binomial_tolerance(pair):
    relay = pair.start(LinkParams(), ab={"loss_pct": 20}, seed=11)
    pair.configure(relay.ready)
    tx, rx = ns_socket(pair.a), ns_socket(pair.b)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind((ADDR_B, PORT))
        n, block = 5000, 100
        base = relay.stats()["ab"]["rx"]
        for k in range(n // block):
            for i in range(block):
                tx.sendto(b"%d" % (k * block + i), (ADDR_B, PORT))
            # Pace on the relay's own counter so no frame is dropped in a TAP queue
            # before it reaches the emulated link: the relay answers once it has read
            # the block.
            relay.wait(f"ab-rx>={base + (k + 1) * block}", within=5)
        relay.wait("idle", within=5)                       # the queue has drained
        got = drain(rx)
        st = relay.stats()["ab"]
    finally:
        tx.close()
        rx.close()
    loss = 1 - len(got) / n
    tol = 4.5 * math.sqrt(0.2 * 0.8 / n)  # 4.5 sigma: +-2.5 points at n=5000
    print(f"\nloss configured 20 %, measured {100 * loss:.2f} % over {n} packets "
          f"(tolerance +-{100 * tol:.2f}); relay ab: {st}")
    assert abs(loss - 0.2) <= tol
    assert st["dropped_queue"] == 0 and st["write_errors"] == 0
    assert len(set(got)) == len(got)  # no duplicates
    # Every frame the relay passed on was delivered (tx also counts the odd MLD or
    # router solicitation the kernel sends on a new link).
    assert 0 <= st["tx"] - len(got) <= 10
    assert abs(st["dropped_loss"] - n * 0.2) <= 4.5 * math.sqrt(n * 0.16) + 5
    # The other direction is lossless.
    assert relay.stats()["ba"]["dropped_loss"] == 0


# -- carrier ------------------------------------------------------------------------


def test_carrier_off_stops_traffic_and_on_resumes_it(pair):
    # End A addressed Mininet-style, by the pid of a process in the namespace.
    relay = pair.start(LinkParams(delay_ms=1), a_netns=pair.holder(pair.a))
    pair.configure(relay.ready)
    assert carrier(pair.a, pair.if_a) is True and carrier(pair.b, pair.if_b) is True
    tx, rx = ns_socket(pair.a), ns_socket(pair.b)
    try:
        rx.bind((ADDR_B, PORT))
        rx.settimeout(2)
        tx.sendto(b"before", (ADDR_B, PORT))
        assert rx.recv(100) == b"before"

        t_off = relay.set_carrier(False)
        t0 = time.monotonic()
        wait_link(pair.a, pair.if_a, False, 3, "NO-CARRIER on A")
        wait_link(pair.b, pair.if_b, False, 3, "NO-CARRIER on B")
        print(f"\nNO-CARRIER visible on both sides {1000 * (time.monotonic() - t0):.1f} ms "
              f"after the command")
        assert relay.stats()["carrier"] == "off"
        before = relay.stats()
        for i in range(20):
            try:
                tx.sendto(b"off %d" % i, (ADDR_B, PORT))
            except OSError:
                pass  # ENOBUFS/ENETDOWN from a carrier-less device is fine
        during = relay.stats()  # still off: nothing may have been relayed
        assert during["ab"]["tx"] == before["ab"]["tx"]
        t_on = relay.set_carrier(True)  # drops what is still unread from the off period
        assert t_on > t_off
        wait_link(pair.a, pair.if_a, True, 3, "carrier back on A")
        wait_link(pair.b, pair.if_b, True, 3, "carrier back on B")

        # Traffic resumes: probe until a packet gets through (each probe waits on the
        # socket for 50 ms; a deadline bounds the whole).
        deadline = time.monotonic() + 3
        while True:
            tx.sendto(b"on", (ADDR_B, PORT))
            if wait_readable(rx, 0.05):
                break
            assert time.monotonic() < deadline, "no traffic after carrier on"
        got = drain(rx)
        assert got and set(got) == {b"on"}, got  # none of the 'off' packets leaked
    finally:
        tx.close()
        rx.close()
    # And the reverse direction works too.
    assert ping_rtt(pair.b, ADDR_A, 5)["received"] == 5


def test_start_with_carrier_off(pair):
    relay = pair.start(LinkParams(), carrier=False)
    assert relay.ready["carrier"] == "off"
    wait_link(pair.a, pair.if_a, False, 3, "NO-CARRIER on A from the start")
    wait_link(pair.b, pair.if_b, False, 3, "NO-CARRIER on B from the start")
    relay.set_carrier(True)
    wait_link(pair.a, pair.if_a, True, 3, "carrier on A")
    wait_link(pair.b, pair.if_b, True, 3, "carrier on B")


# -- lifetime -----------------------------------------------------------------------


def both_gone(pair) -> bool:
    return link(pair.a, pair.if_a) is None and link(pair.b, pair.if_b) is None


def wait_gone(pair) -> None:
    wait_link(pair.a, pair.if_a, None, 3, "A side to vanish")
    wait_link(pair.b, pair.if_b, None, 3, "B side to vanish")


def test_killing_the_relay_removes_both_interfaces(pair):
    relay = pair.start(LinkParams(delay_ms=1))
    assert not both_gone(pair)
    os.kill(relay.pid, signal.SIGKILL)
    relay.proc.wait(5)
    wait_gone(pair)


def test_stdin_eof_stops_the_relay_cleanly(pair):
    relay = pair.start(LinkParams(delay_ms=1))
    relay.proc.stdin.close()  # what happens when the parent dies
    assert relay.proc.wait(5) == 0
    wait_gone(pair)


def test_sigterm_stops_the_relay_cleanly(pair):
    relay = pair.start(LinkParams(delay_ms=1))
    relay.proc.terminate()
    assert relay.proc.wait(5) == 0
    wait_gone(pair)
    assert relay.stop() == 0


def test_deleting_a_namespace_stops_the_relay(pair):
    """The TAP fds are opened in the relay's namespace, so the relay does not pin the
    target namespaces: when one dies its TAP goes, and the relay removes the other."""
    relay = pair.start(LinkParams())
    run("ip", "netns", "del", pair.b)
    assert relay.proc.wait(5) == 1
    assert "disappeared" in relay.proc.stderr.read().decode()
    wait_link(pair.a, pair.if_a, None, 3, "A side to vanish")


def test_relay_in_its_own_namespace(pair):
    """NAME alone means the relay's own namespace (created in place, not moved)."""
    p = subprocess.Popen(["ip", "netns", "exec", pair.a, sys.executable, "-m",
                          "mip6bench.net.linkemu", "--a", pair.if_a, "--b",
                          f"{pair.if_b}@{pair.b}", "--delay-ms", "2"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pair.procs.append(p)
    ready = json.loads(p.stdout.readline())
    assert ready["ready"] and ready["a"]["netns"] is None
    assert link(pair.a, pair.if_a) and link(pair.b, pair.if_b)
    pair.configure(ready)
    assert ping_rtt(pair.a, ADDR_B, 5)["min"] >= 4.0
    p.stdin.close()
    assert p.wait(5) == 0
    wait_gone(pair)


# -- errors: one line naming the fix, non-zero exit, nothing touched -----------------


def cli(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "mip6bench.net.linkemu", *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def links(ns: str) -> set[str]:
    return {x["ifname"] for x in json.loads(run("ip", "-n", ns, "-j", "link").stdout)}


def assert_one_line_error(r, code: int, *words: str):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("linkemu: error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_unknown_namespace(pair):
    r = cli("--a", f"x@{pair.a}-missing", "--b", f"y@{pair.b}")
    assert_one_line_error(r, 1, "not found", "ip netns add")
    r = cli("--a", "x@pid:99999999", "--b", f"y@{pair.b}")
    assert_one_line_error(r, 1, "no process", "pid")
    r = cli("--a", "x@/etc/hostname", "--b", f"y@{pair.b}")
    assert_one_line_error(r, 1, "not a usable network namespace")
    assert links(pair.b) == {"lo"}


@pytest.mark.timing
def test_name_clash_touches_nothing(pair):
    run("ip", "-n", pair.a, "link", "add", "clash0", "type", "veth", "peer", "name", "clash1")
    r = cli("--a", f"clash0@{pair.a}", "--b", f"y0@{pair.b}")
    assert_one_line_error(r, 1, "already exists", "pick another name")
    assert links(pair.a) == {"lo", "clash0", "clash1"}
    assert links(pair.b) == {"lo"}
    assert not [x for x in links_root() if x.startswith("letap")]  # no temporary TAP left
    # Same name twice in one namespace.
    r = cli("--a", f"z0@{pair.b}", "--b", f"z0@{pair.b}")
    assert_one_line_error(r, 2, "different names")
    # Through the API: a clear, immediate error rather than a timeout.
    t0 = time.monotonic()
    with pytest.raises(LinkEmuError, match="already exists"):
        LinkRelay.start("clash0", pair.a, "y0", pair.b, timeout=10)
    assert time.monotonic() - t0 < 5


def links_root() -> set[str]:
    return {x["ifname"] for x in json.loads(run("ip", "-j", "link").stdout)}


def test_missing_dev_net_tun(pair):
    # A private mount namespace with an empty /dev/net: the host is not affected.
    r = cli("--a", f"x@{pair.a}", "--b", f"y@{pair.b}",
            prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs none /dev/net && exec "$@"', "sh"))
    assert_one_line_error(r, 1, "/dev/net/tun is missing", "modprobe tun")
    assert links(pair.a) == {"lo"} and links(pair.b) == {"lo"}


@pytest.mark.timing
def test_start_timeout_is_a_clear_error(pair, monkeypatch):
    # A "relay" that never becomes ready: the API kills it and says so.
    import mip6bench.net.linkemu.client as le
    monkeypatch.setattr(le, "relay_argv", lambda *a, **k: [sys.executable, "-c",
                                                          "import signal; signal.pause()"])
    t0 = time.monotonic()
    with pytest.raises(LinkEmuError, match="did not answer in time"):
        LinkRelay.start("x", pair.a, "y", pair.b, timeout=0.5)
    assert time.monotonic() - t0 < 3


# -- kernel backend -----------------------------------------------------------------


def kernel_config(option: str) -> str | None:
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            for line in f:
                if line.startswith(option + "=") or line.startswith(f"# {option} is not set"):
                    return line.strip()
    except OSError:
        return None
    return None


def test_netem_probe_matches_the_kernel():
    ok, reason = netem_probe()
    print(f"\nnetem_probe: {ok}, {reason}")
    cfg = kernel_config("CONFIG_NET_SCH_NETEM")
    if cfg is None:
        pytest.skip("no /proc/config.gz to compare with")
    assert ok == (not cfg.endswith("is not set")), (cfg, reason)
    if not ok:
        assert "qdisc" in reason.lower() or "netem" in reason.lower()


def test_many_relays_launch_in_parallel_and_stop_all(pair):
    relays = [LinkRelay.launch(f"p{i}", pair.a, f"q{i}", pair.b, LinkParams(delay_ms=1))
              for i in range(6)]
    pair.relays.extend(relays)
    for r in relays:
        assert r.wait_ready(10)["ready"]
    assert {f"p{i}" for i in range(6)} <= links(pair.a)
    assert {f"q{i}" for i in range(6)} <= links(pair.b)
    assert LinkRelay.stop_all(relays) == [0] * 6
    assert links(pair.a) == {"lo"} and links(pair.b) == {"lo"}
