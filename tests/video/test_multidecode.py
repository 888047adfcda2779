"""Several decoders at once on one video (harness.video.multidecode): the frames are those of a plain full PyAV
decode whatever the mix of decoders (threads or worker processes) and chunk size, every chunk is decoded once, and a
failing decoder stops the call with its error."""
import numpy as np
import pytest
import torch

from harness.errors import HarnessError, VideoError
from harness.video.multidecode import Decoders, parse_decoders
from harness.video.reader import available_backends
from tests.video.test_forward import gop250_video

CPU = [b for b in ("decord", "pyav") if b in available_backends()]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return gop250_video(tmp_path_factory.mktemp("multi"))


def test_parse_decoders():
    assert parse_decoders("nvdec:2,pyav") == ["nvdec", "nvdec", "pyav"]
    assert parse_decoders(" pyav:3 ") == ["pyav"] * 3
    for bad in ("", "pyav:0", "pyav:x", ","):
        with pytest.raises(HarnessError):
            parse_decoders(bad)


@pytest.mark.parametrize("decoders,processes", [(["pyav"], False), (["pyav"] * 3, False), (CPU, False),
                                                (CPU * 2, False), (["pyav"] * 2, True), (["decord"] * 2, True)])
@pytest.mark.parametrize("chunk", [3, 32])
def test_frames_equal_a_full_decode(video, decoders, processes, chunk):
    path, full = video
    idx = np.r_[np.arange(0, 320, 7), 319]  # a 1-fps-like grid across the GOP boundary, and the last frame
    with Decoders(decoders, processes=processes, chunk=chunk) as dec:
        assert bool(dec.pools) == processes
        for _ in range(2):  # a second video through the same decoders (the worker processes stay)
            frames = dec.decode(path, idx, "cpu")
            assert frames.dtype == torch.uint8 and tuple(frames.shape) == (idx.size, 240, 320, 3)
            assert np.array_equal(frames.numpy(), full[idx])
        assert sum(dec.stats["frames_by_backend"].values()) == 2 * idx.size  # each chunk once
        assert set(dec.stats["frames_by_backend"]) <= set(decoders) and dec.stats["seconds"] > 0


def test_two_cpu_backends_in_processes_of_their_own(video):
    """Each backend has its pool of worker processes; all take chunks from one queue, frames unchanged."""
    if len(CPU) < 2:
        pytest.skip("needs decord and PyAV")
    path, full = video
    idx = np.arange(0, 320, 3)
    with Decoders(CPU * 2, processes=True, chunk=4) as dec:
        assert sorted(dec.pools) == sorted(CPU) and dec.cpu_threads >= 1
        assert np.array_equal(dec.decode(path, idx, "cpu").numpy(), full[idx])
        assert sum(dec.stats["frames_by_backend"].values()) == idx.size


def test_nvdec_decoders_go_to_processes_only_when_asked():
    """Without a GPU nothing is decoded here: only where each decoder would run (threads, or a pool per backend)."""
    assert Decoders(["nvdec"] * 2, processes=True).threads == ["nvdec"] * 2
    dec = Decoders(["nvdec"] * 2 + ["pyav"], processes=True, gpu_processes=True)
    try:
        assert dec.threads == [] and sorted(dec.pools) == ["nvdec", "pyav"]
        assert dec.pools["nvdec"].workers == 2 and dec.pools["nvdec"].threads is None
        assert dec.pools["pyav"].threads == dec.cpu_threads
    finally:
        dec.close()


def test_a_failing_decoder_stops_the_call(video, monkeypatch):
    """The decode threads open their readers with threads=1 (the size probe does not): those opens fail here."""
    path, _ = video
    from harness.video import reader as reader_mod

    real = reader_mod.open_video

    def broken(p, backend="decord", threads=None):
        if threads == 1:
            raise VideoError(f"cannot open video {p} with {backend}: broken for the test")
        return real(p, backend, threads)

    monkeypatch.setattr(reader_mod, "open_video", broken)
    with pytest.raises(VideoError, match="broken for the test"):
        Decoders(["pyav", "pyav"], processes=False, chunk=4).decode(path, np.arange(0, 320, 5), "cpu")


def test_out_of_range_indices_fail_before_decoding(video):
    path, _ = video
    with pytest.raises(HarnessError, match="out of range"):
        Decoders(["pyav"], processes=False).decode(path, [0, 5, 400], "cpu")


