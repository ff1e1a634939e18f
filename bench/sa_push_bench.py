"""The home agent's end of an SA push, arrival -> SA installed -> ACK, on loopback (no
root needed): `.venv/bin/python bench/sa_push_bench.py [--pushes 30] [--gap-ms 200]
[--same-epoch] [--json]`.

A child process runs what the HA agent runs for SA distribution: the SA channel
(mip6bench.runtime.sa_channel.SaChannelHa on UDP, the agents' event loop, an event log
file, the HA's Mobile IPv6 core told of each change as agents/ha.py does), after the
agents' crypto warm-up. This process plays the PAA: it pushes one SA every `gap-ms`
(idle time between pushes: 200 ms by default, about what the HA has been idle when the
bootstrap's push arrives), each from a fresh PAA epoch unless --same-epoch (in the
default scenario the push is the first PUSH of the PAA's run). A fresh PAA end first sends
its HELLO, as the PAA agent does when it starts, and waits for the ACK, so the HA holds
the epoch's key before the push; with --no-hello it does not (the HA derives that key on
the push, as before HELLO existed). Per push:

  * push -> SA installed: from just before the push's sendto to the HA's
    sadist.sa_installed event (CLOCK_MONOTONIC in both processes);
  * push -> ACK: to the ACK's arrival at this socket (SO_TIMESTAMPNS, the kernel's
    receive time), i.e. the HA's arrival -> ACK sent plus two loopback deliveries.

Prints the medians (and p90, min, max) and a JSON summary with --json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bu_ba_bench import summary  # noqa: E402  (bench/ is this script's directory)

PSK = bytes(range(32))
LOOPBACK = "::1"


# ---- the HA end (child process) ------------------------------------------------------

async def _serve(events_path: str) -> None:
    from mip6bench import crypto
    from mip6bench.mipv6.ha import HomeAgent
    from mip6bench.mipv6.sa import SAStore
    from mip6bench.runtime.driver import CoreDriver
    from mip6bench.runtime.eventlog import EventLog
    from mip6bench.runtime.sa_channel import SaChannelHa

    log = EventLog(events_path, "ha", "ha")
    store = SAStore()
    core = HomeAgent("2001:db8:1::1", ["2001:db8:1::/64"], store)
    driver = CoreDriver(send=lambda tx: None, on_timer=core.handle_timer, emit=log.emit,
                        apply=lambda effect: None)

    def on_change(kind, spi, sa, reason, effect):   # as agents/ha.py's _on_sa_change
        driver.execute(core.sa_distribution_changed(kind, spi, sa is not None,
                                                    getattr(effect, "hoa", None), reason,
                                                    getattr(effect, "successor", False),
                                                    driver.now()))

    channel = SaChannelHa({LOOPBACK: PSK}, store, emit=log.emit, port=0, bind=LOOPBACK,
                          on_change=on_change)
    await channel.open()
    crypto.warm_up()
    loop = asyncio.get_running_loop()
    log.write_after_callback(loop)      # as the agents' event logs
    stop = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.done() or stop.set_result(None))
    sys.stdout.write(json.dumps({"port": channel._sock.port}) + "\n")
    sys.stdout.flush()
    await stop
    await channel.close()
    log.close()


def serve(events_path: str) -> int:
    from mip6bench.runtime.agent import precise_event_loop
    with asyncio.Runner(loop_factory=precise_event_loop) as runner:
        runner.run(_serve(events_path))
    return 0


# ---- the PAA end (this process) --------------------------------------------------------

def _realtime_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of many samples."""
    best = None
    for _ in range(200):
        a = time.monotonic_ns()
        r = time.time_ns()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) // 2)
    return best[1]


def _await_ack(sock: socket.socket, paa, what: str) -> int | None:
    """Receive the HA end's ACK on sock, hand it to the PAA end; its kernel receive time
    (CLOCK_REALTIME ns), or None."""
    from mip6bench.measure.streams import kernel_stamp
    from mip6bench.sansio import Event

    data, anc, _flags, addr = sock.recvmsg(4096, 256)
    out = paa.receive(data, addr[0], addr[1], time.monotonic())
    if not any(isinstance(a, Event) and a.name == "sadist.acked" and a.fields["status"] == 0
               for a in out):
        raise SystemExit(f"{what}: no ACK ok from the HA end: {out}")
    return kernel_stamp(anc)


