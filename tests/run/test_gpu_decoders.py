"""GPU decoders beside CPU decode processes (`harness run --gpu-decoders M`, `Prefetcher(helpers=M)`): helper threads
take jobs beside the worker processes, with the same results, WorkErrors and item order as workers alone; a broken
process pool never resubmits a helper's job; a pipelined run mixing PyAV processes and NVDEC threads writes the rows
of a sequential PyAV run and records which side decoded how many jobs; impossible settings are refused in one line.
PyNvVideoCodec is replaced by the PyAV stand-in of tests/video/test_nvdec.py, on the CPU."""
import json
import os
import sys
import time
from collections import Counter
from functools import partial

import pytest

from harness.config import RunConfig
from harness.errors import VideoError
from harness.run.pipelined import to_nvdec
from harness.run.runner import Run
from harness.util.synth import decode_index, write_index_clip
from harness.video.decodejob import DecodeJob, decode_job
from harness.video.prefetch import Prefetcher, WorkError
from tests.faults.test_bad_input import RUN, refused
from tests.run.test_decode_threads import _rows

pytest.importorskip("torch")


@pytest.fixture
def fake_nvdec(monkeypatch):
    """nvdec decodes here through the PyAV stand-in, on the CPU (as tests/run/test_decode_threads.py); the list of
    the videos nvdec readers opened."""
    from tests.video.test_nvdec import _fake_module

    import harness.video.nvdec as nvdec
    import harness.video.reader as reader

    opened, init = [], nvdec.NvdecReader.__init__

    def on_cpu(self, path, threads=None, device=None):
        opened.append(path)
        init(self, path, threads, device="cpu")

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", _fake_module())
    monkeypatch.setattr(reader, "_import_problem", lambda backend: None)  # no GPU here: the stand-in decodes
    monkeypatch.setattr(nvdec.NvdecReader, "__init__", on_cpu)
    return opened


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "index.mp4"
    write_index_clip(path, 40, 10, gop=12, bframes=0)
    return str(path)


def test_helpers_give_the_results_errors_and_order_of_workers_alone():
    items = ["1", "x", "3", "4", "y", "6", "7", "8"]
    helped = []

    def tag(job):  # runs in a helper thread: which jobs the helpers took
        helped.append(job)
        return job

    with Prefetcher(int, workers=2) as pool:
        plain = list(pool.map(items))
    with Prefetcher(int, workers=1, helpers=2, helper_job=tag) as pool:
        mixed = list(pool.map(items))
        taken = dict(pool.taken)
    assert [item for item, _ in mixed] == items
    assert [(i, r if not isinstance(r, WorkError) else (r.kind, r.message)) for i, r in mixed] == \
        [(i, r if not isinstance(r, WorkError) else (r.kind, r.message)) for i, r in plain]
    assert helped and len(helped) < len(items)  # both sides took jobs
    assert taken == {"workers": len(items) - len(helped), "helpers": len(helped)}


def test_helpers_decode_with_nvdec_the_frames_of_the_cpu_workers(fake_nvdec, clip, tmp_path):
    jobs = [DecodeJob(clip, "pyav", ((1, 2, 30),)), DecodeJob(str(tmp_path / "missing.mp4"), "pyav", ((0,),)),
            DecodeJob(clip, "pyav", ((0, 39), (7,))), DecodeJob(clip, "pyav", ((3, 12, 13),))]
    for kw in (dict(workers=1, helpers=2), dict(workers=0, helpers=1)):
        fake_nvdec.clear()
        with Prefetcher(decode_job, helper_job=to_nvdec, **kw) as pool:
            first, missing, last, fourth = [result for _, result in pool.map(jobs)]
            helped = pool.taken["helpers"]
        assert 0 < len(fake_nvdec) <= helped  # the helpers' jobs opened nvdec readers (a missing video opens none)
        assert [decode_index(f) for f in first["frames"][(1, 2, 30)]] == [1, 2, 30]
        assert isinstance(missing, WorkError) and "not found" in str(missing)
        assert [decode_index(f) for f in last["frames"][(0, 39)]] == [0, 39]
        assert [decode_index(f) for f in last["frames"][(7,)]] == [7]
        assert [decode_index(f) for f in fourth["frames"][(3, 12, 13)]] == [3, 12, 13]


