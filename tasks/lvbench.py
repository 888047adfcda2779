"""`lvbench`: LVBench as lmms-eval's `lvbench` task.

Data: THUDM's `video_info.meta.jsonl` (one line per video: `key`, `type`, `video_info`, `qa: [{uid, question,
answer, question_type, time_reference}]`; 103 videos, 1549 questions), or per-question rows (a parquet/JSON file, or
the Hugging Face dataset `lmms-eval/LVBench` split `train`) with `question`, `answer` and, where present, `uid`,
`key`, `type`, `question_type`, `time_reference`, `video_path`, `options`.
Videos: `<video_root>/<video_path>` for rows that name one, else `<video_root>/<key>.mp4`
(lmms-eval: `$HF_HOME/lvbench/`).

Sample ids are `<key>_<uid>` (unique over the 1549 questions; `uid` alone is unique too, but the key makes ids
self-describing); `metadata["tsv_index"]` is `<key><uid>`, the index of TSPO's LVBench.tsv. Questions carry their
options inline ("stem\\n(A) ...\\n(D) ..."); `question` is the stem, `options` the texts. `question_type` is a LIST
(multi-label: a question counts toward every one of its types, as in the official script) and `video_type` the
video's `type`. `time_reference` becomes the sample's evidence interval (seconds; "None" gives none).

Prompt (every model): ``question + "\\nAnswer the question with the option letter"`` (the YAML value: no final
period), where lmms-eval 0.7.2+ first appends ``"\\n(A) opt..."`` lines if the row has a non-empty `options` list.
"""
from __future__ import annotations

import re

from harness.records import Sample
from harness.registry import TASKS
from harness.errors import HarnessError
from tasks.benchmark import COMMON_CHOICES, COMMON_HELP, BenchmarkTask, resolve_video, split_options
from tasks.schema import Schema, label

POST_PROMPT = "\nAnswer the question with the option letter"
QUESTION_TYPES = ("entity recognition", "event understanding", "key information retrieval", "temporal grounding",
                  "reasoning", "summarization")
_OPTION_LINE = re.compile(r"^\(([A-Z])\) ?(.*)$")


def parse_clock(text: str) -> float:
    """"MM:SS", "HH:MM:SS" (minutes may exceed 59) -> seconds."""
    seconds = 0.0
    for part in text.strip().split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_time_reference(text) -> tuple[tuple[float, float], ...]:
    """"MM:SS-MM:SS" -> ((start, end),); anything unparseable ("None", "05:00-None") -> ()."""
    if not isinstance(text, str) or "-" not in text:
        return ()
    start, _, end = text.partition("-")
    try:
        a, b = parse_clock(start), parse_clock(end)
    except ValueError:
        return ()
    return ((a, b),) if b >= a else ()


# video_info.meta.jsonl (one record a video, its questions in `qa`) and per-question rows (a parquet/JSON file, the
# Hugging Face dataset); options inline in the question unless an `options` list is given
_QUESTION = {"question": "text", "answer": "letter", "question_type": "labels?", "time_reference": "text?",
             "options": "strings?"}
_INFO = Schema("video_info", {"duration_minutes": "positive?"})
QA_SCHEMA = Schema("qa records", {"uid": "id", **_QUESTION}, id="uid")
META_SCHEMA = Schema("video_info.meta.jsonl records", {"key": "path", "type": "text?", "video_info": "object?",
                                                       "qa": "records"},
                     id="key", nested={"video_info": _INFO, "qa": QA_SCHEMA})
ROW_SCHEMA = Schema("LVBench question rows", {"uid": "id?", "id": "id?", "key": "path?", "video_path": "path?",
                                              "type": "text?", "video_info": "object?", **_QUESTION},
                    id="uid", one_of=(("uid", "id"), ("video_path", "key")), nested={"video_info": _INFO})


def question_rows(record: dict) -> list[dict]:
    """Per-question rows: a per-video meta record (with `qa`) is expanded; a per-question row is kept."""
    if "qa" not in record:
        return [record]
    video = {k: v for k, v in record.items() if k != "qa"}
    return [{**video, **qa} for qa in record["qa"]]


@TASKS.register("lvbench", description="LVBench (1549 Q, 103 videos of 0.5-2 h), lmms-eval lvbench prompt and "
                                       "scoring, multi-label question types; needs the videos (video_root)",
                help=COMMON_HELP, choices=COMMON_CHOICES)
class LVBench(BenchmarkTask):
    name = "lvbench"
    lmms_task = "lvbench"
    hf_dataset = "lmms-eval/LVBench"
    hf_split = "train"
    annotation_format = "video_info.meta.jsonl: one line per video with key, type, video_info and a qa list"
    default_video_subdir = "lvbench"
    parser_benchmark = "lvbench"
    category_keys = ("question_type", "video_type")
    stratify_key = "video_type"
    averaging = ("micro: correct / questions overall (lmms-eval lvbench_score, reported here on 0-100); per "
                 "question_type multi-label (a question counts toward each of its types), and per video_type")

    schemas = (META_SCHEMA, ROW_SCHEMA)

    def to_samples(self, record: dict) -> list[Sample]:
        if "qa" not in record:
            ROW_SCHEMA.check(record)
            return [self._sample(record, ROW_SCHEMA)]
        META_SCHEMA.check(record)
        out = []
        for k, row in enumerate(question_rows(record)):
            try:
                out.append(self._sample(row, QA_SCHEMA))
            except HarnessError as e:
                raise HarnessError(f"qa {k}{label(record['qa'][k], (QA_SCHEMA,))}: {e}") from None
        return out

    def _sample(self, row: dict, schema: Schema) -> Sample:
        stem, inline = split_options(row["question"], _OPTION_LINE, keep_stem=True)
        options = schema.options(row.get("options") or inline)
        uid = str(row["uid"]) if row.get("uid") is not None else None
        video_path = row["video_path"] if row.get("video_path") else f"{row['key']}.mp4"
        key = str(row.get("key") or video_path.rsplit("/", 1)[-1].rsplit(".", 1)[0])
        types = row.get("question_type") or []
        types = [types] if isinstance(types, str) else list(types)
        info = row.get("video_info") or {}
        minutes = info.get("duration_minutes")
        return Sample(
            id=f"{key}_{uid}" if uid is not None else str(row["id"]),
            video=str(resolve_video(self.video_root, video_path)), question=stem, options=tuple(options),
            answer=schema.gold_index(row, options),
            duration=float(minutes) * 60 if minutes is not None else None,
            categories={"question_type": types, "video_type": str(row.get("type") or "")},
            metadata={**row, "key": key, "uid": uid, "tsv_index": f"{key}{uid}", "video_file": video_path},
            evidence=parse_time_reference(row.get("time_reference")),
        )

    def prompt(self, sample: Sample, style: str = "default") -> str:
        question = str(sample.metadata["question"])
        options = sample.metadata.get("options") or []
        if options:
            question += "\n" + "\n".join(f"({chr(ord('A') + i)}) {o}" for i, o in enumerate(options))
        return question + POST_PROMPT
