"""What the soak (bench/soak_bench.py: a handover and a re-authentication every few
seconds for an hour) must not accumulate: N more re-authentications leave every
structure of the PaC runtime, the PAA service and the HA's SA distribution core at the
size it had (tests.unit.memory_bounds walks them all)."""
from __future__ import annotations

import asyncio
import random

from mip6bench.aaa.sadist import SaDistConfig, SaDistHaCore
from mip6bench.runtime.pana_client import UPDATES_KEPT, PanaClient, PanaClientConfig

from .memory_bounds import container_sizes, grown
from .bootstrap_harness import SADIST_PSK
from .test_bootstrap_e2e import NAI, PAA, PSK, MemoryPaa, _wait_for

WARMUP, MORE = 10, 12


def test_reauthentications_leave_the_pac_paa_and_ha_state_at_a_constant_size():
    async def scenario():
        paa = MemoryPaa()
        # The HA answers repeated SA distribution requests for answer_cache seconds: here
        # a few milliseconds, so that the run, which takes no longer, outlives it.
        paa.ha = SaDistHaCore(SaDistConfig({PAA: SADIST_PSK}, answer_cache=0.001), rng=random.Random(6))
        updates = []

        def on_update(update):
            updates.append(update.kind)
            paa.woken.set()

        client = PanaClient(PanaClientConfig(nai=NAI, psk=PSK, paa=PAA, port=0),
                            emit=lambda name, **f: None, on_update=on_update,
                            transport=paa.transport(), rng=random.Random(9))
        paa.client = client
        await client.open()
        client.start()
        await _wait_for(paa.woken, lambda: updates == ["ready"])

        async def reauthenticate(n):
            for _ in range(n):
                want = len(updates) + 1
                assert client.reauthenticate()
                await _wait_for(paa.woken, lambda: len(updates) == want)
            assert set(updates[1:]) == {"rekeyed"}

        roots = {"client": client, "service": paa.service, "ha": paa.ha}
        await reauthenticate(WARMUP)
        paa.ha_effects.clear()                 # the test's own record
        before = container_sizes(roots)
        await reauthenticate(MORE)
        paa.ha_effects.clear()
        after = container_sizes(roots)
        assert grown(before, after, MORE // 2) == {}
        assert len(client.updates) == UPDATES_KEPT < WARMUP
        assert client.status()["updates"] == 1 + WARMUP + MORE
        await client.close()
        paa.paa_driver.close()
        paa.ha_driver.close()

    asyncio.run(scenario())
