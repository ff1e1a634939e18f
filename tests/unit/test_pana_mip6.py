"""The MIPv6 bootstrapping extension: AVP layouts, negotiation, keys, re-keying, fallback."""
import hmac
import ipaddress
import random

import pytest

from mip6bench.codec import DecodeError
from mip6bench.pana import PaaState, PacState
from mip6bench.pana import effects as fx
from mip6bench.pana import message as m
from mip6bench.pana import mip6
from mip6bench.pana.channel import describe

from .test_pana_harness import HA, NAI, PAA, PAC, PSK, ScriptedPeer, make_pair

PREFIX = "2001:db8:1::/64"


@pytest.fixture(autouse=True)
def paa_indexes_agree_with_the_sessions(monkeypatch):
    """After every call into a PaaCore in these scenarios (bootstrap, superseding,
    re-keying, termination, expiry), its indexes of the live sessions (by NAI, Home
    Address, SPI) say what a scan of the sessions says."""
    from mip6bench.pana.paa import PaaCore

    for name in ("receive", "aaa_result", "reauthenticate", "terminate", "handle_timer",
                 "start_session", "ping"):
        original = getattr(PaaCore, name)

        def checked(self, *args, _original=original, _name=name, **kwargs):
            out = _original(self, *args, **kwargs)
            assert self._index_problems() == [], f"after {_name}"
            return out

        monkeypatch.setattr(PaaCore, name, checked)


def h(text):
    return bytes.fromhex("".join(text.split()))


# ---- AVP layouts (hand-built) --------------------------------------------------------

def test_bootstrap_request_layout():
    avp = mip6.bootstrap_request_avp(mip6.REQUEST_ALL)
    assert avp.encode() == h("0001 8000 0004 0000 00007ed9 0000000f")
    assert mip6.request_names(0x5) == ("ha_info", "mip6_sa")


def test_agent_info_layout():
    info = mip6.AgentInfo("2001:db8:1::1", "2001:db8:1::", 64)
    value = h("20010db8000100000000000000000001 40 000000 20010db8000100000000000000000000")
    assert info.to_avp() == m.Avp(2, value, 32473)
    assert mip6.AgentInfo.from_value(value) == info
    with pytest.raises(DecodeError):
        mip6.AgentInfo.from_value(value[:-1])
    with pytest.raises(DecodeError):
        mip6.AgentInfo.from_value(value[:17] + b"\1" + value[18:])   # reserved
    with pytest.raises(DecodeError):
        mip6.AgentInfo.from_value(value[:16] + b"\x81" + value[17:])  # /129


def test_home_address_layout():
    hoa = mip6.HomeAddress("2001:db8:1::99", 64)
    value = h("40 000000 20010db8000100000000000000000099")
    assert hoa.to_avp() == m.Avp(3, value, 32473)
    assert mip6.HomeAddress.from_value(value) == hoa
    with pytest.raises(DecodeError):
        mip6.HomeAddress.from_value(b"\x40\0\0\1" + value[4:])


def test_sa_layout_and_validation():
    sa = mip6.SaParameters(spi=0x1000, algorithm=2, replay=2, lifetime=600)
    value = h("00001000 0002 0002 00000258")
    assert sa.to_avp() == m.Avp(4, value, 32473)
    assert mip6.SaParameters.from_value(value) == sa
    sa.check_decision()
    assert (sa.algorithm_name, sa.replay_name) == ("hmac-sha1-96", "timestamp")
    for bad in (mip6.SaParameters(5, 2, 2, 600), mip6.SaParameters(0x1000, 9, 2, 600),
                mip6.SaParameters(0x1000, 2, 7, 600), mip6.SaParameters(0x1000, 2, 2, 0)):
        with pytest.raises(DecodeError):
            bad.check_decision()
    with pytest.raises(DecodeError):
        mip6.SaParameters.from_value(value + b"\0")


