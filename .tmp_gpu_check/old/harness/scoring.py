"""Scoring of one answer and accuracy summaries recomputed from per-sample rows."""
from __future__ import annotations

from collections import defaultdict

from harness.answers import extract_strict
from harness.records import ERROR, NOT_ANSWERED, PARSE_FAILED, PARSE_OK, Prediction, Sample


def score_strict(sample: Sample, text: str) -> Prediction:
    """Score with the harness's strict extractor; a parse failure is recorded and scored wrong, never guessed."""
    found = extract_strict(text, sample.options)
    if found.letter is None:
        return Prediction(text, None, False, PARSE_FAILED)
    return Prediction(text, found.letter, found.letter == sample.answer_letter, PARSE_OK)


def evidence_recall(evidence, timestamps) -> float | None:
    """Share of ground-truth intervals [start, end) holding at least one selected frame; None without evidence."""
    if not evidence:
        return None
    return sum(any(a <= t < b for t in timestamps) for a, b in evidence) / len(evidence)


def not_answered(timings: dict) -> Prediction:
    return Prediction(None, None, False, NOT_ANSWERED, timings=timings)


def error_prediction(message: str) -> Prediction:
    return Prediction(None, None, False, ERROR, error=message)


def _bucket(rows: list[dict]) -> dict:
    n = len(rows)
    correct = sum(bool(r["prediction"]["correct"]) for r in rows)
    # a selection-only run (--backbone none) has no accuracy, only evidence recall
    answered = n and not any(r["prediction"]["parse_status"] == NOT_ANSWERED for r in rows)
    return {
        "n": n,
        "correct": correct,
        "accuracy": 100.0 * correct / n if answered else None,
        "parse_failed": sum(r["prediction"]["parse_status"] == PARSE_FAILED for r in rows),
        "errors": sum(r["prediction"]["parse_status"] == ERROR for r in rows),
        "evidence_recall": _mean([r.get("evidence_recall") for r in rows]),
    }


def _mean(values) -> float | None:
    """Mean of the known values, as a percentage (None where no row has one)."""
    known = [v for v in values if v is not None]
    return 100.0 * sum(known) / len(known) if known else None


def summarise(rows: list[dict], category_keys=()) -> dict:
    """Overall and per-category accuracy and evidence recall (0-100); errors and parse failures count as wrong."""
    out = {"overall": _bucket(rows), "by": {}}
    for key in category_keys:
        groups = defaultdict(list)
        for r in rows:
            value = r.get("categories", {}).get(key)
            for v in value if isinstance(value, list) else [value]:  # multi-label keys count in every label
                groups[str(v)].append(r)
        out["by"][key] = {v: _bucket(g) for v, g in sorted(groups.items())}
    return out
