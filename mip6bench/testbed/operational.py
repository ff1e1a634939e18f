"""The operational network of the paper, as a plan: nodes, links, addresses, routes.

The plan is pure data (no Mininet, no kernel), so the addressing is testable and the
same plan drives the Mininet topology (topologies/operational.py), the experiments and
the link check.

    home network 2001:db8:1::/64        ha (home agent + home router), paa, aaa
    foreign network i 2001:db8:1i::/64  ar<i> (access router), MNs attach here
    CN network 2001:db8:2::/64          fw (stateful packet filter), cn
    core links 2001:db8:ff:<n>::/64     core <-> ha (n=1), fw (n=2), ar<i> (n=10+i)

With ha_firewall=on the home network has a stateful firewall of its own, hfw, at its
edge: core <-> hfw on core link 1 (the home_uplink delay), hfw <-> ha on
2001:db8:ff:3::/64 (undelayed, like the fw's inside port).

Each MN has one interface per access network (mn<k>-f<i>) and one for the home link
(mn<k>-home); exactly one is attached (carrier up) at a time, which is how handovers
break and make layer-2 connectivity. On a LAN, link parameters apply to the attachment
of each non-router node (so an MN is `access_delay_ms` from its access router, the PAA
`home_lan_delay_ms` from the HA); a router's own port to its LAN is not delayed.
"""
from __future__ import annotations

import heapq
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from mip6bench.aaa.credentials import secret_dir, write_psk_file
from mip6bench.errors import Mip6benchError
from mip6bench.params import ParamSpec

HOME_PREFIX = "2001:db8:1::/64"
CN_PREFIX = "2001:db8:2::/64"
HOA_BASE = 0x1000  # home addresses are handed out from 2001:db8:1::1000 up


def foreign_prefix(i: int) -> str:
    return f"2001:db8:{0x10 + i:x}::/64"


def core_link_prefix(n: int) -> str:
    return f"2001:db8:ff:{n:x}::/64"


def host(prefix: str, suffix: int) -> str:
    return str(ipaddress.ip_network(prefix)[suffix])


SEGMENTS = {
    # name: (default one-way delay ms, what it is)
    "access": (2.0, "MN attachment to an access network (wireless hop)"),
    "backhaul": (5.0, "access router to core"),
    "home_uplink": (10.0, "core to home agent"),
    "home_lan": (1.0, "attachment of PAA/AAA to the home link"),
    "cn_uplink": (10.0, "core to firewall"),
    "cn_lan": (1.0, "attachment of the CN to its network"),
}