def test_whole_message_with_extension_avps_round_trips():
    avps = (mip6.AgentInfo(HA, "2001:db8:1::", 64).to_avp(),
            mip6.HomeAddress("2001:db8:1::7", 64).to_avp(),
            mip6.SaParameters(300, 3, 1, 60).to_avp(), mip6.nsis_token_avp(b"tok"))
    msg = m.Message(m.AUTH, m.FLAG_R | m.FLAG_C, 1, 2, (m.result_code_avp(0),) + avps)
    out = m.decode_message(msg.encode())
    grant = mip6.parse_grant(out)
    assert grant.agent.ha_address == HA and grant.home_address.address == "2001:db8:1::7"
    assert grant.sa == mip6.SaParameters(300, 3, 1, 60) and grant.token == b"tok"
    assert grant.missing(mip6.REQUEST_ALL) == ()


def test_malformed_extension_avps_count_as_absent():
    msg = m.Message(m.AUTH, m.FLAG_R | m.FLAG_C, 1, 2, (
        m.result_code_avp(0), m.Avp(2, b"short", 32473), m.Avp(4, b"\0" * 12, 32473)))
    grant = mip6.parse_grant(m.decode_message(msg.encode()))
    assert grant.agent is None and grant.sa is None and len(grant.problems) == 2
    assert grant.missing(mip6.REQUEST_HA_INFO | mip6.REQUEST_MIP6_SA) == ("ha_info", "mip6_sa")


def test_key_derivation_avp_layout_and_unknown_value_drops_the_sa():
    assert mip6.key_derivation_avp(mip6.KDF_EMSK) == m.Avp(6, h("00000002"), 32473)
    sa = mip6.SaParameters(300, 2, 2, 60).to_avp()

    def grant(*avps):
        msg = m.Message(m.AUTH, m.FLAG_R | m.FLAG_C, 1, 2, (m.result_code_avp(0), sa) + avps)
        return mip6.parse_grant(m.decode_message(msg.encode()))
    assert grant().kdf == mip6.KDF_MSK and grant().sa is not None       # absent: MSK
    assert grant(mip6.key_derivation_avp(2)).kdf == mip6.KDF_EMSK
    for bad in (h("00000003"), h("0002")):   # unknown, wrong length: no usable key, no SA
        g = grant(m.Avp(6, bad, 32473))
        assert g.sa is None and g.problems


def test_mn_ha_key_from_emsk_is_rfc5295_usrk_written_out():
    # RFC 5295 3.1: USRK = KDF(EMSK, key label | "\0" | optional data | length(16)), the
    # default KDF being IKEv2's prf+ with HMAC-SHA-256, written out independently here.
    emsk, pn, an = bytes(range(64)), b"p" * 20, b"a" * 20
    seed = b"mip6-mn-ha@mip6bench.example\0" + (0x1234).to_bytes(4, "big") + pn + an + b"\0\x20"
    t1 = hmac.new(emsk, seed + b"\1", "sha256").digest()
    assert mip6.mn_ha_key_from_emsk(emsk, 0x1234, pn, an, mip6.ALG_HMAC_SHA256) == t1
    key20 = mip6.mn_ha_key_from_emsk(emsk, 0x1234, pn, an, mip6.ALG_HMAC_SHA1_96)
    assert key20 == hmac.new(emsk, seed[:-1] + b"\x14\1", "sha256").digest()[:20]
    assert mip6.derive_mn_ha_key(mip6.KDF_EMSK, 2, b"m" * 64, None, 0x1234, pn, an, 2) is None
    assert mip6.derive_mn_ha_key(mip6.KDF_MSK, 2, b"m" * 64, emsk, 0x1234, pn, an, 2) == \
        mip6.mn_ha_key(2, b"m" * 64, 0x1234, pn, an, 2)


# ---- policy hooks -------------------------------------------------------------------

def test_hoa_policy_table_and_random():
    assign = mip6.table_or_random_hoa(PREFIX, {"alice@x": "2001:db8:1::a"})
    rng = random.Random(1)
    assert assign("alice@x", frozenset(), rng) == "2001:db8:1::a"
    assert assign("alice@x", frozenset({"2001:db8:1::a"}), rng) is None
    live = set()
    for _ in range(200):
        hoa = assign("bob@x", frozenset(live), rng)
        assert ipaddress.IPv6Address(hoa) in ipaddress.IPv6Network(PREFIX)
        assert hoa not in live and hoa != "2001:db8:1::" and hoa != "2001:db8:1::a"
        live.add(hoa)
    tiny = mip6.table_or_random_hoa("2001:db8:1::/126")
    got = {tiny("u", frozenset(), random.Random(i)) for i in range(50)}
    assert got == {"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"}
    full = frozenset(got)
    assert tiny("u", full, rng) is None


