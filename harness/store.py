"""The run store: one directory per (task, backbone, sampler, config hash).

    config.json        the fully resolved config, written once when the run is created
    events.jsonl       one line per start or resume (time, versions, git commit), so a resumed run says so
    predictions.jsonl  one line per sample, appended and flushed as it is produced
    metrics.json       recomputed from predictions.jsonl whenever a pass ends

A killed process leaves at most one partial last line in predictions.jsonl; opening the run drops it, so every
sample ends up in the file exactly once.
"""
from __future__ import annotations

import fcntl
import json
import re
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.fileio import atomic_write
from harness.hashing import short_hash

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"
METRICS = "metrics.json"
EVENTS = "events.jsonl"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "x"


def run_dir_name(identity: dict) -> str:
    return "__".join([_slug(identity["task"]["name"]), _slug(identity["backbone"]["name"]),
                      _slug(identity["sampler"]["name"]), short_hash(identity)])


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise HarnessError(f"{path}:{number}: not valid JSON ({e.msg})") from None
    return rows


class RunStore:
    """One run directory. `identity` is the part of the config that decides the directory (its hash)."""

    def __init__(self, root: Path, identity: dict, config: dict):
        self.identity = identity
        self.dir = Path(root) / run_dir_name(identity)
        self.config = {**config, "identity": identity, "identity_hash": short_hash(identity)}
        self._file = None
        self._lock = None

    # -- opening ----------------------------------------------------------------------------------
    def open(self) -> "RunStore":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
        self._done = {r["sample_id"] for r in read_jsonl(self.dir / PREDICTIONS)}
        self.event("resume" if resumed else "start", done=len(self._done), versions=self.config.get("versions"),
                   git_commit=self.config.get("git_commit"))
        self._file = open(self.dir / PREDICTIONS, "a")
        return self

    def _drop_partial_line(self) -> None:
        """A kill in the middle of a write leaves a last line without its newline: cut it off."""
        path = self.dir / PREDICTIONS
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
            self._lock.close()  # releases the flock
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
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()  # survives kill -9: the line is in the kernel once write() returns
        self._done.add(row["sample_id"])

    def rows(self) -> list[dict]:
        return read_jsonl(self.dir / PREDICTIONS)

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
