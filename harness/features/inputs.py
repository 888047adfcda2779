"""Supplies what a sampler declared in `needs`, from the feature store.

    scores          (n,) per candidate: cosine similarity of frame and query under a CLIP-type `encoder`, or BLIP's
                    image-text-matching probability under a BLIP `encoder`
    image_features  (n, d) float32 projected features of the candidates under the sampler's CLIP-type `encoder`,
                    not L2-normalised (as TSPO's agent takes them)
    text_feature    (d,) float32 projected feature of the query under that encoder

    lazy_scores     a callable (harness.features.sparse.LazyScores): grid positions -> the `scores` of those
                    candidates only, computed on demand and cached sparsely per (video, question); its `scored` count
                    is the selection's "frames scored". Nothing is precomputed for it (`wants` leaves it out)
    timestamps      (n,) float64 seconds of the candidates (from the grid; no features)

Under a frame-difference `encoder` (`scenedetect:content`, kind "frame-diff") `scores` is instead each candidate's
difference to the previous one, the same for every question of a video.

Any other input a sampler needs it brings itself (`Sampler.sample_inputs`: replay's stored native frame numbers).

A sampler that needs features names its `encoder` and `query` ("question" or "question+options"). `prepare` runs
before a video's questions: one decode pass computes everything its samplers still miss for all of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.features.sparse import LazyScores
from harness.features.store import FeatureStore, cosine_scores
from harness.records import CandidateGrid, Sample
from harness.video.reader import VideoReader

FEATURE_INPUTS = ("scores", "image_features", "text_feature")  # precomputed per video in `prepare`
LAZY_INPUTS = ("lazy_scores",)  # computed while the sampler runs, only where it asks
GRID_INPUTS = ("timestamps",)
TEXT_INPUTS = ("scores", "text_feature")  # those that depend on the sample's text


class InputProvider:
    def __init__(self, cache_dir: Path, device: str, dtype: str, chunk_size: int = 64):
        self.store = FeatureStore(Path(cache_dir), device, dtype, chunk_size)

    @property
    def stats(self):
        return self.store.stats

    def prepare(self, wants, task, samples: list[Sample], grid: CandidateGrid, reader: VideoReader) -> None:
        """Compute, in one decode pass of this video, the features and scores its samples will need: `wants` is a
        list of (encoder spec, query mode, or None when no text is read), e.g. from `wants(samplers)`."""
        image, itm, diffs, texts = self._needed(wants, task, samples)
        for scorer, text in texts:
            self.store.text_feature(scorer, text)
        self.store.ensure(samples[0].video, grid, reader, image=image, itm=itm, diffs=diffs)

    def decodes(self, wants, task, samples: list[Sample], grid: CandidateGrid) -> bool:
        """Whether `prepare` would decode this video's grid (something it needs is not cached); counts nothing."""
        image, itm, diffs, _ = self._needed(wants, task, samples)
        return any(self.store.missing(samples[0].video, grid, image, itm, diffs, count=False))

    def _needed(self, wants, task, samples: list[Sample]) -> tuple[list, list, list, list]:
        """(image encoders, (ITM scorer, text) pairs, frame-diff scorers, (encoder, text) of the text features)."""
        image, itm, diffs, texts = {}, [], [], []
        for spec, mode in dict.fromkeys(wants):
            scorer = self.store.encoder(spec)
            if scorer.kind == "frame-diff":  # query-independent: one array per video
                diffs.append(scorer)
                continue
            queries = [] if mode is None else [query_text(task, s, mode) for s in samples]
            if scorer.kind == "itm":
                itm += [(scorer, text) for text in queries]
            else:
                image[spec] = scorer
                texts += [(scorer, text) for text in queries]
        return list(image.values()), itm, diffs, texts

    def inputs(self, sampler, task, sample: Sample, grid: CandidateGrid, reader: VideoReader) -> dict:
        out, own = {}, None
        for need in sampler.needs:
            if need in GRID_INPUTS:
                out[need] = np.asarray(grid.timestamps, np.float64)
                continue
            if need in LAZY_INPUTS:
                out[need] = LazyScores(self.store, self.store.encoder(sampler.encoder), sample.video, grid, reader,
                                       query_text(task, sample, sampler.query))
                continue
            if need not in FEATURE_INPUTS:  # e.g. replay's stored frame numbers: the sampler brings them itself
                own = sampler.sample_inputs(sample) if own is None else own
                if need not in own:
                    raise HarnessError(f"sampler {sampler.name!r} needs {need!r}, which no provider supplies")
                out[need] = own[need]
                continue
            scorer = self.store.encoder(sampler.encoder)
            if scorer.kind == "frame-diff":
                if need != "scores":
                    raise HarnessError(f"sampler {sampler.name!r} needs {need!r}, which frame differences "
                                       f"({sampler.encoder}) do not give")
                out[need] = self.store.frame_diffs(scorer, sample.video, grid, reader)
                continue
            if scorer.kind == "itm":
                if need != "scores":
                    raise HarnessError(f"sampler {sampler.name!r} needs {need!r}, which BLIP image-text matching "
                                       f"({sampler.encoder}) does not give; use a CLIP encoder")
                text = query_text(task, sample, sampler.query)
                out[need] = self.store.itm_scores(scorer, sample.video, grid, reader, text)
                continue
            images = self.store.image_features(scorer, sample.video, grid, reader)
            if need == "image_features":  # the text is encoded only for samplers that read it
                out[need] = images
                continue
            text_feature = self.store.text_feature(scorer, query_text(task, sample, sampler.query))
            out[need] = cosine_scores(images, text_feature) if need == "scores" else text_feature
        return out


def wants(samplers) -> list[tuple[str, str | None]]:
    """(encoder, query mode) of every sampler that needs features; the mode is None for one that reads only image
    features (maxinfo), so no text is encoded for it."""
    return [(sp.encoder, sp.query if set(sp.needs) & set(TEXT_INPUTS) else None) for sp in samplers
            if set(sp.needs) & set(FEATURE_INPUTS)]


def encoder_specs(samplers) -> list[str]:
    """Every encoder the samplers will load, precomputed (`wants`) or lazy, so a bad name fails before the run."""
    return list(dict.fromkeys(sp.encoder for sp in samplers
                              if set(sp.needs) & (set(FEATURE_INPUTS) | set(LAZY_INPUTS))))


def query_text(task, sample: Sample, mode: str) -> str:
    if mode == "question":
        return task.query(sample)
    if mode == "question+options":
        return task.query(sample) + " " + " ".join(sample.options)
    raise HarnessError(f"unknown query mode {mode!r}")
