"""The `harness` command line (also `python -m harness`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from harness.errors import HarnessError

EPILOG = "Bad input (unknown name, missing file, malformed config) exits with code 2 and one line; --debug shows tracebacks."


def _add_task_options(p, d) -> None:
    """Options shared by commands that walk a task's samples: which samples, which grid, where features live."""
    p.add_argument("--config", help="JSON or TOML file of run options (command-line options override it)")
    p.add_argument("--task", help=f"task name (default {d.task}; see `harness list tasks`)")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="task option")
    p.add_argument("--grid", help=f"candidate grid rule: 1fps, int-fps, fps:F, count:N, all (default {d.grid})")
    p.add_argument("--limit", type=int, help="deterministic category-stratified subset of N samples")
    p.add_argument("--cache-dir", help=f"feature cache directory (default {d.cache_dir})")
    p.add_argument("--decode-backend", help=f"decord, pyav or torchcodec (default {d.decode_backend})")
    p.add_argument("--device", help=f"torch device (default {d.device})")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help=f"model dtype (default {d.dtype})")
    p.add_argument("--video-root", help="directory holding the task's videos (task option video_root)")
    p.add_argument("--skip-missing", action="store_true",
                   help="drop samples whose video is missing, and record how many (task option skip_missing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_sampler_options(p, d, many: bool) -> None:
    p.add_argument("--sampler", action="append" if many else "store", metavar="NAME[:KEY=VALUE,...]",
                   help=(f"sampler, repeatable (default {', '.join(d.samplers)}), e.g. uniform:variant=linspace-round"
                         if many else "sampler, e.g. aks:mode=fixed (see `harness list samplers`)"))
    p.add_argument("--frames", type=int, help=f"frame budget K (default {d.frames})")
    p.add_argument("--short-grid", choices=["all", "repeat"],
                   help=f"when the grid has fewer than K candidates: take all, or repeat to K (default {d.short_grid})")


def _add_run(sub) -> None:
    from harness.config import RunConfig
    d = RunConfig()
    p = sub.add_parser(
        "run", help="evaluate samplers on a task with a backbone (no arguments: the offline default)",
        description="Run a task with a backbone and one or more samplers. Each sampler gets its own run directory "
                    "(task, backbone, sampler, config hash) under --out; rerunning the same command resumes.",
        epilog=EPILOG)
    _add_task_options(p, d)
    _add_sampler_options(p, d, many=True)
    p.add_argument("--backbone", help=f"backbone name (default {d.backbone})")
    p.add_argument("--backbone-arg", action="append", default=[], metavar="KEY=VALUE", help="backbone option")
    p.add_argument("--out", help=f"directory of run directories (default {d.out})")
    p.add_argument("--workers", type=int, help=f"decode processes that stay ahead of the backbone (default "
                                               f"{d.workers}: decode in this process); does not change results")
    p.add_argument("--batch-size", type=int, help=f"questions of one video per backbone call, those sharing frames "
                                                  f"first (default {d.batch_size}); does not change results")
    p.add_argument("--gpus-per-replica", type=int, help=f"GPUs one backbone replica spans, split layer by layer "
                                                        f"(default {d.gpus_per_replica}); with torchrun, data "
                                                        "parallel across replicas: one process per G GPUs")


def _add_bench(sub) -> None:
    from harness.bench import BenchConfig
    d = BenchConfig()
    p = sub.add_parser(
        "bench", help="questions per second: the lmms-eval loop against the harness runner, on a generated video set",
        epilog=EPILOG,
        description="Writes (or reuses) a set of long H.264 videos and Video-MME style questions on them, then "
                    "answers every question twice with one loaded backbone: the reference loop (per question decode, "
                    "preprocess, generate at batch 1) and the harness runner (--workers, --batch-size); compares the "
                    "answers, times the prefill against the card's measured bf16 matmul rate and writes "
                    "OUT/<device>-<backbone>.json and .md.")
    for name, kind, what in (("videos", int, "number of videos"), ("minutes", float, "minutes per video"),
                             ("height", int, "frame height"), ("width", int, "frame width"), ("fps", float, "frame rate"),
                             ("gop", int, "keyframe interval"), ("questions", int, "questions per video"),
                             ("frames", int, "frames per question (uniform)"), ("workers", int, "harness decode workers"),
                             ("batch-size", int, "harness batch size"), ("prefill-repeats", int, "prefill timings"),
                             ("matmul-size", int, "size of the bf16 matmul that measures the card")):
        p.add_argument(f"--{name}", type=kind, default=getattr(d, name.replace("-", "_")),
                       help=f"{what} (default {getattr(d, name.replace('-', '_'))})")
    p.add_argument("--backbone", default=d.backbone, help=f"backbone (default {d.backbone})")
    p.add_argument("--backbone-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="backbone option (default: random_init=true config=qwen2.5-vl-7b)")
    p.add_argument("--device", default=d.device, help=f"torch device (default {d.device})")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--decode-backend", default=d.decode_backend, help=f"decoder (default {d.decode_backend})")
    p.add_argument("--video-dir", default=d.video_dir, help=f"cache of generated videos (default {d.video_dir})")
    p.add_argument("--out", default=d.out, help=f"results folder (default {d.out})")
    p.add_argument("--label", help="file name stem for the results (default: <device>-<backbone>)")


def cmd_bench(args) -> int:
    from harness.bench import BenchConfig, run_bench
    from harness.config import parse_assignments
    cfg = BenchConfig(videos=args.videos, minutes=args.minutes, height=args.height, width=args.width, fps=args.fps,
                      gop=args.gop, questions=args.questions, frames=args.frames, backbone=args.backbone,
                      device=args.device, dtype=args.dtype, decode_backend=args.decode_backend, workers=args.workers,
                      batch_size=args.batch_size, video_dir=args.video_dir, out=args.out, label=args.label,
                      prefill_repeats=args.prefill_repeats, matmul_size=args.matmul_size)
    if args.backbone_arg is not None:
        cfg.backbone_args = parse_assignments(args.backbone_arg, "--backbone-arg")
    report = run_bench(cfg, log=lambda line: print(line, file=sys.stderr))
    from harness.bench import render_markdown
    print(render_markdown(report), end="")
    return 0


def _add_select(sub) -> None:
    from harness.config import RunConfig
    d = RunConfig()
    p = sub.add_parser(
        "select", help="write one sampler's frame selections for a task to a file (no backbone)", epilog=EPILOG,
        description="One record per question: question (sample) id, video, grid rule, grid positions, native frame "
                    "indices, timestamps in seconds, sampler and config hash; records of questions that failed "
                    "carry `selection: null` and the error. The harness format replays with "
                    "`--sampler replay:file=FILE`; tspo-json is TSPO's jsons_idx format (the annotation list plus "
                    "`frame_idx`).")
    _add_task_options(p, d)
    _add_sampler_options(p, d, many=False)
    p.add_argument("--out", dest="out_file", required=True, help="output file")
    p.add_argument("--format", default="harness", choices=["harness", "tspo-json"])
    p.add_argument("--annotations", help="tspo-json: the TSPO-format annotation file whose records it copies "
                                         "(default: the task's own annotations= file)")


def _add_features(sub) -> None:
    from harness.config import RunConfig
    d = RunConfig()
    p = sub.add_parser(
        "features", help="precompute a task's frame features and scores into the feature store", epilog=EPILOG,
        description="One decode pass per video computes the image features of its candidate grid under every "
                    "--encoder (CLIP, open_clip) or, for a BLIP encoder, the image-text matching score of every "
                    "question. What is cached is skipped: rerun after an interruption to resume. Exit code 3 when "
                    "some videos failed.")
    _add_task_options(p, d)
    p.add_argument("--encoder", action="append", required=True, metavar="ENCODER",
                   help="hub id, folder, shipped name (mini-clip) or open_clip:NAME:PRETRAINED; repeatable")
    p.add_argument("--query", default="question", choices=["question", "question+options"],
                   help="text scored against the frames (default question)")


def _add_compare_options(p) -> None:
    p.add_argument("--baseline", default="uniform", help="sampler name or spec every run is compared with "
                                                         "(default uniform)")
    p.add_argument("--by", default="category", help="category key for the breakdown, 'category' for all, "
                                                    "'none' for none (default category)")
    p.add_argument("--resamples", type=int, default=10000, help="paired bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--questions", type=int, default=20, help="questions in the HTML report's browser (default 20)")


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="accuracy differences to a baseline with bootstrap CIs and McNemar tests", epilog=EPILOG,
        description="Runs are grouped by (task, backbone, K) and compared with the group's baseline run on the "
                    "questions both answered: difference, 95% paired-bootstrap CI, exact McNemar p; parse failures, "
                    "evidence recall, frames per question. --report DIR also writes the tables (md, csv, tex, "
                    "json), plots (png, svg) and a self-contained report.html.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex", "json"])
    p.add_argument("--mcnemar", default="exact", choices=["exact", "chi2-cc"], help="McNemar variant")
    p.add_argument("--leaderboard", metavar="FILE", help="also write the table to FILE (.md, .csv, .tex, .json)")
    p.add_argument("--report", metavar="DIR", help="write tables, plots and report.html to DIR")
    p.add_argument("--decode-backend", default="decord", help="for the report's thumbnails (default decord)")
    _add_compare_options(p)


