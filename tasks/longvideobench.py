"""`longvideobench`: LongVideoBench validation as lmms-eval's `longvideobench_val_v` (video only, no subtitles).

Data: `lvb_val.json` (a list of 1337 records with a `candidates` list) or the Hugging Face dataset
`longvideobench/LongVideoBench` split `validation` (gated; options in `option0..option4`, "N/A" when absent).
Videos: `<video_root>/<video_path>` (lmms-eval: `$HF_HOME/datasets/longvideobench/videos/`).
Sample ids are the records' `id` (`<video_id>_<k>`). Breakdowns: `duration_group` (15, 60, 600, 3600: (8,15] s,
(15,60] s, (180,600] s, (900,3600] s) and the 17 `question_category` codes.

Prompt (the same for every model; lmms-eval has no per-model variant for this task):
``question + "\\n" + "A. <c0>\\nB. <c1>..." + "\\n" + "Answer with the option's letter from the given choices
directly.\\n"``.

Parsing (`lmms-eval`): the first capital A-E after removing answer prefixes (`parse_multi_choice_response`), so a
letter beyond the options (E of four) is a wrong answer. Where lmms-eval falls back to a *random* letter (none of
A-E in the response) the harness records `parse_failed`, scored wrong; lmms-eval's expected score on the same answers
is higher by the failures' 1/len(options) each, given in the metrics as `lmms_eval_random_expectation`.
"""
from __future__ import annotations

from harness.records import Sample
from harness.registry import TASKS
from tasks.benchmark import COMMON_CHOICES, COMMON_HELP, BenchmarkTask, resolve_video
from tasks.schema import Schema
from tasks.vlmevalkit import longvideobench_messages, longvideobench_rating, prompt_of

POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
DURATION_GROUPS = {"15": "8-15 s", "60": "15-60 s", "600": "180-600 s", "3600": "900-3600 s"}


_COMMON = {"id": "id", "video_path": "path", "question": "text", "correct_choice": "index", "duration": "positive?",
           "duration_group": "int", "question_category": "name"}
# lvb_val.json (a `candidates` list) and the Hugging Face rows (option0..option4, "N/A" where absent)
FILE_SCHEMA = Schema("lvb_val.json records", {**_COMMON, "candidates": "options"}, id="id", gold="correct_choice",
                     gold_kind="index", options_name="candidates")
HF_SCHEMA = Schema("longvideobench/LongVideoBench rows", {**_COMMON, "option0": "text", "option1": "text",
                                                         **{f"option{i}": "text?" for i in range(2, 5)}},
                   id="id", gold="correct_choice", gold_kind="index", options_name="options")


def lvb_schema(record: dict) -> Schema:
    """The file layout where the record has a `candidates` field (or no option0), else the Hugging Face rows'."""
    return FILE_SCHEMA if "candidates" in record or "option0" not in record else HF_SCHEMA


def lvb_options(record: dict) -> list[str]:
    """Option texts: the `candidates` list (lvb_val.json), else option0..4 without the "N/A" placeholders."""
    if lvb_schema(record) is FILE_SCHEMA:
        return list(record["candidates"])
    return [record[f"option{i}"] for i in range(5)
            if record.get(f"option{i}") is not None and record[f"option{i}"] != "N/A"]


@TASKS.register("longvideobench", description="LongVideoBench val (1337 Q), lmms-eval longvideobench_val_v prompts "
                                               "and scoring; needs the videos (video_root)",
                help=COMMON_HELP, choices=COMMON_CHOICES)
class LongVideoBench(BenchmarkTask):
    name = "longvideobench"
    lmms_task = "longvideobench_val_v"
    hf_dataset = "longvideobench/LongVideoBench"
    hf_split = "validation"
    annotation_format = "lvb_val.json: a list of records with id, video_path, question, candidates, correct_choice"
    default_video_subdir = "datasets/longvideobench/videos"
    parser_benchmark = "longvideobench"
    vlmevalkit_dataset = "LongVideoBench"
    category_keys = ("duration_group", "question_category")
    stratify_key = "duration_group"
    averaging = ("micro: correct / questions, overall (lmms-eval lvb_acc, reported here on 0-100), per "
                 "duration_group and per question_category")

    schemas = (FILE_SCHEMA, HF_SCHEMA)

    def to_samples(self, record: dict) -> list[Sample]:
        schema = lvb_schema(record)
        schema.check(record)
        options = schema.options(lvb_options(record))
        video_path = record["video_path"]
        return [Sample(
            id=str(record["id"]), video=str(resolve_video(self.video_root, video_path)),
            question=record["question"], options=tuple(options), answer=schema.gold_index(record, options),
            duration=float(record["duration"]) if record.get("duration") is not None else None,
            categories={"duration_group": str(record["duration_group"]),
                        "question_category": record["question_category"]},
            metadata={**{k: v for k, v in record.items() if k not in ("question", "candidates")},
                      "video_file": video_path},
        )]

    def messages(self, sample: Sample) -> list[dict]:
        if self.protocol_name != "vlmevalkit":
            return super().messages(sample)
        return longvideobench_messages(sample.question, sample.options)

    def vlmevalkit_metrics(self, rows: list[dict]) -> dict:
        return {"rating": longvideobench_rating(rows)}

    def prompt(self, sample: Sample, style: str = "default") -> str:
        if self.protocol_name == "vlmevalkit":
            return prompt_of(self.messages(sample))
        options = "\n".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(sample.options))
        return f"{sample.question}\n{options}\n{POST_PROMPT}"

    def parser_note(self) -> str:
        if self.parser in ("strict", "vlmevalkit"):
            return ""
        return ("; where lmms-eval picks a random valid letter (no A-E in the answer) the harness records "
                "parse_failed and scores it wrong")

    def metrics(self, rows: list[dict]) -> dict:
        out = super().metrics(rows)
        if self.parser not in ("strict", "vlmevalkit") and rows:
            # lmms-eval would guess among the valid letters where we record a failure: its expected accuracy
            n_options = {s.id: len(s.options) for s in (self._samples or [])}
            guess = sum(1.0 / n_options.get(r["sample_id"], 5) for r in rows
                        if r["prediction"]["parse_status"] == "parse_failed")
            out["lmms_eval_random_expectation"] = {
                "accuracy": 100.0 * (out["overall"]["correct"] + guess) / len(rows),
                "note": "expected lmms-eval accuracy if each parse failure were a uniform random guess"}
        return out
