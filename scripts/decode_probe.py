"""Time each decode backend on each access pattern of `harness run` (not a test; a side measurement for issue 20).

    python scripts/decode_probe.py VIDEO... [--backends decord,pyav] [--repeat 2]

Patterns: the 1-fps candidate grid (the feature pass), K=64 uniform frames (`count:64`, an answer pass), and every
frame. Each figure is the best of --repeat fresh opens (open included), in seconds, with frames per second wanted.
"""
from __future__ import annotations

import argparse
import time

from harness.video.grid import grid_indices
from harness.video.reader import open_video

PATTERNS = ("1fps", "count:64", "all")


def probe(video: str, backend: str, rule: str, repeat: int, threads: int | None) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        kwargs = {} if threads is None else {"threads": threads}
        with open_video(video, backend, **kwargs) as reader:
            idx = grid_indices(reader.meta.frame_count, reader.meta.fps, rule)
            n = 0
            for start in range(0, len(idx), 64):  # in chunks, as the feature store reads
                n += len(reader.get_frames(idx[start:start + 64]))
        best = min(best, time.perf_counter() - t)
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--backends", default="decord,pyav")
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="decode threads per reader (where supported)")
    args = ap.parse_args()
    print(f"{'video':40s} {'backend':8s} {'pattern':9s} {'frames':>6s} {'seconds':>8s} {'frames/s':>9s}")
    for video in args.videos:
        for backend in args.backends.split(","):
            for rule in args.patterns.split(","):
                seconds, n = probe(video, backend, rule, args.repeat, args.threads)
                print(f"{video[-40:]:40s} {backend:8s} {rule:9s} {n:6d} {seconds:8.3f} {n / seconds:9.1f}", flush=True)


if __name__ == "__main__":
    main()
