"""The bidirectional tunnel of Mobile IPv6 (RFC 6275 10.4.2, 11.3.1; RFC 2473) in the
kernel fast path, with two interchangeable backends.

ip6tnl (where the kernel has ip6_tunnel, i.e. a normal distribution kernel):
    HA: one ip6ip6 device per binding (local = HA address, remote = CoA, no encapsulation
        limit option), `HoA/128 dev <it>`; the device itself decapsulates what the CoA
        sends.
    MN: one device `mip6tnl` (local = CoA, remote = HA); a handover changes its local
        end in place (the HA's device likewise follows a new CoA in place).
seg6 (works everywhere seg6 lwtunnels exist, also where ip6tnl does not):
    encapsulation: `HoA/128 encap seg6 mode encap.red segs <CoA>` (HA) and
        `default encap seg6 mode encap.red segs <HA>` in the MN's tunnel table: one
        segment in reduced mode is plain next-header 41 without an SRH. The outer source
        on the HA is the netns-wide seg6 tunnel source, set once to the HA address; on
        the MN the tunnel source stays unset (::), so the kernel's source selection on
        the access interface picks the CoA (RFC 6724 rule 5, the outgoing interface):
        changing the tunnel source waits for an RCU grace period in the kernel
        (synchronize_net, milliseconds), which a handover should not.
    decapsulation: seg6local End.DT6 in a table of its own, reached by a policy rule for
        protocol 41 (HA: to the HA address, End.DT6 into main to forward the inner
        packet; MN: from the HA address, End.DT6 into local to deliver it to the HoA),
        after moving `lookup local` from pref 0 to LOCAL_PREF. A seg6local route needs a
        non-loopback device: the HA uses its home interface, the MN its TUN device.

Policy routing on a mobile node (both backends): `from HoA lookup TUNNEL_TABLE` at
HOME_ADDRESS_PREF sends everything the applications send from the home address into the
tunnel (or, for route-optimised correspondents, to the TUN device, see net/intercept.py);
the agents' own, marked packets take the main table first (AGENT_MARK_PREF).

On the HA, which CoA may send which HoA's packets is enforced in netfilter (see
`reverse_tunnel_rules`): a set of (CoA . inner source) pairs, one element per binding.
Every kernel change is a netlink request through mip6bench.net.kernel.Kernel (routes with
seg6 / seg6local encapsulation, rules, ip6tnl links, the seg6 tunnel source): no `ip`
subprocess. The calls are synchronous (one request and its ack each). Set-up, purge and
teardown read the kernel's state (dumps) and run on the agents' kernel thread; the HA's
per-binding calls (ha_bind, ha_unbind) make requests only and run on its event loop.
"""
from __future__ import annotations

import hashlib
import ipaddress

from mip6bench.net.intercept import AGENT_MARK, AGENT_MARK_PREF
from mip6bench.net.kernel import (IPPROTO_IPV6, RT_TABLE_LOCAL, RT_TABLE_MAIN, RTN_UNICAST, BatchOutcome, Kernel,
                                  seg6_encap, seg6local_dt6)

DECAP_TABLE = 137
TUNNEL_TABLE = 138
DECAP_PREF = 10
LOCAL_PREF = 15
HOME_ADDRESS_PREF = 20
LAST_RESORT_METRIC = 0xFFFFFFFF
MN_TUNNEL_DEVICE = "mip6tnl"
BACKENDS = ("ip6tnl", "seg6", "userspace")   # the order "auto" prefers them in
# What each backend needs from the kernel, for error messages and `mip6bench doctor`.
BACKEND_NEEDS = {
    "ip6tnl": "CONFIG_IPV6_TUNNEL (modprobe ip6_tunnel)",
    "seg6": "CONFIG_IPV6_SEG6_LWTUNNEL",
    "userspace": "CONFIG_TUN (modprobe tun)",
}


