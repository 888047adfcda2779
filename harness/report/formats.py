"""The table writers of `harness table` and `harness compare`: Markdown, LaTeX (booktabs), CSV, JSON records and
rich text. Each takes column names and cells already formatted as strings, plus one alignment letter per column
("l" text, "r" numbers), and has one escaping rule, so a label prints the same in every table."""
from __future__ import annotations

import io
import json
import math

# LaTeX specials in text mode; `<` and `>` print as other glyphs in the default font encoding, so they go to math
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"$<$", ">": r"$>$"}


def missing(v) -> bool:
    """None or NaN: printed as '-'."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def markdown(cols, cells, align: str) -> list[str]:
    """A Markdown table: header, alignment row (`---` left, `---:` right), one line per row."""
    esc = lambda s: str(s).replace("|", r"\|")  # noqa: E731  a '|' in a label would split the cell
    return ["| " + " | ".join(map(esc, cols)) + " |",
            "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
            *("| " + " | ".join(map(esc, r)) + " |" for r in cells)]


def latex_escape(s) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(s))


def latex(cols, cells, align: str) -> list[str]:
    """A booktabs tabular (needs \\usepackage{booktabs})."""
    return [r"\begin{tabular}{" + align + "}", r"\toprule", " & ".join(map(latex_escape, cols)) + r" \\",
            r"\midrule", *(" & ".join(map(latex_escape, r)) + r" \\" for r in cells), r"\bottomrule",
            r"\end{tabular}"]


def csv(frame) -> str:
    """Every column of a pandas frame, unformatted (full precision), without the index."""
    return frame.to_csv(index=False)


def records(frame) -> list[dict]:
    """A pandas frame as JSON-ready records: NaN -> null, numpy scalars -> plain JSON."""
    return json.loads(frame.to_json(orient="records"))


def rich(cols, cells, align: str, title: str | None = None, caption: str | None = None, width: int = 100) -> str:
    """A rich text table at most `width` characters wide. Where the natural widths do not fit, headers wrap first
    (between words, never inside one: the widest saving first), then text cells wrap onto more lines; nothing is
    cut with an ellipsis."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    cols = [str(c) for c in cols]
    whole = [max([len(r[i]) for r in cells] + [1]) for i in range(len(cols))]
    word = [max(len(w) for w in c.split() or [""]) for c in cols]
    widths = [max(w, len(c)) for w, c in zip(whole, cols)]
    fixed = [None] * len(cols)
    # rich's own squeeze narrows the widest columns, labels included; wrapping the headers first keeps them whole
    for i in sorted(range(len(cols)), key=lambda i: max(whole[i], word[i]) - widths[i]):
        if sum(widths) + 3 * len(cols) + 1 <= width:
            break
        if max(whole[i], word[i]) < widths[i]:
            widths[i] = fixed[i] = max(whole[i], word[i])
    table = Table(title=title, caption=caption)
    for c, a, w in zip(cols, align, fixed):
        table.add_column(escape(c), justify="left" if a == "l" else "right", overflow="fold", width=w)
    for r in cells:
        table.add_row(*map(escape, r))
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(table)
    return buf.getvalue()