def topology_params() -> list[ParamSpec]:
    specs = [
        ParamSpec("foreign", int, 2, "number of foreign access networks", 1, 64),
        ParamSpec("mns", int, 1, "number of mobile nodes (what fits in memory: see mns_per_agent and README Scale)", 1, 5000),
        ParamSpec("mns_per_agent", int, 0, "MN agents per agent process: 1 (a process per MN), "
                  "k > 1 (MN hosts of up to k MNs each, every MN in its own namespace), or 0 "
                  "(auto: 1 up to 20 MNs, else k = mns / (4 x cores), rounded up)", 0, 5000),
        ParamSpec("cpu_share", str, "auto", "the infrastructure's CPU share on this shared machine "
                  "against the MNs (servers, CN, routers' agents, link hubs: machines and links of "
                  "their own in a real network): infra (their scheduling groups at nice -10), fair "
                  "(every process group weighs the same), auto (infra when MNs run in MN hosts, "
                  "else fair)", choices=("auto", "infra", "fair")),
        ParamSpec("cpu_idle", str, "poll", "idle CPUs for the run: poll (the controller holds the "
                  "kernel's PM QoS CPU latency request at 0 us, /dev/cpu_dma_latency: an idle CPU "
                  "wakes at once, as a busy one; costs power, or the host's CPU on a VM, while the "
                  "run lasts) or sleep (the machine's own idle states and their slower wake-up)",
                  choices=("poll", "sleep")),
        ParamSpec("ra_min_ms", float, 30.0, "MinRtrAdvInterval of access routers", 30, 1800000),
        ParamSpec("ra_max_ms", float, 70.0, "MaxRtrAdvInterval of access routers", 70, 1800000),
        ParamSpec("dad", str, "off", "DAD for MN addresses", choices=("standard", "optimistic", "off")),
        ParamSpec("seed", int, 1, "seed of the link emulation's random loss and jitter", 0, 2**31),
        ParamSpec("mipv6", str, "static", "Mobile IPv6 agents (ha, cn, mn): static SAs, bootstrap "
                  "(MNs wait for HA/HoA/SA at run time), off", choices=("static", "bootstrap", "off")),
        ParamSpec("links", str, "auto", "link emulation for links with delay/jitter/loss: auto (netem "
                  "where the kernel has it, else the user-space relay), or force one "
                  "(bandwidth-only links use tbf under auto)", choices=("auto", "netem", "relay")),
        ParamSpec("nsis", str, "on", "NSIS firewall traversal (GIST + NATFW NSLP): on (the firewall, CN "
                  "and MNs run it; MNs open pinholes before return routability), off (RR dies at "
                  "the firewall unless pinholes are opened statically)", choices=("on", "off")),
        ParamSpec("nsis_authz", str, "token-or-pull", "how the firewall authorizes NATFW requests: the "
                  "token PANA handed out (token), asking the PAA/AAA (pull), or the token and, "
                  "without one, asking (token-or-pull)", choices=("token", "pull", "token-or-pull")),
        ParamSpec("foreign_firewall", str, "off", "every access router ar<i> is also the stateful "
                  "firewall of its network (RFC 4487 3.2: inbound traffic the MN did not start is "
                  "dropped at ar<i>); with nsis=on it runs the edge NATFW forwarder and MNs open "
                  "it with EXT", choices=("on", "off")),
        ParamSpec("ha_firewall", str, "off", "a stateful firewall (hfw) between the core and the "
                  "home agent, RFC 4487 section 3: off, or on (the MNs' BU to the HA and reverse "
                  "tunnel are blocked there unless NSIS opens them; PANA to the PAA passes as a "
                  "static operator service)", choices=("on", "off")),
        ParamSpec("tunnel", str, "auto", "HA-MN tunnel backend: auto (ip6tnl, else seg6, else "
                  "userspace), or force one", choices=("auto", "ip6tnl", "seg6", "userspace")),
        ParamSpec("attacker", str, "off", "an attacker node (atk) attached to foreign network f1, "
                  "the core and the home link, running nothing (the attacks experiment sends from "
                  "it): off, or on", choices=("on", "off")),
        ParamSpec("cluster", str, "", "servers to spread the network over with Mininet's cluster "
                  "support (host names or addresses, comma-separated; the first holds the "
                  "infrastructure, the others the MNs; README, Cluster mode); empty: this machine"),
        ParamSpec("cluster_ssh", str, "", "ssh client config file for cluster mode (ssh -F: keys, "
                  "port, known hosts); empty: ssh's own defaults"),
    ]
    for seg, (delay, what) in SEGMENTS.items():
        specs += [
            ParamSpec(f"{seg}_delay_ms", float, delay, f"one-way delay, {what}", 0, 10000),
            ParamSpec(f"{seg}_jitter_ms", float, 0.0, f"delay jitter, {what}", 0, 10000),
            ParamSpec(f"{seg}_loss_pct", float, 0.0, f"packet loss per direction, {what}", 0, 100),
            ParamSpec(f"{seg}_bw_mbit", float, 0.0, f"bandwidth (0 = unlimited), {what}", 0, 100000),
        ]
    return specs


@dataclass(frozen=True)
class Shaping:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    bw_mbit: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.loss_pct or self.bw_mbit)

    def as_dict(self) -> dict[str, float]:
        return {"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms,
                "loss_pct": self.loss_pct, "bw_mbit": self.bw_mbit}


