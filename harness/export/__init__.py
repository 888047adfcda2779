"""`harness export`: a run's answers in the files the evaluation toolkits and leaderboards read, one module per
format (docs/export.md):

* `lmms-eval` (lmms_eval.py): lmms-eval 0.7.3's results JSON and per-sample JSONL, as its `--log_samples` writes them;
* `vlmevalkit` (vlmevalkit.py): the prediction .xlsx VLMEvalKit's `evaluate` reads (runs made with
  `--protocol vlmevalkit`);
* `longvideobench-submission` (longvideobench.py): the LongVideoBench leaderboard's JSON (question id -> answer).

Every exported sample carries its harness sample id (and parse status and error), error rows and parse failures are
exported as what they are, and a run of several samplers or budgets (one run directory per (sampler, K)) gives one
export per run directory; `--sampler` / `--frames` pick some.
"""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

FORMATS = ("lmms-eval", "vlmevalkit", "longvideobench-submission")
DEFAULT_OUT = "exports"


def _writer(fmt: str):
    if fmt == "lmms-eval":
        from harness.export.lmms_eval import check_exportable, export_lmms_eval
        return check_exportable, export_lmms_eval, None
    if fmt == "vlmevalkit":
        from harness.export.vlmevalkit import check_exportable, default_name, export_vlmevalkit
        return check_exportable, export_vlmevalkit, default_name
    if fmt == "longvideobench-submission":
        from harness.export.longvideobench import FILE_NAME, check_exportable, export_submission
        return check_exportable, export_submission, (lambda run: FILE_NAME)
    import difflib
    close = difflib.get_close_matches(fmt, FORMATS, n=1, cutoff=0.5)
    raise HarnessError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})"
                       + (f"; did you mean {close[0]}?" if close else ""))


def _target(out: Path, run, several: bool, file_name) -> Path:
    """Where one run's export goes: `out` itself (a folder for lmms-eval, else a file, or a folder to hold the
    default file name) for one run; `out/<run directory name>/...` for each of several."""
    if several:
        folder = out / run.dir.name
        return folder if file_name is None else folder / file_name(run)
    if file_name is None or out.suffix:
        return out
    return out / file_name(run)


def export(paths, fmt: str, out: str | None = None, sampler: str | None = None,
           frames: int | None = None) -> list[tuple[Path, list[Path]]]:
    """Export every run under `paths` (picked by sampler and K) in `fmt`; [(run directory, files written)]. Every run
    is checked before anything is written."""
    from harness.export.source import runs_to_export

    check, write, file_name = _writer(fmt)
    runs = runs_to_export(paths, sampler, frames)
    several = len(runs) > 1
    out_path = Path(out or DEFAULT_OUT)
    if several and out_path.suffix in (".xlsx", ".json"):
        raise HarnessError(f"--out {out_path}: {len(runs)} runs are exported (one per sampler and K), so --out is a "
                           "folder; or pick one with --sampler / --frames")
    for run in runs:
        check(run)
    return [(run.dir, write(run, _target(out_path, run, several, file_name))) for run in runs]