def _exchange(sock: socket.socket, paa, actions: list, what: str) -> None:
    from mip6bench.sansio import Transmit
    push = next(a for a in actions if isinstance(a, Transmit))
    sock.sendto(push.data, (push.dst, push.port))
    _await_ack(sock, paa, what)


def run(pushes: int, gap_ms: float, same_epoch: bool, hello: bool = True) -> dict:
    from mip6bench.aaa.sadist import SaDistConfig, SaDistPaaCore, SaRecord
    from mip6bench.measure.streams import SO_TIMESTAMPNS
    from mip6bench.runtime.eventlog import read_events
    from mip6bench.sansio import Transmit

    with tempfile.TemporaryDirectory(prefix="sa-push-bench-") as tmp:
        events_path = os.path.join(tmp, "ha.events.jsonl")
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", events_path],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            if not line.startswith("{"):
                raise SystemExit("the HA end did not start (its error is above)")
            port = json.loads(line)["port"]
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((LOOPBACK, 0))
            sock.settimeout(5.0)
            offset = _realtime_offset_ns()
            paa = None
            sent: dict[int, int] = {}
            acked: dict[int, int] = {}
            for i in range(pushes):
                if paa is None or not same_epoch:
                    paa = SaDistPaaCore(SaDistConfig({LOOPBACK: PSK}, port=port,
                                                     wall_offset=time.time() - time.monotonic()))
                    if hello:
                        _exchange(sock, paa, paa.hello(time.monotonic()), "HELLO")
                spi = 0x10000 + i
                record = SaRecord(spi, "hmac-sha1-96", "timestamp", 600.0,
                                  f"2001:db8:1::{0x1000 + i:x}", LOOPBACK, os.urandom(20),
                                  f"mn{i}@mip6bench.example", i + 1)
                time.sleep(gap_ms / 1000)
                now = time.monotonic()
                push = next(a for a in paa.sa_established(record, now) if isinstance(a, Transmit))
                t0 = time.monotonic_ns()
                sock.sendto(push.data, (push.dst, push.port))
                stamp = _await_ack(sock, paa, f"push {i}")
                sent[spi] = t0
                if stamp is not None:
                    acked[spi] = stamp - offset - t0
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait(timeout=10)
        installed = {e["spi"]: e["t_ns"] for e in read_events(events_path)
                     if e["event"] == "sadist.sa_installed"}
    to_install = [(installed[spi] - t0) / 1000 for spi, t0 in sent.items() if spi in installed]
    to_ack = [v / 1000 for v in acked.values()]
    return {"pushes": pushes, "gap_ms": gap_ms, "fresh_epoch": not same_epoch, "hello": hello,
            "push_to_installed_us": summary(to_install), "push_to_ack_us": summary(to_ack)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=30)
    parser.add_argument("--gap-ms", type=float, default=200.0, help="idle time before each push")
    parser.add_argument("--same-epoch", action="store_true",
                        help="one PAA epoch for all pushes (the HA derives its key once)")
    parser.add_argument("--no-hello", action="store_true",
                        help="no HELLO from a fresh PAA end before its push")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", metavar="EVENTS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve)
    if args.pushes < 1 or args.gap_ms < 0:
        parser.error("--pushes must be >= 1 and --gap-ms >= 0")
    result = run(args.pushes, args.gap_ms, args.same_epoch, hello=not args.no_hello)
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("push_to_installed_us", "push_to_ack_us"):
            s = result[key]
            print(f"{key:22s} median {s.get('median')} p90 {s.get('p90')} min {s.get('min')} "
                  f"max {s.get('max')} (n={s['n']}, gap {args.gap_ms:g} ms, "
                  f"{'fresh epoch each' if not args.same_epoch else 'one epoch'}"
                  f"{', no HELLO' if args.no_hello else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
