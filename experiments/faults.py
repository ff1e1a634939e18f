"""Faults: lossy links and crashed agents — what completes, what recovers, what is left.

Topology default: mipv6=bootstrap (the MNs authenticate through PANA and get HA, Home
Address, SA and NSIS token), nsis=on (the CN's firewall is opened with NATFW), mns=5.

1. Loss (`loss_pct`, 5 % by default, on every emulated link, both directions, set while
   the network runs): every MN starts PANA at one moment (pana-start) and must
   bootstrap and register with its HA within `loss_timeout_s`; per MN the time from its
   first PCI to bootstrap.ready (`bootstrap_ms`) and to its home registration
   (`registered_ms`), the PANA and PCI retransmissions, and their p50/p90/max. Then,
   still under loss, mn1 (route-optimised with the CN) hands over once while the CN
   keeps a TCP connection to its home address busy: the handover is complete when mn1
   is registered with the new CoA (`handover_ms` from the detach); `ro_back`: how much
   longer route optimisation took to come back (NATFW re-signalling, RR); the TCP
   connection must deliver and echo every message in order, on the same socket
   (`tcp_survived`), given up to settle_s + 30 s to drain. The links go back to their
   configured loss afterwards.
2. Crashes: each agent of `crash` in turn (ha, paa, aaa, fw, cn, mn = mn1's agent) is
   killed with SIGKILL while mn1 is registered and route-optimised and a TCP connection
   from the CN to mn1's home address runs, then restarted by the testbed
   (Testbed.restart_agent: the same options, node and log files; the new pid recorded
   in the run). What has to recover, and the event that says it did (recovery_ms: from
   the restart to that event, both CLOCK_MONOTONIC from the event logs):
       ha    the HA comes back without bindings (and, bootstrapped, without SAs); mn1
             re-registers at its next binding refresh, which the HA's Binding Refresh
             Advice (`ha_refresh_s`) bounds; the HA fetches the SA from the PAA for the
             unknown SPI. Event: mipv6.mn.home_registered at mn1.
       paa   the PAA comes back without PANA sessions; mn1's next PANA exchange (the
             liveness ping an MN sends after a handover, sent right after the restart)
             finds no session, and mn1 authenticates anew. Event: bootstrap.ready at mn1.
       aaa   the AAA server keeps no state between authentications; mn1 re-authenticates
             (pana-reauth, right after the restart). Event: pana.reauth_done at mn1.
       fw    the firewall comes back without NATFW sessions and purges the NSIS chains
             its predecessor left; mn1's NATFW refresh (every ~natfw_lifetime_s/2)
             re-creates them. Event: nsis.pinhole_installed at fw.
       cn    the CN comes back without bindings; mn1's route-optimised packets (the TCP
             echo) get a Binding Error, mn1 runs return routability again. Event:
             mipv6.mn.ro_on at mn1.
       mn    mn1's agent starts again (pana-start): a new PANA session supersedes the
             old one, mn1 registers again. Event: mipv6.mn.home_registered at mn1.
   Orphans: the crashed agent's node's kernel state (routes of every table, policy
   rules, addresses, links, proxy neighbour entries, nftables rules/chains/set
   elements, seg6 tunnel source; mip6bench.net.snapshot) before the crash and after
   recovery, once mn1 is registered and route-optimised again: what was added and not
   held by the recovered agent is an orphan; the HA's home-address routes, proxy
   entries and reverse-tunnel set elements, and the firewall's NSIS chains, are checked
   against the bindings and pinholes the recovered agents list. `leftover_at_restart`:
   items of the crashed agent's kind the kernel still held when its successor was
   ready (before anything recovered) that the successor did not hold.

metrics.json: {"loss": {"loss_pct", "mns", "completed", "bootstrap_ms": {p50, p90, max},
"registered_ms": {...}, "per_mn": [...], "handover": {...}, "tcp_survived"},
"crashes": [{"agent", "node", "recovered", "recovery_ms", "event", "orphans",
"orphan_items", "leftover_at_restart", "startup_ms", "tcp_resumed_ms", "kernel_added",
"kernel_removed", "cpu_share", "note"}], "tcp_across_crashes"}. cpu_share (only when the run
gives the infrastructure a larger CPU share): what the restarted agent's new process got
(Testbed.restart_agent gives it the run's share again). tcp_resumed_ms: from the restart to the
return of the first message the CN's TCP connection sent after it (TCP's retransmission
backoff included).
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import ipaddress
import math
import time

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.params import ParamSpec

NAME = "faults"
ESTIMATED_RUN_S = 180.0
SWEEP_METRICS = ["loss.bootstrap_ms.p90", "loss.registered_ms.max"]
AGENTS = ("ha", "paa", "aaa", "fw", "cn", "mn")
PARAMS = [
    ParamSpec("loss_pct", float, 5.0, "loss on every emulated link in the loss part (%)", 0, 50),
    ParamSpec("loss_timeout_s", float, 90.0, "how long every MN may take to bootstrap and "
              "register under loss", 1, 1200),
    ParamSpec("handover", bool, True, "hand mn1 over once under loss with a TCP connection"),
    ParamSpec("settle_s", float, 45.0, "how long route optimisation may take to come back after the "
              "handover under loss (s)", 1, 600),
    ParamSpec("crash", str, ",".join(AGENTS), "agents to kill -9 and restart, in order "
              "(ha, paa, aaa, fw, cn, mn; empty: none)"),
    ParamSpec("recover_within_s", float, 60.0, "how long a crashed agent's service may take "
              "to recover", 1, 1200),
    ParamSpec("ha_refresh_s", float, 4.0, "Binding Refresh Advice the HA gives (s, a "
              "multiple of 4; 0: none): how soon an MN re-registers with an HA that lost "
              "its bindings", 0, 3600),
    ParamSpec("natfw_lifetime_s", int, 20, "NATFW pinhole lifetime the MNs ask for (s): "
              "they refresh before it ends", 4, 3600),
]
TOPOLOGY_DEFAULTS = {"mipv6": "bootstrap", "mns": 5}
TCP_PORT, TCP_PORT_CRASH = 9001, 9002


def prepare(tb, params) -> None:
    from mip6bench.testbed.bootstrap import BootstrapSettings
    if tb.params["mipv6"] != "bootstrap":
        raise ParameterError(f"the faults experiment needs mipv6=bootstrap, not {tb.params['mipv6']}",
                             "leave the topology parameter mipv6 out")
    crash = _crash_list(params["crash"])
    if ("fw" in crash or "cn" in crash) and tb.params["nsis"] != "on":
        raise ParameterError("crashing fw or cn needs nsis=on", "leave nsis out, or crash=ha,paa,aaa,mn")
    if params["ha_refresh_s"] and params["ha_refresh_s"] % 4:
        raise ParameterError(f"ha_refresh_s={params['ha_refresh_s']:g}: the Binding Refresh Advice "
                             "counts in units of 4 s", "give a multiple of 4")
    # All MNs start PANA at one moment (pana-start), after loss is on.
    tb.bootstrap_settings = BootstrapSettings(autostart=False)
    tb.mn_extra_options = {"natfw_lifetime": params["natfw_lifetime_s"]}
    if params["ha_refresh_s"]:
        tb.ha_extra_options = {"refresh_advice": params["ha_refresh_s"]}


def _crash_list(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in AGENTS]
    if bad:
        raise ParameterError(f"crash: unknown agent(s) {', '.join(bad)}", f"choose from {', '.join(AGENTS)}")
    return names


# ---- helpers ---------------------------------------------------------------------------

def _wait_event(agent, event: str, after_ns: int, within: float, **match) -> dict | None:
    from mip6bench.runtime.control import ControlError
    try:
        return agent.request("wait-event", timeout=within + 5, event=event, after_ns=after_ns,
                             within=within, match=match)
    except (ControlError, OSError):
        return None


def _wait_steady(tb, mn: str, cn: str, within: float) -> bool:
    """mn registered with its HA and route-optimised with the CN."""
    from mip6bench.runtime.control import ControlError
    agent = tb.mobility_agent(mn)
    try:
        agent.request("wait", timeout=within + 2, until="registered", within=within)
        agent.request("wait", timeout=within + 2, until="ro", cn=cn, within=within)
        return True
    except (ControlError, OSError):
        return False


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p90 (nearest rank) and max."""
    if not values:
        return {"p50": None, "p90": None, "max": None}
    v = sorted(values)

    def rank(p):
        return v[max(0, math.ceil(p / 100 * len(v)) - 1)]
    return {"p50": round(rank(50), 3), "p90": round(rank(90), 3), "max": round(v[-1], 3)}


