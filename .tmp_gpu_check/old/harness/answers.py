"""The harness's own strict, deterministic answer extractor for multiple-choice responses.

This is not lmms-eval's parser (that one is reproduced separately, for parity runs). It never guesses: when no
rule finds a valid letter the result is ``Extraction(None, "none")``, which the caller records as
``parse_failed`` and scores wrong. Valid letters are the first ``len(options)`` capitals; a letter outside that
range (``E`` with four options) simply does not match, and the search goes on with the next match or rule.

Rules, in order; the first that yields a valid letter wins (``rule`` names it):

1. Normalise. None or empty gives ``none``. NFKC folds full-width forms (``（Ｂ）`` -> ``(B)``). Closed
   ``<think>...</think>`` blocks are removed; if a stray ``</think>`` remains (the opening tag was in the
   prompt) only the text after it is kept; an unclosed ``<think>`` drops everything after it (reasoning cut
   off before an answer is no answer). Markdown emphasis (``**``, ``__``, backticks) is removed, and
   surrounding whitespace stripped.
2. ``bare``: the whole response is one letter, optionally wrapped or punctuated: ``B``, ``(B)``, ``[B]``,
   ``B.``, ``B)``, ``B:``.
3. ``answer-phrase``: a phrase (answer, option, choice, choose, chose, select, pick; case-insensitive) then,
   after up to six of ``is``/``be``/``would``/``the``/``option``/``:``/``-``... and an optional ``(`` or ``[``, a
   capital letter: ``Answer: D``, ``The correct answer is (C)``, ``Best option: (A`` (lmms-eval's MLVU prompt
   primes "Best option: ("), ``Option B``, ``I choose B``. The first such match wins. The letter must be a
   capital: ``the answer is c`` is not an answer.
4. ``leading``: a letter marker opens the response: ``B. Candles``, ``B) Candles``, ``(B) Candles``,
   ``B: ...``, ``B - ...``. Punctuation is required, so ``A person is walking`` is English, not a marker.
5. ``paren``: the first ``(X)`` anywhere.
6. ``option-text``: the response (lowercased, a leading letter marker of any case and surrounding punctuation
   stripped) equals exactly one option's text (trailing periods of options ignored); otherwise, the response
   contains exactly one option's text as whole words. An option text found only inside another found option's
   text ("red" inside "red car") does not count as a second one.
7. ``standalone``: the first capital that stands alone (not in a word, not joined by a hyphen or apostrophe:
   ``T-shirt``, ``A-line``), e.g. ``I think B``. Two English words are single capitals, so they are skipped
   when a lowercase word follows: ``I`` (the pronoun, anywhere) and ``A`` at the start of a sentence (the
   article), unless the next word is a verb such as ``is``/``seems`` (``A is correct`` names option A).
8. Otherwise ``none``.
"""
from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Extraction:
    letter: str | None  # "A".."Z" within the valid range, or None
    rule: str  # "bare", "answer-phrase", "leading", "paren", "option-text", "standalone" or "none"


NO_ANSWER = Extraction(None, "none")


def option_letters(n_options: int) -> list[str]:
    """The letters of `n_options` options: A, B, C, ..."""
    if not 0 <= n_options <= 26:
        raise ValueError(f"between 0 and 26 options can be lettered, not {n_options}")
    return list(string.ascii_uppercase[:n_options])


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>.*", re.IGNORECASE | re.DOTALL)
_EMPHASIS = re.compile(r"\*\*|__|`")

# A letter is "alone" when no word character, hyphen or apostrophe touches it ("T-shirt", "B's", "Bob").
_AFTER_LETTER = r"(?![\w'’-])"

