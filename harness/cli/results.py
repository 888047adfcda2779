"""Commands that read what runs wrote: `harness compare`, `table`, `selections export`, `prompts`, `baseline save`
and `regress`."""
from __future__ import annotations

import sys

from harness.cli.common import EPILOG, status
from harness.errors import HarnessError


def add_compare_options(p) -> None:
    """The comparison and report options `compare` and `sweep` share."""
    p.add_argument("--baseline", default="uniform", help="sampler name or spec every run is compared with "
                                                         "(default uniform)")
    p.add_argument("--by", default="category", help="category key for the breakdown, 'category' for all, "
                                                    "'none' for none (default category)")
    p.add_argument("--resamples", type=int, default=10000, help="paired bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--cluster", default="auto", choices=["auto", "video", "none"],
                   help="bootstrap resampling: whole videos (video), questions (none), or videos where a video has "
                        "several questions (auto, default)")
    p.add_argument("--questions", type=int, default=20, help="questions in the HTML report's browser (default 20)")


def _by(args):
    return None if args.by == "none" else args.by


def write_report_bundle(args, run_dirs, decode_backend: str) -> dict:
    """The tables, plots and report.html of `args.report`; what it skipped and where the report is go to stderr."""
    from harness.report.bundle import write_bundle

    files = write_bundle(run_dirs, args.report, baseline=args.baseline, by=_by(args), questions=args.questions,
                         decode_backend=decode_backend, seed=args.seed, n_resamples=args.resamples,
                         cluster=args.cluster)
    for line in files["skipped"]:
        status(f"harness: {line}")
    status(f"report: {files['report.html']}")
    return files


def add_compare(p) -> None:
    p.description = ("Runs are grouped by (task, backbone, K) and compared with the group's baseline run on the "
                     "questions both answered: difference, 95% paired-bootstrap CI, exact McNemar p; parse failures, "
                     "evidence recall, frames per question. --report DIR also writes the tables (md, csv, tex, "
                     "json), plots (png, svg) and a self-contained report.html.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex", "json"])
    p.add_argument("--mcnemar", default="exact", choices=["exact", "chi2-cc"], help="McNemar variant")
    p.add_argument("--leaderboard", metavar="FILE", help="also write the table to FILE (.md, .csv, .tex, .json)")
    p.add_argument("--report", metavar="DIR", help="write tables, plots and report.html to DIR")
    p.add_argument("--decode-backend", default="decord", help="for the report's thumbnails (default decord)")
    add_compare_options(p)


def cmd_compare(args) -> int:
    from harness.report.compare import compare, render, write_leaderboard

    c = compare(args.run_dirs, baseline=args.baseline, by=_by(args), n_resamples=args.resamples, seed=args.seed,
                mcnemar_method=args.mcnemar, cluster=args.cluster)
    sys.stdout.write(render(c, args.format))  # only the table: --format json stays parseable
    if args.leaderboard:
        status(f"leaderboard: {write_leaderboard(c, args.leaderboard)}")
    if args.report:
        write_report_bundle(args, args.run_dirs, args.decode_backend)
    return 0


def add_table(p) -> None:
    p.description = ("Accuracy per run (rows: backbone/sampler/K; columns: task overall and categories), "
                     "recomputed from predictions.jsonl.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--by", metavar="KEY", help="break down by a category key, or 'category' for all of them")
    p.add_argument("--format", default="rich", choices=["rich", "md", "csv", "latex", "json"])


def cmd_table(args) -> int:
    from harness.report.table import collect, render

    sys.stdout.write(render(collect(args.run_dirs, by=args.by), args.format))
    return 0


def add_selections(p) -> None:
    ssub = p.add_subparsers(dest="selections_command", metavar="ACTION", required=True)
    p = ssub.add_parser("export", help="write a run's selections in the harness's or TSPO's jsons_idx format",
                        epilog=EPILOG, description="The harness format replays with `--sampler replay:file=FILE`; "
                                                   "the TSPO format is the annotation list plus `frame_idx`.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", default="harness", choices=["harness", "tspo"])
    p.add_argument("--annotations", help="annotation file the TSPO format copies its records from")


def cmd_selections(args) -> int:
    from harness.store.selection_export import run_to_harness, run_to_tspo

    if args.format == "tspo":
        if not args.annotations:
            raise HarnessError("--format tspo needs --annotations (the benchmark's annotation file)")
        print(run_to_tspo(args.run_dir, args.annotations, args.out).summary())
    else:
        print(f"wrote {run_to_harness(args.run_dir, args.out)} selections to {args.out}")
    return 0


