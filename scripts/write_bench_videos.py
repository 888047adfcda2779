"""Write (or find) several bench video sets at once on the GPU machine, before the benches that read them, e.g. in a
call of its own that carries PyAV while the next call carries other wheels (the device tool's 64 MiB limit):
    python3 scripts/write_bench_videos.py 4x10 8x5      # 4 videos x 10 min and 8 x 5 min, 720p30 GOP 250, libx264
Each set's videos are written in parallel processes (harness.bench.videos.video_set), the sets at the same time."""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from harness.bench.config import BenchConfig
from harness.bench.videos import video_set


def write(spec: str) -> None:
    videos, minutes = spec.split("x")
    t = time.perf_counter()
    folder, paths = video_set(BenchConfig(videos=int(videos), minutes=float(minutes), video_dir="/tmp/bench-videos",
                                          encode_jobs=int(videos)), "libx264")
    print(f"{len(paths)} videos in {folder}: {time.perf_counter() - t:.1f} s", flush=True)


def main(argv: list[str]) -> None:
    with ThreadPoolExecutor(len(argv) or 1) as pool:
        list(pool.map(write, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