@dataclass(frozen=True)
class LinkSpec:
    name: str
    a: str
    a_intf: str
    b: str
    b_intf: str
    segment: str
    shaping: Shaping
    attached: bool = True  # False: carrier off at start (an MN's other access networks)
    # The two nodes (and addresses) between which the link check measures this link.
    probe: tuple[str, str, str, str] | None = None


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str  # mn ar core ha paa aaa fw cn lan
    addresses: tuple[tuple[str, str], ...] = ()  # (interface, address/len)
    routes: tuple[tuple[str, str, str], ...] = ()  # (destination, gateway, interface)
    forwarding: bool = False
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def address(self, intf: str | None = None) -> str | None:
        for i, a in self.addresses:
            if intf is None or i == intf:
                return a.split("/")[0]
        return None


def is_firewall(node: NodeSpec) -> bool:
    """A node is a stateful firewall if its role is "fw", or if its extra flags it so
    (extra["firewall"] true, e.g. a router that also filters); either way its extra names
    the interfaces: "inside" (toward what it protects) and "outside" (toward the core)."""
    return node.role == "fw" or bool(node.extra.get("firewall"))


@dataclass
class Plan:
    params: dict[str, Any]
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    links: list[LinkSpec] = field(default_factory=list)

    def hosts(self) -> list[NodeSpec]:
        return [n for n in self.nodes.values() if n.role != "lan"]

    def lans(self) -> list[NodeSpec]:
        return [n for n in self.nodes.values() if n.role == "lan"]

    def by_role(self, role: str) -> list[NodeSpec]:
        return [n for n in self.nodes.values() if n.role == role]

    def firewalls(self) -> list[NodeSpec]:
        """Every stateful firewall of the plan (is_firewall), "fw" (the CN's) first."""
        found = [n for n in self.nodes.values() if is_firewall(n)]
        return sorted(found, key=lambda n: (n.name != "fw", n.name))

    def link(self, name: str) -> LinkSpec:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def hoa(self, k: int) -> str:
        """The home address statically associated with MN k (1-based)."""
        return host(HOME_PREFIX, HOA_BASE + k)


def neighbour_entries(plan: Plan) -> int:
    """About how many IPv6 neighbour cache entries the network holds at once: on a LAN
    every host resolves its routers and every router resolves every member, each for a
    global and a link-local address (4 per host-router pair); a point-to-point link 4.
    Kernel-wide, not per namespace (mip6bench.net.neighbours)."""
    members: dict[str, list[NodeSpec]] = {lan.name: [] for lan in plan.lans()}
    entries = 0
    for link in plan.links:
        lan, host_ = ((link.a, link.b) if link.a in members else
                      (link.b, link.a) if link.b in members else (None, None))
        if lan is None:
            entries += 4
        else:
            members[lan].append(plan.nodes[host_])
    for hosts in members.values():
        routers = sum(1 for n in hosts if n.forwarding)
        entries += 4 * routers * max(len(hosts) - 1, 0)
    return entries


def shaping(params: dict[str, Any], segment: str) -> Shaping:
    return Shaping(params[f"{segment}_delay_ms"], params[f"{segment}_jitter_ms"],
                   params[f"{segment}_loss_pct"], params[f"{segment}_bw_mbit"])


