"""Bootstrap: how long Mobile IPv6 bootstrapping through PANA takes, against its floor.

Every MN starts with nothing but its NAI and EAP-PSK key. At one moment all MNs send a
PANA-Client-Initiation (unicast to the PAA, or multicast with the Router Alert option,
forwarded hop by hop by agents/rao_forwarder.py on ar<i>, core and ha); EAP-PSK runs
between the MN and the AAA server (agents/aaa.py, or hostapd with aaa=radius) through
the PAA (RADIUS on the home link); the final PAR brings HA, Home Address, MIPv6 SA
parameters and the NSIS token; the PAA pushes the SA to the HA (sa=push) or the HA
fetches it (sa=pull); then the MN registers with the HA.

Who plays the MN and the HA: if the MN agent composes the PANA client itself (its status
has "pana") it is started with pana-start; otherwise agents/pac.py runs on each MN and
hands its result to the MN agent (mip6bench.runtime.bridge) when one runs (topology
mipv6=bootstrap, the default here). The HA end of SA distribution is the HA agent's own
if it runs the channel, else agents/sa_receiver.py on the ha node, which hands SAs to
the HA agent's sa-add. With sa=pull and no HA agent of its own fetching on a Binding
Update, the experiment asks the receiver to fetch by SPI as soon as the MN has its SA
(the fetch is measured; its trigger is the controller) and says so in `notes`.

Phases per MN (events, all CLOCK_MONOTONIC ns):
    discovery_ms        first pana.pci_sent -> pana.handshake (PAR[S] at the PaC)
    eap_ms              pana.handshake -> pana.session_open (final PAR at the PaC)
    pana_ms             discovery + eap
    sa_push_ms          push: sadist.push_sent (PAA) -> sadist.sa_installed (HA end);
                        pull: sadist.fetch_sent -> sadist.sa_installed (HA end)
    ha_registration_ms  bootstrap.ready (PaC) -> mipv6.mn.home_registered (MN agent);
                        null when no MIPv6 agents run
    total_ms            first PCI -> home_registered; without registration: first PCI ->
                        the SA is at both ends (push: max of the two; pull: pana + fetch)
    pana_messages       PANA messages the PaC sent and received up to and including PAN[C]

floor_ms: sequential one-way trips times the configured delay of their path (d(a,b):
the sum of the link delays between the nodes; MN-PAA = access + backhaul + home_uplink +
home_lan, PAA-AAA = 2 x home_lan, PAA-HA = home_lan, MN-HA = access + backhaul +
home_uplink):
    discovery           2 x d(MN,PAA)                          PCI, PAR[S]
    eap                 6 x d(MN,PAA) + 6 x d(PAA,AAA)         PAN[S]; 3 x (Access-Request,
                                                               Access-Challenge/Accept);
                                                               PAR, PAN, PAR, PAN, PAR[C]
    pana                discovery + eap
    sa_push             push 1 x d(PAA,HA); pull 2 x d(HA,PAA)
    ha_registration     2 x d(MN,HA) (BU, BA); pull with the HA fetching on the BU adds
                        2 x d(HA,PAA); plus the HA's Duplicate Address Detection for the
                        new Home Address when the HA performs it (mipv6.ha.dad_started):
                        RetransTimer 1000 ms x DupAddrDetectTransmits 1 (RFC 4862)
    total               pana + ha_registration (the push overlaps the final PAR and the
                        BU); without registration: push pana, pull pana + 2 x d(HA,PAA)
ratio = total_ms / floor_ms. Results are the median over MNs; `per_mn` has each MN.
With warmup (the default) one ping per path fills the neighbour caches before the
trigger, so the phases measure the protocols, not the first Neighbour Discovery on each
hop of a freshly built network (warmup=false measures that cold start too).
"""
from __future__ import annotations

import heapq
import statistics
import time
from typing import Any

from mip6bench.errors import Mip6benchError
from mip6bench.params import ParamSpec
from mip6bench.runtime.eventlog import read_events

