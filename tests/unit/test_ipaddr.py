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


TRICKY = ["1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "::1:2:3:4:5:6:7:8", "1::2::3", ":1::", "1:::2",
          "0:0:0:0:0:0:0:0", "::", ":", "", "::ffff:0:0", "::0.0.0.1", "::ffff:192.0.2.1",
          "00000::1", "\u0661::", "::1\x00", " ::1", "::1 ", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
          "fe80::1%eth0", "2001:DB8::A", "2001:db8:0:1:1:1:1:1", "2001:0:0:1:0:0:0:1",
          "2001:db8::1:0:0:1"]


def _outcome(fn, addr):
    """fn(addr), or ValueError if it refuses addr."""
    try:
        return fn(addr)
    except ValueError:
        return ValueError


def _reference(addr):
    return _outcome(lambda a: str(ipaddress.IPv6Address(a)), addr)


def _ours(addr):
    return _outcome(ipaddr.text6, addr)


def test_text6_takes_the_c_library_only_where_it_agrees_with_ipaddress():
    """text6 formats with inet_pton/inet_ntop (quicker on a cache miss) except for the
    forms they write differently (an embedded IPv4 address) or do not take (a zone):
    the same text, or the same refusal, as ipaddress for tricky input and for a few
    thousand generated addresses, compressed anywhere, as text and as 16 bytes."""
    import random
    rng = random.Random(7)
    cases = list(TRICKY)
    for _ in range(4000):
        groups = [rng.choice([0, 0, 0, 1, 0xffff, rng.getrandbits(16)]) for _ in range(8)]
        packed = b"".join(g.to_bytes(2, "big") for g in groups)
        text = ":".join(format(g, rng.choice(["x", "04x", "X"])) for g in groups)
        a = rng.randrange(9)
        b = rng.randrange(a, 9)
        compressed = ":".join(text.split(":")[:a]) + "::" + ":".join(text.split(":")[b:])
        cases += [packed, text, compressed, compressed + rng.choice([":", ":1", "::", ".1", "g"])]
    for case in cases:
        assert _ours(case) == _reference(case), case


def test_packed6_takes_the_c_library_only_for_canonical_text():
    """packed6 parses with inet_pton where the text is what inet_ntop writes back (the
    canonical form, which ipaddress reads the same), else as ipaddress does: the same
    bytes, or the same refusal, for tricky input and generated addresses."""
    import random
    rng = random.Random(11)
    cases = [c for c in TRICKY if isinstance(c, str)]
    for _ in range(2000):
        packed = bytes(rng.choice([0, 0, 1, rng.getrandbits(8)]) for _ in range(16))
        canonical = str(ipaddress.IPv6Address(packed))
        cases += [canonical, canonical.upper(), canonical + rng.choice([":", ":1", "g"])]
    for case in cases:
        assert _outcome(ipaddr.packed6, case) == \
            _outcome(lambda a: ipaddress.IPv6Address(a).packed, case), case
