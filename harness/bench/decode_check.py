"""A decoder against PyAV on a folder of videos: pixel differences and frames per second with 1, 2, 4 instances.

    python -m harness.bench.decode_check VIDEO_DIR --backend nvdec --instances 1 2 4 --out OUT_DIR

* Frames: the first `--compare` frames of each video's 1-fps grid, decoded by the backend and by PyAV
  (`to_ndarray(format="rgb24")`): max and mean |diff| per channel over all of them.
* Speed: every video's whole 1-fps grid, each grid cut in N contiguous parts decoded by N decoder instances at once
  (one thread each, one reader per part; with nvdec the frames stay on the GPU), wall time for all: grid frames/s,
  and the stream's frames per second (every frame of the files, which a GOP-250 stream decodes anyway to reach a
  1-fps grid).
Writes OUT/decode-check-<backend>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _grid(reader) -> np.ndarray:
    from harness.video.grid import make_grid

    return np.asarray(make_grid(reader.meta.frame_count, reader.meta.fps, "1fps").indices)


def _decode(path, backend, indices, keep_on_device: bool):
    from harness.video.reader import open_video

    with open_video(str(path), backend) as reader:
        if keep_on_device and hasattr(reader, "frames_on_device"):
            import torch

            frames = reader.frames_on_device(indices)
            if reader.device.type == "cuda":
                torch.cuda.synchronize(reader.device)
            return frames.shape[0]
        return reader.get_frames(indices).shape[0]


def compare(paths, backend: str, n: int) -> dict:
    from harness.video.reader import open_video

    diffs = []
    for p in paths:
        with open_video(str(p), "pyav") as ref:
            idx = _grid(ref)[:n]
            expected = ref.get_frames(idx).astype(np.int16)
        with open_video(str(p), backend) as reader:
            diffs.append(np.abs(reader.get_frames(idx).astype(np.int16) - expected))
    d = np.concatenate(diffs)
    return {"frames": int(d.shape[0]), "max": d.max(axis=(0, 1, 2)).tolist(),
            "mean": [round(float(x), 4) for x in d.mean(axis=(0, 1, 2))],
            "identical_frames": int((d.reshape(len(d), -1).max(axis=1) == 0).sum())}


def speed(paths, backend: str, instances: int) -> dict:
    from harness.video.reader import open_video

    grids, total = [], 0
    for p in paths:
        with open_video(str(p), "pyav") as r:
            grids.append(_grid(r))
            total += r.meta.frame_count
    # each video's grid in `instances` contiguous parts, so every instance has work even with few videos
    jobs = [(p, part) for p, g in zip(paths, grids) for part in np.array_split(g, instances) if part.size]
    t = time.perf_counter()
    with ThreadPoolExecutor(instances) as pool:
        done = sum(pool.map(lambda job: _decode(job[0], backend, job[1], True), jobs))
    seconds = time.perf_counter() - t
    return {"instances": instances, "seconds": seconds, "grid_frames": done, "grid_fps": done / seconds,
            "stream_fps": total / seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video_dir")
    ap.add_argument("--backend", default="nvdec")
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--compare", type=int, default=120, help="grid frames per video compared with PyAV")
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args(argv)
    from harness.errors import HarnessError
    from harness.video.reader import check_backend

    try:
        check_backend(args.backend)
    except HarnessError as e:
        print(f"decode_check: {e}", file=sys.stderr)
        return 2
    paths = sorted(Path(args.video_dir).glob("*.mp4"))
    if not paths:
        print(f"decode_check: no .mp4 files in {args.video_dir}", file=sys.stderr)
        return 2
    _decode(paths[0], args.backend, [0], True)  # warm-up: library load, CUDA context, decoder creation
    report = {"backend": args.backend, "videos": len(paths), "video_dir": args.video_dir,
              "compare": compare(paths, args.backend, args.compare),
              "speed": [speed(paths, args.backend, n) for n in args.instances]}
    c = report["compare"]
    lines = [f"# {args.backend} against PyAV on {len(paths)} videos ({args.video_dir})", "",
             f"Pixels: {c['frames']} grid frames compared, max |diff| per channel (R, G, B) {c['max']}, mean "
             f"{c['mean']}; identical frames {c['identical_frames']} of {c['frames']}.", "",
             "| instances | seconds | 1-fps grid frames/s | stream frames/s |", "|---|---|---|---|"]
    lines += [f"| {s['instances']} | {s['seconds']:.1f} | {s['grid_fps']:.0f} | {s['stream_fps']:.0f} |"
              for s in report["speed"]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"decode-check-{args.backend}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"decode-check-{args.backend}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