def test_spi_policy_is_unique_and_outside_reserved_range():
    rng = random.Random(3)
    live = frozenset(range(256, 300))
    for _ in range(100):
        spi = mip6.random_unique_spi(live, rng)
        assert spi >= 256 and spi not in live


def test_sa_negotiation_policy():
    policy = mip6.Mip6Policy(HA, PREFIX, algorithms=(mip6.ALG_HMAC_SHA1_96,),
                             replay_modes=(mip6.REPLAY_TIMESTAMP,), default_lifetime=600,
                             max_lifetime=1200)
    wanted = mip6.SaParameters(0, mip6.ALG_HMAC_SHA256, mip6.REPLAY_SEQUENCE, 5000)
    chosen = policy.choose_sa(wanted, 777, session_lifetime=3600)
    assert chosen == mip6.SaParameters(777, mip6.ALG_HMAC_SHA1_96, mip6.REPLAY_TIMESTAMP, 1200)
    assert policy.choose_sa(None, 778, 3600).lifetime == 600
    assert policy.choose_sa(mip6.SaParameters(lifetime=900), 779, 300).lifetime == 300


# ---- end to end ---------------------------------------------------------------------

TOKENS = []


def mint(nai, hoa, now):
    TOKENS.append((nai, hoa, now))
    return f"token:{nai}:{hoa}".encode()


def ext_pair(policy_kwargs=None, pac_kwargs=None, paa_kwargs=None, **kwargs):
    policy = mip6.Mip6Policy(HA, PREFIX, **{"mint_token": mint, **(policy_kwargs or {})})
    paa_kwargs = {"mip6": policy, **(paa_kwargs or {})}
    pac_kwargs = {"mip6_request": mip6.REQUEST_ALL, **(pac_kwargs or {})}
    sim, pac, paa = make_pair(pac_kwargs=pac_kwargs, paa_kwargs=paa_kwargs, **kwargs)
    return sim, pac, paa


def start(sim, pac, until=1.0, now=0.0):
    sim.call(pac.address, "start", now)
    sim.run(until=until)


def test_bootstrap_delivers_ha_hoa_sa_and_token():
    TOKENS.clear()
    sim, pac, paa = ext_pair(policy_kwargs={"assign_hoa": mip6.table_or_random_hoa(
        PREFIX, {NAI: "2001:db8:1::42"})})
    start(sim, pac)
    assert pac.core.state == PacState.OPEN
    (boot,) = pac.effects(fx.Mip6Bootstrapped)
    assert boot == fx.Mip6Bootstrapped(pac.core.session_id, HA, "2001:db8:1::", 64,
                                       "2001:db8:1::42", 64, f"token:{NAI}:2001:db8:1::42".encode())
    assert TOKENS and TOKENS[0][:2] == (NAI, "2001:db8:1::42")
    (pac_sa,) = pac.effects(fx.MipSaEstablished)
    (paa_sa,) = paa.effects(fx.MipSaEstablished)
    assert pac_sa == paa_sa       # same SPI, algorithm, replay, lifetime, key, HoA, HA
    assert pac_sa.hoa == "2001:db8:1::42" and pac_sa.ha == HA and pac_sa.nai == NAI
    assert (pac_sa.algorithm, pac_sa.replay, pac_sa.lifetime) == ("hmac-sha1-96", "timestamp",
                                                                  3600)
    assert pac_sa.spi >= 256 and len(pac_sa.key) == 20
    # The key is prf+(MSK, label | SPI | PaC_nonce | PAA_nonce), computed independently.
    sa = pac.core.sa
    assert pac_sa.key == mip6.mn_ha_key(sa.prf_alg, sa.msk, pac_sa.spi, sa.pac_nonce,
                                        sa.paa_nonce, mip6.ALG_HMAC_SHA1_96)
    assert "key=<20 bytes>" in repr(pac_sa) and pac_sa.key.hex() not in repr(pac_sa)
    assert not pac.effects(fx.StaticConfigFallback)
    # The request went in the PCI and in I_PAN; the grant only in the AUTH-protected PAR[C].
    msgs = {describe(m.decode_message(d)): m.decode_message(d) for _, _, _, d in sim.wire}
    assert mip6.bootstrap_request(msgs["PCI"]) == mip6.REQUEST_ALL
    assert mip6.bootstrap_request(msgs["PAN[S]"]) == mip6.REQUEST_ALL
    assert msgs["PAR[C]"].auth is not None
    assert msgs["PAR[C]"].find(mip6.AVP_MIP6_SA, mip6.VENDOR_ID) is not None
    assert msgs["PAR[S]"].find(mip6.AVP_MIP6_AGENT_INFO, mip6.VENDOR_ID) is None
    # The PAA announced the SA with its final PAR, before the PAN[C] came back.
    order = [type(a).__name__ for a in paa.actions]
    assert order.index("MipSaEstablished") < order.index("PanaSessionOpen")


def test_sa_proposal_is_negotiated():
    proposal = mip6.SaParameters(0, mip6.ALG_HMAC_SHA256, mip6.REPLAY_SEQUENCE, 600)
    sim, pac, paa = ext_pair(pac_kwargs={"mip6_sa_proposal": proposal})
    start(sim, pac)
    (sa,) = pac.effects(fx.MipSaEstablished)
    assert (sa.algorithm, sa.replay, sa.lifetime, len(sa.key)) == ("hmac-sha256", "sequence", 600,
                                                                   32)
    assert paa.effects(fx.MipSaEstablished)[0] == sa
    # The PaC re-authenticates within the shorter SA lifetime, not the session lifetime.
    sim.run(until=700)
    assert len(pac.effects(fx.MipSaEstablished)) >= 2


def test_paa_policy_overrides_unacceptable_proposal():
    proposal = mip6.SaParameters(0, mip6.ALG_HMAC_SHA256, mip6.REPLAY_SEQUENCE, 999999)
    sim, pac, paa = ext_pair(policy_kwargs={"algorithms": (mip6.ALG_HMAC_SHA1_96,),
                                            "replay_modes": (mip6.REPLAY_TIMESTAMP,),
                                            "max_lifetime": 1800},
                             pac_kwargs={"mip6_sa_proposal": proposal})
    start(sim, pac)
    (sa,) = pac.effects(fx.MipSaEstablished)
    assert (sa.algorithm, sa.replay, sa.lifetime) == ("hmac-sha1-96", "timestamp", 1800)


def second_pac(sim, address, nai, seed, request=mip6.REQUEST_ALL):
    from mip6bench.pana import PacConfig, PacCore
    cfg = PacConfig(paa_address=PAA, new_eap_peer=lambda: ScriptedPeer(nai, PSK), nai=nai,
                    mip6_request=request)
    return sim.add(address, PacCore(cfg, rng=random.Random(seed)))


def test_random_hoas_and_spis_are_unique_among_live_sessions():
    users = {f"mn{i}@example.net": PSK for i in range(20)}
    sim, pac, paa = ext_pair(users=users, pac_kwargs={"nai": "mn0@example.net"},
                             policy_kwargs={"assign_hoa": mip6.table_or_random_hoa(
                                 "2001:db8:1::/124")})
    nodes = [pac] + [second_pac(sim, f"2001:db8:f::{i + 100:x}", f"mn{i}@example.net", i)
                     for i in range(1, 20)]
    for node in nodes:
        sim.call(node.address, "start", 0.0)
    sim.run(until=2.0)
    assert all(n.core.state == PacState.OPEN for n in nodes)
    sas = paa.effects(fx.MipSaEstablished)
    hoas = [sa.hoa for sa in sas]
    spis = [sa.spi for sa in sas]
    # /124 holds 15 usable addresses: 15 PaCs get one, 5 fall back to static config.
    assert len(hoas) == len(set(hoas)) == 15
    assert len(spis) == len(set(spis)) == 15
    fallbacks = [n for n in nodes if n.effects(fx.StaticConfigFallback)]
    assert len(fallbacks) == 5
    assert set(fallbacks[0].effects(fx.StaticConfigFallback)[0].missing) == {"home_address",
                                                                            "mip6_sa"}


