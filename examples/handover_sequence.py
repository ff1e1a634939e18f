"""A scripted handover sequence with a traffic pattern of your own.

    sudo python3 examples/handover_sequence.py

The MN (static SAs, route optimisation with the CN on) receives a 200 packet/s UDP
stream from the CN at its home address while it moves f1 -> f2 -> f3 -> f1 with
different layer-2 gaps. After each move the script waits until route optimisation is
back for the new care-of address, then prints the time from the new link to the
binding at the HA and at the CN (the MN's own events), and the stream's outage.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments"))
import _env  # noqa: E402,F401  (runs this file again under the project's .venv Python)

from mip6bench.measure.streams import UdpStream  # noqa: E402
from mip6bench.runtime.eventlog import read_events  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402

MOVES = [("f2", 0), ("f3", 50), ("f1", 200)]  # (network, layer-2 gap in ms)


def first(path, name, after):
    return next((e["t_ns"] for e in read_events(path) if e["event"] == name and e["t_ns"] >= after), None)


with Testbed({"foreign": 3}, experiment="example-handover", capture=False) as tb:
    mn, cn = "mn1", tb.plan.nodes["cn"].address()
    hoa = tb.plan.nodes[mn].extra["hoa"]
    agent = tb.mobility_agent(mn)
    agent.request("wait", timeout=22, until="ro", cn=cn, within=20)
    stream = UdpStream(tb.node("cn").pid, cn, tb.node(mn).pid, hoa, 9000, rate=200).start()
    try:
        time.sleep(0.5)  # dwell: the stream runs on the first path before the first move
        for network, gap_ms in MOVES:
            move = tb.move(mn, network, gap_ms=gap_ms)
            agent.request("wait", timeout=22, until="ro", cn=cn, coa=move["address"], within=20)
            attach = move["attach_ns"]
            ha = first(agent.events_path, "mipv6.mn.home_registered", attach)
            ro = first(agent.events_path, "mipv6.mn.ro_on", attach)
            outage = stream.outage(move["detach_ns"])  # None: nothing arrived on one side
            print(f"-> {network} (gap {gap_ms} ms): HA binding {(ha - attach) / 1e6:.1f} ms, "
                  f"RO {(ro - attach) / 1e6:.1f} ms after attach; " + (
                      f"stream interrupted {outage['disruption_ms']:.1f} ms, "
                      f"{outage['lost_packets']} packets lost" if outage else "no stream packets around it"))
            time.sleep(0.5)  # dwell: let the stream run on the new path before the next move
    finally:
        stream.stop()
