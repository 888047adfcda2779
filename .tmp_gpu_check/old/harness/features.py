"""The feature store: per-video image features and per-question scores, decoded once and cached on disk.

    image features   (n, d) float32 projected (not normalised) features of a video's candidate frames, per (video, grid, encoder, dtype):
                     query-independent, shared by every question, sampler and run on that video
    text features    (d,) per (text, encoder)
    ITM scores       (n,) per (video, grid, BLIP scorer, question text): BLIP's matching head reads the question

`FeatureStore.ensure` computes whatever is missing for one video in a single decode pass, chunk by chunk (an hour
of frames never sits in memory), feeding every chunk to every encoder that still needs it, and counts what it
decoded: a second sampler or run on the same videos decodes nothing. Keys cover everything that could change the
numbers (video file identity, grid rule, encoder weights and revision, preprocessing, dtype, code version), so a
stale entry is never read: a changed input simply gives a different key.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from harness.errors import VideoError
from harness.fileio import atomic_write
from harness.hashing import canonical_json

FEATURES_VERSION = "2"  # bump when the way features are computed changes (2: raw projections, 1 was unit vectors)


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _digest(obj) -> str:
    """sha256 of a canonical JSON form: the same parts always give the same hex, whatever the dict order."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()

def cosine_scores(image_feats: np.ndarray, text_feat: np.ndarray) -> np.ndarray:
    """Cosine similarity of each of n image features with one text feature: (n, d), (d,) or (1, d) -> (n,)."""
    images = np.asarray(image_feats, np.float64)
    text = np.asarray(text_feat, np.float64).reshape(-1)
    norms = np.linalg.norm(images, axis=1) * np.linalg.norm(text)
    return images @ text / np.maximum(norms, 1e-12)  # guard: a zero vector scores 0, not NaN


def video_identity(path) -> dict:
    """What identifies a video's content for caching, without reading it: absolute path, size, mtime."""
    path = Path(path).expanduser().resolve()
    try:
        st = path.stat()
    except OSError as e:
        raise VideoError(f"cannot read video {str(path)!r}: {e.strerror or e}") from None
    return dict(video=str(path), video_size=st.st_size, video_mtime_ns=st.st_mtime_ns)


class FeatureCache:
    """Arrays on disk under `root`, one safetensors file per key with a JSON manifest next to it.

    Writes are atomic (a temp file in the same folder, then `os.replace`), so readers see either nothing or a
    whole file, a killed writer leaves at most a `.tmp` file that is never read, and concurrent writers of one
    key simply race to replace it with equal content. A corrupt entry (which atomic writes cannot produce: it
    means outside damage) is treated as missing, with a warning naming the file; the next `save` replaces it.
    """

    ARRAY = "features"

    def __init__(self, root):
        self.root = Path(root)

    @staticmethod
    def key(**parts) -> str:
        """A digest of named parts (order-independent)."""
        return _digest(parts)

    def path(self, key: str) -> Path:
        # Two-level fan-out keeps directories small on big benchmarks.
        return self.root / key[:2] / f"{key}.safetensors"

    def manifest_path(self, key: str) -> Path:
        return self.path(key).with_suffix(".json")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str, name: str = ARRAY) -> np.ndarray | None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            problem = None if name in tensors else f"no {name!r} array"
        except (SafetensorError, OSError, ValueError) as e:
            problem = _one_line(e)
        if problem:
            warnings.warn(f"ignoring corrupt feature cache file {path}: {problem}", stacklevel=2)
            return None
        return tensors[name]

    def save(self, key: str, array: np.ndarray, manifest: dict, extra: dict | None = None) -> None:
        """Store `array` (and named `extra` arrays, e.g. the grid's frame indices) with a JSON manifest."""
        from safetensors.numpy import save

        array = np.ascontiguousarray(array)
        arrays = {self.ARRAY: array, **{k: np.ascontiguousarray(v) for k, v in (extra or {}).items()}}
        manifest = dict(manifest, key=key, shape=list(array.shape), dtype=str(array.dtype))
        # Manifest first: whenever the array exists, its manifest does too.
        atomic_write(self.manifest_path(key),
                      (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))
        atomic_write(self.path(key), save(arrays, metadata={"key": key}))



