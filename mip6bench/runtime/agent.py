"""The per-role daemon runtime.

An agent is a subclass of `Agent` with an `Options` dataclass. `run(AgentClass)` is the
whole main program of an agent process:

    python agents/fw.py --config /run/mip6bench/<run>/fw-fw.json

It loads and checks the config, starts the agent, opens the control socket and the event
log, prints one JSON line `{"ready": true, ...}` on stdout (the testbed waits on that
line, so nobody has to guess start-up time) and closes stdout. SIGTERM/SIGINT stop it
cleanly (agent.stop(), then exit 0). A fatal error ends it with a one-line message on
stderr and exit status 1 (2 for a bad config).

`--profile PATH` runs the agent under cProfile from its start to the stop signal and
writes the statistics to PATH as soon as the signal arrives, before the teardown: an
agent busy with a backlog may take longer to tear down than its stopper's grace and be
killed (a scale run's firewall under `-p profile=fw` left no profile that way when
cProfile wrote it at exit). The teardown is not in the profile.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import select
import selectors
import signal
import sys
import time
from collections import deque
from typing import Any, Callable, ClassVar, Iterable

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.runtime.config import AgentConfig, load_agent_config, parse_options
from mip6bench.runtime.control import ControlServer, Handler
from mip6bench.runtime.eventlog import EventLog
from mip6bench.runtime.memory import MemoryProbe, start_from_env

RECENT_EVENTS = 200


class Agent:
    role: ClassVar[str] = "agent"
    Options: ClassVar[type]
    # The cyclic collector's young-generation threshold for a process that runs this
    # agent alone (None: Python's, 700). A server whose requests make many short-lived
    # containers may set it higher: young collections come a fourteenth as often and
    # the whole costs less (the PAA, pana_bench --sockets 2000,64: ~29 young collections
    # per 1,000 authentications, ~10 us of collector CPU an authentication, with 700;
    # 1.5 and ~3 us with 10,000). See settle_heap.
    gc_young_threshold: ClassVar[int | None] = None

    def __init__(self, config: AgentConfig, options: Any, log: EventLog):
        self.config = config
        self.options = options
        self._log = log
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        log.recent = self.recent          # the log keeps them as it writes them
        # emit() with the fields as a dict (not kept), as a core's Event holds them: what
        # CoreDriver(emit_fields=...) calls. The log's own method, one call an event; the
        # log appends each entry to `recent` and calls on_entry (see WaitableEvents).
        self.emit_fields: Callable[[str, dict[str, Any], int | None], Any] = log.emit_fields
        self.counters: dict[str, int] = {}
        self.started_ns = time.monotonic_ns()
        self._fatal: asyncio.Future | None = None
        self._memory = MemoryProbe()

    # --- for subclasses -------------------------------------------------------
    async def start(self) -> None:
        """Open sockets, install state. Raise Mip6benchError for a fatal problem."""

    async def stop(self) -> None:
        """Undo what start() and later work installed."""

    def status(self) -> dict[str, Any]:
        return {}

    def dump(self) -> dict[str, Any]:
        return self.status()

    def commands(self) -> dict[str, Handler]:
        return {}

    # --- services -------------------------------------------------------------
    def emit(self, event: str, t_ns: int | None = None, **fields: Any) -> None:
        """Log an event, at `t_ns` when given (a time read when the thing happened,
        e.g. the SA channel's install), else now."""
        self._log.emit_fields(event, fields, t_ns)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def fatal(self, message: str) -> None:
        """End the agent with an error (from a callback or task)."""
        if self._fatal and not self._fatal.done():
            self._fatal.set_result(message)

    def spawn(self, coro, name: str) -> asyncio.Task:
        """A background task whose unexpected exception ends the agent."""
        task = asyncio.get_running_loop().create_task(coro, name=name)

        def done(t: asyncio.Task) -> None:
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                self.fatal(f"task {name} failed: {type(exc).__name__}: {exc}")

        task.add_done_callback(done)
        return task

    # --- built-in control commands -----------------------------------------
    def _builtin_commands(self) -> dict[str, Handler]:
        async def status(_req):
            return {"node": self.config.node, "agent": self.config.agent, "role": self.role,
                    "pid": os.getpid(), "uptime_s": (time.monotonic_ns() - self.started_ns) / 1e9,
                    "counters": dict(self.counters), **self.status()}

        async def dump(_req):
            return self.dump()

        async def events(req):
            n = int(req.get("n", 20))
            return list(self.recent)[-n:]

        return {"status": status, "dump": dump, "events": events, "memory": self._memory.command}


def settle_heap(young_threshold: int | None = None) -> None:
    """After start-up: collect its garbage, then move what is alive to the collector's
    permanent generation (gc.freeze). The cyclic collector runs a full collection when
    the objects promoted since the last one reach a quarter of the long-lived ones; an
    agent's start-up (modules, cores, sockets) made that base large, so the cyclic
    garbage of its work (pyroute2's netlink messages are cycles: ~880 objects for a
    proxy-ND entry and a route added and deleted and a link and address dump) piled up
    between rare full collections and the heap grew to hold it. Frozen, start-up objects are no longer in that base nor
    scanned: full collections come sooner and cost less (pyroute2 route and neighbour
    calls in a loop: RSS +1.4 MB before levelling off, frozen +0.2 MB).
    `young_threshold`: the young generation's threshold from now on (Agent's
    gc_young_threshold; the older generations' stay)."""
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        gc.set_threshold(young_threshold, *gc.get_threshold()[1:])


def forwarded_commands(names: Iterable[str], component: Callable[[], Any]) -> dict[str, Handler]:
    """Control commands served by a component that start() creates (commands() is called
    before start()): each request looks the component up, ``component()``, and calls its
    ``commands()[name]``."""
    def forward(name: str) -> Handler:
        async def handler(req: dict[str, Any]) -> Any:
            return await component().commands()[name](req)
        return handler

    return {name: forward(name) for name in names}


async def _main(agent_cls: type[Agent], config: AgentConfig, t0_ns: int,
                on_stop: Callable[[], None] | None = None) -> int:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def stopped(sig: int) -> None:
        if stop.done():
            return
        stop.set_result(sig)
        if on_stop is not None:     # at once, before the teardown (see --profile)
            on_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped, sig)

    def ready(agent: Agent) -> None:
        sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "node": config.node,
                                     "agent": config.agent, "control": config.control}) + "\n")
        sys.stdout.flush()
        # Nothing else goes to stdout: the testbed stops reading after the ready line.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    return await serve_agent(agent_cls, config, t0_ns, stop, ready)


