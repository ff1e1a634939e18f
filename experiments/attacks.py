"""Attacks: an attacker on the wire against a bootstrapped, route-optimised mobile node.

The network is the paper's (topology mipv6=bootstrap, nsis=on) with two MNs (mn1, the
victim, and mn2, whose SA uses sequence-number replay protection: the PaC proposes it,
PanaOptions sa_replay) and the attacker node atk (topology attacker=on: a port on
foreign network f1 beside the MNs, one on the core, one on the home link). Both MNs
bootstrap through PANA (EAP-PSK), get their SAs pushed to the HA, register, open the
CN's firewall with GIST + NATFW and mn1 route-optimises with the CN. Then, with a UDP
probe stream (CN -> mn1's home address) and a TCP connection (CN <-> home address)
running, the attacker tries, one after the other:

  HA (Binding Updates)   no Authentication option; an SPI nobody has (the HA tries to
                         fetch it from the PAA); the victim's SPI with a wrong key; the
                         victim's own BU replayed (timestamp replay protection: mn1; and
                         sequence numbers only: mn2); a BU for mn1's home address signed
                         with the attacker's own valid SA (an insider: a subscriber
                         provisioned at the HA for another home address)
  MN, CN (return routability)  forged HoT (to the home address, through the HA's
                         tunnel) and CoT (to the care-of address); a BU to the CN with a
                         Binding Authorization Data of a made-up key (from the victim's
                         care-of address, the one the CN's firewall lets through)
  PAA, PaC (PANA)        a PNR with a wrong AUTH; the victim's own earlier PNR replayed
                         (an old sequence number); a PTR for the victim's session to the
                         PAA and, as from the PAA, to the victim's PaC; a PCI flood from
                         spoofed sources (many addresses and ports)
  AAA, PAA (RADIUS)      an Access-Request with a wrong Message-Authenticator as from the
                         PAA (aaa=embedded: the testbed's RADIUS server; hostapd keeps no
                         counters to read, so with aaa=radius this one is left out), and
                         a forged Access-Accept to the PAA's RADIUS client as from the
                         AAA server (what an operator fears: a forged Accept lets a
                         stranger in)
  HA (SA distribution)   a REVOKE of the victim's SA sealed with a made-up key; the PAA's
                         own PUSH replayed
  firewall (NATFW)       CREATEs without a token, with a forged token (right format,
                         wrong key), an expired token, the victim's token taken off the
                         wire (its care-of sessions are bound to it) and mn2's (another
                         MN's token for the victim's home address)
  firewall, MN (GIST)    a Confirm with a Responder-Cookie the firewall never issued; a
                         Response without cookies to the MN

The attacker sees what a listener on a shared medium sees: taps on f1's ports of mn1
and mn2 and on the home link's port of the PAA (mip6bench.attack.wire.Tap); that is
where the replayed messages, the PANA sequence numbers, the PAA's RADIUS port and the
victim's token come from. Forged packets are built in the controller (mip6bench.attack.
forge, scapy for IPv6 and RADIUS) and sent from the attacker's namespace.

For every attack: `sent`; `accepted` (messages the defender acted on: its accept
counter, or the state it holds afterwards shows the forgery: a binding, session, SA or
pinhole the attacker caused); `state_changed` (the defender's state before and after:
binding cache, SAs, PANA sessions, pinholes; volatile fields like remaining lifetimes
left out); `victim_disturbed` (mn1's and mn2's bindings at the HA, mn1's PANA session
at the PAA and its PaC, its RO binding at the CN and route optimisation, its pinholes,
the probe stream flowing in the attack's window, with no gap over `max_gap_ms`, and the
TCP connection echoing); `counter` (the defender's own counter that counts the drop,
read before and after: name and delta; `reached` says it grew, so the attack did get to
its defender). metrics.json: {"attacks": [...], "accepted_total": n,
"disturbed_total": n, "reached_total": n, "stream": {...}, "tcp": {...}}.
"""
from __future__ import annotations

if __name__ == "__main__":  # run as a script: under the project's environment
    import _env  # noqa: F401

import json
import os
import random
import subprocess
import sys
import time
from typing import Callable

from mip6bench.errors import Mip6benchError, ParameterError
from mip6bench.experiment import load
from mip6bench.params import ParamSpec
from mip6bench.slowdown import scaled

NAME = "attacks"
ESTIMATED_RUN_S = 45.0
SWEEP_METRICS = ["accepted_total", "disturbed_total"]
_bootstrap = load("bootstrap")
PARAMS = [s for s in _bootstrap.PARAMS if s.name not in ("sa", "plain_probes")] + [
    ParamSpec("flood_sources", int, 16, "PCI flood: spoofed source addresses", 1, 2048),
    ParamSpec("flood_per_source", int, 8, "PCI flood: PCIs per source (each from its own port)", 1, 16),
    ParamSpec("rate", float, 200.0, "UDP probes per second, CN to mn1's home address", 1, 5000),
    ParamSpec("max_gap_ms", float, 1000.0, "a gap in the probe stream longer than this during an "
              "attack counts as disturbing the victim", 10, 60000),
    ParamSpec("only", str, "", "comma-separated attack names to run (empty: all)"),
]
TOPOLOGY_DEFAULTS = {"mipv6": "bootstrap", "nsis": "on", "attacker": "on", "mns": 2}
ATTACK_NAMES = (
    "bu-no-sa", "bu-unknown-spi", "bu-wrong-key", "bu-replay-timestamp", "bu-replay-sequence",
    "bu-other-hoa", "hot-forged", "cot-forged", "cn-bu-forged", "pana-bad-auth", "pana-replay",
    "pana-ptr-to-paa", "pana-ptr-to-pac", "pci-flood", "radius-bad-message-authenticator",
    "radius-forged-accept", "sadist-forged-revoke", "sadist-replayed-push", "create-no-token",
    "create-forged-token", "create-expired-token", "create-stolen-token", "create-other-mn-token",
    "gist-confirm-bad-cookie", "gist-response-no-cookie")
