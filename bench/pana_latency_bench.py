#!/usr/bin/env python3
"""PANA + EAP-PSK authentication latency in the topology at zero link delay (run as root:
`.venv/bin/python bench/pana_latency_bench.py [--reps 5] [--json]`).

Every link delay 0, one MN, the real agents: for each of
  * embedded AAA, unicast discovery (the issue's "<= 2 ms" case),
  * hostapd as RADIUS server, unicast discovery ("<= 2.5 ms"),
  * embedded AAA, multicast discovery (Router Alert, forwarded by ar1, core and ha),
`--reps` runs of the bootstrap experiment (`mip6bench run bootstrap`, no capture), each
in a fresh network. Reported per case, median (min) over the runs: PAA discovery (PCI
sent to the PaC's handshake), EAP-PSK through PANA, and PANA as a whole (discovery + EAP,
PCI to the session being open at the PaC: the floor at zero delay is 0, so every
millisecond is the implementation and the machine). For multicast: what each forwarding
hop adds to discovery, (multicast - unicast) / 3, both medians of the same run of this
script.

Prints one line per case, then one JSON summary line (with --json, only the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEGMENTS = ("access", "backhaul", "home_uplink", "home_lan", "cn_uplink", "cn_lan")
PATH_FORWARDERS = ("ar1", "core", "ha")      # mn1 on f1 -> PAA on the home link
CASES = (("embedded", "unicast"), ("radius", "unicast"), ("embedded", "multicast"))
PHASES = ("discovery_ms", "eap_ms", "pana_ms")


def one_run(aaa: str, discovery: str, out: Path) -> dict:
    params = [f"{seg}_delay_ms=0" for seg in SEGMENTS] + [
        f"aaa={aaa}", f"discovery={discovery}", "mipv6=bootstrap", "nsis=off"]
    argv = [sys.executable, "-m", "mip6bench.cli", "run", "bootstrap", "--no-capture",
            "--out", str(out)]
    for p in params:
        argv += ["-p", p]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"pana_latency_bench: bootstrap run failed ({aaa}, {discovery}): "
                         f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    metrics = json.loads((out / "metrics.json").read_text())["bootstrap"]
    if discovery == "multicast":
        forwarded = {json.loads(line)["node"] for line in (out / "events.jsonl").open()
                     if '"rao.forwarded"' in line}
        missing = set(PATH_FORWARDERS) - forwarded
        if missing:
            raise SystemExit(f"pana_latency_bench: the PCI was not forwarded by {sorted(missing)}")
    return {phase: metrics[phase] for phase in PHASES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("pana_latency_bench: needs root (network namespaces): run it with sudo",
              file=sys.stderr)
        return 2
    samples: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pana-latency-") as tmp:
        # Interleaved, so that a change in the machine's load touches every case alike.
        for rep in range(args.reps):
            for aaa, discovery in CASES:
                case = f"{aaa}/{discovery}"
                result = one_run(aaa, discovery, Path(tmp) / f"{case.replace('/', '-')}-{rep}")
                for phase, value in result.items():
                    samples.setdefault(case, {}).setdefault(phase, []).append(value)
    summary = {case: {phase: {"median": round(statistics.median(v), 3), "min": min(v),
                              "n": len(v)} for phase, v in phases.items()}
               for case, phases in samples.items()}
    per_hop = (summary["embedded/multicast"]["discovery_ms"]["median"]
               - summary["embedded/unicast"]["discovery_ms"]["median"]) / len(PATH_FORWARDERS)
    report = {"cases": summary, "multicast_per_hop_ms": round(per_hop, 3),
              "load_1min": os.getloadavg()[0], "samples": samples}
    if not args.json:
        for case, phases in summary.items():
            print(f"{case:<20} " + ", ".join(
                f"{phase[:-3]} {s['median']:.2f} ({s['min']:.2f}) ms" for phase, s in phases.items()))
        print(f"multicast discovery adds {per_hop:.2f} ms per forwarding hop "
              f"({len(PATH_FORWARDERS)} hops); 1-minute load {report['load_1min']:.2f}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
