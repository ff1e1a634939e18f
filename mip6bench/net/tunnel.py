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
        is the netns-wide `ip sr tunsrc` (HA address on the HA, the CoA on the MN).
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
`MobilityKernel` calls run synchronously (iproute2 batches, rtnetlink dumps); agents run
them on a worker thread.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
import subprocess
from typing import Any

from mip6bench.net import rtnl
from mip6bench.net.intercept import AGENT_MARK, AGENT_MARK_PREF
from mip6bench.net.kernel import RT_TABLE_LOCAL, RT_TABLE_MAIN, DadMode
from mip6bench.net.netns import write_sysctls

DECAP_TABLE = 137
TUNNEL_TABLE = 138
DECAP_PREF = 10
LOCAL_PREF = 15
HOME_ADDRESS_PREF = 20
IPPROTO_IPV6 = 41
LAST_RESORT_METRIC = 0xFFFFFFFF
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1
MN_TUNNEL_DEVICE = "mip6tnl"
BACKENDS = ("ip6tnl", "seg6", "userspace")   # the order "auto" prefers them in
# What each backend needs from the kernel, for error messages and `mip6bench doctor`.
BACKEND_NEEDS = {
    "ip6tnl": "CONFIG_IPV6_TUNNEL (modprobe ip6_tunnel)",
    "seg6": "CONFIG_IPV6_SEG6_LWTUNNEL",
    "userspace": "CONFIG_TUN (modprobe tun)",
}


def mark_rule_request(priority: int, mark: int, table: int) -> str:
    return f"rule add pref {priority} fwmark {mark:#x} lookup {table}"


def ip6tnl_request(name: str, local: str, remote: str) -> str:
    """An ip6ip6 tunnel without the RFC 2473 encapsulation limit option (which would put
    a Destination Options header before the inner packet)."""
    return f"tunnel add {name} mode ip6ip6 local {local} remote {remote} encaplimit none ttl 64"


def seg6_encap_route(dst: str, segment: str, dev: str, table: int | None = None) -> str:
    """IPv6-in-IPv6 toward `segment` with no SRH (seg6 reduced encapsulation, one segment)."""
    where = f" table {table}" if table is not None else ""
    return f"route replace {dst} encap seg6 mode encap.red segs {segment} dev {dev}{where}"


def seg6local_dt6_route(dst: str, lookup_table: int, dev: str, table: int) -> str:
    """Decapsulate and look the inner packet up in `lookup_table` (End.DT6)."""
    return f"route replace {dst} encap seg6local action End.DT6 table {lookup_table} dev {dev} table {table}"


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


class KernelError(OSError):
    """An iproute2 command failed; the message is its error output."""


