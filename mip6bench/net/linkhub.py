"""Many emulated links in one relay process: a link hub.

`linkemu` runs one process per link (~14 MB and two pipes each); a testbed with a
thousand mobile nodes has three thousand links. A hub serves any number of links
through one event loop:

    netns A1  A1 (TAP) <==fd==>  [Shaper ab] [Shaper ba]  <==fd==> (TAP) B1  netns B1
    netns A2  A2 (TAP) <==fd==>  [Shaper ab] [Shaper ba]  <==fd==> (TAP) B2  netns B2
    ...                          one epoll set, one timer heap

Per link nothing changes: the TAPs are created and moved exactly as by linkemu
(`linkemu.create_link`), each direction is its own `shaping.Shaper` seeded as the
single-link relay seeds it (the same seed gives the same loss and jitter sequence),
and carrier, stats, set and wait are the single relay's commands (`linkemu.Relay`,
one per link, used for its command handling only).

The loop: every TAP fd is in one epoll set; a wakeup reads up to BATCH frames from each
readable TAP and stamps them with one arrival time. Departures are kept in one heap of
(time, direction) entries, at most one live entry per direction (the direction's
earliest queued frame); stale entries (the direction was flushed or got an earlier
frame) are skipped when they surface. So a wakeup costs O(ready fds + due frames x
log(links)), not O(links). The sleep is select(2) on the epoll descriptor itself, for
select's microsecond timeout (epoll_wait takes milliseconds), then a non-blocking
epoll_wait for the ready list; should the epoll descriptor be above 1023, epoll_wait
with a timeout rounded up to the millisecond takes over. A select that ends by its
timeout (nothing readable) goes straight to the due frames: the timer's wake-up is
the one the emulated delay waits for, so nothing else is done ahead of the writes.

Delay accounting: a frame's delay runs from the time read just after the wakeup that
found its TAP readable (the one stamp for everything read then), the earliest moment
the hub can know of it: a TAP read gives no kernel receive time, so the hub's wake-up
latency after the frame arrived (1-30 us on an idle machine, more when the hub is busy
or its vCPU halted) cannot be taken off. A frame whose departure has passed when the
hub gets to it leaves at once (`late_ns_*` in `stats`). With MIP6BENCH_HUB_EARLY_US
(EARLY_NS, off by default) the sleep before a departure ends early and the rest is
polled out, yielding the CPU between polls.

Closing a TAP's last fd deletes the interface, which costs the kernel ~20 ms of
synchronize_net each; in one thread 3,000 links would take a minute to go. Deleted
links are therefore closed by a pool of CLOSERS threads (measured here: 200 TAPs in
4.7 s one by one, 0.4 s with 16 threads).

Protocol (stdin/stdout lines; every request starts with a request id chosen by the
client, and its one JSON reply carries it as "req"):

    stdout: {"ready":true,"pid":..}                               once, at start
    stdin:  ID add --a NAME@NETNS --b NAME@NETNS [linkemu's link options]
            ID LINK carrier on|off | stats | set k=v ... | wait COND [within=S] | del
            ID links
    stdout: {"req":ID,"ok":true,"link":N,"a":{..},"b":{..}}        for add
            {"req":ID,"ok":true,...}                               as linkemu answers
            {"event":"gone","link":N,"error":..}                    a TAP vanished

A `wait` blocks nothing but its own reply. stdin EOF or SIGTERM ends the hub; every TAP
goes with it.

Python API: `LinkHub.start()`, `hub.add(...)` -> `HubLink` (the methods of
`linkemu.LinkRelay`: set_carrier, stats, wait, set, stop), `HubPool` (one hub per
core, links spread by count).
"""
from __future__ import annotations

import errno
import heapq
import json
import os
import select
import shlex
import signal
import sys
import time

if False:  # annotations only
    from typing import Any, Callable

