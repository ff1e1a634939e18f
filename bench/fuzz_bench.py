#!/usr/bin/env python3
"""Coverage-guided fuzzing of every decoder on a network input path, at scale.

    .venv/bin/python bench/fuzz_bench.py                       # 10^6 inputs per codec
    .venv/bin/python bench/fuzz_bench.py --runs 20000 --seed 1 --only mh,pana
    .venv/bin/python bench/fuzz_bench.py --list

Engine: atheris (libFuzzer for Python; `requirements.txt`). Each codec runs in its own
process, one after another (one core at a time): the codec's modules are imported under
atheris's bytecode instrumentation (only `mip6bench` is instrumented), libFuzzer mutates
inputs toward new edges of that code, starting from a seed corpus of real messages
(datagrams of the in-memory bootstrap run, the codecs' own encoders and the unit tests'
wire vectors). Why atheris: it is a coverage-guided fuzzer for CPython (libFuzzer's
mutations, comparison tracing and corpus management) that installs from PyPI here, a
manylinux wheel for Python 3.11 (3.0.0; 3.1.0 has none); hypothesis, already used by the
unit tests, has no coverage guidance of its own any more (its targeted mode maximises a
score the test reports), and a home-made coverage-guided mutator would need
sys.settrace on Python 3.11 (sys.monitoring is 3.12+), a Python call per traced line.

Each codec's entry point feeds one input through what a receiver does with a datagram
(e.g. PANA: decode the message, then the MIPv6 extension AVPs, the PaC-Information and
a relayed message inside it). Anything raised other than the codec's decode error
(mip6bench.codec.DecodeError and its subclasses) is an ESCAPE, a bug: counted, and the
first ones of each kind written (exception, where, input hex) to the escapes file.
A decoder that must not raise at all (neighbor_target, router_alert_value) has no
allowed exception.

Per codec: inputs tried (libFuzzer's executed units), inputs/s (libFuzzer's average,
startup excluded; wall seconds with startup beside it), coverage reached (libFuzzer's
`cov`: distinct instrumented edges of mip6bench code hit; `ft`: features, edge counters
by hit-count bucket), corpus size, escapes. A JSON summary ends the output.

`tests/unit/test_fuzz_bench.py` runs a fixed-seed slice of the same (a few thousand
inputs per codec) in `make test`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MAX_LEN = 2048                 # bytes per input (UDP datagrams here are smaller)
MAX_ESCAPE_RECORDS = 50        # distinct escapes written per codec


# ---------------------------------------------------------------------------- targets
# Each target: build() -> (one(data) -> None, allowed exception types). Imports happen
# inside build(), so the child imports them under atheris' instrumentation.

def _pana():
    from mip6bench.codec import DecodeError
    from mip6bench.pana import message as m
    from mip6bench.pana import mip6

    def one(data: bytes) -> None:
        msg = m.decode_message(data)
        mip6.bootstrap_request(msg)
        try:
            mip6.sa_proposal(msg)
        except DecodeError:
            pass
        mip6.parse_grant(msg)
        for avp in msg.avps:
            if avp.code == m.AVP_PAC_INFORMATION and not avp.vendor_id:
                m.PacInformation.decode(avp.value)
            elif avp.code == m.AVP_RELAYED_MESSAGE and not avp.vendor_id:
                m.decode_message(avp.value)
    return one, (DecodeError,)


def _eap():
    from mip6bench.codec import DecodeError
    from mip6bench.eap.packet import EapType, decode_eap_packet
    from mip6bench.eap.psk_messages import decode_channel_payload, decode_psk_message

    def one(data: bytes) -> None:
        if data[:1] == b"\xff":           # the decrypted EAP-PSK protected channel
            decode_channel_payload(data[1:])
            return
        packet = decode_eap_packet(data)
        if packet.type == EapType.PSK:
            decode_psk_message(packet)
    return one, (DecodeError,)


RADIUS_SECRET = b"radius shared secret"


def _radius():
    from mip6bench.codec import DecodeError
    from mip6bench.aaa import radius_attrs as ra

    def one(data: bytes) -> None:
        packet = ra.check_radius_packet(ra.parse_radius_packet(data))
        ra.eap_from_radius(data)
        for attr_type, value in packet.attributes:
            if attr_type == 26:           # Vendor-Specific
                ra.parse_vendor_specific(value)
        ra.verify_message_authenticator(data, RADIUS_SECRET, bytes(16))
        ra.mppe_keys_from_radius(data, RADIUS_SECRET, bytes(16))
    return one, (DecodeError,)


def _mh():
    from mip6bench.codec import DecodeError
    from mip6bench.mipv6 import wire
    from mip6bench.net import ro

    def one(data: bytes) -> None:
        kind, body = data[:1], data[1:]
        if kind == b"\x01":               # a whole packet with a Home Address option
            ro.strip_home_address_option(body)
        elif kind == b"\x02":             # a whole packet with a type 2 routing header
            ro.strip_type2_routing_header(body)
        elif kind == b"\x03":
            wire.decode_destination_options(body)
        elif kind == b"\x04":
            wire.decode_routing_header(body)
        else:                             # a Mobility Header (checksum checked by the kernel)
            wire.decode_mh(body)
    return one, (DecodeError,)


def _gist():
    from mip6bench.codec import DecodeError, Reader
    from mip6bench.gist import wire

    def one(data: bytes) -> None:
        kind, body = data[:1], data[1:]
        if kind == b"\x01":
            wire.c_mode_frame_length(body)
        elif kind == b"\x02":
            wire.forwards_tcp_port(body)
        elif kind == b"\x03":
            wire.StackProposal.decode_value(Reader(body))
        elif kind == b"\x04":
            wire.StackConfigData.decode_value(Reader(body))
        else:
            q_mode = {b"\x05": True, b"\x06": False}.get(kind)
            wire.decode_message(body, q_mode=q_mode)
    return one, (DecodeError,)


def _natfw():
    from mip6bench.aaa.token import decode_token
    from mip6bench.codec import DecodeError
    from mip6bench.natfw import wire

    def one(data: bytes) -> None:
        msg = wire.decode(data)
        for obj in msg.objects:
            if isinstance(obj, wire.SessionAuth):    # as the firewall verifies it
                decode_token(wire.encode_object(obj))
    return one, (DecodeError,)


def _token():
    from mip6bench.aaa.token import decode_token
    from mip6bench.codec import DecodeError

    def one(data: bytes) -> None:
        decode_token(data)
    return one, (DecodeError,)


def _sadist():
    from mip6bench.aaa import authz, sadist
    from mip6bench.codec import DecodeError

    def one(data: bytes) -> None:
        kind, body = (data[0] if data else 0), data[1:]
        if kind in (sadist.PUSH, sadist.REVOKE, sadist.ACK, sadist.FETCH, sadist.REPLY):
            sadist.Message.parse(kind, body)      # the plaintext, after AES-GCM
        elif kind in (authz.AUTHZ_REQUEST, authz.AUTHZ_ANSWER):
            authz.AuthzMessage.parse(kind, body)
        else:
            sadist.Header.decode(body)
            authz.is_authz_datagram(body)
    return one, (DecodeError,)


def _nd_rao():
    from mip6bench.codec import DecodeError
    from mip6bench import ipv6
    from mip6bench.net import ndisc

    def one(data: bytes) -> None:
        kind, body = data[:1], data[1:]
        if kind == b"\x01":
            ndisc.neighbor_target(body)               # must not raise at all
        elif kind == b"\x02":
            ipv6.router_alert_value(body)              # must not raise at all
        elif kind == b"\x03":
            ipv6.parse_hopopts(body)
        else:
            ndisc.parse_router_advert(body)
    return one, (DecodeError,)


def _selftest():
    """A decoder with a planted bug, to show that escapes are found and reported: inputs
    beginning with b"BU" raise IndexError, reachable only by following coverage."""
    from mip6bench.codec import DecodeError, Reader

    def one(data: bytes) -> None:
        r = Reader(data)
        if r.u8("a") == 0x42 and r.u8("b") == 0x55:
            raise IndexError("planted")
    return one, (DecodeError,)


SELFTEST = {"selftest": (_selftest, "a planted bug (not in the default run): checks that the bench finds escapes")}

TARGETS = {
    "pana": (_pana, "PANA messages (RFC 5191) with the MIPv6 extension AVPs, PaC-Information and relayed messages (UDP 716)"),
    "eap": (_eap, "EAP packets and EAP-PSK messages, the protected channel's payload"),
    "radius": (_radius, "RADIUS packets: attributes, EAP-Message, Vendor-Specific, Message-Authenticator, MPPE keys (UDP 1812)"),
    "mh": (_mh, "Mobility Headers (mipv6/wire.py), Destination Options / type 2 routing headers, whole RO packets"),
    "gist": (_gist, "GIST messages (Q-, D-, C-mode), C-mode frame header, Stack-Proposal/-Configuration-Data (UDP/TCP 270)"),
    "natfw": (_natfw, "NATFW NSLP messages (RFC 5973) and the SESSION_AUTH tokens inside"),
    "token": (_token, "RFC 5981 SESSION_AUTH authorization tokens"),
    "sadist": (_sadist, "SA distribution / NATFW authorization channel: header and every message body (UDP 7716)"),
    "nd": (_nd_rao, "Router Advertisements, NS/NA targets, Hop-by-Hop Router Alert options"),
}


# ---------------------------------------------------------------------------- seeds

def _seed_corpus() -> dict[str, list[bytes]]:
    """Real messages per codec: the in-memory bootstrap run (PaC, PAA, RADIUS, HA), the
    codecs' encoders and the unit tests' wire vectors."""
    from mip6bench.aaa import authz, sadist
    from mip6bench.aaa.token import Flow, mint_token
    from mip6bench.eap.packet import EapType, decode_eap_packet
    from mip6bench import ipv6
    from mip6bench.net import ndisc
    from mip6bench.pana import message as m
    from tests.unit.bootstrap_harness import BootstrapNet
    from tests.unit.test_gist_fuzz import CORPUS as GIST_CORPUS
    from tests.unit.test_mipv6_wire import MESSAGES as MH_MESSAGES
    from tests.unit.test_natfw_wire import MESSAGE_VECTORS
    from tests.unit.test_aaa_sadist import RECORD
    from mip6bench.mipv6 import wire as mw

    seeds: dict[str, list[bytes]] = {name: [] for name in TARGETS}
    for backend in ("radius", "local"):
        net = BootstrapNet(backend=backend)
        net.add_pac("pac1")
        net.start_pac("pac1")
        net.run(until=5.0)
        for _t, _src, sport, _dst, dport, data in net.wire:
            ports = {sport, dport}
            if 716 in ports:
                seeds["pana"].append(data)
                try:
                    msg = m.decode_message(data)
                except Exception:
                    continue
                for avp in msg.avps:
                    if avp.code == m.AVP_EAP_PAYLOAD:
                        seeds["eap"].append(avp.value)
            elif 1812 in ports:
                seeds["radius"].append(data)
            elif 7716 in ports:
                seeds["sadist"].append(b"\x00" + data)
    for eap in list(seeds["eap"]):
        try:
            if decode_eap_packet(eap).type == EapType.PSK:
                seeds["eap"].append(b"\xff" + eap[-24:])
        except Exception:
            pass
    src, dst = "2001:db8:1::100", "2001:db8:3::10"
    seeds["mh"] = [b"\x00" + mw.encode_mh(msg, src, dst) for msg in MH_MESSAGES]
    from mip6bench.net import ro
    plain = (struct.pack("!IHBB", 0x60000000, 8, 17, 64) + bytes(16) * 2 + bytes(8))
    hao = ro.add_home_address_option(plain, bytes(range(16)))
    rh2 = ro.add_type2_routing_header(plain, bytes(range(16)))
    seeds["mh"] += [b"\x01" + hao, b"\x02" + rh2, b"\x03" + hao[40:64], b"\x04" + rh2[40:64]]
    seeds["gist"] = [bytes([k]) + d for d in GIST_CORPUS[:200] for k in (0, 5, 6)]
    seeds["gist"] += [b"\x01" + d[:8] for d in GIST_CORPUS[:20]]
    seeds["natfw"] = [bytes.fromhex(hexed) for _msg, hexed in MESSAGE_VECTORS]
    token = mint_token(bytes(range(32)), 1, "mn1@mip6bench.example", "2001:db8:1::1001",
                       (Flow(135, "2001:db8:2::/64"), Flow(6, "2001:db8:2::10/128", 5001)),
                       1_800_000_000.0, 1_800_000_600.0)
    seeds["token"] = [token]
    from mip6bench.natfw import wire as nw
    seeds["natfw"].append(nw.create(60, 9, nw.ACTION_ALLOW, nw.SessionAuth(token[4:])).encode())
    msgs = [sadist.Message(sadist.PUSH, 1, 2, record=RECORD),
            sadist.Message(sadist.REVOKE, 1, 2, spi=5, hoa="2001:db8:1::1", reason="rekeyed"),
            sadist.Message(sadist.ACK, 1, 2, status=sadist.ACK_OK),
            sadist.Message(sadist.FETCH, 1, 2, selector=sadist.SEL_NAI, nai="mn1@x"),
            sadist.Message(sadist.FETCH, 1, 2, selector=sadist.SEL_HOA, hoa="2001:db8:1::1"),
            sadist.Message(sadist.REPLY, 1, 2, status=sadist.FOUND, record=RECORD)]
    seeds["sadist"] += [bytes([msg.type]) + msg.plaintext() for msg in msgs]
    from tests.unit.test_aaa_authz import QUERY_HEX, VERDICT_HEX
    seeds["sadist"] += [bytes([authz.AUTHZ_REQUEST]) + bytes(12) + bytes.fromhex(QUERY_HEX),
                        bytes([authz.AUTHZ_ANSWER]) + bytes(12) + bytes.fromhex(VERDICT_HEX)]
    ra = (struct.pack("!BBHBBHII", 134, 0, 0, 64, 0x20, 1800, 0, 0)
          + bytes((3, 4, 64, 0xC0)) + struct.pack("!III", 86400, 14400, 0)
          + bytes.fromhex("20010db8001100000000000000000000")
          + bytes((7, 1, 0, 0)) + struct.pack("!I", 50))
    seeds["nd"] = [b"\x00" + ra, b"\x01" + ndisc.neighbor_advert("2001:db8:1::1", "02:00:00:00:00:01"),
                   b"\x01" + ndisc.dad_probe("2001:db8:1::1")[40:],
                   b"\x02" + ipv6.router_alert_hopopts(65503), b"\x03" + ipv6.router_alert_hopopts(68)]
    seeds["selftest"] = [b"\x00\x00"]
    for name, corpus in seeds.items():
        if not corpus:
            raise SystemExit(f"fuzz_bench: no seeds for {name}")
        seeds[name] = [s[:MAX_LEN] for s in corpus]
    return seeds


# ---------------------------------------------------------------------------- child

def child(name: str, runs: int, seed: int, corpus_dir: str, escapes_path: str) -> None:
    import atheris

    build = {**TARGETS, **SELFTEST}[name][0]
    with atheris.instrument_imports(include=["mip6bench"]):
        one, allowed = build()
    seen: set[tuple[str, str]] = set()
    count = [0]

    def record(exc: BaseException, data: bytes) -> None:
        count[0] += 1
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{os.path.relpath(tb[-1].filename, ROOT)}:{tb[-1].lineno}" if tb else "?"
        key = (type(exc).__name__, where)
        line = {"count": count[0]}
        if key not in seen and len(seen) < MAX_ESCAPE_RECORDS:
            seen.add(key)
            line.update(type=key[0], where=where, message=str(exc)[:200], input=data.hex())
        with open(escapes_path, "a") as f:   # libFuzzer ends the process with exit()
            f.write(json.dumps(line) + "\n")

    def test_one_input(data: bytes) -> None:
        try:
            one(data)
        except allowed:
            pass
        except Exception as exc:   # an escape: anything but the codec's decode error
            record(exc, data)

    args = [sys.argv[0], f"-runs={runs}", f"-seed={seed}", f"-max_len={MAX_LEN}",
            "-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048",
            f"-artifact_prefix={os.path.dirname(escapes_path)}/", corpus_dir]
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


# ---------------------------------------------------------------------------- parent

_STATUS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")


def run_codec(name: str, runs: int, seed: int, seeds: list[bytes], workdir: str) -> dict:
    corpus = os.path.join(workdir, name, "corpus")
    os.makedirs(corpus)
    for i, s in enumerate(seeds):
        with open(os.path.join(corpus, f"seed-{i:04d}"), "wb") as f:
            f.write(s)
    escapes = os.path.join(workdir, name, "escapes.jsonl")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name,
                           "--runs", str(runs), "--seed", str(seed), "--corpus", corpus,
                           "--escapes", escapes],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", cwd=ROOT)
    wall = time.monotonic() - t0
    out = proc.stdout
    stats = {k: int(v) for k, v in _STAT.findall(out)}
    status = _STATUS.findall(out)
    cov, ft, corp = (int(x) for x in status[-1][1:]) if status else (0, 0, 0)
    found: list[dict] = []
    total = 0
    if os.path.exists(escapes):
        with open(escapes) as f:
            for line in f:
                item = json.loads(line)
                total = max(total, item["count"])
                if "type" in item:
                    found.append(item)
    inputs = stats.get("number_of_executed_units", 0)
    result = {"codec": name, "inputs": inputs,
              "inputs_per_s": stats.get("average_exec_per_sec", 0), "wall_s": round(wall, 1),
              "inputs_per_wall_s": round(inputs / wall) if wall > 0 else 0,
              "cov": cov, "ft": ft, "corpus": corp, "seeds": len(seeds),
              "escapes": total, "escape_kinds": found, "exit": proc.returncode}
    if proc.returncode != 0:   # a crash libFuzzer caught itself (timeout, out of memory)
        result["escapes"] += 1
        tail = [line for line in out.splitlines() if "ERROR" in line or "SUMMARY" in line]
        result["escape_kinds"].append({"type": "libFuzzer", "where": "-", "message": " | ".join(tail)[:300]})
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1_000_000, help="inputs per codec (default 10^6)")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (default 1)")
    p.add_argument("--only", default="", help="comma-separated codecs (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the codecs and exit")
    p.add_argument("--json", metavar="FILE", help="also write the summary there")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--escapes", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child, a.runs, a.seed, a.corpus, a.escapes)
        return 0
    if a.list:
        for name, (_b, what) in TARGETS.items():
            print(f"{name:8} {what}")
        return 0
    names = [n for n in a.only.split(",") if n] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS and n not in SELFTEST]
    if unknown:
        print(f"fuzz_bench: unknown codec {', '.join(unknown)}; one of {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    if a.runs < 1:
        print("fuzz_bench: --runs must be at least 1", file=sys.stderr)
        return 2
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzz_bench: atheris is not installed; run `make setup` (requirements.txt)",
              file=sys.stderr)
        return 2
    seeds = _seed_corpus()
    results = []
    print(f"{'codec':8} {'inputs':>10} {'inputs/s':>9} {'wall s':>7} {'cov':>5} {'ft':>6} "
          f"{'corpus':>6} {'escapes':>7}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fuzz-bench-") as workdir:
        for name in names:
            r = run_codec(name, a.runs, a.seed, seeds[name], workdir)
            results.append(r)
            print(f"{name:8} {r['inputs']:>10} {r['inputs_per_s']:>9} {r['wall_s']:>7} "
                  f"{r['cov']:>5} {r['ft']:>6} {r['corpus']:>6} {r['escapes']:>7}", flush=True)
            for e in r["escape_kinds"]:
                print(f"    ESCAPE {e['type']} at {e['where']}: {e['message']}"
                      + (f"\n      input {e['input'][:160]}" if e.get("input") else ""), flush=True)
    summary = {"runs_per_codec": a.runs, "seed": a.seed, "codecs": results,
               "escapes_total": sum(r["escapes"] for r in results)}
    print(json.dumps(summary))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if summary["escapes_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
