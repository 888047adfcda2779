"""The feature store: per-video image features and per-question scores, decoded once and cached on disk.

    image features   (n, d) float32 projected (not normalised) features of a video's candidate frames, per (video, grid, encoder, dtype):
                     query-independent, shared by every question, sampler and run on that video
    text features    (d,) per (text, encoder)
    ITM scores       (n,) per (video, grid, BLIP scorer, question text): BLIP's matching head reads the question
    frame diffs      (n,) float64 per (video, grid, frame-diff scorer and its parameters): a value per candidate
                     against the previous candidate (PySceneDetect's content value), query-independent, any dtype
    sparse scores    (m,) float64 and their m grid positions per (video, grid, scorer, question): only the candidates
                     a lazy sampler asked for (harness.features.sparse), grown as it asks for more

`FeatureStore.ensure` computes whatever is missing for one video in a single decode pass, chunk by chunk (an hour
of frames never sits in memory), feeding every chunk to every encoder that still needs it, and counts what it
decoded: a second sampler or run on the same videos decodes nothing. Keys cover everything that could change the
numbers (video file identity, grid rule, encoder weights and revision, preprocessing, dtype, code version), so a
stale entry is never read: a changed input simply gives a different key.

Nothing read back is trusted: each entry carries its key parts and a digest of its content, and is used only when
both match and its shape is the expected one (`FeatureCache.load`); anything else is recomputed with a warning.
Features or scores that are not finite (a corrupt encoder) are never cached: FatalError names the encoder. An
OSError while writing the cache (read-only, full disk) propagates: the run stops.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from harness.errors import FatalError, VideoError
from harness.util.fileio import atomic_write
from harness.util.text import one_line
from harness.util.hashing import canonical_json, digest

# Bump when the way features are computed or stored changes (3: entries carry their key parts and a content digest,
# so entries of version 2, which had neither, are never read; 2: raw projections; 1 was unit vectors).
FEATURES_VERSION = "3"


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


class CacheKey(str):
    """A cache key (the sha256 of its parts) that keeps its parts, so the entry written under it can carry them."""

    parts: dict

    def __new__(cls, parts: dict):
        key = super().__new__(cls, digest(parts))
        key.parts = parts
        return key


def content_digest(arrays: dict) -> str:
    """sha256 of every named array's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        h.update(canonical_json([name, array.dtype.str, list(array.shape)]).encode("utf-8"))
        h.update(array.tobytes())
    return h.hexdigest()


def _other_parts(stored: dict, wanted: dict) -> str:
    """The first few key parts where an entry's stored parts differ from the wanted ones, for a warning."""
    names = sorted(n for n in set(stored) | set(wanted) if stored.get(n) != wanted.get(n))
    return ", ".join(f"{n} {stored.get(n)!r} instead of {wanted.get(n)!r}" for n in names[:3])


