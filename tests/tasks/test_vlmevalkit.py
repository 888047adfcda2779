"""The VLMEvalKit protocol: golden values transcribed by hand from VLMEvalKit's source (e8e78f05) and the
specification (docs/reference/benchmarks.md, section 6's VLMEvalKit column), never from the code under test.
Parity over every real record is scripts/parity_vlmevalkit.sh (not CI)."""
import json

import pytest

from harness.errors import HarnessError
from harness.scoring.vlmevalkit import can_infer, mcq_letter, mlvu_letter, question_choices, regex_letter
from harness.util.synth import write_index_clip
from harness.video.grid import grid_indices, parse_grid_rule
from samplers.uniform import Uniform
from tasks.longvideobench import LongVideoBench
from tasks.lvbench import LVBench
from tasks.mlvu import MLVU
from tasks.videomme import VideoMME, subtitle_lines_at, vlmevalkit_frame_indices
from tasks.vlmevalkit import longvideobench_rating, mlvu_acc, videomme_rating


# -- frames: nframe K -> int(i * N / (K + 1)), i = 1..K; fps F -> int(i * fps / F), i < int(N / fps * F) ----------

@pytest.mark.parametrize("n,k,want", [(100, 4, [20, 40, 60, 80]), (10, 3, [2, 5, 7]), (9, 2, [3, 6]),
                                      (7, 1, [3]), (64, 7, [8, 16, 24, 32, 40, 48, 56])])
def test_nframe_rule(n, k, want):
    assert vlmevalkit_frame_indices(n, 30.0, f"nframe:{k}") == want
    assert grid_indices(n, 30.0, f"nframe:{k}").tolist() == want
    assert Uniform("vlmevalkit").positions(n, k, {}).tolist() == want


def test_fps_rule_and_grid_spelling():
    assert vlmevalkit_frame_indices(300, 30.0, "fps:1.0") == list(range(0, 300, 30))
    assert vlmevalkit_frame_indices(100, 25.0, "fps:0.5") == [0, 50]  # int(4 s * 0.5) = 2 frames, step 50
    assert parse_grid_rule("NFRAME:8") == "nframe:8"
    with pytest.raises(HarnessError, match="nframe:N"):
        parse_grid_rule("nframe:0")


# -- matching (section 6, VLMEvalKit column; A-D for Video-MME, A-E for LongVideoBench) --------------------------

@pytest.mark.parametrize("text,want", [("B", "B"), ("B.", "B"), ("(B)", "B"), ("B) Candles", "B"),
                                       ("B. Candles.", "B"), ("The answer is B.", "B"), ("Answer: D", "D"),
                                       ("Candles", "C"), ("I think the answer is B, not A", "B"),
                                       ("The answer is B. A is wrong", "B"),
                                       ("A person is walking; the correct option is C", "A"),
                                       ("Best option: (A)", "B"), ("c", ""), ("E", "")])
def test_regex_step(text, want):
    assert regex_letter(text, "ABCD") == want


def test_fallback_ends_in_z_without_options_in_the_question():
    assert mcq_letter("videomme", "c", "What is it?") == "Z"
    assert mcq_letter("videomme", "E", "What is it?") == "Z"
    assert mcq_letter("longvideobench", "E", "What is it?") == "E"
    assert mcq_letter("videomme", None, "What is it?") is None
    # options written in the question: lines after the first holding "A.", "B.", ...
    assert question_choices("Q?\nA. red\nB. blue.") == {"A": "red", "B": "blue"}
    # no capital A-D in "it is blue": the regex gives "", then the option text "blue" is B's
    assert mcq_letter("videomme", "it is blue", "Q?\nA. red\nB. blue") == "B"
    assert mcq_letter("videomme", "it is red", "Q?\nx. red\nB. blue") == "Z"  # line 1 has no "A.": no choice A


def test_can_infer_by_hand():
    choices = {"A": "red", "B": "blue", "C": "green"}
    assert can_infer("the answer: B", choices) == "B"  # one choice letter, among the last 5 tokens
    assert can_infer("A or B", choices) is False  # two choice letters, no option text
    assert can_infer("it is blue", choices) == "B"  # the one option text in the answer
    assert can_infer("blue or green", choices) is False
    assert can_infer("Cannot determine the answer", choices) == "Z"
    assert can_infer("Z", choices) == "Z"


