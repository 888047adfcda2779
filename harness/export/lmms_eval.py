"""`harness export --format lmms-eval`: a run as lmms-eval 0.7.3 logs an evaluation with `--output_path OUT
--log_samples` (written here from its loggers/evaluation_tracker.py, evaluator.py and evaluator_utils.py):

    OUT/<model_name_sanitized>/<date>_results.json          the aggregated results
    OUT/<model_name_sanitized>/<date>_samples_<task>.jsonl  one line per sample

`<date>` is lmms-eval's `%Y%m%d_%H%M%S`, here the run's last recorded event (UTC), so exporting a run twice gives the
same files. The model is `harness` with `model_args` naming backbone, model, sampler and K (the arguments lmms-eval's
`--model harness` plugin takes); lmms-eval takes the model name from `model=`.

A sample line holds what lmms-eval's tracker keeps (it drops `doc` and `arguments` and adds `input`, the prompt;
`resps` goes where it equals `filtered_resps`): doc_id, target, filtered_resps, token_counts, doc_hash, the task's
metric field, input, plus `harness`: the run row it came from (sample id, parse status, error, run identity hash,
sampler, K, frame indices and timestamps). An error row has `filtered_resps` null (no answer, none made up) and
scores 0, as the harness counts it. Only runs scored as lmms-eval scores them export (the lmms-eval protocol with
the default parser, or needle, which has no lmms-eval task and keeps its own metric `accuracy`).
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import HarnessError
from harness.export.lmms_tasks import TASKS, clt_stderr, clustered_stderr, mean_stderr
from harness.export.source import ExportRun, answer_text, letter
from harness.scoring.summary import has_gold
from harness.store.runs import EVENTS, read_jsonl
from harness.util.fileio import atomic_write

LMMS_EVAL_VERSION = "0.7.3"
FILTER = "none"  # the filter key of a task without filters


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sanitize_model_name(name: str) -> str:
    """lmms-eval's folder name for a model: the last two path parts, runs of "<>:/|\\?*[] characters as `__`."""
    parts = name.split("/")
    last = "/".join(parts[-2:]) if len(parts) > 1 else parts[-1]
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", last)


def check_exportable(run: ExportRun) -> None:
    name = run.run.task
    if name not in TASKS:
        raise HarnessError(f"{run.dir}: task {name!r} has no lmms-eval log layout here (known: {', '.join(TASKS)})")
    if run.protocol != "lmms-eval":
        raise HarnessError(f"{run.dir}: --format lmms-eval needs a run under the lmms-eval protocol (this one used "
                           f"{run.protocol}: its prompts and answer matching are not lmms-eval's)")
    if not has_gold(run.rows):  # lmms-eval's test tasks (longvideobench_test_v) write a submission file, no metric
        raise HarnessError(f"{run.dir}: no gold answers (a test split): nothing to score in lmms-eval's logs; "
                           "--format longvideobench-submission writes the leaderboard's file")
    if name != "needle" and run.parser != "lmms-eval":
        raise HarnessError(f"{run.dir}: --format lmms-eval needs a run scored by lmms-eval's parser (this one: "
                           f"parser={run.parser}); rerun without --task-arg parser")


def model_args(run: ExportRun) -> str:
    ident = run.config["identity"]
    model = ident["backbone"]["config"].get("model") or run.run.backbone
    return f"model={model},backbone={run.run.backbone},sampler={run.run.sampler},frames={run.frames}"


def date_id(run: ExportRun) -> str:
    times = [e["time"] for e in read_jsonl(run.dir / EVENTS) if isinstance(e.get("time"), (int, float))]
    if not times:
        raise HarnessError(f"{run.dir}: {EVENTS} records no time to date the export by")
    return datetime.fromtimestamp(max(times), tz=timezone.utc).strftime("%Y%m%d_%H%M%S")


def doc_of(run: ExportRun, row: dict) -> dict:
    """The record the harness read for this sample (what `doc_hash` hashes; lmms-eval's tracker does not write
    it): the annotation fields, the question and the options."""
    s = run.sample(row)
    doc = {k: v for k, v in s.metadata.items() if k != "video_file"}
    return {**doc, "question": s.question, "options": list(s.options)}


