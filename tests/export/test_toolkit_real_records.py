"""Real annotation records in the side environment (scripts/export_roundtrip.sh; HARNESS_SHARED_DATA names the
tspo-release folder, else skipped; never in CI, which must not read the shared data): runs on 40 records per
benchmark with stand-in clips, answered with the VLMEvalKit parity corpus's awkward answers
(scripts/vlmevalkit_corpus.py), exported and read by the toolkits' own functions."""
import importlib
import json
import os
from pathlib import Path

import pytest

from export_runs import CorpusProbe, harness, metrics_of, rows_of
from toolkits import METRIC, hf_doc, lmms_export, vlmevalkit_evaluate

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


@pytest.mark.parametrize("task", ["videomme", "longvideobench", "mlvu", "lvbench"])
def test_lmms_eval_process_results_on_real_records(tmp_path, task):
    """Real records (40, or two LVBench videos' questions) answered with the parity corpus's awkward answers, under
    the lmms-eval protocol: lmms-eval's own process_results on each answer gives the exported metric value (where its
    LongVideoBench parser does not draw a random letter), its aggregation the exported result."""
    pytest.importorskip("lmms_eval")
    data = os.environ.get("HARNESS_SHARED_DATA")
    if not data:
        pytest.skip("HARNESS_SHARED_DATA (the tspo-release folder) is not set")
    from vlmevalkit_corpus import answers_for
    from harness.registry import TASKS
    from harness.util.synth import write_index_clip

    files = {**SHARED_FILES, "lvbench": "video_info.meta.jsonl"}
    path = Path(data) / "jsons" / files[task]
    if task == "lvbench":
        ann = tmp_path / "ann.jsonl"
        ann.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    else:
        records = json.loads(path.read_text())
        ann = tmp_path / "ann.json"
        ann.write_text(json.dumps([records[int(i * (len(records) - 1) / 39)] for i in range(40)]))
    root = tmp_path / "videos"
    t = TASKS.create(task, annotations=str(ann), video_root=str(root))
    CorpusProbe.ANSWERS.clear()
    for i, s in enumerate(t.load_samples()):
        Path(s.video).parent.mkdir(parents=True, exist_ok=True)
        if not Path(s.video).exists():
            write_index_clip(Path(s.video), 40, 4)
        corpus = answers_for(s)
        CorpusProbe.ANSWERS[t.prompt(s)] = corpus[(7 * i) % len(corpus)]
    out = tmp_path / "runs"
    assert harness("run", "--task", task, "--task-arg", f"annotations={ann}", "--video-root", root, "--backbone",
                   "export-corpus-probe", "--sampler", "uniform", "--frames", 4, "--out", out, "--cache-dir",
                   tmp_path / "cache", "--decode-backend", "pyav", "--no-progress") == 0
    [run_dir] = list(out.iterdir())
    res, samples = lmms_export(run_dir, tmp_path / "lmms")
    lines = [json.loads(x) for x in samples.read_text().splitlines()]
    rows = {r["sample_id"]: r for r in rows_of(run_dir)}
    by_id = {s.id: s for s in t.load_samples()}
    utils = importlib.import_module(f"lmms_eval.tasks.{task}.utils")
    metric = METRIC[task]
    checked = skipped = 0
    for x in lines:
        row = rows[x["harness"]["sample_id"]]
        s = by_id[row["sample_id"]]
        doc = {"answer": row["answer"]} if task == "lvbench" else hf_doc(task, s, row)
        theirs = getattr(utils, f"{task}_process_results")(doc, [row["prediction"]["raw_text"]])[metric]
        if task == "longvideobench" and row["prediction"]["parse_status"] != "ok":
            assert x[metric]["parsed_pred"] == ""  # lmms-eval draws a random letter here; nothing made up
            skipped += 1
            continue
        assert theirs == x[metric], (row["sample_id"], row["prediction"]["raw_text"])
        checked += 1
    assert checked >= 25
    r = json.loads(res.read_text())["results"]
    [(name, result)] = r.items()
    values = [x[metric] for x in lines]
    if task == "lvbench":
        assert result[f"{metric},none"] == pytest.approx(sum(values) / len(values))
    else:
        aggregate = getattr(utils, {"videomme": "videomme_aggregate_results", "longvideobench":
                                    "longvideobench_aggregate_results", "mlvu": "mlvu_aggregate_results_dev"}[task])
        assert aggregate(values) == pytest.approx(result[f"{metric},none"])
    print(f"\n{task}: {checked} samples' metric values equal lmms-eval's process_results"
          + (f"; {skipped} unparsable (lmms-eval would draw a random letter) exported with parsed_pred ''"
             if skipped else ""))
