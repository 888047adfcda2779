"""`harness export`: a run's answers in the files lmms-eval, VLMEvalKit and the LongVideoBench leaderboard read
(harness.export; docs/export.md)."""
from __future__ import annotations



def add_export(p) -> None:
    from harness.export import DEFAULT_OUT, FORMATS

    p.description = ("Write a run's answers in a toolkit's own files. lmms-eval: <date>_results.json and "
                     "<date>_samples_<task>.jsonl under OUT/<model>/ (lmms-eval 0.7.3's --log_samples layout). "
                     "vlmevalkit: the prediction .xlsx VLMEvalKit's evaluate reads (runs made with --protocol "
                     "vlmevalkit; Video-MME, LongVideoBench, MLVU). longvideobench-submission: the leaderboard's "
                     "JSON, question id -> answer text. Every exported sample carries its harness sample id; error "
                     "rows and parse failures are exported as what they are. A RUN_DIR may be a folder of run "
                     "directories (one per sampler and K): each is exported to OUT/<run directory name>/.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory, or a folder of them")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--out", metavar="PATH", help=f"output folder, or file (.xlsx, .json) for one run "
                                                 f"(default {DEFAULT_OUT})")
    p.add_argument("--sampler", metavar="SPEC", help="only the runs of this sampler (the spec as typed, or its name)")
    p.add_argument("--frames", type=int, metavar="K", help="only the runs with K frames")


def cmd_export(args) -> int:
    from harness.export import export

    for run_dir, files in export(args.run_dirs, args.format, args.out, args.sampler, args.frames):
        print(f"{run_dir}: " + ", ".join(str(f) for f in files))
    return 0


COMMANDS = {"export": (add_export, cmd_export)}