def _events(tb, node: str, agent: str) -> list[dict]:
    from mip6bench.runtime.eventlog import read_events
    path = tb.run.logs_dir / f"{node}-{agent}.events.jsonl"
    return read_events(path) if path.exists() else []


# ---- 1. loss ---------------------------------------------------------------------------

def loss_part(tb, params) -> dict:
    from mip6bench.experiment import load
    handovers = load("handover").handovers
    mns = [n.name for n in tb.plan.by_role("mn")]
    agents = {mn: tb.mobility_agent(mn) for mn in mns}
    cn = tb.plan.nodes["cn"].address()
    changed = tb.set_loss(params["loss_pct"])
    out: dict = {"loss_pct": params["loss_pct"], "links": len(changed), "mns": len(mns)}
    try:
        t0 = time.monotonic_ns()
        for mn in mns:
            agents[mn].request("pana-start")
        deadline = time.monotonic() + params["loss_timeout_s"]
        per_mn = []
        for mn in mns:
            left = max(0.0, deadline - time.monotonic())
            ready = _wait_event(agents[mn], "bootstrap.ready", t0, left)
            left = max(0.0, deadline - time.monotonic())
            registered = _wait_event(agents[mn], "mipv6.mn.home_registered",
                                     ready["t_ns"], left) if ready else None
            per_mn.append({"mn": mn, "ready": ready, "registered": registered})
        # Counted once everybody is done, from the agents' logs.
        paa_events = _events(tb, "paa", "paa")
        for m in per_mn:
            ready, registered = m.pop("ready"), m.pop("registered")
            events = [e for e in _events(tb, m["mn"], "mn") if e["t_ns"] >= t0
                      and (registered is None or e["t_ns"] <= registered["t_ns"])]
            first_pci = next((e for e in events if e["event"] == "pana.pci_sent"), None)
            start = first_pci["t_ns"] if first_pci else t0
            session = ready.get("session_id") if ready else None
            m.update({
                "bootstrap_ms": round((ready["t_ns"] - start) / 1e6, 3) if ready else None,
                "registered_ms": round((registered["t_ns"] - start) / 1e6, 3) if registered else None,
                "pci_sent": sum(1 for e in events if e["event"] == "pana.pci_sent"),
                # PANA requests retransmitted for the session that opened: the PaC's and the
                # PAA's (PAR[S], PAR, PAR[C], ...), which is where loss costs time
                "pac_retransmissions": sum(1 for e in events if e["event"] == "pana.retransmit"),
                "paa_retransmissions": sum(1 for e in paa_events if e["event"] == "pana.retransmit"
                                           and e.get("session_id") == session and session),
                "home_bu_sent": sum(1 for e in events if e["event"] == "mipv6.mn.home_bu_sent"),
            })
        out["per_mn"] = per_mn
        out["completed"] = sum(1 for m in per_mn if m["registered_ms"] is not None)
        out["all_completed"] = out["completed"] == len(mns)
        out["bootstrap_ms"] = percentiles([m["bootstrap_ms"] for m in per_mn if m["bootstrap_ms"] is not None])
        out["registered_ms"] = percentiles([m["registered_ms"] for m in per_mn
                                            if m["registered_ms"] is not None])
        if params["handover"] and per_mn[0]["registered_ms"] is not None:
            mn = mns[0]
            if not _wait_steady(tb, mn, cn, params["settle_s"]):
                out["handover"] = {"error": f"{mn} not route-optimised with the CN within {params['settle_s']:g} s"}
            else:
                # The handover is done for the MN once it is registered again; route
                # optimisation comes back after the CoA's NATFW re-signalling, which under
                # loss can take tens of seconds (every lost message costs a retransmission
                # timer). The TCP connection runs on meanwhile (tunnel, then RO) and gets
                # time to drain: after an outage of seconds it is in retransmission backoff.
                cn_agent_wait = {"until": "ro", "cn": cn, "within": params["settle_s"]}
                try:
                    h = handovers(tb, mn, {"moves": 1, "gap_ms": 50.0, "dwell_ms": 3000.0, "rate": 100.0,
                                           "tcp_interval_ms": 20.0, "route_optimization": False,
                                           "settle_s": params["settle_s"],
                                           "tcp_drain_s": params["settle_s"] + 30},
                                  on_move=lambda i, move: out.update(ro_back=_ro_back(tb, mn, cn_agent_wait)))
                except Mip6benchError as exc:
                    out["handover"] = {"error": str(exc)}
                else:
                    move = h["handover"][0]
                    out["handover"] = {"from": move["from"], "to": move["to"],
                                       "disruption_ms": move["disruption_ms"],
                                       "lost_packets": move["lost_packets"],
                                       "ha_registration_ms": move["ha_registration_ms"],
                                       "handover_ms": move["handover_ms"], "ro_back": out.pop("ro_back", None),
                                       "tcp": h["tcp"], "udp": h["udp"]}
                    out["tcp_survived"] = h["tcp_survived"]
    finally:
        tb.set_loss(None)
    return out


