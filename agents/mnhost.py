"""MN host: many mobile node agents (agents/mn.py's MobileNodeAgent) in one process,
each on its own thread inside its own node's network namespace, with its own event log
and control socket (mip6bench.runtime.host). The testbed starts hosts instead of one
process per MN when the topology parameter mns_per_agent says so (README: Scale).

    python agents/mnhost.py --config <host config: {"agents": [{node, agent, control,
                                      events, options, netns}, ...]}>
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: agents/mnhost.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.net import usertunnel  # noqa: E402
from mip6bench.runtime.host import run_host  # noqa: E402

if __name__ == "__main__":
    # Each MN's user-space tunnel forwarder is a thread of the host (in the MN's
    # namespace), not a process of its own.
    usertunnel.FORWARDER_MODE = "thread"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mn import MobileNodeAgent  # noqa: E402

    sys.exit(run_host(MobileNodeAgent))
