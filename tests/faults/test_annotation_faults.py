"""Issue 16, item 7: an annotation record that cannot be right is refused before anything runs, in one line that
names the annotation file (or the Hugging Face dataset), the record (index, and id where readable) and what is wrong.

Each case puts one bad record after a good one, so the message must say `record 1`. The good records are written
by hand in each benchmark's published layout (field names from lvb_val.json, mlvu.json, videomme.json and
video_info.meta.jsonl); the published files themselves still load (tests/tasks/test_benchmarks.py).
"""
import json

import pytest

import tasks.benchmark
from harness.errors import HarnessError
from tasks.longvideobench import LongVideoBench
from tasks.lvbench import LVBench
from tasks.mlvu import MLVU
from tasks.videomme import VideoMME

LVB = {"video_id": "86CxyhFV9MI", "question": "Which subtitles appear?", "candidates": ["a", "b", "c", "d"],
       "correct_choice": 1, "question_category": "TOS", "id": "86CxyhFV9MI_0", "video_path": "86CxyhFV9MI.mp4",
       "duration_group": 600, "duration": 190.16}
LVB_HF = {"id": "v_0", "video_path": "v.mp4", "question": "Q?", "option0": "a", "option1": "b", "option2": "c",
          "option3": "N/A", "option4": "N/A", "correct_choice": 2, "duration": 10.0, "duration_group": 15,
          "question_category": "S2E"}
MLVU_REC = {"video_name": "needle_32.mp4", "duration": 467.98, "question": "What?\n(A) a\n(B) b\n(C) c\n(D) d\n",
            "candidates": ["a", "b", "c", "d"], "answer": "A", "task_type": "needle", "question_id": "Q0"}
