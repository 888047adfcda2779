"""`harness compare`: samplers against a baseline at the same task, backbone and frame budget K.

Runs are grouped by (task, backbone, K). In each group the baseline run (default: the `uniform` sampler) is the
reference: every other run is paired with it question by question (by sample id; only questions in both runs
count, and `n_paired` says how many), and gets the accuracy difference, a paired bootstrap confidence interval
of that difference and a McNemar p-value (harness/report/stats.py), Holm-adjusted over the group's samplers when
several are compared with the one baseline. Where a video carries several questions (Video-MME asks 3 per video)
the bootstrap resamples whole videos, keeping each video's questions together (`cluster="auto"`, the default; each
row records which in `resampled`). Each row also shows what the backbone actually got
per question (frames, and visual tokens where rows record them), so unequal budgets are visible.

Everything is recomputed from `predictions.jsonl`, its rows verified and re-scored by the reader (reader.py: a
row that fails verification counts as wrong, and a note says how many); errors and parse failures count as wrong,
as in `harness table`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.records import NOT_ANSWERED
from harness.report import formats
from harness.report.formats import missing
from harness.report.reader import RunRows, load_run
from harness.report.stats import (MCNEMAR_METHODS, bootstrap_accuracy, cluster_bootstrap, cluster_bootstrap_accuracy,
                                  holm, mcnemar, paired_bootstrap)
from harness.scoring.summary import summarise
from harness.util.fileio import atomic_write

FORMATS = ("md", "csv", "latex", "json")
# how the bootstrap resamples: auto (videos where a video has several questions, else questions), video, none
CLUSTER_CHOICES = ("auto", "video", "none")
LEADERBOARD_SUFFIXES = {".md": "md", ".csv": "csv", ".tex": "latex", ".json": "json"}
GROUP = ["task", "backbone", "frames"]
# where a row may record the visual tokens the backbone consumed for it (no backbone records them yet)
TOKEN_KEYS = ("visual_tokens",)


@dataclass
class Comparison:
    """`table`: one row per run; `categories`: one row per (run, category key, value), empty without `by`."""

    table: pd.DataFrame
    categories: pd.DataFrame
    baseline: str
    n_resamples: int
    seed: int
    confidence: float
    mcnemar: str
    notes: list[str] = field(default_factory=list)
    cluster: str = "auto"

    def method(self) -> str:
        test = ("exact McNemar test (two-sided binomial on the discordant pairs)" if self.mcnemar == "exact" else
                "McNemar chi-square test with continuity correction")
        over = set(self.table["resampled"]) if "resampled" in self.table else {"questions"}
        how = {"videos": "whole videos (each keeps all its questions: questions on one video are not independent)",
               "questions": "questions"}
        ci = " or ".join(f"over {how[o]} where the row says {o}" for o in sorted(over)) if len(over) > 1 else \
            f"over {how[next(iter(over))]}"
        clustered = (" McNemar's test treats questions as independent, so with several questions per video its p is "
                     "optimistic beside the video-resampled CI." if "videos" in over else "")
        return (f"diff: accuracy minus the {self.baseline} run's, in points, on the questions both answered "
                f"(n paired); {round(100 * self.confidence)}% CI: paired percentile bootstrap {ci} "
                f"({self.n_resamples} resamples, seed {self.seed}; --cluster {self.cluster}); p: {test}; Holm p: "
                f"that p Holm-adjusted (step-down) over the samplers compared with the same baseline at the same "
                f"task, backbone and K (per-category p are not adjusted).{clustered} Errors and parse failures "
                f"count as wrong; frames/tokens per question over rows with a selection.")


def _is_baseline(run: RunRows, baseline: str) -> bool:
    return baseline in (run.sampler, run.sampler_name)


def _frames_used(row: dict) -> int | None:
    sel = row.get("selection")
    return None if sel is None else len(sel["frame_indices"])


def _cost(rows: list[dict]) -> dict:
    """Measured cost per question, over the rows that recorded it (runs written before costs were recorded: None):
    seconds the sampler took to choose per 1000 questions (its own computation; the shared feature pass is in
    events.jsonl), candidates scored, video-LLM passes (scoring and answering)."""
    costed = [r for r in rows if r.get("cost") is not None]
    select = [(r["prediction"].get("timings") or {}).get("select") for r in rows if r.get("selection")]
    select = [s for s in select if s is not None]
    return {"select_s_per_1k": 1000 * float(np.mean(select)) if select else None,
            "frames_scored": float(np.mean([r["cost"]["frames_scored"] for r in costed])) if costed else None,
            "backbone_passes": float(np.mean([r["cost"]["backbone_passes"] for r in costed])) if costed else None}


def _tokens_used(row: dict) -> float | None:
    for where in (row, row.get("prediction") or {}):
        for key in TOKEN_KEYS:
            if where.get(key) is not None:
                return float(where[key])
    return None


def _spread(values) -> tuple[float | None, float | None, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return None, None, None
    return float(np.mean(known)), float(min(known)), float(max(known))


def _correct(rows) -> np.ndarray:
    return np.array([bool(r["prediction"]["correct"]) for r in rows], dtype=bool)


def _answered(rows) -> bool:
    """False for a selection-only run (--backbone none): it has no accuracy to compare."""
    return not any(r["prediction"]["parse_status"] == NOT_ANSWERED for r in rows)


def resampling(rows: list[dict], choice: str) -> str:
    """"videos" (the cluster bootstrap) or "questions": `video` always, `none` never, `auto` where some video of
    the rows carries more than one question."""
    if choice not in CLUSTER_CHOICES:
        raise HarnessError(f"unknown --cluster {choice!r} (known: {', '.join(CLUSTER_CHOICES)})")
    if choice == "none":
        return "questions"
    videos = [r.get("video") for r in rows]
    if choice == "video" and None in videos:
        raise HarnessError("--cluster video: some rows record no video to cluster by (runs written before rows "
                           "recorded it); use --cluster none")
    several = None not in videos and len(set(videos)) < len(videos)
    return "videos" if choice == "video" or several else "questions"


def _ci(a, b, rows: list[dict], opts: dict):
    """The paired CI of b - a (b alone: its accuracy), resampling videos or questions as `opts` says."""
    n, seed, conf = opts["n_resamples"], opts["seed"], opts["confidence"]
    if opts["resampled"] == "videos":
        videos = [r["video"] for r in rows]
        return cluster_bootstrap(a, b, videos, n, seed, conf) if a is not None else \
            cluster_bootstrap_accuracy(b, videos, n, seed, conf)
    return paired_bootstrap(a, b, n, seed, conf) if a is not None else bootstrap_accuracy(b, n, seed, conf)


def _paired_stats(base: list[dict], other: list[dict], opts: dict) -> dict:
    """diff, CI and McNemar p (percentage points) of `other` vs `base`, rows already aligned."""
    if not base or not _answered(base) or not _answered(other):
        return {"n_paired": len(base), "diff": None, "ci_low": None, "ci_high": None, "mcnemar_p": None,
                "b": None, "c": None}
    a, b = _correct(base), _correct(other)
    ci = _ci(a, b, base, opts)
    test = mcnemar(a, b, opts["mcnemar"])
    return {"n_paired": int(a.size), "diff": 100 * ci.estimate, "ci_low": 100 * ci.low, "ci_high": 100 * ci.high,
            "mcnemar_p": test.p_value, "b": test.b, "c": test.c}


def _align(base: RunRows, run: RunRows) -> tuple[list[dict], list[dict]]:
    """The rows of both runs for the questions they share, in the baseline's order."""
    other = run.by_id
    shared = [r for r in base.rows if r["sample_id"] in other]
    return shared, [other[r["sample_id"]] for r in shared]


