"""The floor model: the least time each phase can take under the configured topology,
and a phase's overhead and ratio against it (pure: plans, parameters and numbers in,
numbers out; no I/O). Every experiment takes its floors from here.

One-way delays are lower bounds: each link's configured delay minus its jitter (at least
0). `path_delay_ms(plan, a, b)` sums them over the links of the plan between two nodes;
`one_way(topo, segment)` is one topology segment's (access, backhaul, home_uplink,
home_lan, cn_uplink, cn_lan).

    bootstrap_floors(plan, mn, sa_mode, ha_dad_ms)          PANA bootstrap and home registration
    traversal_floors(plan, mn, via_home_agent, pull)        the first NATFW traversal, RR, RO
    natfw_resignal_floor_ms(topo, handshake)                a handover's NATFW re-signalling
    handover_floor_ms(topo, gap_ms, dad_ms, ..., sequencing) a handover's disruption
    handover_phase_floors(topo, dad_ms, ...)                each phase of a handover
    phase_row(name, measured, floor, waits, floor_waits)    overhead and ratio of a phase
    format_phase_rows(rows)                                 the table every summary prints

The phase-by-phase derivations are in README.md ("The floor model") and in the
docstrings below.
"""
from __future__ import annotations

from mip6bench.testbed.operational import path_delay_ms

__all__ = ["path_delay_ms", "one_way", "bootstrap_floors", "traversal_floors",
           "natfw_resignal_floor_ms", "handover_floor_ms", "handover_phase_floors",
           "phase_row", "format_phase_rows", "SEQUENCINGS"]


def one_way(topo: dict, segment: str) -> float:
    """A topology segment's least one-way delay: configured delay - jitter, at least 0."""
    return max(0.0, topo[f"{segment}_delay_ms"] - topo[f"{segment}_jitter_ms"])


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in d.items()}


# ---- bootstrap -------------------------------------------------------------------------

def bootstrap_floors(plan, mn: str, sa_mode: str, ha_dad_ms: float = 0.0) -> dict[str, float]:
    """Sequential one-way trips times the delay of their path:
        discovery         2 d(MN,PAA)                       PCI, PAR[S]
        eap               6 d(MN,PAA) + 6 d(PAA,AAA)        PAN[S]; 3 x (Access-Request,
                                                            -Challenge/Accept); PAR, PAN, PAR,
                                                            PAN, PAR[C]
        pana              discovery + eap
        sa_push           push d(PAA,HA); pull 2 d(HA,PAA)
        ha_registration   2 d(MN,HA) (BU, BA) + ha_dad_ms; pull adds 2 d(HA,PAA) (the HA
                          fetches the SA on the BU)
        total             pana + ha_registration (the push overlaps the last PAR and the BU)
    ha_dad_ms: the HA's DAD wait for the new home address when it performs DAD (its
    dad_timeout_ms: RetransTimer x DupAddrDetectTransmits 1), else 0."""
    d_mp = path_delay_ms(plan, mn, "paa")
    d_pa = path_delay_ms(plan, "paa", "aaa")
    d_ph = path_delay_ms(plan, "paa", "ha")
    d_mh = path_delay_ms(plan, mn, "ha")
    out = {"discovery_ms": 2 * d_mp, "eap_ms": 6 * d_mp + 6 * d_pa}
    out["pana_ms"] = out["discovery_ms"] + out["eap_ms"]
    out["sa_push_ms"] = d_ph if sa_mode == "push" else 2 * d_ph
    out["ha_registration_ms"] = 2 * d_mh + ha_dad_ms + (2 * d_ph if sa_mode == "pull" else 0.0)
    out["total_ms"] = out["pana_ms"] + out["ha_registration_ms"]
    return _rounded(out)


# ---- firewall traversal ----------------------------------------------------------------

