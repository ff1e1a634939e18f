"""Correspondent node core: return routability responder and route-optimisation bindings.

    cn = CorrespondentNode("2001:db8:3::10")
    actions = cn.receive(mh_bytes, src, dst, now, hao=hoa_from_hao_option)
    actions = cn.handle_timer(key, now)
    ok, actions = cn.check_home_address_option(src, hoa, now)   # data packets with a HAO

Return routability (RFC 6275 5.2, 9.4): a HoTI (from the HoA, through the MN's HA) is
answered with a HoT carrying the current nonce index and the home keygen token, a CoTI
(from the CoA) with a CoT and the care-of keygen token. Nonces are regenerated every
``nonce_interval`` seconds and accepted for MAX_NONCE_LIFETIME (240 s) after their
creation; Kcn is regenerated every ``kcn_interval`` seconds, each nonce keeping the Kcn it
was created under, so tokens stay verifiable. Both are generated lazily when a test init
arrives, so the CN needs no timer for them. With ``nonce_interval`` <= 30 s every token
an MN still considers valid (MAX_TOKEN_LIFETIME, 210 s) maps to a nonce the CN accepts.

Binding Updates (RFC 6275 9.5.1-9.5.4), in order:
  * HoA (HAO or source) and CoA (Alternate CoA option or source) must be unicast
    routable, else silently dropped; H flag set: 131.
  * Nonce Indices and Binding Authorization Data options are required, else silently
    dropped. Deregistration (lifetime 0 or CoA == HoA) uses the home token only.
  * expired/unknown nonce indices: 136 (home), 137 (care-of), 138 (both).
  * Kbm from the tokens, BAD verified over CoA (the HoA when deregistering) | CN | MH
    data; a bad authenticator is dropped silently (no BA: it may be forged).
  * sequence number (135); a deregistration is then accepted; ``policy(hoa, coa)``
    (129), capacity (130).
  * lifetime capped at ``max_lifetime`` (default MAX_RR_BINDING_LIFETIME, 420 s).
BAs are sent when the A flag is set or for rejections 130/135-138 (RFC 6275 9.5.4), with a
BAD option unless Kbm could not be computed (136-138). Accepted bindings produce
InstallBinding (home_registration=False); removal and expiry produce RemoveBinding.
Timers: ("binding", hoa) expiry, ("brr", hoa) optional Binding Refresh Request.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable

from mip6bench.mipv6.constants import (
    MAX_NONCE_LIFETIME,
    MAX_RR_BINDING_LIFETIME,
    BAStatus,
    ba_status_name,
)
from mip6bench.mipv6.core import (
    BindingCacheCore,
    BindingCacheEntry,
    Received,
    is_unicast_routable,
    seq_newer,
)
from mip6bench.mipv6.crypto import (
    KCN_LEN,
    NONCE_LEN,
    binding_management_key,
    care_of_keygen_token,
    encode_with_bad,
    home_keygen_token,
    verify_bad,
)
from mip6bench.mipv6.effects import InstallBinding
from mip6bench.mipv6.wire import (
    AlternateCareOfAddress,
    BindingAck,
    BindingAuthorizationData,
    BindingUpdate,
    CareOfTest,
    CareOfTestInit,
    HomeTest,
    HomeTestInit,
    NonceIndices,
    encode_mh,
    normalize_address,
    wire_lifetime,
)
from mip6bench.sansio import Action, Event

# RFC 6275 9.5.4: rejections acknowledged even when the A flag is clear.
ALWAYS_ACKNOWLEDGED = frozenset({130, 135, 136, 137, 138})


@dataclass(frozen=True)
class _Nonce:
    nonce: bytes
    kcn: bytes
    created_at: float


class CorrespondentNode(BindingCacheCore):
    """Sans-I/O correspondent node. See the module docstring for the processing rules.

    addresses: this node's address(es); HoT/CoT/BA are sent from the address the request
        was sent to.
    max_lifetime: cap for granted lifetimes (seconds, at most 420 per RFC 6275).
    max_bindings: capacity; new bindings beyond it get 130.
    policy(hoa, coa) -> bool: allow route optimisation for this MN (False gives 129).
    nonce_interval, kcn_interval: regeneration periods in seconds.
    brr_lead: send a BRR this many seconds before a binding expires (None: never).
    """

    role = "cn"

    def __init__(self, addresses: str | Iterable[str], *, max_lifetime: float = MAX_RR_BINDING_LIFETIME,
                 max_bindings: int | None = None, policy: Callable[[str, str], bool] | None = None,
                 nonce_interval: float = 30.0, kcn_interval: float = 3600.0,
                 brr_lead: float | None = None, random_bytes=os.urandom):
        super().__init__(brr_lead=brr_lead, random_bytes=random_bytes)
        if isinstance(addresses, str):
            addresses = [addresses]
        self.addresses = [normalize_address(a) for a in addresses]
        if not self.addresses:
            raise ValueError("a correspondent node needs an address")
        self.max_lifetime = wire_lifetime(min(max_lifetime, MAX_RR_BINDING_LIFETIME))
        if self.max_lifetime <= 0:
            raise ValueError("max_lifetime must be at least 4 seconds")
        if not 0 < nonce_interval <= MAX_NONCE_LIFETIME:
            raise ValueError(f"nonce_interval must be in (0, {MAX_NONCE_LIFETIME}]")
        if kcn_interval <= 0:
            raise ValueError("kcn_interval must be positive")
        self.max_bindings = max_bindings
        self.policy = policy
        self.nonce_interval = nonce_interval
        self.kcn_interval = kcn_interval
        self._kcn: bytes | None = None
        self._kcn_created = 0.0
        self._nonces: dict[int, _Nonce] = {}
        self._current_index: int | None = None

    def _default_local_address(self) -> str:
        return self.addresses[0]

    def _handlers(self):
        return {HomeTestInit: self._on_home_test_init, CareOfTestInit: self._on_care_of_test_init,
                BindingUpdate: self._on_binding_update}

    # ------------------------------------------------------------------ nonces and Kcn

    def current_nonce(self, now: float) -> tuple[int, _Nonce]:
        """The nonce handed out now (regenerating Kcn and the nonce when due)."""
        if self._kcn is None or now - self._kcn_created >= self.kcn_interval:
            self._kcn = self.random_bytes(KCN_LEN)
            self._kcn_created = now
            self.counters["kcn.generated"] += 1
        current = self._nonces.get(self._current_index) if self._current_index is not None else None
        if current is None or now - current.created_at >= self.nonce_interval or current.kcn != self._kcn:
            if self._current_index is None:
                index = int.from_bytes(self.random_bytes(2), "big")
            else:
                index = (self._current_index + 1) & 0xFFFF
            self._nonces = {i: n for i, n in self._nonces.items()
                            if now - n.created_at <= MAX_NONCE_LIFETIME}
            self._nonces[index] = _Nonce(self.random_bytes(NONCE_LEN), self._kcn, now)
            self._current_index = index
            self.counters["nonce.generated"] += 1
        return self._current_index, self._nonces[self._current_index]

    def _valid_nonce(self, index: int, now: float) -> _Nonce | None:
        rec = self._nonces.get(index)
        if rec is None or now - rec.created_at > MAX_NONCE_LIFETIME:
            return None
        return rec

    # ------------------------------------------------------------------ return routability

    def _on_home_test_init(self, msg: HomeTestInit, pkt: Received, now: float) -> list[Action]:
        if pkt.hao is not None:  # a HoTI is sent from the home address, never with a HAO
            return self._drop("hoti_with_home_address_option", src=pkt.src)
        if not is_unicast_routable(pkt.src):
            return self._drop("hoti_source_not_unicast_routable", src=pkt.src)
        index, rec = self.current_nonce(now)
        token = home_keygen_token(rec.kcn, pkt.src, rec.nonce)
        return [self._send(HomeTest(index, msg.cookie, token), pkt.dst, pkt.src),
                Event("mipv6.cn.home_test_sent", {"hoa": pkt.src, "nonce_index": index})]

    def _on_care_of_test_init(self, msg: CareOfTestInit, pkt: Received, now: float) -> list[Action]:
        if pkt.hao is not None:
            return self._drop("coti_with_home_address_option", src=pkt.src)
        if not is_unicast_routable(pkt.src):
            return self._drop("coti_source_not_unicast_routable", src=pkt.src)
        index, rec = self.current_nonce(now)
        token = care_of_keygen_token(rec.kcn, pkt.src, rec.nonce)
        return [self._send(CareOfTest(index, msg.cookie, token), pkt.dst, pkt.src),
                Event("mipv6.cn.care_of_test_sent", {"coa": pkt.src, "nonce_index": index})]

    # ------------------------------------------------------------------ binding updates

    def _binding_ack(self, status: int, seq: int, lifetime: int, pkt: Received, kbm: bytes | None,
                     auth_coa: str) -> Action:
        ba = BindingAck(int(status), seq, lifetime)
        local, checksum_dst = pkt.dst, pkt.hao or pkt.src
        if kbm is not None:
            data = encode_with_bad(ba, kbm, auth_coa, local, local, checksum_dst)
        else:
            data = encode_mh(ba, local, checksum_dst)
        return self._send(ba, local, pkt.src, data=data, rh2=pkt.hao)

    def _reject(self, bu, pkt, hoa, coa, status: int, reason: str, *, kbm=None, auth_coa=None,
                seq=None) -> list[Action]:
        self.counters[f"bu.rejected.{int(status)}"] += 1
        actions: list[Action] = [Event("mipv6.cn.bu_rejected", {
            "hoa": hoa, "coa": coa, "seq": bu.seq, "status": int(status),
            "status_name": ba_status_name(status), "reason": reason})]
        if bu.ack or status in ALWAYS_ACKNOWLEDGED:
            actions.append(self._binding_ack(status, bu.seq if seq is None else seq, 0, pkt, kbm,
                                             auth_coa or coa))
        return actions

    def _on_binding_update(self, bu: BindingUpdate, pkt: Received, now: float) -> list[Action]:
        hoa = pkt.home_address
        alt = bu.find(AlternateCareOfAddress)
        coa = alt.address if alt else pkt.src
        if not (is_unicast_routable(hoa) and is_unicast_routable(coa)):
            return self._drop("bu_address_not_unicast_routable", hoa=hoa, coa=coa)
        if bu.home_registration:
            return self._reject(bu, pkt, hoa, coa, BAStatus.HOME_REGISTRATION_NOT_SUPPORTED,
                                "not a home agent")
        indices = bu.find(NonceIndices)
        if indices is None or bu.find(BindingAuthorizationData) is None:
            return self._drop("bu_without_return_routability_options", hoa=hoa)
        dereg = bu.lifetime == 0 or coa == hoa
        home_nonce = self._valid_nonce(indices.home_nonce_index, now)
        care_of_nonce = None if dereg else self._valid_nonce(indices.care_of_nonce_index, now)
        if home_nonce is None and not dereg and care_of_nonce is None:
            return self._reject(bu, pkt, hoa, coa, BAStatus.EXPIRED_NONCES, "both nonces expired")
        if home_nonce is None:
            return self._reject(bu, pkt, hoa, coa, BAStatus.EXPIRED_HOME_NONCE_INDEX, "home nonce expired")
        if not dereg and care_of_nonce is None:
            return self._reject(bu, pkt, hoa, coa, BAStatus.EXPIRED_CARE_OF_NONCE_INDEX, "care-of nonce expired")
        home_token = home_keygen_token(home_nonce.kcn, hoa, home_nonce.nonce)
        care_of_token = None if dereg else care_of_keygen_token(care_of_nonce.kcn, coa, care_of_nonce.nonce)
        kbm = binding_management_key(home_token, care_of_token)
        # RFC 6275 6.2.7: the BAD covers the CoA being registered, or the HoA when deregistering.
        auth_coa = hoa if dereg else coa
        if not verify_bad(pkt.raw, kbm, auth_coa, pkt.dst):
            return self._drop("bu_bad_authenticator", hoa=hoa, coa=coa)
        entry = self.bindings.get(hoa)
        if entry is not None and not seq_newer(bu.seq, entry.seq):
            return self._reject(bu, pkt, hoa, coa, BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW,
                                "sequence number not newer", kbm=kbm, auth_coa=auth_coa, seq=entry.seq)
        if dereg:
            # Policy decides which bindings to create; removing one is always allowed.
            self.counters["bu.deregistered"] += 1
            actions = self._remove_entry(hoa, "deregistered")
            if bu.ack:
                actions.append(self._binding_ack(BAStatus.ACCEPTED, bu.seq, 0, pkt, kbm, auth_coa))
            return actions
        if self.policy is not None and not self.policy(hoa, coa):
            return self._reject(bu, pkt, hoa, coa, BAStatus.ADMINISTRATIVELY_PROHIBITED, "refused by policy",
                                kbm=kbm, auth_coa=auth_coa)
        if entry is None and self.max_bindings is not None and len(self.bindings) >= self.max_bindings:
            return self._reject(bu, pkt, hoa, coa, BAStatus.INSUFFICIENT_RESOURCES, "binding cache full",
                                kbm=kbm, auth_coa=auth_coa)
        granted = min(bu.lifetime, self.max_lifetime)
        new = BindingCacheEntry(hoa=hoa, coa=coa, seq=bu.seq, lifetime=granted, expires_at=now + granted,
                                home_registration=False, local_address=pkt.dst,
                                registered_at=entry.registered_at if entry else now)
        self.bindings[hoa] = new
        self.counters["bu.accepted"] += 1
        actions: list[Action] = [InstallBinding(hoa, coa, granted, new.expires_at, False)]
        actions += self._arm_binding_timers(new)
        if bu.ack:
            actions.append(self._binding_ack(BAStatus.ACCEPTED, bu.seq, granted, pkt, kbm, auth_coa))
        actions.append(Event("mipv6.cn.bu_accepted", {
            "hoa": hoa, "coa": coa, "seq": bu.seq, "lifetime": granted, "requested_lifetime": bu.lifetime}))
        return actions
