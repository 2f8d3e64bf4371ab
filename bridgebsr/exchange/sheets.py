"""Reading CSV and XLSX files into numbered rows keyed by lower-case column names.

A cell holding a NUL character is refused here, for every importer: PostgreSQL stores no
NUL in text, and no sensible value contains one.
"""

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from bridgebsr.errors import InvalidInput


@dataclass(frozen=True)
class Sheet:
    """A file's header (lower-cased) and its non-blank rows with their row numbers."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]


def read_sheet(path: Path) -> Sheet:
    """Read a .csv (UTF-8, with or without BOM, comma or semicolon) or .xlsx file."""
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        table = _xlsx_cells(path)
    elif suffix in {".csv", ".txt"}:
        table = _csv_cells(path)
    else:
        raise InvalidInput(f"{path}: unsupported file type '{suffix}'; give a .csv or .xlsx file")
    if not table or not any(table[0]):
        raise InvalidInput(f"{path}: the file is empty; the first row must name the columns")
    return sheet_of(path, path.name, table)


def sheet_of(path: Path, label: str, table: list[list[str]]) -> Sheet:
    """A table whose first row names the columns, as a `Sheet`: its non-blank rows numbered
    from 2 and keyed by the lower-cased header; a NUL in any cell is refused, named by
    `label`."""
    columns = [c.strip().lower() for c in table[0]]
    rows = []
    for number, cells in enumerate(table[1:], start=2):
        if any(c.strip() for c in cells):
            padded = [*cells, *[""] * (len(columns) - len(cells))]
            rows.append((number, {col: padded[i].strip() for i, col in enumerate(columns) if col}))
    sheet = Sheet(path, columns, rows)
    refuse_nul(label, sheet)
    return sheet


def column_letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def refuse_nul(label: str, sheet: Sheet) -> None:
    """InvalidInput naming every cell (row and column) that holds a NUL character."""
    lines = [
        f"{label}: row {number}, column {column_letter(sheet.columns.index(name))} ({name}): "
        "contains a NUL character (\\x00); remove it"
        for number, cells in sheet.rows
        for name, value in cells.items()
        if "\x00" in value
    ]
    if lines:
        raise InvalidInput(
            f"{label}: {len(lines)} problem(s), nothing imported; first: {lines[0]}", lines
        )


def _csv_cells(path: Path) -> list[list[str]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path}: not UTF-8 (byte {exc.start}); save the file as 'CSV UTF-8' and retry"
        ) from None
    header = text.split("\n", 1)[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise InvalidInput(f"{path}: not a readable CSV file: {exc}") from None


def _xlsx_cells(path: Path) -> list[list[str]]:
    from openpyxl import load_workbook  # only XLSX imports pay for openpyxl

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InvalidInput(f"{path}: not a readable XLSX file ({type(exc).__name__})") from None
    try:
        sheet = book.worksheets[0]
        return [[xlsx_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def xlsx_text(value: object) -> str:
    """A workbook cell's value as text: empty for none, a date cell (at midnight) as an ISO
    date, anything else as Python writes it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
