"""NSIS pinholes without root: NATFW flow -> nft matches, transaction building, and the
group commit's per-session error handling against a scripted nft."""
import asyncio
import collections
import random
import re

import pytest

from mip6bench.natfw import wire as w
from mip6bench.natfw.core import Mri, PinholeFlow
from mip6bench.net.nft import LibNft
from mip6bench.net.pinholes import (Entry, Op, PinholeError, PinholeTable, bucket_name,
                                    build_batch, check_request, flow_description, flow_matches,
                                    flow_verdict)

MN_HOA, MN_COA, CN = "2001:db8:1::100", "2001:db8:11::5", "2001:db8:2::10"
HOA_HEX = "0x20010db8000100000000000000000100"


def flow(src=MN_COA, dst=CN, proto=0, sport=0, dport=0, mip6=None, **kw):
    return PinholeFlow(Mri(src, dst, proto, sport, dport), mip6=mip6, **kw)


# ---------------------------------------------------------------- flow_matches
def test_mobility_header_by_type_from_the_home_address():
    hoti = flow(src=MN_HOA, mip6=w.Mip6Flow(w.MIP6_MH, 1))
    assert flow_matches(hoti) == [f"ip6 saddr {MN_HOA} ip6 daddr {CN} meta l4proto 135 "
                                  "mh type home-test-init"]
    # A home address naming the source itself needs no Home Address option.
    assert flow_matches(flow(src=MN_HOA, mip6=w.Mip6Flow(w.MIP6_MH, 1, MN_HOA))) == flow_matches(hoti)
    # CoTI leaves the care-of address without a Home Address option; the home address
    # in its MIP6 flow object only names the MN (for the token check).
    assert flow_matches(flow(mip6=w.Mip6Flow(w.MIP6_MH, 2, MN_HOA))) == [
        f"ip6 saddr {MN_COA} ip6 daddr {CN} meta l4proto 135 mh type careof-test-init"]
    assert flow_matches(flow(mip6=w.Mip6Flow(w.MIP6_MH, 42)))[0].endswith("mh type 42")


def test_binding_update_from_the_care_of_address_carries_the_home_address_option():
    bu = flow(mip6=w.Mip6Flow(w.MIP6_MH, 5, MN_HOA))
    assert flow_matches(bu) == [f"ip6 saddr {MN_COA} ip6 daddr {CN} ip6 nexthdr 60 "
                                f"@nh,368,16 0xc910 @nh,384,128 {HOA_HEX} meta l4proto 135 "
                                "mh type binding-update"]
    assert flow_description(bu)["text"] == f"{MN_COA} -> {CN} MH BU HAO {MN_HOA}"


def test_data_with_home_address_option_and_ports():
    data = flow(proto=17, dport=5001, mip6=w.Mip6Flow(w.MIP6_HAO, 0, MN_HOA), sub_ports=1)
    assert flow_matches(data) == [f"ip6 saddr {MN_COA} ip6 daddr {CN} ip6 nexthdr 60 "
                                  f"@nh,368,16 0xc910 @nh,384,128 {HOA_HEX} meta l4proto 17 "
                                  "th dport 5001-5002"]
    d = flow_description(data)
    assert d["mip6"] == {"kind": "hao", "home_address": MN_HOA}
    assert d["text"] == f"{MN_COA} -> {CN} udp port 5001+1 HAO {MN_HOA}"


def test_binding_acknowledgement_to_the_care_of_address_carries_a_type2_routing_header():
    ba = flow(src=CN, dst=MN_COA, mip6=w.Mip6Flow(w.MIP6_MH, 6, MN_HOA))
    assert flow_matches(ba) == [f"ip6 saddr {CN} ip6 daddr {MN_COA} ip6 nexthdr 43 rt type 2 "
                                f"@nh,384,128 {HOA_HEX} meta l4proto 135 "
                                "mh type binding-acknowledgement"]
    assert flow_description(ba)["text"] == f"{CN} -> {MN_COA} MH BA RH2 {MN_HOA}"
    home = flow(src=CN, dst=MN_HOA, mip6=w.Mip6Flow(w.MIP6_MH, 6, MN_HOA))
    assert "rt type" not in flow_matches(home)[0]


def test_type2_routing_header_and_deny():
    rh2 = flow(src=CN, dst=MN_COA, proto=6, sport=80, mip6=w.Mip6Flow(w.MIP6_RH2, 0, MN_HOA),
               action=w.ACTION_DENY)
    assert flow_matches(rh2) == [f"ip6 saddr {CN} ip6 daddr {MN_COA} ip6 nexthdr 43 rt type 2 "
                                 f"@nh,384,128 {HOA_HEX} meta l4proto 6 th sport 80"]
    assert flow_verdict(rh2) == "drop" and flow_verdict(flow()) == "accept"
    assert flow_description(rh2)["action"] == "deny"


