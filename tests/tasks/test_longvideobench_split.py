"""`longvideobench` with `split=test`: records as lvb_test_wo_gt.json holds them (written here: lvb_val.json's fields
without `correct_choice`) and as the Hugging Face test rows (option0..4), read without gold; prompts as lmms-eval's
`longvideobench_test_v` words them (it shares `longvideobench_doc_to_text` and its kwargs with `_val_v`); answers
recorded, never scored; metrics without accuracy. The run end to end and the submission file: tests/export/
test_longvideobench_test_split.py."""
import json

import pytest

from harness.errors import HarnessError
from harness.report.reader import rescore, verify_rows
from harness.scoring.summary import summarise
from tasks.longvideobench import LongVideoBench

POST = "Answer with the option's letter from the given choices directly.\n"


def test_record(k: int, **extra) -> dict:
    """One record of lvb_test_wo_gt.json's layout (the validation fields, no correct_choice)."""
    return {"video_id": "vid", "question": f"What is shown? {k}", "question_wo_referring_query": "What?",
            "candidates": ["a cat", "a dog", "a bird", "a fish"][:3 + k % 2], "position": [3, 9],
            "topic_category": "NP-News-Programs", "question_category": "S2E", "level": "L1-Perception",
            "id": f"vid_{k}", "video_path": "vid.mp4", "subtitle_path": "vid_en.json", "duration_group": 600,
            "starting_timestamp_for_subtitles": 0, "duration": 190.5, "view_count": 12, **extra}


test_record.__test__ = False  # a record maker, not a test


def task_on(tmp_path, records, name="lvb_test_wo_gt.json", **kw) -> LongVideoBench:
    f = tmp_path / name
    f.write_text(json.dumps(records))
    return LongVideoBench(annotations=str(f), video_root=str(tmp_path), **kw)


def test_test_records_load_without_gold(tmp_path):
    t = task_on(tmp_path, [test_record(0), test_record(1)], split="test")
    samples = t.load_samples()
    assert [s.id for s in samples] == ["vid_0", "vid_1"]
    assert [s.answer for s in samples] == [None, None] and samples[1].options[3] == "a fish"
    assert samples[0].categories == {"duration_group": "600", "question_category": "S2E"}
    assert (t.lmms_task, t.hf_split) == ("longvideobench_test_v", "test")
    assert t.source() == "lvb_test_wo_gt.json"


def test_prompt_is_lmms_evals_for_both_splits(tmp_path):
    """Written from lmms-eval 0.7.3's longvideobench_doc_to_text (question, "A. option" lines, post_prompt)."""
    test = task_on(tmp_path, [test_record(1)], split="test").load_samples()[0]
    val_task = task_on(tmp_path, [test_record(1, correct_choice=2)], name="val.json")
    val = val_task.load_samples()[0]
    want = "What is shown? 1\nA. a cat\nB. a dog\nC. a bird\nD. a fish\n" + POST
    assert LongVideoBench(split="test", video_root="/x").prompt(test) == want == val_task.prompt(val)


def test_hugging_face_test_rows_and_the_placeholder_gold(tmp_path):
    base = {k: v for k, v in test_record(0).items() if k != "candidates"}
    rows = [{**base, "id": "h_0", "option0": "x", "option1": "y", "option2": "z", "option3": "N/A",
             "option4": "N/A"},
            {**base, "id": "h_1", "option0": "x", "option1": "y", "option2": "N/A", "option3": "N/A",
             "option4": "N/A", "correct_choice": -1}]  # the official dataloader's "no gold" (-1: "@")
    t = task_on(tmp_path, rows, split="test")
    assert [(s.options, s.answer) for s in t.load_samples()] == [(("x", "y", "z"), None), (("x", "y"), None)]


def test_wrong_split_files_are_one_line_errors(tmp_path):
    with pytest.raises(HarnessError, match="correct_choice 2 on a test-split record.*split=validation") as e:
        task_on(tmp_path, [test_record(0, correct_choice=2)], split="test").load_samples()
    assert "\n" not in str(e.value) and "record 0 (id 'vid_0')" in str(e.value)
    with pytest.raises(HarnessError, match="correct_choice is missing: a test-split record.*pass split=test"):
        task_on(tmp_path, [test_record(0)]).load_samples()
    with pytest.raises(HarnessError, match="unknown LongVideoBench split 'tests'.*did you mean split=test"):
        LongVideoBench(split="tests", video_root="/x")
    with pytest.raises(HarnessError, match="protocol=vlmevalkit.*no split=test"):
        LongVideoBench(split="test", protocol="vlmevalkit", video_root="/x")


