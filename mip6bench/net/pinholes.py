"""NSIS pinholes in the firewall's nftables table: one chain per NATFW session.

Layout (in `inet mip6bench`, next to the static `pinholes` chain of net/firewall.py):

    forward:  iifname <outside> ip6 saddr . ip6 daddr vmap @nsis_flows
    nsis_flows { <src> . <dst> : jump nsisb-<pair hash> }     one element per address pair
    chain nsisb-<pair hash> { jump nsis-<session> ... }        deny sessions first
    chain nsis-<session> { <match> counter accept|drop comment "nsis:<session>" ... }

Why a chain per session (and not a set element): a NATFW flow becomes match expressions
of different shapes (Mobility Header type, a Home Address option found by raw offsets, a
type 2 routing header, optional ports and port pairs, allow or deny), which no single
set key type expresses; a session chain takes any of them, keeps a counter and the
`nsis:<session>` comment on every rule, and is replaced atomically (`flush chain` and
the new rules in one transaction) or deleted by name. Sessions are reached through a
verdict map keyed by the packet's addresses, so a packet costs one hash lookup plus the
few sessions of its own address pair, not a walk over every session; and nothing is
ever deleted by rule handle (the bucket chain of a pair is rewritten whole when one of
its sessions changes), so commits need no echo of handles, which would make libnftables
load every rule of the table on each commit.

Throughput: installs and removals go through `PinholeTable`, which commits everything
that arrived while the previous transaction ran as the next single transaction (group
commit) through in-process libnftables (net/nft.LibNft, in a worker thread), so the
cost per pinhole is nft's parsing and the kernel's work, not a process per install.
Errors stay per session: a failed transaction's error lines are mapped back to the
sessions whose commands they name and the rest is committed again without them; an
error that names no session splits the group in halves.

Lifetimes are bookkeeping for display only: the NATFW core decides expiry and calls
`remove()`.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from mip6bench.natfw import wire as w
from mip6bench.net.firewall import FAMILY, NSIS_MAP, TABLE
from mip6bench.net.netns import enter_netns
from mip6bench.net.nft import LibNft, rule_counters
from mip6bench.threads import ThreadPoolExecutor

SESSION_CHAIN = "nsis-"
BUCKET_CHAIN = "nsisb-"
COMMENT = "nsis:"
VERDICTS = ("accept", "drop")

IPPROTO_DSTOPTS, IPPROTO_ROUTING, IPPROTO_MH, IPPROTO_IPV6 = 60, 43, 135, 41
PORT_PROTOCOLS = {6: "tcp", 17: "udp", 33: "dccp", 132: "sctp", 136: "udplite"}
# nft's names for RFC 6275 MH types (nft falls back to numbers for the rest)
NFT_MH_TYPES = {0: "binding-refresh-request", 1: "home-test-init", 2: "careof-test-init",
                3: "home-test", 4: "careof-test", 5: "binding-update",
                6: "binding-acknowledgement", 7: "binding-error"}
MIP6_KINDS = {w.MIP6_MH: "mh", w.MIP6_HAO: "hao", w.MIP6_RH2: "rh2", w.MIP6_TUNNEL: "tunnel"}
MH_BRR, MH_BU, MH_BA = 0, 5, 6

# Raw offsets (bits from the start of the IPv6 header) of the Mobile IPv6 headers where
# RFC 6275 puts them, right after the fixed 40-byte IPv6 header:
#  Destination Options with the Home Address option at its first 8n+6 position (byte 6,
#  after a 4-byte PadN): option type 201, length 16, then the home address at byte 8;
#  a type 2 routing header: next header, length 2, type 2, segments left 1, reserved,
#  then the home address at byte 8.
_HAO_TYPE_LEN = "@nh,368,16 0xc910"
_HOA_AT = "@nh,384,128"
# An IPv6-in-IPv6 packet's inner destination: 40 + 24 bytes in (its inner source is at
# _HOA_AT, 40 + 8 bytes in, where a HAO's address also is).
_INNER_DST_AT = "@nh,512,128"

_SESSION = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
_FORBIDDEN = set(';#"\'\n\r\\')


class PinholeError(Exception):
    """A session's pinhole could not be installed or removed (nft's reason attached)."""

    def __init__(self, session: str, reason: str):
        super().__init__(f"nsis session {session}: {reason}")
        self.session, self.reason = session, reason


# ---------------------------------------------------------------- flow -> nft


def _hoa_hex(address: str) -> str:
    return "0x" + ipaddress.IPv6Address(address).packed.hex()


def flow_matches(flow) -> list[str]:
    """nft match expressions (one rule each) for a NATFW core's PinholeFlow.

    MRI: `ip6 saddr`/`ip6 daddr` (whole addresses), `meta l4proto` when the protocol is
    set (0 = any), `th sport`/`th dport` when a port is set; EFI sub_ports 1 widens the
    destination port to the pair port..port+1. The private Mip6Flow object adds what
    the MRI cannot say: the Mobility Header type (`mh type`), a Home Address option
    carrying the home address (data from a care-of address, and a BU from one), a type 2
    routing header carrying it (data to a care-of address, and a BA or BRR to one)."""
    mri, mip6 = flow.mri, flow.mip6
    parts = [f"ip6 saddr {mri.source}", f"ip6 daddr {mri.destination}"]
    proto = mri.protocol
    if mip6 is not None and mip6.kind == w.MIP6_MH:
        if proto not in (0, IPPROTO_MH):
            raise ValueError(f"Mobility Header flow with protocol {proto}")
        proto = IPPROTO_MH
    if mip6 is not None and mip6.kind == w.MIP6_HAO:
        parts += [f"ip6 nexthdr {IPPROTO_DSTOPTS}", _HAO_TYPE_LEN,
                  f"{_HOA_AT} {_hoa_hex(mip6.home_address)}"]
    if mip6 is not None and mip6.kind == w.MIP6_RH2:
        parts += [f"ip6 nexthdr {IPPROTO_ROUTING}", "rt type 2",
                  f"{_HOA_AT} {_hoa_hex(mip6.home_address)}"]
    tunnel = mip6 is not None and mip6.kind == w.MIP6_TUNNEL
    if tunnel:
        # The tunnel between the HA and a care-of address (RFC 2473, what every tunnel
        # backend puts on the wire: next header 41 straight after the outer header),
        # carrying the home address's packets: its inner source (the MN's reverse
        # tunnel) or its inner destination (the HA's tunnel to the CoA) is the home
        # address. Two rules, one per position; the MRI's addresses fix the direction.
        if proto not in (0, IPPROTO_IPV6):
            raise ValueError(f"tunnel flow with protocol {proto}")
        proto = IPPROTO_IPV6
        parts.append(f"ip6 nexthdr {IPPROTO_IPV6}")
    if _bu_with_hao(flow):
        parts += [f"ip6 nexthdr {IPPROTO_DSTOPTS}", _HAO_TYPE_LEN,
                  f"{_HOA_AT} {_hoa_hex(mip6.home_address)}"]
    if _mh_with_rh2(flow):
        parts += [f"ip6 nexthdr {IPPROTO_ROUTING}", "rt type 2",
                  f"{_HOA_AT} {_hoa_hex(mip6.home_address)}"]
    if proto:
        parts.append(f"meta l4proto {proto}")
    if mri.source_port or mri.destination_port:
        if proto not in PORT_PROTOCOLS:
            raise ValueError(f"ports need a protocol with ports, not {proto}")
        if mri.source_port:
            parts.append(f"th sport {mri.source_port}")
    if mri.destination_port:
        if flow.sub_ports and mri.destination_port < 0xFFFF:
            parts.append(f"th dport {mri.destination_port}-{mri.destination_port + 1}")
        else:
            parts.append(f"th dport {mri.destination_port}")
    if mip6 is not None and mip6.kind == w.MIP6_MH:
        parts.append(f"mh type {NFT_MH_TYPES.get(mip6.mh_type, mip6.mh_type)}")
    if tunnel:
        hoa = _hoa_hex(mip6.home_address)
        return [" ".join(parts + [f"{_HOA_AT} {hoa}"]), " ".join(parts + [f"{_INNER_DST_AT} {hoa}"])]
    return [" ".join(parts)]


def _bu_with_hao(flow) -> bool:
    """A Binding Update from a care-of address carries the Home Address option (RFC 6275
    6.1.7); CoTI and HoTI never do, so for them the home address only names the MN."""
    m = flow.mip6
    return (m is not None and m.kind == w.MIP6_MH and m.mh_type == MH_BU
            and m.home_address is not None and m.home_address != flow.mri.source)


def _mh_with_rh2(flow) -> bool:
    """A Binding Acknowledgement or Refresh Request to a care-of address travels with a
    type 2 routing header naming the home address (RFC 6275 6.1.8, 9.5.5)."""
    m = flow.mip6
    return (m is not None and m.kind == w.MIP6_MH and m.mh_type in (MH_BRR, MH_BA)
            and m.home_address is not None and m.home_address != flow.mri.destination)


def flow_verdict(flow) -> str:
    return "drop" if flow.action == w.ACTION_DENY else "accept"


def flow_description(flow) -> dict[str, Any]:
    """The flow as plain values for listings, with a one-line `text`."""
    mri, mip6 = flow.mri, flow.mip6
    d: dict[str, Any] = {"source": mri.source, "destination": mri.destination,
                         "protocol": mri.protocol, "source_port": mri.source_port,
                         "destination_port": mri.destination_port, "sub_ports": flow.sub_ports,
                         "action": "deny" if flow.action == w.ACTION_DENY else "allow"}
    text = f"{mri.source} -> {mri.destination}"
    if mri.protocol:
        text += f" {PORT_PROTOCOLS.get(mri.protocol, 'mh' if mri.protocol == IPPROTO_MH else mri.protocol)}"
    if mri.destination_port:
        text += f" port {mri.destination_port}" + ("+1" if flow.sub_ports else "")
    if mip6 is not None:
        d["mip6"] = {"kind": MIP6_KINDS[mip6.kind], "home_address": mip6.home_address}
        if mip6.kind == w.MIP6_MH:
            name = w.MH_TYPES.get(mip6.mh_type, str(mip6.mh_type))
            d["mip6"]["mh_type"] = name
            text += f" MH {name}"
        if mip6.kind == w.MIP6_HAO or _bu_with_hao(flow):
            text += f" HAO {mip6.home_address}"
        if mip6.kind == w.MIP6_RH2 or _mh_with_rh2(flow):
            text += f" RH2 {mip6.home_address}"
        if mip6.kind == w.MIP6_TUNNEL:
            text += f" tunnel for {mip6.home_address}"
    if flow.action == w.ACTION_DENY:
        text += " deny"
    d["text"] = text
    return d


# ---------------------------------------------------------------- batches (pure)


Pair = tuple[str, str]   # (source, destination) of a pinhole: its bucket chain


@dataclass(frozen=True)
class Entry:
    """A session's pinhole as committed (or as a batch would commit it)."""
    session: str
    matches: tuple[str, ...]
    verdict: str
    pair: Pair
    flow: dict
    lifetime: float
    installed_at: float = 0.0


