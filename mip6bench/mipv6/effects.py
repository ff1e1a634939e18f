"""Effects the Mobile IPv6 cores ask the runtime to apply (frozen dataclasses).

Home agent and correspondent node (binding cache):
    InstallBinding(hoa, coa, lifetime, expires_at, home_registration, link_local)
        a binding cache entry was created or refreshed (or moved to a new CoA). On a HA
        (home_registration=True) the runtime intercepts the HoA on the home link (proxy
        ND, also for the link-local address when link_local) and tunnels to the CoA; on a
        CN it sends to the HoA with a type 2 routing header via the CoA and accepts
        packets from the CoA carrying the Home Address option.
    RemoveBinding(hoa, coa, home_registration, reason)
    RequestDAD(hoa, link_local)  (HA only) Duplicate Address Detection for a new home
        registration (RFC 4862 5.4): send one Neighbor Solicitation for ``hoa`` from ::
        on the home link (joining its solicited-node group), then call
        ``HomeAgent.dad_probe_sent(hoa, now)``; report every NS/NA seen there for it
        with ``HomeAgent.neighbor_seen``. The core decides when DAD succeeded.
    FetchSA(spi)  (HA only) fetch the SA with this SPI from the PAA (SA distribution),
        then call ``HomeAgent.sa_fetched(spi, found, now)``; Binding Updates waiting
        for it come back from there.
Both ends of the bidirectional tunnel (HA and MN):
    TunnelUp(hoa, local, remote)   (re)point the tunnel for ``hoa`` at local<->remote;
        replaces an earlier tunnel for the same hoa.
    TunnelDown(hoa, reason)
Mobile node:
    HomeRegistered(ha, hoa, coa, lifetime, expires_at)
    HomeDeregistered(ha, hoa)
    RegistrationFailed(ha, hoa, coa, status, reason)   status None when no BA came
    RouteOptimizationOn(cn, hoa, coa, lifetime, expires_at)
        send to ``cn`` from the CoA with a Home Address option; expect packets from it
        with a type 2 routing header.
    RouteOptimizationOff(cn, hoa, reason)  use the bidirectional tunnel for ``cn``.

Besides effects the cores return ``Transmit`` (mip6bench.sansio) for every Mobility
Header to send, as an ``MhTransmit``: ``data`` is the complete MH with its checksum
already computed for the final addresses; ``src``/``dst`` are the IPv6 header addresses
and the typed fields say how to send it:
    via:  "tunnel" (reverse-tunnel through the HA: HoTI) or "direct"
    hao:  home address to put in a Home Address destination option (or None)
    rh2:  home address to put in a type 2 routing header (dst is then the CoA; or None)
``mip6bench.ipv6.build_ipv6_packet`` builds such a packet for a raw socket.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mip6bench.sansio import Effect, Transmit


@dataclass(frozen=True)
class MhTransmit(Transmit):
    """A Mobility Header to send (see the module docstring)."""

    via: str = field(default="direct", kw_only=True)
    hao: str | None = field(default=None, kw_only=True)
    rh2: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class InstallBinding(Effect):
    hoa: str
    coa: str
    lifetime: float
    expires_at: float
    home_registration: bool
    link_local: bool = False


@dataclass(frozen=True)
class RemoveBinding(Effect):
    hoa: str
    coa: str
    home_registration: bool
    reason: str


@dataclass(frozen=True)
class RequestDAD(Effect):
    hoa: str
    link_local: bool = False


@dataclass(frozen=True)
class FetchSA(Effect):
    spi: int


@dataclass(frozen=True)
class TunnelUp(Effect):
    hoa: str
    local: str
    remote: str


@dataclass(frozen=True)
class TunnelDown(Effect):
    hoa: str
    reason: str


@dataclass(frozen=True)
class HomeRegistered(Effect):
    ha: str
    hoa: str
    coa: str
    lifetime: float
    expires_at: float


@dataclass(frozen=True)
class HomeDeregistered(Effect):
    ha: str
    hoa: str


@dataclass(frozen=True)
class RegistrationFailed(Effect):
    ha: str
    hoa: str
    coa: str
    status: int | None
    reason: str


@dataclass(frozen=True)
class RouteOptimizationOn(Effect):
    cn: str
    hoa: str
    coa: str
    lifetime: float
    expires_at: float


@dataclass(frozen=True)
class RouteOptimizationOff(Effect):
    cn: str
    hoa: str
    reason: str


# pinholes_ready's reason when the NSIS initiator gave a session up for want of an
# answer (natfw.mobile.NO_RESPONSE): nobody refused anything.
PINHOLES_UNANSWERED = "no response"


@dataclass(frozen=True)
class OpenPinholes(Effect):
    """Firewall traversal (NSIS NATFW): open the firewall in front of `cn` for `phase`
    "rr" (return routability and the correspondent BU: HoTI/BU from the HoA, CoTI/BU
    from the CoA) or "data" (route-optimised data from the CoA with a Home Address
    option); with the MN's own foreign network behind a firewall also "inbound" (`cn`
    is then the HA: its tunnel to the CoA), "inbound_ro" (the CN's RH2 data to the
    CoA) and "data_inbound" ("data" and "inbound_ro" in one round), signalled with
    NATFW EXT (mip6bench.natfw.mobile). The runtime answers with
    MobileNode.pinholes_ready(...)."""
    cn: str
    hoa: str
    coa: str
    phase: str


@dataclass(frozen=True)
class ClosePinholes(Effect):
    """The pinholes opened for `coa` toward `cn` are no longer needed (movement,
    returning home, RO stopped): tear them down (they also expire on their own)."""
    cn: str
    hoa: str
    coa: str
    reason: str
    moving: bool = False       # the MN moves on: the sessions are re-signalled for the new CoA