def add_prompts(p) -> None:
    p.description = ("The exact text each sample of a task gets under a backbone's prompt style (lmms-eval's "
                     "per-model key).")
    p.add_argument("--task", required=True, help="task name")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="task option")
    p.add_argument("--backbone", help="backbone whose prompt style to use (default: style 'default')")
    p.add_argument("--style", help="prompt style, overriding the backbone's (e.g. default, llava_vid)")
    p.add_argument("--limit", type=int, help="the same stratified subset as `harness run --limit`")
    p.add_argument("--protocol", choices=("lmms-eval", "vlmevalkit"),
                   help="whose prompts: lmms-eval's or VLMEvalKit's (the task option protocol, as in harness run; "
                        "default: the task's)")
    p.add_argument("--format", default="text", choices=["text", "jsonl"])


def cmd_prompts(args) -> int:
    from harness.config import parse_assignments
    from harness.run.prompts import prompts_command

    sys.stdout.write(prompts_command(args.task, args.backbone, parse_assignments(args.task_arg, "--task-arg"),
                                     limit=args.limit, fmt=args.format, style=args.style, protocol=args.protocol))
    return 0


EXIT_CODES = "Exit codes: 0 every run passes, 1 a regression, 2 bad input (see docs/ci.md)"


def add_baseline(p) -> None:
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    p = bsub.add_parser("save", help="write the baseline file of finished run directories", epilog=EPILOG,
                        description="Per run its identity (task, backbone, sampler spec and config hash, K, grid, "
                                    "protocol), its subset (--limit), per sample the id, gold and parsed letters, "
                                    "correctness and a digest of the selected frame indices, and the summary "
                                    "metrics: a compact versioned JSON file to commit and check with harness "
                                    "regress. Regenerate it when a change of results is deliberate.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, metavar="FILE", help="baseline file to write (JSON)")


def cmd_baseline(args) -> int:
    from harness.report.baseline import save

    doc = save(args.run_dirs, args.out)
    n = sum(len(e["samples"]) for e in doc["runs"])
    print(f"wrote baseline {args.out}: {len(doc['runs'])} runs, {n} samples")
    return 0


def add_regress(p) -> None:
    p.description = ("Check runs against a baseline file (harness baseline save), each with the entry of its "
                     "identity, on the run's own samples (a --limit subset compares only its samples). "
                     "--mode exact: every parsed answer and selection as in the baseline. --mode accuracy: fail "
                     "when accuracy drops by more than --max-drop points and the exact McNemar test, Holm-adjusted "
                     "across the runs, is below --alpha. A run matching no baseline entry is bad input. "
                     + EXIT_CODES + ".")
    p.epilog = EXIT_CODES + ". " + EPILOG
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--baseline", required=True, metavar="FILE", help="baseline file from harness baseline save")
    p.add_argument("--mode", default="exact", choices=["exact", "accuracy"],
                   help="exact: any changed answer or selection fails; accuracy: a significant drop fails "
                        "(default exact)")
    p.add_argument("--max-drop", type=float, default=0.0, metavar="POINTS",
                   help="accuracy mode: drops of at most this many points pass (default 0)")
    p.add_argument("--alpha", type=float, default=0.05, help="accuracy mode: significance level of the "
                                                             "Holm-adjusted McNemar test (default 0.05)")
    p.add_argument("--format", default="rich", choices=["rich", "md", "json", "junit"],
                   help="what to print (default rich)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE (one test case per run)")
    p.add_argument("--show", type=int, default=10, metavar="N",
                   help="exact mode: differing samples listed per run (default 10)")


def cmd_regress(args) -> int:
    from harness.report.regress import regress
    from harness.report.regress_output import junit, render, summary_line
    from harness.util.fileio import atomic_write

    reg = regress(args.run_dirs, args.baseline, mode=args.mode, max_drop=args.max_drop, alpha=args.alpha,
                  shown=args.show)
    sys.stdout.write(render(reg, args.format))
    if args.junit:
        atomic_write(args.junit, junit(reg))
    if args.format in ("json", "junit"):  # stdout stays parseable: the verdict goes to stderr
        status(f"harness regress: {summary_line(reg)}")
    return reg.exit_code


COMMANDS = {"compare": (add_compare, cmd_compare), "table": (add_table, cmd_table),
            "selections": (add_selections, cmd_selections), "prompts": (add_prompts, cmd_prompts),
            "baseline": (add_baseline, cmd_baseline), "regress": (add_regress, cmd_regress)}
