"""Annotation record schemas: each benchmark format is data (a `Schema`), and this module is the one checker.

A `Schema` lists the fields a record of one format must or may have, each with a kind (`KINDS`: what the value
must be), names the field that identifies a record in messages, and says how the gold answer is given (an index or
a letter of the options, or the option's text) and whether the benchmark may hide it. A benchmark's `to_samples`
calls `schema.check(record)` on the raw record, then `schema.options(...)` on the option texts it reads (2 to 26
strings) and `schema.gold(...)` for the gold index. What is wrong is raised as a `HarnessError` of one short line
("correct_choice 7 is not an index of its 4 candidates"); `BenchmarkTask.load_samples` prefixes the annotation
file (or Hugging Face dataset) and the record.

Video paths from the data go through `safe_relpath`: relative paths inside the video root only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath

from harness.errors import HarnessError

MIN_OPTIONS, MAX_OPTIONS = 2, 26  # a multiple-choice question has at least two options, lettered A..Z at most


def safe_relpath(relpath) -> PurePosixPath:
    """A path from annotation data as a relative path that cannot leave its root; anything else is refused."""
    text = str(relpath) if relpath is not None else ""
    if not text.strip() or "\x00" in text:
        raise HarnessError(f"empty or invalid video path {relpath!r} in the annotations")
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(text).drive or PureWindowsPath(text).is_absolute():
        raise HarnessError(f"absolute video path {text!r} in the annotations is refused; paths must be relative "
                           f"to the video root")
    if ".." in posix.parts:
        raise HarnessError(f"video path {text!r} in the annotations leaves the video root ('..') and is refused")
    return posix


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _is_path(v) -> bool:
    if not isinstance(v, str):
        return False
    safe_relpath(v)  # its own message: absolute, '..', empty
    return True


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# kind -> (what a value must be, the test); a test may raise HarnessError with a message of its own
KINDS = {
    "text": ("a string", lambda v: isinstance(v, str)),
    "name": ("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip())),
    "id": ("a non-empty string or an integer", lambda v: _is_int(v) or (isinstance(v, str) and bool(v.strip()))),
    "int": ("an integer", _is_int),
    "positive": ("a positive number", lambda v: _is_number(v) and v > 0),
    "options": (f"a list of {MIN_OPTIONS} to {MAX_OPTIONS} strings",
                lambda v: _strings(v) and MIN_OPTIONS <= len(v) <= MAX_OPTIONS),
    "strings": ("a list of strings", _strings),
    "labels": ("a string or a list of strings", lambda v: isinstance(v, str) or _strings(v)),
    "path": ("a relative video path", _is_path),
    "object": ("an object", lambda v: isinstance(v, dict)),
    "records": ("a non-empty list of objects", lambda v: isinstance(v, list) and bool(v)
                and all(isinstance(x, dict) for x in v)),
    "index": ("an option index", _is_int),
    "letter": ("an option letter", lambda v: isinstance(v, str)),
    "gold": ("an option letter or an option's text", lambda v: isinstance(v, str)),
}
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number"}


def describe(value) -> str:
    """A value as a message shows it: its JSON type and a short repr ("a string ('not a list')")."""
    if value is None:
        return "null"
    kind = next((name for t, name in _JSON_TYPES.items() if isinstance(value, t)), type(value).__name__)
    return f"{kind} ({shown(value)})"


def shown(value) -> str:
    """A value's repr, cut to 40 characters (one line: repr escapes newlines)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Schema:
    """One annotation format: `fields` maps each field to its kind; a kind ending in "?" may be absent or null.
    `id` names the field that identifies a record in messages; `gold` is the gold answer's field and `gold_kind`
    its kind ("index", "letter" or "gold": a letter or an option's text); `gold_hidden`: the benchmark may leave
    it out (the sample is then unscored). `options_name` is what the options are called in messages.
    `one_of`: groups of fields of which at least one must be given; `nested`: the schema of a field that holds an
    object, or of each record of a field that holds a list of them (LVBench's `qa`)."""

    format: str
    fields: dict = field(default_factory=dict)
    id: str = "id"
    gold: str = "answer"
    gold_kind: str = "letter"
    gold_hidden: bool = False
    options_name: str = "options"
    one_of: tuple = ()
    nested: dict = field(default_factory=dict)  # field -> the Schema of its object (or of each of its records)

    def __post_init__(self):
        for name, kind in self.fields.items():
            if kind.rstrip("?") not in KINDS:
                raise ValueError(f"schema {self.format}: field {name} has an unknown kind {kind!r}")

    def check(self, record: dict) -> None:
        """Every field of the record against its kind; the first problem is a HarnessError of one line."""
        if not isinstance(record, dict):
            raise HarnessError(f"is {describe(record)}, not an object ({self.format})")
        for name, kind in self.fields.items():
            optional = kind.endswith("?")
            value = record.get(name)
            if value is None:
                if not optional:
                    state = "null" if name in record else "missing"
                    raise HarnessError(f"{name} is {state}; it must be {KINDS[kind][0]} ({self.expected()})")
                continue
            what, test = KINDS[kind.rstrip("?")]
            try:
                ok = test(value)
            except HarnessError as e:
                raise HarnessError(f"{name}: {e}") from None
            if not ok:
                raise HarnessError(f"{name} is {describe(value)}, not {what}")
            if name in self.nested:
                self._check_nested(name, value)
        for group in self.one_of:
            if all(record.get(name) in (None, "") for name in group):
                raise HarnessError(f"needs one of {', '.join(group)} ({self.expected()})")

    def _check_nested(self, name: str, value) -> None:
        """An object field against its own schema, or each record of a list field ("qa 3 (uid '55'): ...")."""
        inner = self.nested[name]
        items = {name: value} if isinstance(value, dict) else {
            f"{name} {k}{label(item, (inner,))}": item for k, item in enumerate(value)}
        for where, item in items.items():
            try:
                inner.check(item)
            except HarnessError as e:
                raise HarnessError(f"{where}: {e}") from None

    def expected(self) -> str:
        required = [name for name, kind in self.fields.items() if not kind.endswith("?")]
        return f"expected format: {self.format} with {', '.join(required)}"

    def options(self, options) -> list[str]:
        """The option texts a task read from the record, checked: 2 to 26 strings."""
        options = list(options)
        if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            plural = "" if len(options) == 1 else "s"
            raise HarnessError(f"{self.options_name} has {len(options)} option{plural}; a question needs "
                               f"{MIN_OPTIONS} to {MAX_OPTIONS}")
        bad = next((o for o in options if not isinstance(o, str)), None)
        if bad is not None:
            raise HarnessError(f"{self.options_name} holds {describe(bad)}; options must be strings")
        return options

    def gold_index(self, record: dict, options: list[str]) -> int | None:
        """The gold answer of the record as an index of `options` (None where the benchmark hides it)."""
        value = record.get(self.gold)
        n = len(options)
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.gold_hidden:
                return None
            state = "empty" if value is not None else "null" if self.gold in record else "missing"
            raise HarnessError(f"{self.gold} is {state}; this benchmark gives "
                               f"the gold answer of every question")
        if self.gold_kind == "index":
            if _is_int(value) and 0 <= value < n:
                return value
            raise HarnessError(f"{self.gold} {shown(value)} is not an index of its {n} {self.options_name}")
        if self.gold_kind == "gold" and isinstance(value, str) and len(value.strip()) > 1 and value in options:
            return options.index(value)  # the option's text (VLMEvalKit-style files)
        letter = value.strip().upper() if isinstance(value, str) else ""
        if len(letter) == 1 and "A" <= letter < chr(ord("A") + n):
            return ord(letter) - ord("A")
        raise HarnessError(f"{self.gold} {shown(value)} is not one of the letters A-{chr(ord('A') + n - 1)} of its "
                           f"{n} {self.options_name}")


def label(record, schemas) -> str:
    """How messages name a record: " (id '86CxyhFV9MI_0')" from those of the schemas' id fields it has in a
    readable form (" (key 'abc', uid '7')"), else ""."""
    if not isinstance(record, dict):
        return ""
    names = [f"{name} {shown(record[name])}" for name in dict.fromkeys(s.id for s in schemas)
             if KINDS["id"][1](record.get(name))]
    return f" ({', '.join(names)})" if names else ""
