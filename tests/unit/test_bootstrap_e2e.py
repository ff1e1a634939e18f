"""Whole bootstraps in memory, with the real cores everywhere: PaC (EAP-PSK peer), PAA
service (pass-through, RADIUS client or in-process EAP server, SA distribution), RADIUS
server with EAP-PSK, and the HA end of SA distribution. Also the PaC runtime
(PanaClient) on an asyncio loop with an in-memory transport."""
from __future__ import annotations

import asyncio
import random

import pytest

from mip6bench.aaa.paa_service import PaaService, PaaServiceConfig
from mip6bench.aaa.sadist import SaDistConfig, SaDistHaCore, SaInstall, SaRemove
from mip6bench.aaa.token import TokenIssuer, verify_token
from mip6bench.pana import effects as fx
from mip6bench.pana import mip6
from mip6bench.pana.message import (PANA_AUTHENTICATION_REJECTED, PANA_PORT, AUTH, FLAG_C,
                                    decode_message)
from mip6bench.pana.paa import PaaConfig
from mip6bench.pana.pac import PacState
from mip6bench.runtime.driver import CoreDriver
from mip6bench.runtime.pana_client import (BootstrapTracker, PanaClient, PanaClientConfig,
                                           StaticMip6)
from mip6bench.sansio import Event, StartTimer, StopTimer, Transmit

from .bootstrap_harness import (HA, PAA, PREFIX, SADIST_PSK, USERS, BootstrapNet, pac_address)

NAI, PSK, FIXED_HOA = USERS[0].nai, USERS[0].psk, USERS[0].hoa


def established(net, name):
    return net.nodes[name].effects(fx.MipSaEstablished)


@pytest.mark.parametrize("backend", ["radius", "local"])
@pytest.mark.parametrize("mode", ["push", "pull"])
def test_bootstrap_gives_the_same_sa_to_mn_and_ha(backend, mode):
    issuer = TokenIssuer(bytes(32), 5, 300)
    net = BootstrapNet(backend=backend, sa_mode=mode,
                       mint_token=issuer.hook(lambda: 1_800_000_000.0))
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    assert net.pacs["pac1"].state is PacState.OPEN
    (mn_sa,) = established(net, "pac1")
    (boot,) = net.nodes["pac1"].effects(fx.Mip6Bootstrapped)
    assert (boot.ha, boot.hoa, boot.home_prefix, boot.prefix_len) == (HA, FIXED_HOA,
                                                                       "2001:db8:1::", 64)
    claims = verify_token(boot.nsis_token, {5: bytes(32)}, 1_800_000_010.0, nai=NAI,
                          hoa=FIXED_HOA)
    assert claims.nai == NAI
    assert net.nodes["pac1"].effects(fx.StaticConfigFallback) == []
    if mode == "pull":
        assert net.nodes["ha"].effects(SaInstall) == []
        net.apply(net.nodes["ha"], net.ha.fetch(net.now, spi=mn_sa.spi))
        net.run(until=3.0)
    (install,) = net.nodes["ha"].effects(SaInstall)
    assert install.sa.key == mn_sa.key and install.sa.spi == mn_sa.spi
    assert install.sa.hoa == FIXED_HOA and install.sa.nai == NAI
    assert install.source == mode


