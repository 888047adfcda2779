"""Supplies what a sampler declared in `needs`, from the feature store.

    scores          (n,) per candidate: cosine similarity of frame and query under a CLIP-type `encoder`, or BLIP's
                    image-text-matching probability under a BLIP `encoder`
    image_features  (n, d) float32 projected features of the candidates under the sampler's CLIP-type `encoder`,
                    not L2-normalised (as TSPO's agent takes them)
    text_feature    (d,) float32 projected feature of the query under that encoder
    stored_indices  replay: the stored native frame numbers of the sample

A sampler that needs features names its `encoder` and `query` ("question" or "question+options"). `prepare` runs
before a video's questions: one decode pass computes everything its samplers still miss for all of them.
"""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.features import FeatureStore, cosine_scores
from harness.records import CandidateGrid, Sample
from harness.video import VideoReader

FEATURE_INPUTS = ("scores", "image_features", "text_feature")


class InputProvider:
    def __init__(self, cache_dir: Path, device: str, dtype: str, chunk_size: int = 64):
        self.store = FeatureStore(Path(cache_dir), device, dtype, chunk_size)

    @property
    def stats(self):
        return self.store.stats

    def prepare(self, wants, task, samples: list[Sample], grid: CandidateGrid, reader: VideoReader) -> None:
        """Compute, in one decode pass of this video, the features and scores its samples will need: `wants` is a
        list of (encoder spec, query mode), e.g. from `wants(samplers)`."""
        image, itm = [], []
        for spec, mode in dict.fromkeys(wants):
            scorer = self.store.encoder(spec)
            texts = [query_text(task, s, mode) for s in samples]
            if scorer.kind == "itm":
                itm += [(scorer, text) for text in texts]
            else:
                image.append(scorer)
                for text in texts:
                    self.store.text_feature(scorer, text)
        self.store.ensure(samples[0].video, grid, reader, image=image, itm=itm)

    def inputs(self, sampler, task, sample: Sample, grid: CandidateGrid, reader: VideoReader) -> dict:
        out = {}
        for need in sampler.needs:
            if need == "stored_indices":  # replay: the stored native frame numbers of this sample
                if grid.rule != "all":
                    raise HarnessError(f"sampler {sampler.name!r} replays native frame numbers: run it with "
                                       f"--grid all (not {grid.rule})")
                out[need] = sampler.stored_indices(sample)
                continue
            if need not in FEATURE_INPUTS:
                raise HarnessError(f"sampler {sampler.name!r} needs {need!r}, which no provider supplies")
            scorer = self.store.encoder(sampler.encoder)
            text = query_text(task, sample, getattr(sampler, "query", "question"))
            if scorer.kind == "itm":
                if need != "scores":
                    raise HarnessError(f"sampler {sampler.name!r} needs {need!r}, which BLIP image-text matching "
                                       f"({sampler.encoder}) does not give; use a CLIP encoder")
                out[need] = self.store.itm_scores(scorer, sample.video, grid, reader, text)
                continue
            images = self.store.image_features(scorer, sample.video, grid, reader)
            text_feature = self.store.text_feature(scorer, text)
            out[need] = {"scores": lambda: cosine_scores(images, text_feature),
                         "image_features": lambda: images, "text_feature": lambda: text_feature}[need]()
        return out


def wants(samplers) -> list[tuple[str, str]]:
    """(encoder, query mode) of every sampler that needs features."""
    return [(sp.encoder, getattr(sp, "query", "question")) for sp in samplers if set(sp.needs) & set(FEATURE_INPUTS)]


def query_text(task, sample: Sample, mode: str) -> str:
    if mode == "question":
        return task.query(sample)
    if mode == "question+options":
        return task.query(sample) + " " + " ".join(sample.options)
    raise HarnessError(f"unknown query mode {mode!r}")
