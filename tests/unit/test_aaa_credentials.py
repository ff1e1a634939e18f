"""The credentials file and the hostapd eap_user file made from it."""
from __future__ import annotations

import pytest

from mip6bench.aaa.credentials import (Credential, format_credentials, hostapd_eap_user,
                                       load_credentials, parse_credentials)
from mip6bench.errors import ParameterError

GOOD = """\
# NAI  PSK  HoA
mn1@mip6bench.example   000102030405060708090a0b0c0d0e0f   2001:db8:1::1001
mn2@mip6bench.example   f0e1d2c3b4a5968778695a4b3c2d1e0f   # no fixed HoA
"""


def test_parse_good_file():
    creds = parse_credentials(GOOD)
    assert len(creds) == 2 and "mn1@mip6bench.example" in creds
    assert creds.psk("mn1@mip6bench.example") == bytes(range(16))
    assert creds.hoa("mn1@mip6bench.example") == "2001:db8:1::1001"
    assert creds.hoa("mn2@mip6bench.example") is None
    assert creds.psk("nobody") is None
    assert creds.hoa_table() == {"mn1@mip6bench.example": "2001:db8:1::1001"}
    assert "000102" not in repr(list(creds))          # keys stay out of reprs


@pytest.mark.parametrize("text, message", [
    ("a@b 0001", "has 2 bytes"),
    ("a@b zz0102030405060708090a0b0c0d0e0f", "not hexadecimal"),
    ("a@b " + "00" * 16 + " 2001:db8::1 extra", "4 fields"),
    ("a@b", "1 fields"),
    ("a@b " + "00" * 16 + "\na@b " + "11" * 16, "given twice"),
    ("a@b " + "00" * 16 + " 2001:db8::1\nc@d " + "11" * 16 + " 2001:db8::1", "already belongs"),
    ("a@b " + "00" * 16 + " ff02::1", "not a unicast"),
    ("a@b " + "00" * 16 + " 10.0.0.1", "not an IPv6 address"),
])
def test_errors_name_the_line(text, message):
    with pytest.raises(ParameterError, match=message) as err:
        parse_credentials(text, "creds.txt")
    assert "creds.txt:" in str(err.value)


def test_file_round_trip_and_hostapd_format(tmp_path):
    entries = [Credential("mn1@x", bytes(range(16)), "2001:db8:1::5"),
               Credential("mn2@x", bytes(16))]
    path = tmp_path / "c.txt"
    path.write_text(format_credentials(entries))
    creds = load_credentials(path)
    assert list(creds) == entries
    assert hostapd_eap_user(creds) == ('"mn1@x"\tPSK\t000102030405060708090a0b0c0d0e0f\n'
                                       '"mn2@x"\tPSK\t00000000000000000000000000000000\n')
    with pytest.raises(ParameterError):
        hostapd_eap_user([Credential('a"b', bytes(16))])
    with pytest.raises(ParameterError, match="cannot read"):
        load_credentials(tmp_path / "missing")
