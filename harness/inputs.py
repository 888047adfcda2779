"""Supplies what a sampler declared in `needs`, from the feature cache where it can.

    scores   cosine similarity of each candidate frame to the query text, under the sampler's CLIP `encoder`

Image features of a video are query-independent: computed once per (video, grid, encoder, dtype), cached on disk,
and shared by every question and sampler on that video.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.features import ClipEncoder, FeatureCache, cosine_scores, video_identity
from harness.records import CandidateGrid, Sample
from harness.video import VideoReader, iter_frames

FEATURES_VERSION = "1"  # bump when the way features are computed changes


class InputProvider:
    def __init__(self, cache_dir: Path, device: str, dtype: str, chunk_size: int = 64):
        self.cache = FeatureCache(Path(cache_dir))
        self.device, self.dtype, self.chunk_size = device, dtype, chunk_size
        self._encoders: dict[str, ClipEncoder] = {}

    def inputs(self, sampler, task, sample: Sample, grid: CandidateGrid, reader: VideoReader) -> dict:
        out = {}
        for need in sampler.needs:
            if need == "stored_indices":  # replay: the stored native frame numbers of this sample
                if grid.rule != "all":
                    raise HarnessError(f"sampler {sampler.name!r} replays native frame numbers: run it with "
                                       f"--grid all (not {grid.rule})")
                out[need] = sampler.stored_indices(sample)
                continue
            if need != "scores":
                raise HarnessError(f"sampler {sampler.name!r} needs {need!r}, which no provider supplies")
            encoder = self.encoder(sampler.encoder)
            images = self.image_features(encoder, sample.video, grid, reader)
            text = encoder.text_features([query_text(task, sample, getattr(sampler, "query", "question"))])[0]
            out["scores"] = cosine_scores(images, text)
        return out

    def encoder(self, model: str) -> ClipEncoder:
        if model not in self._encoders:
            self._encoders[model] = ClipEncoder(model, device=self.device, dtype=self.dtype)
        return self._encoders[model]

    def image_features(self, encoder: ClipEncoder, video: str, grid: CandidateGrid,
                       reader: VideoReader) -> np.ndarray:
        key = self.cache.key(**video_identity(video), grid_rule=grid.rule, encoder_id=encoder.encoder_id,
                             preprocess=encoder.preprocess_id, dtype=self.dtype, version=FEATURES_VERSION)
        cached = self.cache.load(key)
        if cached is not None and len(cached) == len(grid):
            return cached
        # decode and encode chunk by chunk, so an hour of frames never sits in memory
        feats = [encoder.image_features(frames) for _, frames in iter_frames(reader, grid.indices, self.chunk_size)]
        array = np.concatenate(feats)
        self.cache.save(key, array, {"video": video, "grid": grid.rule, "encoder": encoder.encoder_id,
                                     "dtype": self.dtype, "n": len(grid)})
        return array


def query_text(task, sample: Sample, mode: str) -> str:
    if mode == "question":
        return task.query(sample)
    if mode == "question+options":
        return task.query(sample) + " " + " ".join(sample.options)
    raise HarnessError(f"unknown query mode {mode!r}")
