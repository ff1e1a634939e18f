"""PANA interop with OpenPANA (https://github.com/OpenPANA/openpana, 0.2.4), an independent
implementation of RFC 5191/5609/6345 in C: its PaC against our PAA, our PaC against its
PAA, and its PaC through our relay element, every party on one host (::1) in a network
namespace of its own (tests/one_host.py).

OpenPANA is not packaged anywhere; build it by hand (README.md, "Interop with OpenPANA")
and point MIP6BENCH_OPENPANA at the directory holding its `openpac` and `openpaa`
binaries (its build's src/ directory). Without it these tests are skipped; they need
root (a namespace).

What each test shows:
- its PaC ignores a PAR[S] carrying an EAP-Payload and keeps sending PCIs: our PAA
  ("auto") falls back to the plain handshake after two repeated PCIs and the PaC gets
  in; with "never" at once; with "always" never (the fallback is what makes it work);
- the session is the same on both sides: the PAA's PAN[C] check and then an
  AUTH-protected PANA ping in each direction need both ends' PANA_AUTH_KEY;
- our PaC is pointed at its PAA's port (it listens on 7260 here, 5555 by default), and
  its PAA asks our RADIUS server (agents/aaa.py, EAP-PSK), which it names by
  NAS-IP-Address only;
- its PaC talks to our PANA relay element on the PAA's own host: the PRE tells PaC
  from PAA traffic by socket, not by address.

OpenPANA reads config.xml from its configuration directory if one was installed there
(`make install`), else from its working directory: the tests write theirs into a
temporary working directory and check that OpenPANA said it loaded that one. It also
insists that the certificate files named in its configuration exist; EAP-PSK never
reads them, so empty ones do. Its PSK is the ASCII of its <PASSWORD>.

Not covered: OpenPANA's relay element (openpre) in front of our PAA, and our relay in
front of its PAA. Both its PRE and its PAA encode the PaC-Information AVP with its
padding counted in the AVP Length (20 for an IPv6 address and port instead of 18),
which RFC 5191 section 6.1 does not allow; our PAA and our PRE drop such a PRY as
malformed ("PaC-Information length 20 is neither 6 nor 18")."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from mip6bench.aaa.credentials import Credential, format_credentials
from mip6bench.runtime.control import ControlError
from mip6bench.secretfiles import write_secret_file

from ..netns.bootstrap_util import wait_event
from ..one_host import HOST, OneHost

ENV = "MIP6BENCH_OPENPANA"
OPENPANA = os.environ.get(ENV, "")


def _skip_reason() -> str | None:
    if not OPENPANA:
        return (f"set {ENV} to the directory with OpenPANA's openpac and openpaa (built by "
                "hand: README.md, 'Interop with OpenPANA')")
    missing = [b for b in ("openpac", "openpaa")
               if not os.access(Path(OPENPANA) / b, os.X_OK)]
    if missing:
        return f"{ENV}={OPENPANA}: no executable {', '.join(missing)} there"
    if os.geteuid() != 0:
        return "needs root (a network namespace of its own)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")

PAA_PORT, PRE_PORT, OPENPANA_PAA_PORT = 7160, 7170, 7260
SECRET = "openpana-interop"
SERVER_ID = "aaa.mip6bench.example"

PAC_XML = """<?xml version="1.0" encoding="ISO-8859-1"?>
<CONFIG>
  <IP_VERSION>6</IP_VERSION>
  <PAC>
    <INTERFACE>lo</INTERFACE>
    <PORT>7777</PORT>
    <IP_PAA>::1</IP_PAA>
    <PORT_PAA>{paa_port}</PORT_PAA>
    <SESSION><TIMEOUT>60</TIMEOUT></SESSION>
    <ALGORITHMS><PRF>2</PRF><INTEGRITY>7</INTEGRITY></ALGORITHMS>
    <USER>{nai}</USER>
    <PASSWORD>{password}</PASSWORD>
    <CLIENT_CERTS><CA_CERT>ca.pem</CA_CERT><CLIENT_CERT>client.pem</CLIENT_CERT>
      <CLIENT_KEY>client.pk8</CLIENT_KEY><PRIVATE_KEY>unused</PRIVATE_KEY></CLIENT_CERTS>
    <FRAGMENT_SIZE>1398</FRAGMENT_SIZE>
    <EAP_PIGGYBACK>1</EAP_PIGGYBACK>
    <PING_MECHANISM><PING_TIME>1</PING_TIME><NUMBER_PING>0</NUMBER_PING></PING_MECHANISM>
  </PAC>
