"""The stateful packet filter in front of the CN network, as an nftables ruleset.

Policy (forward path): traffic that leaves the protected network opens conntrack state
and its return traffic passes; ICMPv6 errors and neighbour discovery pass (RFC 4890);
anything else entering the protected network is dropped unless a rule in the `pinholes`
chain accepts it. The NATFW agent (and static experiment set-ups) manage that chain;
every pinhole rule carries a `pinhole:<id>` comment so it can be found and removed.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mip6bench.net.nft import Batch, Nft, quote, rule_counters

TABLE = "mip6bench"
FAMILY = "inet"
PINHOLE_CHAIN = "pinholes"
NSIS_MAP = "nsis_flows"  # ip6 saddr . ip6 daddr : jump <bucket chain of NSIS sessions>
GIST_PORT = 270  # RFC 5971: D-mode (UDP) and C-mode (TCP) port

# ICMPv6 that must pass a firewall for IPv6 to work (RFC 4890 4.3.1).
ICMPV6_ESSENTIAL = ("destination-unreachable", "packet-too-big", "time-exceeded",
                    "parameter-problem")
ICMPV6_ND = ("nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit",
             "nd-neighbor-advert", "mld-listener-query", "mld-listener-report",
             "mld2-listener-report")

PROTOCOLS = {"tcp": 6, "udp": 17, "icmpv6": 58, "mh": 135, "ipv6": 41}
MH_TYPES = {"brr": "binding-refresh-request", "hoti": "home-test-init",
            "coti": "careof-test-init", "hot": "home-test", "cot": "careof-test",
            "bu": "binding-update", "ba": "binding-acknowledgement", "be": "binding-error"}


@dataclass(frozen=True)
class Pinhole:
    """An allow rule for one flow class entering the protected network."""

    id: str
    src: str | None = None  # prefix or address outside
    dst: str | None = None  # prefix or address inside
    proto: str | int | None = None  # name from PROTOCOLS or a number
    dport: int | None = None
    sport: int | None = None
    mh_types: tuple[str, ...] = ()  # keys of MH_TYPES, for proto "mh"

    def __post_init__(self):
        if not self.id or not all(c.isalnum() or c in "-_.:" for c in self.id):
            raise ValueError(f"pinhole id {self.id!r}: use letters, digits, - _ . :")
        for addr in (self.src, self.dst):
            if addr is not None:
                net = ipaddress.ip_network(addr, strict=False)
                if net.version != 6:
                    raise ValueError(f"pinhole address {addr!r} is not IPv6")
        if (self.dport is not None or self.sport is not None) and self.proto not in ("tcp", "udp"):
            raise ValueError("ports need proto tcp or udp")
        for port in (self.dport, self.sport):
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"port {port} out of range")
        if self.mh_types and self.proto != "mh":
            raise ValueError("mh_types need proto mh")
        unknown = set(self.mh_types) - set(MH_TYPES)
        if unknown:
            raise ValueError(f"unknown MH types {sorted(unknown)}")
        if isinstance(self.proto, str) and self.proto not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.proto!r}")

    @property
    def comment(self) -> str:
        return f"pinhole:{self.id}"

    def match(self) -> str:
        parts = []
        if self.src:
            parts.append(f"ip6 saddr {self.src}")
        if self.dst:
            parts.append(f"ip6 daddr {self.dst}")
        if self.proto is not None:
            number = PROTOCOLS.get(self.proto, self.proto) if isinstance(self.proto, str) else self.proto
            parts.append(f"meta l4proto {number}")
        if self.sport is not None:
            parts.append(f"{self.proto} sport {self.sport}")
        if self.dport is not None:
            parts.append(f"{self.proto} dport {self.dport}")
        if self.mh_types:
            parts.append("mh type { " + ", ".join(MH_TYPES[t] for t in self.mh_types) + " }")
        return " ".join(parts)

    def rule(self) -> str:
        return f"{self.match()} counter accept comment {quote(self.comment)}"


def ruleset(inside: str, outside: str, nsis: bool = True,
            services: tuple[tuple[str, str], ...] = (),
            input_services: tuple[tuple[str, str], ...] = ()) -> Batch:
    """The whole firewall table, replacing any earlier one, as one atomic batch. With
    `nsis`, the NSIS pinhole dispatch map and GIST's port 270 on the firewall itself.
    `services` / `input_services`: (name, nft match) of static public services let in
    from outside toward the protected network / to the firewall itself (counted, with
    comment "service:<name>")."""
    nd = ", ".join(ICMPV6_ND)
    errors = ", ".join(ICMPV6_ESSENTIAL)
    b = Batch()
    # "add" then "delete" makes the delete succeed whether or not the table exists.
    b.add(f"add table {FAMILY} {TABLE}")
    b.add(f"delete table {FAMILY} {TABLE}")
    b.add(f"add table {FAMILY} {TABLE}")
    b.add(f"add chain {FAMILY} {TABLE} {PINHOLE_CHAIN}")
    b.add(f"add chain {FAMILY} {TABLE} forward {{ type filter hook forward priority filter; policy drop; }}")
    b.add(f"add rule {FAMILY} {TABLE} forward ct state established,related counter accept comment \"established\"")
    b.add(f"add rule {FAMILY} {TABLE} forward ct state invalid counter drop comment \"invalid\"")
    b.add(f"add rule {FAMILY} {TABLE} forward icmpv6 type {{ {errors} }} counter accept comment \"icmpv6-errors\"")
    b.add(f"add rule {FAMILY} {TABLE} forward iifname {quote(inside)} counter accept comment \"outbound\"")
    if nsis:
        b.add(f"add map {FAMILY} {TABLE} {NSIS_MAP} {{ type ipv6_addr . ipv6_addr : verdict; }}")
        b.add(f"add rule {FAMILY} {TABLE} forward iifname {quote(outside)} "
              f"ip6 saddr . ip6 daddr vmap @{NSIS_MAP} comment \"nsis-dispatch\"")
    for name, match in services:
        b.add(f"add rule {FAMILY} {TABLE} forward iifname {quote(outside)} {match} counter accept "
              f"comment {quote('service:' + name)}")
    b.add(f"add rule {FAMILY} {TABLE} forward iifname {quote(outside)} jump {PINHOLE_CHAIN}")
    b.add(f"add rule {FAMILY} {TABLE} forward counter drop comment \"unsolicited\"")
    b.add(f"add chain {FAMILY} {TABLE} input {{ type filter hook input priority filter; policy drop; }}")
    b.add(f"add rule {FAMILY} {TABLE} input iif lo accept")
    b.add(f"add rule {FAMILY} {TABLE} input ct state established,related counter accept")
    b.add(f"add rule {FAMILY} {TABLE} input icmpv6 type {{ {nd} }} counter accept comment \"nd\"")
    b.add(f"add rule {FAMILY} {TABLE} input icmpv6 type {{ {errors}, echo-request }} counter accept comment \"icmpv6\"")
    b.add(f"add rule {FAMILY} {TABLE} input iifname {quote(inside)} counter accept comment \"from-inside\"")
    if nsis:
        b.add(f"add rule {FAMILY} {TABLE} input udp dport {GIST_PORT} counter accept comment \"gist-dmode\"")
        b.add(f"add rule {FAMILY} {TABLE} input tcp dport {GIST_PORT} counter accept comment \"gist-cmode\"")
    for name, match in input_services:
        b.add(f"add rule {FAMILY} {TABLE} input iifname {quote(outside)} {match} counter accept "
              f"comment {quote('service:' + name)}")
    b.add(f"add rule {FAMILY} {TABLE} input counter drop comment \"input-drop\"")
    return b


def add_pinholes(pinholes: list[Pinhole]) -> Batch:
    b = Batch()
    for p in pinholes:
        b.add(f"add rule {FAMILY} {TABLE} {PINHOLE_CHAIN} {p.rule()}")
    return b


class Firewall:
    """The firewall table in one namespace: install, pinholes, counters."""

    def __init__(self, netns: int | str | None, inside: str, outside: str, nsis: bool = True,
                 services=(), input_services=()):
        self.nft = Nft(netns)
        self.inside, self.outside, self.nsis = inside, outside, nsis
        self.services = tuple(tuple(s) for s in services)
        self.input_services = tuple(tuple(s) for s in input_services)

    def install(self) -> None:
        self.nft.apply(ruleset(self.inside, self.outside, self.nsis, self.services,
                               self.input_services))

    def remove(self) -> None:
        self.nft.apply(Batch([f"delete table {FAMILY} {TABLE}"]))

    def rules(self) -> list[dict]:
        return rule_counters(self.nft.list_json("table", FAMILY, TABLE))

    def pinholes(self) -> list[dict]:
        return [dict(r, id=r["comment"].split(":", 1)[1]) for r in self.rules()
                if r["chain"] == PINHOLE_CHAIN and (r["comment"] or "").startswith("pinhole:")]

    def open(self, *pinholes: Pinhole) -> None:
        existing = {p["id"] for p in self.pinholes()}
        clash = [p.id for p in pinholes if p.id in existing]
        if clash:
            raise ValueError(f"pinholes already open: {clash}")
        self.nft.apply(add_pinholes(list(pinholes)))

    def close(self, *ids: str) -> None:
        handles = {p["id"]: p["handle"] for p in self.pinholes()}
        missing = [i for i in ids if i not in handles]
        if missing:
            raise KeyError(f"no such pinholes: {missing}")
        b = Batch()
        for i in ids:
            b.add(f"delete rule {FAMILY} {TABLE} {PINHOLE_CHAIN} handle {handles[i]}")
        self.nft.apply(b)

    def counters(self) -> dict[str, dict]:
        """Packet/byte counters by rule comment (e.g. 'unsolicited', 'established')."""
        return {r["comment"]: {"packets": r["packets"], "bytes": r["bytes"], "chain": r["chain"]}
                for r in self.rules() if r["comment"]}
