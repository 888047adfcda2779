"""Process hygiene of the decode workers (issue 16, item 9): killing a run that decodes in worker processes (kill -9
or SIGTERM of the main process) leaves no worker, no resource tracker and no shared memory or semaphore behind, and
does not hold the caller's stderr open; a Prefetcher closed early releases the results it never handed out."""
import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.video.prefetch import Prefetcher, WorkError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and /dev/shm")

# The killed process: two workers decode a clip again and again into 1.5 MB results (shared memory); it takes one
# result, stops consuming with `depth - 1` results in flight, reports what it holds, and waits to be killed.
CHILD = r"""
import gc, json, os, sys, time
from concurrent.futures import Future
from multiprocessing.synchronize import SemLock
from harness.util.synth import write_index_clip
from harness.video.decodejob import DecodeJob, decode_job
from harness.video.prefetch import Prefetcher

clip, method, report, driver = sys.argv[1:5]
write_index_clip(clip, 40, 10)

def jobs():
    while True:
        yield DecodeJob(clip, "pyav", (tuple(range(40)),))

def blocks(obj):
    if hasattr(obj, "name") and hasattr(obj, "shape"):
        yield obj.name
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from blocks(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from blocks(v)

def drive(started):
    pool = Prefetcher(decode_job, workers=2, depth=4, start_method=method)
    it = pool.map(jobs())
    next(it)
    started.set()
    time.sleep(600)  # keeps the thread that started the workers alive

if driver == "main":
    pool = Prefetcher(decode_job, workers=2, depth=4, start_method=method)
    it = pool.map(jobs())
    next(it)
else:  # workers started from another thread get no parent-death signal: only the lifeline ends them
    import threading
    started = threading.Event()
    threading.Thread(target=drive, args=(started,), daemon=True).start()
    started.wait()
deadline = time.time() + 120
while time.time() < deadline:
    gc.collect()
    futures = [o for o in gc.get_objects() if isinstance(o, Future)]
    if len(futures) >= 3 and all(f.done() for f in futures):
        break
    time.sleep(0.05)
shm = [n for f in futures if f.exception() is None for n in blocks(f.result()) if os.path.exists("/dev/shm/" + n)]
sem = ["sem." + o._semlock.name.lstrip("/") for o in gc.get_objects() if isinstance(o, SemLock)]
with open(report + ".tmp", "w") as f:
    json.dump({"shm": shm, "sem": sem}, f)
os.replace(report + ".tmp", report)
time.sleep(600)
"""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def _descendants(pid: int) -> list[int]:
    parents = {int(p): _stat(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    out, frontier = [], [pid]
    while frontier:
        children = [p for p, st in parents.items() if st and st[1] in frontier]
        out += children
        frontier = children
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pids) -> list[int]:
    # a zombie is dead: an orphan's zombie may wait for a pid 1 that never reaps it
    return [p for p in pids if (st := _stat(p)) is not None and st[0] != "Z"]


def _wait_gone(pids, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _kill(pids) -> None:
    for pid in _alive(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Child:
    """The child process above, its processes and what it holds; `stop()` leaves nothing of it running."""

    def __init__(self, tmp_path, method: str, driver: str = "main"):
        report = tmp_path / "report.json"
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "clip.mp4"), method, str(report),
                                      driver], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.descendants: list[int] = []
        deadline = time.monotonic() + 120
        while not report.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the child never had its results in flight: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        self.held = json.loads(report.read_text())
        self.descendants = _descendants(self.proc.pid)
        self.tracker = [p for p in self.descendants if "resource_tracker" in _cmdline(p)]
        self.workers = [p for p in self.descendants if p not in self.tracker]
        assert len(self.workers) >= 2 and self.held["shm"] and self.held["sem"]  # the situation under test

    def remaining(self, names, seconds: float = 5.0) -> list[str]:
        deadline = time.monotonic() + seconds  # the resource tracker unlinks what it tracks as it exits
        while (left := [n for n in names if os.path.exists(f"/dev/shm/{n}")]) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def stop(self) -> None:  # never leave the processes of a failed run behind; the tracker last, so that it cleans up
        if self.proc.poll() is None:
            self.proc.kill()
        _kill(self.workers if self.descendants else [])
        _kill(_wait_gone(self.descendants, 5))
        self.proc.wait(timeout=10)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killing_the_main_process_leaves_no_worker_and_no_shared_memory(tmp_path, sig, method):
    child = Child(tmp_path, method)
    try:
        os.kill(child.proc.pid, sig)
        child.proc.wait(timeout=10)
        left = _wait_gone(child.descendants, 10)
        assert not left, f"still running after the main process died: {[_cmdline(p) for p in left]}"
        try:  # nothing holds the caller's stderr open
            child.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("the child's stderr is still held open by a process it started")
        assert not child.remaining(child.held["shm"] + child.held["sem"]), "left in /dev/shm"
    finally:
        child.stop()


def test_without_the_death_signal_the_lifeline_ends_the_workers_and_they_release_their_results(tmp_path):
    """Workers started from a thread other than the main one (or off Linux) have only the lifeline; killed together
    with the resource tracker, the parent leaves the workers to unlink the results it never took."""
    child = Child(tmp_path, "spawn", driver="thread")
    try:
        for pid in [child.proc.pid] + child.tracker:
            os.kill(pid, signal.SIGKILL)
        child.proc.wait(timeout=10)
        left = _wait_gone(child.descendants, 10)
        assert not left, f"still running after the main process died: {[_cmdline(p) for p in left]}"
        assert not child.remaining(child.held["shm"]), "results in flight left in /dev/shm"
    finally:
        child.stop()
        # the pool's semaphores (only the tracker knew them), and any results the workers failed to unlink
        for name in child.remaining(child.held["sem"] + child.held["shm"], 0):
            os.unlink(f"/dev/shm/{name}")


BLOCK = (1024, 1024, 2)  # 2 MiB: through shared memory


def _ours(before: set) -> set:
    """Blocks made since `before` holding a test's 2 MiB results (marker bytes from 160 up): other processes on
    this machine may make shared memory of their own meanwhile."""
    out = set()
    for name in set(os.listdir("/dev/shm")) - before:
        try:
            with open(f"/dev/shm/{name}", "rb") as f:
                head = f.read(1)
            if name.startswith("psm_") and os.path.getsize(f"/dev/shm/{name}") == 2 << 20 and head[0] >= 160:
                out.add(name)
        except (OSError, IndexError):
            pass
    return out


def test_results_never_taken_are_released_at_close():
    make = functools.partial(np.full, fill_value=170, dtype=np.uint8)
    before = set(os.listdir("/dev/shm"))
    with Prefetcher(make, workers=2, depth=4) as pool:
        it = pool.map([BLOCK] * 8)
        _, first = next(it)
        assert (first == 170).all()
        deadline = time.monotonic() + 60  # the three results in flight are made (in shared memory) but never taken
        while len(_ours(before)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_ours(before)) == 3
    assert not _ours(before)


def _die_on_two(x):  # spawned workers import this module by name
    if x == 2:
        time.sleep(1.0)  # the others are done by then: their results wait in shared memory
        os._exit(3)
    return np.full(BLOCK, 160 + x, np.uint8)


def test_a_dead_worker_keeps_the_results_already_made_and_leaks_none():
    before = set(os.listdir("/dev/shm"))
    with Prefetcher(_die_on_two, workers=3, depth=6) as pool:
        out = [r for _, r in pool.map([0, 1, 2, 3, 4, 5])]
        assert not _ours(before)
    assert isinstance(out[2], WorkError) and "died" in out[2].message
    assert [int(r[0, 0, 0]) for i, r in enumerate(out) if i != 2] == [160, 161, 163, 164, 165]
