"""The `replay` sampler and selection files: TSPO's published jsons_idx files, the harness's own, the converter."""
import ast
import csv
import json
from collections import Counter

import numpy as np
import pytest

import samplers.base
import samplers.replay  # noqa: F401  (registers "replay")
from harness.errors import HarnessError
from harness.video.grid import make_grid
from harness.records import Sample, Selection
from harness.registry import SAMPLERS
from harness.store.selection_export import run_to_harness, run_to_tspo, write_harness
from harness.store.selections import load_selections, mlvu_key, mlvu_stem, replay_indices
from tests.release_data import RELEASE

DATA = RELEASE
IDX = DATA / "jsons_idx"
LVB_IDX = IDX / "TSPO_LongVideoBench_frameIdx.json"
VMME_IDX = IDX / "TSPO_VideoMME_frameIdx.json"
MLVU_IDX = IDX / "TSPO_MLVU_frameIdx.json"
needs_data = pytest.mark.skipif(not (IDX.is_dir() and (DATA / "jsons").is_dir()),
                                reason="TSPO release files not found (tests/release_data.py)")

K = 64


def load_json(name):
    return json.loads((DATA / "jsons" / name).read_text())


# -- stand-in samples shaped like the annotation files (the real tasks are checked separately below) --------------
def lvb_samples():
    return [Sample(r["id"], f"/videos/{r['video_path']}", r["question"], r["candidates"], r["correct_choice"],
                   r["duration"], {"duration_group": str(r["duration_group"])}) for r in load_json("lvb_val.json")]


def vmme_samples():
    return [Sample(r["question_id"], f"/videos/{r['videoID']}.mp4", r["question"],
                   [o[3:] for o in r["options"]], ord(r["answer"]) - 65, None, {"duration": r["duration"]})
            for r in load_json("videomme.json")]


def mlvu_samples_from_json():
    """Question text with its option block, as mlvu.json (and lmms-eval's MLVU_dev) have it."""
    return [Sample(f"mlvu-{i}", f"/videos/{r['video_name']}", r["question"], r["candidates"],
                   ord(r["answer"]) - 65, r["duration"]) for i, r in enumerate(load_json("mlvu.json"))]


def mlvu_samples_from_tsv():
    """The VLMEvalKit-style TSV: another order, other ids, question stem only."""
    with open(DATA / "tsv" / "MLVU.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Sample(r["index"], f"videos/{r['video_name']}", r["question"], ast.literal_eval(r["candidates"]),
                   int(r["answer_number"])) for r in rows]


def replay(path, **kw):
    return SAMPLERS.create("replay", file=str(path), **kw)


def replayed(sampler, sample, k=K, frame_count=None) -> tuple:
    """The native frames replay picks for one sample: on the grid `all` a position is a native frame index."""
    stored = sampler.stored_indices(sample)
    n = frame_count or int(stored.max()) + 1000
    return tuple(sampler.positions(n, k, {"stored_indices": stored}).tolist())


# -- the published TSPO files --------------------------------------------------------------------------------------
@needs_data
def test_longvideobench_replay_matches_the_published_statistics():
    sampler = replay(LVB_IDX)
    samples = lvb_samples()
    report = sampler.join(samples)
    assert (report.matched, report.unmatched_samples, report.unmatched_records) == (1337, [], [])
    lengths = {s.id: len(replayed(sampler, s)) for s in samples}
    assert Counter(n == K for n in lengths.values()) == {True: 976, False: 361}
    short = [s for s in samples if lengths[s.id] < K]
    assert (min(lengths[s.id] for s in short), max(lengths[s.id] for s in short)) == (8, 61)  # spec: within 8-63
    assert {s.categories["duration_group"] for s in short} <= {"15", "60"} and max(s.duration for s in short) <= 60.93
    assert sum(lengths.values()) == 71089
    first = replayed(sampler, samples[0])
    assert first[:4] == (0, 30, 90, 150) and list(first) == sorted(set(first))


@needs_data
def test_videomme_replay_matches_the_published_statistics():
    sampler = replay(VMME_IDX, format="tspo")
    samples = vmme_samples()
    assert sampler.join(samples).matched == 2700
    lengths = {s.id: len(replayed(sampler, s)) for s in samples}
    assert Counter(n == K for n in lengths.values()) == {True: 2439, False: 261}
    short = [s for s in samples if lengths[s.id] < K]
    assert {s.categories["duration"] for s in short} == {"short"}
    assert (min(lengths[s.id] for s in short), max(lengths[s.id] for s in short)) == (12, 63)


