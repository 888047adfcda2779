"""Commands that evaluate frame selection on a task: `harness run`, `select`, `features` and `sweep`.

Their options are fields of RunConfig (harness.config), read over a --config file: what the command line names
wins, the file's values stay otherwise.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.cli.common import status
from harness.cli.options import add_options, read_options
from harness.errors import HarnessError

# The meaning of each RunConfig field as an option ({default}: the field's default).
RUN_HELP = {
    "task": "task name (default {default}; see `harness list tasks`)",
    "task_args": "task option",
    "grid": "candidate grid rule: 1fps, int-fps, fps:F, fps-round:F, qwen-fps:F, count:N, nframe:N, arange:N, "
            "1fps-max:N, 1fps-min:N, int-fps-min:N, all (README; default {default})",
    "limit": "deterministic category-stratified subset of N samples",
    "cache_dir": "feature cache directory (default {default})",
    "decode_backend": "decord, pyav, torchcodec or nvdec (GPU; docs/decode.md) (default {default})",
    "device": "torch device (default {default})",
    "dtype": "model dtype (default {default})",
    "samplers": "sampler, repeatable (default {default}), e.g. uniform:variant=linspace-round",
    "frames": "frame budget K (default {default})",
    "short_grid": "when the grid has fewer than K candidates: take all, repeat each to K, or linspace (K of them by "
                  "int(linspace(0, N-1, K))) (default {default})",
    "backbone": "backbone name (default {default})",
    "backbone_args": "backbone option",
    "out": "directory of run directories (default {default})",
    "workers": "decode processes that stay ahead of the backbone (default {default}; 0: decode in this process); "
               "does not change results",
    "gpu_decoders": "NVDEC decoders (threads of the main process; processes with --nvdec-processes) taking decode "
                    "jobs beside the --workers processes of a CPU --decode-backend; a video with B-frames, which "
                    "NVDEC does not take, goes to that backend, counted in the run's decode record (default "
                    "{default}; docs/decode.md); does not change results",
    "nvdec_processes": "the NVDEC decoders (--gpu-decoders, or the --workers of --decode-backend nvdec) as worker "
                       "processes, a CUDA context each, frames back through shared memory, instead of threads of the "
                       "main process (docs/decode.md); does not change results",
    "batch_size": "questions of one video per backbone call, those sharing frames first (default {default}); "
                  "does not change results",
    "frame_cache_mb": "MiB of decoded frames a video's feature pass keeps for its answers, so each video is decoded "
                      "once (default {default}; 0: the answer pass decodes again); does not change results",
    "gpus_per_replica": "GPUs one backbone replica spans, split layer by layer (default {default}); with torchrun, "
                        "data parallel across replicas: one process per G GPUs",
    "retry_errors": "re-do the samples whose rows are errors (after fixing what failed); the old error rows are "
                    "dropped and counted in events.jsonl",
}
CHOICES = {"dtype": {"choices": ["float32", "bfloat16", "float16"]},
           "short_grid": {"choices": ["all", "repeat", "linspace"]}}
SAMPLER = {"metavar": "NAME[:KEY=VALUE,...]"}


def _run_options(p, names, **extra) -> None:
    from harness.config import RunConfig

    add_options(p, RunConfig, names, RUN_HELP, **{**CHOICES, **extra})


def add_task_options(p) -> None:
    """Options of commands that walk a task's samples: which samples, which grid, where features live."""
    p.add_argument("--config", help="JSON or TOML file of run options (command-line options override it)")
    _run_options(p, ["task", "task_args", "grid", "limit", "cache_dir", "decode_backend", "device", "dtype"])
    p.add_argument("--video-root", help="directory holding the task's videos (task option video_root)")
    p.add_argument("--skip-missing", action="store_true",
                   help="drop samples whose video is missing, and record how many (task option skip_missing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--protocol", choices=("lmms-eval", "vlmevalkit"),
                   help="the toolkit whose prompts, answer matching and metrics a benchmark task follows (task "
                        "option protocol; default lmms-eval)")


