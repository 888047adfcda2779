"""File habits shared by the harness: atomic writes (readers see the old file or the whole new one, never a
half-written one) and JSON Lines read with errors that name the line."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path, data: bytes | str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; outputs should be readable like any other
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def json_objects(lines, label: str):
    """(line number, object) for every non-blank line of a JSON Lines text: lines as str or bytes (decoded as UTF-8),
    or a file open for reading. A line that is not UTF-8 text or not a JSON object is a HarnessError naming
    `label:number`."""
    from harness.errors import HarnessError

    lines, number = iter(lines), 0
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError:  # a text file decodes ahead of the line it gives: find the line in its bytes
            raise HarnessError(f"{label}:{_first_undecodable(lines, number + 1)}: not UTF-8 text") from None
        number += 1
        if isinstance(line, (bytes, bytearray)):
            try:
                line = bytes(line).decode("utf-8")
            except UnicodeDecodeError:
                raise HarnessError(f"{label}:{number}: not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise HarnessError(f"{label}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{label}:{number}: each line must be a JSON object")
        yield number, row


def _first_undecodable(file, fallback: int) -> int:
    """The number of the first line of an open text file that is not UTF-8 (`fallback` when it cannot be read
    again)."""
    name = getattr(file, "name", None)
    if not isinstance(name, (str, os.PathLike)):
        return fallback
    try:
        with open(name, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except OSError:
        pass
    return fallback
