"""Lazy, sparse scores: a sampler that scores only the candidates it asks for (FOCUS).

`LazyScores` is the input `lazy_scores` (harness.features.inputs): a callable the sampler gives grid positions and
gets one score per position back, for one (video, grid, scorer, question). It scores only what is not cached yet:
the missing positions are decoded in time order, chunk by chunk, and go through the scorer in batches; the scores
are those of the dense inputs for the same scorer (BLIP-type `itm` scorers: the match probability of the question;
CLIP-type encoders: the cosine of the frame's image feature and the question's text feature).

The cache holds one sparse entry per (video, grid, scorer, dtype, question): the positions scored so far and their
scores, stored by the feature store's `FeatureCache` under a key of those parts (kind `sparse-scores`). Like every
cache read it is used only when its key, key parts and content digest match and its arrays are consistent (as
many scores as positions, positions distinct and inside the grid); anything else is ignored with a warning and
rewritten on the next save. Every call that computed something writes the union back (atomically), so a second
question of a run, or a second run, scores nothing it already has.

Two counts: `scored`, the distinct positions the sampler asked for (its cost, the same whether or not they were
cached: the run's "frames scored" column), and `computed`, the positions this object ran through the scorer.
"""
from __future__ import annotations

import warnings

import numpy as np

from harness.errors import HarnessError
from harness.features.store import FeatureStore, cosine_scores

KIND = "sparse-scores"


def sparse_key(store: FeatureStore, scorer, video: str, grid, text: str):
    """The cache key of one (video, grid, scorer, dtype, question) sparse score entry."""
    return store.cache.key(kind=KIND, text=text, **store._video_parts(scorer, video, grid))


class LazyScores:
    """Scores of the grid positions a sampler asks for, computed on demand and cached sparsely (module docstring)."""

    def __init__(self, store: FeatureStore, scorer, video: str, grid, reader, text: str):
        if scorer.kind not in ("itm", "features"):
            raise HarnessError(f"encoder {scorer.encoder_id!r} (kind {scorer.kind!r}) gives no query scores to "
                               f"compute lazily; use a BLIP or CLIP encoder")
        self.store, self.scorer, self.video, self.grid, self.reader, self.text = \
            store, scorer, video, grid, reader, text
        self.n = len(grid)
        self.key = sparse_key(store, scorer, video, grid, text)
        self.known: dict[int, float] = self._read_cache()
        self.asked: set[int] = set()
        self.computed = 0

    @property
    def scored(self) -> int:
        """Distinct positions asked for so far: what the sampler's choice cost, cached or not."""
        return len(self.asked)

    def __call__(self, positions) -> np.ndarray:
        """float64 scores of `positions` (grid positions, any order, repeats allowed)."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < 0 or pos.max() >= self.n):
            raise HarnessError(f"lazy scores: positions outside the grid of {self.n} candidates")
        self.asked.update(pos.tolist())
        missing = sorted({int(p) for p in pos.tolist()} - set(self.known))
        if missing:
            self._compute(np.asarray(missing, dtype=np.int64))
        return np.asarray([self.known[int(p)] for p in pos], dtype=np.float64)

    # -- computing -----------------------------------------------------------------------------------------------
    def _compute(self, missing: np.ndarray) -> None:
        from harness.video.reader import iter_frames

        indices = np.asarray(self.grid.indices, np.int64)[missing]
        parts = []
        for _, frames in iter_frames(self.reader, indices.tolist(), self.store.chunk_size):
            self.store.stats["frames_decoded"] += len(frames)
            parts.append(self._score(frames))
        values = np.concatenate(parts) if parts else np.zeros(0, np.float64)
        self.store._finite(values, self.scorer, f"lazy scores of {self.video}")
        self.known.update(zip(missing.tolist(), values.tolist()))
        self.computed += len(missing)
        self.store.stats["sparse_computed"] += 1  # entries written (the run's "entries computed")
        self.store.stats["sparse_frames_scored"] += len(missing)
        self._write_cache()

    def _score(self, frames: np.ndarray) -> np.ndarray:
        if self.scorer.kind == "itm":
            return np.asarray(self.scorer.scores(self.scorer.vision(frames), [self.text])[0], np.float64)
        images = self.scorer.image_features(frames)
        return cosine_scores(images, self.store.text_feature(self.scorer, self.text)).astype(np.float64)

    # -- the sparse cache entry ----------------------------------------------------------------------------------
    def _read_cache(self) -> dict[int, float]:
        arrays = self.store.cache.load_arrays(self.key)
        if arrays is None:
            return {}
        positions, scores = arrays.get("positions"), arrays.get(self.store.cache.ARRAY)
        problem = None
        if positions is None or scores is None or positions.ndim != 1 or scores.shape != positions.shape:
            problem = "its positions and scores do not pair up"
        elif positions.size and (positions.min() < 0 or positions.max() >= self.n
                                 or np.unique(positions).size != positions.size):
            problem = f"its positions are not distinct positions of a grid of {self.n}"
        if problem:
            warnings.warn(f"ignoring feature cache file {self.store.cache.path(self.key)} and recomputing it: "
                          f"{problem}", stacklevel=2)
            return {}
        self.store.stats["sparse_cached"] += 1
        return dict(zip(positions.astype(np.int64).tolist(), scores.astype(np.float64).tolist()))

    def _write_cache(self) -> None:
        positions = np.asarray(sorted(self.known), dtype=np.int64)
        scores = np.asarray([self.known[int(p)] for p in positions], dtype=np.float64)
        manifest = dict(self.store._manifest(KIND, self.scorer, self.video, self.grid), text=self.text,
                        scored=int(positions.size))
        self.store.cache.save(self.key, scores, manifest, {"positions": positions})
