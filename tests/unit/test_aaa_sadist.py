"""SA distribution PAA <-> HA: codec, push/pull/revoke, retransmission, replay, forgery,
expiry."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mip6bench.aaa import sadist as sd
from mip6bench.aaa.sadist import (SaDistConfig, SaDistHaCore, SaDistPaaCore, SaFetchFailed,
                                  SaInstall, SaRecord, SaRemove)
from mip6bench.codec import Reader
from mip6bench.mipv6.sa import SAStore
from mip6bench.sansio import Event, StartTimer, Transmit

PAA, HA = "2001:db8:1::2", "2001:db8:1::1"
PSK = bytes(range(32))
RECORD = SaRecord(0x12345678, "hmac-sha1-96", "timestamp", 30.0, "2001:db8:1::1001", HA,
                  bytes(range(20)), "mn1@mip6bench.example", 99)


def tx(actions):
    return [a for a in actions if isinstance(a, Transmit)]


def effects(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def timers(actions):
    return [a for a in actions if isinstance(a, StartTimer)]


class Pair:
    def __init__(self, mode="push", ha_psk=PSK, window=30.0, wall_skew=0.0):
        self.paa = SaDistPaaCore(SaDistConfig({HA: PSK}, mode=mode, window=window),
                                 rng=random.Random(1))
        self.ha = SaDistHaCore(SaDistConfig({PAA: ha_psk}, window=window,
                                            wall_offset=wall_skew), rng=random.Random(2))
        self.store = SAStore()

    def to_ha(self, actions, now):
        out = []
        for t in tx(actions):
            assert (t.dst, t.port) == (HA, sd.SADIST_PORT)
            out += self.ha.receive(t.data, PAA, sd.SADIST_PORT, now)
        self.apply(out)
        return out

    def to_paa(self, actions, now):
        out = []
        for t in tx(actions):
            assert t.dst == PAA
            out += self.paa.receive(t.data, HA, sd.SADIST_PORT, now)
        return out

    def apply(self, actions):
        for e in actions:
            if isinstance(e, SaInstall):
                self.store.replace(e.sa)
            elif isinstance(e, SaRemove):
                self.store.remove(e.spi)


# ---- codec ------------------------------------------------------------------------------

@pytest.mark.parametrize("msg", [
    sd.Message(sd.PUSH, 1, 1000, record=RECORD),
    sd.Message(sd.REVOKE, 2, 1000, spi=300, hoa="2001:db8:1::5", reason="rekeyed"),
    sd.Message(sd.ACK, 3, 1000, status=sd.ACK_UNKNOWN_SPI),
    sd.Message(sd.FETCH, 4, 1000, selector=sd.SEL_SPI, spi=300),
    sd.Message(sd.FETCH, 5, 1000, selector=sd.SEL_HOA, hoa="2001:db8:1::5"),
    sd.Message(sd.FETCH, 6, 1000, selector=sd.SEL_NAI, nai="mn2@x"),
    sd.Message(sd.REPLY, 7, 1000, status=sd.FOUND, record=RECORD),
    sd.Message(sd.REPLY, 8, 1000, status=sd.NOT_FOUND),
    sd.Message(sd.HELLO, 9, 1000),
])
def test_plaintext_round_trip(msg):
    assert sd.Message.parse(msg.type, msg.plaintext()) == msg


def test_record_layout_and_strictness():
    raw = RECORD.encode()
    assert raw[:4] == bytes.fromhex("12345678") and raw[4:6] == bytes([2, 2])
    assert raw[6:10] == (30000).to_bytes(4, "big")          # remaining lifetime in ms
    assert SaRecord.decode(Reader(raw)) == RECORD
    for bad in (bytes(3) + raw[3:],                        # SPI 0..255 is reserved
                raw[:4] + b"\x09" + raw[5:],               # unknown algorithm
                raw[:-1]):                                 # truncated
        with pytest.raises(sd.DecodeError):
            r = Reader(bad)
            SaRecord.decode(r)
            r.expect_end()


def test_push_parse_is_strict_at_every_length():
    """A PUSH's plaintext is decoded in place (no Reader): every truncation and any
    trailing byte is a DecodeError, and only the whole plaintext parses."""
    msg = sd.Message(sd.PUSH, 7, 1234, RECORD)
    raw = msg.plaintext()
    assert sd.Message.parse(sd.PUSH, raw) == msg
    for cut in range(len(raw)):
        with pytest.raises(sd.DecodeError, match="truncated"):
            sd.Message.parse(sd.PUSH, raw[:cut])
    with pytest.raises(sd.DecodeError, match="trailing"):
        sd.Message.parse(sd.PUSH, raw + b"\0")
    bad_nai = raw[:-len(RECORD.nai)] + b"\xff" * len(RECORD.nai)
    with pytest.raises(sd.DecodeError, match="UTF-8"):
        sd.Message.parse(sd.PUSH, bad_nai)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=160))
def test_push_parse_raises_only_decode_errors(data):
    try:
        msg = sd.Message.parse(sd.PUSH, data)
    except sd.DecodeError:
        return
    assert msg.type == sd.PUSH and msg.record.spi >= 256 and msg.record.key


def test_key_derivation_is_hkdf_sha256():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    expected = HKDF(algorithm=hashes.SHA256(), length=16, salt=(1234).to_bytes(8, "big"),
                    info=sd.KDF_INFO + b"\x01").derive(PSK)
    assert sd.derive_key(PSK, 1234, sd.ROLE_PAA) == expected
    assert sd.derive_key(PSK, 1234, sd.ROLE_HA) != expected


# ---- push -------------------------------------------------------------------------------

def test_push_installs_a_mobility_sa_and_is_acknowledged():
    p = Pair()
    sent = p.paa.sa_established(RECORD, 0.0)
    assert [e.name for e in sent if isinstance(e, Event)] == ["sadist.push_sent"]
    at_ha = p.to_ha(sent, 0.001)
    (install,) = effects(at_ha, SaInstall)
    sa = install.sa
    assert (sa.spi, sa.key, sa.algorithm, sa.replay, sa.hoa, sa.nai) == (
        RECORD.spi, RECORD.key, "hmac-sha1-96", "timestamp", RECORD.hoa, RECORD.nai)
    assert sa.expires_at == pytest.approx(30.001)
    assert (install.source, install.paa, install.session_id) == ("push", PAA, 99)
    assert p.store.lookup_spi(RECORD.spi, 1.0) is sa
    acked = p.to_paa(at_ha, 0.002)
    assert [e.name for e in acked if isinstance(e, Event)] == ["sadist.acked"]
    assert p.paa._outstanding == {}


def test_push_is_logged_before_it_is_sent_and_acknowledged_after_the_install():
    """The push's event leads its datagram (its time is when the push started, not after
    the send), and the HA's ACK follows its SaInstall (an ACK says the SA is held)."""
    p = Pair()
    sent = p.paa.sa_established(RECORD, 0.0)
    kinds = [type(a).__name__ for a in sent if isinstance(a, (Event, Transmit))]
    assert kinds == ["Event", "Transmit"]
    at_ha = p.to_ha(sent, 0.001)
    order = [type(a).__name__ for a in at_ha if isinstance(a, (Event, Transmit, SaInstall, StartTimer))]
    # The install, its event, the ACK; the expiry timer (due in minutes) after the ACK.
    assert order == ["SaInstall", "Event", "Transmit", "StartTimer"]


