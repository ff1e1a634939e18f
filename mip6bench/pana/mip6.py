"""Mobile IPv6 bootstrapping extension to PANA (seed paper, section 2.2).

The extension AVPs are vendor-specific PANA AVPs (V flag set) with Vendor-Id 32473, the
IANA enterprise number reserved for documentation (RFC 5612). A PANA peer that does not
implement them ignores them (PANA has no M bit), so an extended PaC still authenticates
against a plain PAA and falls back to static Mobile IPv6 configuration.

All values are network byte order; reserved bytes are sent as zero and rejected if not.

Code 1  MIP6-Bootstrap-Request   PaC -> PAA, in PCI and in the PAN with the S flag.
        value: flags(32)
        0x1 HA information, 0x2 Home Address, 0x4 MIPv6 SA, 0x8 NSIS authorization token.
        The copy in the first PAN is authoritative: that message is I_PAN, which is bound
        into PANA_AUTH_KEY, so the request is integrity protected after the fact.

Code 2  MIP6-Agent-Info          PAA -> PaC, final PAR (C flag). Shaped after RFC 5447's
        MIP6-Agent-Info with MIP6-Home-Link-Prefix.
        value: HA address(128) | prefix length(8) | reserved(24) | home link prefix(128)

Code 3  MIP6-Home-Address        PAA -> PaC, final PAR. The assigned Home Address
        (HoA AVP of the paper) and the length of its on-link prefix.
        value: prefix length(8) | reserved(24) | home address(128)

Code 4  MIP6-SA                  Shaped after RFC 5778's MIP-MN-HA-MSA without the key.
        value: SPI(32) | algorithm(16) | replay mode(16) | lifetime seconds(32)
        algorithm: 2 hmac-sha1-96 (RFC 4004 MIP-Algorithm-Type value, RFC 4285 usage),
                   3 hmac-sha256 (this testbed's code point)
        replay mode: 1 "sequence", 2 "timestamp" (RFC 4004 MIP-Replay-Mode values: 1 is
                     None there, i.e. no timestamp and only the Binding Update sequence
                     number, which mip6bench.mipv6.sa calls "sequence")
        In the first PAN it is the PaC's proposal: SPI 0, wanted algorithm/replay mode
        (0 = no preference), wanted lifetime (0 = no preference). In the final PAR it is
        the PAA's decision: the PAA allocates the SPI (unique among live SAs), takes the
        proposed algorithm and replay mode if its policy allows them, and the lifetime
        min(proposed or default, policy maximum, session lifetime).

Code 5  NSIS-Authorization-Token PAA -> PaC, final PAR. Opaque bytes minted by the PAA
        policy (`mint_token(nai, hoa, now)`); the NATFW component defines the format.

Code 6  MIP6-Key-Derivation      PAA -> PaC, final PAR, with every MIP6-SA decision.
        value: kdf(32): 1 MSK (prf+ label below), 2 EMSK (RFC 5295 USRK). Absent: 1.

Integrity: the PAA sends codes 2-6 only in a final PAR that carries the AUTH AVP, and the
PaC accepts them only from an AUTH-verified final PAR, so they are protected by the
PANA SA. No key travels: both ends derive the MN-HA key from the EAP method's keys.

Key separation. PANA_AUTH_KEY is prf+(MSK, "IETF PANA" | ...) (RFC 5191 5.3); the MSK is
the authenticator's key (RFC 5247), so the MN-HA key comes from the EMSK whenever the PAA
has it, as a Usage-Specific Root Key of RFC 5295 (section 3, its default KDF: IKEv2's
prf+ with HMAC-SHA-256):

    MN-HA key = prf+_SHA256(EMSK, USRK_LABEL | 0x00 | SPI(32) | PaC_nonce | PAA_nonce
                                  | length(16))                               (kdf 2)

USRK_LABEL = "mip6-mn-ha@mip6bench.example" (this testbed's label, not IANA-registered).
Whoever holds the MSK or PANA_AUTH_KEY cannot compute this key, and the HA, which learns
only the MN-HA key, learns nothing about the MSK or the PANA keys. The EMSK never leaves
the EAP server (RFC 5295 section 3): with the embedded AAA (EAP server in the PAA's
process) the PAA has it; with a RADIUS server (hostapd) it does not, since RADIUS
delivers only the MSK (MS-MPPE-Recv/Send-Key). Then, and only then, the key comes from
the MSK under a label of its own, separate from PANA's "IETF PANA" (RFC 5191's prf+
with the session's PRF):

    MN-HA key = prf+(MSK, "mip6bench MIP6 MN-HA" | SPI(32) | PaC_nonce | PAA_nonce)  (kdf 1)

The PAA says which in code 6 (AUTH-protected); the PaC derives accordingly (the EAP peer
always has the EMSK). Either way the key is truncated to the algorithm's key length (20
bytes for hmac-sha1-96, 32 for hmac-sha256). Re-authentication brings a new MSK/EMSK and
new nonces, and the PAA allocates a new SPI: every re-authentication re-keys the SA.
"""
from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping

