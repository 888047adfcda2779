"""The sweep's outputs end to end on the smoke task: tables, plots and the self-contained HTML report, rendered by
headless Chromium."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import re
import shutil
import subprocess

import numpy as np
import pytest

from harness.cli.app import main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    args = ["sweep", "--task", "smoke", "--task-arg", "videos=4", "--task-arg", "duration=12", "--backbone",
            "colour-probe", "--sampler", "uniform,uniform:variant=segment-centre", "--frames", "2,4",
            "--out", str(root / "runs"), "--report", str(root / "report"), "--resamples", "500", "--no-progress",
            "--questions", "3"]
    assert main(args) == 0
    return root


def test_sweep_writes_every_output(sweep):
    report = sweep / "report"
    names = {p.name for p in report.iterdir()}
    for name in ("comparison.md", "comparison.csv", "comparison.tex", "comparison.json", "report.html",
                 "accuracy_vs_frames.png", "accuracy_vs_frames.svg", "recall_vs_accuracy.png", "question_frames.png"):
        assert name in names, name
    assert len(list((sweep / "runs").iterdir())) == 4  # 2 samplers x 2 budgets
    table = (report / "comparison.md").read_text()
    assert table.split("\n\n")[0].count("| smoke | colour-probe |") == 4 and "\\toprule" in (report / "comparison.tex").read_text()


def test_report_is_self_contained(sweep):
    page = (sweep / "report" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing loads from the network
    assert page.count("<details>") == 3  # the question browser, capped by --questions
    # each question shows each of the 4 runs with its K thumbnails: 3 x 2 x (2 + 4) embedded JPEGs
    assert page.count("data:image/jpeg;base64,") == 3 * 2 * (2 + 4)
    assert page.count("data:image/png;base64,") >= 2  # the plots
    assert "diff vs uniform" in page and "McNemar" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium here (setup.sh installs it as root)")
def test_chromium_renders_the_report(sweep, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,1600", (sweep / "report" / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1600, 1200)
    # a rendered page, not a blank one: dark text on white, and the embedded plots add mid greys
    assert (pixels < 100).mean() > 0.005 and (pixels > 240).mean() > 0.5 and pixels.std() > 20