def test_config_records_the_split_and_validation_keeps_its_identity():
    val, test = LongVideoBench(video_root="/x"), LongVideoBench(video_root="/x", split="test")
    assert val.config()["split"] == "validation" and test.config()["split"] == "test"
    # the default split stays out of the identity: run directories made before the test split keep their hash
    assert "split" not in val.identity() and test.identity()["split"] == "test"
    assert val.config()["annotations"] == "hf:longvideobench/LongVideoBench:validation"
    assert test.config()["annotations"] == "hf:longvideobench/LongVideoBench:test"


def test_answers_are_recorded_never_scored(tmp_path):
    t = task_on(tmp_path, [test_record(1)], split="test")
    [s] = t.load_samples()
    p = t.score(s, "The answer is B.")
    assert (p.parsed, p.correct, p.parse_status) == ("B", None, "ok")
    p = t.score(s, "I cannot tell.")  # lmms-eval would draw a random letter: recorded as a failure, not scored
    assert (p.parsed, p.correct, p.parse_status) == (None, None, "parse_failed")
    assert t.parse_all(s, "C")["strict"] == "C"


def unscored_row(sid, parsed, status, group="600"):
    return {"sample_id": sid, "answer": None, "categories": {"duration_group": group, "question_category": "S2E"},
            "prediction": {"parsed": parsed, "correct": None, "parse_status": status},
            "parsers": {"lmms-eval": parsed, "strict": parsed}}


def test_metrics_without_gold_count_answers_only():
    rows = [unscored_row("a", "A", "ok"), unscored_row("b", None, "parse_failed"),
            unscored_row("c", None, "error", group="15"), unscored_row("d", "C", "ok", group="15")]
    m = LongVideoBench(split="test", video_root="/x").metrics(rows)
    assert m["scored"] is False
    assert m["overall"] == {"n": 4, "answered": 3, "correct": None, "accuracy": None, "parse_failed": 1,
                            "errors": 1, "evidence_recall": None}
    assert m["by"]["duration_group"]["15"] == {"n": 2, "answered": 1, "correct": None, "accuracy": None,
                                               "parse_failed": 0, "errors": 1, "evidence_recall": None}
    assert m["submission"] == {"note": "test split: no gold answers, submission only", "questions": 4,
                               "answered": 3, "parse_failed": 1, "errors": 1,
                               "export": "harness export RUN_DIR --format longvideobench-submission"}
    assert m["by_parser"]["strict"] == {"n": 4, "correct": None, "accuracy": None, "no_letter": 2}
    assert "lmms_eval_random_expectation" not in m
    assert (m["protocol"]["task"], m["protocol"]["metric"]) == ("longvideobench_test_v", "submission")
    assert m["protocol"]["averaging"].startswith("none")


def test_a_run_with_some_gold_is_scored_as_before():
    """MLVU's test split hides some answers: such rows count wrong, and the run keeps its accuracy."""
    rows = [{"answer": "A", "prediction": {"correct": True, "parse_status": "ok"}},
            {"answer": None, "prediction": {"correct": None, "parse_status": "ok"}}]
    o = summarise(rows)["overall"]
    assert (o["n"], o["correct"], o["accuracy"]) == (2, 1, 50.0) and "scored" not in summarise(rows)


def test_reader_rescores_no_gold_as_unscored(tmp_path, capsys):
    rows = [unscored_row("a", "A", "ok"),
            {**unscored_row("b", "B", "ok"), "prediction": {"parsed": "B", "correct": False, "parse_status": "ok"}},
            {**unscored_row("c", "C", "ok"), "prediction": {"parsed": "C", "correct": True, "parse_status": "ok"}}]
    assert rescore(rows[0]) is None
    verified, found = verify_rows(tmp_path, rows)
    assert [r["prediction"]["correct"] for r in verified] == [None, None, None]
    # stored False (a hidden gold scored wrong before unscored rows existed) agrees; a stored True does not
    assert found.rescored == ["c"]