def mark_rule(k: Kernel) -> None:
    """The agents' own, marked packets take the main table first."""
    k.add_rule(AGENT_MARK_PREF, RT_TABLE_MAIN, fwmark=AGENT_MARK)


def ha_tunnel_device(hoa: str) -> str:
    """A stable, short (<= 15 bytes) device name per home address."""
    return "m6t" + hashlib.sha1(ipaddress.IPv6Address(hoa).packed).hexdigest()[:10]


def hex128(address: str) -> str:
    return f"0x{int(ipaddress.IPv6Address(address)):032x}"


def reverse_tunnel_rules(table: str, ha_address: str) -> tuple[list[str], list[str]]:
    """(set declarations, prerouting rules) that accept IPv6-in-IPv6 to the HA only from
    a registered CoA carrying its own HoA as the inner source (RFC 6275 10.4.5)."""
    decl = [f"add set ip6 {table} reverse_tunnel {{ typeof ip6 saddr . @nh,384,128; }}"]
    rules = [
        # Outer header followed directly by the inner one: inner source at bytes 48-63.
        f"ip6 daddr {ha_address} ip6 nexthdr 41 ip6 saddr . @nh,384,128 @reverse_tunnel "
        f'counter accept comment "reverse-tunnel-accepted"',
        f'ip6 daddr {ha_address} meta l4proto 41 counter drop comment "reverse-tunnel-rejected"',
    ]
    return decl, rules


def reverse_tunnel_element(table: str, coa: str, hoa: str, add: bool = True) -> str:
    verb = "add" if add else "delete"
    return f"{verb} element ip6 {table} reverse_tunnel {{ {coa} . {hex128(hoa)} }}"


