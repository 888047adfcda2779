"""A one-sheet .xlsx writer (Office Open XML: a zip of XML parts) for the VLMEvalKit prediction file, so the export
needs neither openpyxl nor xlsxwriter in the main install. Strings are inline strings, numbers plain values, None an
empty cell (what `pandas.read_excel` reads back as NaN). Text that a spreadsheet cannot hold (XML-illegal control
characters, cells over 32767 characters) is refused, never altered.
"""
from __future__ import annotations

import io
import re
import zipfile
from xml.sax.saxutils import escape

from harness.errors import HarnessError

MAX_CELL = 32767  # Excel's limit of characters in one cell
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip member times: the same table gives the same bytes

_PARTS = {
    "[Content_Types].xml":
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '</Types>',
    "_rels/.rels":
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml":
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels":
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
}


def column_name(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def _cell(ref: str, value, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise HarnessError(f"{where}: {value} cannot be written to a spreadsheet cell")
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    text = str(value)
    if _ILLEGAL.search(text):
        raise HarnessError(f"{where}: the text holds a control character a spreadsheet cannot store")
    if len(text) > MAX_CELL:
        raise HarnessError(f"{where}: {len(text)} characters, over a spreadsheet cell's {MAX_CELL}")
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(text)}</t></is></c>'


def xlsx_bytes(columns: list[str], rows: list[dict], where=lambda i, col: f"row {i}, column {col}") -> bytes:
    """The workbook: a header row of `columns`, then one row per dict (missing keys empty)."""
    lines = []
    for r, values in enumerate([dict(zip(columns, columns)), *rows]):
        cells = "".join(_cell(f"{column_name(c)}{r + 1}", values.get(col), where(r - 1, col))
                        for c, col in enumerate(columns))
        lines.append(f'<row r="{r + 1}">{cells}</row>')
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
             '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
             + "".join(lines) + "</sheetData></worksheet>")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in [*_PARTS.items(), ("xl/worksheets/sheet1.xml", sheet)]:
            z.writestr(zipfile.ZipInfo(name, _FIXED_TIME), text.encode("utf-8"), zipfile.ZIP_DEFLATED)
    return buf.getvalue()
