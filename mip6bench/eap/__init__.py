"""EAP (RFC 3748) with EAP-PSK (RFC 4764): wire codecs and sans-I/O cores.

No sockets, no clocks; AES comes from the `cryptography` package through mip6bench.crypto.
The cores take EAP packets as bytes and return actions (see `actions`):

PaC (peer side)::

    peer = EapPeer("alice@example.org", psk)       # psk: exactly 16 bytes
    for action in peer.receive(eap_from_paa):      # SendEap -> put in EAP-Payload
        ...
    peer.status is EapStatus.SUCCESS -> peer.msk (64 B), peer.emsk (64 B)

    # or, bytes in / bytes out as mip6bench.pana.eap_interface expects:
    new_eap_peer = psk_peer_factory("alice@example.org", psk)
    response = new_eap_peer().receive(eap_from_paa)   # bytes or None

Embedded AAA (full EAP server)::

    server = EapServer(lookup, "aaa.example.org")  # lookup(nai) -> psk or None
    server.start()            # Identity Request; or, behind a PAA that sent the
                              # Identity Request itself, feed the Identity Response
    server.receive(eap_from_peer) -> SendEap(next Request / Success / Failure), ...
    server.msk, server.emsk, server.peer_id

PAA relaying to a backend (pass-through)::

    relay = EapPassThrough()
    relay.from_peer(data)     -> RelayToBackend(packet)
    relay.from_backend(data, accept=..., msk=...) -> SendEap(packet), EapSucceeded/EapFailed

Credentials: an EAP-PSK key is exactly 16 raw bytes (RFC 4764 section 2.1.1);
`psk_from_hex("32 hex digits")` reads the usual written form, and any other
size raises `InvalidPskError` (a ParameterError naming the fix). ID_S is the
UTF-8 `server_id` given to EapServer, byte for byte; ID_P is the peer identity.

Final actions are `EapSucceeded(msk, emsk, peer_id)` or `EapFailed(reason)`;
dropped input yields `Event("eap.discard", {"role", "reason"})`, never an
exception. Modules: `packet` (EAP codec), `psk_messages` / `psk_crypto` /
`psk_method` (EAP-PSK), `aes_cmac` / `aes_eax` (primitives). EAP inside RADIUS
(EAP-Message, Message-Authenticator, MS-MPPE keys) is in mip6bench.aaa.radius_attrs.
"""

from importlib import import_module

# Loaded on first use, so an agent imports only the modules it runs (start-up time).
_HOMES = {
    "EapFailed": "actions",
    "EapStatus": "actions",
    "EapSucceeded": "actions",
    "RelayToBackend": "actions",
    "SendEap": "actions",
    "EapCode": "packet",
    "EapPacket": "packet",
    "EapType": "packet",
    "decode_eap_packet": "packet",
    "EapPassThrough": "passthrough",
    "EapPeer": "peer",
    "SimpleEapPeer": "peer",
    "psk_peer_factory": "peer",
    "InvalidPskError": "psk_crypto",
    "check_psk": "psk_crypto",
    "psk_from_hex": "psk_crypto",
    "EapServer": "server",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f"mip6bench.eap.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
