"""Drive the agents through their control sockets and read the event log.

    sudo python3 examples/control_and_events.py

Every agent answers JSON requests on a control socket (AgentProcess.request; the same
commands as `<node> agent <command>` in the Mininet CLI). Here: the HA's binding cache,
the MN's state, route optimisation switched off and on again, counters, and the run's
merged event log afterwards (events.jsonl in the run directory).
"""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments"))
import _env  # noqa: E402,F401  (runs this file again under the project's .venv Python)

from mip6bench.runtime.eventlog import read_events  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402

with Testbed({}, experiment="example-control", capture=False) as tb:
    mn, ha = tb.mobility_agent("mn1"), tb.mobility_agent("ha")
    cn = tb.plan.nodes["cn"].address()
    mn.request("wait", timeout=12, until="ro", cn=cn, within=10)
    print("MN:", json.dumps(mn.request("status")))
    print("HA bindings:", json.dumps(ha.request("bindings")))
    mn.request("ro-stop", cn=cn)              # traffic to the CN goes through the tunnel
    mn.request("ro-start", cn=cn)             # return routability and a BU to the CN again
    mn.request("wait", timeout=12, until="ro", cn=cn, within=10)
    print("MN core counters:", json.dumps(mn.request("counters")["core"]))
    run_dir = tb.run.out_dir
# Stopping the testbed merged every agent's log into events.jsonl.
events = list(read_events(run_dir / "events.jsonl"))
print(f"{len(events)} events; the most frequent:")
for (node, name), n in collections.Counter((e["node"], e["event"]) for e in events).most_common(8):
    print(f"  {n:5d}  {node:6s} {name}")
