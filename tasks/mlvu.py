"""`mlvu`: MLVU multiple-choice questions as lmms-eval's `mlvu_dev` (default) or `mlvu_test`.

Data: the MLVU dev JSON as TSPO ships it (`mlvu.json`: a list of 2174 records `video_name, duration, question,
candidates, answer, task_type, question_id`; the question already ends with ``"\\n(A) ...\\n(D) ...\\n"``), or the
Hugging Face dataset `sy1998/MLVU_dev` (split `test`); `split="test"` reads `sy1998/MLVU_Test` (six options A-F;
records without an answer get `answer=None` and are scored wrong).
Videos: flat, `<video_root>/<video_name>` (lmms-eval: `$HF_HOME/mlvu/`, `$HF_HOME/mlvu_test/`).

Sample ids are the records' `question_id` ("Q0"...). They are NOT the TSV `index` of TSPO/VLMEvalKit files and row
orders differ between the two, so replayed selections must be joined by (video file, question stem, candidates),
which `metadata` keeps (`video_name`, raw `question`, `candidates`); video and question alone are ambiguous.

Prompt (every model except lmms-eval's `plm` key): ``question + "\\nOnly give the best option.\\nBest option: ("``,
so the text reads ``...(D) x\\n\\nOnly give the best option.\\nBest option: (``; `plm` ends after "option.".
`mlvu_test` has no prompt settings, so its prompt is the bare question. `legacy_prompt=True` gives the pre-0.3.3
text that TSPO's vendored lmms-eval used: ``"\\n" + question + "\\nOnly give the best option.\\n\\nBest option: ("``.

Metrics: accuracy per `task_type`, `macro` (the unweighted mean of the task accuracies: lmms-eval's
`mlvu_percetion_score` since 0.3.2 and the MLVU paper's M-Avg) and `micro` (correct / questions: VLMEvalKit's M-Avg).
"""
from __future__ import annotations

import re

from harness.errors import HarnessError
from harness.records import Sample
from harness.registry import TASKS
from tasks.benchmark import COMMON_CHOICES, COMMON_HELP, BenchmarkTask, resolve_video, split_options
from tasks.schema import Schema
from tasks.vlmevalkit import MLVU_TASKS, mlvu_acc, mlvu_messages, prompt_of

POST_PROMPT = "\nOnly give the best option.\nBest option: ("
POST_PROMPT_PLM = "\nOnly give the best option."
SPLITS = {"dev": ("sy1998/MLVU_dev", "mlvu_dev", "mlvu"), "test": ("sy1998/MLVU_Test", "mlvu_test", "mlvu_test")}
_OPTION_LINE = re.compile(r"^\(([A-Z])\) (.*)$")


# mlvu.json and the Hugging Face rows of both splits: options in `candidates` or, without it, inline in the question;
# the answer a letter (or the option's text, as VLMEvalKit-style files give it); MLVU_Test hides some answers
_FIELDS = {"video_name": "path", "question": "text", "candidates": "strings?", "answer": "gold?",
           "task_type": "name", "question_id": "id", "duration": "positive?"}
SCHEMAS = {"dev": Schema("mlvu.json records", _FIELDS, id="question_id", gold="answer", gold_kind="gold",
                         options_name="candidates"),
           "test": Schema("MLVU_Test records", _FIELDS, id="question_id", gold="answer", gold_kind="gold",
                          gold_hidden=True, options_name="candidates")}


@TASKS.register("mlvu", description="MLVU dev multiple choice (2174 Q), lmms-eval mlvu_dev prompts and scoring, "
                                    "macro and micro M-Avg; needs the videos (video_root)",
                help={**COMMON_HELP, "split": "dev (sy1998/MLVU_dev) or test (sy1998/MLVU_Test, answers where given)",
                      "legacy_prompt": "the pre-0.3.3 lmms-eval prompt that TSPO's evaluation used"},
                choices={**COMMON_CHOICES, "split": tuple(SPLITS)})
