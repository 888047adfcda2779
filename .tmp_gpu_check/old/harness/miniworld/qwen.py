"""The mini Qwen2.5-VL: a real `Qwen2_5_VLForConditionalGeneration` of ~1 M parameters, trained here on needle frames.

Everything is built offline: a byte-level BPE tokenizer (the 256 bytes plus merges learned on needle prompts, plus
Qwen's special tokens), Qwen2.5-VL's chat template, Qwen2-VL image/video processors sized for 128x128 frames (patch
16, so a frame passes unresized), and a small config of the real architecture (3-D rope with mrope sections,
temporal patches of 2 frames, 2x2 merger).

Training (`train_mini_qwen`, or `python -m harness.miniworld.qwen train`, which also writes training.json;
scripts/train_mini_qwen.sh runs it on a GPU machine) is teacher-forced on needle train videos with the harness's
prompt (`Task.prompt`); the target is the option letter. Questions are drawn afresh for every example
(`fresh_question`: any kind the video's needles support, new absent-object options, random answer position), so
answers cannot be learnt by heart. Selections show the evidence (one frame inside every evidence event, the other
frames random or evenly spaced), except a share that shows none and is trained towards equal odds over the letters,
so the model learns to read frames, not priors. Two training-only probes (thrown away after) give dense signal:
`RegionHead` (colour and shape under every merged vision token) and `OptionProbe`, read where each option line ends
before the last layer: which option line is right, and the line's own letter. The letter loss is what made the
model answer: without it the model learnt which line is right but not to say that line's letter (oracle accuracy
stayed at chance); with it, the last layer only has to copy the letter of the line judged right. A share of
"describe" examples asks the model to name the objects it sees. Frames are rendered with the needle renderer and
sent through a real H.264 round trip (the written videos' codec settings), so the model sees what a decoder
returns; each video's frames are rendered once (`Pool`) and selections drawn from them.

Training batches skip the video processor (`fast_inputs` + `patchify`, checked equal to it by the tests) and pass
the 3-D rope positions explicitly (`rope_positions`, transformers 5.24's computation, which the backbone's
rope="transformers" uses here), so a model trained under another transformers version reads the same positions;
the vision attention runs as one batched call (`batched_vision_attention`, checked equal at start). Evaluation and
the backbone use the processor. The shipped weights' training.json records the commands (five stages on one GPU,
~29k steps of 64 questions, ~34 min; stages 4-5 add `crowded_times` selections) and held-out accuracies.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.synth import h264_round_trip

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
SYSTEM = "You are a helpful assistant."

# Qwen2.5-VL's conversation format: a default system turn, <|im_start|>role\n ... <|im_end|>\n per message, each
# image or video as <|vision_start|><|image_pad|/|video_pad|><|vision_end|> (the processor expands the pad).
CHAT_TEMPLATE = (  # no whitespace control: every newline below is one the model sees
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n" + SYSTEM + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

FRAME = 128  # needle frames are 128x128
PATCH, MERGE = 16, 2  # 128 px = 4 merged units of 32 px: frames pass the processor without resampling
MIN_PIXELS, MAX_PIXELS = (PATCH * MERGE) ** 2, FRAME * FRAME
K = 8  # frames per training question
CRF, GOP = 20, 16  # the needle writer's H.264 settings, for the training round trip
DESCRIBE = "List the coloured objects that appear in the video, in order."  # the auxiliary training prompt


@dataclass(frozen=True)
class Sizes:
    """Model widths and depths; the defaults are the shipped model, tests use smaller ones."""

    text_hidden: int = 128
    text_layers: int = 4  # answering takes ~3 attention hops (option <- frames, line end <- letter, answer <- line)
    text_heads: int = 4  # head_dim 32: mrope sections (4, 6, 6) cover its 16 frequencies
    text_intermediate: int = 384
    vision_hidden: int = 96
    vision_depth: int = 2
    vision_heads: int = 3
    vision_intermediate: int = 192
    merges: int = 400


# ---------------------------------------------------------------------------------------------------- building

def needle_texts(n_videos: int = 200, seed: int = 0) -> list[str]:
    """Chat-rendered needle prompts with answers (and describe examples): the corpus the BPE merges are learned on."""
    from tasks.needle import NeedleTask, make_samples, make_specs

    task = NeedleTask(split="train", videos=n_videos, seed=seed)
    def chat(prompt, answer):
        return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
                f"<|im_start|>assistant\n{answer}<|im_end|>\n")

    texts = []
    for spec in make_specs("train", n_videos, seed):
        texts += [chat(task.prompt(s), s.answer_letter) for s in make_samples(spec)]
        texts.append(chat(DESCRIBE, ", ".join(e.name for e in spec.events)))
    return texts


def build_tokenizer(texts: list[str], merges: int = 400):
    """Byte-level BPE: the 256 byte symbols, up to `merges` merges learned on `texts`, then Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Special-token spellings must not feed the merges: they are single tokens anyway.
    plain = [t for text in texts for t in _split_special(text)]
    trainer = trainers.BpeTrainer(vocab_size=256 + merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(plain, trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=32768)


def _split_special(text: str) -> list[str]:
    parts = [text]
    for sp in SPECIAL_TOKENS:
        parts = [p for part in parts for p in part.split(sp)]
    return [p for p in parts if p]


def build_processor(tokenizer, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    common = dict(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=PATCH,
                  temporal_patch_size=2, merge_size=MERGE)
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        # no per-video pixel cap: a frame's size must not depend on how many frames were selected
        video_processor=Qwen2VLVideoProcessor(**common, cap_pixels_per_frame=False),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def mini_config(tokenizer, sizes: Sizes = Sizes()):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    half = sizes.text_hidden // sizes.text_heads // 2  # rotary frequencies per head
    # Qwen's split of its 64 frequencies, (16, 24, 24), scaled: a quarter for time, the rest for height and width
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate,
            num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
            num_key_value_heads=sizes.text_heads, max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=True),
        vision_config=dict(
            depth=sizes.vision_depth, hidden_size=sizes.vision_hidden, intermediate_size=sizes.vision_intermediate,
            num_heads=sizes.vision_heads, patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=2,
            tokens_per_second=2, window_size=FRAME, fullatt_block_indexes=[sizes.vision_depth - 1],
            out_hidden_size=sizes.text_hidden),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True)


