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
3. Tunnel backends side by side (every backend this kernel has: ip6tnl, seg6, userspace),
   each in its own network, unshaped and with every link at 1 Gbit/s (tbf): TCP from the
   MN to the PAA on the home link from the care-of address (plain routing through the
   HA) and from the home address (the same links, through the tunnel), the CPU the whole
   machine spent per Gbit on each, per-packet round trips of both (added one-way latency
   = half the difference, p50/p99), and after each of three handovers the time from the
   Binding Ack at the MN to the first packet of a 2,000/s stream from the PAA through
   the re-pointed tunnel.
4. Handover disruption against floor_ms: the handover experiment with its defaults.
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


def busy_jiffies() -> int:
    """CPU time the whole machine spent not idle (all namespaces share /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]   # minus idle and iowait


def iperf_to(tb, client: str, bind: str, server_node: str, server_address: str, seconds: float) -> dict:
    """One TCP test client -> server_node with a one-off iperf3 server; Mbit/s and the
    machine's CPU seconds per Gbit received."""
    server = tb.node(server_node).popen(["iperf3", "-s", "-1", "-6", "--forceflush", "-B", server_address],
                                        text=True)
    try:
        while "Server listening" not in server.stdout.readline():
            if server.poll() is not None:
                raise RuntimeError("iperf3 server did not start")
        j0 = busy_jiffies()
        out = tb.node(client).cmd(f"iperf3 -6 -c {server_address} -B {bind} -t {seconds:g} -J")
        cpu_s = (busy_jiffies() - j0) / os.sysconf("SC_CLK_TCK")
    finally:
        server.wait(timeout=seconds + 30)
    data = json.loads(out[out.index("{"):])
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    received = data["end"]["sum_received"]
    gbit = received["bytes"] * 8 / 1e9
    return {"mbit": received["bits_per_second"] / 1e6, "cpu_s_per_gbit": cpu_s / gbit if gbit else None}


def bench_tunnel_backend(backend: str, bw_mbit: float, seconds: float = 3.0, rounds: int = 3,
                         handovers: int = 3) -> dict:
    import statistics

    from mip6bench.measure.probe import Flow, percentile, probe_flows
    from mip6bench.measure.streams import UdpStream
    from mip6bench.testbed.network import Testbed

    segments = ("access", "backhaul", "home_uplink", "home_lan", "cn_uplink", "cn_lan")
    params = {f"{seg}_delay_ms": 0 for seg in segments}
    params.update({f"{seg}_bw_mbit": bw_mbit for seg in segments})
    tb = Testbed({**params, "tunnel": backend}, experiment="bench-tunnel", capture=False)
    tb.start()
    try:
        paa = tb.plan.nodes["paa"].address()
        hoa = tb.plan.nodes["mn1"].extra["hoa"]
        mn = tb.mobility_agent("mn1")
        coa = tb.wait_registered("mn1")["coa"]
        out: dict = {"backend": backend, "links": f"{bw_mbit:g} Mbit/s (tbf)" if bw_mbit else "unshaped veth"}
        # Round trips MN <-> PAA: the same links, plain (CoA) and through the tunnel (HoA).
        rtts = {}
        for name, src in (("plain", coa), ("tunnel", hoa)):
            [r] = probe_flows([Flow(name, tb.node("mn1").pid, src, tb.node("paa").pid, paa)],
                              count=2000, interval=0.0005, linger=1.0)
            rtts[name] = {"p50_us": round(percentile(r.rtts_ms, 50) * 1000, 1),
                          "p99_us": round(percentile(r.rtts_ms, 99) * 1000, 1), "lost": r.sent - r.answered}
        out["rtt"] = rtts
        out["added_one_way_us"] = {q: round((rtts["tunnel"][q] - rtts["plain"][q]) / 2, 1)
                                   for q in ("p50_us", "p99_us")}
        samples: dict[str, list[dict]] = {"plain": [], "tunnel": []}
        for _ in range(rounds):
            samples["plain"].append(iperf_to(tb, "mn1", coa, "paa", paa, seconds))
            samples["tunnel"].append(iperf_to(tb, "mn1", hoa, "paa", paa, seconds))
        for name, runs in samples.items():
            out[f"{name}_mbit"] = round(statistics.median(r["mbit"] for r in runs), 1)
            out[f"{name}_cpu_s_per_gbit"] = round(statistics.median(r["cpu_s_per_gbit"] for r in runs), 3)
            out[f"{name}_rounds_mbit"] = [round(r["mbit"], 1) for r in runs]
        out["tunnel_vs_plain"] = round(out["tunnel_mbit"] / out["plain_mbit"], 3)
        # Handovers: Binding Ack at the MN -> first packet through the re-pointed tunnel.
        stream = UdpStream(tb.node("paa").pid, paa, tb.node("mn1").pid, hoa, 9300, rate=2000).start()
        gaps = []
        try:
            for i in range(handovers):
                network = "f2" if tb.attached_network("mn1") == "f1" else "f1"
                t0 = time.monotonic_ns()
                move = tb.move("mn1", network)
                tb.wait_registered("mn1", coa=move["address"])
                [ba] = [e for e in mn.request("events", n=200)
                        if e["event"] == "mipv6.mn.home_registered" and e["t_ns"] >= t0][:1]
                first = stream.first_arrival_after(move["attach_ns"], timeout=5.0)
                gaps.append(round((first - ba["t_ns"]) / 1e6, 3) if first else None)
        finally:
            stream.stop()
        out["ba_to_first_packet_ms"] = gaps
        # How long re-pointing the tunnel took (the HA applies it before its Binding Ack).
        for node, agent in (("ha", tb.mobility_agent("ha")), ("mn", mn)):
            out[f"{node}_tunnel_change_ms"] = [e["kernel_ms"] for e in agent.request("events", n=500)
                                               if e["event"] == f"mipv6.{node}.tunnel_up"][-handovers:]
        return out
    finally:
        tb.stop()


