"""Forward decoding that does only the work the wanted frames need (issue 20).

`decode_forward` feeds a PyAV stream packet by packet and, before each packet, tells the codec whether it may skip
the frame: `skip_frame = "NONREF"` for a packet whose frame is not wanted (the codec then drops it if no other frame
refers to it, a non-reference B-frame; a reference frame is decoded all the same, so every later frame is exact),
`"DEFAULT"` for a wanted one. The wanted frames come out bit-identical to a full decode (tests/video/test_forward.py).

`ForwardPlan` says which frames one read wants: those asked for, and every frame after the last one asked for (the
decoder runs a few packets ahead of its output, and the next read may want any later frame), so a frame skipped
is never one a later read in the same pass asks for.

`sequential_steps` is the decord counterpart: how to walk ascending frame indices without a seek per frame (skip
forward, seek only to a keyframe well ahead: `seek_needed`, which the PyAV reader follows too).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

SKIP, DECODE = "NONREF", "DEFAULT"
# A seek flushes the decoder and refills it from a keyframe: a read decodes on through up to this many frames that
# lie before the target's keyframe rather than seek (the needle world's 1-fps grid crosses a 16-frame GOP every
# 4 frames; a seek there cost more than the 3 frames it saves)
SEEK_FRAMES = 16


def seek_needed(key: int, pos: int) -> bool:
    """Reaching a target whose latest keyframe is `key` from position `pos` (the frame last decoded, -1 before any)
    takes a seek: the decoder is behind the start, or would decode more than SEEK_FRAMES frames before the key."""
    return pos < 0 or key - pos - 1 > SEEK_FRAMES


class ForwardPlan:
    """The frames one read wants: the indices asked for, and everything after the last of them."""

    def __init__(self, wanted=()):
        self.set(wanted)

    def set(self, wanted) -> None:
        idx = np.asarray(wanted, np.int64).reshape(-1)
        self.wanted = frozenset(idx.tolist())
        self.last = int(idx.max()) if idx.size else -1

    def wants(self, index: int | None) -> bool:
        return index is None or index > self.last or index in self.wanted


def decode_forward(container, stream, index: dict, plan: ForwardPlan, skip: bool = True,
                   counts: dict | None = None) -> Iterator:
    """Decoded frames in presentation order from the container's current position. `index` maps a packet's pts to
    its frame index; `plan` says which frames are wanted (it may change between frames: it is read per packet);
    `skip=False` decodes every frame. `counts` (optional) receives packets sent and packets marked skippable."""
    ctx = stream.codec_context
    mode = None
    for packet in container.demux(stream):
        want = not skip or packet.pts is None or plan.wants(index.get(packet.pts))
        new = DECODE if want else SKIP
        if new != mode:
            ctx.skip_frame = mode = new
        if counts is not None:
            counts["packets"] = counts.get("packets", 0) + 1
            counts["skippable"] = counts.get("skippable", 0) + (not want)
        yield from stream.decode(packet)
    if mode != DECODE:
        ctx.skip_frame = DECODE


def sequential_steps(idx: np.ndarray, key_before: np.ndarray, pos: int) -> list[tuple[str, int]]:
    """For decord: ("reuse" | "skip" n | "seek" target, then read) per wanted index, walking forward from `pos`
    (the index of the frame last read, -1 before any). A target in the current GOP or the next few frames is
    reached by skipping forward (decoding without colour conversion); one whose keyframe lies more than SEEK_FRAMES
    beyond the position, or one behind it, by a seek."""
    steps = []
    for target in idx.tolist():
        if target == pos:
            steps.append(("reuse", target))
            continue
        if target > pos and not seek_needed(int(key_before[target]), pos):
            steps.append(("skip", target - pos - 1))
        else:
            steps.append(("seek", target))
        pos = target
    return steps
