"""Training the mini Qwen2.5-VL (`train_mini_qwen`): the losses, two training-only probes and the loop.

Training is teacher-forced on needle train videos with the harness's prompt (`Task.prompt`); the target is the
option letter. Questions are drawn afresh for every example (`world.fresh_question`: any kind the video's needles
support, new absent-object options, random answer position), so answers cannot be learnt by heart. Selections show
the evidence (one frame inside every evidence event, the other frames random or evenly spaced), except a share that
shows none and is trained towards equal odds over the letters, so the model learns to read frames, not priors. Two
training-only probes (thrown away after) give dense signal: `RegionHead` (colour and shape under every merged vision
token) and `OptionProbe`, read where each option line ends before the last layer: which option line is right, and
the line's own letter. The letter loss is what made the model answer: without it the model learnt which line is
right but not to say that line's letter (oracle accuracy stayed at chance); with it, the last layer only has to copy
the letter of the line judged right. A share of "describe" examples asks the model to name the objects it sees.
The vision attention runs as one batched call (`batched_vision_attention`, checked equal at start).
"""
from __future__ import annotations

import math
import time

import numpy as np

from harness.miniworld.qwen.batches import Recipe, batch_stream, option_ends, option_letter_ids, patchify
from harness.miniworld.qwen.build import FRAME, PATCH, Sizes, build_mini_qwen, save
from harness.miniworld.qwen.evaluate import letter_accuracy
from harness.miniworld.qwen.world import K, build_pools
from tasks.needle import COLOURS, SHAPES, NeedleTask, make_samples, make_specs


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


def training_losses(model, inputs, start, lengths, soft, letter_ids, probe=None, correct=None, ends=None,
                    position_ids=None):
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

    t0 = time.perf_counter()
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
    task = NeedleTask(split="train", videos=videos, seed=seed)
    questions = [(p, s, task.prompt(s)) for p, spec in zip(pools, specs) for s in make_samples(spec)]
    t_data = time.perf_counter() - t0
    log(f"data: {len(pools)} videos, {sum(len(p.times) for p in pools)} frames, {len(questions)} questions, "
        f"{t_data:.0f} s")

    letter_ids = option_letter_ids(processor.tokenizer)
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
    batches = iter(torch.utils.data.DataLoader(batch_stream(processor, pools, questions, recipe, batch_size, seed),
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
        loss, first, judged, lettered = training_losses(
            model, inputs, b["start"], b["lengths"], b["soft"], letter_ids, probe if use_probe else None,
            b["correct"], b["ends"], b["position_ids"].to(model.device))
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
