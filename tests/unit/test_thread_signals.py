"""Threads started through mip6bench.threads block the termination signals, so the kernel
delivers a `kill -INT`/SIGTERM to the main thread, the only one where CPython runs the
handler and the one whose wait must be interrupted; processes spawned from those threads
start with the signals unblocked. The whole path: tests/netns/test_testbed.py::
test_ctrl_c_during_an_experiment_tears_everything_down."""
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from mip6bench.fdwait import wait_readable
from mip6bench.threads import TERMINATION_SIGNALS, Thread, ThreadPoolExecutor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc task status")

MASK = sum(1 << (s - 1) for s in TERMINATION_SIGNALS)


def sigblk(status_text: str) -> int:
    return int(next(l.split()[1] for l in status_text.splitlines() if l.startswith("SigBlk:")), 16)


def own_sigblk() -> int:
    """SigBlk of the calling thread, as the kernel has it."""
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
        return sigblk(f.read())


def spawned_sigblk() -> int:
    """SigBlk of a process spawned from the calling thread (grep reads its own status)."""
    out = subprocess.run(["grep", "^SigBlk:", "/proc/self/status"], capture_output=True,
                         text=True, check=True).stdout
    return sigblk(out)


def in_thread(fn):
    box = {}
    t = Thread(target=lambda: box.update(value=fn()))
    t.start()
    t.join()
    return box["value"]


def test_a_helper_thread_blocks_the_termination_signals_and_its_starter_does_not():
    before = own_sigblk()
    assert in_thread(own_sigblk) & MASK == MASK
    assert own_sigblk() == before and before & MASK == 0


def test_a_pool_worker_blocks_them_too():
    with ThreadPoolExecutor(2, thread_name_prefix="t") as pool:
        masks = list(pool.map(lambda _: own_sigblk(), range(4)))
    assert all(m & MASK == MASK for m in masks)


def test_a_process_spawned_from_such_a_thread_does_not_block_them():
    assert in_thread(spawned_sigblk) & MASK == 0
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(spawned_sigblk).result() & MASK == 0
    # ...and the thread has them blocked again after the spawn
    assert in_thread(lambda: (spawned_sigblk(), own_sigblk())[1]) & MASK == MASK


def test_a_plain_thread_spawns_with_its_own_mask():
    """Only the termination signals are unblocked for a spawn: another signal a thread
    blocks on purpose (here SIGUSR1, in a plain thread) stays blocked in its child."""
    def run():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        return spawned_sigblk()
    box = {}
    t = threading.Thread(target=lambda: box.update(value=run()))
    t.start()
    t.join()
    assert box["value"] & (1 << (signal.SIGUSR1 - 1))


# A controller in miniature: reader threads sit in read(2) on pipes (as the testbed's
# log drains and helper readers do), the main thread waits on a lock. The main thread
# blocks SIGINT for a moment, as CPython's own subprocess spawn does (it blocks every
# signal around vfork), and the parent sends SIGINT then: the kernel hands it to a thread
# that does not block it, or, when none does, leaves it pending for the process until the
# main thread unblocks. The readers read through libc so that an EINTR - the kernel chose
# that thread to run the handler - is seen and reported.
RACE = textwrap.dedent("""
    import ctypes, os, signal, sys, threading
    sys.path.insert(0, {root!r})
    if sys.argv[1] == "helper":
        from mip6bench.threads import Thread
    else:
        Thread = threading.Thread
    libc = ctypes.CDLL(None, use_errno=True)
    taken = []
    def reader(fd):
        buf = ctypes.create_string_buffer(1)
        while True:
            n = libc.read(fd, buf, 1)
            if n < 0 and ctypes.get_errno() == 4:
                taken.append(threading.get_native_id())
                print("taken", flush=True)
            elif n <= 0:
                return
    pipes = [os.pipe() for _ in range(3)]
    readers = [Thread(target=reader, args=(r,), daemon=True) for r, _ in pipes]
    for t in readers:
        t.start()
    lock = threading.Lock()
    lock.acquire()
    signal.signal(signal.SIGINT, lambda signum, frame: lock.release())   # ends main's wait
    for _ in range(int(sys.argv[2])):
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGINT}})
        print("blocked", flush=True)
        sys.stdin.readline()                  # the parent has sent SIGINT
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGINT}})
        if lock.acquire(timeout=float(sys.argv[3])):
            print("prompt", flush=True)
        else:                                 # main's wait was not interrupted
            while not lock.acquire(timeout=0.05):   # the handler runs between these calls
                pass
            print("lost", flush=True)
    for _, w in pipes:
        os.close(w)
    for t in readers:
        t.join()
    print("total", len(taken), flush=True)
""")


def shared_pending(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith("ShdPnd:")), 16)


def run_race(mode: str, rounds: int, timeout: float = 0.5) -> dict[str, int]:
    """Counts per round: `taken` (a reader thread took the SIGINT), `pending` (no thread
    could: it waited for the main thread), `prompt`/`lost` (main's wait ended at once /
    only at its timeout)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", RACE.format(root=root), mode, str(rounds),
                             str(timeout)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    counts = dict.fromkeys(("taken", "pending", "prompt", "lost"), 0)
    sigint = 1 << (signal.SIGINT - 1)
    try:
        for _ in range(rounds):
            assert proc.stdout.readline() == "blocked\n"
            proc.send_signal(signal.SIGINT)
            if shared_pending(proc.pid) & sigint and mode == "helper":
                counts["pending"] += 1        # nobody can take it: all threads block it
            else:
                assert wait_readable(proc.stdout.fileno(), 10), "SIGINT neither pending nor taken"
                assert proc.stdout.readline() == "taken\n"
                counts["taken"] += 1
            proc.stdin.write("sent\n")
            proc.stdin.flush()
            counts[proc.stdout.readline().strip()] += 1
        assert proc.stdout.readline() == f"total {counts['taken']}\n"
        assert proc.wait(timeout=30) == 0
        return counts
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_the_helper_a_reader_thread_takes_the_sigint():
    """The defect, reproduced: each SIGINT sent while the main thread blocked it for a
    moment is taken by a reader thread, whose read it interrupts instead of main's wait."""
    counts = run_race("plain", 10)
    assert counts["taken"] == 10 and counts["prompt"] + counts["lost"] == 10


def test_with_the_helper_every_sigint_waits_for_and_wakes_the_main_thread():
    counts = run_race("helper", 30)
    assert counts == {"taken": 0, "pending": 30, "prompt": 30, "lost": 0}


def test_waiting_in_steps_returns_what_the_wait_would():
    import concurrent.futures
    from mip6bench.threads import join, result_of, results_of

    with ThreadPoolExecutor(2) as pool:
        assert list(results_of(pool.submit(pow, 2, n) for n in range(5))) == [1, 2, 4, 8, 16]
        failing = pool.submit(lambda: (_ for _ in ()).throw(TimeoutError("its own")))
        with pytest.raises(TimeoutError, match="its own"):
            result_of(failing)
        gate = threading.Event()
        held = pool.submit(gate.wait)
        with pytest.raises(concurrent.futures.TimeoutError):
            result_of(held, timeout=0.01)
        gate.set()
        assert result_of(held) is True
    t = Thread(target=gate.wait)
    t.start()
    join(t)
    assert not t.is_alive()
