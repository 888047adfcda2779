"""Evidence recall on the real benchmarks from a KFS-Bench key-scene file (`--task-arg evidence=FILE`).

The files are written here in KFS-Bench's published format (header id,segment_id,scene_id,start,end; clock times
H:MM:SS or M:SS; `end` inclusive at 1 s, a frame at t inside when start <= t <= end + 1, as KFS-Bench's eval.py
counts); the expected recalls are worked out by hand in the comments. The real files are never read or shipped.
"""
import json
import re

import pytest

from harness.cli.app import main
from harness.errors import HarnessError
from harness.util.synth import write_index_clip
from tasks.evidence import clock_seconds, read_scenes, scene_recall
from tasks.longvideobench import LongVideoBench

HEADER = "id,segment_id,scene_id,start,end\n"


def lvb_record(qid, video, answer=0):
    return {"id": qid, "video_path": video, "question": f"what happens in {qid}?", "candidates": ["a", "b", "c"],
            "correct_choice": answer, "duration": 20.0, "duration_group": 15, "question_category": "S2E"}


@pytest.fixture()
def lvb(tmp_path):
    """Two 20 s stand-in videos at 1 fps: vidA asks two questions, vidB one."""
    records = [lvb_record("vidA_0", "vidA.mp4"), lvb_record("vidA_1", "vidA.mp4"), lvb_record("vidB_0", "vidB.mp4")]
    (tmp_path / "lvb.json").write_text(json.dumps(records))
    (tmp_path / "videos").mkdir()
    for name in ("vidA", "vidB"):
        write_index_clip(tmp_path / "videos" / f"{name}.mp4", 20, 1)
    return tmp_path


# vidA_0: scene 0 is 0:05 (a frame at 5..6 s), scene 1 is 0:08-0:09 or 0:18 (two segments).
# vidA_1: scenes 0:01-0:03, 0:13-0:14 and 0:12. vidB_0: not annotated. ghost_0: no question of the task.
KFS = HEADER + ("vidA_0,0,0,0:05,0:05\nvidA_0,1,1,0:08,0:09\nvidA_0,2,1,0:00:18,0:00:18\n"
                "vidA_1,0,0,0:01,0:03\nvidA_1,1,1,0:13,0:14\nvidA_1,2,2,0:12,0:12\nghost_0,0,0,1:00:00,1:00:05\n")


def test_clock_times_and_scenes_of_a_file(tmp_path):
    assert clock_seconds("0:05") == 5 and clock_seconds("1:02:03") == 3723 and clock_seconds("12:30.5") == 750.5
    for bad in ("5", "a:05", "1:2:3:4", "0:75", ":05"):
        with pytest.raises(ValueError):
            clock_seconds(bad)
    f = tmp_path / "kfs.csv"
    f.write_text(KFS)
    scenes = read_scenes(f)
    assert list(scenes) == ["vidA_0", "vidA_1", "ghost_0"]
    assert scenes["vidA_0"] == (((5.0, 6.0),), ((8.0, 10.0), (18.0, 19.0)))  # end + 1 s: the whole last second
    assert scenes["ghost_0"] == (((3600.0, 3606.0),),)


def test_scene_hit_rate_by_hand():
    scenes = (((5.0, 6.0),), ((8.0, 10.0), (18.0, 19.0)))
    assert scene_recall(scenes, [6.0, 19.0]) == 1.0  # both ends closed: 6 is in [5, 6], 19 in [18, 19]
    assert scene_recall(scenes, [6.5, 11.0]) == 0.0
    assert scene_recall(scenes, [9.0]) == 0.5  # scene 1 hit through its first segment
    assert scene_recall((), [1.0]) is None


@pytest.mark.parametrize("text, says", [
    ("id,scene_id,start,end\nq,0,0:01,0:02\n", "no column segment_id"),
    (HEADER + "q,0,0,0:01,zero\n", "line 2 (id q): expected H:MM:SS or M:SS"),
    (HEADER + "q,0,0,0:09,0:02\n", "line 2 (id q): end 0:02 is before start 0:09"),
    (HEADER + ",0,0,0:01,0:02\n", "line 2: empty id"),
    (HEADER, "holds no segments"),
])
def test_bad_evidence_files_are_one_line(tmp_path, text, says):
    f = tmp_path / "kfs.csv"
    f.write_text(text)
    with pytest.raises(HarnessError, match=re.escape(says)):
        read_scenes(f)
    with pytest.raises(HarnessError, match="does not exist"):
        read_scenes(tmp_path / "nope.csv")


