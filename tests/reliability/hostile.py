"""Hypothesis strategies for hostile input: spreadsheet cells, whole CSV and XLSX files, paths.

A cell is now and then a value the importer would accept (so the fuzzer reaches the code past
validation), a known-dangerous value (formula and HTML injection, control characters, byte
order marks, numbers too large for a database integer, time zone folders, extreme dates), or
arbitrary Unicode. A file is a table of such cells with a header that may lack, repeat or
invent columns, written as CSV (comma or semicolon, with or without BOM, any quoting and line
ending, now and then not UTF-8 or with bytes flipped) or as an XLSX workbook (cells of any
type; now and then a damaged one).
"""

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

# Values that have broken importers and exports elsewhere, or may break these.
NASTY = (
    "",
    " ",
    "\t",
    "\x00",
    "\ufeff",
    "\u200b",
    "\u2028",
    "\x1b[31mred\x1b[0m",
    "a\nb",
    "a\r\nb",
    '"',
    '""',
    "'",
    ";",
    ",",
    ";;;",
    ",,,",
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example","click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${7*7}",
    "$headline",
    "%s%s%n",
    "../../etc/passwd",
    "NULL",
    "None",
    "nan",
    "true",
    "1e309",
    "-1",
    "0",
    "99999999999999999999",
    "9" * 5000,
    "١٢",
    "İ",
    "ß",
    "ǅ",
    "Ⅻ",
    "🧬" * 3,
    "x" * 300,
    "Ø" * 255,
    "Europe",
    "America",
    "Etc",
    "x" * 400,
    "0001-01-01",
    "9999-12-31",
    "31.12.9999",
    "29.02.2027",
    "2026-02-30",
    "2026-11-26T00:00:00",
    "2026-11-26T25:00",
)


def cells(plausible: Sequence[str]) -> st.SearchStrategy[str]:
    """A cell: plausible for its column, known-nasty, or any text."""
    return st.one_of(
        st.sampled_from(plausible),
        st.sampled_from(NASTY),
        st.text(max_size=12),
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12),
    )


@dataclass(frozen=True)
class Spec:
    """A sheet's columns: required ones, optional ones, values each column accepts, and
    values that look right but are not."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    valid: dict[str, Sequence[str]]
    odd: dict[str, Sequence[str]]

    def plausible(self, column: str) -> list[str]:
        """Both kinds of value for `column`."""
        valid = [v.replace("{i}", "1") for v in self.valid.get(column, ("",))]
        return [*valid, *self.odd.get(column, ())]


Table = list[list[str]]


def _header(draw: st.DrawFn, spec: Spec) -> list[str]:
    """Mostly a header the importer accepts (required columns, some optional ones, in any
    order and case); otherwise one that lacks, repeats or invents columns."""
    if draw(st.integers(0, 9)) < 6:
        optional = draw(st.lists(st.sampled_from(spec.optional), unique=True))
        names = list(draw(st.permutations([*spec.required, *optional])))
        return [draw(st.sampled_from([n, n.upper(), n.title(), f" {n} "])) for n in names]
    names = list(draw(st.permutations([*spec.required, *spec.optional])))
    names = names[: draw(st.integers(0, len(names)))]
    if draw(st.booleans()):
        names.append(draw(st.sampled_from(["", "extra", "notes", *names[:1], "kind"])))
    return [
        draw(st.sampled_from([name, name.upper(), name.replace("_", " "), f"{name}\ufeff"]))
        for name in names
    ]


def _wrong(spec: Spec, column: str) -> st.SearchStrategy[str]:
    """A value that is not valid: half the time one that looks right (`odd`), else hostile."""
    odd = spec.odd.get(column, ())
    hostile = cells(spec.plausible(column))
    return st.one_of(st.sampled_from(odd), hostile) if odd else hostile


@st.composite
def tables(draw: st.DrawFn, spec: Spec, max_rows: int = 6) -> Table:
    """A header and rows of cells (maybe too few or too many): all valid, a few wrong, or
    mostly hostile. A valid value's `{i}` becomes the row's number, to keep keys unique."""
    header = _header(draw, spec)
    names = [h.strip().lower() for h in header]
    noise = draw(st.sampled_from([0, 5, 30, 100]))  # percent of cells that are not valid
    rows = []
    for i in range(draw(st.integers(0, max_rows))):
        row = [
            draw(_wrong(spec, name))
            if draw(st.integers(0, 99)) < noise
            else draw(st.sampled_from(spec.valid.get(name, ("",)))).replace("{i}", str(i))
            for name in names
        ]
        cut = draw(st.integers(0, 12)) if noise else 12
        if cut == 0:
            row = row[: draw(st.integers(0, len(row)))]
        elif cut == 1:
            row = [*row, draw(cells(("",)))]
        rows.append(row)
    return [header, *rows]


def csv_bytes(
    table: Table, delimiter: str, quoting: Literal[0, 1, 2, 3], newline: str, bom: bool
) -> bytes:
    """The table as a CSV file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=newline)
    writer.writerows(table)
    text = buffer.getvalue()
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8")


