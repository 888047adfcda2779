"""Decode (and optionally preprocess) in worker processes that stay ahead of the accelerator.

`Prefetcher.map(items)` runs `fn(job)` for each item's job in a pool of worker processes, keeps at most `depth` jobs
in flight (so decoded frames never pile up in memory), and yields `(item, result)` in the order the items came. A job
that raises comes back as a `WorkError` for that item; a worker that dies is replaced and only its item fails.
Optional helpers take jobs beside the workers (`harness run --gpu-decoders M`: NVDEC decoders beside CPU decode
processes), as threads of this process (their CUDA state stays here) or, with `helper_processes=True`, as worker
processes of their own (`--nvdec-processes`: a CUDA context each, frames back through shared memory, and no share of
this process's interpreter lock).

Workers are started with `spawn` (or `forkserver`), never `fork`: the parent may hold CUDA state, which a forked
child must not inherit. Large arrays in a result travel through shared memory instead of the pool's pipe (a
64-frame 720p selection is 177 MB; pickling it through a pipe costs more than decoding it).

Workers never outlive the process that uses them. On Linux the kernel kills a worker when its parent dies
(PR_SET_PDEATHSIG); everywhere a thread in each worker watches a pipe only the parent holds open (its "lifeline")
and exits the worker when it closes. Shared memory has one owner at a time: the worker that made a block, until it
returns it; then the parent, which unlinks it after copying, or at `close()` for results it never took (a consumer
that stopped early, an exception). A worker whose parent is gone unlinks the blocks of its last `depth` results
(older ones were taken); when the parent is killed, multiprocessing's resource tracker, which outlives it, unlinks
whatever else was registered (the pool's semaphores) once the last worker is gone.

The jobs the decoders run are in harness.video.decodejob.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from harness.errors import HarnessError

SHARED_MIN_BYTES = 1 << 20  # arrays from 1 MiB up go through shared memory; small ones are simply pickled


@dataclass(frozen=True)
class WorkError:
    """A job that failed in a worker: the one-line message, and the exception type's name."""

    message: str
    kind: str = "Exception"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class _Shared:
    name: str
    shape: tuple
    dtype: str


def _pack(obj, use_shared: bool):
    """Replace large ndarrays in a nested result (dict, list, tuple) by shared-memory handles."""
    if isinstance(obj, np.ndarray) and use_shared and obj.nbytes >= SHARED_MIN_BYTES:
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(create=True, size=obj.nbytes)
        if _OWNED:
            _OWNED[-1].append(shm.name)  # this worker owns it until the parent takes the result
        np.ndarray(obj.shape, obj.dtype, buffer=shm.buf)[...] = obj
        handle = _Shared(shm.name, obj.shape, obj.dtype.str)
        shm.close()  # the block lives on until the parent unlinks it
        return handle
    if isinstance(obj, dict):
        return {k: _pack(v, use_shared) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack(v, use_shared) for v in obj)
    return obj


def _unpack(obj):
    if isinstance(obj, _Shared):
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(name=obj.name)
        try:
            return np.ndarray(obj.shape, np.dtype(obj.dtype), buffer=shm.buf).copy()
        finally:
            shm.close()
            shm.unlink()
    if isinstance(obj, dict):
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unpack(v) for v in obj)
    return obj


def _handles(obj) -> Iterator[_Shared]:
    if isinstance(obj, _Shared):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _handles(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _handles(v)


def _unlink(name: str, orphan: bool = False) -> None:
    """Unlink a block by name if it still exists, and tell the resource tracker it needs no cleanup. An orphaned
    worker only writes to the tracker's pipe: where the tracker died with the parent, `unregister` would start a new
    one."""
    if os.name != "posix":  # elsewhere a block goes with its last handle
        return
    try:
        import _posixshmem
        from multiprocessing import resource_tracker

        path = "/" + name.lstrip("/")  # as SharedMemory names it to the system and to the tracker
        _posixshmem.shm_unlink(path)
        if not orphan:
            resource_tracker.unregister(path, "shared_memory")
        elif (fd := getattr(getattr(resource_tracker, "_resource_tracker", None), "_fd", None)) is not None:
            os.write(fd, f"UNREGISTER:{path}:shared_memory\n".encode("ascii"))
    except (OSError, ImportError, AttributeError):
        pass  # already unlinked (the parent took it), or the tracker is gone with the parent


def _release(result) -> None:
    """The parent discards a result it will never take: unlink its blocks."""
    for handle in _handles(result):
        _unlink(handle.name)


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, HarnessError) else f"{type(e).__name__}: {' '.join(str(e).split())}"


def _call(fn, job, use_shared: bool):
    """Runs in the worker: the result (packed), or a WorkError; never raises."""
    if _OWNED:
        _OWNED.append([])  # the blocks of this result
    try:
        return _pack(fn(job), use_shared)
    except Exception as e:
        return WorkError(_describe(e), type(e).__name__)


def _call_helper(fn, helper_job, job):
    """Runs in a helper thread: `fn(helper_job(job))`, or a WorkError; never raises."""
    return _call(fn if helper_job is None else lambda j: fn(helper_job(j)), job, False)


