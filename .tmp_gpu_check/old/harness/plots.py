"""Figures for papers and leaderboards (matplotlib, Agg backend: no display needed), saved as PNG and SVG.

Each figure has a builder that takes plain data (a comparison table, or arrays) and returns a matplotlib Figure,
and `save_figure` writes it:

    accuracy_vs_frames(table)             accuracy against frame budget K, one line per sampler, CI error bars
    category_bars(categories, key)        accuracy per category value, one bar per sampler
    recall_vs_accuracy(table)             evidence recall against accuracy, one point per run
    score_curve(times, scores, ...)       one question: the score over time, selected frames, ground-truth intervals
    contact_sheet(frames, timestamps)     one question: the selected frames in a grid, with their times

`table` and `categories` are `harness.compare.Comparison.table` / `.categories` (any frame with those columns).
`score_curve_data` and `selection_frames` fetch one question's arrays from a run directory and the feature store.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs (or opens) a display, also under CI and on GPU nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.errors import HarnessError  # noqa: E402

FORMATS = ("png", "svg")


def save_figure(fig, stem, formats=FORMATS, dpi: int = 150) -> list[Path]:
    """Write `fig` as stem.png and stem.svg (creating the folder) and close it; returns the paths."""
    stem = Path(stem)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise HarnessError(f"unknown figure format {unknown[0]!r} (known: {', '.join(FORMATS)})")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for fmt in formats:
            path = stem.with_name(stem.name + "." + fmt)
            fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
            paths.append(path)
    finally:
        plt.close(fig)  # pyplot keeps every open figure alive: close, or a sweep of plots leaks memory
    return paths


def _need(frame: pd.DataFrame, columns, what: str) -> None:
    if frame is None or len(frame) == 0:
        raise HarnessError(f"{what}: nothing to plot (no rows)")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise HarnessError(f"{what}: the table lacks column {missing[0]!r} (pass a harness.compare table)")


def _grid(n: int, width: float = 5.5, height: float = 4.0, columns: int | None = None):
    cols = columns or min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


# -- comparison figures -----------------------------------------------------------------------------------------------
def accuracy_vs_frames(table: pd.DataFrame, ci: bool = True, metric: str = "accuracy"):
    """Accuracy (%) against K per sampler, one panel per (task, backbone); error bars from `acc_ci_low/high`
    (the bootstrap CI of each run's accuracy) when `ci` and present. `metric="evidence_recall"` plots evidence
    recall instead (selection-only runs, which have no accuracy), without error bars."""
    _need(table, ["task", "backbone", "frames", "sampler", metric], f"{metric} vs frames")
    ci = ci and metric == "accuracy"
    panels = list(table.groupby(["task", "backbone"], sort=True))
    fig, axes = _grid(len(panels))
    for ax, ((task, backbone), g) in zip(axes, panels):
        ks = sorted(g["frames"].unique())
        log = len(ks) > 1 and ks[-1] / ks[0] >= 4  # budgets usually double: 8, 16, 32, 64
        groups = list(g.groupby("sampler", sort=True))
        for i, (sampler, s) in enumerate(groups):
            s = s.sort_values("frames")
            y = s[metric].to_numpy(float)
            # nudge samplers apart a little so their error bars do not hide each other
            shift = (i - (len(groups) - 1) / 2) * 0.03
            x = s["frames"].to_numpy(float) * 2 ** shift if log else \
                s["frames"].to_numpy(float) + shift * max(ks[-1] - ks[0], 1)
            if ci and {"acc_ci_low", "acc_ci_high"} <= set(s.columns):
                err = np.vstack([y - s["acc_ci_low"].to_numpy(float), s["acc_ci_high"].to_numpy(float) - y])
                ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", capsize=3, label=sampler)
            else:
                ax.plot(x, y, marker="o", label=sampler)
        if log:
            ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set(xlabel="frames per question (K)", ylabel=metric.replace("_", " ") + " (%)",
               title=f"{task} / {backbone}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def category_bars(categories: pd.DataFrame, key: str | None = None):
    """Accuracy per value of category `key` (needed when the table has several keys), one bar per sampler;
    one panel per (task, backbone, K)."""
    _need(categories, ["task", "backbone", "frames", "sampler", "key", "value", "accuracy"], "category bars")
    keys = sorted(categories["key"].unique())
    if key is None:
        if len(keys) > 1:
            raise HarnessError(f"category bars: several category keys ({', '.join(keys)}); choose one")
        key = keys[0]
    data = categories[categories["key"] == key]
    if data.empty:
        raise HarnessError(f"category bars: no category {key!r} (have: {', '.join(keys)})")
    panels = list(data.groupby(["task", "backbone", "frames"], sort=True))
    values = sorted(data["value"].unique())
    fig, axes = _grid(len(panels), width=max(6.0, 0.6 * len(values) * max(1, data["sampler"].nunique()) / 2),
                      columns=1)
    for ax, ((task, backbone, frames), g) in zip(axes, panels):
        samplers = list(dict.fromkeys(g["sampler"]))  # the comparison's order: baseline first
        width = 0.8 / len(samplers)
        x = np.arange(len(values))
        for i, sampler in enumerate(samplers):
            acc = g[g["sampler"] == sampler].set_index("value")["accuracy"].reindex(values)
            ax.bar(x + (i - (len(samplers) - 1) / 2) * width, acc.to_numpy(float), width, label=sampler)
        ax.set_xticks(x, values, rotation=30 if max(len(v) for v in values) > 6 else 0, ha="right")
        ncol = min(len(samplers), 4)
        # head room above 100 % for the legend, so it never covers a bar
        ax.set(ylabel="accuracy (%)", title=f"{task} / {backbone} / K={frames}: by {key}",
               ylim=(0, 100 + 10 * math.ceil(len(samplers) / ncol)))
        ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", ncol=ncol)
    fig.tight_layout()
    return fig


def recall_vs_accuracy(table: pd.DataFrame):
    """Evidence recall (%) against accuracy (%), one point per run with evidence recall; labelled sampler@K."""
    _need(table, ["sampler", "frames", "accuracy", "evidence_recall"], "recall vs accuracy")
    data = table.dropna(subset=["evidence_recall", "accuracy"])
    if data.empty:
        raise HarnessError("recall vs accuracy: no run has both (evidence recall needs ground-truth intervals, "
                           "accuracy a backbone)")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for sampler, g in data.groupby("sampler", sort=True):
        ax.scatter(g["evidence_recall"], g["accuracy"], label=sampler)
        for _, r in g.iterrows():
            ax.annotate(f"K={r['frames']}", (r["evidence_recall"], r["accuracy"]), fontsize="x-small",
                        xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="evidence recall (%)", ylabel="accuracy (%)", title="evidence recall vs accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


# -- one question -----------------------------------------------------------------------------------------------------
def score_curve(times, scores, selected_times, evidence=(), title: str | None = None,
                score_label: str = "score"):
    """The score of every candidate frame over time (line), the selected frames (vertical lines and dots on the
    curve) and the ground-truth intervals [start, end) (shaded). Returns the Figure; its first axes holds the
    curve as `lines[0]` and the selection as the collection labelled "selected"."""
    times = np.asarray(times, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    selected = np.asarray(selected_times, dtype=np.float64).reshape(-1)
    if times.ndim != 1 or times.shape != scores.shape:
        raise HarnessError(f"score curve: {times.size} times but {scores.size} scores")
    if times.size == 0:
        raise HarnessError("score curve: no candidate frames")
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(times, scores, color="tab:blue", lw=1.2, label=score_label)
    for i, (start, end) in enumerate(evidence):
        ax.axvspan(start, end, color="tab:green", alpha=0.2, label="ground truth" if i == 0 else None)
    for t in selected:
        ax.axvline(t, color="tab:red", lw=0.8, alpha=0.6)
    # a selected time sits on the grid, so interpolation reads the candidate's own score
    ax.scatter(selected, np.interp(selected, times, scores), color="tab:red", zorder=3, s=18,
               label=f"selected ({selected.size})")
    lo, hi = float(times.min()), float(times.max())
    pad = 0.01 * (hi - lo) if hi > lo else 0.5  # a frame at the very start or end stays visible
    ax.set(xlabel="time (s)", ylabel=score_label, xlim=(lo - pad, hi + pad))
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    return fig


def contact_sheet(frames, timestamps, evidence=(), columns: int | None = None, title: str | None = None):
    """The selected frames (n, H, W, 3) uint8 in a grid, each titled with its time; frames inside a ground-truth
    interval get a green frame."""
    frames = np.asarray(frames)
    timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise HarnessError(f"contact sheet: expected frames of shape (n, H, W, 3), got {frames.shape}")
    if len(frames) == 0:
        raise HarnessError("contact sheet: no frames")
    if len(frames) != timestamps.size:
        raise HarnessError(f"contact sheet: {len(frames)} frames but {timestamps.size} timestamps")
    cols = columns or min(len(frames), 4 if len(frames) <= 16 else 8)
    rows = math.ceil(len(frames) / cols)
    aspect = frames.shape[1] / max(frames.shape[2], 1)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * aspect * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, frame, t in zip(axes.flat, frames, timestamps):
        ax.imshow(frame)
        hit = any(a <= t < b for a, b in evidence)
        ax.set_title(f"{t:.1f} s", fontsize="small", color="tab:green" if hit else "black")
        if hit:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green")
                spine.set_linewidth(3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# -- loading one question's data from a run ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreCurve:
    sample_id: str
    question: str
    times: np.ndarray  # every candidate of the run's grid (s)
    scores: np.ndarray  # one per candidate
    selected_times: np.ndarray  # the run's selection (s)
    evidence: tuple  # ground-truth intervals [(start, end), ...] (s)
    score_label: str


def _row(run_dir: Path, sample_id: str) -> dict:
    from harness.store import PREDICTIONS, read_jsonl

    for r in read_jsonl(run_dir / PREDICTIONS):
        if r["sample_id"] == sample_id:
            return r
    raise HarnessError(f"{run_dir}: no sample {sample_id!r} in its predictions")


def score_curve_data(run_dir, sample_id: str, cache_dir=None, encoder: str | None = None) -> ScoreCurve:
    """One question's curve: the run's candidate grid, the scores its sampler ranked (a sampler's `logits(inputs)`
    where it has one, as TSPO's agent; else its `scores` input, or the cosine similarity of its CLIP image and
    text features), the
    selected times and the ground-truth intervals. `encoder` plots that encoder's similarity instead (needed for
    samplers without scores, e.g. uniform). Reads the feature store (`cache_dir`, default the run's); whatever it
    lacks is computed, which decodes the video once."""
    from dataclasses import fields

    from harness.config import RunConfig
    from harness.features import cosine_scores
    from harness.inputs import query_text
    from harness.runner import Selector
    from harness.store import load_config

    run_dir = Path(run_dir)
    config = load_config(run_dir)
    row = _row(run_dir, sample_id)
    if "run" not in config:
        raise HarnessError(f"{run_dir}: config.json records no run options, so its sampler cannot be rebuilt")
    spec = config.get("sampler_spec")
    if not spec:  # older runs: rebuild the spec from the recorded config (values as JSON, read back by parse_spec)
        import json
        sampler = config["identity"]["sampler"]
        spec = sampler["name"] + "".join((":" if i == 0 else ",") + f"{k}={json.dumps(v)}"
                                         for i, (k, v) in enumerate(sorted(sampler["config"].items())))
    known = {f.name for f in fields(RunConfig)}  # options a later version dropped are not RunConfig's business
    options = {k: v for k, v in config["run"].items() if k in known}
    cfg = RunConfig(**{**options, "samplers": [spec], "cache_dir": str(cache_dir or options.get("cache_dir"))})
    selector = Selector(cfg, progress=False)
    sampler = selector.samplers[0]
    sample = next((s for s in selector.samples() if s.id == sample_id), None)
    if sample is None:
        raise HarnessError(f"task {cfg.task!r} has no sample {sample_id!r} (task options changed since the run?)")
    store = selector.inputs.store
    reader, grid = selector.open(sample.video)
    with reader:
        if encoder is not None or not set(sampler.needs) & {"scores", "image_features"}:
            if encoder is None:
                raise HarnessError(f"sampler {sampler.name!r} ranks frames by no score; pass an encoder to plot "
                                   f"its similarity to the question")
            scorer = store.encoder(encoder)
            text = query_text(selector.task, sample, "question")
            if scorer.kind == "itm":
                scores = store.itm_scores(scorer, sample.video, grid, reader, text)
            else:
                scores = cosine_scores(store.image_features(scorer, sample.video, grid, reader),
                                       store.text_feature(scorer, text))
            label = f"similarity ({encoder})"
        else:
            inputs = selector.inputs.inputs(sampler, selector.task, sample, grid, reader)
            if hasattr(sampler, "logits"):  # TSPO ranks by its agent's logits, not by the raw CLIP scores
                scores = np.asarray(sampler.logits(inputs).float().cpu().numpy()).reshape(-1)
                label = f"{sampler.name} logit ({getattr(sampler, 'encoder', '?')})"
            elif "scores" in inputs:
                scores, label = inputs["scores"], f"{sampler.name} score ({getattr(sampler, 'encoder', '?')})"
            else:
                scores = cosine_scores(inputs["image_features"], inputs["text_feature"])
                label = f"cosine similarity ({getattr(sampler, 'encoder', '?')})"
    sel = row.get("selection")
    selected = np.asarray(sel["timestamps"] if sel else [], dtype=np.float64)
    times = np.asarray(grid.timestamps, dtype=np.float64)
    if sel and (max(sel["positions"], default=-1) >= len(times)
                or not np.allclose(times[sel["positions"]], selected)):
        raise HarnessError(f"{run_dir}: the video's candidate grid no longer matches the run's selection of "
                           f"{sample_id!r} (video changed?)")
    evidence = tuple((float(a), float(b)) for a, b in (row.get("evidence") or sample.evidence))
    return ScoreCurve(sample_id, sample.question, times, np.asarray(scores, dtype=np.float64), selected, evidence,
                      label)


def selection_frames(run_dir, sample_id: str, decode_backend: str = "decord") -> tuple[np.ndarray, np.ndarray]:
    """The decoded frames (n, H, W, 3) uint8 and timestamps (s) of one question's selection in a run."""
    from harness.runner import decode_selection
    from harness.video import open_video

    run_dir = Path(run_dir)
    row = _row(run_dir, sample_id)
    sel = row.get("selection")
    if not sel or not sel["frame_indices"]:
        raise HarnessError(f"{run_dir}: sample {sample_id!r} has no selected frames "
                           f"({(row.get('prediction') or {}).get('error') or 'empty selection'})")
    with open_video(row["video"], decode_backend) as reader:
        frames = decode_selection(reader, sel["frame_indices"])
    return frames, np.asarray(sel["timestamps"], dtype=np.float64)
