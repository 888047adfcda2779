"""Selection files: which native frames were chosen for which question, stored so a run can be replayed.

Two formats:

* **tspo**: TSPO's `jsons_idx` files (`TSPO_<Dataset>_frameIdx.json`). A JSON list of the benchmark's annotation
  records (the `evaluation/jsons/` files: `lvb_val.json`, `mlvu.json`, `videomme.json`), each with one extra key
  `frame_idx`: absolute 0-based native frame numbers stored as floats (`[0.0, 30.0, ...]`). The kind of benchmark is
  recognised from the record fields.
* **harness**: JSON Lines. An optional first line is a header `{"format": "longvideo-harness-selections",
  "version": 1, ...provenance...}`; every other line is `{"sample_id": str, "frame_indices": [int, ...], ...}`.
  A run's own `predictions.jsonl` (or its run directory) reads as this format too: its rows carry
  `selection.frame_indices`, and error rows (no selection) are counted as missing.

Joins to samples (the published files never carry the harness's sample ids, so the key is the benchmark's own):

    longvideobench   the record `id` (e.g. "86CxyhFV9MI_0")
    videomme         the record `question_id` (e.g. "001-1")
    mlvu             (video file name, question stem, candidates): NOT a TSV index or `question_id`, which differ
                     between TSPO's TSV and JSON files; video and question alone are ambiguous (4 pairs in `ego`)
    harness          the harness sample id

Writing a run's selections in either format is `harness.store.selection_export`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.util.fileio import json_objects

HEADER_FORMAT = "longvideo-harness-selections"
HEADER_VERSION = 1
FORMATS = ("auto", "tspo", "harness")
KINDS = ("longvideobench", "videomme", "mlvu", "harness")
PREDICTIONS = "predictions.jsonl"


# -- keys ------------------------------------------------------------------------------------------------------------
def record_kind(record: Mapping) -> str:
    """Which benchmark a TSPO-format annotation record belongs to, from its fields."""
    if "correct_choice" in record and "id" in record and "candidates" in record:
        return "longvideobench"
    if "question_id" in record and "videoID" in record and "options" in record:
        return "videomme"
    if "video_name" in record and "candidates" in record and "question" in record:
        return "mlvu"
    raise HarnessError(f"not a LongVideoBench, Video-MME or MLVU annotation record (fields: {', '.join(record)})")


def mlvu_stem(question: str, candidates: Sequence[str]) -> str:
    """The question without the option block that MLVU appends ("\\n(A) c0\\n(B) c1 ...\\n"), stripped."""
    text = str(question)
    block = "".join(f"\n({chr(65 + i)}) {c}" for i, c in enumerate(candidates))
    for tail in (block + "\n", block):
        if block and text.endswith(tail):
            text = text[: -len(tail)]
            break
    return text.strip()


def mlvu_key(video_name: str, question: str, candidates: Sequence[str]) -> tuple:
    cands = tuple(str(c) for c in candidates)
    return (PurePosixPath(str(video_name).replace("\\", "/")).name, mlvu_stem(question, cands), cands)


def record_key(kind: str, record: Mapping):
    """The join key of one annotation record (TSPO format) or harness line."""
    if kind == "longvideobench":
        return str(record["id"])
    if kind == "videomme":
        return str(record["question_id"])
    if kind == "mlvu":
        return mlvu_key(record["video_name"], record["question"], record["candidates"])
    if kind == "harness":
        return str(record["sample_id"])
    raise HarnessError(f"unknown selection kind {kind!r} (known: {', '.join(KINDS)})")


def _meta(sample, *names):
    for name in names:
        value = sample.metadata.get(name) if sample.metadata else None
        if value not in (None, ""):
            return value
    return None


def sample_key(kind: str, sample):
    """The join key of a harness Sample, for a selection file of this kind.

    Raw annotation fields kept in `sample.metadata` win; otherwise the sample's own fields are used
    (LongVideoBench and Video-MME sample ids are the benchmark ids).
    """
    if kind == "longvideobench":
        return str(_meta(sample, "id") or sample.id)
    if kind == "videomme":
        return str(_meta(sample, "question_id") or sample.id)
    if kind == "mlvu":
        video = _meta(sample, "video_name") or sample.video
        question = _meta(sample, "question") or sample.question
        candidates = _meta(sample, "candidates") or sample.options
        return mlvu_key(video, question, candidates)
    if kind == "harness":
        return str(sample.id)
    raise HarnessError(f"unknown selection kind {kind!r} (known: {', '.join(KINDS)})")


def record_label(key) -> str:
    if isinstance(key, tuple):  # mlvu: video + start of the question
        video, stem = key[0], key[1]
        return f"{video}: {stem[:40]}{'...' if len(stem) > 40 else ''}"
    return str(key)


# -- reading ---------------------------------------------------------------------------------------------------------
def frame_indices(values, where: str) -> tuple[int, ...]:
    """Native frame indices from a stored list: integers, or integral floats as TSPO writes them."""
    if not isinstance(values, (list, tuple)):
        raise HarnessError(f"{where}: frame indices must be a list, got {type(values).__name__}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise HarnessError(f"{where}: frame index {v!r} is not a number")
        if isinstance(v, float) and not (np.isfinite(v) and v.is_integer()):
            raise HarnessError(f"{where}: frame index {v!r} is not a whole number")
        if v < 0:
            raise HarnessError(f"{where}: frame index {v!r} is negative")
        out.append(int(v))
    return tuple(out)


def stored_scales(values, n: int, where: str) -> tuple[float, ...] | None:
    """Per-frame scales from a stored list (None where the record has none): n numbers in (0, 1]."""
    if values is None:
        return None
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise HarnessError(f"{where}: scales must be a list of {n} numbers, one per frame index")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1 for v in values):
        raise HarnessError(f"{where}: scales must be numbers in (0, 1], got {values!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class StoredSelection:
    key: Any  # join key (see record_key)
    label: str  # the record, for messages
    frame_indices: tuple[int, ...]  # native frame indices in stored order
    scales: tuple[float, ...] | None = None  # per frame, a multi-resolution sampler's scale (harness files only)


@dataclass
class JoinReport:
    """How the samples of a run met the records of a selection file."""

    n_samples: int
    matched: int
    unmatched_samples: list[str] = field(default_factory=list)  # sample ids with no stored selection
    unmatched_records: list[str] = field(default_factory=list)  # stored records that match no sample

    def summary(self, first: int = 5) -> str:
        parts = [f"{self.matched} of {self.n_samples} samples have a stored selection"]
        if self.unmatched_samples:
            parts.append(f"{len(self.unmatched_samples)} samples have none (first: "
                         f"{', '.join(self.unmatched_samples[:first])})")
        if self.unmatched_records:
            parts.append(f"{len(self.unmatched_records)} stored records match no sample (first: "
                         f"{'; '.join(self.unmatched_records[:first])})")
        return "; ".join(parts)


@dataclass
class SelectionFile:
    path: Path
    format: str  # "tspo" | "harness"
    kind: str  # one of KINDS
    entries: dict  # key -> StoredSelection
    missing: list[str]  # records that carry no selection (TSPO: no frame_idx; run rows: errors)
    header: dict  # harness header (provenance), {} for TSPO files
    sha256: str  # of the file's bytes

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def has_scales(self) -> bool:
        """Some stored selection carries per-frame scales (a multi-resolution sampler's, e.g. qframe)."""
        return any(e.scales is not None for e in self.entries.values())

    def get(self, sample) -> StoredSelection | None:
        return self.entries.get(sample_key(self.kind, sample))

    def join(self, samples: Iterable) -> JoinReport:
        samples = list(samples)
        keys = {sample_key(self.kind, s): s.id for s in samples}
        unmatched_samples = [sid for key, sid in keys.items() if key not in self.entries]
        unmatched_records = [e.label for key, e in self.entries.items() if key not in keys]
        return JoinReport(len(samples), len(samples) - len(unmatched_samples), unmatched_samples, unmatched_records)


def detect_format(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        return "harness"
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return "tspo"
    if head.startswith(b"{"):
        return "harness"
    raise HarnessError(f"{path}: neither a TSPO selection file (a JSON list) nor a harness one (JSON lines)")


def load_selections(path, format: str = "auto") -> SelectionFile:
    """Read a selection file (or a run directory) into entries keyed for joining."""
    path = Path(path)
    if format not in FORMATS:
        raise HarnessError(f"unknown selection format {format!r} (known: {', '.join(FORMATS)})")
    if not path.exists():
        raise HarnessError(f"selection file {path} does not exist")
    if path.is_dir():
        if not (path / PREDICTIONS).is_file():
            raise HarnessError(f"{path} is a folder without {PREDICTIONS} (not a run directory)")
        path = path / PREDICTIONS
    fmt = detect_format(path) if format == "auto" else format
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return (_load_tspo if fmt == "tspo" else _load_harness)(path, data, digest)


def _load_tspo(path: Path, data: bytes, digest: str) -> SelectionFile:
    try:
        records = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise HarnessError(f"{path}: a TSPO selection file is a non-empty JSON list of records")
    kind = record_kind(records[0])
    entries, missing = {}, []
    for number, record in enumerate(records):
        if record_kind(record) != kind:
            raise HarnessError(f"{path}: record {number} is not a {kind} record like the first one")
        key = record_key(kind, record)
        label = record_label(key)
        if "frame_idx" not in record or record["frame_idx"] is None:
            missing.append(label)
            continue
        if key in entries:
            raise HarnessError(f"{path}: two records have the same key {label!r}")
        entries[key] = StoredSelection(key, label, frame_indices(record["frame_idx"], f"{path}: record {label}"))
    return SelectionFile(path, "tspo", kind, entries, missing, {}, digest)


def _load_harness(path: Path, data: bytes, digest: str) -> SelectionFile:
    entries, missing, header = {}, [], {}
    for number, row in json_objects(data.splitlines(), str(path)):
        if row.get("format") == HEADER_FORMAT and "sample_id" not in row:
            if row.get("version") != HEADER_VERSION:
                raise HarnessError(f"{path}: selection file version {row.get('version')!r} is not "
                                   f"{HEADER_VERSION}")
            header = row
            continue
        if "sample_id" not in row:
            raise HarnessError(f"{path}:{number}: no sample_id")
        key = str(row["sample_id"])
        if "frame_indices" in row:
            values, scales = row["frame_indices"], row.get("scales")
        elif "selection" in row:  # a run's predictions.jsonl row
            if row["selection"] is None:
                missing.append(key)
                continue
            if not isinstance(row["selection"], dict):
                raise HarnessError(f"{path}:{number}: selection must be an object, got {row['selection']!r}")
            values, scales = row["selection"].get("frame_indices"), row["selection"].get("scales")
        else:
            raise HarnessError(f"{path}:{number}: no frame_indices (nor a run row's selection)")
        if key in entries:
            raise HarnessError(f"{path}:{number}: sample {key!r} appears twice")
        indices = frame_indices(values, f"{path}:{number}")
        entries[key] = StoredSelection(key, key, indices, stored_scales(scales, len(indices), f"{path}:{number}"))
    if not entries and not missing:
        raise HarnessError(f"{path}: no selections in the file")
    return SelectionFile(path, "harness", "harness", entries, missing, header, digest)


# -- what a replay uses ----------------------------------------------------------------------------------------------
SHORT_RULES = {
    "harness": "fewer stored indices than K: use the stored ones as they are (fewer frames)",
    "tspo-uniform": "fewer stored indices than K: K uniform frames linspace(0, N-1, K) over all native frames "
                    "(TSPO's adapters)",
}


def replay_indices(stored: Sequence[int], k: int, frame_count: int, short: str = "harness") -> np.ndarray:
    """The native frames a replay decodes: sorted(stored[:k]) as TSPO's adapters take them, and the short rule.

    TSPO's `load_video_index`: `sorted(frame_idx[:max_frames_num])`; when that is shorter than max_frames_num,
    `np.linspace(0, N - 1, max_frames_num, dtype=int)` over all N native frames instead.
    """
    if short not in SHORT_RULES:
        raise HarnessError(f"unknown short rule {short!r} (known: {', '.join(SHORT_RULES)})")
    chosen = np.sort(np.asarray(list(stored)[:k], dtype=np.int64))
    if len(chosen) < k and short == "tspo-uniform":
        return np.linspace(0, frame_count - 1, k, dtype=int).astype(np.int64)
    return chosen
