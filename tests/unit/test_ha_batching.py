"""The HA agent serves the Binding Updates that arrive together as one batch of kernel
work (CoreDriver's apply_many): one call of the tunnel backend and one netlink batch of
proxy ND entries for all of them, each BU still answered only after its own changes,
and a change that fails takes no other BU's Binding Ack with it.

The agent is the real HomeAgentAgent (start(), its HomeAgent core, MobilityIO and the
driver) with the fake kernel, sockets and tunnel backend of test_ha_startup_race; the
BUs are whole authenticated packets handed to the packet tap's handler in one callback,
as a wake-up that finds several queued delivers them."""
from __future__ import annotations

import asyncio
import ipaddress
import time

import agents.ha as ha_agent
from mip6bench.ipv6 import build_ipv6_packet, parse_ipv6_packet
from mip6bench.mipv6.constants import IPPROTO_MH
from mip6bench.mipv6.crypto import encode_with_mn_ha, ntp_timestamp, verify_mn_ha
from mip6bench.mipv6.sa import MobilitySA
from mip6bench.mipv6.wire import (AlternateCareOfAddress, BindingAck, BindingUpdate, MobileNodeIdentifier,
                                  ReplayProtection, decode_mh)
from mip6bench.runtime import mobility
from mip6bench.runtime.config import AgentConfig
from mip6bench.runtime.eventlog import EventLog
from mip6bench.runtime.mobility import NTP_UNIX_OFFSET

from .test_ha_startup_race import HA, HOME_IF, PREFIX, UPLINK, World, fakes

N = 5


def mn(k: int) -> MobilitySA:
    """MN k's SA (its care-of address in round r is coa(k, r))."""
    return MobilitySA(0x2000 + k, bytes([k + 1]) * 16, hoa=f"2001:db8:1::{0x100 + k:x}",
                      nai=f"mn{k}@example.net")


def coa(k: int, r: int) -> str:
    return f"2001:db8:{2 + r}::{0x100 + k:x}"


def binding_update(sa: MobilitySA, care_of: str, seq: int) -> bytes:
    bu = BindingUpdate(seq, 400, ack=True, home_registration=True, options=(
        AlternateCareOfAddress(care_of), MobileNodeIdentifier.from_nai(sa.nai),
        ReplayProtection(ntp_timestamp(time.time() + NTP_UNIX_OFFSET))))
    return build_ipv6_packet(care_of, HA, IPPROTO_MH, encode_with_mn_ha(bu, sa, care_of, sa.hoa, sa.hoa, HA),
                             hao=sa.hoa)


async def run_rounds(monkeypatch, failing: set[str], na_failing: set[str] = frozenset()):
    """Two rounds (N registrations, then N moves), each round's BUs in one callback.
    The backend refuses to bind the home addresses in `failing`. Returns the world, the
    batches the backend saw, the driver's errors and, per round, the Acks by HoA."""
    world = World(asyncio.get_running_loop())
    world.release_setup.set()
    fake = fakes(world)
    batches: list[list[tuple[str, str]]] = []

    class Backend(fake["Backend"]):
        def ha_bind_many(self, kernel, binds, address, uplink):
            batches.append(list(binds))
            out = []
            for hoa, care_of in binds:
                if hoa in failing:
                    out.append(OSError(f"no tunnel for {hoa}"))
                else:
                    self.ha_bind(kernel, hoa, care_of, address, uplink)
                    out.append(None)
            return out

    monkeypatch.setattr(ha_agent, "Kernel", fake["Kernel"])
    monkeypatch.setattr(ha_agent, "InterceptRules", fake["Rules"])
    monkeypatch.setattr(ha_agent.tunnel, "backend", lambda _name: Backend())
    class IcmpSocket(fake["IcmpSocket"]):
        def send_multicast(self, body, dst, ifindex):
            if str(ipaddress.IPv6Address(body[8:24])) in na_failing:
                raise OSError(f"no buffer space for the NA of {ipaddress.IPv6Address(body[8:24])}")
            super().send_multicast(body, dst, ifindex)

    monkeypatch.setattr(ha_agent.ndisc, "IcmpSocket", IcmpSocket)
    monkeypatch.setattr(mobility, "RawSender", fake["RawSender"])
    monkeypatch.setattr(mobility, "MHSocket", fake["Descriptor"])
    monkeypatch.setattr(mobility, "PacketTap", fake["Descriptor"])
    sas = [mn(k) for k in range(N)]
    options = ha_agent.Options(address=HA, home_prefix=PREFIX, home_interface=HOME_IF, uplink=UPLINK,
                               sas=[{"spi": sa.spi, "key": sa.key.hex(), "hoa": sa.hoa, "nai": sa.nai}
                                    for sa in sas],
                               tunnel_backend="ip6tnl", perform_dad=False)
    agent = ha_agent.HomeAgentAgent(AgentConfig(node="ha", agent="ha", control="unused", events=None,
                                                options={}), options, EventLog(None, "ha", "ha"))
    await agent.start()
    rounds = []
    try:
        for r in range(2):
            packets = [binding_update(sa, coa(k, r), r + 1) for k, sa in enumerate(sas)]
            sent_before = len(world.timeline)
            for packet in packets:            # one wake-up: every BU before the loop runs again
                agent.io.handle_tap_packet(packet, UPLINK)
            assert not [w for w, _ in world.timeline[sent_before:] if w in ("tunnel", "mh")], \
                "nothing is applied or answered inside the wake-up itself"
            await agent.io.driver.drain()
            acks = {}
            for what, detail in world.timeline[sent_before:]:
                if what == "mh":
                    pkt = parse_ipv6_packet(detail)
                    k = next(i for i, sa in enumerate(sas) if sa.hoa == pkt.rh2_address)
                    assert verify_mn_ha(pkt.payload, sas[k], coa(k, r), sas[k].hoa)
                    acks[sas[k].hoa] = decode_mh(pkt.payload, pkt.src, pkt.rh2_address)
            rounds.append(acks)
        return world, batches, list(agent.io.driver.errors), rounds, sas, dict(agent.tunnelled)
    finally:
        await agent.stop()