UDP_PORT, TCP_PORT = 9100, 9101
INSIDER_SPI = 0x7FF00001
INSIDER_HOA = "2001:db8:1::1fff"
INSIDER_NAI = "mallory@mip6bench.example"
COUNTER_WAIT_S = 8.0     # how long an attack's drop may take to be counted (a fetch, a pull)


def chosen_names(params) -> list[str]:
    """The attacks the `only` parameter names, in the experiment's order (all: empty)."""
    only = [x.strip() for x in params["only"].split(",") if x.strip()]
    return [n for n in ATTACK_NAMES if not only or n in only] + [n for n in only if n not in ATTACK_NAMES]


def prepare(tb, params) -> None:
    p = tb.params
    for key, want in (("attacker", "on"), ("mipv6", "bootstrap"), ("nsis", "on")):
        if p[key] != want:
            raise ParameterError(f"the attacks experiment needs {key}={want}", f"leave {key} at {want}")
    if p["mns"] < 2:
        raise ParameterError("the attacks experiment needs two MNs (mn2 uses sequence-number "
                             "replay protection; the insider attacks mn1)", "set mns=2 or more")
    unknown = sorted(set(chosen_names(params)) - set(ATTACK_NAMES))
    if unknown:
        raise ParameterError(f"unknown attacks {unknown}", f"known: {', '.join(ATTACK_NAMES)}")
    _bootstrap.prepare(tb, {**params, "sa": "push"})
    tb.bootstrap_settings.pac_extra = {"mn2": {"sa_replay": "sequence"}}


# ---- reading the defenders ------------------------------------------------------------------

def flatten(prefix: str, data) -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix] = data
    return out


class Ctx:
    """What the attacks share: the testbed, the victims (hoa, coa, spi, session, ...),
    the taps, the attacker's sender, the probe stream and TCP connection."""

    def __init__(self, tb, params: dict):
        self.tb, self.params = tb, params
        self.mn1, self.mn2 = "mn1", "mn2"
        self.victim: dict = {}
        self.taps: dict = {}
        self.attacker = self.stream = self.tcp = None
        self.atk_f1 = ""

    def agent(self, target: str):
        tb = self.tb
        if target in ("ha", "cn"):
            return tb.mobility_agent(target)
        if target in ("mn", "pac"):
            return tb.mobility_agent(self.mn1)
        if target == "fw":
            return tb.agents[("fw", "fw")]
        return tb.agents[(target, target)]          # paa, aaa

    def counters(self, target: str) -> dict[str, int]:
        a = self.agent(target)
        if target == "ha":
            st = a.request("status")
            return {**flatten("", a.request("counters")), **flatten("sadist", st.get("sadist", {}))}
        if target == "paa":
            st = a.request("status")
            return flatten("", {k: v for k, v in st.items() if isinstance(v, dict)})
        if target == "pac":
            return flatten("", {"drops": a.request("pana-status")["drops"]})
        if target in ("mn", "cn", "aaa"):
            return flatten("", a.request("counters"))
        if target == "fw":
            st = a.request("status")
            return {**flatten("natfw", st["natfw"]["counters"]), **flatten("gist", st["gist"]["counters"])}
        raise KeyError(target)

    def state(self, target: str):
        """The defender's state that an attack could change (volatile fields left out)."""
        a = self.agent(target)
        if target == "ha":
            return {"bindings": sorted((b["hoa"], b["coa"], b["spi"]) for b in a.request("bindings")),
                    # the insider's own SA (bu-other-hoa) is the attacker's, not the HA's state
                    "sas": sorted(s["spi"] for s in a.request("sas") if s["spi"] != INSIDER_SPI)}
        if target == "paa":
            return sorted((s["session_id"], s["state"], s["pac"], s["hoa"], s["spi"])
                          for s in a.request("sessions"))
        if target == "pac":
            st = a.request("pana-status")
            return (st["state"], st["session_id"], st["paa"])
        if target == "mn":
            st = a.request("status")
            return {k: st.get(k) for k in ("hoa", "coa", "registered_coa", "home_state", "route_optimized")}
        if target == "cn":
            return sorted((b["hoa"], b["coa"]) for b in a.request("bindings"))
        if target == "aaa":
            return a.request("conversations")
        if target == "fw":
            st = a.request("status")
            return {"pinholes": sorted(json.dumps(p, sort_keys=True) for p in _stable_pinholes(a)),
                    "natfw_sessions": st["natfw"]["sessions"]}
        raise KeyError(target)

    def victim_state(self) -> dict:
        tb, v = self.tb, self.victim
        ha = {b["hoa"]: (b["coa"], b["spi"]) for b in tb.mobility_agent("ha").request("bindings")}
        paa = {s["session_id"]: (s["state"], s["pac"], s["spi"])
               for s in self.agent("paa").request("sessions") if s["hoa"] == v["hoa"]}
        pac = self.agent("pac").request("pana-status")
        mn = self.agent("mn").request("status")
        cn = {b["hoa"]: b["coa"] for b in tb.mobility_agent("cn").request("bindings")}
        holes = [p for p in _stable_pinholes(self.agent("fw"))
                 if v["coa"] in json.dumps(p) or v["hoa"] in json.dumps(p)]
        return {"ha_mn1": ha.get(v["hoa"]), "ha_mn2": ha.get(v["mn2_hoa"]), "paa": paa,
                "pac": (pac["state"], pac["session_id"]),
                "mn": (mn.get("coa"), mn.get("registered_coa"), tuple(mn.get("route_optimized") or ())),
                "cn": cn.get(v["hoa"]), "pinholes": len(holes)}


