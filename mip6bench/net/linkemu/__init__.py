"""Emulated point-to-point links: a user-space TAP relay, and the netem alternative.

Where the kernel has sch_netem, a link is shaped with `tc qdisc ... netem`
(`netem_commands`). Where it does not (the development VMs), Mininet's TCLink would
silently leave links unshaped, so the testbed uses this module's relay instead:

    netns A                     relay process (its own netns)                  netns B
    NAME_A (TAP) <==fd==> [ Shaper a->b ] [ Shaper b->a ] <==fd==> (TAP) NAME_B

One relay process = one link. It creates two TAP devices (IFF_TAP|IFF_NO_PI,
non-persistent) in its own namespace, moves each into its target namespace renaming it
in the same netlink request, and relays Ethernet frames both ways through the pure
`shaping.Shaper` core. The TAPs live exactly as long as the process holds their file
descriptors: exit, crash or SIGKILL and both interfaces vanish.

Why create-then-move rather than opening /dev/net/tun from inside the target namespace:
a tun file descriptor pins the namespace it was opened in. Opened in the relay's own
namespace, the relay does not keep a dead node's namespace alive; when that namespace
is destroyed its TAP is deleted, the relay reads EBADFD and exits, which removes the
other end too (no half links).

Command line (one JSON line on stdout when ready, then line commands on stdin; every
command is answered by exactly one JSON line; stdin EOF or SIGTERM ends the relay):

    python -m mip6bench.net.linkemu --a h1-eth0@pid:1234 --b h2-eth0@le-x-b \\
        --delay-ms 10 --jitter-ms 1 --loss-pct 0.5 --rate-mbit 100 --limit 1000 --seed 7

    stdout: {"ready":true,"pid":..,"a":{"name":..,"netns":..,"mac":..},"b":{..},"carrier":"on"}
    stdin:  carrier off | carrier on | stats | set delay-ms=5 ab-loss-pct=20
            wait ab-rx>=5000 [within=5] | wait idle [within=5]

`wait COND` is answered when COND holds (at once if it already does): `idle` (nothing
queued in either direction) or DIR-COUNTER OP N with DIR ab|ba, COUNTER one of the
stats counters (rx, tx, queued, dropped_loss, ...) and OP >=, <= or ==; the reply
carries both directions' counters. It fails ({"ok":false}) when COND does not hold
within `within` seconds (default 10). Commands sent while a wait is pending are
answered after it, in order. Tests pace a sender on it (wait until the relay has read
a block) and wait for the queue to drain, instead of polling `stats`.

Carrier off (TUNSETCARRIER 0 on both TAPs): both kernels see NO-CARRIER, frames in
flight are dropped (a cut link loses them) and frames read while off are dropped too,
counted as dropped_carrier. The kernels show NO-CARRIER / LOWER_UP a few ms after
the command (measured ~3 ms here, including the `ip link` polls); the relay itself
stops and resumes relaying at once.

Python API: `LinkRelay.start(...)` (see its docstring); kernel backend:
`netem_available()` and `netem_commands(...)`.

Timing: the loop sleeps in select(2), whose timeout has microsecond resolution (poll
and epoll_wait only take milliseconds), after setting this process's timer slack to
1 ns (the default 50 us slack would otherwise be added to every wakeup).

Modules, by concern: `tap` (kernel constants, NAME@NETNS endpoints, TAP creation),
`relay` (the loop and its line commands), `cli` (the command line; `python -m
mip6bench.net.linkemu` runs it), `client` (LinkRelay, the testbed's API) and `qdisc`
(netem and tbf). Everything public is importable from the package itself.
"""
from __future__ import annotations

from mip6bench.net.shaping import LinkParams
from mip6bench.net.linkemu.tap import (
    PR_SET_TIMERSLACK, RELAY_NICE, Endpoint, LinkEmuError, check_ifname, create_link, netns_path, open_tap)
from mip6bench.net.linkemu.relay import (
    BATCH, FD_SETSIZE, PARAM_OPTIONS, READ_SIZE, WAIT_DEFAULT_S, Relay, TapGone)
from mip6bench.net.linkemu.cli import EXIT_ENV, EXIT_OK, EXIT_USAGE, build_parser, main, params_from_args
from mip6bench.net.linkemu.client import LinkRelay, relay_argv, set_command, stop_child
from mip6bench.net.linkemu.qdisc import (
    netem_available, netem_clear_commands, netem_commands, netem_probe, tbf_available, tbf_commands,
    tbf_probe)

__all__ = [
    "BATCH", "EXIT_ENV", "EXIT_OK", "EXIT_USAGE", "FD_SETSIZE", "PARAM_OPTIONS", "PR_SET_TIMERSLACK",
    "READ_SIZE", "RELAY_NICE", "WAIT_DEFAULT_S", "Endpoint", "LinkEmuError", "LinkParams", "LinkRelay",
    "Relay", "TapGone", "build_parser", "check_ifname", "create_link", "main", "netem_available",
    "netem_clear_commands", "netem_commands", "netem_probe", "netns_path", "open_tap", "params_from_args",
    "relay_argv", "set_command", "stop_child", "tbf_available", "tbf_commands", "tbf_probe",
]
