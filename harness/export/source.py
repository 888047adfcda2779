"""What every export reads: the run directories (one per (task, backbone, sampler, K)), their rows verified as every
report verifies them (harness.report.reader), and the task's samples rebuilt from the run's own options and matched
to the rows by sample id and prompt digest, so an exported question is the one the run asked.

A path given to `harness export` is a run directory (it holds config.json) or a folder of them (`harness run --out`,
`harness sweep`): a run with several samplers or budgets leaves one directory per (sampler, K), and each is exported
on its own; `--sampler` and `--frames` pick among them.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from pathlib import Path

from harness.errors import HarnessError
from harness.records import ERROR, NOT_ANSWERED, PARSE_FAILED, PARSE_OK, Sample
from harness.report.reader import RunRows, load_run
from harness.run.rows import prompt_digest
from harness.store.runs import CONFIG


@dataclass
class ExportRun:
    """One run to export: its verified rows in the task's sample order, each with its sample."""

    run: RunRows
    task: object  # the task rebuilt from the run's options (tasks.base.Task)
    samples: dict[str, Sample]
    prompts: dict[str, str]  # sample id -> the exact prompt text the backbone got

    @property
    def dir(self) -> Path:
        return self.run.dir

    @property
    def config(self) -> dict:
        return self.run.config

    @property
    def rows(self) -> list[dict]:
        return self.run.rows

    @property
    def protocol(self) -> str:
        return getattr(self.task, "protocol_name", "lmms-eval")

    @property
    def parser(self) -> str:
        """The extractor that scored the run: the benchmark task's `parser`, else the harness's strict one."""
        return getattr(self.task, "parser", "strict")

    @property
    def frames(self) -> int:
        return self.run.frames

    def sample(self, row: dict) -> Sample:
        return self.samples[row["sample_id"]]

    def trace(self, row: dict) -> dict:
        """What ties an exported sample to its run row: sample id, parse status, error, the frames it saw."""
        sel = row.get("selection") or {}
        return {"sample_id": row["sample_id"], "parse_status": row["prediction"]["parse_status"],
                "error": row["prediction"].get("error"), "run": self.config.get("identity_hash"),
                "sampler": self.run.sampler, "frames": self.frames, "frame_indices": sel.get("frame_indices"),
                "timestamps": sel.get("timestamps")}


def answer_text(row: dict) -> str | None:
    """The backbone's text of a row (None for an error row: it has no answer, and none is made up)."""
    status = row["prediction"]["parse_status"]
    if status == ERROR:
        return None
    if status not in (PARSE_OK, PARSE_FAILED):
        raise HarnessError(f"row {row['sample_id']!r} has parse status {status!r}: nothing to export")
    return row["prediction"].get("raw_text") or ""


def letter(row: dict) -> str | None:
    """The parsed letter of a cleanly parsed row, else None (parse failure or error)."""
    pred = row["prediction"]
    return pred.get("parsed") if pred["parse_status"] == PARSE_OK else None


def find_runs(paths) -> list[Path]:
    """The run directories under `paths`: each path is one (holding config.json) or a folder of them."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / CONFIG).is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(d for d in p.iterdir() if (d / CONFIG).is_file())
            if not found:
                raise HarnessError(f"{p} is neither a run directory nor a folder of run directories (no {CONFIG})")
            out.extend(found)
        else:
            raise HarnessError(f"RUN_DIR {p} does not exist")
    return out


def pick(runs: list[RunRows], sampler: str | None, frames: int | None) -> list[RunRows]:
    """The runs matching --sampler (the spec as typed, or the sampler's name) and --frames; an empty pick is bad
    input naming what there is."""
    every = runs
    if sampler is not None:  # the spec as typed picks exactly; else every run of that sampler name
        runs = [r for r in runs if r.sampler == sampler] or [r for r in runs if r.sampler_name == sampler]
    chosen = [r for r in runs if frames is None or r.frames == frames]
    if not chosen:
        have = sorted({f"{r.sampler} (K={r.frames})" for r in every})
        want = " ".join(x for x in (sampler and f"--sampler {sampler}", frames and f"--frames {frames}") if x)
        close = difflib.get_close_matches(sampler or "", sorted({r.sampler for r in every}), n=1, cutoff=0.5)
        raise HarnessError(f"no run matches {want} (runs: {', '.join(have)})"
                           + (f"; did you mean --sampler {close[0]}?" if close else ""))
    return chosen


def rebuild_task(config: dict):
    """The run's task, built from the options the run recorded (as `harness compare --report` does)."""
    from harness.config import RunConfig
    from harness.registry import TASKS

    options = config["run"]
    cfg = RunConfig(**{f.name: options[f.name] for f in fields(RunConfig) if f.name in options})
    return TASKS.create(cfg.task, **cfg.task_args)


def load_export_run(run: RunRows) -> ExportRun:
    """The run with its samples: a HarnessError when it has no answers to export (`--backbone none`), when its task
    cannot be rebuilt here, or when a rebuilt prompt differs from the one the run recorded for that sample."""
    if any(r["prediction"]["parse_status"] == NOT_ANSWERED for r in run.rows):
        raise HarnessError(f"{run.dir}: a selection-only run (--backbone none) has no answers to export")
    try:
        task = rebuild_task(run.config)
        by_id = {s.id: s for s in task.load_samples()}
    except HarnessError as e:
        raise HarnessError(f"{run.dir}: its task cannot be rebuilt from config.json to export it ({e})") from None
    style = run.config.get("prompt_style", "default")
    missing = [r["sample_id"] for r in run.rows if r["sample_id"] not in by_id]
    if missing:
        raise HarnessError(f"{run.dir}: {len(missing)} rows name samples the task no longer has "
                           f"(first {missing[0]!r}): the annotations changed since the run")
    order = {sid: i for i, sid in enumerate(by_id)}
    rows = sorted(run.rows, key=lambda r: order[r["sample_id"]])
    prompts = {r["sample_id"]: task.prompt(by_id[r["sample_id"]], style) for r in rows}
    changed = [r["sample_id"] for r in rows
               if "prompt_sha256" in r and prompt_digest(prompts[r["sample_id"]]) != r["prompt_sha256"]]
    if changed:
        raise HarnessError(f"{run.dir}: the task rebuilt here words {len(changed)} prompts differently from the run "
                           f"(first {changed[0]!r}): the annotations or the task changed since the run")
    run.rows[:] = rows
    return ExportRun(run, task, {sid: by_id[sid] for sid in prompts}, prompts)


def runs_to_export(paths, sampler: str | None = None, frames: int | None = None) -> list[ExportRun]:
    return [load_export_run(r) for r in pick([load_run(p) for p in find_runs(paths)], sampler, frames)]