def build_plan(params: dict[str, Any]) -> Plan:
    """The operational network for checked parameters (see topology_params)."""
    if params["ra_max_ms"] < params["ra_min_ms"]:
        from mip6bench.errors import ParameterError
        raise ParameterError("ra_max_ms is below ra_min_ms", "MaxRtrAdvInterval >= MinRtrAdvInterval")
    plan = Plan(params=dict(params))
    nodes, links = plan.nodes, plan.links

    def p2p(n: int, other: str, segment: str) -> None:
        prefix = core_link_prefix(n)
        # Probes start at the far end: the firewall answers nothing unsolicited itself.
        links.append(LinkSpec(f"core-{other}", "core", f"core-{other}", other, f"{other}-core",
                              segment, shaping(params, segment),
                              probe=(other, host(prefix, 2), "core", host(prefix, 1))))

    core_addrs, core_routes = [], []
    # Home network: the HA is the home router (behind hfw with ha_firewall=on).
    home_lan = "home"
    nodes[home_lan] = NodeSpec(home_lan, "lan", extra={"prefix": HOME_PREFIX})
    if params.get("ha_firewall", "off") == "on":
        edge, inner = core_link_prefix(1), core_link_prefix(3)
        p2p(1, "hfw", "home_uplink")
        core_addrs.append(("core-hfw", host(edge, 1) + "/64"))
        core_routes += [(HOME_PREFIX, host(edge, 2), "core-hfw"), (inner, host(edge, 2), "core-hfw")]
        nodes["hfw"] = NodeSpec("hfw", "fw", forwarding=True,
                                addresses=(("hfw-core", host(edge, 2) + "/64"),
                                           ("hfw-ha", host(inner, 1) + "/64")),
                                routes=(("default", host(edge, 1), "hfw-core"),
                                        (HOME_PREFIX, host(inner, 2), "hfw-ha")),
                                extra={"inside": "hfw-ha", "outside": "hfw-core",
                                       "protects": ["ha", "paa", "aaa"],
                                       "intercept": ["hfw-core", "hfw-ha"],
                                       **home_services(params)})
        links.append(LinkSpec("hfw-ha", "hfw", "hfw-ha", "ha", "ha-hfw", "home_uplink", Shaping(),
                              probe=("hfw", host(inner, 1), "ha", host(inner, 2))))
        ha_uplink, ha_up_address, ha_gateway = "ha-hfw", host(inner, 2), host(inner, 1)
    else:
        p2p(1, "ha", "home_uplink")
        core_addrs.append(("core-ha", host(core_link_prefix(1), 1) + "/64"))
        core_routes.append((HOME_PREFIX, host(core_link_prefix(1), 2), "core-ha"))
        ha_uplink, ha_up_address = "ha-core", host(core_link_prefix(1), 2)
        ha_gateway = host(core_link_prefix(1), 1)
    nodes["ha"] = NodeSpec("ha", "ha", forwarding=True,
                           addresses=((ha_uplink, ha_up_address + "/64"),
                                      ("ha-home", host(HOME_PREFIX, 1) + "/64")),
                           routes=(("default", ha_gateway, ha_uplink),),
                           extra={"lan_intf": "ha-home", "prefix": HOME_PREFIX,
                                  "ra_min_ms": params["ra_min_ms"], "ra_max_ms": params["ra_max_ms"]})
    links.append(LinkSpec("home-ha", "ha", "ha-home", home_lan, "home-ha", "home_lan", Shaping()))
    for suffix, name in ((2, "paa"), (3, "aaa")):
        nodes[name] = NodeSpec(name, name, addresses=((f"{name}-home", host(HOME_PREFIX, suffix) + "/64"),),
                               routes=(("default", host(HOME_PREFIX, 1), f"{name}-home"),))
        links.append(LinkSpec(f"home-{name}", name, f"{name}-home", home_lan, f"home-{name}",
                              "home_lan", shaping(params, "home_lan"),
                              probe=("ha", host(HOME_PREFIX, 1), name, host(HOME_PREFIX, suffix))))

    # CN network behind the firewall.
    cn_lan = "cnet"
    nodes[cn_lan] = NodeSpec(cn_lan, "lan", extra={"prefix": CN_PREFIX})
    p2p(2, "fw", "cn_uplink")
    core_addrs.append(("core-fw", host(core_link_prefix(2), 1) + "/64"))
    core_routes.append((CN_PREFIX, host(core_link_prefix(2), 2), "core-fw"))
    nodes["fw"] = NodeSpec("fw", "fw", forwarding=True,
                           addresses=(("fw-core", host(core_link_prefix(2), 2) + "/64"),
                                      ("fw-cnet", host(CN_PREFIX, 1) + "/64")),
                           routes=(("default", host(core_link_prefix(2), 1), "fw-core"),),
                           extra={"inside": "fw-cnet", "outside": "fw-core", "protects": ["cn"]})
    links.append(LinkSpec("cnet-fw", "fw", "fw-cnet", cn_lan, "cnet-fw", "cn_lan", Shaping()))
    nodes["cn"] = NodeSpec("cn", "cn", addresses=(("cn-cnet", host(CN_PREFIX, 0x10) + "/64"),),
                           routes=(("default", host(CN_PREFIX, 1), "cn-cnet"),))
    links.append(LinkSpec("cnet-cn", "cn", "cn-cnet", cn_lan, "cnet-cn", "cn_lan",
                          shaping(params, "cn_lan"),
                          probe=("fw", host(CN_PREFIX, 1), "cn", host(CN_PREFIX, 0x10))))

    # Foreign access networks.
    for i in range(1, params["foreign"] + 1):
        ar, lan, prefix, n = f"ar{i}", f"f{i}", foreign_prefix(i), 0x10 + i
        nodes[lan] = NodeSpec(lan, "lan", extra={"prefix": prefix})
        p2p(n, ar, "backhaul")
        core_addrs.append((f"core-{ar}", host(core_link_prefix(n), 1) + "/64"))
        core_routes.append((prefix, host(core_link_prefix(n), 2), f"core-{ar}"))
        extra = {"lan_intf": f"{ar}-{lan}", "prefix": prefix, "network": lan,
                 "ra_min_ms": params["ra_min_ms"], "ra_max_ms": params["ra_max_ms"]}
        if params.get("foreign_firewall", "off") == "on":
            extra.update(foreign_firewall_extra(params, ar, lan))
        nodes[ar] = NodeSpec(ar, "ar", forwarding=True,
                             addresses=((f"{ar}-core", host(core_link_prefix(n), 2) + "/64"),
                                        (f"{ar}-{lan}", host(prefix, 1) + "/64")),
                             routes=(("default", host(core_link_prefix(n), 1), f"{ar}-core"),),
                             extra=extra)
        links.append(LinkSpec(f"{lan}-{ar}", ar, f"{ar}-{lan}", lan, f"{lan}-{ar}", "access", Shaping()))

    nodes["core"] = NodeSpec("core", "core", forwarding=True, addresses=tuple(core_addrs),
                             routes=tuple(core_routes))

    if params.get("attacker", "off") == "on":
        add_attacker(plan)

    # Mobile nodes: attached to the first foreign network at start.
    networks = ["home"] + [f"f{i}" for i in range(1, params["foreign"] + 1)]
    for k in range(1, params["mns"] + 1):
        mn = f"mn{k}"
        intfs = {}
        for net in networks:
            intf = f"{mn}-{net}"
            intfs[net] = intf
            router = "ha" if net == "home" else f"ar{net[1:]}"
            links.append(LinkSpec(f"{net}-{mn}", mn, intf, net, f"{net}-{mn}", "access",
                                  shaping(params, "access"), attached=(net == "f1"),
                                  probe=(router, nodes[router].address(f"{router}-{net}"), mn, "")))
        nodes[mn] = NodeSpec(mn, "mn", extra={"interfaces": intfs, "attached": "f1",
                                              "hoa": plan.hoa(k), "dad": params["dad"]})
    return plan


