"""A NATFW initiator that floods: `count` CREATEs for distinct sessions from one node,
without a token, for tests/netns/test_nsis_traversal.py (run it in a node's namespace;
no tests are collected here).

    python tests/netns/natfw_flood.py '{"source": addr, "cn": addr, "count": 200,
                                        "home_address": addr, "within": 20}'

Prints one JSON line when every session has its answer (or `within` s passed):
{"sent": n, "answers": {"<class>/<code>": k, "ready": k, "no answer": k}}.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mip6bench.attack.natfw_attacker import MiniAgent  # noqa: E402
from mip6bench.gist.core import GistConfig  # noqa: E402
from mip6bench.natfw import wire as w  # noqa: E402
from mip6bench.natfw.core import Mri, NiCore, SessionFailed, SessionReady  # noqa: E402
from mip6bench.runtime.gist import GistService  # noqa: E402
from mip6bench.runtime.natfw import NatfwService  # noqa: E402


async def main(spec: dict) -> dict:
    agent = MiniAgent()
    answers: Counter = Counter()
    done = asyncio.Event()
    count = spec["count"]

    def on_effect(effect) -> None:
        if isinstance(effect, SessionReady):
            answers["ready"] += 1
        elif isinstance(effect, SessionFailed):
            answers[f"{effect.info.severity:#x}/{effect.info.code:#x}" if effect.info else effect.reason] += 1
        if sum(answers.values()) >= count:
            done.set()

    gist = GistService(agent, GistConfig(peer_identity=b"flooder", addresses=(spec["source"],)))
    ni = NiCore(rto=1.0, max_retransmit=2)
    service = NatfwService(agent, gist, ni, apply=on_effect)
    await gist.start()
    now = service.now()
    for _ in range(count):
        flow = w.Mip6Flow(w.MIP6_MH, 2, spec["home_address"])
        service.execute(ni.create(os.urandom(16), Mri(spec["source"], spec["cn"], 135), 60, now, mip6=flow))
    try:
        await asyncio.wait_for(done.wait(), spec.get("within", 20))
    except asyncio.TimeoutError:
        answers["no answer"] = count - sum(answers.values())
    await service.aclose()
    return {"sent": count, "answers": dict(answers)}


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    sys.stdout.write(json.dumps(result) + "\n")
