"""Fuzzing with a fixed seed: 20,000 mutated GIST messages. The decoder raises nothing but
DecodeError (and whatever it accepts re-encodes to the same bytes); the node cores never
raise and return only actions, whatever arrives in Q-mode, D-mode or C-mode (over an
MA). The C-mode decoders (Stack-Proposal, Stack-Configuration-Data, Forwards-TCP port,
the C-mode frame header) get 10,000 mutated inputs each."""
import copy
import random
import struct

from mip6bench.codec import DecodeError
from mip6bench.gist import core, wire
from mip6bench.sansio import Action

from .gist_harness import Net
from .test_gist_core import CN, FW, MN, MRI, NSLP, SID, SID2
from .test_gist_wire import (C_VECTORS, QUERY_SCD_VALUE, RESP_SCD_VALUE, SCD_VALUE,
                             SP_VALUE, TCP_SP_VALUE, VECTORS)

COUNT = 20_000


def _corpus_and_cores():
    net = Net()
    net.add("mn", MN)
    net.add("fw", FW)
    net.add("cn", CN)
    snapshots = [copy.deepcopy(net.nodes)]
    net.call("mn", "send_message", NSLP, SID, MRI, b"CRE1")
    net.run(0.015)
    snapshots.append(copy.deepcopy(net.nodes))          # Query answered, Confirm pending
    net.run(1.0)
    net.call("fw", "send_message", NSLP, SID, MRI, b"CRE1")
    net.call("cn", "send_message", NSLP, SID, MRI.inverted(), b"RSP1")
    net.run(2.0)
    snapshots.append(copy.deepcopy(net.nodes))
    # a C-mode session: MAs up on both hops of the mn's reliable exchange
    net.call("mn", "send_message", NSLP, SID2, MRI, b"REL1", reliable=True)
    net.run(3.0)
    net.call("fw", "send_message", NSLP, SID2, MRI, b"REL1" * 400)
    net.run(4.0)
    assert net.nodes["fw"].mas and net.nodes["cn"].mas
    snapshots.append(copy.deepcopy(net.nodes))
    corpus = [t.data for _, _, t in net.wire] + [data for _, data in VECTORS + C_VECTORS]
    return corpus, snapshots


CORPUS, SNAPSHOTS = _corpus_and_cores()


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    choice = rng.random()
    if choice < 0.5:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif choice < 0.65:
        del out[rng.randrange(len(out)):]
    elif choice < 0.8:
        out += bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 8))))
    elif choice < 0.9:                                     # splice two messages
        other = rng.choice(CORPUS)
        cut = rng.randrange(len(out))
        out = out[:cut] + other[rng.randrange(len(other)):]
    else:                                                  # flip object header words
        pos = rng.randrange(0, max(1, len(out) - 4), 4)
        out[pos:pos + 4] = struct.pack("!I", rng.getrandbits(32))
    if rng.random() < 0.5 and len(out) >= 8:              # repair the message length
        off = 4 if out[:4] == wire.MAGIC_BYTES else 0
        if len(out) >= off + 8:
            out[off + 2:off + 4] = struct.pack("!H", ((len(out) - off - 8) // 4) & 0xFFFF)
    return bytes(out)


def test_decoder_and_cores_survive_mutations():
    rng = random.Random(5971)
    accepted = 0
    nodes = [copy.deepcopy(snap) for snap in SNAPSHOTS]
    for i in range(COUNT):
        data = mutate(rng, rng.choice(CORPUS))
        try:
            msg = wire.decode_message(data)
        except DecodeError as err:
            assert err.reason
        else:
            accepted += 1
            assert msg.encode() == data
        snap = nodes[i % len(nodes)]
        name = rng.choice(list(snap))
        mode = rng.random()
        actions = snap[name].receive(data, rng.choice((MN, FW, CN)), rng.choice((MN, FW, CN)),
                                     float(i) / 100, q_mode=mode < 0.4, c_mode=mode > 0.7,
                                     ttl=rng.choice((None, 0, 1, 60, 255)))
        assert isinstance(actions, list) and all(isinstance(a, Action) for a in actions)
    # the mutations are not all trivially rejected
    assert accepted > COUNT // 50


def test_random_bytes_only_raise_decode_error():
    rng = random.Random(270)
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        if rng.random() < 0.3:
            data = wire.MAGIC_BYTES + data
        try:
            wire.decode_message(data)
        except DecodeError:
            pass


def _mutate_value(rng: random.Random, value: bytes) -> bytes:
    out = bytearray(value)
    choice = rng.random()
    if choice < 0.5 and out:
        for _ in range(rng.randint(1, 3)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif choice < 0.7 and out:
        del out[rng.randrange(len(out)):]
    elif choice < 0.9:
        out += bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4))))
    else:
        out = bytearray(rng.randrange(256) for _ in range(rng.randrange(0, 24)))
    return bytes(out)


def test_c_mode_decoders_raise_only_decode_error():
    rng = random.Random(57)
    seeds = {wire.StackProposal: [SP_VALUE, TCP_SP_VALUE],
             wire.StackConfigData: [SCD_VALUE, QUERY_SCD_VALUE, RESP_SCD_VALUE]}
    for cls, values in seeds.items():
        accepted = 0
        for _ in range(10_000):
            value = _mutate_value(rng, rng.choice(values))
            r = wire.Reader(value)
            try:
                obj = cls.decode_value(r)
            except DecodeError as err:
                assert err.reason
                continue
            accepted += 1
            if r.remaining == 0:                      # canonical: re-encodes to itself
                assert obj.encode_value() == value
        assert accepted > 100, cls.__name__
    ports = 0
    for _ in range(10_000):
        data = _mutate_value(rng, b"\x01\x0e")
        try:
            port = wire.forwards_tcp_port(data)
        except DecodeError:
            continue
        ports += 1
        assert 0 < port <= 0xFFFF and wire.forwards_tcp_option(port) == data
    assert ports > 100
    framed = 0
    for _ in range(10_000):
        head = _mutate_value(rng, rng.choice(CORPUS)[:8])
        try:
            total = wire.c_mode_frame_length(head, 4096)
        except DecodeError:
            continue
        framed += 1
        assert 8 <= total <= 4096 and (total - 8) % 4 == 0 and head[0] == 1
    assert framed > 100