class TunnelBackend:
    name = ""
    # Whether the HA's nftables set checks reverse-tunnelled packets (CoA . inner
    # source), or the backend does it itself (userspace).
    kernel_reverse_check = True
    home_rule = False       # the MN's home address rule and last-resort route are in place

    def __init__(self):
        # HA: the home addresses whose route this backend has put in place (ip6tnl,
        # userspace: the route names a device that stays, so a new CoA leaves it alone).
        self.routed: set[str] = set()

    # --- nftables rules the agents install in their intercept table
    def ha_nft_rules(self, table: str, ha_address: str) -> tuple[list[str], list[str]]:
        return reverse_tunnel_rules(table, ha_address)

    def mn_nft_rules(self, ha_address: str) -> list[str]:
        return []

    def counters(self) -> dict[str, int]:
        """The data path's own counters (the kernel backends have none of their own)."""
        return {}

    def prepare(self, role: str) -> None:
        """Called early in an agent's start (role ha or mn): start what takes time."""

    def close(self) -> None:
        """The agent stops: end what prepare started."""

    def status(self) -> dict:
        """For the agents' status command: the backend and its own processes."""
        return {"backend": self.name}

    # --- home agent ---
    def ha_purge(self, k: Kernel, home_prefix: str, home_interface: str) -> list[str]:
        """Remove what an earlier home agent of this node left when it died without
        tearing down (kill -9, a crash): its per-binding state, which nobody would ever
        remove, since the new agent holds no bindings: routes to home addresses (/128
        in the home prefix, main table; seg6 encapsulation or a tunnel device), proxy
        neighbour entries on the home link, ip6tnl devices. Call before ha_setup.
        Returns what was removed ("route <hoa>", "proxy <address>", "link <name>")."""
        home = ipaddress.IPv6Network(home_prefix, strict=False)
        removed = []
        for route in k.routes(RT_TABLE_MAIN):
            dst, _, prefixlen = route["dst"].partition("/")
            if prefixlen != "128" or route.get("type") != RTN_UNICAST:
                continue          # prefixes, and the HA's own local addresses
            if ipaddress.IPv6Address(dst) in home:
                k.del_route(f"{dst}/128", table=RT_TABLE_MAIN, missing_ok=True)
                removed.append(f"route {dst}")
        for address in k.proxy_entries(home_interface):
            k.del_proxy_ndp(home_interface, address)
            removed.append(f"proxy {address}")
        for link in k.links():
            if link["name"].startswith("m6t"):
                k.delete_link(link["name"], missing_ok=True)
                removed.append(f"link {link['name']}")
        return removed

    def ha_setup(self, k: Kernel, ha_address: str, local_addresses: list[str],
                 decap_dev: str) -> None:
        raise NotImplementedError

    def ha_bind(self, k: Kernel, hoa: str, coa: str, ha_address: str, uplink: str) -> None:
        """Tunnel what is sent to `hoa` to `coa`: the HA calls it on its event loop, for
        every new binding and new CoA, before the Binding Ack leaves, so a new CoA costs
        the fewest requests the backend can make (one, or the forwarder's command)."""
        raise NotImplementedError

    def ha_bind_many(self, k: Kernel, binds: list[tuple[str, str]], ha_address: str,
                     uplink: str) -> list[Exception | None]:
        """ha_bind for every (hoa, coa) of one batch (distinct home addresses): each
        one's error or None, in order; one that fails leaves the others in place. Here
        one call each; backends that can, group them (seg6: one netlink datagram;
        userspace: one forwarder message)."""
        out: list[Exception | None] = []
        for hoa, coa in binds:
            try:
                self.ha_bind(k, hoa, coa, ha_address, uplink)
                out.append(None)
            except Exception as exc:   # noqa: BLE001 - reported for that binding alone
                out.append(exc)
        return out

    def _route_once(self, k: Kernel, hoa: str, dev: str) -> None:
        if hoa not in self.routed:
            k.add_route(hoa, dev=dev)
            self.routed.add(hoa)

    def ha_unbind(self, k: Kernel, hoa: str) -> None:
        raise NotImplementedError

    def ha_teardown(self, k: Kernel, local_addresses: list[str]) -> None:
        raise NotImplementedError

    # --- mobile node ---
    def mn_setup(self, k: Kernel, ha_address: str, decap_dev: str) -> None:
        raise NotImplementedError

    def mn_point(self, k: Kernel, hoa: str, coa: str, ha_address: str, dev: str) -> None:
        raise NotImplementedError

    def mn_down(self, k: Kernel) -> None:
        """Stop tunnelling (at home, or the binding is gone)."""
        for rule in k.rules_at(HOME_ADDRESS_PREF):
            k.del_rule(HOME_ADDRESS_PREF, rule["table"])
        k.del_route("default", table=TUNNEL_TABLE, missing_ok=True)
        self.home_rule = False

    def mn_teardown(self, k: Kernel) -> None:
        raise NotImplementedError

    # --- shared pieces ---
    def _mn_home_address_rule(self, k: Kernel, hoa: str) -> None:
        # Last resort in the tunnel table: while the tunnel route is unusable (its link
        # is down during a handover) the home address must not leak out untunnelled
        # through the main table's default route.
        # Set once per tunnel (mn_down and _reset take it away): a handover changes
        # only the tunnel route.
        if not self.home_rule:
            k.add_route("default", kind="unreachable", metric=LAST_RESORT_METRIC, table=TUNNEL_TABLE)
            if not k.rules_at(HOME_ADDRESS_PREF):
                k.add_rule(HOME_ADDRESS_PREF, TUNNEL_TABLE, src=hoa)
            self.home_rule = True

    def _reset(self, k: Kernel, apply=None, local_pref: int | None = None) -> None:
        self.home_rule = False
        k.reconfigure((DECAP_PREF, AGENT_MARK_PREF, HOME_ADDRESS_PREF), (DECAP_TABLE, TUNNEL_TABLE),
                      apply, local_pref, moved_local_pref=LOCAL_PREF)