from ..codec import DecodeError
from ..ipaddr import packed6, text6
from .crypto import PRF_HMAC_SHA2_256, prf_plus
from .message import Avp, Message

VENDOR_ID = 32473  # RFC 5612 documentation enterprise number

AVP_MIP6_BOOTSTRAP_REQUEST = 1
AVP_MIP6_AGENT_INFO = 2
AVP_MIP6_HOME_ADDRESS = 3
AVP_MIP6_SA = 4
AVP_NSIS_AUTH_TOKEN = 5
AVP_MIP6_KEY_DERIVATION = 6

REQUEST_HA_INFO = 0x1
REQUEST_HOME_ADDRESS = 0x2
REQUEST_MIP6_SA = 0x4
REQUEST_NSIS_TOKEN = 0x8
REQUEST_ALL = REQUEST_HA_INFO | REQUEST_HOME_ADDRESS | REQUEST_MIP6_SA | REQUEST_NSIS_TOKEN
_REQUEST_NAMES = {REQUEST_HA_INFO: "ha_info", REQUEST_HOME_ADDRESS: "home_address",
                  REQUEST_MIP6_SA: "mip6_sa", REQUEST_NSIS_TOKEN: "nsis_token"}

ALG_HMAC_SHA1_96 = 2
ALG_HMAC_SHA256 = 3
SA_ALGORITHMS = {ALG_HMAC_SHA1_96: ("hmac-sha1-96", 20), ALG_HMAC_SHA256: ("hmac-sha256", 32)}
REPLAY_SEQUENCE = 1   # RFC 4004 "None": BU sequence numbers only
REPLAY_TIMESTAMP = 2
REPLAY_MODES = {REPLAY_SEQUENCE: "sequence", REPLAY_TIMESTAMP: "timestamp"}

SPI_MIN = 256  # RFC 4285 5.1: SPI values 0-255 are reserved
SPI_MAX = 0xFFFFFFFF
MAX_TOKEN_LEN = 4096
MN_HA_LABEL = b"mip6bench MIP6 MN-HA"
USRK_LABEL = b"mip6-mn-ha@mip6bench.example"
KDF_MSK, KDF_EMSK = 1, 2
KDF_NAMES = {KDF_MSK: "msk", KDF_EMSK: "emsk"}


def request_names(flags: int) -> tuple[str, ...]:
    return tuple(name for bit, name in _REQUEST_NAMES.items() if flags & bit)


def _ipv6(value: bytes) -> str:
    return text6(value)


def _packed(address: str) -> bytes:
    return packed6(address)


