"""Decode workers as threads of this process (`Prefetcher(in_threads=True)`), which `harness run --workers N` uses
for the nvdec backend (its decoders hold GPU state): the same frames and errors as worker processes, and a pipelined
nvdec run whose rows equal a PyAV run's. PyNvVideoCodec is replaced by the PyAV stand-in of tests/video/test_nvdec.py
(NV12 planes, decoder index order, a pts per frame), on the CPU."""
import functools
import json
import sys
from pathlib import Path

import pytest

from harness.config import RunConfig
from harness.run.runner import Run
from harness.util.synth import decode_index, write_index_clip
from harness.video.decodejob import DecodeJob, decode_job
from harness.video.prefetch import Prefetcher, WorkError

pytest.importorskip("torch")


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "index.mp4"
    write_index_clip(path, 40, 10, gop=12, bframes=0)
    return str(path)


def test_thread_workers_give_the_frames_and_errors_of_process_workers(clip, tmp_path):
    jobs = [DecodeJob(clip, "pyav", ((1, 2, 30),)), DecodeJob(str(tmp_path / "missing.mp4"), "pyav", ((0,),)),
            DecodeJob(clip, "pyav", ((0, 39), (7,)))]
    results = {}
    for name, kw in {"threads": dict(workers=2, in_threads=True), "processes": dict(workers=2),
                     "inline": dict(workers=0)}.items():
        with Prefetcher(decode_job, **kw) as pool:
            results[name] = [result for _, result in pool.map(jobs)]
    for name, (first, missing, last) in results.items():
        assert [decode_index(f) for f in first["frames"][(1, 2, 30)]] == [1, 2, 30], name
        assert isinstance(missing, WorkError) and "not found" in str(missing), name
        assert [decode_index(f) for f in last["frames"][(0, 39)]] == [0, 39], name
        assert [decode_index(f) for f in last["frames"][(7,)]] == [7], name


def _rows(run_dir: Path) -> dict:
    return {r["sample_id"]: r for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())}


def test_pipelined_nvdec_run_decodes_in_threads_with_the_rows_of_pyav(tmp_path, monkeypatch):
    from tests.video.test_nvdec import _fake_module, smoke_without_bframes

    import harness.video.nvdec as nvdec
    import harness.video.reader as reader

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", _fake_module())
    monkeypatch.setattr(reader, "_import_problem", lambda backend: None)  # no GPU here: the stand-in decodes
    monkeypatch.setattr(nvdec.NvdecReader, "__init__",
                        functools.partialmethod(nvdec.NvdecReader.__init__, device="cpu"))

    smoke = smoke_without_bframes(monkeypatch, tmp_path / "videos")

    def cfg(out, backend, workers):
        return RunConfig(task="smoke", backbone="colour-probe", task_args=smoke,
                         samplers=["uniform", "topk:encoder=mini-clip"], out=str(out),
                         cache_dir=str(tmp_path / out.name), decode_backend=backend, workers=workers,
                         frame_cache_mb=0)  # no kept frames: the answer pass decodes in the workers

    gpu = Run(cfg(tmp_path / "nvdec", "nvdec", 2), progress=False).execute()
    cpu = Run(cfg(tmp_path / "pyav", "pyav", 0), progress=False).execute()
    for a, b in zip(gpu, cpu):
        ra, rb = _rows(a), _rows(b)
        assert sorted(ra) == sorted(rb) and len(ra) == 3
        for k in ra:
            assert ra[k]["selection"] == rb[k]["selection"]
            assert ra[k]["prediction"]["raw_text"] == rb[k]["prediction"]["raw_text"]
            assert ra[k]["prediction"].get("error") is None
    events = [json.loads(line) for line in (gpu[0] / "events.jsonl").read_text().splitlines()]
    decode = [e for e in events if e["event"] == "features"][-1]["decode"]
    assert decode["backend"] == "nvdec" and decode["workers_are"] == "threads" and decode["workers"] == 2
