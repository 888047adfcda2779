"""`harness table`: accuracy per run, recomputed from each run's per-sample rows (never from a log line)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.scoring import summarise
from harness.store import load_config, run_rows

FORMATS = ("rich", "md", "csv", "latex", "json")


def sampler_label(identity: dict, spec: str | None = None) -> str:
    """The sampler spec as the user typed it when the run recorded one, else name(full config)."""
    if spec:
        return spec
    cfg = identity["sampler"]["config"]
    args = ",".join(f"{k}={v}" for k, v in sorted(cfg.items()))
    return identity["sampler"]["name"] + (f"({args})" if args else "")


def collect(run_dirs, by: str | None = None) -> pd.DataFrame:
    """One row per run: identity columns, then per task `acc`, `n`, parse failures, errors and category columns."""
    records = []
    for run_dir in map(Path, run_dirs):
        config = load_config(run_dir)
        rows = run_rows(run_dir)
        if not rows:
            raise HarnessError(f"{run_dir} has no predictions yet")
        ident = config["identity"]
        keys = sorted({k for r in rows for k in r.get("categories", {})}) if by == "category" else \
            ([by] if by else [])
        if by and by != "category" and not any(by in r.get("categories", {}) for r in rows):
            raise HarnessError(f"{run_dir}: no category {by!r} in its rows (have: "
                               f"{', '.join(sorted({k for r in rows for k in r.get('categories', {})})) or 'none'})")
        m = summarise(rows, keys)
        task = ident["task"]["name"]
        overall = m["overall"]
        rec = {"backbone": ident["backbone"]["name"], "sampler": sampler_label(ident, config.get("sampler_spec")), "frames": ident["frames"],
               f"{task} (n={overall['n']})": overall["accuracy"],
               f"{task} parse-fail %": 100.0 * overall["parse_failed"] / overall["n"],
               f"{task} errors": overall["errors"], f"{task} evidence recall": overall["evidence_recall"]}
        for key, groups in m["by"].items():
            for value, g in groups.items():  # the count goes in the header: runs on other subsets get own columns
                rec[f"{task} {key}={value} (n={g['n']})"] = g["accuracy"]
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    # runs of different tasks with the same backbone/sampler/K share one row
    return frame.groupby(["backbone", "sampler", "frames"], sort=True, dropna=False).first().reset_index()


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if not v.is_integer() or v < 1e6 else str(int(v))
    return str(v)


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in s)


def render(frame: pd.DataFrame, fmt: str) -> str:
    if fmt not in FORMATS:
        raise HarnessError(f"unknown table format {fmt!r} (known: {', '.join(FORMATS)})")
    cols = list(frame.columns)
    cells = [[_fmt(v) for v in row] for row in frame.itertuples(index=False)]
    if fmt == "json":
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2) + "\n"
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "md":
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells]) + "\n"
    if fmt == "latex":
        head = " & ".join(_latex_escape(c) for c in cols) + r" \\"
        body = [" & ".join(_latex_escape(c) for c in r) + r" \\" for r in cells]
        return "\n".join([r"\begin{tabular}{" + "l" * 3 + "r" * (len(cols) - 3) + "}", r"\toprule", head,
                          r"\midrule", *body, r"\bottomrule", r"\end{tabular}"]) + "\n"
    from rich.console import Console
    from rich.table import Table
    table = Table(title="accuracy (%), strict extractor; errors and parse failures count as wrong")
    for i, c in enumerate(cols):  # the identity columns are never cut; headers wrap instead
        table.add_column(c, justify="left" if i < 2 else "right", overflow="fold",
                         min_width=max([len(r[i]) for r in cells] + [1]) if i < 2 else None)
    for r in cells:
        table.add_row(*r)
    buf = io.StringIO()
    # wide enough that no cell is cut: each column as wide as its longest cell or longest header word
    widths = [max([len(w) for w in c.split()] + [len(r[i]) for r in cells]) + 3 for i, c in enumerate(cols)]
    Console(file=buf, width=max(100, sum(widths) + 1), force_terminal=False).print(table)
    return buf.getvalue()