@pytest.mark.parametrize("processes", [False, True])
def test_a_helper_job_on_a_b_frame_video_is_decoded_by_its_cpu_backend(fake_nvdec, tmp_path, processes):
    # nvdec refuses streams with B-frames (UnsupportedStream, before any GPU state; docs/decode.md): such a job of
    # a --gpu-decoders helper is decoded by the job's own CPU backend, the same frames, and the result says so
    path = tmp_path / "b.mp4"
    write_index_clip(path, 40, 10, gop=12)  # x264's default: B-frames
    jobs = [DecodeJob(str(path), "pyav", ((1, 2, 30),), threads=1), DecodeJob(str(path), "pyav", ((0, 39),))]
    with Prefetcher(decode_job, workers=0, helpers=2, helper_job=to_nvdec, helper_processes=processes) as pool:
        results = [result for _, result in pool.map(jobs)]
        assert pool.taken["helpers"] == 2
    assert [decode_index(f) for f in results[0]["frames"][(1, 2, 30)]] == [1, 2, 30]
    assert [decode_index(f) for f in results[1]["frames"][(0, 39)]] == [0, 39]
    assert [(r["backend"], r["instead_of"]) for r in results] == [("pyav", "nvdec")] * 2
    with pytest.raises(VideoError, match="has B-frames"):  # asked for as the backend itself: the video's error
        decode_job(DecodeJob(str(path), "nvdec", ((1,),)))


def test_a_worker_remembers_only_its_newest_refusals(tmp_path, monkeypatch):
    """A decoder process remembers the videos NVDEC refused (no second index pass to learn it again), the newest
    UNSUPPORTED_KEPT of them: a long run's refusals do not grow its memory without bound."""
    from harness.errors import UnsupportedStream
    from harness.video import decodejob

    monkeypatch.setattr(decodejob, "UNSUPPORTED_KEPT", 2)
    monkeypatch.setattr(decodejob, "_UNSUPPORTED", {})
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"b{i}.mp4"))
        write_index_clip(paths[-1], 12, 10, gop=12)  # x264's default: B-frames, refused before any GPU state
        with pytest.raises(UnsupportedStream):
            decodejob.worker_frames(DecodeJob(paths[-1], "nvdec", ((0,),)), [0])
    assert [key[0] for key in decodejob._UNSUPPORTED] == paths[1:]


def test_a_job_nvdec_cannot_decode_is_an_error_not_a_cpu_fallback(monkeypatch, fake_nvdec, clip):
    from tests.video.test_nvdec import _fake_module

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", _fake_module(shift=1))  # its index disagrees: refused
    with Prefetcher(decode_job, workers=0, helpers=1, helper_job=to_nvdec) as pool:
        [(_, result)] = list(pool.map([DecodeJob(clip, "pyav", ((1, 2),))]))
    assert isinstance(result, WorkError) and result.kind == "VideoError"


def _side_job(job):
    """The `dying` side's process dies on the first job it gets (once: a flag file); the other side waits until it
    died, then takes a while, so its jobs are still running when the consumer meets the broken pool. Every finished
    job is logged."""
    x, side, flag, log, dying = job
    if side == dying and not os.path.exists(flag):
        open(flag, "w").close()
        os._exit(3)
    if side != dying:
        deadline = time.monotonic() + 20
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
    with open(log, "a") as f:
        f.write(f"{x} {side}\n")
    return x * 10


@pytest.mark.parametrize("dying", ["worker", "helper"])
def test_a_broken_process_pool_never_resubmits_the_other_sides_jobs(tmp_path, dying):
    """Helpers as threads beside a worker process that dies, or helpers as processes (`helper_processes`) one of
    which dies: the broken side's pool is replaced, the dead job alone fails, every other job runs once."""
    flag, log = str(tmp_path / "died"), str(tmp_path / "log")
    jobs = [(x, "worker", flag, log, dying) for x in range(8)]
    with Prefetcher(_side_job, workers=1, helpers=2, depth=8, helper_processes=dying == "helper",
                    helper_job=lambda job: (job[0], "helper", *job[2:])) as pool:
        out = [result for _, result in pool.map(jobs)]
    died = [i for i, r in enumerate(out) if isinstance(r, WorkError)]
    assert len(died) == 1 and "died" in out[died[0]].message
    assert [r for i, r in enumerate(out) if i != died[0]] == [10 * x for x in range(8) if x != died[0]]
    runs = [line.split() for line in open(log).read().splitlines()]
    assert Counter(int(x) for x, _ in runs) == Counter(x for x in range(8) if x != died[0])  # each job ran once
    assert {side for _, side in runs} == {"worker", "helper"}


