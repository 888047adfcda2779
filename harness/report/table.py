"""`harness table`: accuracy per run, recomputed from each run's per-sample rows (never from a log line), as the
reader verified and re-scored them (reader.py); rows that failed verification count as wrong, and the tables say how
many (a "<task> unverified" column, a line under the rich table).

Two layouts of the same numbers:

* wide (md, csv, latex, json), for papers and spreadsheets: one row per backbone, sampler and K; per task its
  accuracy, parse failures, errors, evidence recall and one column per category value;
* narrow (rich), for a terminal and what `harness run` prints (`run_summary`): the overall table, then the
  categories as rows and the samplers as columns (short names); it reads whole at 100 columns.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.report import formats
from harness.report.reader import RunRows, load_run
from harness.scoring.summary import summarise

FORMATS = ("rich", "md", "csv", "latex", "json")
WIDTH = 100  # a terminal's columns: the rich layout never needs more
SHORT = 12  # a sampler label this long heads its category column as it is; a longer one by its sampler name
NOTE = "errors and parse failures count as wrong (strict extractor)"


@dataclass
class RunSummary:
    run: RunRows
    metrics: dict  # harness.scoring.summary.summarise of its rows: "overall" and "by" category


@dataclass
class RunTable:
    """The summaries of some runs, in the order the tables list them (backbone, sampler, K, task)."""

    runs: list[RunSummary]

    def frame(self):
        """The wide table: one row per (backbone, sampler, K); runs of different tasks share a row."""
        import pandas as pd

        records = []
        for s in self.runs:
            task, overall = s.run.task, s.metrics["overall"]
            rec = {"backbone": s.run.backbone, "sampler": s.run.sampler, "frames": s.run.frames,
                   f"{task} (n={overall['n']})": overall["accuracy"],
                   f"{task} parse-fail %": 100.0 * overall["parse_failed"] / overall["n"],
                   f"{task} errors": overall["errors"], f"{task} evidence recall": overall["evidence_recall"]}
            rec[f"{task} unverified"] = len(s.run.unverified)  # rows edited after the run wrote them: wrong
            for key, groups in s.metrics["by"].items():
                for value, g in groups.items():  # the count goes in the header: runs on other subsets get own columns
                    rec[f"{task} {key}={value} (n={g['n']})"] = g["accuracy"]
            records.append(rec)
        frame = pd.DataFrame.from_records(records)
        frame = frame.groupby(["backbone", "sampler", "frames"], sort=True, dropna=False).first().reset_index()
        for col in [c for c in frame.columns if c.endswith(" unverified")]:
            if frame[col].fillna(0).eq(0).all():  # shown only for a task where some row failed verification
                frame = frame.drop(columns=col)
            else:  # counts stay integers beside the rows without that task
                frame[col] = [None if pd.isna(v) else int(v) for v in frame[col]]
        return frame


def collect(run_dirs, by: str | None = None) -> RunTable:
    """Read and summarise the runs; `by`: a category key, "category" for every key, or None for overall only."""
    runs = []
    for run_dir in run_dirs:
        run = load_run(run_dir)
        have = sorted({k for r in run.rows for k in r.get("categories", {})})
        if by and by != "category" and by not in have:
            raise HarnessError(f"{run.dir}: no category {by!r} in its rows (have: {', '.join(have) or 'none'})")
        keys = have if by == "category" else ([by] if by else [])
        runs.append(RunSummary(run, summarise(run.rows, keys)))
    runs.sort(key=lambda s: (s.run.backbone, s.run.sampler, s.run.frames, s.run.task))
    return RunTable(runs)


def _fmt(v) -> str:
    if formats.missing(v):
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if not v.is_integer() or v < 1e6 else str(int(v))
    return str(v)


def render(table: RunTable, fmt: str) -> str:
    if fmt not in FORMATS:
        raise HarnessError(f"unknown table format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "rich":
        return narrow(table)
    frame = table.frame()
    if fmt == "json":
        return json.dumps(formats.records(frame), indent=2) + "\n"
    if fmt == "csv":
        return formats.csv(frame)
    cols = list(frame.columns)
    cells = [[_fmt(v) for v in row] for row in frame.itertuples(index=False)]
    align = "lll" + "r" * (len(cols) - 3)  # backbone, sampler, K, then numbers
    return "\n".join((formats.markdown if fmt == "md" else formats.latex)(cols, cells, align)) + "\n"


def run_summary(run_dirs) -> str:
    """What `harness run` prints: the narrow table of its runs, with every category key."""
    return narrow(collect(run_dirs, by="category"))


# -- the narrow layout ------------------------------------------------------------------------------------------------
def _context(run: RunRows) -> dict[str, str]:
    """What names a run besides its sampler: a column of the overall table where the runs differ in it."""
    return {"task": run.task, "backbone": run.backbone, "K": str(run.frames)}


def narrow(table: RunTable, width: int = WIDTH) -> str:
    """The overall table (what all runs share goes in its title), then the per-category accuracy with one column
    per sampler, headed by a short name; as many category tables as it takes to stay within `width` columns."""
    runs = table.runs
    contexts = [_context(s.run) for s in runs]
    varies = [c for c in contexts[0] if len({ctx[c] for ctx in contexts}) > 1]
    names = _short_names([s.run for s in runs])
    keyed = any(not label.startswith(name) for label, name in names.items())  # "uniform#1": say which run it is
    cols = ["key"] * keyed + ["sampler", *varies, "n", "accuracy", "evidence recall", "parse-fail %", "errors"]
    cells = []
    for s, ctx in zip(runs, contexts):
        o = s.metrics["overall"]
        cells.append([names[s.run.sampler]] * keyed + [s.run.sampler] + [ctx[c] for c in varies] +
                     [str(o["n"]), _fmt(o["accuracy"]), _fmt(o["evidence_recall"]),
                      _fmt(100.0 * o["parse_failed"] / o["n"]), str(o["errors"])])
    shared = [f"K={v}" if c == "K" else f"{c} {v}" for c, v in contexts[0].items() if c not in varies]
    title = "accuracy (%)" + (": " + ", ".join(shared) if shared else "")
    # a category column: the sampler's short name, then K and the backbone where those vary
    headers = {id(s): " ".join([names[s.run.sampler]] + [f"K={ctx['K']}" if c == "K" else ctx[c]
                                                         for c in varies if c != "task"])
               for s, ctx in zip(runs, contexts)}
    return "\n".join([formats.rich(cols, cells, "l" * (len(cols) - 5) + "r" * 5, title=title, caption=note(runs),
                                   width=width),
                      *_category_tables(runs, headers, "task" in varies, width)])


def note(runs: list[RunSummary]) -> str:
    """The caption: how failures count, which runs have no gold answers to score, and how many rows failed
    verification (reader.py) where any did."""
    unverified = sum(len(s.run.unverified) for s in runs)
    unscored = sorted({s.run.task for s in runs if s.metrics.get("scored") is False})
    text = NOTE + (f"; {', '.join(unscored)}: no gold answers (a test split), answers counted, not scored"
                   if unscored else "")
    if not unverified:
        return text
    return (f"{text}; {unverified} row{'s' * (unverified != 1)} failed verification (edited after the run wrote "
            f"{'them' if unverified != 1 else 'it'}) and count{'s' * (unverified == 1)} as wrong")


def _short_names(runs: list[RunRows]) -> dict[str, str]:
    """Sampler label -> short name: the label itself when short, else the sampler's name, numbered (tspo#1,
    tspo#2) where that name would stand for more than one label."""
    names = {r.sampler: r.sampler if len(r.sampler) <= SHORT else r.sampler_name for r in runs}
    by_name: dict[str, list[str]] = {}
    for label, name in names.items():
        by_name.setdefault(name, []).append(label)
    for name, labels in by_name.items():
        shortened = [label for label in labels if label != name]
        if len(labels) > 1:
            names.update({label: f"{name}#{i}" for i, label in enumerate(shortened, 1)})
    return names


