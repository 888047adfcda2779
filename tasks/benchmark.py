"""What the real benchmarks share: annotations (local file or Hugging Face), videos under a root, lmms-eval scoring.

A benchmark task reads its annotation records from `annotations` (a local file in the official format) or, without
one, from the Hugging Face dataset lmms-eval uses (through `datasets`; offline this fails with a one-line error that
names the dataset). Video paths from the records are resolved inside `video_root`: absolute paths and `..` parts in
the data are refused, never followed. The default root is lmms-eval's own download layout under `$HF_HOME`.

Every record is checked against its format's schema (`tasks.schema`: fields and their types, 2 to 26 option
strings, the gold within the options, ids, positive durations, safe video paths) in `to_samples`; a bad record is a
`HarnessError` of one line naming the file (or dataset), the record's index and id, and what is wrong.

`samples()` checks the videos before a run starts: missing ones are reported (count and first names) as a
`HarnessError`, or, with `skip_missing=True`, dropped and counted (`missing` and the metrics' `data` entry).
`load_samples()` is the same list without that check (for `harness prompts` and `harness data check`).

Scoring: `parse_all(sample, text)` returns every parser's letter (`strict`, `lmms-eval` = 0.7.3,
`lmms-eval-0.7.1`); `score` keeps the one chosen by `parser` (lmms-eval's by default, for comparability). Metrics
are 0-100 and carry their protocol: framework, version, lmms-eval task, parser and averaging.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness.scoring.answers import extract_strict
from harness.errors import HarnessError
from harness.scoring.lmms_parsers import lmms_eval_letter
from harness.records import PARSE_FAILED, PARSE_OK, Prediction, Sample
from harness.scoring.summary import correct_if_gold, has_gold, summarise
from tasks import evidence as key_scenes
from tasks.base import Task
from tasks.schema import label, safe_relpath
from tasks.vlmevalkit import PROTOCOL_HELP, check_protocol, protocol_record, score_vlmevalkit

LMMS_EVAL_VERSION = "0.7.3"
# parser name -> lmms-eval version of its extractor (None: the harness's own strict extractor)
PARSERS = {"lmms-eval": "0.7.3", "lmms-eval-0.7.1": "0.7.1", "strict": None}
MISSING_EXAMPLES = 5

COMMON_HELP = {
    "annotations": "local annotation file in the official format (default: the Hugging Face dataset)",
    "video_root": "directory holding the videos (default: lmms-eval's layout under $HF_HOME)",
    "skip_missing": "drop samples whose video is missing instead of stopping (the count is recorded)",
    "parser": "answer parser that scores: lmms-eval (0.7.3), lmms-eval-0.7.1, or the harness's strict one "
              "(default: lmms-eval; vlmevalkit under protocol=vlmevalkit)",
    "protocol": PROTOCOL_HELP,
    "evidence": "KFS-Bench key-scene file (CSV id,segment_id,scene_id,start,end) whose scenes give evidence recall "
                "(KFS-Bench's scene hit rate); user-supplied, never shipped",
}
COMMON_CHOICES = {"parser": (*PARSERS, "vlmevalkit"), "protocol": ("lmms-eval", "vlmevalkit")}


# ---------------------------------------------------------------------------------------------------------------
# files and paths


def hf_home() -> Path:
    return Path(os.path.expanduser(os.environ.get("HF_HOME", "~/.cache/huggingface")))


def read_records(path) -> list[dict]:
    """Records of a local annotation file: .json (a list), .jsonl (one object a line) or .parquet."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"annotation file {path} does not exist")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except (ValueError, OSError) as e:  # JSONDecodeError is a ValueError; pyarrow raises ArrowInvalid (ValueError)
        raise HarnessError(f"annotation file {path} is malformed: {str(e).splitlines()[0][:200]}") from None
    if isinstance(records, dict):  # a {"data": [...]}-style wrapper
        lists = [v for v in records.values() if isinstance(v, list)]
        records = lists[0] if len(lists) == 1 else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise HarnessError(f"annotation file {path} must hold a list of JSON objects")
    return records


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_sha256(path) -> str | None:
    """First 16 hex digits of a file's SHA-256 (None if it does not exist)."""
    p = Path(path)
    if not p.is_file():
        return None
    st = p.stat()
    return _file_sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


def load_hf_records(dataset: str, split: str, name: str | None = None) -> list[dict]:
    """Rows of a Hugging Face dataset split; any failure (offline, gated, missing) is a one-line HarnessError."""
    try:
        import datasets
    except ImportError:
        raise HarnessError(f"loading {dataset} needs the `datasets` package (pip install datasets), "
                           f"or pass annotations=FILE") from None
    try:
        ds = datasets.load_dataset(dataset, name, split=split)
    except Exception as e:
        reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise HarnessError(f"cannot load the Hugging Face dataset {dataset} (split {split}): {reason[:200]}; "
                           f"pass annotations=FILE to use a local copy") from None
    return [dict(row) for row in ds]