def sample_lines(run: ExportRun) -> tuple[list[dict], list]:
    spec = TASKS[run.run.task]
    lines, values = [], []
    for doc_id, row in enumerate(run.rows):
        s = run.sample(row)
        text = answer_text(row)
        value = spec.value(s, letter(row) or "", bool(row["prediction"]["correct"]))
        values.append(value)
        doc_hash = sha256(json.dumps(doc_of(run, row), indent=2, ensure_ascii=False, default=str))
        lines.append({"doc_id": doc_id, "target": str(spec.target(s)), "filtered_resps": text,
                      "token_counts": [None], "doc_hash": doc_hash, spec.metric: value,
                      "input": run.prompts[row["sample_id"]], "harness": run.trace(row)})
    return lines, values


def task_config(run: ExportRun, task: str) -> dict:
    spec = TASKS[run.run.task]
    cfg = {"task": task, "output_type": "generate_until", "metric_list": [
        {"metric": spec.metric, "aggregation": "mean" if spec.mean else f"{task} aggregation",
         "higher_is_better": True}], "exported_by": "longvideo-harness (harness export --format lmms-eval)",
        "harness_task": run.run.task, "harness_task_config": run.config.get("task_config", {})}
    if spec.cluster_key:
        cfg["cluster_key"] = spec.cluster_key
    return cfg


def results_json(run: ExportRun, task: str, lines: list[dict], values: list, date: str) -> dict:
    spec = TASKS[run.run.task]
    n = len(values)
    key = f"{spec.metric},{FILTER}"
    numeric = spec.numeric(values)
    clusters = spec.clusters(values)
    result = {"alias": task, key: spec.aggregate(values),
              f"{spec.metric}_stderr,{FILTER}": mean_stderr(numeric) if spec.mean else "N/A",
              f"{spec.metric}_stderr_clt,{FILTER}": clt_stderr(numeric),
              f"{spec.metric}_stderr_clustered,{FILTER}":
                  clustered_stderr(numeric, clusters) if numeric and len(numeric) == n else "N/A"}
    args = model_args(run)
    model_name = args.split("model=", 1)[1].split(",", 1)[0]
    subset = run.config.get("subset") or {}
    hashes = sha256("".join(f"sample_{i}" + line["doc_hash"] for i, line in enumerate(lines)))
    return {
        "results": {task: result},
        "group_subtasks": {task: []},
        "configs": {task: task_config(run, task)},
        "versions": {task: "harness-export"},
        "n-shot": {task: 0},
        "higher_is_better": {task: {spec.metric: True}},
        "n-samples": {task: {"original": subset.get("available", n), "effective": n}},
        "config": {"model": "harness", "model_args": args, "model_backend": "longvideo-harness run (exported)",
                   "batch_size": run.config["run"].get("batch_size"), "batch_sizes": [],
                   "device": run.config["run"].get("device"), "use_cache": None,
                   "limit": run.config["run"].get("limit"), "offset": 0, "bootstrap_iters": 0,
                   "process_docs_parallel": None, "gen_kwargs": "", "random_seed": None, "numpy_seed": None,
                   "torch_seed": None, "fewshot_seed": None, "harness_run": str(run.dir), "harness_identity": run.config["identity"]},
        "git_hash": (run.config.get("git_commit") or "")[:7] or None,
        "git_branch": None,
        "lmms_eval_version": LMMS_EVAL_VERSION,
        "date": date,
        "task_hashes": {task: hashes},
        "model_source": "harness", "model_name": model_name, "model_name_sanitized": sanitize_model_name(model_name),
        "system_instruction": None, "system_instruction_sha": None, "fewshot_as_multiturn": False,
        "chat_template": None, "chat_template_sha": None, "start_time": None, "end_time": None,
        "total_evaluation_time_seconds": None,
    }


def export_lmms_eval(run: ExportRun, out: Path) -> list[Path]:
    """Write the run's results JSON and samples JSONL under `out` (lmms-eval's --output_path); their paths."""
    check_exportable(run)
    task = getattr(run.task, "lmms_task", "") or run.run.task
    lines, values = sample_lines(run)
    date = date_id(run)
    results = results_json(run, task, lines, values, date)
    folder = Path(out) / results["model_name_sanitized"]
    res_path, samples_path = folder / f"{date}_results.json", folder / f"{date}_samples_{task}.jsonl"
    atomic_write(samples_path, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    atomic_write(res_path, json.dumps(results, indent=2, ensure_ascii=False))
    return [res_path, samples_path]