@dataclass
class Op:
    session: str
    entry: Entry | None  # None: remove
    future: Any = None


def check_request(session: str, matches: list[str], verdict: str) -> None:
    """Cheap checks before anything reaches nft: names, and no text that could end a
    command or start another (a match is spliced into an nft command line)."""
    if not isinstance(session, str) or not _SESSION.match(session):
        raise ValueError(f"session {session!r}: 1-64 of letters, digits, - _ .")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    if not matches or not all(isinstance(m, str) and m.strip() for m in matches):
        raise ValueError("matches: a non-empty list of nft match expressions")
    for m in matches:
        bad = _FORBIDDEN & set(m)
        if bad:
            raise ValueError(f"match {m!r} contains {sorted(bad)}")


def pair_of(flow: dict) -> Pair:
    return (str(ipaddress.IPv6Address(flow["source"])),
            str(ipaddress.IPv6Address(flow["destination"])))


def bucket_name(pair: Pair) -> str:
    digest = hashlib.blake2b(f"{pair[0]} {pair[1]}".encode(), digest_size=8).hexdigest()
    return BUCKET_CHAIN + digest


@dataclass
class Batch:
    text: str
    owners: dict[int, str]  # line -> session whose command it is (absent: shared)
    state: dict[str, Entry]  # committed state if the batch succeeds
    by_pair: dict[Pair, dict[str, None]]  # that state's sessions by address pair


