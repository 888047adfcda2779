"""Training batches of the mini Qwen2.5-VL: what an example is made of (`Recipe`), and its model inputs.

Training batches skip the video processor (`fast_inputs` + `patchify`, checked equal to it by the tests:
`teacher_forced_batch` is the processor's way) and pass the 3-D rope positions explicitly (`positions_of`:
`backbones.qwen2_5_vl.rope.rope_positions`, transformers 5.24's computation, which the backbone's
rope="transformers" uses), so a model trained under another transformers version reads the same positions.
Batches are made in data-loader workers (`batch_stream`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backbones.qwen2_5_vl.chat import build_inputs, chat_text
from backbones.qwen2_5_vl.rope import rope_positions, timing_inputs
from harness.miniworld.qwen.build import FRAME, MERGE, PATCH
from harness.miniworld.qwen.world import (DESCRIBE, K, crowded_times, describe_example, event_intervals,
                                          fresh_question, no_evidence_times, oracle_times)
from tasks.needle import COLOURS, SHAPES, shape_mask


@dataclass(frozen=True)
class Recipe:
    """What a training example is made of (shares of the batch) and how the losses are weighted."""

    no_evidence: float = 0.1  # questions shown no evidence, trained towards equal odds over the letters
    even: float = 0.4  # evidence selections whose fillers are evenly spaced (else random)
    crowded: float = 0.0  # evidence selections drawn by `crowded_times` (runs of evidence frames, other needles)
    describe: float = 0.2  # "name the objects you see" examples: many answer tokens, vision learns fast
    fresh: float = 1.0  # questions drawn anew by `fresh_question` (else the split's fixed questions)
    regions: float = 1.0  # weight of the RegionHead loss
    options: float = 1.0  # weight of the OptionProbe loss (which option line is right)
    letters: float = 1.0  # weight of the OptionProbe's letter loss (each option line's own letter)
    real_timing: float = 0.5  # share of batches timed by real spacing (else TSPO's fixed 2 fps)


def option_letter_ids(tokenizer, n: int = 4):
    """Token ids of the option letters A, B, ... (each must be one token)."""
    ids = [tokenizer.convert_tokens_to_ids(chr(ord("A") + i)) for i in range(n)]
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ValueError("option letters must be single tokens")
    return ids


def teacher_forced_batch(processor, examples, real_timing):
    """examples: (frames, times, prompt, answer). Returns model inputs (through the processor) and each row's answer
    span (first position, length), the answer's tokens plus the closing <|im_end|>."""
    import torch

    inputs = build_inputs(processor, [e[0] for e in examples], [e[2] for e in examples], [e[3] for e in examples])
    inputs.update(timing_inputs(processor, [e[1] for e in examples], real_timing))
    lengths = torch.tensor([len(processor.tokenizer(e[3], add_special_tokens=False)["input_ids"]) + 1
                            for e in examples])
    end = inputs["attention_mask"].sum(dim=1)  # right padding: the answer ends the real tokens
    return inputs, end - lengths, lengths


