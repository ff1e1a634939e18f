#!/usr/bin/env python3
"""Home registration latency with and without the home network's firewall (topology
parameter ha_firewall, RFC 4487 section 3), measured in the operational testbed.

For each setting (ha_firewall=off, then on; nsis=on, static SAs, default delays) one
testbed, the MN's first registration, then --handovers break-before-make moves between
f1 and f2 (--gap-ms layer-2 gap). Per handover, from the MN agent's event log (times
are CLOCK_MONOTONIC at the MN):
  - registration_ms: mipv6.mn.movement (the new CoA is known) -> mipv6.mn.home_registered
    for that CoA;
  - home_phase_ms (ha_firewall=on): movement -> mipv6.mn.traversal_done phase "home"
    (GIST handshake with hfw, CREATE through hfw to the HA's NR and the RESPONSE back,
    pinholes committed at hfw);
  - bu_ba_ms: mipv6.mn.home_bu_sent -> home_registered.
Floors from the configured delays (path_delay_ms: each link's delay minus its jitter):
  bu_ba 2 d(MN,HA); home phase, as experiments/traversal.py counts the CN's, GIST
  Query/Response 2 d(MN,hfw) + CREATE/RESPONSE 2 d(MN,hfw) + 4 d(hfw,HA) (hfw's own
  handshake with the HA, the CREATE and RESPONSE there); registration = their sum.
Prints a table and a JSON summary, and writes everything to --out (JSON) if given.
Needs root.

    sudo .venv/bin/python bench/home_firewall_bench.py --handovers 6
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.runtime.eventlog import read_events  # noqa: E402
from mip6bench.testbed.network import Testbed  # noqa: E402
from mip6bench.testbed.operational import path_delay_ms  # noqa: E402


def floors(plan, home_firewall: bool) -> dict[str, float]:
    bu_ba = 2 * path_delay_ms(plan, "mn1", "ha")
    out = {"bu_ba_ms": bu_ba, "home_phase_ms": 0.0}
    if home_firewall:
        d_mf, d_fh = path_delay_ms(plan, "mn1", "hfw"), path_delay_ms(plan, "hfw", "ha")
        out["home_phase_ms"] = 2 * d_mf + 2 * d_mf + 4 * d_fh
    out["registration_ms"] = out["bu_ba_ms"] + out["home_phase_ms"]
    return {k: round(v, 3) for k, v in out.items()}


def run(setting: str, handovers: int, gap_ms: float, out_dir: str) -> dict:
    tb = Testbed({"foreign": 2, "nsis": "on", "mipv6": "static", "ha_firewall": setting},
                 experiment=f"bench-hfw-{setting}", capture=False, out_dir=out_dir)
    tb.start()
    try:
        tb.wait_registered("mn1", timeout=20)
        coas = []
        for i in range(handovers):
            network = "f2" if i % 2 == 0 else "f1"
            move = tb.move("mn1", network, gap_ms=gap_ms)
            tb.wait_registered("mn1", coa=move["address"], timeout=20)
            coas.append((network, move["address"]))
    finally:
        tb.stop()
    events = [e for e in read_events(os.path.join(tb.run_dir, "events.jsonl"))
              if e.get("node") == "mn1"]
    rows = []
    for network, coa in coas:
        def first(name, after=0, **match):
            return next(e for e in events if e["event"] == name and e["t_ns"] >= after
                        and all(e.get(k) == v for k, v in match.items()))
        moved = first("mipv6.mn.movement", coa=coa)
        registered = first("mipv6.mn.home_registered", moved["t_ns"], coa=coa)
        sent = first("mipv6.mn.home_bu_sent", moved["t_ns"], coa=coa)
        row = {"to": network, "coa": coa, "registration_ms": (registered["t_ns"] - moved["t_ns"]) / 1e6,
               "bu_ba_ms": (registered["t_ns"] - sent["t_ns"]) / 1e6}
        if setting == "on":
            done = first("mipv6.mn.traversal_done", moved["t_ns"], phase="home", coa=coa, ok=True)
            row["home_phase_ms"] = (done["t_ns"] - moved["t_ns"]) / 1e6
        rows.append(row)
    # Per direction: the moves back to f1 (a CoA the MN had before) lose their first BU
    # and wait for its retransmission (1 s), with or without the home firewall.
    summary = {to: {k: round(statistics.median(r[k] for r in rows if r["to"] == to), 3)
                    for k in ("registration_ms", "bu_ba_ms", "home_phase_ms") if k in rows[0]}
               for to in sorted({r["to"] for r in rows}, reverse=True)}
    return {"ha_firewall": setting, "handovers": rows, "median": summary,
            "floor": floors(tb.plan, setting == "on")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--handovers", type=int, default=6)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("home_firewall_bench: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="hfw-bench-") as tmp:
        for setting in ("off", "on"):
            results.append(run(setting, args.handovers, args.gap_ms, os.path.join(tmp, setting)))
    print(f"{'ha_firewall':<12}{'to':<4}{'registration ms':>17}{'floor':>8}{'home phase ms':>15}"
          f"{'floor':>8}{'BU->BA ms':>11}{'floor':>8}   (medians, {args.handovers} handovers)")
    for r in results:
        f = r["floor"]
        for to, m in r["median"].items():
            phase = f"{m['home_phase_ms']:>15.1f}{f['home_phase_ms']:>8.1f}" if "home_phase_ms" in m \
                else f"{'-':>15}{'-':>8}"
            print(f"{r['ha_firewall']:<12}{to:<4}{m['registration_ms']:>17.1f}{f['registration_ms']:>8.1f}"
                  f"{phase}{m['bu_ba_ms']:>11.1f}{f['bu_ba_ms']:>8.1f}")
    extra = {to: round(results[1]["median"][to]["registration_ms"]
                       - results[0]["median"][to]["registration_ms"], 3) for to in results[0]["median"]}
    print(f"extra registration latency with the home firewall: "
          + ", ".join(f"to {to} {v:.1f} ms" for to, v in extra.items())
          + f" (floor {results[1]['floor']['home_phase_ms']:.1f} ms)")
    summary = {"home_firewall": {r["ha_firewall"]: {"median": r["median"], "floor": r["floor"]}
                                 for r in results}, "extra_ms": extra}
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"results": results, **summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
