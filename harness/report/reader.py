"""One reader of a finished (or running) run directory for every report: `harness table`, `harness compare`, the
plots and the HTML report. The files and their layout are harness.store.runs's; this adds what a report names a run
by (task, backbone, K, sampler label) and looks rows up by sample id.

Rows are verified as they are read, never believed as written (a `"correct": true` typed into predictions.jsonl
must not change a table):

* every row is re-scored: right exactly when its answer parsed (`parse_status` ok) to the gold letter
  (`prediction.parsed == answer`); errors, parse failures and unanswered rows are wrong; a row without a gold answer
  (a test split) is not scored (`correct` None). A run with no gold answer at all cannot be scored: the commands
  that score (compare, its report, baseline save, regress) refuse it (`load_run(..., scoring=command)`). The stored `correct` is
  never what a report counts; a row where it disagrees is reported.
* a row that carries a `digest` (harness.store.runs.row_digest, written since rows have one) must match it. One that
  does not was edited after the run wrote it: its letter cannot be trusted either, so it counts as wrong (whatever
  it says), is reported, and the tables show how many rows of a run failed verification. Rows without a digest
  (runs written before) are re-scored only.

What was found goes to stderr, one line per run (naming the directory, the counts and the first sample ids), once
per process however many reports read the run.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from harness.errors import HarnessError
from harness.records import PARSE_OK
from harness.scoring.summary import has_gold
from harness.store.runs import load_config, row_digest, run_rows

SHOWN_IDS = 3  # sample ids a warning line names before "and N more"
_reported: set = set()  # (run directory, findings) already warned about in this process


def sampler_label(identity: dict, spec: str | None = None) -> str:
    """The sampler spec as the user typed it when the run recorded one, else name(full config)."""
    if spec:
        return spec
    cfg = identity["sampler"]["config"]
    args = ",".join(f"{k}={v}" for k, v in sorted(cfg.items()))
    return identity["sampler"]["name"] + (f"({args})" if args else "")


def rescore(row: dict) -> bool | None:
    """Right exactly when the answer parsed cleanly to the gold letter; never the row's own `correct`. None where the
    row has no gold answer (a test split): nothing to score."""
    pred, gold = row["prediction"], row.get("answer")
    if gold is None:
        return None
    return pred.get("parse_status") == PARSE_OK and pred.get("parsed") == gold


@dataclass
class Verification:
    """What reading a run's rows found: `edited`, the sample ids whose content does not match their digest (they
    count as wrong); `rescored`, those whose stored `correct` the parsed letter and the gold do not give (they
    count as re-scored)."""

    edited: list[str] = field(default_factory=list)
    rescored: list[str] = field(default_factory=list)

    def line(self, run_dir: Path) -> str | None:
        """The stderr line about these findings, or None when every row verified."""
        findings = [(self.edited, "failed verification (content does not match the row's digest: edited after the "
                                  "run wrote it) and count as wrong"),
                    (self.rescored, 'stored a "correct" that the parsed letter and the gold answer do not give, '
                                    're-scored')]
        parts = [f"{_rows(ids)} {what}: {_ids(ids)}" for ids, what in findings if ids]
        return f"harness: warning: {run_dir}: " + "; ".join(parts) if parts else None


def _rows(ids: list[str]) -> str:
    return f"{len(ids)} row" + ("s" if len(ids) != 1 else "")


def _ids(ids: list[str]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def verify_rows(run_dir: Path, rows: list[dict]) -> tuple[list[dict], Verification]:
    """The rows with `prediction.correct` as verified (copies; the file is not touched), and what was found."""
    found, out = Verification(), []
    for row in rows:
        sid = row["sample_id"]
        if not isinstance(row.get("prediction"), dict):
            raise HarnessError(f"{run_dir}: row {sid!r} of its predictions has no prediction record")
        stored = row["prediction"].get("correct")
        if "digest" in row and row_digest(row) != row["digest"]:
            found.edited.append(sid)
            correct = False
        else:
            correct = rescore(row)
            # runs made before unscored rows existed stored False for a hidden gold (MLVU test): the same count
            if stored != correct and not (correct is None and stored is False):
                found.rescored.append(sid)
        out.append({**row, "prediction": {**row["prediction"], "correct": correct}})
    return out, found


@dataclass
class RunRows:
    dir: Path
    config: dict  # config.json: the run's identity and options
    task: str
    backbone: str
    frames: int
    sampler: str  # label: the spec as typed, else name(config)
    sampler_name: str
    rows: list[dict]  # one per sample, as predictions.jsonl (and rank files not merged yet) hold them, verified
    verification: Verification = field(default_factory=Verification)

    @cached_property
    def by_id(self) -> dict[str, dict]:
        return {r["sample_id"]: r for r in self.rows}

    @cached_property
    def unverified(self) -> frozenset[str]:
        """Sample ids of the rows that failed verification (edited after they were written; counted wrong)."""
        return frozenset(self.verification.edited)

    def row(self, sample_id: str) -> dict:
        if sample_id not in self.by_id:
            raise HarnessError(f"{self.dir}: no sample {sample_id!r} in its predictions")
        return self.by_id[sample_id]


def load_run(run_dir, scoring: str | None = None) -> RunRows:
    """The run in `run_dir`, its rows verified (see the module docstring); a HarnessError when it is no run
    directory or has no rows yet, or, where `scoring` names the command that scores it, when no row has a gold
    answer (a test split: submission only)."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    rows = run_rows(run_dir)
    if not rows:
        raise HarnessError(f"{run_dir} has no predictions yet")
    rows, found = verify_rows(run_dir, rows)
    line = found.line(run_dir)
    key = (str(run_dir.resolve()), tuple(found.edited), tuple(found.rescored))
    if line and key not in _reported:
        _reported.add(key)
        print(line, file=sys.stderr)
    ident = config["identity"]
    if scoring and not has_gold(rows):
        split = (config.get("task_config") or {}).get("split")
        raise HarnessError(f"{run_dir}: no gold answers in its rows ({ident['task']['name']}"
                           + (f" split {split}" if split else "") + f": submission only), so harness {scoring} "
                           "has nothing to score; harness table counts its answers, harness export writes them")
    return RunRows(run_dir, config, ident["task"]["name"], ident["backbone"]["name"], int(ident["frames"]),
                   sampler_label(ident, config.get("sampler_spec")), ident["sampler"]["name"], rows, found)
