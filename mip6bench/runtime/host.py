"""An agent host: one process running many agents of one class (the MN host:
agents/mnhost.py), so N mobile nodes cost far less than N processes.

    python agents/mnhost.py --config /run/mip6bench/<run>/mnhost-<k>.json

The config is {"agents": [...]}, each entry an agent config (node, agent, control,
events, options: the same keys as a one-agent config) plus `netns`, the path of that
node's network namespace (/proc/<pid>/ns/net). Every agent runs on a thread of its own
that first joins its node's namespace (setns(2) switches only the calling thread) and
then runs its own event loop: everything the agent opens there (sockets, TUN devices,
netlink, /proc/sys/net files) is its node's, and so are the threads and processes it
starts (they inherit the thread's namespace). Each agent keeps its own event log and
control socket, so the testbed and every tool talk to it exactly as to an agent process.

Isolation: an agent's exception, fatal error or bad input ends at most that agent (its
loop and thread; the host writes one line on stderr and keeps the others running). A
crash of the interpreter itself ends them all: the host is one process.

Readiness: once every agent has started the host prints one line,
{"ready": true, "pid": ..., "agents": [{"node", "agent", "control", "startup_ms"}, ...]},
and closes stdout. An agent that cannot start fails the whole host (the others are
stopped; exit status 1, or 2 for a bad config; a one-line message per failure). SIGTERM
or SIGINT stops every agent (each tears its own state down) and the host exits 0.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import threading
import time
from typing import Any

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.net.netns import enter_netns
from mip6bench.runtime.agent import (Agent, _process_start_ns, exit_status, precise_event_loop, serve_agent,
                                     settle_heap, start_tracing)
from mip6bench.runtime.config import AgentConfig, agent_config_from, read_config_file
from mip6bench.threads import Thread

def load_host_config(path: str) -> list[tuple[AgentConfig, str | None]]:
    """The agents of a host config: (AgentConfig, netns path or None) each."""
    data = read_config_file(path)
    agents = data.get("agents") if isinstance(data, dict) else None
    if not isinstance(agents, list) or not agents:
        raise ParameterError(f"config {path}: 'agents' must be a non-empty list")
    out, controls = [], set()
    for i, entry in enumerate(agents):
        where = f"config {path}: agents[{i}]"
        config = agent_config_from(entry, where, frozenset({"netns"}))
        if config.control in controls:
            raise ParameterError(f"{where}: control socket {config.control} used twice")
        controls.add(config.control)
        netns = entry.get("netns")
        if netns is not None and not isinstance(netns, str):
            raise ParameterError(f"{where}: 'netns' must be a path")
        out.append((config, netns))
    return out


class Instance:
    """One agent of the host: its thread, its namespace, its loop."""

    def __init__(self, agent_cls: type[Agent], config: AgentConfig, netns: str | None, report):
        self.agent_cls, self.config, self.netns = agent_cls, config, netns
        self.name = f"{agent_cls.role} agent {config.agent}@{config.node}"
        self._report = report            # report(instance, kind, detail), from any thread
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._stop_signal: int | None = None
        self.agent: Agent | None = None
        self.startup_ms: float | None = None
        self.thread = Thread(target=self._run, name=f"agent:{config.node}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Ask the agent to stop (from any thread; before its loop runs too)."""
        with self._lock:
            self._stop_signal = sig
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._set_stop, sig)

    def _set_stop(self, sig: int) -> None:
        if not self._stop.done():
            self._stop.set_result(sig)

    def _run(self) -> None:
        t0_ns = time.monotonic_ns()
        try:
            enter_netns(self.netns)
            try:
                with asyncio.Runner(loop_factory=precise_event_loop) as runner:
                    rc = runner.run(self._serve(t0_ns))
            finally:
                with self._lock:
                    self._loop = None   # closed: stop() has nothing left to ask
            self._report(self, "ended", rc)
        except ParameterError as exc:
            self._report(self, "failed", f"{self.name}: config error: {exc}")
        except Mip6benchError as exc:
            self._report(self, "failed", f"{self.name}: error: {exc}")
        except BaseException as exc:  # noqa: BLE001 - one agent's fault ends that agent only
            self._report(self, "failed", f"{self.name}: error: {type(exc).__name__}: {exc}")

    async def _serve(self, t0_ns: int) -> int:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop, self._stop = loop, loop.create_future()
            if self._stop_signal is not None:
                self._stop.set_result(self._stop_signal)

        def ready(agent: Agent) -> None:
            self.agent = agent
            self.startup_ms = (time.monotonic_ns() - t0_ns) / 1e6
            self._report(self, "ready", None)

        return await serve_agent(self.agent_cls, self.config, t0_ns, self._stop, ready, settle=False)


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (an MN holds ~20 descriptors); returns
    (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


async def _host_main(agent_cls: type[Agent], entries: list[tuple[AgentConfig, str | None]],
                     t0_ns: int) -> int:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def report(instance: Instance, kind: str, detail: Any) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (instance, kind, detail))

    instances = [Instance(agent_cls, config, netns, report) for config, netns in entries]
    stopping: list[int] = []

    def on_signal(sig: int) -> None:
        if not stopping:
            stopping.append(sig)
            for inst in instances:
                inst.stop(sig)
            events.put_nowait((None, "signal", sig))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    for inst in instances:
        inst.start()

    running = set(instances)
    ready = 0
    failures: list[str] = []
    while running:
        inst, kind, detail = await events.get()
        if kind == "signal":
            continue
        if kind == "ready":
            ready += 1
            if ready == len(instances) and not failures and not stopping:
                settle_heap()
                sys.stdout.write(json.dumps({
                    "ready": True, "pid": os.getpid(),
                    "startup_ms": round((time.monotonic_ns() - t0_ns) / 1e6, 3),
                    "agents": [{"node": i.config.node, "agent": i.config.agent, "control": i.config.control,
                                "startup_ms": round(i.startup_ms, 3)} for i in instances]}) + "\n")
                sys.stdout.flush()
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            continue
        running.discard(inst)
        if kind == "failed":
            print(detail, file=sys.stderr, flush=True)
            if ready < len(instances) and not failures:
                failures.append(detail)     # a start failed: the host as a whole failed
                for other in running:
                    other.stop()
            elif inst.agent is None:
                failures.append(detail)
        # kind == "ended": the agent stopped as asked
    for inst in instances:
        inst.thread.join()
    if failures:
        return 2 if all(": config error:" in f for f in failures) else 1
    return 0


def run_host(agent_cls: type[Agent], argv: list[str] | None = None) -> int:
    """Main program of an agent host; returns the exit status."""
    t0_ns = _process_start_ns()
    parser = argparse.ArgumentParser(description=f"mip6bench {agent_cls.role} agent host")
    parser.add_argument("--config", required=True, help="host config file (JSON)")
    args = parser.parse_args(argv)

    def body() -> int:
        entries = load_host_config(args.config)
        start_tracing()
        raise_fd_limit()
        with asyncio.Runner() as runner:
            return runner.run(_host_main(agent_cls, entries, t0_ns))

    return exit_status(lambda: f"{agent_cls.role} agent host", body)
