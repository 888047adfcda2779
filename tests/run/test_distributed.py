"""Several ranks writing one run: own files, shared done-set, merge; sharding by video."""
import json
import re

import pytest

from harness.run.distributed import World, world_from_env
from harness.errors import HarnessError
from harness.store.runs import PREDICTIONS, RunStore, run_rows

IDENTITY = {"task": {"name": "t"}, "backbone": {"name": "b"}, "sampler": {"name": "s"}}


def row(sid):
    return {"sample_id": sid, "prediction": {"correct": True, "parse_status": "ok"}}


def test_ranks_write_own_files_share_done_and_merge(tmp_path):
    r0 = RunStore(tmp_path, IDENTITY, {}, rank=0, world=2).open()
    r1 = RunStore(tmp_path, IDENTITY, {}, rank=1, world=2).open()  # own lock: both open at once
    r0.append(row("a"))
    r1.append(row("b"))
    r1.append(row("c"))
    assert {p.name for p in r0.dir.glob("predictions*")} == {"predictions.rank-0.jsonl", "predictions.rank-1.jsonl"}
    r0.refresh()
    assert r0.is_done("b") and r0.is_done("c")
    with open(r0.dir / "predictions.rank-1.jsonl", "a") as f:
        f.write('{"sample_id": "d", "predic')  # rank 1 killed mid-write: not counted by anyone
    r0.refresh()
    assert not r0.is_done("d")
    r0.close(), r1.close()
    again = RunStore(tmp_path, IDENTITY, {}, rank=1, world=2).open()  # the owner drops its partial line
    assert (again.dir / "predictions.rank-1.jsonl").read_text().endswith("\n")
    again.close()
    single = RunStore(tmp_path, IDENTITY, {})  # resumed by one process: sees every rank's rows
    single.open()
    assert all(single.is_done(s) for s in "abc") and not single.is_done("d")
    single.merge()
    assert not list(single.dir.glob("predictions.rank-*"))
    assert [json.loads(x)["sample_id"] for x in (single.dir / PREDICTIONS).read_text().splitlines()] == ["a", "b", "c"]
    single.close()


def test_merge_killed_half_way_counts_each_row_once(tmp_path):
    store = RunStore(tmp_path, IDENTITY, {}, rank=0, world=2).open()
    store.append(row("a"))
    store.close()
    (store.dir / PREDICTIONS).write_text(json.dumps(row("a")) + "\n")  # merged, rank file not yet removed
    assert [r["sample_id"] for r in run_rows(store.dir)] == ["a"]
    (store.dir / PREDICTIONS).write_text((json.dumps(row("z")) + "\n") * 2)
    with pytest.raises(HarnessError, match="occur twice"):
        run_rows(store.dir)


