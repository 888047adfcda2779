"""`longvideobench`: LongVideoBench as lmms-eval's `longvideobench_val_v` (default) or, with `split=test`,
`longvideobench_test_v` (video only, no subtitles).

Data: `lvb_val.json` (a list of 1337 records with a `candidates` list) or the Hugging Face dataset
`longvideobench/LongVideoBench` split `validation` (gated; options in `option0..option4`, "N/A" when absent).
`split=test`: `lvb_test_wo_gt.json` (the same fields without `correct_choice`) or the dataset's split `test`; a test
record carries no gold answer (no `correct_choice`, null, or -1: the official dataloader reads a missing one as -1),
and one that carries an option index is refused (a validation file passed as the test split).
Videos: `<video_root>/<video_path>` (lmms-eval: `$HF_HOME/datasets/longvideobench/videos/`).
Sample ids are the records' `id` (`<video_id>_<k>`). Breakdowns: `duration_group` (15, 60, 600, 3600: (8,15] s,
(15,60] s, (180,600] s, (900,3600] s) and the 17 `question_category` codes.

Prompt (the same for every model and both splits; lmms-eval's `longvideobench_val_v` and `longvideobench_test_v`
share `longvideobench_doc_to_text` and its kwargs, and have no per-model variant):
``question + "\\n" + "A. <c0>\\nB. <c1>..." + "\\n" + "Answer with the option's letter from the given choices
directly.\\n"``.

Parsing (`lmms-eval`): the first capital A-E after removing answer prefixes (`parse_multi_choice_response`), so a
letter beyond the options (E of four) is a wrong answer. Where lmms-eval falls back to a *random* letter (none of
A-E in the response) the harness records `parse_failed`, scored wrong; lmms-eval's expected score on the same answers
is higher by the failures' 1/len(options) each, given in the metrics as `lmms_eval_random_expectation`.

The test split is submission only (lmms-eval's metric `submission`): rows record the answer text and letter with
`answer` and `correct` null, metrics.json has no accuracy but the counts (answered, parse failures, errors) and a
`submission` entry, and `harness export --format longvideobench-submission` writes the leaderboard's file.
"""
from __future__ import annotations

import difflib

from harness.errors import HarnessError
from harness.records import Sample
from harness.registry import TASKS
from tasks.benchmark import COMMON_CHOICES, COMMON_HELP, BenchmarkTask, resolve_video
from tasks.schema import Schema
from tasks.vlmevalkit import longvideobench_messages, longvideobench_rating, prompt_of

POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
DURATION_GROUPS = {"15": "8-15 s", "60": "15-60 s", "600": "180-600 s", "3600": "900-3600 s"}


_COMMON = {"id": "id", "video_path": "path", "question": "text", "correct_choice": "index", "duration": "positive?",
           "duration_group": "int", "question_category": "name"}
_HF_OPTIONS = {"option0": "text", "option1": "text", **{f"option{i}": "text?" for i in range(2, 5)}}
# lvb_val.json (a `candidates` list) and the Hugging Face rows (option0..option4, "N/A" where absent)
FILE_SCHEMA = Schema("lvb_val.json records", {**_COMMON, "candidates": "options"}, id="id", gold="correct_choice",
                     gold_kind="index", options_name="candidates")
HF_SCHEMA = Schema("longvideobench/LongVideoBench rows", {**_COMMON, **_HF_OPTIONS},
                   id="id", gold="correct_choice", gold_kind="index", options_name="options")
# the test split: the same records without a gold answer (lvb_test_wo_gt.json has no correct_choice)
_TEST = {**_COMMON, "correct_choice": "int?"}
TEST_FILE_SCHEMA = Schema("lvb_test_wo_gt.json records", {**_TEST, "candidates": "options"}, id="id",
                          gold="correct_choice", gold_kind="index", gold_hidden=True, options_name="candidates")
TEST_HF_SCHEMA = Schema("longvideobench/LongVideoBench test rows", {**_TEST, **_HF_OPTIONS}, id="id",
                        gold="correct_choice", gold_kind="index", gold_hidden=True, options_name="options")
# split -> (lmms-eval task, Hugging Face split, file schema, Hugging Face schema, annotation file)
SPLITS = {"validation": ("longvideobench_val_v", "validation", FILE_SCHEMA, HF_SCHEMA, "lvb_val.json"),
          "test": ("longvideobench_test_v", "test", TEST_FILE_SCHEMA, TEST_HF_SCHEMA, "lvb_test_wo_gt.json")}
NO_GOLD = -1  # the official dataloader's correct_choice of a test record (it reads a missing one as -1: "@")
SUBMISSION_NOTE = "test split: no gold answers, submission only"


def lvb_schema(record: dict, split: str = "validation") -> Schema:
    """The file layout where the record has a `candidates` field (or no option0), else the Hugging Face rows'."""
    file_schema, hf_schema = SPLITS[split][2:4]
    return file_schema if "candidates" in record or "option0" not in record else hf_schema