@st.composite
def csv_files(draw: st.DrawFn, table: Table) -> bytes:
    """The table as CSV as people save it, now and then damaged or in the wrong encoding."""
    data = csv_bytes(
        table,
        delimiter=draw(st.sampled_from([",", ";"])),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])),
        newline=draw(st.sampled_from(["\r\n", "\n", "\r"])),
        bom=draw(st.booleans()),
    )
    damage = draw(st.integers(0, 24))
    if damage == 0:  # saved as Latin-1, UTF-16, ...
        text = data.decode("utf-8")
        encoding = draw(st.sampled_from(["latin-1", "utf-16", "cp1257"]))
        return text.encode(encoding, errors="replace")
    if damage == 1:  # a few bytes flipped or cut
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        junk = draw(st.binary(max_size=4))
        return data[:position] + junk + data[position + draw(st.integers(0, 3)) :]
    if damage == 2:
        return draw(st.binary(max_size=200))
    return data


def _xlsx_value(text: str, kind: int) -> object:
    """A cell of another type now and then: numbers, dates, booleans, blanks."""
    if kind == 1 and re.fullmatch(r"-?[0-9]{1,14}", text.strip()):
        return int(text)
    if kind == 2:
        return datetime(2026, 4, 15, 9, 30)
    if kind == 3:
        return date(2026, 4, 15)
    if kind == 4:
        return None
    if kind == 5:
        return 3.5
    if kind == 6:
        return True
    return ILLEGAL_CHARACTERS_RE.sub("", text)  # characters a workbook cannot hold at all


def xlsx_bytes(sheets: dict[str, list[list[object]]]) -> bytes:
    """A workbook with the given sheets in order."""
    book = Workbook()
    first = True
    for name, rows in sheets.items():
        ws = book.active if first else book.create_sheet()
        assert ws is not None
        ws.title = name
        first = False
        for row in rows:
            ws.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@st.composite
def xlsx_tables(draw: st.DrawFn, table: Table) -> list[list[object]]:
    """The table's cells as a worksheet holds them (of any type, now and then)."""
    return [[_xlsx_value(text, draw(st.integers(0, 20))) for text in row] for row in table]


@st.composite
def sheet_files(draw: st.DrawFn, spec: Spec) -> tuple[str, bytes]:
    """(suffix, content): a table of `spec` as CSV or XLSX, or something else entirely."""
    table = draw(tables(spec))
    fmt = draw(st.sampled_from(["csv", "csv", "csv", "xlsx", "other"]))
    if fmt == "xlsx":
        if draw(st.integers(0, 9)) == 0:
            return ".xlsx", draw(st.binary(max_size=300))  # damaged workbook
        return ".xlsx", xlsx_bytes({"Sheet1": draw(xlsx_tables(table))})
    if fmt == "other":
        suffix = draw(st.sampled_from([".CSV", ".txt", ".xls", ".json", ""]))
        return suffix, draw(csv_files(table))
    return ".csv", draw(csv_files(table))