</CONFIG>
"""

PAA_XML = """<?xml version="1.0" encoding="ISO-8859-1"?>
<CONFIG>
  <IP_VERSION>6</IP_VERSION>
  <PAA>
    <INTERFACE>lo</INTERFACE>
    <PORT>{port}</PORT>
    <SESSION><TIMEOUT>100</TIMEOUT></SESSION>
    <ALGORITHMS><PRF>2</PRF><INTEGRITY>7</INTEGRITY></ALGORITHMS>
    <SERVER_CERTS><CA_CERT>ca.pem</CA_CERT><SERVER_CERT>server.pem</SERVER_CERT>
      <SERVER_KEY>server.key</SERVER_KEY></SERVER_CERTS>
    <TIMEOUT_CLIENT>30</TIMEOUT_CLIENT>
    <TIME_ANSWER>3</TIME_ANSWER>
    <WORKERS>1</WORKERS>
    <AUTH_SERVER>
      <IP_VERSION_AUTH>6</IP_VERSION_AUTH>
      <AS_IP>::1</AS_IP>
      <AS_PORT>1812</AS_PORT>
      <SHARED_SECRET>{secret}</SHARED_SECRET>
    </AUTH_SERVER>
    <PING_MECHANISM><PING_TIME>1</PING_TIME><NUMBER_PING>0</NUMBER_PING></PING_MECHANISM>
  </PAA>
</CONFIG>
"""


@pytest.fixture
def user():
    # OpenPANA takes its EAP-PSK key as the ASCII of <PASSWORD>: 16 characters.
    return Credential(f"opana-{secrets.token_hex(3)}@mip6bench.example",
                      secrets.token_hex(8).encode())


@pytest.fixture
def host(tmp_path):
    with OneHost(tmp_path, "openpana") as h:
        yield h


def start_aaa(host: OneHost, tmp_path: Path, *users: Credential):
    creds = write_secret_file(tmp_path / "credentials.txt", format_credentials(users))
    return host.start_agent("aaa", "aaa", {"credentials": str(creds),
                                           "clients": {HOST: SECRET}, "server_id": SERVER_ID})


def start_paa(host: OneHost, **options):
    return host.start_agent("paa", "paa", {
        "address": HOST, "ha_address": "2001:db8:1::1", "home_prefix": "2001:db8:1::/64",
        "radius_server": HOST, "radius_secret": SECRET, "port": PAA_PORT, "mip6": False,
        **options})


def run_openpana(host: OneHost, tmp_path: Path, program: str, config: str, certs,
                 name: str | None = None):
    """OpenPANA's `program` in a working directory of its own (`name`, default the
    program's) with `config` as its config.xml (and the empty certificate files it
    insists on); its output line-buffered into <name>.log. Returns the log's path."""
    name = name or program
    work = tmp_path / name
    work.mkdir()
    (work / "config.xml").write_text(config)
    for name in certs:
        (work / name).touch()
    log = tmp_path / f"{name}.log"
    host.popen(["stdbuf", "-oL", "-eL", str(Path(OPENPANA) / program)], cwd=work, log=log)
    return log


def assert_used_our_config(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Loading config.xml from current directory" in text, (
        f"OpenPANA did not read the test's config.xml (an installed one in its "
        f"configuration directory takes precedence: remove it or do not `make install`); "
        f"its output: {text[-500:]}")


def openpana_pac(host, tmp_path, user, paa_port, name="openpac"):
    return run_openpana(host, tmp_path, "openpac",
                        PAC_XML.format(paa_port=paa_port, nai=user.nai,
                                       password=user.psk.decode()),
                        ("ca.pem", "client.pem", "client.pk8"), name)


def assert_same_session_both_ways(paa, session_id: int) -> None:
    """An AUTH-protected ping from our PAA is answered with a PNA whose AUTH our PAA
    verifies: both ends hold the same PANA_AUTH_KEY."""
    t = time.monotonic_ns()
    paa.request("ping", session_id=session_id)
    ok = wait_event(paa, "pana.ping_ok", t, within=10)
    assert ok["session_id"] == session_id
    assert not [e for e in OneHost.events(paa, "pana.drop") if e["t_ns"] >= t]


