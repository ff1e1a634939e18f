"""The kernel alternative to the relay: netem and tbf qdisc command lines, and probes
of whether this kernel has them."""
from __future__ import annotations

if False:  # annotations only: `typing` costs ~2 ms of cold start
    from typing import Any, Mapping

from mip6bench.errors import ParameterError
from mip6bench.net.shaping import LinkParams
from mip6bench.net.linkemu.tap import check_ifname


def netem_commands(dev: str, params: LinkParams | Mapping[str, Any],
                   netns: int | str | None = None) -> list[list[str]]:
    """argv lists that configure `params` on dev's egress with netem (one direction).

    netns: None (current), a netns name (`tc -n NAME`) or a pid (run under
    `nsenter -t PID -n`). `replace` makes re-application idempotent. Times are given
    in microseconds, the rate in bit/s; jitter uses netem's default uniform
    distribution unless "normal" is asked for (which loads tc's normal table).
    """
    p = params if isinstance(params, LinkParams) else LinkParams(**params)
    check_ifname(dev)
    if netns is None:
        tc = ["tc"]
    elif isinstance(netns, int) and not isinstance(netns, bool):
        tc = ["nsenter", "-t", str(netns), "-n", "tc"]
    else:
        tc = ["tc", "-n", str(netns)]
    args = ["limit", str(p.limit)]
    if p.delay_ms or p.jitter_ms:
        args += ["delay", f"{round(p.delay_ms * 1000)}us"]
        if p.jitter_ms:
            args.append(f"{round(p.jitter_ms * 1000)}us")
            if p.distribution != "uniform":
                args += ["distribution", p.distribution]
    if p.loss_pct:
        args += ["loss", "random", f"{p.loss_pct:g}%"]
    if p.rate_mbit:
        args += ["rate", f"{round(p.rate_mbit * 1_000_000)}bit"]
    return [tc + ["qdisc", "replace", "dev", dev, "root", "netem"] + args]


def netem_clear_commands(dev: str, netns: int | str | None = None) -> list[list[str]]:
    cmd = netem_commands(dev, LinkParams(), netns)[0]
    i = cmd.index("qdisc")
    return [cmd[:i] + ["qdisc", "del", "dev", dev, "root"]]


def tbf_commands(dev: str, rate_mbit: float, netns: int | str | None = None) -> list[list[str]]:
    """argv lists that limit dev's egress to `rate_mbit` with a token bucket (tbf): the
    kernel path for links that have a bandwidth but no delay, jitter or loss. The bucket
    holds 4 ms at the rate (at least 64 KiB, so a GSO super-packet fits); up to 50 ms of
    traffic may queue behind it."""
    if rate_mbit <= 0:
        raise ParameterError(f"tbf rate {rate_mbit} Mbit/s", "a tbf rate must be positive")
    check_ifname(dev)
    tc = netem_commands(dev, LinkParams(), netns)[0]
    tc = tc[:tc.index("qdisc")]
    rate = round(rate_mbit * 1_000_000)
    burst = max(65536, rate // 8 // 250)
    return [tc + ["qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate}bit",
                  "burst", str(burst), "latency", "50ms"]]


_qdisc_cache: dict[str, tuple[bool, str]] = {}


def _qdisc_probe(kind: str, args: list[str], timeout: float) -> tuple[bool, str]:
    """(available, reason): try a qdisc in a throwaway network namespace.

    `unshare --net` gives tc a fresh anonymous namespace whose only device is `lo`; the
    qdisc is added there, and namespace, device and qdisc all vanish when tc exits, so
    nothing can leak even if this process is killed. (`lo` rather than a dummy or veth:
    this kernel has no CONFIG_DUMMY, and a missing dummy module must not read as a
    missing qdisc.) The kernel auto-loads the qdisc if it is a module.
    """
    if kind not in _qdisc_cache:
        import subprocess
        cmd = ["unshare", "--net", "--", "tc", "qdisc", "add", "dev", "lo", "root", kind, *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            return False, f"{exc.filename} not found (install util-linux and iproute2)"
        except subprocess.TimeoutExpired:
            return False, "probe timed out"
        if r.returncode == 0:
            _qdisc_cache[kind] = (True, f"{kind} qdisc added in a scratch namespace")
        else:
            msg = (r.stderr or r.stdout).strip().splitlines()
            _qdisc_cache[kind] = (False, f"{' '.join(cmd)}: {msg[-1] if msg else r.returncode}")
    return _qdisc_cache[kind]


def netem_probe(timeout: float = 10.0) -> tuple[bool, str]:
    return _qdisc_probe("netem", ["delay", "1ms"], timeout)


def tbf_probe(timeout: float = 10.0) -> tuple[bool, str]:
    return _qdisc_probe("tbf", ["rate", "10mbit", "burst", "32kbit", "latency", "50ms"], timeout)


def tbf_available() -> bool:
    """True if `tc qdisc ... tbf` works on this kernel (cached for the process)."""
    return tbf_probe()[0]


def netem_available() -> bool:
    """True if `tc qdisc ... netem` works on this kernel (cached for the process)."""
    return netem_probe()[0]
