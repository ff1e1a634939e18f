"""The MN agent's attachment core on the wire, per DAD mode: the care-of address on a
new network is used (mipv6.mn.coa_ready, then the home registration) only once the
kernel's Duplicate Address Detection allows it: after DAD with ``dad=standard``, at once
with ``dad=optimistic`` (RFC 4429)."""
from __future__ import annotations

import time

import pytest

from mip6bench.testbed.network import Testbed

pytestmark = [pytest.mark.netns, pytest.mark.slow]

DAD_MS = 1000   # the kernel's DAD: one probe, RetransTimer 1 s


@pytest.fixture(scope="module", params=["standard", "optimistic"], ids=lambda d: f"dad={d}")
def tb(request, tmp_path_factory):
    testbed = Testbed({"foreign": 2, "dad": request.param}, experiment="test-mn-dad", capture=False,
                      out_dir=tmp_path_factory.mktemp("mn-dad"))
    testbed.start()
    try:
        testbed.wait_registered("mn1", timeout=15)
        yield testbed
    finally:
        testbed.stop()


def wait_event(mn, event, after_ns, **match):
    return mn.request("wait-event", timeout=14, event=event, match=match, after_ns=after_ns, within=12)


@pytest.mark.timing
def test_the_care_of_address_is_used_when_dad_allows(tb):
    dad = tb.plan.nodes["mn1"].extra["dad"]
    mn = tb.mobility_agent("mn1")
    target = "f1" if tb.attached_network("mn1") == "f2" else "f2"
    interface = f"mn1-{target}"
    t0 = time.monotonic_ns()
    tb.move("mn1", target, wait=False)
    detected = wait_event(mn, "mipv6.mn.movement_detected", t0, interface=interface)
    ready = wait_event(mn, "mipv6.mn.coa_ready", t0, interface=interface)
    assert ready["dad"] == dad
    waited_ms = (ready["t_ns"] - detected["t_ns"]) / 1e6
    if dad == "standard":
        assert waited_ms >= 0.8 * DAD_MS, ready      # tentative until DAD ended
    else:
        assert waited_ms < DAD_MS, ready             # optimistic: usable at once
    tb.wait_registered("mn1", coa=ready["coa"], timeout=15)
    assert mn.request("status")["attached"] == interface