class Seg6Backend(TunnelBackend):
    name = "seg6"

    def ha_setup(self, k, ha_address, local_addresses, decap_dev):
        def apply():
            k.set_seg6_tunsrc(ha_address)
            k.add_route(f"{ha_address}/128", dev=decap_dev, encap=seg6local_dt6(RT_TABLE_MAIN), table=DECAP_TABLE)
            # End.DT6 into main forwards the inner packet; the HA's own addresses must be
            # found there too, or packets from a MN to its HA would be forwarded away.
            for a in local_addresses:
                k.add_route(a, dev="lo", kind="local", table=RT_TABLE_MAIN)
            k.add_rule(DECAP_PREF, DECAP_TABLE, dst=ha_address, ip_proto=IPPROTO_IPV6)
            mark_rule(k)
        self._reset(k, apply, local_pref=LOCAL_PREF)

    def ha_bind(self, k, hoa, coa, ha_address, uplink):
        k.add_route(hoa, dev=uplink, encap=seg6_encap(coa))

    def ha_bind_many(self, k, binds, ha_address, uplink):
        outcome = BatchOutcome()
        with k.batch(outcome):           # one request each, one datagram for all
            for hoa, coa in binds:
                self.ha_bind(k, hoa, coa, ha_address, uplink)
        return list(outcome.errors)

    def ha_unbind(self, k, hoa):
        k.del_route(hoa, missing_ok=True)

    def ha_teardown(self, k, local_addresses):
        self._reset(k, lambda: k.set_seg6_tunsrc("::"))
        for a in local_addresses:
            k.del_route(a, kind="local", table=RT_TABLE_MAIN, missing_ok=True)

    def mn_setup(self, k, ha_address, decap_dev):
        def apply():
            k.set_seg6_tunsrc("::")     # outer source: the CoA, by source selection
            k.add_route("default", dev=decap_dev, encap=seg6local_dt6(RT_TABLE_LOCAL), table=DECAP_TABLE)
            k.add_rule(DECAP_PREF, DECAP_TABLE, src=ha_address, ip_proto=IPPROTO_IPV6)
            mark_rule(k)
        self._reset(k, apply, local_pref=LOCAL_PREF)

    def mn_point(self, k, hoa, coa, ha_address, dev):
        # `dev` holds the CoA: the kernel takes it as the outer source (see above).
        k.add_route("default", dev=dev, encap=seg6_encap(ha_address), table=TUNNEL_TABLE)
        self._mn_home_address_rule(k, hoa)

    def mn_teardown(self, k):
        self._reset(k, lambda: k.set_seg6_tunsrc("::"))


class Ip6tnlBackend(TunnelBackend):
    name = "ip6tnl"

    def ha_setup(self, k, ha_address, local_addresses, decap_dev):
        self._reset(k, lambda: mark_rule(k))

    def ha_bind(self, k, hoa, coa, ha_address, uplink):
        # A new CoA changes the device's remote end in place (one request).
        name = ha_tunnel_device(hoa)
        k.set_ip6tnl(name, ha_address, coa)
        self._route_once(k, hoa, name)

    def ha_unbind(self, k, hoa):
        k.delete_link(ha_tunnel_device(hoa), missing_ok=True)  # takes its route with it
        self.routed.discard(hoa)

    def ha_teardown(self, k, local_addresses):
        for link in k.links():
            if link["name"].startswith("m6t"):
                k.delete_link(link["name"], missing_ok=True)
        self.routed.clear()
        self._reset(k)

    def mn_setup(self, k, ha_address, decap_dev):
        k.delete_link(MN_TUNNEL_DEVICE, missing_ok=True)
        self._reset(k, lambda: mark_rule(k))

    def mn_point(self, k, hoa, coa, ha_address, dev):
        # On a handover only the local end (the CoA) changes, in place. Re-creating the
        # device instead took seconds under load (12.9 s in the full-kernel lane).
        k.set_ip6tnl(MN_TUNNEL_DEVICE, coa, ha_address)
        k.add_route("default", dev=MN_TUNNEL_DEVICE, table=TUNNEL_TABLE)
        self._mn_home_address_rule(k, hoa)

    def mn_down(self, k):
        super().mn_down(k)
        k.delete_link(MN_TUNNEL_DEVICE, missing_ok=True)

    def mn_teardown(self, k):
        k.delete_link(MN_TUNNEL_DEVICE, missing_ok=True)
        self._reset(k)


