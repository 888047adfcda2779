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
    # how the reference loop decodes: stock (as lmms-eval's loaders do: decord get_batch, PyAV decoding every frame
    # up to the last wanted; loops.stock_frames), harness (the harness reader, which reads forward) or both (the
    # reference loop twice: stock for the headline speed-up, harness as a second row)
    reference_decode: str = "stock"
    workers: int = 4
    gpu_decoders: int = 0  # NVDEC decoders beside the harness runner's CPU decode workers (harness run --gpu-decoders)
    batch_size: int = 3
    video_dir: str = ".cache/bench-videos"
    out: str = "results/bench"
    encode_jobs: int = 0  # parallel encoder processes (0: one per video, at most the cores)
    prefill_repeats: int = 3
    matmul_size: int = 8192
    label: str | None = None  # file name stem instead of the device name
    # --job long (harness.bench.long): 1-fps grid, CLIP features, a sampler, then the backbone; TSPO's way against
    # the harness's. The size: --videos 10 --minutes 30 --questions 4 --frames 64
    job: str = "uniform"  # uniform (run_bench) or long (run_long)
    long_sampler: str = "tspo"  # tspo (zero agent) or aks, over the CLIP features
    encoder: str = "open_clip:ViT-L-14:random"  # CLIP ViT-L/14 at real size, seeded random weights (offline)
    reference_questions: int = 0  # the reference answers only the first N questions (0: all); rates per question
    decode_instances: int = 2  # decoders at once in the harness way (one thread each) unless `decoders` says
    decoders: str = ""  # the harness way's decoders side by side, e.g. nvdec:4,pyav:6 (harness.video.multidecode)
    decode_ahead: int = 2  # --job long: videos whose grids decode at once (their frames held on the device)
    nvdec_processes: bool = False  # NVDEC decoders (long: of `decoders`; uniform: gpu_decoders) as processes
    video_codec: str = "auto"  # auto (h264_nvenc if it encodes here, else libx264), h264_nvenc or libx264