def _stable_pinholes(fw_agent) -> list[dict]:
    """The firewall's pinholes without their remaining lifetimes and counters."""
    volatile = ("remaining", "lifetime", "expires", "packets", "bytes", "counter", "refresh")
    return [{k: v for k, v in p.items() if not any(w in k for w in volatile)}
            for p in fw_agent.request("pinholes")]


def wait_counter(ctx: Ctx, target: str, names: list[str], before: dict, at_least: int,
                 timeout: float = COUNTER_WAIT_S) -> dict:
    """Read the defender's counters until the named ones (a trailing "*": every counter
    with that prefix) grew by `at_least` in all, or `timeout` passed; returns the last
    reading. Each read is an answer from the agent: a condition polled, no fixed wait."""
    deadline = time.monotonic() + timeout
    while True:
        after = ctx.counters(target)
        if counter_delta(names, before, after)[1] >= at_least or time.monotonic() >= deadline:
            return after
        time.sleep(0.02)


def counter_delta(names: list[str], before: dict, after: dict) -> tuple[str, int]:
    """(the name that grew most, or the first name; the total growth of the names: with
    a prefix, of every counter it covers)."""
    grown: dict[str, int] = {}
    for name in names:
        keys = [k for k in after if k.startswith(name[:-1])] if name.endswith("*") else [name]
        for k in keys:
            d = after.get(k, 0) - before.get(k, 0)
            if d > 0:
                grown[k] = d
    if not grown:
        return names[0], 0
    return max(grown, key=grown.get), sum(grown.values())


# ---- one attack ---------------------------------------------------------------------------

class Attack:
    """name, target (the defender), what, counters (the defender's drop counter(s); a
    trailing "*" takes every counter with that prefix), send(ctx) -> {"sent": n,
    "expect": drops, ...}, accepted(ctx, observations) -> messages acted on, needs(ctx)
    -> why it cannot run here, or None."""

    def __init__(self, name: str, target: str, what: str, counters: list[str],
                 send: Callable[[Ctx], dict], accepted: Callable[[Ctx, dict], int],
                 needs: Callable[[Ctx], str | None] = lambda ctx: None):
        self.name, self.target, self.what, self.counters = name, target, what, counters
        self.send, self.accepted, self.needs = send, accepted, needs


def run_attack(ctx: Ctx, attack: Attack) -> dict:
    why_not = attack.needs(ctx)
    if why_not:
        return {"name": attack.name, "target": attack.target, "what": attack.what, "sent": 0,
                "accepted": None, "state_changed": None, "victim_disturbed": None,
                "counter": None, "reached": None, "skipped": why_not}
    c0, s0, v0 = ctx.counters(attack.target), ctx.state(attack.target), ctx.victim_state()
    echoed0 = ctx.tcp.result.echoed
    t0 = time.monotonic_ns()
    out = attack.send(ctx)
    c1 = wait_counter(ctx, attack.target, attack.counters, c0, out.get("expect", out["sent"]),
                      scaled(COUNTER_WAIT_S))
    s1 = ctx.state(attack.target)
    if "cleanup" in out:
        out.pop("cleanup")()
    # the victim, after the probe stream had a moment to show a disturbance
    ctx.stream.first_arrival_after(time.monotonic_ns(), scaled(2.0))
    v1 = ctx.victim_state()
    t1 = time.monotonic_ns()
    name, total = counter_delta(attack.counters, c0, c1)
    delta = c1.get(name, 0) - c0.get(name, 0)
    obs = {"c0": c0, "c1": c1, "s0": s0, "s1": s1, **out}
    accepted = attack.accepted(ctx, obs)
    # on a machine slowed down on purpose (MIP6BENCH_SLOWDOWN, the full-kernel lane) the
    # stream's pace stretches with it
    flow = window(ctx.stream, t0, t1, scaled(ctx.params["max_gap_ms"] / 1000) * 1000)
    tcp_ok = tcp_progress(ctx.tcp, echoed0, scaled(2.0))
    changed_victim = [k for k in v0 if v0[k] != v1[k]]
    disturbed = bool(changed_victim) or not flow["flowing"] or not tcp_ok
    row = {"name": attack.name, "target": attack.target, "what": attack.what, "sent": out["sent"],
           "accepted": accepted, "state_changed": s0 != s1, "victim_disturbed": disturbed,
           "counter": {"name": name, "delta": delta}, "reached": total > 0,
           "stream": flow, "tcp_echoing": tcp_ok}
    if changed_victim:
        row["victim_changes"] = {k: [v0[k], v1[k]] for k in changed_victim}
    if s0 != s1:
        row["state"] = {"before": s0, "after": s1}
    for key in ("note", "answers"):
        if key in out:
            row[key] = out[key]
    return row