class MobilityKernel:
    """The kernel state of this process's namespace, as the Mobile IPv6 agents change it.

    Writes go through one `ip -6 -batch -` run per call (a few ms, and no pyroute2 import
    in the agents); reads are rtnetlink dumps (mip6bench.net.rtnl); sysctls are files.
    """

    def __init__(self, ip_binary: str = "ip"):
        self.ip = ip_binary
        self._index: dict[str, int] = {}

    def close(self) -> None:
        pass

    # --- running iproute2
    def run(self, *commands: str, quiet: bool = False) -> None:
        """Run the commands in one batch; unless `quiet`, KernelError on any failure
        (quiet: failures such as "no such route" are expected and ignored)."""
        if not commands:
            return
        argv = [self.ip, "-6"] + (["-force"] if quiet else []) + ["-batch", "-"]
        proc = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
        if proc.returncode and not quiet:
            raise KernelError(f"{'; '.join(commands)}: {proc.stderr.strip()}")

    # --- reads
    def ifindex(self, name: str) -> int:
        if name not in self._index:
            try:
                self._index[name] = socket.if_nametoindex(name)
            except OSError:
                raise LookupError(f"no interface {name!r}") from None
        return self._index[name]

    def links(self) -> list[dict]:
        return rtnl.links()

    def addresses(self, ifname: str | None = None) -> list[dict]:
        index = self.ifindex(ifname) if ifname else None
        return [a for a in rtnl.addresses() if index is None or a["index"] == index]

    def rules(self) -> list[dict]:
        proc = subprocess.run([self.ip, "-6", "-j", "rule", "show"], capture_output=True, text=True)
        return json.loads(proc.stdout or "[]")

    def routes(self, table: int | str = "main") -> list[dict]:
        proc = subprocess.run([self.ip, "-6", "-j", "route", "show", "table", str(table)],
                              capture_output=True, text=True)
        return json.loads(proc.stdout or "[]")

    def proxy_entries(self, ifname: str) -> list[str]:
        proc = subprocess.run([self.ip, "-6", "-j", "neigh", "show", "proxy", "dev", ifname],
                              capture_output=True, text=True)
        return [n["dst"] for n in json.loads(proc.stdout or "[]") if "dst" in n]

    # --- links, addresses, sysctls
    def set_link(self, name: str, *, up: bool | None = None, mtu: int | None = None) -> None:
        parts = [f"link set dev {name}"]
        if mtu is not None:
            parts.append(f"mtu {mtu}")
        if up is not None:
            parts.append("up" if up else "down")
        self.run(" ".join(parts))

    def sysctl(self, values: dict[str, str | int]) -> None:
        write_sysctls(None, values)

    def add_address(self, ifname: str, address: str, prefixlen: int, dad: DadMode = DadMode.OFF,
                    replace: bool = False) -> None:
        flag = {DadMode.STANDARD: "", DadMode.OPTIMISTIC: " optimistic", DadMode.OFF: " nodad"}[DadMode(dad)]
        verb = "replace" if replace else "add"
        self.run(f"addr {verb} {address}/{prefixlen} dev {ifname}{flag}")

    def del_address(self, ifname: str, address: str, prefixlen: int) -> None:
        self.run(f"addr del {address}/{prefixlen} dev {ifname}", quiet=True)

    def add_proxy_ndp(self, ifname: str, address: str) -> None:
        self.run(f"neigh replace proxy {address} dev {ifname}")

    def del_proxy_ndp(self, ifname: str, address: str) -> None:
        self.run(f"neigh del proxy {address} dev {ifname}", quiet=True)

    # --- routes
    def add_route(self, dst: str, *, dev: str, table: int | None = None) -> None:
        where = f" table {table}" if table is not None else ""
        self.run(f"route replace {dst} dev {dev}{where}")

    def delete_route_quietly(self, dst: str, table: int | None = None) -> None:
        where = f" table {table}" if table is not None else ""
        self.run(f"route del {dst}{where}", quiet=True)

    def flush_table(self, table: int) -> None:
        self.run(f"route flush table {table}", quiet=True)

    # --- policy rules
    def rules_at(self, priority: int) -> list[dict]:
        return [r for r in self.rules() if r.get("priority") == priority]

    def reconfigure(self, priorities: tuple[int, ...], tables: tuple[int, ...], commands: list[str],
                    local_pref: int | None) -> None:
        """Start from a clean slate and apply `commands`, in one batch: remove our rules
        at `priorities` and flush our `tables` (leftovers of an agent that was killed),
        run `commands`, and leave `lookup local` at `local_pref` (None: back at pref 0,
        where the kernel puts it). Deletions follow a snapshot of the rules, so every
        command in the batch is expected to succeed."""
        rules = self.rules()
        at = lambda pref: [r for r in rules if r.get("priority") == pref]  # noqa: E731
        local_at = lambda pref: sum(1 for r in at(pref) if r.get("table") == "local")  # noqa: E731
        batch = [f"rule del pref {p}" for p in priorities for _ in at(p)]
        batch += [f"route flush table {t}" for t in tables]
        target = 0 if local_pref is None else local_pref
        source = LOCAL_PREF if local_pref is None else 0
        if not local_at(target):
            batch.append(f"rule add pref {target} lookup local")
        batch += list(commands)
        batch += [f"rule del pref {source} lookup local"] * local_at(source)
        self.run(*batch)

    # --- tunnels
    def add_ip6tnl(self, name: str, local: str, remote: str) -> None:
        self.run(ip6tnl_request(name, local, remote), f"link set dev {name} up")
        self._index.pop(name, None)

    def delete_link_quietly(self, name: str) -> None:
        self.run(f"link del dev {name}", quiet=True)
        self._index.pop(name, None)


