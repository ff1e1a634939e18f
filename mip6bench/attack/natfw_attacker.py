"""NATFW CREATEs from the attacker node, each with a token of its own kind: run in the
attacker's namespace by experiments/attacks.py (the project's GIST and NATFW initiator,
so the firewall gets well-formed signalling that differs only in its authorization).

    python -m mip6bench.attack.natfw_attacker '{"source": addr, "cn": addr,
        "home_address": addr, "within": 10, "tokens": {"no-token": null, "forged": hex, ...}}'

One CREATE session per entry of "tokens" (null: no SESSION_AUTH object), for the
Mobility Header flow from `source` to `cn` naming `home_address`. Prints one JSON line
when every session has its answer (or `within` s passed):
{"<name>": "ready" | "<severity>/<code>" | "no answer", ...}.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter

from mip6bench.gist.core import GistConfig
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import Mri, NiCore, SessionFailed, SessionReady
from mip6bench.runtime.gist import GistService
from mip6bench.runtime.natfw import NatfwService


class MiniAgent:
    """What GistService and NatfwService use of an Agent."""

    def __init__(self):
        self.counters: Counter = Counter()
        self.tasks: set = set()

    def emit(self, event: str, **fields) -> None:
        pass

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def fatal(self, message: str) -> None:
        raise RuntimeError(message)

    def spawn(self, coro, name: str):
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


async def main(spec: dict) -> dict:
    agent = MiniAgent()
    names = {}
    answers: dict[str, str] = {}
    done = asyncio.Event()

    def on_effect(effect) -> None:
        name = names.get(getattr(effect, "session_id", None))
        if name is None or name in answers:
            return
        if isinstance(effect, SessionReady):
            answers[name] = "ready"
        elif isinstance(effect, SessionFailed):
            answers[name] = (f"{effect.info.severity:#x}/{effect.info.code:#x}" if effect.info
                             else str(effect.reason))
        if len(answers) == len(names):
            done.set()

    gist = GistService(agent, GistConfig(peer_identity=b"attacker", addresses=(spec["source"],)))
    ni = NiCore(rto=1.0, max_retransmit=2)
    service = NatfwService(agent, gist, ni, apply=on_effect)
    await gist.start()
    now = service.now()
    for name, token in spec["tokens"].items():
        sid = os.urandom(16)
        names[sid] = name
        flow = w.Mip6Flow(w.MIP6_MH, 2, spec["home_address"])
        service.execute(ni.create(sid, Mri(spec["source"], spec["cn"], 135), 60, now, mip6=flow,
                                  token=bytes.fromhex(token) if token else None))
    try:
        await asyncio.wait_for(done.wait(), spec.get("within", 10))
    except asyncio.TimeoutError:
        pass
    await service.aclose()
    return {name: answers.get(name, "no answer") for name in spec["tokens"]}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))) + "\n")
