"""Protocol numbers, status codes and timer constants of Mobile IPv6.

Sources: RFC 6275 (sections 6, 12 and 13), RFC 4283 (MN-ID option), RFC 4285
(authentication, replay protection and their BA status codes, as registered by IANA
in the "Mobile IPv6 parameters" registry). Everything here is plain data.
"""
from __future__ import annotations

from enum import IntEnum

# IPv6 next-header values (RFC 8200; mip6bench.ipv6 defines them), the Home Address
# option (RFC 6275 6.3) and the routing header type that carries it back (6.4).
from mip6bench.ipv6 import (HOME_ADDRESS_OPTION_TYPE, IPPROTO_DSTOPTS,  # noqa: F401
                            IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_IPV6, IPPROTO_NONE,
                            IPPROTO_ROUTING, ROUTING_TYPE_2)

IPPROTO_MH = 135               # RFC 6275 6.1


class MHType(IntEnum):
    """Mobility Header message types (RFC 6275 6.1)."""

    BINDING_REFRESH_REQUEST = 0
    HOME_TEST_INIT = 1
    CARE_OF_TEST_INIT = 2
    HOME_TEST = 3
    CARE_OF_TEST = 4
    BINDING_UPDATE = 5
    BINDING_ACK = 6
    BINDING_ERROR = 7


class OptionType(IntEnum):
    """Mobility options (RFC 6275 6.2, RFC 4283, RFC 4285)."""

    PAD1 = 0
    PADN = 1
    BINDING_REFRESH_ADVICE = 2
    ALTERNATE_CARE_OF_ADDRESS = 3
    NONCE_INDICES = 4
    BINDING_AUTHORIZATION_DATA = 5
    MOBILE_NODE_IDENTIFIER = 8
    AUTHENTICATION = 9
    REPLAY_PROTECTION = 10


# RFC 4283 section 3: the only defined MN-ID subtype.
MN_ID_SUBTYPE_NAI = 1
# RFC 4285 section 5: authentication option subtypes.
AUTH_SUBTYPE_MN_HA = 1
AUTH_SUBTYPE_MN_AAA = 2


class BAStatus(IntEnum):
    """Binding Acknowledgement status codes (RFC 6275 6.1.8, RFC 4285 section 11)."""

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MN = 133
    DAD_FAILED = 134
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CARE_OF_NONCE_INDEX = 137
    EXPIRED_NONCES = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MIPV6_ID_MISMATCH = 144
    MIPV6_MESG_ID_REQD = 145
    MIPV6_AUTH_FAIL = 146

    @property
    def accepted(self) -> bool:
        return self < 128


def ba_status_accepted(status: int) -> bool:
    """Values below 128 mean the Binding Update was accepted (RFC 6275 6.1.8)."""
    return status < 128


def ba_status_name(status: int) -> str:
    try:
        return BAStatus(status).name.lower()
    except ValueError:
        return f"status_{status}"


class BEStatus(IntEnum):
    """Binding Error status codes (RFC 6275 6.1.9)."""

    UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION = 1
    UNRECOGNIZED_MH_TYPE = 2


# Timers and limits, RFC 6275 sections 12 and 13 (seconds).
INITIAL_BINDACK_TIMEOUT = 1.0
INITIAL_BINDACK_TIMEOUT_FIRST_REG = 1.5
MAX_BINDACK_TIMEOUT = 32.0
MAX_NONCE_LIFETIME = 240.0
MAX_TOKEN_LIFETIME = 210.0
MAX_RR_BINDING_LIFETIME = 420.0
# RFC 6275 9.2 / 9.3.3: Binding Errors are rate limited; one per second per peer.
BINDING_ERROR_MIN_INTERVAL = 1.0
# RFC 4285 section 6: the "close enough" replay window, default 7 s.
DEFAULT_REPLAY_WINDOW = 7.0

# Lifetimes travel in 4-second units in a 16-bit field (RFC 6275 6.1.7).
LIFETIME_UNIT = 4
MAX_WIRE_LIFETIME = 0xFFFF * LIFETIME_UNIT