def sessions_by_pair(state: dict[str, Entry]) -> dict[Pair, dict[str, None]]:
    """The sessions of each address pair (a bucket chain's members), in state order."""
    index: dict[Pair, dict[str, None]] = {}
    for session, e in state.items():
        index.setdefault(e.pair, {})[session] = None
    return index


def build_batch(committed: dict[str, Entry], ops: list[Op], *, family: str = FAMILY,
                table: str = TABLE, dispatch: str = NSIS_MAP,
                by_pair: dict[Pair, dict[str, None]] | None = None) -> Batch:
    """One transaction for ops (at most one per session) on top of `committed`.

    An install identical to what is committed (a refresh) adds no command, so the
    session's counters keep counting. Bucket chains of touched address pairs are
    rewritten whole, deny rules first; removed sessions' chains go last, once nothing
    jumps to them. `by_pair`: `committed`'s sessions by address pair, as the batch that
    made it returned them (Batch.by_pair); without it they are found in one pass over
    `committed`. With it a batch costs what its ops touch, not the number of sessions:
    1,000 MNs arriving hold ~5,000 sessions, and each of ~2,000 commits walked them all."""
    t = f"{family} {table}"
    lines: list[str] = []
    owners: dict[int, str] = {}
    state = dict(committed)
    if by_pair is None:
        by_pair = sessions_by_pair(committed)
    index = dict(by_pair)   # a touched pair's members are copied before they change
    copied: set[Pair] = set()
    touched: dict[Pair, None] = {}
    gone: list[str] = []

    def members_of(pair: Pair) -> dict[str, None]:
        if pair not in copied:
            copied.add(pair)
            index[pair] = dict(index.get(pair, ()))
        return index[pair]

    def add(cmd: str, owner: str | None = None) -> None:
        lines.append(cmd)
        if owner is not None:
            owners[len(lines)] = owner

    for op in ops:
        old = state.get(op.session)
        new = op.entry
        chain = SESSION_CHAIN + op.session
        if new is None:
            if old is not None:
                del state[op.session]
                del members_of(old.pair)[op.session]
                touched[old.pair] = None
                gone.append(op.session)
            continue
        state[op.session] = new
        if old is None or old.pair != new.pair:
            if old is not None:
                del members_of(old.pair)[op.session]
            members_of(new.pair)[op.session] = None
        if old is not None and (old.matches, old.verdict, old.pair) == (new.matches, new.verdict, new.pair):
            continue
        add(f"{'flush' if old is not None else 'add'} chain {t} {chain}", op.session)
        for m in new.matches:
            add(f"add rule {t} {chain} {m} counter {new.verdict} comment \"{COMMENT}{op.session}\"",
                op.session)
        if old is not None and old.pair != new.pair:
            touched[old.pair] = None
        if old is None or old.verdict != new.verdict or old.pair != new.pair:
            touched[new.pair] = None

    for pair in touched:
        bucket = bucket_name(pair)
        sessions = index.get(pair)
        if not sessions:
            index.pop(pair, None)
        members = sorted((state[s] for s in sessions or ()),
                         key=lambda e: e.verdict != "drop")  # deny first
        had = bool(by_pair.get(pair))
        key = f"{pair[0]} . {pair[1]}"
        if members:
            add(f"{'flush' if had else 'add'} chain {t} {bucket}")
            for e in members:
                add(f"add rule {t} {bucket} jump {SESSION_CHAIN}{e.session}", e.session)
            if not had:
                add(f"add element {t} {dispatch} {{ {key} : jump {bucket} }}")
        elif had:
            add(f"delete element {t} {dispatch} {{ {key} }}")
            add(f"flush chain {t} {bucket}")
            add(f"delete chain {t} {bucket}")
    for session in gone:
        add(f"flush chain {t} {SESSION_CHAIN}{session}", session)
        add(f"delete chain {t} {SESSION_CHAIN}{session}", session)
    return Batch("\n".join(lines) + "\n" if lines else "", owners, state, index)