class UserspaceBackend(TunnelBackend):
    """RFC 2473 in a forwarder process of the agent's (mip6bench.net.usertunnel): the
    kernel routes into its TUN device what goes into the tunnel; outer packets reach it
    on an AF_PACKET socket, and an nftables rule at priority raw drops the kernel's copy.
    The forwarder checks reverse-tunnelled packets itself (kernel_reverse_check False)."""

    name = "userspace"
    kernel_reverse_check = False

    def __init__(self):
        super().__init__()
        self.forwarder = None
        self.mtu: int | None = None
        self._mtu_sock = None     # the socket _set_mtu asks the link's MTU on

    @staticmethod
    def _drop_rule(match: str) -> str:
        return f'{match} ip6 nexthdr {IPPROTO_IPV6} counter drop comment "tunnel-to-userspace"'

    def ha_nft_rules(self, table, ha_address):
        return [], [self._drop_rule(f"ip6 daddr {ha_address}")]

    def mn_nft_rules(self, ha_address):
        return [self._drop_rule(f"ip6 saddr {ha_address}")]

    def prepare(self, role: str) -> None:
        """The forwarder process starts now (a Python start takes ~100 ms), in parallel
        with the agent's own start; setup waits for it only when it needs it."""
        from mip6bench.net.usertunnel import HA_DEVICE, Forwarder

        if self.forwarder is None:
            self.forwarder = Forwarder(role, HA_DEVICE if role == "ha" else MN_TUNNEL_DEVICE)

    def _start(self, k: Kernel, role: str, device: str, address: str) -> None:
        self.prepare(role)
        self.forwarder.request("address", address=address)
        # No link-local address: nothing of the kernel's own (MLD, RS) goes into the tunnel.
        k.sysctl({f"net/ipv6/conf/{device}/addr_gen_mode": 1})
        self.mtu = None

    def _set_mtu(self, k: Kernel, egress: str) -> int:
        """Tunnel MTU = egress link MTU - 40 (RFC 2473 section 7), on the TUN device (the
        kernel answers forwarded packets that do not fit) and in the forwarder."""
        from mip6bench.net.usertunnel import IPV6_HEADER_LEN, MIN_MTU, link_mtu

        if self._mtu_sock is None:      # kept: the HA asks once per batch of bindings
            import socket

            self._mtu_sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        mtu = max(MIN_MTU, link_mtu(egress, self._mtu_sock) - IPV6_HEADER_LEN)
        if mtu != self.mtu:
            k.set_link(self.forwarder.tun_name, up=True, mtu=mtu)
            self.mtu = mtu
        return mtu

    def _stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None
        if self._mtu_sock is not None:
            self._mtu_sock.close()
            self._mtu_sock = None

    def counters(self) -> dict[str, int]:
        return self.forwarder.request("counters")["counters"] if self.forwarder else {}

    def close(self) -> None:
        self._stop()

    def status(self) -> dict:
        return {"backend": self.name, "forwarder_pid": self.forwarder.pid if self.forwarder else None}

    def ha_setup(self, k, ha_address, local_addresses, decap_dev):
        from mip6bench.net.usertunnel import HA_DEVICE

        self._reset(k, lambda: mark_rule(k))
        self._start(k, "ha", HA_DEVICE, ha_address)
        k.set_link(HA_DEVICE, up=True)

    def ha_bind(self, k, hoa, coa, ha_address, uplink):
        mtu = self._set_mtu(k, uplink)
        self.forwarder.request("bind", hoa=hoa, coa=coa, mtu=mtu)
        self._route_once(k, hoa, self.forwarder.tun_name)

    def ha_bind_many(self, k, binds, ha_address, uplink):
        # One forwarder message for every binding, then one netlink datagram with the
        # route of each new home address into the TUN device.
        errors: list[Exception | None] = list(self.forwarder.bind_many(binds, self._set_mtu(k, uplink)))
        fresh = [i for i, (hoa, _coa) in enumerate(binds) if errors[i] is None and hoa not in self.routed]
        if fresh:
            outcome = BatchOutcome()
            with k.batch(outcome):
                for i in fresh:
                    k.add_route(binds[i][0], dev=self.forwarder.tun_name)
            for i, error in zip(fresh, outcome.errors):
                if error is None:
                    self.routed.add(binds[i][0])
                else:
                    errors[i] = error
        return errors

    def ha_unbind(self, k, hoa):
        k.del_route(hoa, missing_ok=True)
        self.routed.discard(hoa)
        if self.forwarder is not None:
            self.forwarder.request("unbind", hoa=hoa)

    def ha_teardown(self, k, local_addresses):
        self._stop()   # the TUN device goes with the process, and its routes with it
        self.routed.clear()
        self._reset(k)

    def mn_setup(self, k, ha_address, decap_dev):
        self._reset(k, lambda: mark_rule(k))
        self._start(k, "mn", MN_TUNNEL_DEVICE, ha_address)
        k.set_link(MN_TUNNEL_DEVICE, up=True)

    def mn_point(self, k, hoa, coa, ha_address, dev):
        mtu = self._set_mtu(k, dev)
        self.forwarder.request("point", hoa=hoa, coa=coa, ha=ha_address, ifname=dev, mtu=mtu)
        k.add_route("default", dev=MN_TUNNEL_DEVICE, table=TUNNEL_TABLE)
        self._mn_home_address_rule(k, hoa)

    def mn_down(self, k):
        super().mn_down(k)
        if self.forwarder is not None:
            self.forwarder.request("down")

    def mn_teardown(self, k):
        self._stop()
        self._reset(k)


