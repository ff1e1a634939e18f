"""AES-CMAC, EAX and EAP-PSK key derivation against published vectors."""
from __future__ import annotations

import struct

import pytest

from mip6bench.eap.aes_cmac import aes128_encrypt_block, aes_cmac, aes_cmac_matches, omac_tweaked
from mip6bench.eap.aes_eax import EaxAuthenticationError, eax_open, eax_seal
from mip6bench.eap.psk_crypto import (
    InvalidPskError,
    channel_nonce,
    check_psk,
    compute_mac_p,
    compute_mac_s,
    derive_session_keys,
    key_setup,
    open_channel,
    psk_from_hex,
    seal_channel,
)
from mip6bench.errors import ParameterError

# --- RFC 4493 section 4 -----------------------------------------------------

RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710")


@pytest.mark.parametrize("length, tag", [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_aes_cmac_rfc4493_examples(length, tag):
    assert aes_cmac(RFC4493_KEY, RFC4493_MESSAGE[:length]).hex() == tag
    assert aes_cmac_matches(RFC4493_KEY, RFC4493_MESSAGE[:length], bytes.fromhex(tag))


def test_aes_block_rfc4493_subkey_generation_input():
    # RFC 4493 section 4, "Subkey Generation": AES-128(key, 0).
    assert aes128_encrypt_block(RFC4493_KEY, bytes(16)).hex() == "7df76b0c1ab899b33e42f047b91b546f"


def test_aes_cmac_rejects_wrong_tags_and_keys():
    assert not aes_cmac_matches(RFC4493_KEY, b"abc", bytes(16))
    with pytest.raises(ValueError):
        aes_cmac(bytes(32), b"AES-256 is not EAP-PSK")
    with pytest.raises(ValueError):
        aes128_encrypt_block(RFC4493_KEY, bytes(15))


def test_omac_tweak_is_cmac_of_the_tweak_block_then_the_message():
    assert omac_tweaked(RFC4493_KEY, 2, b"xyz") == aes_cmac(RFC4493_KEY, bytes(15) + b"\x02xyz")


# --- EAX paper (Bellare, Rogaway, Wagner), appendix test vectors ------------
# (msg, key, nonce, header, cipher) where cipher = ciphertext || 16-byte tag.
EAX_VECTORS = [
    ("", "233952DEE4D5ED5F9B9C6D6FF80FF478", "62EC67F9C3A4A407FCB2A8C49031A8B3",
     "6BFB914FD07EAE6B", "E037830E8389F27B025A2D6527E79D01"),
    ("F7FB", "91945D3F4DCBEE0BF45EF52255F095A4", "BECAF043B0A23D843194BA972C66DEBD",
     "FA3BFD4806EB53FA", "19DD5C4C9331049D0BDAB0277408F67967E5"),
    ("1A47CB4933", "01F74AD64077F2E704C0F60ADA3DD523", "70C3DB4F0D26368400A10ED05D2BFF5E",
     "234A3463C1264AC6", "D851D5BAE03A59F238A23E39199DC9266626C40F80"),
    ("481C9E39B1", "D07CF6CBB7F313BDDE66B727AFD3C5E8", "8408DFFF3C1A2B1292DC199E46B7D617",
     "33CCE2EABFF5A79D", "632A9D131AD4C168A4225D8E1FF755939974A7BEDE"),
    ("40D0C07DA5E4", "35B6D0580005BBC12B0587124557D2C2", "FDB6B06676EEDC5C61D74276E1F8E816",
     "AEB96EAEBE2970E9", "071DFE16C675CB0677E536F73AFE6A14B74EE49844DD"),
    ("4DE3B35C3FC039245BD1FB7D", "BD8E6E11475E60B268784C38C62FEB22",
     "6EAC5C93072D8E8513F750935E46DA1B", "D4482D1CA78DCE0F",
     "835BB4F15D743E350E728414ABB8644FD6CCB86947C5E10590210A4F"),
    ("8B0A79306C9CE7ED99DAE4F87F8DD61636", "7C77D6E813BED5AC98BAA417477A2E7D",
     "1A8C98DCD73D38393B2BF1569DEEFC19", "65D2017990D62528",
     "02083E3979DA014812F59F11D52630DA30137327D10649B0AA6E1C181DB617D7F2"),
    ("1BDA122BCE8A8DBAF1877D962B8592DD2D56", "5FFF20CAFAB119CA2FC73549E20F5B0D",
     "DDE59B97D722156D4D9AFF2BC7559826", "54B9F04E6A09189A",
     "2EC47B2C4954A489AFC7BA4897EDCDAE8CC33B60450599BD02C96382902AEF7F832A"),
    ("6CF36720872B8513F6EAB1A8A44438D5EF11", "A4A4782BCFFD3EC5E7EF6D8C34A56123",
     "B781FCF2F75FA5A8DE97A9CA48E522EC", "899A175897561D7E",
     "0DE18FD0FDD91E7AF19F1D8EE8733938B1E8E7F6D2231618102FDB7FE55FF1991700"),
    ("CA40D7446E545FFAED3BD12A740A659FFBBB3CEAB7", "8395FCF1E95BEBD697BD010BC766AAC3",
     "22E7ADD93CFC6393C57EC0B3C17D6B44", "126735FCC320D25A",
     "CB8920F87A6C75CFF39627B56E3ED197C552D295A7CFC46AFC253B4652B1AF3795B124AB6E"),
]


@pytest.mark.parametrize("msg, key, nonce, header, cipher", EAX_VECTORS)
def test_eax_paper_vectors(msg, key, nonce, header, cipher):
    msg, key, nonce, header, cipher = map(bytes.fromhex, (msg, key, nonce, header, cipher))
    ciphertext, tag = eax_seal(key, nonce, header, msg)
    assert ciphertext + tag == cipher
    assert eax_open(key, nonce, header, cipher[:-16], cipher[-16:]) == msg


@pytest.mark.parametrize("field", ["key", "nonce", "header", "ciphertext", "tag"])
def test_eax_open_rejects_any_change(field):
    msg, key, nonce, header, cipher = map(bytes.fromhex, EAX_VECTORS[9])
    parts = {"key": key, "nonce": nonce, "header": header,
             "ciphertext": cipher[:-16], "tag": cipher[-16:]}
    value = bytearray(parts[field])
    value[0] ^= 0x01
    parts[field] = bytes(value)
    with pytest.raises(EaxAuthenticationError):
        eax_open(parts["key"], parts["nonce"], parts["header"], parts["ciphertext"], parts["tag"])


def test_eax_counter_wraps_around_2_to_the_128():
    # EAX's counter is N' + i mod 2^128 over the whole block: after ff..ff comes 00..00.
    from mip6bench.eap.aes_eax import _ctr
    key = bytes(range(16))
    keystream = _ctr(key, b"\xff" * 16, bytes(32))
    assert keystream == (aes128_encrypt_block(key, b"\xff" * 16)
                         + aes128_encrypt_block(key, bytes(16)))


# --- EAP-PSK (RFC 4764 section 3) -------------------------------------------

def test_key_setup_follows_figure_3():
    psk = bytes(range(16))
    zero = aes128_encrypt_block(psk, bytes(16))
    c1 = zero[:15] + bytes([zero[15] ^ 1])
    c2 = zero[:15] + bytes([zero[15] ^ 2])
    assert key_setup(psk) == (aes128_encrypt_block(psk, c1), aes128_encrypt_block(psk, c2))


def test_session_keys_follow_figure_7():
    kdk, rand_p = bytes(range(16)), bytes(range(16, 32))
    seed = aes128_encrypt_block(kdk, rand_p)
    blocks = [aes128_encrypt_block(kdk, seed[:15] + bytes([seed[15] ^ i])) for i in range(1, 10)]
    keys = derive_session_keys(kdk, rand_p)
    assert keys.tek == blocks[0]
    assert keys.msk == b"".join(blocks[1:5]) and len(keys.msk) == 64
    assert keys.emsk == b"".join(blocks[5:9]) and len(keys.emsk) == 64


# RFC 4764 publishes no vectors. These known answers were computed with hostap's
# independent implementation and published in FreeRADIUS' eap_psk_tests.c
# (PSK 00..0f, RAND_S 10..1f, RAND_P 20..2f, ID_S "FreeRADIUS",
# ID_P "bob@example.com"); the hostapd interop test checks the same keys live.
KAT_PSK = bytes(range(16))
KAT_RAND_S = bytes(range(0x10, 0x20))
KAT_RAND_P = bytes(range(0x20, 0x30))
KAT = {
    "ak": "18b62d2c84c5e4571afc41a29db71f4d",
    "kdk": "97b704350085028363924612565b9b0d",
    "tek": "96a00b888b1f6b2f8e201ee96a2277f6",
    "msk": "e282c7c32f4a3b28f18d75860fa2671c46d071e2f7e509ce2e98ae9ae3349977"
           "05f927d184ead271f9bcb1b7a1f92230bf0dc90d946117aae0d784b8355957d5",
    "emsk": "d20b6b7556339200f04e6530eb7d3c61a7810b5ca93f4c0ba89ea5eedf634a69"
            "792920a6caea9d8e7b112d6383dd8588b68b74f6e7c2f8d51ace97067117ac92",
    "mac_p": "97b0ede689a3e4553d8b302258d19512",
    "mac_s": "25a1d646879eef187d1cc1ff177e266d",
}


def test_eap_psk_known_answers_from_hostap():
    ak, kdk = key_setup(KAT_PSK)
    assert (ak.hex(), kdk.hex()) == (KAT["ak"], KAT["kdk"])
    keys = derive_session_keys(kdk, KAT_RAND_P)
    assert (keys.tek.hex(), keys.msk.hex(), keys.emsk.hex()) == (KAT["tek"], KAT["msk"], KAT["emsk"])
    assert compute_mac_p(ak, b"bob@example.com", b"FreeRADIUS", KAT_RAND_S,
                         KAT_RAND_P).hex() == KAT["mac_p"]
    assert compute_mac_s(ak, b"FreeRADIUS", KAT_RAND_P).hex() == KAT["mac_s"]


@pytest.mark.parametrize("code, length, flags, nonce, cipher, tag", [
    # Third message: Request, Identifier 2, Length 59, T=2, nonce 0, R=DONE_SUCCESS.
    (1, 59, 0x80, 0, "8f", "47d644265cae5a689a40a47ac54ddf80"),
    # Fourth message: Response, Identifier 2, Length 43, T=3, nonce 1, R=DONE_SUCCESS.
    (2, 43, 0xC0, 1, "cc", "7a7a71527b1f047a77fbf0efa673f754"),
])
def test_protected_channel_known_answers_from_hostap(code, length, flags, nonce, cipher, tag):
    tek = bytes.fromhex(KAT["tek"])
    header = struct.pack("!BBHBB", code, 2, length, 47, flags) + KAT_RAND_S
    assert seal_channel(tek, header, nonce, b"\x80") == (bytes.fromhex(tag), bytes.fromhex(cipher))
    assert open_channel(tek, header, nonce, bytes.fromhex(tag), bytes.fromhex(cipher)) == b"\x80"
    with pytest.raises(EaxAuthenticationError):
        open_channel(tek, header, nonce + 1, bytes.fromhex(tag), bytes.fromhex(cipher))


def test_channel_nonce_is_padded_with_96_zero_bits():
    assert channel_nonce(0x01020304) == bytes(12) + b"\x01\x02\x03\x04"
    with pytest.raises(ValueError):
        channel_nonce(2**32)


@pytest.mark.parametrize("bad", [b"", bytes(15), bytes(17), bytes(32)])
def test_psk_must_be_exactly_16_bytes(bad):
    with pytest.raises(InvalidPskError, match="exactly 16 bytes") as info:
        check_psk(bad)
    assert isinstance(info.value, ParameterError) and info.value.fix


def test_psk_given_as_text_is_refused_with_the_fix():
    with pytest.raises(InvalidPskError, match="must be bytes") as info:
        check_psk("000102030405060708090a0b0c0d0e0f")
    assert "psk_from_hex" in str(info.value)


def test_psk_from_hex():
    assert psk_from_hex("00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f") == bytes(range(16))
    with pytest.raises(InvalidPskError, match="not hexadecimal"):
        psk_from_hex("not a key")
    with pytest.raises(InvalidPskError, match="exactly 16 bytes"):
        psk_from_hex("0011")