async def serve_agent(agent_cls: type[Agent], config: AgentConfig, t0_ns: int, stop: asyncio.Future,
                      ready: Callable[[Agent], None], settle: bool = True) -> int:
    """One agent on the running loop, from its options to its teardown: start it, open
    its control socket, call ready(agent), serve until `stop` has a result (a signal
    number) or the agent calls fatal(); then close and stop it. One process runs one
    (run) or, in an MN host (runtime/host.py), many, each on its own loop and thread;
    settle=False leaves the heap's settling to the host, once for all."""
    options = parse_options(agent_cls.Options, config.options)
    log = EventLog(config.events, config.node, config.agent)
    agent = agent_cls(config, options, log)
    loop = asyncio.get_running_loop()
    hooks = getattr(loop, "before_wait", None)
    if hooks is not None:            # written when the loop is about to wait (one write
        log.write_before_wait(loop, hooks)   # for all a wake-up served), after the answers
    else:
        log.write_after_callback(loop)   # a message's events are written after its answer left
    agent._fatal = loop.create_future()
    control = ControlServer(config.control, {**agent._builtin_commands(), **agent.commands()},
                            before_reply=log.flush)
    started = False
    try:
        await agent.start()
        started = True
        crypto = sys.modules.get("mip6bench.crypto")
        if crypto is not None:
            # An agent that uses the cryptographic primitives pays their first-use set-up
            # (OpenSSL's algorithm fetches: 1-3 ms) now, not on its first message.
            crypto.warm_up()
        if settle:
            settle_heap(agent_cls.gc_young_threshold)
        await control.start()
        startup_ms = (time.monotonic_ns() - t0_ns) / 1e6
        agent.emit("agent.ready", role=agent_cls.role, pid=os.getpid(), startup_ms=round(startup_ms, 3))
        log.flush()     # in the file before the ready line: the testbed may read it then
        ready(agent)
        done, _ = await asyncio.wait({stop, agent._fatal}, return_when=asyncio.FIRST_COMPLETED)
        if agent._fatal.done():
            raise Mip6benchError(agent._fatal.result())
        agent.emit("agent.stopping", signal=signal.Signals(stop.result()).name)
        return 0
    finally:
        await control.close()
        if started:
            await agent.stop()
        agent.emit("agent.stopped")
        log.close()


