"""The link hub's multiplexing core (no root): many links over datagram socketpairs
standing in for TAPs, one loop, per-link shaping, carrier, waits and deletion."""
import json
import os
import socket
import threading
import time

import pytest

from mip6bench.fdwait import wait_readable
from mip6bench.net.linkhub import Hub
from mip6bench.net.shaping import LinkParams, Shaper

MS = 1_000_000


class Harness:
    """Hub.run() in a thread; links over AF_UNIX datagram socketpairs."""

    def __init__(self):
        ctl_r, self.ctl_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.closed: list[int] = []
        self.hub = Hub(ctl_fd=ctl_r, out_fd=out_w, closer=self._close)
        self._fds = [ctl_r, out_w]
        self.socks: list[socket.socket] = []
        self._buf = b""
        self._replies: dict[str, dict] = {}
        self.events: list[dict] = []
        self._req = 0
        self.error = None
        self.thread = None

    def _close(self, fd):
        self.closed.append(fd)
        os.close(fd)

    def link(self, seed=1, label="l", carrier=True, **params):
        """A link: returns (link id, far end A, far end B). Before start() only."""
        a_far, a_near = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        b_far, b_near = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (a_near, b_near):
            s.setblocking(False)
        for s in (a_far, b_far):
            s.settimeout(10)
        self.socks += [a_far, b_far]
        # The hub owns (and closes) the near ends' descriptors.
        lid = self.hub.attach(a_near.detach(), b_near.detach(),
                              Shaper(LinkParams(**params), seed, label + "/ab"),
                              Shaper(LinkParams(**params), seed, label + "/ba"), carrier=carrier)
        return lid, a_far, b_far

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        try:
            self.hub.run()
        except BaseException as exc:
            self.error = exc

    def send(self, text: str) -> str:
        self._req += 1
        req = f"r{self._req}"
        os.write(self.ctl_w, f"{req} {text}\n".encode())
        return req

    def reply(self, req: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while req not in self._replies:
            left = deadline - time.monotonic()
            assert left > 0 and wait_readable(self.out_r, left), f"no reply to {req}"
            chunk = os.read(self.out_r, 65536)
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for raw in lines:
                msg = json.loads(raw)
                if "req" in msg:
                    self._replies[msg["req"]] = msg
                else:
                    self.events.append(msg)
        return self._replies.pop(req)

    def request(self, text: str) -> dict:
        return self.reply(self.send(text))

    def close(self):
        os.close(self.ctl_w)
        self.thread.join(5)
        alive = self.thread.is_alive()
        self.hub.close()
        for fd in self._fds + [self.out_r]:
            os.close(fd)
        for s in self.socks:
            s.close()
        assert not alive, "hub loop did not stop on EOF"
        assert self.error is None, self.error


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    if harness.thread is not None:
        harness.close()


def test_each_link_keeps_its_own_delay(h):
    links = [h.link(delay_ms=d, label=f"l{d}") for d in (5, 20, 40)]
    h.start()
    t0 = time.monotonic_ns()
    for lid, a, _b in links:
        a.send(f"from {lid}".encode())
    arrivals = {}
    for (lid, _a, b), d in zip(links, (5, 20, 40)):
        assert b.recv(100) == f"from {lid}".encode()
        arrivals[d] = (time.monotonic_ns() - t0) / MS
    for d, ms in arrivals.items():
        assert ms >= d, arrivals  # never early
    assert arrivals[5] < arrivals[20] < arrivals[40]
    # both directions of one link
    lid, a, b = links[0]
    b.send(b"back")
    assert a.recv(100) == b"back"
    st = h.request(f"{lid} stats")
    assert st["ab"]["tx"] == 1 and st["ba"]["tx"] == 1
    assert h.request(f"{links[1][0]} stats")["ba"]["rx"] == 0


def test_loss_per_link_is_the_single_relays_sequence(h):
    """Same seed and label as the single-link relay: the same frames are lost (the hub
    changes how links are served, not what they do), and links do not share streams."""
    lossy, a1, b1 = h.link(seed=7, label="x>y", loss_pct=30)
    clean, a2, b2 = h.link(seed=7, label="p>q")
    h.start()
    n = 300
    for i in range(n):
        a1.send(i.to_bytes(2, "big"))
        a2.send(i.to_bytes(2, "big"))
        if i % 50 == 49:  # pace: stay below the socket buffer
            h.request(f"{lossy} wait ab-rx>={i + 1} within=5")
            h.request(f"{clean} wait ab-rx>={i + 1} within=5")
    h.request(f"{lossy} wait ab-rx>={n} within=5")
    h.request(f"{lossy} wait idle within=5")
    h.request(f"{clean} wait idle within=5")
    reference = Shaper(LinkParams(loss_pct=30), 7, "x>y/ab")
    expected = [i for i in range(n) if reference.offer(0, b"x") is not None]
    b1.setblocking(False)
    got = []
    try:
        while True:
            got.append(int.from_bytes(b1.recv(10), "big"))
    except BlockingIOError:
        pass
    assert got == expected
    assert 0.2 < 1 - len(got) / n < 0.4
    st = h.request(f"{clean} stats")["ab"]
    assert st["tx"] == n and st["dropped_loss"] == 0


def test_carrier_off_on_one_link_leaves_the_others_alone(h, monkeypatch):
    # TUNSETCARRIER is for TAPs (tests/netns/test_linkhub.py); socketpairs record it.
    from mip6bench.net.linkemu import relay
    ioctls = []
    monkeypatch.setattr(relay, "_ioctl_int", lambda fd, req, v: ioctls.append((fd, v)))
    cut, a1, b1 = h.link(delay_ms=30, label="cut")
    keep, a2, b2 = h.link(delay_ms=30, label="keep")
    h.start()
    a1.send(b"in flight")
    a2.send(b"in flight too")
    h.request(f"{cut} wait ab-queued==1 within=2")
    h.request(f"{keep} wait ab-queued==1 within=2")
    assert h.request(f"{cut} carrier off")["carrier"] == "off"
    assert b2.recv(100) == b"in flight too"
    a1.send(b"while off")
    h.request(f"{cut} wait ab-dropped_carrier>=2 within=2")
    assert h.request(f"{cut} carrier on")["ok"]
    a1.send(b"after")
    assert b1.recv(100) == b"after"  # the flushed frame's stale timer did not matter
    assert [v for _fd, v in ioctls] == [0, 0, 1, 1]  # both TAPs of that link only
    st = h.request(f"{cut} stats")
    assert st["ab"]["dropped_carrier"] == 2 and st["ab"]["tx"] == 1
    assert h.request(f"{keep} stats")["ab"]["dropped_carrier"] == 0


def test_a_pending_wait_blocks_only_its_own_reply(h):
    lid, a, _b = h.link(label="w")
    other, _a2, _b2 = h.link(label="o")
    h.start()
    waiting = h.send(f"{lid} wait ab-rx>=1 within=5")
    assert h.request(f"{other} stats")["ok"]        # answered while the wait is pending
    assert h.request(f"{lid} stats")["ab"]["rx"] == 0
    a.send(b"go")
    assert h.reply(waiting)["ok"]
    late = h.request(f"{lid} wait ab-rx>=5 within=0.05")
    assert late["ok"] is False and "not true in time" in late["error"]


def test_delete_closes_the_links_fds_and_fails_its_waits(h):
    lid, _a, _b = h.link(label="d")
    keep, a2, b2 = h.link(label="k")
    h.start()
    pending = h.send(f"{lid} wait ab-rx>=1 within=5")
    assert h.request(f"{lid} del")["link"] == lid
    assert h.reply(pending)["ok"] is False
    assert len(h.closed) == 2
    assert h.request(f"{lid} stats")["ok"] is False  # gone
    assert h.request("links")["links"] == 1
    a2.send(b"still here")
    assert b2.recv(100) == b"still here"


def test_timer_heap_holds_at_most_one_live_entry_per_direction(h):
    # 3 s of delay: every frame is still queued when the heap is looked at, however
    # slowly a loaded machine runs this test.
    links = [h.link(delay_ms=3000, label=f"m{i}") for i in range(100)]
    h.start()
    for lid, a, _b in links:
        for k in range(5):
            a.send(bytes([k]))
    for lid, _a, _b in links:
        h.request(f"{lid} wait ab-rx>=5 within=5")
    live = [e for e in list(h.hub.heap) if e[2].scheduled == e[0]]
    assert len(live) == 100  # 500 queued frames, one timer per direction
    for lid, _a, b in links:
        assert [b.recv(10) for _ in range(5)] == [bytes([k]) for k in range(5)]


@pytest.mark.parametrize("line, word", [
    ("r1", "empty request"),
    ("r2 99 stats", "no link"),
    ("r3 x stats", "no link"),
    ("r4 1 bogus", "unknown command"),
    ("r5 1 set delay-ms=-1", "delay_ms"),
    ("r6 1 wait nonsense", "bad wait condition"),
    ("r7 add --a x --b y", "cannot create links"),
])
def test_bad_requests_are_answered_not_fatal(h, line, word):
    h.link(label="z")
    h.start()
    os.write(h.ctl_w, (line + "\n").encode())
    reply = h.reply(line.split()[0])
    assert reply["ok"] is False and word in reply["error"]
    assert h.request("links")["links"] == 1  # still serving


class _CountingEpoll:
    """The hub's epoll set, with its non-blocking polls counted."""

    def __init__(self, ep):
        self.ep, self.polls = ep, 0

    def poll(self, timeout, maxevents):
        self.polls += 1
        return self.ep.poll(timeout, maxevents)

    def __getattr__(self, name):
        return getattr(self.ep, name)


def _one_link_hub(early: int):
    """A hub (control and output on pipes, polls counted) with one 1 ms link between two
    datagram socketpairs; returns hub, link id, the counting epoll, the four pipe fds
    and the link's two far ends."""
    ctl_r, ctl_w = os.pipe()
    out_r, out_w = os.pipe()
    hub = Hub(ctl_fd=ctl_r, out_fd=out_w, early=early)
    a_far, a_near = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b_far, b_near = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a_near, b_near):
        s.setblocking(False)
    lid = hub.attach(a_near.detach(), b_near.detach(), Shaper(LinkParams(delay_ms=1), 1, "x/ab"),
                     Shaper(LinkParams(delay_ms=1), 1, "x/ba"))
    hub.ep = counting = _CountingEpoll(hub.ep)
    return hub, lid, counting, (ctl_r, ctl_w, out_r, out_w), (a_far, b_far)


