"""Bootstrap: how long Mobile IPv6 bootstrapping through PANA takes, against its floor.

Every MN agent starts with nothing but its NAI and EAP-PSK key (topology mipv6=bootstrap:
the MN agent composes the PANA client, the HA agent the HA end of SA distribution). At
one moment the experiment starts PANA in all MN agents (pana-start): a PANA-Client-
Initiation goes unicast to the PAA, or multicast with the Router Alert option, forwarded
hop by hop by agents/rao_forwarder.py on ar<i>, core and ha; EAP-PSK runs between the MN
and the AAA server (agents/aaa.py, or hostapd with aaa=radius) through the PAA (RADIUS on
the home link); the final PAR brings HA, Home Address, MIPv6 SA parameters and the NSIS
token; the PAA pushes the SA to the HA (sa=push), or the HA fetches it when the MN's
first Binding Update names an SPI it does not know (sa=pull); the MN registers with the
HA it learned.

Phases per MN (events from the agents' logs, all CLOCK_MONOTONIC ns):
    discovery_ms        first pana.pci_sent -> pana.handshake (PAR[S] at the PaC)
    eap_ms              pana.handshake -> pana.session_open (final PAR at the PaC)
    pana_ms             discovery + eap
    sa_push_ms          push: sadist.push_sent (PAA) -> sadist.sa_installed (HA agent);
                        pull: sadist.fetch_sent -> sadist.sa_installed (HA agent)
    ha_registration_ms  bootstrap.ready -> mipv6.mn.home_registered (MN agent)
    total_ms            first PCI -> home_registered (null when the MN did not register)
    pana_messages       PANA messages the PaC sent and received up to and including PAN[C]

floor_ms (mip6bench/measure/floors.py, bootstrap_floors): sequential one-way trips
times the configured delay of their path (d(a,b):
the sum of the link delays between the nodes; MN-PAA = access + backhaul + home_uplink +
home_lan, PAA-AAA = 2 x home_lan, PAA-HA = home_lan, MN-HA = access + backhaul +
home_uplink):
    discovery           2 x d(MN,PAA)                          PCI, PAR[S]
    eap                 6 x d(MN,PAA) + 6 x d(PAA,AAA)         PAN[S]; 3 x (Access-Request,
                                                               Access-Challenge/Accept);
                                                               PAR, PAN, PAR, PAN, PAR[C];
                        + 2 x d(MN,PAA) with eap_in_first_par=never (the PAR carrying
                        the EAP request after the PAN[S], and its PAN)
    pana                discovery + eap
    sa_push             push 1 x d(PAA,HA); pull 2 x d(HA,PAA)
    ha_registration     2 x d(MN,HA) (BU, BA); pull adds 2 x d(HA,PAA) (the HA fetches on
                        the BU); plus the HA's Duplicate Address Detection for the new
                        Home Address when the HA performs it (mipv6.ha.dad_started):
                        RetransTimer x DupAddrDetectTransmits 1 (RFC 4862), the wait the
                        HA agent is configured with (dad_timeout_ms, 1000 by default)
    total               pana + ha_registration (the push overlaps the final PAR and the BU)
ratio = (total_ms - DAD) / (floor_ms - DAD), the HA's DAD wait (ha_dad_ms, 0 when it
performs none) left out of both; overhead_ms = total_ms - floor_ms. Results are the
median over MNs; `per_mn` has each MN.
With warmup (the default) one answered ping per path (retried: a lost one never fails
the run; paths that stay silent are listed in notes), and one across every link between
routers and servers, fills the neighbour caches before the trigger, so the phases measure the protocols, not the first Neighbour Discovery on each
hop of a freshly built network (warmup=false measures that cold start too).
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import statistics
import time

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.params import ParamSpec
from mip6bench.measure.floors import bootstrap_floors, format_phase_rows, phase_row
from mip6bench.runtime.eventlog import read_events

NAME = "bootstrap"
SWEEP_METRICS = ["bootstrap.pana_ms", "bootstrap.total_ms"]
ESTIMATED_RUN_S = 14.0  # for sweeps: one run, network start and teardown included
PARAMS = [
    ParamSpec("aaa", str, "embedded", "AAA server: embedded agent or hostapd (RADIUS)",
              choices=("embedded", "radius")),
    ParamSpec("discovery", str, "multicast", "PAA discovery: unicast PCI or multicast with "
              "Router Alert", choices=("unicast", "multicast")),
    ParamSpec("sa", str, "push", "SA distribution to the HA", choices=("push", "pull")),
    ParamSpec("eap_in_first_par", str, "auto", "the PAA's first EAP request: in PAR[S] "
              "(always), after the handshake (never), or in PAR[S] with the plain handshake "
              "for a PaC that ignores it (auto)", choices=("auto", "always", "never")),
    ParamSpec("timeout_s", float, 30.0, "how long to wait for every MN's bootstrap", 1, 600),
    ParamSpec("registration_wait_s", float, 10.0, "how long to wait for each HA registration "
              "once bootstrapped", 0, 600),
    ParamSpec("sa_lifetime", int, 600, "MIPv6 SA lifetime the PAA grants (s)", 1, 86400),
    ParamSpec("plain_probes", int, 3, "plain-path probes after the bootstrap (push): bare UDP "
              "datagrams PAA -> HA over the same path, each after the HA agent's idle gap "
              "before the push (0: none)", 0, 20),
    ParamSpec("warmup", bool, True, "ping MN->PAA, PAA->AAA, PAA->HA and across every router link first so that "
              "neighbour caches are warm (false: cold start, Neighbour Discovery included)"),
]


TOPOLOGY_DEFAULTS = {"mipv6": "bootstrap"}
PHASES = ("discovery_ms", "eap_ms", "pana_ms", "sa_push_ms", "ha_registration_ms", "total_ms")


def prepare(tb, params) -> None:
    from mip6bench.testbed.bootstrap import BootstrapSettings
    if tb.params["mipv6"] != "bootstrap":
        raise ParameterError(f"the bootstrap experiment needs mipv6=bootstrap, not {tb.params['mipv6']}",
                             "the MN agents run PANA themselves only then; leave mipv6 out")
    # The MN agents wait for pana-start: all MNs start at one moment, after the warm-up.
    tb.bootstrap_settings = BootstrapSettings(aaa=params["aaa"], sa=params["sa"],
                                              discovery=params["discovery"], autostart=False,
                                              sa_lifetime=params["sa_lifetime"],
                                              eap_in_first_par=params["eap_in_first_par"])


# ---- running ---------------------------------------------------------------------------

def _wait_event(agent, event: str, after_ns: int, within: float,
                match: dict | None = None) -> dict | None:
    """The first `event` (with the fields of `match`) the agent logs at or after
    `after_ns`, or None after `within` s."""
    from mip6bench.runtime.control import ControlError
    try:
        return agent.request("wait-event", timeout=within + 5, event=event, after_ns=after_ns,
                             within=within, **({"match": match} if match else {}))
    except ControlError:
        return None


def run(tb, params, plain: bool = True) -> dict:
    """The bootstrap of every MN, measured; then (plain, sa=push) the plain path PAA -> HA
    (`plain_path`; the paper's scenario runs it at its end instead)."""
    mns = [n.name for n in tb.plan.by_role("mn")]
    agents = {mn: tb.mobility_agent(mn) for mn in mns}
    notes: list[str] = []
    for mn in mns:
        # Attached as far as the MN knows: it has seen its access router's RA (and the
        # kernel with it has a fresh default route: the RAs' router lifetime is 1 s, and
        # the relays of shaped links can fall that far behind while a testbed starts).
        if _wait_event(agents[mn], "mipv6.mn.movement_detected", 0, params["timeout_s"]) is None:
            raise Mip6benchError(f"{mn} saw no Router Advertisement within {params['timeout_s']:g} s",
                                 "check that radvd runs on its access router (logs/*-radvd.log)")
    if params["warmup"]:
        notes += _warm_up(tb, mns, tb.bootstrap)
    t_trigger = time.monotonic_ns()
    for mn in mns:
        agents[mn].request("pana-start")
    deadline = time.monotonic() + params["timeout_s"]
    for mn in mns:
        ready = _wait_event(agents[mn], "bootstrap.ready", t_trigger,
                            max(0.0, deadline - time.monotonic()))
        if ready is None:
            pana = agents[mn].request("pana-status")
            raise Mip6benchError(f"{mn} did not bootstrap within {params['timeout_s']:g} s: "
                                 f"PANA {pana['state']}, drops {pana['drops']}",
                                 f"see {mn}-mn.events.jsonl (pana.session_closed) in the run's logs")
        # Counted from this MN's own bootstrap (CLOCK_MONOTONIC, shared with the agents),
        # not from now: MNs that fail to register do not add up their waits one by one.
        left = (ready["t_ns"] - time.monotonic_ns()) / 1e9 + params["registration_wait_s"]
        if _wait_event(agents[mn], "mipv6.mn.home_registered", ready["t_ns"],
                       max(0.0, left)) is None:
            notes.append(f"{mn} did not register with the HA within {params['registration_wait_s']:g} s "
                         "of its bootstrap: its ha_registration_ms and total_ms are null")
    nsis = tb.params["nsis"] == "on"
    if nsis:
        # The token from PANA, carried to the firewall: each MN's first CREATEs (before
        # return routability with the CN) are verified there, or refused. An MN whose
        # first round failed (unanswered, refused, or timed out at the MN) retries on
        # its own back-off: wait for a granted round, up to the same deadline.
        for mn in mns:
            _wait_event(agents[mn], "mipv6.mn.traversal_done", t_trigger,
                        max(0.0, deadline + params["registration_wait_s"] - time.monotonic()),
                        match={"phase": "rr", "ok": True})
    events = _load_events(tb)
    # Each node's events apart, once: looking an MN's events up in everybody's made the
    # analysis quadratic in MNs (minutes at 300 MNs).
    by_node: dict[str, list[dict]] = {}
    for e in events:
        by_node.setdefault(e["node"], []).append(e)
    per_mn = [_measure(mn, by_node, t_trigger, params["sa"]) for mn in mns]
    if nsis:
        for m in per_mn:
            m.update(_nsis_outcome(m["mn"], by_node.get(m["mn"], []), t_trigger))
    summary = {}
    for key in PHASES + ("pana_messages",):
        values = [m[key] for m in per_mn if m.get(key) is not None]
        summary[key] = round(statistics.median(values), 3) if values else None
    ha_dad = any(e["event"] == "mipv6.ha.dad_started" for e in events)
    # The wait as the HA is configured for it (its control socket), not a constant.
    ha_dad_ms = tb.mobility_agent("ha").request("status")["dad_timeout_ms"] if ha_dad else 0.0
    floor = bootstrap_floors(tb.plan, mns[0], params["sa"], ha_dad_ms,
                             eap_in_first_par=params["eap_in_first_par"] != "never")
    summary["floor_ms"] = floor["total_ms"]
    # The headline ratio leaves the HA's DAD wait out of both (a fixed protocol wait of
    # 1 s would otherwise divide every excess by about six).
    summary["ratio"] = round((summary["total_ms"] - ha_dad_ms) / (floor["total_ms"] - ha_dad_ms), 3) \
        if summary["total_ms"] and floor["total_ms"] > ha_dad_ms else None
    summary["overhead_ms"] = round(summary["total_ms"] - floor["total_ms"], 3) if summary["total_ms"] else None
    summary["aaa"] = params["aaa"]
    summary["discovery"] = params["discovery"]
    summary["sa"] = params["sa"]
    summary["mns"] = len(mns)
    summary["floors"] = floor
    summary["per_mn"] = per_mn
    summary["warmup"] = params["warmup"]
    summary["ha_dad"] = ha_dad
    summary["ha_dad_ms"] = ha_dad_ms
    summary["notes"] = notes
    summary["trigger_spread_ms"] = round((time.monotonic_ns() - t_trigger) / 1e6, 3)
    if nsis:
        summary["nsis_create_verified"] = sum(1 for m in per_mn if m.get("nsis_create_verified"))
        summary["nsis"] = nsis_summary(per_mn)
    if plain:
        summary["sa_plain_path"] = plain_path(tb, summary, params, events)
    summary["agents"] = {f"{n}/{a}": {"startup_ms": p.startup_ms, "rss_kb": p.rss_kb()}
                         for (n, a), p in tb.agents.items()}
    return {"bootstrap": summary}


def plain_path(tb, b: dict, params, events: list[dict] | None = None) -> dict | None:
    """The SA push's plain path in this run (sa=push, plain_probes > 0; else None): bare
    UDP datagrams from the PAA's namespace to the HA's address over the same emulated
    path, each received by a minimal receiver in the HA's namespace after the idle gap
    the HA agent had before the push (mip6bench/measure/plainpath.py), next to the
    phase as measured and its floor."""
    from mip6bench.measure import plainpath

    count = params.get("plain_probes", 0)
    if params["sa"] != "push" or not count or b.get("sa_push_ms") is None:
        return None
    events = _load_events(tb) if events is None else events
    push = next((e for e in events if e["event"] == "sadist.push_sent" and e["node"] == "paa"), None)
    gap = plainpath.probe_gap_ms(plainpath.idle_gap_ms(events, "ha", "ha", push["t_ns"])
                                 if push else None)
    svc = tb.bootstrap
    samples = plainpath.probe(tb, "paa", svc.paa_address, "ha", svc.ha_address, gap / 1e3, count)
    return plainpath.summarize(samples, b["floors"]["sa_push_ms"], b["sa_push_ms"], gap, count)


NSIS_TIMED_OUT = "firewall traversal timed out"   # the MN core's ro_off reason


def _nsis_outcome(mn: str, events: list[dict], after: int) -> dict:
    """Whether the MN's NATFW CREATEs for return routability (phase "rr"), carrying the
    token PANA gave it, were verified and granted at the firewall, in its first round
    or in a retry, and how long that took (events: the MN's own).

        nsis_create_verified  a round was granted (traversal_done ok) within the wait
        nsis_ms               first traversal_started -> the first granted round
        nsis_rounds           rounds the MN started (traversal_started, phase rr)
        nsis_first            how the first round ended: "ok"; "no response" (the NI
                              gave a session up unanswered); the refusal's information
                              code; "timed out" (the MN's own traversal timeout came
                              first: it retries later); "pending" (nothing by the end)
        nsis_refusal          not verified: why (the last round's end, as above)
    """
    rounds, ends = [], []
    for e in events:
        if e["t_ns"] < after or e["node"] != mn or e["agent"] != "mn":
            continue
        name = e["event"]
        if name == "mipv6.mn.traversal_started" and e.get("phase") == "rr":
            rounds.append(e)
        elif not rounds:
            continue          # ends count from the first round on
        elif name == "mipv6.mn.traversal_done" and e.get("phase") == "rr":
            ends.append((e, "ok" if e.get("ok") else (e.get("reason") or "refused")))
        elif name == "mipv6.mn.ro_off" and e.get("reason") == NSIS_TIMED_OUT:
            ends.append((e, "timed out"))
    first_start = rounds[0] if rounds else None
    done = next((e for e, what in ends if what == "ok"), None)
    first = ends[0][1] if ends else "pending"
    last = ends[-1][1] if ends else None
    return {"nsis_create_verified": done is not None,
            "nsis_ms": _ms(first_start, done) if first_start and done else None,
            "nsis_rounds": len(rounds),
            "nsis_first": first,
            "nsis_refusal": None if done else (last or "pending")}


def nsis_summary(per_mn: list[dict]) -> dict:
    """Per-MN NSIS outcomes counted: granted in the first round, granted after retries
    (with how long those took), and not granted, by why."""
    from collections import Counter

    from mip6bench.measure.probe import percentile

    first_ok = [m for m in per_mn if m.get("nsis_first") == "ok"]
    retried = [m for m in per_mn if m.get("nsis_create_verified") and m.get("nsis_first") != "ok"]
    never = [m for m in per_mn if not m.get("nsis_create_verified")]
    ms = sorted(m["nsis_ms"] for m in per_mn if m.get("nsis_ms") is not None)
    retried_ms = sorted(m["nsis_ms"] for m in retried if m.get("nsis_ms") is not None)
    return {"verified_first_round": len(first_ok), "verified_after_retry": len(retried),
            "not_verified": len(never),
            "first_round_failures": dict(Counter(m["nsis_first"] for m in per_mn
                                                 if m.get("nsis_first") not in (None, "ok"))),
            "not_verified_reasons": dict(Counter(m["nsis_refusal"] for m in never)),
            "nsis_ms_p50": percentile(ms, 50), "nsis_ms_p90": percentile(ms, 90),
            "nsis_ms_max": ms[-1] if ms else None,
            "retried_ms_p50": percentile(retried_ms, 50), "retried_ms_max": retried_ms[-1] if retried_ms else None}


def _warm_up(tb, mns, svc) -> list[str]:
    """One answered ping per path the bootstrap uses, and one across every link between
    routers and servers (the firewall's too: the MN's NATFW signalling follows the
    bootstrap), so that every hop has its neighbour entry; notes for paths that stayed
    silent (retried; loss alone never fails the run)."""
    from mip6bench.testbed.warmup import link_pairs, warm_up

    pairs = [(mn, svc.paa_address) for mn in mns] + [("paa", svc.aaa_address),
                                                      ("paa", svc.ha_address)]
    return warm_up(tb, pairs + link_pairs(tb.plan))


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


def _measure(mn, by_node, t_trigger, sa_mode) -> dict:
    """One MN's phases; by_node: every node's events (time order), by node name."""
    events = by_node.get(mn, [])
    pac = _first(events, mn, "mn", "pana.pci_sent", after=t_trigger, retransmission=False)
    handshake = _first(events, mn, "mn", "pana.handshake", after=t_trigger)
    opened = _first(events, mn, "mn", "pana.session_open", after=t_trigger)
    ready = _first(events, mn, "mn", "bootstrap.ready", after=t_trigger)
    spi = ready.get("spi") if ready else None
    if sa_mode == "push":
        start = _first(by_node.get("paa", []), "paa", "paa", "sadist.push_sent", spi=spi)
    else:
        start = _first(by_node.get("ha", []), "ha", "ha", "sadist.fetch_sent",
                       selector=f"spi={spi}")
    installed = _first(by_node.get("ha", []), "ha", "ha", "sadist.sa_installed", spi=spi)
    registered = _first(events, mn, "mn", "mipv6.mn.home_registered", after=ready["t_ns"]) \
        if ready else None
    return {"mn": mn, "spi": spi, "hoa": ready.get("hoa") if ready else None,
            "discovery_ms": _ms(pac, handshake), "eap_ms": _ms(handshake, opened),
            "pana_ms": _ms(pac, opened), "sa_push_ms": _ms(start, installed),
            "ha_registration_ms": _ms(ready, registered), "total_ms": _ms(pac, registered),
            "pana_messages": ready.get("messages") if ready else None,
            "pci_retransmissions": sum(1 for e in events if e["node"] == mn
                                       and e["event"] == "pana.pci_sent"
                                       and e.get("retransmission"))}


def phase_rows(b: dict) -> list[dict]:
    """The bootstrap's phases against their floors; the HA's DAD wait (a fixed protocol
    wait, as the HA is configured) left out of the ratio of the phases that hold it."""
    f = b["floors"]
    dad = b.get("ha_dad_ms") or 0.0
    names = {"discovery_ms": "PAA discovery (PCI, PAR[S])", "eap_ms": "EAP-PSK through PANA",
             "pana_ms": "PANA (discovery + EAP)", "sa_push_ms": "MIPv6 SA to the HA",
             "ha_registration_ms": "home registration (BU/BA)", "total_ms": "total"}
    return [phase_row(names[key], b[key], f.get(key), dad if key in ("ha_registration_ms", "total_ms") else 0.0)
            for key in PHASES]


def summarize(metrics: dict) -> str:
    b = metrics["bootstrap"]
    lines = [f"bootstrap: aaa={b['aaa']} discovery={b['discovery']} sa={b['sa']} mns={b['mns']}"]
    lines += format_phase_rows(phase_rows(b), width=30)
    dad = b.get("ha_dad_ms") or 0.0
    lines.append("times in ms (median over MNs); ratio = (measured - fixed waits) / (floor - fixed waits)"
                 + (f": the HA's {dad:g} ms DAD left out of home registration and total" if dad else "")
                 + f"; PANA messages {b['pana_messages']}")
    if "nsis_create_verified" in b:
        lines.append(f"NSIS: the PANA token opened the firewall for {b['nsis_create_verified']}/{b['mns']} "
                     "MNs (CREATE verified at the NF)")
    if b.get("sa_plain_path"):
        from mip6bench.measure.plainpath import format_line
        lines.append(format_line(b["sa_plain_path"]))
    for note in b["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
