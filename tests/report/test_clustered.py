"""Clustered statistics: the cluster bootstrap (whole videos resampled) against hand cases and an independent
loop, Holm's adjustment against hand computations, and `harness compare` choosing and recording the resampling."""
import json

import numpy as np
import pytest

from harness.cli.app import main
from harness.errors import HarnessError
from harness.report.compare import compare, render
from harness.report.stats import (cluster_bootstrap, cluster_bootstrap_accuracy, holm, mcnemar_counts,
                                  paired_bootstrap)


# -- cluster bootstrap ------------------------------------------------------------------------------------------------
def loop_cluster_bootstrap(a, b, videos, n_resamples, seed):
    """The textbook loop, written independently: list the videos in order of first appearance, draw as many
    videos as there are with replacement, pool every question of the drawn videos, take the mean difference;
    percentiles by numpy's default rule."""
    names = list(dict.fromkeys(videos))
    questions = {v: [i for i, w in enumerate(videos) if w == v] for v in names}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(names), size=len(names))
        pool = [i for j in drawn for i in questions[names[j]]]
        diffs.append(sum(int(b[i]) - int(a[i]) for i in pool) / len(pool))
    return tuple(np.percentile(diffs, [2.5, 97.5]))


@pytest.mark.parametrize("seed,chunk", [(0, 1 << 20), (3, 1), (11, 40)])
def test_cluster_bootstrap_matches_a_plain_loop(seed, chunk):
    rng = np.random.default_rng(5)
    videos = [f"v{int(x)}" for x in rng.integers(0, 9, size=30)]  # 9 videos, uneven question counts, shuffled
    a, b = rng.random(30) < 0.5, rng.random(30) < 0.65
    res = cluster_bootstrap(a, b, videos, n_resamples=1500, seed=seed, chunk=chunk)
    low, high = loop_cluster_bootstrap(a, b, videos, 1500, seed)
    assert res.estimate == pytest.approx(b.mean() - a.mean())
    assert (res.low, res.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_one_question_per_video_is_the_question_bootstrap():
    rng = np.random.default_rng(1)
    a, b = rng.random(25) < 0.4, rng.random(25) < 0.6
    assert cluster_bootstrap(a, b, [f"v{i}" for i in range(25)], 700, seed=2) == paired_bootstrap(a, b, 700, seed=2)


def test_cluster_bootstrap_two_videos_by_hand():
    # video x: two questions B gets and A misses (diff +1 each); video y: one question both get (diff 0).
    # Drawing 2 videos: xx -> 4/4 = 1, xy or yx -> 2/3, yy -> 0, with probability 1/4, 1/2, 1/4; each tail holds
    # 25% > 2.5%, so the 95% interval is [0, 1]; the estimate is 2/3 (the question bootstrap would never give 0
    # and 1 at once with this probability: it draws 3 questions).
    res = cluster_bootstrap([0, 0, 1], [1, 1, 1], ["x", "x", "y"], n_resamples=4000, seed=0)
    assert res.estimate == pytest.approx(2 / 3) and (res.low, res.high) == (0.0, 1.0)


def test_correlated_questions_widen_the_interval():
    # 40 videos x 3 questions, the 3 outcomes of a video identical: the effective sample is 40, not 120, so the
    # interval is about sqrt(3) times as wide as the question bootstrap's
    rng = np.random.default_rng(7)
    per_video_a, per_video_b = rng.random(40) < 0.5, rng.random(40) < 0.6
    a, b = np.repeat(per_video_a, 3), np.repeat(per_video_b, 3)
    videos = np.repeat(np.arange(40), 3)
    clustered = cluster_bootstrap(a, b, videos, 4000, seed=0)
    flat = paired_bootstrap(a, b, 4000, seed=0)
    ratio = (clustered.high - clustered.low) / (flat.high - flat.low)
    assert 1.45 < ratio < 2.1
    acc = cluster_bootstrap_accuracy(b, videos, 4000, seed=0)
    assert acc.estimate == pytest.approx(b.mean()) and acc.low < acc.estimate < acc.high


def test_cluster_bootstrap_bad_input():
    with pytest.raises(HarnessError, match="one cluster per question"):
        cluster_bootstrap([1, 0], [1, 1], ["v"])
    with pytest.raises(HarnessError, match="no paired questions"):
        cluster_bootstrap([], [], [])


# -- Holm -------------------------------------------------------------------------------------------------------------
def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; 1 * 0.04 = 0.04 -> monotone: 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # capped at 1: 2 * 0.6 = 1.2 -> 1; then max(1, 0.7) = 1
    assert holm([0.7, 0.6]) == [1.0, 1.0]
    # ties keep their values: 4 * 0.01 = 0.04 for both the first and (monotone) the second
    assert holm([0.01, 0.01, 0.2, 0.001]) == pytest.approx([0.03, 0.03, 0.2, 0.004])
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_holm_refuses_what_is_not_a_p_value():
    with pytest.raises(HarnessError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])
    with pytest.raises(HarnessError, match=r"\[0, 1\]"):
        holm([float("nan")])


