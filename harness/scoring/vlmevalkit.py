"""VLMEvalKit's judge-free answer matching for its video multiple-choice datasets, written from its source
(open-compass/VLMEvalKit e8e78f05: `dataset/utils/videomme.py`, `utils/longvideobench.py`, `utils/mlvu.py`,
`utils/multiple_choice.py` and `utils/matching_util.py`), with no LLM judge (`--judge exact_matching`, and MLVU's
fallback when its default judge is not reachable).

* Video-MME / LongVideoBench: `regex_letter` first (strip; delete the answer prefixes in VLMEvalKit's list, where two
  missing commas glue "The best option isThe correct option is" and "Best answer:Best option:" into single
  entries; "" when more than 10 words remain and none of the letters appears; else the first of the letters
  anywhere: A-D for Video-MME, A-E for LongVideoBench). When that gives "", option matching (`can_infer`) runs over
  the choices VLMEvalKit finds in the *question* field (`question_choices`: the lines after the first that contain
  "A.", "B.", ...), which for these datasets holds no options, so the answer ends as "Z" (wrong).
* MLVU: correct when the character before the first ")" of the answer (or the whole answer without a ")") equals
  the gold letter; otherwise `can_infer` over the candidate texts, compared with the gold letter.

`can_infer` = `can_infer_option` (a refusal phrase -> "Z"; punctuation `.()[],:;!*#{}` to spaces, split; exactly one
choice letter among the tokens -> that letter if it is among the last 5 tokens; no choice letter but a "Z" token
-> "Z"; else "answer is X" / "correct answer is **X**" for X in A-D that is a choice), else `can_infer_text` (the
answer lower-cased, at most twice the total length of the choice texts, containing exactly one choice text).
"""
from __future__ import annotations

import re
import string

# VLMEvalKit's list as Python reads it: two missing commas join neighbours into one string
ANSWER_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                   "The best option isThe correct option is", "Best answer:Best option:", "Answer:", "Option:")
REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
            "I'm sorry, but without the image provided", "Cannot determine the answer")
API_FAILURE = "Failed to obtain answer via API"
_PUNCT = ".()[],:;!*#{}"
_VERBOSE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
LETTERS = {"videomme": "ABCD", "longvideobench": "ABCDE", "mlvu": "ABCD"}
NO_ANSWER = "Z"  # VLMEvalKit's letter for "no option could be matched" (scored wrong)


def regex_letter(text: str, letters: str = "ABCD") -> str:
    """`extract_characters_regex`: the first of `letters` after deleting the answer prefixes, or ""."""
    s = text.strip()
    for prefix in ANSWER_PREFIXES:
        s = s.replace(prefix, "")
    found = re.search(f"[{letters}]", s)  # (its "more than 10 words and no letter" test gives "" the same way)
    return found.group(0) if found else ""


def can_infer_option(answer: str, choices: dict) -> str | bool:
    if API_FAILURE in answer:
        return False
    if any(r in answer for r in REFUSALS):
        return NO_ANSWER
    spaced = answer
    for c in _PUNCT:
        spaced = spaced.replace(c, " ")
    tokens = spaced.split()
    hits = [c for c in choices if c in tokens]
    if len(hits) == 1:
        for c in choices:  # the first choice (in key order) that is a token among the last five
            if c in tokens and tokens.index(c) > len(tokens) - 5:
                return c
    elif not hits and ("Z" in tokens) + ("" in tokens) == 1:
        return NO_ANSWER
    m = _VERBOSE.search(answer or "")
    if m and m.group(1).upper() in choices:
        return m.group(1).upper()
    return False


def can_infer_text(answer: str, choices: dict) -> str | bool:
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return False
    found = [k for k, v in choices.items() if str(v).lower() in answer]
    return found[0] if len(found) == 1 else False


def can_infer(answer, choices: dict) -> str | bool:
    """The option letter VLMEvalKit infers from an answer without a judge (False: none)."""
    answer = str(answer)
    return can_infer_option(answer, choices) or can_infer_text(answer, dict(choices))


def question_choices(question: str) -> dict:
    """`extract_option`'s choices: each line after the first holding "A." (then "B.", ...) gives the text after it,
    stripped of ". \\n"."""
    out = {}
    for i, line in enumerate(question.split("\n")[1:]):
        mark = chr(ord("A") + i) + "."
        at = line.find(mark)
        if at >= 0:
            out[chr(ord("A") + i)] = line[at + len(mark):].strip(". \n")
    return out


def matched_choices(choices: dict) -> dict:
    """Choices in the key order `build_choices` reads them (A..Z), so the first hit is VLMEvalKit's."""
    return {c: choices[c] for c in string.ascii_uppercase if c in choices and choices[c] is not None}


def mcq_letter(benchmark: str, text: str | None, question: str) -> str | None:
    """Video-MME / LongVideoBench: the letter VLMEvalKit scores ("Z" when nothing matched; None: no answer)."""
    if text is None:
        return None
    letter = regex_letter(str(text), LETTERS[benchmark])
    if letter:
        return letter
    return can_infer(str(text), matched_choices(question_choices(question))) or NO_ANSWER


def mlvu_letter(text: str | None, candidates, gold: int | None) -> tuple[str | None, bool]:
    """MLVU: (letter, right). VLMEvalKit knows the gold as a text: its ")"-check compares with the letter of the
    *last* candidate equal to that text, its `can_infer` fallback with the *first* (they differ only where two
    candidates are the same text). The letter is the ")"-check's when it matches, else `can_infer`'s over the
    candidate texts ("Z": none). (None, False): no answer."""
    if text is None:
        return None, False
    text = str(text)
    same = [i for i, c in enumerate(candidates) if gold is not None and c == candidates[gold]]
    head = text
    if ")" in head:
        at = head.index(")")
        head = head[at - 1:at]
    if same and head == chr(ord("A") + same[-1]):
        return head, True
    choices = {chr(ord("A") + i): c for i, c in enumerate(candidates)}
    letter = can_infer(text, choices) or NO_ANSWER
    return letter, bool(same) and letter == chr(ord("A") + same[0])
