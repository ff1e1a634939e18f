"""Agents stay light (issue 9: an agent starts in under 300 ms, one MN costs under 40
MB; bench/agent_budget_bench.py measures both): no agent imports scapy, matplotlib or
rich, and the kernel layer loads pyroute2's rtnetlink without the rest of the library
(its package __init__ imports NDB with sqlite3, IPDB, conntrack, ...)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTS = sorted(p.stem for p in (ROOT / "agents").glob("*.py") if p.stem != "__init__")
HEAVY = ("scapy", "matplotlib", "rich", "pyroute2.ndb", "pyroute2.ipdb", "sqlite3")


def loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip())


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_module_imports_nothing_heavy(agent):
    assert loaded_after(f"import agents.{agent}") == []


def test_the_kernel_layer_loads_rtnetlink_only():
    code = ("from mip6bench.net import kernel, pyroute\n"     # what Kernel() imports
            "from mip6bench.net.kernel import parse_events\n"
            "from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg\n")
    assert loaded_after(code) == []


def test_the_rest_of_pyroute2_still_loads_on_demand():
    code = ("from mip6bench.net import kernel, pyroute\n"
            "from pyroute2 import NDB, IPRoute\n"
            "import pyroute2.iproute\n"
            "assert IPRoute is pyroute2.iproute.IPRoute\n")
    assert "pyroute2.ndb" in loaded_after(code)