class TunnelBackend:
    name = ""
    # Whether the HA's nftables set checks reverse-tunnelled packets (CoA . inner
    # source), or the backend does it itself (userspace).
    kernel_reverse_check = True

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
    def ha_purge(self, k: MobilityKernel, home_prefix: str, home_interface: str) -> list[str]:
        """Remove what an earlier home agent of this node left when it died without
        tearing down (kill -9, a crash): its per-binding state, which nobody would ever
        remove, since the new agent holds no bindings: routes to home addresses (/128
        in the home prefix, main table; seg6 encapsulation or a tunnel device), proxy
        neighbour entries on the home link, ip6tnl devices. Call before ha_setup.
        Returns what was removed ("route <hoa>", "proxy <address>", "link <name>")."""
        home = ipaddress.IPv6Network(home_prefix, strict=False)
        removed, commands = [], []
        for route in k.routes("main"):
            dst = route.get("dst", "")
            if "/" in dst or route.get("type", "unicast") != "unicast":
                continue          # prefixes, and the HA's own local addresses
            try:
                inside = ipaddress.IPv6Address(dst) in home
            except ValueError:
                continue          # "default"
            if inside:
                commands.append(f"route del {dst}/128 table main")
                removed.append(f"route {dst}")
        for address in k.proxy_entries(home_interface):
            commands.append(f"neigh del proxy {address} dev {home_interface}")
            removed.append(f"proxy {address}")
        for link in k.links():
            if link["name"].startswith("m6t"):
                commands.append(f"link del dev {link['name']}")
                removed.append(f"link {link['name']}")
        k.run(*commands, quiet=True)
        return removed

    def ha_setup(self, k: MobilityKernel, ha_address: str, local_addresses: list[str],
                 decap_dev: str) -> None:
        raise NotImplementedError

    def ha_bind(self, k: MobilityKernel, hoa: str, coa: str, ha_address: str, uplink: str) -> None:
        raise NotImplementedError

    def ha_unbind(self, k: MobilityKernel, hoa: str) -> None:
        raise NotImplementedError

    def ha_teardown(self, k: MobilityKernel, local_addresses: list[str]) -> None:
        raise NotImplementedError

    # --- mobile node ---
    def mn_setup(self, k: MobilityKernel, ha_address: str, decap_dev: str) -> None:
        raise NotImplementedError

    def mn_point(self, k: MobilityKernel, hoa: str, coa: str, ha_address: str, dev: str) -> None:
        raise NotImplementedError

    def mn_down(self, k: MobilityKernel) -> None:
        """Stop tunnelling (at home, or the binding is gone)."""
        k.run(*[f"rule del pref {HOME_ADDRESS_PREF}"] * len(k.rules_at(HOME_ADDRESS_PREF)),
              f"route del default table {TUNNEL_TABLE}", quiet=True)

    def mn_teardown(self, k: MobilityKernel) -> None:
        raise NotImplementedError

    # --- shared pieces ---
    @staticmethod
    def _mn_home_address_rule(k: MobilityKernel, hoa: str) -> None:
        # Last resort in the tunnel table: while the tunnel route is unusable (its link
        # is down during a handover) the home address must not leak out untunnelled
        # through the main table's default route.
        commands = [f"route replace unreachable default metric {LAST_RESORT_METRIC} table {TUNNEL_TABLE}"]
        if not k.rules_at(HOME_ADDRESS_PREF):
            commands.append(f"rule add pref {HOME_ADDRESS_PREF} from {hoa} lookup {TUNNEL_TABLE}")
        k.run(*commands)

    @staticmethod
    def _reset(k: MobilityKernel, commands: list[str] = (), local_pref: int | None = None) -> None:
        k.reconfigure((DECAP_PREF, AGENT_MARK_PREF, HOME_ADDRESS_PREF), (DECAP_TABLE, TUNNEL_TABLE),
                      list(commands), local_pref)


