"""Tool commands: `harness bench`, `convert`, `train`, `miniworld` and `list`."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from harness.cli.common import EPILOG, status
from harness.cli.options import add_options, read_options

# The meaning of each BenchConfig field as an option ({default}: the field's default).
BENCH_HELP = {
    "videos": "number of videos (default {default})", "minutes": "minutes per video (default {default})",
    "height": "frame height (default {default})", "width": "frame width (default {default})",
    "fps": "frame rate (default {default})", "gop": "keyframe interval (default {default})",
    "questions": "questions per video (default {default})",
    "frames": "frames per question (uniform) (default {default})",
    "workers": "harness decode workers (default {default})",
    "gpu_decoders": "NVDEC decoders beside the harness runner's decode workers (default {default})", "batch_size": "harness batch size (default {default})",
    "prefill_repeats": "prefill timings (default {default})",
    "matmul_size": "size of the bf16 matmul that measures the card (default {default})",
    "backbone": "backbone (default {default})",
    "backbone_args": "backbone option (default: random_init=true config=qwen2.5-vl-7b)",
    "device": "torch device (default {default})", "dtype": "model dtype (default {default})",
    "decode_backend": "decoder (default {default})", "video_dir": "cache of generated videos (default {default})",
    "out": "results folder (default {default})",
    "label": "file name stem for the results (default: <device>-<backbone>)",
    "job": "uniform (K uniform frames, the runner) or long (1-fps grid, CLIP, sampler, backbone: TSPO's way against "
           "the harness's; docs/decode.md) (default {default})",
    "long_sampler": "--job long: tspo (zero agent) or aks over the CLIP features (default {default})",
    "encoder": "--job long: CLIP encoder spec (default {default}: ViT-L/14 at real size, random weights)",
    "reference_questions": "the reference answers only the first N questions, 0: all; the speed-up compares questions "
                           "per second (default {default})",
    "decode_instances": "--job long: decoders of --decode-backend at once, one thread each (default {default})",
    "decoders": "--job long: the harness way's decoders side by side, e.g. nvdec:4,pyav:6 (default: "
                "--decode-backend x --decode-instances)",
    "decode_ahead": "--job long: videos whose grids the decoders work on at once, each grid held on the device until "
                    "answered (default {default})",
    "nvdec_processes": "the NVDEC decoders (--job long: of --decoders; --job uniform: --gpu-decoders) as worker "
                       "processes (a CUDA context each, frames through host shared memory) instead of threads of "
                       "this process (default {default})",
    "reference_decode": "--job uniform: the reference loop decodes as lmms-eval's loaders do (stock: decord "
                        "get_batch, PyAV decoding every frame up to the last wanted) or with the harness reader "
                        "(harness), or both (two reference rows; the speed-up against stock) (default {default})",
    "video_codec": "H.264 encoder for the video set: auto, h264_nvenc or libx264 (default {default})",
}


def add_bench(p) -> None:
    from harness.bench.config import BenchConfig

    p.description = ("Writes (or reuses) a set of long H.264 videos and Video-MME style questions on them, then "
                     "answers every question twice with one loaded backbone: the reference loop (an lmms-eval-style "
                     "loop written here, not lmms-eval's code: per question decode K uniform frames, prompt, "
                     "preprocess, generate at batch 1) and the harness runner (--workers, --batch-size); "
                     "compares the answers, times the prefill against the card's measured bf16 matmul rate and "
                     "writes OUT/<device>-<backbone>.json and .md.")
    add_options(p, BenchConfig, ["videos", "minutes", "height", "width", "fps", "gop", "questions", "frames",
                                 "workers", "gpu_decoders", "batch_size", "prefill_repeats", "matmul_size", "backbone",
                                 "backbone_args", "device", "dtype", "decode_backend", "video_dir", "out", "label",
                                 "job", "long_sampler", "encoder", "reference_questions", "decode_instances",
                                 "video_codec", "reference_decode", "decoders", "decode_ahead", "nvdec_processes"],
                BENCH_HELP, dtype={"choices": ["float32", "bfloat16", "float16"]}, job={"choices": ["uniform", "long"]},
                reference_decode={"choices": ["stock", "harness", "both"]},
                long_sampler={"choices": ["tspo", "aks"]},
                video_codec={"choices": ["auto", "h264_nvenc", "libx264"]})


def cmd_bench(args) -> int:
    from harness.bench.config import BenchConfig
    from harness.bench.report import render_markdown
    from harness.bench.run_bench import run_bench

    report = run_bench(read_options(args, BenchConfig), log=status)
    print(render_markdown(report), end="")
    return 0


def add_convert(p) -> None:
    p.description = ("Writes the original checkpoint at SRC in the layout the backbone's adapter loads (e.g. "
                     "llava-video: the LLaVA-NeXT layout of lmms-lab/LLaVA-Video-7B-Qwen2 -> transformers "
                     "LLaVA-OneVision, every tensor mapped, dtypes and shards kept).")
    p.add_argument("backbone", metavar="BACKBONE", help="registered backbone whose checkpoint to convert (e.g. "
                                                        "llava-video; see `harness list backbones`)")
    p.add_argument("src", metavar="SRC", help="original checkpoint folder")
    p.add_argument("dst", metavar="DST", help="new folder (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it holds a converted checkpoint")


def cmd_convert(args) -> int:
    from harness.registry import BACKBONES

    done = BACKBONES.get(args.backbone).factory.convert_checkpoint(args.src, args.dst, overwrite=args.overwrite,
                                                                   log=print)
    print(f"converted {done['tensors']} tensors in {done['shards']} shard(s) to {done['dst']}"
          + (f"; {done['dropped']} buffer(s) dropped" if done["dropped"] else ""))
    return 0


def add_train(p) -> None:
    # Built only when `harness train` runs: the trainer's config imports the TSPO sampler (torch).
    from harness.train.config import TSPOTrainConfig

    tsub = p.add_subparsers(dest="train_command", metavar="ACTION", required=True)
    t = tsub.add_parser("tspo", epilog=EPILOG, help="group policy optimisation of the TSPO selector",
                        description="G Gumbel top-k rollouts per question answered by the frozen backbone, reward "
                                    "accuracy + temporal overlap, group-normalised advantages (the TSPO paper, "
                                    "arXiv 2508.04369). Rerun the same command to resume; torchrun runs it "
                                    "data-parallel. The trained agent is exported to OUT/agent (use --sampler "
                                    "tspo:agent=OUT/agent).")
    add_options(t, TSPOTrainConfig, [f.name for f in dataclasses.fields(TSPOTrainConfig) if f.name != "betas"],
                watch={"metavar": "ID"})
    pl = tsub.add_parser("plot", epilog=EPILOG, help="reward curve and a question's score curves over training")
    pl.add_argument("run", metavar="RUN")
    pl.add_argument("--question", help="a watched question id (default: the first watched)")
    pl.add_argument("--steps", help="steps to show, e.g. 0,20,40 (default: --count spread over the run)")
    pl.add_argument("--count", type=int, default=4, help="steps shown when --steps is not given (default 4)")
    pl.add_argument("--out", help="folder (default RUN/plots)")


def cmd_train(args) -> int:
    if args.train_command == "plot":
        from harness.train.plot import plot_run

        steps = [int(x) for x in args.steps.split(",")] if args.steps else None
        for path in plot_run(args.run, out=args.out, question=args.question, steps=steps, count=args.count):
            print(path)
        return 0
    from harness.train.config import TSPOTrainConfig
    from harness.train.tspo import train_tspo

    run = Path(train_tspo(read_options(args, TSPOTrainConfig).validate()))
    print(f"training run: {run}\ntrained agent: {run / 'agent'} (sample with --sampler tspo:agent={run / 'agent'}"
          f",encoder=...)")
    return 0


def add_miniworld(p) -> None:
    p.description = ("`harness miniworld clip train|eval ...` and `harness miniworld qwen train ...` run "
                     "harness.miniworld.clip / .qwen; `harness miniworld MODEL --help` lists their options.")
    p.add_argument("model", choices=["clip", "qwen"])
    p.add_argument("args", nargs=argparse.REMAINDER, help="the model's own command and options")


def cmd_miniworld(args) -> int:
    if args.model == "qwen":
        from harness.miniworld.qwen.main import main
    else:
        from harness.miniworld.clip import main
    main(args.args)
    return 0


def add_list(p) -> None:
    p.add_argument("kind", nargs="?", choices=["tasks", "backbones", "samplers"])
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_list(args) -> int:
    from harness.registry import REGISTRIES

    kinds = [args.kind] if args.kind else list(REGISTRIES)
    listing = {k: [{"name": e.name, "description": e.description,
                    "params": [{"name": p.name, "default": p.default, "choices": list(p.choices), "help": p.help}
                               for p in e.params]}
                   for e in REGISTRIES[k].entries()] for k in kinds}
    if args.json:
        print(json.dumps(listing, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for kind, entries in listing.items():
        table = Table(title=kind, show_lines=True)
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("description")
        table.add_column("options: name=default (choices)", overflow="fold")
        for e in entries:
            opts = [f"{p['name']}={p['default']!r}"
                    + (f" ({' | '.join(map(str, p['choices']))})" if p["choices"] else "")
                    for p in e["params"] if p["name"] not in ("device", "dtype")]  # every backbone takes both
            table.add_row(escape(e["name"]), escape(e["description"]), escape("\n".join(opts) or "-"))
        console.print(table)
    return 0


COMMANDS = {"bench": (add_bench, cmd_bench), "convert": (add_convert, cmd_convert), "train": (add_train, cmd_train),
            "miniworld": (add_miniworld, cmd_miniworld), "list": (add_list, cmd_list)}