@dataclass(frozen=True)
class AgentInfo:
    ha_address: str
    home_prefix: str      # the prefix address, e.g. "2001:db8:1::"
    prefix_len: int

    def to_avp(self) -> Avp:
        value = _packed(self.ha_address) + struct.pack("!B3x", self.prefix_len) + \
            _packed(self.home_prefix)
        return Avp(AVP_MIP6_AGENT_INFO, value, VENDOR_ID)

    @classmethod
    def from_value(cls, value: bytes) -> "AgentInfo":
        if len(value) != 36:
            raise DecodeError(f"MIP6-Agent-Info of {len(value)} bytes, expected 36")
        if any(value[17:20]):
            raise DecodeError("MIP6-Agent-Info reserved bytes not zero")
        prefix_len = value[16]
        if prefix_len > 128:
            raise DecodeError(f"home prefix length {prefix_len} > 128")
        return cls(_ipv6(value[:16]), _ipv6(value[20:]), prefix_len)


@dataclass(frozen=True)
class HomeAddress:
    address: str
    prefix_len: int

    def to_avp(self) -> Avp:
        return Avp(AVP_MIP6_HOME_ADDRESS,
                   struct.pack("!B3x", self.prefix_len) + _packed(self.address), VENDOR_ID)

    @classmethod
    def from_value(cls, value: bytes) -> "HomeAddress":
        if len(value) != 20:
            raise DecodeError(f"MIP6-Home-Address of {len(value)} bytes, expected 20")
        if any(value[1:4]):
            raise DecodeError("MIP6-Home-Address reserved bytes not zero")
        if value[0] > 128:
            raise DecodeError(f"home address prefix length {value[0]} > 128")
        return cls(_ipv6(value[4:]), value[0])


@dataclass(frozen=True)
class SaParameters:
    """MIP6-SA value: a proposal (PaC) or the decision (PAA)."""

    spi: int = 0
    algorithm: int = 0
    replay: int = 0
    lifetime: int = 0

    def to_avp(self) -> Avp:
        return Avp(AVP_MIP6_SA, struct.pack("!IHHI", self.spi, self.algorithm, self.replay,
                                            self.lifetime), VENDOR_ID)

    @classmethod
    def from_value(cls, value: bytes) -> "SaParameters":
        if len(value) != 12:
            raise DecodeError(f"MIP6-SA of {len(value)} bytes, expected 12")
        return cls(*struct.unpack("!IHHI", value))

    def check_decision(self) -> None:
        """Raise DecodeError unless this is a usable SA chosen by a PAA."""
        if not SPI_MIN <= self.spi <= SPI_MAX:
            raise DecodeError(f"MIP6-SA SPI {self.spi} is reserved")
        if self.algorithm not in SA_ALGORITHMS:
            raise DecodeError(f"MIP6-SA algorithm {self.algorithm} unknown")
        if self.replay not in REPLAY_MODES:
            raise DecodeError(f"MIP6-SA replay mode {self.replay} unknown")
        if self.lifetime == 0:
            raise DecodeError("MIP6-SA lifetime 0")

    @property
    def algorithm_name(self) -> str:
        return SA_ALGORITHMS[self.algorithm][0]

    @property
    def replay_name(self) -> str:
        return REPLAY_MODES[self.replay]


def bootstrap_request_avp(flags: int) -> Avp:
    return Avp.u32(AVP_MIP6_BOOTSTRAP_REQUEST, flags, VENDOR_ID)


def nsis_token_avp(token: bytes) -> Avp:
    if not 0 < len(token) <= MAX_TOKEN_LEN:
        raise ValueError("NSIS token must be 1..4096 bytes")
    return Avp(AVP_NSIS_AUTH_TOKEN, token, VENDOR_ID)


def bootstrap_request(msg: Message) -> int | None:
    avp = msg.find(AVP_MIP6_BOOTSTRAP_REQUEST, VENDOR_ID)
    return None if avp is None else avp.as_u32


def sa_proposal(msg: Message) -> SaParameters | None:
    avp = msg.find(AVP_MIP6_SA, VENDOR_ID)
    return None if avp is None else SaParameters.from_value(avp.value)