NAME = "bootstrap"
PARAMS = [
    ParamSpec("aaa", str, "embedded", "AAA server: embedded agent or hostapd (RADIUS)",
              choices=("embedded", "radius")),
    ParamSpec("discovery", str, "multicast", "PAA discovery: unicast PCI or multicast with "
              "Router Alert", choices=("unicast", "multicast")),
    ParamSpec("sa", str, "push", "SA distribution to the HA", choices=("push", "pull")),
    ParamSpec("timeout_s", float, 30.0, "how long to wait for every MN's bootstrap", 1, 600),
    ParamSpec("registration_wait_s", float, 10.0, "how long to wait for HA registrations "
              "once bootstrapped (MIPv6 agents only)", 0, 600),
    ParamSpec("sa_lifetime", int, 600, "MIPv6 SA lifetime the PAA grants (s)", 1, 86400),
    ParamSpec("warmup", bool, True, "ping MN->PAA, PAA->AAA and PAA->HA first so that "
              "neighbour caches are warm (false: cold start, Neighbour Discovery included)"),
]


def _topology_defaults() -> dict[str, Any]:
    from mip6bench.testbed.operational import topology_params
    names = {p.name for p in topology_params()}
    return {"mipv6": "bootstrap"} if "mipv6" in names else {}


TOPOLOGY_DEFAULTS = _topology_defaults()
PHASES = ("discovery_ms", "eap_ms", "pana_ms", "sa_push_ms", "ha_registration_ms", "total_ms")


def prepare(tb, params) -> None:
    from mip6bench.testbed.bootstrap import BootstrapSettings
    tb.bootstrap_settings = BootstrapSettings(aaa=params["aaa"], sa=params["sa"],
                                              sa_lifetime=params["sa_lifetime"])


# ---- floors ----------------------------------------------------------------------------

def path_delay_ms(plan, a: str, b: str) -> float:
    """Configured one-way delay between nodes a and b: the sum of the delays of the
    (attached) links on the path between them."""
    graph: dict[str, list[tuple[str, float]]] = {}
    for link in plan.links:
        if not link.attached:
            continue
        graph.setdefault(link.a, []).append((link.b, link.shaping.delay_ms))
        graph.setdefault(link.b, []).append((link.a, link.shaping.delay_ms))
    best = {a: 0.0}
    queue = [(0.0, a)]
    while queue:
        dist, node = heapq.heappop(queue)
        if node == b:
            return dist
        if dist > best.get(node, float("inf")):
            continue
        for nxt, delay in graph.get(node, []):
            if dist + delay < best.get(nxt, float("inf")):
                best[nxt] = dist + delay
                heapq.heappush(queue, (dist + delay, nxt))
    raise Mip6benchError(f"no path from {a} to {b} in the plan")


DAD_WAIT_MS = 1000.0  # RFC 4862: RetransTimer (1 s) x DupAddrDetectTransmits (1)


def floors(plan, mn: str, sa_mode: str, registration: bool, ha_dad: bool = False,
           fetch_on_bu: bool = False) -> dict[str, float]:
    d_mp = path_delay_ms(plan, mn, "paa")
    d_pa = path_delay_ms(plan, "paa", "aaa")
    d_ph = path_delay_ms(plan, "paa", "ha")
    d_mh = path_delay_ms(plan, mn, "ha")
    out = {"discovery_ms": 2 * d_mp, "eap_ms": 6 * d_mp + 6 * d_pa}
    out["pana_ms"] = out["discovery_ms"] + out["eap_ms"]
    out["sa_push_ms"] = d_ph if sa_mode == "push" else 2 * d_ph
    if registration:
        out["ha_registration_ms"] = 2 * d_mh + (DAD_WAIT_MS if ha_dad else 0.0) \
            + (2 * d_ph if fetch_on_bu else 0.0)
        out["total_ms"] = out["pana_ms"] + out["ha_registration_ms"]
    else:
        out["ha_registration_ms"] = None
        out["total_ms"] = out["pana_ms"] + (0.0 if sa_mode == "push" else 2 * d_ph)
    return {k: (None if v is None else round(v, 3)) for k, v in out.items()}


# ---- running ---------------------------------------------------------------------------

