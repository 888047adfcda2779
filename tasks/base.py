"""What every task is: data (samples), a prompt, scoring and metrics."""
from __future__ import annotations

from abc import ABC, abstractmethod

from harness.records import Prediction, Sample
from harness.scoring.summary import evidence_recall, score_strict, summarise


class Task(ABC):
    """The engine calls only what this class declares; each hook has a default that fits a generated task:

        samples        the split's samples (videos ready to read)
        load_samples   the same without touching the videos (prompts, data checks, --limit before any check)
        check_videos   the samples of a subset whose videos can be used (benchmarks: missing files)
        prompt         the question text for a backbone's prompt style (lmms-eval's per-model wording)
        query          the text query-conditioned samplers score frames against
        score          the answer text -> a Prediction (never a guessed letter)
        parse_all      every answer parser's letter, recorded per row (None: the task has one parser)
        evidence_recall  how much of a question's ground-truth evidence a selection's timestamps cover
        metrics        the summary written to metrics.json
    """

    name: str = ""
    category_keys: tuple[str, ...] = ()  # keys of Sample.categories that tables break accuracy down by
    stratify_key: str | None = None  # the category `--limit` keeps balanced
    parser: str = "strict"  # the answer parser `score` uses (recorded in metrics.json)
    video_root: str | None = None  # where the task's videos are (benchmarks; `harness data check`)
    location_keys: tuple[str, ...] = ()  # keys of config() that say where the data is, not what it is
    # the backbone prompt styles this task words differently; any other style gets the default wording
    prompt_styles: tuple[str, ...] = ("default",)

    def config(self) -> dict:
        """Every parameter that changes the samples, prompts or scores (hashed into the run identity)."""
        return {}

    def identity(self) -> dict:
        """config() without its locations: the same data under another root (another machine's data home) makes
        the same run directory; config.json still records where it was."""
        return {k: v for k, v in self.config().items() if k not in self.location_keys}

    @abstractmethod
    def samples(self) -> list[Sample]:
        """All samples of the configured split, in a fixed order."""

    def load_samples(self) -> list[Sample]:
        """The samples without checking their videos (benchmarks read only the annotations here)."""
        return self.samples()

    def check_videos(self, samples: list[Sample]) -> list[Sample]:
        """Those of `samples` (a subset of `load_samples`) whose videos can be used; a HarnessError when the run
        cannot go on. Generated tasks have every video."""
        return list(samples)

    def prompt(self, sample: Sample, style: str = "default") -> str:
        """The task's question text for a backbone whose prompt style is `style` (lmms-eval's per-model key)."""
        letters = [chr(ord("A") + i) for i in range(len(sample.options))]
        options = "\n".join(f"{l}. {o}" for l, o in zip(letters, sample.options))
        return f"{sample.question}\n{options}\nAnswer with the option's letter from the given choices directly.\n"

    def query(self, sample: Sample) -> str:
        """The text query-conditioned samplers score frames against."""
        return sample.question

    def score(self, sample: Sample, text: str) -> Prediction:
        return score_strict(sample, text)

    def parse_all(self, sample: Sample, text: str | None) -> dict | None:
        """Every parser's letter for this answer, e.g. {"strict": "B", "lmms-eval": "B"}; None: one parser only."""
        return None

    def evidence_recall(self, sample: Sample, timestamps) -> float | None:
        """Share of the sample's evidence intervals [start, end) holding a selected frame; None without evidence."""
        return evidence_recall(sample.evidence, timestamps)

    def metrics(self, rows: list[dict]) -> dict:
        return summarise(rows, self.category_keys)
