"""One decode per video shared by the feature pass and the answer pass (--frame-cache-mb): the same rows with and
without it, one decode pass per video with it, and a byte limit that holds."""
import json
from pathlib import Path

import numpy as np
import pytest

from harness.config import RunConfig
from harness.run.runner import Run
from harness.util.synth import decode_index, write_index_clip
from harness.video.framecache import SharedReader
from harness.video.reader import open_video


def _rows(run_dir: Path) -> dict:
    return {r["sample_id"]: r for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())}


def _decode_event(run_dir: Path) -> dict:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "features"][-1]["decode"]


def _cfg(out, cache, **kw):
    return RunConfig(**{"task": "smoke", "backbone": "colour-probe", "task_args": {"videos": 3, "duration": 12.0},
                        "samplers": ["uniform", "topk:encoder=mini-clip"], "out": str(out),
                        "cache_dir": str(cache), "workers": 0, **kw})  # the sequential executor unless a test says


@pytest.mark.parametrize("workers", [0, 1])
def test_same_rows_with_and_without_sharing_and_one_decode_per_video(tmp_path, workers):
    shared = Run(_cfg(tmp_path / "shared", tmp_path / "c1", workers=workers), progress=False).execute()
    plain = Run(_cfg(tmp_path / "plain", tmp_path / "c2", workers=workers, frame_cache_mb=0),
                progress=False).execute()
    for a, b in zip(shared, plain):
        assert a.name == b.name  # not part of the run identity
        ra, rb = _rows(a), _rows(b)
        assert sorted(ra) == sorted(rb) and len(ra) == 3
        for k in ra:
            assert ra[k]["selection"] == rb[k]["selection"]
            assert ra[k]["prediction"]["raw_text"] == rb[k]["prediction"]["raw_text"]
    on, off = _decode_event(shared[0]), _decode_event(plain[0])
    assert on["videos"] == off["videos"] == 3
    assert on["decode_passes"] == 3 and on["max_passes_per_video"] == 1 and on["frames_reused"] > 0
    assert off["decode_passes"] > 3 and off["frames_reused"] == 0
    assert on["frame_cache_bytes"] == 1024 << 20 and off["frame_cache_bytes"] == 0
    assert json.loads((shared[0] / "config.json").read_text())["run"]["frame_cache_mb"] == 1024


def test_answers_decode_once_where_features_were_cached(tmp_path):
    """A second run on the same feature cache decodes nothing for features: its answers still take one pass."""
    Run(_cfg(tmp_path / "first", tmp_path / "cache"), progress=False).execute()
    dirs = Run(_cfg(tmp_path / "second", tmp_path / "cache"), progress=False).execute()
    event = _decode_event(dirs[0])
    assert event["decode_passes"] == 3 and event["frames_reused"] > 0


def test_shared_reader_keeps_within_its_limit_and_returns_exact_frames(tmp_path):
    path = tmp_path / "clip.mp4"
    write_index_clip(path, 60, 30, gop=12)
    frame_bytes = 96 * 128 * 3
    with open_video(path, "pyav") as inner:
        reader = SharedReader(inner, 10 * frame_bytes)
        first = reader.get_frames(np.arange(0, 60, 4))  # 15 frames: 10 kept, 5 over the limit
        assert [decode_index(f) for f in first] == list(range(0, 60, 4))
        assert reader.counts["frames_kept"] == 10 and reader.counts["over_limit"] == 5
        again = reader.get_frames([0, 4, 4, 36, 40, 59])
        assert [decode_index(f) for f in again] == [0, 4, 4, 36, 40, 59]
        assert np.array_equal(again[:4], first[[0, 1, 1, 9]])
        assert reader.counts["frames_reused"] == 3 and reader.counts["passes"] == 2  # 40, 59: a second walk
        assert reader.kept([0, 36]) and not reader.kept([40])
