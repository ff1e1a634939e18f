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
    eap_interface  what the cores expect from EAP

Runtime contract (same for all three cores): feed every datagram received on UDP 716
to `receive(data, src, now, port)`, call `handle_timer(key, now)` when a StartTimer
fires (StopTimer cancels; StartTimer with the same key re-arms), execute Transmit
actions (send from port 716; honour meta {"discovery": "multicast"} on the PaC's PCI by
adding the Router Alert option), apply effects and log Events. `now` is seconds on a
monotonic clock. Randomness (sequence numbers, session ids, nonces, Key-Ids, backoff
jitter, HoA/SPI choice) comes from the `rng` given to each core (default:
random.SystemRandom()).
"""
from .channel import PCI_RETRANSMIT, REQ_RETRANSMIT, PanaSa, Peer, RetransmitPolicy
from .effects import (AaaCancel, MipSaEstablished, MipSaRevoked, Mip6Bootstrapped,
                      PanaSessionClosed, PanaSessionOpen, SendToAAA, StaticConfigFallback)
from .message import PANA_PORT, Avp, Message, decode_message, encode_message
from .mip6 import Mip6Policy, SaParameters
from .paa import PaaConfig, PaaCore, PaaSession, PaaState
from .pac import PacConfig, PacCore, PacState
from .relay import RelayCore

__all__ = [
    "PANA_PORT", "Avp", "Message", "decode_message", "encode_message",
    "PacConfig", "PacCore", "PacState", "PaaConfig", "PaaCore", "PaaSession", "PaaState",
    "RelayCore", "Mip6Policy", "SaParameters", "PanaSa", "Peer", "RetransmitPolicy",
    "REQ_RETRANSMIT", "PCI_RETRANSMIT",
    "SendToAAA", "AaaCancel", "PanaSessionOpen", "PanaSessionClosed", "MipSaEstablished",
    "MipSaRevoked", "Mip6Bootstrapped", "StaticConfigFallback",
]
