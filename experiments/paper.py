"""The paper's whole story in one run: bootstrap, firewall traversal, route optimisation,
handovers (seed paper, Figure 2), every phase against its floor. The main job:
`mip6bench run` with no experiment name, `sudo make run`.

One MN starts in foreign network f1 with nothing but its NAI and EAP-PSK key.
1. Bootstrap (experiments/bootstrap.py): it discovers the PAA, authenticates through
   PANA (EAP-PSK with the AAA server behind the PAA) and learns its HA, home address,
   MN-HA SA and NSIS token; the PAA pushes the SA to the HA; the MN registers.
2. Firewall traversal (experiments/traversal.py): before return routability with the CN
   (behind the stateful firewall) it opens the pinholes with GIST + NATFW CREATEs
   carrying the token; RR, the BU to the CN, and a second NATFW round for the
   route-optimised data flow follow.
3. Handovers (experiments/handover.py): with a UDP probe stream and a TCP connection
   from the CN to its home address, the MN moves `moves` times between the foreign
   networks; each move re-registers, re-signals the pinholes for the new CoA and
   route-optimises again.

metrics.json "paper": "phases" (one row per phase: name, measured_ms, floor_ms,
overhead_ms = measured - floor, ratio = measured / floor, and `waits_ms`, the fixed
protocol waits inside both, which the ratio leaves out: (measured - waits) / (floor -
waits)); "bootstrap", "traversal", "handovers" hold each part's full metrics as its own
experiment reports them; "tcp_survived". Floors are those of the three experiments
(their module docstrings explain them phase by phase). report.md in the run directory
has the table; phases.png plots it (measured against floor); with capture (the default)
sequence.png is the message sequence chart of the signalling on the wire; handovers.png
the CN's probe stream around each handover (from probes.csv).
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import time

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.experiment import load
from mip6bench.measure.floors import format_phase_rows, one_way, traversal_floors
from mip6bench.measure.progress import Steps
from mip6bench.params import ParamSpec

NAME = "paper"
SWEEP_METRICS = ["paper.bootstrap.total_ms", "paper.traversal.total_ms",
                 "paper.handovers.0.disruption_ms"]
ESTIMATED_RUN_S = 20.0  # for sweeps: one run, network start and teardown included
_bootstrap, _traversal, _handover = load("bootstrap"), load("traversal"), load("handover")
_HANDOVER_PARAMS = [s for s in _handover.PARAMS if s.name != "route_optimization"]
PARAMS = _bootstrap.PARAMS + _HANDOVER_PARAMS
TOPOLOGY_DEFAULTS = {"mipv6": "bootstrap", "nsis": "on"}


def prepare(tb, params) -> None:
    if tb.params["nsis"] != "on":
        raise ParameterError("the paper's scenario traverses the CN's firewall with NSIS",
                             "leave the topology parameter nsis at on")
    if tb.params["foreign"] < 2:
        raise ParameterError("the handovers need two foreign networks", "set foreign=2 or more")
    if tb.params["mns"] != 1:
        raise ParameterError("the paper's scenario follows one mobile node",
                             "use the bootstrap experiment for several MNs")
    _bootstrap.prepare(tb, params)


def run(tb, params) -> dict:
    mn = tb.plan.by_role("mn")[0].name
    cn = tb.plan.nodes["cn"].address()
    agent = tb.mobility_agent(mn)
    fw = tb.agents[("fw", "fw")]
    steps = Steps(2 + params["moves"])

    steps.begin("bootstrap: PANA (EAP-PSK), SA to the HA, home registration")
    t0 = time.monotonic_ns()
    boot = _bootstrap.run(tb, params, plain=False)["bootstrap"]
    if boot["total_ms"] is None:
        raise Mip6benchError(f"{mn} did not bootstrap and register: {boot['notes']}")
    steps.end(f"{boot['total_ms']:.0f} ms")

    steps.begin("firewall traversal (GIST + NATFW), return routability, route optimisation")
    settle = params["settle_s"]
    try:
        agent.request("wait", timeout=settle + 2, until="ro", cn=cn, within=settle)
    except Exception as exc:
        raise Mip6benchError(f"route optimisation with the CN did not come up: {exc}") from None
    status = agent.request("status")
    mn_events = [e for e in _traversal._events(agent.events_path) if e["t_ns"] >= t0]
    fw_events = [e for e in _traversal._events(fw.events_path) if e["t_ns"] >= t0]
    trav = _traversal.with_nsis_phases(mn_events, fw_events, cn, status["hoa"], t0)
    pull = tb.params["nsis_authz"] == "pull"
    trav_floors = traversal_floors(tb.plan, mn, trav["via_home_agent"], pull)
    steps.end(f"{trav['total_ms']:.0f} ms")

    moves = {**params, "route_optimization": True}
    ho = _handover.handovers(tb, mn, moves, on_move=lambda i, m: steps.end(
        f"{m['from']} -> {m['to']}", begin=f"handover {i + 1}"))
    # The SA push's plain path, at the end: the network quiet again, the HA's idle gap
    # before the push given to the receiver (experiments/bootstrap.py, plain_path).
    boot["sa_plain_path"] = _bootstrap.plain_path(tb, boot, params)
    return {"paper": {
        "phases": phase_table(boot, trav, trav_floors, ho["handover"], one_way(tb.params, "access")),
        "bootstrap": boot, "traversal": {**trav, "floors": trav_floors},
        "handovers": ho["handover"], "tcp_survived": ho["tcp_survived"], "tcp": ho["tcp"],
        "udp": ho["udp"], "route_optimization": True, "authorization": "pull" if pull else "token",
    }}


def phase_table(boot: dict, trav: dict, trav_floors: dict, handovers: list[dict],
                access_ms: float) -> list[dict]:
    """One row per phase, in the order they happen (access_ms: the access link's one-way
    delay, the movement detection's floor): the rows of the bootstrap, traversal and
    handover experiments' own tables (fixed waits left out of the ratios as there)."""
    rows = [r for r in _bootstrap.phase_rows(boot) if r["phase"] not in ("PANA (discovery + EAP)", "total")]
    rows += _traversal.phase_rows(trav, trav_floors, total=False)
    for i, h in enumerate(handovers, 1):
        rows += _handover.phase_rows(h, access_ms, index=i)
    return rows


def plot_delivery(probes, handovers: list[dict], out, plt, before_ms: float = 150.0,
                  after_ms: float = 150.0) -> None:
    """Per handover: each probe's arrival (sequence number against time since the old
    link went down), lost probes marked at their send time; lines at detach, attach and
    route optimisation back."""
    fig, axes = plt.subplots(len(handovers), 1, figsize=(8, 2.4 * len(handovers) + 0.6), squeeze=False)
    for ax, (i, h) in zip(axes[:, 0], enumerate(handovers, 1)):
        t0 = h["detach_ns"]
        lo, hi = t0 - before_ms * 1e6, h["done_ns"] + after_ms * 1e6
        got = [(a, seq) for seq, sent, a in probes if a is not None and lo <= a <= hi]
        lost = [(sent, seq) for seq, sent, a in probes if a is None and lo <= sent <= hi]
        if got:
            ax.plot([(a - t0) / 1e6 for a, _ in got], [s for _, s in got], ".", markersize=2,
                    label="arrival")
        if lost:
            ax.plot([(t - t0) / 1e6 for t, _ in lost], [s for _, s in lost], "x", markersize=2,
                    color="tab:red", label="lost (at send time)")
        for t, name, style in ((h["detach_ns"], "detach", ":"), (h["attach_ns"], "attach", "--"),
                               (h["done_ns"], "RO again", "-.")):
            ax.axvline((t - t0) / 1e6, color="0.4", linestyle=style, linewidth=0.8)
            ax.text((t - t0) / 1e6, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=7,
                    va="top")
        ax.set_title(f"handover {i}: {h['from']} -> {h['to']}, disruption {h['disruption_ms']} ms, "
                     f"{h['lost_packets']} lost", fontsize=8)
        ax.set_ylabel("probe seq", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("ms since the old link went down", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def wire_cross_check(messages, handovers: list[dict], mn: str) -> list[dict]:
    """Each handover's BU -> BA at the MN from the capture (the k-th BU to the HA after
    the bootstrap's, and the first BA after it) next to the event log's
    ha_registration_ms: the event times' own check against the wire."""
    bus = [m for m in messages if (m.sender, m.receiver, m.label) == (mn, "ha", "Binding Update")]
    bas = [m for m in messages if (m.sender, m.receiver, m.label) == ("ha", mn, "Binding Acknowledgement")]
    out = []
    for i, (h, bu) in enumerate(zip(handovers, bus[1:]), 1):
        ba = next((m for m in bas if m.t_send > bu.t_send), None)
        if ba is None or h.get("ha_registration_ms") is None:
            continue
        wire = round((ba.t_recv - bu.t_send) * 1e3, 3)
        out.append({"handover": i, "events_ms": h["ha_registration_ms"], "wire_ms": wire,
                    "difference_ms": round(h["ha_registration_ms"] - wire, 3)})
    return out


def summarize(metrics: dict) -> str:
    p = metrics["paper"]
    lines = format_phase_rows(p["phases"])
    t = p["tcp"]
    lines.append("times in ms; floors: the best legal sequencing; ratio = (measured - fixed waits) / "
                 "(floor - fixed waits): the HA's DAD in the home registration; in a handover the "
                 "wait for the next Router Advertisement, DAD of a new care-of address and, in the "
                 "disruption, the layer-2 gap (as they happened)")
    if p["bootstrap"].get("sa_plain_path"):
        from mip6bench.measure.plainpath import format_line
        lines.append(format_line(p["bootstrap"]["sa_plain_path"]))
    note = _handover.mn_sequencing_note(p["handovers"])
    if note:
        lines.append(note)
    lines.append(f"TCP to the home address across {len(p['handovers'])} handovers: "
                 f"{'survived' if p['tcp_survived'] else 'BROKEN'} ({t['echoed']}/{t['sent']} echoed)")
    return "\n".join(lines)


def report(metrics: dict, run_dir) -> list[str]:
    """report.md, phases.png and (with captures) sequence.png in the run directory;
    returns the files written. `mip6bench report <run-dir>` calls it again."""
    p = metrics["paper"]
    written = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        rows = [r for r in p["phases"] if r["measured_ms"] is not None and r["floor_ms"] is not None]
        fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.2))
        y = range(len(rows))
        # Without the fixed waits (DAD, layer-2 gap, RA wait), which would dwarf the rest.
        ax.barh([i + 0.2 for i in y], [r["measured_ms"] - r["waits_ms"] for r in rows], height=0.4,
                label="measured")
        ax.barh([i - 0.2 for i in y], [r["floor_ms"] - r.get("floor_waits_ms", r["waits_ms"]) for r in rows],
                height=0.4, label="floor")
        ax.set_yticks(list(y), [r["phase"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ms (fixed waits excluded: the HA's DAD, layer-2 gaps, RA waits, DAD of new CoAs)")
        ax.set_title("mip6bench paper scenario: each phase against its floor")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(run_dir / "phases.png", dpi=110)
        plt.close(fig)
        written.append("phases.png")
    probes = run_dir / _handover.PROBES_FILE
    if plt is not None and probes.is_file() and p["handovers"] and "detach_ns" in p["handovers"][0]:
        plot_delivery(_handover.read_probes(probes), p["handovers"], run_dir / "handovers.png", plt)
        written.append("handovers.png")
    if plt is not None and (run_dir / "captures").is_dir():
        from mip6bench.measure.msc import lanes_of, plot_sequence, signalling_messages

        messages = signalling_messages(run_dir)
        if messages:
            plot_sequence(messages, lanes_of(messages), run_dir / "sequence.png",
                          "mip6bench paper scenario: signalling on the wire (from the captures)")
            written.append("sequence.png")
        checks = wire_cross_check(messages, p["handovers"], p["bootstrap"]["per_mn"][0]["mn"])
    else:
        checks = []
    text = ["# mip6bench: the paper's scenario", "", "```", summarize(metrics), "```", ""]
    if checks:
        text += ["## Event times against the wire", "",
                 "Each handover's home registration (BU sent -> BA received at the MN) from the MN "
                 "agent's events and from the MN's packet capture:", "",
                 "| handover | events (ms) | capture (ms) | events - capture (ms) |", "|---|---|---|---|"]
        text += [f"| {c['handover']} | {c['events_ms']} | {c['wire_ms']} | {c['difference_ms']} |"
                 for c in checks]
        text.append("")
    if "phases.png" in written:
        text += ["![phases: measured against floor](phases.png)", ""]
    if "handovers.png" in written:
        text += ["## The probe stream around each handover", "",
                 "![delivery of the CN's UDP probes around each handover](handovers.png)", ""]
    if "sequence.png" in written:
        text += ["## Message sequence (from the packet captures)", "",
                 "![message sequence chart](sequence.png)", ""]
    (run_dir / "report.md").write_text("\n".join(text))
    written.append("report.md")
    return written


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