def run(agent_cls: type[Agent], argv: list[str] | None = None) -> int:
    """Main program of an agent process; returns the exit status."""
    t0_ns = _process_start_ns()
    parser = argparse.ArgumentParser(description=f"mip6bench {agent_cls.role} agent")
    parser.add_argument("--config", required=True, help="agent config file (JSON)")
    parser.add_argument("--profile", metavar="PATH",
                        help="run under cProfile; its statistics go to PATH when the stop "
                             "signal arrives (or at exit, whichever comes first)")
    args = parser.parse_args(argv)
    prefix = [f"{agent_cls.role} agent"]
    profile = Profiling(args.profile) if args.profile else None

    def body() -> int:
        config = load_agent_config(args.config)
        prefix[0] = f"{agent_cls.role} agent {config.agent}@{config.node}"
        start_tracing()
        with asyncio.Runner(loop_factory=precise_event_loop) as runner:
            return runner.run(_main(agent_cls, config, t0_ns,
                                    on_stop=profile.write if profile else None))

    if profile is None:
        return exit_status(lambda: prefix[0], body)
    profile.start()
    try:
        return exit_status(lambda: prefix[0], body)
    finally:
        profile.write()


class Profiling:
    """cProfile over an agent's life until write(), which stops it and writes the
    statistics to `path` (once: later calls do nothing). A file that cannot be written
    is one line on stderr; the agent goes on stopping."""

    def __init__(self, path: str):
        import cProfile

        self.path = path
        self.profiler = cProfile.Profile()
        self.written = False

    def start(self) -> None:
        self.profiler.enable()

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        self.profiler.disable()
        try:
            self.profiler.dump_stats(self.path)
        except OSError as exc:
            print(f"cannot write the profile {self.path}: {exc.strerror or exc}", file=sys.stderr)


def start_tracing() -> None:
    """MIP6BENCH_TRACEMALLOC: the `memory` command's snapshots (a bad value is a config error)."""
    try:
        start_from_env()
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


def exit_status(prefix: Callable[[], str], body: Callable[[], int]) -> int:
    """body()'s exit status; a failure is one line on stderr after prefix(): 2 for a
    bad config, 1 for an error, 0 after Ctrl-C."""
    try:
        return body()
    except ParameterError as exc:
        print(f"{prefix()}: config error: {exc}", file=sys.stderr)
        return 2
    except Mip6benchError as exc:
        print(f"{prefix()}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # last resort: still one line, still non-zero
        print(f"{prefix()}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


FD_SETSIZE = 1024  # select(2) takes descriptors below this only


class PreciseEpollSelector(selectors.EpollSelector):
    """asyncio's epoll selector with timers to the microsecond. epoll_wait takes whole
    milliseconds, rounded up, so a loop timer fired up to 1 ms late (1.9 ms in the
    median here, under load); and the kernel lets any wait run late by 0.1 % of its
    length (select_estimate_accuracy: 1 ms on the HA's 1 s DAD wait). Here select(2) on
    the epoll descriptor waits to the microsecond, and a wait longer than 10 ms ends
    early by twice its slack, so that the loop's next, short wait meets the deadline;
    then epoll hands over what is ready. Waits without a timeout, polls and an epoll
    descriptor above select's range go to epoll as before."""

    def __init__(self):
        super().__init__()
        # Called before every wait that may block (timeout None or positive), in order:
        # the event log's write (EventLog.write_before_wait).
        self.before_wait: list[Callable[[], None]] = []

    def select(self, timeout: float | None = None):
        if self.before_wait and (timeout is None or timeout > 0):
            for hook in self.before_wait:
                try:
                    hook()
                except Exception:   # as a failing loop callback: reported, the loop goes on
                    logging.getLogger("asyncio").exception("before-wait hook %r failed", hook)
        if timeout is not None and timeout > 0:
            fd = self._selector.fileno()
            if fd < FD_SETSIZE:
                select.select([fd], [], [], timeout - timeout / 500 if timeout > 0.01 else timeout)
                timeout = 0
        return super().select(timeout)


def precise_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop every agent runs on (PreciseEpollSelector)."""
    selector = PreciseEpollSelector()
    loop = asyncio.SelectorEventLoop(selector)
    loop.before_wait = selector.before_wait     # for serve_agent's event log
    return loop


def _process_start_ns() -> int:
    """When this process started, on CLOCK_MONOTONIC, so start-up time includes the
    interpreter's own start."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 (starttime), counted after "comm)"
        hz = os.sysconf("SC_CLK_TCK")
        # starttime is in clock ticks since boot; CLOCK_BOOTTIME shares that origin.
        boot_offset = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        return start_ticks * 1_000_000_000 // hz - boot_offset
    except (OSError, ValueError, IndexError):
        return time.monotonic_ns()
