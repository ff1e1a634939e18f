"""The HA behind its home network's firewall (ha_firewall=on, RFC 4487 section 3), without
root: the MN core's gate on the home BU (OpenPinholes "home"), the phase's NATFW flows,
the reverse-tunnel flow kind on the wire and as an nft match, and the HA core's consent."""
from __future__ import annotations

import itertools

import pytest
from scapy.layers.inet6 import IPv6, UDP

from mip6bench.aaa import authz as az
from mip6bench.mipv6.constants import INITIAL_BINDACK_TIMEOUT_FIRST_REG
from mip6bench.mipv6.effects import ClosePinholes, OpenPinholes, RegistrationFailed
from mip6bench.mipv6.ha import HomeAgent
from mip6bench.mipv6.sa import SAStore
from mip6bench.mipv6.wire import BindingUpdate
from mip6bench.natfw import wire as w
from mip6bench.natfw.core import Mri, NiCore, PinholeFlow, SendNslp
from mip6bench.natfw.mobile import MobileTraversal, PinholesReady, phase_flows
from mip6bench.net.pinholes import flow_description, flow_matches
from tests.unit.test_mipv6_harness import CN, COA1, COA2, HA, HOA, Sim, make_sa
from tests.unit.test_mipv6_mn import T0, sent_by

HOME = {"mn_kwargs": {"home_traversal": True, "traversal_timeout": 5.0}}


def opened(sim, phase="home"):
    return [e for e in sim.effects_of("mn", OpenPinholes) if e.phase == phase]


def moved_sim(**kw) -> Sim:
    sim = Sim(**kw)
    sim.now = T0
    sim.call("mn", "move_to", COA1)
    return sim


def home_bus(sim):
    return [(t, tr) for t, tr, _ in sent_by(sim, "mn", BindingUpdate) if tr.dst == HA]


# ---------------------------------------------------------------- the MN core's gate
def test_without_the_option_the_bu_goes_out_at_once():
    sim = moved_sim()
    assert home_bus(sim) and not opened(sim)


def test_the_first_home_bu_waits_for_the_home_pinholes():
    sim = moved_sim(**HOME)
    [ask] = opened(sim)
    assert (ask.cn, ask.hoa, ask.coa) == (HA, HOA, COA1)
    sim.run(3)
    assert home_bus(sim) == [] and not sim.mn.home_registered
    granted = sim.now
    sim.call("mn", "pinholes_ready", HA, COA1, "home", True, "")
    [(t, tr)] = home_bus(sim)
    assert t == granted and tr.src == COA1 and tr.hao == HOA
    sim.run(1)
    assert sim.mn.home_registered and sim.mn.counters["home_traversal.ready"] == 1


def test_refreshes_for_the_same_coa_do_not_signal_again():
    sim = moved_sim(**HOME)
    sim.call("mn", "pinholes_ready", HA, COA1, "home", True, "")
    sim.run(1)
    lifetime = sim.mn.home.lifetime
    sim.run(lifetime)                               # past the refresh at 85 %
    assert len(home_bus(sim)) >= 2 and len(opened(sim)) == 1


def test_a_handover_resignals_and_holds_the_bu_for_the_new_coa():
    sim = moved_sim(**HOME)
    sim.call("mn", "pinholes_ready", HA, COA1, "home", True, "")
    sim.run(1)
    before = len(home_bus(sim))
    sim.call("mn", "move_to", COA2)
    [close] = [c for c in sim.effects_of("mn", ClosePinholes) if c.cn == HA]
    assert (close.coa, close.moving) == (COA1, True)
    assert [a.coa for a in opened(sim)] == [COA1, COA2]
    sim.run(2)
    assert len(home_bus(sim)) == before           # nothing from COA2 before its answer
    sim.call("mn", "pinholes_ready", HA, COA2, "home", True, "")
    assert home_bus(sim)[-1][1].src == COA2
    sim.run(1)
    assert sim.mn.home.registered_coa == COA2


def test_a_late_answer_for_the_old_coa_is_stale():
    sim = moved_sim(**HOME)
    sim.call("mn", "move_to", COA2)
    sim.call("mn", "pinholes_ready", HA, COA1, "home", True, "")
    assert home_bus(sim) == [] and sim.mn.counters["home_traversal.stale_answer"] == 1


