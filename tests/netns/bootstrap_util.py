"""Helpers of the bootstrap namespace tests (no tests collected here). Every wait is the
agent's own `wait-event` control command, which blocks in the agent until the event is
logged: no polling."""
from __future__ import annotations

from mip6bench.runtime.eventlog import read_events


def topology(mipv6: str = "off", **params) -> dict:
    """Topology parameters; without MIPv6 agents unless `mipv6` says otherwise."""
    return {"mipv6": mipv6, **params}


def wait_event(agent, event: str, after_ns: int, within: float = 5.0, **match) -> dict:
    """The first `event` (fields `match`) the agent logs at or after `after_ns`."""
    return agent.request("wait-event", timeout=within + 2, event=event, match=match,
                         after_ns=after_ns, within=within)


def agent_events(tb, node: str, agent: str, name: str | None = None) -> list[dict]:
    path = tb.run.logs_dir / f"{node}-{agent}.events.jsonl"
    return [e for e in read_events(path) if name is None or e["event"] == name]