def test_mlvu_matching_by_hand():
    cands = ["Six", "Three", "Seven", "Eight"]
    assert mlvu_letter("B", cands, 1) == ("B", True)
    assert mlvu_letter("(B) Three", cands, 1) == ("B", True)  # the character before the first ")"
    assert mlvu_letter("B.", cands, 1) == ("B", True)  # "B." is not "B"; can_infer finds B
    assert mlvu_letter("Three", cands, 1) == ("B", True)  # option text
    assert mlvu_letter("A) no", cands, 1) == ("A", False)
    assert mlvu_letter("nothing", cands, 1) == ("Z", False)
    # two equal candidates: the ")"-check uses the last, can_infer the first
    dup = ["Six", "Three", "Three", "Eight"]
    assert mlvu_letter("C", dup, 1)[1] is True and mlvu_letter("B", dup, 1)[1] is True


# -- prompts, hand-written from build_prompt ---------------------------------------------------------------------

def write(tmp_path, name, records):
    f = tmp_path / name
    f.write_text(json.dumps(records))
    return str(f)


VMME = {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
        "url": "u", "videoID": "vid1", "question_id": "001-1", "task_type": "Counting Problem", "question": "How many?",
        "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."], "answer": "C"}
LVB = {"id": "v_0", "video_id": "v", "video_path": "v.mp4", "question": "What?", "candidates": ["x", "y", "z"],
       "correct_choice": 2, "duration": 10.0, "duration_group": 15, "question_category": "S2E"}
MLVU_REC = {"video_name": "needle_1.mp4", "duration": 100.0, "question": "Why?\n(A) a\n(B) b\n", "candidates": ["a", "b"],
            "answer": "B", "task_type": "needle", "question_id": "Q0"}


def test_prompts_by_hand(tmp_path):
    t = VideoMME(annotations=write(tmp_path, "v.json", [VMME]), protocol="vlmevalkit")
    ask = ("Select the best answer to the following multiple-choice question based on the video. Respond with "
           "only the letter (A, B, C, or D) of the correct option.\n")
    assert t.prompt(t.load_samples()[0]) == ("\nThese are the frames of a video. " + ask + "Question: How many?\n"
                                             "A. One.\nB. Two.\nC. Three.\nD. Four.\nAnswer: ")
    t = VideoMME(annotations=write(tmp_path, "v.json", [VMME]), protocol="vlmevalkit", subtitles=True,
                 subtitle_frames="nframe:8", subtitle_root=str(tmp_path))
    assert t.prompt(t.load_samples()[0]).startswith("\nThese are the frames of a video. This video's subtitles are "
                                                    "listed below:\n\n" + ask)  # no .srt: empty lines
    t = LongVideoBench(annotations=write(tmp_path, "l.json", [LVB]), protocol="vlmevalkit")
    assert t.prompt(t.load_samples()[0]) == ("What?\nA. x\nB. y\nC. z\nAnswer with the option's letter from the "
                                             "given choices directly.")
    t = MLVU(annotations=write(tmp_path, "m.json", [MLVU_REC]), protocol="vlmevalkit")
    s = t.load_samples()[0]
    sys_text = ("Carefully watch this video and pay attention to every detail. Based on your observations, select "
                "the best option that accurately addresses the question.")
    assert t.messages(s)[0] == {"type": "text", "value": sys_text, "role": "system"}
    assert t.prompt(s) == sys_text + "Question: Why?\nOptions:\n(A) a\n(B) b" + "\nOnly give the best option."


def test_subtitle_lines_strictly_inside_first_match():
    subs = [(0, 1000, "one"), (500, 3000, "two\\Nlines"), (3000, 4000, " ")]
    # frames 0, 10, 20, 35 at 10 fps: 0 ms (none, not strictly inside), 1000 ms (two), 2000 ms (two), 3500 (blank)
    assert subtitle_lines_at(subs, [0, 10, 20, 35], 10.0) == "two lines\ntwo lines"


