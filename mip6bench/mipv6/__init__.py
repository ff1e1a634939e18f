"""Mobile IPv6 (RFC 6275) with RFC 4285 authentication: wire codec, crypto and sans-I/O cores.

Pure Python, no I/O: the cores take bytes and ``now`` (float seconds) and return
mip6bench.sansio actions (Transmit, StartTimer, StopTimer, Event) plus the effects in
``mip6bench.mipv6.effects``. Only the standard library and mip6bench.codec/sansio are
imported, so agents stay light.

Modules:
    constants  protocol numbers, status codes, RFC 6275 timers
    wire       Mobility Header messages/options, HAO, type 2 routing header, IPv6 packets
    crypto     return routability tokens, Kbm, BAD; RFC 4285 authenticators; NTP timestamps
    sa         MobilitySA and SAStore: how MN-HA keys reach the cores
    effects    InstallBinding, RemoveBinding, TunnelUp/Down, RequestDAD, FetchSA,
               HomeRegistered, HomeDeregistered, RegistrationFailed, RouteOptimizationOn/Off
    core       receive path shared by the cores, BindingCacheEntry, seq_newer
    ha         HomeAgent        cn  CorrespondentNode        mn  MobileNode
    attachment Attachment: the MN's movement detection, CoA decision, DAD modes,
               bootstrap results and PANA restarts (its effects are defined there)
"""
from importlib import import_module

__all__ = ["HomeAgent", "CorrespondentNode", "MobileNode", "MobilitySA", "SAStore"]

# Loaded on first use, so an agent imports only the core it runs (start-up time).
_HOMES = {"HomeAgent": "ha", "CorrespondentNode": "cn", "MobileNode": "mn", "MobilitySA": "sa", "SAStore": "sa"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f"mip6bench.mipv6.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