from mip6bench.errors import Mip6benchError
from mip6bench.net.linkemu.cli import EXIT_ENV, EXIT_OK, build_parser, params_from_args
from mip6bench.net.linkemu.client import relay_argv, stop_child
from mip6bench.net.linkemu.relay import (BATCH, FD_SETSIZE, READ_SIZE, Relay, TapGone, _json_line, _PENDING,
                                         control_lines)
from mip6bench.net.linkemu.tap import (PR_SET_TIMERSLACK, RELAY_NICE, Endpoint, LinkEmuError, _libc_call,
                                       create_link)
from mip6bench.net.shaping import Shaper
from mip6bench.threads import Thread

CLOSERS = 16           # threads that close deleted links' TAP fds (see the docstring)
MAX_EVENTS = 1024      # epoll events taken per wakeup
# How long before a frame's departure the hub's sleep ends (ns): the rest it waits out
# polling (epoll_wait with no timeout, reading what arrives, writing what is due), so a
# vCPU's late wake-up from the timer (0-116 us measured here) is not added to the
# emulated delay. Never while nothing is due; each poll first yields the CPU to anything
# else runnable on it (without that, two hubs at nice -10 polling on this 2-vCPU VM kept
# agents waiting: the MN's Binding Update left ~1.5 ms later). Off by default (0: the
# sleep ends at the departure time): on this 2-vCPU VM it made the link check more
# faithful but no bootstrap phase reliably faster, and with the yield the SA push was
# later under load (README, "Link emulation"). MIP6BENCH_HUB_EARLY_US=120 turns it on.
EARLY_NS = 0


yield_cpu = os.sched_yield


def early_ns() -> int:
    """EARLY_NS, or MIP6BENCH_HUB_EARLY_US (0-1000 us) when set."""
    text = os.environ.get("MIP6BENCH_HUB_EARLY_US")
    if text is None:
        return EARLY_NS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1000:
        raise Mip6benchError(f"MIP6BENCH_HUB_EARLY_US={text!r} is not a time in us from 0 to 1000",
                             "unset it for the default (0: off)")
    return int(value * 1000)


class _Dir:
    """One direction of one link: frames read from in_fd leave on out_fd."""

    __slots__ = ("link", "shaper", "in_fd", "out_fd", "scheduled")

    def __init__(self, link: "_Link", shaper: Shaper, in_fd: int, out_fd: int):
        self.link, self.shaper, self.in_fd, self.out_fd = link, shaper, in_fd, out_fd
        self.scheduled: int | None = None  # time of this direction's live heap entry


class _Link:
    __slots__ = ("id", "relay", "ab", "ba", "info")

    def __init__(self, link_id: int, relay: Relay, info: dict):
        self.id, self.relay, self.info = link_id, relay, info
        self.ab = _Dir(self, relay.ab, relay.fd_a, relay.fd_b)
        self.ba = _Dir(self, relay.ba, relay.fd_b, relay.fd_a)