def test_plain_flows_and_impossible_ones():
    assert flow_matches(flow()) == [f"ip6 saddr {MN_COA} ip6 daddr {CN}"]
    assert flow_matches(flow(proto=6, sport=1000, dport=80)) == [
        f"ip6 saddr {MN_COA} ip6 daddr {CN} meta l4proto 6 th sport 1000 th dport 80"]
    assert flow_matches(flow(proto=17, dport=65535, sub_ports=1))[0].endswith("th dport 65535")
    with pytest.raises(ValueError, match="protocol 6"):
        flow_matches(flow(proto=6, mip6=w.Mip6Flow(w.MIP6_MH, 5)))
    with pytest.raises(ValueError, match="ports need"):
        flow_matches(flow(proto=58, dport=1))


# ---------------------------------------------------------------- batches
def entry(session, pair=(MN_COA, CN), verdict="accept", matches=("meta l4proto 135",)):
    return Entry(session, matches, verdict, pair, {"source": pair[0], "destination": pair[1]}, 30)


def test_first_install_creates_session_chain_bucket_and_map_element():
    b = build_batch({}, [Op("aa", entry("aa"))])
    bucket = bucket_name((MN_COA, CN))
    assert b.text.splitlines() == [
        "add chain inet mip6bench nsis-aa",
        'add rule inet mip6bench nsis-aa meta l4proto 135 counter accept comment "nsis:aa"',
        f"add chain inet mip6bench {bucket}",
        f"add rule inet mip6bench {bucket} jump nsis-aa",
        f"add element inet mip6bench nsis_flows {{ {MN_COA} . {CN} : jump {bucket} }}"]
    assert b.owners == {1: "aa", 2: "aa", 4: "aa"} and set(b.state) == {"aa"}


def test_refresh_is_no_command_replace_flushes_remove_cleans_up():
    committed = {"aa": entry("aa"), "bb": entry("bb", verdict="drop")}
    assert build_batch(committed, [Op("aa", entry("aa"))]).text == ""
    replace = build_batch(committed, [Op("aa", entry("aa", matches=("meta l4proto 17", "x y")))])
    assert replace.text.splitlines()[0] == "flush chain inet mip6bench nsis-aa"
    assert len(replace.text.splitlines()) == 3  # same verdict and pair: bucket untouched
    bucket = bucket_name((MN_COA, CN))
    removed = build_batch(committed, [Op("bb", None)]).text.splitlines()
    assert removed == [f"flush chain inet mip6bench {bucket}",
                       f"add rule inet mip6bench {bucket} jump nsis-aa",
                       "flush chain inet mip6bench nsis-bb", "delete chain inet mip6bench nsis-bb"]
    both = build_batch(committed, [Op("aa", None), Op("bb", None)]).text.splitlines()
    assert both[:3] == [f"delete element inet mip6bench nsis_flows {{ {MN_COA} . {CN} }}",
                        f"flush chain inet mip6bench {bucket}", f"delete chain inet mip6bench {bucket}"]
    assert build_batch(committed, [Op("zz", None)]).text == ""


def test_deny_sessions_come_first_in_their_bucket():
    b = build_batch({"aa": entry("aa")}, [Op("dd", entry("dd", verdict="drop"))])
    jumps = [l.rsplit(" ", 1)[1] for l in b.text.splitlines() if " jump nsis-" in l]
    assert jumps == ["nsis-dd", "nsis-aa"]