def test_staged_push_seals_the_ack_only_after_the_install():
    """Staged (the HA agent's runtime): the core returns the install and its event, and
    the ACK and expiry timer as AfterInstall; nothing is sealed until its step runs, and
    the step's actions are those the unstaged call returns after the event."""
    p, q = Pair(), Pair()
    push = tx(p.paa.sa_established(RECORD, 0.0))[0]
    staged = p.ha.receive(push.data, PAA, sd.SADIST_PORT, 0.001, staged=True)
    assert [type(a).__name__ for a in staged] == ["SaInstall", "Event", "AfterInstall"]
    assert staged[1].name == "sadist.sa_installed" and staged[1].fields["spi"] == RECORD.spi
    assert p.ha._sealer.seq == 0                      # no ACK sealed yet
    rest = staged[2].step()
    assert [type(a).__name__ for a in rest] == ["Transmit", "StartTimer"]
    assert p.ha._sealer.seq == 1
    # The PAA retransmits before the ACK arrives: answered from the cache, not installed again.
    (txid,) = p.paa._outstanding
    again = tx(p.paa._retransmit(txid, 0.5))[0]
    assert [type(a).__name__ for a in
            p.ha.receive(again.data, PAA, sd.SADIST_PORT, 0.5, staged=True)] == ["Transmit"]
    acked = p.to_paa(rest, 0.502)
    assert [(e.name, e.fields["status"]) for e in acked if isinstance(e, Event)] == \
        [("sadist.acked", sd.ACK_OK)]
    # Unstaged, the same push gives the same actions in one list (q's ends are seeded
    # as p's: the same epochs, so the same bytes).
    push_q = tx(q.paa.sa_established(RECORD, 0.0))[0]
    whole = q.ha.receive(push_q.data, PAA, sd.SADIST_PORT, 0.001)
    assert whole == staged[:2] + rest