# ---------------------------------------------------------------- the table


class PinholeTable:
    """NSIS pinholes with group commit. Use from one asyncio event loop.

    `await install(...)` / `await remove(...)` return once the transaction holding the
    request is committed (or raise PinholeError with nft's reason for that session);
    `list()` reads the counters (blocking; call it through asyncio.to_thread from an
    agent)."""

    def __init__(self, netns: int | str | None = None, *, family: str = FAMILY,
                 table: str = TABLE, dispatch: str = NSIS_MAP,
                 clock: Callable[[], float] = time.monotonic, nft=None, reader=None,
                 max_group: int | None = None, renew_context: bool = False):
        self.family, self.table, self.dispatch = family, table, dispatch
        self.max_group = max_group  # ops per transaction (None: all that are queued)
        # libnftables keeps a copy of the ruleset in its context (~10 kB a session) and
        # updates it with its own commits, which keeps a lone install at ~2.5 ms with
        # 1,000 sessions; renewing the context after every commit drops that memory but
        # costs the freeing of the copy (~15 ms with 1,000 sessions) on every commit.
        self.renew_context = renew_context
        self.clock = clock
        # The worker thread lives in the namespace: its commit context is created there
        # (and, with renew_context, created anew there after every commit, cheaply).
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="nft-commit",
                                          initializer=enter_netns, initargs=(netns,))
        # `nft`/`reader`: anything with LibNft's run()/list_json()/close() (tests pass fakes)
        try:
            self._nft = nft or self._worker.submit(LibNft, None).result()
            self._reader = reader or LibNft(netns)  # listings, any thread, alongside commits
        except BaseException:
            self._worker.shutdown(wait=True)
            raise
        self.sessions: dict[str, Entry] = {}
        self._by_pair: dict[Pair, dict[str, None]] = {}   # self.sessions by address pair
        self._queue: deque[Op] = deque()
        self._flusher: asyncio.Task | None = None
        self.stats: Counter = Counter()
        self._closed = False

    # -- requests

    async def install(self, session: str, matches: list[str], lifetime: float, flow: dict,
                      verdict: str = "accept") -> None:
        """Install or replace (atomically) the rules of `session`: one rule per match
        expression, each with a counter, `verdict` and the comment nsis:<session>.
        `flow` describes it for listings (source and destination address required:
        they choose the dispatch bucket, so they must be what the matches require)."""
        check_request(session, matches, verdict)
        entry = Entry(session, tuple(m.strip() for m in matches), verdict, pair_of(flow),
                      dict(flow), float(lifetime))
        await self._submit(Op(session, entry))

    async def install_flow(self, session: str, flow, lifetime: float) -> None:
        """install() for a natfw.core.PinholeFlow."""
        await self.install(session, flow_matches(flow), lifetime, flow_description(flow),
                           flow_verdict(flow))

    async def remove(self, session: str) -> bool:
        """Remove the session's rules; False if it had none."""
        if not isinstance(session, str) or not _SESSION.match(session):
            raise ValueError(f"session {session!r}: 1-64 of letters, digits, - _ .")
        return await self._submit(Op(session, None))

    async def clear(self) -> list[str]:
        """Remove every session (one transaction when nothing else is queued)."""
        sessions = list(self.sessions)
        await asyncio.gather(*(self.remove(s) for s in sessions))
        return sessions

    async def purge(self) -> list[str]:
        """Remove every NSIS chain and dispatch element in the kernel table, whoever left
        them (an earlier process that died keeps its pinholes open otherwise, with nobody
        to expire them); call before the first install. Returns the sessions removed."""
        if self.sessions or self._queue:
            raise RuntimeError("purge() is for a table that has not installed anything")
        objects = await asyncio.to_thread(self._list_table)
        chains = [o["chain"]["name"] for o in objects if "chain" in o
                  and o["chain"]["name"].startswith((SESSION_CHAIN, BUCKET_CHAIN))]
        if not chains:
            return []
        t = f"{self.family} {self.table}"
        # buckets first (they jump to sessions), then the sessions they referenced
        chains.sort(key=lambda name: not name.startswith(BUCKET_CHAIN))
        text = "".join([f"flush map {t} {self.dispatch}\n"]
                       + [f"flush chain {t} {c}\n" for c in chains]
                       + [f"delete chain {t} {c}\n" for c in chains])
        ok, _, err = await asyncio.get_running_loop().run_in_executor(self._worker, self._run, text)
        if not ok:
            raise PinholeError("*", err.strip() or "purge failed")
        return [c[len(SESSION_CHAIN):] for c in chains if c.startswith(SESSION_CHAIN)]

    def _list_table(self) -> list[dict[str, Any]]:
        try:
            return self._reader.list_json("table", self.family, self.table)
        finally:
            if hasattr(self._reader, "renew"):
                self._reader.renew()

    async def _submit(self, op: Op):
        loop = asyncio.get_running_loop()
        op.future = loop.create_future()
        self._queue.append(op)
        self.stats["requests"] += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="pinhole-group-commit")
        return await op.future

    # -- group commit

    def _take_group(self) -> list[Op]:
        """Everything queued (up to max_group), at most one op per session (later ones
        wait their turn)."""
        group, seen, rest = [], set(), deque()
        while self._queue and (self.max_group is None or len(group) < self.max_group):
            op = self._queue.popleft()
            (rest if op.session in seen else group).append(op)
            seen.add(op.session)
        rest.extend(self._queue)
        self._queue = rest
        return group

    async def _flush(self) -> None:
        while self._queue:
            group = self._take_group()
            try:
                await self._commit(group)
            except Exception as exc:  # nft unusable (e.g. context closed): fail the group
                for op in group:
                    _fail(op, str(exc))

    async def _commit(self, ops: list[Op]) -> None:
        loop = asyncio.get_running_loop()
        pending = list(ops)
        while pending:
            present = {op.session for op in pending if op.session in self.sessions}
            batch = build_batch(self.sessions, pending, family=self.family, table=self.table,
                                dispatch=self.dispatch, by_pair=self._by_pair)
            ok, err = True, ""
            if batch.text:
                ok, _, err = await loop.run_in_executor(self._worker, self._run, batch.text)
                self.stats["commits"] += 1
            if ok:
                now = self.clock()
                for op in pending:
                    if op.entry is not None:
                        batch.state[op.session] = _stamped(batch.state[op.session], now)
                self.sessions, self._by_pair = batch.state, batch.by_pair
                self.stats["committed_ops"] += len(pending)
                for op in pending:
                    if not op.future.done():
                        op.future.set_result(op.entry is not None or op.session in present)
                return
            self.stats["failed_commits"] += 1
            errors = LibNft.error_lines(err)
            asked = {op.session for op in pending}
            blamed: dict[str, str] = {}
            for line, msg in errors.items():
                owner = batch.owners.get(line)
                if owner in asked:
                    blamed.setdefault(owner, msg)
            if blamed:
                for op in pending:
                    if op.session in blamed:
                        self.stats["failed_ops"] += 1
                        _fail(op, blamed[op.session])
                pending = [op for op in pending if op.session not in blamed]
                continue
            if len(pending) == 1:
                self.stats["failed_ops"] += 1
                _fail(pending[0], err.strip() or "nft failed")
                return
            half = len(pending) // 2  # nothing names a session: split, commit each half
            self.stats["splits"] += 1
            await self._commit(pending[:half])
            pending = pending[half:]

    def _run(self, text: str) -> tuple[bool, str, str]:
        """In the worker thread: one transaction (then a fresh context if so asked)."""
        try:
            return self._nft.run(text)
        finally:
            if self.renew_context and hasattr(self._nft, "renew"):
                self._nft.renew()

    # -- listing

    def list(self) -> list[dict[str, Any]]:
        """Every NSIS session in the kernel table: session, flow, matches, verdict,
        lifetime, remaining (seconds, for display), packets and bytes (summed over its
        rules). Sessions found in the kernel but not in this table's memory (left by
        an earlier process) are listed with flow None."""
        rules = rule_counters(self._list_table())
        found: dict[str, dict[str, int]] = {}
        for r in rules:
            chain, comment = r["chain"], r["comment"] or ""
            if chain.startswith(SESSION_CHAIN) and comment.startswith(COMMENT):
                c = found.setdefault(comment[len(COMMENT):], {"packets": 0, "bytes": 0, "rules": 0})
                c["packets"] += r["packets"] or 0
                c["bytes"] += r["bytes"] or 0
                c["rules"] += 1
        now = self.clock()
        out = []
        for session, c in found.items():
            e = self.sessions.get(session)
            out.append({"session": session, "kind": "nsis",
                        "flow": e.flow if e else None,
                        "matches": list(e.matches) if e else None,
                        "verdict": e.verdict if e else None,
                        "lifetime": e.lifetime if e else None,
                        "remaining": (max(0.0, e.installed_at + e.lifetime - now) if e else None),
                        **c})
        return out

    def close(self) -> None:
        """Stop the worker and free the nft contexts (sessions stay in the kernel).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._worker.submit(self._nft.close).result()
        self._worker.shutdown(wait=True)
        self._reader.close()


def _fail(op: Op, reason: str) -> None:
    if not op.future.done():  # a caller that stopped waiting (cancelled) gets nothing
        op.future.set_exception(PinholeError(op.session, reason))


def _stamped(e: Entry, now: float) -> Entry:
    return Entry(e.session, e.matches, e.verdict, e.pair, e.flow, e.lifetime, now)

