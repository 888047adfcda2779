"""lmms-eval's answer parsers (harness.scoring.lmms_parsers) on the spec's vectors and on awkward answers.

Expected values are written by hand from lmms-eval's task code (`lmms_eval/tasks/{longvideobench,mlvu,videomme,lvbench}/utils.py`, 0.7.3), not computed by the code under test.
"""
import pytest

from harness.scoring.lmms_parsers import (extract_mcq_answer, first_letter_regex, lmms_eval_letter, lmms_eval_raw,
                                  mlvu_before_paren, parse_multi_choice_response, strip_reasoning_tags)
from harness.records import Sample

ABCD = ["A", "B", "C", "D"]
RAND = None  # LongVideoBench: lmms-eval would pick a random letter; we record no letter

# response, new (>= 0.7.2, A-D), old (<= 0.7.1 Video-MME/LVBench regex), LVB, MLVU old (0.3.2-0.7.1)
SPEC_TABLE = [
    ("B", "B", "B", "B", "B"),
    ("B.", "B", "B", "B", "B."),
    ("(B)", "B", "B", "B", "B"),
    ("B) Candles", "B", "B", "B", "B"),
    ("B. Candles.", "B", "B", "B", "B. Candles."),
    ("The answer is B.", "B", "B", "B", "The answer is B."),
    ("Answer: D", "D", "A", "A", "Answer: D"),
    ("Candles", "C", "C", "C", "Candles"),
    ("I think the answer is B, not A", "A", "B", "B", "I think the answer is B, not A"),
    ("The answer is B. A is wrong", "A", "B", "B", "The answer is B. A is wrong"),
    ("A person is walking; the correct option is C", "A", "A", "A", "A person is walking; the correct option is C"),
    ("Best option: (A)", "A", "B", "A", "A"),
    ("c", "", "", RAND, "c"),
    ("E", "", "", "E", "E"),
]


@pytest.mark.parametrize("response,new,old,lvb,mlvu_old", SPEC_TABLE)
def test_spec_section_6_vectors(response, new, old, lvb, mlvu_old):
    assert extract_mcq_answer(response, ABCD) == new
    assert first_letter_regex(response) == old
    assert parse_multi_choice_response(response) == lvb
    assert mlvu_before_paren(response) == mlvu_old


# The ranked extractor (lmms-eval >= 0.7.2) with A-D. Reasoning for each in the comment.
MCQ_AWKWARD = [
    ("", ""),
    ("   ", ""),
    (None, ""),
    ("Best option: (C)", "C"),  # "(C)" (rank 6); "Best" does not start with a lone B
    ("(C) Berries", "C"),
    ("C", "C"),
    ("answer: b", ""),  # letters are matched case-sensitively
    ("The correct answer is (D).", "D"),  # phrase (rank 7)
    ("A. Apples.", "A"),  # starts with a lone A (rank 10)
    ("**B**", "B"),  # only the any-occurrence fallback matches
    ("Option B is correct because A is wrong", "A"),  # both "X " (rank 2): the later one wins
    ("D is correct", "D"),
    ("The answer is: C", "C"),
    ("ABCD", "D"),  # fallback only: the furthest right
    ("I cannot determine the answer from the video.", ""),
    ("B\n", "B"),
    ("Answer: (B) Candles", "B"),
    ("b) candles", ""),
    ("A and B", "A"),  # start (10) beats end (9)
    ("E", ""),
    ("The best answer is A. Apples", "A"),
    ("答案是B", "B"),  # Chinese answer phrase
    ("C.", "C"),
    ('"D"', "D"),
    ("Based on the video, the answer is C.", "C"),
    ("A) 1636 (B) 1366", "A"),
]


@pytest.mark.parametrize("response,expected", MCQ_AWKWARD)
def test_extract_mcq_answer_awkward(response, expected):
    assert extract_mcq_answer(response, ABCD) == expected


def test_extract_mcq_answer_default_choices_reach_h():
    assert extract_mcq_answer("F") == "F"
    assert extract_mcq_answer("F", ABCD) == ""


LVB_AWKWARD = [
    ("Based on the video, A", "B"),  # the first capital A-E: "B" of "Based"
    ("The answer is E", "E"),
    ("I don't know", RAND),
    ("", RAND),
    (None, RAND),
    ("Best option: (C)", "C"),  # "Best option:" is removed first
    ("The best option is D", "D"),
    ("This is a very long answer with more than ten words but no letter at all", RAND),
    ("D. A book", "D"),
    ("e", RAND),
]


