"""Authorization at the NF: RFC 5981 SESSION_AUTH tokens (forged, expired, replayed,
other flow, other MN, CoA of the token's HoA) and pull mode (success, deny, timeout);
every refusal carries the RFC 5973 code, leaves nothing pending or installed, and is
counted by reason."""
from __future__ import annotations

import pytest

from mip6bench.aaa.token import Flow
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import (AuthorizeRequest, DeliverResponse, InstallPinhole, Mri,
                                  SessionFailed, SessionReady)

from .natfw_harness import CN, COA, COTI, HOA, HOTI, SID, T0, Net, tok

MIP6 = w.Mip6Flow(w.MIP6_MH, 2, HOA)


def refused_with(net, pair, why):
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.pair == pair
    (failed,) = net.of("ni", SessionFailed)
    assert failed.info.pair == pair
    assert net.of("nf", InstallPinhole) == []
    assert not any(t == "nr" for _, t, _ in net.wire)           # nothing went downstream
    assert not net.nf.sessions and net.nf.pending_count == 0
    assert net.nf.counters[f"refused.{why}"] == 1


@pytest.mark.parametrize("token, mri, mip6, pair, why", [
    (None, COTI, MIP6, w.ERR_AUTHORIZATION_FAILED, "no token"),
    (tok(key=bytes(32)), COTI, MIP6, w.ERR_AUTHENTICATION_FAILED, "forged"),
    (tok(key_id=9), COTI, MIP6, w.ERR_AUTHENTICATION_FAILED, "forged"),
    (tok(start=T0 - 700, end=T0 - 100), COTI, MIP6, w.ERR_AUTHORIZATION_FAILED, "expired"),
    (tok(start=T0 + 100, end=T0 + 700), COTI, MIP6, w.ERR_AUTHORIZATION_FAILED, "expired"),
    (tok(), Mri(COA, "2001:db8:3::1", 135), MIP6, w.ERR_AUTHORIZATION_FAILED,
     "flow not authorized"),
    (tok(), Mri(HOA, CN, 6, 1, 80), None, w.ERR_AUTHORIZATION_FAILED, "flow not authorized"),
    (tok(hoa="2001:db8:1::1002"), COTI, MIP6, w.ERR_AUTHORIZATION_FAILED, "another MN"),
    (tok(), Mri("2001:db8:1::1002", CN, 135), None, w.ERR_AUTHORIZATION_FAILED, "another MN"),
    (tok(), COTI, w.Mip6Flow(w.MIP6_MH, 2), w.ERR_AUTHORIZATION_FAILED, "another MN"),
])
def test_token_refusals(token, mri, mip6, pair, why):
    net = Net(token)
    net.open(mri=mri, mip6=mip6)
    refused_with(net, pair, why)
    (resp,) = net.of("ni", DeliverResponse)
    assert resp.info.object_type == w.T_SESSION_AUTH


def test_tampered_token_is_refused():
    for i in range(4, len(tok())):
        t = bytearray(tok())
        t[i] ^= 0x01
        net = Net()
        try:
            net.ni = type(net.ni)(bytes(t), msn_start=100)
        except ValueError:
            continue                              # the NI itself cannot carry it
        net.open()
        assert net.of("nf", InstallPinhole) == [], i
        assert sum(v for k, v in net.nf.counters.items() if k.startswith("refused.")) == 1


def test_replayed_token_is_bound_to_the_first_session():
    net = Net(tok())
    net.open(sid=SID)
    assert len(net.of("nf", InstallPinhole)) == 1
    other = b"\x02" * 16
    net.open(sid=other)                           # same token, another NSIS session
    assert len(net.of("nf", InstallPinhole)) == 1
    assert net.nf.counters["refused.replayed token"] == 1 and other not in net.nf.sessions
    net.run(until=31)                             # the first session refreshes fine
    assert len(net.of("nf", InstallPinhole)) == 2


