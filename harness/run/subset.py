"""`--limit N`: a deterministic subset of a task's samples, balanced over its main category (CI regression)."""
from __future__ import annotations

import hashlib
from collections import defaultdict

from harness.errors import HarnessError
from harness.records import Sample


def stratified_subset(samples: list[Sample], limit: int | None, key: str | None) -> list[Sample]:
    """A deterministic subset of `limit` samples, balanced over the values of category `key`.

    Groups take turns (in sorted order); inside a group samples are ordered by a hash of their id, so the subset
    does not depend on the order of the annotation file. The subset keeps the dataset order.
    """
    if limit is None or limit >= len(samples):
        return list(samples)
    if limit < 1:
        raise HarnessError(f"--limit must be at least 1, got {limit}")
    groups = defaultdict(list)
    for s in samples:
        groups[str(s.categories.get(key)) if key else ""].append(s)
    queues = [sorted(g, key=lambda s: hashlib.sha256(s.id.encode()).hexdigest()) for _, g in sorted(groups.items())]
    chosen: set[str] = set()
    while len(chosen) < limit:
        for q in queues:
            if q and len(chosen) < limit:
                chosen.add(q.pop(0).id)
    return [s for s in samples if s.id in chosen]