def resolve_video(root, relpath) -> Path:
    """`relpath` (from the data) inside `root`; absolute paths and `..` escapes raise HarnessError."""
    return Path(root) / safe_relpath(relpath)


# ---------------------------------------------------------------------------------------------------------------
# missing videos


@dataclass(frozen=True)
class MissingReport:
    root: str
    videos: int  # distinct missing video files
    questions: int  # samples on them
    total_videos: int
    total_questions: int
    examples: tuple[str, ...]  # the first few missing names (relative to the root)

    def message(self, task: str) -> str:
        more = ", ..." if self.videos > len(self.examples) else ""
        return (f"{self.videos} of {self.total_videos} videos of task {task!r} ({self.questions} of "
                f"{self.total_questions} questions) are missing under {self.root} "
                f"(first: {', '.join(self.examples)}{more}); check video_root, or pass skip_missing=true to run on "
                f"the {self.total_questions - self.questions} questions whose videos exist")

    def to_json(self) -> dict:
        return {"root": self.root, "missing_videos": self.videos, "missing_questions": self.questions,
                "total_videos": self.total_videos, "total_questions": self.total_questions,
                "examples": list(self.examples)}


def video_name(video, root) -> str:
    """A video path relative to the root, for messages."""
    try:
        return Path(video).relative_to(root).as_posix()
    except ValueError:
        return str(video)


def missing_videos(samples: Iterable[Sample], root) -> MissingReport:
    """Which samples' videos do not exist (as files); names are given relative to `root`."""
    samples = list(samples)
    exists: dict[str, bool] = {}
    for s in samples:
        if s.video not in exists:
            exists[s.video] = Path(s.video).is_file()
    gone = [v for v, ok in exists.items() if not ok]
    names = [video_name(v, root) for v in gone]
    return MissingReport(str(root), len(gone), sum(not exists[s.video] for s in samples), len(exists), len(samples),
                         tuple(names[:MISSING_EXAMPLES]))


# ---------------------------------------------------------------------------------------------------------------


def split_options(question: str, option_line: re.Pattern, keep_stem: bool = False) -> tuple[str, list[str]]:
    """(stem, option texts) of a question whose options are appended as lines matching `option_line` (group 2: the
    text), e.g. "stem\n(A) a\n(B) b". keep_stem: the first line is the stem even when it looks like an option."""
    lines = question.rstrip("\n").split("\n")
    options: list[str] = []
    while len(lines) > int(keep_stem) and (m := option_line.match(lines[-1])):
        options.insert(0, m.group(2))
        lines.pop()
    return "\n".join(lines), options