VMME = {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Law", "url": "u",
        "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem", "question": "Which?",
        "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "C"}
QA = {"uid": "55", "question": "What year?\n(A) 1636\n(B) 1366\n(C) 1363\n(D) 1633", "answer": "D",
      "question_type": ["key information retrieval"], "time_reference": "00:15-00:19"}
META = {"key": "Cm73ma6Ibcs", "type": "cartoon", "video_info": {"duration_minutes": 61.09, "fps": 24.0},
        "qa": [QA]}


def changed(record, **fields):
    return {**record, **fields}


def write(tmp_path, name, records):
    f = tmp_path / name
    if name.endswith(".jsonl"):
        f.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        f.write_text(json.dumps(records))
    return f


def refused(task) -> str:
    with pytest.raises(HarnessError) as e:
        task.load_samples()
    message = str(e.value)
    assert "\n" not in message
    return message


def lvb(tmp_path, bad):
    f = write(tmp_path, "lvb_val.json", [LVB, bad])
    return refused(LongVideoBench(annotations=str(f), video_root=str(tmp_path)))


# ---------------------------------------------------------------------------------------------------------------
# LongVideoBench: every case of the issue


def test_lvb_gold_beyond_the_candidates(tmp_path):
    msg = lvb(tmp_path, changed(LVB, correct_choice=7, id="86CxyhFV9MI_1"))
    assert msg == "lvb_val.json: record 1 (id '86CxyhFV9MI_1'): correct_choice 7 is not an index of its 4 candidates"


def test_lvb_negative_gold(tmp_path):
    msg = lvb(tmp_path, changed(LVB, correct_choice=-1, id="x_1"))
    assert msg.startswith("lvb_val.json: record 1 (id 'x_1'): ") and "correct_choice -1" in msg


def test_lvb_empty_candidates(tmp_path):
    msg = lvb(tmp_path, changed(LVB, candidates=[], id="x_1"))
    assert msg.startswith("lvb_val.json: record 1 (id 'x_1'): candidates ") and "2 to 26" in msg


def test_lvb_candidates_not_a_list(tmp_path):
    msg = lvb(tmp_path, changed(LVB, candidates="not a list", id="x_1"))
    assert msg.startswith("lvb_val.json: record 1 (id 'x_1'): candidates ") and "not a list" in msg


def test_lvb_null_id(tmp_path):
    msg = lvb(tmp_path, changed(LVB, id=None))
    assert msg.startswith("lvb_val.json: record 1: id ") and "null" in msg


def test_lvb_question_not_a_string(tmp_path):
    msg = lvb(tmp_path, changed(LVB, question={"a": 1}, id="x_1"))
    assert msg.startswith("lvb_val.json: record 1 (id 'x_1'): question ") and "string" in msg


def test_lvb_hugging_face_rows_name_the_dataset(tmp_path, monkeypatch):
    # option3 and option4 are "N/A": three options, so correct_choice 4 points at nothing
    rows = [LVB_HF, changed(LVB_HF, id="v_1", correct_choice=4)]
    monkeypatch.setattr(tasks.benchmark, "load_hf_records", lambda *a, **k: [dict(r) for r in rows])
    msg = refused(LongVideoBench(video_root=str(tmp_path)))
    assert msg.startswith("longvideobench/LongVideoBench") and "record 1 (id 'v_1')" in msg
    assert "correct_choice 4 is not an index of its 3 options" in msg


def test_lvb_bad_duration_and_unsafe_path(tmp_path):
    assert "duration" in lvb(tmp_path, changed(LVB, duration=-3.0, id="x_1"))
    msg = lvb(tmp_path, changed(LVB, video_path="../../etc/x.mp4", id="x_1"))
    assert msg.startswith("lvb_val.json: record 1 (id 'x_1'): ") and "leaves the video root" in msg


# ---------------------------------------------------------------------------------------------------------------
# MLVU dev and test


def mlvu(tmp_path, bad, **kw):
    f = write(tmp_path, "mlvu.json", [MLVU_REC, bad])
    return refused(MLVU(annotations=str(f), video_root=str(tmp_path), **kw))


def test_mlvu_single_candidate(tmp_path):
    msg = mlvu(tmp_path, changed(MLVU_REC, candidates=["only"], question="What?\n(A) only\n", question_id="Q1"))
    assert msg.startswith("mlvu.json: record 1 (question_id 'Q1'): candidates ") and "2 to 26" in msg


def test_mlvu_dev_without_gold(tmp_path):
    msg = mlvu(tmp_path, changed(MLVU_REC, answer=None, question_id="Q1"))
    assert msg.startswith("mlvu.json: record 1 (question_id 'Q1'): answer ")


def test_mlvu_id_and_duration(tmp_path):
    msg = mlvu(tmp_path, changed(MLVU_REC, question_id={"x": 1}))
    assert msg.startswith("mlvu.json: record 1: question_id ")
    msg = mlvu(tmp_path, changed(MLVU_REC, duration=-5, question_id="Q1"))
    assert msg.startswith("mlvu.json: record 1 (question_id 'Q1'): duration ") and "positive" in msg


def test_mlvu_test_hides_gold_but_not_a_wrong_one(tmp_path):
    f = write(tmp_path, "mlvu_test.json", [changed(MLVU_REC, answer=None)])
    [s] = MLVU(annotations=str(f), video_root=str(tmp_path), split="test").load_samples()
    assert s.answer is None
    msg = mlvu(tmp_path, changed(MLVU_REC, answer="E", question_id="Q1"), split="test")
    assert msg.startswith("mlvu.json: record 1 (question_id 'Q1'): answer 'E' ") and "4 candidates" in msg
    msg = mlvu(tmp_path, changed(MLVU_REC, candidates=[1, 2, 3, 4], question_id="Q1"), split="test")
    assert msg.startswith("mlvu.json: record 1 (question_id 'Q1'): candidates ")


# ---------------------------------------------------------------------------------------------------------------
# Video-MME


def vmme(tmp_path, bad):
    f = write(tmp_path, "videomme.json", [VMME, bad])
    return refused(VideoMME(annotations=str(f), video_root=str(tmp_path)))


def test_videomme_options_not_a_list(tmp_path):
    msg = vmme(tmp_path, changed(VMME, options="A. a", question_id="001-2"))
    assert msg.startswith("videomme.json: record 1 (question_id '001-2'): options ")


def test_videomme_missing_gold_and_null_id(tmp_path):
    msg = vmme(tmp_path, changed(VMME, answer=None, question_id="001-2"))
    assert msg.startswith("videomme.json: record 1 (question_id '001-2'): answer ")
    msg = vmme(tmp_path, changed(VMME, question_id=None))
    assert msg.startswith("videomme.json: record 1: question_id ")


def test_videomme_gold_beyond_the_options(tmp_path):
    msg = vmme(tmp_path, changed(VMME, answer="E", question_id="001-2"))
    assert msg.startswith("videomme.json: record 1 (question_id '001-2'): answer 'E' ") and "4 options" in msg


# ---------------------------------------------------------------------------------------------------------------
# LVBench: per-video meta records and per-question rows


def lvbench(tmp_path, bad, name="video_info.meta.jsonl", first=META):
    f = write(tmp_path, name, [first, bad])
    return refused(LVBench(annotations=str(f), video_root=str(tmp_path)))


def test_lvbench_negative_duration_and_bad_qa(tmp_path):
    msg = lvbench(tmp_path, changed(META, key="k2", video_info={"duration_minutes": -3}))
    assert msg.startswith("video_info.meta.jsonl: record 1 (key 'k2'): video_info") and "positive" in msg
    msg = lvbench(tmp_path, changed(META, key="k2", qa="x"))
    assert msg.startswith("video_info.meta.jsonl: record 1 (key 'k2'): qa ")


def test_lvbench_qa_gold_missing_or_one_option(tmp_path):
    msg = lvbench(tmp_path, changed(META, key="k2", qa=[QA, changed(QA, uid="56", answer=None)]))
    assert msg.startswith("video_info.meta.jsonl: record 1 (key 'k2'): qa 1 (uid '56'): answer ")
    msg = lvbench(tmp_path, changed(META, key="k2", qa=[changed(QA, question="Year?\n(A) 1636", answer="A")]))
    assert msg.startswith("video_info.meta.jsonl: record 1 (key 'k2'): qa 0 (uid '55'): ") and "2 to 26" in msg


def test_lvbench_question_rows(tmp_path):
    row = {"uid": "7", "key": "abc", "type": "tv", "question": "Stem?", "options": ["x", "y", "z", "w"],
           "answer": "B", "question_type": "reasoning", "video_path": "abc.mp4", "time_reference": "00:01-00:02"}
    msg = lvbench(tmp_path, changed(row, uid={"a": 1}), name="lvbench.json", first=row)
    assert msg.startswith("lvbench.json: record 1 (key 'abc'): uid ")
    msg = lvbench(tmp_path, changed(row, uid="8", answer="F"), name="lvbench.json", first=row)
    assert msg.startswith("lvbench.json: record 1 (key 'abc', uid '8'): answer 'F' ")


def test_duplicate_ids_name_the_file(tmp_path):
    msg = lvb(tmp_path, dict(LVB))
    assert msg.startswith("lvb_val.json: ") and "duplicate" in msg and "86CxyhFV9MI_0" in msg
