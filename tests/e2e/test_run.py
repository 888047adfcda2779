"""End to end: `harness run` on the generated smoke task, resume after kill -9, plugins, clear errors."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.cli.app import main
from harness.config import RunConfig
from harness.run.runner import Run
from harness.run.subset import stratified_subset
from harness.records import Sample

SMOKE = ["--task", "smoke", "--task-arg", "videos=6", "--task-arg", "duration=12", "--backbone", "colour-probe"]


def harness(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def predictions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def smoke_config(**kw) -> RunConfig:
    """The smoke task, read by the colour probe, uniform frames: the run machinery without trained models."""
    return RunConfig(**{"task": "smoke", "backbone": "colour-probe", "samplers": ["uniform"],
                        "task_args": {"videos": 6, "duration": 12.0}, **kw})


def test_smoke_run_writes_config_predictions_and_metrics(tmp_path):
    out = tmp_path / "runs"
    [run_dir] = Run(smoke_config(out=str(out)), progress=False).execute()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["task"] == "smoke" and config["run"]["backbone"] == "colour-probe"
    assert config["run"]["frames"] == 8 and config["grid"] == "1fps" and config["run"]["short_grid"] == "all"
    assert config["identity"]["sampler"]["config"] == {"variant": "linspace-floor"}
    assert config["versions"]["torch"] and len(config["prompts_sha256"]) == 16
    rows = predictions(run_dir)
    assert len(rows) == 6 and len({r["sample_id"] for r in rows}) == 6
    for r in rows:
        sel = r["selection"]
        assert len(sel["frame_indices"]) == 8 and sel["frame_indices"] == sorted(sel["frame_indices"])
        assert all(i % 8 == 0 for i in sel["frame_indices"])  # smoke videos are 8 fps: 1fps grid step 8
        assert r["prediction"]["parse_status"] in ("ok", "parse_failed")
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert metrics["overall"]["n"] == 6
    assert metrics["overall"]["correct"] == sum(r["prediction"]["correct"] for r in rows)


def test_frames_decide_the_answer(tmp_path):
    """The probe is right exactly when a selected frame falls inside the needle's interval."""
    [run_dir] = Run(smoke_config(out=str(tmp_path), frames=4), progress=False).execute()
    task_samples = {s.id: s for s in Run(smoke_config()).task.samples()}
    for r in predictions(run_dir):
        (start, end), = task_samples[r["sample_id"]].evidence
        hit = any(start <= t < end for t in r["selection"]["timestamps"])
        assert r["prediction"]["correct"] == hit, r


def test_stratified_subset_is_balanced_and_deterministic():
    samples = [Sample(f"q{i}", "v.mp4", "?", ("a", "b"), 0, categories={"c": "xy"[i % 2] if i < 8 else "z"})
               for i in range(20)]
    sub = stratified_subset(samples, 6, "c")
    assert Counter(s.categories["c"] for s in sub) == {"x": 2, "y": 2, "z": 2}
    assert [s.id for s in sub] == [s.id for s in stratified_subset(list(reversed(samples)), 6, "c")][::-1]
    assert [s.id for s in sub] == sorted((s.id for s in sub), key=lambda i: int(i[1:]))  # dataset order kept


PLUGIN = '''
import time
from backbones.colour_probe import ColourProbe

class SlowProbe(ColourProbe):
    """colour-probe that takes its time (for kill-and-resume tests)"""
    name = "slow-probe"
    def generate(self, frames, timestamps, prompt):
        time.sleep(0.4)
        return super().generate(frames, timestamps, prompt)
'''


@pytest.fixture()
def plugin_path(tmp_path):
    """A separately installed package that adds a backbone through the `harness.backbones` entry-point group."""
    root = tmp_path / "plugin"
    (root / "slowplugin-0.1.dist-info").mkdir(parents=True)
    (root / "slowplugin.py").write_text(PLUGIN)
    (root / "slowplugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: slowplugin\nVersion: 0.1\n")
    (root / "slowplugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[harness.backbones]\nslow-probe = slowplugin:SlowProbe\n")
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def test_entry_point_plugin_is_listed(plugin_path):
    result = harness("list", "backbones", "--json", env=plugin_path)
    assert result.returncode == 0, result.stderr
    names = [e["name"] for e in json.loads(result.stdout)["backbones"]]
    assert "slow-probe" in names and "colour-probe" in names


def test_list_renders_every_registry():
    """The rich listing (not only --json) of every kind; options with a None choice once crashed it."""
    result = harness("list")
    assert result.returncode == 0, result.stderr
    for name in ("needle", "mini-qwen2.5-vl", "qwen2.5-vl", "tspo", "aks"):
        assert name in result.stdout