def test_a_failing_worker_process_stops_the_call(video):
    """A chunk a worker process could not decode (a WorkError from the pool) stops the call with a VideoError."""
    from harness.video.prefetch import WorkError

    class FailingPool:
        workers = 1

        def submit(self, job):
            from concurrent.futures import Future

            assert job.selections  # the job is built as for a real pool
            future = Future()
            future.set_result(None)
            return future

        def collect(self, future):
            return WorkError("frame 40 could not be decoded", "VideoError")

        def close(self):
            pass

    path, _ = video
    dec = Decoders(["pyav"], processes=True)
    dec.pools["pyav"].close()
    dec.pools["pyav"] = FailingPool()
    with pytest.raises(VideoError, match="frame 40 could not be decoded"):
        dec.decode(path, np.arange(0, 320, 5), "cpu")


class _FailingPool:
    """A decoder pool whose every chunk comes back as the given WorkError (as a worker's failure does)."""

    def __init__(self, workers, error):
        self.workers, self.error = workers, error

    def warm(self, what, fn):
        return [self._done()]

    def submit(self, job):
        assert job.selections  # the job is built as for a real pool
        return self._done()

    @staticmethod
    def _done():
        from concurrent.futures import Future

        future = Future()
        future.set_result(None)
        return future

    def collect(self, future):
        return self.error

    def close(self):
        pass


def _failing_nvdec_processes(path, error):
    dec = Decoders(["nvdec"] * 6, processes=True, gpu_processes=True)
    dec.pools["nvdec"].close()
    dec.pools["nvdec"] = _FailingPool(6, error)
    return dec.decode(path, np.arange(0, 320, 5), "cpu")


def test_an_nvdec_failure_names_the_video_once_and_how_many_decoders_ran(video):
    """A GPU decoder process's failure (its message already names the video) is said once, with the library's
    reason, and how many NVDEC decoders were decoding at once (on an H100, 6 failed where 3 did not)."""
    from harness.video.prefetch import WorkError

    path, _ = video
    message = f"cannot decode {path} with nvdec: HandlePictureDisplay : cuvidMapVideoFrame returned error 700"
    with pytest.raises(VideoError) as caught:
        _failing_nvdec_processes(path, WorkError(message, "VideoError"))
    text = str(caught.value)
    assert text.count(str(path)) == 1 and "cuvidMapVideoFrame returned error 700" in text
    assert "6 nvdec decoders were decoding at once" in text and "try fewer of them in --decoders" in text


def test_an_nvdec_refusal_stays_a_refusal_without_the_concurrency_hint(video):
    from harness.errors import UnsupportedStream
    from harness.video.prefetch import WorkError

    path, _ = video
    with pytest.raises(UnsupportedStream, match="has B-frames") as caught:
        _failing_nvdec_processes(path, WorkError(f"{path} has B-frames", "UnsupportedStream"))
    assert "at once" not in str(caught.value)


def test_an_nvdec_thread_failure_says_how_many_decoders_ran(video, monkeypatch):
    """The same for NVDEC decoders as threads: here their reader fails to open (no GPU is needed)."""
    path, _ = video
    from harness.video import reader as reader_mod

    real = reader_mod.open_video

    def broken(p, backend="decord", threads=None):
        if backend == "nvdec":
            raise VideoError(f"cannot decode {p} with nvdec: HandlePictureDisplay : error 700")
        return real(p, backend, threads)

    monkeypatch.setattr(reader_mod, "open_video", broken)
    with pytest.raises(VideoError, match="2 nvdec decoders were decoding at once") as caught:
        Decoders(["nvdec"] * 2, processes=False, chunk=4).decode(path, np.arange(0, 320, 5), "cpu")
    assert str(caught.value).count(str(path)) == 1


@pytest.mark.parametrize("decoders,processes", [(["pyav"] * 2, False), (["pyav"] * 3, True), (CPU * 2, False)])
@pytest.mark.parametrize("ahead", [1, 3])
def test_a_stream_of_videos_comes_in_order_with_every_frame(video, decoders, processes, ahead):
    """Chunks of several videos share one queue; each video's frames are still those of a full decode, in order."""
    path, full = video
    selections = [np.arange(0, 320, 7), np.array([5, 6, 250, 251, 319]), np.arange(0, 320, 3), np.array([0])]
    with Decoders(decoders, processes=processes, chunk=4) as dec:
        outs = list(dec.stream([(path, s) for s in selections], "cpu", ahead=ahead))
        assert len(outs) == len(selections)
        for out, sel in zip(outs, selections):
            assert np.array_equal(out.numpy(), full[sel])
        assert sum(dec.stats["frames_by_backend"].values()) == sum(s.size for s in selections)


