"""`harness data check`: a task's annotations and videos, before a run needs them; `harness data fetch`: download
and unpack them (harness.fetch)."""
from __future__ import annotations

import sys

from harness.cli.common import EPILOG


def add_data(p) -> None:
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = dsub.add_parser("check", help="counts, readable videos, decoder vs annotation durations", epilog=EPILOG,
                        description="Exit code 0 when every video is ok, 3 when some are missing, unreadable or "
                                    "of the wrong duration.")
    p.add_argument("--task", required=True, help="task name")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="task option")
    p.add_argument("--video-root", help="directory holding the videos (the task's video_root)")
    p.add_argument("--decode-backend", default="decord", help="decord, pyav or torchcodec (default decord)")
    p.add_argument("--json", action="store_true", help="machine-readable output (summary and one row per video)")
    add_fetch(dsub)


def add_fetch(dsub) -> None:
    f = dsub.add_parser("fetch", help="download and unpack a benchmark's annotations and videos, then check them",
                        epilog=EPILOG, description=FETCH_CODES)
    f.add_argument("--task", required=True, help="longvideobench, mlvu, videomme or lvbench")
    f.add_argument("--root", help="data root (default $HF_HOME: lmms-eval's layout, where the tasks look)")
    f.add_argument("--revision", help="commit or tag (default: the commit pinned by the first fetch)")
    f.add_argument("--keep-archives", action="store_true", help="keep the zip/tar files after unpacking")
    f.add_argument("--no-check", action="store_true", help="skip `harness data check` at the end")
    f.add_argument("--decode-backend", default="decord", help="decoder of the final check (default decord)")


FETCH_CODES = ("Exit code 0 when everything is fetched and checked (offline, HF_HUB_OFFLINE=1: after one line saying "
               "what would be fetched from where); 2 for bad input; 3 when the disk is too small, a checksum does "
               "not match (the file is removed), the hub cannot be reached or the check finds bad videos. Rerun to "
               "resume.")


def cmd_fetch(args) -> int:
    from harness.cli.common import status
    from harness.fetch import catalog, hub, jobs

    src = catalog.dataset(args.task)
    root = catalog.data_root(args.root)
    if hub.is_offline():
        print(jobs.dataset_offline_line(src, root, args.revision))
        return 0
    where = jobs.fetch_dataset(src, root, args.revision, args.keep_archives, progress=sys.stderr.isatty(),
                               log=status)
    print(f"{args.task}: annotations={where['annotations']} video_root={where['video_root']}")
    if args.no_check:
        return 0
    from harness.video.datacheck import data_check_command

    text, code = data_check_command(args.task, {"annotations": where["annotations"]},
                                    video_root=where["video_root"], backend=args.decode_backend, as_json=False,
                                    progress=sys.stderr.isatty())
    sys.stdout.write(text)
    return code


def cmd_data(args) -> int:
    if args.data_command == "fetch":
        return cmd_fetch(args)
    from harness.config import parse_assignments
    from harness.video.datacheck import data_check_command

    text, code = data_check_command(args.task, parse_assignments(args.task_arg, "--task-arg"),
                                    video_root=args.video_root, backend=args.decode_backend, as_json=args.json,
                                    progress=sys.stderr.isatty())
    sys.stdout.write(text)
    return code


COMMANDS = {"data": (add_data, cmd_data)}