def _in_category(row: dict, key: str, value: str) -> bool:
    v = row.get("categories", {}).get(key)
    return value in ([str(x) for x in v] if isinstance(v, list) else [str(v)])  # multi-label: every label


def _run_record(run: RunRows, base: RunRows, opts: dict) -> dict:
    m = summarise(run.rows)["overall"]
    rec = {"task": run.task, "backbone": run.backbone, "frames": run.frames, "sampler": run.sampler,
           "baseline": base.sampler, "n": m["n"], "accuracy": m["accuracy"], "acc_ci_low": None, "acc_ci_high": None,
           "resampled": opts["resampled"], "videos": len({r.get("video") for r in run.rows})}
    if _answered(run.rows):
        acc = _ci(None, _correct(run.rows), run.rows, opts)
        rec.update(acc_ci_low=100 * acc.low, acc_ci_high=100 * acc.high)
    if run is base:
        rec.update({"n_paired": m["n"], "diff": None, "ci_low": None, "ci_high": None, "mcnemar_p": None,
                    "b": None, "c": None})
    else:
        rec.update(_paired_stats(*_align(base, run), opts))
    frames = _spread(_frames_used(r) for r in run.rows)
    tokens = _spread(_tokens_used(r) for r in run.rows)
    rec.update({"parse_fail_pct": 100.0 * m["parse_failed"] / m["n"], "errors": m["errors"],
                "evidence_recall": m["evidence_recall"],
                "frames_mean": frames[0], "frames_min": frames[1], "frames_max": frames[2],
                "tokens_mean": tokens[0], "tokens_min": tokens[1], "tokens_max": tokens[2],
                **_cost(run.rows), "run": run.dir.name})
    return rec


