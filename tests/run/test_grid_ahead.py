"""The pipelined runner's workers decode a video's candidate grid ahead of its feature pass (harness.run.pipelined):
the rows are those of decoding in the main process; it happens only where the feature pass has something to
compute and the grid fits the frame cache, and the decode record counts it."""
import json

import numpy as np
import pytest

from harness.config import RunConfig
from harness.errors import VideoError
from harness.run.runner import Run
from harness.video.framecache import SharedReader
from harness.video.reader import open_video
from tests.run.test_decode_threads import _rows

pytest.importorskip("torch")


def _cfg(tmp_path, name, cache="cache", duration=12.0, **kw):
    return RunConfig(task="smoke", backbone="colour-probe", task_args={"videos": 3, "duration": duration},
                     samplers=["uniform", "topk:encoder=mini-clip"], out=str(tmp_path / name),
                     cache_dir=str(tmp_path / cache), decode_backend="pyav", **kw)


def _decode_record(run_dir):
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "features"][-1]["decode"]


def _answers(run_dir):
    return {k: (r["selection"], r["prediction"]["raw_text"], r["prediction"].get("error"))
            for k, r in _rows(run_dir).items()}


def test_grids_decoded_ahead_give_the_rows_of_the_main_process_decoding(tmp_path):
    ahead = Run(_cfg(tmp_path, "ahead", cache="cache-ahead", workers=1), progress=False).execute()
    alone = Run(_cfg(tmp_path, "alone", cache="cache-alone", workers=0), progress=False).execute()
    for a, b in zip(ahead, alone):
        assert _answers(a) == _answers(b) and len(_answers(a)) == 3
    record = _decode_record(ahead[0])
    assert record["grids_decoded_ahead"] == 3 and record["videos_decoded_once"] == 3
    assert record["jobs_by_backend"] == {"pyav": 0}  # the answers' frames came from the kept grids
    assert "grids_decoded_ahead" not in _decode_record(alone[0])
    # features cached now: nothing to decode ahead (a warm run decodes no grid)
    warm = Run(_cfg(tmp_path, "warm", cache="cache-ahead", workers=1), progress=False).execute()
    assert _decode_record(warm[0])["grids_decoded_ahead"] == 0
    assert _answers(warm[0]) == _answers(ahead[0])


def test_a_grid_over_the_frame_cache_is_not_decoded_ahead(tmp_path):
    # 40 grid frames of 128x96 are 1.5 MB: over a 1 MiB frame cache, which would not keep them
    [run_dir, _] = Run(_cfg(tmp_path, "small", duration=40.0, workers=1, frame_cache_mb=1),
                       progress=False).execute()
    assert _decode_record(run_dir)["grids_decoded_ahead"] == 0
    [run_dir, _] = Run(_cfg(tmp_path, "big", cache="cache-big", duration=40.0, workers=1, frame_cache_mb=2),
                       progress=False).execute()
    assert _decode_record(run_dir)["grids_decoded_ahead"] == 3


def test_a_grid_not_decoded_ahead_is_decoded_by_the_feature_pass(tmp_path, monkeypatch):
    import harness.run.pipelined as pipelined

    def failed(pool, future, sel, counts):  # as when the worker's job failed: the feature pass decodes
        pool.collect(future)
        return None

    monkeypatch.setattr(pipelined, "_decoded_ahead", failed)
    failing = Run(_cfg(tmp_path, "failing", cache="cache-failing", workers=1), progress=False).execute()
    alone = Run(_cfg(tmp_path, "alone", cache="cache-alone", workers=0), progress=False).execute()
    for a, b in zip(failing, alone):
        assert _answers(a) == _answers(b)
    assert _decode_record(failing[0])["grids_decoded_ahead"] == 0


def test_seeded_frames_are_served_without_decoding(tmp_path):
    from harness.util.synth import decode_index, write_index_clip

    path = tmp_path / "index.mp4"
    write_index_clip(path, 40, 10, gop=12)
    idx = [0, 10, 20, 30]
    with open_video(str(path), "pyav") as plain:
        frames = plain.get_frames(idx)
    reader = SharedReader(open_video(str(path), "pyav"), 1 << 30)
    with reader:
        with pytest.raises(VideoError, match="decoded ahead"):
            reader.seed(idx, frames[:2])
        reader.seed(idx, frames)
        assert reader.kept(idx) and [decode_index(f) for f in reader.get_frames([10, 30])] == [10, 30]
        assert reader.counts["frames_decoded"] == 4 and reader.counts["frames_reused"] == 2
        assert reader.counts["passes"] == 1 and reader.counts["decoded_ahead"] == 4
        assert np.array_equal(reader.get_frames([5])[0], open_video(str(path), "pyav").get_frames([5])[0])
