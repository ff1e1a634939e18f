"""The AAA credentials file: who may authenticate, with which EAP-PSK key, and (optionally)
which fixed Home Address the user gets.

One user per line, fields separated by white space, `#` starts a comment::

    # NAI                      PSK (16 bytes, 32 hex digits)      [Home Address]
    mn1@mip6bench.example      000102030405060708090a0b0c0d0e0f   2001:db8:1::1001
    mn2@mip6bench.example      f0e1d2c3b4a5968778695a4b3c2d1e0f

    creds = load_credentials(path)            # or parse_credentials(text)
    creds.psk("mn1@mip6bench.example")        # bytes, or None for an unknown NAI
    creds.hoa("mn1@mip6bench.example")        # "2001:db8:1::1001" or None
    creds.hoa_table()                         # {nai: hoa} for the PAA's HoA policy
    hostapd_eap_user(creds)                   # hostapd's eap_user_file for the same users
    format_credentials(entries)               # the file text, e.g. for a generated run

Pre-shared keys between agents (the firewall-PAA authorization key) live in files of
their own: secret_dir(parent) (mode 0700), write_psk_file(path, psk) (0600 from its
creation), read_psk_file(path) (refuses a file others may read); both build on
mip6bench.secretfiles, which every writer of a secret uses.

Every mistake is a ParameterError naming the file and line: a PSK that is not exactly
16 bytes of hex (RFC 4764 2.1.1), an empty or over-long NAI (EAP-PSK ID_P is at most
966 bytes), a NAI or HoA given twice, a HoA that is not a unicast IPv6 address, extra
fields. Nothing is loaded from a file with an error.
"""
from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from mip6bench.errors import ParameterError
from mip6bench.secretfiles import private_dir, write_secret_file

MAX_NAI_LEN = 966


@dataclass(frozen=True)
class Credential:
    nai: str
    psk: bytes
    hoa: str | None = None

    def __repr__(self) -> str:  # keep keys out of logs
        return f"Credential(nai={self.nai!r}, psk=<16 bytes>, hoa={self.hoa!r})"


class Credentials:
    """Users by NAI (read-only once built)."""

    def __init__(self, entries: Iterable[Credential] = ()):
        self._by_nai: dict[str, Credential] = {}
        for entry in entries:
            if entry.nai in self._by_nai:
                raise ParameterError(f"NAI {entry.nai!r} given twice")
            self._by_nai[entry.nai] = entry

    def psk(self, nai: str) -> bytes | None:
        entry = self._by_nai.get(nai)
        return entry.psk if entry else None

    def hoa(self, nai: str) -> str | None:
        entry = self._by_nai.get(nai)
        return entry.hoa if entry else None

    def hoa_table(self) -> dict[str, str]:
        return {e.nai: e.hoa for e in self._by_nai.values() if e.hoa}

    def __contains__(self, nai: object) -> bool:
        return nai in self._by_nai

    def __len__(self) -> int:
        return len(self._by_nai)

    def __iter__(self):
        return iter(list(self._by_nai.values()))


def _check_nai(nai: str, where: str) -> str:
    size = len(nai.encode("utf-8"))
    if not 1 <= size <= MAX_NAI_LEN:
        raise ParameterError(f"{where}: NAI of {size} bytes", f"a NAI is 1..{MAX_NAI_LEN} bytes")
    return nai


def _check_hoa(text: str, where: str) -> str:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ParameterError(f"{where}: {text!r} is not an IPv6 address",
                             "the third field is the user's fixed Home Address") from None
    if address.is_multicast or address.is_unspecified or address.is_loopback \
            or address.is_link_local:
        raise ParameterError(f"{where}: {text} is not a unicast global address",
                             "a Home Address is a unicast address from the home prefix")
    return str(address)


def _psk(text: str, where: str) -> bytes:
    # Read here rather than with mip6bench.eap.psk_from_hex: the PAA reads this file too
    # and should not load the whole EAP package for it.
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ParameterError(f"{where} is not hexadecimal",
                             "an EAP-PSK key is 32 hex digits (16 bytes)") from None
    if len(raw) != 16:
        raise ParameterError(f"{where} has {len(raw)} bytes",
                             "an EAP-PSK key is exactly 16 bytes (RFC 4764 2.1.1)")
    return raw