def _close_hub(hub, fds, socks) -> None:
    hub.close()
    for fd in fds:
        os.close(fd)
    for s in socks:
        s.close()


def test_delay_runs_from_the_wakeup_stamp_and_a_timer_wakeup_goes_straight_to_the_writes(monkeypatch):
    """Injected clock and select: a frame found readable at t0 leaves at t0 + delay, and
    the wakeup that ends the hub's wait for it (select's timeout, nothing readable) does
    no epoll_wait and no reads ahead of the write; a wakeup past the departure sends at
    once, its lateness counted. Without a kernel receive time on a TAP read, t0 is the
    time read just after the wakeup that found the frame. (Without the early wake-up:
    early=0; the next test has it.)"""
    import select as select_module

    import mip6bench.net.linkhub as linkhub

    hub, lid, counting, (ctl_r, ctl_w, out_r, out_w), (a_far, b_far) = _one_link_hub(early=0)
    t0 = 5_000 * MS
    clock = [t0]
    waits = []          # (timeout asked for, epoll polls so far, frames b has received)
    received = []

    def drain_b():
        b_far.setblocking(False)
        try:
            while True:
                received.append((b_far.recv(100), clock[0]))
        except BlockingIOError:
            pass

    # Each select call: what the test does at that wakeup (the time it ends at, and
    # whether a descriptor is readable then).
    def wake_1(timeout):        # a frame arrives; the hub wakes at t0 and reads it
        a_far.send(b"one")
        return True

    def wake_2(timeout):        # the timer, 30 us late
        clock[0] = t0 + MS + 30_000
        return False

    def wake_3(timeout):        # a second frame; the hub, busy, finds it 5 ms later
        a_far.send(b"two")
        clock[0] = t0 + 2 * MS
        return True

    def wake_4(timeout):        # its timer, far too late: the frame leaves at once
        clock[0] = t0 + 7 * MS
        return False

    def wake_5(timeout):        # stdin EOF ends the hub
        os.close(ctl_w)
        return True

    script = [wake_1, wake_2, wake_3, wake_4, wake_5]

    def fake_select(rlist, wlist, xlist, timeout=None):
        drain_b()
        waits.append((timeout, counting.polls, len(received)))
        readable = script.pop(0)(timeout)
        return (list(rlist) if readable else [], [], [])

    monkeypatch.setattr(select_module, "select", fake_select)
    monkeypatch.setattr(linkhub.time, "monotonic_ns", lambda: clock[0])
    hub.run()
    drain_b()
    stats = hub.links[lid].relay.ab
    try:
        assert [frame for frame, _t in received] == [b"one", b"two"]
        # wake 2 waited 1 ms from the stamp of wake 1; wake 2 (the timer) polled nothing
        # and wrote the frame; wake 4 likewise.
        assert waits[0] == (None, 0, 0)
        assert waits[1] == (pytest.approx(0.001), 1, 0)
        assert waits[2] == (None, 1, 1)
        assert waits[3] == (pytest.approx(0.001), 2, 1)
        assert waits[4] == (None, 2, 2)
        assert received[0][1] == t0 + MS + 30_000 and received[1][1] == t0 + 7 * MS
        assert stats.late_ns_total == 30_000 + 4 * MS and stats.late_ns_max == 4 * MS
    finally:
        _close_hub(hub, (ctl_r, out_r, out_w), (a_far, b_far))


