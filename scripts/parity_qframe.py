"""Parity of Q-Frame's selection and resolutions with the official code (xiaomi-research/q-frame), not run by CI.

    .venv/bin/python scripts/parity_qframe.py PATH [--cases 258] [--seed 0]

PATH is a checkout of github.com/xiaomi-research/q-frame or its bare git directory (the file is read from HEAD). The
official `lmms_eval/models/qwen2_vl_w_qframe.py` is imported as it is; what it imports and cannot have here is
stubbed in this side step, nothing of its logic re-created:

* LongCLIP (`from model import longclip`, loaded at import): a stub whose image encoder returns the case's random
  image features (each candidate frame is a constant-colour image whose colour names its index) and whose text
  encoder returns the case's text feature, so the official `TextImageMatching` computes its own logits, softmax
  (tau = 0.8), Gumbel keys and ranking;
* `torch.rand` inside it returns the case's fixed uniforms U (float32), the same U `samplers.qframe.qframe_select`
  gets: the Gumbel noise is fixed on both sides;
* lmms-eval's base class, registry, Collator and instance, accelerate, loguru, decord and qwen-vl-utils'
  `process_vision_info`, which receives the official message and stops the call: the images in it (JPEG data URLs,
  in the official order) give each kept frame's index (its colour) and scale (its width against the frame's).

The official `generate_until` runs from the candidates to the message (its tiers: `high_frames`, `mid_frames`,
`low_frames` at width // 2, // 4, // 8, kept in time order). Cases draw N candidates (1..160), tiers (the published
4/8/32, budget-derived ones, random ones, more than N) and random features. The script prints how many cases give
identical positions and identical scales, and how many took the official fallback (an exception: counted as a
difference). Then the candidates: the official `load_video` (decord's reader a stub of a frame count and an average
fps) against `--grid 1fps-max:N`, over random frame counts, frame rates and N. Exit status 1 when any differs.
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import subprocess
import sys
import tempfile
import types
from io import BytesIO
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.video.grid import grid_indices  # noqa: E402
from samplers.qframe import qframe_logits, qframe_select, qframe_tiers  # noqa: E402

OFFICIAL = "lmms_eval/models/qwen2_vl_w_qframe.py"
SIDE = 64  # candidate frames are SIDE x SIDE constant-colour images
CASE: dict = {}  # the case the stubs serve


class Captured(Exception):
    """Raised by the process_vision_info stub once it has the official message."""


def colour(i: int) -> tuple[int, int, int]:
    return (i % 16) * 16 + 8, (i // 16) * 16 + 8, 128  # survives Lanczos and JPEG (errors below 8 levels)


def index_of(rgb) -> int:
    r, g = (int(round((float(v) - 8) / 16)) for v in rgb[:2])
    return g * 16 + r


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def install_stubs() -> None:
    import torch

    class ClipModel:
        def encode_image(self, images):
            ids = images.reshape(len(images), -1)[:, 0].long()
            return torch.from_numpy(CASE["features"])[ids]

        def encode_text(self, text):
            return torch.from_numpy(CASE["text"])[None]

    def clip_processor(image):
        return torch.tensor([float(index_of(np.asarray(image)[0, 0]))])

    longclip = types.SimpleNamespace(load=lambda path, device=None: (ClipModel(), clip_processor),
                                     tokenize=lambda texts: torch.zeros(len(texts), 1))
    _module("model", longclip=longclip)

    class Lmms:
        def __init__(self, *args, **kwargs):
            pass

    class Collator:
        def __init__(self, arr, fn, grouping=False):
            self.arr = list(arr)

        def get_batched(self, n=1, batch_fn=None):
            return [[a] for a in self.arr]

        def get_original(self, res):
            return res

    for name in ("lmms_eval", "lmms_eval.api", "lmms_eval.models", "lmms_eval.models.model_utils"):
        _module(name)
    _module("lmms_eval.utils", Collator=Collator)
    _module("lmms_eval.api.instance", Instance=object)
    _module("lmms_eval.api.model", lmms=Lmms)
    _module("lmms_eval.api.registry", register_model=lambda *names: (lambda cls: cls))
    _module("lmms_eval.models.model_utils.load_video", load_video_decord=None)
    logger = types.SimpleNamespace(info=lambda m, *a, **k: CASE.setdefault("logged", []).append(str(m)),
                                   warning=lambda *a, **k: None)
    for name, attrs in (("accelerate", {"Accelerator": object, "DistributedType": object}),
                        ("loguru", {"logger": logger}), ("decord", {"VideoReader": None, "cpu": None})):
        if importlib.util.find_spec(name) is None:
            _module(name, **attrs)
    sys.modules["loguru"].logger = logger  # the official fallback logs its exception: counted as a difference


def load_official(path: Path):
    source = path / OFFICIAL
    if not source.is_file():  # a bare git directory, as `fetch` leaves it
        folder = Path(tempfile.mkdtemp(prefix="qframe-official-"))
        source = folder / "qwen2_vl_w_qframe.py"
        source.write_text(subprocess.run(["git", "--git-dir", str(path), "show", f"HEAD:{OFFICIAL}"], check=True,
                                         capture_output=True, text=True).stdout)
    install_stubs()
    spec = importlib.util.spec_from_file_location("qframe_official", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def process_vision_info(messages):
        CASE["images"] = [part["image"] for part in messages[0][1]["content"] if part.get("type") == "image"]
        raise Captured

    module.process_vision_info = process_vision_info
    return module


def official_selection(module, n: int, tiers: tuple[int, int, int]) -> tuple[list[int], list[float]]:
    import torch
    from PIL import Image

    model = object.__new__(module.Qwen2_VL)
    model.high_frames, model.mid_frames, model.low_frames = tiers
    model.max_num_frames, model.sample_frames, model._rank, model.batch_size_per_gpu = n, 8, 1, 1  # rank 1: no progress bar
    model._tokenizer = types.SimpleNamespace(eos_token_id=0, decode=lambda ids: "")
    model.processor = types.SimpleNamespace(apply_chat_template=lambda msg, **kw: "")
    frames = np.stack([np.full((SIDE, SIDE, 3), colour(i), np.uint8) for i in range(n)])
    model.load_video = lambda path, max_frames: (frames, list(range(n)), "", float(n))
    model.task_dict = {"longvideobench_val_v": {"test": [{"video": "v.mp4"}]}}
    args = ("Which frame?\nA. one\nB. two", {}, lambda doc: [doc["video"]], 0, "longvideobench_val_v", "test")
    request = types.SimpleNamespace(args=args)
    rand = torch.rand
    torch.rand = lambda size, device=None: torch.from_numpy(CASE["uniforms"])
    try:
        model.generate_until([request])
    except Captured:
        pass
    finally:
        torch.rand = rand
    positions, scales = [], []
    for url in CASE["images"]:
        image = Image.open(BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        positions.append(index_of(np.asarray(image)[image.height // 2, image.width // 2]))
        scales.append(image.width / SIDE)
    return positions, scales


class StubVideo:
    """decord's VideoReader as the official `load_video` uses it: a length, an average fps, `get_batch`."""

    def __init__(self, frame_count: int, fps: float):
        self.frame_count, self.fps = frame_count, fps

    def __len__(self) -> int:
        return self.frame_count

    def get_avg_fps(self) -> float:
        return self.fps

    def get_batch(self, indices):
        assert all(0 <= i < self.frame_count for i in indices), "the official code reads only frames it has"
        return types.SimpleNamespace(asnumpy=lambda: np.zeros((len(indices), 2, 2, 3), np.uint8))


