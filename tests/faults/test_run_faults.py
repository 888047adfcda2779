"""Faults of the machine and the setup stop a run; faults of one sample are its error row; a rerun after the fix
gives exactly the rows of a run that never met the fault (issue 16, items 2, 4, 6 and 11, and the kill series)."""
import errno
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backbones.colour_probe import ColourProbe
from harness.cli.app import main
from harness.config import RunConfig
from harness.errors import FatalError
from harness.registry import BACKBONES, TASKS
from harness.run.runner import Run, command_lock

SMOKE = {"task": "smoke", "task_args": {"videos": 6, "duration": 12.0}, "backbone": "colour-probe",
         "samplers": ["uniform", "uniform:variant=segment-centre"], "frames": 4}
SMOKE_ARGS = ["--task", "smoke", "--task-arg", "videos=6", "--task-arg", "duration=12", "--backbone", "colour-probe",
              "--sampler", "uniform", "--sampler", "uniform:variant=segment-centre", "--frames", "4", "--no-progress"]


@BACKBONES.register("garbled-probe", description="test backbone: answers with no option letter (corrupt weights)")
class GarbledProbe(ColourProbe):
    name = "garbled-probe"
    checks_answers = True  # a real model would: its answers are meant to carry a letter

    def generate(self, frames, timestamps, prompt):
        return "!!!!!!!!"


CONSTRUCTED = []


@BACKBONES.register("counted-probe", description="test backbone: records that it was built")
class CountedProbe(ColourProbe):
    name = "counted-probe"

    def __init__(self, device: str = "cpu", dtype: str = "float32"):
        CONSTRUCTED.append(time.time())
        super().__init__(device, dtype)


def essence(run_dirs) -> dict:
    """What a run decided, per run directory and sample: frames, answer, letter, correctness, status (no timings)."""
    out = {}
    for d in run_dirs:
        rows = [json.loads(x) for x in (Path(d) / "predictions.jsonl").read_text().splitlines()]
        out[Path(d).name] = sorted((r["sample_id"], tuple((r["selection"] or {}).get("frame_indices", ())),
                                    r["prediction"]["raw_text"], r["prediction"]["parsed"],
                                    r["prediction"]["correct"], r["prediction"]["parse_status"]) for r in rows)
    return out


@pytest.fixture
def clean(tmp_path_factory):
    """The rows of an uninterrupted run."""
    home = tmp_path_factory.mktemp("clean")
    dirs = Run(RunConfig(**SMOKE, out=str(home / "runs"), cache_dir=str(home / "cache")), progress=False).execute()
    return essence(dirs)


