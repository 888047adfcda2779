"""mini-clip: a tiny CLIP trained here, contrastively, on the needle task's train split.

The model is a plain transformers `CLIPModel` + `CLIPProcessor` (with OpenAI CLIP's own tokenizer, built offline),
so the harness loads it exactly like `openai/clip-vit-large-patch14`, through
`harness.features.encoders.ClipEncoder`. It knows one thing: which frames show a needle object that fits a text ("a
red triangle", "What colour is the triangle that appears in the video?"), on H.264-decoded frames, so that a
query-aware sampler finds the evidence.

Training data: short clips around every train-split event (needle frames are the positives, the seconds around
them hard negatives on the same background) and around random haystack times, drawn with `render_frame` and
round-tripped through H.264 as the task's videos are. Texts: captions of every needle object and the train split's
appearance questions; a text fits a frame when every colour and shape it names belongs to one visible object.
Each step scores a batch of frames against the whole text set (a few dozen texts) with a symmetric InfoNCE loss
that spreads its target over all fitting pairs, and CLIP's learnable temperature.

    python -m harness.miniworld.clip train [--out DIR] [--steps N]   # default: the shipped folder
    python -m harness.miniworld.clip eval [--folder DIR]             # top-1 frame vs evidence, needle test split
"""
from __future__ import annotations

import inspect
import json
import math
import re
import time
from pathlib import Path

import numpy as np

from harness.shipped import SHIPPED
from harness.miniworld.codec import h264_round_trip
from tasks.needle import COLOURS, SHAPES, NeedleTask, frame_objects, make_specs, render_frame, write_spec_video

FOLDER = SHIPPED["mini-clip"]
OBJECTS = [(s, c) for s in SHAPES for c in COLOURS]  # (shape, colour), the needle vocabulary
# The task's own encoder settings (write_spec_video's defaults), so training frames carry the same artefacts.
_WRITE = inspect.signature(write_spec_video).parameters
TASK_CRF, TASK_GOP = _WRITE["crf"].default, _WRITE["gop"].default

MODEL = dict(image_size=64, patch=8, vision_hidden=64, vision_layers=4, text_hidden=32, text_layers=2,
             projection=64)


# ---------------------------------------------------------------------------------------------------- texts

def caption_texts() -> list[str]:
    out = [f"{a} {c} {s}" for s, c in OBJECTS for a in ("a", "the")]
    return out + [f"a {c} object" for c in COLOURS] + [f"a {s}" for s in SHAPES]


def training_texts(specs) -> list[str]:
    """Captions, then the distinct appearance questions of `specs`, sorted (the set, not the specs, fixes the order)."""
    questions = {q.text for s in specs for q in s.questions if q.type == "appearance"}
    return caption_texts() + sorted(questions)


