"""The two ways `harness bench` answers the same questions with one loaded backbone.

* Reference loop: an lmms-eval-style loop written here, not lmms-eval's own code (lmms-eval is never imported):
  per question, open the video, decode K frames (`np.linspace(0, N-1, K, dtype=int)` over the N native frames:
  the runner's `uniform` over `--grid all`), build the task's lmms-eval prompt, preprocess and `generate` with the
  harness backbone at batch 1, one question after another.
  Checked against lmms-eval 0.7.3's own `qwen2_5_vl` path (lmms_eval/models/simple/qwen2_5_vl.py with
  qwen-vl-utils 0.0.14) on the same video, K and context by tests/integrations/test_bench_reference_vs_lmms_eval.py
  (side environment, scripts/lmms_eval_plugin.sh):
  - the chat text reaching the processor is the same (lmms-eval's explicit "You are a helpful assistant." system
    turn, then one user turn: the video, then the context; the adapter's template adds the same system turn);
  - the frames differ by design: lmms-eval's path first lets qwen-vl-utils decode M = min(max(2 * seconds, 4),
    min(768, N)) frames (floored to even) at `round(linspace(0, N-1, M))`, then keeps `linspace(0, M-1, K,
    dtype=int)` of those (duplicates dropped, the last appended): a two-stage rule that picks other frames than
    the single linspace (e.g. N=600 at 30 fps, K=8: frames 0, 77, 169, ... against 0, 85, 171, ...), gives fewer
    than K frames when M < K (N=240 at 24 fps, K=32: 20 frames), and decodes M frames per question, not K. The two
    agree only where qwen-vl-utils keeps every frame (a video of at most 2 fps and an even N up to 768). The
    reference keeps the runner's frames so both loops answer the same questions on the same frames;
  - pixels per frame: the bench's qwen2.5-vl default is `pixels=tspo` (at most 300*28*28). `pixels=lmms-eval`
    computes qwen-vl-utils' cap for the K frames it gets, but qwen-vl-utils computes it for the M frames it decodes
    (before lmms-eval keeps K), so it matches lmms-eval only where M = K: for the bench's 5-minute 720p 30 fps
    videos at K=64 (M=600), lmms-eval's frames are 392x728 and the adapter's 560x1008 (not fixed: the adapter
    sees the K selected frames, not the video's length).
  So the reference is lmms-eval's loop shape (sequential, batch 1, decode per question, same chat layout), not its
  frames, decode volume or default pixels: the bench's speed-ups compare two harness code paths on one backbone.
* Runner loop: the harness's `Run` with the same task, backbone and frames (`uniform`, grid `all`, K), decode
  worker processes and batches of the questions that share frames, the backbone's `accelerate()` speed-ups on.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from harness.bench.config import BenchConfig
from harness.bench.device import sync


def uniform_frames(sample, cfg: BenchConfig, stock: bool = False):
    """(frames, timestamps) of a sample's K uniform frames, decoded with lmms-eval's linspace rule: by the harness
    reader, or with `stock` the way lmms-eval's own loaders decode (`stock_frames`)."""
    from harness.video.reader import open_video

    with open_video(sample.video, cfg.decode_backend) as reader:
        idx = np.linspace(0, reader.meta.frame_count - 1, cfg.frames, dtype=int)
        if stock and cfg.decode_backend in STOCK_DECODERS:
            reader.close()  # only the frame count and rate were wanted
            return stock_frames(sample.video, idx, cfg.decode_backend), (idx / reader.meta.fps).tolist()
        return reader.get_frames(idx.tolist()), (idx / reader.meta.fps).tolist()


# How lmms-eval 0.7.3 decodes K frames, per decoder (the reference loop's decoding with --reference-decode stock):
# decord: qwen-vl-utils' `_read_video_decord` (lmms-eval's qwen2_5_vl path) and lmms-eval's `load_video_decord`
#   open a `decord.VideoReader` and call `get_batch(indices)`;
# pyav: lmms-eval's `read_video_pyav` -> `record_video_length_stream` decodes every frame from the start up to the
#   last wanted one (`container.decode(video=0)`) and keeps the wanted ones (lmms_eval/models/model_utils/
#   load_video.py). The same frames as the harness reader (tests/bench/test_stock_decode.py), other work.
STOCK_DECODERS = ("decord", "pyav")


def stock_frames(path: str, idx: np.ndarray, backend: str) -> np.ndarray:
    """(K, H, W, 3) uint8 frames at ascending indices, decoded as lmms-eval's loaders decode them."""
    if backend == "decord":
        import decord

        vr = decord.VideoReader(path, ctx=decord.cpu(0))
        frames = vr.get_batch(idx.tolist())
        return frames.asnumpy() if hasattr(frames, "asnumpy") else np.asarray(frames)
    import av

    wanted, last, kept = set(idx.tolist()), int(idx[-1]), {}
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i > last:
                break
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24")
    return np.stack([kept[i] for i in idx.tolist()])


def reference_loop(backbone, task, samples, cfg: BenchConfig, how: str | None = None) -> dict:
    """The lmms-eval-style loop written here: per question decode, preprocess, generate at batch 1, in sequence.
    `how` it decodes: stock or harness (default: the config's reference_decode)."""
    how = how or cfg.reference_decode
    answers, decode, generate = {}, [], []
    t0 = time.perf_counter()
    for sample in samples:
        t = time.perf_counter()
        frames, timestamps = uniform_frames(sample, cfg, stock=how == "stock")
        decode.append(time.perf_counter() - t)
        t = time.perf_counter()
        answers[sample.id] = backbone.generate(frames, timestamps, task.prompt(sample, backbone.prompt_style))
        sync(cfg.device)
        generate.append(time.perf_counter() - t)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "questions": len(samples), "answers": answers, "decode": how,
            "decode_s_mean": statistics.fmean(decode), "generate_s_mean": statistics.fmean(generate)}


def runner_loop(backbone, run_cfg) -> dict:
    """The harness runner on `run_cfg` with the already loaded `backbone`: seconds, answers, errors and the
    pipeline's time split (`Run.pipeline_stats`)."""
    from harness.run.runner import Run
    from harness.store.runs import read_jsonl

    run = Run(run_cfg, progress=False, backbone=backbone)
    t0 = time.perf_counter()
    [run_dir] = run.execute()
    seconds = time.perf_counter() - t0
    rows = read_jsonl(Path(run_dir) / "predictions.jsonl")
    errors = [r for r in rows if r["prediction"].get("parse_status") == "error"]
    return {"seconds": seconds, "questions": len(rows), "run_dir": str(run_dir), "pipeline": run.pipeline_stats,
            "decode_setup": dict(run.decode_setup),
            "answers": {r["sample_id"]: r["prediction"].get("raw_text") for r in rows},
            "errors": [r["prediction"].get("error") for r in errors][:5], "n_errors": len(errors)}
