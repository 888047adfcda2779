"""How `harness regress` prints its result: a rich table (default), Markdown, JSON, or a JUnit XML report (one
test case per run, a failure element on a regression) that CI systems display."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict

from harness.report import formats
from harness.report.regress import Regression, RunCheck

FORMATS = ("rich", "md", "json", "junit")
WIDTH = 120


def _p(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def summary_line(reg: Regression) -> str:
    """The last line: the verdict and what it was checked with."""
    failed = [r for r in reg.runs if not r.passed]
    how = ("mode exact" if reg.mode == "exact" else
           f"mode accuracy, --max-drop {reg.max_drop:g} points, --alpha {reg.alpha:g}, Holm over {len(reg.runs)} runs")
    if not failed:
        return f"PASS: {len(reg.runs)} runs match baseline {reg.baseline} ({how})"
    return (f"FAIL: {len(failed)} of {len(reg.runs)} runs regress against baseline {reg.baseline} ({how}): "
            + "; ".join(f"{r.label}: {r.verdict}" for r in failed))


def _run_table(reg: Regression) -> tuple[list[str], list[list[str]], str]:
    if reg.mode == "exact":
        cols = ["run", "n", "baseline acc", "acc", "differing", "result"]
        cells = [[r.label, str(r.n), f"{r.baseline_accuracy:.1f}", f"{r.accuracy:.1f}", str(r.differences),
                  "pass" if r.passed else "FAIL"] for r in reg.runs]
        return cols, cells, "lrrrrl"
    cols = ["run", "n", "baseline acc", "acc", "change", "lost/won", "p", "p Holm", "result"]
    cells = [[r.label, str(r.n), f"{r.baseline_accuracy:.1f}", f"{r.accuracy:.1f}", f"{r.change:+.1f}",
              f"{r.b}/{r.c}", _p(r.p), _p(r.p_holm), ("pass" if r.passed else "FAIL") + f": {r.kind}"]
             for r in reg.runs]
    return cols, cells, "lrrrrrrrl"


def _frames(digest, indices) -> str:
    if digest is None:
        return "none"
    return digest if indices is None else f"{digest} {indices}"


def _diff_table(run: RunCheck) -> tuple[list[str], list[list[str]], str]:
    cols = ["sample", "differs", "baseline answer", "baseline frames", "new answer", "new frames"]
    cells = [[d.sample_id, "+".join(d.fields), str(d.baseline_answer), _frames(d.baseline_frames, None),
              str(d.answer), _frames(d.frames, d.frame_indices)] for d in run.first]
    return cols, cells, "llllll"


def _diff_title(run: RunCheck) -> str:
    more = f" (first {len(run.first)})" if len(run.first) < run.differences else ""
    return (f"{run.label}: {run.differences} differing sample{'s' if run.differences != 1 else ''}{more}; baseline "
            f"frames are digests of frame indices")


def rich_text(reg: Regression) -> str:
    parts = [formats.rich(*_run_table(reg), title=f"harness regress against {reg.baseline}", width=WIDTH)]
    for run in reg.runs:
        if run.first:
            parts.append(formats.rich(*_diff_table(run), title=_diff_title(run), width=WIDTH))
    if reg.mode == "accuracy":
        parts.extend(f"{r.label}: {r.verdict}\n" for r in reg.runs)
    return "".join(parts) + summary_line(reg) + "\n"


def markdown(reg: Regression) -> str:
    lines = [f"## harness regress against `{reg.baseline}`", "", *formats.markdown(*_run_table(reg)), ""]
    for run in reg.runs:
        if run.first:
            lines += [f"**{_diff_title(run)}**", "", *formats.markdown(*_diff_table(run)), ""]
    if reg.mode == "accuracy":
        lines += [f"* {r.label}: {r.verdict}" for r in reg.runs] + [""]
    return "\n".join(lines + [summary_line(reg)]) + "\n"


def as_json(reg: Regression) -> str:
    doc = {**asdict(reg), "passed": reg.passed, "exit_code": reg.exit_code, "summary": summary_line(reg)}
    return json.dumps(doc, indent=2) + "\n"


def junit(reg: Regression) -> str:
    """JUnit XML: one <testsuite> "harness regress", one <testcase> per run (classname task.backbone, name the
    sampler and K), a <failure> with the verdict and the first differing samples on a regression."""
    failed = sum(not r.passed for r in reg.runs)
    suites = ET.Element("testsuites", name="harness regress", tests=str(len(reg.runs)), failures=str(failed),
                        errors="0")
    suite = ET.SubElement(suites, "testsuite", name=f"harness regress ({reg.mode})", tests=str(len(reg.runs)),
                          failures=str(failed), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for name, value in (("baseline", reg.baseline), ("mode", reg.mode), ("max_drop", f"{reg.max_drop:g}"),
                        ("alpha", f"{reg.alpha:g}")):
        ET.SubElement(props, "property", name=name, value=value)
    for run in reg.runs:
        task, backbone, sampler, frames = (part.strip() for part in run.label.split(" / ", 3))
        case = ET.SubElement(suite, "testcase", classname=f"{task}.{backbone}", name=f"{sampler} {frames}",
                             time="0")
        body = [run.verdict, f"run: {run.run_dir}", f"accuracy {run.accuracy:.1f} (baseline "
                f"{run.baseline_accuracy:.1f}) on {run.n} samples"]
        body += [f"{d.sample_id}: {'+'.join(d.fields)} baseline {d.baseline_answer} {_frames(d.baseline_frames, None)}"
                 f" -> new {d.answer} {_frames(d.frames, d.frame_indices)}" for d in run.first]
        if run.passed:
            ET.SubElement(case, "system-out").text = "\n".join(body)
        else:
            ET.SubElement(case, "failure", message=run.verdict, type="regression").text = "\n".join(body)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def render(reg: Regression, fmt: str) -> str:
    return {"rich": rich_text, "md": markdown, "json": as_json, "junit": junit}[fmt](reg)
