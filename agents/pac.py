"""PANA client agent: MIPv6 bootstrapping alone, without the rest of the mobile node.

Runs mip6bench.runtime.pana_client.PanaClient (PacCore over UDP 716, EAP-PSK with the
MN's NAI and key, unicast or multicast-with-Router-Alert discovery) and logs what the
bootstrap yields (HA, HoA, MIPv6 SA, NSIS token; re-keying; termination), the same
events the MN agent logs when it composes the client. Used by the bootstrap experiment
(mns=N) and the namespace tests; the MN agent composes PanaClient itself.

With `mn_control` set (the MN agent's control socket) each result is also handed to the
MN agent (mip6bench.runtime.bridge.MnBridge: bootstrap, sa-add, sa-remove), until the MN
agent composes PanaClient itself.

Control commands: pana-start, pana-reauth, pana-terminate, pana-ping, pana-status,
bootstrap (the current result, with the SA's key length but never the key).
"""
from __future__ import annotations

import dataclasses
import os
import sys

if __package__ in (None, ""):  # run as a script: agents/pac.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.eap.psk_crypto import psk_from_hex
from mip6bench.errors import ParameterError
from mip6bench.net import rao
from mip6bench.pana import mip6
from mip6bench.pana.channel import PCI_RETRANSMIT, RetransmitPolicy
from mip6bench.pana.message import PANA_PORT
from mip6bench.runtime.agent import Agent, run
from mip6bench.runtime.pana_client import PanaClient, PanaClientConfig, StaticMip6

REQUEST_NAMES = {"ha_info": mip6.REQUEST_HA_INFO, "home_address": mip6.REQUEST_HOME_ADDRESS,
                 "mip6_sa": mip6.REQUEST_MIP6_SA, "nsis_token": mip6.REQUEST_NSIS_TOKEN}


@dataclasses.dataclass(frozen=True)
class Options:
    nai: str
    psk: str                                  # 32 hex digits
    paa: str                                  # PAA address or the discovery group
    discovery: str = "unicast"                # "unicast" | "multicast"
    interface: str | None = None              # egress for multicast discovery
    request: list[str] = dataclasses.field(
        default_factory=lambda: ["ha_info", "home_address", "mip6_sa", "nsis_token"])
    sa_lifetime: int = 0                      # proposal (0: no preference)
    autostart: bool = True
    port: int = PANA_PORT
    rao_value: int = rao.DISCOVERY_RAO
    hop_limit: int = rao.DEFAULT_HOP_LIMIT
    pci_irt: float = PCI_RETRANSMIT.irt
    reauth_fraction: float = 0.8
    expected_server_id: str | None = None
    static_ha: str | None = None              # fallback when the PAA grants nothing
    static_hoa: str | None = None
    static_prefix: str | None = None
    static_spi: int | None = None
    static_key: str | None = None             # hex
    mn_control: str | None = None             # the MN agent's control socket: hand the
                                              # bootstrap result over (runtime.bridge)


class PacAgent(Agent):
    role = "pac"
    Options = Options

    async def start(self) -> None:
        o = self.options
        unknown = [r for r in o.request if r not in REQUEST_NAMES]
        if unknown:
            raise ParameterError(f"unknown request items {unknown}",
                                 f"known: {sorted(REQUEST_NAMES)}")
        flags = 0
        for name in o.request:
            flags |= REQUEST_NAMES[name]
        static = None
        if any(v is not None for v in (o.static_ha, o.static_hoa, o.static_spi)):
            key = bytes.fromhex(o.static_key) if o.static_key else None
            static = StaticMip6(o.static_ha, o.static_hoa, o.static_prefix, o.static_spi, key)
        try:
            config = PanaClientConfig(
                nai=o.nai, psk=psk_from_hex(o.psk), paa=o.paa, discovery=o.discovery,
                interface=o.interface, port=o.port, rao_value=o.rao_value,
                hop_limit=o.hop_limit, request=flags,
                sa_proposal=mip6.SaParameters(lifetime=o.sa_lifetime) if o.sa_lifetime else None,
                static=static, expected_server_id=o.expected_server_id,
                reauth_fraction=o.reauth_fraction,
                pci_retransmit=RetransmitPolicy(o.pci_irt, PCI_RETRANSMIT.mrt,
                                                PCI_RETRANSMIT.mrc, PCI_RETRANSMIT.mrd))
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        # The bootstrap result is a MobilitySA: load mip6bench.mipv6 now, at start-up, rather
        # than on the first SA (that import would sit on the measured path).
        import mip6bench.mipv6.sa  # noqa: F401
        self.bridge = None
        if o.mn_control:
            from mip6bench.runtime.bridge import MnBridge
            self.bridge = MnBridge(o.mn_control, self.emit)
        self.client = PanaClient(config, emit=self.emit, on_update=self._update)
        await self.client.open()
        if o.autostart:
            self.client.start()

    def _update(self, update) -> None:
        if self.bridge is not None:
            self.bridge.update(update, self.client._now())

    async def stop(self) -> None:
        await self.client.close()
        if self.bridge is not None:
            self.bridge.close()

    def status(self) -> dict:
        return {"pana": self.client.status()}

    def commands(self):   # called before start(): resolve the client per request
        def forward(name):
            async def handler(req):
                return await self.client.commands()[name](req)
            return handler

        async def bootstrap(_req):
            b = self.client.bootstrap
            if b is None:
                return None
            out = b.summary()
            out["key_len"] = len(b.sa.key) if b.sa else 0
            out["token"] = b.token.hex() if b.token else None
            return out

        names = ("pana-start", "pana-reauth", "pana-terminate", "pana-ping", "pana-status")
        return {**{n: forward(n) for n in names}, "bootstrap": bootstrap}


if __name__ == "__main__":
    sys.exit(run(PacAgent))