ATTACKER_CORE_LINK = 9   # core link 2001:db8:ff:9::/64 (core ::1, atk ::2)
ATTACKER_SUFFIX = 0xbad  # the attacker's own address on each LAN it joins


def add_attacker(plan: Plan) -> None:
    """The attacker node (attacker=on): one port on foreign network f1 (beside the MNs,
    2001:db8:11::bad), one on the core (its own core link, 2001:db8:ff:9::2) and one on
    the home link (2001:db8:1::bad). Undelayed links, no services, no agents; its
    default route points at the core, its LANs are on-link. Nothing in the network
    routes to it beyond its own links: what it sends with forged sources gets no answer
    unless the forged address is its own."""
    nodes, links = plan.nodes, plan.links
    prefix = core_link_prefix(ATTACKER_CORE_LINK)
    core = nodes["core"]
    nodes["core"] = NodeSpec("core", "core", forwarding=True,
                             addresses=core.addresses + (("core-atk", host(prefix, 1) + "/64"),),
                             routes=core.routes)
    links.append(LinkSpec("core-atk", "core", "core-atk", "atk", "atk-core", "backhaul", Shaping()))
    f1 = foreign_prefix(1)
    links.append(LinkSpec("f1-atk", "atk", "atk-f1", "f1", "f1-atk", "access", Shaping()))
    links.append(LinkSpec("home-atk", "atk", "atk-home", "home", "home-atk", "home_lan", Shaping()))
    nodes["atk"] = NodeSpec("atk", "atk", addresses=(
        ("atk-core", host(prefix, 2) + "/64"), ("atk-f1", host(f1, ATTACKER_SUFFIX) + "/64"),
        ("atk-home", host(HOME_PREFIX, ATTACKER_SUFFIX) + "/64")),
        routes=(("default", host(prefix, 1), "atk-core"),))


