"""Issue 9's measurement: the same `harness run` job on 1 GPU and, through torchrun, on N GPUs of one host; then
one replica spanning 2 GPUs (`--gpus-per-replica 2`, layer by layer) checked against the 1-GPU answers.

The job: the bench's generated video set (harness.bench.videos.video_set: 720p, 30 fps, GOP 250) as a Video-MME-style
task, 3 questions per video on 64 uniform frames, Qwen2.5-VL-7B architecture with random weights in bf16, the fast
runner (decode workers, questions sharing frames batched, each video's prefix shared). Every launch gets the same
decode workers per rank and the same OMP_NUM_THREADS (torchrun would otherwise set 1 for N > 1). Throughput =
questions / the slowest rank's loop time (from each run's events.jsonl; model loading excluded, the same for any
number of GPUs), and also end to end wall time per launch. Prints a table; writes
results/bench/multigpu-<device>.{json,md} (or under $OUT_DIR).

    python3 scripts/multigpu_throughput.py --gpus 2 --videos 48 --minutes 1
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.bench.config import BenchConfig
from harness.bench.videos import video_set, write_annotations


def launch(n: int, folder: Path, annotations: Path, out: Path, workers: int, threads: int, decode: str,
           *extra: str) -> float:
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"] if n > 1 else \
        [sys.executable]
    cmd = [*head, "-m", "harness", "run", "--task", "videomme", "--task-arg", f"annotations={annotations}",
           "--video-root", str(folder), "--backbone", "qwen2.5-vl", "--backbone-arg", "random_init=true",
           "--backbone-arg", "config=qwen2.5-vl-7b", "--backbone-arg", "max_new_tokens=1", "--sampler", "uniform",
           "--grid", "all", "--frames", "64", "--device", "cuda", "--dtype", "bfloat16", "--workers", str(workers),
           "--batch-size", "3", "--decode-backend", decode, "--out", str(out), "--no-progress", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.perf_counter() - t0


def answers(out: Path) -> dict:
    [run] = list(out.iterdir())
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    return {r["sample_id"]: r["prediction"].get("raw_text") for r in rows}


def loop_seconds(out: Path) -> tuple[int, float]:
    """(questions answered, the slowest rank's loop seconds) from the run's 'features' events."""
    [run] = list(out.iterdir())
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["event"] == "features"]
    return sum(e["questions"] for e in ends), max(e["seconds"] for e in ends)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=8, help="decode workers per rank")
    ap.add_argument("--threads", type=int, default=4, help="OMP_NUM_THREADS of every rank")
    ap.add_argument("--decode-backend", default="decord")
    ap.add_argument("--replica-videos", type=int, default=6, help="videos of the 2-GPU replica check (0: skip)")
    ap.add_argument("--video-dir", default="/tmp/bench-videos")
    args = ap.parse_args()
    import torch

    device = torch.cuda.get_device_name(0)
    cfg = BenchConfig(videos=args.videos, minutes=args.minutes, video_dir=args.video_dir)
    t0 = time.perf_counter()
    folder, paths = video_set(cfg)
    print(f"video set: {len(paths)} videos in {time.perf_counter() - t0:.0f} s", flush=True)
    annotations = write_annotations(folder, paths, cfg.questions)
    rows = []
    for n in (1, args.gpus):
        out = Path(f"/tmp/multigpu-{n}-{args.videos}x{args.minutes:g}")
        shutil.rmtree(out, ignore_errors=True)  # a fresh run: resuming an earlier one would time nothing
        wall = launch(n, folder, annotations, out, args.workers, args.threads, args.decode_backend)
        questions, loop = loop_seconds(out)
        rows.append({"gpus": n, "questions": questions, "loop_s": loop, "questions_per_s": questions / loop,
                     "wall_s": wall})
        print(f"{n} GPU(s): {questions} questions, loop {loop:.1f} s, wall {wall:.1f} s", flush=True)
    speedup = rows[1]["questions_per_s"] / rows[0]["questions_per_s"]
    replica = None
    if args.replica_videos:  # one process, the model split over 2 GPUs: the same answers as on one GPU
        out = Path("/tmp/multigpu-replica")
        shutil.rmtree(out, ignore_errors=True)
        limit = args.replica_videos * cfg.questions
        wall = launch(1, folder, annotations, out, args.workers, args.threads, args.decode_backend,
                      "--gpus-per-replica", "2", "--limit", str(limit))
        questions, loop = loop_seconds(out)
        got, want = answers(out), answers(Path(f"/tmp/multigpu-1-{args.videos}x{args.minutes:g}"))
        same = sum(want.get(k) == v for k, v in got.items())
        replica = {"gpus_per_replica": 2, "questions": questions, "loop_s": loop, "wall_s": wall,
                   "identical_to_1_gpu": same, "compared": len(got)}
        print(f"1 replica over 2 GPUs: {questions} questions, loop {loop:.1f} s, {same}/{len(got)} answers as on "
              f"1 GPU", flush=True)
    result = {"device": device, "gpus": args.gpus, "videos": args.videos, "minutes": args.minutes,
              "decode_backend": args.decode_backend, "workers_per_rank": args.workers, "omp_threads": args.threads,
              "rows": rows, "speedup": speedup,
              "replica": replica,
              "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__}}
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    dest = Path(os.environ.get("OUT_DIR", "results/bench"))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"multigpu-{slug}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = ["| GPUs | questions | loop s | questions/s | wall s (launch to exit) |", "|---:|---:|---:|---:|---:|",
             *(f"| {r['gpus']} | {r['questions']} | {r['loop_s']:.1f} | {r['questions_per_s']:.3f} | "
               f"{r['wall_s']:.1f} |" for r in rows)]
    md = (f"# Data parallelism on {device}\n\n{args.videos} videos x {args.minutes:g} min, 720p 30 fps, 3 questions "
          f"per video on 64 uniform frames, Qwen2.5-VL-7B architecture (random weights) bf16, fast runner with "
          f"{args.workers} decode workers and OMP_NUM_THREADS={args.threads} per rank; "
          f"`scripts/multigpu_throughput.py`.\n\n" + "\n".join(table)
          + f"\n\nspeed-up at {args.gpus} GPUs: {speedup:.2f}x (questions per second of the loop)\n")
    if replica:
        md += (f"\nOne replica over 2 GPUs (`--gpus-per-replica 2`, balanced layer split) on the first "
               f"{replica['questions']} questions: loop {replica['loop_s']:.1f} s, {replica['identical_to_1_gpu']}/"
               f"{replica['compared']} answers identical to the 1-GPU run.\n")
    (dest / f"multigpu-{slug}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
