"""The row each (sample, sampler) leaves in predictions.jsonl: how it is scored and what it records."""
from __future__ import annotations

import hashlib
from typing import Callable

from harness.records import Prediction, Sample, Selection
from harness.scoring.summary import correct_if_gold, error_prediction, evidence_recall


def prompt_digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def make_row(sample: Sample, prompt: str, selection: Selection | None, prediction: Prediction,
             parsers: dict | None = None, visual_tokens: int | None = None, video_check: dict | None = None,
             cost: dict | None = None, task=None) -> dict:
    """The row; evidence recall is the task's rule (`Task.evidence_recall`), the interval rule without a task."""
    recall = task.evidence_recall if task is not None else (lambda s, ts: evidence_recall(s.evidence, ts))
    row = {
        "sample_id": sample.id,
        "video": sample.video,
        "categories": dict(sample.categories),
        "answer": sample.answer_letter,
        "prompt_sha256": prompt_digest(prompt),
        "selection": None if selection is None else selection.to_json(),
        "evidence": [list(iv) for iv in sample.evidence],
        "evidence_recall": None if selection is None else recall(sample, selection.timestamps),
        # a sample without a gold answer (a test split) is never scored, whatever the prediction (an error too)
        "prediction": {**prediction.to_json(), "correct": correct_if_gold(sample, prediction.correct)},
    }
    if parsers is not None:
        row["parsers"] = parsers
    if visual_tokens is not None:
        row["visual_tokens"] = int(visual_tokens)
    if video_check is not None:  # the decoded video is not the one the annotation describes (e.g. 5 s for 181 s)
        row["video_check"] = video_check
    if cost is not None:  # what this row's selection and answer took: `harness compare`'s cost columns
        row["cost"] = cost
    return row


def answered_row(task, sample: Sample, prompt: str, selection: Selection, answer: str | Exception, timings: dict,
                 visual_tokens: int | None, describe: Callable[[Exception], str],
                 video_check: dict | None = None, cost: dict | None = None) -> dict:
    """The row of a question the backbone answered (`answer` is its text) or failed on (the exception): scored by
    the task, every parser's letter where the task has several."""
    parsers = None
    try:
        if isinstance(answer, Exception):
            raise answer
        prediction = task.score(sample, answer)
        prediction = Prediction(**{**prediction.to_json(), "timings": timings})
        parsers = task.parse_all(sample, answer)
    except Exception as e:
        prediction = error_prediction(describe(e))
    return make_row(sample, prompt, selection, prediction, parsers, visual_tokens, video_check, cost, task)
