"""BU -> BA at the home agent and the MN's tunnel switch, at zero link delay (run as
root: `.venv/bin/python bench/bu_ba_bench.py [--tunnel seg6] [--moves 20] [--json]`).

One network with every link delay 0, the MN moved `moves` times between f1 and f2
(dad=off: its new care-of address is usable at once). Each move makes the MN send a
Binding Update for a new CoA; the HA re-points its tunnel to it (the kernel change)
before its Binding Ack leaves. Measured:

  * BU -> BA at the HA on the wire: the HA's own packet capture (dumpcap on its
    interfaces), each Binding Update's arrival paired with the Binding Ack of the same
    sequence number leaving (tshark decodes both), so the figure includes the HA's
    socket, core, kernel change and send;
  * the HA's kernel change (event mipv6.ha.tunnel_up, kernel_ms) and the MN's tunnel
    switch (event mipv6.mn.tunnel_up, kernel_ms: re-pointing its tunnel to the new CoA).

Prints the medians (and p90, max) and a JSON summary with --json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SEGMENTS = ("access", "backhaul", "home_uplink", "home_lan", "cn_uplink", "cn_lan")


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "median": round(statistics.median(ordered), 3),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
            "max": round(ordered[-1], 3), "min": round(ordered[0], 3)}


def bu_ba_on_wire(pcap: str) -> list[float]:
    """ms from each BU's arrival to the BA with its sequence number leaving (HA capture)."""
    out = subprocess.run(["tshark", "-r", pcap, "-Y", "mip6.mhtype == 5 || mip6.mhtype == 6",
                          "-T", "fields", "-e", "frame.time_epoch", "-e", "mip6.mhtype",
                          "-e", "mip6.bu.seqnr", "-e", "mip6.ba.seqnr"],
                         capture_output=True, text=True, check=True).stdout
    bus: dict[int, float] = {}
    gaps = []
    for line in out.splitlines():
        t, kind, bu_seq, ba_seq = (line.split("\t") + ["", "", "", ""])[:4]
        if kind == "5" and bu_seq:
            bus.setdefault(int(bu_seq), float(t))   # first copy: the arrival
        elif kind == "6" and ba_seq and int(ba_seq) in bus:
            gaps.append((float(t) - bus.pop(int(ba_seq))) * 1000)
    return gaps


def run(tunnel: str, moves: int) -> dict:
    from mip6bench.testbed.network import Testbed

    params = {f"{seg}_delay_ms": 0 for seg in SEGMENTS}
    params.update({"tunnel": tunnel, "nsis": "off", "dad": "off"})
    tb = Testbed(params, experiment="bench-bu-ba", capture=True)
    tb.start()
    try:
        tb.wait_registered("mn1")
        for _ in range(moves):
            network = "f2" if tb.attached_network("mn1") == "f1" else "f1"
            move = tb.move("mn1", network)
            tb.wait_registered("mn1", coa=move["address"])
        events = {node: tb.mobility_agent(node).request("events", n=2000) for node in ("ha", "mn1")}
        backend = tb.mobility_agent("ha").request("status")["backend"]
        # Popen to ready line, interpreter start and the kernel set-up included.
        start_ms = {node: tb.mobility_agent(node).startup_ms for node in ("ha", "mn1")}
    finally:
        tb.stop()
    ha_up = [e for e in events["ha"] if e["event"] == "mipv6.ha.tunnel_up"][-moves:]
    mn_up = [e for e in events["mn1"] if e["event"] == "mipv6.mn.tunnel_up"][-moves:]
    samples = {"bu_to_ba_at_ha_ms": [round(x, 3) for x in
                                     bu_ba_on_wire(str(tb.run_dir / "captures" / "ha.pcapng"))[-moves:]],
               "ha_kernel_change_ms": [e["kernel_ms"] for e in ha_up],
               "mn_tunnel_switch_ms": [e["kernel_ms"] for e in mn_up]}
    # Where the kernel thread's time went, where the agents report it.
    for key, source, field in (("ha_tunnel_ms", ha_up, "tunnel_ms"), ("ha_nft_ms", ha_up, "nft_ms"),
                               ("mn_point_ms", mn_up, "point_ms")):
        if any(field in e for e in source):
            samples[key] = [e[field] for e in source if field in e]
    return {"backend": backend, "moves": moves, "run_dir": str(tb.run_dir), "agent_start_ms": start_ms,
            **{key: summary(values) for key, values in samples.items()}, "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnel", default="auto")
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.tunnel, args.moves)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key in [k for k in result["samples"]]:
        s = result[key]
        print(f"{result['backend']:<9} {key:<22} n={s['n']} median {s.get('median')} ms, "
              f"p90 {s.get('p90')} ms, max {s.get('max')} ms")
    print(f"{result['backend']:<9} agent start (Popen to ready): "
          + ", ".join(f"{node} {ms} ms" for node, ms in result["agent_start_ms"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
