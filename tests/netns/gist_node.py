"""A GistService in a process of its own, for tests/netns/test_gist_runtime.py (run it
inside a namespace with `ip netns exec`; no tests are collected here).

    python tests/netns/gist_node.py '{"identity": "F", "addresses": [...], "nslps": [33],
                                      "intercept": ["fw-q"], "rs_validity_ms": 30000,
                                      "ip_ttl": 64}'

stdout: JSON lines, {"ready": true} first, then every event the service emits
({"event": name, ...fields}) and every effect handed to an NSLP handler ({"effect":
"RecvMessage", ...}), each with "t" (time.monotonic()). stdin: JSON commands, one a line:
    {"cmd": "send", "nslp": 33, "sid": hex, "mri": {Mri fields}, "data": hex,
     "reliable": false}        (true: C-mode, with "c_mode": true in the spec)
    {"cmd": "counters"}  -> {"counters": {...}}
    {"cmd": "quit"}
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mip6bench.gist.core import GistConfig  # noqa: E402
from mip6bench.gist.wire import Mri  # noqa: E402
from mip6bench.runtime.gist import GistService  # noqa: E402


def out(record: dict) -> None:
    sys.stdout.write(json.dumps({"t": time.monotonic(), **record}, default=str) + "\n")
    sys.stdout.flush()


class MiniAgent:
    """What GistService uses of an Agent: emit()."""

    def emit(self, event: str, **fields) -> None:
        out({"event": event, **fields})


def effect_record(effect) -> dict:
    record = {"effect": type(effect).__name__}
    for name, value in vars(effect).items():
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, Mri):
            value = {"src": value.src, "dst": value.dst, "upstream": value.upstream}
        record[name] = value
    return record


async def main(spec: dict) -> None:
    config = GistConfig(peer_identity=spec["identity"].encode(),
                        addresses=tuple(spec["addresses"]),
                        rs_validity_ms=spec.get("rs_validity_ms", 30_000),
                        ip_ttl=spec.get("ip_ttl", 64))
    svc = GistService(MiniAgent(), config, intercept_interfaces=spec.get("intercept", ()),
                      c_mode=spec.get("c_mode", False))
    for nslp in spec.get("nslps", ()):
        svc.register_nslp(nslp, lambda effect: out(effect_record(effect)))
    await svc.start()
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    buffer = bytearray()

    def handle(req: dict) -> None:
        if req["cmd"] == "send":
            svc.send(req["nslp"], bytes.fromhex(req["sid"]), Mri(**req["mri"]),
                     bytes.fromhex(req["data"]), reliable=req.get("reliable", False))
        elif req["cmd"] == "counters":
            out({"counters": svc.counters()})
        elif req["cmd"] == "quit":
            done.done() or done.set_result(None)

    def command() -> None:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            done.done() or done.set_result(None)
            return
        buffer.extend(chunk)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            handle(json.loads(line))

    loop.add_reader(sys.stdin.fileno(), command)
    out({"ready": True, "pid": os.getpid()})
    try:
        await done
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await svc.aclose()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
