"""`harness models fetch` (the checkpoints the recipes need) and `harness reproduce` (recipes/*.toml: published
numbers, the harness commands that measure them, and a verdict table)."""
from __future__ import annotations

import sys

from harness.cli.common import EPILOG, status

REPRODUCE_CODES = ("Exit code 0 when every cell is within its tolerance (or --list / --dry-run), 2 for bad input "
                   "(unknown recipe, data or model not fetched), 3 for a fault of the machine, 4 when some cell "
                   "is outside its tolerance. Rerunning resumes: finished run directories are reused.")


def add_models(p) -> None:
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    f = msub.add_parser("fetch", epilog=EPILOG, help="download checkpoints the recipes need, pinned to a commit",
                        description="Downloads into the Hugging Face cache (converting where a backbone loads a "
                                    "converted folder). Offline (HF_HUB_OFFLINE=1): one line per model saying what "
                                    "would be fetched from where, exit 0. Exit 3: disk too small, checksum "
                                    "mismatch (the file is removed) or hub unreachable; rerun to resume.")
    f.add_argument("names", nargs="+", metavar="NAME", help="model name (see `harness models list`) or all")
    f.add_argument("--revision", help="commit or tag (default: the commit pinned by the first fetch)")
    msub.add_parser("list", epilog=EPILOG, help="the models `harness models fetch` knows")


def cmd_models(args) -> int:
    from harness.fetch import catalog, hub, jobs

    if args.models_command == "list":
        for m in catalog.MODELS.values():
            print(f"{m.name:24} {m.repo:34} about {hub.gigabytes(m.approx_bytes):>8}  {m.note}")
        return 0
    names = list(catalog.MODELS) if args.names == ["all"] else args.names
    sources = [catalog.model(n) for n in names]  # every name checked before anything is fetched
    for src in sources:
        if hub.is_offline():
            print(jobs.model_offline_line(src, args.revision))
        else:
            print(f"{src.name}: {jobs.fetch_model(src, args.revision, progress=sys.stderr.isatty(), log=status)}")
    return 0


def add_reproduce(p) -> None:
    p.description = ("Run a published table's cells with the harness and compare: published, measured, difference, "
                     "within tolerance. " + REPRODUCE_CODES)
    p.add_argument("name", nargs="?", metavar="NAME", help="recipe name (see --list)")
    p.add_argument("--list", action="store_true", help="list the recipes")
    p.add_argument("--dry-run", action="store_true", help="print the runs a recipe makes, run nothing")
    p.add_argument("--cell", action="append", default=[], metavar="CELL", help="only this cell (repeatable)")
    p.add_argument("--limit", type=int, help="a category-stratified subset of N questions per cell (a quick check; "
                                             "the verdict then compares a subset with the full-set number)")
    p.add_argument("--data-root", help="root the benchmarks were fetched to (default $HF_HOME)")
    p.add_argument("--out", default="runs", help="directory of run directories (default runs)")
    p.add_argument("--cache-dir", default=".cache/features", help="feature cache (default .cache/features)")
    p.add_argument("--device", help="torch device of every cell (default: the recipe's)")
    p.add_argument("--workers", type=int, default=0, help="decode processes per run (speed only)")
    p.add_argument("--batch-size", type=int, default=1, help="questions per backbone call (speed only)")
    p.add_argument("--decode-backend", help="decoder of every run (default: harness run's; frames are identical)")
    p.add_argument("--gpu-decoders", type=int, default=0, metavar="M",
                   help="NVDEC decoders beside the --workers decode processes (speed only; docs/decode.md)")
    p.add_argument("--nvdec-processes", action="store_true",
                   help="the NVDEC decoders as worker processes, not threads (speed only)")
    p.add_argument("--recipes", metavar="DIR", help="folder of recipe files (default: the repository's recipes/)")


def cmd_reproduce(args) -> int:
    from harness.errors import HarnessError
    from harness.reproduce.recipe import load_recipes
    from harness.reproduce.runner import Settings, list_table, reproduce

    recipes = load_recipes(args.recipes)
    if args.list:
        print(list_table(recipes), end="")
        return 0
    if not args.name:
        raise HarnessError("reproduce needs a recipe NAME or --list")
    if args.name not in recipes:
        import difflib
        close = difflib.get_close_matches(args.name, sorted(recipes), n=1, cutoff=0.5)
        raise HarnessError(f"unknown recipe {args.name!r}" + (f"; did you mean {close[0]}?" if close else "")
                           + " (see harness reproduce --list)")
    settings = Settings(out=args.out, cache_dir=args.cache_dir, device=args.device, workers=args.workers,
                        batch_size=args.batch_size, decode_backend=args.decode_backend,
                        gpu_decoders=args.gpu_decoders, nvdec_processes=args.nvdec_processes, limit=args.limit,
                        data_root=args.data_root, cells=args.cell,
                        progress=sys.stderr.isatty(), debug=args.debug)
    text, ok = reproduce(recipes[args.name], settings, dry_run=args.dry_run, log=status)
    print(text, end="")
    return 0 if ok or args.dry_run else 4


COMMANDS = {"models": (add_models, cmd_models), "reproduce": (add_reproduce, cmd_reproduce)}
