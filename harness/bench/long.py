"""`harness bench --job long`: the full sampler pipeline on long videos, TSPO's way against the harness's way.

Per video: a 1-fps candidate grid, CLIP image features of every grid frame (`--encoder`, default
`open_clip:ViT-L-14:random`: the ViT-L/14 architecture at real size, seeded random weights, offline), a text feature
per question, a selection of K frames (`--long-sampler`: `tspo` with the zero agent, or `aks` over the CLIP
scores), then the backbone answers on those K frames.

* Reference (TSPO's own code's way, written here): per question, open the video, decode the grid, encode it,
  select, open the video again and decode the K frames, answer at batch 1. Nothing is shared between questions.
* Harness: per video, decode the grid once with several decoders at once (`--decoders`, e.g. `nvdec:4,pyav:6`:
  NVDEC instances as threads, CPU decoders as worker processes, taking chunks of the grids from one queue; default
  `--decode-instances` readers of `--decode-backend`; harness.video.multidecode), the frames kept in one tensor on
  the GPU, `--decode-ahead` videos at once while the GPU works on the video before; encode it once, encode the
  questions, select for every question, take each question's K frames from the kept grid (no second decode), let a
  thread run the backbone's CPU preprocessing of them (`frame_preparer`) while the GPU answers the previous video
  (or, when the next grid is not decoded yet, answer the previous video while waiting for it), and answer the
  video's questions as one batch with the backbone's `accelerate()` speed-ups on.

Both ways encode the grid in the same chunks of `CHUNK` frames with the same on-device preprocessing (bicubic
resize of the short side, centre crop, the encoder's mean/std: `pixels`), so features, selections and, where the
backbone is batch-invariant, answers are identical; they are compared question by question. The harness way's
decode (in its background thread: seconds the decoders worked) and CLIP (device synced) are timed apart, so frames
per second are reported for each, with the seconds the main thread waited for a decoded grid.
"""
from __future__ import annotations

import time

import numpy as np

from harness.bench.config import BenchConfig
from harness.bench.device import sync
from harness.errors import HarnessError

CHUNK = 64  # grid frames per CLIP batch, in both ways


def pixels(frames, encoder):
    """(n, H, W, 3) uint8 frames (a torch tensor on the encoder's device) -> the encoder's normalised input batch:
    short side resized to the input size (bicubic, antialiased), centre crop, mean/std of the encoder."""
    import torch
    import torch.nn.functional as F

    size, mean, std = _input_spec(encoder)
    x = frames.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top:top + size, left:left + size].clamp_(0, 255) / 255
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def _input_spec(encoder) -> tuple[int, tuple, tuple]:
    if hasattr(encoder.model, "encode_image"):  # open_clip
        visual = encoder.model.visual
        size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
        return int(size), tuple(visual.image_mean), tuple(visual.image_std)
    proc = encoder.processor.image_processor  # transformers CLIP
    crop = proc.crop_size  # a dict or transformers' SizeDict
    size = crop["height"] if hasattr(crop, "__getitem__") and not isinstance(crop, int) else crop
    return int(size), tuple(proc.image_mean), tuple(proc.image_std)


def image_features(encoder, frames) -> np.ndarray:
    """(n, d) float32 projected features of a device tensor of uint8 frames (one CLIP batch)."""
    import torch

    dtype = next(encoder.model.parameters()).dtype
    with torch.inference_mode():
        x = pixels(frames, encoder).to(dtype)
        feats = encoder.model.encode_image(x) if hasattr(encoder.model, "encode_image") else \
            encoder.model.get_image_features(pixel_values=x)
        return getattr(feats, "pooler_output", feats).float().cpu().numpy()


def _to_device(frames, device):
    import torch

    return frames if isinstance(frames, torch.Tensor) else torch.from_numpy(frames).to(device)


def _decode(reader, indices, device):
    """Frames of ascending indices: on the GPU from an nvdec reader, else decoded on the host and moved there."""
    if hasattr(reader, "frames_on_device"):
        return reader.frames_on_device(indices)
    return _to_device(reader.get_frames(indices), device)