class Hub:
    """The multiplexing core: links (pairs of fds), their shapers, one timer heap.

    `attach(fd_a, fd_b, ab, ba)` adds a link over any two frame-preserving descriptors
    (TAPs in the hub process, datagram socketpairs in tests); `handle_line` runs one
    request; `run()` is the loop. `open_link(words) -> (fd_a, fd_b, ab, ba, carrier,
    info)` makes the link of an `add` request (the process passes `_open_tap_link`).
    """

    def __init__(self, ctl_fd: int | None = 0, out_fd: int = 1,
                 open_link: "Callable[[list[str]], tuple] | None" = None,
                 closer: "Callable[[int], Any] | None" = None, early: int | None = None):
        self.ctl_fd, self.out_fd = ctl_fd, out_fd
        self.open_link = open_link
        self.close_fd = closer or os.close
        self.links: dict[int, _Link] = {}
        self.by_fd: dict[int, _Dir] = {}
        self.heap: list[tuple[int, int, _Dir]] = []
        self._seq = 0
        self._next_id = 1
        self.waits: list[tuple[str, _Link, Any, int, str]] = []
        self.ep = select.epoll()
        self._ctl_buf = b""
        if ctl_fd is not None:
            self.ep.register(ctl_fd, select.EPOLLIN)
        self.gone = 0  # links removed because a TAP vanished
        self.early_ns = EARLY_NS if early is None else early
        self.polls = 0  # non-blocking polls made while a departure was near (the spin)

    # -- links --------------------------------------------------------------------

    def attach(self, fd_a: int, fd_b: int, ab: Shaper, ba: Shaper, *, carrier: bool = True,
               info: dict | None = None) -> int:
        link_id = self._next_id
        self._next_id += 1
        relay = Relay(fd_a, fd_b, ab, ba, carrier=carrier, ctl_fd=None, out_fd=self.out_fd)
        link = _Link(link_id, relay, info or {})
        self.links[link_id] = link
        for d in (link.ab, link.ba):
            self.by_fd[d.in_fd] = d
            self.ep.register(d.in_fd, select.EPOLLIN)
        return link_id

    def detach(self, link_id: int) -> None:
        """Forget a link and close its fds (its TAPs vanish)."""
        link = self.links.pop(link_id)
        for d in (link.ab, link.ba):
            self.by_fd.pop(d.in_fd, None)
            try:
                self.ep.unregister(d.in_fd)
            except OSError:
                pass
            d.scheduled = None  # any heap entry is stale from now on
        still = []
        for w in self.waits:
            if w[1] is link:
                self._reply(w[0], {"ok": False, "error": f"link {link_id} deleted"})
            else:
                still.append(w)
        self.waits = still
        self.close_fd(link.relay.fd_a)
        self.close_fd(link.relay.fd_b)

    def _gone(self, link: _Link) -> None:
        if link.id in self.links:
            self.gone += 1
            self.detach(link.id)
            os.write(self.out_fd, _json_line({"event": "gone", "link": link.id,
                                              "error": "a TAP disappeared (its namespace was "
                                                       "deleted or the link removed)"}))

    # -- requests -----------------------------------------------------------------

    def _reply(self, req: str, body: dict) -> None:
        os.write(self.out_fd, _json_line({"req": req, **body}))

    def handle_line(self, line: str) -> None:
        words = line.split(None, 2)
        if not words:
            return
        req = words[0]
        if len(words) < 2:
            return self._reply(req, {"ok": False, "error": "empty request (use: ID add ..., "
                                                           "ID LINK command, ID links)"})
        try:
            if words[1] == "add":
                return self._add(req, shlex.split(words[2]) if len(words) > 2 else [])
            if words[1] == "links":
                return self._reply(req, {"ok": True, "links": len(self.links),
                                         "gone": self.gone, "early_us": self.early_ns / 1000,
                                         "polls": self.polls})
            try:
                link = self.links[int(words[1])]
            except (ValueError, KeyError):
                return self._reply(req, {"ok": False, "error": f"no link {words[1]!r}"})
            rest = words[2] if len(words) > 2 else ""
            cmd = rest.split()
            if cmd == ["del"]:
                self.detach(link.id)
                return self._reply(req, {"ok": True, "link": link.id})
            if cmd and cmd[0] == "wait" and len(cmd) > 1:
                cond, deadline, text = link.relay._parse_wait(cmd[1:])
                if cond():
                    return self._reply(req, link.relay._wait_reply(True, text))
                self.waits.append((req, link, cond, deadline, text))
                return None
            before = link.relay.carrier
            reply = link.relay.command(rest)
            if reply is None or reply is _PENDING:
                reply = {"ok": False, "error": "empty command"}
            if link.relay.carrier != before and not link.relay.carrier:
                for d in (link.ab, link.ba):
                    d.scheduled = None  # flushed: entries in the heap are stale
            return self._reply(req, reply)
        except TapGone:
            self._reply(req, {"ok": False, "error": "the link's TAP disappeared"})
            self._gone(link)
        except Mip6benchError as exc:
            self._reply(req, {"ok": False, "error": str(exc)})

    def _add(self, req: str, args: list[str]) -> None:
        if self.open_link is None:
            return self._reply(req, {"ok": False, "error": "this hub cannot create links"})
        try:
            fd_a, fd_b, ab, ba, carrier, info = self.open_link(args)
        except OSError as exc:
            return self._reply(req, {"ok": False, "error": f"add: {exc.strerror or exc}"})
        link_id = self.attach(fd_a, fd_b, ab, ba, carrier=carrier, info=info)
        self._reply(req, {"ok": True, "link": link_id, **info})

    def _control(self) -> bool:
        return control_lines(self, self.handle_line)

    def poll_waits(self, now_ns: int) -> None:
        if not self.waits:
            return
        still = []
        for w in self.waits:
            req, link, cond, deadline, text = w
            if cond():
                self._reply(req, link.relay._wait_reply(True, text))
            elif now_ns >= deadline:
                self._reply(req, link.relay._wait_reply(False, text))
            else:
                still.append(w)
        self.waits = still

    # -- the per-frame path -------------------------------------------------------

    def _schedule(self, d: _Dir) -> None:
        nd = d.shaper.next_departure()
        d.scheduled = nd
        if nd is not None:
            self._seq += 1
            heapq.heappush(self.heap, (nd, self._seq, d))

    def read_ready(self, fd: int, now: int) -> None:
        """Read up to BATCH frames from one ready TAP into its direction's shaper."""
        d = self.by_fd.get(fd)
        if d is None:
            return
        relay, shaper = d.link.relay, d.shaper
        read = os.read
        try:
            for _ in range(BATCH):
                try:
                    frame = read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                if not frame:
                    break
                if relay.carrier:
                    dep = shaper.offer(now, frame)
                    if dep is not None and (d.scheduled is None or dep < d.scheduled):
                        d.scheduled = dep
                        self._seq += 1
                        heapq.heappush(self.heap, (dep, self._seq, d))
                else:
                    shaper.drop_carrier()
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                self._gone(d.link)
                return
            raise

    def send_due(self, now: int) -> None:
        """Hand every frame due at `now` to its far TAP."""
        heap, write = self.heap, os.write
        while heap and heap[0][0] <= now:
            t, _seq, d = heapq.heappop(heap)
            if d.scheduled != t or d.link.id not in self.links:
                continue  # stale: flushed, rescheduled earlier, or the link is gone
            shaper, out = d.shaper, d.out_fd
            frame = shaper.pop_due(now)
            while frame is not None:
                try:
                    write(out, frame)
                except OSError as exc:
                    if exc.errno == errno.EBADFD:
                        self._gone(d.link)
                        break
                    shaper.write_errors += 1  # EIO: far end down; EINVAL: runt frame
                frame = shaper.pop_due(now)
            else:
                self._schedule(d)

    def next_due(self) -> int | None:
        """The earliest live departure or wait deadline (ns), dropping stale entries."""
        heap = self.heap
        while heap and heap[0][2].scheduled != heap[0][0]:
            heapq.heappop(heap)
        due = heap[0][0] if heap else None
        for w in self.waits:
            if due is None or w[3] < due:
                due = w[3]
        return due

    def run(self) -> None:
        """Relay until stdin EOF (or SIGTERM through the caller's handler)."""
        ep, ctl, now_ns = self.ep, self.ctl_fd, time.monotonic_ns
        epfd = ep.fileno()
        precise = epfd < FD_SETSIZE
        sel = select.select
        early = self.early_ns
        while True:
            due = self.next_due()
            margin = False   # inside a frame's early margin, its departure still to come
            if due is None:
                timeout = None
            else:
                # Before a frame's departure (not a `wait`'s deadline) the sleep ends
                # `early` ahead of it; from there the loop polls (timeout 0: reads what
                # arrives, writes what is due) until the departure has come, so the
                # timer's late wake-up is not added to the delay.
                left = due - now_ns()
                if early and self.heap and self.heap[0][0] == due:
                    margin = 0 < left <= early
                    left -= early
                timeout = left / 1e9 if left > 0 else 0
            if precise:
                if timeout != 0 and not sel((epfd,), (), (), timeout)[0]:  # microsecond timeout
                    # The timer, nothing readable: straight to the due frames (no
                    # epoll_wait, no reads ahead of them; a frame arriving meanwhile
                    # wakes the next select at once and is stamped then).
                    now = now_ns()
                    self.send_due(now)
                    if self.waits:
                        self.poll_waits(now)
                    continue
                if margin:
                    # Polling out the margin: give the CPU to anything else runnable on
                    # it first (an agent woken meanwhile runs; the hub at nice -10 would
                    # otherwise keep it waiting), and come straight back when nothing is.
                    # Not for a frame already due: that one goes now.
                    self.polls += 1
                    yield_cpu()
                events = ep.poll(0, MAX_EVENTS)
            else:
                events = ep.poll(-1 if timeout is None else timeout, MAX_EVENTS)
            now = now_ns()
            for fd, _mask in events:
                if fd == ctl:
                    if not self._control():
                        return
                    continue
                self.read_ready(fd, now)
            now = now_ns()
            self.send_due(now)
            if self.waits:
                self.poll_waits(now)

    def close(self) -> None:
        for link_id in list(self.links):
            self.detach(link_id)
        self.ep.close()


