"""TSPO's selection rules over per-candidate logits (`inference_ts`): top-k, bin-max, AKS."""
from __future__ import annotations

import numpy as np

from harness.errors import HarnessError
from samplers.tspo.settings import AKS_DEPTH, AKS_T1, METHODS



def uniform_proposals(last: int, count: int) -> list[int]:
    """round(i · last / (count - 1)) for i < count with Python's half-to-even round; [last] for one proposal."""
    if count <= 0:
        return []
    if count == 1:
        return [last]
    step = last / (count - 1)
    return [round(i * step) for i in range(count)]


def bin_assignment(length: int, count: int) -> np.ndarray:
    """The bin of each of `length` candidates: its nearest proposal, the earlier one on ties."""
    proposals = np.asarray(uniform_proposals(length - 1, count), dtype=np.int64)
    distance = np.abs(np.arange(length)[:, None] - proposals[None, :])
    return np.argmin(distance, axis=1)  # argmin keeps the first minimum: ties go to the earlier bin


def rule_positions(logits, k: int, method: str) -> list[int]:
    """Ascending candidate positions from per-candidate logits (any array-like or tensor of shape [T]).

    topk: the min(T, k) largest, ties to the earlier candidate (torch.topk's tie order is unspecified).
    bin-max: min(T, k) bins around uniform proposals, the argmax of each (first on ties).
    aks: the AKS rule (min-max normalised scores, t1 0.2, depth 3), which may return fewer than k.
    """
    if hasattr(logits, "detach"):  # a torch tensor (torch is not imported here: listing samplers stays light)
        logits = logits.detach().double().cpu().numpy()
    scores = np.asarray(logits, dtype=np.float64).reshape(-1)
    if k < 1:
        raise HarnessError(f"TSPO selection needs k >= 1, got {k}")
    if scores.size == 0:
        raise HarnessError("TSPO selection got no scores")
    if np.isnan(scores).any():
        raise HarnessError("TSPO selection got NaN scores")
    count = min(len(scores), k)
    if method == "topk":
        order = np.argsort(-scores, kind="stable")
        return sorted(int(i) for i in order[:count])
    if method == "bin-max":
        bins = bin_assignment(len(scores), count)
        chosen = []
        for b in np.unique(bins):  # bins are contiguous and ascending
            members = np.flatnonzero(bins == b)
            chosen.append(int(members[np.argmax(scores[members])]))
        return chosen
    if method == "aks":
        from samplers.aks import aks_select  # imported here: only this method needs it

        return [int(i) for i in aks_select(scores, k, t1=AKS_T1, depth=AKS_DEPTH, mode="official")]
    raise HarnessError(f"unknown TSPO selection method {method!r} (known: {', '.join(METHODS)})")