def test_refusal_is_counted_reported_and_retried_with_backoff():
    sim = moved_sim(**HOME)
    t0 = sim.now
    sim.call("mn", "pinholes_ready", HA, COA1, "home", False, "NATFW information code class 0x5")
    [failed] = sim.effects_of("mn", RegistrationFailed)
    assert "home firewall traversal failed" in failed.reason and failed.coa == COA1
    assert sim.mn.counters["home_traversal.refused"] == 1 and home_bus(sim) == []
    sim.run(INITIAL_BINDACK_TIMEOUT_FIRST_REG + 0.01)
    assert len(opened(sim)) == 2                      # retried after the back-off
    sim.call("mn", "pinholes_ready", HA, COA1, "home", False, "again")
    t1 = sim.now
    sim.run(2 * INITIAL_BINDACK_TIMEOUT_FIRST_REG - 0.1)
    assert len(opened(sim)) == 2                      # the back-off doubled
    sim.run(0.2)
    assert len(opened(sim)) == 3 and t1 > t0


def test_an_unanswered_open_times_out_and_is_retried():
    sim = moved_sim(**HOME)
    sim.run(5.01)
    assert sim.mn.counters["home_traversal.timeout"] == 1
    assert sim.effects_of("mn", RegistrationFailed)
    sim.run(INITIAL_BINDACK_TIMEOUT_FIRST_REG)
    assert len(opened(sim)) == 2 and home_bus(sim) == []


def test_returning_home_tears_the_home_pinholes_down():
    sim = moved_sim(**HOME)
    sim.call("mn", "pinholes_ready", HA, COA1, "home", True, "")
    sim.run(1)
    sim.call("mn", "move_to", HOA)
    [close] = [c for c in sim.effects_of("mn", ClosePinholes) if c.cn == HA]
    assert (close.coa, close.moving) == (COA1, False)
    sim.run(1)
    assert sim.mn.at_home and home_bus(sim)[-1][1].src == HOA   # deregistration from home


# ---------------------------------------------------------------- the phase's flows
def make_traversal():
    counter = itertools.count(1)
    ni = NiCore()
    return ni, MobileTraversal(ni, lifetime=30, random_bytes=lambda n: next(counter).to_bytes(n, "big"))


def test_home_phase_is_the_bu_with_hao_and_the_reverse_tunnel():
    flows = dict(phase_flows(HA, HOA, COA1, "home"))
    assert set(flows) == {"habu", "htun"}
    bu, tun = flows["habu"], flows["htun"]
    assert (bu.source, bu.destination, bu.protocol) == (COA1, HA, 135)
    assert bu.mip6 == w.Mip6Flow(w.MIP6_MH, 5, HOA)
    assert (tun.source, tun.destination, tun.protocol) == (COA1, HA, 41)
    assert tun.mip6 == w.Mip6Flow(w.MIP6_TUNNEL, 0, HOA)


def test_home_phase_is_ready_when_both_succeed_and_moves_with_the_same_sessions():
    ni, tr = make_traversal()
    sends = [a for a in tr.open(HA, HOA, COA1, "home", 0.0) if isinstance(a, SendNslp)]
    assert len(sends) == 2
    ready = []
    for s in sends:
        msg = w.decode(s.data)
        reply = w.response(msg.msn, w.InfoCode.of(w.INFO_SUCCESS), msg.lifetime)
        for effect in ni.receive(s.session_id, s.mri, reply.encode(), 1.0):
            ready += [a for a in tr.on_ni_effect(effect, 1.0) if isinstance(a, PinholesReady)]
    assert [(r.cn, r.coa, r.phase, r.ok) for r in ready] == [(HA, COA1, "home", True)]
    tr.close(HA, HOA, COA1, "moved", 2.0, moving=True)
    again = [a for a in tr.open(HA, HOA, COA2, "home", 3.0) if isinstance(a, SendNslp)]
    assert {s.session_id for s in again} == {s.session_id for s in sends}
    assert {s.mri.source for s in again} == {COA2}
    down = [a for a in tr.close(HA, HOA, COA2, "home", 4.0) if isinstance(a, SendNslp)]
    assert sorted(w.decode(s.data).lifetime for s in down) == [0, 0]


# ---------------------------------------------------------------- the tunnel flow kind
def test_tunnel_kind_on_the_wire_both_ways_and_strict():
    m = w.Mip6Flow(w.MIP6_TUNNEL, 0, HOA)
    data = w.encode_object(m)
    assert data[4:8] == bytes([4, 0, 0, 0])
    msg = w.create(60, 1, w.ACTION_ALLOW, m)
    assert w.decode(msg.encode()).get(w.Mip6Flow) == m
    with pytest.raises(ValueError):
        w.Mip6Flow(w.MIP6_TUNNEL, 0, None)                  # names the home address
    with pytest.raises(ValueError):
        w.Mip6Flow(5, 0, HOA)