def _ro_back(tb, mn: str, wait: dict) -> float | None:
    """Seconds until mn is route-optimised with the CN again after the move (None: not
    within the wait)."""
    from mip6bench.runtime.control import ControlError
    t0 = time.monotonic()
    try:
        tb.mobility_agent(mn).request("wait", timeout=wait["within"] + 2, **wait)
    except (ControlError, OSError):
        return None
    return round(time.monotonic() - t0, 3)


# ---- 2. crashes ------------------------------------------------------------------------

def _ha_unheld(tb, items: set[str], bindings: list[dict]) -> list[str]:
    """The HA's per-binding kernel state (home-address routes, proxy entries, reverse-
    tunnel elements, ip6tnl devices) that no binding of the HA's accounts for."""
    from mip6bench.net.tunnel import ha_tunnel_device, hex128
    from mip6bench.testbed.operational import HA_ADDRESS, HOME_PREFIX
    home = ipaddress.IPv6Network(HOME_PREFIX)
    held_hoa = {b["hoa"] for b in bindings}
    held_pair = {(b["coa"], b["hoa"]) for b in bindings}
    out = []
    for item in items:
        kind = item.split(" ", 1)[0]
        if kind == "route" and "table=main" in item and 'dst="' in item:
            dst = item.split('dst="', 1)[1].split('"', 1)[0]
            try:
                address = ipaddress.IPv6Address(dst)
            except ValueError:
                continue      # a prefix, not a home address
            if address in home and dst != HA_ADDRESS and dst not in held_hoa \
                    and "type=\"local\"" not in item:
                out.append(item)
        elif kind == "proxy":
            dst = item.split()[1]
            hoa = next((h for h in held_hoa if h == dst or _link_local_of(h) == dst), None)
            if hoa is None:
                out.append(item)
        elif kind == "nft" and "reverse_tunnel element" in item:
            element = item.rsplit("element ", 1)[1]
            if not any(element == f"{coa} . {hex128(hoa)}" for coa, hoa in held_pair):
                out.append(item)
        elif kind == "link" and item.split()[1].startswith("m6t"):
            if item.split()[1] not in {ha_tunnel_device(h) for h in held_hoa}:
                out.append(item)
    return sorted(out)


