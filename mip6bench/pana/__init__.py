"""PANA (RFC 5191, RFC 5609 state machines, RFC 6345 relay) with the seed paper's
Mobile IPv6 bootstrapping extension. Pure logic: no sockets, clocks or asyncio.

Modules
    message        wire codec: Message/Avp, decode_message, AVP builders and constants
    crypto         prf+, PANA_AUTH_KEY, AUTH AVP signing and verification
    mip6           extension AVPs (Vendor-Id 32473), PAA policy hooks, MN-HA key
    channel        sequence numbers, answer cache, retransmission backoff (shared)
    pac            PacCore: the PANA client (MN)
    paa            PaaCore: the authentication agent
    relay          RelayCore: the relay element (PRE)
    effects        effects for the runtime (SendToAAA, MipSaEstablished, ...)
    bootstrap      the PaC's bootstrap result (BootstrapTracker) and restart policy
    eap_interface  what the cores expect from EAP

Runtime contract (same for all three cores): feed every datagram received on UDP 716
to `receive(data, src, now, port)`, call `handle_timer(key, now)` when a StartTimer
fires (StopTimer cancels; StartTimer with the same key re-arms), execute Transmit
actions (send from port 716; honour PciTransmit.discovery "multicast" on the PaC's PCI by
adding the Router Alert option), apply effects and log Events. `now` is seconds on a
monotonic clock. Randomness (sequence numbers, session ids, nonces, Key-Ids, backoff
jitter, HoA/SPI choice) comes from the `rng` given to each core (default:
random.SystemRandom()).
"""
from importlib import import_module

# Loaded on first use, so an agent imports only the modules it runs (start-up time).
_HOMES = {
    "PCI_RETRANSMIT": "channel",
    "REQ_RETRANSMIT": "channel",
    "PanaSa": "channel",
    "Peer": "channel",
    "RetransmitPolicy": "channel",
    "AaaCancel": "effects",
    "MipSaEstablished": "effects",
    "MipSaRevoked": "effects",
    "Mip6Bootstrapped": "effects",
    "PanaSessionClosed": "effects",
    "PanaSessionOpen": "effects",
    "SendToAAA": "effects",
    "StaticConfigFallback": "effects",
    "PANA_PORT": "message",
    "Avp": "message",
    "Message": "message",
    "decode_message": "message",
    "encode_message": "message",
    "Mip6Policy": "mip6",
    "SaParameters": "mip6",
    "PaaConfig": "paa",
    "PaaCore": "paa",
    "PaaSession": "paa",
    "PaaState": "paa",
    "PacConfig": "pac",
    "PacCore": "pac",
    "PacState": "pac",
    "RelayCore": "relay",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f"mip6bench.pana.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