def test_a_token_refused_for_its_flow_is_not_consumed():
    net = Net(tok())
    net.open(mri=Mri(COA, "2001:db8:3::1", 135), sid=b"\x09" * 16)
    assert net.nf.counters["refused.flow not authorized"] == 1
    net.open(sid=SID)
    assert len(net.of("nf", InstallPinhole)) == 1


def test_coa_is_accepted_only_with_the_token_hoa_named_and_binding_on():
    net = Net(tok(), coa_binding=False)
    net.open(mri=COTI, mip6=MIP6)
    assert net.nf.counters["refused.another MN"] == 1
    net2 = Net(tok())
    net2.open(mri=COTI, mip6=MIP6)
    assert len(net2.of("nf", InstallPinhole)) == 1


def test_sub_ports_need_both_ports_in_the_token():
    t = tok(flows=(Flow(17, "2001:db8:2::10/128", 5000),))
    net = Net(t)
    net.open(mri=Mri(HOA, CN, 17, 4000, 5000), mip6=None, sub_ports=1)
    assert net.nf.counters["refused.flow not authorized"] == 1
    t2 = tok(flows=(Flow(17, "2001:db8:2::10/128", 5000), Flow(17, "2001:db8:2::10/128", 5001)))
    net2 = Net(t2)
    net2.open(mri=Mri(HOA, CN, 17, 4000, 5000), mip6=None, sub_ports=1)
    (ins,) = net2.of("nf", InstallPinhole)
    assert ins.flow.sub_ports == 1


def test_token_store_is_bounded():
    net = Net(None, replay_memory=2)
    for i in range(3):
        net.ni = type(net.ni)(tok(token_id=bytes([i]) * 8), msn_start=100)
        net.open(sid=bytes([i + 1]) * 16)
    assert len(net.of("nf", InstallPinhole)) == 2
    assert net.nf.counters["refused.token store full"] == 1


# ---------------------------------------------------------------- pull mode


def pull_net(**kw):
    net = Net(None, keys=None, authorization="pull", **kw)
    return net


def test_pull_success_forwards_only_after_the_aaa_allows():
    net = pull_net()
    net.open(mri=COTI, mip6=MIP6)
    (req,) = net.of("nf", AuthorizeRequest)
    assert req.session_id == SID and req.flow.mri == COTI and req.source == COA
    assert req.flow.mip6 == MIP6
    assert net.names() == ["CREATE"] and net.nf.pending_count == 1
    net.apply("nf", net.nf.authorization_result(req.request_id, True, "ok", 40, net.now))
    (ins,) = net.of("nf", InstallPinhole)
    assert ins.lifetime == 40                    # the AAA's max_lifetime caps the grant
    (ready,) = net.of("ni", SessionReady)
    assert ready.lifetime == 40 and net.nf.counters["authorized"] == 1
    net.run(until=25)                             # refresh: authorized flow, no new request
    assert len(net.of("nf", AuthorizeRequest)) == 1 and len(net.of("nf", InstallPinhole)) == 2


def test_pull_deny_refuses_with_authorization_failed():
    net = pull_net()
    net.open()
    (req,) = net.of("nf", AuthorizeRequest)
    net.apply("nf", net.nf.authorization_result(req.request_id, False, "no such MN", None,
                                                net.now))
    refused_with(net, w.ERR_AUTHORIZATION_FAILED, "pull denied")
    # a late or unknown answer is ignored
    assert net.nf.authorization_result(req.request_id, True, "", None, net.now) == []
    assert net.nf.counters["late_auth_result"] == 1


def test_pull_timeout_refuses():
    net = pull_net(auth_timeout=2.0)
    net.ni.max_retransmit = 0
    net.ni.rto = 10.0
    net.open()
    net.run(until=2.0)
    refused_with(net, w.ERR_AUTHORIZATION_FAILED, "authorization timeout")


