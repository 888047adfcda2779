"""Scoring of one answer and accuracy summaries recomputed from per-sample rows.

A sample without a gold answer (a benchmark's test split: `Sample.answer` None, the row's `answer` null) is never
scored: its prediction's `correct` is None. A run none of whose rows has a gold answer is summarised without
accuracy (`scored: false`, `correct` and `accuracy` null) but with what was answered: `answered` (the backbone gave
text), `parse_failed`, `errors`."""
from __future__ import annotations

from collections import defaultdict

from harness.scoring.answers import extract_strict
from harness.records import ERROR, NOT_ANSWERED, PARSE_FAILED, PARSE_OK, Prediction, Sample


def score_strict(sample: Sample, text: str) -> Prediction:
    """Score with the harness's strict extractor; a parse failure is recorded and scored wrong, never guessed; without
    a gold answer nothing is scored (`correct` None)."""
    found = extract_strict(text, sample.options)
    if found.letter is None:
        return Prediction(text, None, correct_if_gold(sample, False), PARSE_FAILED)
    return Prediction(text, found.letter, correct_if_gold(sample, found.letter == sample.answer_letter), PARSE_OK)


def correct_if_gold(sample: Sample, correct: bool) -> bool | None:
    """`correct`, or None where the sample has no gold answer to score against (a test split)."""
    return None if sample.answer is None else correct


def has_gold(rows: list[dict]) -> bool:
    """Whether any row carries a gold answer (a run on a split without them has none: it cannot be scored)."""
    return any(r.get("answer") is not None for r in rows)


NO_GOLD = "no gold answers (a test split): nothing is scored; answered, parse failures and errors are counted"


def evidence_recall(evidence, timestamps) -> float | None:
    """Share of ground-truth intervals [start, end) holding at least one selected frame; None without evidence."""
    if not evidence:
        return None
    return sum(any(a <= t < b for t in timestamps) for a, b in evidence) / len(evidence)


def not_answered(timings: dict) -> Prediction:
    return Prediction(None, None, False, NOT_ANSWERED, timings=timings)


def error_prediction(message: str) -> Prediction:
    return Prediction(None, None, False, ERROR, error=message)


def _bucket(rows: list[dict], scored: bool = True) -> dict:
    n = len(rows)
    status = [r["prediction"]["parse_status"] for r in rows]
    counts = {"parse_failed": status.count(PARSE_FAILED), "errors": status.count(ERROR),
              "evidence_recall": _mean([r.get("evidence_recall") for r in rows])}
    if not scored:  # no gold answers: what was answered, never an accuracy
        return {"n": n, "answered": status.count(PARSE_OK) + status.count(PARSE_FAILED), "correct": None,
                "accuracy": None, **counts}
    correct = sum(bool(r["prediction"]["correct"]) for r in rows)
    # a selection-only run (--backbone none) has no accuracy, only evidence recall
    answered = n and NOT_ANSWERED not in status
    return {"n": n, "correct": correct, "accuracy": 100.0 * correct / n if answered else None, **counts}


def _mean(values) -> float | None:
    """Mean of the known values, as a percentage (None where no row has one)."""
    known = [v for v in values if v is not None]
    return 100.0 * sum(known) / len(known) if known else None


def summarise(rows: list[dict], category_keys=()) -> dict:
    """Overall and per-category accuracy and evidence recall (0-100); errors and parse failures count as wrong.
    Rows without any gold answer: counts only, `scored` false (see the module docstring)."""
    scored = has_gold(rows) or not rows
    out = {"overall": _bucket(rows, scored), "by": {}}
    if not scored:
        out["scored"] = False
        out["note"] = NO_GOLD
    for key in category_keys:
        groups = defaultdict(list)
        for r in rows:
            value = r.get("categories", {}).get(key)
            for v in value if isinstance(value, list) else [value]:  # multi-label keys count in every label
                groups[str(v)].append(r)
        out["by"][key] = {v: _bucket(g, scored) for v, g in sorted(groups.items())}
    return out
