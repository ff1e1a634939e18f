"""The HA agent's start-up race (README "Faults": an HA restarted while its MNs refreshed
their bindings died of its own start-up race): a Binding Update can arrive while the agent
is still setting up the kernel (its Mobility Header sockets are open before the home
link's ICMPv6 socket exists and before the tunnel backend is set up). Its effects must
wait for the set-up: the DAD probe, the tunnel and the Binding Ack come after it, and the
BA accepts the binding.

The agent is the real HomeAgentAgent with its real start(), kernel set-up code and
HomeAgent core; only what touches the kernel is replaced (sockets, the tunnel backend,
the nft rules, rtnetlink), and the last step of the kernel set-up (the backend's
ha_setup) is held on a threading.Event until the BU's first effect has been entered.
Nothing sleeps: the test waits on the set-up having begun, on the effect having been
entered and on the Binding Ack having been sent.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import agents.ha as ha_agent
from mip6bench.ipv6 import build_ipv6_packet, parse_ipv6_packet
from mip6bench.mipv6.constants import IPPROTO_MH
from mip6bench.mipv6.crypto import encode_with_mn_ha, ntp_timestamp
from mip6bench.mipv6.effects import RequestDAD
from mip6bench.mipv6.sa import MobilitySA
from mip6bench.mipv6.wire import (AlternateCareOfAddress, BindingAck, BindingUpdate, MobileNodeIdentifier,
                                  ReplayProtection, decode_mh)
from mip6bench.runtime import mobility
from mip6bench.runtime.config import AgentConfig
from mip6bench.runtime.eventlog import EventLog
from mip6bench.runtime.mobility import NTP_UNIX_OFFSET

from .test_mipv6_harness import COA1 as COA, HA, HOA, HOME_PREFIX as PREFIX, KEY, NAI, SPI

HOME_IF, UPLINK = "ha-home", "ha-core"
ICMPV6 = 58


class World:
    """What the fake kernel saw, in order, and the events the test waits on."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.timeline: list[tuple[str, object]] = []
        self.setup_begun = asyncio.Event()       # set from the kernel thread
        self.release_setup = threading.Event()   # the test lets the set-up finish
        self.ba_sent = asyncio.Event()

    def saw(self, what: str, detail: object = None) -> None:
        self.timeline.append((what, detail))

    def names(self) -> list[str]:
        return [what for what, _ in self.timeline]


def fakes(world: World):
    class Descriptor:
        """A descriptor the loop can watch that never becomes readable."""

        def __init__(self, *_args, **_kwargs):
            self._ends = socket.socketpair()

        def fileno(self) -> int:
            return self._ends[0].fileno()

        def recv(self):
            return None

        def close(self) -> None:
            for end in self._ends:
                end.close()

    class IcmpSocket(Descriptor):
        def join(self, group, ifindex):
            world.saw("icmp.join", group)

        def send_multicast(self, body, dst, ifindex):
            world.saw("icmp.na", dst)

    class RawSender:
        def send(self, packet: bytes, ifindex: int = 0, oif: int = 0) -> None:
            if packet[6] == ICMPV6:
                world.saw("dad_probe", ifindex)
                return
            world.saw("mh", packet)
            world.ba_sent.set()

        def close(self) -> None:
            pass

    class Kernel:
        def __enter__(self):
            return self

        def __exit__(self, *_exc):
            self.close()

        def ifindex(self, name):
            return {HOME_IF: 2, UPLINK: 3}[name]

        def links(self):
            return [{"name": HOME_IF, "mac": "02:00:00:00:00:01"}, {"name": UPLINK, "mac": "02:00:00:00:00:02"}]

        def addresses(self):
            return [{"address": HA, "scope": 0}]

        def sysctl(self, values):
            pass

        def add_proxy_ndp(self, ifname, address):
            world.saw("proxy", address)

        def del_proxy_ndp(self, ifname, address):
            pass

        def batch(self, outcome=None):   # requests go one by one here (none fail)
            return contextlib.nullcontext()

        def close(self):
            pass

    class Backend:
        name = "fake"
        kernel_reverse_check = False

        def prepare(self, role):
            pass

        def ha_purge(self, kernel, prefix, ifname):
            return 0

        def ha_setup(self, kernel, address, local_addresses, ifname):
            # The set-up's last step, on the kernel thread: held until the test says.
            world.loop.call_soon_threadsafe(world.setup_begun.set)
            if not world.release_setup.wait(30):
                raise RuntimeError("the test never released the kernel set-up")
            world.saw("setup_done")

        def ha_nft_rules(self, table, address):
            return "", []

        def ha_bind(self, kernel, hoa, coa, address, uplink):
            world.saw("tunnel", (hoa, coa))

        def ha_bind_many(self, kernel, binds, address, uplink):
            for hoa, coa in binds:
                self.ha_bind(kernel, hoa, coa, address, uplink)
            return [None] * len(binds)

        def ha_unbind(self, kernel, hoa):
            pass

        def ha_teardown(self, kernel, local_addresses):
            pass

        def close(self):
            pass

        def status(self):
            return {}

    class Rules:
        def __init__(self, *_args):
            pass

        def install(self, rules, decl):
            pass

        def remove(self):
            pass

    return {"IcmpSocket": IcmpSocket, "Descriptor": Descriptor, "RawSender": RawSender,
            "Kernel": Kernel, "Backend": Backend, "Rules": Rules}