def test_reauthentication_rekeys_the_mip6_sa_both_ways():
    sim, pac, paa = ext_pair()
    start(sim, pac)
    for who, now in (("PaC", 5.0), ("PAA", 10.0)):
        if who == "PaC":
            sim.call(PAC, "reauthenticate", now)
        else:
            sim.call(PAA, "reauthenticate", pac.core.session_id, now)
        sim.run(until=now + 1)
    pac_sas = pac.effects(fx.MipSaEstablished)
    paa_sas = paa.effects(fx.MipSaEstablished)
    assert pac_sas == paa_sas and len(pac_sas) == 3
    assert len({sa.spi for sa in pac_sas}) == 3 and len({sa.key for sa in pac_sas}) == 3
    assert len({sa.hoa for sa in pac_sas}) == 1          # the HoA survives re-keying
    for node in (pac, paa):
        revoked = node.effects(fx.MipSaRevoked)
        assert [(r.spi, r.reason) for r in revoked] == [(pac_sas[0].spi, "rekeyed"),
                                                        (pac_sas[1].spi, "rekeyed")]


def test_termination_and_expiry_revoke_the_sa():
    sim, pac, paa = ext_pair()
    start(sim, pac)
    spi = pac.effects(fx.MipSaEstablished)[0].spi
    sim.call(PAC, "terminate", 5.0)
    sim.run(until=6.0)
    assert [(r.spi, r.reason) for r in paa.effects(fx.MipSaRevoked)] == [
        (spi, "terminated by PaC")]
    assert [r.spi for r in pac.effects(fx.MipSaRevoked)] == [spi]

    sim, pac, paa = ext_pair(paa_kwargs={"session_lifetime": 100})
    start(sim, pac)
    spi = paa.effects(fx.MipSaEstablished)[0].spi
    sim.filter = lambda src, dst, data: None
    sim.run(until=150)
    assert [(r.spi, r.reason) for r in paa.effects(fx.MipSaRevoked)] == [
        (spi, "session lifetime expired")]
    assert not paa.core.sessions


def test_unanswered_final_par_revokes_the_announced_sa():
    sim, pac, paa = ext_pair()
    sim.filter = lambda src, dst, data: None if describe(m.decode_message(data)) == "PAR[C]" \
        else data
    start(sim, pac, until=400)
    (announced,) = paa.effects(fx.MipSaEstablished)
    (revoked,) = paa.effects(fx.MipSaRevoked)
    assert revoked.spi == announced.spi and not paa.core.sessions


def test_plain_paa_ignores_extension_and_pac_falls_back():
    sim, pac, paa = make_pair(pac_kwargs={"mip6_request": mip6.REQUEST_ALL})
    start(sim, pac)
    assert pac.core.state == PacState.OPEN
    (session,) = paa.core.sessions.values()
    assert session.state == PaaState.OPEN and session.mip6_request == 0
    (fallback,) = pac.effects(fx.StaticConfigFallback)
    assert set(fallback.missing) == {"ha_info", "home_address", "mip6_sa", "nsis_token"}
    assert not pac.effects(fx.MipSaEstablished) and not pac.effects(fx.Mip6Bootstrapped)
    assert pac.events("pana.mip6_fallback")


def test_no_session_without_pana_sa():
    """A PAR[S] without PRF-Algorithm/Integrity-Algorithm AVPs (RFC 5191 4.1 requires
    them) would give a session without a PANA SA, so nothing after it, the Result-Code
    and the extension AVPs included, could be authenticated: the PaC drops it, counted,
    and never opens (issue 10, defect 7)."""
    sim, pac, paa = ext_pair(paa_kwargs={"offer_pana_sa": False})
    start(sim, pac, until=5.0)
    assert pac.core.state != PacState.OPEN and pac.core.sa is None
    assert pac.core.counters["PAR[S] without algorithms"] >= 1
    assert not pac.effects(fx.PanaSessionOpen) and not pac.effects(fx.Mip6Bootstrapped)
    assert not paa.effects(fx.MipSaEstablished)


