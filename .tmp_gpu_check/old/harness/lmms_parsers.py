"""lmms-eval's answer parsers, reimplemented from their specification (for comparability with published numbers).

These are not the harness's parser (that is `harness.answers.extract_strict`). Each function returns exactly what
lmms-eval stores as the prediction, except where noted. Sources: lmms-eval 0.7.3 (PyPI), and for the
``0.7.1`` variants the task code before the 0.7.2 extractor change (docs/reference/benchmarks.md sections 2.3, 3.3,
4.3, 5.3 and the test vectors of section 6).

* `extract_mcq_answer` (0.7.2 and later; MLVU, Video-MME, LVBench with choices A-D): a ranked matcher. Every
  choice letter found in one of these forms becomes a candidate, with a rank and a position:
  starts-the-text 10, ends-the-text 9, after an answer phrase 7, ``(X)`` 6, ``X.`` 5, ``X:`` 4, ``X)`` 3,
  ``X `` 2; only when there is none of these, any occurrence 0. The highest rank wins, and within a rank the
  candidate furthest right. "" when no letter occurs. Letters are matched case-sensitively.
* `parse_multi_choice_response` (LongVideoBench, every version): removes answer prefixes, then takes the first
  capital A-E anywhere. Where lmms-eval picks ``random.choice`` of the valid letters (no A-E in the text), this
  returns None: the harness records a parse failure instead of a guess.
* `first_letter_regex` (0.7.1 and earlier; Video-MME, LVBench, MLVU before 0.3.2): removes answer prefixes (with
  the original's missing-comma bug: "The best option is" and "Best option:" are *not* removed), returns "" for more
  than ten words without A-D, else the first capital A-D.
* `mlvu_before_paren` (MLVU, 0.3.2 to 0.7.1): the character before the first ")", else the whole stripped
  response (so "A." is not "A").

`lmms_eval_letter(benchmark, text, version)` picks the right one and reduces the result to an option letter or
None. lmms-eval strips reasoning blocks (`<think>`, `<analysis>`) before scoring by default (its
``--reasoning_tags``); `strip_reasoning_tags` does the same and every parser here is applied after it.
"""
from __future__ import annotations

import re

VERSIONS = ("0.7.3", "0.7.1")
BENCHMARKS = ("longvideobench", "mlvu", "videomme", "lvbench")
DEFAULT_REASONING_TAGS = (("<think>", "</think>"), ("<analysis>", "</analysis>"))

# ---------------------------------------------------------------------------------------------------------------
# reasoning tags (lmms-eval's default --reasoning_tags, applied to every response before process_results)


def strip_reasoning_tags(text: str, tag_pairs=DEFAULT_REASONING_TAGS) -> str:
    """Remove closed tag blocks (case-sensitive); a lone closing tag keeps only what follows its last occurrence;
    an unclosed opening tag is left as it is. The result is stripped."""
    result = text
    for start_tag, end_tag in tag_pairs:
        while start_tag in result and end_tag in result:
            start = result.find(start_tag)
            end = result.find(end_tag, start)
            if end == -1:  # the closing tag only occurs before the opening one
                break
            result = result[:start] + result[end + len(end_tag):]
        if end_tag in result and start_tag not in result:
            result = result.rsplit(end_tag, 1)[-1]
    return result.strip()


# ---------------------------------------------------------------------------------------------------------------
# the ranked extractor of lmms-eval >= 0.7.2

_RANK = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
         "space": 2, "fallback": 0}
ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select", "i pick",
    "my answer is", "my choice is",
    "옵션", "정답은", "답은", "답:",  # Korean
    "答案是", "答案为", "选",  # Chinese
    "答えは",  # Japanese
)
_EDGE_CHARS = (",", ".", "!", "?", ";", ":", "'", '"')  # stripped one kind after another, in this order
DEFAULT_CHOICES = tuple("ABCDEFGH")