def build_mini_qwen(out_dir, seed: int = 0, sizes: Sizes = Sizes(), corpus_videos: int = 200):
    """Write a randomly initialised mini Qwen2.5-VL + processor to `out_dir`; returns (model, processor)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor = build_processor(build_tokenizer(needle_texts(corpus_videos, seed), sizes.merges))
    with torch.random.fork_rng(devices=[]):  # seed locally: don't disturb the caller's global RNG
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(mini_config(processor.tokenizer, sizes))
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    save(model, processor, out_dir)
    return model, processor


def save(model, processor, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors
    processor.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------- selections

def inside(times: np.ndarray, intervals) -> np.ndarray:
    """Which of `times` fall in any [start, end) interval."""
    times = np.asarray(times, np.float64)
    hit = np.zeros(times.shape, bool)
    for a, b in intervals:
        hit |= (times >= a) & (times < b)
    return hit


def oracle_times(evidence, candidates: np.ndarray, k: int, rng, spread: str = "random") -> np.ndarray:
    """k candidate times showing every evidence interval once (a random frame inside each) and otherwise no
    evidence: fillers drawn at random, or evenly spaced (`spread="even"`), from the frames outside the evidence."""
    candidates = np.asarray(candidates, np.float64)
    picks = [rng.choice(candidates[inside(candidates, [iv])]) for iv in evidence]
    outside = candidates[~inside(candidates, evidence)]
    n = k - len(picks)
    if spread == "even":
        fill = outside[np.linspace(0, len(outside) - 1, n + 2)[1:-1].round().astype(int)]  # spaced, ends excluded
    else:
        fill = rng.choice(outside, n, replace=False)
    return np.sort(np.concatenate([picks, fill]))


def crowded_times(evidence, events, candidates: np.ndarray, k: int, rng) -> np.ndarray:
    """k candidate times as a similarity ranking picks them: every evidence interval shown by one to four of its
    frames (k permitting), the rest drawn half from other needle events (objects the question is not about, later
    appearances) and half from frames without a needle. The oracle alone never shows the model a run of frames of
    one event or another object beside the evidence, and a model trained only on it miscounts both."""
    candidates = np.asarray(candidates, np.float64)
    runs = [rng.permutation(candidates[inside(candidates, [iv])]) for iv in evidence]
    picks = [r[0] for r in runs]
    extra = np.concatenate([r[1:rng.integers(1, min(4, len(r)) + 1)] for r in runs] + [np.zeros(0)])
    picks += list(rng.permutation(extra)[:max(0, k - len(picks))])
    others = candidates[inside(candidates, events) & ~inside(candidates, evidence)]
    plain = candidates[~inside(candidates, events)]
    n_other = min(len(others), rng.binomial(k - len(picks), 0.5))
    fill = [*rng.choice(others, n_other, replace=False), *rng.choice(plain, k - len(picks) - n_other, replace=False)]
    return np.sort(np.asarray(picks + fill, np.float64))


def no_evidence_times(evidence, candidates: np.ndarray, k: int, rng) -> np.ndarray:
    """k random candidate times, none inside an evidence interval."""
    candidates = np.asarray(candidates, np.float64)
    return np.sort(rng.choice(candidates[~inside(candidates, evidence)], k, replace=False))


SELECTIONS = ("oracle", "crowded", "none")


def event_intervals(spec) -> list[tuple[float, float]]:
    """[start, end) of every needle event of a VideoSpec."""
    return [(e.start, e.end) for e in spec.events]


def selection_times(kind: str, evidence, events, candidates, k: int, rng) -> np.ndarray:
    """The selections the model is trained and evaluated on: `oracle_times`, `crowded_times` or
    `no_evidence_times`; `events` are the [start, end) intervals of all the video's needle events."""
    if kind == "oracle":
        return oracle_times(evidence, candidates, k, rng)
    if kind == "crowded":
        return crowded_times(evidence, events, candidates, k, rng)
    if kind == "none":
        return no_evidence_times(evidence, candidates, k, rng)
    raise ValueError(f"selection kind {kind!r}: expected one of {', '.join(SELECTIONS)}")


