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
import os
import sys
from pathlib import Path

import pytest

from export_runs import harness, metrics_of, rows_of

ROOT = Path(__file__).resolve().parents[2]
LMMS_TASK = {"videomme": "videomme", "longvideobench": "longvideobench_val_v", "mlvu": "mlvu_dev"}
METRIC = {"videomme": "videomme_perception_score", "longvideobench": "lvb_acc", "mlvu": "mlvu_percetion_score"}


def lmms_export(run_dir, out):
    assert harness("export", run_dir, "--format", "lmms-eval", "--out", out) == 0
    [res] = list(Path(out).rglob("*_results.json"))
    [samples] = list(res.parent.glob("*_samples_*.jsonl"))
    return res, samples


def job_scheduler():
    """lmms-eval's JobScheduler class, imported without its package `__init__`, which starts with the HTTP server's
    imports (uvicorn: lmms-eval's server extra, absent from the [parity] install)."""
    import types

    import lmms_eval

    if "lmms_eval.entrypoints" not in sys.modules:
        pkg = types.ModuleType("lmms_eval.entrypoints")
        pkg.__path__ = [os.path.join(os.path.dirname(lmms_eval.__file__), "entrypoints")]
        sys.modules["lmms_eval.entrypoints"] = pkg
    return importlib.import_module("lmms_eval.entrypoints.job_scheduler").JobScheduler


def hf_doc(task: str, sample, row) -> dict:
    """The sample as the Hugging Face row lmms-eval's task functions read."""
    md = sample.metadata
    if task == "videomme":
        return {**{k: md[k] for k in ("question_id", "duration", "domain", "sub_category", "task_type", "videoID")},
                "answer": row["answer"]}
    if task == "longvideobench":
        return {"id": sample.id, "duration_group": int(md["duration_group"]),
                "question_category": md["question_category"], "correct_choice": sample.answer,
                **{f"option{i}": (sample.options[i] if i < len(sample.options) else "N/A") for i in range(5)}}
    return {"question": md["question"], "task_type": md["task_type"], "answer": row["answer"]}


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


@pytest.fixture(scope="module")
def vlmevalkit():
    src = os.environ.get("VLMEVALKIT_SRC")
    if not src:
        pytest.skip("VLMEVALKIT_SRC (a copy of VLMEvalKit's repository) is not set")
    pytest.importorskip("openpyxl")
    sys.path.insert(0, str(ROOT / "scripts"))
    import vlmevalkit_stubs as stubs
    stubs.install(src)
    return stubs


def vlmevalkit_evaluate(stubs, task: str, xlsx: Path):
    """Its dataset's evaluate on the file as its `load` reads an .xlsx (pd.read_excel)."""
    import pandas as pd

    stubs.FILES[str(xlsx)] = pd.read_excel(xlsx)
    if task == "videomme":
        from vlmeval.dataset.videomme import VideoMME
        return VideoMME.evaluate(str(xlsx), model="exact_matching")
    if task == "longvideobench":
        from vlmeval.dataset.longvideobench import LongVideoBench
        return LongVideoBench.evaluate(str(xlsx), model="exact_matching")
    from vlmeval.dataset.mlvu import MLVU, MLVU_MCQ
    from vlmeval.dataset.video_concat_dataset import ConcatVideoDataset
    ConcatVideoDataset.__init__ = lambda self, dataset, **kw: None  # its __init__ downloads the sub-datasets
    composite = stubs.bare(MLVU)
    MLVU.__init__(composite, dataset="MLVU")
    composite.dataset_name, composite.datasets, composite.dataset_map = "MLVU", ["MLVU_MCQ"], {"MLVU_MCQ": MLVU_MCQ}
    return MLVU.evaluate(composite, str(xlsx), model="exact_matching")


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


# -- real annotation records (side environment only; HARNESS_SHARED_DATA names tspo-release) ----------------------

SHARED_FILES = {"videomme": "videomme.json", "longvideobench": "lvb_val.json", "mlvu": "mlvu.json"}


@pytest.mark.parametrize("task", ["videomme", "longvideobench", "mlvu"])
def test_vlmevalkit_on_real_records_and_awkward_answers(vlmevalkit, tmp_path, task):
    """40 real records per benchmark (stand-in clips), answered with the VLMEvalKit parity corpus's awkward answers
    (scripts/vlmevalkit_corpus.py): VLMEvalKit's own evaluate on the exported file gives the run's metrics and every
    row's score."""
    data = os.environ.get("HARNESS_SHARED_DATA")
    if not data:
        pytest.skip("HARNESS_SHARED_DATA (the tspo-release folder) is not set")
    from vlmevalkit_corpus import answers_for
    from export_runs import CorpusProbe
    from harness.registry import TASKS
    from harness.util.synth import write_index_clip

    records = json.loads((Path(data) / "jsons" / SHARED_FILES[task]).read_text())
    picked = [records[int(i * (len(records) - 1) / 39)] for i in range(40)]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(picked))
    root = tmp_path / "videos"
    t = TASKS.create(task, annotations=str(ann), video_root=str(root), protocol="vlmevalkit")
    CorpusProbe.ANSWERS.clear()
    for i, s in enumerate(t.load_samples()):
        Path(s.video).parent.mkdir(parents=True, exist_ok=True)
        if not Path(s.video).exists():
            write_index_clip(Path(s.video), 40, 4)
        corpus = [a for a in answers_for(s) if a.strip()]  # a blank answer is a blank cell: see docs/export.md
        CorpusProbe.ANSWERS[t.prompt(s)] = corpus[(7 * i) % len(corpus)]
    out = tmp_path / "runs"
    assert harness("run", "--task", task, "--task-arg", f"annotations={ann}", "--video-root", root, "--protocol",
                   "vlmevalkit", "--backbone", "export-corpus-probe", "--grid", "all", "--sampler",
                   "uniform:variant=vlmevalkit", "--frames", 4, "--out", out, "--cache-dir", tmp_path / "cache",
                   "--decode-backend", "pyav", "--no-progress") == 0
    [run_dir] = list(out.iterdir())
    assert harness("export", run_dir, "--format", "vlmevalkit", "--out", tmp_path / "pred") == 0
    [xlsx] = list((tmp_path / "pred").iterdir())
    theirs = vlmevalkit_evaluate(vlmevalkit, task, xlsx)
    ours = metrics_of(run_dir)["vlmevalkit"]
    if task == "mlvu":
        got = {r["task"]: (int(r["success"]), int(r["overall"]), float(r["acc"])) for _, r in theirs.iterrows()
               if r["task"] != "G-Avg"}
        assert got == {k: (v["success"], v["overall"], v["acc"]) for k, v in ours["acc"].items() if k != "G-Avg"}
    else:
        assert json.loads(json.dumps({str(k): v for k, v in theirs.items()})) == ours["rating"]
    scored = vlmevalkit.FILES[str(xlsx).replace("MLVU", "MLVU_MCQ").replace(".xlsx", "_score.xlsx")]
    rows = {r["sample_id"]: r for r in rows_of(run_dir)}
    assert len(scored) == len(rows) == 40
    for _, line in scored.iterrows():
        pred = rows[line["harness_sample_id"]]["prediction"]
        api_failure = task == "mlvu" and "Failed to obtain answer via API." in pred["raw_text"]  # its -1, as ours
        assert int(line["score"]) == (-1 if api_failure else int(pred["correct"]))