def test_world_and_shards(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    assert world_from_env() == World(0, 1, 0)
    monkeypatch.setenv("SLURM_NTASKS", "4"), monkeypatch.setenv("SLURM_PROCID", "3")
    assert world_from_env() == World(3, 4, 0)
    monkeypatch.setenv("WORLD_SIZE", "2"), monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("LOCAL_RANK", "1")
    assert world_from_env() == World(1, 2, 1)  # torchrun's variables win
    videos = [f"v{i}" for i in range(7)]
    shards = [World(r, 3).shard(videos) for r in range(3)]
    assert shards == [["v0", "v3", "v6"], ["v1", "v4"], ["v2", "v5"]]
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(HarnessError, match="outside"):
        world_from_env()


# --- torchrun on the CPU (gloo) ---------------------------------------------------------------------------------------
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

SLOW = '''
import time
from backbones.colour_probe import ColourProbe
from harness.registry import BACKBONES

@BACKBONES.register("slow-colour-probe", description="the colour probe, 0.3 s per answer (kill tests)")
class SlowColourProbe(ColourProbe):
    name = "slow-colour-probe"
    def generate(self, frames, timestamps, prompt):
        time.sleep(0.3)
        return super().generate(frames, timestamps, prompt)
'''


def launch(args, n, tmp_path, env_extra=None):
    """`harness run` under torchrun with n processes (n=0: a plain single process)."""
    plugin = tmp_path / "plugin"
    plugin.mkdir(exist_ok=True)
    (plugin / "slowprobe.py").write_text(SLOW)
    dist = plugin / "slowprobe-0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slowprobe\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[harness.backbones]\nslow-colour-probe = slowprobe\n")
    env = {**os.environ, "PYTHONPATH": f"{plugin}:{os.environ.get('PYTHONPATH', '')}",
           "LONGVIDEO_HARNESS_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"] if n else \
        [sys.executable]
    return subprocess.Popen([*head, "-m", "harness", "run", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


COMMON = ["--task", "smoke", "--task-arg", "videos=8", "--task-arg", "duration=12", "--sampler", "uniform",
          "--sampler", "topk:encoder=mini-clip", "--no-progress"]


def rows(run_dirs):
    out = {}
    for d in run_dirs:
        out[d.name] = {r["sample_id"]: (r["selection"]["frame_indices"], r["prediction"]["raw_text"])
                       for r in map(json.loads, (d / PREDICTIONS).read_text().splitlines())}
    return out


def test_two_ranks_give_the_same_predictions_as_one(tmp_path):
    one = launch([*COMMON, "--backbone", "colour-probe", "--out", str(tmp_path / "one")], 0, tmp_path)
    assert one.wait(timeout=600) == 0, one.stderr.read()
    two = launch([*COMMON, "--backbone", "colour-probe", "--out", str(tmp_path / "two")], 2, tmp_path)
    assert two.wait(timeout=600) == 0, two.stderr.read()
    a, b = sorted((tmp_path / "one").iterdir()), sorted((tmp_path / "two").iterdir())
    assert [d.name for d in a] == [d.name for d in b] and len(a) == 2  # same run identities
    assert rows(a) == rows(b) and all(len(r) == 8 for r in rows(b).values())
    for d in b:
        assert not list(d.glob("predictions.rank-*")) and (d / "metrics.json").exists()
        ranks = {json.loads(x).get("rank") for x in (d / "events.jsonl").read_text().splitlines()}
        assert ranks == {0, 1}  # both ranks worked on it
        assert json.loads((d / "metrics.json").read_text())["metrics"]["overall"]["n"] == 8


def test_killed_with_two_ranks_resumes_with_one_exactly_once(tmp_path):
    args = [*COMMON, "--backbone", "slow-colour-probe", "--out", str(tmp_path / "runs")]
    proc = launch(args, 2, tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once some rows of both ranks are written, not all
        files = list((tmp_path / "runs").glob("*/predictions.rank-*.jsonl"))
        if sum(len(f.read_text().splitlines()) for f in files) >= 6:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = sum(len(f.read_text().splitlines()) for f in (tmp_path / "runs").glob("*/predictions.rank-*.jsonl"))
    assert 6 <= written < 16, written  # the kill landed mid-run
    again = launch(args, 0, tmp_path)
    assert again.wait(timeout=600) == 0, again.stderr.read()
    for d in (tmp_path / "runs").iterdir():
        ids = [json.loads(x)["sample_id"] for x in (d / PREDICTIONS).read_text().splitlines()]
        assert sorted(ids) == [f"smoke_{i:03d}" for i in range(8)]  # every sample exactly once
        assert not list(d.glob("predictions.rank-*"))


# -- several GPUs per replica (device_map) with data parallelism across replicas ------------------------------------

def test_replica_devices_deal_gpus_in_blocks_by_local_rank():
    from harness.run.distributed import replica_devices

    assert replica_devices("cuda", World(0, 1, 0)) == ["cuda"]  # one GPU per replica: as before
    assert replica_devices("cuda", World(3, 4, 1)) == ["cuda:1"]
    assert replica_devices("cuda", World(0, 2, 0), 2, gpus_on_node=4) == ["cuda:0", "cuda:1"]
    assert replica_devices("cuda", World(3, 4, 1), 2, gpus_on_node=4) == ["cuda:2", "cuda:3"]  # 2 nodes x 2 ranks
    assert replica_devices("cuda", World(0, 1, 0), 4, gpus_on_node=8) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    with pytest.raises(HarnessError, match=r"needs GPUs 4\.\.5 .* has 4: launch at most 2 processes per node"):
        replica_devices("cuda", World(2, 3, 2), 2, gpus_on_node=4)
    with pytest.raises(HarnessError, match="needs --device cuda"):
        replica_devices("cpu", World(), 2)
    with pytest.raises(HarnessError, match="at least 1"):
        replica_devices("cuda", World(), 0)


def test_balanced_map_spreads_whole_layers_over_the_replicas_gpus():
    import torch

    from backbones.placement import balanced_map, gpu_indices
    from backbones.qwen2_5_vl.adapter import random_model, random_processor

    model = random_model("qwen2.5-vl-tiny", random_processor(14, 3136, 12544).tokenizer, torch.float32, "cpu", "sdpa")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    placement = balanced_map(model, ["cuda:2", "cuda:3"], {2: int(0.95 * size), 3: int(0.95 * size)})
    assert set(placement.values()) == {2, 3}  # both cards hold a share: neither alone could hold the model
    for name in placement:  # whole decoder layers and vision blocks: nothing below them is split off
        assert not re.search(r"\.(layers|blocks)\.\d+\.", name), name
    placed = {p for name in placement for p, _ in model.named_parameters() if p == name or p.startswith(name + ".")}
    assert placed == {p for p, _ in model.named_parameters()}  # every weight has a card
    with pytest.raises(HarnessError, match="does not fit on GPUs"):
        balanced_map(model, ["cuda:0", "cuda:1"], {0: size // 4, 1: size // 4})
    with pytest.raises(HarnessError, match="only as cuda:N"):
        gpu_indices(["cuda:0", "cpu"])


def test_a_backbone_that_cannot_span_gpus_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    import torch

    from harness.cli.app import main

    args = ["run", "--task", "smoke", "--sampler", "uniform", "--backbone", "colour-probe", "--gpus-per-replica", "2",
            "--out", str(tmp_path)]
    code = main(args)
    assert code == 2 and "--gpus-per-replica 2 needs --device cuda" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # as on a node with two GPUs
    code = main([*args, "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "backbone 'colour-probe' runs on one device" in err and "Traceback" not in err