def text_objects(text: str) -> np.ndarray:
    """(len(OBJECTS),) bool: the needle objects a text fits (every colour and shape it names). A text naming
    none ("Which of these objects appears in the video?") fits any needle object, and nothing else."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    return np.array([all(w not in COLOURS or w == c for w in words) and
                     all(w not in SHAPES or w == s for w in words) for s, c in OBJECTS])


# ---------------------------------------------------------------------------------------------------- frames

def training_frames(specs, seed: int = 0, margin: float = 2.0, haystack_clips: int = 2, clip_seconds: float = 4.0,
                    crf_range=(TASK_CRF - 2, TASK_CRF + 8)) -> tuple[np.ndarray, np.ndarray]:
    """Decoded frames of clips around each event (+- `margin` s) and `haystack_clips` random clips per video.

    Returns (n, H, W, 3) uint8 frames and (n, len(OBJECTS)) bool: the needle objects visible in each frame. The
    crf varies around the task's (mostly worse), so that the model does not rely on one artefact pattern.
    """
    frames, labels = [], []
    index = {o: k for k, o in enumerate(OBJECTS)}
    for spec in specs:
        rng = np.random.default_rng([seed, spec.index])
        windows = [(e.start - margin, e.end + margin) for e in spec.events]
        for start in rng.uniform(0, spec.duration - clip_seconds, haystack_clips):
            windows.append((start, start + clip_seconds))
        for a, b in windows:
            first, stop = math.ceil(max(a, 0) * spec.fps), math.floor(min(b, spec.duration) * spec.fps)
            times = np.arange(first, stop) / spec.fps
            crf = int(rng.integers(crf_range[0], crf_range[1] + 1))
            frames.append(h264_round_trip([render_frame(spec, t) for t in times], spec.fps, crf=crf,
                                          gop=TASK_GOP))
            for t in times:
                row = np.zeros(len(OBJECTS), bool)
                row[[index[e.obj] for e in frame_objects(spec, t)]] = True
                labels.append(row)
    return np.concatenate(frames), np.stack(labels)


# ---------------------------------------------------------------------------------------------------- model

def mini_clip_config(**overrides):
    """MODEL (with `overrides`) as a CLIPConfig. The text tower is narrower than the vision tower: its 49408-token
    embedding is most of the weights, and it only has a few dozen texts to tell apart."""
    from transformers import CLIPConfig

    from harness.miniworld.tiny import clip_config

    m = {**MODEL, **overrides}
    vision = clip_config(image_size=m["image_size"], patch=m["patch"], hidden=m["vision_hidden"],
                         layers=m["vision_layers"], heads=max(1, m["vision_hidden"] // 16),
                         projection=m["projection"]).vision_config
    text = clip_config(hidden=m["text_hidden"], layers=m["text_layers"], heads=max(1, m["text_hidden"] // 16),
                       projection=m["projection"]).text_config
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=m["projection"])


def contrastive_loss(logits, match):
    """Symmetric InfoNCE with several positives: each row's target spreads evenly over its fitting columns and
    vice versa. Rows or columns with no fit (haystack frames, texts with no frame in the batch) are negatives only."""
    def one_side(lg, m):
        has = m.any(1)
        target = m[has].float() / m[has].sum(1, keepdim=True)
        return -(target * lg[has].log_softmax(1)).sum(1).mean()

    return (one_side(logits, match) + one_side(logits.T, match.T)) / 2


def train_mini_clip(out_dir=FOLDER, seed: int = 0, steps: int = 6000, batch_size: int = 64, videos: int = 200,
                    lr: float = 2e-3, weight_decay: float = 0.05, warmup: int = 50, log_every: int = 100,
                    threads: int = 1, **model) -> dict:
    """Train mini-clip and save it (weights, processor, training.json) to `out_dir`; returns the training record
    (with the loss of every step). `model` overrides entries of MODEL.

    Deterministic in `seed`: the data, the initial weights, the batches and the augmentation all come from it.
    One thread by default: the arithmetic then does not depend on the core count, and a model this small gains
    little from a second thread while a busy machine makes two threads wait on each other (5x slower, measured).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(Path(out_dir), seed, steps, batch_size, videos, lr, weight_decay, warmup, log_every,
                      {**MODEL, **model})
    finally:
        torch.set_num_threads(previous)