def _link_local_of(hoa: str) -> str:
    iid = ipaddress.IPv6Address(hoa).packed[8:]
    return str(ipaddress.IPv6Address(bytes.fromhex("fe80000000000000") + iid))


def _fw_unheld(tb, node: str = "fw") -> list[str]:
    """NSIS pinholes in the firewall's kernel table that its agent does not hold."""
    listing = tb.agent(node, "fw").request("pinholes")
    return sorted(f"nsis session {p['session']}" for p in listing
                  if p.get("kind") == "nsis" and p.get("flow") is None)


def unheld(tb, agent: str, items: set[str]) -> list[str]:
    if agent == "ha":
        return _ha_unheld(tb, items, tb.mobility_agent("ha").request("bindings"))
    if agent == "fw":
        return _fw_unheld(tb)
    return []


NODE = {"ha": "ha", "paa": "paa", "aaa": "aaa", "fw": "fw", "cn": "cn"}


def crash_one(tb, agent: str, mn: str, params, tcp=None) -> dict:
    from mip6bench.net.snapshot import diff, snapshot
    node = NODE.get(agent, mn)
    cn = tb.plan.nodes["cn"].address()
    within = params["recover_within_s"]
    out: dict = {"agent": agent, "node": node, "recovered": False, "recovery_ms": None}
    if not _wait_steady(tb, mn, cn, within):
        out["note"] = f"{mn} was not registered and route-optimised before the crash"
        return out
    pid = tb.node_pid(node)
    before = snapshot(pid)
    crash = tb.crash_agent(node)
    restart = tb.restart_agent(node)
    out["startup_ms"] = round(restart["startup_ms"], 3) if restart["startup_ms"] else None
    if "cpu_share" in restart:   # the run's CPU share, given again to the new process
        out["cpu_share"] = restart["cpu_share"]
    t0 = restart["t_ns"]
    # What the crashed agent left that its successor does not hold, before recovery.
    out["leftover_at_restart"] = unheld(tb, agent, snapshot(pid))
    mn_agent = tb.mobility_agent(mn)
    if agent == "ha":
        found = _wait_event(mn_agent, "mipv6.mn.home_registered", t0, within)
        event = "mipv6.mn.home_registered at " + mn
    elif agent == "paa":
        mn_agent.request("pana-ping")
        found = _wait_event(mn_agent, "bootstrap.ready", t0, within)
        event = "bootstrap.ready at " + mn
    elif agent == "aaa":
        mn_agent.request("pana-reauth")
        found = _wait_event(mn_agent, "pana.reauth_done", t0, within)
        event = "pana.reauth_done at " + mn
    elif agent == "fw":
        found = _wait_event(tb.agent("fw"), "nsis.pinhole_installed", t0, within)
        event = "nsis.pinhole_installed at fw"
    elif agent == "cn":
        found = _wait_event(mn_agent, "mipv6.mn.ro_on", t0, within)
        event = "mipv6.mn.ro_on at " + mn
    else:
        mn_agent = tb.mobility_agent(mn)
        mn_agent.request("pana-start")
        found = _wait_event(mn_agent, "mipv6.mn.home_registered", t0, within)
        event = "mipv6.mn.home_registered at " + mn
    out["event"] = event
    out["crashed_pid"], out["new_pid"] = crash["pid"], restart["pid"]
    if tcp is not None:
        # the CN's TCP connection to mn1's home address: the first message sent after
        # the restart that came back (TCP may be in retransmission backoff by then)
        back = tcp.wait_echo(t0, within)
        out["tcp_resumed_ms"] = None if back is None else round((back - t0) / 1e6, 3)
    if found is not None:
        out["recovery_ms"] = round((found["t_ns"] - t0) / 1e6, 3)
        out["recovered"] = _wait_steady(tb, mn, cn, within)
        if agent in ("ha", "mn"):
            # The HA answers before its kernel has the tunnel: the state to compare is
            # there once it says so.
            hoa = mn_agent.request("status")["hoa"]
            _wait_event(tb.mobility_agent("ha"), "mipv6.ha.tunnel_up", t0, within, hoa=hoa)
        if not out["recovered"]:
            out["note"] = f"{event} came, but {mn} was not registered and route-optimised again"
    else:
        out["note"] = f"no {event} within {within:g} s of the restart"
    after = snapshot(pid)
    d = diff(before, after)
    # Unowned now and still on a second look: a pinhole being committed or removed
    # while the firewall lists its table is not an orphan.
    orphans = sorted(set(unheld(tb, agent, after)) & set(unheld(tb, agent, snapshot(pid))))
    out["kernel_added"], out["kernel_removed"] = d["added"], d["removed"]
    out["orphan_items"] = orphans
    out["orphans"] = len(orphans)
    return out