class Pipeline:
    """The loaded models and the sampler, shared by both ways."""

    def __init__(self, cfg: BenchConfig, backbone, task):
        from harness.features.encoders import load_encoder
        from harness.registry import SAMPLERS

        self.cfg, self.backbone, self.task = cfg, backbone, task
        self.encoder = load_encoder(cfg.encoder, cfg.device, cfg.dtype)
        if not hasattr(self.encoder, "model") or self.encoder.kind != "features":
            raise HarnessError(f"--encoder {cfg.encoder!r} is not a CLIP-type encoder (open_clip:... or a CLIP model)")
        if cfg.long_sampler == "tspo":
            self.sampler = SAMPLERS.create("tspo", agent="zero", encoder=cfg.encoder, device=cfg.device)
        elif cfg.long_sampler == "aks":  # the preset's depth (5) needs K >= 32: toy sizes take log2(K)
            depth = min(5, max(0, int(cfg.frames).bit_length() - 1))
            self.sampler = SAMPLERS.create("aks", encoder=cfg.encoder, depth=depth if depth < 5 else None)
        else:
            raise HarnessError(f"--long-sampler must be tspo or aks, got {cfg.long_sampler!r}")

    def text_feature(self, sample) -> np.ndarray:
        from harness.features.inputs import query_text

        return self.encoder.text_features([query_text(self.task, sample, self.sampler.query)])[0]

    def select(self, feats: np.ndarray, text: np.ndarray) -> np.ndarray:
        from harness.features.store import cosine_scores

        inputs = {"image_features": feats, "text_feature": text, "scores": cosine_scores(feats, text)}
        k = min(self.cfg.frames, len(feats))
        return np.sort(np.asarray(self.sampler.positions(len(feats), k, inputs), dtype=np.int64))

    def prompt(self, sample) -> str:
        return self.task.prompt(sample, self.backbone.prompt_style)


def _grid(reader):
    from harness.video.grid import make_grid

    return make_grid(reader.meta.frame_count, reader.meta.fps, "1fps")


def reference(pipe: Pipeline, samples) -> dict:
    """TSPO's way: every question decodes its grid, encodes it, selects, decodes its K frames and answers alone."""
    from harness.video.reader import open_video

    cfg, timing = pipe.cfg, {"decode_grid": 0.0, "clip": 0.0, "select": 0.0, "decode_k": 0.0, "generate": 0.0}
    answers, grid_frames = {}, 0
    t0 = time.perf_counter()
    for sample in samples:
        t = time.perf_counter()
        with open_video(sample.video, cfg.decode_backend) as reader:
            timing["decode_grid"] += time.perf_counter() - t  # opening (PyAV: the demux index) counts as decoding
            grid = _grid(reader)
            feats = []
            for start in range(0, len(grid.indices), CHUNK):
                t = time.perf_counter()
                frames = _decode(reader, grid.indices[start:start + CHUNK], cfg.device)
                sync(cfg.device)
                timing["decode_grid"] += time.perf_counter() - t
                t = time.perf_counter()
                feats.append(image_features(pipe.encoder, frames))
                timing["clip"] += time.perf_counter() - t
            grid_frames += len(grid.indices)
        t = time.perf_counter()
        positions = pipe.select(np.concatenate(feats), pipe.text_feature(sample))
        timing["select"] += time.perf_counter() - t
        t = time.perf_counter()
        idx = np.asarray(grid.indices)[positions]
        with open_video(sample.video, cfg.decode_backend) as reader:
            frames = reader.get_frames(idx.tolist())
        timing["decode_k"] += time.perf_counter() - t
        t = time.perf_counter()
        answers[sample.id] = pipe.backbone.generate(frames, (idx / grid.fps).tolist(), pipe.prompt(sample))
        sync(cfg.device)
        timing["generate"] += time.perf_counter() - t
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "questions": len(samples), "grid_frames_decoded": grid_frames, "answers": answers,
            "time_s": timing}