def test_pull_requests_are_bounded():
    net = pull_net(max_pending=3, max_per_source=100)
    for i in range(5):
        net.open(sid=bytes([i + 1]) * 16)
    assert len(net.of("nf", AuthorizeRequest)) == 3
    assert net.nf.counters["refused.max pending"] == 2 and net.nf.pending_count == 3


def test_a_retransmitted_create_replaces_the_held_request():
    net = pull_net()
    net.open()
    net.run(until=0.5)                            # NI retransmits with MSN 101
    first, second = net.of("nf", AuthorizeRequest)
    assert net.nf.pending_count == 1
    assert net.nf.authorization_result(first.request_id, True, "", None, net.now) == []
    net.apply("nf", net.nf.authorization_result(second.request_id, True, "", None, net.now))
    (ins,) = net.of("nf", InstallPinhole)
    assert [m.msn for f, t, m in net.wire if f == "nf" and t == "nr"] == [101]


def test_token_or_pull_uses_the_token_when_there_is_one():
    net = Net(tok(), authorization="token-or-pull")
    net.open()
    assert net.of("nf", AuthorizeRequest) == [] and len(net.of("nf", InstallPinhole)) == 1
    net2 = Net(None, authorization="token-or-pull")
    net2.open()
    (req,) = net2.of("nf", AuthorizeRequest)
    net2.apply("nf", net2.nf.authorization_result(req.request_id, True, "", None, net2.now))
    assert len(net2.of("nf", InstallPinhole)) == 1
    # a bad token is refused, not put to the AAA
    net3 = Net(tok(key=bytes(32)), authorization="token-or-pull")
    net3.open()
    assert net3.of("nf", AuthorizeRequest) == [] and net3.nf.counters["refused.forged"] == 1


def test_hoti_via_the_home_address_with_token():
    net = Net(tok())
    net.open(mri=HOTI, mip6=w.Mip6Flow(w.MIP6_MH, 1, HOA))
    assert len(net.of("nf", InstallPinhole)) == 1


def test_handover_keeps_the_session_and_its_token_for_the_new_coa():
    """After a handover the MN signals the same NSIS session id from its new CoA: the token
    (bound to that session) still passes, the NR consents again and the NF installs the
    new flow under the same session id, which replaces the old CoA's rule."""
    net = Net(tok())
    net.open(mri=COTI, mip6=MIP6)
    new_coti = Mri("2001:db8:12::7", CN, 135)
    net.open(mri=new_coti, mip6=MIP6)
    first, second = net.of("nf", InstallPinhole)
    assert first.session_id == second.session_id == SID
    assert first.flow.mri == COTI and second.flow.mri == new_coti
    assert net.nf.sessions[SID].flow.mri == new_coti and len(net.nf.sessions) == 1
    assert net.nf.counters["refused.replayed token"] == 0
    # in pull mode the changed flow is put to the AAA again
    pnet = pull_net()
    pnet.open(mri=COTI, mip6=MIP6)
    (req,) = pnet.of("nf", AuthorizeRequest)
    pnet.apply("nf", pnet.nf.authorization_result(req.request_id, True, "", None, pnet.now))
    pnet.open(mri=new_coti, mip6=MIP6)
    assert len(pnet.of("nf", AuthorizeRequest)) == 2


def test_a_torn_down_session_frees_its_place_on_the_token():
    """token_sessions bounds the sessions a token authorizes at one time: an MN that
    stops and restarts route optimisation (new sessions) is not taken for a replay."""
    from mip6bench.natfw.core import RemovePinhole

    net = Net(tok(), token_sessions=1)
    net.open(sid=SID)
    assert len(net.of("nf", InstallPinhole)) == 1
    net.apply("ni", net.ni.teardown(SID, net.now))
    assert len(net.of("nf", RemovePinhole)) == 1
    other = b"\x03" * 16
    net.open(sid=other)
    assert net.nf.counters["refused.replayed token"] == 0
    assert len(net.of("nf", InstallPinhole)) == 2 and other in net.nf.sessions
    net.open(sid=b"\x04" * 16)                    # a second one at the same time is not
    assert net.nf.counters["refused.replayed token"] == 1


