"""Agents in nodes: launch with a config file, wait for the ready line, talk over the
control socket, stop, restart, and keep their event logs in the run directory."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mip6bench import REPO_ROOT
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

    def launch(self) -> "AgentProcess":
        """Start the agent without waiting for its ready line (see wait_ready)."""
        # The options carry PSKs, keys and the RADIUS secret: 0600 from creation.
        write_secret_file(self.config_path, json.dumps({
            "node": self.node.name, "agent": self.agent, "control": self.control_path,
            "events": str(self.events_path), "options": self.options}, indent=1),
            replace=True)
        python = [sys.executable]
        if self.agent in profiled_agents():
            # cProfile writes the profile when the agent exits (also on SIGTERM: the agent
            # returns from its main), next to its event log.
            python += ["-m", "cProfile", "-o", str(self.profile_path)]
        self.proc = NodeProcess(self.node, [*python, str(self.script), "--config",
                                            str(self.config_path)],
                                f"agent {self.agent}", self.run,
                                ready=lambda line: line.startswith('{"ready"'),
                                log_path=self.stderr_path).launch()
        self.starts += 1
        return self

    def wait_ready(self, timeout: float = 10.0) -> "AgentProcess":
        self.proc.wait_ready(timeout)
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
        return control.request(self.control_path, cmd, timeout=scaled(timeout), **args)

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
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, TypeError):
            return None
        return None