def foreign_firewall_extra(params: dict[str, Any], ar: str, lan: str) -> dict[str, Any]:
    """An access router as its network's stateful firewall (foreign_firewall=on): inside
    its LAN, outside its core link. Let in from outside besides established traffic and
    pinholes: the PAA's PANA messages (UDP from port 716 of the PAA: with multicast
    discovery the MN's first message went to a group, so the PAA's answer matches no
    conntrack entry; later the PAA may start re-authentication or a ping itself) and,
    with NSIS, GIST D-mode (UDP to port 270) for the hosts inside: the Responses and
    Data of their own downstream signalling come from the CN's firewall, an address
    their Query was not sent to, so conntrack cannot know them (RFC 5971's signalling
    must reach the hosts it serves; the NSLP payload is authorized by the firewall it
    is for). RAs, Neighbour Discovery and DAD stay on the link and pass the input chain
    as on the CN's firewall."""
    inbound = [("pana", f"ip6 saddr {host(HOME_PREFIX, 2)} udp sport 716")]
    if params.get("nsis", "on") == "on":
        inbound.append(("gist-dmode-inside", "udp dport 270"))
    return {"firewall": True, "inside": f"{ar}-{lan}", "outside": f"{ar}-core",
            "services": tuple(inbound), "edge": (foreign_prefix(int(ar[2:])),)}


def home_services(params: dict[str, Any]) -> dict[str, Any]:
    """What the home network's firewall (hfw) lets in statically: the operator's public
    services, as nft match expressions (forward: toward the home network; input: to hfw
    itself). PANA to the PAA (UDP 716, from MNs and from PANA relays) is how an MN gets
    in at all, so it cannot wait for NSIS (whose token PANA hands out); the CN's
    firewall asks the PAA to authorize NATFW requests (pull, UDP SADIST_PORT); and the
    Router Alert forwarder on hfw joins PANA's discovery group on its outside port."""
    from mip6bench.aaa.sadist import SADIST_PORT
    from mip6bench.pana.discovery import DISCOVERY_GROUP

    paa = host(HOME_PREFIX, 2)
    cn_fw = host(core_link_prefix(2), 2)
    return {"services": [("pana", f"ip6 daddr {paa} udp dport 716"),
                         ("nsis-authz", f"ip6 saddr {cn_fw} ip6 daddr {paa} udp dport {SADIST_PORT}")],
            "input_services": [("pana-discovery", f"ip6 daddr {DISCOVERY_GROUP} udp dport 716")]}


# ----------------------------------------------------------------------------- Mobile IPv6

HA_ADDRESS = host(HOME_PREFIX, 1)  # the HA's address on the home link: MNs register here


def mn_nai(k: int) -> str:
    return f"mn{k}@mip6bench.example"


def static_sa(plan: Plan, k: int, key_file: str | os.PathLike) -> dict[str, Any]:
    """The statically configured MN-HA SA of MN k (RFC 4285). Its key is the run's own
    (static_sa_key_files), read by the HA and MN agents from `key_file`; PANA
    bootstrapping replaces it."""
    return {"spi": 0x1000 + k, "key_file": str(key_file), "algorithm": "hmac-sha1-96",
            "replay": "timestamp", "hoa": plan.hoa(k), "nai": mn_nai(k)}


def static_sa_key_files(state_dir: str | os.PathLike, ks: Iterable[int]) -> dict[int, Path]:
    """A random 16-byte MN-HA key per MN k, made once per run (secrets.token_bytes) and kept
    in the run's state directory (secrets/static-sa-mn<k>.key, 0600 in the 0700
    secrets/), so no two runs, and nobody who read this code, share a key."""
    directory = secret_dir(state_dir)
    out = {}
    for k in ks:
        path = directory / f"static-sa-mn{k}.key"
        if not path.exists():
            write_psk_file(path, secrets.token_bytes(16))
        out[k] = path
    return out