class Seg6Backend(TunnelBackend):
    name = "seg6"

    def ha_setup(self, k, ha_address, local_addresses, decap_dev):
        self._reset(k, [
            f"sr tunsrc set {ha_address}",
            seg6local_dt6_route(f"{ha_address}/128", RT_TABLE_MAIN, decap_dev, DECAP_TABLE),
            # End.DT6 into main forwards the inner packet; the HA's own addresses must be
            # found there too, or packets from a MN to its HA would be forwarded away.
            *[f"route replace local {a}/128 dev lo table {RT_TABLE_MAIN}" for a in local_addresses],
            f"rule add pref {DECAP_PREF} to {ha_address} ipproto {IPPROTO_IPV6} lookup {DECAP_TABLE}",
            mark_rule_request(AGENT_MARK_PREF, AGENT_MARK, RT_TABLE_MAIN)], local_pref=LOCAL_PREF)

    def ha_bind(self, k, hoa, coa, ha_address, uplink):
        k.run(seg6_encap_route(f"{hoa}/128", coa, uplink))

    def ha_unbind(self, k, hoa):
        k.delete_route_quietly(f"{hoa}/128")

    def ha_teardown(self, k, local_addresses):
        self._reset(k, ["sr tunsrc set ::"])
        k.run(*[f"route del local {a}/128 table {RT_TABLE_MAIN}" for a in local_addresses], quiet=True)

    def mn_setup(self, k, ha_address, decap_dev):
        self._reset(k, [
            seg6local_dt6_route("default", RT_TABLE_LOCAL, decap_dev, DECAP_TABLE),
            f"rule add pref {DECAP_PREF} from {ha_address} ipproto {IPPROTO_IPV6} lookup {DECAP_TABLE}",
            mark_rule_request(AGENT_MARK_PREF, AGENT_MARK, RT_TABLE_MAIN)], local_pref=LOCAL_PREF)

    def mn_point(self, k, hoa, coa, ha_address, dev):
        k.run(f"sr tunsrc set {coa}", seg6_encap_route("default", ha_address, dev, TUNNEL_TABLE))
        self._mn_home_address_rule(k, hoa)

    def mn_teardown(self, k):
        self._reset(k, ["sr tunsrc set ::"])


class Ip6tnlBackend(TunnelBackend):
    name = "ip6tnl"

    def ha_setup(self, k, ha_address, local_addresses, decap_dev):
        self._reset(k, [mark_rule_request(AGENT_MARK_PREF, AGENT_MARK, RT_TABLE_MAIN)])

    @staticmethod
    def _aim(k, name, local, remote):
        """Point the ip6ip6 device `name` at new endpoints: in place where it exists
        (`ip -6 tunnel change`: the device, its routes and its link state stay, a
        handover costs one ioctl), else create it."""
        try:
            socket.if_nametoindex(name)
        except OSError:
            k.add_ip6tnl(name, local, remote)
            return
        k.run(f"tunnel change {name} mode ip6ip6 local {local} remote {remote} encaplimit none ttl 64",
              f"link set dev {name} up")

    def ha_bind(self, k, hoa, coa, ha_address, uplink):
        name = ha_tunnel_device(hoa)
        self._aim(k, name, ha_address, coa)
        k.add_route(f"{hoa}/128", dev=name)

    def ha_unbind(self, k, hoa):
        k.delete_link_quietly(ha_tunnel_device(hoa))  # takes its route with it

    def ha_teardown(self, k, local_addresses):
        for link in k.links():
            if link["name"].startswith("m6t"):
                k.delete_link_quietly(link["name"])
        self._reset(k)

    def mn_setup(self, k, ha_address, decap_dev):
        k.delete_link_quietly(MN_TUNNEL_DEVICE)
        self._reset(k, [mark_rule_request(AGENT_MARK_PREF, AGENT_MARK, RT_TABLE_MAIN)])

    def mn_point(self, k, hoa, coa, ha_address, dev):
        # On a handover only the local end (the CoA) changes. Re-creating the device
        # instead took seconds under load (12.9 s in the full-kernel lane).
        self._aim(k, MN_TUNNEL_DEVICE, coa, ha_address)
        k.add_route("default", dev=MN_TUNNEL_DEVICE, table=TUNNEL_TABLE)
        self._mn_home_address_rule(k, hoa)

    def mn_down(self, k):
        super().mn_down(k)
        k.delete_link_quietly(MN_TUNNEL_DEVICE)

    def mn_teardown(self, k):
        k.delete_link_quietly(MN_TUNNEL_DEVICE)
        self._reset(k)


