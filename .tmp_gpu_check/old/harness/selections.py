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

`run_to_tspo` writes a run's selections in TSPO's format, over one of those annotation files.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.fileio import atomic_write, json_objects

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


def _label(key) -> str:
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


@dataclass(frozen=True)
class StoredSelection:
    key: Any  # join key (see record_key)
    label: str  # the record, for messages
    frame_indices: tuple[int, ...]  # native frame indices in stored order


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
        records = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HarnessError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise HarnessError(f"{path}: a TSPO selection file is a non-empty JSON list of records")
    kind = record_kind(records[0])
    entries, missing = {}, []
    for number, record in enumerate(records):
        if record_kind(record) != kind:
            raise HarnessError(f"{path}: record {number} is not a {kind} record like the first one")
        key = record_key(kind, record)
        label = _label(key)
        if "frame_idx" not in record or record["frame_idx"] is None:
            missing.append(label)
            continue
        if key in entries:
            raise HarnessError(f"{path}: two records have the same key {label!r}")
        entries[key] = StoredSelection(key, label, frame_indices(record["frame_idx"], f"{path}: record {label}"))
    return SelectionFile(path, "tspo", kind, entries, missing, {}, digest)


def _load_harness(path: Path, data: bytes, digest: str) -> SelectionFile:
    entries, missing, header = {}, [], {}
    for number, row in json_objects(data.decode("utf-8").splitlines(), str(path)):
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
            values = row["frame_indices"]
        elif "selection" in row:  # a run's predictions.jsonl row
            if row["selection"] is None:
                missing.append(key)
                continue
            values = row["selection"].get("frame_indices")
        else:
            raise HarnessError(f"{path}:{number}: no frame_indices (nor a run row's selection)")
        if key in entries:
            raise HarnessError(f"{path}:{number}: sample {key!r} appears twice")
        entries[key] = StoredSelection(key, key, frame_indices(values, f"{path}:{number}"))
    if not entries and not missing:
        raise HarnessError(f"{path}: no selections in the file")
    return SelectionFile(path, "harness", "harness", entries, missing, header, digest)


# -- writing ---------------------------------------------------------------------------------------------------------
def _run_rows(run_dir) -> tuple[list[dict], dict]:
    run_dir = Path(run_dir)
    pred = run_dir / PREDICTIONS
    if not pred.is_file():
        raise HarnessError(f"{run_dir} is not a run directory (no {PREDICTIONS})")
    rows = [json.loads(line) for line in pred.read_text().splitlines() if line.strip()]
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return rows, config


def write_harness(rows: Iterable[Mapping], out_file, header: Mapping | None = None) -> int:
    """Write run rows (predictions.jsonl rows, or {sample_id, frame_indices}) as a harness selection file.

    Rows without a selection (errors) are left out. Returns the number of selections written.
    """
    lines = [json.dumps({"format": HEADER_FORMAT, "version": HEADER_VERSION, **(header or {})}, sort_keys=True)]
    for row in rows:
        frames = row_frames(row)
        if frames is None:
            continue
        sel = row if "frame_indices" in row else row["selection"]
        out = {"sample_id": str(row["sample_id"]), "frame_indices": [int(i) for i in frames]}
        if sel.get("timestamps") is not None:
            out["timestamps"] = [float(t) for t in sel["timestamps"]]
        lines.append(json.dumps(out, ensure_ascii=False))
    atomic_write(out_file, "\n".join(lines) + "\n")
    return len(lines) - 1


