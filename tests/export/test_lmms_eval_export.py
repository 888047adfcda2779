"""`harness export --format lmms-eval`: read back with json and checked row by row against predictions.jsonl.
Expected values are the run's own rows and metrics and hand computations of lmms-eval 0.7.3's aggregations (read
from its task files); lmms-eval's own readers are tests/export/test_toolkit_readers.py (side environment)."""
import hashlib
import json
from pathlib import Path

import pytest

from export_runs import harness, metrics_of, rows_of


def exported(out: Path) -> tuple[dict, list[dict], Path]:
    [res] = list(out.rglob("*_results.json"))
    [samples] = list(res.parent.glob("*_samples_*.jsonl"))
    assert res.name.removesuffix("_results.json") == samples.name.split("_samples_")[0]  # one date prefix
    return json.loads(res.read_text()), [json.loads(x) for x in samples.read_text().splitlines()], samples


def prompt_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_needle_runs_one_export_per_sampler(needle_runs, tmp_path):
    out = tmp_path / "lmms"
    assert harness("export", needle_runs, "--format", "lmms-eval", "--out", out) == 0
    run_dirs = sorted(needle_runs.iterdir())
    assert sorted(p.name for p in out.iterdir()) == [d.name for d in run_dirs]  # one folder per (sampler, K)
    for run_dir in run_dirs:
        results, lines, samples = exported(out / run_dir.name)
        rows = {r["sample_id"]: r for r in rows_of(run_dir)}
        assert samples.name.endswith("_samples_needle.jsonl") and samples.parent.name == "mini-qwen2.5-vl"
        assert sorted(x["harness"]["sample_id"] for x in lines) == sorted(rows)
        assert [x["doc_id"] for x in lines] == list(range(len(rows)))
        for x in lines:
            row = rows[x["harness"]["sample_id"]]
            assert x["filtered_resps"] == row["prediction"]["raw_text"]
            assert x["target"] == row["answer"]
            assert x["accuracy"] == (1.0 if row["prediction"]["parsed"] == row["answer"] else 0.0)
            assert prompt_digest(x["input"]) == row["prompt_sha256"]  # the prompt the run gave
            assert x["harness"]["frame_indices"] == row["selection"]["frame_indices"]
            assert "doc" not in x and "arguments" not in x and "resps" not in x  # what lmms-eval's tracker drops
        r = results["results"]["needle"]
        n, correct = len(rows), sum(r_["prediction"]["correct"] for r_ in rows.values())
        assert r["accuracy,none"] == pytest.approx(correct / n)
        assert r["accuracy,none"] * 100 == pytest.approx(metrics_of(run_dir)["overall"]["accuracy"])
        assert results["n-samples"]["needle"]["effective"] == n
        assert results["config"]["model"] == "harness" and "sampler=" in results["config"]["model_args"]
        assert results["task_hashes"]["needle"] == hashlib.sha256(
            "".join(f"sample_{i}" + x["doc_hash"] for i, x in enumerate(lines)).encode()).hexdigest()


def test_pick_one_run_by_sampler_and_frames(needle_runs, tmp_path, capsys):
    out = tmp_path / "one"
    assert harness("export", needle_runs, "--format", "lmms-eval", "--out", out, "--sampler", "uniform",
                   "--frames", 4) == 0
    assert [p.name for p in out.iterdir()] == ["mini-qwen2.5-vl"]  # one run: --out is lmms-eval's output path
    assert harness("export", needle_runs, "--format", "lmms-eval", "--sampler", "unifrm") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean --sampler uniform" in err


@pytest.mark.parametrize("task,metric", [("videomme", "videomme_perception_score"), ("longvideobench", "lvb_acc"),
                                         ("mlvu", "mlvu_percetion_score")])