def traversal_floors(plan, mn: str, via_home_agent: bool, pull: bool = False) -> dict[str, float]:
    """The first traversal (P: the deciding session's path, MN -> HA -> FW for the home
    address's sessions, reverse-tunnelled; MN -> FW for the CoA's):
        gist_handshake    2 d(P)                      Query, Response
        natfw_create      2 d(P) + 4 d(FW,CN)         Confirm+CREATE; the firewall's Query/
                                                      Response/Confirm+CREATE with the CN
                                                      (3 + the RESPONSE); RESPONSE to the MN
        pinhole_install   0                           (no configured delay: the nft commit)
        rr                max(2 (d(MN,HA) + d(HA,CN)), 2 d(MN,CN))   HoTI/HoT, CoTI/CoT
        cn_binding        2 d(MN,CN)
        natfw_data        4 d(MN,FW) + 4 d(FW,CN)     the data session's handshake and CREATE
    pull authorization adds 2 d(FW,PAA) to natfw_create and natfw_data (the firewall asks
    the PAA before it passes the CREATE on)."""
    d_mh = path_delay_ms(plan, mn, "ha")
    d_hf = path_delay_ms(plan, "ha", "fw")
    d_mf = path_delay_ms(plan, mn, "fw")
    d_fc = path_delay_ms(plan, "fw", "cn")
    d_mc = path_delay_ms(plan, mn, "cn")
    d_hc = path_delay_ms(plan, "ha", "cn")
    d_p = d_mh + d_hf if via_home_agent else d_mf
    ask = 2 * path_delay_ms(plan, "fw", "paa") if pull else 0.0
    out = {"gist_handshake_ms": 2 * d_p,
           "natfw_create_ms": 2 * d_p + 4 * d_fc + ask,
           "pinhole_install_ms": 0.0,
           "rr_ms": max(2 * (d_mh + d_hc), 2 * d_mc),
           "cn_binding_ms": 2 * d_mc,
           "natfw_data_ms": 4 * d_mf + 4 * d_fc + ask}
    out["total_ms"] = sum(out.values())
    return _rounded(out)


# ---- handover --------------------------------------------------------------------------

# best: the protocols' best legal sequencing; mn: this MN's (mip6bench/mipv6/mn.py: the
# HoTI waits for the home BA); sequential: every step after the one before.
SEQUENCINGS = ("best", "mn", "sequential")


def _handover_delays(topo: dict) -> dict[str, float]:
    access, backhaul = one_way(topo, "access"), one_way(topo, "backhaul")
    home, cn_up, cn_lan = one_way(topo, "home_uplink"), one_way(topo, "cn_uplink"), one_way(topo, "cn_lan")
    return {"access": access, "mn_ha": access + backhaul + home,
            "mn_cn": access + backhaul + cn_up + cn_lan, "ha_cn": home + cn_up + cn_lan,
            "mn_fw": access + backhaul + cn_up, "fw_cn": cn_lan}


def natfw_resignal_floor_ms(topo: dict, handshake: bool = True) -> float:
    """Re-signalling the care-of address's NATFW sessions after a move: a GIST handshake
    for the new MRI with the firewall (Query, Response), the CREATE in the Confirm, the
    firewall's handshake with the CN and the CREATE on, the RESPONSE back to the MN:
    4 d(MN,FW) + 4 d(FW,CN). Without handshake (a care-of address revisited while GIST
    still holds routing state for its flow) the CREATE goes straight to the firewall, on
    to the CN, and back: 2 d(MN,FW) + 2 d(FW,CN)."""
    d = _handover_delays(topo)
    return round((4 if handshake else 2) * (d["mn_fw"] + d["fw_cn"]), 3)


def handover_phase_floors(topo: dict, dad_ms: float, route_optimization: bool,
                          home_test: bool = True, nsis: bool = False,
                          nsis_handshake: bool = True) -> dict[str, float | None]:
    """Each phase of a handover on its own:
        movement_detection   d_access (an RA the instant the link is up)
        coa                  DAD (of a care-of address new to the MN)
        ha_registration      2 d(MN,HA)
        nsis                 natfw_resignal_floor_ms (NSIS and route optimisation)
        rr                   max(2 (d(MN,HA) + d(HA,CN)) [home test], 2 d(MN,CN))
        cn_binding           2 d(MN,CN)
    None for a phase the configuration does not have."""
    d = _handover_delays(topo)
    home_rr = 2 * (d["mn_ha"] + d["ha_cn"]) if home_test else 0.0
    out: dict[str, float | None] = {
        "movement_detection_ms": d["access"], "coa_ms": dad_ms, "ha_registration_ms": 2 * d["mn_ha"],
        "nsis_ms": natfw_resignal_floor_ms(topo, nsis_handshake) if nsis and route_optimization else None,
        "rr_ms": max(home_rr, 2 * d["mn_cn"]) if route_optimization else None,
        "cn_binding_ms": 2 * d["mn_cn"] if route_optimization else None}
    return {k: None if v is None else round(v, 3) for k, v in out.items()}


