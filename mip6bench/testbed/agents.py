"""Agents in nodes: launch with a config file, wait for the ready line, talk over the
control socket, stop, restart, and keep their event logs in the run directory."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from mip6bench import REPO_ROOT
from mip6bench.errors import Mip6benchError
from mip6bench.runtime import control
from mip6bench.secretfiles import write_secret_file
from mip6bench.slowdown import scaled
from mip6bench.testbed.context import RunContext
from mip6bench.testbed.process import NodeProcess

AGENTS_DIR = REPO_ROOT / "agents"
PROFILE_ENV = "MIP6BENCH_PROFILE"  # agent names to run under cProfile, e.g. "fw,ha"


def profiled_agents() -> set[str]:
    """The agents (by agent name: fw, ha, paa, aaa, mn, ...) that run under cProfile:
    MIP6BENCH_PROFILE, comma-separated; each writes logs/<node>-<agent>.prof."""
    import os
    return {a.strip() for a in os.environ.get(PROFILE_ENV, "").split(",") if a.strip()}


def to_local_clock(reply: Any, to_local: Callable[[int], int]) -> Any:
    """A control reply from an agent on another clock, with every event time (`t_ns`,
    at any depth) moved onto the controller's by `to_local`."""
    if isinstance(reply, dict):
        return {k: (to_local(v) if k == "t_ns" and isinstance(v, int) else to_local_clock(v, to_local))
                for k, v in reply.items()}
    if isinstance(reply, list):
        return [to_local_clock(v, to_local) for v in reply]
    return reply


