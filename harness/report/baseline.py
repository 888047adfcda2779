"""The regression baseline (`harness baseline save`): a compact, versioned JSON file to commit beside the code.

    {"format": "longvideo-harness-baseline", "version": 1, "created": {...},
     "runs": [{"identity": {...}, "key": "...", "subset": {...}, "summary": {...}, "label": "...",
               "sample_fields": ["id", "gold", "parsed", "correct", "frames"],
               "samples": [["needle-test-0001", "B", "B", true, "3f2a9c01d4e7"], ...]}, ...]}

Per run:

* `identity`: what decides its results, as the run recorded it (task with its config, backbone with its config,
  sampler name, config and config hash, K, candidate grid) and the protocol (prompt style, short-grid rule,
  dtype). `key` is its hash: `harness regress` pairs a run with the entry of the same key.
* `subset`: which samples the run answered (`--limit` and the category it keeps balanced, samples available and
  selected). It is not part of the key: a `--limit` run is checked against an entry saved from the full run (or a
  larger subset) on its own samples only, by sample id (see harness.report.regress).
* `samples`: per sample its id, the gold letter, the parsed letter (null when unparsed or an error), whether it is
  right (re-scored by the run reader, never the row's own word) and a digest of the selection's frame indices
  (null without a selection): 12 hex characters of sha256 over the canonical JSON list.
* `summary`: n, correct, accuracy in points, parse failures and errors, over every sample of the entry.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.errors import HarnessError
from harness.records import ERROR, PARSE_FAILED, PARSE_OK
from harness.report.reader import RunRows, load_run
from harness.util.fileio import atomic_write
from harness.util.hashing import short_hash

FORMAT = "longvideo-harness-baseline"
VERSION = 1
SAMPLE_FIELDS = ["id", "gold", "parsed", "correct", "frames"]
DIGEST_CHARS = 12


def selection_digest(row: dict) -> str | None:
    """12 hex characters of sha256 over the canonical JSON list of the row's frame indices; None without one."""
    sel = row.get("selection")
    return None if sel is None else short_hash([int(i) for i in sel["frame_indices"]], DIGEST_CHARS)


def parsed_letter(row: dict) -> str | None:
    pred = row["prediction"]
    return pred.get("parsed") if pred.get("parse_status") == PARSE_OK else None


def run_identity(run: RunRows) -> dict:
    """The identity an entry is matched by: the run's own (config.json) without its subset, plus the protocol."""
    ident, config = run.config["identity"], run.config
    return {"task": ident["task"], "backbone": ident["backbone"], "sampler": ident["sampler"],
            "frames": ident["frames"], "grid": ident["grid"],
            "protocol": {"prompt_style": config.get("prompt_style"), "short_grid": ident.get("short_grid"),
                         "dtype": ident.get("dtype")}}


def run_subset(run: RunRows) -> dict:
    """The subset definition the runner recorded (config.json `subset`); runs written before it: from the
    identity's limit."""
    recorded = run.config.get("subset")
    if recorded is not None:
        return recorded
    return {"limit": run.config["identity"].get("limit"), "stratify": None, "available": None,
            "selected": run.config.get("n_samples")}


def run_label(run: RunRows) -> str:
    return f"{run.task} / {run.backbone} / {run.sampler} / K={run.frames}"


def sample_record(row: dict) -> list:
    return [row["sample_id"], row.get("answer"), parsed_letter(row), bool(row["prediction"]["correct"]),
            selection_digest(row)]


def summary(rows: list[dict]) -> dict:
    n = len(rows)
    correct = sum(bool(r["prediction"]["correct"]) for r in rows)
    status = [r["prediction"].get("parse_status") for r in rows]
    return {"n": n, "correct": correct, "accuracy": round(100.0 * correct / n, 4) if n else None,
            "parse_failed": status.count(PARSE_FAILED), "errors": status.count(ERROR)}


def build_entry(run: RunRows) -> dict:
    identity = run_identity(run)
    return {"label": run_label(run), "identity": identity, "key": short_hash(identity, 16), "subset": run_subset(run),
            "summary": summary(run.rows), "sample_fields": SAMPLE_FIELDS,
            "samples": [sample_record(r) for r in run.rows]}


def build(run_dirs) -> dict:
    """The baseline document of these run directories (rows verified by the reader); two runs of one identity are
    bad input (which one would a regression compare with?)."""
    from harness.config import git_commit, package_versions

    if not run_dirs:
        raise HarnessError("harness baseline save needs at least one RUN_DIR")
    entries, seen = [], {}
    for run_dir in run_dirs:
        run = load_run(run_dir, scoring="baseline save")
        entry = build_entry(run)
        if entry["key"] in seen:
            raise HarnessError(f"{run_dir} has the same identity as {seen[entry['key']]} ({entry['label']}): "
                               f"a baseline holds one run per identity")
        seen[entry["key"]] = run_dir
        entries.append(entry)
    return {"format": FORMAT, "version": VERSION,
            "created": {"git_commit": git_commit(), "harness": package_versions().get("longvideo-harness")},
            "runs": entries}


def dumps(doc: dict) -> str:
    """Indented JSON with one sample per line (a diff of a regenerated baseline shows the samples that moved)."""
    marks, runs = {}, []
    for i, entry in enumerate(doc["runs"]):
        mark = f"@@samples-{i}@@"
        marks[json.dumps(mark)] = "[\n" + ",\n".join("        " + json.dumps(s, ensure_ascii=False)
                                                     for s in entry["samples"]) + "\n      ]"
        runs.append({**entry, "samples": mark})
    text = json.dumps({**doc, "runs": runs}, indent=2, ensure_ascii=False)
    for mark, block in marks.items():
        text = text.replace(mark, block, 1)
    return text + "\n"


def save(run_dirs, out) -> dict:
    doc = build(run_dirs)
    out = Path(out)
    if out.parent and not out.parent.is_dir():
        raise HarnessError(f"--out {out}: folder {out.parent} does not exist")
    atomic_write(out, dumps(doc))
    return doc


def _entry_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return "is not an object"
    for key in ("identity", "key", "subset", "summary", "sample_fields", "samples"):
        if key not in entry:
            return f"has no {key!r}"
    if entry["sample_fields"] != SAMPLE_FIELDS:
        return f"has sample_fields {entry['sample_fields']}, expected {SAMPLE_FIELDS}"
    for s in entry["samples"]:
        if not (isinstance(s, list) and len(s) == len(SAMPLE_FIELDS) and isinstance(s[0], str)
                and isinstance(s[3], bool)):
            return f"has a malformed sample {s!r}"
    if short_hash(entry["identity"], 16) != entry["key"]:
        return "has a key that is not the hash of its identity (edited by hand?)"
    return None


def load(path) -> dict:
    """A baseline file, checked: format, version, and every entry's fields; a HarnessError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"--baseline {path} does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HarnessError(f"--baseline {path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HarnessError(f"--baseline {path} is not a harness baseline (no \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise HarnessError(f"--baseline {path} has version {doc.get('version')!r}; this harness reads version "
                           f"{VERSION} (regenerate it with harness baseline save)")
    if not isinstance(doc.get("runs"), list) or not doc["runs"]:
        raise HarnessError(f"--baseline {path} holds no runs")
    for i, entry in enumerate(doc["runs"]):
        problem = _entry_problem(entry)
        if problem:
            raise HarnessError(f"--baseline {path}: run {i + 1} {problem}")
    return doc
