"""The run store: one directory per (task, backbone, sampler, config hash).

    config.json        the fully resolved config, written once when the run is created
    events.jsonl       one line per start or resume (time, versions, git commit), so a resumed run says so
    predictions.jsonl  one line per sample, appended and flushed as it is produced
    metrics.json       recomputed from predictions.jsonl whenever a pass ends

A killed process leaves at most one partial last line in predictions.jsonl; opening the run drops it, so every
sample ends up in the file exactly once.

Several ranks (torchrun) write one run together: rank r appends to predictions.rank-r.jsonl under its own lock,
every rank counts the rows of all files as done (so a run resumes with any number of ranks), and rank 0 merges the
files into predictions.jsonl once all ranks are finished. A partial last line in another rank's file is a row
still being written, or lost to a kill: it is not counted, and the rank that owns the file drops it on opening.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.records import ERROR
from harness.store.selections import PREDICTIONS  # the run directory's rows: replay reads them too
from harness.util.fileio import atomic_write, json_objects
from harness.util import lockfile
from harness.util.hashing import short_hash

RANK_PREDICTIONS = "predictions.rank-*.jsonl"
CONFIG = "config.json"
METRICS = "metrics.json"
EVENTS = "events.jsonl"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "x"


def run_dir_name(identity: dict) -> str:
    return "__".join([_slug(identity["task"]["name"]), _slug(identity["backbone"]["name"]),
                      _slug(identity["sampler"]["name"]), short_hash(identity)])


def row_digest(row: dict) -> str:
    """The digest a row carries of everything else it holds (`digest`): readers verify it, so a row edited by hand
    (a `"correct": true` typed in) is found, never believed."""
    return short_hash({k: v for k, v in row.items() if k != "digest"}, 16)


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a JSON Lines file ([] when it does not exist); a bad line is a HarnessError naming it."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path) as f:
        return [row for _, row in json_objects(f, str(path))]


def complete_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file whose lines are complete (newline-terminated): another process may be writing."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    return [row for _, row in json_objects(data[:data.rfind(b"\n") + 1].splitlines(), str(path))]


def run_rows(run_dir: Path) -> list[dict]:
    """Every finished row of a run: predictions.jsonl, then the rank files not merged yet; one row per sample."""
    run_dir = Path(run_dir)
    rows, seen = [], set()
    for path in [run_dir / PREDICTIONS, *sorted(run_dir.glob(RANK_PREDICTIONS))]:
        ids = set()
        for number, row in enumerate(read_jsonl(path) if path.name == PREDICTIONS else complete_rows(path), 1):
            if not isinstance(row.get("sample_id"), str) or not isinstance(row.get("prediction"), dict):
                raise HarnessError(f"{path}: row {number} is not a run row (it needs sample_id and prediction)")
            if row["sample_id"] in ids:  # within one file: damage, never something the harness writes
                raise HarnessError(f"{path}: some sample ids occur twice ({row['sample_id']!r})")
            ids.add(row["sample_id"])
            if row["sample_id"] not in seen:  # across files: a merge killed half way leaves a row in both places
                seen.add(row["sample_id"])
                rows.append(row)
    return rows


class RunStore:
    """One run directory. `identity` is the part of the config that decides the directory (its hash). `rank` and
    `world`: this process's place among the ranks writing the run (see the module docstring)."""

    def __init__(self, root: Path, identity: dict, config: dict, rank: int = 0, world: int = 1):
        self.identity = identity
        self.dir = Path(root) / run_dir_name(identity)
        self.config = {**config, "identity": identity, "identity_hash": short_hash(identity)}
        self.rank, self.world = rank, world
        self.own = PREDICTIONS if world == 1 else f"predictions.rank-{rank}.jsonl"
        self._file = None
        self._lock = None

    # -- opening ----------------------------------------------------------------------------------
    def open(self, retry_errors: bool = False) -> "RunStore":
        """Create or resume the run (its lock first); `retry_errors`: drop the error rows of this process's file, so
        their samples are done again (the count and ids go to events.jsonl)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = lockfile.take(self.dir / (".lock" if self.world == 1 else f".lock.rank-{self.rank}"))
        except BlockingIOError:
            raise HarnessError(f"run {self.dir} is being written by another process") from None
        config_path = self.dir / CONFIG
        resumed = config_path.exists()
        if resumed:
            old = load_config(self.dir)
            if old.get("identity_hash") != self.config["identity_hash"]:
                raise HarnessError(f"{config_path} belongs to a different run configuration")
        else:
            atomic_write(config_path, json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        self._drop_partial_line()
        retried = self._drop_error_rows() if retry_errors else []
        self._done = {r["sample_id"] for r in run_rows(self.dir)}
        resumed = resumed and (self.world == 1 or bool(self._done))  # another rank may have made the directory
        self.event("resume" if resumed else "start", done=len(self._done), versions=self.config.get("versions"),
                   git_commit=self.config.get("git_commit"), **({"rank": self.rank, "world": self.world}
                                                                 if self.world > 1 else {}))
        if retried:
            self.event("retry_errors", dropped=len(retried), samples=retried[:20])
        self._file = open(self.dir / self.own, "a")
        return self

    def _drop_error_rows(self) -> list[str]:
        """Rewrite this process's rows file without its error rows (atomically); the ids of those dropped."""
        path = self.dir / self.own
        rows = read_jsonl(path)
        kept = [r for r in rows if r["prediction"].get("parse_status") != ERROR]
        if len(kept) < len(rows):
            atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        return [r["sample_id"] for r in rows if r["prediction"].get("parse_status") == ERROR]

    def _drop_partial_line(self) -> None:
        """A kill in the middle of a write leaves a last line without its newline: cut it off."""
        path = self.dir / self.own
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None
        if self._lock:
            self._lock.release()  # removes the lock file
            self._lock = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def event(self, name: str, **fields) -> None:
        """Append one line to events.jsonl (start, resume, feature-store counts, ...)."""
        with open(self.dir / EVENTS, "a") as f:
            f.write(json.dumps({"event": name, "time": time.time(), **fields}) + "\n")

    # -- rows ---------------------------------------------------------------------------------------
    def is_done(self, sample_id: str) -> bool:
        return sample_id in self._done

    def append(self, row: dict) -> None:
        if row["sample_id"] in self._done:
            raise RuntimeError(f"sample {row['sample_id']} written twice")
        row = {**row, "digest": row_digest(row)}
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()  # survives kill -9: the line is in the kernel once write() returns
        self._done.add(row["sample_id"])

    def refresh(self) -> None:
        """Count what other ranks finished meanwhile as done too."""
        self._done |= {r["sample_id"] for r in run_rows(self.dir)}

    def rows(self) -> list[dict]:
        return run_rows(self.dir)

    def merge(self) -> None:
        """Rank 0, after every rank finished: all rows into predictions.jsonl, the rank files removed. Killed
        half way, the rows are in both places, and `run_rows` counts each once."""
        ranks = sorted(self.dir.glob(RANK_PREDICTIONS))
        if not ranks:
            return
        rows = run_rows(self.dir)
        atomic_write(self.dir / PREDICTIONS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        for path in ranks:
            path.unlink()

    def write_metrics(self, metrics: dict) -> None:
        atomic_write(self.dir / METRICS, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def load_config(run_dir: Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise HarnessError(f"{run_dir} is not a run directory (no {CONFIG})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
