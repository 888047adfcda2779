"""The LongVideoBench test split end to end: `harness run --task-arg split=test` on records in the format of
lvb_test_wo_gt.json (written here: the validation file's fields without `correct_choice`) with generated clips and the
scripted backbone of export_runs.py; rows carry no gold and no score, metrics.json counts answers and gives no
accuracy, the commands that score refuse the run, and `harness export --format longvideobench-submission` writes every
question id with the model's own text."""
import json
from pathlib import Path

import pytest

from export_runs import ANSWERS, LAYOUT, harness, longvideobench, make_stand_in, metrics_of, rows_of


def test_record(k: int, video: str) -> dict:
    """A record as lvb_test_wo_gt.json holds it: lvb_val.json's fields, no correct_choice."""
    record = {**longvideobench(k, video), "question_wo_referring_query": "What?", "position": [1, 2],
              "topic_category": "NP-News-Programs", "level": "L2-Relation", "subtitle_path": f"{video}_en.json",
              "starting_timestamp_for_subtitles": 0, "view_count": 7}
    del record["correct_choice"]
    return record


test_record.__test__ = False  # a record maker, not a test


def write_test_split(tmp_path, layout=LAYOUT):
    """(annotation file, video root): the stand-in clips of export_runs.py and test-format records of `layout`."""
    _, root = make_stand_in(tmp_path, "longvideobench")
    f = tmp_path / "lvb_test_wo_gt.json"
    f.write_text(json.dumps([test_record(k, v) for k, v in layout]))
    return f, root


def run_test_split(tmp_path, f, root, name: str, *extra) -> Path:
    out = tmp_path / name
    assert harness("run", "--task", "longvideobench", "--task-arg", f"annotations={f}", "--task-arg", "split=test",
                   "--video-root", root, "--backbone", "export-script-probe", "--sampler", "uniform", "--frames", 4,
                   "--out", out, "--cache-dir", tmp_path / "cache", "--decode-backend", "pyav", "--no-progress",
                   *extra) == 0
    [run_dir] = list(out.iterdir())
    return run_dir


@pytest.fixture(scope="module")
def test_run(tmp_path_factory):
    """The five stand-in questions (one on an unreadable video: an error row) of the test split."""
    tmp = tmp_path_factory.mktemp("lvbtest")
    f, root = write_test_split(tmp)
    return run_test_split(tmp, f, root, "runs")


def test_rows_have_no_gold_and_no_score(test_run):
    rows = rows_of(test_run)
    assert [r["sample_id"] for r in rows] == [f"{v}_{k}" for k, v in LAYOUT]
    statuses = [r["prediction"]["parse_status"] for r in rows]
    # the scripted answers by tag: "B" and "The answer is C." parse, "I cannot tell..." does not, "broken" errors
    assert statuses == ["ok", "ok", "parse_failed", "ok", "error"]
    for r in rows:
        assert r["answer"] is None and r["prediction"]["correct"] is None
    assert [r["prediction"]["parsed"] for r in rows] == ["B", "C", None, "C", None]
    cfg = json.loads((test_run / "config.json").read_text())
    assert cfg["task_config"]["split"] == "test" and cfg["identity"]["task"]["config"]["split"] == "test"


def test_metrics_say_submission_only(test_run):
    m = metrics_of(test_run)
    assert m["scored"] is False
    # by hand from the layout: 5 questions, 4 answered (one of them unparsable), 1 error
    assert m["overall"] == {"n": 5, "answered": 4, "correct": None, "accuracy": None, "parse_failed": 1,
                            "errors": 1, "evidence_recall": None}
    assert m["submission"]["note"] == "test split: no gold answers, submission only"
    assert (m["submission"]["questions"], m["submission"]["answered"], m["submission"]["parse_failed"],
            m["submission"]["errors"]) == (5, 4, 1, 1)
    # duration_group 15 for odd tags (1, 3, 1), 60 for even ones (0, 2)
    by_group = {g: (b["n"], b["accuracy"]) for g, b in m["by"]["duration_group"].items()}
    assert by_group == {"15": (3, None), "60": (2, None)}
    assert all(p["accuracy"] is None and p["correct"] is None for p in m["by_parser"].values())
    assert "lmms_eval_random_expectation" not in m
    assert m["protocol"]["task"] == "longvideobench_test_v" and m["protocol"]["metric"] == "submission"


def test_scoring_commands_refuse_it(test_run, stand_in_run, tmp_path, capsys):
    for argv in (["compare", test_run], ["compare", test_run, "--report", tmp_path / "rep"],
                 ["baseline", "save", test_run, "--out", tmp_path / "b.json"]):
        assert harness(*argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no gold answers" in err and "split test" in err, argv
    assert not (tmp_path / "b.json").exists()
    # regress against a real baseline (a validation run's): the test run is refused, not scored 0
    val = stand_in_run("longvideobench")
    assert harness("baseline", "save", val, "--out", tmp_path / "b.json") == 0
    capsys.readouterr()
    assert harness("regress", test_run, "--baseline", tmp_path / "b.json") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "harness regress has nothing to score" in err
    # the table still counts its answers, without an accuracy
    assert harness("table", test_run, "--format", "json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["longvideobench (n=5)"] is None and row["longvideobench errors"] == 1
    assert row["longvideobench parse-fail %"] == pytest.approx(20.0)


def test_export_refuses_error_rows_and_lmms_eval_logs(test_run, tmp_path, capsys):
    assert harness("export", test_run, "--format", "longvideobench-submission", "--out", tmp_path / "s") == 2
    assert "1 error rows have no answer to submit" in capsys.readouterr().err
    assert harness("export", test_run, "--format", "lmms-eval", "--out", tmp_path / "l") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no gold answers" in err and "longvideobench-submission" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "l").exists()


def test_submission_of_a_whole_test_split(tmp_path, capsys):
    layout = [(k, v) for k, v in LAYOUT if v != "broken"]
    f, root = write_test_split(tmp_path, layout)
    run_dir = run_test_split(tmp_path, f, root, "runs")
    capsys.readouterr()
    assert harness("export", run_dir, "--format", "longvideobench-submission", "--out", tmp_path / "sub") == 0
    captured = capsys.readouterr()
    assert "validation" not in captured.err  # a test run: no note
    sub = json.loads((tmp_path / "sub" / "longvideobench_test_for_submission.json").read_text())
    # every question id, in the file's order, with the text the scripted backbone gave (parse failure included)
    assert list(sub.items()) == [(f"{v}_{k}", ANSWERS[k]) for k, v in layout]
    # a run of part of the test split is refused: the leaderboard takes it whole
    part = run_test_split(tmp_path, f, root, "part", "--limit", 2)
    capsys.readouterr()
    assert harness("export", part, "--format", "longvideobench-submission", "--out", tmp_path / "p.json") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 of the 4 test questions have no answer" in err
    assert not (tmp_path / "p.json").exists()
