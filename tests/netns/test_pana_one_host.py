"""PANA parties sharing one host (issue 9, interop with OpenPANA): a PaC pointed at a PAA
or relay element on another port than 716, a PANA relay element on the PAA's own host
(PaC and PAA traffic told apart by socket, not by address), and the PAA's choice of
where the first EAP request goes, with real agents over real sockets in a namespace of
their own (only loopback, everything at ::1).

    aaa  (agents/aaa.py)  UDP 1812
    paa  (agents/paa.py)  UDP 7160, relays ["::1"], no Mobile IPv6 extension
    pre  (agents/pre.py)  UDP 7170 for PaCs, its own socket toward the PAA
    pac  (agents/pac.py)  any port, paa ::1, paa_port 7160 (direct) or 7170 (relayed)

Waits are the agents' `wait-event`, never sleeps."""
from __future__ import annotations

import secrets
import time

import pytest

from mip6bench.aaa.credentials import Credential, format_credentials
from mip6bench.secretfiles import write_secret_file

from ..one_host import HOST, OneHost
from .bootstrap_util import wait_event

PAA_PORT, PRE_PORT = 7160, 7170
SERVER_ID = "aaa.mip6bench.example"
USER = Credential("alice@mip6bench.example", secrets.token_bytes(16))


def start_services(host: OneHost, tmp_path, **paa_options):
    secret = secrets.token_hex(16)
    creds = write_secret_file(tmp_path / "credentials.txt", format_credentials([USER]))
    host.start_agent("aaa", "aaa", {"credentials": str(creds), "clients": {HOST: secret},
                                    "server_id": SERVER_ID})
    return host.start_agent("paa", "paa", {
        "address": HOST, "ha_address": "2001:db8:1::1", "home_prefix": "2001:db8:1::/64",
        "radius_server": HOST, "radius_secret": secret, "port": PAA_PORT, "mip6": False,
        "relays": [HOST], **paa_options})


def start_pac(host: OneHost, paa_port: int, name: str = "pac"):
    return host.start_agent(name, "pac", {
        "nai": USER.nai, "psk": USER.psk.hex(), "paa": HOST, "paa_port": paa_port,
        "port": 0, "request": [], "expected_server_id": SERVER_ID})


@pytest.fixture
def host(tmp_path):
    with OneHost(tmp_path, "pana1h") as h:
        yield h


def test_a_pac_authenticates_with_a_paa_on_another_port(host, tmp_path):
    """Without the PaC's paa_port its PCI would go to 716, where nothing listens. The PAA
    puts no EAP request in PAR[S] here (eap_in_first_par never): the option reaches the
    PAA agent, and the plain handshake works end to end."""
    t0 = time.monotonic_ns()
    paa = start_services(host, tmp_path, eap_in_first_par="never")
    pac = start_pac(host, PAA_PORT)
    opened = wait_event(pac, "pana.session_open", t0, within=10)
    status = pac.request("pana-status")
    assert status["state"] == "open" and status["paa"] == HOST
    created = wait_event(paa, "pana.session_created", t0)
    assert created["eap_in_start"] is False and created["relay"] is None
    (session,) = paa.request("sessions")
    assert session["session_id"] == opened["session_id"] == status["session_id"]
    assert session["nai"] == USER.nai and session["relay"] is None
    assert pac.request("pana-ping")["sent"]
    wait_event(pac, "pana.ping_ok", t0)


def test_pac_relay_and_paa_on_one_host(host, tmp_path):
    """PaC -> PRE (7170) -> PAA (7160), all at ::1: the PRE relays the PaC although its
    address is the PAA's, and the PAA serves the PRYs because they come from a
    configured relay element (its own host's address)."""
    t0 = time.monotonic_ns()
    paa = start_services(host, tmp_path)
    pre = host.start_agent("pre", "pre", {"paa": HOST, "paa_port": PAA_PORT,
                                          "port": PRE_PORT})
    ports = pre.request("status")
    assert ports["port"] == PRE_PORT and ports["paa_side_port"] not in (0, PRE_PORT, PAA_PORT)
    pac = start_pac(host, PRE_PORT)
    wait_event(pac, "pana.session_open", t0, within=10)
    assert pac.request("pana-status")["paa"] == HOST
    created = wait_event(paa, "pana.session_created", t0)
    assert created["relay"] == HOST and created["eap_in_start"] is True
    (session,) = paa.request("sessions")
    assert session["relay"] == HOST and session["nai"] == USER.nai
    counters = pre.request("counters")
    assert counters["relayed to PAA"] >= 3 and counters["relayed to PaC"] >= 3
    assert set(counters) == {"relayed to PAA", "relayed to PaC"}, counters
    # Life goes on through the relay: the PAA's ping reaches the PaC and is answered.
    t1 = time.monotonic_ns()
    paa.request("ping", session_id=session["session_id"])
    wait_event(paa, "pana.ping_ok", t1)
