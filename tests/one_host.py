"""One host in a network namespace of its own (only loopback up, ::1), for tests that run
several PANA parties side by side on one address: the project's agents through the
testbed's AgentProcess (config 0600, ready line, control socket, event log, recorded
pids) and other programs (OpenPANA's) under `ip netns exec`. Needs root.

    with OneHost(tmp_path) as host:
        paa = host.start_agent("paa", "paa", {...})       # an AgentProcess
        proc = host.popen(["/path/openpac"], cwd=...)     # a subprocess.Popen, recorded
        host.events(paa, "pana.session_open")             # its event log so far

Everything it starts is recorded in a run of its own (/run/mip6bench/<run>/) and
removed on exit: processes by recorded pid, then the namespace."""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from types import SimpleNamespace

from mip6bench.runtime.eventlog import read_events
from mip6bench.testbed.agents import AgentProcess
from mip6bench.testbed.context import close_run, open_run

HOST = "::1"


class OneHost:
    def __init__(self, out_dir: Path, tag: str = "onehost"):
        self.ns = f"m6b-{tag[:8]}-{secrets.token_hex(3)}"
        self.run = open_run(f"test-{tag}", out_dir)
        self.agents: list[AgentProcess] = []
        self.procs: list[subprocess.Popen] = []
        self.holder: subprocess.Popen | None = None

    def __enter__(self) -> "OneHost":
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        self.run.record.add("netns", name=self.ns)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        # A process that lives in the namespace: the testbed's launcher (mnexec -a) joins
        # the namespace of a pid. It says when it is in there (ip netns exec has entered
        # the namespace before it runs the shell; exec keeps the pid): an agent started
        # before that would join the namespace `ip` started in, the host's.
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "sh", "-c", "echo in; exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.run.record.add_process(self.holder.pid, f"namespace holder {self.ns}")
        if self.holder.stdout.readline() != b"in\n":
            raise RuntimeError(f"could not start a process in namespace {self.ns}")
        here = os.stat(f"/proc/{self.holder.pid}/ns/net").st_ino
        assert here == os.stat(f"/run/netns/{self.ns}").st_ino != os.stat(
            "/proc/self/ns/net").st_ino, "the namespace holder is not in its namespace"
        self.node = SimpleNamespace(name=self.ns, pid=self.holder.pid)
        return self

    def start_agent(self, name: str, role: str, options: dict) -> AgentProcess:
        agent = AgentProcess(self.node, name, role, options, self.run).start()
        self.agents.append(agent)
        return agent

    def popen(self, argv: list[str], cwd: Path, log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.run.record.add_process(proc.pid, f"{argv[0]} in {self.ns}")
        self.procs.append(proc)
        return proc

    def sh(self, *argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], check=True,
                              capture_output=True, text=True).stdout

    @staticmethod
    def events(agent: AgentProcess, name: str | None = None) -> list[dict]:
        return [e for e in read_events(agent.events_path) if name is None or e["event"] == name]

    def __exit__(self, *exc) -> None:
        for agent in self.agents:
            agent.stop()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.run.record.clean()        # the holder and anything left, then the namespace
        if self.holder is not None:
            self.holder.wait()
        close_run()
