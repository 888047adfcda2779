"""`harness sweep` and `harness compare --report`: a grid of runs over frame budgets (and any other option), then
the comparison tables, plots and HTML report of the runs, all written to one folder.

Every run of the grid is an ordinary `harness run` (own run directory, resume, feature store), so a sweep reuses
whatever earlier runs and features exist: rerunning it computes only what is missing.
"""
from __future__ import annotations

import itertools
from dataclasses import fields, replace
from pathlib import Path

from harness.config import RunConfig, parse_value
from harness.errors import HarnessError


def split_samplers(specs: list[str]) -> list[str]:
    """`--sampler uniform,topk:encoder=x,query=question,aks` -> one spec per sampler: a comma starts a new spec only
    where a registered sampler name follows (option values may hold commas: `aks:t1=0.2,depth=3`)."""
    from harness.registry import SAMPLERS

    names = set(SAMPLERS.names())
    out = []
    for spec in specs:
        current = []
        for part in spec.split(","):
            if current and part.split(":", 1)[0] in names:
                out.append(",".join(current))
                current = []
            current.append(part)
        out.append(",".join(current))
    return [s for s in out if s]


def parse_sets(sets: list[str]) -> list[tuple[str, list]]:
    """`--set key=v1,v2`: a RunConfig option (grid, short_grid, dtype, ...) or `task.KEY` / `backbone.KEY`."""
    known = {f.name for f in fields(RunConfig)} - {"task_args", "backbone_args", "samplers", "frames"}
    out = []
    for item in sets:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise HarnessError(f"--set {item!r}: expected KEY=VALUE[,VALUE...]")
        if key not in known and not key.startswith(("task.", "backbone.")):
            raise HarnessError(f"--set {key!r}: not a run option (known: {', '.join(sorted(known))}, task.KEY, "
                               f"backbone.KEY)")
        out.append((key, [parse_value(v) for v in values.split(",")]))
    return out


def expand(base: RunConfig, frames: list[int], sets: list[tuple[str, list]]) -> list[RunConfig]:
    """One RunConfig per combination of the --set values and the frame budgets."""
    if not frames:
        raise HarnessError("--frames needs at least one budget, e.g. 8,16,32,64")
    configs = []
    for combo in itertools.product(*(values for _, values in sets)):
        cfg = replace(base, task_args=dict(base.task_args), backbone_args=dict(base.backbone_args))
        for (key, _), value in zip(sets, combo):
            if key.startswith("task."):
                cfg.task_args[key[5:]] = value
            elif key.startswith("backbone."):
                cfg.backbone_args[key[9:]] = value
            else:
                setattr(cfg, key, value)
        configs += [replace(cfg, frames=int(k)) for k in frames]
    return configs


def run_grid(configs: list[RunConfig], debug: bool = False, progress: bool = True, log=print) -> list[Path]:
    from harness.runner import Run

    run_dirs = []
    for i, cfg in enumerate(configs, 1):
        log(f"sweep {i}/{len(configs)}: K={cfg.frames}" + "".join(
            f", {k}={getattr(cfg, k)}" for k in ("grid", "short_grid") if getattr(cfg, k) != getattr(RunConfig(), k)))
        run_dirs += Run(cfg, debug=debug, progress=progress).execute()
    return run_dirs


def write_report(run_dirs, out_dir, baseline: str = "uniform", by: str | None = "category", questions: int = 20,
                 decode_backend: str = "decord", seed: int = 0, n_resamples: int = 10000) -> dict:
    """Comparison tables (md, csv, tex, json), plots (png, svg) and report.html of `run_dirs` in `out_dir`."""
    from harness import html_report, plots
    from harness.compare import compare, write_leaderboard

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = compare(run_dirs, baseline=baseline, by=by, n_resamples=n_resamples, seed=seed)
    files = {f"table.{fmt}": write_leaderboard(c, out / f"comparison.{fmt}") for fmt in ("md", "csv", "tex", "json")}
    answered = c.table["accuracy"].notna().any()  # a --backbone none sweep has evidence recall only
    builders = {"accuracy_vs_frames" if answered else "recall_vs_frames": lambda: plots.accuracy_vs_frames(
                    c.table, metric="accuracy" if answered else "evidence_recall"),
                "recall_vs_accuracy": lambda: plots.recall_vs_accuracy(c.table)}
    for key in sorted(set(c.categories["key"])) if len(c.categories) and answered else []:
        builders[f"categories_{key}"] = lambda key=key: plots.category_bars(c.categories, key)
    example = _example_question(c, run_dirs)
    if example:  # one question up close: the sampler's scores over time, its frames, the ground truth
        run_dir, sample_id = example
        builders["question_scores"] = lambda: _score_figure(plots, run_dir, sample_id)
        builders["question_frames"] = lambda: _contact_figure(plots, run_dir, sample_id, decode_backend)
    pngs, skipped = [], []
    for name, build in builders.items():
        try:  # e.g. no accuracy in a --backbone none sweep, no evidence recall on a benchmark: say so, go on
            saved = plots.save_figure(build(), out / name)
        except HarnessError as e:
            skipped.append(f"plot {name} not drawn: {e}")
            continue
        files[name] = saved
        pngs += [p for p in saved if p.suffix == ".png"]
    files["skipped"] = skipped
    c.notes.extend(skipped)
    files["report.html"] = html_report.write_report(c, run_dirs, out / "report.html", plots=pngs,
                                                    questions=questions, decode_backend=decode_backend)
    return files


def _example_question(c, run_dirs) -> tuple[Path, str] | None:
    """The first question of the first query-dependent run (not the baseline) at the smallest K."""
    from harness.compare import load_run

    others = c.table[c.table["sampler"] != c.table["baseline"]].sort_values(["frames", "sampler"])
    for run in others["run"]:
        dirs = [d for d in run_dirs if Path(d).name == run]
        if dirs:
            rows = load_run(dirs[0]).rows
            with_selection = [r for r in rows if r.get("selection")]
            if with_selection:
                return Path(dirs[0]), with_selection[0]["sample_id"]
    return None


def _score_figure(plots, run_dir: Path, sample_id: str):
    curve = plots.score_curve_data(run_dir, sample_id)
    return plots.score_curve(curve.times, curve.scores, curve.selected_times, curve.evidence,
                             title=f"{run_dir.name}: {sample_id}", score_label=curve.score_label)


def _contact_figure(plots, run_dir: Path, sample_id: str, decode_backend: str):
    from harness.compare import load_run

    frames, times = plots.selection_frames(run_dir, sample_id, decode_backend)
    evidence = load_run(run_dir).by_id[sample_id].get("evidence") or ()
    return plots.contact_sheet(frames, times, evidence, title=f"{run_dir.name}: {sample_id}")
