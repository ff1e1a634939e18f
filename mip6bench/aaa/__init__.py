"""The AAA side of Mobile IPv6 bootstrapping: RADIUS for EAP, the PAA's composition, NSIS
authorization tokens, and SA distribution between PAA and HA. Pure logic, no I/O.

Modules
    credentials    the users file (NAI, EAP-PSK key, optional Home Address); hostapd's
                   eap_user file from it
    radius_attrs   RADIUS packets carrying EAP and its keys (EAP-Message, Message-
                   Authenticator, MS-MPPE keys), shared by the server, the client and
                   the hostapd interop test
    radius_server  RadiusServerCore: RADIUS authentication server with EAP-PSK (the
                   embedded AAA server, agents/aaa.py)
    radius_client  RadiusClientCore: the PAA's RADIUS client (retransmission, Identifiers,
                   Response/Message-Authenticator checks, MS-MPPE keys)
    paa_service    PaaService: PaaCore + EAP pass-through + AAA backend + SA distribution
                   as one core (agents/paa.py, the benchmarks)
    token          NSIS authorization tokens (mint, verify), after RFC 5981
    sadist         SA distribution PAA <-> HA (push, pull, revoke; AES-GCM over UDP 7716)
    authz          NATFW authorization pull firewall <-> PAA on the sadist channel: the
                   PAA answers from its live PANA sessions (the client for the firewall:
                   mip6bench.runtime.authz_client)
"""
