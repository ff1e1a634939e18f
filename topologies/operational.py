"""The operational topology of the paper, for Mininet's command line.

    .venv/bin/mn --custom topologies/operational.py --topo operational
    .venv/bin/mn --custom topologies/operational.py --topo operational,foreign=3,mns=2

Parameters are those of mip6bench.testbed.operational.topology_params() (README lists
them). From Python, use mip6bench.testbed.topology.OperationalTopo or, better, the
Testbed class, which also starts agents and captures.

Loaded into `mn`, this file first replaces mn's machine-wide cleanup-on-error (which
kills processes by name) with the testbed's scoped cleanup, then adds the testbed's CLI
commands and starts the agents.
"""
import os
import sys

_RUNNING_IN_MN = os.path.basename(sys.argv[0]) == "mn"
if _RUNNING_IN_MN:
    import __main__

    def _scoped_cleanup():  # bound before anything below can fail
        from mip6bench.testbed.mn import scoped_cleanup

        scoped_cleanup()

    if hasattr(__main__, "cleanup"):
        __main__.cleanup = _scoped_cleanup

# `mn` exec()s this file without __file__; the code object still knows its path.
_HERE = os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename))
sys.path.insert(0, os.path.dirname(_HERE))

from mip6bench.testbed.topology import OperationalTopo  # noqa: E402

topos = {"operational": OperationalTopo}

if _RUNNING_IN_MN:
    from mip6bench.testbed.mn import adopt_mn_runner  # noqa: E402

    adopt_mn_runner()