def test_a_token_seen_on_the_wire_opens_nothing_from_another_address():
    """The attacks experiment's create-stolen-token: a listener on the MN's link takes
    the token from the MN's CREATE and presents it, in a session of its own, for a flow
    from its own address naming the MN's home address. With the MN's CoA sessions bound
    to the token that is refused; the MN's own new sessions from its CoA (and its home
    address's) still pass, and after a handover (its sessions moved to the new CoA) so
    do its new sessions from there."""
    net = Net(tok(), token_sessions=8)
    net.open(sid=SID)                                             # the MN, from its CoA
    assert len(net.of("nf", InstallPinhole)) == 1
    thief = Mri("2001:db8:11::bad", CN, 135)
    net.open(mri=thief, mip6=MIP6, sid=b"\x0a" * 16)
    assert net.nf.counters["refused.token used from another address"] == 1
    assert b"\x0a" * 16 not in net.nf.sessions and len(net.of("nf", InstallPinhole)) == 1
    net.open(mri=Mri(COA, CN, 135), mip6=MIP6, sid=b"\x0b" * 16)  # the MN's next session
    net.open(mri=HOTI, mip6=None, sid=b"\x0c" * 16)                # and its home address's
    assert len(net.of("nf", InstallPinhole)) == 3
    new_coa = "2001:db8:12::5"
    for sid in (SID, b"\x0b" * 16):                                 # handover: same sessions
        net.open(mri=Mri(new_coa, CN, 135), mip6=MIP6, sid=sid)
    net.open(mri=Mri(new_coa, CN, 135), mip6=MIP6, sid=b"\x0d" * 16)
    assert b"\x0d" * 16 in net.nf.sessions
    assert net.nf.counters["refused.token used from another address"] == 1


def test_a_token_with_only_home_address_sessions_binds_the_first_care_of_address():
    """Before any CoA session is bound there is no address to compare with: the first
    one binds (the MN's own first CoA session comes before anyone can read the token
    off the wire, whose first sight is that very CREATE or the HoA's)."""
    net = Net(tok(), token_sessions=8)
    net.open(mri=HOTI, mip6=None, sid=SID)
    net.open(mri=COTI, mip6=MIP6, sid=b"\x0b" * 16)
    assert len(net.of("nf", InstallPinhole)) == 2
    assert net.nf.counters["refused.token used from another address"] == 0


def test_tokens_of_closed_sessions_are_forgotten():
    """The soak's pattern: every re-authentication brings a new token, every handover new
    sessions that later close. Forgetting a token no open session is bound to changes no
    decision (binding it again is binding it the first time), and keeps the token store
    at the size of what is open instead of one entry per re-authentication."""
    from mip6bench.natfw.core import RemovePinhole

    from .memory_bounds import container_sizes, grown

    net = Net(None)
    roots = {"nf": net.nf}

    def reauthenticate_and_move(i):
        net.ni = type(net.ni)(tok(token_id=i.to_bytes(8, "big")), msn_start=100)
        sid = i.to_bytes(16, "big")
        net.open(sid=sid)
        net.apply("ni", net.ni.teardown(sid, net.now))

    for i in range(1, 6):
        reauthenticate_and_move(i)
    before = container_sizes(roots)
    for i in range(6, 46):
        reauthenticate_and_move(i)
    assert len(net.of("nf", InstallPinhole)) == len(net.of("nf", RemovePinhole)) == 45
    assert not net.nf._tokens and not net.nf._token_bytes
    # The closed sessions' ids are remembered (bounded by closed_memory): all that grows.
    assert set(grown(before, container_sizes(roots), 20)) == {"nf._closed"}


