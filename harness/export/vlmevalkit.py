"""`harness export --format vlmevalkit`: the prediction file VLMEvalKit's `dataset.evaluate(eval_file,
model="exact_matching")` reads (open-compass/VLMEvalKit e8e78f05, written here from vlmeval/dataset/videomme.py,
longvideobench.py, mlvu.py and vlmeval/smp/file.py; never imported).

VLMEvalKit's inference writes its dataset table with a `prediction` column to `<work_dir>/<model>_<dataset>.xlsx`;
this writes the same file for a run made with `--protocol vlmevalkit` (its prompts, frames rule and matching), named
`harness-<backbone>-<sampler>_<dataset>_<K>frame[_subs].xlsx` by default. Columns, per dataset, the ones its
`evaluate` and rating read:

* Video-MME: index, video, videoID, question_id, duration, domain, sub_category, task_type, question, candidates,
  answer (letter), prediction
* LongVideoBench: index, id, video, question, candidates, correct_choice (0-based), duration, duration_group,
  question_category, prediction
* MLVU (the composite `MLVU` file, whose `evaluate` adds M-Avg): index, original_index, SUB_DATASET (`MLVU_MCQ`),
  video, question_id, task_type, question, candidates, answer (option text), prediction

`candidates` is the Python list literal VLMEvalKit `eval`s; `index` runs 0..n-1 in the task's order (its
LongVideoBench and MLVU `evaluate` write each score at the row whose position equals the index). Then the harness's
columns: harness_sample_id, harness_parse_status, harness_parsed, harness_error, harness_run, harness_sampler,
harness_frames, harness_frame_indices.

`prediction` is the backbone's text as the run recorded it (parse failures included: VLMEvalKit re-matches them).
An error row has no text: it gets VLMEvalKit's own marker for a sample whose generation failed (its video inference
with SKIP_ERR=1 writes `Failed to obtain answer: <error>`), with a fixed reason so that no letter in an error message
can be matched; the message itself is in harness_error. The export checks with the harness's VLMEvalKit matcher
(parity-checked, docs/vlmevalkit.md) that the marker scores wrong, as the harness counts an error row. A blank or
NA-like answer ("None", "NA", ...) is written as given, with a warning: VLMEvalKit's `load` (pd.read_excel) reads it
as a missing prediction.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.export.source import ExportRun, answer_text, letter
from harness.export.xlsx import xlsx_bytes
from harness.util.fileio import atomic_write

ERROR_MARKER = "Failed to obtain answer: harness error row (see harness_error)"
# what pandas reads back as NaN from a cell (its default na_values; VLMEvalKit's `load` is pd.read_excel)
NA_TEXTS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
            "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
HARNESS_COLUMNS = ["harness_sample_id", "harness_parse_status", "harness_parsed", "harness_error", "harness_run",
                   "harness_sampler", "harness_frames", "harness_frame_indices"]


def _videomme(s, i: int) -> dict:
    md = s.metadata
    return {"index": i, "video": md.get("videoID"), "videoID": md.get("videoID"), "question_id": s.id,
            "duration": md.get("duration"), "domain": md.get("domain"), "sub_category": md.get("sub_category"),
            "task_type": md.get("task_type"), "question": s.question, "candidates": str(list(md["options"])),
            "answer": s.answer_letter}


def _longvideobench(s, i: int) -> dict:
    md = s.metadata
    return {"index": i, "id": s.id, "video": md.get("video_id"), "question": s.question,
            "candidates": str(list(s.options)), "correct_choice": s.answer, "duration": md.get("duration"),
            "duration_group": int(s.categories["duration_group"]),
            "question_category": s.categories["question_category"]}


def _mlvu(s, i: int) -> dict:
    return {"index": i, "original_index": i, "SUB_DATASET": "MLVU_MCQ", "video": s.metadata.get("video_name"),
            "question_id": s.id, "task_type": s.categories["task_type"], "question": s.question,
            "candidates": str(list(s.options)),
            "answer": s.options[s.answer] if s.answer is not None else None}


# harness task -> (VLMEvalKit dataset of the file name, its columns before `prediction`, the row builder)
DATASETS = {
    "videomme": ("Video-MME", ["index", "video", "videoID", "question_id", "duration", "domain", "sub_category",
                               "task_type", "question", "candidates", "answer"], _videomme),
    "longvideobench": ("LongVideoBench", ["index", "id", "video", "question", "candidates", "correct_choice",
                                          "duration", "duration_group", "question_category"], _longvideobench),
    "mlvu": ("MLVU", ["index", "original_index", "SUB_DATASET", "video", "question_id", "task_type", "question",
                      "candidates", "answer"], _mlvu),
}


def check_exportable(run: ExportRun) -> None:
    name = run.run.task
    if name not in DATASETS:
        raise HarnessError(f"{run.dir}: --format vlmevalkit: VLMEvalKit has no prediction file for task {name!r} "
                           f"(it has one for {', '.join(DATASETS)} run with --protocol vlmevalkit)")
    if run.protocol != "vlmevalkit":
        raise HarnessError(f"{run.dir}: --format vlmevalkit needs a run made with --protocol vlmevalkit (this one "
                           f"used {run.protocol}: its prompts and answer matching are not VLMEvalKit's)")


def dataset_name(run: ExportRun) -> str:
    base = DATASETS[run.run.task][0]
    subs = "_subs" if getattr(run.task, "subtitles", False) else ""
    return f"{base}_{run.frames}frame{subs}"


def model_name(run: ExportRun) -> str:
    return re.sub(r"[^A-Za-z0-9.=,:+-]+", "-", f"harness-{run.run.backbone}-{run.run.sampler}").strip("-")


def default_name(run: ExportRun) -> str:
    return f"{model_name(run)}_{dataset_name(run)}.xlsx"


def table(run: ExportRun) -> tuple[list[str], list[dict]]:
    _, columns, build = DATASETS[run.run.task]
    rows = []
    for i, row in enumerate(run.rows):
        s = run.sample(row)
        text = answer_text(row)
        if text is None:
            text = ERROR_MARKER
            if run.task.score(s, text).correct:
                raise HarnessError(f"{run.dir}: sample {s.id!r}: VLMEvalKit's matching would score the error marker "
                                   "right (an option's text is in it); this error row cannot be exported honestly")
        trace = run.trace(row)
        rows.append({**build(s, i), "prediction": text, "harness_sample_id": s.id,
                     "harness_parse_status": trace["parse_status"], "harness_parsed": letter(row),
                     "harness_error": trace["error"], "harness_run": trace["run"], "harness_sampler": trace["sampler"],
                     "harness_frames": trace["frames"], "harness_frame_indices": str(trace["frame_indices"])})
    missing = [r["harness_sample_id"] for r in rows if r["prediction"] in NA_TEXTS]
    if missing:  # written as given; said, since VLMEvalKit will not read them as text
        print(f"harness: warning: {run.dir}: {len(missing)} answers (first {missing[0]!r}) are blank or NA-like text, "
              "which VLMEvalKit's load reads as a missing prediction (its MLVU evaluate stops on one; Video-MME and "
              "LongVideoBench score the text 'nan')", file=sys.stderr)
    return [*columns, "prediction", *HARNESS_COLUMNS], rows


def export_vlmevalkit(run: ExportRun, out: Path) -> list[Path]:
    """Write the prediction file to `out` (a .xlsx path); its path."""
    check_exportable(run)
    out = Path(out)
    if out.suffix != ".xlsx":
        raise HarnessError(f"--out {out}: the VLMEvalKit prediction file is an .xlsx file (its default format)")
    columns, rows = table(run)
    atomic_write(out, xlsx_bytes(columns, rows, lambda i, col: f"{run.dir}: sample "
                                                               f"{rows[i]['harness_sample_id'] if i >= 0 else '-'}, "
                                                               f"column {col}"))
    return [out]
