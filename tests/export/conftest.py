"""Fixtures: runs made by `harness run` to export (export_runs.py)."""
from pathlib import Path

import pytest

from export_runs import harness, make_stand_in


@pytest.fixture
def stand_in_run(tmp_path):
    """run(task, protocol) -> the run directory of `harness run` on the stand-in records."""

    def run(task: str, protocol: str = "lmms-eval", sampler: str = "uniform") -> Path:
        f, root = make_stand_in(tmp_path, task)
        grid = ["--grid", "all", "--sampler", "uniform:variant=vlmevalkit"] if protocol == "vlmevalkit" else \
            ["--sampler", sampler]
        out = tmp_path / f"runs-{task}-{protocol}"
        assert harness("run", "--task", task, "--task-arg", f"annotations={f}", "--video-root", root, "--protocol",
                       protocol, "--backbone", "export-script-probe", *grid, "--frames", 4, "--out", out,
                       "--cache-dir", tmp_path / "cache", "--decode-backend", "pyav", "--no-progress") == 0
        [run_dir] = list(out.iterdir())
        return run_dir

    return run


@pytest.fixture(scope="module")
def needle_runs(tmp_path_factory):
    """The offline default's world, small: two needle videos, mini-qwen2.5-vl, two samplers (two run dirs)."""
    tmp = tmp_path_factory.mktemp("needle")
    out = tmp / "runs"
    assert harness("run", "--task", "needle", "--task-arg", "videos=2", "--task-arg", f"root={tmp / 'videos'}",
                   "--task-arg", "min_duration=30", "--task-arg", "max_duration=40", "--sampler", "uniform",
                   "--sampler", "uniform:variant=segment-centre", "--frames", 4, "--out", out, "--cache-dir",
                   tmp / "cache", "--no-progress") == 0
    return out


@pytest.fixture(scope="module")
def vlmevalkit():
    """VLMEvalKit's dataset modules (side environment: VLMEVALKIT_SRC), else a skip."""
    from toolkits import install_vlmevalkit
    return install_vlmevalkit()
