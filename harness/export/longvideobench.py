"""`harness export --format longvideobench-submission`: the LongVideoBench test-set file for its leaderboard.

The format is pinned from the code the LongVideoBench README sends evaluators to (lmms-eval's LongVideoBench tasks,
0.7.3): for the test splits (`longvideobench_test_v` / `_i`, metric `submission`), `longvideobench_process_results`
returns `{"submission": {doc["id"]: pred}}`, where `pred` is the model's generated text itself (not a parsed
letter), and `longvideobench_aggregate_results_for_submission` merges those one-entry dicts and `json.dump`s them to
`longvideobench_test_for_submission.json`. So: one JSON object, question id -> the answer text, in question order.

Every question needs an answer, so a run with error rows is refused (rerun it with --retry-errors once the cause is
fixed); nothing is made up. Parse failures are written as the text the model gave (the leaderboard parses it).

The leaderboard takes the test split (`--task-arg split=test`, lmms-eval's `longvideobench_test_v`), whole: a test
run that left questions out (`--limit`, `skip_missing`) is refused. A validation run exports the same way (its file
only checks the format), with a note on stderr saying so.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.export.source import ExportRun, answer_text
from harness.util.fileio import atomic_write

FILE_NAME = "longvideobench_test_for_submission.json"


def check_exportable(run: ExportRun) -> None:
    if run.run.task != "longvideobench":
        raise HarnessError(f"{run.dir}: --format longvideobench-submission needs a longvideobench run "
                           f"(this one is {run.run.task!r})")
    errors = [row["sample_id"] for row in run.rows if answer_text(row) is None]
    if errors:
        raise HarnessError(f"{run.dir}: {len(errors)} error rows have no answer to submit (first {errors[0]!r}); "
                           "rerun the run with --retry-errors once their cause is fixed")
    if split_of(run) == "test":
        questions = [s.id for s in run.task.load_samples()]
        left = [sid for sid in questions if sid not in run.samples]
        if left:
            raise HarnessError(f"{run.dir}: {len(left)} of the {len(questions)} test questions have no answer in "
                               f"this run (first {left[0]!r}; --limit or skip_missing); the leaderboard takes the "
                               "whole test split")


def split_of(run: ExportRun) -> str:
    """The run's LongVideoBench split (runs made before the test split existed are validation runs)."""
    return getattr(run.task, "split", "validation")


def export_submission(run: ExportRun, out: Path) -> list[Path]:
    """Write {question id: answer text} to `out` (a .json path); its path."""
    check_exportable(run)
    out = Path(out)
    if out.suffix != ".json":
        raise HarnessError(f"--out {out}: the LongVideoBench submission is a .json file")
    atomic_write(out, json.dumps({row["sample_id"]: answer_text(row) for row in run.rows}, ensure_ascii=False))
    if split_of(run) != "test":
        print(f"harness: note: {run.dir} is a LongVideoBench {split_of(run)}-split run (longvideobench_val_v): "
              f"{out.name} only checks the format; the leaderboard takes a test-split run (--task-arg split=test)",
              file=sys.stderr)
    return [out]