def test_the_parse_of_a_token_goes_with_its_last_session():
    """The process-wide parse cache (aaa/token.py) keeps a token only while an open
    session is bound to it: the hour soak's firewall grew ~1 kB per re-authentication
    while every old token's parse stayed cached until 4,096 had piled up."""
    from mip6bench.aaa import token as tokens

    net = Net(None)
    held = []
    for i in range(1, 4):
        raw = tok(token_id=(1000 + i).to_bytes(8, "big"))
        held.append(raw)
        net.ni = type(net.ni)(raw, msn_start=100)
        sid = (1000 + i).to_bytes(16, "big")
        net.open(sid=sid)
        assert bytes(raw) in tokens._parsed, "parsed while its session is open"
        net.apply("ni", net.ni.teardown(sid, net.now))
        assert bytes(raw) not in tokens._parsed, "dropped with its last session"
    # A token still bound to an open session keeps its parse.
    raw = tok(token_id=(2000).to_bytes(8, "big"))
    net.ni = type(net.ni)(raw, msn_start=100)
    net.open(sid=(2000).to_bytes(16, "big"))
    assert bytes(raw) in tokens._parsed


def test_a_session_reauthorized_by_a_new_token_leaves_the_old_one():
    """The soak's real pattern: the MN keeps its sessions and, after each PANA
    re-authentication, refreshes them with the new token. The old token then has no
    session bound to it and is forgotten with its parse; before, each session stayed on
    the list of every token it had ever carried, so the token store and the parse cache
    grew by one token a re-authentication (the hour soak's firewall: +2.6 MB/h)."""
    from mip6bench.aaa import token as tokens

    net = Net(tok(token_id=(4000).to_bytes(8, "big")))
    net.open()
    first = tok(token_id=(4000).to_bytes(8, "big"))
    for i in range(1, 30):
        raw = tok(token_id=(4000 + i).to_bytes(8, "big"))
        net.ni.set_token(raw)
        net.open()                                   # the refresh carries the new token
        assert list(net.nf._tokens) == [(1, (4000 + i).to_bytes(8, "big"))]
        assert bytes(raw) in tokens._parsed
    assert bytes(first) not in tokens._parsed
    assert len(net.nf._token_bytes) == 1 and len(net.nf._token_of) == 1
    # Still one pinhole, re-authorized each time; nothing refused.
    assert not [k for k, v in net.nf.counters.items() if k.startswith("refused.") and v]
    assert len(net.of("nf", InstallPinhole)) >= 1


def test_the_token_parse_cache_is_bounded(monkeypatch):
    from mip6bench.aaa import token as tokens

    monkeypatch.setattr(tokens, "TOKEN_CACHE", 3)
    monkeypatch.setattr(tokens, "_parsed", tokens.OrderedDict())
    raws = [tok(token_id=(3000 + i).to_bytes(8, "big")) for i in range(5)]
    for raw in raws:
        tokens.decode_token(raw)
    assert list(tokens._parsed) == [bytes(r) for r in raws[2:]]
    tokens.decode_token(raws[2])                   # used: now the most recent
    tokens.decode_token(raws[0])
    assert list(tokens._parsed) == [bytes(r) for r in (raws[4], raws[2], raws[0])]


def _nr_silent(frm, to, msg):
    return to == "nr"                             # the NR never hears: requests stay pending


