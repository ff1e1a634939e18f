"""Mobile IPv6 benchmarks (run as root: `.venv/bin/python bench/mipv6_bench.py [--json]`).

1. Binding Updates the home agent core processes per second, each authenticated with
   RFC 4285 (HMAC-SHA1-96 MN-HA, timestamp replay protection), on one core: a
   population of MNs re-registering (refreshes and CoA changes).
2. TCP throughput (iperf3, MN -> CN), medians of alternating rounds: the plain routed
   path from the care-of address, the bidirectional tunnel through the HA from the home
   address, and the route-optimised path (user-space Home Address option / type 2 routing
   header); once with unshaped veth links (CPU-bound kernel paths; the tunnel also takes
   the detour through the HA) and once with every link limited to 1 Gbit/s by tbf in the
   kernel (capacity-bound, as in an operational network).
3. Handover disruption against floor_ms: the handover experiment with its defaults.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench import REPO_ROOT  # noqa: E402
from mip6bench.mipv6 import HomeAgent, MobilitySA, SAStore  # noqa: E402
from mip6bench.mipv6.crypto import encode_with_mn_ha, ntp_timestamp  # noqa: E402
from mip6bench.mipv6.wire import (AlternateCareOfAddress, BindingUpdate,  # noqa: E402
                                  MobileNodeIdentifier, ReplayProtection)

HA = "2001:db8:1::1"


def bench_binding_updates(mns: int = 1000, rounds: int = 10) -> dict:
    """BUs/s through HomeAgent.receive with authentication, no kernel in the loop."""
    sas = [MobilitySA(0x1000 + i, os.urandom(16), hoa=f"2001:db8:1::{0x1000 + i:x}", nai=f"mn{i}@bench")
           for i in range(mns)]
    ha = HomeAgent(HA, ["2001:db8:1::/64"], SAStore(sas), max_lifetime=3600)
    now = 1000.0
    packets = []
    for r in range(rounds):
        for i, sa in enumerate(sas):
            coa = f"2001:db8:{0x11 + r % 2:x}::{i + 1:x}"   # every other round a new CoA
            bu = BindingUpdate((r + 1) & 0xFFFF, 600, ack=True, home_registration=True,
                               options=(AlternateCareOfAddress(coa), MobileNodeIdentifier.from_nai(sa.nai),
                                        ReplayProtection(ntp_timestamp(now + r * 0.001 + i * 1e-6))))
            packets.append((encode_with_mn_ha(bu, sa, coa, sa.hoa, sa.hoa, HA), coa, sa.hoa))
    t0 = time.perf_counter()
    for data, coa, hoa in packets:
        ha.receive(data, coa, HA, now, hao=hoa)
    elapsed = time.perf_counter() - t0
    accepted = ha.counters["bu.accepted"]
    assert accepted == len(packets), dict(ha.counters)
    return {"binding_updates": len(packets), "accepted": accepted, "seconds": round(elapsed, 3),
            "per_second": round(len(packets) / elapsed), "target_per_second": 5000}


def iperf(tb, client: str, bind: str, server_address: str, seconds: float) -> float:
    """One TCP test with a one-off iperf3 server on the CN (waited for on its ready line;
    a long-running server refuses a test that arrives while it still winds the last
    one down)."""
    server = tb.node("cn").popen(["iperf3", "-s", "-1", "-6", "--forceflush", "-B", server_address],
                                 text=True)
    try:
        while "Server listening" not in server.stdout.readline():
            if server.poll() is not None:
                raise RuntimeError("iperf3 server did not start")
        out = tb.node(client).cmd(f"iperf3 -6 -c {server_address} -B {bind} -t {seconds:g} -J")
    finally:
        server.wait(timeout=seconds + 30)
    data = json.loads(out[out.index("{"):])
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    return data["end"]["sum_received"]["bits_per_second"] / 1e6


def bench_throughput(seconds: float = 3.0, rounds: int = 3, bw_mbit: float = 0.0) -> dict:
    """Plain routed vs HA tunnel vs route-optimised TCP throughput MN -> CN, alternating
    `rounds` times (medians reported: the machine's other work moves single runs a lot).
    bw_mbit = 0: unshaped veth links, so the paths are CPU-bound; > 0: every link limited
    to that rate in the kernel (tbf), as links of an operational network are."""
    import statistics

    from mip6bench.testbed.network import Testbed

    segments = ("access", "backhaul", "home_uplink", "home_lan", "cn_uplink", "cn_lan")
    params = {f"{seg}_delay_ms": 0 for seg in segments}
    params.update({f"{seg}_bw_mbit": bw_mbit for seg in segments})
    tb = Testbed(params, experiment="bench-mipv6", capture=False)
    tb.start()
    try:
        cn = tb.plan.nodes["cn"].address()
        hoa = tb.plan.nodes["mn1"].extra["hoa"]
        mn = tb.mobility_agent("mn1")
        tb.open_static_mipv6_pinholes()
        tb.agents[("fw", "fw")].request("pinhole-open", id="bench-iperf", src="2001:db8:1::/64", dst=cn,
                                        proto="tcp", dport=5201)
        coa = tb.wait_registered("mn1")["coa"]
        samples: dict[str, list[float]] = {"plain_routed_mbit": [], "ha_tunnel_mbit": [],
                                           "route_optimized_mbit": []}
        for _ in range(rounds):
            samples["plain_routed_mbit"].append(iperf(tb, "mn1", coa, cn, seconds))
            mn.request("ro-stop", cn=cn)
            samples["ha_tunnel_mbit"].append(iperf(tb, "mn1", hoa, cn, seconds))
            mn.request("ro-start", cn=cn)
            mn.request("wait", timeout=12, until="ro", cn=cn, within=10)
            samples["route_optimized_mbit"].append(iperf(tb, "mn1", hoa, cn, seconds))
        results: dict = {k: round(statistics.median(v), 1) for k, v in samples.items()}
        results["rounds"] = {k: [round(x, 1) for x in v] for k, v in samples.items()}
        results["tunnel_vs_plain"] = round(results["ha_tunnel_mbit"] / results["plain_routed_mbit"], 3)
        results["route_optimized_vs_plain"] = round(results["route_optimized_mbit"] / results["plain_routed_mbit"], 3)
        results["tunnel_backend"] = tb.mobility_agent("ha").request("status")["backend"]
        results["links"] = f"{bw_mbit:g} Mbit/s (tbf)" if bw_mbit else "unshaped veth"
        return results
    finally:
        tb.stop()


def bench_handover() -> dict:
    from mip6bench.testbed.network import Testbed

    spec = importlib.util.spec_from_file_location("handover", REPO_ROOT / "experiments" / "handover.py")
    handover = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handover)
    from mip6bench.params import parse_params

    params = parse_params(handover.PARAMS, {"moves": "4", "dwell_ms": "1000"})
    tb = Testbed({}, experiment="bench-mipv6-handover", capture=False)
    tb.start()
    try:
        metrics = handover.run(tb, params)
    finally:
        tb.stop()
    rows = [{k: h[k] for k in ("from", "to", "disruption_ms", "floor_ms", "ratio", "lost_packets")}
            for h in metrics["handover"]]
    return {"moves": rows, "tcp_survived": metrics["tcp_survived"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=("bu", "throughput", "handover"))
    args = parser.parse_args()
    results = {}
    if args.only in (None, "bu"):
        results["binding_updates"] = bench_binding_updates()
    if args.only in (None, "throughput"):
        results["throughput"] = [bench_throughput(bw_mbit=0), bench_throughput(bw_mbit=1000)]
    if args.only in (None, "handover"):
        results["handover"] = bench_handover()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if "binding_updates" in results:
        b = results["binding_updates"]
        print(f"HA binding updates (RFC 4285 auth, one core): {b['per_second']}/s "
              f"({b['binding_updates']} in {b['seconds']} s; target {b['target_per_second']}/s)")
    for t in results.get("throughput", []):
        print(f"TCP MN->CN, {t['links']} ({t['tunnel_backend']} tunnel backend, median of "
              f"{len(t['rounds']['plain_routed_mbit'])}): plain routed {t['plain_routed_mbit']} Mbit/s, "
              f"HA tunnel {t['ha_tunnel_mbit']} Mbit/s ({t['tunnel_vs_plain']:.2f} of plain, target 0.9), "
              f"route-optimised {t['route_optimized_mbit']} Mbit/s ({t['route_optimized_vs_plain']:.2f} of plain); "
              f"rounds {t['rounds']}")
    if "handover" in results:
        h = results["handover"]
        for row in h["moves"]:
            print(f"handover {row['from']}->{row['to']}: disruption {row['disruption_ms']} ms, "
                  f"floor {row['floor_ms']} ms, ratio {row['ratio']}, lost {row['lost_packets']}")
        print(f"TCP survived: {h['tcp_survived']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