@pytest.mark.parametrize("response,expected", LVB_AWKWARD)
def test_longvideobench_parser_awkward(response, expected):
    assert parse_multi_choice_response(response) == expected


OLD_AWKWARD = [
    ("The best option is C", "C"),  # not removed (missing-comma bug), but no capital A-D before C
    ("Best option: C", "B"),  # "Best option:" is not removed either: "B" of "Best"
    ("one two three four five six seven eight nine ten eleven", ""),  # > 10 words, no A-D
    ("The answer A", "A"),
    ("", ""),
]


@pytest.mark.parametrize("response,expected", OLD_AWKWARD)
def test_old_regex_awkward(response, expected):
    assert first_letter_regex(response) == expected


@pytest.mark.parametrize("response,expected", [
    ("A) zumba", "A"), (")A", ""), ("(B)", "B"), ("  C  ", "C"), ("B) x (C)", "B"), ("", "")])
def test_mlvu_old_parser(response, expected):
    assert mlvu_before_paren(response) == expected


def test_reasoning_tags_are_stripped_first():
    assert strip_reasoning_tags("<think>A or B?</think>C") == "C"
    assert strip_reasoning_tags("reasoning... </think> D") == "D"  # opening tag was in the prompt
    assert strip_reasoning_tags("<think>unclosed B") == "<think>unclosed B"
    assert strip_reasoning_tags("<analysis>x</analysis> (B)") == "(B)"
    assert strip_reasoning_tags("<THINK>A</THINK>B") == "<THINK>A</THINK>B"  # case-sensitive
    assert lmms_eval_raw("videomme", "<think>A or B?</think>C") == "C"
    assert lmms_eval_raw("longvideobench", "<think>E</think>B") == "B"


def test_letter_reduction_per_benchmark_and_version():
    assert lmms_eval_letter("mlvu", "B.") == "B"
    assert lmms_eval_letter("mlvu", "B.", "0.7.1") is None  # lmms-eval keeps "B.", which never equals "B"
    assert lmms_eval_letter("mlvu", "B) x", "0.7.1") == "B"
    assert lmms_eval_letter("videomme", "Answer: D", "0.7.1") == "A"
    assert lmms_eval_letter("lvbench", "Answer: D") == "D"
    assert lmms_eval_letter("longvideobench", "c") is None
    with pytest.raises(ValueError):
        lmms_eval_letter("nope", "A")
    with pytest.raises(ValueError):
        lmms_eval_letter("mlvu", "A", "0.5")


def _sample(n=4, answer=1):
    return Sample(id="q", video="v.mp4", question="Which?", options=("Apples", "Candles", "Berries", "Pears")[:n],
                  answer=answer)


def test_tasks_record_both_parsers_and_score_with_the_configured_one():
    from tasks.longvideobench import LongVideoBench
    from tasks.videomme import VideoMME
    s = _sample(answer=0)
    vm = VideoMME(video_root="/nonexistent")
    assert vm.parse_all(s, "I think the answer is B, not A") == {
        "lmms-eval": "A", "lmms-eval-0.7.1": "B", "strict": "B"}
    assert vm.parse_all(s, "Answer: D") == {"lmms-eval": "D", "lmms-eval-0.7.1": "A", "strict": "D"}
    p = vm.score(s, "I think the answer is B, not A")
    assert (p.parsed, p.correct, p.parse_status) == ("A", True, "ok")
    p = VideoMME(video_root="/nonexistent", parser="strict").score(s, "I think the answer is B, not A")
    assert (p.parsed, p.correct) == ("B", False)
    lvb = LongVideoBench(video_root="/nonexistent")
    p = lvb.score(s, "c")  # lmms-eval would guess at random here
    assert (p.parsed, p.correct, p.parse_status) == (None, False, "parse_failed")
    p = lvb.score(_sample(n=4, answer=3), "E")  # a letter beyond the options is parsed, and wrong
    assert (p.parsed, p.correct, p.parse_status) == ("E", False, "ok")
    assert lvb.parse_all(s, "Candles") == {"lmms-eval": "C", "lmms-eval-0.7.1": "C", "strict": "B"}
    assert lvb.score(s, None).parse_status == "parse_failed"