@pytest.mark.parametrize("offer", ["prf only", "integrity only"])
def test_no_session_from_a_par_s_with_half_the_algorithms(offer):
    kwargs = {"integrity_algorithms": ()} if offer == "prf only" else {"prf_algorithms": ()}
    sim, pac, paa = ext_pair(paa_kwargs=kwargs)
    start(sim, pac, until=5.0)
    assert pac.core.state != PacState.OPEN
    assert pac.core.counters["PAR[S] without algorithms"] >= 1


def test_partial_request_and_missing_token_minter():
    sim, pac, paa = ext_pair(policy_kwargs={"mint_token": None},
                             pac_kwargs={"mip6_request": mip6.REQUEST_HA_INFO
                                         | mip6.REQUEST_NSIS_TOKEN})
    start(sim, pac)
    (boot,) = pac.effects(fx.Mip6Bootstrapped)
    assert boot.ha == HA and boot.hoa is None
    assert not pac.effects(fx.MipSaEstablished) and not paa.effects(fx.MipSaEstablished)
    assert pac.effects(fx.StaticConfigFallback)[0].missing == ("nsis_token",)


def test_new_session_of_same_user_supersedes_old_one():
    sim, pac, paa = ext_pair()
    start(sim, pac)
    first = pac.effects(fx.MipSaEstablished)[0]
    # The MN reboots at another address and authenticates again with the same NAI.
    other = second_pac(sim, "2001:db8:f::99", NAI, 77)
    sim.call(other.address, "start", 5.0)
    sim.run(until=6.0)
    assert other.core.state == PacState.OPEN and len(paa.core.sessions) == 1
    closed = paa.effects(fx.PanaSessionClosed)
    assert closed[0].reason == "superseded" and closed[0].session_id == first.session_id
    second = other.effects(fx.MipSaEstablished)[0]
    assert second.hoa == first.hoa and second.spi != first.spi


def test_superseded_session_is_ended_with_an_authenticated_ptr():
    """RFC 5191 4.4: the PAA ends the older session of the NAI with a PTR (Termination-
    Cause ADMINISTRATIVE, 4) signed with that session's key; its SA is revoked before the
    new one is announced; the old PaC answers PTA and closes, the PAA then removes it."""
    from mip6bench.pana import crypto as c
    sim, pac, paa = ext_pair()
    start(sim, pac)
    first = pac.effects(fx.MipSaEstablished)[0]
    old_sid, old_key = pac.core.session_id, pac.core.sa
    other = second_pac(sim, "2001:db8:f::99", NAI, 77)
    sim.call(other.address, "start", 5.0)
    sim.run(until=6.0)
    ptrs = [(s, d, m.decode_message(data)) for _, s, d, data in sim.wire
            if describe(m.decode_message(data)) == "PTR"]
    assert [(s, d) for s, d, _ in ptrs] == [(PAA, PAC)]
    ptr = ptrs[0][2]
    assert ptr.session_id == old_sid and ptr.termination_cause == m.TERMINATION_ADMINISTRATIVE == 4
    assert c.verify(ptr, old_key.auth_key, old_key.integrity_alg)
    assert sim.names(src=PAC)[-1] == "PTA"
    # The old PaC: closed by the PAA, with the cause, its SA gone.
    assert pac.core.state == PacState.CLOSED
    (closed,) = pac.effects(fx.PanaSessionClosed)
    assert (closed.reason, closed.cause) == ("terminated by PAA", 4)
    assert pac.effects(fx.MipSaRevoked)[-1].spi == first.spi
    # The PAA: old SA revoked before the new one is announced, once; session removed on
    # the PTA as "superseded".
    sa_effects = [e for e in paa.effects() if isinstance(e, (fx.MipSaRevoked,
                                                             fx.MipSaEstablished))]
    revoked = [e for e in sa_effects if isinstance(e, fx.MipSaRevoked)]
    assert [(e.spi, e.reason) for e in revoked] == [(first.spi, "superseded")]
    assert sa_effects.index(revoked[0]) < len(sa_effects) - 1    # a new SA follows it
    assert isinstance(sa_effects[-1], fx.MipSaEstablished) and sa_effects[-1].spi != first.spi
    (said,) = paa.events("pana.superseded")
    assert said.fields["session_id"] == old_sid and said.fields["nai"] == NAI
    assert said.fields["by"] == other.core.session_id
    closed = paa.effects(fx.PanaSessionClosed)
    assert [(e.session_id, e.reason) for e in closed] == [(old_sid, "superseded")]
    assert list(paa.core.sessions) == [other.core.session_id]
    assert other.core.state == PacState.OPEN


