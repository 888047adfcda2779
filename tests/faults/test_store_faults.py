"""Faults of the feature store (issue 16, item 3, and NaN features): an entry is used only when it carries its own key
and its content matches its digest and expected shape; anything else (another video's entry copied in, rows shuffled
or edited, a truncated file, a wrong shape) is recomputed with one warning naming the file, never used and never an
error row. Non-finite features from a corrupt encoder are never cached: FatalError naming the encoder and its
weights. An OSError while writing the cache (read-only, full disk) propagates as OSError.

Reference values come from the encoder run directly on the decoded frames, not from the store under test.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import errno
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness.config import RunConfig
from harness.errors import FatalError
from harness.features.store import FeatureStore
from harness.registry import TASKS
from harness.run.runner import Run
from harness.video.grid import make_grid
from harness.video.reader import open_video

SMOKE = {"videos": 3, "duration": 12.0}


@pytest.fixture(scope="module")
def smoke_videos(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("smoke-store-faults")
    samples = TASKS.create("smoke", root=str(root), **SMOKE).samples()
    return sorted({str(Path(s.video).resolve()) for s in samples})


def grid_of(video):
    with open_video(video) as reader:
        return make_grid(reader.meta.frame_count, reader.meta.fps, "1fps")


def features(store, encoder, video) -> np.ndarray:
    with open_video(video) as reader:
        return store.image_features(encoder, video, grid_of(video), reader)


def reference(encoder, video) -> np.ndarray:
    """The encoder on the grid's frames, in one batch: independent of the store."""
    grid = grid_of(video)
    with open_video(video) as reader:
        return encoder.image_features(reader.get_frames(grid.indices))


def entry(store, encoder, video) -> Path:
    return store.cache.path(store.image_key(encoder, video, grid_of(video)))


def filled(tmp_path, tiny_clip, videos):
    """A cache holding every video's image features, and a fresh store on it (nothing remembered in memory)."""
    store = FeatureStore(tmp_path / "cache")
    encoder = store.encoder(str(tiny_clip))
    for v in videos:
        features(store, encoder, v)
    fresh = FeatureStore(tmp_path / "cache")
    return fresh, fresh.encoder(str(tiny_clip))


def rewrite(path: Path, change) -> None:
    """Rewrite a safetensors entry keeping its header metadata, with `change(tensors)` applied: damage that leaves
    the header intact."""
    from safetensors import safe_open
    from safetensors.numpy import save

    with safe_open(path, "numpy") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    path.write_bytes(save(change(tensors), metadata=metadata))


