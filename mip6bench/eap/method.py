"""The contract between the EAP layer and an EAP method (after RFC 4137).

A peer method gets each Request of its Type (`process`) and answers with a
`PeerStep`: the whole Response packet to send, or None to silently discard the
Request, plus the method state and decision of RFC 4137 (peer-method interface) that the
EAP layer uses to accept or refuse Success/Failure. A server method builds its
first Request and then answers each Response with a `ServerStep`.

EAP-PSK (`psk_method`) is the only method here; a new one implements
`PeerMethod` / `ServerMethod` and is handed to `EapPeer(methods=...)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from mip6bench.eap.packet import EapPacket


class MethodState(Enum):
    CONT = "cont"            # more rounds needed; Success/Failure not yet acceptable
    MAY_CONT = "may_cont"    # could end here
    DONE = "done"            # the method is finished


class Decision(Enum):
    FAIL = "fail"                  # a Success must be refused
    COND_SUCC = "cond_succ"        # accept Success, and still accept a Failure
    UNCOND_SUCC = "uncond_succ"    # accept Success, refuse a Failure


@dataclass(frozen=True)
class PeerStep:
    response: bytes | None          # whole EAP Response; None = discard the Request
    state: MethodState
    decision: Decision
    reason: str = ""                # why the Request was discarded or the method failed


class Outcome(Enum):
    CONTINUE = "continue"    # send `request` next
    DISCARD = "discard"      # silently drop the Response, keep waiting
    SUCCESS = "success"      # authenticated: send EAP Success, export keys
    FAILURE = "failure"      # send EAP Failure


@dataclass(frozen=True)
class ServerStep:
    outcome: Outcome
    request: bytes | None = None    # next Request when outcome is CONTINUE
    reason: str = ""


class PeerMethod(Protocol):
    method_type: int

    def process(self, request: EapPacket) -> PeerStep: ...

    def keys(self) -> tuple[bytes, bytes] | None:
        """(MSK, EMSK) once the method has derived them and decided success."""


class ServerMethod(Protocol):
    method_type: int

    def initial_request(self, identifier: int) -> bytes: ...

    def process(self, response: EapPacket, next_identifier: int) -> ServerStep: ...

    def keys(self) -> tuple[bytes, bytes] | None: ...

    @property
    def peer_id(self) -> str | None:
        """The peer identity the method authenticated (EAP-PSK: ID_P)."""