def test_a_stream_draws_its_videos_only_ahead_and_can_stop_early(video):
    """`ahead` bounds the videos queued (so the frames held); a consumer that stops early leaves the decoders usable."""
    path, full = video
    idx = np.arange(0, 320, 9)
    drawn = []

    def items():
        for i in range(5):
            drawn.append(i)
            yield path, idx

    with Decoders(["pyav"] * 2, processes=True, chunk=4) as dec:
        stream = dec.stream(items(), "cpu", ahead=2)
        assert np.array_equal(next(stream).numpy(), full[idx])
        assert drawn == [0, 1, 2]  # two at the start, the third once the first was done
        stream.close()
        assert np.array_equal(dec.decode(path, idx, "cpu").numpy(), full[idx])
    with pytest.raises(HarnessError, match="ahead"):
        next(Decoders(["pyav"], processes=False).stream([(path, idx)], "cpu", ahead=0))


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("job", ["chunk_job", "decode_job"])
def test_a_decoder_process_keeps_its_reader_across_jobs(video, tmp_path, monkeypatch, backend, job):
    """In a worker process (`_OWNED` set, as `_init_worker` sets it; run here in-process), the long job's `chunk_job`
    and the runner's `decode_job` reuse one reader for the jobs of a video, in any order, and open a new one for
    another video or a rewritten file; their frames are a full decode's."""
    import os
    import shutil
    from collections import deque

    from harness.video import decodejob, multidecode, prefetch
    from harness.video.decodejob import DecodeJob

    path, full = video
    other = tmp_path / "copy.mp4"
    shutil.copy(path, other)
    monkeypatch.setattr(prefetch, "_OWNED", deque([[]]))
    fn = multidecode.chunk_job if job == "chunk_job" else decodejob.decode_job

    def chunk(p, frames):
        return fn(DecodeJob(str(p), backend, (tuple(frames),), threads=1))["frames"][tuple(frames)]

    try:
        first = chunk(path, [10, 40, 70])
        reader = decodejob._OPEN["reader"]
        later, earlier = chunk(path, [200, 230, 319]), chunk(path, [0, 5, 250])  # forward, then back across a GOP
        assert decodejob._OPEN["reader"] is reader
        for got, want in ((first, [10, 40, 70]), (later, [200, 230, 319]), (earlier, [0, 5, 250])):
            assert np.array_equal(got, full[want])
        assert np.array_equal(chunk(other, [3, 300]), full[[3, 300]])
        assert decodejob._OPEN["reader"] is not reader
        reader = decodejob._OPEN["reader"]
        shutil.copy(path, other)  # the same name, a new file
        os.utime(other, ns=(1, 1))
        assert np.array_equal(chunk(other, [7]), full[[7]]) and decodejob._OPEN["reader"] is not reader
        with pytest.raises(HarnessError, match="out of range|10000"):
            chunk(other, [10_000])  # out of range: the reader is dropped, not left at an unknown position
        assert "reader" not in decodejob._OPEN
    finally:
        decodejob.close_worker_reader()


def test_outside_a_worker_process_decode_job_keeps_no_reader(video):
    from harness.video import decodejob
    from harness.video.decodejob import DecodeJob

    path, full = video
    out = decodejob.decode_job(DecodeJob(str(path), "pyav", ((4, 9),)))
    assert np.array_equal(out["frames"][(4, 9)], full[[4, 9]]) and "reader" not in decodejob._OPEN


def test_a_stream_calls_idle_while_the_next_video_is_not_decoded(video):
    """The consumer's idle work runs when it asks for a video still decoding (the first one, whose worker processes
    are only starting); the frames do not change."""
    path, full = video
    idx = np.arange(0, 320, 4)
    calls = []
    with Decoders(["pyav"] * 2, processes=True, chunk=4) as dec:
        outs = list(dec.stream([(path, idx)] * 2, "cpu", ahead=1, idle=lambda: calls.append(1)))
    assert calls and all(np.array_equal(o.numpy(), full[idx]) for o in outs)


def _slow_set_up(device):
    import time

    time.sleep(4)


def test_gpu_decoder_processes_take_chunks_only_once_warmed_up(video, monkeypatch):
    # pyav stands in for a GPU backend whose processes take seconds to set up (decodejob.warm_gpu): the CPU
    # decoder takes every chunk of a short video meanwhile, and the frames are those of a full decode
    import harness.video.decodejob as decodejob
    import harness.video.multidecode as multidecode

    if "decord" not in CPU:
        pytest.skip("needs decord as the CPU decoder beside the stand-in")
    path, full = video
    monkeypatch.setattr(multidecode, "GPU_DECODERS", ("nvdec", "pyav"))
    monkeypatch.setattr(decodejob, "warm_gpu", _slow_set_up)
    idx = np.arange(0, 320, 10)
    with Decoders(["decord", "pyav"], processes=True, gpu_processes=True, chunk=4) as dec:
        frames = dec.decode(path, idx, "cpu")
        assert dec.stats["frames_by_backend"] == {"decord": idx.size}
    assert np.array_equal(frames.numpy(), full[idx])

