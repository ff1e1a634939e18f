"""The PaC pointed at a PAA or PANA relay element on another UDP port than 716: the
PanaOptions field `paa_port` (agents/pac.py's options, the MN agent's `pana` option, the
testbed's BootstrapServices.pac_options) reaches the PaC core, and its PCI goes there."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mip6bench.errors import ParameterError
from mip6bench.pana import message as m
from mip6bench.params import parse_params
from mip6bench.runtime.config import parse_options
from mip6bench.runtime.pana_client import PanaClient, PanaOptions
from mip6bench.testbed.bootstrap import BootstrapServices
from mip6bench.testbed.operational import build_plan, topology_params

NAI = "mn1@example.net"
BASE = {"nai": NAI, "psk": "00112233445566778899aabbccddeeff", "paa": "2001:db8:1::2"}


class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, data, dst, port, discovery):
        self.sent.append((m.decode_message(data), dst, port, discovery))

    def close(self):
        pass


def test_paa_port_reaches_the_pci():
    config = parse_options(PanaOptions, {**BASE, "paa_port": 5555, "port": 0}).client_config()
    assert (config.paa_port, config.port) == (5555, 0)

    async def scenario():
        wire = Recorder()
        client = PanaClient(config, emit=lambda *a, **k: None, transport=wire)
        await client.open()
        assert client.start()
        await client.close()
        return wire.sent

    (pci, dst, port, discovery), = asyncio.run(scenario())
    assert (pci.type, dst, port, discovery) == (m.PCI, "2001:db8:1::2", 5555, "unicast")


def test_the_default_is_panas_port():
    assert parse_options(PanaOptions, BASE).client_config().paa_port == m.PANA_PORT == 716


@pytest.mark.parametrize("bad,message", [({"paa_port": 0}, "paa_port 0 is not a UDP port"),
                                         ({"paa_port": 70000}, "paa_port 70000"),
                                         ({"port": -1}, "port -1 is not a UDP port")])
def test_a_bad_port_is_named(bad, message):
    with pytest.raises(ParameterError, match=message):
        parse_options(PanaOptions, {**BASE, **bad}).client_config()


def test_the_pac_agent_takes_the_option():
    from agents import pac as pac_agent
    options = parse_options(pac_agent.Options, {**BASE, "paa_port": 5555})
    assert options.client_config().paa_port == 5555


def services():
    plan = build_plan(parse_params(topology_params(), {"mipv6": "bootstrap"}))
    svc = object.__new__(BootstrapServices)       # only what pac_options reads
    svc.tb = SimpleNamespace(plan=plan, attached_network=lambda mn: None)
    svc.users = [SimpleNamespace(nai=NAI, psk=bytes(16))]
    svc.paa_address = plan.nodes["paa"].address()
    return svc


def test_the_testbed_points_a_pac_at_another_port_and_agent():
    svc = services()
    default = svc.pac_options("mn1", "unicast")
    assert (default["paa"], default["paa_port"]) == (svc.paa_address, 716)
    other = svc.pac_options("mn1", "unicast", paa="2001:db8:f1::1", paa_port=7170)
    assert (other["paa"], other["paa_port"]) == ("2001:db8:f1::1", 7170)
    config = parse_options(PanaOptions, other).client_config()
    assert (config.paa, config.paa_port) == ("2001:db8:f1::1", 7170)
    group = svc.pac_options("mn1", "multicast")
    assert group["paa_port"] == 716 and group["discovery"] == "multicast"
    with pytest.raises(ParameterError, match="multicast discovery goes to the PANA group"):
        svc.pac_options("mn1", "multicast", paa_port=7170)
    with pytest.raises(ParameterError, match="paa_port=0"):
        svc.pac_options("mn1", "unicast", paa_port=0)
