"""The NATFW service glue (mip6bench.runtime.natfw) at the firewall keeps, per session,
when the message that led to a pinhole install arrived (the install's latency). Every
handover brings new NATFW sessions; what it keeps must not grow with them: the install
takes the time, the removal drops it, and sessions that never get a pinhole (refused
CREATEs) are bounded by RECEIVE_TIMES_KEPT with the evictions counted."""
from __future__ import annotations

import asyncio
from collections import Counter

from mip6bench.gist import core as gist_core
from mip6bench.gist.wire import Mri as GistMri
from mip6bench.natfw import core as nat
from mip6bench.runtime import natfw as natfw_runtime
from mip6bench.runtime.natfw import NatfwService

from .memory_bounds import container_sizes, grown

MN, CN = "2001:db8:2::100", "2001:db8:3::10"


class Agent:
    def __init__(self):
        self.counters, self.events = Counter(), []

    def count(self, name, n=1):
        self.counters[name] += n

    def emit(self, name, **fields):
        self.events.append(name)

    def spawn(self, coro, name):
        return asyncio.get_running_loop().create_task(coro, name=name)


class Gist:
    def register_nslp(self, nslp_id, handler):
        self.deliver = handler

    def send(self, *args, **kwargs):
        pass


class Pinholes:
    def __init__(self):
        self.installed = set()

    async def install_flow(self, session, flow, lifetime):
        self.installed.add(session)

    async def remove(self, session):
        self.installed.discard(session)
        return True


class Core:
    """The NF's decisions, as the test wants them: a CREATE (data b"create") is installed,
    one with data b"refuse" is not, b"teardown" removes the pinhole."""

    def receive(self, sid, mri, data, now, **_kw):
        if data == b"create":
            return [nat.InstallPinhole(sid, nat.PinholeFlow(mri), 60)]
        if data == b"teardown":
            return [nat.RemovePinhole(sid, "teardown")]
        return []


def test_session_records_do_not_grow_with_sessions(monkeypatch):
    monkeypatch.setattr(natfw_runtime, "RECEIVE_TIMES_KEPT", 16, raising=False)
    monkeypatch.setattr(nat, "NfCore", Core)        # the service passes the GIST peer to an NF

    async def scenario():
        agent, gist, pinholes = Agent(), Gist(), Pinholes()
        service = NatfwService(agent, gist, Core(), pinholes=pinholes)
        mri = GistMri(MN, CN, protocol=17, src_port=5000, dst_port=6000)
        sessions = iter(range(1, 10_000))

        async def settle():
            await service.driver.drain()
            # Installs run beside the effects; each forgets itself when done.
            await asyncio.gather(*service._installs.values())
            assert not service._installs

        async def handover(n):
            """n handovers: each a new session whose pinhole is opened and later closed,
            and one the firewall refuses."""
            for _ in range(n):
                sid = next(sessions).to_bytes(16, "big")
                for data in (b"create", b"teardown"):
                    gist.deliver(gist_core.RecvMessage(33, sid, mri, data, MN, 1))
                    await settle()
                gist.deliver(gist_core.RecvMessage(33, next(sessions).to_bytes(16, "big"),
                                                   mri, b"refuse", MN, 1))

        await handover(20)
        before = container_sizes({"service": service}, skip=(agent, pinholes))
        await handover(40)
        assert pinholes.installed == set()
        assert grown(before, container_sizes({"service": service}, skip=(agent, pinholes)), 10) == {}
        assert agent.counters["natfw.receive_times_evicted"] == 60 - 16
        assert agent.events.count("nsis.pinhole_installed") == 60
        service.close()

    asyncio.run(scenario())