def config(tmp_path, **kw) -> RunConfig:
    return RunConfig(**{**SMOKE, "out": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"), **kw})


def test_a_full_disk_while_writing_rows_stops_the_run_and_a_rerun_is_exact(tmp_path, monkeypatch, clean, capsys):
    """Item 2: an OSError on the output is the machine's fault: exit 3 and one line, never error rows."""
    import harness.store.runs as runs

    real, calls = runs.RunStore.append, []

    def append(self, row):
        calls.append(row["sample_id"])
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.dir / "predictions.jsonl"))
        return real(self, row)

    monkeypatch.setattr(runs.RunStore, "append", append)
    args = [*SMOKE_ARGS, "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    assert main(["run", *args]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "predictions.jsonl" in err[0]
    monkeypatch.setattr(runs.RunStore, "append", real)
    assert main(["run", *args]) == 0
    assert essence(sorted((tmp_path / "runs").glob("smoke__*"))) == clean


def test_an_unwritable_feature_cache_stops_the_run_not_uniform_rows(tmp_path, monkeypatch, capsys):
    """Item 2: a cache that cannot be written (read-only, full) turned every row into an error row, uniform
    included, exit 0, and a rerun never retried them. Now: exit 3, no row written, a rerun is exact."""
    import harness.features.store as store

    writable = store.atomic_write

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "cache"))

    monkeypatch.setattr(store, "atomic_write", read_only)
    args = ["--task", "smoke", "--task-arg", "videos=4", "--task-arg", "duration=12", "--backbone", "colour-probe",
            "--sampler", "uniform", "--sampler", "topk:encoder=mini-clip", "--frames", "4", "--no-progress",
            "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    assert main(["run", *args]) == 3
    assert "Read-only file system" in capsys.readouterr().err
    rows = [x for f in (tmp_path / "runs").glob("*/predictions.jsonl") for x in f.read_text().splitlines()]
    assert rows == []  # nothing was recorded as data
    monkeypatch.setattr(store, "atomic_write", writable)  # the disk is writable again
    assert main(["run", *args]) == 0
    fresh = tmp_path / "fresh"
    assert main(["run", *args[:-4], "--out", str(fresh / "runs"), "--cache-dir", str(fresh / "cache")]) == 0
    assert essence(sorted((tmp_path / "runs").iterdir())) == essence(sorted((fresh / "runs").iterdir()))


def test_out_of_memory_while_answering_stops_the_run(tmp_path, monkeypatch):
    def oom(self, frames, timestamps, prompt):
        raise MemoryError("cannot allocate 24.3 GB")

    monkeypatch.setattr(ColourProbe, "generate", oom)
    with pytest.raises(MemoryError):
        Run(config(tmp_path), progress=False).execute()


def test_retry_errors_redoes_the_rows_of_a_fixed_video(tmp_path, clean, monkeypatch):
    """Item 2: an unreadable video is the sample's fault (error rows, the run goes on); after the video is fixed,
    a plain rerun keeps the rows (resume), --retry-errors re-does them: then the rows equal a clean run's."""
    monkeypatch.setenv("LONGVIDEO_HARNESS_HOME", str(tmp_path / "home"))  # this test damages its videos
    video = Path(TASKS.create("smoke", videos=6, duration=12.0).samples()[1].video)
    good = video.read_bytes()
    video.write_bytes(b"not a video")
    dirs = Run(config(tmp_path), progress=False).execute()
    first = essence(dirs)
    assert all(sum(r[-1] == "error" for r in rows) == 1 for rows in first.values())
    video.write_bytes(good)
    assert essence(Run(config(tmp_path), progress=False).execute()) == first  # resume: nothing is redone
    assert essence(Run(config(tmp_path, retry_errors=True), progress=False).execute()) == clean
    events = [json.loads(x) for x in (dirs[0] / "events.jsonl").read_text().splitlines()]
    assert [e["dropped"] for e in events if e["event"] == "retry_errors"] == [1]


def test_a_backbone_whose_first_answers_never_parse_stops_the_run_naming_its_weights(tmp_path):
    """Item 4: 100% parse failures with no hint; now the run stops after its first answers, naming the weights."""
    cfg = config(tmp_path, backbone="garbled-probe", task_args={"videos": 20, "duration": 12.0}, samplers=["uniform"])
    with pytest.raises(FatalError, match=r"garbled-probe.*first 16 questions.*'!!!!!!!!'"):
        Run(cfg, progress=False).execute()
    [rows] = [f.read_text().splitlines() for f in (tmp_path / "runs").glob("*/predictions.jsonl")]
    assert len(rows) < 20  # stopped before the end


def test_a_video_shorter_than_its_annotation_is_recorded(tmp_path, capsys, monkeypatch):
    """Item 6: a 5 s video annotated as 12 s was answered silently; now its rows carry the mismatch and the run's
    metrics and stderr count it."""
    import numpy as np

    from harness.util.synth import write_video

    monkeypatch.setenv("LONGVIDEO_HARNESS_HOME", str(tmp_path / "home"))  # this test replaces a video
    samples = TASKS.create("smoke", videos=6, duration=12.0).samples()
    write_video(Path(samples[2].video), (np.zeros((64, 64, 3), np.uint8) for _ in range(5 * 10)), 10)
    dirs = Run(config(tmp_path), progress=False).execute()
    for d in dirs:
        rows = {json.loads(x)["sample_id"]: json.loads(x) for x in (d / "predictions.jsonl").read_text().splitlines()}
        check = rows[samples[2].id]["video_check"]
        assert check["annotation_duration"] == pytest.approx(12.0) and check["decoder_duration"] == pytest.approx(5.0)
        assert all("video_check" not in r for sid, r in rows.items() if sid != samples[2].id)
        assert json.loads((d / "metrics.json").read_text())["video_checks"]["videos"] == 1
    assert "1 videos are not as long as their annotations say" in capsys.readouterr().err


def test_a_second_run_of_the_same_command_is_refused_before_loading_anything(tmp_path):
    """Item 11: the second of two concurrent runs learned it was locked out only after generating videos and
    loading the model; the command lock comes first now."""
    cfg = config(tmp_path, backbone="counted-probe")
    held = command_lock(cfg, 0)
    try:
        CONSTRUCTED.clear()
        t0 = time.perf_counter()
        with pytest.raises(Exception, match="another harness run of this command is running"):
            Run(cfg, progress=False)
        assert CONSTRUCTED == [] and time.perf_counter() - t0 < 5
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        held.close()
    Run(cfg, progress=False).execute()  # released: it runs


SLOW = '''
import time
from backbones.colour_probe import ColourProbe
from harness.registry import BACKBONES, TASKS

@BACKBONES.register("slow-fault-probe", description="the colour probe, 0.15 s per answer (kill series)")
class SlowFaultProbe(ColourProbe):
    name = "slow-fault-probe"
    def generate(self, frames, timestamps, prompt):
        time.sleep(0.15)
        return super().generate(frames, timestamps, prompt)
'''


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_at_a_random_moment_then_rerun_is_exact(tmp_path, seed):
    """kill -9 at a random moment (sequential or pipelined): the rerun gives the rows of an uninterrupted run."""
    plugin = tmp_path / "plugin"
    (plugin / "slowfault-0.dist-info").mkdir(parents=True)
    (plugin / "slowfault.py").write_text(SLOW)
    (plugin / "slowfault-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: slowfault\nVersion: 0\n")
    (plugin / "slowfault-0.dist-info" / "entry_points.txt").write_text(
        "[harness.backbones]\nslow-fault-probe = slowfault\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]),
           "LONGVIDEO_HARNESS_HOME": str(tmp_path / "home")}
    args = [*SMOKE_ARGS, "--backbone", "slow-fault-probe", "--cache-dir", str(tmp_path / "cache")]
    args += ["--workers", "1", "--batch-size", "2"] if seed % 2 else []
    command = [sys.executable, "-m", "harness", "run", *args]
    reference = subprocess.run([*command, "--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    rng = random.Random(seed)
    for attempt in range(2):  # two kills at random moments, then a run to the end
        proc = subprocess.Popen([*command, "--out", str(tmp_path / "runs")], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.5, 3.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run([*command, "--out", str(tmp_path / "runs")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert essence(sorted((tmp_path / "runs").iterdir())) == essence(sorted((tmp_path / "ref").iterdir()))