def run_config(args):
    """RunConfig from --config plus the command line (only options this command has)."""
    from harness.config import RunConfig

    cfg = read_options(args, RunConfig, RunConfig.from_file(args.config) if args.config else RunConfig())
    if args.video_root:
        cfg.task_args = {**cfg.task_args, "video_root": args.video_root}
    if args.skip_missing:
        cfg.task_args = {**cfg.task_args, "skip_missing": True}
    if args.protocol:
        cfg.task_args = {**cfg.task_args, "protocol": args.protocol}
    return cfg.validate()


def progress(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def feature_summary(stats) -> str:
    """One line on what the feature store did: how much was decoded, how much came from the cache."""
    cached = sum(v for k, v in stats.items() if k.endswith("_cached"))
    computed = sum(v for k, v in stats.items() if k.endswith("_computed"))
    return (f"feature store: {stats.get('videos_decoded', 0)} videos decoded ({stats.get('frames_decoded', 0)} "
            f"frames), {computed} entries computed, {cached} read from the cache")


def add_run(p) -> None:
    p.description = ("Run a task with a backbone and one or more samplers. Each sampler gets its own run directory "
                     "(task, backbone, sampler, config hash) under --out; rerunning the same command resumes.")
    add_task_options(p)
    _run_options(p, ["samplers", "frames", "short_grid", "backbone", "backbone_args", "out", "workers", "gpu_decoders",
                     "nvdec_processes",
                     "batch_size", "frame_cache_mb", "gpus_per_replica", "retry_errors"], samplers=SAMPLER)


def cmd_run(args) -> int:
    from harness.run.runner import Run

    run = Run(run_config(args), debug=args.debug, progress=progress(args))
    run_dirs = run.execute()
    if not run.world.is_main:  # rank 0 reports for everyone (it merged the ranks' rows)
        return 0
    from harness.report.table import run_summary

    print(run_summary(run_dirs), end="")
    print(feature_summary(run.inputs.stats))
    if not run.backbone.answers and run.questions:
        per = 1000 * run.seconds / (run.questions * len(run.samplers))
        print(f"selection only: {run.questions} questions x {len(run.samplers)} samplers in {run.seconds:.1f} s "
              f"({per:.1f} s per 1000 questions per sampler, feature computation included)")
    for d in run_dirs:
        print(f"run directory: {d}")
    return 0


def add_select(p) -> None:
    p.description = ("One record per question: question (sample) id, video, grid rule, grid positions, native frame "
                     "indices, timestamps in seconds, sampler and config hash; records of questions that failed "
                     "carry `selection: null` and the error. The harness format replays with "
                     "`--sampler replay:file=FILE`; tspo is TSPO's jsons_idx format (the annotation list plus "
                     "`frame_idx`).")
    add_task_options(p)
    _run_options(p, ["samplers", "frames", "short_grid"],
                 samplers={**SAMPLER, "action": "store",
                           "help": "sampler, e.g. aks:mode=fixed (see `harness list samplers`)"})
    p.add_argument("--out", dest="out_file", required=True, help="output file")
    p.add_argument("--format", default="harness", choices=["harness", "tspo"])
    p.add_argument("--annotations", help="tspo: the TSPO-format annotation file whose records it copies "
                                         "(default: the task's own annotations= file)")


def cmd_select(args) -> int:
    from harness.run.selector import Selector
    from harness.store.selection_export import rows_to_tspo, write_records

    cfg = run_config(args)
    if len(cfg.samplers) != 1:
        raise HarnessError(f"harness select takes exactly one sampler, got {len(cfg.samplers)}")
    selector = Selector(cfg, debug=args.debug, progress=progress(args))
    samples = selector.samples()
    shares = selector.world.gather(list(selector.records(selector.my_share(samples))))
    if not selector.world.is_main:  # rank 0 writes the one file
        return 0
    by_id = {(r["sample_id"]): r for share in shares for r in share}
    records = [by_id[s.id] for s in samples]  # dataset order, whatever rank answered
    failed = [r for r in records if r.get("selection", True) is None]
    if args.format == "tspo":
        annotations = args.annotations or cfg.task_args.get("annotations")
        if not annotations:
            raise HarnessError("--format tspo needs --annotations (a TSPO-format annotation file)")
        print(rows_to_tspo(records, str(annotations), args.out_file, samples).summary())
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


def add_features(p) -> None:
    p.description = ("One decode pass per video computes the image features of its candidate grid under every "
                     "--encoder (CLIP, open_clip) or, for a BLIP encoder, the image-text matching score of every "
                     "question. What is cached is skipped: rerun after an interruption to resume. Exit code 3 when "
                     "some videos failed.")
    add_task_options(p)
    p.add_argument("--encoder", action="append", required=True, metavar="ENCODER",
                   help="hub id, folder, shipped name (mini-clip) or open_clip:NAME:PRETRAINED; repeatable")
    p.add_argument("--query", default="question", choices=["question", "question+options"],
                   help="text scored against the frames (default question)")


def cmd_features(args) -> int:
    from harness.run.selector import Selector, compute_features

    cfg = run_config(args)
    cfg.samplers = []
    selector = Selector(cfg, debug=args.debug, progress=progress(args))
    counts, failed = compute_features(selector, args.encoder, args.query)
    world = selector.world  # with several ranks each reports its own share of the videos
    print((f"rank {world.rank}/{world.size}: " if world.size > 1 else "") + feature_summary(counts))
    for line in failed:
        print(f"harness: {line}", file=sys.stderr)
    return 3 if failed else 0


def add_sweep(p) -> None:
    from harness.cli.results import add_compare_options

    p.description = ("Every combination of --frames and --set values is one `harness run` (resumable, sharing the "
                     "feature store); then the comparison, plots and report.html go to --report.")
    add_task_options(p)
    _run_options(p, ["samplers"], samplers={
        "required": True, "metavar": "S1,S2,...",
        "help": "samplers, comma-separated or repeated (a comma starts a new sampler only before a sampler name, "
                "so `aks:t1=0.2,depth=3` stays whole)"})
    # the budgets are an axis of the sweep, not one RunConfig value
    p.add_argument("--frames", dest="budgets", metavar="FRAMES", required=True,
                   help="frame budgets, e.g. 8,16,32,64")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                   help="another axis: a run option (grid, short_grid, ...) or task.KEY / backbone.KEY")
    _run_options(p, ["short_grid", "backbone", "backbone_args", "out"])
    p.add_argument("--report", default="results/sweep", metavar="DIR",
                   help="where the tables, plots and report.html go (default results/sweep)")
    add_compare_options(p)


def cmd_sweep(args) -> int:
    from harness.cli.results import write_report_bundle
    from harness.run.sweep import expand, parse_sets, run_grid, split_samplers

    cfg = run_config(args)
    cfg.samplers = split_samplers(cfg.samplers)
    try:
        frames = [int(k) for k in args.budgets.split(",") if k.strip()]
    except ValueError:
        raise HarnessError(f"--frames {args.budgets!r}: expected budgets like 8,16,32,64") from None
    configs = [c.validate() for c in expand(cfg, frames, parse_sets(args.set))]  # every run's, before the first
    run_dirs = run_grid(configs, debug=args.debug, progress=progress(args), log=status)
    files = write_report_bundle(args, run_dirs, cfg.decode_backend)
    print(Path(files["table.md"]).read_text(), end="")
    return 0


COMMANDS = {"run": (add_run, cmd_run), "select": (add_select, cmd_select), "features": (add_features, cmd_features),
            "sweep": (add_sweep, cmd_sweep)}