def test_expand_runs_the_steps_in_place():
    calls = []
    later = sd.AfterInstall(lambda: calls.append(1) or [StartTimer("t", 1.0)])
    assert sd.expand([Event("a"), later, Event("b")]) == [Event("a"), StartTimer("t", 1.0), Event("b")]
    assert calls == [1]
    plain = [Event("a")]
    assert sd.expand(plain) is plain


def test_an_end_derives_its_own_keys_when_it_starts(monkeypatch):
    """Each end derives its sending keys for the configured peers when it is made, so the
    HA's ACK to the first push costs no key derivation; on the push itself the HA derives
    only the key of the PAA's epoch, once, and builds the SA once."""
    derived, built = [], []
    real_derive, real_build = sd.derive_key, SaRecord.mobility_sa
    monkeypatch.setattr(sd, "derive_key", lambda *a: derived.append(a[1:]) or real_derive(*a))
    monkeypatch.setattr(SaRecord, "mobility_sa", lambda self, now: built.append(self.spi)
                        or real_build(self, now))
    p = Pair()
    assert sorted(derived) == sorted([(p.paa._sealer.epoch, sd.ROLE_PAA),
                                      (p.ha._sealer.epoch, sd.ROLE_HA)])
    derived.clear()
    sent = p.paa.sa_established(RECORD, 0.0)
    at_ha = p.to_ha(sent, 0.001)
    assert derived == [(p.paa._sealer.epoch, sd.ROLE_PAA)] and built == [RECORD.spi]
    derived.clear()
    assert [e.name for e in p.to_paa(at_ha, 0.002) if isinstance(e, Event)] == ["sadist.acked"]
    assert derived == [(p.ha._sealer.epoch, sd.ROLE_HA)]     # the PAA opens the HA's epoch
    assert p.store.lookup_spi(RECORD.spi).expires_at == pytest.approx(0.001 + RECORD.lifetime)


def test_hello_has_the_ha_derive_the_paa_epoch_before_the_first_push(monkeypatch):
    """The PAA's HELLO (sent when its agent starts) is acknowledged and leaves the HA
    holding the key of the PAA's epoch: the first PUSH then derives nothing at the HA,
    and the PAA holds the HA's epoch key for the PUSH's ACK; nothing is installed."""
    derived = []
    real_derive = sd.derive_key
    monkeypatch.setattr(sd, "derive_key", lambda *a: derived.append(a[1:]) or real_derive(*a))
    p = Pair()
    derived.clear()
    hello = p.paa.hello(0.0)
    assert [e.name for e in hello if isinstance(e, Event)] == ["sadist.hello_sent"]
    assert len(tx(hello)) == 1 and len(timers(hello)) == 1    # retransmitted until ACKed
    at_ha = p.to_ha(hello, 0.001)
    assert [e.name for e in at_ha if isinstance(e, Event)] == ["sadist.hello"]
    assert effects(at_ha, SaInstall) == [] and len(p.store) == 0
    acked = p.to_paa(at_ha, 0.002)
    assert [(e.name, e.fields["type"], e.fields["status"]) for e in acked
            if isinstance(e, Event)] == [("sadist.acked", "HELLO", sd.ACK_OK)]
    assert p.paa._outstanding == {}
    assert derived == [(p.paa._sealer.epoch, sd.ROLE_PAA), (p.ha._sealer.epoch, sd.ROLE_HA)]
    derived.clear()
    at_ha = p.to_ha(p.paa.sa_established(RECORD, 1.0), 1.001)
    assert len(effects(at_ha, SaInstall)) == 1
    assert [e.name for e in p.to_paa(at_ha, 1.002) if isinstance(e, Event)] == ["sadist.acked"]
    assert derived == []