def _wait(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Mip6benchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # polling interval of a control socket, not an outcome wait


def _composed(agent, key: str) -> bool:
    try:
        return agent is not None and key in (agent.request("status") or {})
    except Exception:
        return False


def run(tb, params) -> dict:
    mns = [n.name for n in tb.plan.by_role("mn")]
    svc = tb.bootstrap
    notes: list[str] = []
    clients = {}
    mn_agents = {mn: tb.agents.get((mn, "mn")) for mn in mns}
    registration = True
    for mn in mns:
        agent = mn_agents[mn]
        if _composed(agent, "pana"):
            clients[mn] = agent
            continue
        extra = {"autostart": False}
        if agent is None:
            registration = False
        elif _composed(agent, "hoa"):
            registration = False   # statically configured: nothing to hand over
        else:
            extra["mn_control"] = agent.control_path   # waiting for a bootstrap
        clients[mn] = tb.start_agent(mn, "pac", "pac",
                                     svc.pac_options(mn, params["discovery"], **extra))
    if not registration and any(a is not None for a in mn_agents.values()):
        notes.append("MN agents run with static Mobile IPv6 configuration (topology "
                     "mipv6=static): HA registration is not part of this bootstrap")
    receiver = tb.agents.get(("ha", "sa"))
    if params["warmup"]:
        _warm_up(tb, mns, svc)
    t_trigger = time.monotonic_ns()
    for mn in mns:
        clients[mn].request("pana-start")
    def all_open():
        states = {mn: clients[mn].request("pana-status") for mn in mns}
        if any(s["state"] == "closed" for s in states.values()):
            bad = {mn: s for mn, s in states.items() if s["state"] == "closed"}
            raise Mip6benchError(f"PANA failed: {bad}")
        return states if all(s["state"] == "open" and s["bootstrap"] for s in states.values()) \
            else None
    states = _wait(all_open, params["timeout_s"], "every MN's PANA session")
    spis = {mn: states[mn]["bootstrap"]["spi"] for mn in mns}
    if params["sa"] == "pull" and receiver is not None:
        notes.append("sa=pull: the HA end fetched each SA by SPI when the experiment saw the "
                     "MN bootstrapped (an HA agent of its own fetches on the Binding Update)")
        for mn in mns:
            receiver.request("sa-fetch", timeout=15.0, spi=spis[mn])
    if receiver is not None:
        _wait(lambda: {sa["spi"] for sa in receiver.request("sa-list")} >= set(spis.values()),
              params["timeout_s"], "the SAs at the HA end")
    if registration:
        try:
            _wait(lambda: all(_registered(tb, mn) for mn in mns), params["registration_wait_s"],
                  "HA registrations")
        except Mip6benchError as exc:
            notes.append(f"{exc}; ha_registration_ms is null for the MNs that did not register")
    else:
        notes.append("no Mobile IPv6 agents on the MNs: ha_registration_ms is null")
    events = _load_events(tb)
    per_mn = [_measure(tb, mn, events, spis[mn], params["sa"], registration) for mn in mns]
    summary = {}
    for key in PHASES + ("pana_messages",):
        values = [m[key] for m in per_mn if m.get(key) is not None]
        summary[key] = round(statistics.median(values), 3) if values else None
    ha_dad = any(e["event"] == "mipv6.ha.dad_started" for e in events)
    fetch_on_bu = params["sa"] == "pull" and receiver is None   # the HA agent's own channel
    floor = floors(tb.plan, mns[0], params["sa"], registration, ha_dad, fetch_on_bu)
    summary["floor_ms"] = floor["total_ms"]
    summary["ratio"] = round(summary["total_ms"] / floor["total_ms"], 3) \
        if summary["total_ms"] and floor["total_ms"] else None
    summary["aaa"] = params["aaa"]
    summary["discovery"] = params["discovery"]
    summary["sa"] = params["sa"]
    summary["mns"] = len(mns)
    summary["floors"] = floor
    summary["per_mn"] = per_mn
    summary["warmup"] = params["warmup"]
    summary["ha_dad"] = ha_dad
    summary["notes"] = notes
    summary["trigger_spread_ms"] = round((time.monotonic_ns() - t_trigger) / 1e6, 3)
    summary["agents"] = {f"{n}/{a}": {"startup_ms": p.startup_ms, "rss_kb": p.rss_kb()}
                         for (n, a), p in tb.agents.items()}
    return {"bootstrap": summary}


def _warm_up(tb, mns, svc) -> None:
    """One ping per path the bootstrap uses, so that every hop has its neighbour entry."""
    pairs = [(mn, svc.paa_address) for mn in mns] + [("paa", svc.aaa_address),
                                                      ("paa", svc.ha_address)]
    for node, address in pairs:
        out = tb.node(node).cmd(f"ping -6 -n -q -c 1 -W 2 {address}")
        if " 0% packet loss" not in out:
            raise Mip6benchError(f"warm-up ping {node} -> {address} failed: {out.strip()[-200:]}")


def _registered(tb, mn: str) -> bool:
    path = tb.run.logs_dir / f"{mn}-mn.events.jsonl"
    return path.exists() and any(e.get("event") == "mipv6.mn.home_registered"
                                 for e in read_events(path))


def _load_events(tb) -> list[dict]:
    out = []
    for path in sorted(tb.run.logs_dir.glob("*.events.jsonl")):
        out.extend(read_events(path))
    out.sort(key=lambda e: e["t_ns"])
    return out


def _first(events, node, agent, name, after=0, **match):
    for e in events:
        if e["t_ns"] >= after and e["node"] == node and e["event"] == name \
                and (agent is None or e["agent"] == agent) \
                and all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def _ms(a, b):
    return None if a is None or b is None else round((b["t_ns"] - a["t_ns"]) / 1e6, 3)


def _measure(tb, mn, events, spi, sa_mode, registration) -> dict:
    pac = _first(events, mn, None, "pana.pci_sent", retransmission=False)
    handshake = _first(events, mn, None, "pana.handshake")
    opened = _first(events, mn, None, "pana.session_open")
    ready = _first(events, mn, None, "bootstrap.ready")
    if sa_mode == "push":
        start = _first(events, "paa", "paa", "sadist.push_sent", spi=spi)
    else:
        start = _first(events, "ha", None, "sadist.fetch_sent", selector=f"spi={spi}")
    installed = _first(events, "ha", None, "sadist.sa_installed", spi=spi)
    registered = _first(events, mn, "mn", "mipv6.mn.home_registered",
                        after=ready["t_ns"] if ready else 0) if registration else None
    out = {"mn": mn, "spi": spi, "hoa": ready.get("hoa") if ready else None,
           "discovery_ms": _ms(pac, handshake), "eap_ms": _ms(handshake, opened),
           "pana_ms": _ms(pac, opened), "sa_push_ms": _ms(start, installed),
           "ha_registration_ms": _ms(ready, registered),
           "pana_messages": ready.get("messages") if ready else None,
           "pci_retransmissions": sum(1 for e in events if e["node"] == mn
                                      and e["event"] == "pana.pci_sent"
                                      and e.get("retransmission"))}
    if registered is not None:
        out["total_ms"] = _ms(pac, registered)
    elif sa_mode == "push" and installed is not None and opened is not None:
        out["total_ms"] = _ms(pac, max(opened, installed, key=lambda e: e["t_ns"]))
    elif out["pana_ms"] is not None and out["sa_push_ms"] is not None:
        out["total_ms"] = round(out["pana_ms"] + out["sa_push_ms"], 3)
    else:
        out["total_ms"] = None
    return out


def summarize(metrics: dict) -> str:
    b = metrics["bootstrap"]
    f = b["floors"]
    lines = [f"bootstrap: aaa={b['aaa']} discovery={b['discovery']} sa={b['sa']} mns={b['mns']}",
             f"{'phase':<20} {'measured ms':>12} {'floor ms':>10}"]
    for key in PHASES:
        value = "-" if b[key] is None else f"{b[key]:.3f}"
        floor = "-" if f.get(key) is None else f"{f[key]:g}"
        lines.append(f"{key:<20} {value:>12} {floor:>10}")
    ratio = "-" if b["ratio"] is None else f"{b['ratio']:.3f}"
    lines.append(f"total/floor ratio {ratio}; PANA messages {b['pana_messages']}")
    for note in b["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