def grid_cases(module, rng, cases: int) -> tuple[int, int]:
    """(official `load_video` candidate lists equal to `1fps-max:N`, cases)."""
    fixed = [(300, 30.0, 16), (300, 30.0, 10), (300, 30.0, 4), (9000, 30.0, 128), (3000, 29.97, 128),
             (107892, 29.97, 128), (50, 25.0, 128), (1, 30.0, 1)]
    drawn = [(int(rng.integers(1, 200000)), float(rng.choice([23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0])),
              int(rng.choice([8, 32, 64, 128, 256]))) for _ in range(cases)]
    model = object.__new__(module.Qwen2_VL)
    same = 0
    for frame_count, fps, n in fixed + drawn:
        module.decord = types.SimpleNamespace(VideoReader=lambda path, ctx=None, num_threads=1: StubVideo(*path),
                                              cpu=lambda i: None)
        _, theirs, _, _ = module.Qwen2_VL.load_video(model, (frame_count, fps), n)
        same += list(theirs) == grid_indices(frame_count, fps, f"1fps-max:{n}").tolist()
    return same, len(fixed) + len(drawn)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--cases", type=int, default=258)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    module = load_official(args.path)
    rng = np.random.default_rng(args.seed)
    same_positions = same_scales = fallbacks = 0
    for case in range(args.cases):
        n = int(rng.integers(1, 161))
        kind = case % 4
        tiers = ((4, 8, 32), qframe_tiers(int(rng.integers(1, 17)), "tokens"),
                 tuple(int(v) for v in rng.integers(0, 12, 3)), qframe_tiers(int(rng.integers(1, 33)), "frames"))[kind]
        if sum(tiers) == 0:
            tiers = (1, 0, 0)
        d = int(rng.integers(4, 33))
        CASE.clear()
        CASE.update(features=rng.normal(size=(n, d)).astype(np.float32), text=rng.normal(size=d).astype(np.float32),
                    uniforms=rng.random(n).astype(np.float32))
        theirs = official_selection(module, n, tiers)
        fallbacks += bool(CASE.get("logged"))
        ours = qframe_select(qframe_logits(CASE["features"], CASE["text"]), *tiers, tau=0.8,
                             uniforms=CASE["uniforms"].astype(np.float64))
        ok_pos = theirs[0] == ours[0].tolist()
        ok_scale = ok_pos and theirs[1] == ours[1].tolist()
        same_positions += ok_pos
        same_scales += ok_scale
        if not ok_scale and case < 1000:
            print(f"case {case}: N={n} tiers={tiers}: official {theirs} ours {ours[0].tolist()} "
                  f"{ours[1].tolist()}", file=sys.stderr)
    print(f"positions: {same_positions}/{args.cases} identical")
    print(f"scales: {same_scales}/{args.cases} identical")
    print(f"official fallbacks (exceptions): {fallbacks}")
    grids, grid_total = grid_cases(module, rng, args.cases)
    print(f"candidates (official load_video against --grid 1fps-max:N): {grids}/{grid_total} identical")
    return 0 if same_positions == same_scales == args.cases and not fallbacks and grids == grid_total else 1


if __name__ == "__main__":
    sys.exit(main())