def _train(out: Path, seed, steps, batch_size, videos, lr, weight_decay, warmup, log_every, model) -> dict:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from harness.miniworld.tiny import clip_image_processor, clip_tokenizer

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    specs = make_specs("train", videos, seed)
    texts = training_texts(specs)
    frames, labels = training_frames(specs, seed)
    t_data = time.time() - t0
    fits = torch.from_numpy(labels.astype(np.float32)) @ torch.from_numpy(
        np.stack([text_objects(t) for t in texts]).T.astype(np.float32)) > 0  # (frames, texts)

    processor = CLIPProcessor(image_processor=clip_image_processor(model["image_size"]), tokenizer=clip_tokenizer(out))
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.random.fork_rng(devices=[]):  # seed locally: leave the caller's global RNG alone
        torch.manual_seed(seed)
        clip = CLIPModel(mini_clip_config(**model))
    decay = [p for n, p in clip.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in clip.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, fused=True)  # fused: the unfused step over the 49408-row embedding is slow on CPU
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, steps) / steps)))

    # Preprocess once, exactly as ClipEncoder will (half precision: the pool stays small; steps upcast).
    pixels = torch.cat([processor.image_processor(images=torch.from_numpy(frames[i:i + 256]).permute(0, 3, 1, 2),
                                                  return_tensors="pt")["pixel_values"].half()
                        for i in range(0, len(frames), 256)])
    n_frames = len(frames)
    del frames

    # Half the batch shows a needle, half does not (haystack, and the seconds around events: hard negatives).
    rng = np.random.default_rng([seed, 1])
    positive, negative = np.flatnonzero(labels.any(1)), np.flatnonzero(~labels.any(1))
    losses = []
    clip.train()
    for step in range(steps):
        half = batch_size // 2
        idx = torch.from_numpy(np.concatenate([rng.choice(positive, half), rng.choice(negative, batch_size - half)]))
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)  # every needle shape is mirror-symmetric left-right
        batch = pixels[idx].float()
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        img = clip.get_image_features(pixel_values=batch)
        txt = clip.get_text_features(**tokens)
        img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))  # transformers 5 wraps the features
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        logits = clip.logit_scale.exp() * img @ txt.T
        loss = contrastive_loss(logits, fits[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the temperature
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f} "
                  f"scale {clip.logit_scale.exp().item():.1f} ({time.time() - t0:.0f}s)", flush=True)

    clip.eval()
    clip.save_pretrained(out)
    processor.save_pretrained(out)
    # vocab.json + merges.txt (1.5 MB) rebuild this very tokenizer; the 3.6 MB tokenizer.json only repeats them.
    (out / "tokenizer.json").unlink(missing_ok=True)
    tail = max(1, min(50, steps // 10))
    record = dict(seed=seed, steps=steps, batch_size=batch_size, videos=videos, lr=lr, weight_decay=weight_decay,
                  warmup=warmup, model=model, frames=n_frames, needle_frames=int(len(positive)), texts=len(texts),
                  final_loss=float(np.mean(losses[-tail:])), first_loss=losses[0] if losses else None,
                  logit_scale=clip.logit_scale.exp().item(), data_seconds=round(t_data, 1),
                  seconds=round(time.time() - t0, 1), torch_threads=torch.get_num_threads())
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return dict(record, losses=losses, folder=str(out))


# ---------------------------------------------------------------------------------------------------- evaluation

def evaluate_mini_clip(folder=FOLDER, task=None, backend: str = "decord") -> dict:
    """For each question type: how often the top-scoring 1 fps frame for the question text lies inside an evidence
    interval (start <= t < end, when the object is on screen), next to a random frame's chance of doing so."""
    from harness.features.encoders import ClipEncoder
    from harness.features.store import cosine_scores
    from harness.video.grid import make_grid
    from harness.video.reader import open_video

    task = task or NeedleTask(split="test")
    encoder = ClipEncoder(str(folder))
    by_video = {}
    for s in task.samples():
        by_video.setdefault(s.video, []).append(s)
    hits, chance, counts = {}, {}, {}
    for video, samples in by_video.items():
        with open_video(video, backend) as reader:
            grid = make_grid(reader.meta.frame_count, reader.meta.fps, "1fps")
            feats = encoder.image_features(reader.get_frames(grid.indices))
        ts = np.asarray(grid.timestamps)
        for s in samples:
            inside = np.zeros(len(ts), bool)
            for a, b in s.evidence:
                inside |= (ts >= a) & (ts < b)
            top = int(np.argmax(cosine_scores(feats, encoder.text_features([task.query(s)])[0])))
            for key in (s.categories["question_type"], "all"):
                hits[key] = hits.get(key, 0) + int(inside[top])
                chance[key] = chance.get(key, 0.0) + float(inside.mean())
                counts[key] = counts.get(key, 0) + 1
    return {k: {"top1_in_evidence": hits[k] / counts[k], "random_frame": chance[k] / counts[k], "questions": counts[k]}
            for k in counts}


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m harness.miniworld.clip", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train mini-clip (defaults: train_mini_clip's, into the shipped folder)")
    t.add_argument("--out", default=str(FOLDER))
    for name in ("seed", "steps", "batch_size", "videos", "threads"):
        t.add_argument(f"--{name.replace('_', '-')}", type=int)
    t.add_argument("--lr", type=float)
    e = sub.add_parser("eval", help="top-1 frame vs evidence on the needle test split")
    e.add_argument("--folder", default=str(FOLDER))
    e.add_argument("--videos", type=int, default=50)
    args = vars(p.parse_args(argv))
    if args.pop("cmd") == "train":
        rec = train_mini_clip(args.pop("out"), **{k: v for k, v in args.items() if v is not None})
        print(json.dumps({k: v for k, v in rec.items() if k != "losses"}, indent=1))
    else:
        task = NeedleTask(split="test", videos=args["videos"])
        print(json.dumps(evaluate_mini_clip(args["folder"], task), indent=1))


if __name__ == "__main__":
    main()