def window(stream, t0: int, t1: int, max_gap_ms: float) -> dict:
    """The probe stream between t0 and t1: arrivals, the longest gap (the window's edges
    count), flowing = something arrived and no gap exceeded max_gap_ms."""
    arrivals = sorted(t for _seq, t in list(stream.arrivals) if t0 <= t <= t1)
    edges = [t0] + arrivals + [t1]
    gap = max(b - a for a, b in zip(edges, edges[1:])) / 1e6
    return {"received": len(arrivals), "max_gap_ms": round(gap, 3),
            "flowing": bool(arrivals) and gap <= max_gap_ms}


def tcp_progress(tcp, echoed_before: int, timeout: float = 2.0) -> bool:
    """The TCP connection still echoes: no error, and an echo after `echoed_before`
    (waiting up to `timeout` s for it: a message goes every 20 ms)."""
    deadline = time.monotonic() + timeout
    while tcp.result.error is None and tcp.result.echoed <= echoed_before \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    return tcp.result.error is None and tcp.result.echoed > echoed_before


# ---- what the attacker sees ---------------------------------------------------------------

def _keep(packet: bytes) -> bool:
    from mip6bench.attack.wire import decapsulated, mh_type, udp

    packet = decapsulated(packet)
    u = udp(packet)
    if u is not None:
        return bool({u[0], u[1]} & {716, 7716, 1812, 270})
    return mh_type(packet) is not None


def _pana(packet: bytes):
    from mip6bench.attack.wire import udp
    from mip6bench.pana.message import decode_message

    u = udp(packet)
    if u is None or 716 not in (u[0], u[1]):
        return None
    try:
        return decode_message(u[2])
    except Exception:
        return None


def _is_bu_to_ha(src: str, ha: str) -> Callable[[bytes], bool]:
    from mip6bench.attack.wire import addresses, mh_type

    return lambda p: mh_type(p) == 5 and addresses(p) == (src, ha)


def stolen_token(tap, sources: tuple[str, ...]) -> bytes | None:
    """An MN's NSIS token from its NATFW CREATE on the wire (GIST Q-mode Query), sent
    from one of `sources` (its CoA, its HoA)."""
    from mip6bench.attack.wire import addresses, udp
    from mip6bench.gist.wire import decode_message as gist_decode
    from mip6bench.natfw import wire as w

    for p in tap.matching(lambda p: (u := udp(p)) is not None and u[1] == 270):
        if addresses(p)[0] not in sources:
            continue
        try:
            msg = gist_decode(udp(p)[2])
            if msg.nslp_data is None:
                continue
            auth = w.decode(msg.nslp_data).get(w.SessionAuth)
        except Exception:
            continue
        if auth is not None:
            return w.encode_object(auth)
    return None


# ---- the attacks --------------------------------------------------------------------------

def _addresses(ctx: Ctx) -> dict:
    tb = ctx.tb
    from mip6bench.testbed.operational import HA_ADDRESS

    return {"ha": HA_ADDRESS, "paa": tb.plan.nodes["paa"].address(), "aaa": tb.plan.nodes["aaa"].address(),
            "cn": tb.plan.nodes["cn"].address(), "fw": tb.plan.nodes["fw"].address("fw-core")}


