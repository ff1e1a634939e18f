"""What the EAP cores ask their caller to do (see mip6bench.sansio).

EAP has no addresses of its own: it rides in a lower layer (PANA's EAP-Payload
AVP, RADIUS EAP-Message attributes). So instead of `Transmit` the cores return:

- `SendEap(packet)`: give this EAP packet to the lower layer, toward the other
  end of this core's conversation (peer -> authenticator, server -> peer,
  pass-through -> peer);
- `RelayToBackend(packet)`: pass-through only, forward to the backend server;
- `EapSucceeded(msk, emsk, peer_id)` / `EapFailed(reason)`: the conversation is
  over; keys are never in the repr, so logging an action does not leak them;
- `mip6bench.sansio.Event("eap.discard", {"role", "reason"})` when input is
  dropped, and other `eap.*` events for the event log.

`EapStatus` is the state every core exposes as `.status`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mip6bench.sansio import Action, Effect, Event, quick_init


class EapStatus(StrEnum):
    """Compares equal to "pending", "success" and "failure" (the strings the PANA
    cores use, see mip6bench.pana.eap_interface)."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"


@quick_init
@dataclass(frozen=True)
class SendEap(Action):
    packet: bytes


@quick_init
@dataclass(frozen=True)
class RelayToBackend(Action):
    packet: bytes


@quick_init
@dataclass(frozen=True)
class EapSucceeded(Effect):
    msk: bytes | None = field(repr=False)
    emsk: bytes | None = field(default=None, repr=False)
    peer_id: str | None = None


@quick_init
@dataclass(frozen=True)
class EapFailed(Effect):
    reason: str


def discard(role: str, reason: str) -> Event:
    """The event recorded when a core drops its input (never an exception)."""
    return Event("eap.discard", {"role": role, "reason": reason})
