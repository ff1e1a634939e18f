"""Handover: a mobile node keeps its connections while it moves between access networks.

The MN (statically configured MN-HA SA) registers with its home agent, runs return
routability with the CN and moves `moves` times between the foreign networks
(break-before-make, `gap_ms` without layer 2). Throughout, the CN sends a UDP probe
stream to the MN's home address (`rate` per second) and keeps a TCP connection to the
home address busy (a small message every `tcp_interval_ms`, echoed back). The CN sits
behind the firewall: with NSIS (topology nsis=on, the default) the MN re-signals its
NATFW pinholes for each new care-of address before return routability; with nsis=off
the firewall's Mobile IPv6 pinholes are opened statically.

metrics.json:
  "handover": one entry per move, times in ms:
     from, to, l2_gap_ms
     movement_detection_ms  link up -> first Router Advertisement on the new link
     coa_ms                 that RA -> care-of address usable (SLAAC, DAD as configured)
     ha_registration_ms     Binding Update to the HA sent -> its Binding Ack received
     rr_ms                  first HoTI/CoTI sent -> last token back (CN BU sent); null
                            without route optimisation
     cn_binding_ms          BU to the CN sent -> its Binding Ack received (RO on; with
                            NSIS: the data round starts)
     nsis_ms, nsis_floor_ms NSIS: pinholes for the new CoA asked -> granted (before RR),
                            and its floor (below); nsis_data_ms: the data round
     l2_gap_actual_ms       the layer-2 gap as it happened (detach -> attach); the floor uses it
     disruption_ms          split by sequence number: the last probe through the old path
                            (highest sequence number sent before the detach that arrived)
                            -> the first through the new path (the next that arrived), in
                            arrival times from the kernel (SO_TIMESTAMPNS)
     lost_packets           sequence numbers lost in between
     floor_ms, ratio        the best the configuration allows, and disruption / floor
  "tcp_survived": the TCP connection delivered and echoed every message, in order.
probes.csv in the run directory: the UDP stream, one row per probe (seq, sent_ns,
arrival_ns; empty when lost).

floor_ms (all one-way delays d_<segment> = configured delay - jitter, at least 0; l2_gap
the gap as it happened):
     d(MN,HA) = d_access + d_backhaul + d_home_uplink
     d(MN,CN) = d_access + d_backhaul + d_cn_uplink + d_cn_lan
     d(HA,CN) = d_home_uplink + d_cn_uplink + d_cn_lan
     floor = l2_gap + d_access            the first RA may be sent the instant the link is
                                          up (best case of the RA interval)
           + DAD                          standard: DupAddrDetectTransmits x RetransTimer
                                          of the new interface for a care-of address new
                                          to the MN (the kernel keeps an address through
                                          a carrier loss); optimistic, off: 0
           + 2 d(MN,HA)                   BU to the HA and its BA
       with NSIS and route optimisation:
           + 4 d(MN,FW) + 4 d(FW,CN)      the CoA's NATFW sessions for the new flow: GIST
                                          Query/Response with the firewall, CREATE in the
                                          Confirm, the firewall's handshake with the CN
                                          and the CREATE on, RESPONSE back to the MN
                                          (2 d(MN,FW) + 2 d(FW,CN) for a care-of address
                                          revisited while GIST still holds its routing
                                          state: nsis_handshake false)
       with route optimisation (the CN keeps sending to the old CoA until it has the new
       binding):
           + max(2 (d(MN,HA) + d(HA,CN)), 2 d(MN,CN))   HoTI/HoT via the HA, CoTI/CoT direct,
                                          in parallel (the HoTI only when the home token
                                          is stale; otherwise 2 d(MN,CN))
           + d(MN,CN) + d(MN,CN)          BU to the CN, then its next probe to the new CoA
       That is floor_sequential_ms, the steps one after the other as this MN takes them.
       floor_ms is the best legal sequencing: RFC 6275 lets the CoTI go out while the
       home Binding Update is in flight (and the HoTI right behind the BU, the HA having
       the new binding when the HoT comes back); the CoA's NATFW sessions need only the
       CoA. So, with route optimisation:
           floor = l2_gap + d_access + DAD
                 + max(2 d(MN,HA), [2 (d(MN,HA) + d(HA,CN)) if the home test runs],
                       [NSIS re-signalling] + 2 d(MN,CN))
                 + 2 d(MN,CN)
       ratio = disruption / floor_ms (the best legal floor).
       without it the floor ends with the HA's next tunnelled probe: the 2 d(MN,HA) above
       already contains it (the HA forwards to the new CoA from the moment it has the BU).
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import json
import time

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.measure.streams import TcpEcho, UdpStream
from mip6bench.params import ParamSpec

NAME = "handover"
SWEEP_METRICS = ["handover.0.disruption_ms", "handover.0.ha_registration_ms"]
ESTIMATED_RUN_S = 15.0  # for sweeps (default moves and dwell)
PARAMS = [
    ParamSpec("moves", int, 3, "number of handovers", 1, 1000),
    ParamSpec("gap_ms", float, 50.0, "layer-2 gap of each handover (ms)", 0, 60000),
    ParamSpec("dwell_ms", float, 1500.0, "time on each network once the handover completed (ms)", 0, 600000),
    ParamSpec("rate", float, 1000.0, "UDP probes per second, CN to the home address", 1, 20000),
    ParamSpec("tcp_interval_ms", float, 10.0, "time between TCP messages (ms)", 1, 10000),
    ParamSpec("route_optimization", bool, True, "route-optimise with the CN (else tunnel only)"),
    ParamSpec("settle_s", float, 10.0, "how long a handover may take before the run fails (s)", 1, 600),
]
UDP_PORT, TCP_PORT = 9000, 9001


def one_way(params: dict, segment: str) -> float:
    return max(0.0, params[f"{segment}_delay_ms"] - params[f"{segment}_jitter_ms"])


def nsis_floor_ms(topo: dict, handshake: bool = True) -> float:
    """Re-signalling the care-of address's NATFW sessions after a move: a GIST handshake
    for the new MRI with the firewall (Query, Response), the CREATE in the Confirm, the
    firewall's handshake with the CN and the CREATE on, the RESPONSE back to the MN.
    Without handshake (a care-of address revisited while GIST still holds routing state
    for its flow) the CREATE goes straight to the firewall, on to the CN, and back."""
    access, backhaul = one_way(topo, "access"), one_way(topo, "backhaul")
    cn_up, cn_lan = one_way(topo, "cn_uplink"), one_way(topo, "cn_lan")
    mn_fw = access + backhaul + cn_up
    return round((4 * mn_fw + 4 * cn_lan) if handshake else (2 * mn_fw + 2 * cn_lan), 3)


def handover_floor_ms(topo: dict, gap_ms: float, dad_ms: float, route_optimization: bool,
                      home_test: bool = True, nsis: bool = False, nsis_handshake: bool = True,
                      sequential: bool = False) -> float:
    """The best-case disruption of a handover (see the module docstring): with the
    protocols' best legal sequencing, or (sequential) with the steps one after the
    other as this MN takes them."""
    access, backhaul = one_way(topo, "access"), one_way(topo, "backhaul")
    home, cn_up, cn_lan = one_way(topo, "home_uplink"), one_way(topo, "cn_uplink"), one_way(topo, "cn_lan")
    mn_ha = access + backhaul + home
    mn_cn = access + backhaul + cn_up + cn_lan
    ha_cn = home + cn_up + cn_lan
    floor = gap_ms + access + dad_ms
    if not route_optimization:
        return round(floor + 2 * mn_ha, 3)
    nsis_ms = nsis_floor_ms(topo, nsis_handshake) if nsis else 0.0
    home_rr = 2 * (mn_ha + ha_cn) if home_test else 0.0   # HoTI/HoT via the HA
    care_of_rr = 2 * mn_cn                                 # CoTI/CoT direct
    if sequential:
        floor += 2 * mn_ha + nsis_ms + max(home_rr, care_of_rr)
    else:
        # RFC 6275 lets the CoTI (and, once the BU to the HA is on its way, the HoTI
        # behind it) go out while the home registration is in flight; the CoA's NATFW
        # sessions need only the CoA. The BU to the CN waits for the slowest of them.
        floor += max(2 * mn_ha, home_rr, nsis_ms + care_of_rr)
    return round(floor + 2 * mn_cn, 3)


def dad_ms(tb, mn: str, network: str) -> float:
    """What DAD costs a new CoA on this interface: transmits x RetransTimer (standard)."""
    if tb.plan.nodes[mn].extra["dad"] != "standard":
        return 0.0
    intf = tb.plan.nodes[mn].extra["interfaces"][network]
    kernel = tb.node(mn).kernel
    transmits = int(kernel.read_sysctl(f"net/ipv6/conf/{intf}/dad_transmits"))
    retrans = int(kernel.read_sysctl(f"net/ipv6/neigh/{intf}/retrans_time_ms"))
    return float(transmits * retrans)


def _events(path) -> list[dict]:
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _first(events, name: str, after_ns: int, before_ns: int | None = None, **match):
    for e in events:
        if e["event"] == name and e["t_ns"] >= after_ns and (before_ns is None or e["t_ns"] < before_ns) \
                and all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def _ms(a, b) -> float | None:
    return None if a is None or b is None else round((b["t_ns"] - a["t_ns"]) / 1e6, 3)


def phases(events: list[dict], move: dict, until_ns: int | None, interface: str) -> dict:
    """The handover's phases from the MN agent's event log (CLOCK_MONOTONIC ns)."""
    attach = move["attach_ns"]
    detected = _first(events, "mipv6.mn.movement_detected", attach, until_ns, interface=interface)
    ready = _first(events, "mipv6.mn.coa_ready", attach, until_ns, interface=interface)
    coa = ready["coa"] if ready else None
    bu = _first(events, "mipv6.mn.home_bu_sent", attach, until_ns, coa=coa) if coa else None
    registered = _first(events, "mipv6.mn.home_registered", attach, until_ns, coa=coa) if coa else None
    start = registered["t_ns"] if registered else attach
    tests = [e for e in (_first(events, "mipv6.mn.hoti_sent", start, until_ns),
                         _first(events, "mipv6.mn.coti_sent", start, until_ns)) if e]
    rr_start = min(tests, key=lambda e: e["t_ns"]) if tests else None
    cn_bu = _first(events, "mipv6.mn.cn_bu_sent", start, until_ns, coa=coa) if coa else None
    ro_on = _first(events, "mipv6.mn.ro_on", start, until_ns, coa=coa) if coa else None
    # NSIS (topology nsis=on): the pinholes for the new CoA before RR, and the data
    # round after the CN's BA (then ro_on follows the data round).
    nsis = _first(events, "mipv6.mn.traversal_started", start, until_ns, coa=coa, phase="rr") if coa else None
    nsis_done = _first(events, "mipv6.mn.traversal_done", start, until_ns, coa=coa, phase="rr") if coa else None
    data = _first(events, "mipv6.mn.traversal_started", start, until_ns, coa=coa, phase="data") if coa else None
    data_done = _first(events, "mipv6.mn.traversal_done", start, until_ns, coa=coa, phase="data") if coa else None
    attach_event = {"t_ns": attach}
    return {
        "coa": coa,
        "movement_detection_ms": _ms(attach_event, detected),
        "coa_ms": _ms(detected, ready),
        "ha_registration_ms": _ms(bu, registered),
        "rr_ms": _ms(rr_start, cn_bu),
        "cn_binding_ms": _ms(cn_bu, data or ro_on),
        "nsis_ms": _ms(nsis, nsis_done),
        # A new GIST handshake (routing state came up) unless GIST still had state for
        # the flow of a care-of address used before.
        "nsis_handshake": bool(nsis and nsis_done and _first(events, "nsis.gist_up", nsis["t_ns"],
                                                              nsis_done["t_ns"])),
        "nsis_data_ms": _ms(data, data_done),
        "home_test": any(e["event"] == "mipv6.mn.hoti_sent" for e in tests),
        "handover_ms": _ms({"t_ns": move["detach_ns"]}, ro_on or registered),
    }


def run(tb, params) -> dict:
    if tb.params["mipv6"] != "static":
        raise ParameterError("the handover experiment needs statically configured SAs",
                             "leave the topology parameter mipv6 at static")
    mn = tb.plan.by_role("mn")[0].name
    cn = tb.plan.nodes["cn"].address()
    ro = params["route_optimization"]
    agent = tb.mobility_agent(mn)
    if not ro:
        agent.request("ro-stop", cn=cn)
    if tb.params["nsis"] != "on":
        tb.open_static_mipv6_pinholes()
    tb.wait_registered(mn, timeout=params["settle_s"])
    if ro:
        agent.request("wait", timeout=params["settle_s"] + 2, until="ro", cn=cn, within=params["settle_s"])
    return handovers(tb, mn, params)


PROBES_FILE = "probes.csv"  # the UDP stream: seq, sent_ns, arrival_ns (empty: lost)


def write_probes(path, stream) -> None:
    arrival = dict(stream.arrivals)
    rows = [f"{seq},{sent},{arrival.get(seq, '')}" for seq, sent in enumerate(stream.sent)]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("seq,sent_ns,arrival_ns\n" + "\n".join(rows) + "\n")
    tmp.replace(path)


def read_probes(path) -> list[tuple[int, int, int | None]]:
    out = []
    for line in path.read_text().splitlines()[1:]:
        seq, sent, arrival = line.split(",")
        out.append((int(seq), int(sent), int(arrival) if arrival else None))
    return out


def handovers(tb, mn: str, params: dict, on_move=None) -> dict:
    """The MN (registered; route-optimised with the CN if params["route_optimization"])
    moves params["moves"] times round the foreign networks while the CN's UDP stream and
    TCP connection run to its home address; the metrics of the module docstring.
    on_move(i, move) is called after each completed handover (progress)."""
    plan = tb.plan
    hoa = tb.mobility_agent(mn).request("status")["hoa"]
    cn = plan.nodes["cn"].address()
    ro = params["route_optimization"]
    nsis = tb.params["nsis"] == "on"
    agent = tb.mobility_agent(mn)
    settle = params["settle_s"]
    networks = [n for n in plan.nodes[mn].extra["interfaces"] if n != "home"]
    if len(networks) < 2:
        raise ParameterError("a handover needs at least two foreign networks", "set foreign=2 or more")
    stream = UdpStream(tb.node("cn").pid, cn, tb.node(mn).pid, hoa, UDP_PORT, params["rate"]).start()
    tcp = TcpEcho(tb.node("cn").pid, cn, tb.node(mn).pid, hoa, TCP_PORT,
                  params["tcp_interval_ms"] / 1000).start()
    moves = []
    try:
        time.sleep(params["dwell_ms"] / 1000)
        for i in range(params["moves"]):
            here = tb.attached_network(mn)
            target = networks[(networks.index(here) + 1) % len(networks)] if here in networks else networks[0]
            move = tb.move(mn, target, gap_ms=params["gap_ms"])
            until = {"until": "ro", "cn": cn} if ro else {"until": "registered"}
            try:
                agent.request("wait", timeout=settle + 2, coa=move["address"], within=settle, **until)
            except Exception as exc:
                raise Mip6benchError(f"handover {i + 1} ({here} -> {target}) did not complete: {exc}") from None
            move["done_ns"] = time.monotonic_ns()
            moves.append(move)
            if on_move:
                on_move(i, move)
            time.sleep(params["dwell_ms"] / 1000)
    finally:
        stream.stop()
        # how long the TCP connection may take to deliver what is in flight (a long
        # outage leaves TCP in retransmission backoff: its next try may be 30 s away)
        tcp_result = tcp.finish(params.get("tcp_drain_s", 10.0))
    write_probes(tb.run.out_dir / PROBES_FILE, stream)
    events = _events(agent.events_path)
    out = []
    for i, move in enumerate(moves):
        until = moves[i + 1]["detach_ns"] if i + 1 < len(moves) else None
        interface = plan.nodes[mn].extra["interfaces"][move["to"]]
        p = phases(events, move, until, interface)
        outage = stream.outage(move["detach_ns"]) or {}
        # The kernel keeps an address through a carrier loss: only a care-of address new
        # to the MN goes through DAD (a revisited network's is usable at once).
        known = {e.get("coa") for e in events if e["event"] == "mipv6.mn.coa_ready" and e["t_ns"] < move["attach_ns"]}
        dad = 0.0 if p["coa"] in known else dad_ms(tb, mn, move["to"])
        # The layer-2 gap as it happened (the controller's sleep can overshoot).
        gap = round((move["attach_ns"] - move["detach_ns"]) / 1e6, 3)
        floor = handover_floor_ms(tb.params, gap, dad, ro, p["home_test"], nsis, p["nsis_handshake"])
        floor_sequential = handover_floor_ms(tb.params, gap, dad, ro, p["home_test"], nsis,
                                             p["nsis_handshake"], sequential=True)
        disruption = outage.get("disruption_ms")
        out.append({
            "from": move["from"], "to": move["to"], "l2_gap_ms": move["l2_gap_ms"], "l2_gap_actual_ms": gap,
            "movement_detection_ms": p["movement_detection_ms"], "coa_ms": p["coa_ms"],
            "ha_registration_ms": p["ha_registration_ms"], "rr_ms": p["rr_ms"] if ro else None,
            "cn_binding_ms": p["cn_binding_ms"] if ro else None,
            "nsis_ms": p["nsis_ms"] if ro and nsis else None,
            "nsis_floor_ms": nsis_floor_ms(tb.params, p["nsis_handshake"]) if ro and nsis else None,
            "nsis_handshake": p["nsis_handshake"] if ro and nsis else None,
            "nsis_data_ms": p["nsis_data_ms"] if ro and nsis else None,
            "disruption_ms": disruption, "lost_packets": outage.get("lost_packets"),
            "floor_ms": floor, "floor_sequential_ms": floor_sequential,
            "ratio": None if disruption is None else round(disruption / floor, 3),
            "dad_ms": dad, "home_test": p["home_test"], "handover_ms": p["handover_ms"], "coa": p["coa"],
            "detach_ns": move["detach_ns"], "attach_ns": move["attach_ns"], "done_ns": move["done_ns"],
        })
    return {
        "handover": out,
        "tcp_survived": tcp.survived(),
        "tcp": {"sent": tcp_result.sent, "echoed": tcp_result.echoed, "out_of_order": tcp_result.out_of_order,
                "error": tcp_result.error, "max_gap_ms": round(tcp_result.max_gap_ms, 3)},
        "udp": {"rate": params["rate"], "sent": len(stream.sent), "received": len(stream.arrivals),
                "send_errors": stream.send_errors, "kernel_timestamps": stream.kernel_stamps},
        "route_optimization": ro,
        "nsis": nsis,
        "dad": tb.plan.nodes[mn].extra["dad"],
        "ra_interval_ms": [tb.params["ra_min_ms"], tb.params["ra_max_ms"]],
    }


def summarize(metrics: dict) -> str:
    lines = [f"{'move':<10} {'gap':>5} {'detect':>7} {'coa':>6} {'HA reg':>7} {'RR':>7} {'CN BU':>7} "
             f"{'disrupt':>8} {'lost':>5} {'floor':>7} {'ratio':>6} {'seq.floor':>9}"]

    def f(v, width=7):
        return f"{'-':>{width}}" if v is None else f"{v:>{width}.1f}"

    for h in metrics["handover"]:
        lines.append(f"{h['from'] + '->' + h['to']:<10} {h['l2_gap_ms']:>5g} {f(h['movement_detection_ms'])} "
                     f"{f(h['coa_ms'], 6)} {f(h['ha_registration_ms'])} {f(h['rr_ms'])} {f(h['cn_binding_ms'])} "
                     f"{f(h['disruption_ms'], 8)} {'-' if h['lost_packets'] is None else h['lost_packets']:>5} "
                     f"{f(h['floor_ms'])} {'-' if h['ratio'] is None else format(h['ratio'], '.2f'):>6} "
                     f"{f(h.get('floor_sequential_ms'), 9)}")
    lines.append("ms; floor: the best legal sequencing (ratio = disrupt / floor); seq.floor: with this "
                 "MN's one-after-the-other sequencing")
    t = metrics["tcp"]
    lines.append(f"TCP to the home address: {'survived' if metrics['tcp_survived'] else 'BROKEN'} "
                 f"({t['echoed']}/{t['sent']} messages echoed, longest gap {t['max_gap_ms']:.0f} ms"
                 f"{', error: ' + t['error'] if t['error'] else ''})")
    u = metrics["udp"]
    lines.append(f"UDP probes: {u['received']}/{u['sent']} received at {u['rate']:g}/s")
    return "\n".join(lines)


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
