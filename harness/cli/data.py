"""`harness data check`: a task's annotations and videos, before a run needs them."""
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


def cmd_data(args) -> int:
    from harness.config import parse_assignments
    from harness.video.datacheck import data_check_command

    text, code = data_check_command(args.task, parse_assignments(args.task_arg, "--task-arg"),
                                    video_root=args.video_root, backend=args.decode_backend, as_json=args.json,
                                    progress=sys.stderr.isatty())
    sys.stdout.write(text)
    return code


COMMANDS = {"data": (add_data, cmd_data)}