@dataclass(frozen=True)
class Mip6Grant:
    """What a PaC extracted from an AUTH-verified final PAR; None where absent or invalid."""

    agent: AgentInfo | None
    home_address: HomeAddress | None
    sa: SaParameters | None
    token: bytes | None
    problems: tuple[str, ...] = ()
    kdf: int = KDF_MSK

    def missing(self, requested: int) -> tuple[str, ...]:
        have = {REQUEST_HA_INFO: self.agent, REQUEST_HOME_ADDRESS: self.home_address,
                REQUEST_MIP6_SA: self.sa, REQUEST_NSIS_TOKEN: self.token}
        return tuple(_REQUEST_NAMES[bit] for bit, value in have.items()
                     if requested & bit and value is None)


def parse_grant(msg: Message) -> Mip6Grant:
    """Extract the extension AVPs of a final PAR; malformed ones count as absent."""
    problems = []

    def typed(code, parse):
        avp = msg.find(code, VENDOR_ID)
        if avp is None:
            return None
        try:
            return parse(avp.value)
        except DecodeError as err:
            problems.append(err.reason)
            return None

    def decision(value):
        sa = SaParameters.from_value(value)
        sa.check_decision()
        return sa

    def token(value):
        if not 0 < len(value) <= MAX_TOKEN_LEN:
            raise DecodeError(f"NSIS token of {len(value)} bytes")
        return value

    def kdf(value):
        if len(value) != 4 or int.from_bytes(value, "big") not in KDF_NAMES:
            raise DecodeError(f"MIP6-Key-Derivation {value.hex()} unknown")
        return int.from_bytes(value, "big")

    sa = typed(AVP_MIP6_SA, decision)
    derivation = typed(AVP_MIP6_KEY_DERIVATION, kdf)
    if derivation is None and msg.find(AVP_MIP6_KEY_DERIVATION, VENDOR_ID) is not None:
        sa = None   # an SA whose key cannot be derived is no SA
    return Mip6Grant(typed(AVP_MIP6_AGENT_INFO, AgentInfo.from_value),
                     typed(AVP_MIP6_HOME_ADDRESS, HomeAddress.from_value),
                     sa, typed(AVP_NSIS_AUTH_TOKEN, token),
                     tuple(problems), derivation or KDF_MSK)


def key_derivation_avp(kdf: int) -> Avp:
    return Avp.u32(AVP_MIP6_KEY_DERIVATION, kdf, VENDOR_ID)


def mn_ha_key(prf_alg: int, msk: bytes, spi: int, pac_nonce: bytes, paa_nonce: bytes,
              algorithm: int) -> bytes:
    """The MN-HA key from the MSK (kdf 1: only where the EMSK is out of reach)."""
    key_len = SA_ALGORITHMS[algorithm][1]
    seed = MN_HA_LABEL + struct.pack("!I", spi) + pac_nonce + paa_nonce
    return prf_plus(prf_alg, msk, seed, key_len)


def mn_ha_key_from_emsk(emsk: bytes, spi: int, pac_nonce: bytes, paa_nonce: bytes,
                        algorithm: int) -> bytes:
    """The MN-HA key as an RFC 5295 USRK of the EMSK (kdf 2, see module docstring)."""
    key_len = SA_ALGORITHMS[algorithm][1]
    optional = struct.pack("!I", spi) + pac_nonce + paa_nonce
    seed = USRK_LABEL + b"\0" + optional + struct.pack("!H", key_len)
    return prf_plus(PRF_HMAC_SHA2_256, emsk, seed, key_len)


def derive_mn_ha_key(kdf: int, prf_alg: int, msk: bytes | None, emsk: bytes | None, spi: int,
                     pac_nonce: bytes, paa_nonce: bytes, algorithm: int) -> bytes | None:
    """The key for `kdf` (KDF_MSK or KDF_EMSK), or None without the root key it needs."""
    if kdf == KDF_EMSK:
        return mn_ha_key_from_emsk(emsk, spi, pac_nonce, paa_nonce, algorithm) if emsk else None
    return mn_ha_key(prf_alg, msk, spi, pac_nonce, paa_nonce, algorithm) if msk else None