def bench_tunnel_backends(bw_mbit: float) -> list[dict]:
    from mip6bench.net.tunnel import BACKENDS, probe_backends

    available = probe_backends()
    return [bench_tunnel_backend(name, bw_mbit) for name in BACKENDS if available[name][0]]


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
    parser.add_argument("--only", choices=("bu", "throughput", "backends", "handover"))
    args = parser.parse_args()
    results = {}
    if args.only in (None, "bu"):
        results["binding_updates"] = bench_binding_updates()
    if args.only in (None, "throughput"):
        results["throughput"] = [bench_throughput(bw_mbit=0), bench_throughput(bw_mbit=1000)]
    if args.only in (None, "backends"):
        results["tunnel_backends"] = bench_tunnel_backends(0) + bench_tunnel_backends(1000)
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
    for t in results.get("tunnel_backends", []):
        print(f"tunnel {t['backend']:<9} {t['links']:<18} TCP MN->PAA plain {t['plain_mbit']} Mbit/s "
              f"({t['plain_cpu_s_per_gbit']} CPU s/Gbit), tunnel {t['tunnel_mbit']} Mbit/s "
              f"({t['tunnel_cpu_s_per_gbit']} CPU s/Gbit) = {t['tunnel_vs_plain']:.2f} of plain; "
              f"RTT plain p50/p99 {t['rtt']['plain']['p50_us']}/{t['rtt']['plain']['p99_us']} us, "
              f"tunnel {t['rtt']['tunnel']['p50_us']}/{t['rtt']['tunnel']['p99_us']} us, added one-way "
              f"{t['added_one_way_us']['p50_us']}/{t['added_one_way_us']['p99_us']} us; "
              f"BA -> first packet {t['ba_to_first_packet_ms']} ms; tunnel change HA "
              f"{t['ha_tunnel_change_ms']} ms, MN {t['mn_tunnel_change_ms']} ms; rounds plain {t['plain_rounds_mbit']} "
              f"tunnel {t['tunnel_rounds_mbit']}")
    if "handover" in results:
        h = results["handover"]
        for row in h["moves"]:
            print(f"handover {row['from']}->{row['to']}: disruption {row['disruption_ms']} ms, "
                  f"floor {row['floor_ms']} ms, ratio {row['ratio']}, lost {row['lost_packets']}")
        print(f"TCP survived: {h['tcp_survived']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
