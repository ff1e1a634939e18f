"""Fuzzing with a fixed seed: 20,000 mutated GIST messages. The decoder raises nothing but
DecodeError (and whatever it accepts re-encodes to the same bytes); the node cores never
raise and return only actions, whatever arrives in Q-mode or D-mode."""
import copy
import random
import struct

from mip6bench.codec import DecodeError
from mip6bench.gist import core, wire
from mip6bench.sansio import Action

from .gist_harness import Net
from .test_gist_core import CN, FW, MN, MRI, NSLP, SID
from .test_gist_wire import VECTORS

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
    corpus = [t.data for _, _, t in net.wire] + [data for _, data in VECTORS]
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
        q_mode = rng.random() < 0.5
        actions = snap[name].receive(data, rng.choice((MN, FW, CN)), rng.choice((MN, FW, CN)),
                                     float(i) / 100, q_mode=q_mode,
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