@pytest.mark.parametrize("backend", ["radius", "local"])
def test_mn_ha_key_is_separate_from_the_pana_keys_and_both_ends_agree(backend):
    """The MN-HA key is an RFC 5295 USRK of the EMSK where the PAA has the EMSK (embedded
    EAP server), else prf+ of the MSK under its own label (RADIUS keeps the EMSK); the
    PAA says which in the AUTH-protected final PAR, and MN and HA hold the same key."""
    net = BootstrapNet(backend=backend)
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    (mn_sa,) = established(net, "pac1")
    (install,) = net.nodes["ha"].effects(SaInstall)
    assert install.sa.key == mn_sa.key and install.sa.spi == mn_sa.spi   # both ends agree
    pana = net.pacs["pac1"].channel.sa
    assert pana.emsk and pana.emsk != pana.msk
    args = (mn_sa.spi, pana.pac_nonce, pana.paa_nonce, mip6.ALG_HMAC_SHA1_96)
    from_emsk = mip6.mn_ha_key_from_emsk(pana.emsk, *args)
    from_msk = mip6.mn_ha_key(pana.prf_alg, pana.msk, *args)
    assert from_emsk != from_msk
    final_par = next(decode_message(d) for _, src, sport, _, _, d in net.wire
                     if src == PAA and sport == PANA_PORT
                     and (m := decode_message(d)).type == AUTH
                     and m.flags & FLAG_C and m.is_request)
    kdf = final_par.find(mip6.AVP_MIP6_KEY_DERIVATION, mip6.VENDOR_ID).as_u32
    if backend == "local":     # the EAP server is in the PAA's process: the EMSK is there
        assert kdf == mip6.KDF_EMSK and mn_sa.key == from_emsk
    else:                      # hostapd/RADIUS hands out the MSK only
        assert kdf == mip6.KDF_MSK and mn_sa.key == from_msk
    # Neither PANA key material nor the MN-HA key is a piece of the other.
    assert mn_sa.key != pana.auth_key[:len(mn_sa.key)]
    assert mn_sa.key not in pana.msk and mn_sa.key not in pana.emsk
    assert pana.auth_key[:len(mn_sa.key)] not in (from_emsk, from_msk)


def test_pac_without_an_emsk_refuses_an_emsk_derived_sa():
    net = BootstrapNet(backend="local")
    net.add_pac("pac1", 1)
    pac = net.pacs["pac1"]
    make_peer = pac.config.new_eap_peer

    class WithoutEmsk:              # an EAP method that exports no EMSK
        emsk = None

        def __init__(self, peer):
            self._peer = peer

        def __getattr__(self, name):
            return getattr(self._peer, name)

    pac.config.new_eap_peer = lambda: WithoutEmsk(make_peer())
    net.start_pac("pac1")
    net.run(until=2.0)
    assert pac.state is PacState.OPEN       # network access is fine
    assert established(net, "pac1") == []  # but no SA with a key it cannot derive
    assert any("no EMSK" in str(e.fields) for e in net.nodes["pac1"].events("pana.mip6_bad_avp"))


def test_random_hoa_when_the_user_has_none_and_messages_on_the_wire():
    net = BootstrapNet()
    net.add_pac("pac2", 2)
    net.start_pac("pac2")
    net.run(until=2.0)
    (sa,) = established(net, "pac2")
    assert sa.hoa.startswith("2001:db8:1:") and sa.hoa != FIXED_HOA
    names = [decode_message(d).name for _, src, _, dst, _, d in net.wire
             if 716 in (_sport(net, src), _dport(dst))]
    assert names == ["PCI", "PAR", "PAN", "PAR", "PAN", "PAR", "PAN", "PAR", "PAN"]


def _sport(net, src):
    return 716 if src.startswith("2001:db8:11::") else None


def _dport(dst):
    return 716 if dst.startswith("2001:db8:11::") else None


def test_reauthentication_rekeys_and_the_ha_swaps_the_sa():
    net = BootstrapNet(sa_lifetime=10)
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    (first,) = established(net, "pac1")
    net.run(until=10.0)              # the PaC re-authenticates at 0.8 x 10 s
    second = established(net, "pac1")[-1]
    assert second.spi != first.spi and second.key != first.key
    ha = net.nodes["ha"]
    assert [e.sa.spi for e in ha.effects(SaInstall)] == [first.spi, second.spi]
    assert ha.effects(SaRemove) == [SaRemove(first.spi, FIXED_HOA, "revoked: rekeyed", successor=True)]
    assert set(net.ha.installed) == {second.spi}


def test_termination_revokes_at_the_ha():
    net = BootstrapNet()
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    (sa,) = established(net, "pac1")
    net.call("pac1", net.pacs["pac1"].terminate, net.now)
    net.run(until=3.0)
    assert net.nodes["ha"].effects(SaRemove) == [SaRemove(sa.spi, FIXED_HOA,
                                                          "revoked: terminated by PaC")]
    assert net.paa.paa.sessions == {}


def test_vanished_mn_leaves_no_sa_at_the_ha():
    net = BootstrapNet(sa_lifetime=5)
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    (sa,) = established(net, "pac1")
    del net.by_address[pac_address(1)]       # the MN is gone: nothing reaches it any more
    net.run(until=60.0)
    removed = net.nodes["ha"].effects(SaRemove)
    assert removed and removed[0].spi == sa.spi and net.ha.installed == {}


