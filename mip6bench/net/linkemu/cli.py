"""The relay's command line: `python -m mip6bench.net.linkemu --a NAME@NETNS --b ...`
(see the package's docstring for the protocol on stdin and stdout)."""
from __future__ import annotations

import os
import signal
import sys

if False:  # annotations only: `typing` costs ~2 ms of cold start
    from typing import Any

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.net.shaping import DEFAULT_LIMIT, DISTRIBUTIONS, LinkParams, Shaper
from mip6bench.net.linkemu.tap import PR_SET_TIMERSLACK, RELAY_NICE, Endpoint, _libc_call, create_link
from mip6bench.net.linkemu.relay import PARAM_OPTIONS, Relay, TapGone, _json_line, _num, _Stop

EXIT_OK, EXIT_ENV, EXIT_USAGE = 0, 1, 2



def build_parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, not usage + message
            raise ParameterError(message, "see --help")

    p = Parser(prog="python -m mip6bench.net.linkemu",
               description="User-space emulated point-to-point link between two TAPs.")
    p.add_argument("--a", required=True, metavar="NAME@NETNS",
                   help="end A: interface name @ pid:PID | netns name | /path (or NAME "
                        "alone for the relay's own netns)")
    p.add_argument("--b", required=True, metavar="NAME@NETNS", help="end B, same form")
    p.add_argument("--delay-ms", default="0", help="one-way delay, both directions")
    p.add_argument("--jitter-ms", default="0", help="jitter (netem semantics)")
    p.add_argument("--loss-pct", default="0", help="Bernoulli loss, percent")
    p.add_argument("--rate-mbit", default="0", help="rate limit, Mbit/s (0: none)")
    p.add_argument("--limit", default=str(DEFAULT_LIMIT), help="queue limit, packets")
    p.add_argument("--distribution", default="uniform", choices=DISTRIBUTIONS)
    for d, label in (("ab", "A->B"), ("ba", "B->A")):
        for opt in PARAM_OPTIONS:
            p.add_argument(f"--{d}-{opt}", default=None, help=f"{opt} for {label} only")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (loss, jitter)")
    p.add_argument("--carrier", choices=("on", "off"), default="on",
                   help="initial carrier state")
    p.add_argument("--up", action=argparse.BooleanOptionalAction, default=True,
                   help="bring both interfaces administratively up (default: yes)")
    return p


def params_from_args(args: Any) -> tuple[LinkParams, LinkParams]:
    base = {}
    for opt, field in PARAM_OPTIONS.items():
        raw = getattr(args, opt.replace("-", "_"))
        base[field] = raw if field == "distribution" else _num("--" + opt, raw)
    out = []
    for d in ("ab", "ba"):
        spec = dict(base)
        for opt, field in PARAM_OPTIONS.items():
            raw = getattr(args, f"{d}_{opt.replace('-', '_')}")
            if raw is not None:
                spec[field] = raw if field == "distribution" else _num(f"--{d}-{opt}", raw)
        try:
            out.append(LinkParams(**spec))
        except ParameterError as exc:
            raise ParameterError(f"{d}: {exc.args[0]}", exc.fix) from None
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        a = Endpoint.parse(args.a, "--a")
        b = Endpoint.parse(args.b, "--b")
        p_ab, p_ba = params_from_args(args)
        carrier = args.carrier == "on"
        fd_a, fd_b, info = create_link(a, b, up=args.up, carrier=carrier)
    except Mip6benchError as exc:
        print(f"linkemu: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ParameterError) else EXIT_ENV

    def on_term(_sig, _frame):
        raise _Stop()

    # Until here a SIGTERM simply kills the process, which is just as clean: the
    # kernel closes the TAP fds and the interfaces go.
    code = EXIT_OK
    try:
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGHUP, on_term)
        try:
            _libc_call("prctl", PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except OSError:
            pass  # only costs accuracy (up to 50 us per wakeup)
        try:
            # A link is part of the network, not one more process: when the machine is
            # busy (agents, capture, traffic generators) frames must not wait for a
            # time slice. A nice level, not a real-time class, so a saturated relay
            # cannot starve the rest of the machine.
            os.setpriority(os.PRIO_PROCESS, 0, RELAY_NICE)
        except OSError:
            pass  # without CAP_SYS_NICE: normal priority, only accuracy suffers
        # Per-link RNG streams: the same seed on two links still gives them different
        # (but reproducible) loss and jitter sequences.
        label = f"{a.name}>{b.name}"
        relay = Relay(fd_a, fd_b, Shaper(p_ab, args.seed, label + "/ab"),
                      Shaper(p_ba, args.seed, label + "/ba"), carrier=carrier)
        os.write(1, _json_line({"ready": True, "pid": os.getpid(), **info,
                                "carrier": args.carrier}))
        relay.run()
    except (_Stop, KeyboardInterrupt, BrokenPipeError):
        pass
    except TapGone:
        print(f"linkemu: error: interface {a.spec()} or {b.spec()} disappeared (its "
              "namespace was deleted or the link removed); relay stopped",
              file=sys.stderr)
        code = EXIT_ENV
    finally:
        # Closing the last fd of a non-persistent TAP deletes the interface.
        os.close(fd_a)
        os.close(fd_b)
    return code