def crash_part(tb, params) -> dict:
    from mip6bench.measure.streams import TcpEcho
    mn = tb.plan.by_role("mn")[0].name
    cn = tb.plan.nodes["cn"].address()
    agent = tb.mobility_agent(mn)
    if not _wait_steady(tb, mn, cn, params["recover_within_s"]):
        raise Mip6benchError(f"{mn} is not registered and route-optimised with the CN",
                             f"see {mn}-mn.events.jsonl in the run's logs")
    hoa = agent.request("status")["hoa"]
    tcp = TcpEcho(tb.node_pid("cn"), cn, tb.node_pid(mn), hoa, TCP_PORT_CRASH, 0.05).start()
    results = []
    try:
        for name in _crash_list(params["crash"]):
            results.append(crash_one(tb, name, mn, params, tcp))
    finally:
        r = tcp.finish()
    return {"crashes": results,
            "tcp_across_crashes": {"survived": tcp.survived(), "sent": r.sent, "echoed": r.echoed,
                                   "error": r.error, "max_gap_ms": round(r.max_gap_ms, 3)}}


# ---- running -------------------------------------------------------------------------

def run(tb, params) -> dict:
    mns = [n.name for n in tb.plan.by_role("mn")]
    for mn in mns:
        if _wait_event(tb.mobility_agent(mn), "mipv6.mn.movement_detected", 0, 30.0) is None:
            raise Mip6benchError(f"{mn} saw no Router Advertisement within 30 s",
                                 "check that radvd runs on its access router (logs/*-radvd.log)")
    out = {"loss": loss_part(tb, params)}
    if _crash_list(params["crash"]):
        out.update(crash_part(tb, params))
    return out