def lvb_options(record: dict) -> list[str]:
    """Option texts: the `candidates` list (lvb_val.json), else option0..4 without the "N/A" placeholders."""
    if "candidates" in record or "option0" not in record:
        return list(record["candidates"])
    return [record[f"option{i}"] for i in range(5)
            if record.get(f"option{i}") is not None and record[f"option{i}"] != "N/A"]


@TASKS.register("longvideobench", description="LongVideoBench val (1337 Q), lmms-eval longvideobench_val_v prompts "
                                               "and scoring, or split=test (submission only); needs the videos "
                                               "(video_root)",
                help={**COMMON_HELP, "split": "validation (scored) or test (lvb_test_wo_gt.json or the dataset's "
                                              "test split: no gold answers, submission only)"},
                choices={**COMMON_CHOICES, "split": tuple(SPLITS)})
class LongVideoBench(BenchmarkTask):
    name = "longvideobench"
    hf_dataset = "longvideobench/LongVideoBench"
    default_video_subdir = "datasets/longvideobench/videos"
    parser_benchmark = "longvideobench"
    vlmevalkit_dataset = "LongVideoBench"
    category_keys = ("duration_group", "question_category")
    stratify_key = "duration_group"

    def __init__(self, annotations: str | None = None, video_root: str | None = None, skip_missing: bool = False,
                 parser: str | None = None, protocol: str = "lmms-eval", evidence: str | None = None,
                 split: str = "validation"):
        if split not in SPLITS:
            close = difflib.get_close_matches(str(split), SPLITS, n=1, cutoff=0.5)
            raise HarnessError(f"unknown LongVideoBench split {split!r} (known: {', '.join(SPLITS)})"
                               + (f"; did you mean split={close[0]}?" if close else ""))
        if split == "test" and protocol == "vlmevalkit":
            raise HarnessError("protocol=vlmevalkit is VLMEvalKit's LongVideoBench (the validation questions): it "
                               "takes no split=test")
        self.split = split
        self.lmms_task, self.hf_split, file_schema, hf_schema, file_name = SPLITS[split]
        self.schemas = (file_schema, hf_schema)
        self.annotation_format = (f"{file_name}: a list of records with id, video_path, question, candidates"
                                  + (", correct_choice" if split == "validation" else " (no correct_choice)"))
        super().__init__(annotations, video_root, skip_missing, parser, protocol, evidence)

    @property
    def averaging(self) -> str:
        if self.split == "test":
            return "none: the test split has no gold answers (the leaderboard scores the submission file)"
        return ("micro: correct / questions, overall (lmms-eval lvb_acc, reported here on 0-100), per "
                "duration_group and per question_category")

    def config(self) -> dict:
        return {**super().config(), "split": self.split}

    def identity(self) -> dict:
        out = super().identity()
        if self.split == "validation":  # the default keeps the run directories made before the test split
            del out["split"]
        return out

    def to_samples(self, record: dict) -> list[Sample]:
        if self.split == "validation" and isinstance(record, dict) and "correct_choice" not in record:
            raise HarnessError("correct_choice is missing: a test-split record (lvb_test_wo_gt.json)? pass "
                               "split=test for a submission-only run")
        schema = lvb_schema(record, self.split)
        schema.check(record)
        options = schema.options(lvb_options(record))
        if self.split == "test":
            if record.get("correct_choice") not in (None, NO_GOLD):
                raise HarnessError(f"correct_choice {record['correct_choice']!r} on a test-split record: the test "
                                   f"split has no gold answers (a validation file? pass split=validation)")
            answer = None
        else:
            answer = schema.gold_index(record, options)
        video_path = record["video_path"]
        return [Sample(
            id=str(record["id"]), video=str(resolve_video(self.video_root, video_path)),
            question=record["question"], options=tuple(options), answer=answer,
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

    def protocol(self) -> dict:
        out = super().protocol()
        if self.split == "test":
            out["metric"] = "submission"  # lmms-eval's longvideobench_test_v: the answers go to the leaderboard
        return out

    def metrics(self, rows: list[dict]) -> dict:
        out = super().metrics(rows)
        if self.split == "test":  # nothing to score: what the submission holds
            o = out["overall"]
            out["submission"] = {"note": SUBMISSION_NOTE, "questions": o["n"], "answered": o.get("answered", 0),
                                 "parse_failed": o["parse_failed"], "errors": o["errors"],
                                 "export": "harness export RUN_DIR --format longvideobench-submission"}
            return out
        if self.parser not in ("strict", "vlmevalkit") and rows:
            # lmms-eval would guess among the valid letters where we record a failure: its expected accuracy
            n_options = {s.id: len(s.options) for s in (self._samples or [])}
            guess = sum(1.0 / n_options.get(r["sample_id"], 5) for r in rows
                        if r["prediction"]["parse_status"] == "parse_failed")
            out["lmms_eval_random_expectation"] = {
                "accuracy": 100.0 * (out["overall"]["correct"] + guess) / len(rows),
                "note": "expected lmms-eval accuracy if each parse failure were a uniform random guess"}
        return out