def test_a_repeated_hello_is_answered_from_the_cache():
    p = Pair()
    hello = p.paa.hello(0.0)
    p.to_ha(hello, 0.001)
    rtx = p.paa.handle_timer(timers(hello)[0].key, 0.5)       # its ACK was lost
    again = p.to_ha(rtx, 0.501)
    assert [e for e in again if isinstance(e, Event)] == [] and len(tx(again)) == 1
    assert p.ha.counters["repeated request answered"] == 1
    assert [e.name for e in p.to_paa(again, 0.502) if isinstance(e, Event)] == ["sadist.acked"]


@pytest.mark.parametrize("src, accepted", [("2001:db8:1::2", True), ("2001:DB8:1:0:0::2", True),
                                           ("2001:db8:1::2%eth0", True), ("2001:db8:1::3", False),
                                           ("not an address", False)])
def test_the_peer_is_known_by_its_address_in_any_text_form(src, accepted):
    p = Pair()
    push = tx(p.paa.sa_established(RECORD, 0.0))[0]
    out = p.ha.receive(push.data, src, sd.SADIST_PORT, 0.001)
    assert bool(effects(out, SaInstall)) is accepted
    if not accepted:
        assert [e.fields["reason"] for e in out if isinstance(e, Event)] == ["unknown peer"]


def test_warm_up_runs_a_push_and_its_ack_through_throwaway_ends():
    assert sd.warm_up() is True and sd.warm_up() is True


def test_lost_ack_means_retransmission_and_no_second_install():
    p = Pair()
    sent = p.paa.sa_established(RECORD, 0.0)
    first = p.to_ha(sent, 0.001)                   # the ACK in `first` is lost
    (timer,) = timers(sent)
    again = p.paa.handle_timer(timer.key, timer.at)
    assert tx(again)[0].data != tx(sent)[0].data   # new sequence number and timestamp
    second = p.to_ha(again, timer.at + 0.001)
    assert effects(first, SaInstall) and not effects(second, SaInstall)
    assert p.ha.counters["repeated request answered"] == 1
    p.to_paa(second, timer.at + 0.002)
    assert p.paa._outstanding == {}


def test_push_gives_up_after_mrc_retransmissions():
    p = Pair()
    out = p.paa.sa_established(RECORD, 0.0)
    attempts = 1
    while True:
        (timer,) = timers(out) or [None]
        if timer is None:
            break
        out = p.paa.handle_timer(timer.key, timer.at)
        attempts += bool(tx(out))
    assert attempts == 1 + p.paa.config.mrc
    assert any(isinstance(e, Event) and e.name == "sadist.gave_up" for e in out)


def test_sa_expires_at_the_ha_unless_refreshed():
    p = Pair()
    p.to_ha(p.paa.sa_established(RECORD, 0.0), 0.0)
    (expire,) = [t for t in timers(p.ha.receive(  # re-push of the same SA: refresh
        tx(p.paa.sa_established(RECORD, 20.0))[0].data, PAA, sd.SADIST_PORT, 20.0))
        if t.key[1] == "expire"]
    assert expire.at == pytest.approx(50.0)
    assert p.ha.handle_timer(("sadist-ha", "expire", RECORD.spi), 30.0) == []   # stale timer
    out = p.ha.handle_timer(expire.key, 50.0)
    assert effects(out, SaRemove) == [SaRemove(RECORD.spi, RECORD.hoa, "expired")]
    assert p.ha.installed == {}


