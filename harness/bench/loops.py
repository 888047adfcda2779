"""The two ways `harness bench` answers the same questions with one loaded backbone.

* Reference loop: an lmms-eval-style loop written here, not lmms-eval's own code (lmms-eval is never imported):
  per question, open the video, decode K frames (`np.linspace(0, N-1, K, dtype=int)`, the rule of lmms-eval's
  video models, which is `uniform` over `--grid all`), build the task's lmms-eval prompt, preprocess and `generate`
  with the harness backbone at batch 1, one question after another. It imitates the shape of lmms-eval's loop
  (sequential, batch 1, decode per question); it is not checked against lmms-eval's model files (qwen-vl-utils'
  frame resampling and pixel limits, chat template) on the same video and K.
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


def uniform_frames(sample, cfg: BenchConfig):
    """(frames, timestamps) of a sample's K uniform frames, decoded with lmms-eval's linspace rule."""
    from harness.video.reader import open_video

    with open_video(sample.video, cfg.decode_backend) as reader:
        idx = np.linspace(0, reader.meta.frame_count - 1, cfg.frames, dtype=int)
        return reader.get_frames(idx.tolist()), (idx / reader.meta.fps).tolist()


def reference_loop(backbone, task, samples, cfg: BenchConfig) -> dict:
    """The lmms-eval-style loop written here: per question decode, preprocess, generate at batch 1, in sequence."""
    answers, decode, generate = {}, [], []
    t0 = time.perf_counter()
    for sample in samples:
        t = time.perf_counter()
        frames, timestamps = uniform_frames(sample, cfg)
        decode.append(time.perf_counter() - t)
        t = time.perf_counter()
        answers[sample.id] = backbone.generate(frames, timestamps, task.prompt(sample, backbone.prompt_style))
        sync(cfg.device)
        generate.append(time.perf_counter() - t)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "questions": len(samples), "answers": answers,
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
            "answers": {r["sample_id"]: r["prediction"].get("raw_text") for r in rows},
            "errors": [r["prediction"].get("error") for r in errors][:5], "n_errors": len(errors)}