def grid_times(spec) -> np.ndarray:
    """The harness's 1 fps candidate grid of a needle video, in seconds."""
    from harness.grid import make_grid

    return np.asarray(make_grid(spec.n_frames, spec.fps, "1fps").timestamps)


# ---------------------------------------------------------------------------------------------------- frames

@dataclass
class Pool:
    """Some 1 fps grid frames of one training video, as a decoder would return them."""

    spec: object
    times: np.ndarray  # seconds, ascending
    frames: np.ndarray  # (n, H, W, 3) uint8

    def at(self, times) -> np.ndarray:
        return self.frames[np.searchsorted(self.times, times)]


def build_pool(spec, fillers: int, rng) -> Pool:
    """Every grid frame inside an event, the K uniform ones, and `fillers` random others, rendered and sent
    through H.264 in time order."""
    from tasks.needle import render_frame

    grid = grid_times(spec)
    events = [(e.start, e.end) for e in spec.events]
    keep = inside(grid, events)
    keep[np.linspace(0, len(grid) - 1, K).astype(int)] = True
    keep[rng.choice(len(grid), min(fillers, len(grid)), replace=False)] = True
    times = grid[keep]
    return Pool(spec, times, h264_round_trip([render_frame(spec, t) for t in times], spec.fps, crf=CRF, gop=GOP))


def _pool_job(args):
    spec, fillers, seed, i = args
    return build_pool(spec, fillers, np.random.default_rng([seed, i]))


def build_pools(specs, fillers: int, seed: int = 0, workers: int = 1) -> list[Pool]:
    """`build_pool` for every spec (video i seeded by (seed, i)), in `workers` processes."""
    jobs = [(s, fillers, seed, i) for i, s in enumerate(specs)]
    if workers <= 1:
        return [_pool_job(j) for j in jobs]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as procs:
        return procs.map(_pool_job, jobs, chunksize=4)


def fresh_question(spec, rng, types=("appearance", "order", "count")):
    """A new question about a train video: any kind its needle layout supports, fresh absent-object options and a
    random answer position. Drawn anew for every example, so the model cannot learn answers by heart (a few
    hundred fixed questions, each always answered by the same letter, are memorised long before frames are read).
    Returns (sample, prompt), or None when the layout supports none of `types`."""
    from harness.records import Sample
    from tasks.needle import NeedleTask, _layout_questions, _make_question

    objects = list(dict.fromkeys(e.obj for e in spec.events))  # labelled by first appearance, as the generator does
    layout = tuple(objects.index(e.obj) for e in spec.events)
    kinds = [k for k in _layout_questions(layout) if k[0] in types]
    if not kinds:
        return None
    q = _make_question(kinds[rng.integers(len(kinds))], objects, list(spec.events), int(rng.integers(4)), rng)
    sample = Sample(id=f"{spec.video_id}-fresh", video="", question=q.text, options=q.options, answer=q.answer,
                    categories={"question_type": q.type}, evidence=q.evidence)
    return sample, NeedleTask(split="train", videos=1).prompt(sample)


# ---------------------------------------------------------------------------------------------------- training

def describe_example(pool: Pool, rng) -> tuple[np.ndarray, str]:
    """Times and answer of an auxiliary example: a random subset of the video's events shown once each, the other
    frames clear of every event, answered by naming what is shown in time order ("none" for nothing)."""
    events = [e for e in pool.spec.events if rng.random() < 0.7]
    picks = [rng.choice(pool.times[inside(pool.times, [(e.start, e.end)])]) for e in events]
    clear = pool.times[~inside(pool.times, [(e.start, e.end) for e in pool.spec.events])]
    times = np.sort(np.concatenate([picks, rng.choice(clear, K - len(picks), replace=False)]))
    shown = [e.name for t in times for e in pool.spec.events if e.visible(t)]
    return times, ", ".join(shown) or "none"


def region_labels(spec, times) -> np.ndarray:
    """(n, 4, 4, 2) int64: for each frame and each 32x32 region (one merged vision token), the colour and shape of
    the needle object covering it (1-based indices into COLOURS and SHAPES; 0 where none does)."""
    from tasks.needle import COLOURS, SHAPES, shape_mask

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


def rope_positions(input_ids, attention_mask, video_grid_thw, second_per_grid_ts, *, video_token_id: int,
                   spatial_merge_size: int = MERGE, tokens_per_second: float = 2):
    """The 3-D rope positions transformers 5.24 gives Qwen2.5-VL inputs of text and videos ((3, B, L), padding at
    0): text counts on by one; a video of t x h x w merged patches starting at s gets (s + floor(g * tokens/s *
    seconds per grid), s + row, s + column), and the text after it goes on at s + max(h, w). Training passes
    these explicitly, so a model trained under another transformers version (the GPU machine's) reads the same
    positions the backbone's rope="transformers" computes here; tests check them against the installed version."""
    import torch

    positions = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
    grids, seconds = iter(video_grid_thw), iter(second_per_grid_ts)
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(input_ids[b], dtype=bool)
        ids = input_ids[b][keep]
        is_video = (ids == video_token_id).tolist()
        parts, pos, i = [], 0, 0
        while i < len(ids):
            j = i
            while j < len(ids) and is_video[j] == is_video[i]:
                j += 1
            if not is_video[i]:
                parts.append(torch.arange(j - i, device=ids.device).view(1, -1).expand(3, -1) + pos)
                pos += j - i
            else:
                t, h, w = (int(x) for x in next(grids))
                interval = tokens_per_second * next(seconds)
                h, w = h // spatial_merge_size, w // spatial_merge_size
                tt = (torch.arange(t, device=ids.device) * interval).long()
                rows, cols = torch.arange(h, device=ids.device) + pos, torch.arange(w, device=ids.device) + pos
                grid = torch.stack(torch.meshgrid(tt, rows, cols, indexing="ij")).reshape(3, -1)
                grid[0] += pos
                parts.append(grid)
                pos += max(h, w)
            i = j
        positions[:, b, keep] = torch.cat(parts, dim=1).to(positions.dtype)
    return positions