def test_revoke_removes_and_unknown_spi_is_acknowledged_as_such():
    p = Pair()
    p.to_ha(p.paa.sa_established(RECORD, 0.0), 0.0)
    out = p.to_ha(p.paa.sa_revoked(RECORD.spi, RECORD.hoa, "terminated by PaC", 1.0), 1.0)
    assert effects(out, SaRemove) == [SaRemove(RECORD.spi, RECORD.hoa,
                                               "revoked: terminated by PaC")]
    assert p.store.lookup_spi(RECORD.spi) is None
    # A revoke for an SPI the HA never had (its push was lost and retried too late).
    p.paa.table[4242] = (SaRecord(4242, "hmac-sha256", "sequence", 9, RECORD.hoa, HA,
                                  bytes(32)), 100.0)
    out = p.to_ha(p.paa.sa_revoked(4242, RECORD.hoa, "rekeyed", 2.0), 2.0)
    assert not effects(out, SaRemove)
    acked = [e for e in p.to_paa(out, 2.1) if isinstance(e, Event)]
    assert acked[0].fields["status"] == sd.ACK_UNKNOWN_SPI


def test_push_that_moves_an_spi_to_another_hoa_is_refused():
    p = Pair()
    p.to_ha(p.paa.sa_established(RECORD, 0.0), 0.0)
    other = SaRecord(RECORD.spi, "hmac-sha1-96", "timestamp", 30, "2001:db8:1::9999", HA,
                     bytes(20))
    out = p.to_ha(p.paa.sa_established(other, 1.0), 1.0)
    assert not effects(out, SaInstall)
    assert p.ha.counters["SPI bound to another HoA"] == 1


# ---- pull -------------------------------------------------------------------------------

@pytest.mark.parametrize("selector", [{"spi": RECORD.spi}, {"hoa": RECORD.hoa},
                                      {"nai": RECORD.nai}])
def test_pull_by_spi_hoa_or_nai(selector):
    p = Pair(mode="pull")
    stored = p.paa.sa_established(RECORD, 0.0)
    assert tx(stored) == []                          # nothing pushed in pull mode
    fetch = p.ha.fetch(10.0, **selector)
    reply = p.to_paa(fetch, 10.001)
    out = p.to_ha(reply, 10.002)
    (install,) = effects(out, SaInstall)
    assert install.source == "pull" and install.sa.spi == RECORD.spi
    assert install.sa.expires_at == pytest.approx(10.002 + 20.0, abs=0.01)   # what remained
    assert install.selector == next(e.fields["selector"] for e in fetch
                                    if isinstance(e, Event))
    # Only a fetched SA is revoked at the HA in pull mode.
    assert tx(p.paa.sa_revoked(RECORD.spi, RECORD.hoa, "terminated", 11.0))


def test_pull_of_an_unknown_or_expired_sa_fails_cleanly():
    p = Pair(mode="pull")
    p.paa.sa_established(RECORD, 0.0)
    out = p.to_ha(p.to_paa(p.ha.fetch(31.0, spi=RECORD.spi), 31.0), 31.0)   # expired at 30
    assert effects(out, SaFetchFailed) == [SaFetchFailed(f"spi={RECORD.spi}", "not found")]
    assert tx(p.paa.sa_revoked(RECORD.spi, RECORD.hoa, "x", 32.0)) == []   # never fetched


def test_fetch_without_an_answer_fails_after_retransmissions():
    p = Pair(mode="pull")
    out = p.ha.fetch(0.0, hoa=RECORD.hoa)
    while timers(out):
        (timer,) = timers(out)
        out = p.ha.handle_timer(timer.key, timer.at)
    assert effects(out, SaFetchFailed) == [SaFetchFailed(f"hoa={RECORD.hoa}",
                                                         "PAA unreachable")]


def test_an_sa_is_only_handed_to_the_ha_it_is_for():
    p = Pair(mode="pull")
    p.paa.sa_established(SaRecord(RECORD.spi, "hmac-sha1-96", "timestamp", 30, RECORD.hoa,
                                   "2001:db8:1::77", bytes(20)), 0.0)
    out = p.to_ha(p.to_paa(p.ha.fetch(1.0, spi=RECORD.spi), 1.0), 1.0)
    assert effects(out, SaFetchFailed)