def _category_records(run: RunRows, base: RunRows, keys: list[str], opts: dict) -> list[dict]:
    out = []
    m = summarise(run.rows, keys)["by"]
    shared_base, shared_run = _align(base, run)
    for key in keys:
        for value, g in m.get(key, {}).items():
            rec = {"task": run.task, "backbone": run.backbone, "frames": run.frames, "sampler": run.sampler,
                   "key": key, "value": value, "n": g["n"], "accuracy": g["accuracy"]}
            if run is base:
                rec.update({"n_paired": g["n"], "diff": None, "ci_low": None, "ci_high": None, "mcnemar_p": None})
            else:
                keep = [i for i, r in enumerate(shared_run) if _in_category(r, key, value)]
                stats = _paired_stats([shared_base[i] for i in keep], [shared_run[i] for i in keep], opts)
                rec.update({k: stats[k] for k in ("n_paired", "diff", "ci_low", "ci_high", "mcnemar_p")})
            out.append(rec)
    return out


def _category_keys(runs: list[RunRows], by: str | None) -> list[str]:
    have = sorted({k for run in runs for r in run.rows for k in r.get("categories", {})})
    if by is None:
        return []
    if by == "category":
        return have
    if by not in have:
        raise HarnessError(f"no category {by!r} in the runs' rows (have: {', '.join(have) or 'none'})")
    return [by]


