"""The `harness` command line (also `python -m harness`): the dispatcher.

Each command lives in a module of its group (evaluate, results, data, tools) as a pair: a function that adds its
options to its subparser and one that runs it. Only the module of the command being run is imported and only its
options are built, so `harness --help` and light commands start without torch, pandas or the registries.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import signal
import sys
import threading

from harness.cli.common import EPILOG
from harness.errors import HarnessError, fatal_line, is_fatal

# command -> (module under harness.cli, one line for `harness --help`), in the order --help lists them
COMMANDS = {
    "run": ("evaluate", "evaluate samplers on a task with a backbone (no arguments: the offline default)"),
    "bench": ("tools", "questions per second: an lmms-eval-style loop written here against the harness "
                       "runner, on a generated video set"),
    "select": ("evaluate", "write one sampler's frame selections for a task to a file (no backbone)"),
    "features": ("evaluate", "precompute a task's frame features and scores into the feature store"),
    "compare": ("results", "accuracy differences to a baseline with bootstrap CIs and McNemar tests"),
    "sweep": ("evaluate", "run a grid of frame budgets (and options) for several samplers, then compare"),
    "convert": ("tools", "convert a published checkpoint to the layout the harness loads"),
    "miniworld": ("tools", "train or evaluate the shipped mini models (mini-clip, mini-qwen2.5-vl)"),
    "train": ("tools", "train the TSPO temporal agent, or plot a training run (harness train --help)"),
    "list": ("tools", "list registered tasks, backbones and samplers"),
    "table": ("results", "accuracy table of run directories"),
    "prompts": ("results", "print the exact prompts a task gives a backbone"),
    "data": ("data", "check a task's annotations and videos, or fetch them"),
    "models": ("reproduce", "fetch the checkpoints the reproduction recipes need"),
    "reproduce": ("reproduce", "run a published table's recipe and print a verdict (published vs measured)"),
    "selections": ("results", "export a run's frame selections"),
    "export": ("export", "write a run's answers for lmms-eval, VLMEvalKit or the LongVideoBench leaderboard"),
    "baseline": ("results", "save run directories as a regression baseline file (harness baseline save)"),
    "regress": ("results", "check runs against a baseline: exit 0 pass, 1 regression, 2 bad input"),
}


def _command(name: str):
    """(add options, run) of a command, importing its module."""
    return importlib.import_module(f"harness.cli.{COMMANDS[name][0]}").COMMANDS[name]


def _chosen(argv) -> str | None:
    """The command named in argv (only --debug and --help may come before it), or None."""
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def _close(word: str, known) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class Parser(argparse.ArgumentParser):
    """argparse with errors on one line (no usage block: `--help` has it) and a close match for a mistyped
    command or option."""

    def error(self, message: str):
        choice = re.match(r"argument .*: invalid choice: '(.*)' \(choose from (.*)\)$", message)
        if choice:
            message += _close(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def options(self) -> list[str]:
        return [o for action in self._actions for o in action.option_strings]


def _unknown(parser: Parser, args, extras: list[str]):
    """The error for arguments no option took, raised by the (sub)command's own parser, with the closest of its
    option strings for a mistyped option."""
    while True:  # down to the (sub)command that was chosen: its options are the ones meant
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, sub.dest, None) if sub is not None and sub.dest != argparse.SUPPRESS else None
        if name not in (sub.choices if sub is not None else {}):
            break
        parser = sub.choices[name]
    options = [e for e in extras if e.startswith("-")]
    if not options:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    option = options[0].split("=", 1)[0]
    parser.error(f"unknown option {option}{_close(option, parser.options())}")


def build_parser(configured=None) -> argparse.ArgumentParser:
    """The parser of every command; the options of those named in `configured` (None: all), the others listed by
    name and help line only."""
    parser = Parser(
        prog="harness", epilog=EPILOG,
        description="longvideo-harness: evaluate frame selection for long-video question answering.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, line) in COMMANDS.items():
        p = sub.add_parser(name, help=line, epilog=EPILOG)
        if configured is None or name in configured:
            _command(name)[0](p)
    return parser


def _terminated(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C does, so open run stores, locks and decode workers close before the exit."""
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    # The harness draws its own progress; per-file "Loading weights" bars of transformers/huggingface_hub would
    # bury its one-line messages (read once, when they are first imported, which happens after this).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":  # imported already
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = _chosen(argv)
    parser = build_parser([chosen] if chosen else [])
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            _unknown(parser, args, extras)
    except SystemExit as e:  # --help, or an error argparse printed on one line
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _command(args.command)[1](args)
    except HarnessError as e:
        if args.debug:
            raise
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        if is_fatal(e):  # the machine or the setup, not the input: fix it and rerun the same command
            print(f"harness: stopped: {fatal_line(e)} (fix it and rerun the same command to resume)", file=sys.stderr)
            return 3
        # a bug, not bad input: still one line unless --debug
        print(f"harness: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
