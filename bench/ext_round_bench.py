#!/usr/bin/env python3
"""The EXT round of an MN behind its foreign network's firewall (foreign_firewall=on),
measured in the operational testbed against its floor from the configured delays.

The MN (static SAs, NSIS on, no correspondents) moves `--moves` times (20 ms layer-2
gap) through `--networks` foreign networks in turn (f2, f3, ..., fN, f1, f2, ...): the
first visit of a network needs a GIST handshake, a later one within 30 s does not. With each new CoA its core asks for the "inbound" phase (the HA's
tunnel to the CoA), which is one EXT session: GIST upstream discovery (Query toward the
HA, intercepted by the access router; Response; Confirm carrying the EXT) and the edge's
RESPONSE after it installed the pinhole. Per move, from the MN's and the router's event
logs (CLOCK_MONOTONIC, shared by every namespace):
  ext_ms      mipv6.mn.traversal_started(phase inbound) -> mipv6.mn.traversal_done
  gist_ms     -> nsis.gist_up (upstream) at the MN: the GIST handshake's Query/Response
  install_ms  at the router: the EXT received -> nft committed (nsis.pinhole_installed)
  floor_ms    with a GIST handshake: 4 one-way trips MN <-> access router (Query,
              Response, Confirm carrying the EXT, RESPONSE); without one (the MN came
              back to a network whose router still holds the upstream routing state of
              this MRI: the CoA is the same SLAAC address as before, and GIST routing
              state lives 30 s) 2 trips (EXT as D-mode Data, RESPONSE); one trip is
              access_delay_ms - access_jitter_ms. The install is not in the floor (no
              configured delay); moves 1 and 2 find cold neighbour caches.
Prints a table and a JSON summary (median, min, max, per kind). Needs root.

    sudo .venv/bin/python bench/ext_round_bench.py --networks 9 --moves 12 [--access-delay-ms 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.runtime.eventlog import read_events  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402
from mip6bench.testbed.warmup import link_pairs, warm_up  # noqa: E402


def wait_event(agent, event, after_ns, within=10.0, **match):
    return agent.request("wait-event", timeout=within + 2, event=event, match=match,
                         after_ns=after_ns, within=within)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moves", type=int, default=12)
    ap.add_argument("--networks", type=int, default=9)
    ap.add_argument("--access-delay-ms", type=float, default=2.0)
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="ext-round-")
    if args.networks < 2:
        ap.error("--networks is at least 2")
    tb = Testbed({"foreign": args.networks, "nsis": "on", "mipv6": "static", "foreign_firewall": "on",
                  "access_delay_ms": args.access_delay_ms}, experiment="bench-ext-round",
                 out_dir=out)
    tb.mn_extra_options = {"correspondents": []}
    tb.start()
    rows = []
    try:
        tb.wait_registered("mn1", timeout=15)
        warm_up(tb, link_pairs(tb.plan))
        mn = tb.mobility_agent("mn1")
        nets = [f"f{i}" for i in range(2, args.networks + 1)] + ["f1"]
        for k in range(args.moves):
            net = nets[k % len(nets)]
            t0 = time.monotonic_ns()
            move = tb.move("mn1", net, gap_ms=20)
            done = wait_event(mn, "mipv6.mn.traversal_done", t0, within=10, phase="inbound",
                              coa=move["address"])
            assert done["ok"], done
            rows.append((net, move["address"], t0))
        trip = max(0.0, tb.params["access_delay_ms"] - tb.params["access_jitter_ms"])
        mn_events = list(read_events(mn.events_path))
        results = []
        for net, coa, t0 in rows:
            after = [e for e in mn_events if e["t_ns"] >= t0]
            start = next(e for e in after if e["event"] == "mipv6.mn.traversal_started"
                         and e.get("phase") == "inbound" and e.get("coa") == coa)
            done = next(e for e in after if e["event"] == "mipv6.mn.traversal_done"
                        and e.get("phase") == "inbound" and e.get("coa") == coa)
            gist = next((e for e in after if e["event"] == "nsis.gist_up" and e.get("upstream")
                         and start["t_ns"] <= e["t_ns"] <= done["t_ns"]), None)
            router = tb.agents[(f"ar{net[1:]}", "fw")]
            installed = next((e for e in read_events(router.events_path)
                              if e["event"] == "nsis.pinhole_installed" and e["t_ns"] >= t0), None)
            results.append({
                "network": net, "coa": coa,
                "ext_ms": round((done["t_ns"] - start["t_ns"]) / 1e6, 3),
                "gist_ms": round((gist["t_ns"] - start["t_ns"]) / 1e6, 3) if gist else None,
                "install_ms": installed.get("install_ms") if installed else None,
                "handshake": gist is not None,
                "floor_ms": (4 if gist is not None else 2) * trip})
    finally:
        tb.stop()
    print(f"{'move':>4} {'net':>3} {'gist':>5} {'ext_ms':>8} {'gist_ms':>8} {'install_ms':>10} "
          f"{'floor_ms':>8} {'ratio':>6}")
    for i, r in enumerate(results, 1):
        gist = f"{r['gist_ms']:>8.2f}" if r["gist_ms"] is not None else f"{'-':>8}"
        print(f"{i:>4} {r['network']:>3} {'yes' if r['handshake'] else 'no':>5} "
              f"{r['ext_ms']:>8.2f} {gist} "
              f"{r['install_ms'] or 0:>10.2f} {r['floor_ms']:>8.2f} "
              f"{r['ext_ms'] / r['floor_ms'] if r['floor_ms'] else float('nan'):>6.2f}")
    summary: dict = {"moves": len(results)}
    for kind, want in (("with_handshake", True), ("state_reused", False)):
        group = [r for r in results if r["handshake"] is want]
        if not group:
            continue
        ext = [r["ext_ms"] for r in group]
        summary[kind] = {"n": len(group), "floor_ms": group[0]["floor_ms"],
                         "ext_ms_median": statistics.median(ext), "ext_ms_min": min(ext),
                         "ext_ms_max": max(ext),
                         "ratio_median": round(statistics.median(ext) / group[0]["floor_ms"], 2)
                         if group[0]["floor_ms"] else None}
    installs = [r["install_ms"] for r in results if r["install_ms"] is not None]
    summary["install_ms_median"] = statistics.median(installs) if installs else None
    summary["runs"] = results
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