def mobility_agent_options(plan: Plan, tunnel_backend: str,
                           static_keys: Mapping[int, str | os.PathLike] | None = None
                           ) -> list[tuple[str, str, dict[str, Any]]]:
    """(node, role, options) of the Mobile IPv6 agents the plan asks for (parameter mipv6);
    with static SAs, `static_keys` maps each MN k to its key file (static_sa_key_files)."""
    mode = plan.params.get("mipv6", "static")
    if mode == "off":
        return []
    ha, cn = plan.nodes["ha"], plan.nodes["cn"]
    mns = plan.by_role("mn")
    static = mode == "static"
    if static and (static_keys is None
                   or any(int(mn.name[2:]) not in static_keys for mn in mns)):
        raise ValueError("static SAs need the run's key files (static_sa_key_files)")
    out = [("ha", "ha", {
        "address": HA_ADDRESS, "home_prefix": HOME_PREFIX, "home_interface": ha.extra["lan_intf"],
        "uplink": next(intf for dst, _gw, intf in ha.routes if dst == "default"),
        "tunnel_backend": tunnel_backend,
        "sas": [static_sa(plan, int(mn.name[2:]), static_keys[int(mn.name[2:])])
                for mn in mns] if static else []})]
    out.append(("cn", "cn", {"addresses": [cn.address()], "interface": "cn-cnet"}))
    for mn in mns:
        k = int(mn.name[2:])
        options: dict[str, Any] = {
            "interfaces": list(mn.extra["interfaces"].values()), "dad": mn.extra["dad"],
            "nai": mn_nai(k), "correspondents": [cn.address()], "tunnel_backend": tunnel_backend}
        if static:
            options.update(home_address=mn.extra["hoa"], home_agent=HA_ADDRESS, home_prefix=HOME_PREFIX,
                           sas=[static_sa(plan, k, static_keys[k])])
        out.append((mn.name, "mn", options))
    return out


def static_mipv6_pinholes(plan: Plan) -> list[dict[str, Any]]:
    """Firewall pinholes that let Mobile IPv6 reach the CN without NSIS signalling:
    HoTI from home addresses (reverse-tunnelled via the HA) and their deregistration BUs
    once back home, and everything from the foreign networks (CoTI, Binding Updates with
    a Home Address option, route-optimised data, which comes from care-of addresses)."""
    cn = plan.nodes["cn"].address()
    holes = [{"id": "mip6-home", "src": HOME_PREFIX, "dst": cn, "proto": "mh", "mh_types": ["hoti", "bu"]}]
    for i in range(1, plan.params["foreign"] + 1):
        holes.append({"id": f"mip6-f{i}", "src": foreign_prefix(i), "dst": cn})
    return holes


def path_delay_ms(plan, a: str, b: str) -> float:
    """The least one-way delay the configuration allows between nodes a and b: the sum,
    over the (attached) links on the path, of each link's delay minus its jitter (at
    least 0), so that floors built from it are lower bounds also with jitter."""
    graph: dict[str, list[tuple[str, float]]] = {}
    for link in plan.links:
        if not link.attached:
            continue
        least = max(0.0, link.shaping.delay_ms - link.shaping.jitter_ms)
        graph.setdefault(link.a, []).append((link.b, least))
        graph.setdefault(link.b, []).append((link.a, least))
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


AUTO_HOSTED_FROM = 21   # mns_per_agent=0: MN hosts from this many MNs on


def mns_per_agent(params: dict[str, Any], cpus: int | None = None) -> int:
    """MN agents per process for these parameters (mns_per_agent; 0: automatic)."""
    import math
    import os

    given, mns = params.get("mns_per_agent", 0), params.get("mns", 1)
    if given:
        return given
    if mns < AUTO_HOSTED_FROM:
        return 1
    return math.ceil(mns / (4 * (cpus or os.cpu_count() or 1)))
