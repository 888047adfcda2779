"""Issue 7's real-size timing: TSPO training steps with the frozen Qwen2.5-VL-7B architecture (random weights, bf16)
as the backbone, a random CLIP ViT-L/14 as the encoder, G = 8 rollouts of 16 frames, on the needle train split.
Prints seconds per step and peak GPU memory; writes $OUT_DIR/train-step.json.

    python3 scripts/train_step_gpu.py [--steps 3]     (the package installed, or PYTHONPATH=. where it is not)
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def clip_vit_l14(folder: Path) -> Path:
    """openai/clip-vit-large-patch14's architecture with random weights, plus the real CLIP tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    from harness.shipped import SHIPPED
    from harness.miniworld.tiny import clip_image_processor

    config = CLIPConfig(
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         projection_dim=768, vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14, projection_dim=768),
        projection_dim=768)
    CLIPModel(config).save_pretrained(folder)
    tokenizer = CLIPTokenizer.from_pretrained(SHIPPED["mini-clip"])  # OpenAI CLIP's vocabulary (no open_clip there)
    CLIPProcessor(image_processor=clip_image_processor(224), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    import torch

    from harness.train.tspo import TSPOTrainConfig, train_tspo

    work = Path(tempfile.mkdtemp())
    encoder = clip_vit_l14(work / "clip-l14")
    cfg = TSPOTrainConfig(out=str(work / "run"), data="needle", task_args={"videos": 2}, encoder=str(encoder),
                          backbone="qwen2.5-vl", backbone_args={"random_init": True, "config": "qwen2.5-vl-7b",
                                                                "dtype": "bfloat16", "max_new_tokens": 1},
                          frames=16, group_size=8, grad_accum=1, max_steps=args.steps, device="cuda",
                          cache_dir=str(work / "cache"), decode_backend="pyav", progress=False, tensorboard=False)
    t0 = time.perf_counter()
    run = Path(train_tspo(cfg.validate()))
    total = time.perf_counter() - t0
    steps = [json.loads(x) for x in (run / "train.jsonl").read_text().splitlines()]
    result = {"device": torch.cuda.get_device_name(0), "steps": [s["seconds"] for s in steps],
              "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30, "total_s": total, "group_size": 8,
              "frames": 16, "backbone": "Qwen2.5-VL-7B architecture, random weights, bf16",
              "encoder": "CLIP ViT-L/14 architecture, random weights, fp32"}
    out = Path(os.environ.get("OUT_DIR", "."))
    (out / "train-step.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| step | seconds |\n|---:|---:|\n" + "\n".join(f"| {i + 1} | {s:.2f} |" for i, s in enumerate(result["steps"])))
    print(f"peak GPU memory {result['peak_gib']:.1f} GiB on {result['device']}; whole command {total:.0f} s")


if __name__ == "__main__":
    main()
