"""What a run created, written down as it is created, so that it can be removed later
even if the run dies: `mip6bench clean` removes exactly what runs recorded and nothing
else (never Mininet's machine-wide cleanup, which kills processes by name).

Each run has a directory /run/mip6bench/<run-id>/ with `resources.jsonl`: one line per
resource — {"kind": "process", "pid", "start", "what"}, {"kind": "link", "name",
"netns"}, {"kind": "netns", "name"} — and `controller.json` naming the process that owns
the run. A pid is only signalled if /proc/<pid>/stat still shows the recorded start time,
so a recycled pid is never hit.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mip6bench.fdwait import wait_readable
from mip6bench.secretfiles import private_dir
from mip6bench.slowdown import scaled

RUN_ROOT = Path(os.environ.get("MIP6BENCH_RUN_ROOT", "/run/mip6bench"))


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone
    (a zombie counts as gone: it has exited and only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def same_process(pid: int, start: int | None) -> bool:
    return start is not None and process_start(pid) == start


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait for a process (not necessarily our child) to exit, on a pidfd: no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return wait_readable(fd, timeout)
    finally:
        os.close(fd)


def terminate(pid: int, start: int | None, grace: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds; True once the process is gone."""
    if not same_process(pid, start):
        return True
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if grace and wait_exit(pid, grace):
        return True
    if same_process(pid, start):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return True
    return wait_exit(pid, 3.0)


_CREATED_HERE: list[str] = []   # run ids whose records this process created


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def created_here() -> list[str]:
    """The run ids whose records this process created (its own runs, not other jobs'
    on the same machine: what a check for leftovers of this process looks at)."""
    return list(_CREATED_HERE)


@dataclass
class RunRecord:
    run_id: str
    root: Path = RUN_ROOT
    dir: Path = field(init=False)

    def __post_init__(self):
        self.dir = self.root / self.run_id

    def create(self, what: str) -> "RunRecord":
        # Agent configs (keys), control sockets, secrets/: only the owner may enter.
        private_dir(self.dir)
        me = os.getpid()
        _CREATED_HERE.append(self.run_id)
        (self.dir / "controller.json").write_text(json.dumps(
            {"pid": me, "start": process_start(me), "what": what, "created": time.time()}))
        return self

    def add(self, kind: str, **info: Any) -> None:
        with open(self.dir / "resources.jsonl", "a") as f:
            f.write(json.dumps({"kind": kind, **info}) + "\n")

    def add_process(self, pid: int, what: str) -> None:
        self.add("process", pid=pid, start=process_start(pid), what=what)

    def resources(self) -> list[dict[str, Any]]:
        path = self.dir / "resources.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-write
        return out

    def controller_alive(self) -> bool:
        try:
            info = json.loads((self.dir / "controller.json").read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return same_process(info["pid"], info.get("start"))

    def clean(self) -> list[str]:
        """Remove every recorded resource that still exists; returns what was removed."""
        removed = []
        resources = self.resources()
        # Processes first: SIGTERM to all, one shared grace period, then SIGKILL.
        procs = [r for r in resources if r["kind"] == "process" and same_process(r["pid"], r.get("start"))]
        for r in procs:
            try:
                os.kill(r["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + scaled(3.0)
        for r in procs:
            if not wait_exit(r["pid"], max(0.0, deadline - time.monotonic())):
                terminate(r["pid"], r.get("start"), grace=0.0)
            removed.append(f"process {r['pid']} ({r.get('what', '')})")
        for r in resources:
            if r["kind"] == "link" and r.get("netns") is None:
                if subprocess.run(["ip", "link", "del", r["name"]], capture_output=True).returncode == 0:
                    removed.append(f"link {r['name']}")
            elif r["kind"] == "netns":
                if subprocess.run(["ip", "netns", "del", r["name"]], capture_output=True).returncode == 0:
                    removed.append(f"netns {r['name']}")
        shutil.rmtree(self.dir, ignore_errors=True)
        return removed


def all_runs(root: Path = RUN_ROOT) -> list[RunRecord]:
    if not root.exists():
        return []
    return [RunRecord(p.name, root) for p in sorted(root.iterdir()) if p.is_dir()]


def clean_all(root: Path = RUN_ROOT) -> tuple[list[str], list[str]]:
    """Clean every run whose controller is gone. Returns (removed, live run ids)."""
    removed, live = [], []
    for run in all_runs(root):
        if run.controller_alive():
            live.append(run.run_id)
            continue
        removed += [f"{run.run_id}: {item}" for item in run.clean()]
    return removed, live