class AgentProcess:
    def __init__(self, node, agent: str, role: str, options: dict[str, Any], run: RunContext):
        self.node, self.agent, self.role, self.options, self.run = node, agent, role, options, run
        stem = f"{node.name}-{agent}"
        self.config_path = run.state_dir / f"{stem}.json"
        self.control_path = str(run.state_dir / f"{stem}.sock")
        self.events_path = run.logs_dir / f"{stem}.events.jsonl"
        self.stderr_path = run.logs_dir / f"{stem}.stderr"
        self.profile_path = run.logs_dir / f"{stem}.prof"
        self.proc: NodeProcess | None = None
        self.starts = 0

    @property
    def script(self) -> Path:
        return AGENTS_DIR / f"{self.role}.py"

    def start(self, timeout: float = 10.0) -> "AgentProcess":
        return self.launch().wait_ready(timeout)

    @property
    def helper(self):
        """The helper of the node's server (cluster mode), or None: this kernel."""
        return getattr(self.node, "helper", None)

    def launch(self) -> "AgentProcess":
        """Start the agent without waiting for its ready line (see wait_ready)."""
        if self.helper is not None:
            return self._launch_remote()
        # The options carry PSKs, keys and the RADIUS secret: 0600 from creation.
        write_secret_file(self.config_path, json.dumps({
            "node": self.node.name, "agent": self.agent, "control": self.control_path,
            "events": str(self.events_path), "options": self.options}, indent=1),
            replace=True)
        profile = []
        if self.agent in profiled_agents():
            # The agent writes its profile next to its event log when the stop signal
            # arrives, before its teardown (which may outlast the stop's grace under load).
            profile = ["--profile", str(self.profile_path)]
        self.proc = NodeProcess(self.node, [sys.executable, str(self.script), "--config",
                                            str(self.config_path), *profile],
                                f"agent {self.agent}", self.run,
                                ready=lambda line: line.startswith('{"ready"'),
                                log_path=self.stderr_path).launch()
        self.starts += 1
        return self

    def _launch_remote(self) -> "AgentProcess":
        """The agent on another server, started by its helper: the same config (as data,
        its files with it), its control socket forwarded to control_path here, its event
        log streamed into events_path here."""
        from mip6bench.testbed.serverd import DIR_TOKEN, RemoteProcess, remote_config

        stem, files = f"{self.node.name}-{self.agent}", {}
        config = remote_config({"node": self.node.name, "agent": self.agent,
                                "control": f"{DIR_TOKEN}{stem}.sock",
                                "events": f"{DIR_TOKEN}{stem}.events.jsonl",
                                "options": self.options}, self.run.state_dir, files)
        self.helper.stream_to(f"{stem}.events.jsonl", self.events_path)
        self.proc = RemoteProcess(self.helper, self.node, stem, f"agents/{self.role}.py", config,
                                  [f"{stem}.events.jsonl"], f"agent {self.agent}", files).launch()
        self.starts += 1
        return self

    def wait_ready(self, timeout: float = 10.0) -> "AgentProcess":
        self.proc.wait_ready(timeout)
        if self.helper is not None:
            stem = f"{self.node.name}-{self.agent}"
            self.helper.forward(self.control_path, self.helper.remote_path(f"{stem}.sock"))
            self.helper.check_forwarding(self.control_path)
        return self

    @property
    def startup_ms(self) -> float | None:
        if not self.proc or not self.proc.ready_ns:
            return None
        return (self.proc.ready_ns - self.proc.start_ns) / 1e6

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def request(self, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
        # Deadlines of waits for events (`within`) and of the answer stretch on a slow machine.
        if isinstance(args.get("within"), (int, float)):
            args["within"] = scaled(args["within"])
        if self.helper is None or self.helper.clock is None:
            return control.request(self.control_path, cmd, timeout=scaled(timeout), **args)
        # An agent on another server keeps its events on its own clock: a time asked
        # about goes onto it, and the times in the answer come back onto the controller's
        # (as its streamed event log does).
        if isinstance(args.get("after_ns"), int):
            args["after_ns"] = self.helper.to_remote(args["after_ns"])
        return to_local_clock(control.request(self.control_path, cmd, timeout=scaled(timeout), **args),
                              self.helper.to_local)

    def stop(self, grace: float = 5.0) -> int | None:
        return self.proc.stop(grace) if self.proc else None

    def restart(self, timeout: float = 10.0) -> "AgentProcess":
        """Stop (SIGTERM, the agent tears its state down) and start again: the same
        options, config file, node and log files; the new pid is recorded in the run."""
        self.stop()
        return self.start(timeout)

    def kill(self) -> int | None:
        """SIGKILL, as a crash: the agent tears nothing down, whatever it put into the
        kernel stays; returns the pid it had. `start()` brings it back (a restart)."""
        pid = self.pid
        if self.proc is not None:
            self.proc.kill()
        return pid

    def rss_kb(self) -> int | None:
        if self.helper is not None:   # its pid is on another server: asked there
            try:
                return self.helper.request("rss", pid=self.pid) if self.pid else None
            except Mip6benchError:
                return None
        from mip6bench.runtime.memory import rss_kb
        return rss_kb(self.pid) if self.pid else None


class AgentHost:
    """One MN host process (agents/mnhost.py) running the agents of several MN nodes,
    each in its node's namespace: launched inside the first node's namespace, recorded
    in the run by pid (with the nodes it hosts), waited for on its one ready line."""

    SCRIPT = AGENTS_DIR / "mnhost.py"

    def __init__(self, index: int, members: list["HostedAgent"], run: RunContext):
        self.index, self.members, self.run = index, members, run
        stem = f"mnhost{index}"
        self.config_path = run.state_dir / f"{stem}.json"
        self.stderr_path = run.logs_dir / f"{stem}.stderr"
        self.profile_path = run.logs_dir / f"{stem}.prof"
        self.proc: NodeProcess | None = None
        self.ready: dict[str, Any] | None = None
        for m in members:
            m.host = self

    @property
    def nodes(self) -> list[str]:
        return [m.node.name for m in self.members]

    def launch(self) -> "AgentHost":
        helper = getattr(self.members[0].node, "helper", None)
        if helper is not None:
            return self._launch_remote(helper)
        write_secret_file(self.config_path, json.dumps({"agents": [
            {"node": m.node.name, "agent": m.agent, "control": m.control_path,
             "events": str(m.events_path), "options": m.options,
             "netns": f"/proc/{m.node.pid}/ns/net"} for m in self.members]}, indent=1), replace=True)
        python = [sys.executable]
        if "mn" in profiled_agents():
            python += ["-m", "cProfile", "-o", str(self.profile_path)]
        first, last = self.nodes[0], self.nodes[-1]
        self.proc = NodeProcess(self.members[0].node, [*python, str(self.SCRIPT), "--config",
                                                       str(self.config_path)],
                                f"MN host {self.index} ({first}..{last}, {len(self.members)} MNs)", self.run,
                                ready=lambda line: line.startswith('{"ready"'),
                                log_path=self.stderr_path).launch()
        return self

    def _launch_remote(self, helper) -> "AgentHost":
        """The host on another server (every member there), started by its helper."""
        from mip6bench.testbed.serverd import DIR_TOKEN, RemoteProcess, remote_config

        files: dict[str, str] = {}
        agents, streams = [], []
        for m in self.members:
            stem = f"{m.node.name}-{m.agent}"
            agents.append({"node": m.node.name, "agent": m.agent, "control": f"{DIR_TOKEN}{stem}.sock",
                           "events": f"{DIR_TOKEN}{stem}.events.jsonl", "options": m.options,
                           "netns": f"/proc/{m.node.pid}/ns/net"})
            streams.append(f"{stem}.events.jsonl")
            helper.stream_to(f"{stem}.events.jsonl", m.events_path)
        config = remote_config({"agents": agents}, self.run.state_dir, files)
        first, last = self.nodes[0], self.nodes[-1]
        self.proc = RemoteProcess(helper, self.members[0].node, f"mnhost{self.index}", "agents/mnhost.py",
                                  config, streams, f"MN host {self.index} ({first}..{last})", files).launch()
        return self

    def wait_ready(self, timeout: float) -> "AgentHost":
        if self.ready is not None:
            return self
        self.proc.wait_ready(timeout)
        self.ready = json.loads(self.proc.ready_line)
        helper = getattr(self.members[0].node, "helper", None)
        if helper is not None:
            for m in self.members:
                helper.forward(m.control_path, helper.remote_path(f"{m.node.name}-{m.agent}.sock"))
            helper.check_forwarding(self.members[0].control_path)
        return self

    def startup_ms(self, node: str) -> float | None:
        for entry in (self.ready or {}).get("agents", []):
            if entry["node"] == node:
                return entry["startup_ms"]
        return None

    def stop(self, grace: float = 5.0) -> int | None:
        # Every MN in it tears its own state down; a host needs longer than one MN.
        return self.proc.stop(grace + 0.05 * len(self.members)) if self.proc else None


class HostedAgent(AgentProcess):
    """An MN agent that runs in an AgentHost: the same config, control socket and event
    log as an agent process of its own; its pid is its host's. Stopping it stops the
    host (every MN in it); it cannot be killed or restarted on its own."""

    host: AgentHost

    def launch(self) -> "AgentProcess":
        raise Mip6benchError(f"the MN agent on {self.node.name} runs in an MN host; it starts with its host")

    def wait_ready(self, timeout: float = 10.0) -> "AgentProcess":
        self.host.wait_ready(timeout)
        return self

    @property
    def startup_ms(self) -> float | None:
        return self.host.startup_ms(self.node.name)

    @property
    def pid(self) -> int | None:
        return self.host.proc.pid if self.host.proc else None

    def alive(self) -> bool:
        return self.host.proc is not None and self.host.proc.alive()

    def stop(self, grace: float = 5.0) -> int | None:
        return self.host.stop(grace)

    def _alone(self, what: str):
        raise Mip6benchError(f"cannot {what} the MN agent on {self.node.name} alone: it runs in MN host "
                             f"{self.host.index} with {len(self.host.members) - 1} other MNs",
                             "run with mns_per_agent=1 (one process per MN)")

    def restart(self, timeout: float = 10.0) -> "AgentProcess":
        self._alone("restart")

    def start(self, timeout: float = 10.0) -> "AgentProcess":
        self._alone("start")

    def kill(self) -> int | None:
        self._alone("kill")
