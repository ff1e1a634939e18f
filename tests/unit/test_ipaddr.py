"""The memoised address helpers: the same answers as ipaddress, bad input refused every
time, unhashable byte forms accepted, and the caches bounded."""
import ipaddress

import pytest

from mip6bench import ipaddr


def test_same_answers_as_ipaddress():
    for text in ("2001:db8:0:0::1", "2001:DB8::1", "::ffff:192.0.2.1", "fe80::1"):
        assert ipaddr.text6(text) == str(ipaddress.IPv6Address(text))
        assert ipaddr.packed6(text) == ipaddress.IPv6Address(text).packed
        assert ipaddr.ip6(text) == ipaddress.IPv6Address(text)
        assert ipaddr.text(text) == str(ipaddress.ip_address(text))
    assert ipaddr.text("192.0.2.1") == "192.0.2.1" and ipaddr.ip("192.0.2.1").version == 4
    raw = ipaddress.IPv6Address("2001:db8::7").packed
    assert ipaddr.text6(raw) == ipaddr.text6(bytearray(raw)) == ipaddr.text6(memoryview(raw)) \
        == "2001:db8::7"


@pytest.mark.parametrize("bad", ["192.0.2.1", "2001:db8::g", "", b"\0" * 15])
def test_bad_input_raises_each_time(bad):
    for _ in range(2):  # not cached as a result
        with pytest.raises(ValueError):
            ipaddr.text6(bad)


def test_caches_are_bounded():
    base = int(ipaddress.IPv6Address("2001:db8:ffff::"))
    for i in range(ipaddr.CACHE + 100):
        ipaddr.text6(ipaddress.IPv6Address(base + i).packed)
    assert ipaddr.text6.cache_info().currsize == ipaddr.CACHE