def test_binding_updates_of_one_wake_up_share_one_backend_call_and_each_is_acked_after_it(monkeypatch):
    world, batches, errors, rounds, sas, tunnelled = asyncio.run(run_rounds(monkeypatch, set()))
    assert errors == []
    assert batches == [[(sa.hoa, coa(k, 0)) for k, sa in enumerate(sas)],
                       [(sa.hoa, coa(k, 1)) for k, sa in enumerate(sas)]]
    for r, acks in enumerate(rounds):
        assert sorted(acks) == sorted(sa.hoa for sa in sas)
        assert all(isinstance(ba, BindingAck) and ba.status == 0 and ba.seq == r + 1 for ba in acks.values())
    # Each Ack left after its own tunnel change (here: after the whole batch's).
    names = world.names()
    for r in range(2):
        hoa0 = sas[0].hoa
        tunnels = [i for i, (w, d) in enumerate(world.timeline) if w == "tunnel" and d[1] == coa(0, r)]
        acks_at = [i for i, (w, d) in enumerate(world.timeline)
                   if w == "mh" and parse_ipv6_packet(d).dst == coa(0, r)]
        assert tunnels and acks_at and tunnels[0] < acks_at[0], (hoa0, names)
    # The registrations' proxy ND entries went in one batch, each announced once.
    assert [d for w, d in world.timeline if w == "proxy"] == [sa.hoa for sa in sas]
    assert names.count("icmp.na") == N
    assert tunnelled == {sa.hoa: coa(k, 1) for k, sa in enumerate(sas)}


def test_a_failing_change_fails_alone_and_every_other_binding_update_is_answered(monkeypatch):
    sick = mn(2).hoa
    world, batches, errors, rounds, sas, tunnelled = asyncio.run(run_rounds(monkeypatch, {sick}))
    assert len(batches) == 2 and all(len(b) == N for b in batches)
    assert errors == [f"TunnelUp: no tunnel for {sick}"] * 2
    for r, acks in enumerate(rounds):
        # As when the change is applied alone: the failure is logged, the Ack still
        # goes (the core accepted the BU); no other BU lost its Ack.
        assert sorted(acks) == sorted(sa.hoa for sa in sas)
        assert all(ba.status == 0 and ba.seq == r + 1 for ba in acks.values())
    assert sick not in tunnelled
    assert tunnelled == {sa.hoa: coa(k, 1) for k, sa in enumerate(sas) if sa.hoa != sick}


def test_a_failing_neighbor_advertisement_fails_its_own_binding_only(monkeypatch):
    sick = mn(1).hoa
    world, batches, errors, rounds, sas, tunnelled = asyncio.run(
        run_rounds(monkeypatch, set(), na_failing={sick}))
    assert errors == [f"InstallBinding: no buffer space for the NA of {sick}"]
    assert all(sorted(acks) == sorted(sa.hoa for sa in sas) for acks in rounds)
    assert tunnelled == {sa.hoa: coa(k, 1) for k, sa in enumerate(sas)}
    assert world.names().count("icmp.na") == N - 1