def recomputed(store, encoder, video, path: Path) -> np.ndarray:
    """Read the features of `video`, expecting exactly one warning line that names the damaged file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = features(store, encoder, video)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and path.name in messages[0] and "\n" not in messages[0], messages
    assert store.stats["image_computed"] == 1
    return got


def test_another_videos_entry_copied_over_an_entry_is_recomputed(tiny_clip, smoke_videos, tmp_path):
    a, b = smoke_videos[:2]
    store, encoder = filled(tmp_path, tiny_clip, smoke_videos)
    shutil.copyfile(entry(store, encoder, b), entry(store, encoder, a))
    got = recomputed(store, encoder, a, entry(store, encoder, a))
    np.testing.assert_allclose(got, reference(encoder, a), atol=1e-5)
    # the entry on disk is whole again: a new store reads it without a warning or a decode
    again = FeatureStore(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(features(again, again.encoder(str(tiny_clip)), a), got)
    assert again.stats["image_cached"] == 1 and again.stats["frames_decoded"] == 0


def test_shuffled_rows_in_an_entry_are_recomputed(tiny_clip, smoke_videos, tmp_path):
    video = smoke_videos[0]
    store, encoder = filled(tmp_path, tiny_clip, [video])
    order = np.random.default_rng(0).permutation(len(grid_of(video)))
    rewrite(entry(store, encoder, video), lambda t: dict(t, features=t["features"][order]))
    got = recomputed(store, encoder, video, entry(store, encoder, video))
    np.testing.assert_allclose(got, reference(encoder, video), atol=1e-5)


def test_an_edited_value_is_recomputed(tiny_clip, smoke_videos, tmp_path):
    video = smoke_videos[0]
    store, encoder = filled(tmp_path, tiny_clip, [video])

    def edit(t):
        edited = t["features"].copy()
        edited[3, 5] += 1.0
        return dict(t, features=edited)

    rewrite(entry(store, encoder, video), edit)
    np.testing.assert_allclose(recomputed(store, encoder, video, entry(store, encoder, video)),
                               reference(encoder, video), atol=1e-5)


def test_a_truncated_entry_is_recomputed(tiny_clip, smoke_videos, tmp_path):
    video = smoke_videos[0]
    store, encoder = filled(tmp_path, tiny_clip, [video])
    path = entry(store, encoder, video)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 100])
    np.testing.assert_allclose(recomputed(store, encoder, video, path), reference(encoder, video), atol=1e-5)


def test_an_entry_without_its_key_and_digest_is_recomputed(tiny_clip, smoke_videos, tmp_path):
    """What the previous code version wrote (only {"key": ...} in the header) is stale."""
    video = smoke_videos[0]
    store, encoder = filled(tmp_path, tiny_clip, [video])
    path = entry(store, encoder, video)
    from safetensors.numpy import load_file, save

    path.write_bytes(save(load_file(path), metadata={"key": path.stem}))
    np.testing.assert_allclose(recomputed(store, encoder, video, path), reference(encoder, video), atol=1e-5)


def test_a_wrong_shape_is_recomputed_and_never_an_error_row(tiny_clip, smoke_videos, tmp_path):
    """An entry whose key and digest are in order but whose shape is wrong (one row short) is recomputed; a run on
    that cache gives the same rows as a run on a clean one, and no error row."""
    def cfg(out):
        return RunConfig(task="smoke", task_args={**SMOKE, "root": str(Path(smoke_videos[0]).parent)},
                         backbone="colour-probe", samplers=[f"topk:encoder={tiny_clip}"], frames=4,
                         cache_dir=str(tmp_path / "cache"), out=str(tmp_path / out))

    def rows(run_dir):
        out = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
        for r in out:
            r["prediction"].pop("timings", None)
        return [{k: r[k] for k in ("sample_id", "selection", "prediction")} for r in out]

    [clean] = Run(cfg("clean"), progress=False).execute()
    video = smoke_videos[1]
    store = FeatureStore(tmp_path / "cache")
    encoder = store.encoder(str(tiny_clip))
    grid = grid_of(video)
    key = store.image_key(encoder, video, grid)
    short = store.cache.load(key)[:-1]
    store.cache.save(key, short, store._manifest("image", encoder, video, grid),
                     dict(frame_indices=np.asarray(grid.indices[:-1], np.int64),
                          timestamps=np.asarray(grid.timestamps[:-1], np.float64)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [damaged] = Run(cfg("damaged"), progress=False).execute()
    assert "error" not in [r["prediction"]["parse_status"] for r in rows(damaged)]  # no error row
    assert rows(damaged) == rows(clean)
    assert [str(w.message) for w in caught if store.cache.path(key).name in str(w.message)]
    assert FeatureStore(tmp_path / "cache").cache.load(key).shape == (len(grid), encoder.dim)


def test_text_entry_of_another_text_is_recomputed(tiny_clip, tmp_path):
    store = FeatureStore(tmp_path / "cache")
    encoder = store.encoder(str(tiny_clip))
    store.text_feature(encoder, "where is the red square?")
    store.text_feature(encoder, "where is the blue square?")
    red, blue = (store.cache.path(store.text_key(encoder, t)) for t in ("where is the red square?",
                                                                         "where is the blue square?"))
    shutil.copyfile(blue, red)
    fresh = FeatureStore(tmp_path / "cache")
    with pytest.warns(UserWarning, match=red.name):
        got = fresh.text_feature(fresh.encoder(str(tiny_clip)), "where is the red square?")
    np.testing.assert_allclose(got, encoder.text_features(["where is the red square?"])[0], atol=1e-5)
    assert fresh.stats["text_computed"] == 1


# -- non-finite features: never cached, the run stops ---------------------------------------------------------------
def test_nan_image_features_are_fatal_and_never_cached(tiny_clip, smoke_videos, tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "cache")
    encoder = store.encoder(str(tiny_clip))
    monkeypatch.setattr(encoder, "image_features",
                        lambda frames, **kw: np.full((len(frames), encoder.dim), np.nan, np.float32))
    with pytest.raises(FatalError) as info:
        features(store, encoder, smoke_videos[0])
    message = str(info.value)
    assert str(tiny_clip) in message and "\n" not in message
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_inf_text_features_are_fatal_and_never_cached(tiny_clip, tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "cache")
    encoder = store.encoder(str(tiny_clip))
    monkeypatch.setattr(encoder, "text_features", lambda texts, **kw: np.full((len(texts), encoder.dim), np.inf,
                                                                              np.float32))
    with pytest.raises(FatalError, match="text") as info:
        store.text_feature(encoder, "where is the red square?")
    assert str(tiny_clip) in str(info.value)
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


# -- a cache that cannot be written: OSError propagates -------------------------------------------------------------
def test_read_only_cache_directory_raises_oserror(tiny_clip, smoke_videos, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    store = FeatureStore(cache)
    encoder = store.encoder(str(tiny_clip))
    if os.geteuid() == 0:  # root writes through chmod: inject the read-only file system at the write instead
        import harness.util.fileio as fileio

        def read_only(path, data):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

        monkeypatch.setattr(fileio, "atomic_write", read_only)
        monkeypatch.setattr("harness.features.store.atomic_write", read_only)
    cache.chmod(0o555)
    try:
        with pytest.raises(OSError) as info:
            features(store, encoder, smoke_videos[0])
    finally:
        cache.chmod(0o755)
    assert not isinstance(info.value, FatalError) and info.value.errno in (errno.EACCES, errno.EROFS, errno.EPERM)
    assert not list(cache.rglob("*.safetensors"))