# ---------------------------------------------------------------------------------
# The process


def _open_tap_link(args: list[str]) -> tuple:
    """`add` arguments (linkemu's command line) -> two TAPs in place and their shapers."""
    a_args = build_parser().parse_args(args)
    a = Endpoint.parse(a_args.a, "--a")
    b = Endpoint.parse(a_args.b, "--b")
    p_ab, p_ba = params_from_args(a_args)
    carrier = a_args.carrier == "on"
    fd_a, fd_b, info = create_link(a, b, up=a_args.up, carrier=carrier, move=False)
    label = f"{a.name}>{b.name}"  # as linkemu labels it: same seed, same streams
    return (fd_a, fd_b, Shaper(p_ab, a_args.seed, label + "/ab"),
            Shaper(p_ba, a_args.seed, label + "/ba"), carrier, info)


class _Stop(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    from mip6bench.threads import ThreadPoolExecutor

    if argv:
        print("linkhub: error: no arguments (links are added on stdin: ID add --a ... --b ...)",
              file=sys.stderr)
        return 2

    def on_term(_sig, _frame):
        raise _Stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        _libc_call("prctl", PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, RELAY_NICE)  # as linkemu: a link, not a job
    except OSError:
        pass
    closers = ThreadPoolExecutor(CLOSERS, thread_name_prefix="close")
    try:
        early = early_ns()
    except Mip6benchError as exc:
        print(f"linkhub: error: {exc}", file=sys.stderr)
        return 2
    hub = Hub(open_link=_open_tap_link, closer=lambda fd: closers.submit(os.close, fd), early=early)
    code = EXIT_OK
    try:
        os.write(1, _json_line({"ready": True, "pid": os.getpid()}))
        hub.run()
    except (_Stop, KeyboardInterrupt, BrokenPipeError):
        pass
    except OSError as exc:
        print(f"linkhub: error: {exc}", file=sys.stderr)
        code = EXIT_ENV
    finally:
        hub.close()
        closers.shutdown(wait=True)
    return code


# ---------------------------------------------------------------------------------
# Python API


class LinkHub:
    """A running hub process, driven over its pipes; requests may come from any thread.

        hub = LinkHub.start()
        link = hub.add("h1-eth0", h1.pid, "r1-eth0", r1.pid, LinkParams(delay_ms=10), seed=7)
        link.set_carrier(False); link.stats(); link.wait("idle"); link.stop()
        hub.stop()
    """

    def __init__(self, proc: Any):
        import threading
        self.proc = proc
        self.pid: int = proc.pid
        self._lock = threading.Lock()
        self._next = 0
        self._pending: dict[str, list] = {}   # req -> [Event, reply]
        self.gone: set[int] = set()
        self.count = 0                        # links added through this handle
        self._dead: str | None = None
        self._ready = threading.Event()
        self.ready: dict = {}
        self._reader = Thread(target=self._read_loop, name=f"linkhub-{self.pid}",
                              daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, timeout: float = 10.0) -> "LinkHub":
        import subprocess

        from mip6bench.slowdown import scaled
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        proc = subprocess.Popen([sys.executable, "-S", "-m", "mip6bench.net.linkhub"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0, close_fds=True,
                                start_new_session=True, env=env)
        hub = cls(proc)
        if not hub._ready.wait(scaled(timeout)) or not hub.ready:
            hub.kill()
            raise LinkEmuError(f"link hub pid {proc.pid} did not start: {hub._dead or 'timeout'}",
                               "check that python can run `-m mip6bench.net.linkhub`")
        return hub

    def _read_loop(self) -> None:
        buf = b""
        fd = self.proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    msg = json.loads(raw)
                    if "req" in msg:
                        with self._lock:
                            slot = self._pending.pop(msg["req"], None)
                        if slot is not None:
                            slot[1] = msg
                            slot[0].set()
                    elif msg.get("event") == "gone":
                        self.gone.add(msg["link"])
                    elif msg.get("ready"):
                        self.ready = msg
                        self._ready.set()
        except (OSError, ValueError):
            pass
        code = self.proc.wait()
        try:
            err = (self.proc.stderr.read() or b"").decode(errors="replace").strip()
        except (OSError, ValueError):
            err = ""
        self._dead = f"exited with status {code}" + (f": {err}" if err else "")
        self._ready.set()
        with self._lock:
            pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot[0].set()

    def request(self, text: str, timeout: float = 10.0) -> dict:
        return self.collect(self.send(text), text, timeout)

    def send(self, text: str) -> list:
        """Send a request without waiting; collect() its reply. Requests sent back to
        back are pipelined: the hub works through them while the caller goes on."""
        import threading
        slot: list = [threading.Event(), None]
        with self._lock:
            if self._dead:
                raise LinkEmuError(f"link hub pid {self.pid} is gone ({self._dead})")
            self._next += 1
            req = str(self._next)
            self._pending[req] = slot
            try:
                self.proc.stdin.write(f"{req} {text}\n".encode())
            except (BrokenPipeError, ValueError, OSError):
                self._pending.pop(req, None)
                raise LinkEmuError(f"link hub pid {self.pid} is gone") from None
        slot.append(req)
        return slot

    def collect(self, slot: list, text: str, timeout: float = 10.0) -> dict:
        req = slot[2]
        if not slot[0].wait(timeout):
            with self._lock:
                self._pending.pop(req, None)
            raise LinkEmuError(f"link hub pid {self.pid} did not answer {text!r} in time",
                               "is the machine overloaded?")
        reply = slot[1]
        if reply is None:
            raise LinkEmuError(f"link hub pid {self.pid} is gone ({self._dead})")
        return reply

    def add(self, a_name: str, a_netns: Any, b_name: str, b_netns: Any, params: Any = None,
            *, ab: Any = None, ba: Any = None, seed: int = 0, carrier: bool = True,
            up: bool = True, timeout: float = 10.0) -> "HubLink":
        """Create a link (validated here first, as LinkRelay.start does)."""
        return self.add_later(a_name, a_netns, b_name, b_netns, params, ab=ab, ba=ba,
                              seed=seed, carrier=carrier, up=up)(timeout)

    def add_later(self, a_name: str, a_netns: Any, b_name: str, b_netns: Any,
                  params: Any = None, *, ab: Any = None, ba: Any = None, seed: int = 0,
                  carrier: bool = True, up: bool = True) -> "Callable[..., HubLink]":
        """Send the add request now; the returned function waits for the link (or
        raises why there is none). Many adds sent first are pipelined."""
        from mip6bench.slowdown import scaled
        argv = relay_argv(a_name, a_netns, b_name, b_netns, params, ab=ab, ba=ba, seed=seed,
                          carrier=carrier, up=up, python="python")[3:]
        text = "add " + shlex.join(argv)
        slot = self.send(text)
        self.count += 1

        def result(timeout: float = 10.0) -> HubLink:
            reply = self.collect(slot, text, scaled(timeout))
            if not reply.get("ok"):
                raise LinkEmuError(f"link {a_name}<->{b_name}: {reply.get('error')}")
            return HubLink(self, reply["link"], reply, f"{a_name}<->{b_name}")
        return result

    def links(self) -> int:
        return self.request("links")["links"]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its pid
        self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """Close stdin: the hub closes every link (in parallel) and exits."""
        code = stop_child(self.proc, timeout, self.kill)
        self._reader.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        return code


class HubLink:
    """One link of a hub, with LinkRelay's operations."""

    def __init__(self, hub: LinkHub, link_id: int, ready: dict, label: str):
        self.hub, self.id, self.ready, self.label = hub, link_id, ready, label
        self.pid = hub.pid
        self.deleted = False

    def _request(self, command: str, timeout: float = 10.0) -> dict:
        reply = self.hub.request(f"{self.id} {command}", timeout)
        if not reply.get("ok"):
            raise LinkEmuError(f"link {self.label} (hub pid {self.pid}) refused {command!r}: "
                               f"{reply.get('error')}")
        return reply

    @property
    def alive(self) -> bool:
        return not self.deleted and self.hub.alive and self.id not in self.hub.gone

    def set_carrier(self, on: bool) -> int:
        return self._request(f"carrier {'on' if on else 'off'}")["t_ns"]

    def stats(self) -> dict:
        return self._request("stats")

    def wait(self, condition: str, within: float = 10.0) -> dict:
        from mip6bench.slowdown import scaled
        within = scaled(within)
        return self._request(f"wait {condition} within={within:g}", timeout=within + scaled(5))

    def set(self, direction: str | None = None, **params: Any) -> dict:
        """Change parameters at run time (see LinkRelay.set)."""
        from mip6bench.net.linkemu import set_command
        return self._request(set_command(direction, params))

    def stop(self, timeout: float = 10.0) -> int:
        """Delete the link (its TAPs vanish); 0, or 1 when the hub was already gone."""
        if self.deleted:
            return 0
        self.deleted = True
        if not self.hub.alive or self.id in self.hub.gone:
            return 1
        try:
            self.hub.request(f"{self.id} del", timeout)
        except LinkEmuError:
            return 1
        return 0


class HubPool:
    """One hub per core (by default); each new link goes to the hub with the fewest."""

    def __init__(self, size: int | None = None):
        self.size = max(1, size or os.cpu_count() or 1)
        self.hubs: list[LinkHub] = []

    def add(self, *args: Any, **kw: Any) -> HubLink:
        return self.add_later(*args, **kw)()

    def add_later(self, *args: Any, **kw: Any) -> "Callable[..., HubLink]":
        if len(self.hubs) < self.size:
            self.hubs.append(LinkHub.start())
        hub = min(self.hubs, key=lambda h: h.count)
        return hub.add_later(*args, **kw)

    @property
    def pids(self) -> list[int]:
        return [h.pid for h in self.hubs]

    def stop(self) -> list[int]:
        for hub in self.hubs:  # all stdins first: the hubs close their links in parallel
            try:
                hub.proc.stdin.close()
            except OSError:
                pass
        codes = [hub.stop() for hub in self.hubs]
        self.hubs = []
        return codes


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
