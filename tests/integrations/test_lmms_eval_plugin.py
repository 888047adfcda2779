"""End to end in the lmms-eval side environment (scripts/lmms_eval_plugin.sh): `lmms_eval --model harness` on a
local lmms-eval task over the generated needle videos gives, sampler by sampler, the frames, prompts and answer
texts `harness run` gives on the same questions, and lmms-eval's own accuracy equals the harness's.

The task YAML and its utils.py are written here into a temporary folder and passed with --include_path; the docs
are the needle samples (JSON Lines, read by the `datasets` json builder). Scoring on the lmms-eval side is
lmms-eval's own multiple-choice extractor (`lmms_eval.tasks._task_utils.mcq_extract.extract_mcq_answer`, what
its Video-MME task scores with); the harness scores with its strict extractor. Skips where lmms_eval is absent
(the main environment)."""
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

NEEDLE = {"videos": 3, "questions_per_video": 4, "min_duration": 60.0, "max_duration": 120.0}
BACKBONE = "mini-qwen2.5-vl"  # the offline default backbone
SAMPLERS = ["uniform", "aks:encoder=mini-clip,depth=3", "tspo:agent=mini-tspo,encoder=mini-clip"]
FRAMES = 8
ROOT = Path(__file__).resolve().parents[2]

TASK_YAML = """\
task: harness_needle
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
  cache_dir: {hf_cache}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
"""

# The prompt of a multiple-choice question as the harness's tasks word it by default (tasks.base.Task.prompt):
# question, lettered options, the instruction; written out here as lmms-eval task code would.
TASK_UTILS = '''\
from lmms_eval.tasks._task_utils.mcq_extract import extract_mcq_answer


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    options = "\\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(doc["options"]))
    return f"{doc['question']}\\n{options}\\nAnswer with the option's letter from the given choices directly.\\n"


def process_results(doc, results):
    letters = [chr(65 + i) for i in range(len(doc["options"]))]
    return {"accuracy": float(extract_mcq_answer(results[0], choices=letters) == doc["answer"])}
'''


def _run(argv, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)
    assert done.returncode == 0, f"{argv[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def harness_runs(tmp_path_factory):
    """`harness run` with every sampler, and the needle samples as lmms-eval docs."""
    tmp = tmp_path_factory.mktemp("plugin")
    needle = {**NEEDLE, "root": str(tmp / "needle")}  # the videos in the test's folder, not the data home
    task_args = [a for k, v in needle.items() for a in ("--task-arg", f"{k}={v}")]
    samplers = [a for s in SAMPLERS for a in ("--sampler", s)]
    _run([sys.executable, "-m", "harness", "run", "--task", "needle", *task_args, "--backbone", BACKBONE,
          *samplers, "--frames", str(FRAMES), "--out", str(tmp / "runs"), "--cache-dir", str(tmp / "cache-run")])
    runs = {}
    for config in glob.glob(str(tmp / "runs" / "*" / "config.json")):
        spec = json.loads(Path(config).read_text())["sampler_spec"]
        rows = [json.loads(x) for x in (Path(config).parent / "predictions.jsonl").read_text().splitlines()]
        metrics = json.loads((Path(config).parent / "metrics.json").read_text())["metrics"]["overall"]
        runs[spec] = {r["sample_id"]: r for r in rows}, metrics
    assert sorted(runs) == sorted(SAMPLERS)

    from harness.registry import TASKS

    samples = TASKS.create("needle", **needle).samples()
    docs = tmp / "docs.jsonl"
    docs.write_text("".join(json.dumps({"sample_id": s.id, "video": s.video, "question": s.question,
                                        "options": list(s.options), "answer": s.answer_letter}) + "\n"
                            for s in samples))
    include = tmp / "tasks"
    include.mkdir()
    (include / "harness_needle.yaml").write_text(TASK_YAML.format(docs=docs, hf_cache=tmp / "hf-datasets"))
    (include / "utils.py").write_text(TASK_UTILS)
    return tmp, runs, [s.id for s in samples]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_lmms_eval_with_the_harness_model_answers_as_harness_run(harness_runs, sampler):
    tmp, runs, ids = harness_runs
    rows, harness_metrics = runs[sampler]
    name = sampler.split(":")[0]
    selections, out = tmp / f"selections-{name}.jsonl", tmp / f"lmms-eval-{name}"
    model_args = ",".join([f"backbone={BACKBONE}", f'sampler="{sampler}"', f"frames={FRAMES}", "device=cpu",
                           f"cache_dir={tmp / f'cache-{name}'}", f"selections={selections}"])
    done = _run([sys.executable, "-m", "lmms_eval", "--model", "harness", "--model_args", model_args,
                 "--tasks", "harness_needle", "--include_path", str(tmp / "tasks"), "--batch_size", "1",
                 "--output_path", str(out), "--log_samples"])
    [results] = glob.glob(str(out / "**" / "*_results.json"), recursive=True)
    [logged] = glob.glob(str(out / "**" / "*_samples_harness_needle.jsonl"), recursive=True)
    accuracy = json.loads(Path(results).read_text())["results"]["harness_needle"]["accuracy,none"]
    answers = {}
    for line in Path(logged).read_text().splitlines():  # lmms-eval 0.7.3 logs doc_id and the filtered response
        entry = json.loads(line)
        text = entry["filtered_resps"]
        answers[ids[entry["doc_id"]]] = text[0] if isinstance(text, list) else text
    records = {ids[r["doc_id"]]: r for r in map(json.loads, selections.read_text().splitlines())}

    assert sorted(answers) == sorted(rows) == sorted(records) == sorted(ids)
    same_frames = sum(records[i]["selection"]["frame_indices"] == rows[i]["selection"]["frame_indices"] for i in ids)
    same_prompt = sum(records[i]["prompt_sha256"] == rows[i]["prompt_sha256"] for i in ids)
    same_answer = sum(answers[i] == rows[i]["prediction"]["raw_text"] for i in ids)
    print(f"\n{sampler}: lmms-eval accuracy {100 * accuracy:.2f} | harness run {harness_metrics['accuracy']:.2f} | "
          f"identical frames {same_frames}/{len(ids)}, prompts {same_prompt}/{len(ids)}, answers "
          f"{same_answer}/{len(ids)} | {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ''}")
    assert same_frames == same_prompt == same_answer == len(ids)
    assert 100 * accuracy == pytest.approx(harness_metrics["accuracy"], abs=1e-9)
    assert all("error" not in r for r in records.values())


def test_model_args_as_lmms_eval_parses_them(tmp_path):
    """lmms-eval's own parser (create_from_arg_string) hands over quoted specs whole; a misspelt arg is one line."""
    from harness.errors import HarnessError
    from harness.integrations.lmms_eval_model import HarnessLMM

    model = HarnessLMM.create_from_arg_string(
        f'sampler="aks:encoder=mini-clip,depth=3",frames=4,backbone_args="max_new_tokens=4",selections=,'
        f'cache_dir={tmp_path}', {"device": "cpu", "batch_size": 1, "max_batch_size": None})
    config = model.harness_config()
    assert config["sampler"]["spec"] == "aks:encoder=mini-clip,depth=3" and config["sampler"]["config"]["depth"] == 3
    assert config["frames"] == 4 and config["backbone"]["config"]["max_new_tokens"] == 4
    assert model.answerer.selections is None
    with pytest.raises(HarnessError, match="unknown option 'frmes' of model harness; did you mean frames"):
        HarnessLMM.create_from_arg_string("frmes=8", {"device": "cpu"})