def test_options_and_refusals(tmp_path):
    with pytest.raises(HarnessError, match="no VLMEvalKit protocol"):
        LVBench(annotations="x.jsonl", protocol="vlmevalkit")
    with pytest.raises(HarnessError, match="parser"):
        LongVideoBench(annotations="x.json", protocol="vlmevalkit", parser="strict")
    with pytest.raises(HarnessError, match="unknown protocol"):
        LongVideoBench(annotations="x.json", protocol="vlmeval")
    with pytest.raises(HarnessError, match="subtitle_frames must be"):
        VideoMME(annotations="x.json", protocol="vlmevalkit", subtitles=True)
    with pytest.raises(HarnessError, match="subtitle_frames applies"):
        VideoMME(annotations="x.json", subtitle_frames="nframe:8")
    f = write(tmp_path, "l.json", [LVB])
    default, vlm = LongVideoBench(annotations=f), LongVideoBench(annotations=f, protocol="vlmevalkit")
    assert default.config()["protocol"] == "lmms-eval" and "protocol" not in default.identity()
    assert vlm.identity()["protocol"] == "vlmevalkit" and vlm.config()["parser"] == "vlmevalkit"


# -- aggregation, by hand ----------------------------------------------------------------------------------------

def row(correct, raw="x", **cats):
    return {"categories": cats, "prediction": {"correct": correct, "raw_text": raw}}


def test_ratings_by_hand():
    rows = [row(True, duration_group="15", question_category="S2E"),
            row(False, duration_group="15", question_category="S2E"),
            row(True, duration_group="600", question_category="TOS")]
    r = longvideobench_rating(rows)
    assert r["overall"]["overall"] == "0.667" and r["15"]["overall"] == "0.500"
    assert r["15"]["question_category"]["S2E"] == "0.500" and r["60"]["overall"] == "nan"
    v = videomme_rating([row(True, duration="long", domain="Knowledge", sub_category="Law", task_type="OCR Problems")])
    assert v["long"]["overall"] == "1.000" and v["short"]["domain"]["Knowledge"] == "nan"
    assert set(v) == {"short", "medium", "long", "overall"}
    m = mlvu_acc([row(True, task_type="needle"), row(False, task_type="needle"), row(True, task_type="ego"),
                  row(False, raw="Failed to obtain answer via API.", task_type="ego")])
    assert m["needle"] == {"success": 1, "overall": 2, "acc": 50.0}
    assert m["ego"] == {"success": 0, "overall": 2, "acc": 0.0}  # its API-failure answer scores -1
    assert m["M-Avg"]["acc"] == 25.0 and m["G-Avg"]["acc"] is None


# -- stand-in runs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task,record,video", [("videomme", VMME, "vid1.mp4"), ("longvideobench", LVB, "v.mp4"),
                                               ("mlvu", MLVU_REC, "needle_1.mp4")])
def test_run_with_the_vlmevalkit_protocol(tmp_path, task, record, video):
    from harness.cli.app import main

    (tmp_path / "videos").mkdir()
    write_index_clip(tmp_path / "videos" / video, 40, 4)
    f = write(tmp_path, "a.json", [record])
    rc = main(["run", "--task", task, "--task-arg", f"annotations={f}", "--video-root", str(tmp_path / "videos"),
               "--protocol", "vlmevalkit", "--backbone", "colour-probe", "--sampler", "uniform:variant=vlmevalkit",
               "--grid", "all", "--frames", "4", "--out", str(tmp_path / "runs"), "--cache-dir",
               str(tmp_path / "cache"), "--decode-backend", "pyav", "--no-progress"])
    assert rc == 0
    [run] = list((tmp_path / "runs").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert m["scorer"] == "vlmevalkit" and m["metrics"]["protocol"]["framework"] == "VLMEvalKit"
    shaped = m["metrics"]["vlmevalkit"]
    assert ("acc" in shaped and "M-Avg" in shaped["acc"]) if task == "mlvu" else "overall" in shaped["rating"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task_config"]["protocol"] == "vlmevalkit"
    row_ = json.loads((run / "predictions.jsonl").read_text().splitlines()[0])
    assert row_["selection"]["frame_indices"] == [8, 16, 24, 32]  # int(i * 40 / 5)


def test_lvbench_refused_on_the_command_line(tmp_path, capsys):
    from harness.cli.app import main

    assert main(["run", "--task", "lvbench", "--protocol", "vlmevalkit", "--backbone", "colour-probe",
                 "--out", str(tmp_path / "runs")]) == 2
    assert "no VLMEvalKit protocol" in capsys.readouterr().err