def test_the_hub_wakes_early_and_polls_until_the_departure_only_while_a_frame_is_due(monkeypatch):
    """Injected clock and select: with a frame due at t0 + 1 ms the sleep ends `early`
    before it; the timer, 40 us late even so, leaves the hub 80 us ahead of the
    departure, which it polls out (non-blocking epoll_wait, no write) and then writes the
    frame at its departure time exactly (no lateness). With nothing due the sleep has no
    timeout and nothing polls."""
    import select as select_module

    import mip6bench.net.linkhub as linkhub

    early = 120_000
    hub, lid, counting, (ctl_r, ctl_w, out_r, out_w), (a_far, b_far) = _one_link_hub(early=early)
    t0 = 5_000 * MS
    clock = [t0]
    selects = []
    received = []
    b_far.setblocking(False)

    def now():
        # Every clock read while polling moves time on by 10 us (the loop's own cost).
        if hub.polls and clock[0] < t0 + MS:
            clock[0] += 10_000
        return clock[0]

    def wake_1(timeout):        # a frame arrives; the hub wakes at t0 and reads it
        a_far.send(b"one")
        return True

    def wake_2(timeout):        # the timer: asked for t0 + 1 ms - early, 40 us late
        clock[0] = t0 + MS - early + 40_000
        return False

    def wake_3(timeout):        # nothing due: stdin EOF ends the hub
        try:
            received.append((b_far.recv(100), clock[0], hub.polls))
        except BlockingIOError:
            pass
        os.close(ctl_w)
        return True

    script = [wake_1, wake_2, wake_3]

    def fake_select(rlist, wlist, xlist, timeout=None):
        selects.append(timeout)
        return (list(rlist) if script.pop(0)(timeout) else [], [], [])

    monkeypatch.setattr(select_module, "select", fake_select)
    monkeypatch.setattr(linkhub.time, "monotonic_ns", now)
    hub.run()
    stats = hub.links[lid].relay.ab
    try:
        assert selects[0] is None and selects[2] is None            # nothing due: no timeout
        assert selects[1] == pytest.approx((MS - early) / 1e9)      # the sleep ends early
        assert len(received) == 1 and received[0][0] == b"one"
        # Polled out the 80 us left (about 8 polls at 10 us each), written at the
        # departure: no lateness counted.
        assert 1 <= received[0][2] <= 10 and counting.polls >= received[0][2]
        assert received[0][1] >= t0 + MS and stats.late_ns_max <= 10_000
    finally:
        _close_hub(hub, (ctl_r, out_r, out_w), (a_far, b_far))


def test_the_early_margin_from_the_environment_is_checked(monkeypatch):
    from mip6bench.errors import Mip6benchError
    from mip6bench.net.linkhub import EARLY_NS, early_ns

    monkeypatch.delenv("MIP6BENCH_HUB_EARLY_US", raising=False)
    assert early_ns() == EARLY_NS
    monkeypatch.setenv("MIP6BENCH_HUB_EARLY_US", "0")
    assert early_ns() == 0
    monkeypatch.setenv("MIP6BENCH_HUB_EARLY_US", "50.5")
    assert early_ns() == 50_500
    for bad in ("-1", "5000", "soon"):
        monkeypatch.setenv("MIP6BENCH_HUB_EARLY_US", bad)
        with pytest.raises(Mip6benchError):
            early_ns()
