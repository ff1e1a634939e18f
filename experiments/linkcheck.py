"""Link check: is the network what its parameters say?

Measures every configured link between its two end nodes (RTT and loss, UDP probes),
and the reachability matrix: every pair that should reach does, unsolicited traffic
from outside into the CN network does not, and the return traffic of a flow the CN
started does. An MN's links to the networks it is not attached to are measured by
moving it there (layer-2 detach/attach) and back.

metrics.json:
  {"links": [{"name", "configured_ms", "measured_rtt_ms", "error_pct",
              "configured_loss_pct", "measured_loss_pct", ...}],
   "reachability": {"expected", "ok", "violations": [...]}}
error_pct is relative to twice the configured one-way delay (null for links without
delay); measured_loss_pct is the per-direction estimate from round-trip loss.
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

from mip6bench.measure.probe import Flow, probe_flows, percentile
from mip6bench.params import ParamSpec

NAME = "linkcheck"
SWEEP_METRICS = ["links.core-ha.measured_rtt_ms", "links.core-ar1.measured_rtt_ms"]
ESTIMATED_RUN_S = 8.0  # for sweeps: one run, network start and teardown included
PARAMS = [
    ParamSpec("probes", int, 200, "probes per link", 1, 100000),
    ParamSpec("interval_ms", float, 5.0, "time between probes of one link", 0.1, 10000),
    ParamSpec("reach_probes", int, 5, "probes per reachability pair", 1, 1000),
]


def _address(tb, node: str, mn_addresses: dict[str, str]) -> str:
    return mn_addresses.get(node) or tb.plan.nodes[node].address()


def measure_links(tb, params, specs, mn_addresses) -> list[dict]:
    flows = []
    for spec in specs:
        a, a_addr, b, b_addr = spec.probe
        b_addr = b_addr or mn_addresses[b]
        flows.append(Flow(spec.name, tb.node_ns(a), a_addr, tb.node_ns(b), b_addr))
    results = probe_flows(flows, count=params["probes"], interval=params["interval_ms"] / 1000,
                          linger=max(1.0, 4 * max((s.shaping.delay_ms + s.shaping.jitter_ms)
                                                  for s in specs) / 1000))
    out = []
    for spec, r in zip(specs, results):
        configured = spec.shaping.delay_ms
        rtt = r.rtt_avg_ms
        out.append({
            "name": spec.name, "segment": spec.segment, "ends": [spec.probe[0], spec.probe[2]],
            "backend": tb.link(spec.name).backend,
            "configured_ms": configured,
            "configured_jitter_ms": spec.shaping.jitter_ms,
            "measured_rtt_ms": None if rtt is None else round(rtt, 3),
            "rtt_p50_ms": _round(percentile(r.rtts_ms, 50)),
            "rtt_p99_ms": _round(percentile(r.rtts_ms, 99)),
            "error_pct": (None if not configured or rtt is None
                          else round(100 * (rtt - 2 * configured) / (2 * configured), 2)),
            "configured_loss_pct": spec.shaping.loss_pct,
            "measured_loss_pct": round(100 * r.one_way_loss(), 2),
            "probes": r.sent, "answered": r.answered,
        })
    return out


def _round(v):
    return None if v is None else round(v, 3)


def expected_reach(plan, a: str, b: str) -> tuple[bool, str]:
    """Whether unsolicited traffic from node a reaches node b (and is answered), with the
    reason: every firewall (Plan.firewalls) drops what enters the network it protects
    (its extra["protects"]) or itself from outside; what a node inside starts is answered
    through conntrack."""
    from mip6bench.testbed.operational import is_firewall

    def protector(node: str) -> str | None:
        return next((f.name for f in plan.firewalls() if node in f.extra.get("protects", ())), None)

    if is_firewall(plan.nodes[b]):
        if protector(a) == b:
            return True, "the firewall accepts what comes from its inside"
        return False, "the firewall accepts no unsolicited traffic itself"
    guard = protector(b)
    if guard is None:
        return True, "an unprotected destination"
    if a == guard:
        return True, "the firewall itself reaches its inside"
    if protector(a) == guard:
        return True, "within the protected network"
    return False, f"unsolicited from outside into the network behind {guard}"


def reachability(tb, params, mn_addresses) -> dict:
    """Expected outcomes: (src, dst, expect_delivered, expect_answered, why)."""
    names = [n.name for n in tb.plan.hosts()]
    cases = [(a, b, *expected_reach(tb.plan, a, b)) for a in names for b in names if a != b]
    flows = [Flow(f"{a}->{b}", tb.node_ns(a), _address(tb, a, mn_addresses), tb.node_ns(b),
                  _address(tb, b, mn_addresses)) for a, b, _, _ in cases]
    results = probe_flows(flows, count=params["reach_probes"], interval=0.01, linger=1.0)
    violations, ok = [], 0
    for (a, b, expect, why), r in zip(cases, results):
        reached = r.answered > 0 if expect else r.delivered > 0
        if reached == expect:
            ok += 1
        else:
            violations.append({"src": a, "dst": b, "expected": "reach" if expect else "blocked",
                               "observed": {"sent": r.sent, "delivered": r.delivered,
                                            "answered": r.answered}, "why": why})
    return {"expected": len(cases), "ok": ok, "violations": violations}


def run(tb, params) -> dict:
    mns = tb.plan.by_role("mn")
    mn_addresses = {mn.name: tb.wait_address(mn.name) for mn in mns}
    attached = {mn.name: tb.attached_network(mn.name) for mn in mns}
    fixed = [l for l in tb.plan.links if l.probe and l.a not in mn_addresses]
    first = [tb.plan.link(f"{attached[m]}-{m}") for m in mn_addresses]
    links = measure_links(tb, params, fixed + first, mn_addresses)
    reach = reachability(tb, params, mn_addresses)
    counters = tb.firewall().counters()
    # The MNs' other access links: move there, measure, and come back.
    networks = {mn.name: [n for n in mn.extra["interfaces"] if n != attached[mn.name]] for mn in mns}
    for step in range(max((len(v) for v in networks.values()), default=0)):
        specs, addrs = [], {}
        for mn, nets in networks.items():
            if step < len(nets):
                addrs[mn] = tb.move(mn, nets[step])["address"]
                specs.append(tb.plan.link(f"{nets[step]}-{mn}"))
        links += measure_links(tb, params, specs, addrs)
    for mn, net in attached.items():
        if tb.attached_network(mn) != net:
            tb.move(mn, net)
    return {"links": links, "reachability": reach,
            "firewall_counters": {k: v["packets"] for k, v in counters.items()}}


def summarize(metrics: dict) -> str:
    lines = [f"{'link':<14} {'backend':<7} {'conf ms':>8} {'rtt ms':>9} {'err %':>7} "
             f"{'loss% conf':>10} {'meas':>6}"]
    for l in metrics["links"]:
        rtt = "-" if l["measured_rtt_ms"] is None else f"{l['measured_rtt_ms']:.3f}"
        err = "-" if l["error_pct"] is None else f"{l['error_pct']:+.2f}"
        lines.append(f"{l['name']:<14} {l['backend']:<7} {l['configured_ms']:>8g} {rtt:>9} {err:>7} "
                     f"{l['configured_loss_pct']:>10g} {l['measured_loss_pct']:>6.2f}")
    r = metrics["reachability"]
    lines.append(f"reachability: {r['ok']}/{r['expected']} as expected, "
                 f"{len(r['violations'])} violation(s)")
    for v in r["violations"][:10]:
        lines.append(f"  VIOLATION {v['src']} -> {v['dst']}: expected {v['expected']} ({v['why']})")
    return "\n".join(lines)


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
