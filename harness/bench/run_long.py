"""`harness bench --job long` (`run_long`): the long-video set, the models, both ways (`harness.bench.long`), the
answers compared and the report (`<out>/<stem>-long.json` and `.md`)."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from harness.bench.config import BenchConfig
from harness.bench.device import device_name, peak_memory, sync
from harness.bench.report import result_stem
from harness.bench.videos import video_codec, video_set, write_annotations
from harness.errors import HarnessError


def run_long(cfg: BenchConfig, log=print) -> dict:
    from harness.bench.long import Pipeline, compare, harness_decoders, harness_way, reference
    from harness.config import package_versions
    from harness.registry import BACKBONES, TASKS
    from harness.video.reader import check_backend

    check_backend(cfg.decode_backend)
    harness_decoders(cfg)  # a bad --decoders fails here, not after the reference ran
    if cfg.reference_questions < 0 or cfg.decode_instances < 1:
        raise HarnessError("--reference-questions must be >= 0 and --decode-instances >= 1")
    t0 = time.perf_counter()
    codec = video_codec(cfg.video_codec)
    folder, paths = video_set(cfg, codec)
    written = time.perf_counter() - t0
    log(f"bench long: {len(paths)} videos ({codec}) in {folder} ({written:.1f} s to write or find)")
    annotations = write_annotations(folder, paths, cfg.questions)
    task = TASKS.create("videomme", annotations=str(annotations), video_root=str(folder))
    samples = task.load_samples()
    backbone = BACKBONES.create(cfg.backbone, device=cfg.device, dtype=cfg.dtype, **cfg.backbone_args)
    t = time.perf_counter()
    pipe = Pipeline(cfg, backbone, task)
    log(f"bench long: encoder {cfg.encoder} loaded in {time.perf_counter() - t:.1f} s; sampler "
        f"{cfg.long_sampler}; decode {cfg.decode_backend}")

    warm = _warm_up(pipe, samples[0])
    ref_samples = samples[:cfg.reference_questions] if cfg.reference_questions else samples
    peak_memory(cfg.device, reset=True)
    ref = reference(pipe, ref_samples)
    ref["peak_memory_gib"] = peak_memory(cfg.device)
    log(f"bench long: reference (TSPO's way) {ref['questions']} questions in {ref['seconds']:.1f} s")
    peak_memory(cfg.device, reset=True)
    fast = harness_way(pipe, samples)
    fast["peak_memory_gib"] = peak_memory(cfg.device)
    log(f"bench long: harness way {fast['questions']} questions in {fast['seconds']:.1f} s")

    per_q = {"reference": ref["seconds"] / ref["questions"], "harness": fast["seconds"] / fast["questions"]}
    report = {
        "job": "long", "device": device_name(cfg.device), "config": asdict(cfg), "versions": package_versions(),
        "videos_dir": str(folder), "video_codec": codec, "video_set_seconds": written, "warm_up_seconds": warm,
        "reference": {k: v for k, v in ref.items() if k != "answers"},
        "harness": {k: v for k, v in fast.items() if k != "answers"},
        "seconds_per_question": per_q, "speedup": per_q["reference"] / per_q["harness"],
        "answers": compare(ref, fast),
    }
    from harness.bench.report import write_bench_results

    stem = cfg.label or result_stem(report["device"], cfg.backbone) + "-long"
    write_bench_results(report, Path(cfg.out), stem)
    return report


def _warm_up(pipe, sample) -> float:
    """One question through both ways' kernels (decode, CLIP, selection, generate and generate_batch), untimed."""
    import numpy as np

    from harness.bench.long import _decode, image_features
    from harness.video.reader import open_video

    t = time.perf_counter()
    with open_video(sample.video, pipe.cfg.decode_backend) as reader:
        frames = _decode(reader, [0, reader.meta.frame_count - 1], pipe.cfg.device)
        host = reader.get_frames([0, reader.meta.frame_count - 1])
    feats = image_features(pipe.encoder, frames)
    pipe.select(np.concatenate([feats] * 2), pipe.text_feature(sample))
    request = (host, [0.0, 1.0], pipe.prompt(sample))
    pipe.backbone.generate(*request)
    undo = pipe.backbone.accelerate()
    try:
        pipe.backbone.generate_batch([request, request])
    finally:
        undo()
    sync(pipe.cfg.device)
    return time.perf_counter() - t
