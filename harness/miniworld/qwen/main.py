"""The mini Qwen2.5-VL's command line (`harness miniworld qwen ...`, or `python -m harness.miniworld.qwen.main`):
`train` (`train.train_mini_qwen`, writing training.json beside the weights) and `eval` (`evaluate.evaluate_backbone`).
scripts/train_mini_qwen.sh runs `train` on a GPU machine.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv=None) -> None:
    """`python -m harness.miniworld.qwen.main train --out DIR [...]`: train, save, and write DIR/training.json (the
    arguments, machine, time, loss history and held-out letter accuracy) so the shipped weights can be remade.
    `... eval [--model M] [--eval-videos N]`: `evaluate_backbone` (generated answers through the mini-qwen2.5-vl
    backbone on the written needle test videos, per selection kind), printed as JSON."""
    import argparse
    import dataclasses
    import json
    import platform

    import torch
    import transformers

    from harness.miniworld.qwen.batches import Recipe
    from harness.miniworld.qwen.build import Sizes, load_processor
    from harness.miniworld.qwen.evaluate import evaluate_backbone, letter_accuracy
    from harness.miniworld.qwen.train import train_mini_qwen
    from harness.miniworld.qwen.world import pooled_questions

    ap = argparse.ArgumentParser(prog="python -m harness.miniworld.qwen.main")
    ap.add_argument("command", choices=["train", "eval"])
    ap.add_argument("--out", help="where train saves the model (required for train)")
    ap.add_argument("--model", default="mini-qwen2.5-vl", help="eval: a shipped name or a saved folder")
    ap.add_argument("--decode-backend", default="pyav", help="eval: decord or pyav")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--fillers", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="data-loader processes (0: batches made in this one)")
    ap.add_argument("--sizes", default="{}", help="JSON overrides of Sizes")
    ap.add_argument("--recipe", default="{}", help="JSON overrides of Recipe")
    ap.add_argument("--eval-videos", type=int, default=0, help="test videos for the held-out letter accuracy")
    ap.add_argument("--evaluate-every", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--stop-after", type=int, default=None, help="end after this many steps (schedule of --steps)")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="end after this long (the learning-rate schedule then follows the clock)")
    ap.add_argument("--init", default=None, help="a saved mini Qwen folder to go on training")
    args = ap.parse_args(argv)
    if args.command == "eval":
        from harness.registry import BACKBONES, TASKS

        backbone = BACKBONES.create("mini-qwen2.5-vl", model=args.model, device=args.device)
        task = TASKS.create("needle", split="test", videos=args.eval_videos or 50, seed=args.seed)
        print(json.dumps(evaluate_backbone(backbone, task, decode_backend=args.decode_backend)))
        return
    if not args.out:
        ap.error("train needs --out")
    sizes, recipe = Sizes(**json.loads(args.sizes)), Recipe(**json.loads(args.recipe))
    eval_questions = pooled_questions("test", args.eval_videos) if args.eval_videos else None
    log = lambda line: print(line, flush=True)  # noqa: E731
    result = train_mini_qwen(args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             videos=args.videos, fillers=args.fillers, recipe=recipe, sizes=sizes,
                             log_every=args.log_every, log=log, device=args.device, workers=args.workers,
                             evaluate_every=args.evaluate_every, eval_questions=eval_questions,
                             stop_after=args.stop_after, max_seconds=args.max_seconds, init=args.init)
    if eval_questions:
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.out).eval()  # as saved, on the CPU
        result["held_out"] = letter_accuracy(model, load_processor(args.out), eval_questions)
        log(f"held out ({args.eval_videos} test videos, teacher-forced letter): {result['held_out']}")
    previous = Path(args.init, "training.json") if args.init else None
    command = " ".join(argv if argv is not None else sys.argv[1:])
    record = {"command": f"python -m harness.miniworld.qwen.main {command}",
              "seed": args.seed, "steps": result["steps"], "planned_steps": args.steps, "batch_size": args.batch_size,
              "lr": args.lr, "videos": args.videos, "fillers": args.fillers, "workers": args.workers,
              "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "sizes": dataclasses.asdict(sizes), "recipe": dataclasses.asdict(recipe),
              **{k: result[k] for k in ("parameters", "seconds", "data_seconds", "final_loss", "final_train_acc")},
              "evals": result["evals"], "held_out": result.get("held_out"),
              "history": result["history"][:: max(1, len(result["history"]) // 40)],
              "init": json.loads(previous.read_text()) if previous and previous.is_file() else args.init}
    Path(args.out, "training.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