def test_sessions_kept_by_address_pair_give_the_batches_a_scan_of_every_session_gives():
    """Batches built on the index the previous batch returned (as the table does) hold
    the same commands as batches that find each touched pair's sessions by a scan of the
    committed state; a bucket jumps to exactly its pair's sessions, deny first; and the
    index is the state's, with no empty pair kept."""
    rng = random.Random(7)
    pairs = [(f"2001:db8:11::{k}", CN) for k in range(5)]
    committed: dict = {}
    by_pair: dict = {}
    for _ in range(300):
        ops = []
        for session in rng.sample([f"s{k}" for k in range(30)], rng.randint(1, 6)):
            if session in committed and rng.random() < 0.3:
                ops.append(Op(session, None))
            else:
                ops.append(Op(session, entry(session, rng.choice(pairs),
                                             rng.choice(["accept", "drop"]),
                                             rng.choice([("meta l4proto 135",), ("x y",)]))))
        kept = build_batch(committed, ops, by_pair=by_pair)
        scanned = build_batch(committed, ops)
        assert sorted(kept.text.splitlines()) == sorted(scanned.text.splitlines())
        assert kept.state == scanned.state
        want = {}
        for session, e in kept.state.items():
            want.setdefault(e.pair, set()).add(session)
        assert {pair: set(sessions) for pair, sessions in kept.by_pair.items()} == want
        for pair in pairs:
            bucket = bucket_name(pair)
            jumps = [line.rsplit(" nsis-", 1)[1] for line in kept.text.splitlines()
                     if line.startswith(f"add rule inet mip6bench {bucket} jump")]
            if jumps:
                assert sorted(jumps) == sorted(want[pair])
                verdicts = [kept.state[j].verdict for j in jumps]
                assert verdicts == sorted(verdicts, key=lambda v: v != "drop")
        committed, by_pair = kept.state, kept.by_pair


def test_requests_that_could_inject_commands_are_refused():
    for session, matches, verdict in (("a b", ["x"], "accept"), ("", ["x"], "accept"),
                                      ("a", [], "accept"), ("a", ["x"], "jump"),
                                      ("a", ["tcp dport 1; flush ruleset"], "accept"),
                                      ("a", ['x comment "y"'], "accept"),
                                      ("a", ["tcp dport 1\nflush ruleset"], "accept")):
        with pytest.raises(ValueError):
            check_request(session, matches, verdict)


def test_error_lines_of_a_failed_run():
    err = ("/proc/self/fd/7:2:25-29: Error: No symbol type information\nadd rule x\n   ^^\n"
           "/proc/self/fd/7:6:21-24: Error: Could not process rule: No such file or directory\n")
    assert LibNft.error_lines(err) == {
        2: "Error: No symbol type information",
        6: "Error: Could not process rule: No such file or directory"}


# ---------------------------------------------------------------- group commit
class ScriptedNft:
    """Commits whatever has no 'bogus' in it; errors name their line like libnftables.
    `anonymous` errors name no line."""

    def __init__(self, anonymous=False):
        self.anonymous = anonymous
        self.texts = []

    def run(self, text, flags=0):
        self.texts.append(text)
        bad = [i for i, l in enumerate(text.splitlines(), 1) if "bogus" in l]
        if not bad:
            return True, "", ""
        if self.anonymous:
            return False, "", "Error: Could not process rule: Invalid argument\n"
        return False, "", "".join(f"/proc/self/fd/3:{i}:1-5: Error: bogus\n" for i in bad)

    def close(self):
        pass


def run_group(nft, requests):
    async def main():
        table = PinholeTable(nft=nft, reader=nft, clock=lambda: 100.0)
        try:
            results = await asyncio.gather(*(table.install(s, m, 30, {"source": MN_COA,
                                                                      "destination": CN})
                                             for s, m in requests), return_exceptions=True)
            return table, results
        finally:
            table.close()
    return asyncio.run(main())


def test_group_commit_one_transaction_for_everything_that_waited():
    nft = ScriptedNft()
    table, results = run_group(nft, [(f"s{i}", ["meta l4proto 135"]) for i in range(50)])
    assert results == [None] * 50
    assert len(nft.texts) == 1 and nft.texts[0].count("add chain inet mip6bench nsis-") == 50
    assert table.stats["commits"] == 1 and set(table.sessions) == {f"s{i}" for i in range(50)}
    assert table.sessions["s0"].installed_at == 100.0


@pytest.mark.parametrize("anonymous", [False, True])
def test_a_bad_session_fails_alone(anonymous):
    nft = ScriptedNft(anonymous=anonymous)
    requests = [(f"s{i}", ["meta l4proto 135"]) for i in range(8)]
    requests[5] = ("s5", ["bogus match"])
    table, results = run_group(nft, requests)
    assert [type(r).__name__ for r in results] == ["NoneType"] * 5 + ["PinholeError"] + ["NoneType"] * 2
    assert results[5].session == "s5"
    assert set(table.sessions) == {f"s{i}" for i in range(8)} - {"s5"}
    assert not any("nsis-s5" in line for line in nft.texts[-1].splitlines())
    if not anonymous:
        assert "bogus" in results[5].reason and table.stats["commits"] == 2
    else:
        assert table.stats["splits"] >= 1


