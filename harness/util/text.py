"""Short texts for messages: one line, and the first few of a list."""
from __future__ import annotations


def one_line(text) -> str:
    """A message on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(text).split())


def few(items, limit: int = 6) -> str:
    """The first `limit` items, comma-separated, and how many more there are."""
    items = list(items)
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(str(i) for i in items[:limit]) + more