_BARE = re.compile(r"[(\[]?([A-Z])[)\]]?[.:;,!]?")
_FILLER = r"(?:[:=\-–—]|(?i:\b(?:is|are|be|would|should|will|must|likely|probably|the|letter|option|choice)\b))"
_PHRASE = re.compile(
    r"(?i:\b(?:answer|option|choice|choose|chose|select|pick)\b)"
    # At most six filler tokens: an unbounded run would make a looping response ("the option the option ...")
    # quadratic to scan.
    r"(?:\s*" + _FILLER + r"){0,6}"
    r"\s*[(\[]?([A-Z])" + _AFTER_LETTER
)
# Marker punctuation is required and must be followed by a space (or the end), so "A.M." is not a marker.
_LEADING_PATTERN = r"^[(\[]?([A-Z])(?:[)\]]|\s*[.:]|\s+[-–—])(?=\s|$)"
_LEADING = re.compile(_LEADING_PATTERN)
_LEADING_ANY_CASE = re.compile(_LEADING_PATTERN, re.IGNORECASE)
_PAREN = re.compile(r"\(([A-Z])\)")
_STANDALONE = re.compile(r"(?<![\w'’-])([A-Z])" + _AFTER_LETTER)
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
_SPACES = re.compile(r"\s+")

# After a sentence-initial "A" these make it a letter, not the article ("A is correct", "A seems right").
_LETTER_VERBS = frozenset({"is", "was", "seems", "looks", "appears", "would", "should", "fits", "matches"})
_SENTENCE_END = ".!?:;"
_TRIM = " .,;:!?\"'“”‘’()[]"


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _THINK_BLOCK.sub(" ", text)
    text = _THINK_CLOSE.split(text)[-1]
    text = _THINK_OPEN.sub("", text)
    return _EMPHASIS.sub("", text).strip()


def _first_valid(matches, valid: set[str]) -> str | None:
    return next((m.group(1) for m in matches if m.group(1) in valid), None)


def _plain(text: str) -> str:
    """Lowercased, single-spaced, surrounding punctuation removed: the form option texts are compared in."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip(_TRIM)


def _contains(haystack: str, needle: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", haystack) is not None


def _by_option_text(text: str, options: Sequence[str]) -> str | None:
    response = _plain(_LEADING_ANY_CASE.sub("", text, count=1))
    texts = [_plain(o) for o in options]
    letters = option_letters(len(options))
    exact = [i for i, t in enumerate(texts) if t and t == response]
    if len(exact) == 1:
        return letters[exact[0]]
    found = [i for i, t in enumerate(texts) if t and _contains(response, t)]
    # A shorter option found inside a longer found one is implied by it, not a rival answer.
    found = [i for i in found if not any(texts[j] != texts[i] and _contains(texts[j], texts[i]) for j in found)]
    return letters[found[0]] if len(found) == 1 else None


def _is_english_word(text: str, match: re.Match) -> bool:
    """Whether a lone capital reads as the pronoun "I" or the sentence-initial article "A"."""
    following = _NEXT_WORD.match(text, match.end())
    if following is None or match.group(1) not in ("A", "I"):
        return False
    if match.group(1) == "I":
        return True
    start = match.start()
    while start and text[start - 1].isspace():  # walk back over whitespace only, keeping the scan linear
        start -= 1
    at_sentence_start = start == 0 or text[start - 1] in _SENTENCE_END
    return at_sentence_start and following.group(1) not in _LETTER_VERBS


def extract_strict(text: str | None, options: Sequence[str]) -> Extraction:
    """The option letter a response names, by the module's rules; `Extraction(None, "none")` when none does."""
    if not text:
        return NO_ANSWER
    text = _normalise(text)
    if not text:
        return NO_ANSWER
    valid = set(option_letters(len(options)))

    bare = _BARE.fullmatch(text)
    if bare and bare.group(1) in valid:
        return Extraction(bare.group(1), "bare")
    letter = _first_valid(_PHRASE.finditer(text), valid)
    if letter:
        return Extraction(letter, "answer-phrase")
    leading = _LEADING.match(text)
    if leading and leading.group(1) in valid:
        return Extraction(leading.group(1), "leading")
    letter = _first_valid(_PAREN.finditer(text), valid)
    if letter:
        return Extraction(letter, "paren")
    letter = _by_option_text(text, options)
    if letter:
        return Extraction(letter, "option-text")
    standalone = (m for m in _STANDALONE.finditer(text) if not _is_english_word(text, m))
    letter = _first_valid(standalone, valid)
    if letter:
        return Extraction(letter, "standalone")
    return NO_ANSWER