def handover_floor_ms(topo: dict, gap_ms: float, dad_ms: float, route_optimization: bool,
                      home_test: bool = True, nsis: bool = False, nsis_handshake: bool = True,
                      sequencing: str = "best") -> float:
    """The least disruption of a handover (the probe stream from the CN to the home
    address): l2_gap + d_access + DAD, then
      without route optimisation: + 2 d(MN,HA) (the HA forwards to the new CoA from the
        BU on; its next tunnelled probe is inside the BA's trip);
      with it (the CN keeps sending to the old CoA until it has the new binding), with
        H = 2 (d(MN,HA) + d(HA,CN)) if the home test runs (home token stale) else 0,
        C = 2 d(MN,CN) (care-of test), N = the NATFW re-signalling (with NSIS) else 0:
          best        + max(2 d(MN,HA), H, N + C)     RFC 6275 lets the CoTI go while the
                                                      home BU is in flight and the HoTI right
                                                      behind the BU; the CoA's NATFW sessions
                                                      need only the CoA
          mn          + max(2 d(MN,HA) + H, N + C)    this MN: the HoTI, reverse-tunnelled,
                                                      waits for the home BA (RFC 6275 10.4.5)
          sequential  + 2 d(MN,HA) + N + max(H, C)    each step after the one before
        + 2 d(MN,CN)                                  BU to the CN, then its next probe."""
    if sequencing not in SEQUENCINGS:
        raise ValueError(f"sequencing must be one of {', '.join(SEQUENCINGS)}")
    d = _handover_delays(topo)
    floor = gap_ms + d["access"] + dad_ms
    if not route_optimization:
        return round(floor + 2 * d["mn_ha"], 3)
    nsis_ms = natfw_resignal_floor_ms(topo, nsis_handshake) if nsis else 0.0
    home_rr = 2 * (d["mn_ha"] + d["ha_cn"]) if home_test else 0.0
    care_of_rr = 2 * d["mn_cn"]
    if sequencing == "sequential":
        floor += 2 * d["mn_ha"] + nsis_ms + max(home_rr, care_of_rr)
    elif sequencing == "mn":
        floor += max(2 * d["mn_ha"] + home_rr, nsis_ms + care_of_rr)
    else:
        floor += max(2 * d["mn_ha"], home_rr, nsis_ms + care_of_rr)
    return round(floor + 2 * d["mn_cn"], 3)


# ---- overhead and ratio ----------------------------------------------------------------

def phase_row(name: str, measured: float | None, floor: float | None, waits: float = 0.0,
              floor_waits: float | None = None) -> dict:
    """A phase: overhead = measured - floor (ms); ratio = (measured - waits) / (floor -
    floor_waits), the fixed protocol waits as they happened left out of both (the floor
    holds floor_waits of them, by default all); None where a number is missing or the
    floor without its waits is 0."""
    floor_waits = waits if floor_waits is None else floor_waits
    out = {"phase": name, "measured_ms": measured, "floor_ms": floor, "waits_ms": round(waits, 3),
           "floor_waits_ms": round(floor_waits, 3), "overhead_ms": None, "ratio": None}
    if measured is not None and floor is not None:
        out["overhead_ms"] = round(measured - floor, 3)
        if floor - floor_waits > 0:
            out["ratio"] = round((measured - waits) / (floor - floor_waits), 3)
    return out


def format_phase_rows(rows: list[dict], width: int = 44) -> list[str]:
    """The table every experiment's summary prints: phase, measured, floor, overhead, ratio
    (ms; '-' where missing)."""
    def f(v, w):
        return f"{'-':>{w}}" if v is None else f"{v:>{w}.1f}"

    lines = [f"{'phase':<{width}} {'measured':>9} {'floor':>8} {'overhead':>9} {'ratio':>6}"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"{r['phase']:<{width}} {f(r['measured_ms'], 9)} {f(r['floor_ms'], 8)} "
                     f"{f(r['overhead_ms'], 9)} {ratio:>6}")
    return lines