def summarize(metrics: dict) -> str:
    lines = []
    loss = metrics.get("loss")
    if loss:
        b, r = loss["bootstrap_ms"], loss["registered_ms"]

        def f(v):
            return "-" if v is None else f"{v:.0f}"
        lines.append(f"loss {loss['loss_pct']:g} % on {loss['links']} links: {loss['completed']}/{loss['mns']} "
                     "MNs bootstrapped and registered")
        lines.append(f"  PCI -> bootstrap.ready   p50 {f(b['p50'])} ms  p90 {f(b['p90'])} ms  max {f(b['max'])} ms")
        lines.append(f"  PCI -> home registration p50 {f(r['p50'])} ms  p90 {f(r['p90'])} ms  max {f(r['max'])} ms")
        h = loss.get("handover")
        if h and "error" in h:
            lines.append(f"  handover under loss: {h['error']}")
        elif h:
            t = h["tcp"]
            back = h.get("ro_back")
            lines.append(f"  handover {h['from']}->{h['to']} under loss: registered after "
                         f"{f(h.get('handover_ms'))} ms, route optimisation back "
                         f"{'after ' + format(back, '.1f') + ' s more' if back is not None else 'NOT within settle_s'}")
            lines.append(f"  disruption {f(h['disruption_ms'])} ms; TCP "
                         f"{'survived' if loss.get('tcp_survived') else 'BROKEN'} ({t['echoed']}/{t['sent']} "
                         f"echoed on one connection, longest gap {t['max_gap_ms']:.0f} ms"
                         f"{', error: ' + t['error'] if t['error'] else ''})")
    crashes = metrics.get("crashes")
    if crashes:
        lines.append(f"{'agent':<6} {'recovered':>9} {'recovery_ms':>12} {'orphans':>8} {'left at restart':>16} "
                     f"{'TCP back ms':>12}  event")
        for c in crashes:
            rec = "-" if c["recovery_ms"] is None else f"{c['recovery_ms']:.0f}"
            back = c.get("tcp_resumed_ms")
            lines.append(f"{c['agent']:<6} {'y' if c['recovered'] else 'n':>9} {rec:>12} "
                         f"{c.get('orphans', '-'):>8} {len(c.get('leftover_at_restart', [])):>16} "
                         f"{'-' if back is None else format(back, '.0f'):>12}  {c.get('event', '')}")
            if c.get("note"):
                lines.append(f"       note: {c['note']}")
        t = metrics["tcp_across_crashes"]
        lines.append(f"TCP CN -> {crashes[0]['node'] if crashes[0]['agent'] == 'mn' else 'mn1'} home address across "
                     f"the crashes: {'survived' if t['survived'] else 'BROKEN'} ({t['echoed']}/{t['sent']} echoed"
                     f"{', error: ' + t['error'] if t['error'] else ''})")
    return "\n".join(lines)


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