def test_tunnel_pinhole_matches_the_inner_source_where_scapy_puts_it():
    f = PinholeFlow(Mri(COA1, HA, 41), mip6=w.Mip6Flow(w.MIP6_TUNNEL, 0, HOA))
    source, destination = flow_matches(f)     # one kind for both tunnel directions
    hoa_hex = "0x" + bytes(IPv6(src=HOA)).hex()[16:48]
    head = f"ip6 saddr {COA1} ip6 daddr {HA} ip6 nexthdr 41 meta l4proto 41"
    assert source == f"{head} @nh,384,128 {hoa_hex}"         # the MN's reverse tunnel
    assert destination == f"{head} @nh,512,128 {hoa_hex}"    # the HA's tunnel to the CoA
    # An independent encoder: the outer header, then the inner one, whose source is the
    # HoA at byte 48 (bit 384) of the packet, its destination at byte 64 (bit 512).
    packet = bytes(IPv6(src=COA1, dst=HA) / IPv6(src=HOA, dst=CN) / UDP(dport=9))
    assert packet[6] == 41 and "0x" + packet[48:64].hex() == hoa_hex
    back = bytes(IPv6(src=HA, dst=COA1) / IPv6(src=CN, dst=HOA) / UDP(dport=9))
    assert "0x" + back[64:80].hex() == hoa_hex
    assert flow_description(f)["text"].endswith(f"tunnel for {HOA}")
    with pytest.raises(ValueError):
        flow_matches(PinholeFlow(Mri(COA1, HA, 17), mip6=w.Mip6Flow(w.MIP6_TUNNEL, 0, HOA)))


def test_tunnel_kind_in_the_pull_authorization_query():
    # The MN asked from its CoA, the flow's source: its reverse tunnel, outbound.
    q = az.AuthzQuery(COA1, HA, 41, mip6_kind=az.MIP6_TUNNEL, home_address=HOA, requester=COA1)
    assert "tunnel" in q.describe() and q.mn_address == COA1 and q.peer == (HA, 0)
    # The same kind from the HA to the CoA, asked from the CoA (EXT): inbound.
    back = az.AuthzQuery(HA, COA1, 41, mip6_kind=az.MIP6_TUNNEL, home_address=HOA, requester=COA1)
    assert back.mn_address == COA1 and back.peer == (HA, 0)
    with pytest.raises(ValueError):
        az.AuthzQuery(COA1, HA, 41, mip6_kind=az.MIP6_TUNNEL)


# ---------------------------------------------------------------- the HA's consent
def ha_core(**kw) -> HomeAgent:
    store = SAStore()
    store.add(make_sa())
    return HomeAgent(HA, ["2001:db8:1::/64"], store, **kw)


@pytest.mark.parametrize("source, destination, protocol, kind, mh, hoa, why", [
    (COA1, HA, 135, 1, 5, HOA, None),                      # BU with HAO from a CoA
    (COA1, HA, 41, 4, 0, HOA, None),                       # the reverse tunnel
    (COA1, "2001:db8:1::2", 135, 1, 5, HOA, "not toward this home agent"),
    (COA1, HA, 135, 1, 1, HOA, "only the Binding Update"),  # HoTI: not the HA's business
    (COA1, HA, 17, None, 0, None, "no home address"),
    (COA1, HA, 41, 4, 0, "2001:db8:9::1", "not a home address"),
    (COA1, HA, 41, 4, 0, "2001:db8:1::999", "no security association"),
    (HOA, HA, 135, 1, 5, HOA, "not a care-of address"),
    ("2001:db8:1::77", HA, 41, 4, 0, HOA, "not a care-of address"),
])
def test_the_ha_consents_only_to_what_an_mn_it_serves_needs(source, destination, protocol,
                                                             kind, mh, hoa, why):
    got = ha_core().natfw_consent(source, destination, protocol, kind, mh, hoa, 0.0)
    assert got == why if why is None else why in got


def test_served_list_and_sa_on_demand():
    assert "not served" in ha_core(served_home_addresses=["2001:db8:1::5"]).natfw_consent(
        COA1, HA, 41, 4, 0, HOA, 0.0)
    on_demand = HomeAgent(HA, ["2001:db8:1::/64"], SAStore(), natfw_sa_on_demand=True)
    assert on_demand.natfw_consent(COA1, HA, 41, 4, 0, "2001:db8:1::999", 0.0) is None