def test_later_requests_for_a_session_wait_for_the_next_transaction():
    async def main():
        nft = ScriptedNft()
        table = PinholeTable(nft=nft, reader=nft)
        pair = {"source": MN_COA, "destination": CN}
        r = await asyncio.gather(table.install("a", ["meta l4proto 135"], 30, pair),
                                 table.remove("a"), table.remove("a"))
        table.close()
        return r, nft.texts, table.sessions
    results, texts, sessions = asyncio.run(main())
    assert results == [None, True, False] and sessions == {}
    assert len(texts) == 2 and re.search(r"delete chain .* nsis-a$", texts[1].strip())


def test_requests_arriving_during_a_commit_share_the_next_one():
    import threading

    class SlowNft(ScriptedNft):
        def __init__(self):
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()

        def run(self, text, flags=0):
            self.entered.set()
            self.release.wait(5)
            return super().run(text, flags)

    async def main():
        nft = SlowNft()
        table = PinholeTable(nft=nft, reader=nft)
        pair = {"source": MN_COA, "destination": CN}
        first = asyncio.ensure_future(table.install("first", ["meta l4proto 135"], 30, pair))
        await asyncio.get_running_loop().run_in_executor(None, nft.entered.wait, 5)
        # The running commit took "first" off the queue; the next 20 requests land in this
        # queue, which says when all of them are in.
        queued = asyncio.Event()

        class Queue(collections.deque):
            def append(self, op):
                super().append(op)
                if len(self) == 20:
                    queued.set()

        table._queue = Queue(table._queue)
        later = [asyncio.ensure_future(table.install(f"s{i}", ["meta l4proto 17"], 30, pair))
                 for i in range(20)]
        await asyncio.wait_for(queued.wait(), 5)
        nft.release.set()
        await asyncio.gather(first, *later)
        table.close()
        return nft.texts

    texts = asyncio.run(main())
    assert len(texts) == 2
    assert "nsis-first" in texts[0] and "nsis-s0" not in texts[0]
    assert all(f"add chain inet mip6bench nsis-s{i}\n" in texts[1] for i in range(20))


def test_cli_pinholes_table():
    pytest.importorskip("mininet")
    from mip6bench.testbed.cli import format_pinholes
    text = format_pinholes([
        {"kind": "static", "session": "mip6-home", "flow": "ip6 saddr 2001:db8:1::/64",
         "remaining": None, "packets": 3, "bytes": 240},
        {"kind": "nsis", "session": "ab" * 16, "flow": {"text": f"{MN_HOA} -> {CN} MH HoTI"},
         "remaining": 59.25, "packets": 1, "bytes": 56}])
    lines = text.splitlines()
    assert lines[0] == "2 pinhole(s)" and lines[1].split() == ["kind", "session", "remaining",
                                                               "packets", "bytes", "flow"]
    assert lines[2].split() == ["static", "mip6-home", "-", "3", "240", "ip6", "saddr",
                                "2001:db8:1::/64"]
    assert lines[3].split()[:5] == ["nsis", "ab" * 16, "59.2s", "1", "56"]
    assert lines[3].endswith(f"{MN_HOA} -> {CN} MH HoTI")


def test_ruleset_with_and_without_nsis():
    from mip6bench.net.firewall import ruleset
    on = ruleset("fw-cnet", "fw-core").text()
    dispatch = 'forward iifname "fw-core" ip6 saddr . ip6 daddr vmap @nsis_flows'
    assert "add map inet mip6bench nsis_flows { type ipv6_addr . ipv6_addr : verdict; }" in on
    assert on.index(dispatch) < on.index('forward iifname "fw-core" jump pinholes')
    assert on.index("input udp dport 270 counter accept") < on.index('comment "input-drop"')
    assert "input tcp dport 270 counter accept" in on
    off = ruleset("fw-cnet", "fw-core", nsis=False).text()
    assert "nsis_flows" not in off and "dport 270" not in off


def test_the_ha_tunnel_matches_the_home_address_inside_either_way():
    ha = "2001:db8:1::1"
    fwd = flow(src=ha, dst=MN_COA, proto=41, mip6=w.Mip6Flow(w.MIP6_TUNNEL, 0, MN_HOA))
    hoa = "0x" + __import__("ipaddress").IPv6Address(MN_HOA).packed.hex()
    base = f"ip6 saddr {ha} ip6 daddr {MN_COA} ip6 nexthdr 41 meta l4proto 41"
    assert flow_matches(fwd) == [f"{base} @nh,384,128 {hoa}", f"{base} @nh,512,128 {hoa}"]
    assert "tunnel" in flow_description(fwd)["text"]
    with pytest.raises(ValueError):
        flow_matches(flow(src=ha, dst=MN_COA, proto=17,
                          mip6=w.Mip6Flow(w.MIP6_TUNNEL, 0, MN_HOA)))