class BenchmarkTask(Task):
    """Base of the real benchmarks. Subclasses set the class attributes and implement `to_samples` and `prompt`."""

    lmms_task = ""  # lmms-eval task name, e.g. "longvideobench_val_v"
    hf_dataset = ""
    hf_split = ""
    hf_name: str | None = None
    annotation_format = ""  # the official local file, for messages
    default_video_subdir = ""  # under $HF_HOME, where lmms-eval puts the videos
    parser_benchmark = ""  # the benchmark key of harness.scoring.lmms_parsers
    averaging = "micro: correct / questions over all questions and within each category"
    schemas: tuple = ()  # the tasks.schema.Schema of each record format the task reads (ids name records)

    vlmevalkit_dataset = ""  # VLMEvalKit's dataset class for protocol=vlmevalkit ("": it has none)

    def __init__(self, annotations: str | None = None, video_root: str | None = None, skip_missing: bool = False,
                 parser: str | None = None, protocol: str = "lmms-eval", evidence: str | None = None):
        self.protocol_name = check_protocol(protocol, self.name)
        if protocol == "vlmevalkit":
            if not self.vlmevalkit_dataset:
                raise HarnessError(f"task {self.name!r} has no VLMEvalKit protocol (VLMEvalKit has no {self.name} "
                                   f"dataset); use --protocol lmms-eval")
            if parser not in (None, "vlmevalkit"):
                raise HarnessError(f"parser {parser!r} is lmms-eval's or the harness's; protocol=vlmevalkit scores "
                                   f"with VLMEvalKit's matching (parser=vlmevalkit)")
            parser = "vlmevalkit"
        parser = parser or "lmms-eval"
        if parser not in PARSERS and not (parser == "vlmevalkit" and protocol == "vlmevalkit"):
            raise HarnessError(f"unknown parser {parser!r} (known: {', '.join(PARSERS)}; vlmevalkit with "
                               f"protocol=vlmevalkit)")
        self.annotations = str(annotations) if annotations else None
        self.video_root = Path(video_root) if video_root else hf_home() / self.default_video_subdir
        self.skip_missing = bool(skip_missing)
        self.parser = parser
        self.missing: MissingReport | None = None
        self._samples: list[Sample] | None = None
        self.evidence = str(evidence) if evidence else None
        self._scenes: dict | None = None  # question id -> KFS-Bench scenes, once read
        self._unmatched: list[str] = []  # the evidence file's ids that are no question of this task

    location_keys = ("video_root",)

    def config(self) -> dict:
        cfg = {"annotations": self.annotations or f"hf:{self.hf_dataset}:{self.hf_split}",
               "video_root": str(self.video_root), "skip_missing": self.skip_missing, "parser": self.parser,
               "protocol": self.protocol_name}
        if self.annotations:  # the content decides the samples, not the file name
            cfg["annotations_sha256"] = file_sha256(self.annotations)
        if self.evidence:  # only when given: runs without an evidence file keep their identity
            cfg.update(evidence=self.evidence, evidence_sha256=file_sha256(self.evidence))
        return cfg

    def identity(self) -> dict:
        out = super().identity()
        if self.annotations:  # a local file is a location; its content (annotations_sha256) is the identity
            del out["annotations"]
        out.pop("evidence", None)  # likewise the evidence file: its content is evidence_sha256
        if self.protocol_name == "lmms-eval":  # the default keeps the run directories made before protocols existed
            del out["protocol"]
        return out

    # -- data -----------------------------------------------------------------------------------------------------

    def records(self) -> list[dict]:
        """The raw annotation records, from the local file or the Hugging Face dataset."""
        if self.annotations:
            return read_records(self.annotations)
        return load_hf_records(self.hf_dataset, self.hf_split, self.hf_name)

    @abstractmethod
    def to_samples(self, record: dict) -> list[Sample]:
        """The samples of one annotation record (one, or one per question of a per-video record)."""

    def source(self) -> str:
        """Where the records come from, as messages name it: the annotation file's name or the dataset."""
        return Path(self.annotations).name if self.annotations else f"{self.hf_dataset} (split {self.hf_split})"

    def load_samples(self) -> list[Sample]:
        """Every sample of the annotations, in file order, without checking the videos (cached). A record that
        breaks its schema is a HarnessError naming the source, the record (index and id) and what is wrong."""
        if self._samples is None:
            out: list[Sample] = []
            source = self.source()
            for i, record in enumerate(self.records()):
                try:
                    out.extend(self.to_samples(record))
                except HarnessError as e:
                    raise HarnessError(f"{source}: record {i}{label(record, self.schemas)}: {e}") from None
                except (KeyError, TypeError, ValueError, AttributeError) as e:
                    raise HarnessError(f"{source}: record {i}{label(record, self.schemas)} is not in the expected "
                                       f"format ({self.annotation_format}): {type(e).__name__}: {e}") from None
            seen: set[str] = set()
            dupes = [s.id for s in out if s.id in seen or seen.add(s.id)]
            if dupes:
                raise HarnessError(f"{source}: {len(dupes)} duplicate sample ids in the annotations of "
                                   f"{self.name} (first: {', '.join(dupes[:MISSING_EXAMPLES])})")
            self._samples = self._with_evidence(out) if self.evidence else out
        return list(self._samples)

    def _with_evidence(self, samples: list[Sample]) -> list[Sample]:
        out, self._scenes, self._unmatched = key_scenes.attach(samples, self.evidence, self.name)
        return out

    def evidence_recall(self, sample: Sample, timestamps) -> float | None:
        """With an evidence file: KFS-Bench's scene hit rate of the question's scenes (None where the file does
        not annotate it); without: the base rule on the sample's own evidence."""
        if self.evidence is None:
            return super().evidence_recall(sample, timestamps)
        if self._scenes is None:
            self.load_samples()
        return key_scenes.scene_recall(self._scenes.get(sample.id, ()), timestamps)

    def samples(self) -> list[Sample]:
        """The samples whose videos exist; missing videos stop the run unless `skip_missing`."""
        return self.check_videos(self.load_samples())

    def check_videos(self, samples: list[Sample]) -> list[Sample]:
        """`samples` if all their videos exist; otherwise a HarnessError naming the missing ones, or, with
        `skip_missing`, the samples whose videos exist (the report is kept in `self.missing` and the metrics)."""
        report = missing_videos(samples, self.video_root)
        self.missing = report
        if report.videos == 0:
            return list(samples)
        if not self.skip_missing:
            raise HarnessError(report.message(self.name))
        kept = [s for s in samples if Path(s.video).is_file()]
        if not kept:
            raise HarnessError(f"none of the {report.total_videos} videos of task {self.name!r} exist under "
                               f"{self.video_root} (first missing: {', '.join(report.examples)}); check video_root")
        print(f"harness: skipping {report.questions} questions: {report.videos} of {report.total_videos} videos are "
              f"missing under {self.video_root} (first: {', '.join(report.examples)})", file=sys.stderr)
        return kept

    # -- scoring --------------------------------------------------------------------------------------------------

    def query(self, sample: Sample) -> str:
        return sample.question  # the plain question stem, without options or instructions

    def parse_all(self, sample: Sample, text: str | None) -> dict:
        """Every parser's letter for this answer: {"strict": "B", "lmms-eval": "B", "lmms-eval-0.7.1": None}."""
        out = {}
        for name, version in PARSERS.items():
            if version is None:
                out[name] = extract_strict(text, sample.options).letter
            else:
                out[name] = lmms_eval_letter(self.parser_benchmark, text, version)
        if self.protocol_name == "vlmevalkit":
            out["vlmevalkit"] = score_vlmevalkit(self.parser_benchmark, sample, text).parsed
        return out

    def score(self, sample: Sample, text: str | None) -> Prediction:
        """Scored with the configured parser; a parse failure is recorded and wrong (never a random guess); without a
        gold answer (a test split) nothing is scored (`correct` None)."""
        if self.protocol_name == "vlmevalkit":
            return score_vlmevalkit(self.parser_benchmark, sample, text)
        letter = self.parse_all(sample, text)[self.parser]
        if letter is None:
            return Prediction(text, None, correct_if_gold(sample, False), PARSE_FAILED)
        return Prediction(text, letter, correct_if_gold(sample, letter == sample.answer_letter), PARSE_OK)

    def protocol(self) -> dict:
        if self.protocol_name == "vlmevalkit":
            return protocol_record(self.parser_benchmark, self.vlmevalkit_dataset, self.vlmevalkit_note())
        version = PARSERS[self.parser]
        return {"framework": "lmms-eval", "version": LMMS_EVAL_VERSION, "task": self.lmms_task,
                "parser": self.parser,
                "parser_detail": (f"lmms-eval {version} answer extraction" if version else
                                  "harness strict extractor (harness.scoring.answers.extract_strict)") + self.parser_note(),
                "averaging": self.averaging, "scale": "0-100"}

    def parser_note(self) -> str:
        return ""

    def vlmevalkit_note(self) -> str:
        return ""

    def vlmevalkit_metrics(self, rows: list[dict]) -> dict:
        """VLMEvalKit's own output for these rows (its rating dict or accuracy table)."""
        raise NotImplementedError

    def messages(self, sample: Sample) -> list[dict]:
        """VLMEvalKit's message list for a sample (protocol=vlmevalkit; the video as {"type": "video"})."""
        raise HarnessError(f"task {self.name!r}: VLMEvalKit messages exist only under protocol=vlmevalkit")

    def metrics(self, rows: list[dict]) -> dict:
        out = summarise(rows, self.category_keys)
        out["protocol"] = self.protocol()
        out["by_parser"] = parser_accuracies(rows)
        if self.protocol_name == "vlmevalkit":
            out["vlmevalkit"] = self.vlmevalkit_metrics(rows)
        if self.missing is not None and self.missing.videos:
            out["data"] = self.missing.to_json()
        if self.evidence:
            out["evidence"] = key_scenes.metrics_entry(self.evidence, file_sha256(self.evidence), rows, len(self._unmatched))
        return out


def parser_accuracies(rows: list[dict]) -> dict:
    """Overall accuracy (0-100) under each parser whose letters the rows carry in `parsers` (see `parse_all`)."""
    names = sorted({name for r in rows for name in (r.get("parsers") or {})})
    scored = has_gold(rows)  # without gold answers (a test split): no accuracy, the letters' count only
    out = {}
    for name in names:  # rows without letters (errors: no answer) count as wrong, like in the main table
        letters = [(r.get("parsers") or {}).get(name) for r in rows]
        correct = sum(x is not None and x == r.get("answer") for x, r in zip(letters, rows)) if scored else None
        accuracy = 100.0 * correct / len(rows) if rows and scored else None
        out[name] = {"n": len(rows), "correct": correct, "accuracy": accuracy, "no_letter": letters.count(None)}
    return out
