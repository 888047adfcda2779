"""Lazy, sparse scores (harness.features.sparse): only the positions a sampler asks for are decoded and scored, a
second ask (or a second store on the same cache) hits the sparse cache entry, an entry that is damaged or belongs to
another key is refused and recomputed, and the counts are the distinct positions asked for. Scores equal the dense
ones of the same scorer (computed by the feature store's own dense path)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness.config import RunConfig  # noqa: E402
from harness.features.sparse import LazyScores, sparse_key  # noqa: E402
from harness.features.store import FeatureStore  # noqa: E402
from harness.registry import TASKS  # noqa: E402
from harness.run.runner import Run  # noqa: E402
from harness.video.grid import make_grid  # noqa: E402
from harness.video.reader import open_video  # noqa: E402


class MeanScorer:
    """An ITM-kind scorer whose score is a frame's mean pixel / 255; it records every frame it scores."""

    kind = "itm"
    encoder_id = "test:mean-pixel"
    preprocess_id = "none"

    def __init__(self):
        self.seen = 0

    def vision(self, frames):
        return frames

    def scores(self, vision, texts):
        self.seen += len(vision)
        return np.stack([vision.reshape(len(vision), -1).mean(1) / 255.0 for _ in texts])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    return TASKS.create("smoke", videos=1, duration=12.0, root=str(root)).samples()[0].video


def lazy(store, scorer, video, text="where is the square?"):
    reader = open_video(video)
    grid = make_grid(reader.meta.frame_count, reader.meta.fps, "1fps")
    return LazyScores(store, scorer, video, grid, reader, text), reader, grid


def test_only_asked_positions_are_scored_and_counted(tmp_path, video):
    store, scorer = FeatureStore(tmp_path), MeanScorer()
    scores, reader, grid = lazy(store, scorer, video)
    with reader:
        first = scores([7, 2, 7])
        assert scorer.seen == 2 and scores.scored == 2 and scores.computed == 2  # positions 2 and 7, once each
        assert store.stats["frames_decoded"] == 2
        frames = reader.get_frames([grid.indices[2], grid.indices[7]])
        expected = frames.reshape(2, -1).mean(1) / 255.0
        np.testing.assert_allclose(first, [expected[1], expected[0], expected[1]])
        scores([2, 3])  # 2 is known: only 3 is scored
        assert scorer.seen == 3 and scores.scored == 3 and scores.computed == 3


def test_second_store_on_the_cache_scores_nothing_it_has(tmp_path, video):
    scorer = MeanScorer()
    one, reader, _ = lazy(FeatureStore(tmp_path), scorer, video)
    with reader:
        values = one([1, 4, 9])
    two, reader, _ = lazy(FeatureStore(tmp_path), scorer, video)
    with reader:
        np.testing.assert_array_equal(two([9, 4, 1]), values[::-1])
        assert two.computed == 0 and two.scored == 3 and scorer.seen == 3  # cost counted, nothing recomputed
        two([0])
    assert scorer.seen == 4
    other, reader, _ = lazy(FeatureStore(tmp_path), scorer, video, text="another question")
    with reader:
        other([1])  # another question: another entry
    assert other.computed == 1 and scorer.seen == 5


def test_a_damaged_or_foreign_entry_is_refused_and_recomputed(tmp_path, video):
    store, scorer = FeatureStore(tmp_path), MeanScorer()
    one, reader, grid = lazy(store, scorer, video)
    with reader:
        one([1, 2])
    path = store.cache.path(one.key)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # edit a stored value: the content digest no longer matches
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its digest"):
        two, reader, _ = lazy(FeatureStore(tmp_path), scorer, video)
    with reader:
        two([1, 2])
    assert two.computed == 2 and scorer.seen == 4
    # another question's entry copied over this one's file: refused as the entry of another key
    other, reader, _ = lazy(FeatureStore(tmp_path), scorer, video, text="another question")
    with reader:
        other([5])
    store.cache.path(other.key).replace(path)
    with pytest.warns(UserWarning, match="entry of another key"):
        three, reader, _ = lazy(FeatureStore(tmp_path), scorer, video)
    with reader:
        three([1])
    assert three.computed == 1
    assert sparse_key(store, scorer, video, grid, "where is the square?") == one.key


def test_positions_outside_the_grid_are_refused(tmp_path, video):
    scores, reader, grid = lazy(FeatureStore(tmp_path), MeanScorer(), video)
    with reader, pytest.raises(Exception, match="outside the grid"):
        scores([len(grid)])


def test_lazy_clip_scores_equal_the_dense_cosines(tmp_path, video, tiny_clip):
    store = FeatureStore(tmp_path)
    encoder = store.encoder(str(tiny_clip))
    scores, reader, grid = lazy(store, encoder, video)
    with reader:
        asked = [0, 5, 11]
        values = scores(asked)
        dense = store.image_features(encoder, video, grid, reader)
    text = store.text_feature(encoder, "where is the square?")
    cos = dense @ text / np.linalg.norm(dense, axis=1) / np.linalg.norm(text)
    np.testing.assert_allclose(values, cos[asked], atol=1e-5)


def test_runs_record_the_frames_focus_asked_for(tmp_path):
    def run(out):
        cfg = RunConfig(task="smoke", task_args={"videos": 2, "duration": 40.0}, backbone="none", frames=4,
                        samplers=["focus:encoder=mini-clip"], out=str(tmp_path / out), cache_dir=str(tmp_path / "c"))
        (run_dir,) = Run(cfg, progress=False).execute()
        return [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]

    first, second = run("a"), run("b")
    grid = 40  # 40 s at 8 fps on the 1fps grid: 40 candidates
    # 8 arms of 5 (D = max(8, ceil(40 / 16))), centre + 2 others each = 24 coarse; fine: the top 4 arms' windows of
    # half width round(2.5) = 2 (5 frames), all of which end up scored: 24 + 4 * 2 = 32 frames, whatever the scores
    assert [r["cost"]["frames_scored"] for r in first] == [32] * len(first)
    assert all(0 < r["cost"]["frames_scored"] < grid for r in second)
    assert [r["cost"] for r in first] == [r["cost"] for r in second]  # the method's cost, cached or not
    assert [r["selection"]["positions"] for r in first] == [r["selection"]["positions"] for r in second]