def binding_update(now_wall: float) -> bytes:
    """A whole IPv6 packet: the BU from the care-of address with a Home Address option,
    authenticated with the MN-HA SA (RFC 4285), as the HA's packet tap delivers it."""
    sa = MobilitySA(SPI, KEY, hoa=HOA, nai=NAI)
    bu = BindingUpdate(1, 400, ack=True, home_registration=True, options=(
        AlternateCareOfAddress(COA), MobileNodeIdentifier.from_nai(NAI),
        ReplayProtection(ntp_timestamp(now_wall + NTP_UNIX_OFFSET))))
    data = encode_with_mn_ha(bu, sa, COA, HOA, HOA, HA)
    return build_ipv6_packet(COA, HA, IPPROTO_MH, data, hao=HOA)


def test_a_binding_update_during_kernel_setup_is_applied_after_it(monkeypatch):
    async def scenario():
        world = World(asyncio.get_running_loop())
        fake = fakes(world)
        monkeypatch.setattr(ha_agent, "Kernel", fake["Kernel"])
        monkeypatch.setattr(ha_agent, "InterceptRules", fake["Rules"])
        monkeypatch.setattr(ha_agent.tunnel, "backend", lambda _name: fake["Backend"]())
        monkeypatch.setattr(ha_agent.ndisc, "IcmpSocket", fake["IcmpSocket"])
        monkeypatch.setattr(mobility, "RawSender", fake["RawSender"])
        monkeypatch.setattr(mobility, "MHSocket", fake["Descriptor"])
        monkeypatch.setattr(mobility, "PacketTap", fake["Descriptor"])
        dad_entered = asyncio.Event()

        class Agent(ha_agent.HomeAgentAgent):
            def entered(self, effects):
                if any(isinstance(effect, RequestDAD) for effect in effects):
                    world.saw("dad_effect_entered")
                    dad_entered.set()

            async def apply(self, effect):        # effects applied alone
                self.entered([effect])
                await super().apply(effect)

            async def apply_many(self, effects):  # a batch of them
                self.entered(effects)
                return await super().apply_many(effects)

        options = ha_agent.Options(address=HA, home_prefix=PREFIX, home_interface=HOME_IF, uplink=UPLINK,
                                   sas=[{"spi": SPI, "key": KEY.hex(), "hoa": HOA, "nai": NAI}],
                                   tunnel_backend="ip6tnl", dad_timeout_ms=20)
        config = AgentConfig(node="ha", agent="ha", control="unused", events=None, options={})
        agent = Agent(config, options, EventLog(None, "ha", "ha"))
        starting = asyncio.create_task(agent.start())
        try:
            await asyncio.wait_for(world.setup_begun.wait(), 10)
            # The MH sockets are open, the kernel set-up is not done: a BU arrives.
            agent.io.handle_tap_packet(binding_update(time.time()), UPLINK)
            await asyncio.wait_for(dad_entered.wait(), 10)
            # The DAD effect has been entered: had it not waited for the set-up, it would
            # have run to its end (or failed) before this line.
            assert not agent.io.driver.errors
            assert world.names() == ["dad_effect_entered"], world.timeline
            world.release_setup.set()
            await asyncio.wait_for(starting, 10)
            await asyncio.wait_for(world.ba_sent.wait(), 10)
            await agent.io.driver.drain()
            names = world.names()
            assert not agent.io.driver.errors
            assert names.index("setup_done") < names.index("dad_probe") < names.index("tunnel") \
                < names.index("mh"), world.timeline
            assert ("tunnel", (HOA, COA)) in world.timeline
            packet = parse_ipv6_packet(dict(world.timeline)["mh"])
            assert (packet.src, packet.dst, packet.rh2_address) == (HA, COA, HOA)
            ba = decode_mh(packet.payload, packet.src, packet.rh2_address)
            assert isinstance(ba, BindingAck) and ba.status == 0 and ba.seq == 1, ba
            assert [b["coa"] for b in await agent.cmd_bindings({})] == [COA]
        finally:
            world.release_setup.set()
            if not starting.done():
                await asyncio.wait_for(asyncio.shield(starting), 10)
            await agent.stop()

    asyncio.run(scenario())
