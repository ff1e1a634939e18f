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
HEAVY = ("scapy", "matplotlib", "rich", "pyroute2.ndb", "pyroute2.ipdb", "sqlite3",
         "tracemalloc",            # only when tracing is asked for (runtime/memory.py)
         "importlib.resources")    # what importlib.abc brings (net/pyroute.py's finder does without)


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


# What net/pyroute.py defers (LazyLoader): bound where pyroute2 imports them, run on first use.
DEFERRED = ("difflib", "pyroute2.netlink.rtnl.tcmsg.sched_htb", "pyroute2.netlink.rtnl.tcmsg.cls_u32",
            "pyroute2.netlink.rtnl.tcmsg.sched_netem")
NOT_IMPORTED = ("pyroute2.netlink.rtnl.tcmsg.act_police",)     # imported by deferred plugins only


def run_probe(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_kernel_layer_defers_what_no_agent_runs():
    """tc plugins and difflib are imported by pyroute2 but not run: still lazy modules
    after the kernel layer and an agent are imported."""
    code = ("import sys\nimport agents.mn\nfrom mip6bench.net import kernel, pyroute\n"
            f"print({{n: type(sys.modules.get(n)).__name__ for n in {DEFERRED + NOT_IMPORTED!r}}})")
    assert eval(run_probe(code)) == {**{n: "_LazyModule" for n in DEFERRED}, **{n: "NoneType" for n in NOT_IMPORTED}}


def test_a_deferred_module_runs_when_touched():
    """A tc message with htb options round-trips through its (deferred) plugin, and
    difflib works: lazy modules behave as if imported eagerly."""
    code = ("import sys\nfrom mip6bench.net import pyroute\n"
            "from pyroute2.netlink.rtnl.tcmsg import tcmsg, plugins\n"
            "htb = 'pyroute2.netlink.rtnl.tcmsg.sched_htb'\n"
            "before = type(sys.modules[htb]).__name__\n"
            "m = tcmsg()\n"
            "m['attrs'] = [('TCA_KIND', 'htb'), ('TCA_OPTIONS', {'attrs': [('TCA_HTB_INIT', {\n"
            "    'version': 3, 'rate2quantum': 10, 'defcls': 0x10, 'debug': 0, 'direct_pkts': 0})]})]\n"
            "m.encode()\n"
            "d = tcmsg(m.data)\n"
            "d.decode()\n"
            "import difflib\n"
            "print((before, type(sys.modules[htb]).__name__, plugins['htb'] is sys.modules[htb],\n"
            "       d.get_attr('TCA_OPTIONS').get_attr('TCA_HTB_INIT')['defcls'],\n"
            "       difflib.SequenceMatcher(None, 'abcd', 'abed').ratio()))")
    assert eval(run_probe(code)) == ("_LazyModule", "module", True, 0x10, 0.75)
