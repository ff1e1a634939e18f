"""The current run: its id, its record of resources (for scoped cleanup) and the
directory its artifacts go to. One per controller process.

The testbed (`mip6bench run`/`cli`) opens a run explicitly; when the topology is used on
its own (`mn --custom topologies/operational.py`), the first node opens one lazily.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mip6bench import REPO_ROOT
from mip6bench.testbed.registry import RunRecord, new_run_id


@dataclass
class RunContext:
    run_id: str
    record: RunRecord
    out_dir: Path  # artifacts: manifest, events, metrics, captures, logs
    link_hubs: Any = None  # linkhub.HubPool of the run's relay links (testbed.links)

    @property
    def state_dir(self) -> Path:
        """Short-lived files of the run: agent configs and control sockets."""
        return self.record.dir

    @property
    def logs_dir(self) -> Path:
        path = self.out_dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path


_current: RunContext | None = None


def open_run(experiment: str, out_dir: str | os.PathLike | None = None,
             run_id: str | None = None) -> RunContext:
    global _current
    run_id = run_id or new_run_id(experiment)
    record = RunRecord(run_id).create(experiment)
    out = Path(out_dir) if out_dir else REPO_ROOT / "results" / experiment / run_id
    out.mkdir(parents=True, exist_ok=True)
    _current = RunContext(run_id, record, out)
    return _current


def current_run() -> RunContext:
    return _current if _current is not None else open_run("mn")


def close_run() -> None:
    global _current
    _current = None