def run_rows(out, variant):
    """Rows by question id and metrics of the run whose uniform sampler has `variant` ."""
    [run] = [d for d in out.iterdir()
             if json.loads((d / "config.json").read_text())["identity"]["sampler"]["config"].get("variant") == variant]
    rows = {r["sample_id"]: r for r in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    return rows, json.loads((run / "metrics.json").read_text())["metrics"]


def test_run_reports_scene_hit_rate_per_sampler(lvb, capsys):
    (lvb / "kfs.csv").write_text(KFS)
    out = lvb / "runs"
    argv = ["run", "--task", "longvideobench", "--task-arg", f"annotations={lvb / 'lvb.json'}",
            "--task-arg", f"video_root={lvb / 'videos'}", "--task-arg", f"evidence={lvb / 'kfs.csv'}",
            "--backbone", "none", "--frames", "4", "--sampler", "uniform", "--sampler", "uniform:variant=segment-centre",
            "--decode-backend", "pyav", "--out", str(out), "--cache-dir", str(lvb / "cache"), "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "evidence file" in err and "1 of 3 question ids are no question of longvideobench (first: ghost_0)" in err
    rows, metrics = run_rows(out, "linspace-floor")
    # uniform (linspace-floor) over the 20 candidates at 0..19 s: floor(linspace(0, 19, 4)) = 0, 6, 12, 19.
    # vidA_0: 6 in [5, 6] and 19 in [18, 19] -> 2/2; vidA_1: only 12 in [12, 13] -> 1/3; vidB_0: no scenes.
    assert rows["vidA_0"]["selection"]["timestamps"] == [0.0, 6.0, 12.0, 19.0]
    assert rows["vidA_0"]["evidence_recall"] == 1.0
    assert rows["vidA_1"]["evidence_recall"] == pytest.approx(1 / 3)
    assert rows["vidB_0"]["evidence_recall"] is None and rows["vidB_0"]["evidence"] == []
    assert rows["vidA_0"]["evidence"] == [[5.0, 6.0], [8.0, 10.0], [18.0, 19.0]]
    assert metrics["overall"]["evidence_recall"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert metrics["evidence"]["questions_annotated"] == 2 and metrics["evidence"]["file_ids_not_in_task"] == 1
    # the other sampler: its recall follows the same closed rule from its own timestamps
    other, _ = run_rows(out, "segment-centre")
    for qid, segs in (("vidA_0", [[(5, 6)], [(8, 10), (18, 19)]]), ("vidA_1", [[(1, 4)], [(13, 15)], [(12, 13)]])):
        ts = other[qid]["selection"]["timestamps"]
        hits = sum(any(a <= t <= b for a, b in scene for t in ts) for scene in segs)
        assert other[qid]["evidence_recall"] == pytest.approx(hits / len(segs))
    # harness compare shows evidence recall per sampler
    assert main(["compare", *map(str, out.iterdir()), "--by", "none", "--resamples", "50"]) == 0
    table = capsys.readouterr().out
    assert "evidence recall" in table and "66.7" in table


def test_evidence_file_is_identity_content_not_location(lvb):
    (lvb / "a.csv").write_text(KFS)
    (lvb / "b.csv").write_text(KFS)
    common = {"annotations": str(lvb / "lvb.json"), "video_root": str(lvb / "videos")}
    plain = LongVideoBench(**common)
    a, b = LongVideoBench(**common, evidence=str(lvb / "a.csv")), LongVideoBench(**common, evidence=str(lvb / "b.csv"))
    assert "evidence" not in plain.config() and "evidence_sha256" not in plain.identity()
    assert a.identity() == b.identity() and a.config()["evidence"] != b.config()["evidence"]
    (lvb / "b.csv").write_text(KFS.replace("0:05,0:05", "0:04,0:05"))
    assert LongVideoBench(**common, evidence=str(lvb / "b.csv")).identity() != a.identity()


def test_a_file_of_another_benchmark_is_one_clear_line(lvb, capsys):
    # Video-MME question ids given to LongVideoBench
    (lvb / "vidmme.csv").write_text(HEADER + "003-2,0,0,0:49,0:55\n004-1,0,0,0:01,0:07\n")
    argv = ["run", "--task", "longvideobench", "--task-arg", f"annotations={lvb / 'lvb.json'}",
            "--task-arg", f"video_root={lvb / 'videos'}", "--task-arg", f"evidence={lvb / 'vidmme.csv'}",
            "--backbone", "none", "--sampler", "uniform", "--out", str(lvb / "runs"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of its 2 question ids is a question of task 'longvideobench'" in err
    assert "(file: 003-2, 004-1; task: vidA_0, vidA_1, vidB_0)" in err


def test_videomme_takes_an_evidence_file(tmp_path):
    from tasks.videomme import VideoMME
    record = {"question_id": "003-2", "videoID": "abc", "question": "q?", "options": ["A. x", "B. y", "C. z", "D. w"],
              "answer": "B", "duration": "short", "domain": "d", "task_type": "t", "sub_category": "s"}
    (tmp_path / "vmme.json").write_text(json.dumps([record]))
    (tmp_path / "kfs.csv").write_text(HEADER + "003-2,0,0,0:49,0:55\n003-2,1,1,1:45,1:50\n")
    task = VideoMME(annotations=str(tmp_path / "vmme.json"), video_root=str(tmp_path), evidence=str(tmp_path / "kfs.csv"))
    [sample] = task.load_samples()
    assert sample.evidence == ((49.0, 56.0), (105.0, 111.0))
    assert task.evidence_recall(sample, [56.0, 60.0]) == 0.5 and task.evidence_recall(sample, [30.0]) == 0.0