def attacks(ctx: Ctx) -> list[Attack]:
    from mip6bench.attack import forge
    from mip6bench.pana import message as pm

    v, a = ctx.victim, _addresses(ctx)
    atk = ctx.atk_f1
    seq = lambda: random.randrange(1 << 16)   # noqa: E731
    ha_accepts = ["core.bu.accepted", "core.bu.deregistered"]

    def grew(names):
        return lambda ctx, o: counter_delta(names, o["c0"], o["c1"])[1]

    def bu_attack(name, what, counters, build):
        def send(ctx):
            ctx.attacker.send(build(ctx))
            return {"sent": 1}
        return Attack(name, "ha", what, counters, send,
                      lambda ctx, o: grew(ha_accepts)(ctx, o) + _ha_holds(o, atk))

    def replay(name, what, tap, src, counter):
        def send(ctx):
            packet = ctx.taps[tap].wait_for(_is_bu_to_ha(src(ctx), a["ha"]), 1.0)
            ctx.attacker.send(packet)
            return {"sent": 1, "note": f"replayed the BU {src(ctx)} sent to the HA"}
        return Attack(name, "ha", what, [counter], send, grew(ha_accepts),
                      needs=lambda ctx: None if ctx.taps[tap].matching(_is_bu_to_ha(src(ctx), a["ha"]))
                      else f"no BU from {tap} seen on the wire")

    def insider(ctx):
        key = os.urandom(20)
        ctx.tb.mobility_agent("ha").request("sa-add", spi=INSIDER_SPI, key=key.hex(),
                                            algorithm="hmac-sha1-96", replay="timestamp",
                                            hoa=INSIDER_HOA, nai=INSIDER_NAI, lifetime=600)
        ctx.attacker.send(forge.home_bu(v["hoa"], atk, a["ha"], seq(), spi=INSIDER_SPI, key=key,
                                        wall_time=time.time()))
        return {"sent": 1, "note": f"the attacker's own SA (SPI {INSIDER_SPI:#x}, bound to "
                                   f"{INSIDER_HOA}) provisioned at the HA with sa-add, removed after",
                "cleanup": lambda: ctx.tb.mobility_agent("ha").request("sa-remove", spi=INSIDER_SPI)}

    def sends(packet_fn):
        def send(ctx):
            ctx.attacker.send(packet_fn(ctx))
            return {"sent": 1}
        return send

    def paa_holds(ctx, o):
        """Sessions of the victim that moved, ended or changed state."""
        before = {s[0]: s for s in o["s0"] if s[3] == v["hoa"]}
        after = {s[0]: s for s in o["s1"] if s[3] == v["hoa"]}
        return sum(1 for sid, s in before.items() if after.get(sid) != s)

    def replay_pnr(ctx):
        ctx.attacker.send(v["old_pnr"])
        return {"sent": 1, "note": f"mn1's PNR with sequence number {v['old_pnr_seq']}, "
                                   f"the PAA expects {v['paa_rx_expected']}"}

    def flood(ctx):
        n, k = ctx.params["flood_sources"], ctx.params["flood_per_source"]
        from mip6bench.pana.paa import PaaConfig
        cfg = PaaConfig()
        bound = min(n * min(k, cfg.max_handshakes_per_source), cfg.max_handshakes)
        before = len(ctx.agent("paa").request("sessions"))
        prefix = "2001:db8:11::"
        for i in range(n):
            src = f"{prefix}{random.randrange(0x2000, 0xffff):x}:{random.randrange(1, 0xffff):x}"
            for j in range(k):
                ctx.attacker.send(forge.udp_packet(src, a["paa"], 20000 + j, 716, forge.pana_pci()))
        return {"sent": n * k, "expect": n * k - bound, "bound": bound, "sessions_before": before,
                "note": f"{n} spoofed sources x {k} PCIs (each from its own port); the PAA holds "
                        f"at most {cfg.max_handshakes_per_source} half-open sessions per address "
                        f"and {cfg.max_handshakes} in all"}

    def flood_accepted(ctx, o):
        created = len(ctx.agent("paa").request("sessions")) - o["sessions_before"]
        o["note"] += f"; it created {created} half-open sessions (bound {o['bound']})"
        return max(0, created - o["bound"])

    def radius_request(ctx):
        from mip6bench.eap.packet import identity_response

        eap = identity_response(1, v["nai"].encode()).encode()
        ctx.attacker.send(forge.udp_packet(a["paa"], a["aaa"], 33333, 1812,
                                           forge.radius_access_request(7, v["nai"], eap, "paa")))
        return {"sent": 1}

    def radius_accept(ctx):
        port, ident = v["paa_radius"]
        ctx.attacker.send(forge.udp_packet(a["aaa"], a["paa"], 1812, port, forge.radius_access_accept(ident)))
        return {"sent": 1, "note": f"to the PAA's RADIUS port {port}, Identifier {ident} (its last request's)"}

    def sadist_revoke(ctx):
        payload = forge.sadist_revoke(v["spi"], v["hoa"], int(time.time() * 1000))
        ctx.attacker.send(forge.udp_packet(a["paa"], a["ha"], 7716, 7716, payload))
        return {"sent": 1}

    def sadist_replay(ctx):
        ctx.attacker.send(v["push"])
        return {"sent": 1, "note": "the PAA's first datagram to the HA (the PUSH of mn1's or mn2's SA)"}

    def ha_sas(ctx, o):
        return len(set(o["s0"]["sas"]) ^ set(o["s1"]["sas"]))

    def natfw(label, token_fn):
        def send(ctx):
            token = token_fn(ctx)
            answers = natfw_creates(ctx, {label: token.hex() if token else None})
            return {"sent": 1, "answers": answers}
        return send

    def natfw_accepted(ctx, o):
        holes = [p for p in o["s1"]["pinholes"] if atk in p]
        return sum(1 for x in o["answers"].values() if x == "ready") + len(holes)

    def gist_confirm(ctx):
        from mip6bench.gist.wire import Mri, Nli

        mri = Mri(atk, a["cn"], protocol=135)
        nli = Nli(b"attacker", 64, 30000, atk)
        payload = forge.gist_confirm(33, mri, os.urandom(16), nli, os.urandom(16))
        ctx.attacker.send(forge.udp_packet(atk, a["fw"], 270, 270, payload))
        return {"sent": 1}

    def gist_response(ctx):
        from mip6bench.gist.wire import Mri, Nli

        mri = Mri(v["coa"], a["cn"], protocol=135)
        nli = Nli(b"fw", 64, 30000, a["fw"])
        payload = forge.gist_response_without_cookie(33, mri, os.urandom(16), nli)
        ctx.attacker.send(forge.udp_packet(a["fw"], v["coa"], 270, 270, payload))
        return {"sent": 1}

    def token_minted(key_fn, when):
        def make(ctx):
            from mip6bench.aaa.token import TokenIssuer, parse_flows
            from mip6bench.testbed.bootstrap import TOKEN_KEY_ID

            issuer = TokenIssuer(key_fn(ctx), TOKEN_KEY_ID, 3600, parse_flows(ctx.tb.bootstrap.token_flows()))
            return issuer.mint(v["nai"], v["hoa"], time.time() + when)
        return make

    mn_ro = ["core.tx.BindingUpdate"]
    out = [
        bu_attack("bu-no-sa", "BU for mn1's home address without an Authentication option",
                  ["core.bu.rejected.146"],
                  lambda ctx: forge.home_bu(v["hoa"], atk, a["ha"], seq())),
        bu_attack("bu-unknown-spi", "BU for mn1's home address signed with an SPI nobody has",
                  ["core.bu.rejected.146"],
                  lambda ctx: forge.home_bu(v["hoa"], atk, a["ha"], seq(), spi=0x7EEE0000 + seq(),
                                            wall_time=time.time())),
        bu_attack("bu-wrong-key", "BU for mn1's home address with mn1's SPI and a wrong key",
                  ["core.bu.rejected.146"],
                  lambda ctx: forge.home_bu(v["hoa"], atk, a["ha"], seq(), spi=v["spi"],
                                            wall_time=time.time())),
        replay("bu-replay-timestamp", "mn1's BU replayed (timestamp replay protection)", "mn1",
               lambda ctx: v["coa"], "core.bu.rejected.144"),
        replay("bu-replay-sequence", "mn2's BU replayed (sequence-number replay protection)", "mn2",
               lambda ctx: v["mn2_coa"], "core.bu.rejected.135"),
        Attack("bu-other-hoa", "ha", "BU for mn1's home address signed with the attacker's own valid "
               "SA (bound to another home address)", ["core.bu.rejected.146"], insider,
               lambda ctx, o: grew(ha_accepts)(ctx, o) + _ha_holds(o, atk)),
        Attack("hot-forged", "mn", "HoT with a made-up cookie and keygen token to mn1's home address "
               "(as from the CN, through the HA's tunnel)", ["core.drop"],
               sends(lambda ctx: forge.test_message("hot", a["cn"], v["hoa"])), grew(mn_ro)),
        Attack("cot-forged", "mn", "CoT with a made-up cookie and keygen token to mn1's care-of "
               "address (as from the CN)", ["core.drop"],
               sends(lambda ctx: forge.test_message("cot", a["cn"], v["coa"])), grew(mn_ro)),
        Attack("cn-bu-forged", "cn", "BU to the CN for mn1's home address with mn1's current "
               "nonce indices (from its HoT and CoT on the wire) and a Binding Authorization Data "
               "of a made-up key, from mn1's care-of address", ["core.drop.bu_bad_authenticator",
                                                              "core.bu.rejected*"],
               sends(lambda ctx: forge.correspondent_bu(v["hoa"], v["coa"], a["cn"], seq(),
                                                            *v["nonce_indices"])),
               lambda ctx, o: grew(["core.bu.accepted", "core.bu.deregistered"])(ctx, o)),
        Attack("pana-bad-auth", "paa", "PNR for mn1's session (next sequence number) with a wrong "
               "AUTH, from the attacker's address", ["pana.bad AUTH"],
               sends(lambda ctx: forge.udp_packet(atk, a["paa"], 716, 716,
                                                      forge.pana_ping(v["session"], v["paa_rx_expected"]))),
               paa_holds),
        Attack("pana-replay", "paa", "mn1's earlier PNR replayed from its address (an old sequence "
               "number)", ["pana.bad sequence number"], replay_pnr, paa_holds),
        Attack("pana-ptr-to-paa", "paa", "PTR for mn1's session to the PAA, from mn1's care-of "
               "address, with a wrong AUTH", ["pana.bad AUTH"],
               sends(lambda ctx: forge.udp_packet(v["coa"], a["paa"], 716, 716, forge.pana_termination(
                   v["session"], v["paa_rx_expected"], pm.TERMINATION_LOGOUT))), paa_holds),
        Attack("pana-ptr-to-pac", "pac", "PTR for mn1's session to its PaC, as from the PAA, with a "
               "wrong AUTH", ["drops.bad AUTH"],
               sends(lambda ctx: forge.udp_packet(a["paa"], v["coa"], 716, 716, forge.pana_termination(
                   v["session"], v["pac_rx_expected"], pm.TERMINATION_ADMINISTRATIVE))),
               lambda ctx, o: int(o["s0"] != o["s1"])),
        Attack("pci-flood", "paa", "PCI flood from spoofed sources on f1",
               ["pana.too many handshakes from this address", "pana.too many handshakes",
                "pana.too many sessions"], flood, flood_accepted),
        Attack("radius-bad-message-authenticator", "aaa", "Access-Request with a wrong "
               "Message-Authenticator, as from the PAA", ["bad Message-Authenticator"], radius_request,
               grew(["Access-Challenge", "Access-Accept", "Access-Reject"]),
               needs=lambda ctx: None if ctx.tb.bootstrap.settings.aaa == "embedded" else
               "aaa=radius: hostapd keeps no counters the experiment can read"),
        Attack("radius-forged-accept", "paa", "Access-Accept with a wrong Response Authenticator and "
               "Message-Authenticator to the PAA's RADIUS client, as from the AAA server",
               ["radius.unknown Identifier", "radius.bad Response Authenticator",
                "radius.bad Message-Authenticator"], radius_accept, paa_holds,
               needs=lambda ctx: None if v.get("paa_radius") else "no RADIUS request seen on the home link"),
        Attack("sadist-forged-revoke", "ha", "SA distribution REVOKE of mn1's SA sealed with a made-up "
               "key, as from the PAA", ["sadist.authentication failed"], sadist_revoke, ha_sas),
        Attack("sadist-replayed-push", "ha", "the PAA's SA distribution PUSH replayed",
               ["sadist.replayed sequence number"], sadist_replay, ha_sas,
               needs=lambda ctx: None if v.get("push") else "no SA distribution datagram seen"),
        Attack("create-no-token", "fw", "NATFW CREATE without a token (the firewall asks the PAA)",
               ["natfw.refused*"], natfw("no-token", lambda ctx: None), natfw_accepted),
        Attack("create-forged-token", "fw", "NATFW CREATE with a token of the right format signed with "
               "a made-up key", ["natfw.refused*"],
               natfw("forged", token_minted(lambda ctx: os.urandom(32), 0)), natfw_accepted),
        Attack("create-expired-token", "fw", "NATFW CREATE with mn1's token as the AAA side minted it "
               "two hours ago (lifetime 1 h)", ["natfw.refused*"],
               natfw("expired", token_minted(lambda ctx: ctx.tb.bootstrap.token_key, -7200)), natfw_accepted),
        Attack("create-stolen-token", "fw", "NATFW CREATE with mn1's token taken off the wire (bound to "
               "mn1's NSIS session)", ["natfw.refused*"], natfw("stolen", lambda ctx: v["token"]),
               natfw_accepted,
               needs=lambda ctx: None if v.get("token") else "mn1's token was not seen on the wire"),
        Attack("create-other-mn-token", "fw", "NATFW CREATE naming mn1's home address with mn2's "
               "token taken off the wire", ["natfw.refused*"], natfw("other-mn", lambda ctx: v["mn2_token"]),
               natfw_accepted,
               needs=lambda ctx: None if v.get("mn2_token") else "mn2's token was not seen on the wire"),
        Attack("gist-confirm-bad-cookie", "fw", "GIST Confirm (D-mode) with a Responder-Cookie the "
               "firewall never issued", ["gist.bad_responder_cookie"], gist_confirm,
               lambda ctx, o: max(0, o["s1"]["natfw_sessions"] - o["s0"]["natfw_sessions"])),
        Attack("gist-response-no-cookie", "mn", "GIST Response (D-mode) without cookies to mn1, as from "
               "the firewall", ["gist.malformed"], gist_response, grew(["natfw.ready"])),
    ]
    return out