# In a worker: the names of the blocks of its last `depth` results, oldest first. The parent keeps at most `depth`
# jobs in flight, so a result `depth` jobs older than this worker's newest has been taken (and unlinked) already.
_OWNED: deque | None = None
PR_SET_PDEATHSIG = 1


def _watch(lifeline) -> None:
    """A worker's watchdog thread: the parent never writes to the lifeline, so a read returns only when the parent
    closed it or died; then the worker unlinks the blocks the parent never took and exits at once."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    for names in list(_OWNED or ()):
        for name in names:
            _unlink(name, orphan=True)
    os._exit(1)


def in_worker_process() -> bool:
    """Whether this process is a Prefetcher's worker (set up by `_init_worker`)."""
    return _OWNED is not None


def _init_worker(threads: int | None, lifeline=None, keep: int = 1, deathsig: bool = False) -> None:
    global _OWNED
    _OWNED = deque([[]], maxlen=max(1, keep))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it shuts the workers down
    if deathsig and sys.platform.startswith("linux"):
        try:  # the kernel kills this process when the thread that started it ends (PR_SET_PDEATHSIG)
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the lifeline below still holds
    if lifeline is not None:  # also covers a parent that died before prctl: its end is closed already
        threading.Thread(target=_watch, args=(lifeline,), name="lifeline", daemon=True).start()
    # workers x threads stays within the cores: each worker's torch/OpenCV use only their share
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass


