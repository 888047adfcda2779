"""What every sampler is, and the one rule for grids shorter than the budget.

A sampler is a pure function of arrays: (number of candidates, K, the inputs it declared in `needs`) -> ascending
positions in the candidate grid. It never decodes video or loads a model; the runner supplies its inputs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping

import numpy as np

from harness.errors import HarnessError
from harness.util.hashing import short_hash
from harness.records import CandidateGrid, Selection

# What a sampler does when the grid has fewer than K candidates; the same for every sampler, and recorded.
SHORT_GRID_RULES = {
    "all": "take every candidate (fewer than K frames)",
    "repeat": "repeat candidates in time order up to exactly K frames",
    "linspace": "K frames int(linspace(0, N - 1, K)) of the N candidates, repeats as numpy gives them (the "
                "Qwen adapter of TSPO's uniform arm)",
}


class Sampler(ABC):
    """The engine calls only what this class declares:

        needs, per_sample  the inputs the feature store must supply (see FEATURE_INPUTS in harness.features.inputs)
        encoder, query     the encoder spec of those inputs and which text of the sample they score against
        grid               the candidate grid this sampler requires (replay: `all`), or None for any
        positions          the selection itself: a pure function of arrays
        multi_resolution   True: the sampler also gives each frame a scale (`select`), so only a backbone that
                           takes scales (`Backbone.takes_scales`) can answer with its selections; the run refuses
                           any other before it starts. Such a sampler sees every grid, also one shorter than K
                           (its tiers, not the short-grid rule, decide what a short grid gives)
        select             (positions, scales or None): what `apply_sampler` calls; by default `positions` and no
                           scales. A multi-resolution sampler returns, per position, the fraction of the frame's
                           width and height the backbone gets it at (e.g. 1/2, 1/4, 1/8)
        check_samples      a line about samples it has no input for (their rows become errors), said before the run
        frame_scores       the per-candidate scores it ranks by, for score-curve plots
    """

    name: str = ""
    needs: tuple[str, ...] = ()  # inputs the runner must supply, e.g. ("scores",)
    per_sample: tuple[str, ...] = ()  # those of `needs` that describe the sample, not one value per candidate
    encoder: str | None = None  # the feature-store encoder of its feature inputs (None: it needs none)
    query: str = "question"  # which text of a sample its text features and scores are computed from
    grid: str | None = None  # the grid rule it requires (e.g. "all": stored native frame numbers), None: any
    multi_resolution: bool = False  # True: `select` gives a scale per frame, for backbones that take scales

    def config(self) -> dict:
        """Every parameter that changes the selection (hashed into the run identity)."""
        return {}

    @property
    def config_hash(self) -> str:
        return short_hash({"sampler": self.name, **self.config()})

    @abstractmethod
    def positions(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Ascending positions in a grid of n >= k candidates."""

    def select(self, n: int, k: int, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(ascending positions, a scale in (0, 1] per position or None); the default: `positions` at the
        backbone's own resolution."""
        return self.positions(n, k, inputs), None

    def sample_inputs(self, sample) -> dict[str, np.ndarray]:
        """Inputs of `needs` the sampler brings itself for this sample, not from the feature store (replay: its
        stored native frame numbers); a HarnessError when it has none for the sample."""
        return {}

    def check_samples(self, samples) -> str | None:
        """One line about the samples this sampler has no input for (their rows will be errors), or None."""
        return None

    def frame_scores(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str] | None:
        """(score per candidate, what the scores are) this sampler ranks by, for plots; None: it ranks by none."""
        if "scores" in inputs:
            return np.asarray(inputs["scores"], np.float64).reshape(-1), f"{self.name} score ({self.encoder})"
        return None


def short_grid_positions(n: int, k: int, rule: str) -> np.ndarray:
    if rule == "all":
        return np.arange(n)
    if rule == "repeat":
        # each candidate appears floor or ceil of k/n times, in time order
        return (np.arange(k) * n) // k
    if rule == "linspace":
        return np.linspace(0, n - 1, k).astype(np.int64)
    raise HarnessError(f"unknown short-grid rule {rule!r} (known: {', '.join(SHORT_GRID_RULES)})")


def apply_sampler(sampler: Sampler, grid: CandidateGrid, k: int, inputs: Mapping[str, np.ndarray],
           short_grid: str = "all") -> Selection:
    """Run one sampler on one grid, applying the shared short-grid rule."""
    if k < 1:
        raise HarnessError(f"--frames must be at least 1, got {k}")
    n = len(grid)
    if n == 0:
        raise HarnessError("the candidate grid is empty (video has no frames?)")
    for need in sampler.needs:
        if need not in inputs:
            raise HarnessError(f"sampler {sampler.name!r} needs input {need!r}, which the runner did not supply")
        if need not in sampler.per_sample and len(inputs[need]) != n:
            raise HarnessError(f"sampler {sampler.name!r}: input {need!r} has {len(inputs[need])} values "
                               f"for a grid of {n} candidates")
    scales = None
    if n < k and not sampler.multi_resolution:
        positions = short_grid_positions(n, k, short_grid)
    else:
        positions, scales = sampler.select(n, k, inputs)
        positions = np.asarray(positions, dtype=np.int64)
    return Selection.from_positions(sampler.name, sampler.config_hash, grid, positions, scales)
