"""Everything about a set of runs in one folder (`harness compare --report DIR`, and what `harness sweep` writes):
the comparison tables (md, csv, tex, json), the plots (png, svg) and the self-contained report.html."""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.report.reader import load_run


def write_bundle(run_dirs, out_dir, baseline: str = "uniform", by: str | None = "category", questions: int = 20,
                 decode_backend: str = "decord", seed: int = 0, n_resamples: int = 10000, cluster: str = "auto") -> dict:
    """Comparison tables (md, csv, tex, json), plots (png, svg) and report.html of `run_dirs` in `out_dir`.
    Returns the files by name; "skipped" lists the plots that could not be drawn, and why."""
    from harness.report import plots
    from harness.report.compare import compare, write_leaderboard
    from harness.report.html import write_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = compare(run_dirs, baseline=baseline, by=by, n_resamples=n_resamples, seed=seed, cluster=cluster)
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
    files["report.html"] = write_html(c, run_dirs, out / "report.html", plots=pngs, questions=questions,
                                      decode_backend=decode_backend)
    return files


def _example_question(c, run_dirs) -> tuple[Path, str] | None:
    """The first question of the first query-dependent run (not the baseline) at the smallest K."""
    others = c.table[c.table["sampler"] != c.table["baseline"]].sort_values(["frames", "sampler"])
    for run in others["run"]:
        dirs = [d for d in run_dirs if Path(d).name == run]
        if dirs:
            with_selection = [r for r in load_run(dirs[0]).rows if r.get("selection")]
            if with_selection:
                return Path(dirs[0]), with_selection[0]["sample_id"]
    return None


def _score_figure(plots, run_dir: Path, sample_id: str):
    curve = plots.score_curve_data(run_dir, sample_id)
    return plots.score_curve(curve.times, curve.scores, curve.selected_times, curve.evidence,
                             title=f"{run_dir.name}: {sample_id}", score_label=curve.score_label)


def _contact_figure(plots, run_dir: Path, sample_id: str, decode_backend: str):
    frames, times = plots.selection_frames(run_dir, sample_id, decode_backend)
    evidence = load_run(run_dir).row(sample_id).get("evidence") or ()
    return plots.contact_sheet(frames, times, evidence, title=f"{run_dir.name}: {sample_id}")
