"""`harness train plot RUN`: the reward curve of a TSPO training run, and for one watched question the agent's score
curve over time at several steps, with the frames the policy samples there and its greedy top-k.

Reads only the run directory (train.jsonl, watch.jsonl); nothing is decoded or recomputed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.report.plots import FORMATS, plt, save_figure
from harness.store.runs import read_jsonl
from harness.train.rundir import TRAIN_LOG, WATCH


def _smooth(values, window: int) -> np.ndarray:
    """Trailing moving average that ignores missing values (None)."""
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    out = np.full_like(v, np.nan)
    for i in range(len(v)):
        part = v[max(0, i - window + 1):i + 1]
        part = part[~np.isnan(part)]
        if part.size:
            out[i] = part.mean()
    return out


def reward_figure(rows: list[dict], window: int | None = None):
    """Accuracy, temporal and total reward (means over each step's rollouts) against the step: raw (faint) and a
    moving average."""
    if not rows:
        raise HarnessError("reward curve: the run has no logged steps yet")
    steps = np.asarray([r["step"] for r in rows])
    window = window or max(1, len(rows) // 20)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for key, colour in (("accuracy", "tab:blue"), ("temporal", "tab:green"), ("total", "tab:red")):
        values = [r["reward"].get(key) for r in rows]
        if all(v is None for v in values):
            continue
        raw = np.asarray([np.nan if v is None else v for v in values], np.float64)
        ax.plot(steps, raw, color=colour, alpha=0.25, lw=0.8)
        ax.plot(steps, _smooth(values, window), color=colour, lw=1.8,
                label=f"{key} (mean of {window})" if window > 1 else key)
    ax.set(xlabel="optimizer step", ylabel="reward", title="TSPO training rewards")
    ax.grid(True, ls="--", alpha=0.4)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def pick_steps(available, wanted=None, count: int = 4) -> list[int]:
    """`wanted` steps mapped to the nearest recorded ones, or `count` recorded steps spread from first to last."""
    available = sorted(set(int(s) for s in available))
    if not available:
        return []
    if wanted:
        return sorted({min(available, key=lambda s: (abs(s - int(w)), s)) for w in wanted})
    if len(available) <= count:
        return available
    picks = np.linspace(0, len(available) - 1, count).round().astype(int)
    return sorted({available[i] for i in picks})


def score_figure(rows: list[dict], title: str | None = None):
    """One panel per watch row: score (logit x tau) over time, ground truth shaded, the sampled frames as ticks
    (darker where several rollouts took the frame), the greedy top-k as dots."""
    if not rows:
        raise HarnessError("score curves: no recorded steps for this question")
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.4 * len(rows) + 0.4), squeeze=False, sharex=True)
    for ax, row in zip(axes[:, 0], rows):
        times = np.asarray(row["times"], np.float64)
        score = np.asarray(row["score"], np.float64)
        ax.plot(times, score, color="tab:blue", lw=1.1, label="score (logit x tau)")
        for i, (a, b) in enumerate(row.get("evidence") or []):
            ax.axvspan(a, b, color="tab:green", alpha=0.2, label="ground truth" if i == 0 else None)
        samples = row.get("samples") or []
        counts = np.bincount(np.asarray([p for s in samples for p in s], np.int64), minlength=len(times)) \
            if samples else np.zeros(len(times), int)
        low = score.min() - 0.08 * (np.ptp(score) or 1.0)
        taken = np.flatnonzero(counts)
        if taken.size:
            ax.scatter(times[taken], np.full(taken.size, low), marker="|", s=120, color="tab:orange",
                       alpha=np.clip(0.25 + 0.75 * counts[taken] / max(1, len(samples)), 0, 1),
                       label=f"sampled ({len(samples)} rollouts)")
        top = np.asarray(row.get("topk") or [], np.int64)
        if top.size:
            ax.scatter(times[top], score[top], color="tab:red", s=16, zorder=3, label=f"top-{top.size}")
        mask = row.get("mask")
        hit = ""
        if mask is not None and samples:
            m = np.asarray(mask, bool)
            hit = f", sampled in ground truth {np.mean([m[list(s)].mean() for s in samples]):.2f}"
        ax.set_ylabel("score")
        ax.set_title(f"step {row['step']} (tau {row['tau']:.4f}{hit})", fontsize="small")
        ax.grid(True, ls="--", alpha=0.4)
    axes[0, 0].legend(fontsize="x-small", loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_run(run_dir, out=None, question: str | None = None, steps=None, count: int = 4,
             formats=FORMATS) -> list[Path]:
    """Write reward.{png,svg} and scores-<question>.{png,svg} under `out` (default RUN/plots); returns the paths.
    `question`: a watched question id (default: the first watched); `steps`: steps to show (nearest recorded),
    else `count` spread over the run."""
    run_dir = Path(run_dir)
    if not (run_dir / TRAIN_LOG).exists() and not (run_dir / WATCH).exists():
        raise HarnessError(f"{run_dir} is not a TSPO training run (no {TRAIN_LOG})")
    out = Path(out) if out else run_dir / "plots"
    paths = []
    rows = read_jsonl(run_dir / TRAIN_LOG)
    if rows:
        paths += save_figure(reward_figure(rows), out / "reward", formats)
    watch = read_jsonl(run_dir / WATCH)
    if watch:
        questions = list(dict.fromkeys(r["item"] for r in watch))
        question = question or questions[0]
        if question not in questions:
            raise HarnessError(f"question {question!r} was not watched in {run_dir} (watched: "
                               f"{', '.join(questions[:5])}); train with watch=[...] to record it")
        mine = [r for r in watch if r["item"] == question]
        chosen = pick_steps([r["step"] for r in mine], steps, count)
        last = {r["step"]: r for r in mine}  # a step logged twice (resume) keeps its last row
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in question)
        paths += save_figure(score_figure([last[s] for s in chosen], title=f"agent scores: {question}"),
                             out / f"scores-{slug}", formats)
    elif question is not None:
        raise HarnessError(f"{run_dir} has no watched questions ({WATCH} is empty)")
    if not paths:
        raise HarnessError(f"{run_dir}: nothing to plot yet")
    return paths