def _add_sweep(sub) -> None:
    from harness.config import RunConfig
    d = RunConfig()
    p = sub.add_parser(
        "sweep", help="run a grid of frame budgets (and options) for several samplers, then compare", epilog=EPILOG,
        description="Every combination of --frames and --set values is one `harness run` (resumable, sharing the "
                    "feature store); then the comparison, plots and report.html go to --report.")
    _add_task_options(p, d)
    p.add_argument("--sampler", action="append", required=True, metavar="S1,S2,...",
                   help="samplers, comma-separated or repeated (a comma starts a new sampler only before a "
                        "sampler name, so `aks:t1=0.2,depth=3` stays whole)")
    p.add_argument("--frames", required=True, help="frame budgets, e.g. 8,16,32,64")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                   help="another axis: a run option (grid, short_grid, ...) or task.KEY / backbone.KEY")
    p.add_argument("--short-grid", choices=["all", "repeat"], help=f"(default {d.short_grid})")
    p.add_argument("--backbone", help=f"backbone name (default {d.backbone})")
    p.add_argument("--backbone-arg", action="append", default=[], metavar="KEY=VALUE", help="backbone option")
    p.add_argument("--out", help=f"directory of run directories (default {d.out})")
    p.add_argument("--report", default="results/sweep", metavar="DIR",
                   help="where the tables, plots and report.html go (default results/sweep)")
    _add_compare_options(p)


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert a published checkpoint to the layout the harness loads",
                       epilog=EPILOG)
    csub = p.add_subparsers(dest="convert_command", metavar="FORMAT", required=True)
    p = csub.add_parser("llava-video", epilog=EPILOG,
                        help="LLaVA-NeXT layout (lmms-lab/LLaVA-Video-7B-Qwen2) -> transformers LLaVA-OneVision",
                        description="Maps every tensor (an unmapped one is an error), keeps dtypes and shards, and "
                                    "writes the processor and the original's video settings (llava_video.json).")
    p.add_argument("src", metavar="SRC", help="original checkpoint folder")
    p.add_argument("dst", metavar="DST", help="new folder (must not exist, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it holds a converted checkpoint")


