"""`harness bench`: questions per second end to end, the lmms-eval way against the harness runner, on one model.

1. A long-video set is written (N videos of M minutes at HxW, F fps, fixed GOP; H.264 through `harness.synth`, in
   parallel processes) under a cache folder named by those settings, so a rerun reuses it; next to it a Video-MME
   style annotation file with Q questions per video. The real `videomme` task reads it, so both loops get the same
   samples and the exact lmms-eval prompts.
2. Reference loop, as lmms-eval runs a video model: per question, open the video, decode K frames
   (`np.linspace(0, N-1, K, dtype=int)`, which is `uniform` over `--grid all`), preprocess and `generate` at batch 1,
   one question after another, on the stock model.
3. Harness runner: `Run` with the same task, the same loaded backbone and frames (`uniform`, grid `all`, K),
   `--workers` decode processes and `--batch-size`: questions sharing frames form one batch, the backbone's
   `accelerate()` speed-ups on.
4. Both sets of answers are compared question by question.
5. Prefill: on one video's questions, the model's prefill (vision tower + language model over the prompt, logits of
   the last token only) is timed in both configurations (batch 1 stock; the harness batch accelerated: the video's
   shared prefix once, then each question's own tokens over its KV cache), with the FLOPs it must do counted from
   the model config (`prefill_flops`; tokens after a cached prefix count their attention to it), against the card's
   bf16 matrix rate measured in this process (a large bf16 matmul). Peak memory from
   `torch.cuda.max_memory_allocated` on CUDA.

Results: `<out>/<device-slug>-<backbone-slug>.json` and `.md` (`result_stem`).

Backbones: `qwen2.5-vl` (prefill through `backbone.inputs`, FLOPs by `prefill_flops`) and `llava-video` (merged
embeddings through `batch_inputs` / `batch_embeddings`, FLOPs by `llava_prefill_flops`).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from harness.errors import HarnessError


@dataclass
class BenchConfig:
    videos: int = 8
    minutes: float = 5.0
    height: int = 720
    width: int = 1280
    fps: float = 30.0
    gop: int = 250
    questions: int = 3  # per video, all on the same uniform frames
    frames: int = 64
    backbone: str = "qwen2.5-vl"
    backbone_args: dict = field(default_factory=lambda: {"random_init": True, "config": "qwen2.5-vl-7b"})
    device: str = "cpu"
    dtype: str = "float32"
    decode_backend: str = "decord"
    workers: int = 4
    batch_size: int = 3
    video_dir: str = ".cache/bench-videos"
    out: str = "results/bench"
    encode_jobs: int = 0  # parallel encoder processes (0: one per video, at most the cores)
    prefill_repeats: int = 3
    matmul_size: int = 8192
    label: str | None = None  # file name stem instead of the device name


# -- the video set -------------------------------------------------------------------------------------------------


def _planes(seed: int, n: int, height: int, width: int):
    """Cheap, varied yuv420p frames: a per-video texture panning across the screen and a moving block; real work
    for H.264 (motion, texture) while a frame costs a slice and a copy (no colour conversion), so writing the set
    stays short."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(16, 236, (height // 32 + 1, 2 * width // 32 + 1), dtype=np.uint8)
    luma = np.repeat(np.repeat(cells, 32, 0), 32, 1)[:height, :2 * width]
    chroma = np.repeat(np.repeat(rng.integers(64, 192, (height // 16 + 1, width // 16 + 1), dtype=np.uint8), 8, 0),
                       8, 1)[:height // 2]
    bh, bw = height // 6, width // 8
    for i in range(n):
        offset = (2 * i) % width
        frame = np.empty((height * 3 // 2, width), np.uint8)
        frame[:height] = luma[:, offset:offset + width]
        y, x = (i * 3) % (height - bh), (i * 7) % (width - bw)
        frame[y:y + bh, x:x + bw] = 255 - frame[y, x]
        u = chroma[:height // 2, (offset // 2) % (width // 2):][:, :width // 2]
        u = np.pad(u, ((0, 0), (0, width // 2 - u.shape[1])), mode="wrap")
        # the U and V planes, each (h/2, w/2), follow the luma as rows of w, as av's yuv420p layout has them
        frame[height:height + height // 4] = u.reshape(height // 4, width)
        frame[height + height // 4:] = 255 - frame[height:height + height // 4]
        yield frame


def _write_one(path: str, seed: int, n: int, height: int, width: int, fps: float, gop: int) -> str:
    """H.264 (libx264, ultrafast, fixed GOP, yuv420p) through PyAV, written atomically like `harness.synth`.
    ultrafast keeps the set quick to write; its streams are, if anything, cheaper to decode than camera video,
    which favours the reference loop (it decodes per question)."""
    import av

    from harness.synth import as_rate

    rate = as_rate(fps)
    tmp = Path(path).with_name(f".{Path(path).stem}.{os.getpid()}.tmp.mp4")
    try:
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=rate, options={
                "preset": "ultrafast", "crf": "23", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = 1 / rate
            for i, planes in enumerate(_planes(seed, n, height, width)):
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def video_set(cfg: BenchConfig) -> tuple[Path, list[Path]]:
    """The cached video set for these settings (written where missing) and its folder."""
    if cfg.height % 2 or cfg.width % 2:
        raise HarnessError(f"video size must be even, got {cfg.width}x{cfg.height}")
    if cfg.videos < 1 or cfg.minutes <= 0 or cfg.fps <= 0:
        raise HarnessError("bench needs at least one video of positive length and frame rate")
    folder = Path(cfg.video_dir) / f"{cfg.width}x{cfg.height}_{cfg.fps:g}fps_{cfg.minutes:g}min_gop{cfg.gop}"
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(cfg.minutes * 60 * cfg.fps))
    paths = [folder / f"bench_{i:03d}.mp4" for i in range(cfg.videos)]
    missing = [p for p in paths if not p.is_file()]  # write_video renames a finished file into place
    if missing:
        jobs = cfg.encode_jobs or min(len(missing), os.cpu_count() or 1)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            list(pool.map(_write_one, [str(p) for p in missing], [int(p.stem[-3:]) for p in missing],
                          [n] * len(missing), [cfg.height] * len(missing), [cfg.width] * len(missing),
                          [cfg.fps] * len(missing), [cfg.gop] * len(missing)))
    return folder, paths


def write_annotations(folder: Path, paths: list[Path], questions: int) -> Path:
    """A Video-MME style annotation file: `questions` four-option questions per video."""
    records = []
    for p in paths:
        for q in range(questions):
            records.append({
                "video_id": p.stem, "videoID": p.stem, "question_id": f"{p.stem}-{q + 1}", "duration": "medium",
                "domain": "bench", "sub_category": "bench", "task_type": "bench", "url": "",
                "question": [f"What colour is the moving block in {p.stem}?",
                             "Which direction does the texture drift during the video?",
                             "How many distinct objects move across the screen over the whole clip?",
                             "What happens at the end?"][q % 4],
                "options": ["A. red", "B. green", "C. blue", "D. none of these"], "answer": "A"})
    path = folder / f"videomme_{questions}q.json"
    text = json.dumps(records, indent=1)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


# -- FLOPs ---------------------------------------------------------------------------------------------------------


def prefill_flops(config, tokens: list[int], video_patches: list[int]) -> dict:
    """Multiply-adds x 2 of a Qwen2.5-VL prefill, from the model config.

    Language model, per sequence of n real tokens (padding not counted), with d = hidden size, L layers, kv = key
    and value width (kv heads x head dim), f = MLP width:
        2 n L (2 d^2 + 2 d kv + 3 d f)   projections and MLP
      + 2 n^2 L d                        causal attention (QK^T and PV, half the square)
      + 2 d V                            the last token's logits (generate keeps only those)
    Vision tower, per video of p patches (after temporal fusion), with e = vision width, g = its MLP width, B blocks,
    c = channels x temporal patch x patch^2, windows of w = (window size / patch size)^2 patches, full-attention
    blocks over each temporal patch's s patches:
        2 p c e + 2 p B (4 e^2 + 3 e g)       patch embedding, projections, MLP
      + 4 p e (w (B - F) + s F)               attention (F full blocks)
      + 2 (p / m^2) (m^2 e)^2 + 2 (p / m^2) (m^2 e) d_out   the patch merger
    `video_patches` lists the videos the vision tower actually encodes (a video shared by a batch counts once).
    """
    text = getattr(config, "text_config", config)
    vision = config.vision_config
    d = text.hidden_size
    llm = _language_flops(text, tokens)
    e, g, blocks = vision.hidden_size, vision.intermediate_size, vision.depth
    c = vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2 if hasattr(vision, "in_channels") \
        else 3 * vision.temporal_patch_size * vision.patch_size ** 2
    full = len(getattr(vision, "fullatt_block_indexes", []) or [])
    w = (vision.window_size // vision.patch_size) ** 2
    m2 = vision.spatial_merge_size ** 2
    out_dim = getattr(vision, "out_hidden_size", d)
    vis = 0
    for p, s in video_patches:
        vis += 2 * p * c * e + 2 * p * blocks * (4 * e * e + 3 * e * g)
        vis += 4 * p * e * (w * (blocks - full) + s * full)
        vis += 2 * (p // m2) * (m2 * e) ** 2 + 2 * (p // m2) * (m2 * e) * out_dim
    return {"language": float(llm), "vision": float(vis), "total": float(llm + vis)}


def _language_flops(text, tokens: list[int], cached: list[int] | None = None) -> int:
    """The language-model part of both formulas (see `prefill_flops`), per sequence of n real tokens; where the
    sequence continues c cached tokens (a shared prefix), its attention also reads them: + 4 n c L d."""
    d, layers, f = text.hidden_size, text.num_hidden_layers, text.intermediate_size
    kv = text.num_key_value_heads * (d // text.num_attention_heads)
    per_token = 2 * layers * (2 * d * d + 2 * d * kv + 3 * d * f)
    cached = cached or [0] * len(tokens)
    return sum(per_token * n + 2 * n * (n + 2 * c) * layers * d + 2 * d * text.vocab_size
               for n, c in zip(tokens, cached))


def llava_prefill_flops(config, tokens: list[int], video_frames: list[int]) -> dict:
    """Multiply-adds x 2 of a LLaVA-Video prefill (transformers LLaVA-OneVision config), from the model config.

    Language model on each merged sequence of n real tokens (13,440 visual + the text for 64 frames): the
    `prefill_flops` language formula. Vision, per frame of p = (image size / patch size)^2 patches (729 at 384 px,
    patch 14; SigLIP has no class token and no windows), with e = vision width, g = its MLP width, B layers (26),
    c = 3 x patch^2, d = language width:
        2 p c e + 2 p B (4 e^2 + 2 e g)       patch embedding, q/k/v/out projections, MLP
      + 4 p^2 e B                           full attention over the frame (QK^T and PV)
      + 2 p (e d + d^2)                     the 2-layer projector
    (bilinear pooling and newline tokens are a few operations per element: not counted). `video_frames` lists the
    frame counts of the videos the tower actually encodes (a video shared by a batch counts once).
    """
    text, vision = config.text_config, config.vision_config
    d, e, g, blocks = text.hidden_size, vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers
    p = (vision.image_size // vision.patch_size) ** 2
    c = getattr(vision, "num_channels", 3) * vision.patch_size ** 2
    per_frame = 2 * p * c * e + 2 * p * blocks * (4 * e * e + 2 * e * g) + 4 * p * p * e * blocks \
        + 2 * p * (e * d + d * d)
    llm, vis = _language_flops(text, tokens), per_frame * sum(video_frames)
    return {"language": float(llm), "vision": float(vis), "total": float(llm + vis)}


def _patches(grid_thw) -> list[tuple[int, int]]:
    """(patches, patches per temporal step) of each video of a processor batch."""
    return [(int(t * h * w), int(h * w)) for t, h, w in grid_thw.tolist()]


# -- measurements --------------------------------------------------------------------------------------------------


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: str, size: int) -> float | None:
    """bf16 matrix-product rate of this card in TFLOP/s (random operands, median of 10 after 3 warm-ups); None off
    CUDA."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    times = []
    for i in range(13):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize(device)
        if i >= 3:
            times.append(start.elapsed_time(end) / 1000)
    del a, b
    return 2 * size ** 3 / statistics.median(times) / 1e12


def _memory(device, reset: bool = False) -> float | None:
    import torch

    if torch.device(device).type != "cuda":
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 30


def reference_loop(backbone, task, samples, cfg: BenchConfig) -> dict:
    """lmms-eval's way: per question decode, preprocess, generate at batch 1, in sequence."""
    from harness.video import open_video

    answers, decode, generate = {}, [], []
    t0 = time.perf_counter()
    for sample in samples:
        t = time.perf_counter()
        with open_video(sample.video, cfg.decode_backend) as reader:
            n = reader.meta.frame_count
            idx = np.linspace(0, n - 1, cfg.frames, dtype=int)
            frames = reader.get_frames(idx.tolist())
            timestamps = (idx / reader.meta.fps).tolist()
        decode.append(time.perf_counter() - t)
        t = time.perf_counter()
        answers[sample.id] = backbone.generate(frames, timestamps, task.prompt(sample, backbone.prompt_style))
        _sync(cfg.device)
        generate.append(time.perf_counter() - t)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "questions": len(samples), "answers": answers,
            "decode_s_mean": statistics.fmean(decode), "generate_s_mean": statistics.fmean(generate)}


def runner_loop(backbone, run_cfg, out: Path) -> dict:
    from harness.runner import Run
    from harness.store import read_jsonl

    run = Run(run_cfg, progress=False, backbone=backbone)
    t0 = time.perf_counter()
    [run_dir] = run.execute()
    seconds = time.perf_counter() - t0
    rows = read_jsonl(run_dir / "predictions.jsonl")
    errors = [r for r in rows if r["prediction"].get("parse_status") == "error"]
    return {"seconds": seconds, "questions": len(rows), "run_dir": str(run_dir),
            "pipeline": getattr(run, "pipeline_stats", None),
            "answers": {r["sample_id"]: r["prediction"].get("raw_text") for r in rows},
            "errors": [r["prediction"].get("error") for r in errors][:5], "n_errors": len(errors)}


def prefill(backbone, requests, cfg: BenchConfig) -> dict:
    """Time of the prefill of `requests` as one batch (median of repeats), and its FLOPs."""
    import torch

    if callable(getattr(backbone, "batch_embeddings", None)):
        return _prefill_embeddings(backbone, requests, cfg)
    if _accelerated(backbone):
        from backbones.qwen2_5_vl_fast import plan_shared_prefix

        plan = plan_shared_prefix(backbone, requests)
        if plan is not None:
            return _prefill_shared(backbone, plan, cfg)
    inputs = backbone.inputs(requests).to(backbone.device)
    mask = inputs["attention_mask"]
    tokens = [int(x) for x in mask.sum(1).tolist()]
    distinct = len({id(f) for f, _, _ in requests})  # the accelerated tower encodes each distinct array once
    grids = inputs["video_grid_thw"]
    patches = _patches(grids[:distinct]) if distinct < len(requests) and _accelerated(backbone) else _patches(grids)
    flops = prefill_flops(backbone.model.config, tokens, patches)
    times = []
    with torch.inference_mode():
        for _ in range(max(1, cfg.prefill_repeats) + 1):
            _sync(cfg.device)
            t = time.perf_counter()
            backbone.model(**inputs, logits_to_keep=1, use_cache=False)
            _sync(cfg.device)
            times.append(time.perf_counter() - t)
    seconds = statistics.median(times[1:])  # the first is a warm-up
    return {"batch": len(requests), "tokens": tokens, "vision_videos": len(patches), "seconds": seconds,
            "flops": flops, "tflops_per_s": flops["total"] / seconds / 1e12}


def _prefill_shared(backbone, plan, cfg: BenchConfig) -> dict:
    """`prefill` as the accelerated Qwen2.5-VL runs a batch sharing videos: each distinct video's prefix once
    (vision tower + language model, into a KV cache), then every question's own tokens over its video's cache,
    logits of the last token. FLOPs: the prefixes, plus each question's tokens with attention over its prefix."""
    import torch

    from backbones.qwen2_5_vl_fast import prefill_prefixes

    config = backbone.model.config
    text = getattr(config, "text_config", config)
    prefix = [int(x) for x in plan.prefill["attention_mask"].sum(1).tolist()]
    own = [int(x) for x in plan.mask[:, plan.prefix_width:].sum(1).tolist()]
    cached = [prefix[r] for r in plan.rows]  # each question's prefix
    vision = prefill_flops(config, [], _patches(plan.prefill["video_grid_thw"]))["vision"]
    language = _language_flops(text, prefix) + _language_flops(text, own, cached)
    flops = {"language": float(language), "vision": float(vision), "total": float(language + vision)}
    ids, mask = plan.ids.to(backbone.device), plan.mask.to(backbone.device)
    # the questions' own tokens sit at their place after the cached prefix (positions as generation gives them)
    positions = mask.cumsum(-1) - 1
    times = []
    with torch.inference_mode():
        for _ in range(max(1, cfg.prefill_repeats) + 1):
            _sync(cfg.device)
            t = time.perf_counter()
            cache = prefill_prefixes(backbone, plan)
            tail = positions[:, plan.prefix_width:] + backbone.model.model.rope_deltas
            backbone.model(input_ids=ids[:, plan.prefix_width:], attention_mask=mask, past_key_values=cache,
                           position_ids=tail.unsqueeze(0).expand(3, -1, -1), use_cache=True, logits_to_keep=1)
            _sync(cfg.device)
            times.append(time.perf_counter() - t)
    seconds = statistics.median(times[1:])  # the first is a warm-up
    return {"batch": len(plan.rows), "tokens": [c + n for c, n in zip(cached, own)],
            "shared_prefix_tokens": prefix, "vision_videos": len(prefix), "seconds": seconds, "flops": flops,
            "tflops_per_s": flops["total"] / seconds / 1e12}


def _prefill_embeddings(backbone, requests, cfg: BenchConfig) -> dict:
    """`prefill` for a backbone that feeds its language model merged embeddings (llava-video): the vision path once
    per distinct video, the merge, the language model with the last token's logits (in the backbone's
    `language_groups`, as `generate_batch` runs it); CPU preprocessing and the
    pixels' transfer stay outside the timing, as for Qwen2.5-VL."""
    import torch

    batch = backbone.batch_inputs(requests)
    batch["pixel_values"] = [p.to(backbone.device) for p in batch["pixel_values"]]
    tokens = [len(ids) for ids in batch["input_ids"]]
    frames = [len(p) for p in batch["pixel_values"]]
    flops = llava_prefill_flops(backbone.model.config, tokens, frames)
    times, shared = [], None
    with torch.inference_mode():
        for _ in range(max(1, cfg.prefill_repeats) + 1):
            _sync(cfg.device)
            t = time.perf_counter()
            feats = backbone.video_embeddings(batch)
            shared = backbone.shared_prefill(batch, feats) if callable(getattr(backbone, "shared_prefill", None)) \
                else None
            if shared is not None:  # as generate_batch: each video's prefix once, then the questions' own tokens
                width, mask = shared["prefix_width"], shared["mask"]
                backbone.model(inputs_embeds=shared["embeds"][:, width:], attention_mask=mask,
                               past_key_values=shared["cache"], position_ids=(mask.cumsum(-1) - 1)[:, width:],
                               use_cache=True, logits_to_keep=1)
            else:
                for rows in backbone.language_groups(batch):  # as generate_batch groups them
                    embeds, mask = backbone.batch_embeddings(batch, rows, feats)
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate numbers left-padded rows
                    backbone.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                   logits_to_keep=1, use_cache=False)
            _sync(cfg.device)
            times.append(time.perf_counter() - t)
    seconds = statistics.median(times[1:])  # the first is a warm-up
    result = {"batch": len(requests), "tokens": tokens, "vision_videos": len(frames), "seconds": seconds}
    if shared is not None:
        text = backbone.model.config.text_config
        language = _language_flops(text, shared["prefix_tokens"]) + _language_flops(
            text, shared["own_tokens"], shared["cached_tokens"])
        flops = {**flops, "language": float(language), "total": float(language + flops["vision"])}
        result["shared_prefix_tokens"] = shared["prefix_tokens"]
    return {**result, "flops": flops, "tflops_per_s": flops["total"] / seconds / 1e12}


def _accelerated(backbone) -> bool:
    return bool(getattr(backbone, "_accelerated", False))


def attach_accelerate(backbone) -> None:
    """The fast runner's hooks for a backbone that offers them through a companion module."""
    try:
        from backbones.qwen2_5_vl_fast import attach
    except ImportError:
        return
    attach(backbone)


def device_name(device: str) -> str:
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"cpu-{platform.machine()}"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "device"


def result_stem(device: str, backbone: str) -> str:
    """`<device-slug>-<backbone-slug>`: one file pair per card and model (nvidia-h100-80gb-hbm3-llava-video)."""
    return f"{slug(device)}-{slug(backbone)}"


def run_bench(cfg: BenchConfig, log=print) -> dict:
    from harness.config import RunConfig
    from harness.registry import BACKBONES, TASKS

    t0 = time.perf_counter()
    folder, paths = video_set(cfg)
    generated = time.perf_counter() - t0
    mbit = sum(p.stat().st_size for p in paths) * 8 / (len(paths) * cfg.minutes * 60) / 1e6
    log(f"bench: {len(paths)} videos in {folder} ({generated:.1f} s to write or find, {mbit:.1f} Mbit/s)")
    annotations = write_annotations(folder, paths, cfg.questions)
    task_args = {"annotations": str(annotations), "video_root": str(folder)}
    task = TASKS.create("videomme", **task_args)
    samples = task.load_samples()
    backbone = BACKBONES.create(cfg.backbone, device=cfg.device, dtype=cfg.dtype, **cfg.backbone_args)
    attach_accelerate(backbone)
    rate = matmul_rate(cfg.device, cfg.matmul_size)
    if rate:
        log(f"bench: bf16 matmul {cfg.matmul_size}^3: {rate:.0f} TFLOP/s")

    # warm-up on one question, both configurations (kernels, allocator), outside every timing
    with open_first(samples[0], cfg) as (frames, ts):
        prompt = task.prompt(samples[0], backbone.prompt_style)
        backbone.generate(frames, ts, prompt)
        requests = [(frames, ts, task.prompt(s, backbone.prompt_style)) for s in samples[:cfg.questions]]
        pre_ref = prefill(backbone, requests[:1], cfg)
        off = backbone.accelerate() if callable(getattr(backbone, "accelerate", None)) else None
        try:
            backbone.generate_batch(requests[:cfg.batch_size])
            pre_fast = prefill(backbone, requests[:max(1, cfg.batch_size)], cfg)
        finally:
            if off:
                off()

    _memory(cfg.device, reset=True)
    ref = reference_loop(backbone, task, samples, cfg)
    ref["peak_memory_gib"] = _memory(cfg.device)
    log(f"bench: reference {ref['questions']} questions in {ref['seconds']:.1f} s")

    _memory(cfg.device, reset=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = RunConfig(task="videomme", task_args=task_args, backbone=cfg.backbone,
                            backbone_args=cfg.backbone_args, samplers=["uniform"], frames=cfg.frames, grid="all",
                            out=tmp, cache_dir=str(Path(tmp) / "features"), decode_backend=cfg.decode_backend,
                            device=cfg.device, dtype=cfg.dtype, workers=cfg.workers, batch_size=cfg.batch_size)
        fast = runner_loop(backbone, run_cfg, Path(tmp))
    fast["peak_memory_gib"] = _memory(cfg.device)
    log(f"bench: harness runner {fast['questions']} questions in {fast['seconds']:.1f} s")

    same = sum(ref["answers"].get(k) == v for k, v in fast["answers"].items())
    report = {
        "device": device_name(cfg.device), "config": asdict(cfg),
        "versions": _versions(), "videos_dir": str(folder), "video_set_seconds": generated, "video_mbit_per_s": mbit,
        "matmul_bf16_tflops": rate,
        "reference": {k: v for k, v in ref.items() if k != "answers"},
        "harness": {k: v for k, v in fast.items() if k != "answers"},
        "questions_per_s": {"reference": ref["questions"] / ref["seconds"],
                            "harness": fast["questions"] / fast["seconds"]},
        "speedup": (fast["questions"] / fast["seconds"]) / (ref["questions"] / ref["seconds"]),
        "answers": {"compared": len(fast["answers"]), "identical": same,
                    "differing": sorted(k for k, v in fast["answers"].items() if ref["answers"].get(k) != v)},
        "prefill": {"reference": pre_ref, "harness": pre_fast},
    }
    for key in ("reference", "harness"):
        p = report["prefill"][key]
        p["fraction_of_matmul_rate"] = p["tflops_per_s"] / rate if rate else None
    write_report(report, Path(cfg.out), cfg.label or result_stem(report["device"], cfg.backbone))
    return report


class open_first:
    """The first sample's uniform frames, decoded once for the warm-up and the prefill measurement."""

    def __init__(self, sample, cfg: BenchConfig):
        self.sample, self.cfg = sample, cfg

    def __enter__(self):
        from harness.video import open_video

        with open_video(self.sample.video, self.cfg.decode_backend) as reader:
            idx = np.linspace(0, reader.meta.frame_count - 1, self.cfg.frames, dtype=int)
            return reader.get_frames(idx.tolist()), (idx / reader.meta.fps).tolist()

    def __exit__(self, *exc):
        return False


def _versions() -> dict:
    from harness.config import package_versions

    return package_versions()


def render_markdown(r: dict) -> str:
    c = r["config"]
    ref, fast = r["reference"], r["harness"]
    pr, pf = r["prefill"]["reference"], r["prefill"]["harness"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.0f}%"

    def mem(x):
        return "n/a" if x is None else f"{x:.1f}"
    formula = "llava_prefill_flops" if c["backbone"] == "llava-video" else "prefill_flops"
    rate = "n/a" if r["matmul_bf16_tflops"] is None else f"{r['matmul_bf16_tflops']:.0f} TFLOP/s"
    lines = [
        f"# harness bench: {r['device']}",
        "",
        f"{c['videos']} videos x {c['minutes']:g} min, {c['width']}x{c['height']} at {c['fps']:g} fps (GOP {c['gop']}),"
        f" {c['questions']} questions per video on the same {c['frames']} uniform frames; backbone {c['backbone']} "
        f"{json.dumps(c['backbone_args'])}, {c['dtype']}, decode {c['decode_backend']}; harness: {c['workers']} "
        f"workers, batch {c['batch_size']}. bf16 matmul rate measured here: {rate}.",
        "",
        "| loop | questions | seconds | questions/s | s/question | prefill s (batch) | prefill TFLOP/s | "
        "of bf16 rate | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| reference (lmms-eval way) | {ref['questions']} | {ref['seconds']:.1f} | "
        f"{r['questions_per_s']['reference']:.3f} | {ref['seconds'] / ref['questions']:.2f} | "
        f"{pr['seconds']:.3f} ({pr['batch']}) | {pr['tflops_per_s']:.0f} | {pct(pr['fraction_of_matmul_rate'])} | "
        f"{mem(ref['peak_memory_gib'])} |",
        f"| harness runner | {fast['questions']} | {fast['seconds']:.1f} | {r['questions_per_s']['harness']:.3f} | "
        f"{fast['seconds'] / max(fast['questions'], 1):.2f} | {pf['seconds']:.3f} ({pf['batch']}) | "
        f"{pf['tflops_per_s']:.0f} | {pct(pf['fraction_of_matmul_rate'])} | {mem(fast['peak_memory_gib'])} |",
        "",
        f"Speed-up, end to end: **{r['speedup']:.2f}x**. Identical answers: {r['answers']['identical']} of "
        f"{r['answers']['compared']}. Reference per question: decode {ref['decode_s_mean']:.2f} s, preprocess + "
        f"generate {ref['generate_s_mean']:.2f} s. Harness errors: {fast['n_errors']}.",
        "",
        f"Prefill FLOPs (formula in `harness.bench.{formula}`): reference {pr['flops']['total'] / 1e12:.0f} TFLOP "
        f"per question; harness batch {pf['flops']['total'] / 1e12:.0f} TFLOP for {pf['batch']} questions "
        f"(vision tower run {pf['vision_videos']}x). Prefill seconds per question: reference "
        f"{pr['seconds'] / pr['batch']:.3f}, harness {pf['seconds'] / pf['batch']:.3f}.",
        "",
    ]
    stats = fast.get("pipeline")
    if stats:
        lines += [f"Harness runner, main process: {stats['wait']:.1f} s planning and waiting for workers, "
                  f"{stats['generate']:.1f} s in {stats['batches']} backbone batches; decode workers (summed over "
                  f"processes): {stats['decode']:.1f} s; preprocessing thread: {stats['prepare']:.1f} s.", ""]
    return "\n".join(lines)


def write_report(report: dict, out: Path, stem: str) -> tuple[Path, Path]:
    from harness.fileio import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write(js, json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write(md, render_markdown(report))
    return js, md
