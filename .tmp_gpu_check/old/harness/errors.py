"""User-facing errors: the CLI prints their message on one line and exits with code 2."""
from __future__ import annotations

import difflib


class HarnessError(Exception):
    """A problem with the user's input (name, file, option, data). Never a bug in the harness."""


class UnknownNameError(HarnessError):
    def __init__(self, kind: str, name: str, known):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {', '.join(known) or 'none'})")
        self.name, self.close = name, close


class VideoError(HarnessError):
    """A video that is missing, unreadable or corrupt."""
