"""`harness regress`: runs against a saved baseline (harness.report.baseline), pass or fail with an exit code.

Each run is paired with the baseline entry of the same identity (task and its config, backbone and its config,
sampler name, config and config hash, K, grid, protocol). A run that matches no entry is bad input: one line
naming the closest entry and the field where it differs (exit 2), never a silent pass.

Only the run's own samples are compared, by sample id: a `--limit` subset is checked against an entry saved from
the full run (or a larger subset), and the baseline's accuracy is recomputed on the same samples. Every sample of
the run must be in the entry (else exit 2: the baseline was saved from another subset); a run without `--limit`
must hold every sample of the entry, and a run must hold all the samples its subset selected (an unfinished run
is no evidence).

* `exact`: every sample's parsed answer and selection digest (and gold letter) equal the baseline's; any
  difference fails, and the first differing samples are listed.
* `accuracy`: fails when the accuracy on the compared samples drops by more than `max_drop` points AND the exact
  McNemar test of the paired correctness (harness.report.stats) says it is no noise: its p-value, Holm-adjusted
  across the runs checked together, is below `alpha`. Improvements and insignificant changes pass, and are shown.

Exit codes: 0 every run passes, 1 a regression, 2 bad input (raised as HarnessError by the callers' CLI).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.report import baseline as bl
from harness.report.reader import load_run
from harness.report.stats import holm, mcnemar_counts
from harness.util.hashing import short_hash

MODES = ("exact", "accuracy")
PASS, REGRESSION = 0, 1  # exit codes; bad input is 2 (HarnessError)


@dataclass
class SampleDiff:
    sample_id: str
    fields: list[str]  # what differs: gold, answer, frames
    baseline_answer: str | None
    baseline_frames: str | None  # the baseline holds digests only
    answer: str | None
    frames: str | None  # digest of the new selection
    frame_indices: list[int] | None


@dataclass
class RunCheck:
    run_dir: str
    label: str
    mode: str
    n: int  # samples compared
    baseline_accuracy: float  # points, on the compared samples
    accuracy: float
    passed: bool = True
    verdict: str = ""
    kind: str = ""  # identical, differs; regression, insignificant drop, drop within max-drop, improvement, unchanged
    differences: int = 0  # exact: samples that differ
    first: list[SampleDiff] = field(default_factory=list)  # exact: the first `shown` of them
    b: int = 0  # baseline right, run wrong
    c: int = 0  # baseline wrong, run right
    p: float | None = None  # exact McNemar (accuracy mode)
    p_holm: float | None = None

    @property
    def change(self) -> float:
        return self.accuracy - self.baseline_accuracy


@dataclass
class Regression:
    baseline: str
    mode: str
    max_drop: float
    alpha: float
    runs: list[RunCheck]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.runs)

    @property
    def exit_code(self) -> int:
        return PASS if self.passed else REGRESSION


# -- matching ---------------------------------------------------------------------------------------------------------
def _leaves(obj, prefix: str = "") -> dict:
    """Dotted paths to the leaf values of nested dicts (`sampler.config.t1` -> 0.8)."""
    if isinstance(obj, dict) and obj:
        out = {}
        for k, v in obj.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def differing_fields(baseline: dict, run: dict) -> list[tuple[str, object, object]]:
    """(dotted field, baseline value, run value) where two identities differ; a config hash last (it differs
    whenever a config field does, so the field itself is the news)."""
    a, b = _leaves(baseline), _leaves(run)
    missing = object()
    diffs = [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
             if a.get(k, missing) != b.get(k, missing)]
    diffs = [(k, None if x is missing else x, None if y is missing else y) for k, x, y in diffs]
    return sorted(diffs, key=lambda d: d[0].endswith("config_hash"))


def match(identity: dict, doc: dict, path: str, run_dir, label: str) -> dict:
    """The entry of this identity, else a HarnessError naming the closest entry and the fields it differs in."""
    key = short_hash(identity, 16)
    for entry in doc["runs"]:
        if entry["key"] == key:
            return entry
    scored = [(len(differing_fields(e["identity"], identity)), i, e) for i, e in enumerate(doc["runs"])]
    _, _, best = min(scored, key=lambda t: t[:2])
    diffs = differing_fields(best["identity"], identity)
    shown = "; ".join(f"{k} (baseline {x!r}, run {y!r})" for k, x, y in diffs[:2])
    more = f" and {len(diffs) - 2} more fields" if len(diffs) > 2 else ""
    raise HarnessError(f"run {run_dir} ({label}) matches no entry of baseline {path}: the closest, "
                       f"{best.get('label', best['key'])}, differs in {shown}{more} (a deliberate change: "
                       f"regenerate the baseline with harness baseline save)")


def _compared_rows(run, entry: dict, path: str) -> list[dict]:
    """The run's rows, every one of them in the entry; the checks that the run is complete."""
    known = {s[0] for s in entry["samples"]}
    extra = [r["sample_id"] for r in run.rows if r["sample_id"] not in known]
    if extra:
        raise HarnessError(f"run {run.dir}: {len(extra)} of its samples are not in the baseline entry "
                           f"{entry.get('label', entry['key'])} of {path} (first: {extra[0]}): the baseline was saved "
                           f"from another subset; save it from the full run")
    subset = bl.run_subset(run)
    selected = subset.get("selected")
    if selected is not None and len(run.rows) < selected:
        raise HarnessError(f"run {run.dir} holds {len(run.rows)} of the {selected} samples it selected: finish it "
                           f"(rerun the same harness run) before checking it")
    if subset.get("limit") is None and len(run.rows) < len(known):
        raise HarnessError(f"run {run.dir} (no --limit) holds {len(run.rows)} of the baseline entry's "
                           f"{len(known)} samples: an unfinished run, or a baseline from another sample set")
    return run.rows