class UserspaceBackend(TunnelBackend):
    """RFC 2473 in a forwarder process of the agent's (mip6bench.net.usertunnel): the
    kernel routes into its TUN device what goes into the tunnel; outer packets reach it
    on an AF_PACKET socket, and an nftables rule at priority raw drops the kernel's copy.
    The forwarder checks reverse-tunnelled packets itself (kernel_reverse_check False)."""

    name = "userspace"
    kernel_reverse_check = False

    def __init__(self):
        self.forwarder = None
        self.mtu: int | None = None

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

    def _start(self, k: MobilityKernel, role: str, device: str, address: str) -> None:
        self.prepare(role)
        self.forwarder.request("address", address=address)
        # No link-local address: nothing of the kernel's own (MLD, RS) goes into the tunnel.
        k.sysctl({f"net/ipv6/conf/{device}/addr_gen_mode": 1})
        self.mtu = None

    def _set_mtu(self, k: MobilityKernel, egress: str) -> int:
        """Tunnel MTU = egress link MTU - 40 (RFC 2473 section 7), on the TUN device (the
        kernel answers forwarded packets that do not fit) and in the forwarder."""
        from mip6bench.net.usertunnel import IPV6_HEADER_LEN, MIN_MTU, link_mtu

        mtu = max(MIN_MTU, link_mtu(egress) - IPV6_HEADER_LEN)
        if mtu != self.mtu:
            k.set_link(self.forwarder.tun_name, up=True, mtu=mtu)
            self.mtu = mtu
        return mtu

    def _stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None

    def counters(self) -> dict[str, int]:
        return self.forwarder.request("counters")["counters"] if self.forwarder else {}

    def close(self) -> None:
        self._stop()

    def status(self) -> dict:
        return {"backend": self.name, "forwarder_pid": self.forwarder.pid if self.forwarder else None}

    def ha_setup(self, k, ha_address, local_addresses, decap_dev):
        from mip6bench.net.usertunnel import HA_DEVICE

        self._reset(k, [mark_rule_request(AGENT_MARK_PREF, AGENT_MARK, RT_TABLE_MAIN)])
        self._start(k, "ha", HA_DEVICE, ha_address)
        k.set_link(HA_DEVICE, up=True)

    def ha_bind(self, k, hoa, coa, ha_address, uplink):
        mtu = self._set_mtu(k, uplink)
        self.forwarder.request("bind", hoa=hoa, coa=coa, mtu=mtu)
        k.add_route(f"{hoa}/128", dev=self.forwarder.tun_name)

    def ha_unbind(self, k, hoa):
        k.delete_route_quietly(f"{hoa}/128")
        if self.forwarder is not None:
            self.forwarder.request("unbind", hoa=hoa)

    def ha_teardown(self, k, local_addresses):
        self._stop()   # the TUN device goes with the process, and its routes with it
        self._reset(k)

    def mn_setup(self, k, ha_address, decap_dev):
        self._reset(k, [mark_rule_request(AGENT_MARK_PREF, AGENT_MARK, RT_TABLE_MAIN)])
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