class Prefetcher:
    """Ordered, bounded map of `fn` over jobs in worker processes (`workers=0`: in this process, for tests and
    debugging; the same results and WorkErrors). `in_threads=True`: the workers are threads of this process, for
    decoders that hold GPU state (nvdec: one decoder per thread; a CUDA context per spawned process would cost
    hundreds of MB each and send frames back through the host); results are handed over as they are.

    `helpers=M`: M threads of this process beside the workers (e.g. GPU decoders beside CPU decode processes), or
    M worker processes of their own with `helper_processes=True`; a job they take runs `fn(helper_job(job))`. Each
    job goes, when submitted, to the side with the lower load (its unfinished jobs over its slots), so the faster
    side takes more; `taken` counts the results each side gave. A side whose process pool breaks is restarted
    alone."""

    def __init__(self, fn: Callable[[Any], Any], workers: int = 2, depth: int | None = None,
                 start_method: str = "spawn", threads_per_worker: int | None = None, in_threads: bool = False,
                 helpers: int = 0, helper_job: Callable[[Any], Any] | None = None,
                 helper_processes: bool = False):
        if workers < 0 or helpers < 0:
            raise HarnessError(f"workers and helpers must be at least 0, got {workers} and {helpers}")
        if start_method not in ("spawn", "forkserver"):
            raise HarnessError(f"start method {start_method!r}: use spawn or forkserver (fork would copy CUDA state)")
        self.fn, self.workers, self.start_method = fn, workers, start_method
        self.helpers, self.helper_job, self.helper_processes = helpers, helper_job, helper_processes
        self.depth = max(1, depth if depth is not None else 2 * max(workers + helpers, 1))
        self.threads = threads_per_worker
        self.in_threads = in_threads
        self._pool: ProcessPoolExecutor | ThreadPoolExecutor | None = None
        self._helper_pool: ThreadPoolExecutor | None = None
        # futures submitted and not taken (their blocks are released at close()), each with its side
        self._inflight: dict = {}
        self.taken = {"workers": 0, "helpers": 0}  # results handed out, by the side that made them
        self._warming: dict = {"workers": [], "helpers": []}  # `warm` futures, counted as load until done
        self._lifeline = None  # (reader, writer): the workers get the reader, only this process holds the writer

    def _executor(self) -> ProcessPoolExecutor | ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode") if self.in_threads else \
                self._processes(self.workers, self.threads)
        return self._pool

    def _helper_executor(self) -> ProcessPoolExecutor | ThreadPoolExecutor:
        if self._helper_pool is None:
            # helper processes decode on their device: no share of the CPU cores to keep to
            self._helper_pool = self._processes(self.helpers, None) if self.helper_processes else \
                ThreadPoolExecutor(self.helpers, thread_name_prefix="helper")
        return self._helper_pool

    def _processes(self, n: int, threads: int | None) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(self.start_method)
        if self._lifeline is None:
            self._lifeline = context.Pipe(duplex=False)
        # the parent-death signal fires when the thread that started the worker ends: only where that thread
        # lives as long as the process (the main thread, or the forkserver, which dies with this process)
        deathsig = self.start_method == "forkserver" or threading.current_thread() is threading.main_thread()
        return ProcessPoolExecutor(n, mp_context=context, initializer=_init_worker,
                                   initargs=(threads, self._lifeline[0], self.depth, deathsig))

    def warm(self, side: str, fn: Callable[[], Any]) -> list:
        """Start `side`'s worker processes now and run `fn()` once in each (as each takes one call first): set-up
        a first job would otherwise pay (a GPU decoder's torch import and CUDA context), done while this process
        plans. Until it is done, `_lighter` counts it as load, so jobs go to the other side meanwhile. Its result
        and errors are not looked at (a job meets the same error and reports it). The futures, one per process."""
        n = self.helpers if side == "helpers" else self.workers
        threads = self.in_threads if side == "workers" else not self.helper_processes
        if threads or not n:
            return []
        pool = self._helper_executor() if side == "helpers" else self._executor()
        self._warming[side] = [pool.submit(fn) for _ in range(n)]
        return self._warming[side]

    def map(self, items: Iterable, job: Callable[[Any], Any] = lambda item: item) -> Iterator[tuple[Any, Any]]:
        """(item, result or WorkError) in item order. `job(item)` gives what `fn` gets (None: nothing to do, the
        result is None); items are drawn lazily, `depth` ahead of the consumer, so planning the next items overlaps
        the work on earlier ones."""
        items = iter(items)
        if self.workers == 0 and self.helpers == 0:
            for item in items:
                work = job(item)
                yield item, None if work is None else _unpack(_call(self.fn, work, False))
            return
        pending: deque = deque()
        for item in items:
            work = job(item)
            pending.append((item, work, None if work is None else self._submit(work)))  # None: nothing to do
            while len(pending) >= self.depth:
                yield self._take(pending)
        while pending:
            yield self._take(pending)

    def submit(self, job):
        """Start `fn(job)` now, outside `map`'s order, for a caller that collects results as they finish (e.g. chunks
        of several videos from one queue): a future for `collect`."""
        return self._submit(job)

    def collect(self, future):
        """The result (or WorkError) of a finished `submit` future, its shared memory taken. A worker that died
        fails its job and every job of its pool; a fresh pool takes later submissions."""
        try:
            packed = future.result()
        except BrokenProcessPool:
            side = self._inflight.pop(future, "workers")
            if getattr(self._side_pool(side), "_broken", False):  # the first of its jobs collected: replace it
                self._restart(deque(), side)
            return WorkError("a decode worker process died (killed or out of memory)", "BrokenProcessPool")
        except BaseException:
            self._inflight.pop(future, None)
            raise
        self.taken[self._inflight.pop(future)] += 1
        return _unpack(packed)

    def _submit(self, job, side: str | None = None):
        side = side or self._lighter()
        if side == "helpers" and self.helper_processes:  # the job made here; the result comes as a worker's does
            work = job if self.helper_job is None else self.helper_job(job)
            future = self._helper_executor().submit(_call, self.fn, work, True)
        elif side == "helpers":
            future = self._helper_executor().submit(_call_helper, self.fn, self.helper_job, job)
        else:
            future = self._executor().submit(_call, self.fn, job, not self.in_threads)
        self._inflight[future] = side
        return future

    def _lighter(self) -> str:
        """The side a new job goes to: the lower load after taking it (unfinished jobs over slots), the workers on
        a tie."""
        def load(side: str, slots: int) -> float:
            busy = sum(1 for f, s in self._inflight.items() if s == side and not f.done()) + \
                sum(1 for f in self._warming[side] if not f.done())
            return (busy + 1) / slots if slots else float("inf")

        return "helpers" if load("helpers", self.helpers) < load("workers", self.workers) else "workers"

    def _take(self, pending: deque):
        item, job, future = pending.popleft()
        if future is None:
            return item, None
        try:
            packed = future.result()
        except BrokenProcessPool:
            # a worker died (killed, out of memory): this item fails, a fresh pool of its side runs the rest
            self._restart(pending, self._inflight.pop(future, "workers"))
            return item, WorkError("a decode worker process died (killed or out of memory)", "BrokenProcessPool")
        except BaseException:
            self._inflight.pop(future, None)
            raise
        self.taken[self._inflight.pop(future)] += 1
        try:
            return item, _unpack(packed)
        except BaseException:
            _release(packed)
            raise

    def _side_pool(self, side: str):
        return self._helper_pool if side == "helpers" else self._pool

    def _restart(self, pending: deque, side: str = "workers") -> None:
        """A fresh process pool for the jobs of the broken one (of `side`); the other side's jobs stay theirs."""
        old = self._side_pool(side)
        if side == "helpers":
            self._helper_pool = None
        else:
            self._pool = None
        self._warming[side] = []  # the fresh pool's processes start cold
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        for i, (item, job, future) in enumerate(pending):
            if future is None or self._inflight.get(future) != side or _finished(future):
                continue  # the other side's, or made before the pool broke: kept (its blocks are still to be taken)
            del self._inflight[future]
            pending[i] = (item, job, self._submit(job, side))

    def close(self) -> None:
        """Stop the workers and helpers (after their current job) and unlink the blocks of every result never
        taken."""
        for pool in (self._pool, self._helper_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._helper_pool = None
        inflight, self._inflight = self._inflight, {}
        for future in inflight:
            if _finished(future):
                _release(future.result())
        if self._lifeline is not None:
            for end in self._lifeline:
                end.close()
            self._lifeline = None

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finished(future) -> bool:
    """Done with a result (not cancelled, not failed)."""
    return future.done() and not future.cancelled() and future.exception() is None