# -- checking ---------------------------------------------------------------------------------------------------------
def _exact(check: RunCheck, rows: list[dict], base: dict, shown: int) -> None:
    for row in rows:
        gold, parsed, _, digest = base[row["sample_id"]]
        new = (row.get("answer"), bl.parsed_letter(row), bl.selection_digest(row))
        fields = [name for name, x, y in zip(("gold", "answer", "frames"), (gold, parsed, digest), new) if x != y]
        if not fields:
            continue
        check.differences += 1
        if len(check.first) < shown:
            sel = row.get("selection")
            check.first.append(SampleDiff(row["sample_id"], fields, parsed, digest, new[1], new[2],
                                          None if sel is None else [int(i) for i in sel["frame_indices"]]))
    check.passed = check.differences == 0
    check.kind = "identical" if check.passed else "differs"
    check.verdict = ("identical: every answer and selection as in the baseline" if check.passed else
                     f"{check.differences} of {check.n} samples differ from the baseline")


def _accuracy_verdicts(checks: list[RunCheck], max_drop: float, alpha: float) -> None:
    adjusted = holm([c.p for c in checks])
    for check, p_holm in zip(checks, adjusted):
        check.p_holm = p_holm
        drop = -check.change
        test = f"exact McNemar p={check.p:.4g}, Holm {p_holm:.4g}"
        if drop > max_drop and p_holm < alpha:
            check.passed = False
            check.kind = "regression"
            check.verdict = f"regression: {check.change:+.1f} points ({test} < alpha {alpha:g})"
        elif drop > max_drop:
            check.kind = "insignificant drop"
            check.verdict = f"insignificant drop: {check.change:+.1f} points ({test} >= alpha {alpha:g})"
        elif drop > 0:
            check.kind = "drop within max-drop"
            check.verdict = f"drop within --max-drop {max_drop:g}: {check.change:+.1f} points ({test})"
        elif drop < 0:
            check.kind = "improvement"
            check.verdict = f"improvement: {check.change:+.1f} points ({test})"
        else:
            check.kind = "unchanged"
            check.verdict = f"unchanged accuracy ({test})"


def regress(run_dirs, baseline_path, mode: str = "exact", max_drop: float = 0.0, alpha: float = 0.05,
            shown: int = 10) -> Regression:
    """Check every run against its baseline entry (see the module docstring)."""
    if mode not in MODES:
        raise HarnessError(f"--mode {mode!r} is unknown (known: {', '.join(MODES)})")
    if not max_drop >= 0:
        raise HarnessError(f"--max-drop must be at least 0 points, got {max_drop}")
    if not 0.0 < alpha < 1.0:
        raise HarnessError(f"--alpha must lie between 0 and 1, got {alpha}")
    if shown < 0:
        raise HarnessError(f"--show must be at least 0, got {shown}")
    if not run_dirs:
        raise HarnessError("harness regress needs at least one RUN_DIR")
    doc = bl.load(baseline_path)
    checks = []
    for run_dir in run_dirs:
        run = load_run(run_dir, scoring="regress")
        entry = match(bl.run_identity(run), doc, str(baseline_path), run_dir, bl.run_label(run))
        rows = _compared_rows(run, entry, str(baseline_path))
        base = {s[0]: (s[1], s[2], s[3], s[4]) for s in entry["samples"]}
        n = len(rows)
        base_right = [base[r["sample_id"]][2] for r in rows]
        right = [bool(r["prediction"]["correct"]) for r in rows]
        check = RunCheck(str(run_dir), bl.run_label(run), mode, n, 100.0 * sum(base_right) / n,
                         100.0 * sum(right) / n)
        check.b = sum(x and not y for x, y in zip(base_right, right))
        check.c = sum(y and not x for x, y in zip(base_right, right))
        if mode == "exact":
            _exact(check, rows, base, shown)
        else:
            check.p = mcnemar_counts(check.b, check.c).p_value
        checks.append(check)
    if mode == "accuracy":
        _accuracy_verdicts(checks, max_drop, alpha)
    return Regression(str(baseline_path), mode, float(max_drop), float(alpha), checks)
