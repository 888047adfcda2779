"""The exports read by the toolkits' own code, in the side environment (scripts/export_roundtrip.sh; never in CI):

* lmms-eval 0.7.3 (skipped unless it imports): its local log loader (`lmms_eval.baselines.loader.load_baseline`,
  what `--baseline PATH` reads), its job scheduler's output-folder parser, its logs viewer's run listing and sample
  pages (when fastapi is there), its own task functions: `process_results` on each exported sample's answer gives the
  exported metric value, its aggregation gives the exported result, its clustered stderr the exported one;
* VLMEvalKit (skipped unless VLMEVALKIT_SRC names a copy of its repository and openpyxl imports): the exported .xlsx
  read as its `load` reads xlsx (`pd.read_excel`), then its dataset's own `evaluate(..., model="exact_matching")`
  (imported with scripts/vlmevalkit_stubs.py, as scripts/parity_vlmevalkit.py does) gives the metrics the run wrote
  (metrics.json `vlmevalkit`).
"""
import asyncio
import importlib
import json

import pytest

from export_runs import harness, metrics_of, rows_of
from toolkits import LMMS_TASK, METRIC, hf_doc, job_scheduler, lmms_export, vlmevalkit_evaluate


@pytest.mark.parametrize("task", ["videomme", "longvideobench", "mlvu"])
def test_lmms_eval_reads_the_export(stand_in_run, tmp_path, task):
    pytest.importorskip("lmms_eval")
    from lmms_eval.api.metrics import clustered_stderr
    from lmms_eval.baselines.loader import load_baseline
    from harness.registry import TASKS

    utils = importlib.import_module(f"lmms_eval.tasks.{task}.utils")
    run_dir = stand_in_run(task)
    res, samples = lmms_export(run_dir, tmp_path / "out")
    results = json.loads(res.read_text())
    lines = [json.loads(x) for x in samples.read_text().splitlines()]
    rows = {r["sample_id"]: r for r in rows_of(run_dir)}
    # its local baseline loader finds the results file beside the samples and a score per doc it can score
    scores, agg = load_baseline(str(samples), LMMS_TASK[task])
    assert agg == results
    if task == "videomme":  # the metric dict carries `score`... and pred/answer: lmms-eval compares those
        for x in lines:
            row = rows[x["harness"]["sample_id"]]
            if row["prediction"]["parse_status"] == "ok":
                assert scores[x["doc_id"]] == float(row["prediction"]["correct"])
    # its job scheduler's parser of an output folder
    parsed = job_scheduler()._parse_output_directory(str(tmp_path / "out"))
    assert parsed == {res.parent.name: {"results": str(res), "samples": [str(samples)]}}
    # its own process_results on each answer gives the exported value (LongVideoBench: where the answer parses;
    # where it does not, lmms-eval draws a random letter and the export writes "")
    cfg = json.loads((run_dir / "config.json").read_text())
    by_id = {s.id: s for s in TASKS.create(task, **cfg["run"]["task_args"]).load_samples()}
    for x in lines:
        row = rows[x["harness"]["sample_id"]]
        if row["prediction"]["parse_status"] == "error":
            continue
        theirs = getattr(utils, f"{task}_process_results")(hf_doc(task, by_id[row["sample_id"]], row),
                                                           [row["prediction"]["raw_text"]])
        if task != "longvideobench" or row["prediction"]["parse_status"] == "ok":
            assert theirs[METRIC[task]] == x[METRIC[task]], x["harness"]["sample_id"]
    values = [x[METRIC[task]] for x in lines]
    aggregate = getattr(utils, {"videomme": "videomme_aggregate_results", "longvideobench":
                                "longvideobench_aggregate_results", "mlvu": "mlvu_aggregate_results_dev"}[task])
    r = results["results"][LMMS_TASK[task]]
    assert aggregate(values) == pytest.approx(r[f"{METRIC[task]},none"])
    if task == "videomme":
        assert clustered_stderr([v["score"] for v in values], [v["videoID"] for v in values]) == \
            pytest.approx(r["videomme_perception_score_stderr_clustered,none"])


def test_lmms_eval_logs_viewer(needle_runs, tmp_path):
    pytest.importorskip("lmms_eval")
    pytest.importorskip("fastapi")
    from lmms_eval.tui import server

    assert harness("export", needle_runs, "--format", "lmms-eval", "--out", tmp_path / "logs") == 0
    runs = asyncio.run(server.list_log_runs(logs_path=str(tmp_path / "logs")))
    assert len(runs) == 2 and all(r.tasks == ["needle"] for r in runs)
    page = asyncio.run(server.get_log_run_samples(runs[0].run_id, "needle", logs_path=str(tmp_path / "logs"),
                                                  offset=0, limit=50))
    assert page.total == 8 and {s["harness"]["sample_id"] for s in page.samples}


