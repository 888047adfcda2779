"""`harness compare` tables on run directories written by hand in the run-store layout."""
import csv
import io
import json

import numpy as np
import pytest

from harness.report.compare import compare, render, write_leaderboard
from harness.report.reader import load_run
from harness.errors import HarnessError
from harness.report.stats import mcnemar_counts, paired_bootstrap


def write_run(root, sampler, outcomes, frames=8, task="demo", backbone="bb", spec=None, n_frames=None,
              tokens=None, config=None):
    """outcomes: {sample_id: (correct, status, kind)}; n_frames/tokens: {sample_id: count} (default K frames)."""
    name = f"{task}__{backbone}__{sampler}__{frames}{'_' + spec if spec else ''}".replace(":", "-").replace("=", "-")
    run = root / name
    run.mkdir(parents=True)
    identity = {"task": {"name": task, "config": {}}, "backbone": {"name": backbone, "config": {}},
                "sampler": {"name": sampler, "config": config or {}, "config_hash": "h"}, "frames": frames,
                "grid": "1fps", "short_grid": "all", "limit": None, "dtype": "float32"}
    cfg = {"identity": identity, "identity_hash": "x", **({"sampler_spec": spec} if spec else {})}
    (run / "config.json").write_text(json.dumps(cfg))
    lines = []
    for sid, (correct, status, kind) in outcomes.items():
        k = (n_frames or {}).get(sid, frames)
        sel = None if status == "error" else {"positions": list(range(k)), "frame_indices": list(range(0, 30 * k, 30)),
                                              "timestamps": [float(t) for t in range(k)], "sampler": sampler,
                                              "config_hash": "h"}
        letter = ("A" if correct else "B") if status == "ok" else None  # gold is A: the reader re-scores from this
        pred = {"raw_text": letter or "A", "parsed": letter, "correct": correct,
                "parse_status": status, "error": "boom" if status == "error" else None, "timings": {}}
        if tokens and sid in tokens:
            pred["visual_tokens"] = tokens[sid]
        lines.append(json.dumps({"sample_id": sid, "categories": {"kind": kind}, "answer": "A", "selection": sel,
                                 "evidence": [[0.0, 1.0]], "evidence_recall": None if sel is None else 1.0,
                                 "prediction": pred}))
    (run / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return run


def results(pattern):
    """sample ids q0.. with correct flags from a string like '1101'."""
    return {f"q{i}": (ch == "1", "ok", "xy"[i % 2]) for i, ch in enumerate(pattern)}


@pytest.fixture()
def group(tmp_path):
    # uniform: 10 questions, 5 right. topk: right where uniform is, plus q1, q3, q5, q7 wrong->right and q0 lost:
    # b (uniform right, topk wrong) = 1, c = 4 on the shared 10 questions.
    uni = write_run(tmp_path, "uniform", results("1010101010"))
    top = write_run(tmp_path, "topk", results("0111111110"), spec="topk:encoder=mini-clip")
    return tmp_path, uni, top


def row_of(c, sampler):
    [rec] = c.table[c.table["sampler"] == sampler].to_dict("records")
    return rec


def test_diff_ci_and_mcnemar_against_stats(group):
    _, uni, top = group
    c = compare([uni, top], n_resamples=2000, seed=4)
    base, topk = row_of(c, "uniform"), row_of(c, "topk:encoder=mini-clip")
    assert list(c.table["sampler"]) == ["uniform", "topk:encoder=mini-clip"]  # baseline first
    assert base["accuracy"] == 50.0 and topk["accuracy"] == 80.0 and topk["n_paired"] == 10
    assert base["diff"] is None or np.isnan(base["diff"])
    assert (topk["b"], topk["c"]) == (1, 4)
    assert topk["mcnemar_p"] == pytest.approx(mcnemar_counts(1, 4).p_value) == pytest.approx(2 * 6 / 32)
    a = np.array([int(ch) for ch in "1010101010"], bool)
    b = np.array([int(ch) for ch in "0111111110"], bool)
    ci = paired_bootstrap(a, b, 2000, 4)
    assert topk["diff"] == pytest.approx(30.0)
    assert (topk["ci_low"], topk["ci_high"]) == (pytest.approx(100 * ci.low), pytest.approx(100 * ci.high))
    assert topk["frames_mean"] == topk["frames_min"] == topk["frames_max"] == 8


def test_pairs_by_sample_id_only_shared_questions(tmp_path):
    # baseline has q0..q5, the other run q2..q7 in another order: only q2..q5 pair up
    uni = write_run(tmp_path, "uniform", {f"q{i}": (i % 2 == 0, "ok", "x") for i in range(6)})
    other = {f"q{i}": (True, "ok", "x") for i in (7, 5, 4, 6, 3, 2)}
    top = write_run(tmp_path, "topk", other)
    c = compare([uni, top], n_resamples=200)
    rec = row_of(c, "topk")
    assert rec["n"] == 6 and rec["n_paired"] == 4 and rec["accuracy"] == 100.0
    # shared q2..q5: uniform right on q2, q4; topk right on all -> diff 50 points, b=0, c=2
    assert rec["diff"] == pytest.approx(50.0) and (rec["b"], rec["c"]) == (0, 2)
    assert any("4 questions shared" in n for n in c.notes)


def test_missing_baseline_is_one_clear_line(group):
    _, uni, top = group
    with pytest.raises(HarnessError) as e:
        compare([top])
    assert "no baseline run 'uniform'" in str(e.value) and "K=8" in str(e.value) and "\n" not in str(e.value)
    # another group (K=16) without its own uniform run fails too
    other_k = write_run(group[0], "topk", results("11"), frames=16)
    with pytest.raises(HarnessError, match="K=16"):
        compare([uni, top, other_k])


def test_baseline_by_label_and_ambiguity(tmp_path):
    a = write_run(tmp_path, "uniform", results("1100"), spec="uniform:variant=linspace-floor")
    b = write_run(tmp_path, "uniform", results("1110"), spec="uniform:variant=linspace-round")
    with pytest.raises(HarnessError, match="2 runs match baseline 'uniform'"):
        compare([a, b])
    c = compare([a, b], baseline="uniform:variant=linspace-round", n_resamples=100)
    assert list(c.table["sampler"]) == ["uniform:variant=linspace-round", "uniform:variant=linspace-floor"]
    assert row_of(c, "uniform:variant=linspace-floor")["diff"] == pytest.approx(-25.0)


def test_groups_by_task_backbone_and_k(tmp_path):
    runs = [write_run(tmp_path, s, results(p), frames=k) for s, p, k in
            [("uniform", "1000", 8), ("topk", "1100", 8), ("uniform", "1110", 16), ("topk", "1111", 16)]]
    c = compare(runs, n_resamples=100)
    got = {(r["frames"], r["sampler"]): r["diff"] for r in c.table.to_dict("records")}
    assert got[(8, "topk")] == pytest.approx(25.0) and got[(16, "topk")] == pytest.approx(25.0)
    assert list(c.table["frames"]) == [8, 8, 16, 16]


def test_unequal_frame_budgets_are_visible(tmp_path):
    uni = write_run(tmp_path, "uniform", results("1010"))
    # AKS official may give fewer than K frames; an error row has no selection and is left out of the counts
    aks = write_run(tmp_path, "aks", {"q0": (True, "ok", "x"), "q1": (False, "ok", "y"), "q2": (True, "ok", "x"),
                                      "q3": (False, "error", "y")}, n_frames={"q0": 8, "q1": 4, "q2": 6})
    c = compare([uni, aks], n_resamples=100)
    rec = row_of(c, "aks")
    assert (rec["frames_mean"], rec["frames_min"], rec["frames_max"]) == (6.0, 4.0, 8.0)
    assert rec["errors"] == 1
    md = render(c, "md")
    assert "6.0 (4-8)" in md and "8.0 (8-8)" in md


def test_visual_tokens_when_recorded_and_dash_when_not(tmp_path):
    uni = write_run(tmp_path, "uniform", results("10"))
    top = write_run(tmp_path, "topk", results("11"), tokens={"q0": 100, "q1": 300})
    c = compare([uni, top], n_resamples=100)
    rec = row_of(c, "topk")
    assert (rec["tokens_mean"], rec["tokens_min"], rec["tokens_max"]) == (200.0, 100.0, 300.0)
    assert np.isnan(row_of(c, "uniform")["tokens_mean"])
    c2 = compare([uni], n_resamples=100)
    assert any("visual tokens" in n and "'-'" in n for n in c2.notes)
    assert "visual tokens" in render(c2, "md")


def test_parse_failures_errors_and_categories(tmp_path):
    uni = write_run(tmp_path, "uniform", {"q0": (True, "ok", "x"), "q1": (False, "parse_failed", "x"),
                                          "q2": (False, "ok", "y"), "q3": (True, "ok", "y")})
    top = write_run(tmp_path, "topk", {"q0": (True, "ok", "x"), "q1": (True, "ok", "x"),
                                       "q2": (False, "error", "y"), "q3": (False, "ok", "y")})
    c = compare([uni, top], by="kind", n_resamples=100)
    assert row_of(c, "uniform")["parse_fail_pct"] == 25.0 and row_of(c, "topk")["errors"] == 1
    cats = {(r["sampler"], r["value"]): r for r in c.categories.to_dict("records")}
    assert cats[("topk", "x")]["accuracy"] == 100.0 and cats[("topk", "x")]["diff"] == pytest.approx(50.0)
    assert cats[("topk", "y")]["diff"] == pytest.approx(-50.0) and cats[("uniform", "y")]["n"] == 2
    with pytest.raises(HarnessError, match="no category 'colour'"):
        compare([uni, top], by="colour")


def test_renderers(group):
    root, uni, top = group
    c = compare([uni, top], by="category", n_resamples=200)
    md = render(c, "md").splitlines()
    assert md[0].startswith("| task | backbone | K | sampler | n | accuracy | diff vs uniform | 95% CI |")
    assert any("+30.0" in line for line in md) and any("kind=x" in line for line in md)
    tex = render(c, "latex")
    assert tex.count(r"\toprule") == 2 and tex.count(r"\midrule") == 2 and tex.count(r"\bottomrule") == 2
    assert r"parse-fail \%" in tex and r"topk:encoder=mini-clip" in tex and "95\\% CI" in tex
    rows = list(csv.DictReader(io.StringIO(render(c, "csv"))))
    assert [r["sampler"] for r in rows] == ["uniform", "topk:encoder=mini-clip"]
    assert float(rows[1]["diff"]) == pytest.approx(30.0)
    cat_rows = list(csv.DictReader(io.StringIO(render(c, "csv", part="categories"))))
    assert {r["value"] for r in cat_rows} == {"x", "y"}
    doc = json.loads(render(c, "json"))
    assert doc["bootstrap"] == {"n_resamples": 200, "seed": 0, "confidence": 0.95, "cluster": "auto"}
    assert doc["mcnemar"] == "exact" and doc["multiple_comparisons"] == "holm"
    assert doc["runs"][0]["diff"] is None and doc["runs"][1]["diff"] == pytest.approx(30.0)
    assert len(doc["categories"]) == 4
    with pytest.raises(HarnessError, match="unknown comparison format"):
        render(c, "html")


def test_write_leaderboard(group, tmp_path):
    _, uni, top = group
    c = compare([uni, top], n_resamples=100, mcnemar_method="chi2-cc")
    out = tmp_path / "results"
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.json"):
        path = write_leaderboard(c, out / name)
        assert path.is_file() and path.stat().st_size > 100
    assert "continuity correction" in (out / "leaderboard.md").read_text()
    assert json.loads((out / "leaderboard.json").read_text())["mcnemar"] == "chi2-cc"
    with pytest.raises(HarnessError, match="unknown suffix"):
        write_leaderboard(c, out / "leaderboard.html")


def test_bad_run_directories(tmp_path):
    with pytest.raises(HarnessError, match="not a run directory"):
        load_run(tmp_path)
    run = write_run(tmp_path, "uniform", results("10"))
    (run / "predictions.jsonl").write_text((run / "predictions.jsonl").read_text() * 2)
    with pytest.raises(HarnessError, match="occur twice"):
        load_run(run)
    with pytest.raises(HarnessError, match="no run directories"):
        compare([])
