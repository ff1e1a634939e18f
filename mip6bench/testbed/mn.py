"""Make Mininet's own runner (`mn --custom topologies/operational.py`) safe and useful.

`mn` runs Mininet's global cleanup on any exception or Ctrl-C, which kills processes by
name across the whole machine. When our topology file is loaded, we replace that
function in the running `mn` with the testbed's scoped cleanup (only what this run
recorded), and give mn the testbed's CLI, which also starts the agents.
"""
from __future__ import annotations

import atexit
import sys


def scoped_cleanup() -> None:
    from mip6bench.testbed import context

    run = context._current
    if run is not None:
        for item in run.record.clean():
            print(f"*** cleaned {item}", file=sys.stderr)


def adopt_mn_runner() -> None:
    import __main__
    import mininet.cli

    from mip6bench.testbed.cli import TestbedCLI

    if hasattr(__main__, "cleanup"):
        __main__.cleanup = scoped_cleanup

    class MnTestbedCLI(TestbedCLI):
        def __init__(self, mininet_, **kwargs):
            from mip6bench.testbed.network import Testbed

            testbed = Testbed.adopt(mininet_)
            try:
                super().__init__(mininet_, testbed=testbed, **kwargs)
            finally:
                testbed.stop_agents()

    mininet.cli.CLI = MnTestbedCLI
    atexit.register(scoped_cleanup)
