"""Several ranks writing one run: own files, shared done-set, merge; sharding by video."""
import json

import pytest

from harness.distributed import World, world_from_env
from harness.errors import HarnessError
from harness.store import PREDICTIONS, RunStore, run_rows

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