# ---- PAA policy hooks -------------------------------------------------------------------

HoaAssigner = Callable[[str, frozenset, random.Random], "str | None"]
SpiAllocator = Callable[[frozenset, random.Random], int]
TokenMinter = Callable[[str, str, float], bytes]


def table_or_random_hoa(home_prefix: str, table: Mapping[str, str] | None = None,
                        attempts: int = 64) -> HoaAssigner:
    """HoA policy: the user's entry in `table` (NAI -> HoA), else a random address from
    `home_prefix` that no live session holds (and that is no table entry). Returns None
    when the user's fixed HoA is taken or no free random address was found."""
    network = ipaddress.IPv6Network(home_prefix)
    table = dict(table or {})
    reserved = {str(ipaddress.IPv6Address(a)) for a in table.values()}
    host_bits = 128 - network.prefixlen
    base = int(network.network_address)

    def assign(nai: str, live: frozenset, rng: random.Random) -> str | None:
        if nai in table:
            hoa = str(ipaddress.IPv6Address(table[nai]))
            return None if hoa in live else hoa
        if host_bits < 2:
            return None
        for _ in range(attempts):
            # Interface id 0 is the subnet-router anycast address (RFC 4291 2.6.1).
            iid = rng.randrange(1, 1 << host_bits)
            hoa = text6((base + iid).to_bytes(16, "big"))   # the compressed text
            if hoa not in live and hoa not in reserved:
                return hoa
        return None

    return assign


def random_unique_spi(live: frozenset, rng: random.Random) -> int:
    """SPI policy: random in SPI_MIN..SPI_MAX, unique among live SAs."""
    while True:
        spi = rng.randint(SPI_MIN, SPI_MAX)
        if spi not in live:
            return spi


@dataclass(frozen=True)
class Mip6Policy:
    """PAA-side configuration of the extension. Hooks are plain callables."""

    ha_address: str
    home_prefix: str                     # "2001:db8:1::/64"
    assign_hoa: HoaAssigner | None = None  # default: table_or_random_hoa(home_prefix)
    allocate_spi: SpiAllocator = random_unique_spi
    mint_token: TokenMinter | None = None  # None: no NSIS token offered
    algorithms: tuple[int, ...] = (ALG_HMAC_SHA1_96, ALG_HMAC_SHA256)  # preference order
    replay_modes: tuple[int, ...] = (REPLAY_TIMESTAMP, REPLAY_SEQUENCE)
    default_lifetime: int = 3600
    max_lifetime: int = 86400

    @cached_property
    def network(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(self.home_prefix)

    @cached_property
    def agent_info_avp(self) -> Avp:
        """MIP6-Agent-Info: the HA and the home prefix, the same in every grant."""
        network = self.network
        return AgentInfo(self.ha_address, str(network.network_address),
                         network.prefixlen).to_avp()

    def hoa_assigner(self) -> HoaAssigner:
        return self.assign_hoa or table_or_random_hoa(self.home_prefix)

    def choose_sa(self, proposal: SaParameters | None, spi: int, session_lifetime: int
                  ) -> SaParameters:
        """Negotiate algorithm, replay mode and lifetime against a PaC proposal."""
        proposal = proposal or SaParameters()
        algorithm = proposal.algorithm if proposal.algorithm in self.algorithms \
            else self.algorithms[0]
        replay = proposal.replay if proposal.replay in self.replay_modes \
            else self.replay_modes[0]
        wanted = proposal.lifetime or self.default_lifetime
        lifetime = max(1, min(wanted, self.max_lifetime, session_lifetime or wanted))
        return SaParameters(spi, algorithm, replay, lifetime)