def _pid_job(x):
    return x, os.getpid()


def test_helper_processes_take_jobs_in_processes_of_their_own():
    items = list(range(12))
    with Prefetcher(_pid_job, workers=1, helpers=2, helper_processes=True, helper_job=lambda x: -x) as pool:
        out = list(pool.map(items))
        taken = dict(pool.taken)
    assert [item for item, _ in out] == items
    helped = {pid for item, (x, pid) in out if x == -item and item}
    worked = {pid for item, (x, pid) in out if x == item and item}
    assert helped and worked and not helped & worked and os.getpid() not in helped | worked
    assert taken["helpers"] >= len(helped) and taken["workers"] + taken["helpers"] == len(items)


@pytest.mark.parametrize("warm", [False, True])
def test_jobs_go_to_the_workers_while_the_helper_processes_warm_up(warm):
    # the first job goes to the workers either way (a tie); the second to the idle helper, unless it is still
    # making its set-up (a GPU decoder's CUDA context: Prefetcher.warm), which counts as its load
    with Prefetcher(_pid_job, workers=1, helpers=1, helper_processes=True) as pool:
        warming = pool.warm("helpers", partial(time.sleep, 3)) if warm else []
        assert len(warming) == (1 if warm else 0)
        out = list(pool.map(range(2)))
        taken = dict(pool.taken)
    assert [x for x, _ in out] == [0, 1]
    assert taken == ({"workers": 2, "helpers": 0} if warm else {"workers": 1, "helpers": 1})


def test_threads_have_no_processes_to_warm():
    with Prefetcher(_pid_job, workers=1, helpers=1, helper_processes=False) as pool:
        assert pool.warm("helpers", partial(time.sleep, 3)) == []
    with Prefetcher(_pid_job, workers=0) as pool:
        assert pool.warm("workers", partial(time.sleep, 3)) == []


def _cfg(tmp_path, name, smoke=None, **kw):
    return RunConfig(task="smoke", backbone="colour-probe", task_args=smoke or {"videos": 3, "duration": 12.0},
                     samplers=["uniform", "topk:encoder=mini-clip"], out=str(tmp_path / name),
                     cache_dir=str(tmp_path / f"cache-{name}"), frame_cache_mb=0, **kw)  # the answer pass decodes


def test_pipelined_run_with_gpu_decoders_beside_cpu_workers_writes_the_rows_of_pyav(fake_nvdec, tmp_path,
                                                                                     monkeypatch):
    from tests.video.test_nvdec import smoke_without_bframes

    smoke = smoke_without_bframes(monkeypatch, tmp_path / "videos")
    mixed = Run(_cfg(tmp_path, "mixed", smoke, decode_backend="pyav", workers=1, gpu_decoders=2),
                progress=False).execute()
    plain = Run(_cfg(tmp_path, "plain", smoke, decode_backend="pyav"), progress=False).execute()
    def answers(run_dir):
        return {k: (r["selection"], r["prediction"]["raw_text"], r["prediction"].get("error"))
                for k, r in _rows(run_dir).items()}

    for a, b in zip(mixed, plain):
        assert a.name == b.name  # --gpu-decoders is not part of the run identity
        assert answers(a) == answers(b) and len(answers(a)) == 3
        assert all(error is None for _, _, error in answers(a).values())
        assert json.loads((a / "config.json").read_text())["run"]["gpu_decoders"] == 2
    events = [json.loads(line) for line in (mixed[0] / "events.jsonl").read_text().splitlines()]
    decode = [e for e in events if e["event"] == "features"][-1]["decode"]
    assert decode["backend"] == "pyav" and decode["workers_are"] == "processes" and decode["gpu_decoders"] == 2
    assert set(decode["jobs_by_backend"]) == {"pyav", "nvdec"} and min(decode["jobs_by_backend"].values()) > 0
    assert len(fake_nvdec) == decode["jobs_by_backend"]["nvdec"]  # each of those jobs opened an nvdec reader
    assert decode["nvdec_jobs_on_cpu"]["jobs"] == 0


