"""Figures: valid PNG/SVG files of real size, built from the data given (no pixel goldens)."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from harness.report.compare import compare
from harness.errors import HarnessError
from harness.report.plots import (accuracy_vs_frames, category_bars, contact_sheet, recall_vs_accuracy, save_figure,
                           score_curve, score_curve_data, selection_frames)

from test_compare import results, write_run  # the hand-written run directories (pytest puts tests/report on the path)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_files(paths, min_bytes=2000):
    png, svg = paths
    assert png.suffix == ".png" and svg.suffix == ".svg"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > min_bytes
    root = ET.parse(svg).getroot()  # well-formed XML with an <svg> root
    assert root.tag.endswith("svg") and svg.stat().st_size > min_bytes


@pytest.fixture()
def comparison(tmp_path):
    runs = []
    for k, (u, t) in {8: ("1010", "1110"), 16: ("1100", "1111"), 32: ("1110", "1111")}.items():
        runs.append(write_run(tmp_path / "runs", "uniform", results(u), frames=k))
        runs.append(write_run(tmp_path / "runs", "topk", results(t), frames=k))
    return compare(runs, by="kind", n_resamples=200)


def test_accuracy_vs_frames(comparison, tmp_path):
    fig = accuracy_vs_frames(comparison.table)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["topk", "uniform"]
    assert [float(t) for t in ax.get_xticks()] == [8.0, 16.0, 32.0]
    check_files(save_figure(fig, tmp_path / "fig" / "acc_vs_k"))


def test_category_bars_and_recall_scatter(comparison, tmp_path):
    fig = category_bars(comparison.categories)
    # 3 panels (K = 8, 16, 32), each 2 samplers x 2 values
    assert len(fig.axes) == 3 and len(fig.axes[0].patches) == 4
    check_files(save_figure(fig, tmp_path / "bars"))
    fig = recall_vs_accuracy(comparison.table)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 6
    check_files(save_figure(fig, tmp_path / "recall"))


def test_score_curve_uses_the_given_data(tmp_path):
    times = np.arange(0.0, 60.0)
    scores = np.sin(times / 7.0)
    selected = np.array([3.0, 20.0, 41.0])
    evidence = [(18.0, 24.0), (40.0, 45.0)]
    fig = score_curve(times, scores, selected, evidence, title="q1", score_label="CLIP score")
    ax = fig.axes[0]
    curve = ax.lines[0].get_xydata()
    assert np.array_equal(curve[:, 0], times) and np.allclose(curve[:, 1], scores)
    [sel] = [c for c in ax.collections if c.get_label().startswith("selected")]
    assert np.allclose(sel.get_offsets(), np.c_[selected, np.sin(selected / 7.0)])  # dots on the curve
    assert sorted(line.get_xdata()[0] for line in ax.lines[1:]) == [3.0, 20.0, 41.0]  # one line per selection
    spans = [p for p in ax.patches]
    assert len(spans) == 2
    xs = sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6)) for p in spans)  # axvspan: Rectangle
    assert xs == [(18.0, 24.0), (40.0, 45.0)]
    check_files(save_figure(fig, tmp_path / "curve"))
    with pytest.raises(HarnessError, match="60 times but 3 scores"):
        score_curve(times, scores[:3], selected)


def test_contact_sheet(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(6, 32, 48, 3), dtype=np.uint8)
    fig = contact_sheet(frames, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], evidence=[(2.0, 3.0)], title="q1")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 6 and np.array_equal(shown[0].images[0].get_array(), frames[0])
    assert [ax.get_title() for ax in shown][:2] == ["1.0 s", "2.0 s"]
    check_files(save_figure(fig, tmp_path / "sheet"))
    with pytest.raises(HarnessError, match="6 frames but 2 timestamps"):
        contact_sheet(frames, [1.0, 2.0])


def test_bad_plot_input(comparison, tmp_path):
    with pytest.raises(HarnessError, match="nothing to plot"):
        accuracy_vs_frames(comparison.table.iloc[:0])
    no_recall = comparison.table.assign(evidence_recall=np.nan)
    with pytest.raises(HarnessError, match="no run has both"):
        recall_vs_accuracy(no_recall)
    with pytest.raises(HarnessError, match="unknown figure format"):
        save_figure(score_curve([0, 1], [0, 1], [1]), tmp_path / "x", formats=("pdf",))


def test_score_curve_and_frames_from_a_run(tmp_path):
    """A real run (smoke videos, colour probe, top-k on the shipped mini-clip): the loader gives back the scores
    top-k ranked, so the selected frames are exactly the curve's K highest points."""
    from harness.config import RunConfig
    from harness.run.runner import Run

    cfg = RunConfig(task="smoke", backbone="colour-probe", samplers=["topk:encoder=mini-clip"], frames=3,
                    task_args={"videos": 1, "duration": 8.0}, out=str(tmp_path / "runs"),
                    cache_dir=str(tmp_path / "cache"))
    [run_dir] = Run(cfg, progress=False).execute()
    row = json.loads((run_dir / "predictions.jsonl").read_text().splitlines()[0])
    data = score_curve_data(run_dir, row["sample_id"])
    assert data.times.shape == data.scores.shape and len(data.times) == 8  # 8 s at 1 fps
    assert np.allclose(data.selected_times, row["selection"]["timestamps"])
    top = np.sort(data.times[np.argsort(-data.scores, kind="stable")[:3]])
    assert np.allclose(top, data.selected_times)
    assert data.evidence == tuple(tuple(iv) for iv in row["evidence"]) and "mini-clip" in data.score_label
    check_files(save_figure(score_curve(data.times, data.scores, data.selected_times, data.evidence),
                            tmp_path / "run_curve"))
    frames, ts = selection_frames(run_dir, row["sample_id"])
    assert frames.shape[0] == 3 and frames.dtype == np.uint8 and np.allclose(ts, data.selected_times)
    check_files(save_figure(contact_sheet(frames, ts, data.evidence), tmp_path / "run_sheet"))
    with pytest.raises(HarnessError, match="no sample 'nope'"):
        score_curve_data(run_dir, "nope")
