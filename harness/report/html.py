"""One self-contained HTML file per comparison: the tables, the plots (embedded PNG), and a per-question browser
(question, options, gold answer, each run's answer and the thumbnails of the frames it saw). No script and no
network: images are data URIs and the browser is built from <details> elements, so the file opens anywhere."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.report.compare import Comparison, alignment, display_categories, display_runs
from harness.report.reader import RunRows, load_run
from harness.util.fileio import atomic_write

MAX_THUMBS = 16  # per run and question: enough to see a selection, small enough for a sweep of 64-frame runs

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}
td.text,th.text{text-align:left}
img.plot{max-width:48%;margin:4px;border:1px solid #ddd}
details{border:1px solid #ddd;margin:6px 0;padding:4px 8px}
summary{cursor:pointer}
.ok{color:#176c1f;font-weight:bold}.bad{color:#a11;font-weight:bold}
.frames img{height:72px;margin:1px}
.note{color:#555;font-size:13px}
"""


def _table(cols: list[str], cells: list[list[str]]) -> str:
    css = ["text" if a == "l" else "" for a in alignment(cols)]
    head = "".join(f'<th class="{k}">{html.escape(c)}</th>' for k, c in zip(css, cols))
    rows = "".join("<tr>" + "".join(f'<td class="{k}">{html.escape(str(v))}</td>' for k, v in zip(css, r)) + "</tr>"
                   for r in cells)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(frame: np.ndarray, height: int = 72) -> str:
    """A frame as a small JPEG data URI."""
    from PIL import Image

    image = Image.fromarray(np.asarray(frame, np.uint8))
    width = max(1, round(image.width * height / image.height))
    buf = io.BytesIO()
    image.resize((width, height)).save(buf, format="JPEG", quality=80)
    return _data_uri(buf.getvalue(), "image/jpeg")


def question_browser(runs: list[RunRows], samples: dict, limit: int, decode_backend: str) -> str:
    """<details> per question (the first `limit` of the baseline's rows): text, options, gold letter, then per run
    its answer, whether it was right, the selected times and thumbnails of the frames."""
    from harness.report.plots import selection_frames

    first = runs[0]
    parts = []
    for row in first.rows[:limit]:
        sid = row["sample_id"]
        sample = samples.get(sid)
        title = html.escape(sample.question if sample else sid)
        body = [f"<p><b>{html.escape(sid)}</b> · gold <b>{html.escape(str(row.get('answer')))}</b> · evidence "
                f"{html.escape(str(row.get('evidence') or '-'))}</p>"]
        if sample:
            body.append("<ol type='A'>" + "".join(f"<li>{html.escape(o)}</li>" for o in sample.options) + "</ol>")
        for run in runs:
            other = run.by_id.get(sid)
            if other is None:
                continue
            pred = other["prediction"]
            verdict = ('<span class="ok">right</span>' if pred["correct"] else '<span class="bad">wrong</span>') \
                if pred["parse_status"] != "not_answered" else "not answered"
            if sid in run.unverified:
                verdict = '<span class="bad">wrong: the row failed verification (edited after the run)</span>'
            answer = html.escape(str(pred.get("raw_text") if pred.get("raw_text") is not None
                                     else pred.get("error") or "-"))
            thumbs, times = "", []
            if other.get("selection"):
                try:
                    frames, times = selection_frames(run.dir, sid, decode_backend)
                    shown = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_THUMBS)).astype(int))
                    thumbs = "".join(f'<img src="{thumbnail(frames[i])}" title="{times[i]:.1f} s">' for i in shown)
                    if len(shown) < len(frames):  # a 64-frame selection shows 16 of its frames, evenly spread
                        thumbs += f'<span class="note"> ({len(shown)} of {len(frames)} frames shown)</span>'
                except HarnessError as e:
                    thumbs = f'<span class="note">{html.escape(str(e))}</span>'
            when = ", ".join(f"{t:.1f}" for t in times)
            body.append(f"<p>{html.escape(run.sampler)} (K={run.frames}): {verdict} · answer “{answer}” · "
                        f"frames at [{when}] s</p><div class='frames'>{thumbs}</div>")
        parts.append(f"<details><summary>{title}</summary>{''.join(body)}</details>")
    return "".join(parts)


def write_html(comparison: Comparison, run_dirs, out_file, plots=(), questions: int = 20,
               decode_backend: str = "decord", title: str = "longvideo-harness comparison") -> Path:
    """Write the report; `plots` are PNG files to embed; `questions` caps the per-question browser."""
    runs = [load_run(d, scoring="compare --report") for d in dict.fromkeys(Path(d).resolve() for d in run_dirs)]
    if not runs:
        raise HarnessError("no run directories for the report")
    baseline = [r for r in runs if r.sampler_name == comparison.baseline or r.sampler == comparison.baseline]
    runs = baseline[:1] + [r for r in runs if r not in baseline[:1]]  # the browser follows the baseline's rows
    samples = _samples(runs[0])
    sections = [f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{html.escape(comparison.method())}</p>",
                *(f"<p class='note'>{html.escape(n)}</p>" for n in comparison.notes),
                "<h2>Runs</h2>", _table(*display_runs(comparison))]
    if len(comparison.categories):
        sections += ["<h2>Per category</h2>", _table(*display_categories(comparison))]
    if plots:
        sections.append("<h2>Plots</h2>" + "".join(
            f'<img class="plot" alt="{html.escape(Path(p).stem)}" src="{_data_uri(Path(p).read_bytes(), "image/png")}">'
            for p in plots))
    sections += [f"<h2>Questions (first {questions})</h2>",
                 question_browser(runs, samples, questions, decode_backend)]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
    atomic_write(out_file, page)
    return Path(out_file)


def _samples(run: RunRows) -> dict:
    """The run's task samples by id (question text and options are not in the rows), or {} if the task cannot be
    rebuilt here (e.g. annotations moved): the browser then shows ids only."""
    from dataclasses import fields

    from harness.config import RunConfig
    from harness.registry import TASKS

    options = run.config["run"]
    cfg = RunConfig(**{f.name: options[f.name] for f in fields(RunConfig) if f.name in options})
    try:
        samples = TASKS.create(cfg.task, **cfg.task_args).load_samples()
    except HarnessError:
        return {}
    return {s.id: s for s in samples}