def test_gpu_decoders_on_videos_with_b_frames_leave_them_to_the_cpu_backend_and_say_so(fake_nvdec, tmp_path):
    # the smoke task's videos as written (x264 defaults: B-frames): the rows are those of PyAV alone, and the
    # NVDEC decoders' jobs are counted as decoded by PyAV
    mixed = Run(_cfg(tmp_path, "mixed", decode_backend="pyav", workers=1, gpu_decoders=2), progress=False).execute()
    plain = Run(_cfg(tmp_path, "plain", decode_backend="pyav"), progress=False).execute()
    for a, b in zip(mixed, plain):
        ra, rb = _rows(a), _rows(b)
        assert {k: (r["selection"], r["prediction"]["raw_text"]) for k, r in ra.items()} == \
            {k: (r["selection"], r["prediction"]["raw_text"]) for k, r in rb.items()}
        assert all(r["prediction"].get("error") is None for r in ra.values())
    events = [json.loads(line) for line in (mixed[0] / "events.jsonl").read_text().splitlines()]
    decode = [e for e in events if e["event"] == "features"][-1]["decode"]
    assert decode["jobs_by_backend"]["nvdec"] > 0 and len(fake_nvdec) == decode["jobs_by_backend"]["nvdec"]
    assert decode["nvdec_jobs_on_cpu"]["jobs"] == decode["jobs_by_backend"]["nvdec"]
    assert decode["nvdec_jobs_on_cpu"]["why"].startswith("B-frames")


@pytest.mark.parametrize("args, says", [
    (["--gpu-decoders", "-1", "--workers", "1"], "at least 0"),
    (["--gpu-decoders", "2", "--workers", "2", "--decode-backend", "nvdec"], "CPU --decode-backend"),
    (["--gpu-decoders", "2", "--decode-backend", "pyav", "--workers", "0"], "--workers of at least 1"),
    (["--gpu-decoders", "2", "--workers", "1", "--decode-backend", "pyav"], "decode backend 'nvdec' is not available"),
])
def test_impossible_gpu_decoder_settings_are_refused_in_one_line(tmp_path, capsys, monkeypatch, args, says):
    import harness.video.reader as reader

    monkeypatch.setattr(reader, "_import_problem", lambda backend: "no CUDA GPU (test)" if backend == "nvdec" else None)
    refused(capsys, [*RUN, "--out", str(tmp_path / "runs"), *args], "--gpu-decoders", says)
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_config_file_gpu_decoders_is_checked(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('gpu_decoders = 2\ndecode_backend = "nvdec"\nworkers = 2\n')
    refused(capsys, [*RUN, "--out", str(tmp_path / "runs"), "--config", str(path)], f"config file {path}: "
            "gpu_decoders 2 needs a CPU decode_backend")


@pytest.mark.parametrize("args", [["--nvdec-processes"], ["--nvdec-processes", "--decode-backend", "pyav"],
                                  ["--nvdec-processes", "--decode-backend", "nvdec", "--workers", "0"]])
def test_nvdec_processes_without_nvdec_decoders_is_refused(tmp_path, capsys, args):
    refused(capsys, [*RUN, "--out", str(tmp_path / "runs"), *args], "--nvdec-processes needs NVDEC decoders")
    assert not (tmp_path / "runs").exists()


def test_to_nvdec_names_the_device_a_decoder_process_opens_its_reader_on():
    job = DecodeJob("v.mp4", "pyav", ((1, 2),), threads=4, extra={"k": 1})
    cpu = {"cpu_backend": "pyav", "cpu_threads": 4}  # what decodes a video NVDEC does not take
    assert to_nvdec(job) == DecodeJob("v.mp4", "nvdec", ((1, 2),), threads=None, extra={"k": 1, **cpu})
    assert to_nvdec(job, "cuda:1").extra == {"k": 1, **cpu, "device": "cuda:1"}