def _category_tables(runs: list[RunSummary], headers: dict[int, str], by_task: bool, width: int) -> list[str]:
    """Categories as rows (with their n; a range where runs counted different questions), a column per header."""
    columns = list(dict.fromkeys(headers.values()))  # runs of several tasks share a column
    accuracy, counts = {}, {}
    for s in runs:
        for key, groups in s.metrics["by"].items():
            for value, g in groups.items():
                row = (f"{s.run.task}: " if by_task else "") + f"{key}={value}"
                accuracy[row, headers[id(s)]] = _fmt(g["accuracy"])
                counts.setdefault(row, []).append(g["n"])
    rows = list(counts)
    n = [str(min(counts[r])) if min(counts[r]) == max(counts[r]) else f"{min(counts[r])}-{max(counts[r])}"
         for r in rows]
    fixed = [max(map(len, rows + ["category"])), max(map(len, n + ["n"]))]
    return [formats.rich(["category", "n", *chunk], [[r, c] + [accuracy.get((r, h), "-") for h in chunk]
                                                      for r, c in zip(rows, n)],
                         "lr" + "r" * len(chunk), title="accuracy (%) per category",
                         width=width)
            for chunk in _chunks(columns, fixed, width)] if rows else []


def _chunks(columns: list[str], fixed: list[int], width: int) -> list[list[str]]:
    """The sampler columns in groups that fit beside the fixed columns: each takes its longest header word (at
    least 5, an accuracy) plus 3 for padding and border."""
    room = width - 1 - sum(w + 3 for w in fixed)
    chunks, used = [[]], 0
    for c in columns:
        need = max(5, *(len(w) for w in c.split())) + 3
        if chunks[-1] and used + need > room:
            chunks.append([])
            used = 0
        chunks[-1].append(c)
        used += need
    return chunks
