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
     clock_uncertainty_ms   an MN on another server: +- this much in the figures that pair
                            the controller's move with the MN's events (movement_detection_ms,
                            handover_ms); the disruption is taken on the receiver's clock alone
  "tcp_survived": the TCP connection delivered and echoed every message, in order.
  "mn_clock": an MN on another server (cluster mode): its clock's offset at the start and
     at the end, the drift between them, the uncertainty above, and whether its ends of
     the stream and the connection ran in its server's helper ("helper") or were reached
     by pid (a server on this kernel).
probes.csv in the run directory: the UDP stream, one row per probe (seq, sent_ns,
arrival_ns; empty when lost).

     floor_mn_ms            the floor of this MN's sequencing (the HoTI after the home BA);
                            above floor_ms only when the home token was stale
     floors                 each phase's own floor (movement_detection_ms, coa_ms,
                            ha_registration_ms, nsis_ms, rr_ms, cn_binding_ms)

The floors come from mip6bench/measure/floors.py (handover_floor_ms, handover_phase_floors,
natfw_resignal_floor_ms; README.md "The floor model"): one-way delays are configured
delay - jitter, the layer-2 gap the one that happened, DAD only for a care-of address new
to the MN. floor_ms is the protocols' best legal sequencing: RFC 6275 lets the CoTI go out
while the home BU is in flight (and the HoTI right behind the BU); the CoA's NATFW
sessions need only the CoA. With route optimisation
     floor = l2_gap + d_access + DAD
           + max(2 d(MN,HA), [2 (d(MN,HA) + d(HA,CN)) if the home test runs],
                 [NATFW re-signalling] + 2 d(MN,CN))
           + 2 d(MN,CN)                   BU to the CN, then its next probe to the new CoA