def fast_inputs(processor, examples, real_timing) -> tuple[dict, object, object]:
    """`teacher_forced_batch` without the video processor, for training throughput (its per-call tensor copies cost
    ~40 ms a video on a CPU, far more than a training step of this model on a GPU): the same input ids, masks, grids
    and timing, but the frames stay uint8 under "frames"; `patchify` turns them into the processor's
    `pixel_values_videos` on the model's device. Only for frames the processor would not resize (even count, sides
    multiples of PATCH * MERGE inside its pixel bounds); tests/backbones/test_qwen2_5_vl.py checks it against
    `teacher_forced_batch`."""
    import torch

    vp = processor.video_processor
    n, h, w, _ = examples[0][0].shape
    unit = vp.patch_size * vp.merge_size
    if (n % vp.temporal_patch_size or h % unit or w % unit or not vp.size["shortest_edge"] <= h * w
            <= vp.size["longest_edge"] or any(e[0].shape != examples[0][0].shape for e in examples)):
        raise ValueError(f"fast_inputs needs frames the processor keeps as they are, got {examples[0][0].shape}")
    grid = (n // vp.temporal_patch_size, h // vp.patch_size, w // vp.patch_size)
    tokens = grid[0] * grid[1] * grid[2] // vp.merge_size ** 2
    pad = processor.video_token
    texts = [chat_text(processor, e[2], e[3]).replace(pad, pad * tokens) for e in examples]
    enc = processor.tokenizer(texts, padding=True, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
              "mm_token_type_ids": (enc["input_ids"] == processor.video_token_id).long() * 2,
              "video_grid_thw": torch.tensor([grid] * len(examples)),
              "frames": torch.from_numpy(np.stack([e[0] for e in examples]))}
    inputs.update(timing_inputs(processor, [e[1] for e in examples], real_timing))
    lengths = torch.tensor([len(processor.tokenizer(e[3], add_special_tokens=False)["input_ids"]) + 1
                            for e in examples])
    end = inputs["attention_mask"].sum(dim=1)
    return inputs, end - lengths, lengths


def patchify(processor, frames):
    """(videos, n, H, W, 3) uint8 -> the video processor's `pixel_values_videos`: rescaled and normalised, cut
    into temporal x spatial patches in its order (temporal patch, merge block row, column, merge row, column; each
    patch channels x frames x rows x columns)."""
    import torch

    vp = processor.video_processor
    b, n, h, w, c = frames.shape
    tp, ps, m = vp.temporal_patch_size, vp.patch_size, vp.merge_size
    mean = torch.tensor(vp.image_mean, device=frames.device)
    std = torch.tensor(vp.image_std, device=frames.device)
    x = (frames.float() * vp.rescale_factor - mean) / std
    x = x.view(b, n // tp, tp, h // (ps * m), m, ps, w // (ps * m), m, ps, c)
    # -> video, t, block row, block column, merge row, merge column, channel, frame in patch, patch row, column
    x = x.permute(0, 1, 3, 6, 4, 7, 9, 2, 5, 8)
    return x.reshape(b * (n // tp) * (h // ps) * (w // ps), c * tp * ps * ps)


def positions_of(processor, inputs):
    """`rope_positions` of a batch of model inputs (one video per row)."""
    return rope_positions(inputs["input_ids"], inputs["attention_mask"], inputs["video_grid_thw"],
                          inputs["second_per_grid_ts"], video_token_id=processor.video_token_id,
                          spatial_merge_size=processor.video_processor.merge_size)


def option_ends(input_ids, newline_id: int, vision_end_id: int, n_options: int = 4):
    """Positions of the newline closing each option line: the prompt after the video is "question\n", one
    "X. option\n" per option, then the instruction."""
    after = (input_ids == vision_end_id).nonzero()[0, 0]
    lines = (input_ids == newline_id).nonzero()[:, 0]
    return lines[lines > after][1:1 + n_options]


def region_labels(spec, times) -> np.ndarray:
    """(n, 4, 4, 2) int64: for each frame and each 32x32 region (one merged vision token), the colour and shape of
    the needle object covering it (1-based indices into COLOURS and SHAPES; 0 where none does)."""
    unit = PATCH * MERGE
    out = np.zeros((len(times), FRAME // unit, FRAME // unit, 2), np.int64)
    for k, t in enumerate(times):
        for e in spec.events:
            if not e.visible(t):
                continue
            canvas = np.zeros((FRAME + 2 * e.size, FRAME + 2 * e.size), bool)  # margins take objects at the edge
            top, left, _, _ = e.box(t)
            canvas[top + e.size:top + 2 * e.size, left + e.size:left + 2 * e.size] = shape_mask(e.shape, e.size)
            cover = canvas[e.size:-e.size, e.size:-e.size].reshape(FRAME // unit, unit, FRAME // unit, unit).sum((1, 3))
            out[k][cover >= 48] = (list(COLOURS).index(e.colour) + 1, SHAPES.index(e.shape) + 1)
    return out


def training_example(pools, questions, recipe: Recipe, rng):
    """One training example: (frames, times, prompt, answer, soft, pool, correct option or None)."""
    pool = pools[rng.integers(len(pools))]
    if rng.random() < recipe.describe:
        times, answer = describe_example(pool, rng)
        return pool.at(times), times, DESCRIBE, answer, False, pool, None
    drawn = fresh_question(pool.spec, rng) if rng.random() < recipe.fresh else None
    if drawn is None:
        pool, sample, prompt = questions[rng.integers(len(questions))]
    else:
        sample, prompt = drawn
    if rng.random() < recipe.no_evidence:
        times = no_evidence_times(sample.evidence, pool.times, K, rng)
        return pool.at(times), times, prompt, sample.answer_letter, True, pool, None
    if rng.random() < recipe.crowded:
        times = crowded_times(sample.evidence, event_intervals(pool.spec), pool.times, K, rng)
    else:
        times = oracle_times(sample.evidence, pool.times, K, rng, "even" if rng.random() < recipe.even else "random")
    return pool.at(times), times, prompt, sample.answer_letter, False, pool, sample.answer


def training_batch(processor, pools, questions, recipe: Recipe, batch_size: int, rng) -> dict:
    """Model inputs of one batch plus what the losses need; made in data-loader workers."""
    examples = [training_example(pools, questions, recipe, rng) for _ in range(batch_size)]
    inputs, start, lengths = fast_inputs(processor, [e[:4] for e in examples],
                                         [rng.random() < recipe.real_timing] * batch_size)
    newline = processor.tokenizer.convert_tokens_to_ids("\u010a")
    vision_end = processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
    ends = np.full((batch_size, 4), -1, np.int64)
    for i, e in enumerate(examples):
        if e[2] != DESCRIBE:
            ends[i] = option_ends(inputs["input_ids"][i], newline, vision_end).numpy()
    return {"inputs": inputs, "start": start, "lengths": lengths, "soft": [e[4] for e in examples],
            "correct": [e[6] for e in examples], "ends": ends, "position_ids": positions_of(processor, inputs),
            "regions": np.stack([region_labels(e[5].spec, e[1]) for e in examples])}


def batch_stream(processor, pools, questions, recipe, batch_size, seed):
    """Endless training batches; each data-loader worker draws from its own seeded stream (the loader takes the
    workers' batches in turn, so a run is reproducible for a fixed worker count)."""
    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            rng = np.random.default_rng([seed, 1, info.id if info else 0])
            while True:
                yield training_batch(processor, pools, questions, recipe, batch_size, rng)

    return Stream()