def _add_train(sub) -> None:
    # The trainer's options come from its config class, which imports torch: they are built only when `harness
    # train` runs (train_parser), so other commands start fast.
    p = sub.add_parser("train", help="train the TSPO temporal agent, or plot a training run (harness train --help)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)


def train_parser() -> argparse.ArgumentParser:
    """`harness train tspo`: one option per field of TSPOTrainConfig (its defaults are the official run's)."""
    import dataclasses

    from harness.train.tspo import TSPOTrainConfig
    p = argparse.ArgumentParser(prog="harness train", epilog=EPILOG)
    tsub = p.add_subparsers(dest="train_command", metavar="ACTION", required=True)
    t = tsub.add_parser("tspo", epilog=EPILOG, help="group policy optimisation of the TSPO selector",
                        description="G Gumbel top-k rollouts per question answered by the frozen backbone, reward "
                                    "accuracy + temporal overlap, group-normalised advantages (tspo.md section 4). "
                                    "Rerun the same command to resume; torchrun runs it data-parallel. The trained "
                                    "agent is exported to OUT/agent (use --sampler tspo:agent=OUT/agent).")
    lists = {"task_args": "--task-arg", "backbone_args": "--backbone-arg", "watch": "--watch"}
    for f in dataclasses.fields(TSPOTrainConfig):
        flag = lists.get(f.name, "--" + f.name.replace("_", "-"))
        if f.name in lists:
            t.add_argument(flag, dest=f.name, action="append", default=[],
                           metavar="KEY=VALUE" if f.name != "watch" else "ID")
        elif f.name == "out":
            t.add_argument("--out", required=True, help="the run directory")
        elif f.type in (bool, "bool"):
            t.add_argument(flag, dest=f.name, type=lambda v: v.lower() in ("1", "true", "yes"), metavar="BOOL",
                           help=f"(default {f.default})")
        elif f.name == "betas":
            continue
        else:
            t.add_argument(flag, dest=f.name, metavar=f.name.upper(),
                           help=f"(default {f.default if f.default is not dataclasses.MISSING else '-'})")
    pl = tsub.add_parser("plot", epilog=EPILOG, help="reward curve and a question's score curves over training")
    pl.add_argument("run", metavar="RUN")
    pl.add_argument("--question", help="a watched question id (default: the first watched)")
    pl.add_argument("--steps", help="steps to show, e.g. 0,20,40 (default: --count spread over the run)")
    pl.add_argument("--count", type=int, default=4)
    pl.add_argument("--out", help="folder (default RUN/plots)")
    return p


def _add_miniworld(sub) -> None:
    p = sub.add_parser("miniworld", help="train or evaluate the shipped mini models (mini-clip, mini-qwen2.5-vl)",
                       epilog=EPILOG, description="`harness miniworld clip train|eval ...` and `harness miniworld "
                                                  "qwen train ...` run harness.miniworld.clip / .qwen; "
                                                  "`harness miniworld MODEL --help` lists their options.")
    p.add_argument("model", choices=["clip", "qwen"])
    p.add_argument("args", nargs=argparse.REMAINDER, help="the model's own command and options")


def _config(args):
    """RunConfig from --config plus the command line (only options this command has)."""
    from harness.config import RunConfig, parse_assignments
    cfg = RunConfig.from_file(args.config) if args.config else RunConfig()
    for f in fields(RunConfig):
        if f.name in ("task_args", "backbone_args"):
            if hasattr(args, f.name[:-1]):
                extra = parse_assignments(getattr(args, f.name[:-1]), f"--{f.name[:-1].replace('_', '-')}")
                setattr(cfg, f.name, {**getattr(cfg, f.name), **extra})
            continue
        value = getattr(args, "sampler", None) if f.name == "samplers" else getattr(args, f.name, None)
        if f.name == "samplers" and isinstance(value, str):
            value = [value]
        if value is not None:
            setattr(cfg, f.name, value)
    if args.video_root:
        cfg.task_args = {**cfg.task_args, "video_root": args.video_root}
    if args.skip_missing:
        cfg.task_args = {**cfg.task_args, "skip_missing": True}
    return cfg


def _progress(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def feature_summary(stats) -> str:
    """One line on what the feature store did: how much was decoded, how much came from the cache."""
    cached = sum(v for k, v in stats.items() if k.endswith("_cached"))
    computed = sum(v for k, v in stats.items() if k.endswith("_computed"))
    return (f"feature store: {stats.get('videos_decoded', 0)} videos decoded ({stats.get('frames_decoded', 0)} "
            f"frames), {computed} entries computed, {cached} read from the cache")


def cmd_run(args) -> int:
    from harness.runner import Run
    run = Run(_config(args), debug=args.debug, progress=_progress(args))
    run_dirs = run.execute()
    if not run.world.is_main:  # rank 0 reports for everyone (it merged the ranks' rows)
        return 0
    from harness.report import collect, render
    print(render(collect(run_dirs, by="category"), "rich"), end="")
    print(feature_summary(run.inputs.stats))
    if not getattr(run.backbone, "answers", True) and run.questions:
        per = 1000 * run.seconds / (run.questions * len(run.samplers))
        print(f"selection only: {run.questions} questions x {len(run.samplers)} samplers in {run.seconds:.1f} s "
              f"({per:.1f} s per 1000 questions per sampler, feature computation included)")
    for d in run_dirs:
        print(f"run directory: {d}")
    return 0


def cmd_select(args) -> int:
    from harness.runner import Selector
    from harness.selections import rows_to_tspo, write_records
    cfg = _config(args)
    if len(cfg.samplers) != 1:
        raise HarnessError(f"harness select takes exactly one sampler, got {len(cfg.samplers)}")
    selector = Selector(cfg, debug=args.debug, progress=_progress(args))
    samples = selector.samples()
    shares = selector.world.gather(list(selector.records(selector.my_share(samples))))
    if not selector.world.is_main:  # rank 0 writes the one file
        return 0
    by_id = {(r["sample_id"]): r for share in shares for r in share}
    records = [by_id[s.id] for s in samples]  # dataset order, whatever rank answered
    failed = [r for r in records if r.get("selection", True) is None]
    if args.format == "tspo-json":
        annotations = args.annotations or getattr(selector.task, "annotations", None)
        if not annotations:
            raise HarnessError("--format tspo-json needs --annotations (a TSPO-format annotation file)")
        print(rows_to_tspo(records, annotations, args.out_file, samples).summary())
    else:
        sampler = selector.samplers[0]
        header = {"task": {"name": selector.task.name, "config": selector.task.config()}, "frames": cfg.frames,
                  "grid": selector.grid_rule, "short_grid": cfg.short_grid,
                  "sampler": {"name": sampler.name, "config": sampler.config(), "config_hash": sampler.config_hash}}
        print(f"wrote {write_records(records, args.out_file, header)} selections to {args.out_file}")
    for r in failed[:5]:
        print(f"harness: {r['sample_id']}: {r['error']}", file=sys.stderr)
    if failed:
        print(f"harness: {len(failed)} of {len(records)} questions have no selection", file=sys.stderr)
    return 3 if failed else 0


def cmd_features(args) -> int:
    from harness.runner import Selector, compute_features
    cfg = _config(args)
    cfg.samplers = []
    selector = Selector(cfg, debug=args.debug, progress=_progress(args))
    counts, failed = compute_features(selector, args.encoder, args.query)
    world = selector.world  # with several ranks each reports its own share of the videos
    print((f"rank {world.rank}/{world.size}: " if world.size > 1 else "") + feature_summary(counts))
    for line in failed:
        print(f"harness: {line}", file=sys.stderr)
    return 3 if failed else 0


def _by(args):
    return None if args.by == "none" else args.by


def cmd_compare(args) -> int:
    from harness.compare import compare, render, write_leaderboard
    c = compare(args.run_dirs, baseline=args.baseline, by=_by(args), n_resamples=args.resamples, seed=args.seed,
                mcnemar_method=args.mcnemar)
    sys.stdout.write(render(c, args.format))
    if args.leaderboard:
        print(f"leaderboard: {write_leaderboard(c, args.leaderboard)}")
    if args.report:
        from harness.sweep import write_report
        files = write_report(args.run_dirs, args.report, baseline=args.baseline, by=_by(args),
                             questions=args.questions, decode_backend=args.decode_backend, seed=args.seed,
                             n_resamples=args.resamples)
        for line in files["skipped"]:
            print(f"harness: {line}", file=sys.stderr)
        print(f"report: {files['report.html']}")
    return 0


def cmd_sweep(args) -> int:
    from harness.sweep import expand, parse_sets, run_grid, split_samplers, write_report
    cfg = _config(args)
    cfg.samplers = split_samplers(args.sampler)
    try:
        frames = [int(k) for k in args.frames.split(",") if k.strip()]
    except ValueError:
        raise HarnessError(f"--frames {args.frames!r}: expected budgets like 8,16,32,64") from None
    run_dirs = run_grid(expand(cfg, frames, parse_sets(args.set)), debug=args.debug, progress=_progress(args))
    files = write_report(run_dirs, args.report, baseline=args.baseline, by=_by(args), questions=args.questions,
                         decode_backend=cfg.decode_backend, seed=args.seed, n_resamples=args.resamples)
    print(Path(files["table.md"]).read_text(), end="")
    for line in files["skipped"]:
        print(f"harness: {line}", file=sys.stderr)
    print(f"report: {files['report.html']}")
    return 0


def cmd_convert(args) -> int:
    from harness.convert import convert_llava_video
    done = convert_llava_video(args.src, args.dst, overwrite=args.overwrite, log=print)
    print(f"converted {done['tensors']} tensors in {done['shards']} shard(s) to {done['dst']}"
          + (f"; dropped: {', '.join(done['dropped'])}" if done.get("dropped") else ""))
    return 0


def cmd_train(outer) -> int:
    args = train_parser().parse_args(outer.rest)
    if args.train_command == "plot":
        from harness.train.plot import plot_run
        steps = [int(x) for x in args.steps.split(",")] if args.steps else None
        for path in plot_run(args.run, out=args.out, question=args.question, steps=steps, count=args.count):
            print(path)
        return 0
    import dataclasses

    from harness.config import parse_assignments, parse_value
    from harness.train.tspo import TSPOTrainConfig, train_tspo
    values = {}
    for f in dataclasses.fields(TSPOTrainConfig):
        value = getattr(args, f.name, None)
        if f.name in ("task_args", "backbone_args"):
            value = parse_assignments(value, f"--{f.name[:-1].replace('_', '-')}")
        elif isinstance(value, str) and "str" not in str(f.type):
            value = parse_value(value)  # numbers and booleans from the command line; text options stay text
        if value is not None and value != []:
            values[f.name] = value
    run = Path(train_tspo(TSPOTrainConfig(**values).validate()))
    print(f"training run: {run}\ntrained agent: {run / 'agent'} (sample with --sampler tspo:agent={run / 'agent'}"
          f",encoder=...)")
    return 0


def cmd_miniworld(args) -> int:
    import importlib
    importlib.import_module(f"harness.miniworld.{args.model}").main(args.args)
    return 0


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
            opts = [f"{p['name']}={p['default']!r}" + (f" ({' | '.join(map(str, p['choices']))})" if p["choices"] else "")
                    for p in e["params"] if p["name"] not in ("device", "dtype")]  # every backbone takes both
            table.add_row(escape(e["name"]), escape(e["description"]), escape("\n".join(opts) or "-"))
        console.print(table)
    return 0


def cmd_table(args) -> int:
    from harness.report import collect, render
    sys.stdout.write(render(collect(args.run_dirs, by=args.by), args.format))
    return 0


def cmd_prompts(args) -> int:
    from harness.config import parse_assignments
    from tasks.benchmark import prompts_command
    sys.stdout.write(prompts_command(args.task, args.backbone, parse_assignments(args.task_arg, "--task-arg"),
                                     limit=args.limit, fmt=args.format, style=args.style))
    return 0


def cmd_data(args) -> int:
    from harness.config import parse_assignments
    from harness.datacheck import data_check_command
    text, code = data_check_command(args.task, parse_assignments(args.task_arg, "--task-arg"),
                                    video_root=args.video_root, backend=args.decode_backend, as_json=args.json,
                                    progress=sys.stderr.isatty())
    sys.stdout.write(text)
    return code


def cmd_selections(args) -> int:
    from harness.selections import run_to_harness, run_to_tspo
    if args.format == "tspo":
        if not args.annotations:
            raise HarnessError("--format tspo needs --annotations (the benchmark's annotation file)")
        print(run_to_tspo(args.run_dir, args.annotations, args.out).summary())
    else:
        print(f"wrote {run_to_harness(args.run_dir, args.out)} selections to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", epilog=EPILOG,
        description="longvideo-harness: evaluate frame selection for long-video question answering.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    _add_bench(sub)
    _add_select(sub)
    _add_features(sub)
    _add_compare(sub)
    _add_sweep(sub)
    _add_convert(sub)
    _add_miniworld(sub)
    _add_train(sub)
    p = sub.add_parser("list", help="list registered tasks, backbones and samplers", epilog=EPILOG)
    p.add_argument("kind", nargs="?", choices=["tasks", "backbones", "samplers"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("table", help="accuracy table of run directories", epilog=EPILOG,
                       description="Accuracy per run (rows: backbone/sampler/K; columns: task overall and "
                                   "categories), recomputed from predictions.jsonl.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--by", metavar="KEY", help="break down by a category key, or 'category' for all of them")
    p.add_argument("--format", default="rich", choices=["rich", "md", "csv", "latex", "json"])
    p = sub.add_parser("prompts", help="print the exact prompts a task gives a backbone", epilog=EPILOG,
                       description="The exact text each sample of a task gets under a backbone's prompt style "
                                   "(lmms-eval's per-model key).")
    p.add_argument("--task", required=True, help="task name")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="task option")
    p.add_argument("--backbone", help="backbone whose prompt style to use (default: style 'default')")
    p.add_argument("--style", help="prompt style, overriding the backbone's (e.g. default, llava_vid)")
    p.add_argument("--limit", type=int, help="the same stratified subset as `harness run --limit`")
    p.add_argument("--format", default="text", choices=["text", "jsonl"])
    p = sub.add_parser("data", help="check a task's annotations and videos", epilog=EPILOG)
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = dsub.add_parser("check", help="counts, readable videos, decoder vs annotation durations", epilog=EPILOG,
                        description="Exit code 0 when every video is ok, 3 when some are missing, unreadable or "
                                    "of the wrong duration.")
    p.add_argument("--task", required=True, help="task name")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="task option")
    p.add_argument("--video-root", help="directory holding the videos (the task's video_root)")
    p.add_argument("--decode-backend", default="decord", help="decord, pyav or torchcodec (default decord)")
    p.add_argument("--json", action="store_true", help="machine-readable output (summary and one row per video)")
    p = sub.add_parser("selections", help="export a run's frame selections", epilog=EPILOG)
    ssub = p.add_subparsers(dest="selections_command", metavar="ACTION", required=True)
    p = ssub.add_parser("export", help="write a run's selections in the harness's or TSPO's jsons_idx format",
                        epilog=EPILOG, description="The harness format replays with `--sampler replay:file=FILE`; "
                                                   "the TSPO format is the annotation list plus `frame_idx`.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", default="harness", choices=["harness", "tspo"])
    p.add_argument("--annotations", help="annotation file the TSPO format copies its records from")
    return parser


COMMANDS = {"bench": cmd_bench, "run": cmd_run, "select": cmd_select, "features": cmd_features, "compare": cmd_compare,
            "sweep": cmd_sweep, "convert": cmd_convert, "miniworld": cmd_miniworld, "train": cmd_train, "list": cmd_list, "table": cmd_table, "prompts": cmd_prompts, "data": cmd_data,
            "selections": cmd_selections}


def main(argv=None) -> int:
    # The harness draws its own progress; per-file "Loading weights" bars of transformers/huggingface_hub would
    # bury its one-line messages (read once, when they are first imported, which happens after this).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":  # imported already
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":  # its own parser reads the rest (options such as --help included)
        args.rest = extra + args.rest
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except HarnessError as e:
        if args.debug:
            raise
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless --debug
        if args.debug:
            raise
        print(f"harness: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
