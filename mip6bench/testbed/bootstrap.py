"""The management plane in the testbed: AAA server (the embedded one or hostapd), PAA and
Router Alert forwarders; and what the MIPv6 agents need to bootstrap through it.

    tb.bootstrap_settings = BootstrapSettings(aaa="radius", sa="pull")   # before start
    with Testbed(...) as tb:                  # start_agents() creates and starts BootstrapServices
        svc = tb.bootstrap
        svc.user(1)                           # Credential of mn1 (NAI, PSK, HoA)
        svc.pac_options("mn1", "multicast")   # PanaOptions: the MN agent's `pana`, agents/pac.py's
        svc.ha_channel_options()              # the HA agent's SA distribution channel
        svc.fw_authz_options()                # the fw agent's authorization client

The secrets exist from the constructor on, so the testbed builds the MIPv6 agents'
options (topology mipv6=bootstrap: each MN agent runs PANA itself, the HA agent the HA
end of SA distribution) before it starts the services.

Per run it generates: a credentials file (mn<k>@mip6bench.example, a random 16-byte PSK,
the plan's Home Address for MN k), the RADIUS shared secret, the PAA-HA SA distribution
key and the NSIS token key (key id 1), all in the run's state directory
(/run/mip6bench/<run>/), which the run removes. Each firewall of the plan (Plan.
firewalls(): fw, and hfw with ha_firewall=on) has its own firewall-PAA authorization
key (NATFW authorization pull, mip6bench.aaa.authz), written once, on first use, to
secrets/<fw>-paa.psk there: the directory 0700, the file 0600 from its creation; the
PAA gets every firewall (its outside address) as a peer with its file in `authz_peers`,
each fw agent its own file through fw_authz_options(<fw>).

aaa="embedded": agents/aaa.py on the aaa node. aaa="radius": hostapd on the aaa node as a
RADIUS server with EAP-PSK (driver=none, eap_server=1), its eap_user file generated from
the same credentials; the testbed waits until it answers a real Access-Request over the
aaa node's loopback (no fixed sleep) and stops it by pid with the node. hostapd returns
no Framed-IPv6-Address, so the PAA takes fixed Home Addresses from the credentials file
(it reads it in both modes). Forwarders run on the access routers, the core (not toward
the firewall: the CN's site is not where PAAs are) and the home agent.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mip6bench.aaa.credentials import (Credential, format_credentials, hostapd_eap_user,
                                       secret_dir, write_psk_file)
from mip6bench.aaa.radius_client import RadiusAnswer, RadiusClientConfig, RadiusClientCore
from mip6bench.aaa.sadist import SADIST_PORT
from mip6bench.errors import EnvironmentProblem, Mip6benchError, ParameterError
from mip6bench.net import rao
from mip6bench.net.capabilities import which
from mip6bench.net.netns import in_netns
from mip6bench.pana.message import PANA_PORT
from mip6bench.slowdown import scaled
from mip6bench.secretfiles import write_secret_file
from mip6bench.testbed.operational import HOME_PREFIX

NAI_DOMAIN = "mip6bench.example"
SERVER_ID = "aaa.mip6bench.example"
TOKEN_KEY_ID = 1


@dataclass
class BootstrapSettings:
    aaa: str = "embedded"          # "embedded" (agents/aaa.py) | "radius" (hostapd)
    sa: str = "push"               # "push" | "pull"
    discovery: str = "multicast"   # how the MN agents find the PAA: "multicast" | "unicast"
    autostart: bool = True         # MN agents authenticate on their first address (else: pana-start)
    forwarders: bool = True
    session_lifetime: int = 3600
    sa_lifetime: int = 600
    token_lifetime: int = 3600
    token_flows: list[str] = field(default_factory=lambda: ["mh:2001:db8:2::/64",
                                                            "any:2001:db8:2::/64"])
    eap_in_first_par: str = "auto"  # the PAA's first EAP request: "auto" | "always" | "never"
    extra_paa_options: dict[str, Any] = field(default_factory=dict)
    pac_extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # MN name -> PanaOptions fields

    def __post_init__(self):
        if self.aaa not in ("embedded", "radius"):
            raise ParameterError(f"aaa={self.aaa!r}", "choose embedded or radius")
        if self.sa not in ("push", "pull"):
            raise ParameterError(f"sa={self.sa!r}", "choose push or pull")
        if self.discovery not in ("multicast", "unicast"):
            raise ParameterError(f"discovery={self.discovery!r}", "choose multicast or unicast")
        if self.eap_in_first_par not in ("auto", "always", "never"):
            raise ParameterError(f"eap_in_first_par={self.eap_in_first_par!r}",
                                 "choose auto, always or never")


class BootstrapServices:
    def __init__(self, tb, settings: BootstrapSettings | None = None):
        self.tb = tb
        self.settings = settings or BootstrapSettings()
        plan = tb.plan
        self.paa_address = plan.nodes["paa"].address()
        self.aaa_address = plan.nodes["aaa"].address()
        self.ha_address = plan.nodes["ha"].address("ha-home")
        # Every firewall's authorization channel: its outside address (where its requests
        # come from) and its own PSK (see authz_psk_path).
        self.fw_addresses = {fw.name: fw.address(fw.extra["outside"]) for fw in plan.firewalls()}
        self.fw_address = self.fw_addresses.get("fw")
        self.radius_secret = secrets.token_hex(16)
        self.sadist_psk = secrets.token_bytes(32)
        self.token_key = secrets.token_bytes(32)
        self.authz_psks = {name: secrets.token_bytes(32) for name in self.fw_addresses}
        self.authz_psk = self.authz_psks.get("fw")
        self._authz_psk_paths: dict[str, Any] = {}
        self.users = [Credential(f"mn{k}@{NAI_DOMAIN}", secrets.token_bytes(16),
                                 plan.hoa(k)) for k in range(1, plan.params["mns"] + 1)]
        self.credentials_path = None
        self.hostapd = None
        self.agents: list = []
        self.forwarders: list[str] = []

    # ---- what clients need
    def user(self, k: int) -> Credential:
        return self.users[k - 1]

    def pac_options(self, mn: str, discovery: str = "multicast", paa: str | None = None,
                    paa_port: int = PANA_PORT, **extra) -> dict[str, Any]:
        """PanaOptions (mip6bench.runtime.pana_client) for MN `mn`: the MN agent's `pana`
        option, or agents/pac.py's options. With unicast discovery the PaC talks to `paa`
        (default: the testbed's PAA) on `paa_port` (716; e.g. a PANA relay element, or
        another PAA, on another port); multicast discovery uses the group on 716, which
        the Router Alert forwarders carry to the PAA."""
        k = int(mn[2:])
        user = self.user(k)
        spec = self.tb.plan.nodes[mn]
        if not 1 <= paa_port <= 65535:
            raise ParameterError(f"paa_port={paa_port}", "give a UDP port, 1-65535")
        if discovery == "multicast":
            if paa is not None or paa_port != PANA_PORT:
                raise ParameterError("multicast discovery goes to the PANA group on port "
                                     f"{PANA_PORT}", "give paa and paa_port with "
                                     "discovery=unicast")
            network = self.tb.attached_network(mn) or spec.extra["attached"]
            paa = rao.DISCOVERY_GROUP
            interface = spec.extra["interfaces"][network]
        elif discovery == "unicast":
            paa, interface = paa or self.paa_address, None
        else:
            raise ParameterError(f"discovery={discovery!r}", "choose unicast or multicast")
        return {"nai": user.nai, "psk": user.psk.hex(), "paa": paa, "paa_port": paa_port,
                "discovery": discovery, "interface": interface,
                "expected_server_id": SERVER_ID, **extra}

    def ha_channel_options(self) -> dict[str, Any]:
        """What the HA end of SA distribution needs: {peers: {PAA address: PSK hex},
        port} (the HA agent's sadist_peers and sadist_port)."""
        return {"peers": {self.paa_address: self.sadist_psk.hex()}, "port": SADIST_PORT}

    def authz_psk_path(self, fw: str = "fw"):
        """Firewall `fw`'s PSK file toward the PAA (<fw>-paa.psk), written on first use
        (0600 from its creation, in the 0700 secrets/). One key per firewall, not one
        shared file: the PAA tells its peers apart by key as well as by address, so a
        firewall that leaks its key cannot ask (or answer) in another firewall's name,
        and a firewall node only ever holds its own key."""
        if fw not in self._authz_psk_paths:
            if fw not in self.authz_psks:
                raise Mip6benchError(f"no firewall named {fw} in the plan")
            directory = secret_dir(self.tb.run.state_dir)
            self._authz_psk_paths[fw] = write_psk_file(directory / f"{fw}-paa.psk",
                                                       self.authz_psks[fw])
        return self._authz_psk_paths[fw]

    def token_key_path(self):
        """The NSIS token key (shared by the PAA, which mints, and the firewall, which
        verifies), written on first use (0600 in the 0700 secrets/)."""
        if getattr(self, "_token_key_path", None) is None:
            directory = secret_dir(self.tb.run.state_dir)
            self._token_key_path = write_psk_file(directory / "nsis-token.key", self.token_key)
        return self._token_key_path

    def fw_authz_options(self, fw: str = "fw") -> dict[str, Any]:
        """The authorization client of the fw agent on firewall `fw` (mip6bench.runtime.
        authz_client.authorization_client_for): {paa, port, psk_file, bind}."""
        return {"paa": self.paa_address, "port": SADIST_PORT,
                "psk_file": str(self.authz_psk_path(fw)), "bind": self.fw_addresses[fw]}

    def token_flows(self) -> list[str]:
        """The flows a token (and a pull authorization) allows: the settings' (toward the
        CN's network), and with ha_firewall=on the two an MN needs toward its home agent
        through the home network's firewall: its BU (Mobility Header) and its reverse
        tunnel (IPv6-in-IPv6, protocol 41)."""
        flows = list(self.settings.token_flows)
        if "hfw" in self.tb.plan.nodes:
            ha = f"{self.ha_address}/128"
            flows += [f for f in (f"mh:{ha}", f"41:{ha}") if f not in flows]
        return flows

    # ---- lifecycle
    def start(self) -> "BootstrapServices":
        self.write_credentials()
        if self.settings.aaa == "embedded":
            self._agent("aaa", "aaa", "aaa", {
                "credentials": str(self.credentials_path),
                "clients": {self.paa_address: self.radius_secret}, "server_id": SERVER_ID})
        else:
            self._start_hostapd()
        s = self.settings
        self._agent("paa", "paa", "paa", {
            "address": self.paa_address, "ha_address": self.ha_address,
            "home_prefix": HOME_PREFIX, "interface": "paa-home", "backend": "radius",
            "aaa_kind": "embedded" if s.aaa == "embedded" else "hostapd",
            "radius_server": self.aaa_address, "radius_secret": self.radius_secret,
            "credentials": str(self.credentials_path), "session_lifetime": s.session_lifetime,
            "sa_lifetime": s.sa_lifetime, "sa_mode": s.sa, "sadist_psk": self.sadist_psk.hex(),
            "token_key": self.token_key.hex(), "token_key_id": TOKEN_KEY_ID,
            "token_lifetime": s.token_lifetime, "token_flows": self.token_flows(),
            "authz_peers": {address: str(self.authz_psk_path(name))
                            for name, address in self.fw_addresses.items()},
            "relays": self.relay_addresses(), "eap_in_first_par": s.eap_in_first_par,
            **s.extra_paa_options})
        if s.forwarders:
            for node, interfaces in self.forwarder_interfaces().items():
                self._agent(node, "rao", "rao_forwarder", {"interfaces": interfaces})
                self.forwarders.append(node)
        return self

    def relay_addresses(self) -> list[str]:
        """Where the PAA accepts PRY messages from: every address of the access routers,
        the nodes a PANA relay element (agents/pre.py) runs on; it answers from whichever
        address the route back to the PAA picks."""
        return sorted({address.split("/")[0] for ar in self.tb.plan.by_role("ar")
                       for _intf, address in ar.addresses})

    def forwarder_interfaces(self) -> dict[str, list[str]]:
        plan = self.tb.plan
        out = {}
        for ar in plan.by_role("ar"):
            out[ar.name] = [ar.extra["lan_intf"], f"{ar.name}-core"]
        ha = plan.nodes["ha"]
        uplink = next(intf for dst, _gw, intf in ha.routes if dst == "default")
        home_edge = "hfw" if "hfw" in plan.nodes else "ha"
        out["core"] = [f"core-{ar.name}" for ar in plan.by_role("ar")] + [f"core-{home_edge}"]
        if home_edge == "hfw":
            # The home network's firewall passes discovery on toward the PAA's link.
            out["hfw"] = ["hfw-core", "hfw-ha"]
        out["ha"] = [uplink, "ha-home"]
        return out

    def _agent(self, node: str, name: str, role: str, options: dict):
        proc = self.tb.start_agent(node, name, role, options)
        self.agents.append(proc)
        return proc

    # ---- hostapd
    def hostapd_config(self) -> dict[str, str]:
        run = self.tb.run
        d = run.state_dir
        return {
            "hostapd.conf": "\n".join([
                "driver=none", "interface=mip6b-aaa0", "eap_server=1",
                f"eap_user_file={d / 'hostapd.eap_user'}",
                f"radius_server_clients={d / 'hostapd.clients'}",
                "radius_server_auth_port=1812", "radius_server_acct_port=0",
                "radius_server_ipv6=1", f"server_id={SERVER_ID}",
                "logger_stdout=-1", "logger_stdout_level=2", ""]),
            "hostapd.eap_user": hostapd_eap_user(self.users),
            "hostapd.clients": f"{self.paa_address}/128\t{self.radius_secret}\n"
                               f"::1/128\t{self.radius_secret}\n",
        }

    def write_credentials(self) -> Path:
        """The run's credentials file (users' PSKs), 0600 from its creation."""
        self.credentials_path = write_secret_file(self.tb.run.state_dir / "credentials.txt",
                                                  format_credentials(self.users),
                                                  replace=True)
        return self.credentials_path

    def write_hostapd_files(self) -> Path:
        """hostapd's configuration, users (PSKs) and clients (RADIUS secret), each 0600
        from its creation, into the run's state directory (0700)."""
        d = self.tb.run.state_dir
        for name, text in self.hostapd_config().items():
            write_secret_file(d / name, text, replace=True)
        return d

    def _start_hostapd(self) -> None:
        binary = which("hostapd") or ("/usr/sbin/hostapd"
                                      if os.access("/usr/sbin/hostapd", os.X_OK) else None)
        if binary is None:
            raise EnvironmentProblem("hostapd is missing (aaa=radius runs it as the RADIUS "
                                     "server)", "apt install hostapd, or run `make setup`")
        d = self.write_hostapd_files()
        node = self.tb.node("aaa")
        t0 = time.monotonic()
        self.hostapd = node.start_service([binary, str(d / "hostapd.conf")], "hostapd")
        self.tb.log.emit("hostapd.started", pid=self.hostapd.pid)
        try:
            waited = self._wait_hostapd(node.pid)
        except Exception:
            self.hostapd.stop()
            raise
        self.tb.log.emit("hostapd.ready", pid=self.hostapd.pid, probes=waited,
                         wait_ms=round((time.monotonic() - t0) * 1000, 3))

    def _wait_hostapd(self, pid: int, deadline_s: float = 10.0) -> int:
        """Send real Access-Requests (EAP-Response/Identity of the first user) over the aaa
        node's loopback until hostapd's RADIUS server answers with a verified response.
        (A known user: hostapd 2.10 cannot send the Access-Reject for an unknown one over
        IPv6, its sendto gets an IPv4-sized address and fails with EINVAL.)"""
        from mip6bench.eap.packet import identity_response
        from mip6bench.runtime.driver import CoreDriver

        eap = identity_response(1, self.users[0].nai.encode()).encode()
        sock = in_netns(pid, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        client = RadiusClientCore(RadiusClientConfig("::1", self.radius_secret.encode(),
                                                     nas_identifier="testbed-probe"))
        answers: list[RadiusAnswer] = []
        # The probe's own cadence (50 ms, then cancel) replaces the client's
        # retransmission timers, so they never come due here.
        driver = CoreDriver(send=lambda t: sock.sendto(t.data, (t.dst, t.port)),
                            on_timer=client.handle_timer, emit=lambda name, **fields: None,
                            apply=lambda effect: answers.append(effect)
                            if isinstance(effect, RadiusAnswer) else None,
                            clock=time.monotonic)
        probes = 0
        deadline_s = scaled(deadline_s)
        end = time.monotonic() + deadline_s
        try:
            sock.settimeout(0.05)
            while time.monotonic() < end:
                if not self.hostapd.alive():
                    raise Mip6benchError(f"hostapd exited while starting: {self._hostapd_log_tail()}",
                                         f"see {self.hostapd.log_path}")
                probes += 1
                driver.execute(client.request(probes, eap, driver.now(),
                                              user_name=self.users[0].nai))
                try:
                    data, addr = sock.recvfrom(4096)
                except (socket.timeout, ConnectionRefusedError):
                    driver.execute(client.cancel(probes))
                    continue
                driver.execute(client.receive(data, addr[0], addr[1], driver.now()))
                if answers:
                    return probes
                driver.execute(client.cancel(probes))
        finally:
            driver.close()
            sock.close()
        raise Mip6benchError(f"hostapd did not answer RADIUS on the aaa node within "
                             f"{deadline_s:g} s ({probes} probes): {self._hostapd_log_tail()}",
                             f"see {self.hostapd.log_path}")

    def _hostapd_log_tail(self, lines: int = 3) -> str:
        try:
            text = self.hostapd.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:]) or "empty log"
