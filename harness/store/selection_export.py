"""Writing selections: a run's (or `harness select`'s) chosen frames as a harness selection file, or in TSPO's
`jsons_idx` format over a TSPO-format annotation file (see harness.store.selections for both formats)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from harness.errors import HarnessError
from harness.store.runs import CONFIG, PREDICTIONS, load_config, read_jsonl
from harness.store.selections import (HEADER_FORMAT, HEADER_VERSION, record_key, record_kind, record_label,
                                      sample_key)
from harness.util.fileio import atomic_write


def _run_rows(run_dir) -> tuple[list[dict], dict]:
    run_dir = Path(run_dir)
    if not (run_dir / PREDICTIONS).is_file():
        raise HarnessError(f"{run_dir} is not a run directory (no {PREDICTIONS})")
    config = load_config(run_dir) if (run_dir / CONFIG).is_file() else {}
    return read_jsonl(run_dir / PREDICTIONS), config


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
        if sel.get("scales") is not None:  # a multi-resolution sampler's per-frame scales travel with the frames
            out["scales"] = [float(x) for x in sel["scales"]]
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
            unmatched_records.append(record_label(record_key(kind, record)))
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