@pytest.mark.parametrize("backend", ["radius", "local"])
@pytest.mark.parametrize("who", ["wrong psk", "unknown nai"])
def test_rejected_authentication_hands_out_nothing(backend, who):
    net = BootstrapNet(backend=backend)
    user = USERS[0] if who == "wrong psk" else type(USERS[0])("eve@x", PSK)
    net.add_pac("pac1", 1, user=user, psk=bytes(16) if who == "wrong psk" else PSK)
    net.start_pac("pac1")
    net.run(until=3.0)
    pac = net.nodes["pac1"]
    assert net.pacs["pac1"].state is PacState.CLOSED
    closed = pac.effects(fx.PanaSessionClosed)
    assert closed and closed[0].reason == "authentication rejected"
    final = [decode_message(d) for _, src, _, dst, _, d in net.wire
             if src == PAA and dst == pac_address(1)][-1]
    assert final.type == AUTH and final.has(FLAG_C)
    assert final.result_code == PANA_AUTHENTICATION_REJECTED
    assert not established(net, "pac1") and not pac.effects(fx.Mip6Bootstrapped)
    assert net.nodes["ha"].effects(SaInstall) == []
    assert net.paa.paa.sessions == {}


def test_mismatched_radius_secret_fails_the_authentication_after_the_aaa_timeout():
    """The AAA server discards the PAA's requests (their Message-Authenticator does not
    verify with its secret); the PAA retransmits, gives up, and rejects the PaC."""
    net = BootstrapNet(radius_secret_at_server=b"not the PAA's secret")
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=60.0)
    assert net.aaa.counters["bad Message-Authenticator"] == 1 + net.paa.radius.config.mrc
    assert net.paa.counters["AAA timeout"] == 1
    assert net.pacs["pac1"].state is PacState.CLOSED
    assert not established(net, "pac1")


def test_plain_paa_makes_the_pac_fall_back_to_static_configuration():
    net = BootstrapNet()
    net.paa.paa.config.mip6 = None            # a PAA that ignores the extension
    net.add_pac("pac1", 1)
    net.start_pac("pac1")
    net.run(until=2.0)
    pac = net.nodes["pac1"]
    (fallback,) = pac.effects(fx.StaticConfigFallback)
    assert set(fallback.missing) == {"ha_info", "home_address", "mip6_sa", "nsis_token"}
    static = StaticMip6(ha=HA, hoa="2001:db8:1::77", home_prefix=PREFIX, spi=0x999,
                        key=bytes(20))
    tracker = BootstrapTracker(NAI, static)
    (update,) = tracker.apply(pac.effects(), net.now)
    assert update.kind == "ready" and update.bootstrap.complete
    assert update.bootstrap.sources == {"ha": "static", "home_prefix": "static",
                                        "hoa": "static", "sa": "static"}
    assert update.bootstrap.sa.spi == 0x999


# ---- the PaC runtime on asyncio with an in-memory transport ----------------------------

