"""`harness bench`: questions per second end to end, an lmms-eval-style reference loop written here (not lmms-eval's
code: per question, decode K uniform frames, prompt, generate at batch 1) against the harness runner, on one model.

1. A long-video set is written (N videos of M minutes at HxW, F fps, fixed GOP) and Video-MME style questions on
   it (`harness.bench.videos`), cached under a folder named by those settings.
2. Both loops (`harness.bench.loops`) answer every question with one loaded backbone: the reference loop (per
   question decode, preprocess, generate at batch 1, the stock model) and the harness runner (`--workers`,
   `--batch-size`, the backbone's `accelerate()` speed-ups on).
3. Both sets of answers are compared question by question.
4. Prefill: on one video's questions, the backbone's `prefill_probe` (vision tower + language model over the
   prompt, logits of the last token only) is timed in both configurations (batch 1 stock; the harness batch
   accelerated, e.g. the video's shared prefix once, then each question's own tokens over its KV cache) with the
   FLOPs the backbone counts from its config, against the card's bf16 matrix rate measured in this process
   (`harness.bench.flops`). Peak memory from `torch.cuda.max_memory_allocated` on CUDA.

Results: `<out>/<device-slug>-<backbone-slug>.json` and `.md` (`harness.bench.report`).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from harness.bench.config import BenchConfig
from harness.bench.device import device_name, peak_memory
from harness.bench.flops import matmul_rate, prefill
from harness.bench.loops import reference_loop, runner_loop, uniform_frames
from harness.bench.report import result_stem, write_bench_results
from harness.bench.videos import video_set, write_annotations
from harness.errors import HarnessError


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """The whole measurement; writes the results files and returns the report they hold."""
    from harness.config import RunConfig, check_nvdec_processes, package_versions
    from harness.registry import BACKBONES, TASKS

    if cfg.job == "long":
        from harness.bench.run_long import run_long

        return run_long(cfg, log)
    if cfg.job != "uniform":
        raise HarnessError(f"--job must be uniform or long, got {cfg.job!r}")
    check_nvdec_processes(cfg, "--nvdec-processes", lambda f: "--" + f.replace("_", "-"))  # before any video
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
    rate = matmul_rate(cfg.device, cfg.matmul_size)
    if rate:
        log(f"bench: bf16 matmul {cfg.matmul_size}^3: {rate:.0f} TFLOP/s")

    # warm-up on one question, both configurations (kernels, allocator), outside every timing; the prefill of the
    # first video's questions: one at batch 1 on the stock model, then the harness batch accelerated
    frames, ts = uniform_frames(samples[0], cfg)
    backbone.generate(frames, ts, task.prompt(samples[0], backbone.prompt_style))
    requests = [(frames, ts, task.prompt(s, backbone.prompt_style)) for s in samples[:cfg.questions]]
    pre_ref = prefill(backbone, requests[:1], cfg.device, cfg.prefill_repeats)
    undo = backbone.accelerate()
    try:
        backbone.generate_batch(requests[:cfg.batch_size])
        pre_fast = prefill(backbone, requests[:max(1, cfg.batch_size)], cfg.device, cfg.prefill_repeats)
    finally:
        undo()

    if cfg.reference_questions < 0:
        raise HarnessError(f"--reference-questions must be >= 0, got {cfg.reference_questions}")
    # the reference may answer the first N questions only: the speed-up compares questions per second;
    # --reference-decode both: once decoding as lmms-eval does (the headline), once with the harness reader
    refs = []
    for how in ("stock", "harness") if cfg.reference_decode == "both" else (cfg.reference_decode,):
        peak_memory(cfg.device, reset=True)
        refs.append(reference_loop(backbone, task, samples[:cfg.reference_questions or None], cfg, how=how))
        refs[-1]["peak_memory_gib"] = peak_memory(cfg.device)
        log(f"bench: reference ({how} decoding) {refs[-1]['questions']} questions in {refs[-1]['seconds']:.1f} s")
    ref = refs[0]

    peak_memory(cfg.device, reset=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = RunConfig(task="videomme", task_args=task_args, backbone=cfg.backbone,
                            backbone_args=cfg.backbone_args, samplers=["uniform"], frames=cfg.frames, grid="all",
                            out=tmp, cache_dir=str(Path(tmp) / "features"), decode_backend=cfg.decode_backend,
                            device=cfg.device, dtype=cfg.dtype, workers=cfg.workers, batch_size=cfg.batch_size,
                            gpu_decoders=cfg.gpu_decoders, nvdec_processes=cfg.nvdec_processes)
        fast = runner_loop(backbone, run_cfg)
    fast["peak_memory_gib"] = peak_memory(cfg.device)
    log(f"bench: harness runner {fast['questions']} questions in {fast['seconds']:.1f} s")

    def qps(loop):
        return loop["questions"] / loop["seconds"]

    same = sum(fast["answers"].get(k) == v for k, v in ref["answers"].items())
    report = {
        "device": device_name(cfg.device), "config": asdict(cfg),
        "versions": package_versions(), "videos_dir": str(folder), "video_set_seconds": generated,
        "video_mbit_per_s": mbit, "matmul_bf16_tflops": rate,
        "reference": {k: v for k, v in ref.items() if k != "answers"},
        "harness": {k: v for k, v in fast.items() if k != "answers"},
        "questions_per_s": {"reference": ref["questions"] / ref["seconds"],
                            "harness": fast["questions"] / fast["seconds"]},
        "speedup": qps(fast) / qps(ref),
        "other_references": [{**{k: v for k, v in r.items() if k != "answers"}, "speedup": qps(fast) / qps(r),
                              "identical": sum(fast["answers"].get(k) == v for k, v in r["answers"].items())}
                             for r in refs[1:]],
        "answers": {"compared": len(ref["answers"]), "identical": same,
                    "differing": sorted(k for k, v in ref["answers"].items() if fast["answers"].get(k) != v)},
        "prefill": {"reference": pre_ref, "harness": pre_fast},
    }
    for p in (pre_ref, pre_fast):
        if p is not None:
            p["fraction_of_matmul_rate"] = p["tflops_per_s"] / rate if rate else None
    write_bench_results(report, Path(cfg.out), cfg.label or result_stem(report["device"], cfg.backbone))
    return report