def positions_of(processor, inputs):
    """`rope_positions` of a batch of model inputs (one video per row)."""
    return rope_positions(inputs["input_ids"], inputs["attention_mask"], inputs["video_grid_thw"],
                          inputs["second_per_grid_ts"], video_token_id=processor.video_token_id,
                          spatial_merge_size=processor.video_processor.merge_size)


def batched_vision_attention(model, processor, device) -> list:
    """Training speed: transformers' vision attention (without flash-attn) runs one attention call per frame chunk
    (a batch of 64 questions: 256 chunks a layer). Needle frames pass unresized and the window covers a whole
    frame, so every chunk has the same length: one batched call computes the same thing. Installed on the vision
    blocks after checking on a random batch that the outputs match; returns the callables that remove it (empty
    when it does not apply here)."""
    import types

    import torch
    import torch.nn.functional as F

    blocks = model.model.visual.blocks
    try:
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
    except ImportError:
        return []

    def batched(self, hidden_states, cu_seqlens, **kwargs):
        n = hidden_states.shape[0]
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        position_embeddings = kwargs.get("position_embeddings")
        if position_embeddings is None or not lengths or len(set(lengths)) != 1 or lengths[0] * len(lengths) != n:
            return type(self).forward(self, hidden_states, cu_seqlens=cu_seqlens, **kwargs)  # the stock path
        q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        chunk = lambda x: x.reshape(len(lengths), lengths[0], self.num_heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(chunk(q), chunk(k), chunk(v), scale=self.scaling)
        return self.proj(out.transpose(1, 2).reshape(n, -1))

    frames = torch.randint(0, 256, (3, K, FRAME, FRAME, 3), dtype=torch.uint8, device=device)
    pixels = patchify(processor, frames)
    grid = torch.tensor([[K // 2, FRAME // PATCH, FRAME // PATCH]] * 3, device=device)
    try:
        with torch.no_grad():
            want = model.model.visual(pixels, grid_thw=grid)
            for blk in blocks:
                blk.attn.forward = types.MethodType(batched, blk.attn)
            got = model.model.visual(pixels, grid_thw=grid)
        want, got = (getattr(x, "pooler_output", x) for x in (want, got))
        want, got = (x[0] if isinstance(x, (tuple, list)) else x for x in (want, got))
        ok = torch.allclose(want, got, atol=1e-4, rtol=1e-3)
    except Exception:  # another transformers version's signature: keep its own
        ok = False
    restore = [lambda blk=blk: blk.attn.__dict__.pop("forward", None) for blk in blocks]
    if not ok:
        for r in restore:
            r()
        return []
    return restore


class RegionHead:
    """Training-only probe on the vision tower's output: each merged token must tell, for both frames of its
    temporal patch, the colour and shape of the needle in its 32x32 region. Dense labels make the vision tower
    learn fast; the head is thrown away, the model keeps what it learned."""

    def __init__(self, model):
        import torch
        from tasks.needle import COLOURS, SHAPES

        self.n_colour, self.n_shape = len(COLOURS) + 1, len(SHAPES) + 1
        self.linear = torch.nn.Linear(model.config.text_config.hidden_size, 2 * (self.n_colour + self.n_shape))
        self.linear.to(model.device)
        self.features = None
        model.model.visual.register_forward_hook(self._keep)

    def _keep(self, module, args, output):
        self.features = getattr(output, "pooler_output", output)  # merged tokens, in the processor's patch order

    def loss(self, labels):
        """labels: (batch, K, 4, 4, 2) from `region_labels`, for the videos of the last forward pass."""
        import torch
        import torch.nn.functional as F

        b, k, h, w, _ = labels.shape
        # merged tokens run (video, temporal patch, row, column); a temporal patch holds frames 2t and 2t+1
        logits = self.linear(self.features).view(b, k // 2, h, w, 2, self.n_colour + self.n_shape)
        target = torch.as_tensor(labels, device=logits.device).view(b, k // 2, 2, h, w, 2).permute(0, 1, 3, 4, 2, 5)
        weight = 1 + 4 * (target > 0).float()  # needle regions are rare: count them more
        colour = F.cross_entropy(logits[..., :self.n_colour].reshape(-1, self.n_colour),
                                 target[..., 0].reshape(-1), reduction="none")
        shape = F.cross_entropy(logits[..., self.n_colour:].reshape(-1, self.n_shape),
                                target[..., 1].reshape(-1), reduction="none")
        return ((colour * weight[..., 0].reshape(-1)).sum() + (shape * weight[..., 1].reshape(-1)).sum()) / \
            (weight.sum() / 2)


def _letter_ids(tokenizer, n: int = 4):
    ids = [tokenizer.convert_tokens_to_ids(chr(ord("A") + i)) for i in range(n)]
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ValueError("option letters must be single tokens")
    return ids


def _batch(processor, examples, real_timing):
    """examples: (frames, times, prompt, answer). Returns model inputs and each row's answer span (first position,
    length), the answer's tokens plus the closing <|im_end|>."""
    import torch

    from backbones.qwen2_5_vl import build_inputs, timing_inputs

    inputs = build_inputs(processor, [e[0] for e in examples], [e[2] for e in examples], [e[3] for e in examples])
    inputs.update(timing_inputs(processor, [e[1] for e in examples], real_timing))
    lengths = torch.tensor([len(processor.tokenizer(e[3], add_special_tokens=False)["input_ids"]) + 1
                            for e in examples])
    end = inputs["attention_mask"].sum(dim=1)  # right padding: the answer ends the real tokens
    return inputs, end - lengths, lengths


def fast_inputs(processor, examples, real_timing) -> tuple[dict, object, object]:
    """`_batch` without the video processor, for training throughput (its per-call tensor copies cost ~40 ms a
    video on a CPU, far more than a training step of this model on a GPU): the same input ids, masks, grids and
    timing, but the frames stay uint8 under "frames"; `patchify` turns them into the processor's
    `pixel_values_videos` on the model's device. Only for frames the processor would not resize (even count, sides
    multiples of PATCH * MERGE inside its pixel bounds); tests/test_qwen_backbone.py checks it against `_batch`."""
    import torch

    from backbones.qwen2_5_vl import chat_text, timing_inputs

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


def option_ends(input_ids, newline_id: int, vision_end_id: int, n_options: int = 4):
    """Positions of the newline closing each option line: the prompt after the video is "question\n", one
    "X. option\n" per option, then the instruction."""
    after = (input_ids == vision_end_id).nonzero()[0, 0]
    lines = (input_ids == newline_id).nonzero()[:, 0]
    return lines[lines > after][1:1 + n_options]


def _loss(model, inputs, start, lengths, soft, letter_ids, probe=None, correct=None, ends=None, position_ids=None):
    """Mean token cross-entropy of each answer; a `soft` row (no evidence shown) instead asks for equal odds over
    the letters at the answer's first token, so the question text alone favours no option (its later tokens, the
    closing <|im_end|>, are learnt as usual: a guess must still end like an answer). With `probe` (and the
    `correct` option index of rows that show the evidence, `ends` the option lines' last positions of question
    rows, -1 elsewhere), also the probe's two losses on the residual stream that enters the last layer, at the end
    of each option line: which option is right (rows showing the evidence), and the line's own letter (every
    question row). Returns (loss, first-token hits, option loss, letter loss). Vectorised: one sync a step."""
    import torch
    import torch.nn.functional as F

    out = model(**inputs, position_ids=position_ids, output_hidden_states=probe is not None)
    ids = inputs["input_ids"]
    dev = ids.device
    rows = torch.arange(len(ids), device=dev)
    start, lengths = torch.as_tensor(start, device=dev), torch.as_tensor(lengths, device=dev)
    logp = F.log_softmax(out.logits[:, :-1].float(), dim=-1)  # position p predicts token p + 1
    token = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    pos = torch.arange(1, ids.shape[1], device=dev)
    span = ((pos >= start[:, None]) & (pos < (start + lengths)[:, None])).float()
    hard = -(token * span).sum(1) / span.sum(1)
    answer = logp[rows, start - 1]  # (rows, vocab) where the answer's first token is predicted
    rest = span * (pos > start[:, None])  # the answer's tokens after its first
    flat = (-answer[:, letter_ids].mean(-1) - (token * rest).sum(1)) / span.sum(1)
    loss = torch.where(torch.as_tensor(soft, device=dev), flat, hard).mean()
    first = answer.argmax(-1) == ids[rows, start]
    zero = torch.zeros((), device=dev)
    if probe is None or ends is None:
        return loss, first, zero, zero
    ends = torch.as_tensor(ends, device=dev)
    asked = ends[:, 0] >= 0
    if not bool(asked.any()):
        return loss, first, zero, zero
    hidden = out.hidden_states[-2]
    q = asked.nonzero()[:, 0]
    feats = hidden[q[:, None], ends[q]]  # (question rows, 4, hidden)
    letters = probe.letters(feats)  # each line's own letter
    lettered = F.cross_entropy(letters.reshape(-1, letters.shape[-1]),
                               torch.arange(letters.shape[1], device=dev).repeat(len(q)))
    right = torch.as_tensor([-1 if c is None else c for c in correct], device=dev)[q]
    shown = right >= 0
    judged = (F.cross_entropy(probe.linear(feats[shown]).squeeze(-1), right[shown]) if bool(shown.any())
              else zero)
    return loss, first, judged, lettered


class OptionProbe:
    """Training-only probes on the text model, read where each option line ends, before the last layer: which
    option line is the right one (`linear`, four labels per question instead of one letter: the model learns to
    judge every option against the frames) and the line's own letter (`letters`, A-D): both are then in the
    residual stream the last layer reads, so answering only has to copy the letter of the line judged right.
    Thrown away after."""

    def __init__(self, model, tokenizer):
        import torch

        hidden = model.config.text_config.hidden_size
        self.linear = torch.nn.Linear(hidden, 1).to(model.device)
        self.letters = torch.nn.Linear(hidden, 4).to(model.device)
        self.newline = tokenizer.convert_tokens_to_ids("\u010a")  # byte-level spelling of "\n"
        self.vision_end = tokenizer.convert_tokens_to_ids("<|vision_end|>")

    def parameters(self):
        return [*self.linear.parameters(), *self.letters.parameters()]

    def ends(self, input_ids):
        return option_ends(input_ids, self.newline, self.vision_end)


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


def _example(pools, questions, recipe: Recipe, rng):
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


def _training_batch(processor, pools, questions, recipe: Recipe, batch_size: int, rng) -> dict:
    """Model inputs of one batch plus what the losses need; made in data-loader workers."""
    examples = [_example(pools, questions, recipe, rng) for _ in range(batch_size)]
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


def _stream(processor, pools, questions, recipe, batch_size, seed):
    """Endless training batches; each data-loader worker draws from its own seeded stream (the loader takes the
    workers' batches in turn, so a run is reproducible for a fixed worker count)."""
    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            rng = np.random.default_rng([seed, 1, info.id if info else 0])
            while True:
                yield _training_batch(processor, pools, questions, recipe, batch_size, rng)

    return Stream()


def _log_row(window, step, seconds, log) -> dict:
    hits = [h for w in window for h in w[1]]
    row = {"step": step, "loss": float(np.mean([w[0] for w in window])),
           "region_loss": float(np.mean([w[2] for w in window])), "option_loss": float(np.mean([w[3] for w in window])),
           "letter_loss": float(np.mean([w[4] for w in window])),
           "train_acc": float(np.mean(hits)) if hits else float("nan"), "seconds": seconds}
    log(f"step {step}: loss {row['loss']:.3f}, regions {row['region_loss']:.3f}, options {row['option_loss']:.3f}, "
        f"letters {row['letter_loss']:.3f}, oracle acc {row['train_acc']:.3f}, {seconds:.0f} s")
    return row


def train_mini_qwen(out_dir, seed: int = 0, steps: int = 1200, batch_size: int = 16, lr: float = 2e-3,
                    videos: int = 200, fillers: int = 40, recipe: Recipe = Recipe(), sizes: Sizes = Sizes(),
                    log_every: int = 50, log=print, device: str = "cpu", workers: int = 0,
                    evaluate_every: int = 0, eval_questions=None, stop_after: int | None = None,
                    max_seconds: float | None = None, init=None) -> dict:
    """Train the mini Qwen2.5-VL from scratch on the needle train split and save it to `out_dir`.

    Each batch mixes (shares in `recipe`): "describe" examples (name the needle objects the frames show, in
    order); questions with K frames, one inside every evidence event plus fillers outside the evidence (random or
    evenly spaced), target the option letter then <|im_end|>; and questions shown no evidence, trained towards
    equal odds over the letters so that the question text alone decides nothing. Questions are drawn fresh for
    every example (`fresh_question`). Two probes add dense signal (`RegionHead`, `OptionProbe`). Batches are made
    by `workers` data-loader processes (0: in this one). `stop_after` (steps) or `max_seconds` end the run
    early; the learning rate (warm-up, then cosine to a tenth) follows `steps`, or the time left before
    `max_seconds` where that runs out first (the result's "steps" is how many ran). `init`: a saved mini Qwen
    folder to go on training (its weights and processor; the probes and optimiser start afresh) instead of a new
    model. Seeded: the same arguments (and worker count) give the same weights on the same machine, except under
    `max_seconds`, where the schedule and the step count follow the clock.
    """
    import torch

    from tasks.needle import make_specs

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if init is None:
        model, processor = build_mini_qwen(out_dir, seed, sizes, corpus_videos=min(videos, 200))
    else:
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(init)
        processor = AutoProcessor.from_pretrained(init)
    model.to(torch.device(device))
    specs = make_specs("train", videos, seed)
    pools = build_pools(specs, fillers, seed, max(1, workers))
    from tasks.needle import NeedleTask, make_samples

    task = NeedleTask(split="train", videos=videos, seed=seed)
    questions = [(p, s, task.prompt(s)) for p, spec in zip(pools, specs) for s in make_samples(spec)]
    t_data = time.perf_counter() - t0
    log(f"data: {len(pools)} videos, {sum(len(p.times) for p in pools)} frames, {len(questions)} questions, "
        f"{t_data:.0f} s")

    letter_ids = _letter_ids(processor.tokenizer)
    head, probe = RegionHead(model), OptionProbe(model, processor.tokenizer)
    params = [*model.parameters(), *head.linear.parameters(), *probe.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, min(steps // 20, 300))
    t_train = time.perf_counter()

    def progress(s):  # the share of the run done: of `steps`, or of the time left for training when that ends first
        done = s / steps
        if max_seconds is not None:
            done = max(done, (time.perf_counter() - t_train) / max(1.0, max_seconds - (t_train - t0)))
        return min(1.0, done)

    def set_lr(s):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress(s))))
    batches = iter(torch.utils.data.DataLoader(_stream(processor, pools, questions, recipe, batch_size, seed),
                                               batch_size=None, num_workers=workers,
                                               prefetch_factor=8 if workers else None,
                                               persistent_workers=bool(workers)))
    model.train()
    fast_vision = batched_vision_attention(model, processor, device)
    log(f"vision attention: {'batched' if fast_vision else 'per chunk (transformers)'}")
    history, evals, window = [], [], []
    done = 0
    for step in range(steps if stop_after is None else min(steps, stop_after)):
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            log(f"stopping after {step} steps: {max_seconds:g} s reached")
            break
        done = step + 1
        set_lr(step)
        b = next(batches)
        inputs = {k: v.to(model.device) for k, v in b["inputs"].items()}
        inputs["pixel_values_videos"] = patchify(processor, inputs.pop("frames"))
        use_probe = recipe.options > 0 or recipe.letters > 0
        loss, first, judged, lettered = _loss(model, inputs, b["start"], b["lengths"], b["soft"], letter_ids,
                                              probe if use_probe else None, b["correct"], b["ends"],
                                              b["position_ids"].to(model.device))
        aux = head.loss(b["regions"]) if recipe.regions > 0 else torch.zeros((), device=model.device)
        total = loss + recipe.regions * aux + recipe.options * judged + recipe.letters * lettered
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        is_mc = [c is not None for c in b["correct"]]
        first = first.tolist()
        window.append((loss.item(), [f for f, m in zip(first, is_mc) if m], aux.item(), judged.item(),
                       lettered.item()))
        if (step + 1) % log_every == 0:
            history.append(_log_row(window, step + 1, time.perf_counter() - t0, log))
            window = []
        if evaluate_every and (step + 1) % evaluate_every == 0 and eval_questions:
            model.eval()
            evals.append({"step": step + 1, **letter_accuracy(model, processor, eval_questions)})
            log(f"step {step + 1}: eval {evals[-1]}")
            model.train()
    if window:
        history.append(_log_row(window, done, time.perf_counter() - t0, log))
    for restore in fast_vision:
        restore()
    model.eval()
    model.to("cpu")
    save(model, processor, out_dir)
    return {"final_loss": history[-1]["loss"], "final_train_acc": history[-1]["train_acc"], "steps": done,
            "planned_steps": steps,
            "seconds": time.perf_counter() - t0, "data_seconds": t_data, "history": history, "evals": evals,
            "parameters": sum(p.numel() for p in model.parameters())}


def letter_accuracy(model, processor, questions, batch_size: int = 32, seed: int = 0, kinds=SELECTIONS) -> dict:
    """Accuracy of the most likely option letter (teacher forcing, no generation) on (pool, sample, prompt)
    questions, per selection kind (`selection_times`) and per question type."""
    import torch

    letter_ids = _letter_ids(processor.tokenizer)
    rng = np.random.default_rng(seed)
    out = {}
    for kind in kinds:
        hits = {}
        for start in range(0, len(questions), batch_size):
            chunk = questions[start:start + batch_size]
            items = []
            for pool, sample, prompt in chunk:
                times = selection_times(kind, sample.evidence, event_intervals(pool.spec), pool.times, K, rng)
                items.append((pool.at(times), times, prompt, "A"))
            inputs, start, _ = _batch(processor, items, [True] * len(items))
            position_ids = positions_of(processor, inputs).to(model.device)
            with torch.inference_mode():
                logits = model(**inputs.to(model.device), position_ids=position_ids).logits
            pred = logits[torch.arange(len(start)), start.to(model.device) - 1][:, letter_ids].argmax(-1).tolist()
            for (_, sample, _), p in zip(chunk, pred):
                hits.setdefault(sample.categories["question_type"], []).append(p == sample.answer)
        out[kind] = round(float(np.mean([h for v in hits.values() for h in v])), 3)
        out.update({f"{kind}/{t}": round(float(np.mean(v)), 3) for t, v in sorted(hits.items())})
    return out


def pooled_questions(split: str, n_videos: int, seed: int = 0, fillers: int = 40):
    """(pool, sample, prompt) for every question of the first `n_videos` videos of a split (rendered frames)."""
    from tasks.needle import NeedleTask, make_samples, make_specs

    task = NeedleTask(split=split, videos=n_videos, seed=seed)
    specs = make_specs(split, n_videos, seed)
    pools = [build_pool(s, fillers, np.random.default_rng([seed, i])) for i, s in enumerate(specs)]
    return [(p, s, task.prompt(s)) for p, spec in zip(pools, specs) for s in make_samples(spec)]


def evaluate_backbone(backbone, task, kinds=SELECTIONS, k: int = K, seed: int = 0, limit: int | None = None,
                      decode_backend: str = "pyav") -> dict:
    """Accuracy of `backbone.generate` on frames decoded from the task's written videos, per selection kind
    (`selection_times`: oracle, crowded, no evidence); overall, per question type, and how many answers the strict
    extractor could not parse."""
    from harness.grid import make_grid
    from harness.video import open_video

    rng = np.random.default_rng(seed)
    samples = task.samples()[:limit]
    hits = {kind: {} for kind in kinds}
    unparsed = {kind: 0 for kind in kinds}
    for sample in samples:
        with open_video(sample.video, decode_backend) as reader:
            grid = make_grid(reader.meta.frame_count, reader.meta.fps, "1fps")
            times = np.asarray(grid.timestamps)
            events = [(e["start"], e["end"]) for e in sample.metadata["events"]]
            for kind in kinds:
                chosen = selection_times(kind, sample.evidence, events, times, k, rng)
                idx = np.asarray(grid.indices)[np.searchsorted(times, chosen)]
                prediction = task.score(sample, backbone.generate(reader.get_frames(idx.tolist()), chosen,
                                                                  task.prompt(sample, backbone.prompt_style)))
                hits[kind].setdefault(sample.categories["question_type"], []).append(prediction.correct)
                unparsed[kind] += prediction.parse_status != "ok"
    out = {"questions": len(samples)}
    for kind in kinds:
        out[kind] = round(float(np.mean([h for v in hits[kind].values() for h in v])), 3)
        out.update({f"{kind}/{t}": round(float(np.mean(v)), 3) for t, v in sorted(hits[kind].items())})
        out[f"{kind}/unparsed"] = unparsed[kind]
    return out


# ---------------------------------------------------------------------------------------------------- command line

def main(argv=None) -> None:
    """`python -m harness.miniworld.qwen train --out DIR [...]`: train, save, and write DIR/training.json (the
    arguments, machine, time, loss history and held-out letter accuracy) so the shipped weights can be remade.
    `... eval [--model M] [--eval-videos N]`: `evaluate_backbone` (generated answers through the mini-qwen2.5-vl
    backbone on the written needle test videos, per selection kind), printed as JSON."""
    import argparse
    import dataclasses
    import json
    import platform

    import torch
    import transformers

    ap = argparse.ArgumentParser(prog="python -m harness.miniworld.qwen")
    ap.add_argument("command", choices=["train", "eval"])
    ap.add_argument("--out", help="where train saves the model (required for train)")
    ap.add_argument("--model", default="mini-qwen2.5-vl", help="eval: a shipped name or a saved folder")
    ap.add_argument("--decode-backend", default="pyav", help="eval: decord or pyav")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--fillers", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="data-loader processes (0: batches made in this one)")
    ap.add_argument("--sizes", default="{}", help="JSON overrides of Sizes")
    ap.add_argument("--recipe", default="{}", help="JSON overrides of Recipe")
    ap.add_argument("--eval-videos", type=int, default=0, help="test videos for the held-out letter accuracy")
    ap.add_argument("--evaluate-every", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--stop-after", type=int, default=None, help="end after this many steps (schedule of --steps)")
    ap.add_argument("--max-seconds", type=float, default=None, help="end after this long (the learning-rate schedule then follows the clock)")
    ap.add_argument("--init", default=None, help="a saved mini Qwen folder to go on training")
    args = ap.parse_args(argv)
    if args.command == "eval":
        from harness.registry import BACKBONES, TASKS

        backbone = BACKBONES.create("mini-qwen2.5-vl", model=args.model, device=args.device)
        task = TASKS.create("needle", split="test", videos=args.eval_videos or 50, seed=args.seed)
        print(json.dumps(evaluate_backbone(backbone, task, decode_backend=args.decode_backend)))
        return
    if not args.out:
        ap.error("train needs --out")
    sizes, recipe = Sizes(**json.loads(args.sizes)), Recipe(**json.loads(args.recipe))
    eval_questions = pooled_questions("test", args.eval_videos) if args.eval_videos else None
    log = lambda line: print(line, flush=True)  # noqa: E731
    result = train_mini_qwen(args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             videos=args.videos, fillers=args.fillers, recipe=recipe, sizes=sizes,
                             log_every=args.log_every, log=log, device=args.device, workers=args.workers,
                             evaluate_every=args.evaluate_every, eval_questions=eval_questions,
                             stop_after=args.stop_after, max_seconds=args.max_seconds, init=args.init)
    if eval_questions:
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.out).eval()  # as saved, on the CPU
        result["held_out"] = letter_accuracy(model, build_processor_from(args.out), eval_questions)
        log(f"held out ({args.eval_videos} test videos, teacher-forced letter): {result['held_out']}")
    previous = Path(args.init, "training.json") if args.init else None
    record = {"command": "python -m harness.miniworld.qwen " + " ".join(argv if argv is not None else sys_argv()),
              "seed": args.seed, "steps": result["steps"], "planned_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
              "videos": args.videos, "fillers": args.fillers, "workers": args.workers, "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "sizes": dataclasses.asdict(sizes), "recipe": dataclasses.asdict(recipe),
              **{k: result[k] for k in ("parameters", "seconds", "data_seconds", "final_loss", "final_train_acc")},
              "evals": result["evals"], "held_out": result.get("held_out"),
              "history": result["history"][:: max(1, len(result["history"]) // 40)],
              "init": json.loads(previous.read_text()) if previous and previous.is_file() else args.init}
    Path(args.out, "training.json").write_text(json.dumps(record, indent=1))


def sys_argv() -> list[str]:
    import sys

    return sys.argv[1:]


def build_processor_from(folder):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


if __name__ == "__main__":
    main()
