"""Sans-I/O PANA Relay Element (PRE, RFC 6345).

    pre = RelayCore(paa_address, paa_port=716)
    actions = pre.receive(data, src, now, port, dst=None, via="pac")
        # dst: where it was sent to; via: the socket it came in on, "pac" (the port
        # PaCs talk to) or "paa" (the one the PRE talks to the PAA from)

A PRE sits where the PaC can reach it (e.g. the access router) and the PAA cannot be
reached by the PaC directly. It keeps no per-PaC state:

- any PANA message from a PaC is wrapped in a PANA-Relay (PRY, type 5, no flags, session
  id and sequence 0) with PaC-Information (the PaC's address and UDP port) and
  Relayed-Message (the PaC's message, unmodified) and sent to the PAA;
- a PRY from the PAA is unwrapped: its Relayed-Message goes to the address and port in
  its PaC-Information.

PRY messages carry no AUTH AVP; RFC 6345 leaves PRE-PAA protection to other means
(IPsec). The PaC talks to the PRE as if it were the PAA, and AUTH is end to end.

What the PRE answers: only PANA messages a PaC sent to the PRE itself, i.e. to one of
its unicast addresses (the address the PaC was given as its PAA). A message to a
multicast group is not for the PRE: here the discovery PCI to ff05::8000:716 reaches
the PAA through the Router Alert forwarders, and relaying it as well would make the
PAA answer one PCI with two sessions (and the PaC lock onto whichever PAR[S] came
first). The runtime passes the destination address (IPV6_PKTINFO) as `dst`; with
dst None (a runtime that cannot tell) everything is relayed as before. A PaC that
moved to another network and still reaches the PRE's address by routing is relayed
too (RFC 6345 does not tie the PRE to one link); the PRE then answers it from the
address its route to the PaC selects, which the PaC accepts once the message's AUTH
checks (see mip6bench.pana.pac).

PaC traffic and PAA traffic are told apart by message type and by the socket a datagram
came in on, never by address alone, so a PaC, a PRE and a PAA may share one host (one
address): a PRY is the PAA's and is accepted only from the configured PAA's address and
port (RFC 6345 leaves PRE-PAA protection to other means; a PRY's PaC-Information decides
where its message goes, so anybody else's is dropped); every other PANA message is a
PaC's, relayed when it came in on the PaC side (`via` "pac") from anywhere but the PAA's
own PANA endpoint (its address and port: no PaC can send from there, and relaying what
the PAA sends back to the PAA would loop). Its Transmits are RelayTransmits, `via` "paa"
toward the PAA and "pac" toward a PaC, so a runtime with two sockets sends each from
the right one (agents/pre.py: PaCs on `port`, the PAA from a socket of its own), and the
PAA's answers come back on the PAA side.
The PRE drops (and counts in `counters`) anything it cannot decode, PaC messages not
addressed to one of its unicast addresses, PRYs that do not come from its PAA, PaC
messages from the PAA's own PANA endpoint or arriving on the PAA side, and nested
relays.
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from ..codec import DecodeError
from ..sansio import Action, Event, Transmit
from .channel import describe
from .message import (PANA_PORT, RELAY, Message, decode_message, pac_information_avp,
                      relayed_message_avp)


@dataclass(frozen=True)
class RelayTransmit(Transmit):
    """A datagram of the relay; `via` names its socket ("pac": the PaC side, "paa": the
    PAA side)."""

    via: str = field(default="pac", kw_only=True)


class RelayCore:
    def __init__(self, paa_address: str, paa_port: int = PANA_PORT):
        self.paa_address = _normal(paa_address)
        self.paa_port = paa_port
        self.counters: Counter[str] = Counter()

    def receive(self, data: bytes, src: str, now: float, port: int = PANA_PORT,
                dst: str | None = None, via: str = "pac") -> list[Action]:
        if via not in ("pac", "paa"):
            raise ValueError(f"via={via!r}: 'pac' or 'paa'")
        try:
            msg = decode_message(data)
            if msg.type == RELAY:
                return self._from_paa(msg, src, port)
            if via == "paa":
                return self._drop("PaC message on the PAA side", msg, detail=src)
            if dst is not None and _is_multicast(dst):
                return self._drop("not addressed to the PRE", msg, dst=dst)
            return self._from_pac(msg, src, port)
        except DecodeError as err:
            return self._drop("malformed", detail=err.reason)

    def _is_paa(self, src: str, port: int) -> bool:
        return _normal(src) == self.paa_address and port == self.paa_port

    def _from_pac(self, msg: Message, src: str, port: int) -> list[Action]:
        if self._is_paa(src, port):
            return self._drop("unexpected message", msg)
        pry = Message(RELAY, 0, 0, 0, (pac_information_avp(src, port),
                                       relayed_message_avp(msg.raw)))
        self.counters["relayed to PAA"] += 1
        return [RelayTransmit(pry.encode(), dst=self.paa_address, port=self.paa_port,
                              via="paa"),
                Event("pana.relayed", {"role": "pre", "direction": "to_paa", "pac": src,
                                       "message": describe(msg)})]

    def _from_paa(self, msg: Message, src: str, port: int) -> list[Action]:
        if not self._is_paa(src, port):
            return self._drop("relay from a non-PAA", msg, detail=f"[{src}]:{port}")
        info = msg.pac_information
        inner = decode_message(msg.relayed_message)
        if inner.type == RELAY:
            return self._drop("nested relay", msg)
        self.counters["relayed to PaC"] += 1
        return [RelayTransmit(inner.raw, dst=info.address, port=info.port, via="pac"),
                Event("pana.relayed", {"role": "pre", "direction": "to_pac",
                                       "pac": info.address, "message": describe(inner)})]

    def _drop(self, reason: str, msg: Message | None = None, detail: str = "",
              **extra) -> list[Action]:
        self.counters[reason] += 1
        fields = {"role": "pre", "reason": reason, **extra}
        if msg is not None:
            fields["message"] = describe(msg)
        if detail:
            fields["detail"] = detail
        return [Event("pana.drop", fields)]


def _normal(address: str) -> str:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).compressed
    except ValueError:
        return address


def _is_multicast(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_multicast
    except ValueError:
        return False
