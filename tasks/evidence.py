"""Key-scene annotations the user supplies for a benchmark (`--task-arg evidence=FILE`), in KFS-Bench's format.

KFS-Bench (NEC-VID/KFS-Bench, Li et al., WACV 2026) annotates, for questions of LongVideoBench val (`lvb_anno.csv`,
1291 questions) and Video-MME (`vidmme_anno.csv`, 888 questions), the scenes a question needs. Its licence is for
research only, so the harness never ships the files: the user passes one.

Format (the repository's README and eval.py): a CSV file with the header `id,segment_id,scene_id,start,end`, one
row a segment. `id` is the question's id: a LongVideoBench record's `id` (`<video>_<k>`), a Video-MME
`question_id` (`003-2`). Rows with the same `id` and `scene_id` are one scene (about 10-15% of scenes have several
disjoint segments). `start` and `end` are clock times, `H:MM:SS` or `M:SS`, at 1 s granularity with `end`
inclusive: KFS-Bench's eval.py counts a frame at time t as inside the segment when `start <= t <= end + 1`.

Evidence recall of one question is KFS-Bench's Scene Hit Rate: the share of its scenes that hold at least one
selected frame (a scene is hit by a frame inside any of its segments), with eval.py's closed `[start, end + 1]`
rule. Samples carry the segments as `[start, end + 1]` intervals in `Sample.evidence`.
"""
from __future__ import annotations

import csv
import difflib
from pathlib import Path

from harness.errors import HarnessError

COLUMNS = ("id", "segment_id", "scene_id", "start", "end")
FORMAT = ("KFS-Bench CSV: header id,segment_id,scene_id,start,end; one row a segment; start and end H:MM:SS or "
          "M:SS, end inclusive at 1 s")
RULE = ("KFS-Bench Scene Hit Rate: share of a question's scenes holding a selected frame, a frame at t inside a "
        "segment when start <= t <= end + 1 s")
EXAMPLES = 3

Scenes = tuple[tuple[tuple[float, float], ...], ...]  # scenes, each its segments' (start, end + 1) in seconds


def clock_seconds(text: str) -> float:
    """"H:MM:SS" or "M:SS" (seconds may have a fraction) -> seconds; anything else raises ValueError."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise ValueError(f"expected H:MM:SS or M:SS, got {text!r}")
    *whole, seconds = parts
    total = 0
    for p in whole:
        if not p.strip().isdigit():
            raise ValueError(f"expected H:MM:SS or M:SS, got {text!r}")
        total = total * 60 + int(p)
    value = float(seconds)
    if not 0 <= value < 60:  # also refuses nan
        raise ValueError(f"seconds out of range in {text!r}")
    return total * 60 + value


def read_scenes(path) -> dict[str, Scenes]:
    """{question id: its scenes} of a KFS-Bench annotation file; scenes in order of first appearance, segments in
    file order. A file that breaks the format is a HarnessError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"evidence file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise HarnessError(f"evidence file {path}: no column {', '.join(missing)} in the header "
                                   f"{','.join(header) or '(empty)'} ({FORMAT})")
            scenes: dict[str, dict[str, list]] = {}
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                where = f"evidence file {path}, line {reader.line_num}"
                if not row["id"]:
                    raise HarnessError(f"{where}: empty id")
                try:
                    start, end = clock_seconds(row["start"]), clock_seconds(row["end"])
                except ValueError as e:
                    raise HarnessError(f"{where} (id {row['id']}): {e}") from None
                if end < start:
                    raise HarnessError(f"{where} (id {row['id']}): end {row['end']} is before start {row['start']}")
                scenes.setdefault(row["id"], {}).setdefault(row["scene_id"], []).append((start, end + 1.0))
    except UnicodeDecodeError:
        raise HarnessError(f"evidence file {path} is not UTF-8 text") from None
    except csv.Error as e:
        raise HarnessError(f"evidence file {path} is malformed: {e}") from None
    if not scenes:
        raise HarnessError(f"evidence file {path} holds no segments ({FORMAT})")
    return {qid: tuple(tuple(segs) for segs in by_scene.values()) for qid, by_scene in scenes.items()}


def scene_recall(scenes: Scenes, timestamps) -> float | None:
    """Share of `scenes` holding at least one of `timestamps` (closed segments); None without scenes."""
    if not scenes:
        return None
    hit = sum(any(a <= t <= b for a, b in segments for t in timestamps) for segments in scenes)
    return hit / len(scenes)


def match_ids(path, scenes: dict, sample_ids: list[str], task: str) -> list[str]:
    """The file's ids that are no question of the task (empty when all match). None matching at all is a
    HarnessError: the file belongs to another benchmark (or another id scheme), which one line says."""
    known = set(sample_ids)
    unknown = [qid for qid in scenes if qid not in known]
    if len(unknown) == len(scenes):
        close = difflib.get_close_matches(unknown[0], sample_ids, n=1, cutoff=0.6)
        hint = f"; closest question id to {unknown[0]!r}: {close[0]!r}" if close else ""
        raise HarnessError(f"evidence file {path}: none of its {len(scenes)} question ids is a question of task "
                           f"{task!r} (file: {', '.join(unknown[:EXAMPLES])}; task: "
                           f"{', '.join(sample_ids[:EXAMPLES])}){hint}; is it the file of another benchmark?")
    return unknown


def attach(samples, path: str, task_name: str, examples: int = 5):
    """(samples with the file's scenes as their evidence, the scenes by id, the file's ids that are no question of the
    task). Questions the file does not annotate get no evidence; unmatched ids are named on stderr and counted."""
    import dataclasses
    import sys
    scenes = read_scenes(path)
    unmatched = match_ids(path, scenes, [s.id for s in samples], task_name)
    if unmatched:
        print(f"harness: evidence file {path}: {len(unmatched)} of {len(scenes)} question ids are no question of "
              f"{task_name} (first: {', '.join(unmatched[:examples])}); they are left out", file=sys.stderr)
    out = [dataclasses.replace(s, evidence=tuple(iv for scene in scenes.get(s.id, ()) for iv in scene))
           for s in samples]
    return out, scenes, unmatched


def metrics_entry(path: str, sha256: str, rows, unmatched: int) -> dict:
    """What metrics.json says about the evidence file: which file, its rule, how many questions it annotates."""
    from pathlib import Path

    annotated = {r["sample_id"] for r in rows if r.get("evidence")}
    return {"file": Path(path).name, "sha256": sha256, "format": FORMAT, "recall": RULE,
            "questions_annotated": len(annotated), "questions": len(rows), "file_ids_not_in_task": unmatched}