def test_ptr_to_a_superseded_session_is_retransmitted_then_given_up():
    """The old PaC is gone (rebooted): the PTR goes out at REQ_IRT with RFC 3315 backoff,
    REQ_MRC times, and then the PAA removes the session all the same."""
    from .test_pana_harness import ZeroJitter
    sim, pac, paa = ext_pair(rng_class=ZeroJitter)
    start(sim, pac)
    old_sid = pac.core.session_id
    sim.filter = lambda src, dst, data: None if PAC in (src, dst) else data   # PaC gone
    other = second_pac(sim, "2001:db8:f::99", NAI, 77)
    sim.call(other.address, "start", 5.0)
    sim.run(until=600.0)
    sent = sim.sent_times(PAA, "PTR")
    gaps = [round(b - a, 6) for a, b in zip(sent, sent[1:])]
    assert gaps == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]        # REQ_IRT, MRT 30, MRC 10
    assert paa.events("pana.gave_up")[0].fields["message"] == "PTR"
    (closed,) = paa.effects(fx.PanaSessionClosed)
    assert (closed.session_id, closed.reason) == (old_sid, "superseded")
    assert len(paa.effects(fx.MipSaRevoked)) == 1               # revoked once, at once
    assert other.core.state == PacState.OPEN and list(paa.core.sessions) == [
        other.core.session_id]


def test_superseding_a_session_in_reauthentication_cancels_its_aaa_exchange():
    sim, pac, paa = ext_pair()
    start(sim, pac)
    old_sid = pac.core.session_id
    sim.aaa_hold = True                               # the old re-auth waits on the AAA
    sim.call(PAC, "reauthenticate", 2.0)
    sim.run(until=2.5)
    assert paa.core.sessions[old_sid].state == PaaState.WAIT_AAA
    sim.aaa_hold = False
    other = second_pac(sim, "2001:db8:f::99", NAI, 77)
    # AAA answers for the old session were held: only the new one's are answered now.
    sim.call(other.address, "start", 5.0)
    sim.run(until=6.0)
    assert [e.session_id for e in paa.effects(fx.AaaCancel)] == [old_sid]
    assert pac.core.state == PacState.CLOSED and other.core.state == PacState.OPEN
    assert old_sid not in paa.core.sessions


def test_tampered_extension_avps_fail_auth():
    """An on-path attacker rewriting the HA address in the final PAR breaks AUTH: the PaC
    drops it and only the PAA's genuine retransmission is used."""
    ha_bytes = ipaddress.IPv6Address(HA).packed
    evil = ipaddress.IPv6Address("2001:db8:bad::1").packed
    tampered = []

    def rewrite_ha(src, dst, data):
        if not tampered and describe(m.decode_message(data)) == "PAR[C]":
            tampered.append(True)
            assert ha_bytes in data
            return data.replace(ha_bytes, evil, 1)
        return data
    sim, pac, paa = ext_pair()
    sim.filter = rewrite_ha
    start(sim, pac, until=5.0)
    assert pac.core.counters["bad AUTH"] == 1
    assert pac.core.state == PacState.OPEN
    (boot,) = pac.effects(fx.Mip6Bootstrapped)
    assert boot.ha == HA


def test_effect_order_and_sa_not_renewed():
    sim, pac, paa = ext_pair()
    start(sim, pac)
    kinds = [type(a).__name__ for a in pac.effects()]
    assert kinds == ["PanaSessionOpen", "Mip6Bootstrapped", "MipSaEstablished"]
    spi = pac.effects(fx.MipSaEstablished)[0].spi
    # The home network stops offering the extension: the next re-authentication
    # succeeds without an SA, and both ends drop the old one.
    paa.core.config.mip6 = None
    sim.call(PAC, "reauthenticate", 5.0)
    sim.run(until=6.0)
    assert pac.core.state == PacState.OPEN
    for node in (pac, paa):
        assert [(r.spi, r.reason) for r in node.effects(fx.MipSaRevoked)] == [
            (spi, "not renewed")]
    assert pac.effects(fx.StaticConfigFallback)