@needs_data
def test_mlvu_joins_all_2174_by_video_question_and_options():
    sampler = replay(MLVU_IDX)
    assert sampler.selections.kind == "mlvu"
    for samples in (mlvu_samples_from_json(), mlvu_samples_from_tsv()):
        report = sampler.join(samples)
        assert (report.matched, report.unmatched_samples, report.unmatched_records) == (2174, [], [])
        assert all(len(replayed(sampler, s)) == K for s in samples[:50])
    # TSV row 540_mlvu_540 is JSON record Q0 (the TSV index and the JSON question_id never agree)
    [tsv] = [s for s in mlvu_samples_from_tsv() if s.id == "540_mlvu_540"]
    records = load_json("mlvu.json")
    [q] = [r for r in records if mlvu_key(r["video_name"], r["question"], r["candidates"]) ==
           mlvu_key(tsv.video, tsv.question, tsv.options)]
    assert q["question_id"] == "Q0"
    # video + question alone is not a key: 4 pairs repeat, so the candidates are needed
    pairs = Counter((r["video_name"], mlvu_stem(r["question"], r["candidates"])) for r in records)
    assert sum(c > 1 for c in pairs.values()) == 4


@needs_data
def test_tspo_uniform_short_rule_gives_k_linspace_frames():
    sampler = replay(LVB_IDX, short="tspo-uniform")
    samples = lvb_samples()
    short = next(s for s in samples if len(sampler.stored_indices(s)) < K)
    n = int(sampler.stored_indices(short).max()) + 17
    assert list(replayed(sampler, short, frame_count=n)) == np.linspace(0, n - 1, K, dtype=int).tolist()
    full = samples[0]  # 64 stored: the rule changes nothing
    assert replayed(sampler, full) == tuple(sorted(sampler.stored_indices(full)[:K]))
    # and the harness rule keeps the stored frames as they are
    assert replayed(replay(LVB_IDX), short) == tuple(sampler.stored_indices(short))
    # on a real grid the positions become a Selection of native frames and their times
    grid = make_grid(n, 30.0, "all")
    sel = Selection.from_positions("replay", sampler.config_hash, grid, replayed(sampler, short, frame_count=n))
    assert sel.frame_indices == replayed(sampler, short, frame_count=n) and sel.timestamps[1] == sel.frame_indices[1] / 30


@needs_data
def test_converter_reproduces_the_published_file_byte_for_byte(tmp_path):
    """Feed TSPO's own indices through a run directory and back: the output is TSPO's file, byte for byte."""
    published = load_selections(VMME_IDX)
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"sample_id": key, "selection": {"frame_indices": list(e.frame_indices)}}
            for key, e in published.entries.items()]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "TSPO_VideoMME_frameIdx.json"
    report = run_to_tspo(run, DATA / "jsons" / "videomme.json", out)
    assert (report.written, report.records, report.unmatched_records, report.unmatched_rows) == (2700, 2700, [], [])
    assert out.read_bytes() == VMME_IDX.read_bytes()


@needs_data
def test_converter_for_mlvu_joins_through_the_samples(tmp_path):
    published = load_selections(MLVU_IDX)
    samples = mlvu_samples_from_tsv()  # harness ids unrelated to the JSON's question_id
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"sample_id": s.id, "selection": {"frame_indices": list(published.get(s).frame_indices)}}
            for s in samples]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "mlvu.json"
    report = run_to_tspo(run, DATA / "jsons" / "mlvu.json", out, samples=samples)
    assert report.written == 2174 and not report.unmatched_rows
    assert out.read_bytes() == MLVU_IDX.read_bytes()


# -- the real tasks (written beside this sampler) join as the stand-ins do -------------------------------------------
@needs_data
@pytest.mark.parametrize("task,annotations,idx,expected", [
    ("longvideobench", "lvb_val.json", LVB_IDX, 1337),
    ("videomme", "videomme.json", VMME_IDX, 2700),
    ("mlvu", "mlvu.json", MLVU_IDX, 2174),
])
def test_real_tasks_join_all_published_selections(task, annotations, idx, expected, tmp_path):
    import importlib

    from harness.registry import TASKS
    importlib.import_module(f"tasks.{task}")  # registers it whether or not tasks/__init__ imports it yet
    t = TASKS.create(task, annotations=str(DATA / "jsons" / annotations), video_root=str(tmp_path))
    samples = t.load_samples()
    report = replay(idx).join(samples)
    assert (report.matched, report.unmatched_samples, report.unmatched_records) == (expected, [], []), \
        report.summary()


# -- small files: formats, reporting, errors -------------------------------------------------------------------------
def small_samples():
    return [Sample(f"s{i}", f"/v/{i}.mp4", "q?", ("a", "b"), 0) for i in range(4)]


def test_unmatched_samples_and_records_are_reported(tmp_path):
    path = tmp_path / "sel.jsonl"
    write_harness([{"sample_id": "s0", "frame_indices": [0, 5, 9]}, {"sample_id": "s1", "frame_indices": [1, 2]},
                   {"sample_id": "zz", "frame_indices": [3]}], path)
    sampler = replay(path)
    report = sampler.join(small_samples())
    assert (report.matched, report.unmatched_samples, report.unmatched_records) == (2, ["s2", "s3"], ["zz"])
    text = report.summary()
    assert "2 of 4 samples" in text and "2 samples have none (first: s2, s3)" in text and "zz" in text
    with pytest.raises(HarnessError, match="no stored selection for sample 's2'"):
        sampler.stored_indices(small_samples()[2])