@pytest.mark.parametrize("task", ["videomme", "longvideobench", "mlvu"])
def test_vlmevalkit_evaluate_reproduces_the_run(vlmevalkit, stand_in_run, tmp_path, task):
    run_dir = stand_in_run(task, protocol="vlmevalkit")
    assert harness("export", run_dir, "--format", "vlmevalkit", "--out", tmp_path / "pred") == 0
    [xlsx] = list((tmp_path / "pred").iterdir())  # <model>_<dataset>_4frame.xlsx, as VLMEvalKit names it
    theirs = vlmevalkit_evaluate(vlmevalkit, task, xlsx)
    ours = metrics_of(run_dir)["vlmevalkit"]
    if task == "mlvu":
        for _, r in theirs.iterrows():
            mine = ours["acc"][r["task"]]
            if r["task"] == "G-Avg":
                assert mine["acc"] is None  # nan there: no open-ended questions
                continue
            assert (int(r["success"]), int(r["overall"]), float(r["acc"])) == \
                (mine["success"], mine["overall"], mine["acc"]), r["task"]
    else:
        assert json.loads(json.dumps({str(k): v for k, v in theirs.items()})) == ours["rating"]
    scored = vlmevalkit.FILES[str(xlsx).replace("MLVU", "MLVU_MCQ").replace(".xlsx", "_score.xlsx")]
    rows = {r["sample_id"]: r for r in rows_of(run_dir)}
    for _, line in scored.iterrows():  # per question: its score is the run row's correctness
        assert int(line["score"]) == int(rows[line["harness_sample_id"]]["prediction"]["correct"])


# -- the layout lmms-eval itself writes --------------------------------------------------------------------------

TASK_YAML = """\
task: export_needle
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
  cache_dir: {cache}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
"""
TASK_UTILS = '''\
def doc_to_visual(doc):
    return []


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["prompt"]


def process_results(doc, results):
    return {"accuracy": 1.0 if results[0] == doc["answer"] else 0.0}
'''


def test_lmms_eval_writes_the_same_layout(needle_runs, tmp_path):
    """lmms-eval's own evaluator and tracker on a local task whose docs are a needle run's questions and whose
    model answers with that run's texts: its files have the keys, key order and value types of the export's."""
    pytest.importorskip("lmms_eval")
    from lmms_eval.api.model import lmms
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.tasks import TaskManager

    run_dir = sorted(needle_runs.iterdir())[0]
    res, samples = lmms_export(run_dir, tmp_path / "ours")
    ours = [json.loads(x) for x in samples.read_text().splitlines()]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"prompt": x["input"], "answer": x["target"]}) + "\n" for x in ours))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "export_needle.yaml").write_text(TASK_YAML.format(docs=docs, cache=tmp_path / "hf"))
    (tmp_path / "tasks" / "utils.py").write_text(TASK_UTILS)

    class Replay(lmms):  # answers each doc with the run's text for it
        is_simple = True

        def generate_until(self, requests):
            return [ours[r.args[3]]["filtered_resps"] for r in requests]

        def loglikelihood(self, requests):
            raise NotImplementedError

        def generate_until_multi_round(self, requests):
            raise NotImplementedError

    tracker = EvaluationTracker(output_path=str(tmp_path / "theirs"))
    date = res.name.removesuffix("_results.json")
    results = simple_evaluate(model=Replay(), tasks=["export_needle"], task_manager=TaskManager(
        include_path=str(tmp_path / "tasks")), log_samples=True, evaluation_tracker=tracker, datetime_str=date,
        batch_size=1)
    logged = results.pop("samples")
    tracker.general_config_tracker.log_experiment_args(model_source="harness", model_args="model=replay",
                                                       system_instruction=None, chat_template=None,
                                                       fewshot_as_multiturn=False)
    tracker.save_results_aggregated(results=results, samples=logged, datetime_str=date)
    tracker.save_results_samples(task_name="export_needle", samples=logged["export_needle"])
    [their_res] = list((tmp_path / "theirs").rglob("*_results.json"))
    [their_samples] = list(their_res.parent.glob("*_samples_*.jsonl"))
    assert their_res.name == res.name and their_samples.name == samples.name.replace("needle", "export_needle")
    theirs = [json.loads(x) for x in their_samples.read_text().splitlines()]
    assert len(theirs) == len(ours)
    for t, o in zip(theirs, ours):
        assert [k for k in o if k != "harness"] == list(t)  # the same keys in the same order
        assert {k: type(v) for k, v in t.items()} == {k: type(o[k]) for k in t}
        assert (t["doc_id"], t["target"], t["filtered_resps"], t["input"], t["accuracy"]) == \
            (o["doc_id"], o["target"], o["filtered_resps"], o["input"], o["accuracy"])
    mine, their_json = json.loads(res.read_text()), json.loads(their_res.read_text())
    assert set(mine) <= set(their_json) | {"task_hashes"}, set(mine) - set(their_json)
    assert set(their_json["config"]) <= set(mine["config"])
    missing = set(their_json) - set(mine)
    assert missing <= {"usage", "throughput", "efficiency"}, missing  # run-time accounting the harness has not
    t_res, o_res = their_json["results"]["export_needle"], mine["results"]["needle"]
    assert list(t_res) == list(o_res) and t_res["accuracy,none"] == pytest.approx(o_res["accuracy,none"])
    assert t_res["accuracy_stderr,none"] == pytest.approx(o_res["accuracy_stderr,none"])