without it l2_gap + d_access + DAD + 2 d(MN,HA). The summary's table: every phase of
every handover against its floor, overhead (measured - floor) and ratio with the fixed
waits (the wait for the next RA, DAD, the layer-2 gap) left out of both.
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import json
import time

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.measure.floors import (
    format_phase_rows,
    handover_floor_ms,
    handover_phase_floors,
    natfw_resignal_floor_ms,
    one_way,
    phase_row,
)
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
    # The CoA's NATFW sessions and the CoTI go out with the home BU (mip6bench/mipv6/mn.py):
    # the RR and NSIS phases are looked for from the attach on, not from the home BA.
    start = attach
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
    # The MN's ends (UDP receiver, TCP echo server) in its namespace: from here by pid, or
    # on another machine by its server's helper (mip6bench.testbed.remote_endpoints).
    mn_ns = tb.node_ns(mn)
    stream = UdpStream(tb.node_pid("cn"), cn, mn_ns, hoa, UDP_PORT, params["rate"])
    try:
        tcp = TcpEcho(tb.node_pid("cn"), cn, mn_ns, hoa, TCP_PORT, params["tcp_interval_ms"] / 1000)
    except BaseException:
        stream.stop(0)
        raise
    stream.start()
    tcp.start()
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
    clocks = mn_clock(tb, mn)
    cross = clocks["uncertainty_ms"] if clocks else 0.0
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
        floor_mn = handover_floor_ms(tb.params, gap, dad, ro, p["home_test"], nsis, p["nsis_handshake"],
                                     sequencing="mn")
        phase_floors = handover_phase_floors(tb.params, dad, ro, p["home_test"], nsis, p["nsis_handshake"])
        disruption = outage.get("disruption_ms")
        out.append({
            "from": move["from"], "to": move["to"], "l2_gap_ms": move["l2_gap_ms"], "l2_gap_actual_ms": gap,
            "movement_detection_ms": p["movement_detection_ms"], "coa_ms": p["coa_ms"],
            "ha_registration_ms": p["ha_registration_ms"], "rr_ms": p["rr_ms"] if ro else None,
            "cn_binding_ms": p["cn_binding_ms"] if ro else None,
            "nsis_ms": p["nsis_ms"] if ro and nsis else None,
            "nsis_floor_ms": natfw_resignal_floor_ms(tb.params, p["nsis_handshake"]) if ro and nsis else None,
            "nsis_handshake": p["nsis_handshake"] if ro and nsis else None,
            "nsis_data_ms": p["nsis_data_ms"] if ro and nsis else None,
            "disruption_ms": disruption, "lost_packets": outage.get("lost_packets"),
            "floor_ms": floor, "floor_mn_ms": floor_mn, "floors": phase_floors,
            "ratio": None if disruption is None else round(disruption / floor, 3),
            "dad_ms": dad, "home_test": p["home_test"], "handover_ms": p["handover_ms"], "coa": p["coa"],
            "detach_ns": move["detach_ns"], "attach_ns": move["attach_ns"], "done_ns": move["done_ns"],
            # +- this much in the figures that pair a time taken here (the move) with one
            # on the MN's server (its events); the disruption is taken on one clock.
            "clock_uncertainty_ms": {k: cross for k in CROSS_CLOCK} if cross else {},
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
        "access_ms": one_way(tb.params, "access"),   # movement detection's floor
        **({"mn_clock": clocks} if clocks else {}),
    }


# Figures that subtract a time taken on the controller (the layer-2 move) from one on
# the MN's server (its agent's events, moved onto the controller's clock).
CROSS_CLOCK = ("movement_detection_ms", "handover_ms")


def mn_clock(tb, mn: str) -> dict | None:
    """An MN on another server: its clock against the controller's, measured at the
    start and again now (drift: how far it moved); the uncertainty of a figure that
    pairs a time here with one there is the larger of the two estimates' plus how far
    the helper's clock track (what the times were moved by) is from the offset now.
    None for an MN on the controller's server."""
    from mip6bench.testbed.serverd import estimate_offset

    helper = getattr(tb.node(mn), "helper", None)
    if helper is None or helper.offset is None:
        return None
    start = helper.offset
    now = estimate_offset(lambda: helper.request("clock", reply_s=10.0)["t_ns"], samples=8)
    drift = abs(now.offset_ns - start.offset_ns)
    # Times were moved by the helper's clock track (re-measured every 10 s, drift
    # followed): what is left is how far the track is off now, not the whole drift.
    track = getattr(helper, "clock", None)
    off = abs(now.offset_ns - track.offset_at(now.at_ns)) if track is not None else drift
    return {"server": helper.host, "offset_ns": start.offset_ns,
            "uncertainty_ns": start.uncertainty_ns, "offset_now_ns": now.offset_ns,
            "uncertainty_now_ns": now.uncertainty_ns, "drift_ns": drift, "track_error_ns": off,
            "uncertainty_ms": round((max(start.uncertainty_ns, now.uncertainty_ns) + off) / 1e6, 3),
            "endpoints": "helper" if not isinstance(tb.node_ns(mn), int) else "pid"}


HANDOVER_PHASES = (("movement detection (link up -> RA)", "movement_detection_ms"),
                   ("CoA usable (DAD)", "coa_ms"), ("home registration (BU/BA)", "ha_registration_ms"),
                   ("NATFW re-signalling", "nsis_ms"), ("return routability", "rr_ms"),
                   ("BU/BA with the CN", "cn_binding_ms"))


def phase_rows(h: dict, access_ms: float, index: int | None = None) -> list[dict]:
    """One handover's phases and its disruption against their floors. Fixed waits, left
    out of the ratios: the wait for the new access router's next RA (random within its
    interval; the floor counts an RA the instant the link is up: measured only), DAD of a
    new CoA, and in the disruption also the layer-2 gap as it happened."""
    label = f"handover {index} " if index is not None else ""
    floors = h.get("floors") or {}
    ra_wait = max(0.0, (h["movement_detection_ms"] or 0.0) - access_ms)
    rows = []
    for name, key in HANDOVER_PHASES:
        if h.get(key) is None and floors.get(key) is None:
            continue
        if key == "movement_detection_ms":
            r = phase_row(f"{label}{name}", h[key], floors.get(key), ra_wait, floor_waits=0.0)
            # All but the access link's delay is taken as the RA wait (the agent's share
            # cannot be told from it here): no ratio.
            r["ratio"] = None
            rows.append(r)
        elif key == "coa_ms":
            rows.append(phase_row(f"{label}{name}", h[key], floors.get(key), h["dad_ms"]))
        else:
            rows.append(phase_row(f"{label}{name}", h.get(key), floors.get(key)))
    waits = h.get("l2_gap_actual_ms", h["l2_gap_ms"]) + h["dad_ms"]
    rows.append(phase_row(f"{label}{h['from']}->{h['to']}: disruption", h["disruption_ms"], h["floor_ms"],
                          waits + ra_wait, floor_waits=waits))
    return rows


def mn_sequencing_note(handovers: list[dict]) -> str | None:
    """Where this MN's sequencing has a higher floor than the best legal one (a stale home
    token: the HoTI waits for the home BA), the line that says so with both numbers."""
    differ = [(i, h) for i, h in enumerate(handovers, 1)
              if h.get("floor_mn_ms") is not None and h["floor_mn_ms"] > h["floor_ms"]]
    if not differ:
        return None
    return ("the home token was stale in handover " + ", ".join(str(i) for i, _ in differ)
            + ": this MN sends the HoTI after the home BA (the HA forwards a reverse-tunnelled "
            "packet only from the CoA it has bound, RFC 6275 10.4.5), floor "
            + ", ".join(f"{h['floor_mn_ms']:g}" for _, h in differ) + " ms against the best legal "
            + ", ".join(f"{h['floor_ms']:g}" for _, h in differ) + " ms (HoTI right behind the BU)")


def summarize(metrics: dict) -> str:
    access = metrics.get("access_ms", 0.0)
    lines = []
    for i, h in enumerate(metrics["handover"], 1):
        lines.append(f"handover {i}: {h['from']} -> {h['to']}, layer-2 gap {h['l2_gap_ms']:g} ms "
                     f"({h.get('l2_gap_actual_ms', h['l2_gap_ms']):g} as it happened), "
                     f"{'-' if h['lost_packets'] is None else h['lost_packets']} probes lost")
        lines += ["  " + x for x in format_phase_rows(phase_rows(h, access), width=36)]
    clock = metrics.get("mn_clock")
    if clock:
        lines.append(f"the MN runs on {clock['server']} (its end of the UDP stream and TCP connection "
                     f"{'in its helper' if clock.get('endpoints') == 'helper' else 'reached by pid'}); "
                     f"its clock {clock['offset_ns'] / 1e6:+.3f} ms from the controller's: movement "
                     f"detection and handover times +- {clock['uncertainty_ms']:g} ms, disruption on "
                     "the receiver's clock alone")
    lines.append("times in ms; floors: the best legal sequencing; ratio = (measured - fixed waits) / "
                 "(floor - fixed waits): the wait for the next RA, DAD of a new CoA, the layer-2 gap")
    note = mn_sequencing_note(metrics["handover"])
    if note:
        lines.append(note)
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