def test_kill_then_rerun_gives_every_sample_exactly_once(tmp_path, plugin_path):
    args = [*SMOKE, "--task-arg", "videos=10", "--backbone", "slow-probe", "--sampler", "uniform",
            "--sampler", "uniform:variant=segment-centre", "--out", str(tmp_path / "runs"), "--no-progress"]
    env = {**plugin_path, "LONGVIDEO_HARNESS_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs = tmp_path / "runs"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some but not all rows are written
        files = list(runs.glob("*/predictions.jsonl"))
        if files and sum(len(f.read_text().splitlines()) for f in files) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {f.parent.name: len(f.read_text().splitlines()) for f in runs.glob("*/predictions.jsonl")}
    assert 3 <= sum(first.values()) < 20, first  # the kill landed mid-run
    result = harness("run", *args, env=env)
    assert result.returncode == 0, result.stderr
    run_dirs = sorted(runs.iterdir())
    assert len(run_dirs) == 2
    for d in run_dirs:
        ids = [r["sample_id"] for r in predictions(d)]
        assert sorted(ids) == [f"smoke_{i:03d}" for i in range(10)]  # each exactly once
        events = [json.loads(line)["event"] for line in (d / "events.jsonl").read_text().splitlines()]
        assert events == ["start", "resume", "features"]  # the killed run never wrote its feature counts


def test_broken_video_becomes_an_error_row_and_the_run_goes_on(tmp_path):
    cfg = smoke_config(out=str(tmp_path / "runs"), task_args={"videos": 4, "duration": 12.0,
                                                              "root": str(tmp_path / "videos")})
    Run(cfg).task.samples()  # generate
    (tmp_path / "videos" / "smoke_001.mp4").write_bytes(b"not a video at all")
    good = (tmp_path / "videos" / "smoke_002.mp4").read_bytes()
    (tmp_path / "videos" / "smoke_002.mp4").write_bytes(good[: len(good) // 3])  # truncated
    [run_dir] = Run(cfg, progress=False).execute()
    rows = {r["sample_id"]: r for r in predictions(run_dir)}
    assert len(rows) == 4
    for bad in ("smoke_001", "smoke_002"):
        assert rows[bad]["prediction"]["parse_status"] == "error"
        assert "smoke_00" in rows[bad]["prediction"]["error"]  # the message names the file
        assert rows[bad]["prediction"]["correct"] is False
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]["overall"]
    assert metrics["errors"] >= 1 and metrics["n"] == 4


@pytest.mark.parametrize("argv,message", [
    (["run", "--task", "smok"], "unknown task 'smok'; did you mean smoke"),
    (["run", "--backbone", "colour-prob"], "did you mean colour-probe"),
    (["run", "--sampler", "topc"], "did you mean topk"),
    (["run", "--sampler", "uniform:variant=ceil"], "must be one of"),
    (["run", "--sampler", "uniform:variant"], "expected key=value"),
    (["run", "--grid", "2fps"], "grid"),
    (["run", "--frames", "0"], "at least 1"),
    (["run", "--decode-backend", "pyvav"], "did you mean pyav"),
    (["run", "--config", "/nonexistent/run.json"], "does not exist"),
    (["table", "/nonexistent/run"], "not a run directory"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_malformed_config_file(tmp_path, capsys):
    bad = tmp_path / "run.json"
    bad.write_text('{"task": "smoke", "frames": 8,,}')
    assert main(["run", "--config", str(bad)]) == 2
    assert "malformed" in capsys.readouterr().err
    bad.write_text('{"tsak": "smoke"}')
    assert main(["run", "--config", str(bad)]) == 2
    assert "unknown option 'tsak'" in capsys.readouterr().err


def test_subprocess_error_has_no_traceback_unless_debug():
    result = harness("run", "--task", "nope")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = harness("--debug", "run", "--task", "nope")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_export_then_replay_gives_the_same_frames_and_answers(tmp_path, capsys):
    common = [*SMOKE, "--task-arg", "videos=3", "--grid", "all", "--frames", "6", "--out", str(tmp_path / "runs"),
              "--no-progress"]
    assert main(["run", *common, "--sampler", "uniform:variant=segment-centre"]) == 0
    [first] = list((tmp_path / "runs").iterdir())
    assert main(["selections", "export", str(first), "--out", str(tmp_path / "sel.jsonl")]) == 0
    assert main(["run", *common, "--sampler", f"replay:file={tmp_path / 'sel.jsonl'}"]) == 0
    [second] = [d for d in (tmp_path / "runs").iterdir() if d != first]
    a, b = predictions(first), predictions(second)
    assert [r["selection"]["frame_indices"] for r in a] == [r["selection"]["frame_indices"] for r in b]
    assert [r["prediction"]["raw_text"] for r in a] == [r["prediction"]["raw_text"] for r in b]
    assert main(["run", *common[:-1], "--grid", "1fps", "--sampler", f"replay:file={tmp_path / 'sel.jsonl'}"]) == 2
    assert "needs --grid all" in capsys.readouterr().err


def test_backbone_none_scores_selections_alone(tmp_path, monkeypatch):
    from harness.video import reader as video

    decoded = []
    for cls in (video._DecordReader, video._PyAVReader):  # count every frame any reader decodes
        original = cls.get_frames
        monkeypatch.setattr(cls, "get_frames", lambda self, idx, _o=original: decoded.extend(idx) or _o(self, idx))
    [run_dir] = Run(smoke_config(out=str(tmp_path), backbone="none"), progress=False).execute()
    rows = predictions(run_dir)
    samples = {s.id: s for s in Run(smoke_config(backbone="none")).task.samples()}
    assert len(rows) == 6 and decoded == []  # uniform needs no features, and nothing is decoded for a backbone
    for r in rows:
        assert r["prediction"]["parse_status"] == "not_answered" and r["prediction"]["raw_text"] is None
        (start, end), = samples[r["sample_id"]].evidence
        assert r["evidence_recall"] == float(any(start <= t < end for t in r["selection"]["timestamps"]))
    overall = json.loads((run_dir / "metrics.json").read_text())["metrics"]["overall"]
    assert overall["accuracy"] is None
    assert overall["evidence_recall"] == pytest.approx(100 * np.mean([r["evidence_recall"] for r in rows]))