def test_stand_in_benchmarks(stand_in_run, tmp_path, task, metric):
    run_dir = stand_in_run(task)
    out = tmp_path / "lmms"
    assert harness("export", run_dir, "--format", "lmms-eval", "--out", out) == 0
    results, lines, samples = exported(out)
    lmms_task = {"videomme": "videomme", "longvideobench": "longvideobench_val_v", "mlvu": "mlvu_dev"}[task]
    assert samples.name.endswith(f"_samples_{lmms_task}.jsonl")
    rows = {r["sample_id"]: r for r in rows_of(run_dir)}
    statuses = sorted(r["prediction"]["parse_status"] for r in rows.values())
    assert "error" in statuses and "parse_failed" in statuses and "ok" in statuses  # every kind of row occurs
    for x in lines:
        row = rows[x["harness"]["sample_id"]]
        pred = row["prediction"]
        value = x[metric]
        letter = pred["parsed"] if pred["parse_status"] == "ok" else ""
        assert value[{"longvideobench": "parsed_pred"}.get(task, "pred_answer")] == letter
        assert value["answer"] == row["answer"]
        assert x["harness"]["parse_status"] == pred["parse_status"]
        if pred["parse_status"] == "error":
            assert x["filtered_resps"] is None and x["harness"]["error"] == pred["error"]
        else:
            assert x["filtered_resps"] == pred["raw_text"]
        if task == "videomme":
            assert value["score"] == float(pred["correct"]) and value["videoID"] == row["sample_id"].split("-")[0]
    key = f"{metric},none"
    got = results["results"][lmms_task][key]
    correct = [x[metric][{"longvideobench": "parsed_pred"}.get(task, "pred_answer")] == x[metric]["answer"]
               for x in lines]
    if task == "videomme":  # 100 * correct / n
        assert got == pytest.approx(100 * sum(correct) / len(lines))
        assert got == pytest.approx(metrics_of(run_dir)["overall"]["accuracy"])
    elif task == "longvideobench":  # 0-1, 5 places
        assert got == round(sum(correct) / len(lines), 5)
    else:  # the mean over lmms-eval's seven MLVU task types, 0 for the five absent here
        by = {}
        for x, ok in zip(lines, correct):
            by.setdefault(x[metric]["task_type"], []).append(ok)
        assert got == pytest.approx(sum(100 * sum(v) / len(v) for v in by.values()) / 7)


def test_videomme_clustered_stderr_by_hand(stand_in_run, tmp_path):
    """SE^2 = SE_CLT^2 + (1/n^2) sum_c [(sum_i d_i)^2 - sum_i d_i^2], d = score - mean, clusters = videoID."""
    run_dir = stand_in_run("videomme")
    assert harness("export", run_dir, "--format", "lmms-eval", "--out", tmp_path / "o") == 0
    results, lines, _ = exported(tmp_path / "o")
    s = [x["videomme_perception_score"]["score"] for x in lines]
    c = [x["videomme_perception_score"]["videoID"] for x in lines]
    n, m = len(s), sum(s) / len(s)
    clt2 = sum((v - m) ** 2 for v in s) / (n - 1) / n
    cross = sum(sum(v - m for v, k in zip(s, c) if k == g) ** 2 - sum((v - m) ** 2 for v, k in zip(s, c) if k == g)
                for g in set(c))
    r = results["results"]["videomme"]
    assert r["videomme_perception_score_stderr_clt,none"] == pytest.approx(clt2 ** 0.5)
    assert r["videomme_perception_score_stderr_clustered,none"] == pytest.approx((clt2 + cross / n ** 2) ** 0.5)
    assert r["videomme_perception_score_stderr,none"] == "N/A"  # a task aggregation function: no stderr


def test_refusals_are_one_line(stand_in_run, tmp_path, capsys):
    run_dir = stand_in_run("longvideobench", protocol="vlmevalkit")
    assert harness("export", run_dir, "--format", "lmms-eval", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lmms-eval protocol" in err
    assert harness("export", tmp_path / "nowhere", "--format", "lmms-eval") == 2
    assert "does not exist" in capsys.readouterr().err
    assert harness("export", run_dir, "--format", "lmms-evl") == 2
    assert "did you mean lmms-eval?" in capsys.readouterr().err