# -- harness compare --------------------------------------------------------------------------------------------------
def write_run(root, sampler, pattern, per_video, with_video=True):
    """A run directory in the run-store layout: question i is right where pattern[i] == "1"; `per_video`
    consecutive questions share a video."""
    run = root / f"demo__bb__{sampler}__8"
    run.mkdir(parents=True)
    identity = {"task": {"name": "demo", "config": {}}, "backbone": {"name": "bb", "config": {}},
                "sampler": {"name": sampler, "config": {}, "config_hash": "h"}, "frames": 8, "grid": "1fps",
                "short_grid": "all", "limit": None, "dtype": "float32"}
    (run / "config.json").write_text(json.dumps({"identity": identity, "identity_hash": "x"}))
    lines = []
    for i, ch in enumerate(pattern):
        letter = "A" if ch == "1" else "B"
        row = {"sample_id": f"q{i}", "categories": {}, "answer": "A",
               "selection": {"positions": [0], "frame_indices": [0], "timestamps": [0.0], "sampler": sampler,
                             "config_hash": "h"}, "evidence": [], "evidence_recall": None,
               "prediction": {"raw_text": letter, "parsed": letter, "correct": ch == "1", "parse_status": "ok",
                              "error": None, "timings": {}}}
        if with_video:
            row["video"] = f"/videos/v{i // per_video}.mp4"
        lines.append(json.dumps(row))
    (run / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return run


UNI = "101010101010101010"
TOPK = "011111111111111110"  # vs uniform: b = 1 (q0), c = 8
AKS = "111010101010101011"  # vs uniform: b = 0, c = 2 (q1, q17)


@pytest.fixture()
def three_per_video(tmp_path):
    return [write_run(tmp_path, s, p, per_video=3) for s, p in (("uniform", UNI), ("topk", TOPK), ("aks", AKS))]


def outcomes(pattern):
    return np.array([ch == "1" for ch in pattern])


def test_compare_resamples_videos_and_adjusts_p(three_per_video):
    c = compare(three_per_video, n_resamples=1000, seed=3)
    rows = {r["sampler"]: r for r in c.table.to_dict("records")}
    assert set(c.table["resampled"]) == {"videos"} and rows["topk"]["videos"] == 6
    videos = [f"/videos/v{i // 3}.mp4" for i in range(18)]
    ci = cluster_bootstrap(outcomes(UNI), outcomes(TOPK), videos, 1000, seed=3)
    assert (rows["topk"]["ci_low"], rows["topk"]["ci_high"]) == (pytest.approx(100 * ci.low),
                                                                 pytest.approx(100 * ci.high))
    acc = cluster_bootstrap_accuracy(outcomes(AKS), videos, 1000, seed=3)
    assert rows["aks"]["acc_ci_low"] == pytest.approx(100 * acc.low)
    # exact McNemar by hand: topk b=1, c=8: 2 * (1 + 9) / 512 = 20/512; aks b=0, c=2: 2 * 1/4 = 0.5.
    # Holm, m = 2: 2 * 20/512 = 40/512, then max(40/512, 0.5) = 0.5
    assert rows["topk"]["mcnemar_p"] == pytest.approx(20 / 512) == pytest.approx(mcnemar_counts(1, 8).p_value)
    assert rows["topk"]["mcnemar_p_holm"] == pytest.approx(40 / 512)
    assert rows["aks"]["mcnemar_p_holm"] == pytest.approx(0.5)
    assert np.isnan(rows["uniform"]["mcnemar_p_holm"])  # the baseline is not tested against itself
    text = render(c, "md")
    assert "Holm-adjusted p" in text and "videos (6)" in text and "over whole videos" in text
    assert json.loads(render(c, "json"))["bootstrap"]["cluster"] == "auto"


def test_compare_cluster_choices(tmp_path, three_per_video):
    flat = compare(three_per_video, n_resamples=500, seed=1, cluster="none")
    assert set(flat.table["resampled"]) == {"questions"} and "videos (" not in render(flat, "md")
    ci = paired_bootstrap(outcomes(UNI), outcomes(TOPK), 500, seed=1)
    assert flat.table.set_index("sampler").loc["topk", "ci_low"] == pytest.approx(100 * ci.low)
    # one question per video: auto resamples questions, video resamples videos (the same draws: same numbers)
    single = [write_run(tmp_path / "single", s, p, per_video=1) for s, p in (("uniform", UNI), ("topk", TOPK))]
    auto, forced = compare(single, n_resamples=500, seed=1), compare(single, n_resamples=500, seed=1, cluster="video")
    assert set(auto.table["resampled"]) == {"questions"} and set(forced.table["resampled"]) == {"videos"}
    assert list(auto.table["ci_low"].dropna()) == list(forced.table["ci_low"].dropna())
    # rows without a video: auto falls back to questions only because nothing says they share a video; video refuses
    old = [write_run(tmp_path / "old", s, p, per_video=3, with_video=False) for s, p in (("uniform", UNI),
                                                                                        ("topk", TOPK))]
    assert set(compare(old, n_resamples=100).table["resampled"]) == {"questions"}
    with pytest.raises(HarnessError, match="--cluster video: some rows record no video"):
        compare(old, n_resamples=100, cluster="video")
    with pytest.raises(HarnessError, match="unknown --cluster 'videos'"):
        compare(old, n_resamples=100, cluster="videos")


def test_compare_command_prints_the_method(three_per_video, capsys):
    assert main(["compare", *map(str, three_per_video), "--resamples", "300", "--by", "none"]) == 0
    out = capsys.readouterr().out
    assert "CI resamples" in out and "videos (6)" in out and "Holm-adjusted" in out and "--cluster auto" in out
    assert main(["compare", *map(str, three_per_video), "--cluster", "nope"]) == 2