def _counting_verify(monkeypatch):
    from mip6bench.natfw import core

    calls = []
    real = core.verify_token
    monkeypatch.setattr(core, "verify_token", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_retransmissions_of_a_pending_request_are_neither_verified_nor_forwarded_again(monkeypatch):
    """The NI retries under the same session ID with newer MSNs (0.5, 1.5, 3.5, 7.5 s):
    the token is verified once; a retry within 2 s of the last forward only moves the
    session's MSN on, later ones go downstream again (each with its own MSN)."""
    calls = _counting_verify(monkeypatch)
    net = Net(tok(), drop=_nr_silent)
    net.open(sid=SID)
    net.run(until=8)
    sent = [m.msn for f, t, m in net.wire if f == "ni"]
    forwarded = [m.msn for f, t, m in net.wire if f == "nf" and t == "nr"]
    assert len(sent) == 5 and forwarded == [sent[0], sent[3], sent[4]]
    assert net.nf.counters["retransmissions_absorbed"] == 2
    assert len(calls) == 1 and net.nf.counters["token_check_skipped"] == 4
    assert net.nf.sessions[SID].msn == sent[-1]
    assert net.nf.pending_count == 1 and list(net.nf._tokens.values())[0][0] == (SID,)


def test_the_nr_answer_to_an_earlier_msn_completes_an_absorbed_retransmission():
    answers = []
    net = Net(tok(), drop=lambda f, t, m: t == "ni" and not answers.append(m) and len(answers) == 1)
    net.nf.reforward_after = 10.0
    net.open(sid=SID)                             # the NR's RESPONSE to it is lost upstream
    first = net.wire[0][2].msn
    net.run(until=0.6)                            # the retry is answered by the NF itself
    assert len(net.of("ni", SessionReady)) == 1 and len(net.of("nf", InstallPinhole)) == 1
    assert net.nf.counters["retransmissions_answered"] == 1
    assert [m.msn for f, t, m in net.wire if t == "nr"] == [first]
    (ready,) = net.of("ni", SessionReady)
    assert 1 <= ready.lifetime <= 60


def test_a_lost_forward_is_sent_again_by_a_later_retransmission():
    lost = []
    net = Net(tok(), drop=lambda f, t, m: t == "nr" and not lost and not lost.append(m))
    net.open(sid=SID)                             # the NF's CREATE to the NR is lost
    net.run(until=1.6)                            # retries at 0.5 and 1.5 s: absorbed
    assert net.of("ni", SessionReady) == []
    net.run(until=3.6)                            # 3.5 s: forwarded again, answered
    assert len(net.of("ni", SessionReady)) == 1 and len(net.of("nf", InstallPinhole)) == 1
    assert net.nf.counters["retransmissions_absorbed"] == 2


@pytest.mark.parametrize("change", ["token", "flow", "key", "expired"])
def test_a_retransmission_that_differs_is_verified_in_full(change, monkeypatch):
    calls = _counting_verify(monkeypatch)
    other = tok(token_id=b"\x08" * 8)
    net = Net(tok(), drop=_nr_silent)
    net.open(sid=SID)
    if change == "token":
        net.open(sid=SID, token=other)            # same session, another token
    elif change == "flow":
        net.open(sid=SID, mri=Mri("2001:db8:11::6", CN, 135))
    elif change == "key":
        net.nf.keys = {1: bytes(32)}              # the key was replaced meanwhile
        net.run(until=0.6)
    else:
        net.nf.wall_clock = lambda now: T0 + 700  # past the token's END_TIME
        net.run(until=0.6)
    assert net.nf.counters["token_check_skipped"] == 0 and len(calls) == 2
    refused = {"token": None, "flow": None, "key": "forged", "expired": "expired"}[change]
    if refused:
        assert net.nf.counters[f"refused.{refused}"] == 1


def test_a_refresh_goes_to_the_nr_with_the_token_check_skipped(monkeypatch):
    calls = _counting_verify(monkeypatch)
    net = Net(tok())
    net.open(sid=SID)
    assert len(net.of("nf", InstallPinhole)) == 1
    net.run(until=31)                             # the NI's refresh at half the lifetime
    assert len(net.of("nf", InstallPinhole)) == 2
    assert len([1 for f, t, m in net.wire if t == "nr"]) == 2
    assert net.nf.counters["retransmissions_answered"] == 0 and len(calls) == 1