@pytest.mark.parametrize("mode", ["auto", "never"])
def test_openpana_pac_authenticates_with_our_paa(host, tmp_path, user, mode):
    second = Credential(f"opana2-{secrets.token_hex(3)}@mip6bench.example",
                        secrets.token_hex(8).encode())
    start_aaa(host, tmp_path, user, second)
    paa = start_paa(host, eap_in_first_par=mode)
    t0 = time.monotonic_ns()
    log = openpana_pac(host, tmp_path, user, PAA_PORT)
    opened = wait_event(paa, "pana.session_open", t0, within=20)
    assert opened["nai"] == user.nai
    (session,) = [s for s in paa.request("sessions") if s["state"] == "open"]
    assert session["session_id"] == opened["session_id"] and session["pac"] == HOST
    fallback = OneHost.events(paa, "pana.handshake_fallback")
    if mode == "auto":
        # Its PaC ignored the PAR[S] with EAP, repeated its PCI twice, then got the plain one.
        (fb,) = fallback
        assert fb["plain_session"] == opened["session_id"] and fb["repeated_pcis"] == 2
    else:
        assert fallback == []
        (created,) = OneHost.events(paa, "pana.session_created")
        assert created["eap_in_start"] is False
    assert_same_session_both_ways(paa, opened["session_id"])
    assert_used_our_config(log)
    # Another of its PaCs on the same host (a new process, another source port): with
    # auto the host is remembered, so it gets the plain PAR[S] at once as well.
    t1 = time.monotonic_ns()
    openpana_pac(host, tmp_path, second, PAA_PORT, name="openpac2")
    again = wait_event(paa, "pana.session_open", t1, within=20, nai=second.nai)
    created = [e for e in OneHost.events(paa, "pana.session_created") if e["t_ns"] >= t1]
    assert [e["eap_in_start"] for e in created] == [False]
    assert created[0]["session_id"] == again["session_id"]
    assert len(OneHost.events(paa, "pana.handshake_fallback")) == len(fallback)
    # Its first PCI is answered at once: no repeated PCI before the session opens.
    assert not [e for e in OneHost.events(paa, "pana.drop") if e["t_ns"] >= t1]


def test_without_the_fallback_openpanas_pac_never_gets_in(host, tmp_path, user):
    """eap_in_first_par=always: each repeated PCI is only a duplicate to our PAA, and its
    PaC never takes the PAR[S] with EAP (PCIs at 0, 1, 3, 7 s: three repeats in 8 s)."""
    start_aaa(host, tmp_path, user)
    paa = start_paa(host, eap_in_first_par="always")
    t0 = time.monotonic_ns()
    log = openpana_pac(host, tmp_path, user, PAA_PORT)
    wait_event(paa, "pana.session_created", t0, within=10)
    with pytest.raises(ControlError):
        wait_event(paa, "pana.session_open", t0, within=8)
    counters = paa.request("counters")["pana"]
    assert counters.get("duplicate PCI", 0) >= 2, counters
    assert not OneHost.events(paa, "pana.handshake_fallback")
    assert_used_our_config(log)


def test_our_pac_authenticates_with_openpanas_paa(host, tmp_path, user):
    """Our PaC (paa_port) with its PAA, which asks our RADIUS server (EAP-PSK)."""
    aaa = start_aaa(host, tmp_path, user)
    log = run_openpana(host, tmp_path, "openpaa",
                       PAA_XML.format(port=OPENPANA_PAA_PORT, secret=SECRET),
                       ("ca.pem", "server.pem", "server.key"))
    t0 = time.monotonic_ns()
    # Its PAA may not listen yet: our PCI is retransmitted (1 s, doubling) until it does.
    pac = host.start_agent("pac", "pac", {
        "nai": user.nai, "psk": user.psk.hex(), "paa": HOST, "paa_port": OPENPANA_PAA_PORT,
        "port": 0, "request": [], "expected_server_id": SERVER_ID})
    opened = wait_event(pac, "pana.session_open", t0, within=20)
    status = pac.request("pana-status")
    assert status["state"] == "open" and status["paa"] == HOST and status["drops"] == {}
    assert opened["key_id"] is not None
    radius = aaa.request("status")["radius"]
    assert radius.get("Access-Accept") == 1 and set(radius) <= {"Access-Challenge",
                                                                "Access-Accept"}, radius
    # Its PAA answers our AUTH-protected ping with an AUTH our PaC verifies.
    t1 = time.monotonic_ns()
    assert pac.request("pana-ping")["sent"]
    wait_event(pac, "pana.ping_ok", t1, within=10)
    assert pac.request("pana-status")["drops"] == {}
    assert_used_our_config(log)


def test_openpana_pac_through_our_relay_on_the_paas_host(host, tmp_path, user):
    """Its PaC -> our PRE (7170) -> our PAA (7160), all at ::1."""
    start_aaa(host, tmp_path, user)
    paa = start_paa(host, relays=[HOST])
    pre = host.start_agent("pre", "pre", {"paa": HOST, "paa_port": PAA_PORT,
                                          "port": PRE_PORT})
    t0 = time.monotonic_ns()
    log = openpana_pac(host, tmp_path, user, PRE_PORT)
    opened = wait_event(paa, "pana.session_open", t0, within=20)
    assert opened["nai"] == user.nai
    (session,) = [s for s in paa.request("sessions") if s["state"] == "open"]
    assert session["relay"] == HOST and session["pac"] == HOST
    counters = pre.request("counters")
    assert set(counters) == {"relayed to PAA", "relayed to PaC"}, counters
    assert_same_session_both_ways(paa, opened["session_id"])
    assert_used_our_config(log)
