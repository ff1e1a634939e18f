"""PANA client agent: MIPv6 bootstrapping alone, without the rest of the mobile node.

Runs mip6bench.runtime.pana_client.PanaClient (PacCore over UDP 716, EAP-PSK with the
MN's NAI and key, unicast or multicast-with-Router-Alert discovery) and logs what the
bootstrap yields (HA, HoA, MIPv6 SA, NSIS token; re-keying; termination), the same
events the MN agent logs when it composes the client (agents/mn.py, option `pana`).
For tests and tools that want a PaC without Mobile IPv6 (a second PaC on an MN node
takes another port: option `port` 0). A PAA or PANA relay element listening on another
port than 716 (OpenPANA's default PAA port is 5555): option `paa_port`.

Options: those of mip6bench.runtime.pana_client.PanaOptions, plus static_* (the static
Mobile IPv6 configuration to fall back on when the PAA grants nothing).

Control commands: pana-start, pana-reauth, pana-terminate, pana-ping {paa}, pana-status,
bootstrap (the current result, with the SA's key length but never the key),
wait-event {event, match, after_ns, within} (blocks until such an event is logged).
"""
from __future__ import annotations

import dataclasses
import os
import sys

if __package__ in (None, ""):  # run as a script: agents/pac.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6bench.runtime.agent import Agent, forwarded_commands, run
from mip6bench.runtime.mobility import WaitableEvents
from mip6bench.runtime.pana_client import PanaClient, PanaOptions, StaticMip6


@dataclasses.dataclass(frozen=True)
class Options(PanaOptions):
    static_ha: str | None = None              # fallback when the PAA grants nothing
    static_hoa: str | None = None
    static_prefix: str | None = None
    static_spi: int | None = None
    static_key: str | None = None             # hex


class PacAgent(WaitableEvents, Agent):
    role = "pac"
    Options = Options

    async def start(self) -> None:
        self._init_waitable()
        o = self.options
        static = None
        if any(v is not None for v in (o.static_ha, o.static_hoa, o.static_spi)):
            key = bytes.fromhex(o.static_key) if o.static_key else None
            static = StaticMip6(o.static_ha, o.static_hoa, o.static_prefix, o.static_spi, key)
        config = o.client_config(static)
        # The bootstrap result is a MobilitySA: load mip6bench.mipv6 now, at start-up, rather
        # than on the first SA (that import would sit on the measured path).
        import mip6bench.mipv6.sa  # noqa: F401
        self.client = PanaClient(config, emit=self.emit)
        await self.client.open()
        if o.autostart:
            self.client.start()

    async def stop(self) -> None:
        await self.client.close()

    def status(self) -> dict:
        return {"pana": self.client.status()}

    def commands(self):   # called before start(): resolve the client per request
        async def bootstrap(_req):
            b = self.client.bootstrap
            if b is None:
                return None
            out = b.summary()
            out["key_len"] = len(b.sa.key) if b.sa else 0
            out["token"] = b.token.hex() if b.token else None
            return out

        return {**forwarded_commands(PanaClient.COMMANDS, lambda: self.client),
                "bootstrap": bootstrap, "wait-event": self.cmd_wait_event}


if __name__ == "__main__":
    sys.exit(run(PacAgent))
