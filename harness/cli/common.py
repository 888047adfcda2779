"""What the command modules share: the epilog on exit codes, and status lines (stderr, so that stdout holds only
what a command was asked to print)."""
from __future__ import annotations

import sys

EPILOG = ("Bad input (unknown name, missing file, malformed config) exits with code 2 and one line; --debug shows "
          "tracebacks.")


def status(line: str) -> None:
    """A line about what a command did (a file written, a step begun): stderr."""
    print(line, file=sys.stderr)
