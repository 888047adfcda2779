"""The two kinds of failure the harness reports on one line (docs/reliability.md):

* HarnessError: bad input (a name, file, option or record); the CLI exits with code 2.
* FatalError: a fault of the machine or the setup (cache or output unwritable, disk full, weights that give NaN, a
  backbone that cannot answer at all); the run stops, the CLI exits with code 3, and a rerun after the fix resumes
  and gives the exact result. OSError and MemoryError that reach the runner are treated the same way.

A fault of one sample (its video unreadable) is neither: it becomes that sample's error row and the run goes on.
"""
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


class UnsupportedStream(VideoError):
    """A readable video that one decoder does not take by design (nvdec: a stream with B-frames), not a fault of
    the file: another backend decodes it."""


class FatalError(Exception):
    """A fault of the machine or the setup, not of one sample: the run stops with this one line."""


def is_fatal(e: BaseException) -> bool:
    """Whether an exception met while answering a sample must stop the run instead of becoming its error row:
    FatalError, OSError (a cache or output that cannot be written, a full disk), out of memory (host or device)."""
    if isinstance(e, (FatalError, MemoryError)) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, OSError) and not isinstance(e, HarnessError)


def fatal_line(e: BaseException) -> str:
    """One line for a fatal fault: the OS's reason and the file it concerns where there is one."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    if isinstance(e, FatalError):
        return " ".join(str(e).split())
    return f"{type(e).__name__}: {' '.join(str(e).split())}"