class FeatureCache:
    """Arrays on disk under `root`, one safetensors file per key with a JSON manifest next to it.

    Writes are atomic (a temp file in the same folder, then `os.replace`), so readers see either nothing or a
    whole file, a killed writer leaves at most a `.tmp` file that is never read, and concurrent writers of one
    key simply race to replace it with equal content. An OSError while writing (read-only, full disk) propagates.

    Each file's header metadata carries its key, the key's parts and a digest of its arrays (`content_digest`).
    `load` uses an entry only when the key and parts are the ones asked for, the content matches the digest and the
    shape is the expected one; anything else (outside damage: a truncated file, another entry copied in, edited
    values, an entry of an older version) is treated as missing, with one warning naming the file and the problem,
    and the next `save` replaces it.
    """

    ARRAY = "features"

    def __init__(self, root):
        self.root = Path(root)

    @staticmethod
    def key(**parts) -> CacheKey:
        """A digest of named parts (order-independent), which remembers its parts."""
        return CacheKey(parts)

    def path(self, key: str) -> Path:
        # Two-level fan-out keeps directories small on big benchmarks.
        return self.root / key[:2] / f"{key}.safetensors"

    def manifest_path(self, key: str) -> Path:
        return self.path(key).with_suffix(".json")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str, name: str = ARRAY, shape: tuple | None = None) -> np.ndarray | None:
        """The array `name` of the entry for `key`, or None when there is none or it is not to be trusted (with a
        warning). `shape`: the shape the caller expects, checked when given."""
        arrays = self.load_arrays(key, name, shape)
        return None if arrays is None else arrays[name]

    def load_arrays(self, key: str, name: str = ARRAY, shape: tuple | None = None) -> dict | None:
        """Every array of the entry for `key` by name (a sparse entry: its scores and their positions), under the
        checks of `load`; None when there is none or it is not to be trusted (with a warning)."""
        from safetensors import SafetensorError, safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "numpy") as f:
                metadata = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            problem = self._problem(key, metadata, tensors, name, shape)
        except (SafetensorError, OSError, ValueError) as e:
            problem = f"unreadable ({one_line(e)})"
        if problem:
            warnings.warn(f"ignoring feature cache file {path} and recomputing it: {problem}", stacklevel=3)
            return None
        return tensors

    @staticmethod
    def _problem(key: str, metadata: dict, tensors: dict, name: str, shape) -> str | None:
        """What is wrong with an entry read for `key`, or None."""
        if not {"key", "parts", "digest"} <= set(metadata):
            return "it carries no key parts or content digest (written by an older version)"
        stored = json.loads(metadata["parts"])
        if metadata["key"] != key or digest(stored) != key:
            wanted = getattr(key, "parts", None)
            differ = _other_parts(stored, wanted) if isinstance(stored, dict) and wanted else ""
            return f"it is the entry of another key{f' ({differ})' if differ else ''}"
        if name not in tensors:
            return f"no {name!r} array"
        if content_digest(tensors) != metadata["digest"]:
            return "its content does not match its digest (edited or damaged)"
        if shape is not None and tuple(tensors[name].shape) != tuple(shape):
            return f"shape {tuple(tensors[name].shape)} where {tuple(shape)} is expected"
        return None

    def save(self, key: CacheKey, array: np.ndarray, manifest: dict, extra: dict | None = None) -> None:
        """Store `array` (and named `extra` arrays, e.g. the grid's frame indices) with a JSON manifest, under a key
        from `FeatureCache.key`. A non-finite array is refused (FatalError naming the manifest's encoder)."""
        from safetensors.numpy import save

        if not isinstance(key, CacheKey):
            raise TypeError("FeatureCache.save takes a key made by FeatureCache.key (it carries its parts)")
        array = np.ascontiguousarray(array)
        if not np.isfinite(array).all():  # the store checks first and names the spec; this guards other writers
            raise FatalError(f"refusing to cache non-finite (NaN or inf) features from encoder "
                             f"{manifest.get('encoder', '?')} for {self.path(key)}: its weights are corrupt")
        arrays = {self.ARRAY: array, **{k: np.ascontiguousarray(v) for k, v in (extra or {}).items()}}
        content = content_digest(arrays)
        manifest = dict(manifest, key=key, shape=list(array.shape), dtype=str(array.dtype), digest=content)
        # Manifest first: whenever the array exists, its manifest does too.
        atomic_write(self.manifest_path(key),
                     (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))
        atomic_write(self.path(key), save(arrays, metadata={"key": str(key), "parts": canonical_json(key.parts),
                                                            "digest": content}))


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
        """The scorer a spec names (harness.features.encoders.load_encoder), loaded once per store."""
        if spec not in self._encoders:
            from harness.features.encoders import load_encoder
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

    def diff_key(self, scorer, video: str, grid) -> str:
        parts = self._video_parts(scorer, video, grid)
        del parts["dtype"]  # computed in float64 from the uint8 frames whatever the run's dtype
        return self.cache.key(kind="frame-diff", **parts)

    def text_key(self, encoder, text: str) -> str:
        return self.cache.key(kind="text", text=text, encoder_id=encoder.encoder_id, dtype=self.dtype,
                              version=FEATURES_VERSION)

    # -- reading (computing what is missing) ----------------------------------------------------------------------
    def image_features(self, encoder, video: str, grid, reader) -> np.ndarray:
        self.ensure(video, grid, reader, image=[encoder])
        return self._read(self.image_key(encoder, video, grid), (len(grid), encoder.dim))

    def itm_scores(self, scorer, video: str, grid, reader, text: str) -> np.ndarray:
        self.ensure(video, grid, reader, itm=[(scorer, text)])
        return self._read(self.itm_key(scorer, video, grid, text), (len(grid),)).astype(np.float64)

    def frame_diffs(self, scorer, video: str, grid, reader) -> np.ndarray:
        self.ensure(video, grid, reader, diffs=[scorer])
        return self._read(self.diff_key(scorer, video, grid), (len(grid),))

    def text_feature(self, encoder, text: str) -> np.ndarray:
        key = self.text_key(encoder, text)
        cached = self._load(key, (encoder.dim,))
        if cached is not None:
            self.stats["text_cached"] += 1
            return cached
        feature = self._finite(encoder.text_features([text])[0], encoder, f"text features of {text!r}")
        self.cache.save(key, feature, {"kind": "text", "text": text, "encoder": encoder.encoder_id,
                                       "dtype": self.dtype})
        self._remember(key, feature)
        self.stats["text_computed"] += 1
        return feature

    def ensure(self, video: str, grid, reader, image=(), itm=(), diffs=()) -> None:
        """Compute and store the missing image features (`image`: encoders), ITM scores (`itm`: (scorer, text)
        pairs) and frame differences (`diffs`: frame-diff scorers) of one video, in one decode pass over its
        candidate grid. Nothing is stored unless everything computed is finite (else FatalError naming the
        encoder)."""
        image, itm, diffs = self.missing(video, grid, image, itm, diffs)
        if not image and not itm and not diffs:
            return
        from harness.video.reader import iter_frames

        features = {e: [] for e in image}
        scorers = {}
        for scorer, text in itm:
            scorers.setdefault(scorer, []).append(text)
        scores = {s: [] for s in scorers}
        runs = {s: s.start() for s in diffs}  # each carries the previous frame across chunks
        values = {s: [] for s in diffs}
        for _, frames in iter_frames(reader, grid.indices, self.chunk_size):
            self.stats["frames_decoded"] += len(frames)
            for encoder in image:
                features[encoder].append(encoder.image_features(frames))
            for scorer, texts in scorers.items():
                scores[scorer].append(scorer.scores(scorer.vision(frames), texts))
            for scorer, run in runs.items():
                values[scorer].append(run.update(frames))
        self.stats["videos_decoded"] += 1
        entries = []  # (kind, key, array, manifest), all checked before any is written
        for encoder, parts in features.items():
            array = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)
            entries.append(("image", self.image_key(encoder, video, grid),
                            self._finite(array, encoder, f"image features of {video}"),
                            self._manifest("image", encoder, video, grid)))
        for scorer, texts in scorers.items():
            matrix = np.concatenate(scores[scorer], axis=1) if scores[scorer] else np.zeros((len(texts), 0))
            self._finite(matrix, scorer, f"image-text matching scores of {video}")
            entries += [("itm", self.itm_key(scorer, video, grid, text), row,
                         dict(self._manifest("itm", scorer, video, grid), text=text))
                        for text, row in zip(texts, matrix)]
        for scorer, parts in values.items():
            array = np.concatenate(parts) if parts else np.zeros(0, np.float64)
            manifest = {k: v for k, v in self._manifest("frame-diff", scorer, video, grid).items() if k != "dtype"}
            entries.append(("diff", self.diff_key(scorer, video, grid),
                            self._finite(array, scorer, f"frame differences of {video}"), manifest))
        where = dict(frame_indices=np.asarray(grid.indices, np.int64),
                     timestamps=np.asarray(grid.timestamps, np.float64))
        for kind, key, array, manifest in entries:
            self.cache.save(key, array, manifest, where)
            self._remember(key, array)
            self.stats[f"{kind}_computed"] += 1

    def missing(self, video: str, grid, image=(), itm=(), diffs=(), count: bool = True) -> tuple[list, list, list]:
        """Of these, what is not cached (or not to be trusted): what `ensure` computes, in one decode pass of the
        video's grid. `count=False` is a look ahead (whether to decode the grid early): it counts nothing and reads
        nothing, an entry's file present counts as cached, and `ensure` checks each entry when it reads it (an
        entry not to be trusted is recomputed there, with the decode the look ahead did not start). Reading them
        here would read a video's entries twice where they outnumber the store's 16 recent arrays."""
        n = len(grid)

        def cached(kind, key, shape):
            return self._cached(kind, key, shape) if count else (key in self._recent or self.cache.exists(key))

        return ([e for e in dict.fromkeys(image) if not cached("image", self.image_key(e, video, grid), (n, e.dim))],
                [(s, t) for s, t in dict.fromkeys(itm) if not cached("itm", self.itm_key(s, video, grid, t), (n,))],
                [s for s in dict.fromkeys(diffs) if not cached("diff", self.diff_key(s, video, grid), (n,))])

    def _finite(self, array: np.ndarray, encoder, what: str) -> np.ndarray:
        """`array` when every value is finite; else the run stops with a line naming the encoder and its weights."""
        if not np.isfinite(array).all():
            spec = next((s for s, e in self._encoders.items() if e is encoder), None)
            name = f"encoder {spec!r} (weights {encoder.encoder_id})" if spec else f"encoder {encoder.encoder_id}"
            raise FatalError(f"{name} gave non-finite (NaN or inf) {what}: its weights are corrupt or do not "
                             f"suit it; nothing was cached")
        return array

    def _load(self, key: str, shape: tuple | None = None) -> np.ndarray | None:
        if key not in self._recent:
            array = self.cache.load(key, shape=shape)
            if array is None:
                return None
            self._remember(key, array)
        return self._recent[key]

    def _remember(self, key: str, array: np.ndarray) -> None:
        if key not in self._recent and len(self._recent) >= 16:
            self._recent.pop(next(iter(self._recent)))
        self._recent[key] = array

    def _read(self, key: str, shape: tuple) -> np.ndarray:
        """An entry `ensure` has just made sure of."""
        array = self._load(key, shape)
        if array is None:  # written a moment ago, yet not readable whole: the disk does not keep what it is given
            raise FatalError(f"feature cache file {self.cache.path(key)} cannot be read back after it was written")
        return array

    def _cached(self, kind: str, key: str, shape: tuple) -> bool:
        hit = self._load(key, shape) is not None  # an entry not to be trusted counts as missing and is recomputed
        self.stats[f"{kind}_cached"] += hit
        return hit

    def _manifest(self, kind: str, encoder, video: str, grid) -> dict:
        return {"kind": kind, "video": video, "grid": grid.rule, "n": len(grid), "encoder": encoder.encoder_id,
                "preprocess": encoder.preprocess_id, "dtype": self.dtype, "version": FEATURES_VERSION}