class MLVU(BenchmarkTask):
    name = "mlvu"
    prompt_styles = ("default", "plm")
    annotation_format = "mlvu.json: a list of records with video_name, question, candidates, answer, task_type"
    parser_benchmark = "mlvu"
    category_keys = ("task_type",)
    stratify_key = "task_type"
    averaging = ("macro: unweighted mean of the per-task_type accuracies (lmms-eval mlvu_percetion_score, MLVU "
                 "M-Avg); micro: correct / questions (VLMEvalKit M-Avg) also reported")

    def __init__(self, annotations: str | None = None, video_root: str | None = None, skip_missing: bool = False,
                 parser: str | None = None, split: str = "dev", legacy_prompt: bool = False,
                 protocol: str = "lmms-eval"):
        if split not in SPLITS:
            raise HarnessError(f"unknown MLVU split {split!r} (known: {', '.join(SPLITS)})")
        self.split, self.legacy_prompt = split, bool(legacy_prompt)
        self.hf_dataset, self.lmms_task, self.default_video_subdir = SPLITS[split]
        self.hf_split = "test"
        super().__init__(annotations, video_root, skip_missing, parser, protocol)
        if protocol == "vlmevalkit" and (split != "dev" or legacy_prompt):
            raise HarnessError("protocol=vlmevalkit is VLMEvalKit's MLVU_MCQ (the dev questions): it takes neither "
                               "split=test nor legacy_prompt")

    def config(self) -> dict:
        return {**super().config(), "split": self.split, "legacy_prompt": self.legacy_prompt}

    @property
    def schemas(self):
        return (SCHEMAS[self.split],)

    def to_samples(self, record: dict) -> list[Sample]:
        schema = SCHEMAS[self.split]
        schema.check(record)
        stem, inline = split_options(record["question"], _OPTION_LINE)
        candidates = schema.options(record["candidates"] if record.get("candidates") is not None else inline)
        video = record["video_name"]
        return [Sample(
            id=str(record["question_id"]), video=str(resolve_video(self.video_root, video)), question=stem,
            options=tuple(candidates), answer=schema.gold_index(record, candidates),
            duration=float(record["duration"]) if record.get("duration") is not None else None,
            categories={"task_type": record["task_type"]},
            metadata={**record, "video_file": video},
        )]

    vlmevalkit_dataset = "MLVU_MCQ"

    def messages(self, sample: Sample) -> list[dict]:
        if self.protocol_name != "vlmevalkit":
            return super().messages(sample)
        return mlvu_messages(sample.question, sample.options)

    def vlmevalkit_note(self) -> str:
        return ("; VLMEvalKit's system sentence (MLVU_SYS) precedes the video there and follows the frames here, "
                "as the first text")

    def vlmevalkit_metrics(self, rows: list[dict]) -> dict:
        acc = mlvu_acc(rows)
        missing = [t for t in MLVU_TASKS if t not in acc]
        return {"acc": acc, **({"M-Avg_missing_tasks": missing} if missing else {})}

    def prompt(self, sample: Sample, style: str = "default") -> str:
        if self.protocol_name == "vlmevalkit":
            return prompt_of(self.messages(sample))
        question = sample.metadata["question"]
        if self.split == "test":
            return question  # mlvu_test.yaml has no lmms_eval_specific_kwargs
        if self.legacy_prompt:
            return "\n" + question + "\nOnly give the best option.\n" + "\n" + "Best option: ("
        return question + (POST_PROMPT_PLM if style == "plm" else POST_PROMPT)

    def metrics(self, rows: list[dict]) -> dict:
        out = super().metrics(rows)
        tasks = out["by"].get("task_type", {})
        accs = [g["accuracy"] for g in tasks.values() if g["accuracy"] is not None]
        out["macro"] = sum(accs) / len(accs) if accs else None
        out["micro"] = out["overall"]["accuracy"]
        out["macro_over"] = sorted(tasks)  # lmms-eval averages over its fixed 7 dev tasks; equal on a full run
        for name, acc in out["by_parser"].items():  # the same mean over tasks under each recorded parser
            acc["macro"] = macro_accuracy(rows, lambda r: (r.get("parsers") or {}).get(name) == r.get("answer")
                                          and r.get("answer") is not None)
        return out


def macro_accuracy(rows: list[dict], is_correct) -> float | None:
    """Unweighted mean over task types of the per-type accuracy (0-100)."""
    groups: dict[str, list[bool]] = {}
    for r in rows:
        groups.setdefault(str(r.get("categories", {}).get("task_type")), []).append(bool(is_correct(r)))
    return sum(100.0 * sum(g) / len(g) for g in groups.values()) / len(groups) if groups else None