class MemoryPaa:
    """PaaService (local backend) + SaDistHaCore on the running loop; datagrams to and from
    the PanaClient go through call_later with `latency`."""

    def __init__(self, latency=0.002, sa_lifetime=600):
        creds = {u.nai: u.psk for u in USERS}
        policy = mip6.Mip6Policy(HA, PREFIX, default_lifetime=sa_lifetime)
        self.service = PaaService(PaaServiceConfig(
            PaaConfig(mip6=policy), backend="local", credentials=creds.get,
            fixed_hoa={USERS[0].nai: USERS[0].hoa}.get,
            sadist=SaDistConfig({HA: SADIST_PSK})), rng=random.Random(5))
        self.ha = SaDistHaCore(SaDistConfig({PAA: SADIST_PSK}), rng=random.Random(6))
        self.latency = latency
        self.loop = asyncio.get_running_loop()
        self.client = None
        self.ha_effects = []
        self.woken = asyncio.Event()       # set whenever ha_effects grows or the PAA got one
        self.paa_driver = CoreDriver(send=self._from_paa, on_timer=self.service.handle_timer,
                                     apply=lambda e: None, emit=lambda *a, **k: None)
        self.ha_driver = CoreDriver(send=self._from_ha, on_timer=self._ha_timer,
                                    apply=lambda e: None, emit=lambda *a, **k: None)

    def _ha_timer(self, key, now):
        out = self.ha.handle_timer(key, now)
        self.ha_effects += [a for a in out if not isinstance(a, (Transmit, StartTimer,
                                                                  StopTimer, Event))]
        self.woken.set()
        return out

    def _from_paa(self, tx: Transmit):
        if tx.meta["via"] == "sadist":
            self.loop.call_later(self.latency, self._to_ha, tx.data)
        else:
            self.loop.call_later(self.latency, self.client._datagram, tx.data, PAA, 716)

    def _from_ha(self, tx: Transmit):
        self.loop.call_later(self.latency, self._to_paa, tx.data, HA, 7716, "sadist")

    def _to_ha(self, data):
        out = self.ha.receive(data, PAA, 7716, self.ha_driver.now())
        self.ha_effects += [a for a in out if not isinstance(a, (Transmit, StartTimer,
                                                                  StopTimer, Event))]
        self.woken.set()
        self.ha_driver.execute(out)

    def _to_paa(self, data, src, port, via):
        self.paa_driver.execute(self.service.receive(data, src, port, self.paa_driver.now(),
                                                     via=via))
        self.woken.set()

    def transport(self):
        paa = self

        class Transport:
            def send(self, data, dst, port, discovery):
                assert dst == PAA and port == 716
                paa.loop.call_later(paa.latency, paa._to_paa, data, "2001:db8:11::100", 716,
                                    "pana")

            def close(self):
                pass

        return Transport()


