"""The strict extractor on real-looking responses; every expected result was worked out by hand from the rules."""
import dataclasses

import pytest

from harness.scoring.answers import Extraction, extract_strict, option_letters

FOUR = ("Apples.", "Candles.", "Dancing.", "Fishing.")  # A B C D
FIVE = FOUR + ("Singing.",)  # E is valid here
TEN = tuple(f"Scene {n}" for n in range(1, 11))  # A..J, so "I" is a valid letter
CARS = ("red", "red car", "blue car", "green")
LONG_TEXT = (
    "The video opens with a wide shot of a kitchen. Someone walks to the table, lights a match and then "
    "leaves the room while soft music plays in the background for several minutes."
)

CASES = [
    # rule 2: the whole response is one letter
    ("B", FOUR, "B", "bare"),
    ("B.", FOUR, "B", "bare"),
    ("(B)", FOUR, "B", "bare"),
    ("B)", FOUR, "B", "bare"),
    ("[B]", FOUR, "B", "bare"),
    ("B:", FOUR, "B", "bare"),
    ("D)", FOUR, "D", "bare"),
    ("  C \n", FOUR, "C", "bare"),
    ("**C**", FOUR, "C", "bare"),
    ("`D`", FOUR, "D", "bare"),
    ("（Ｃ）", FOUR, "C", "bare"),  # full-width forms from a CJK-tuned model
    ("<think>maybe A</think> C", FOUR, "C", "bare"),
    ("<think>\nA or B? Probably A.\n</think>\n\nB", FOUR, "B", "bare"),
    ("Reasoning about the clip...</think>D", FOUR, "D", "bare"),  # opening tag was in the prompt
    ("E", FIVE, "E", "bare"),
    # rule 3: an answer phrase followed by a capital
    ("The answer is B.", FOUR, "B", "answer-phrase"),
    ("Answer: D", FOUR, "D", "answer-phrase"),
    ("Best option: (A)", FOUR, "A", "answer-phrase"),
    ("Best option: (C", FOUR, "C", "answer-phrase"),  # lmms-eval's MLVU prompt leaves the "(" open
    ("The correct answer is (C)", FOUR, "C", "answer-phrase"),
    ("the correct option is C", FOUR, "C", "answer-phrase"),
    ("Option D is correct.", FOUR, "D", "answer-phrase"),
    ("Option B", FOUR, "B", "answer-phrase"),
    ("I choose B", FOUR, "B", "answer-phrase"),
    ("Answer:\nB", FOUR, "B", "answer-phrase"),
    ("The best answer is: C", FOUR, "C", "answer-phrase"),
    ("The answer is option C", FOUR, "C", "answer-phrase"),
    ("**Answer:** `A`", FOUR, "A", "answer-phrase"),
    ("A person is walking; the correct option is C", FOUR, "C", "answer-phrase"),
    ("The answer is B. A is wrong", FOUR, "B", "answer-phrase"),
    ("I think the answer is B, not A", FOUR, "B", "answer-phrase"),
    ("Answer: A because the apples are on the table", FOUR, "A", "answer-phrase"),
    ("Answer: B\nExplanation: the candles (A) are lit", FOUR, "B", "answer-phrase"),
    ("A. Apples? No, the answer is C", FOUR, "C", "answer-phrase"),  # rule 3 comes before rule 4
    # rule 4: a leading letter marker
    ("B) Candles", FOUR, "B", "leading"),
    ("B. Candles.", FOUR, "B", "leading"),
    ("(D) Fishing", FOUR, "D", "leading"),
    ("(B) Candles", FOUR, "B", "leading"),
    ("A - Apples", FOUR, "A", "leading"),
    ("C: Fishing, because the man holds a rod.", FOUR, "C", "leading"),  # the letter beats the text
    ("B.\nThe candles are lit near the end.", FOUR, "B", "leading"),
    ("E. Singing", FIVE, "E", "leading"),
    # rule 5: a parenthesised letter anywhere
    ("The man lights (B) before dinner.", FOUR, "B", "paren"),
    ("Between (E) and (C), I'd go with (C)", FOUR, "C", "paren"),  # (E) is out of range
    # rule 6: option text
    ("Candles", FOUR, "B", "option-text"),
    ("candles.", FOUR, "B", "option-text"),
    ("It is Candles.", FOUR, "B", "option-text"),
    ("The answer is Candles.", FOUR, "B", "option-text"),  # "C" of "Candles" is not a letter
    ("d. fishing", FOUR, "D", "option-text"),  # a lowercase marker is no letter, but the text names D
    ("It is a red car.", CARS, "B", "option-text"),  # "red" inside "red car" is no rival
    # rule 7: a standalone capital
    ("I think B", FOUR, "B", "standalone"),
    ("I think B", TEN, "B", "standalone"),  # "I" is valid here but is the pronoun
    ("A is the right choice.", FOUR, "A", "standalone"),
    ("Clearly C fits best", FOUR, "C", "standalone"),
    ("Looking at the final minutes, I would say D.", FOUR, "D", "standalone"),
    # rule 8: nothing names an option
    ("", FOUR, None, "none"),
    (None, FOUR, None, "none"),
    ("   \n\t ", FOUR, None, "none"),
    ("c", FOUR, None, "none"),  # a lowercase letter alone is not an answer
    ("The answer is c", FOUR, None, "none"),
    ("E", FOUR, None, "none"),  # out of range
    ("Final answer: E", FOUR, None, "none"),
    ("I don't know", FOUR, None, "none"),
    ("I don't know", TEN, None, "none"),
    ("A person is walking in the park.", FOUR, None, "none"),
    ("She wears an A-line skirt.", FOUR, None, "none"),
    ("He is fishing or maybe dancing.", FOUR, None, "none"),  # two option texts
    ("Apples and Candles", FOUR, None, "none"),
    ("yes", ("Yes", "No", "Yes"), None, "none"),  # the text names two options
    ("🤔🤷 ¯\\_(ツ)_/¯ ✨", FOUR, None, "none"),
    (LONG_TEXT, FOUR, None, "none"),
    ("<think>The candles appear at the end, so the answer is C", FOUR, None, "none"),  # cut off mid-thought
    ("B", (), None, "none"),  # no options, no valid letters
]


@pytest.mark.parametrize("response, options, letter, rule", CASES)
def test_extract_strict(response, options, letter, rule):
    assert extract_strict(response, options) == Extraction(letter, rule)


def test_extraction_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        extract_strict("B", FOUR).letter = "C"


def test_letters_stay_in_range():
    for response, options, _, _ in CASES:
        letter = extract_strict(response, options).letter
        assert letter is None or letter in option_letters(len(options))


def test_option_letters():
    assert option_letters(4) == ["A", "B", "C", "D"]
    assert option_letters(0) == []
    assert option_letters(26)[-1] == "Z"
    with pytest.raises(ValueError):
        option_letters(27)
    with pytest.raises(ValueError):
        option_letters(-1)


def test_looping_response_is_parsed():
    """Generation loops are common near max_new_tokens; the answer after one must still be found."""
    response = "the option the option " * 3000 + "Answer: B"
    assert extract_strict(response, FOUR) == Extraction("B", "answer-phrase")