def probe_backends() -> dict[str, tuple[bool, str]]:
    """Every tunnel backend: (usable here, what the probe saw)."""
    from mip6bench.net.capabilities import probe_ip6tnl, probe_seg6, probe_tap

    return {
        "ip6tnl": probe_ip6tnl(),
        "seg6": probe_seg6(),
        "userspace": probe_tap(),
    }


def choose_backend(name: str, available: dict[str, tuple[bool, str]]) -> str:
    """The backend `name` resolves to ("auto": the first usable of BACKENDS), or a
    one-line error naming what the kernel lacks."""
    from mip6bench.errors import EnvironmentProblem, ParameterError

    if name == "auto":
        for candidate in BACKENDS:
            if available[candidate][0]:
                return candidate
        raise EnvironmentProblem("no IPv6-in-IPv6 tunnel backend works on this kernel "
                                 f"({'; '.join(f'{b}: {d}' for b, (_ok, d) in available.items())})",
                                 "enable " + " or ".join(BACKEND_NEEDS.values()))
    if name not in BACKENDS:
        raise ParameterError(f"unknown tunnel backend {name!r}", f"use one of {', '.join(BACKENDS)} or auto")
    ok, detail = available[name]
    if not ok:
        raise EnvironmentProblem(f"tunnel backend {name} is not available on this kernel ({detail})",
                                 f"enable {BACKEND_NEEDS[name]}, or use tunnel=auto")
    return name


def backend(name: str = "auto") -> TunnelBackend:
    """The backend by name; "auto" picks ip6tnl, else seg6, else userspace."""
    if name == "auto":
        name = choose_backend(name, probe_backends())
    if name == "seg6":
        return Seg6Backend()
    if name == "ip6tnl":
        return Ip6tnlBackend()
    if name == "userspace":
        return UserspaceBackend()
    raise ValueError(f"unknown tunnel backend {name!r}; use one of {BACKENDS} or auto")