def compare(run_dirs, baseline: str = "uniform", by: str | None = None, n_resamples: int = 10000,
            seed: int = 0, confidence: float = 0.95, mcnemar_method: str = "exact", cluster: str = "auto") -> Comparison:
    """Compare runs with the baseline run of their (task, backbone, K) group.

    `baseline` names the reference run by sampler name (`uniform`) or by its label (the spec as typed, e.g.
    `uniform:variant=linspace-round`); every group needs exactly one. `by`: a category key, or "category" for
    all keys, adds the per-category breakdown. Every comparison uses the same seed (common random numbers).
    `cluster`: `auto` resamples whole videos in a group whose baseline run asks several questions of a video, else
    questions; `video` always resamples videos, `none` always questions (see `resampling`).
    """
    if mcnemar_method not in MCNEMAR_METHODS:
        raise HarnessError(f"unknown McNemar method {mcnemar_method!r} (known: {', '.join(MCNEMAR_METHODS)})")
    if not run_dirs:
        raise HarnessError("no run directories to compare")
    opts = {"n_resamples": int(n_resamples), "seed": int(seed), "confidence": float(confidence),
            "mcnemar": mcnemar_method}
    seen, runs = set(), []
    for d in run_dirs:  # the same directory named twice counts once
        key = Path(d).resolve()
        if key not in seen:
            seen.add(key)
            runs.append(load_run(d, scoring="compare"))
    groups: dict[tuple, list[RunRows]] = {}
    for run in runs:
        groups.setdefault((run.task, run.backbone, run.frames), []).append(run)
    keys = _category_keys(runs, by)
    records, categories, notes = [], [], []
    for (task, backbone, frames), members in sorted(groups.items()):
        # the spec as typed first ("uniform" is the plain uniform run even beside uniform:variant=...), then name
        bases = [r for r in members if r.sampler == baseline] or [r for r in members if _is_baseline(r, baseline)]
        where = f"task {task}, backbone {backbone}, K={frames}"
        if not bases:
            raise HarnessError(f"no baseline run {baseline!r} for {where} (runs there: "
                               f"{', '.join(sorted(r.sampler for r in members))}); pass it or choose --baseline")
        if len(bases) > 1:
            raise HarnessError(f"{len(bases)} runs match baseline {baseline!r} for {where} "
                               f"({', '.join(r.sampler + ' in ' + r.dir.name for r in bases)}); name one by its label")
        base = bases[0]
        ordered = [base] + sorted((r for r in members if r is not base), key=lambda r: (r.sampler, r.dir.name))
        group = dict(opts, resampled=resampling(base.rows, cluster))
        first = len(records)
        for run in ordered:
            rec = _run_record(run, base, group)
            if run is not base and rec["n_paired"] < min(rec["n"], len(base.rows)):
                notes.append(f"{run.sampler} ({where}): {rec['n_paired']} questions shared with the baseline "
                             f"({rec['n']} in the run, {len(base.rows)} in the baseline); diff, CI and p use those")
            if run.unverified:
                notes.append(f"{run.sampler} ({where}): {len(run.unverified)} of {rec['n']} rows failed verification "
                             f"(edited after the run wrote them) and count as wrong")
            records.append(rec)
            categories += _category_records(run, base, keys, group)
        _adjust(records[first:])
    table = pd.DataFrame.from_records(records)
    table[["n_paired", "b", "c", "videos"]] = table[["n_paired", "b", "c", "videos"]].astype("Int64")  # counts stay integers beside NA
    if table["tokens_mean"].isna().all():
        notes.append("visual tokens per question: '-' because no run's rows record them "
                     f"(a backbone would record {' or '.join(TOKEN_KEYS)} in each row's prediction)")
    cat_cols = ["task", "backbone", "frames", "sampler", "key", "value", "n", "accuracy", "n_paired", "diff",
                "ci_low", "ci_high", "mcnemar_p"]
    return Comparison(table, pd.DataFrame.from_records(categories, columns=cat_cols), baseline, opts["n_resamples"],
                      opts["seed"], opts["confidence"], mcnemar_method, notes, cluster)


def _adjust(group: list[dict]) -> None:
    """Holm-adjusted McNemar p (`mcnemar_p_holm`) over the group's runs compared with its baseline."""
    tested = [r for r in group if r["mcnemar_p"] is not None]
    for rec, p in zip(tested, holm([r["mcnemar_p"] for r in tested])):
        rec["mcnemar_p_holm"] = p
    for rec in group:
        rec.setdefault("mcnemar_p_holm", None)


# -- rendering --------------------------------------------------------------------------------------------------------
def _num(v, digits: int = 1, signed: bool = False) -> str:
    if missing(v):
        return "-"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _p(v) -> str:
    if missing(v):
        return "-"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _resampled(r) -> str:
    return f"videos ({r['videos']})" if r["resampled"] == "videos" else "questions"


def _range(mean, low, high, digits: int = 1) -> str:
    if missing(mean):
        return "-"
    return f"{mean:.1f} ({low:.{digits}f}-{high:.{digits}f})"