async def _wait_for(woken: asyncio.Event, predicate, timeout=5.0):
    """Re-check `predicate` each time the code under test sets `woken` (an update handed
    out by the client, an effect at the HA end), until it holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        woken.clear()
        left = end - loop.time()
        if left <= 0:
            raise AssertionError("timed out")
        try:
            await asyncio.wait_for(woken.wait(), left)
        except asyncio.TimeoutError:
            pass


def test_pana_client_hands_out_ready_rekeyed_and_closed():
    async def scenario():
        paa = MemoryPaa()
        events, updates = [], []

        def on_update(update):
            updates.append(update)
            paa.woken.set()

        client = PanaClient(PanaClientConfig(nai=NAI, psk=PSK, paa=PAA, port=0),
                            emit=lambda name, **f: events.append((name, f)),
                            on_update=on_update, transport=paa.transport(),
                            rng=random.Random(9))
        paa.client = client
        await client.open()
        assert client.start() and not client.start()        # a second start is refused
        await _wait_for(paa.woken, lambda: updates)
        ready = updates[0]
        assert ready.kind == "ready" and ready.bootstrap.complete
        b = ready.bootstrap
        assert (b.ha, b.hoa, b.home_prefix) == (HA, USERS[0].hoa, PREFIX)
        assert b.sources == {"ha": "pana", "home_prefix": "pana", "hoa": "pana", "sa": "pana"}
        loop_now = asyncio.get_running_loop().time()
        assert 590 < b.sa.expires_at - loop_now <= 600
        ready_event = dict(next(f for n, f in events if n == "bootstrap.ready"))
        assert ready_event["messages"] == 9 and "key" not in str(ready_event)
        await _wait_for(paa.woken, lambda: any(isinstance(e, SaInstall) for e in paa.ha_effects))
        assert client.reauthenticate()
        await _wait_for(paa.woken, lambda: len(updates) == 2)
        assert updates[1].kind == "rekeyed" and updates[1].old_spi == b.sa.spi
        assert updates[1].bootstrap.sa.spi != b.sa.spi
        assert client.terminate()
        await _wait_for(paa.woken, lambda: len(updates) == 3)
        assert updates[2].kind == "closed" and updates[2].reason == "terminated"
        assert updates[2].old_spi == updates[1].bootstrap.sa.spi
        assert client.bootstrap is None and client.status()["state"] == "closed"
        await _wait_for(paa.woken, lambda: sum(isinstance(e, SaRemove) for e in paa.ha_effects) == 2)
        await client.close()
        paa.paa_driver.close()
        paa.ha_driver.close()

    asyncio.run(scenario())


def test_pana_client_reports_an_administrative_termination_and_says_when_to_restart():
    async def scenario():
        paa = MemoryPaa()
        events, updates = [], []

        def on_update(update):
            updates.append(update)
            paa.woken.set()

        client = PanaClient(PanaClientConfig(nai=NAI, psk=PSK, paa=PAA, port=0),
                            emit=lambda name, **f: events.append((name, f)),
                            on_update=on_update, transport=paa.transport(),
                            rng=random.Random(3))
        paa.client = client
        await client.open()
        client.start()
        await _wait_for(paa.woken, lambda: updates)
        sid = client.core.session_id
        sessions = paa.service.paa.sessions             # the PAN[C] has reached the PAA
        await _wait_for(paa.woken, lambda: sessions[sid].state.value == "open")
        paa.paa_driver.execute(paa.service.terminate(sid, paa.paa_driver.now()))
        await _wait_for(paa.woken, lambda: len(updates) == 2)
        closed = updates[1]
        assert (closed.kind, closed.reason, closed.cause) == ("closed", "terminated by PAA", 4)
        assert dict(next(f for n, f in events if n == "bootstrap.closed"))["cause"] == 4
        assert client.restart_delay(closed) == 0
        said = dict(next(f for n, f in events if n == "pana.superseded"))
        assert said == {"session_id": sid, "count": 1, "delay_s": 0, "gave_up": False}
        assert client.status()["superseded"] == 1
        assert await client.commands()["pana-start"]({}) == {"started": True}
        assert client.status()["superseded"] == 0      # an explicit start begins anew
        await _wait_for(paa.woken, lambda: len(updates) == 3)
        assert updates[2].kind == "ready"
        with pytest.raises(ValueError):
            client.ping(paa="not an address")
        await client.close()
        paa.paa_driver.close()
        paa.ha_driver.close()

    asyncio.run(scenario())


def test_pana_client_control_commands_and_bad_config():
    with pytest.raises(ValueError):
        PanaClientConfig(nai=NAI, psk=PSK, paa=PAA, discovery="multicast")
    with pytest.raises(ValueError):
        PanaClientConfig(nai=NAI, psk=PSK, paa="ff05::8000:716", discovery="multicast")
    with pytest.raises(ValueError):
        PanaClientConfig(nai=NAI, psk=PSK, paa="ff05::8000:716")   # unicast to a group

    async def scenario():
        paa = MemoryPaa()
        client = PanaClient(PanaClientConfig(nai=NAI, psk=PSK, paa=PAA, port=0),
                            emit=lambda *a, **k: None, transport=paa.transport(),
                            on_update=lambda update: paa.woken.set())
        paa.client = client
        await client.open()
        commands = client.commands()
        assert set(commands) == {"pana-start", "pana-reauth", "pana-terminate", "pana-ping",
                                 "pana-status"}
        assert await commands["pana-start"]({}) == {"started": True}
        await _wait_for(paa.woken, lambda: client.bootstrap is not None)
        status = await commands["pana-status"]({})
        assert status["state"] == "open" and status["bootstrap"]["hoa"] == USERS[0].hoa
        await client.close()
        paa.paa_driver.close()
        paa.ha_driver.close()

    asyncio.run(scenario())


def test_pana_options_build_the_client_config_and_name_what_is_wrong():
    from mip6bench.errors import ParameterError
    from mip6bench.runtime.config import parse_options
    from mip6bench.runtime.pana_client import PanaOptions

    base = {"nai": NAI, "psk": PSK.hex(), "paa": "ff05::8000:716", "discovery": "multicast"}
    options = parse_options(PanaOptions, {**base, "sa_lifetime": 4, "request": ["ha_info", "mip6_sa"]})
    static = StaticMip6(ha=HA, hoa=FIXED_HOA, home_prefix=PREFIX, spi=0x999, key=bytes(20))
    config = options.client_config(static, interface="mn1-f1")   # the MN's attached interface
    assert config.psk == PSK and config.interface == "mn1-f1" and config.static is static
    assert config.request == mip6.REQUEST_HA_INFO | mip6.REQUEST_MIP6_SA
    assert config.sa_proposal.lifetime == 4 and options.autostart
    for bad, message in [({"request": ["coffee"]}, "unknown request items"),
                         ({"psk": "xyz"}, "not hexadecimal"),
                         ({}, "needs the egress interface")]:
        with pytest.raises(ParameterError, match=message):
            parse_options(PanaOptions, {**base, **bad}).client_config()
    with pytest.raises(ParameterError, match="unknown options"):
        parse_options(PanaOptions, {**base, "colour": "red"})