def write_records(records: Iterable[Mapping], out_file, header: Mapping) -> int:
    """Write `harness select` records whole (error records included: the replay reader counts them as missing)
    after a header line. Returns the number of records with a selection."""
    records = list(records)
    lines = [json.dumps({"format": HEADER_FORMAT, "version": HEADER_VERSION, **header}, sort_keys=True)]
    lines += [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write(out_file, "\n".join(lines) + "\n")
    return sum(row_frames(r) is not None for r in records)


def run_to_harness(run_dir, out_file) -> int:
    """A run's selections as a harness selection file, with the run's identity as provenance."""
    rows, config = _run_rows(run_dir)
    identity = config.get("identity", {})
    header = {"run": str(Path(run_dir).name), "task": identity.get("task"), "sampler": identity.get("sampler"),
              "frames": identity.get("frames"), "grid": identity.get("grid")}
    return write_harness(rows, out_file, header)


def _read_annotations(annotation_file) -> list[dict]:
    path = Path(annotation_file)
    if not path.is_file():
        raise HarnessError(f"annotation file {path} does not exist")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(records, list) or not records:
        raise HarnessError(f"{path}: expected a JSON list of annotation records (TSPO's evaluation/jsons format)")
    return records


@dataclass
class ConvertReport:
    written: int  # records that got a frame_idx
    records: int  # records in the annotation file
    unmatched_records: list[str]  # records with no run row (written without frame_idx, as TSPO does)
    unmatched_rows: list[str]  # run rows (sample ids) that match no record
    errored_rows: list[str]  # run rows without a selection

    def summary(self, first: int = 5) -> str:
        parts = [f"{self.written} of {self.records} records have a frame_idx"]
        if self.unmatched_records:
            parts.append(f"{len(self.unmatched_records)} records have no run row (first: "
                         f"{'; '.join(self.unmatched_records[:first])})")
        if self.errored_rows:
            parts.append(f"{len(self.errored_rows)} run rows have no selection (first: "
                         f"{', '.join(self.errored_rows[:first])})")
        if self.unmatched_rows:
            parts.append(f"{len(self.unmatched_rows)} run rows match no record (first: "
                         f"{', '.join(self.unmatched_rows[:first])})")
        return "; ".join(parts)


def run_to_tspo(run_dir, annotation_file, out_file, samples: Iterable | None = None) -> ConvertReport:
    """Write a run's selections in TSPO's `jsons_idx` format over a TSPO-format annotation file.

    Every annotation record is written, in file order, with every field it had; records the run answered get
    `frame_idx` = the selected native frame indices as floats (ascending, as TSPO stores them). Records the run did
    not answer are written without `frame_idx`, as TSPO's own converter does, and reported.

    Run rows are joined to records by sample id = the record's `id` (LongVideoBench) or `question_id` (Video-MME,
    MLVU: the harness tasks' ids). Where the run's sample ids are something else (another task's loader, MLVU rows
    from a TSV), pass the task's `samples` (anything with `.id`, `.video`, `.question`, `.options`, `.metadata`):
    rows are then joined through the samples' benchmark keys, e.g. MLVU's (video, question stem, candidates).
    """
    rows, _ = _run_rows(run_dir)
    return rows_to_tspo(rows, annotation_file, out_file, samples)


def row_frames(row: Mapping) -> list[int] | None:
    """The native frame indices of a run row (`selection.frame_indices`) or a `harness select` record
    (`frame_indices`); None for an error row."""
    if row.get("frame_indices") is not None:
        return list(row["frame_indices"])
    return list(row["selection"]["frame_indices"]) if row.get("selection") else None


def rows_to_tspo(rows: list[Mapping], annotation_file, out_file, samples: Iterable | None = None) -> ConvertReport:
    """`run_to_tspo` for rows in memory (run rows or `harness select` records)."""
    records = _read_annotations(annotation_file)
    kind = record_kind(records[0])
    by_sample = {str(r["sample_id"]): r for r in rows}
    if samples is not None:  # join through the samples' benchmark keys
        sample_of = {sample_key(kind, s): str(s.id) for s in samples}
        record_sample = lambda rec: sample_of.get(record_key(kind, rec))  # noqa: E731
    else:  # sample ids are the benchmark ids
        id_field = "id" if kind == "longvideobench" else "question_id"
        record_sample = lambda rec: str(rec[id_field])  # noqa: E731
    out, written, unmatched_records, used = [], 0, [], set()
    for record in records:
        record = {k: v for k, v in record.items() if k != "frame_idx"}
        sid = record_sample(record)
        row = by_sample.get(sid) if sid is not None else None
        if row is None:
            unmatched_records.append(_label(record_key(kind, record)))
        else:
            used.add(sid)
            frames = row_frames(row)
            if frames is not None:
                record["frame_idx"] = [float(i) for i in sorted(frames)]
                written += 1
        out.append(record)
    errored = [sid for sid, r in by_sample.items() if sid in used and row_frames(r) is None]
    unmatched_rows = [sid for sid in by_sample if sid not in used]
    atomic_write(out_file, json.dumps(out))  # json.dump defaults, as TSPO writes: no indent, ASCII-escaped
    return ConvertReport(written, len(records), unmatched_records, unmatched_rows, errored)


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