def display_runs(c: Comparison) -> tuple[list[str], list[list[str]]]:
    pct = round(100 * c.confidence)
    cols = ["task", "backbone", "K", "sampler", "n", "accuracy", f"diff vs {c.baseline}", f"{pct}% CI",
            "CI resamples", "n paired", "McNemar p", "Holm-adjusted p", "parse-fail %", "errors", "evidence recall", "frames/q mean (min-max)",
            "visual tokens/q mean (min-max)", "select s/1k q", "frames scored/q", "backbone passes/q"]
    cells = []
    for r in c.table.to_dict("records"):
        ci = "-" if missing(r["ci_low"]) else f"[{_num(r['ci_low'], signed=True)}, {_num(r['ci_high'], signed=True)}]"
        cells.append([r["task"], r["backbone"], str(r["frames"]), r["sampler"], str(r["n"]), _num(r["accuracy"]),
                      _num(r["diff"], signed=True), ci, _resampled(r), str(r["n_paired"]), _p(r["mcnemar_p"]),
                      _p(r["mcnemar_p_holm"]),
                      _num(r["parse_fail_pct"]), str(r["errors"]), _num(r["evidence_recall"]),
                      _range(r["frames_mean"], r["frames_min"], r["frames_max"], 0),
                      _range(r["tokens_mean"], r["tokens_min"], r["tokens_max"], 0),
                      _num(r["select_s_per_1k"], 2), _num(r["frames_scored"]), _num(r["backbone_passes"])])
    return cols, cells


def display_categories(c: Comparison) -> tuple[list[str], list[list[str]]]:
    pct = round(100 * c.confidence)
    cols = ["task", "backbone", "K", "sampler", "category", "n", "accuracy", f"diff vs {c.baseline}", f"{pct}% CI",
            "McNemar p"]
    cells = []
    for r in c.categories.to_dict("records"):
        ci = "-" if missing(r["ci_low"]) else f"[{_num(r['ci_low'], signed=True)}, {_num(r['ci_high'], signed=True)}]"
        cells.append([r["task"], r["backbone"], str(r["frames"]), r["sampler"], f"{r['key']}={r['value']}",
                      str(r["n"]), _num(r["accuracy"]), _num(r["diff"], signed=True), ci, _p(r["mcnemar_p"])])
    return cols, cells


_TEXT_COLUMNS = ("task", "backbone", "sampler", "category")


def alignment(cols) -> str:
    """One letter per column of display_runs/display_categories: "l" for text, "r" for numbers."""
    return "".join("l" if c in _TEXT_COLUMNS else "r" for c in cols)


def render(c: Comparison, fmt: str, part: str = "all") -> str:
    """md/latex: the run table, then (with categories) the per-category table, then the method and notes;
    csv: one table (`part` "runs" or "categories"; "all" means runs); json: everything in one document."""
    if fmt not in FORMATS:
        raise HarnessError(f"unknown comparison format {fmt!r} (known: {', '.join(FORMATS)})")
    if part not in ("all", "runs", "categories"):
        raise HarnessError(f"unknown table part {part!r} (known: all, runs, categories)")
    if fmt == "csv":
        return formats.csv(c.categories if part == "categories" else c.table)
    if fmt == "json":
        doc = {"baseline": c.baseline, "mcnemar": c.mcnemar, "multiple_comparisons": "holm",
               "bootstrap": {"n_resamples": c.n_resamples, "seed": c.seed, "confidence": c.confidence,
                             "cluster": c.cluster},
               "method": c.method(), "notes": c.notes}
        if part in ("all", "runs"):
            doc["runs"] = formats.records(c.table)
        if part in ("all", "categories"):
            doc["categories"] = formats.records(c.categories)
        return json.dumps(doc, indent=2) + "\n"
    parts = []
    if part in ("all", "runs"):
        parts.append(display_runs(c))
    if part in ("all", "categories") and len(c.categories):
        parts.append(display_categories(c))
    lines = []
    for cols, cells in parts:
        lines += (formats.markdown if fmt == "md" else formats.latex)(cols, cells, alignment(cols)) + [""]
    if fmt == "md":
        lines += [c.method()] + [f"* {n}" for n in c.notes]
    else:
        lines += ["% " + c.method()] + [f"% {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def write_leaderboard(c: Comparison, path) -> Path:
    """Write the comparison to `path` (e.g. results/leaderboard.md), the format chosen by the suffix: .md, .csv
    (the run table), .tex (booktabs) or .json. Atomic: a reader never sees half a file."""
    path = Path(path)
    fmt = LEADERBOARD_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise HarnessError(f"leaderboard {path}: unknown suffix {path.suffix!r} "
                           f"(known: {', '.join(LEADERBOARD_SUFFIXES)})")
    atomic_write(path, render(c, fmt))
    return path
