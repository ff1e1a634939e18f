"""Configuration of the standard daemons the testbed runs in nodes (radvd)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouterAdvertising:
    interface: str
    prefix: str
    min_interval_ms: float = 30.0
    max_interval_ms: float = 70.0
    home_agent: bool = False  # AdvHomeAgentFlag + Home Agent Information option
    router_lifetime_s: int | None = None

    def radvd_conf(self) -> str:
        """radvd.conf for one interface. Intervals under 3 s are only allowed with the
        Mobile IPv6 extensions (RFC 6275 7.5): the Advertisement Interval option is on."""
        lines = [
            f"interface {self.interface} {{",
            "  AdvSendAdvert on;",
            f"  MinRtrAdvInterval {self.min_interval_ms / 1000:g};",
            f"  MaxRtrAdvInterval {self.max_interval_ms / 1000:g};",
            "  AdvIntervalOpt on;",
            f"  AdvHomeAgentFlag {'on' if self.home_agent else 'off'};",
        ]
        if self.router_lifetime_s is not None:
            lines.append(f"  AdvDefaultLifetime {self.router_lifetime_s};")
        if self.home_agent:
            lines.append("  AdvHomeAgentInfo on;")
        lines += [
            f"  prefix {self.prefix} {{",
            "    AdvOnLink on;",
            "    AdvAutonomous on;",
            "    AdvRouterAddr on;",
            "  };",
            "};",
        ]
        return "\n".join(lines) + "\n"