def extract_mcq_answer(response: str | None, choices=None) -> str:
    """The letter lmms-eval >= 0.7.2 extracts from `response`, or "" (see the module docstring)."""
    if not response or not response.strip():
        return ""
    letters = list(choices or DEFAULT_CHOICES)
    text = response.strip()
    for ch in _EDGE_CHARS:
        text = text.strip(ch)
    text = f" {text} "
    found: list[tuple[str, int, str]] = []  # (letter, position, form)
    for form, template in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"),
                           ("right_paren", "{})"), ("space", "{} ")):
        for ch in letters:
            pattern = template.format(ch)
            if pattern in text:
                found.append((ch, text.rfind(pattern), form))
    lower = text.lower()
    for phrase in ANSWER_PHRASES:
        at = lower.find(phrase)
        if at != -1:  # every letter occurring anywhere after the phrase's first occurrence
            for ch in letters:
                pos = text.find(ch, at + len(phrase))
                if pos != -1:
                    found.append((ch, pos, "phrase"))
    core = text.strip()
    for ch in letters:
        if core.startswith(ch) and (len(core) == 1 or not core[1].isalpha()):
            found.append((ch, 0, "start"))
    for ch in letters:
        if core.endswith(ch) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((ch, len(text) - 1, "end"))
    if not found:
        found = [(ch, text.rfind(ch), "fallback") for ch in letters if ch in text]
    if not found:
        return ""
    # the highest rank wins, then the furthest right; a full tie keeps the letter listed first
    return max(found, key=lambda c: (_RANK[c[2]], c[1]))[0]


# ---------------------------------------------------------------------------------------------------------------
# LongVideoBench (unchanged across versions)

LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
                "The correct option is", "Best answer:", "Best option:")


def parse_multi_choice_response(response: str | None) -> str | None:
    """LongVideoBench's parser without its random fallback: the first capital A-E after removing the prefixes;
    None where lmms-eval would return ``random.choice(all_choices)``."""
    s = (response or "").strip()
    for prefix in LVB_PREFIXES:
        s = s.replace(prefix, "")
    match = re.search(r"[ABCDE]", s)
    return match[0] if match else None  # > 10 words without A-E is the same "no letter" case


# ---------------------------------------------------------------------------------------------------------------
# lmms-eval <= 0.7.1

# The original list lacks two commas, so Python glued these into two strings that rarely occur.
OLD_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                "The best option is" "The correct option is", "Best answer:" "Best option:")


def first_letter_regex(response: str | None) -> str:
    """Video-MME / LVBench (and MLVU <= 0.3.1) extraction of lmms-eval <= 0.7.1: the first capital A-D, or ""."""
    s = (response or "").strip()
    for prefix in OLD_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCD]", s):
        return ""
    match = re.search(r"[ABCD]", s)
    return match[0] if match else ""


def mlvu_before_paren(response: str | None) -> str:
    """MLVU extraction of lmms-eval 0.3.2 to 0.7.1: the character before the first ")" (empty if ")" comes
    first), else the whole stripped response."""
    s = (response or "").strip()
    if ")" in s:
        i = s.index(")")
        return s[i - 1:i]
    return s


# ---------------------------------------------------------------------------------------------------------------


def lmms_eval_raw(benchmark: str, response: str | None, version: str = "0.7.3") -> str | None:
    """Exactly what lmms-eval records as the prediction (after stripping reasoning tags), None for LVB's random."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")
    if version not in VERSIONS:
        raise ValueError(f"unknown lmms-eval parser version {version!r} (known: {', '.join(VERSIONS)})")
    text = strip_reasoning_tags(response or "")
    if benchmark == "longvideobench":
        return parse_multi_choice_response(text)
    if version == "0.7.3":
        return extract_mcq_answer(text, choices=["A", "B", "C", "D"])
    return mlvu_before_paren(text) if benchmark == "mlvu" else first_letter_regex(text)


def lmms_eval_letter(benchmark: str, response: str | None, version: str = "0.7.3") -> str | None:
    """lmms-eval's prediction reduced to a capital letter, or None. A non-letter prediction (MLVU <= 0.7.1 keeps
    e.g. "B." or the whole response) can never equal the gold letter, so scoring it as None changes no score."""
    raw = lmms_eval_raw(benchmark, response, version)
    return raw if raw is not None and len(raw) == 1 and "A" <= raw <= "Z" else None
