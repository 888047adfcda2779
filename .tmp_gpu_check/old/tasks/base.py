"""What every task is: data (samples), a prompt, scoring and metrics."""
from __future__ import annotations

from abc import ABC, abstractmethod

from harness.records import Prediction, Sample
from harness.scoring import score_strict, summarise


class Task(ABC):
    name: str = ""
    category_keys: tuple[str, ...] = ()  # keys of Sample.categories that tables break accuracy down by
    stratify_key: str | None = None  # the category `--limit` keeps balanced

    def config(self) -> dict:
        """Every parameter that changes the samples, prompts or scores (hashed into the run identity)."""
        return {}

    @abstractmethod
    def samples(self) -> list[Sample]:
        """All samples of the configured split, in a fixed order."""

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

    def metrics(self, rows: list[dict]) -> dict:
        return summarise(rows, self.category_keys)
