"""`harness data check`: are a task's annotations and videos usable? One row per video, and a summary.

For every distinct video of the task's samples (annotation order): does the file exist, does it open with the
decode backend, the decoder's frame count, fps and duration (frame_count / fps), the annotation's duration where
the annotation states one, and whether the two agree (within `tolerance_s` seconds or `tolerance_rel` of the
annotation, whichever is larger). Video-MME states only a bucket (short < 2 min, medium 4-15 min, long 30-60 min):
the decoder duration is checked against the bucket with the same tolerance. Nothing is decoded beyond the header.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.errors import HarnessError
from harness.video.reader import open_video

# Video-MME duration buckets (seconds)
BUCKETS = {"short": (0.0, 120.0), "medium": (240.0, 900.0), "long": (1800.0, 3600.0)}
STATUSES = ("ok", "missing", "unreadable", "duration_mismatch")
TOLERANCE_S, TOLERANCE_REL = 2.0, 0.02  # decoder and annotation durations agree within max(2 s, 2%)
PROBLEMS_EXIT = 3  # `harness data check` exit code when some video is not ok (2 is bad input, 1 a bug)


def _expected(sample) -> tuple[float | None, tuple[float, float] | None]:
    """(annotated duration s, allowed bucket) of a sample."""
    bucket = BUCKETS.get(str(sample.categories.get("duration", ""))) if sample.duration is None else None
    return sample.duration, bucket


def check_data(task, backend: str = "decord", tolerance_s: float = TOLERANCE_S, tolerance_rel: float = TOLERANCE_REL,
               progress: bool = False) -> list[dict]:
    """Rows {video, questions, exists, readable, error, frames, fps, width, height, decoder_duration,
    annotation_duration, duration_diff, status} for every distinct video of `task` (missing videos included)."""
    samples = task.load_samples()
    root = task.video_root
    by_video: dict[str, list] = {}
    for s in samples:
        by_video.setdefault(s.video, []).append(s)
    from harness.util.progress import progress_bar
    rows = []
    with progress_bar(progress, "check", len(by_video), unit="videos") as advance:
        for video, group in by_video.items():
            rows.append(_check_video(video, group, root, backend, tolerance_s, tolerance_rel))
            advance()
    return rows


def _check_video(video: str, group: list, root, backend: str, tol_s: float, tol_rel: float) -> dict:
    name = video
    if root is not None:
        try:
            name = Path(video).relative_to(root).as_posix()
        except ValueError:
            pass
    duration, bucket = _expected(group[0])
    row = {"video": name, "questions": len(group), "exists": Path(video).is_file(), "readable": False, "error": None,
           "frames": None, "fps": None, "width": None, "height": None, "decoder_duration": None,
           "annotation_duration": duration, "duration_diff": None,
           "annotation_bucket": None if bucket is None else str(group[0].categories.get("duration")),
           "status": "missing"}
    if not row["exists"]:
        return row
    try:
        with open_video(video, backend) as reader:
            meta = reader.meta
    except HarnessError as e:
        return {**row, "status": "unreadable", "error": str(e)}
    row.update(readable=True, frames=meta.frame_count, fps=meta.fps, width=meta.width, height=meta.height,
               decoder_duration=meta.duration, status="ok")
    if duration is not None:
        row["duration_diff"] = meta.duration - duration
    if duration_mismatch(group[0], meta.duration, tol_s, tol_rel):
        row["status"] = "duration_mismatch"
    return row


def duration_mismatch(sample, decoded: float, tol_s: float = TOLERANCE_S, tol_rel: float = TOLERANCE_REL
                      ) -> dict | None:
    """What the annotation expects of a video the decoder found `decoded` seconds long, when the two disagree
    (beyond tol_s seconds or tol_rel of the duration, or outside the duration bucket); None when they agree or the
    annotation says nothing."""
    duration, bucket = _expected(sample)
    if duration is not None:
        if abs(decoded - duration) > max(tol_s, tol_rel * duration):
            return {"annotation_duration": duration, "decoder_duration": decoded}
    elif bucket is not None:
        lo, hi = bucket
        if not lo - max(tol_s, tol_rel * lo) <= decoded <= hi + max(tol_s, tol_rel * hi):
            return {"annotation_bucket": list(bucket), "decoder_duration": decoded}
    return None


def summarise_check(rows: list[dict], task=None) -> dict:
    """Counts: videos and questions per status, plus the annotation's totals."""
    videos = Counter(r["status"] for r in rows)
    questions = Counter()
    for r in rows:
        questions[r["status"]] += r["questions"]
    out = {"videos": len(rows), "questions": sum(r["questions"] for r in rows),
           "by_status": {s: {"videos": videos.get(s, 0), "questions": questions.get(s, 0)} for s in STATUSES}}
    if task is not None:
        out["task"] = task.name
        out["video_root"] = str(task.video_root or "")
    return out


def render_check(rows: list[dict], task=None, show: int = 10) -> str:
    """A plain-text summary table plus the first `show` problem videos."""
    summary = summarise_check(rows, task)
    lines = []
    if task is not None:
        lines.append(f"task {summary['task']}: {summary['questions']} questions on {summary['videos']} videos "
                     f"(video root {summary['video_root']})")
    lines.append(f"{'status':<18}{'videos':>8}{'questions':>11}")
    for status in STATUSES:
        c = summary["by_status"][status]
        lines.append(f"{status:<18}{c['videos']:>8}{c['questions']:>11}")
    problems = [r for r in rows if r["status"] != "ok"]
    if problems:
        lines.append(f"first {min(show, len(problems))} of {len(problems)} problems:")
        for r in problems[:show]:
            detail = r["error"] or ""
            if r["status"] == "duration_mismatch":
                expected = (f"{r['annotation_duration']:.1f}s" if r["annotation_duration"] is not None
                            else f"bucket {r['annotation_bucket']}")
                detail = f"decoder {r['decoder_duration']:.1f}s vs annotation {expected}"
            lines.append(f"  {r['status']:<18}{r['video']}  {detail}".rstrip())
    return "\n".join(lines) + "\n"


def data_check_command(task_name: str, task_args: dict | None = None, video_root: str | None = None,
                       backend: str = "decord", as_json: bool = False, progress: bool = False) -> tuple[str, int]:
    """What `harness data check` prints, and its exit code (0 when every video is ok, else PROBLEMS_EXIT)."""
    import json
    from harness.registry import TASKS
    args = dict(task_args or {})
    if video_root is not None:
        args["video_root"] = video_root
    task = TASKS.create(task_name, **args)
    rows = check_data(task, backend=backend, progress=progress)
    if as_json:
        text = json.dumps({"summary": summarise_check(rows, task), "videos": rows}, indent=2) + "\n"
    else:
        text = render_check(rows, task)
    return text, 0 if all(r["status"] == "ok" for r in rows) else PROBLEMS_EXIT