# ---- attacks ----------------------------------------------------------------------------

def test_replayed_datagram_is_dropped():
    p = Pair()
    sent = p.paa.sa_established(RECORD, 0.0)
    p.to_ha(sent, 0.0)
    out = p.to_ha(sent, 0.5)
    assert not effects(out, SaInstall) and tx(out) == []
    assert p.ha.counters["replayed sequence number"] == 1


def test_reordered_datagrams_within_the_window_are_accepted_once():
    p = Pair()
    a = tx(p.paa.sa_established(RECORD, 0.0))[0]
    rec2 = SaRecord(777, "hmac-sha256", "sequence", 30, "2001:db8:1::2002", HA, bytes(32))
    b = tx(p.paa.sa_established(rec2, 0.0))[0]
    assert effects(p.ha.receive(b.data, PAA, 7716, 0.1), SaInstall)
    assert effects(p.ha.receive(a.data, PAA, 7716, 0.1), SaInstall)    # older seq, unseen
    assert not effects(p.ha.receive(a.data, PAA, 7716, 0.2), SaInstall)


@pytest.mark.parametrize("where", [0, 5, 20, 40, -1])
def test_any_flipped_bit_fails_authentication(where):
    p = Pair()
    data = bytearray(tx(p.paa.sa_established(RECORD, 0.0))[0].data)
    data[where] ^= 0x01
    out = p.ha.receive(bytes(data), PAA, 7716, 0.0)
    assert not effects(out, SaInstall) and tx(out) == []
    assert sum(p.ha.counters.values()) == 1


def test_wrong_psk_unknown_peer_and_stale_timestamp_are_dropped():
    p = Pair(ha_psk=bytes(32))
    sent = tx(p.paa.sa_established(RECORD, 0.0))[0]
    assert tx(p.ha.receive(sent.data, PAA, 7716, 0.0)) == []
    assert p.ha.counters["authentication failed"] == 1
    p = Pair()
    sent = tx(p.paa.sa_established(RECORD, 0.0))[0]
    assert tx(p.ha.receive(sent.data, "2001:db8:1::66", 7716, 0.0)) == []
    assert p.ha.counters["unknown peer"] == 1
    p = Pair(wall_skew=31.0)         # the HA's clock is 31 s ahead: outside the 30 s window
    sent = tx(p.paa.sa_established(RECORD, 0.0))[0]
    assert tx(p.ha.receive(sent.data, PAA, 7716, 0.0)) == []
    assert p.ha.counters["timestamp outside the window"] == 1


def test_reflected_message_is_dropped():
    """An HA's own FETCH sent back to it: right key material for the HA role, wrong role."""
    p = Pair()
    fetch = tx(p.ha.fetch(0.0, spi=RECORD.spi))[0]
    assert tx(p.ha.receive(fetch.data, PAA, 7716, 0.0)) == []
    assert p.ha.counters["wrong sender role"] == 1


def test_unexpected_answers_are_dropped():
    p = Pair()
    p.to_ha(p.paa.sa_established(RECORD, 0.0), 0.0)
    fetch_reply = p.to_paa(p.ha.fetch(1.0, spi=RECORD.spi), 1.0)
    p.to_ha(fetch_reply, 1.0)
    again = p.to_ha(fetch_reply, 1.1)       # the same REPLY datagram: a replay
    assert p.ha.counters["replayed sequence number"] == 1 and not effects(again, SaInstall)


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_receivers_never_raise(data):
    p = Pair()
    for out in (p.ha.receive(data, PAA, 7716, 0.0), p.paa.receive(data, HA, 7716, 0.0)):
        assert tx(out) == [] and not effects(out, SaInstall)


@settings(max_examples=200, deadline=None, database=None)
@given(st.sampled_from(list(sd.TYPE_NAMES)), st.binary(max_size=120))
def test_plaintext_parser_raises_only_decode_errors(msg_type, data):
    try:
        sd.Message.parse(msg_type, data)
    except sd.DecodeError as err:
        assert err.reason
