"""Sharing a prompt prefix between questions on the same video: which tokens every question of a video has in
common (the system turn, the video's tokens, ...), so a backbone runs them through its language model once, keeps
the KV cache and continues each question from it. Pure planning on token ids; the backbones do the model side.
"""
from __future__ import annotations


def shared_video_rows(requests) -> list[int]:
    """owner[i]: the first request with request i's frames (the same array object) and timestamps."""
    first: dict = {}
    return [first.setdefault((id(frames), tuple(float(t) for t in ts)), i)
            for i, (frames, ts, _) in enumerate(requests)]


def _common_prefix(rows: list[list[int]]) -> int:
    n = min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != rows[0][i] for r in rows[1:]):
            return i
    return n


def prefix_plan(ids: list[list[int]], owner: list[int], vision_ids: set[int]) -> dict[int, int] | None:
    """Prefix length per distinct video: the tokens its questions have in common (system turn, video, ...), at
    least one token short of the shortest so each question has its own suffix. None where a question's vision
    tokens do not all lie in the shared prefix (nothing to gain, and the suffix must be text only)."""
    plan = {}
    for u in sorted(set(owner)):
        rows = [ids[i] for i, o in enumerate(owner) if o == u]
        length = min(_common_prefix(rows), min(len(r) for r in rows) - 1)
        if any(t in vision_ids for r in rows for t in r[length:]):
            return None
        plan[u] = length
    return plan


def left_pad(rows: list[list[int]], pad: int):
    """(ids, attention mask) of token lists, left-padded with `pad` to the longest."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask
