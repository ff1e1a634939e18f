"""Two mobile nodes bootstrap Mobile IPv6 through PANA over slower links.

    sudo python3 examples/bootstrap_two_mns.py

Each MN starts with only its NAI and PSK (mipv6=bootstrap): PANA brings it the home
agent, a home address, the MN-HA SA and the NSIS token, then it registers. The script
prints, per MN, the time from its first PANA message to its home registration, read
from the agents' event logs (CLOCK_MONOTONIC ns, shared by every namespace).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments"))
import _env  # noqa: E402,F401  (runs this file again under the project's .venv Python)

from mip6bench.runtime.eventlog import read_events  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402

PARAMS = {
    "mns": 2,
    "mipv6": "bootstrap",        # learn HA, HoA and SA through PANA
    "backhaul_delay_ms": 20,     # access router <-> core, one way
    "home_uplink_delay_ms": 15,  # core <-> home agent
}


def first(events, name, after=0):
    return next((e for e in events if e["event"] == name and e["t_ns"] >= after), None)


with Testbed(PARAMS, experiment="example-bootstrap", capture=False) as tb:
    mns = [node.name for node in tb.plan.by_role("mn")]
    for mn in mns:
        status = tb.wait_registered(mn, timeout=20)
        print(f"{mn}: registered, HoA {status.get('hoa')} at CoA {status.get('coa')}")
    for mn in mns:
        events = list(read_events(tb.mobility_agent(mn).events_path))
        pci = first(events, "pana.pci_sent")
        ready = first(events, "bootstrap.ready")
        registered = first(events, "mipv6.mn.home_registered", ready["t_ns"])
        print(f"{mn}: PANA {(ready['t_ns'] - pci['t_ns']) / 1e6:.1f} ms, "
              f"then home registration {(registered['t_ns'] - ready['t_ns']) / 1e6:.1f} ms")
    print(f"logs and events: {tb.run.out_dir}")