def parse_credentials(text: str, source: str = "<credentials>") -> Credentials:
    entries: list[Credential] = []
    nais: set[str] = set()
    hoas: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{source}:{lineno}"
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (2, 3):
            raise ParameterError(f"{where}: {len(fields)} fields",
                                 "a line is: NAI PSK-hex [Home-Address]")
        nai = _check_nai(fields[0], where)
        if nai in nais:
            raise ParameterError(f"{where}: NAI {nai!r} given twice")
        psk = _psk(fields[1], f"{where}: PSK of {nai!r}")
        hoa = _check_hoa(fields[2], where) if len(fields) == 3 else None
        if hoa is not None and hoa in hoas:
            raise ParameterError(f"{where}: Home Address {hoa} already belongs to "
                                 f"{hoas[hoa]!r}")
        if hoa is not None:
            hoas[hoa] = nai
        nais.add(nai)
        entries.append(Credential(nai, psk, hoa))
    return Credentials(entries)


def load_credentials(path: str | Path) -> Credentials:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterError(f"cannot read credentials file {path}: {exc.strerror}",
                             "check the path") from None
    except UnicodeDecodeError:
        raise ParameterError(f"credentials file {path} is not UTF-8") from None
    return parse_credentials(text, str(path))


def format_credentials(entries: Iterable[Credential]) -> str:
    lines = ["# NAI  PSK-hex  [Home-Address]   (mip6bench credentials file)"]
    for e in entries:
        lines.append(" ".join([e.nai, e.psk.hex()] + ([e.hoa] if e.hoa else [])))
    return "\n".join(lines) + "\n"


def hostapd_eap_user(creds: Credentials | Iterable[Credential]) -> str:
    """hostapd's eap_user_file for the same users: `"NAI"<TAB>PSK<TAB>hex` (hostapd
    takes an EAP-PSK key as 32 unquoted hex digits). Phase-1 identities are quoted
    strings there; a NAI containing a double quote cannot be written."""
    lines = []
    for e in creds:
        if '"' in e.nai or "\n" in e.nai:
            raise ParameterError(f"NAI {e.nai!r} cannot be written to a hostapd eap_user file")
        lines.append(f'"{e.nai}"\tPSK\t{e.psk.hex()}')
    return "\n".join(lines) + "\n"


def hoa_table(creds: Credentials | None, extra: Mapping[str, str] | None = None
              ) -> dict[str, str]:
    table = creds.hoa_table() if creds is not None else {}
    table.update(extra or {})
    return table


# ---- pre-shared keys in files of their own ------------------------------------------------

def secret_dir(parent: str | Path, name: str = "secrets") -> Path:
    """`parent/name`, created with mode 0700 (and checked: an existing one must be a
    directory of ours that no one else can enter)."""
    return private_dir(Path(parent) / name)


def write_psk_file(path: str | Path, psk: bytes) -> Path:
    """Write `psk` as hex to a new file that is 0600 from its creation (never a moment
    readable by others; an existing file or a symlink there is an error)."""
    if len(psk) < 16:
        raise ValueError("a PSK is at least 16 bytes")
    return write_secret_file(path, psk.hex() + "\n")


def read_psk_file(path: str | Path, minimum: int = 16) -> bytes:
    """The PSK in a file written by write_psk_file (hex, one line). Refused (ParameterError)
    if the file is readable or writable by group or others, or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ParameterError(f"cannot read PSK file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ParameterError(f"PSK file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ParameterError(f"PSK file {path} has mode {st.st_mode & 0o777:04o}",
                                 "a key file must be 0600")
        text = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ParameterError(f"PSK file {path} is not hexadecimal") from None
    if len(raw) < minimum:
        raise ParameterError(f"PSK file {path} holds {len(raw)} bytes",
                             f"a PSK is at least {minimum} bytes")
    return raw
