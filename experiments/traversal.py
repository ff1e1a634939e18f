"""Traversal: a mobile node route-optimises with a correspondent behind a stateful
firewall, first without NSIS, then with it (seed paper 3.2, 4 and Figure 2), in one run.

The MN bootstraps (PANA: HA, HoA, MIPv6 SA and the NSIS authorization token), registers
with its HA and wants route optimisation with the CN.

1. Without NSIS the MN's HoTI, CoTI and BU meet the firewall's default policy: return
   routability times out (`rr_attempts` tries) and the MN keeps using the tunnel.
2. Then the MN turns NSIS on: before RR it signals NATFW CREATEs toward the CN for the
   return-routability flows (HoTI/BU from the HoA, CoTI/BU from the CoA), each carrying
   the token; the firewall (NF) holds them until the CN (NR) consents, verifies the
   token, installs the pinholes and passes the RESPONSE on; RR and the BU to the CN
   follow; once the CN accepted the binding a second round opens the route-optimised
   data flow, and the data path switches.

metrics.json "traversal":
  with_nsis: times in ms, for the first traversal; the NATFW session whose RESPONSE came
  last decides the first three phases (its flow: "via_home_agent" true for the home
  address's sessions, whose signalling is reverse-tunnelled through the HA)
     gist_handshake_ms   OpenPinholes at the MN -> GIST routing state toward the firewall
                         (Query out, Response back)
     natfw_create_ms     that -> the RESPONSE at the MN (CREATE in the Confirm, the
                         firewall's own handshake with the CN, CREATE on, RESPONSE back)
     pinhole_install_ms  at the firewall: the NR's RESPONSE received -> nft committed
                         (that session; pinhole_install_ms_all: every session of the run)
     rr_ms               RESPONSE -> the BU to the CN sent (HoTI/HoT via the HA and
                         CoTI/CoT direct, in parallel)
     cn_binding_ms       BU to the CN sent -> its BA received (the data round starts)
     natfw_data_ms       data round: OpenPinholes -> RESPONSE (handshake and CREATE)
     total_ms            OpenPinholes -> route optimisation on (data path switched)
     floor_ms, ratio     total's floor, total / floor; phase floors in "floors"; the
                         summary's table has every phase's overhead and ratio
     ro_established, pinholes (NSIS pinholes open at the firewall afterwards)
  without_nsis: ro_established false, fallback "tunnel", rr_timeout_ms (first HoTI/CoTI
     -> the MN gives up), firewall_drops (the firewall's "unsolicited" counter's growth)

Floors (mip6bench/measure/floors.py, traversal_floors; configured one-way delays d
minus jitter, from the plan's links): with P the path of the
deciding session (d(P) = d(MN,HA) + d(HA,FW) for the home address, d(MN,FW) otherwise)
     gist_handshake   2 d(P)
     natfw_create     d(P) + 3 d(FW,CN) + d(FW,CN) + d(P)   Confirm+CREATE, Query/Response/
                      Confirm+CREATE to the CN, RESPONSE from the CN, RESPONSE to the MN
     pinhole_install  0 (no configured delay: the measured time is the nft commit)
     rr               max(2 (d(MN,HA) + d(HA,CN)), 2 d(MN,CN))
     cn_binding       2 d(MN,CN)
     natfw_data       4 d(MN,FW) + 4 d(FW,CN)   the data session's own handshake and CREATE
  with pull authorization (nsis_authz=pull) natfw_create and natfw_data add 2 d(FW,PAA):
  the firewall asks the PAA before passing the CREATE on.
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import time

from mip6bench.errors import Mip6benchError
from mip6bench.measure.floors import format_phase_rows, phase_row, traversal_floors
from mip6bench.params import ParamSpec

NAME = "traversal"
SWEEP_METRICS = ["traversal.with_nsis.total_ms", "traversal.with_nsis.natfw_create_ms"]
ESTIMATED_RUN_S = 20.0  # for sweeps: the RR timeout without NSIS is most of it
PARAMS = [
    ParamSpec("rr_attempts", int, 3, "HoTI/CoTI transmissions before the MN gives up on RO "
              "(1 s, doubling: 3 tries time out after 7 s)", 1, 10),
    ParamSpec("settle_s", float, 30.0, "how long each step may take before the run fails (s)", 1, 600),
]
TOPOLOGY_DEFAULTS = {"mipv6": "bootstrap", "nsis": "on"}


def prepare(tb, params) -> None:
    from mip6bench.errors import ParameterError

    if tb.params["nsis"] != "on":
        raise ParameterError("the traversal experiment compares with and without NSIS itself",
                             "leave the topology parameter nsis at on")
    if tb.params["mipv6"] == "off":
        raise ParameterError("the traversal experiment needs the Mobile IPv6 agents", "set mipv6=bootstrap")
    # The MN starts without NSIS (step 1) and turns it on by command (step 2).
    tb.mn_extra_options = {"firewall_traversal": False, "rr_max_attempts": params["rr_attempts"]}
    tb.traversal_t0 = time.monotonic_ns()     # events of this run only (a log may be reused)


# ---- events ----------------------------------------------------------------------------

def _events(path) -> list[dict]:
    from mip6bench.runtime.eventlog import read_events

    return list(read_events(path))


def _first(events, name: str, after_ns: int = 0, **match) -> dict | None:
    for e in events:
        if e["event"] == name and e["t_ns"] >= after_ns and all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def _ms(a: dict | None, b: dict | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b["t_ns"] - a["t_ns"]) / 1e6, 3)


def with_nsis_phases(mn_events: list[dict], fw_events: list[dict], cn: str, hoa: str,
                     after_ns: int) -> dict:
    """The phases of the first traversal after `after_ns` (see the module docstring)."""
    start = _first(mn_events, "mipv6.mn.traversal_started", after_ns, cn=cn, phase="rr")
    if start is None:
        raise Mip6benchError("the mobile node never asked for pinholes (no traversal_started)")
    done = _first(mn_events, "mipv6.mn.traversal_done", start["t_ns"], cn=cn, phase="rr")
    if done is None or not done.get("ok"):
        reason = done.get("reason") if done else "no answer"
        raise Mip6benchError(f"firewall traversal failed: {reason}")
    opened = _first(mn_events, "natfw.traversal_open", start["t_ns"], cn=cn, phase="rr")
    sessions = opened["sessions"] if opened else []
    responses = [e for e in mn_events if e["event"] == "nsis.response" and e.get("session") in sessions
                 and start["t_ns"] <= e["t_ns"] <= done["t_ns"]]
    last = max(responses, key=lambda e: e["t_ns"]) if responses else None
    sid = last["session"] if last else None
    gist_up = _first(mn_events, "nsis.gist_up", start["t_ns"], session=sid) if sid else None
    installed = _first(fw_events, "nsis.pinhole_installed", start["t_ns"], session=sid) if sid else None
    bu = _first(mn_events, "mipv6.mn.cn_bu_sent", done["t_ns"], cn=cn)
    data_start = _first(mn_events, "mipv6.mn.traversal_started", done["t_ns"], cn=cn, phase="data")
    data_done = _first(mn_events, "mipv6.mn.traversal_done", data_start["t_ns"], cn=cn, phase="data") \
        if data_start else None
    ro_on = _first(mn_events, "mipv6.mn.ro_on", done["t_ns"], cn=cn)
    return {
        "gist_handshake_ms": _ms(start, gist_up),
        "natfw_create_ms": _ms(gist_up, last),
        "pinhole_install_ms": installed.get("install_ms") if installed else None,
        "pinhole_install_ms_all": [e["install_ms"] for e in fw_events if e["event"] == "nsis.pinhole_installed"],
        "rr_ms": _ms(done, bu),
        "cn_binding_ms": _ms(bu, data_start),
        "natfw_data_ms": _ms(data_start, data_done),
        "total_ms": _ms(start, ro_on),
        "via_home_agent": bool(last and last.get("source") == hoa),
        "ro_established": ro_on is not None,
    }


# ---- running ---------------------------------------------------------------------------

def run(tb, params) -> dict:
    plan = tb.plan
    mn = plan.by_role("mn")[0].name
    cn = plan.nodes["cn"].address()
    agent = tb.mobility_agent(mn)
    fw = tb.agents[("fw", "fw")]
    settle = params["settle_s"]
    status = tb.wait_registered(mn, timeout=settle)
    hoa = status.get("hoa") or agent.request("status")["hoa"]

    # 1. Without NSIS: return routability dies at the firewall.
    t0 = getattr(tb, "traversal_t0", 0)
    fallback = agent.request("wait-event", timeout=settle + 5, event="mipv6.mn.ro_fallback",
                             match={"cn": cn}, after_ns=t0, within=settle)
    mn_events = [e for e in _events(agent.events_path) if e["t_ns"] >= t0]
    first_test = next((e for e in mn_events if e["event"] in ("mipv6.mn.hoti_sent", "mipv6.mn.coti_sent")), None)
    # The firewall started with the testbed: its whole "unsolicited" count is this run's.
    drops = fw.request("counters").get("unsolicited", {}).get("packets", 0)
    if cn in agent.request("status").get("route_optimized", []):
        raise Mip6benchError("route optimisation came up without NSIS: the firewall let RR through")
    without = {"ro_established": False, "fallback": "tunnel",
               "rr_timeout_ms": _ms(first_test, fallback), "reason": fallback.get("reason"),
               "firewall_drops": drops}

    # 2. With NSIS.
    t2 = time.monotonic_ns()
    agent.request("traversal", enabled=True)
    agent.request("wait", timeout=settle + 2, until="ro", cn=cn, within=settle)
    mn_events = [e for e in _events(agent.events_path) if e["t_ns"] >= t0]
    fw_events = [e for e in _events(fw.events_path) if e["t_ns"] >= t0]
    phases = with_nsis_phases(mn_events, fw_events, cn, hoa, t2)
    pull = tb.params["nsis_authz"] == "pull" or (tb.params["nsis_authz"] == "token-or-pull"
                                                  and not status.get("nsis_token"))
    fl = traversal_floors(plan, mn, phases["via_home_agent"], pull)
    pinholes = [p for p in fw.request("pinholes") if p.get("session")]
    total = phases["total_ms"]
    with_ = {**phases, "floor_ms": fl["total_ms"], "floors": fl,
             "ratio": round(total / fl["total_ms"], 3) if total and fl["total_ms"] else None,
             "pinholes": len(pinholes), "authorization": "pull" if pull else "token"}
    return {"traversal": {"with_nsis": with_, "without_nsis": without}}


PHASE_NAMES = (("GIST handshake", "gist_handshake_ms"), ("NATFW CREATE", "natfw_create_ms"),
               ("pinhole install (nft)", "pinhole_install_ms"), ("return routability", "rr_ms"),
               ("BU/BA with the CN", "cn_binding_ms"), ("NATFW data round", "natfw_data_ms"))


def phase_rows(with_nsis: dict, floors: dict, total: bool = True) -> list[dict]:
    """The traversal's phases (with NSIS) against their floors (no fixed waits in them)."""
    names = PHASE_NAMES + ((("total", "total_ms"),) if total else ())
    return [phase_row(name, with_nsis.get(key), floors.get(key)) for name, key in names]


def summarize(metrics: dict) -> str:
    t = metrics["traversal"]
    w, wo = t["with_nsis"], t["without_nsis"]
    lines = ["with NSIS"] + format_phase_rows(phase_rows(w, w["floors"]), width=24)
    lines.append(f"  route optimisation: {'on' if w['ro_established'] else 'OFF'}, "
                 f"{w['pinholes']} NSIS pinholes open; times in ms")
    lines.append(f"without NSIS: RR timed out after {wo['rr_timeout_ms']} ms "
                 f"({wo['firewall_drops']} packets dropped at the firewall), fallback: {wo['fallback']}")
    return "\n".join(lines)


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