def harness_way(pipe: Pipeline, samples) -> dict:
    """One decode and one encode per video; every question's K frames from the kept grid; one batch per video.
    The decoders work on the next `decode_ahead` videos' grids while the GPU encodes and answers this one, the
    backbone's CPU preprocessing of this video's frames (its `frame_preparer`, in a thread) runs while the GPU
    answers the video before, and the video before is answered while the next grid is still decoding."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.video.multidecode import Decoders

    cfg, backbone = pipe.cfg, pipe.backbone
    timing = {"decode_wait": 0.0, "clip": 0.0, "text_select": 0.0, "gather": 0.0, "prepare_wait": 0.0,
              "generate": 0.0}
    by_video: dict[str, list] = {}
    for s in samples:
        by_video.setdefault(s.video, []).append(s)
    videos, decoders = list(by_video), harness_decoders(cfg)
    grids, preparers, answers, grid_frames, staging = {}, {}, {}, 0, {}

    def grid_items():  # drawn by the decoders when they queue a video
        for video in videos:
            grids[video] = _video_grid(video, decoders)
            yield video, grids[video].indices

    def answer(questions, prepared) -> None:
        t = time.perf_counter()
        requests = prepared.result()
        timing["prepare_wait"] += time.perf_counter() - t
        t = time.perf_counter()
        requests = [(backbone.prepared_frames(f) if ready else f, ts, p) for ready, f, ts, p in requests]
        for q, text in zip(questions, backbone.generate_batch(requests)):
            answers[q.id] = text
        sync(cfg.device)
        timing["generate"] += time.perf_counter() - t

    pending = []  # the previous video's questions and their preprocessing (a future), not answered yet

    def answer_pending() -> None:  # also while the next grid is decoding (the stream's idle work)
        if pending:
            answer(*pending.pop())

    undo = backbone.accelerate()
    t0 = time.perf_counter()
    try:
        with Decoders(decoders, gpu_processes=cfg.nvdec_processes) as decode, \
                ThreadPoolExecutor(1, thread_name_prefix="prepare") as prep:
            stream = decode.stream(grid_items(), cfg.device, ahead=cfg.decode_ahead, idle=answer_pending)
            for video in videos:
                t, busy = time.perf_counter(), timing["generate"] + timing["prepare_wait"]
                kept = next(stream)
                timing["decode_wait"] += time.perf_counter() - t - (timing["generate"] + timing["prepare_wait"] - busy)
                grid, questions = grids.pop(video), by_video[video]
                grid_frames += len(grid.indices)
                t = time.perf_counter()
                feats = np.concatenate([image_features(pipe.encoder, kept[s:s + CHUNK])
                                        for s in range(0, len(grid.indices), CHUNK)])
                timing["clip"] += time.perf_counter() - t
                t = time.perf_counter()
                chosen = [pipe.select(feats, pipe.text_feature(q)) for q in questions]
                timing["text_select"] += time.perf_counter() - t
                t = time.perf_counter()
                host = gather(kept, chosen, staging)
                del kept
                requests = [(frames, (np.asarray(grid.indices)[positions] / grid.fps).tolist(), pipe.prompt(q))
                            for q, positions, frames in zip(questions, chosen, host)]
                counts = {len(f) for f, _, _ in requests} - set(preparers)
                for n in counts:  # made in this thread (it runs the backbone's processor once per frame count)
                    preparers[n] = backbone.frame_preparer([n])
                timing["gather"] += time.perf_counter() - t
                prepared = prep.submit(_prepare, requests, preparers)
                answer_pending()  # the previous video, unless answered while this grid decoded; beside this prep
                pending.append((questions, prepared))
            answer_pending()
    finally:
        undo()
    seconds = time.perf_counter() - t0
    decode_s = decode.stats["seconds"]
    return {"seconds": seconds, "questions": len(samples), "grid_frames_decoded": grid_frames, "answers": answers,
            "time_s": {**timing, "decode_grid": decode_s}, "decoders": decoders, "decode_ahead": cfg.decode_ahead,
            "nvdec_processes": cfg.nvdec_processes,
            "grid_frames_by_backend": decode.stats["frames_by_backend"],
            "decode_fps": grid_frames / max(decode_s, 1e-9), "clip_fps": grid_frames / max(timing["clip"], 1e-9),
            "backbone_share_of_wall": timing["generate"] / seconds}


def _prepare(requests, preparers) -> list:
    """(prepared?, frames or the preparer's result, timestamps, prompt) per request: the backbone's CPU
    preprocessing where it has a `frame_preparer` (None: its generate takes the frames as they are)."""
    out = []
    for frames, timestamps, prompt in requests:
        preparer = preparers.get(len(frames))
        out.append((preparer is not None, frames if preparer is None else preparer(frames), timestamps, prompt))
    return out


def harness_decoders(cfg: BenchConfig) -> list[str]:
    """The harness way's decoders: `--decoders` (e.g. nvdec:4,pyav:6), else --decode-instances of the backend."""
    from harness.video.multidecode import parse_decoders
    from harness.video.reader import check_backend

    decoders = parse_decoders(cfg.decoders or f"{cfg.decode_backend}:{cfg.decode_instances}")
    for name in sorted(set(decoders)):
        check_backend(name)
    return decoders


def gather(kept, chosen: list, staging: dict) -> list:
    """Each question's frames of the kept grid (grid positions `chosen[q]`) as host arrays: the union of the
    questions' frames copied off the device once, through a page-locked buffer kept in `staging` across videos
    (a pageable copy ran at ~1 GB/s on the H100: 2.4 s of the main thread for 16 questions of 64 720p frames)."""
    import torch

    union = np.unique(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)
    picked = kept[torch.as_tensor(union, device=kept.device)]
    if kept.device.type != "cuda":
        host = picked.numpy()
    else:
        buf = staging.get("buffer")
        if buf is None or buf.numel() < picked.numel():
            buf = staging["buffer"] = torch.empty(picked.numel(), dtype=torch.uint8, pin_memory=True)
        out = buf[:picked.numel()].view(picked.shape)
        out.copy_(picked)
        host = out.numpy()
    # each question's own array (a copy): the buffer is written again by the next video while these are prepared
    return [host[np.searchsorted(union, positions)] for positions in chosen]


def _video_grid(video: str, decoders: list[str]):
    """The 1-fps grid of a video (its metadata read with the CPU reader nvdec's frames match, or the backend's)."""
    from harness.video.reader import open_video

    with open_video(video, "pyav" if "nvdec" in decoders else decoders[0]) as reader:  # metadata only
        return _grid(reader)


def compare(ref: dict, fast: dict) -> dict:
    same = [k for k, v in ref["answers"].items() if fast["answers"].get(k) == v]
    return {"compared": len(ref["answers"]), "identical": len(same),
            "differing": sorted(k for k in ref["answers"] if k not in same)}