def _ha_holds(o: dict, attacker: str) -> int:
    """Bindings the HA holds afterwards at the attacker's address."""
    return sum(1 for b in o["s1"]["bindings"] if b[1] == attacker and b not in o["s0"]["bindings"])


def natfw_creates(ctx: Ctx, tokens: dict) -> dict:
    from mip6bench import REPO_ROOT

    spec = {"source": ctx.atk_f1, "cn": _addresses(ctx)["cn"], "home_address": ctx.victim["hoa"],
            "within": 8, "tokens": tokens}
    proc = subprocess.run(["nsenter", "-t", str(ctx.tb.node_pid("atk")), "-n", sys.executable, "-m",
                           "mip6bench.attack.natfw_attacker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))
    if proc.returncode != 0:
        raise Mip6benchError(f"the NATFW attacker failed: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


# ---- the run ------------------------------------------------------------------------------

def run(tb, params) -> dict:
    from mip6bench.attack.wire import Attacker, Tap
    from mip6bench.measure.streams import TcpEcho, UdpStream

    ctx = Ctx(tb, params)
    ctx.atk_f1 = tb.plan.nodes["atk"].address("atk-f1")
    a_paa = tb.plan.nodes["paa"].address()
    f1, home = tb.node_pid("f1"), tb.node_pid("home")
    ctx.taps = {"mn1": Tap(f1, "f1-mn1", _keep), "mn2": Tap(f1, "f1-mn2", _keep),
                "paa": Tap(home, "home-paa", _keep)}
    ctx.attacker = Attacker(tb.node_pid("atk"))
    try:
        boot = _bootstrap.run(tb, {**params, "sa": "push"}, plain=False)["bootstrap"]
        if any(m.get("total_ms") is None for m in boot["per_mn"]):
            raise Mip6benchError(f"the MNs did not bootstrap and register: {boot['notes']}")
        agent = tb.mobility_agent(ctx.mn1)
        cn = tb.plan.nodes["cn"].address()
        agent.request("wait", timeout=22, until="ro", cn=cn, within=20)
        learn(ctx, a_paa)
        ctx.stream = UdpStream(tb.node_pid("cn"), cn, tb.node_pid(ctx.mn1), ctx.victim["hoa"],
                               UDP_PORT, params["rate"]).start()
        ctx.tcp = TcpEcho(tb.node_pid("cn"), cn, tb.node_pid(ctx.mn1), ctx.victim["hoa"], TCP_PORT,
                          0.02).start()
        rows = []
        try:
            every = attacks(ctx)
            assert tuple(x.name for x in every) == ATTACK_NAMES
            wanted = set(chosen_names(params))
            for attack in (x for x in every if x.name in wanted):
                rows.append(run_attack(ctx, attack))
        finally:
            ctx.stream.stop()
            tcp = ctx.tcp.finish()
    finally:
        for tap in ctx.taps.values():
            tap.close()
        ctx.attacker.close()
    done = [r for r in rows if not r.get("skipped")]
    return {
        "attacks": rows,
        "accepted_total": sum(r["accepted"] for r in done),
        "disturbed_total": sum(1 for r in done if r["victim_disturbed"]),
        "reached_total": sum(1 for r in done if r["reached"]),
        "skipped": [r["name"] for r in rows if r.get("skipped")],
        "stream": {"rate": params["rate"], "sent": len(ctx.stream.sent),
                   "received": len(ctx.stream.arrivals)},
        "tcp": {"sent": tcp.sent, "echoed": tcp.echoed, "error": tcp.error,
                "survived": ctx.tcp.survived()},
        "aaa": tb.bootstrap.settings.aaa,
        "bootstrap_ms": boot["total_ms"],
    }


def learn(ctx: Ctx, paa: str) -> None:
    """What the attacker learns from the victims' status and from the wire before it
    starts: addresses, SPI and PANA session (the values any on-link listener reads in
    the clear), two PNRs of mn1 (the first to replay), the PAA's RADIUS port and last
    Identifier, the PAA's SA distribution datagram, mn1's token."""
    from mip6bench.attack.wire import addresses, decapsulated, mh_type, udp, upper_layer

    tb = ctx.tb
    st1, st2 = (tb.mobility_agent(m).request("status") for m in (ctx.mn1, ctx.mn2))
    v = ctx.victim
    v.update(hoa=st1["hoa"], coa=st1["coa"], spi=st1["pana"]["bootstrap"]["spi"],
             session=st1["pana"]["session_id"], nai=tb.bootstrap.user(1).nai,
             mn2_hoa=st2["hoa"], mn2_coa=st2["coa"])
    agent = tb.mobility_agent(ctx.mn1)
    tap = ctx.taps["mn1"]
    pnrs = []
    is_pna = lambda p: (m := _pana(p)) is not None and not m.is_request and m.type == 4  # noqa: E731
    for _ in range(2):
        for _attempt in range(5):       # a ping of the MN's own may be outstanding: its answer first
            t = time.monotonic_ns()
            if agent.request("pana-ping")["sent"]:
                break
            tap.wait_for(is_pna, 3.0, after_ns=t)
        pnr = tap.wait_for(lambda p: (m := _pana(p)) is not None and m.is_request and m.type == 4
                           and m.session_id == v["session"], 3.0, after_ns=t)
        # the PAA's answer: the next request of mn1 gets the next sequence number
        tap.wait_for(lambda p: (m := _pana(p)) is not None and not m.is_request and m.type == 4
                     and m.session_id == v["session"], 3.0, after_ns=t)
        if pnr is None:
            seen = [(addresses(p), m.name, m.session_id) for p in tap.matching(lambda p: True)
                    if (m := _pana(p)) is not None][-6:]
            raise Mip6benchError(f"mn1's PANA ping (session {v['session']}) was not seen on f1; "
                                 f"PANA seen there last: {seen}")
        pnrs.append(pnr)
    v["old_pnr"], v["old_pnr_seq"] = pnrs[0], _pana(pnrs[0]).seq
    v["paa_rx_expected"] = (_pana(pnrs[1]).seq + 1) & 0xFFFFFFFF
    from_paa = tap.matching(lambda p: addresses(p)[0] == paa)
    paa_requests = [m for m in map(_pana, from_paa)
                    if m is not None and m.is_request and m.session_id == v["session"]]
    v["pac_rx_expected"] = ((paa_requests[-1].seq + 1) & 0xFFFFFFFF) if paa_requests else 1
    to_aaa = ctx.taps["paa"].matching(lambda p: (u := udp(p)) is not None and u[1] == 1812
                                      and addresses(p)[0] == paa)
    radius = [udp(p) for p in to_aaa]
    if radius:
        sport, _dport, payload = radius[-1]
        v["paa_radius"] = (sport, payload[1])
    push = ctx.taps["paa"].matching(lambda p: (u := udp(p)) is not None and u[1] == 7716
                                    and addresses(p)[0] == paa)
    v["push"] = push[0] if push else None
    v["token"] = stolen_token(tap, (v["coa"], v["hoa"]))
    v["mn2_token"] = stolen_token(ctx.taps["mn2"], (v["mn2_coa"], v["mn2_hoa"]))
    # mn1's current nonce indices: from the newest HoT (tunnelled to the CoA) and CoT
    cn = tb.plan.nodes["cn"].address()
    tests = {}
    for p in tap.matching(lambda p: mh_type(decapsulated(p)) in (3, 4)):
        inner = decapsulated(p)
        if addresses(inner)[0] == cn:
            proto, off = upper_layer(inner)
            tests[inner[off + 2]] = int.from_bytes(inner[off + 6:off + 8], "big")
    v["nonce_indices"] = (tests.get(3, 0), tests.get(4, 0))


# ---- report -------------------------------------------------------------------------------

def summarize(metrics: dict) -> str:
    lines = [f"{'attack':<34} {'target':<6} {'sent':>5} {'acc':>4} {'state':>6} {'victim':>7}  counter (delta)"]
    for r in metrics["attacks"]:
        if r.get("skipped"):
            lines.append(f"{r['name']:<34} {r['target']:<6} skipped: {r['skipped']}")
            continue
        c = r["counter"]
        lines.append(f"{r['name']:<34} {r['target']:<6} {r['sent']:>5} {r['accepted']:>4} "
                     f"{'yes' if r['state_changed'] else 'no':>6} "
                     f"{'HIT' if r['victim_disturbed'] else 'ok':>7}  {c['name']} (+{c['delta']})")
    lines.append(f"accepted: {metrics['accepted_total']}; victim disturbed by {metrics['disturbed_total']} "
                 f"attack(s); {metrics['reached_total']} of "
                 f"{len(metrics['attacks']) - len(metrics['skipped'])} counted by their defender")
    t = metrics["tcp"]
    lines.append(f"mn1 throughout: {metrics['stream']['received']}/{metrics['stream']['sent']} probes, "
                 f"TCP {'survived' if t['survived'] else 'BROKEN'} ({t['echoed']}/{t['sent']} echoed)")
    return "\n".join(lines)


if __name__ == "__main__":
    from mip6bench.cli import script_main

    raise SystemExit(script_main(NAME))