class FeatureStore:
    """Image features, text features and ITM scores from the cache, computing what is missing (see the module
    docstring). `stats` counts videos and frames decoded and cache hits/misses, for the run's records."""

    def __init__(self, root, device: str = "cpu", dtype: str = "float32", chunk_size: int = 64):
        self.cache = FeatureCache(Path(root))
        self.device, self.dtype, self.chunk_size = device, dtype, chunk_size
        self._encoders: dict = {}
        self._recent: dict = {}  # the last few arrays read, so one question's several inputs read each file once
        self.stats: Counter = Counter()

    def encoder(self, spec: str):
        """The scorer a spec names (harness.encoders.load_encoder), loaded once per store."""
        if spec not in self._encoders:
            from harness.encoders import load_encoder
            self._encoders[spec] = load_encoder(spec, self.device, self.dtype)
        return self._encoders[spec]

    # -- keys ----------------------------------------------------------------------------------------------------
    def _video_parts(self, encoder, video: str, grid) -> dict:
        # the grid's own frame numbers, not only its rule: decoders may disagree on a file's fps or frame count
        frames = hashlib.sha256(np.asarray(grid.indices, np.int64).tobytes()).hexdigest()[:16]
        return dict(**video_identity(video), grid_rule=grid.rule, grid_frames=frames, n=len(grid),
                    encoder_id=encoder.encoder_id, preprocess=encoder.preprocess_id, dtype=self.dtype,
                    version=FEATURES_VERSION)

    def image_key(self, encoder, video: str, grid) -> str:
        return self.cache.key(kind="image", **self._video_parts(encoder, video, grid))

    def itm_key(self, scorer, video: str, grid, text: str) -> str:
        return self.cache.key(kind="itm", text=text, **self._video_parts(scorer, video, grid))

    def text_key(self, encoder, text: str) -> str:
        return self.cache.key(kind="text", text=text, encoder_id=encoder.encoder_id, dtype=self.dtype,
                              version=FEATURES_VERSION)

    # -- reading (computing what is missing) ----------------------------------------------------------------------
    def image_features(self, encoder, video: str, grid, reader) -> np.ndarray:
        self.ensure(video, grid, reader, image=[encoder])
        return self._load(self.image_key(encoder, video, grid))

    def itm_scores(self, scorer, video: str, grid, reader, text: str) -> np.ndarray:
        self.ensure(video, grid, reader, itm=[(scorer, text)])
        return self._load(self.itm_key(scorer, video, grid, text)).astype(np.float64)

    def text_feature(self, encoder, text: str) -> np.ndarray:
        key = self.text_key(encoder, text)
        cached = self._load(key)
        if cached is not None:
            self.stats["text_cached"] += 1
            return cached
        feature = encoder.text_features([text])[0]
        self.cache.save(key, feature, {"kind": "text", "text": text, "encoder": encoder.encoder_id,
                                       "dtype": self.dtype})
        self.stats["text_computed"] += 1
        return feature

    def ensure(self, video: str, grid, reader, image=(), itm=()) -> None:
        """Compute and store the missing image features (`image`: encoders) and ITM scores (`itm`: (scorer, text)
        pairs) of one video, in one decode pass over its candidate grid."""
        image = [e for e in dict.fromkeys(image) if not self._cached("image", self.image_key(e, video, grid))]
        itm = [(s, t) for s, t in dict.fromkeys(itm) if not self._cached("itm", self.itm_key(s, video, grid, t))]
        if not image and not itm:
            return
        from harness.video import iter_frames

        features = {e: [] for e in image}
        scorers = {}
        for scorer, text in itm:
            scorers.setdefault(scorer, []).append(text)
        scores = {s: [] for s in scorers}
        for _, frames in iter_frames(reader, grid.indices, self.chunk_size):
            self.stats["frames_decoded"] += len(frames)
            for encoder in image:
                features[encoder].append(encoder.image_features(frames))
            for scorer, texts in scorers.items():
                scores[scorer].append(scorer.scores(scorer.vision(frames), texts))
        self.stats["videos_decoded"] += 1
        where = dict(frame_indices=np.asarray(grid.indices, np.int64),
                     timestamps=np.asarray(grid.timestamps, np.float64))
        for encoder, parts in features.items():
            array = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)
            self.cache.save(self.image_key(encoder, video, grid), array, self._manifest("image", encoder, video, grid),
                            where)
            self.stats["image_computed"] += 1
        for scorer, texts in scorers.items():
            matrix = np.concatenate(scores[scorer], axis=1) if scores[scorer] else np.zeros((len(texts), 0))
            for text, row in zip(texts, matrix):
                self.cache.save(self.itm_key(scorer, video, grid, text), row,
                                dict(self._manifest("itm", scorer, video, grid), text=text), where)
                self.stats["itm_computed"] += 1

    def _load(self, key: str) -> np.ndarray | None:
        if key not in self._recent:
            array = self.cache.load(key)
            if array is None:
                return None
            if len(self._recent) >= 16:
                self._recent.pop(next(iter(self._recent)))
            self._recent[key] = array
        return self._recent[key]

    def _cached(self, kind: str, key: str) -> bool:
        hit = self._load(key) is not None  # a corrupt entry counts as missing and is recomputed
        self.stats[f"{kind}_cached"] += hit
        return hit

    def _manifest(self, kind: str, encoder, video: str, grid) -> dict:
        return {"kind": kind, "video": video, "grid": grid.rule, "n": len(grid), "encoder": encoder.encoder_id,
                "preprocess": encoder.preprocess_id, "dtype": self.dtype, "version": FEATURES_VERSION}
