"""Per task, what lmms-eval 0.7.3 logs for one sample and how it aggregates (written here from its task files:
`lmms_eval/tasks/<task>/utils.py` process_results and the aggregation its YAML names; never imported).

Every per-sample metric value is built from the run row: the parsed letter where the row parsed cleanly, "" where it
did not (a parse failure or an error row: lmms-eval's LongVideoBench parser would pick a random letter there; the
export never makes one up), the gold from the task's sample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from harness.records import Sample

# lmms-eval's MLVU dev aggregation averages over these seven task types, answered or not (mlvu_aggregate_results_dev)
MLVU_TASK_TYPES = ("anomaly_reco", "count", "ego", "needle", "order", "plotQA", "topic_reasoning")


@dataclass(frozen=True)
class LmmsTask:
    """How one harness task appears in lmms-eval's logs."""

    metric: str  # the metric key process_results returns
    target: Callable[[Sample], object]  # doc_to_target
    value: Callable[[Sample, str, bool], object]  # (sample, letter or "", correct) -> per-sample metric value
    aggregate: Callable[[list], float]
    mean: bool = False  # aggregation "mean" (lmms-eval's mean_stderr applies) rather than a task function
    cluster_key: str | None = None  # the YAML's cluster_key (clustered stderr)
    score_key: str = "score"

    def numeric(self, values: list) -> list[float]:
        """The items lmms-eval's CLT stderr uses: numbers, or the `score` of dict items that have one."""
        out = []
        for v in values:
            if isinstance(v, (bool, int, float)):
                out.append(float(v))
            elif isinstance(v, dict) and self.score_key in v:
                out.append(float(v[self.score_key]))
        return out

    def clusters(self, values: list) -> list:
        return [v.get(self.cluster_key) if isinstance(v, dict) and self.cluster_key else None for v in values]


def _videomme(s: Sample, letter: str, correct: bool) -> dict:
    md = s.metadata
    return {"question_id": md.get("question_id", s.id), "duration": md.get("duration"), "category": md.get("domain"),
            "sub_category": md.get("sub_category"), "task_category": md.get("task_type"), "pred_answer": letter,
            "answer": s.answer_letter, "score": 1.0 if correct else 0.0, "videoID": md.get("videoID")}


def _videomme_aggregate(values: list) -> float:
    """100 * correct / answered over every sample (its per-category tables only go to its log)."""
    n = len(values)
    return 100 * sum(v["pred_answer"] == v["answer"] for v in values) / n if n else 0


def _lvb(s: Sample, letter: str, correct: bool) -> dict:
    return {"id": s.id, "duration_group": int(s.categories["duration_group"]),
            "question_category": s.categories["question_category"], "answer": s.answer_letter, "parsed_pred": letter}


def _lvb_aggregate(values: list) -> float:
    """Accuracy per duration group and per question category, then their sample-weighted mean (every sample is in
    two subsets, so this is the plain accuracy), rounded to 5 places; 0-1."""
    subsets: dict = {}
    for v in values:
        for key in (v["duration_group"], v["question_category"]):
            subsets.setdefault(key, []).append(v["parsed_pred"] == v["answer"])
    total = sum(len(x) for x in subsets.values())
    weighted = sum(sum(x) / len(x) * len(x) for x in subsets.values())
    return round(weighted / total if total else 0, 5)


def _mlvu(s: Sample, letter: str, correct: bool) -> dict:
    return {"question_id": s.metadata.get("question", s.question), "task_type": s.categories["task_type"],
            "pred_answer": letter, "answer": s.answer_letter}


def _mlvu_aggregate(values: list) -> float:
    """Mean over the seven task types of 100 * correct / answered (0 for a type with no question)."""
    accs = []
    for t in MLVU_TASK_TYPES:
        mine = [v for v in values if v["task_type"] == t]
        accs.append(100 * sum(v["pred_answer"] == v["answer"] for v in mine) / len(mine) if mine else 0)
    return sum(accs) / len(MLVU_TASK_TYPES)


def _mean(values: list) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0


TASKS = {
    "videomme": LmmsTask("videomme_perception_score", lambda s: s.answer_letter, _videomme, _videomme_aggregate,
                         cluster_key="videoID"),
    "longvideobench": LmmsTask("lvb_acc", lambda s: s.answer, _lvb, _lvb_aggregate),
    "mlvu": LmmsTask("mlvu_percetion_score", lambda s: s.answer_letter, _mlvu, _mlvu_aggregate),
    "lvbench": LmmsTask("lvbench_score", lambda s: s.answer_letter, lambda s, letter, ok: ok, _mean, mean=True),
    # no lmms-eval task exists: the harness's own generated benchmark, logged in the same layout
    "needle": LmmsTask("accuracy", lambda s: s.answer_letter, lambda s, letter, ok: 1.0 if ok else 0.0, _mean,
                       mean=True),
}


def mean_stderr(xs: list[float]):
    """Sample standard deviation / sqrt(n) (lmms-eval's mean_stderr); "N/A" below two items."""
    n = len(xs)
    if n < 2:
        return "N/A"
    mu = sum(xs) / n
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)


def clt_stderr(xs: list[float]):
    """std(ddof=1) / sqrt(n), as lmms-eval's CLT stderr; "N/A" below two items."""
    return mean_stderr(xs)


def clustered_stderr(xs: list[float], clusters: list):
    """SE^2 = SE_CLT^2 + (1/n^2) sum over clusters of sum_{i != j} (s_i - mean)(s_j - mean) (Miller 2024, eq. 4,
    the formula lmms-eval cites); "N/A" without two clusters or two items."""
    n = len(xs)
    named = [c for c in clusters if c is not None]
    if n < 2 or len(set(named)) < 2:
        return "N/A"
    mu = sum(xs) / n
    clt = clt_stderr(xs) ** 2
    groups: dict = {}
    for x, c in zip(xs, clusters):
        groups.setdefault(c, []).append(x - mu)
    cross = sum(sum(d) ** 2 - sum(e * e for e in d) for d in groups.values())  # unnamed items form one group
    return math.sqrt(max(clt + cross / n ** 2, 0.0))
