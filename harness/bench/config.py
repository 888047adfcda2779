"""What `harness bench` measures, as one dataclass (the command's options map onto it). No heavy imports: the CLI
reads its defaults when it builds its parser."""
from __future__ import annotations

from dataclasses import dataclass, field


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