def test_harness_format_round_trip_through_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"sample_id": "s0", "selection": {"frame_indices": [0, 30, 60], "timestamps": [0.0, 1.0, 2.0]}},
            {"sample_id": "s1", "selection": None, "prediction": {"parse_status": "error"}},
            {"sample_id": "s2", "selection": {"frame_indices": [30, 30, 90], "timestamps": [1.0, 1.0, 3.0]}}]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.json").write_text(json.dumps({"identity": {"sampler": {"name": "uniform"}, "frames": 3}}))
    direct = load_selections(run)  # a run directory reads as a selection file
    assert {k: e.frame_indices for k, e in direct.entries.items()} == {"s0": (0, 30, 60), "s2": (30, 30, 90)}
    assert direct.missing == ["s1"]
    out = tmp_path / "sel.jsonl"
    assert run_to_harness(run, out) == 2
    again = load_selections(out)
    assert again.format == "harness" and again.header["sampler"] == {"name": "uniform"}
    assert {k: e.frame_indices for k, e in again.entries.items()} == {"s0": (0, 30, 60), "s2": (30, 30, 90)}
    assert replay(out).config()["file_sha256"] == again.sha256


def test_tspo_round_trip_on_a_small_annotation_file(tmp_path):
    records = [{"video_id": "v", "question": "q", "candidates": ["a", "b"], "correct_choice": 0, "id": f"v_{i}",
                "video_path": "v.mp4"} for i in range(3)]
    (tmp_path / "ann.json").write_text(json.dumps(records))
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"sample_id": "v_0", "selection": {"frame_indices": [60, 0, 30]}},  # stored sorted
            {"sample_id": "v_2", "selection": None},
            {"sample_id": "other", "selection": {"frame_indices": [1]}}]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_to_tspo(run, tmp_path / "ann.json", tmp_path / "out.json")
    assert (report.written, report.unmatched_records, report.errored_rows, report.unmatched_rows) == \
        (1, ["v_1"], ["v_2"], ["other"])
    out = json.loads((tmp_path / "out.json").read_text())
    assert out[0]["frame_idx"] == [0.0, 30.0, 60.0] and "frame_idx" not in out[1] and "frame_idx" not in out[2]
    back = load_selections(tmp_path / "out.json")
    assert back.kind == "longvideobench" and back.format == "tspo" and back.missing == ["v_1", "v_2"]
    assert back.entries["v_0"].frame_indices == (0, 30, 60)


def test_replay_indices_truncates_then_sorts_like_tspo():
    stored = [50, 10, 40, 20, 30]
    assert replay_indices(stored, 3, 100).tolist() == [10, 40, 50]  # sorted(stored[:3])
    assert replay_indices(stored, 8, 100).tolist() == [10, 20, 30, 40, 50]
    assert replay_indices(stored, 8, 100, "tspo-uniform").tolist() == [0, 14, 28, 42, 56, 70, 84, 99]
    with pytest.raises(HarnessError, match="short rule"):
        replay_indices(stored, 8, 100, "pad")


def test_bad_files_and_options_are_clear_errors(tmp_path):
    with pytest.raises(HarnessError, match="needs file="):
        SAMPLERS.create("replay")
    with pytest.raises(HarnessError, match="does not exist"):
        replay(tmp_path / "nope.json")
    with pytest.raises(HarnessError, match="must be one of"):
        replay(tmp_path / "nope.json", short="pad")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video_id": "v", "question": "q", "candidates": ["a"], "correct_choice": 0,
                                "id": "v_0", "frame_idx": [0.0, 1.5]}]))
    with pytest.raises(HarnessError, match="1.5 is not a whole number"):
        replay(bad)
    bad.write_text(json.dumps([{"something": 1}]))
    with pytest.raises(HarnessError, match="not a LongVideoBench, Video-MME or MLVU"):
        replay(bad)
    ok = tmp_path / "ok.jsonl"
    write_harness([{"sample_id": "s0", "frame_indices": [0, 500]}], ok)
    with pytest.raises(HarnessError, match="beyond the video's 100 frames"):
        replay(ok).positions(100, 8, {"stored_indices": np.array([0, 500])})


def test_config_hash_follows_the_content_not_the_path(tmp_path):
    a, b = tmp_path / "a" / "sel.jsonl", tmp_path / "b" / "sel.jsonl"
    for p in (a, b):
        write_harness([{"sample_id": "s0", "frame_indices": [0, 5]}], p)
    assert replay(a).config_hash == replay(b).config_hash
    assert replay(a).config_hash != replay(a, short="tspo-uniform").config_hash
    write_harness([{"sample_id": "s0", "frame_indices": [0, 6]}], b)
    assert replay(a).config_hash != replay(b).config_hash


def test_replay_through_apply_sampler_on_the_all_grid(tmp_path):
    path = tmp_path / "sel.jsonl"
    write_harness([{"sample_id": "s0", "frame_indices": [90, 0, 30]}], path)
    sampler = replay(path)
    grid = make_grid(300, 30.0, "all")
    sel = samplers.base.apply_sampler(sampler, grid, 8, {"stored_indices": sampler.stored_indices(small_samples()[0])})
    assert sel.frame_indices == (0, 30, 90) and sel.timestamps == (0.0, 1.0, 3.0)
