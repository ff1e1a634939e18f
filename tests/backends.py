"""The kernel backends a namespace test runs with: every backend this machine's kernel
has, each as its own test id, and the ones it lacks as skips that name the missing kernel
option. Tests parametrized with these carry the `backends` marker (the full-kernel lane,
`make test-kernel`, runs them on a kernel that has every backend)."""
from __future__ import annotations

import functools
import os

import pytest


@functools.lru_cache(maxsize=None)
def _tunnel_probes() -> dict[str, tuple[bool, str]]:
    from mip6bench.net.tunnel import probe_backends

    return probe_backends()


def tunnel_backends() -> list:
    """pytest params, one per tunnel backend (ip6tnl, seg6, userspace)."""
    from mip6bench.net.tunnel import BACKEND_NEEDS, BACKENDS

    if os.geteuid() != 0:   # netns tests are skipped anyway; probing needs root
        return [pytest.param(name, marks=pytest.mark.backends) for name in BACKENDS]
    out = []
    for name in BACKENDS:
        ok, detail = _tunnel_probes()[name]
        marks = [pytest.mark.backends]
        if not ok:
            marks.append(pytest.mark.skip(reason=f"tunnel backend {name}: kernel lacks "
                                                 f"{BACKEND_NEEDS[name]} ({detail})"))
        out.append(pytest.param(name, marks=marks, id=f"tunnel={name}"))
    return out


def needs_tunnel_backend(name: str) -> pytest.MarkDecorator:
    """Mark for a test of one backend's kernel support (seg6 routes, say): a skip naming
    the missing kernel option where this kernel lacks it. Such tests also carry the
    `backends` marker; the full-kernel lane selects them by name."""
    from mip6bench.net.tunnel import BACKEND_NEEDS

    if os.geteuid() != 0:
        return pytest.mark.backends
    ok, detail = _tunnel_probes()[name]
    if ok:
        return pytest.mark.backends
    return pytest.mark.skip(reason=f"tunnel backend {name}: kernel lacks {BACKEND_NEEDS[name]} ({detail})")


@functools.lru_cache(maxsize=None)
def _netem_probe() -> tuple[bool, str]:
    from mip6bench.net.linkemu import netem_probe

    return netem_probe()


def link_emulation_backends() -> list:
    """pytest params, one per link emulation backend (netem, relay)."""
    if os.geteuid() != 0:
        return [pytest.param(name, marks=pytest.mark.backends) for name in ("netem", "relay")]
    ok, detail = _netem_probe()
    netem_marks = [pytest.mark.backends]
    if not ok:
        netem_marks.append(pytest.mark.skip(reason=f"link emulation netem: kernel lacks "
                                                   f"CONFIG_NET_SCH_NETEM ({detail})"))
    relay_marks = [pytest.mark.backends]
    if not os.path.exists("/dev/net/tun"):
        relay_marks.append(pytest.mark.skip(reason="link emulation relay: no /dev/net/tun (modprobe tun)"))
    return [pytest.param("netem", marks=netem_marks, id="links=netem"),
            pytest.param("relay", marks=relay_marks, id="links=relay")]
