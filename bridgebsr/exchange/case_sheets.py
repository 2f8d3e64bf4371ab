"""Reading the files of `case import`: the cases sheet and the progress sheet, from CSV
(`exchange.sheets`) or XLSX, and how a problem in them is named (file, row, column)."""

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.sheets import Sheet, column_letter, read_sheet, sheet_of, xlsx_text
from bridgebsr.rules.calendars import out_of_range


@dataclass(frozen=True)
class Part:
    """One sheet of the input and how problems name it (`cases.csv`, `book.xlsx[progress]`)."""

    label: str
    sheet: Sheet


@dataclass(frozen=True)
class Inputs:
    """The cases sheet, the progress sheet if any, and the cases file's checksum."""

    cases: Part
    progress: Part | None
    digest: str


def read_inputs(cases: Path, progress: Path | None = None) -> Inputs:
    """Read the cases file and the progress file (or the workbook's `progress` sheet)."""
    if not cases.is_file():
        raise InvalidInput(f"{cases}: no such file")
    progress_part = None
    if _is_xlsx(cases):
        book = _read_book(cases)
        cases_part = _sheet_named(cases, book, "cases")
        progress_part = book.get("progress") if len(book) > 1 else None
        if progress_part is not None and progress is not None:
            raise InvalidInput(
                f"{cases}: the workbook has a `progress` sheet and --progress names {progress}; "
                "give one of them"
            )
    else:
        cases_part = Part(cases.name, read_sheet(cases))
    if progress is not None:
        if not progress.is_file():
            raise InvalidInput(f"{progress}: no such file")
        if _is_xlsx(progress):
            progress_part = _sheet_named(progress, _read_book(progress), "progress")
        else:
            progress_part = Part(progress.name, read_sheet(progress))
    digest = hashlib.sha256(cases.read_bytes()).hexdigest()
    return Inputs(cases_part, progress_part, digest)


def _is_xlsx(path: Path) -> bool:
    return path.suffix.lower() == ".xlsx"


def _sheet_named(path: Path, book: dict[str, Part], name: str) -> Part:
    """The sheet called `name`; a workbook of one sheet is that sheet, whatever its name."""
    if name in book:
        return book[name]
    if len(book) == 1:
        return next(iter(book.values()))
    raise InvalidInput(f"{path}: no sheet named '{name}' (it has: {', '.join(book)})")


def _read_book(path: Path) -> dict[str, Part]:
    """Every sheet of a workbook by lower-cased name; date cells become ISO dates."""
    from openpyxl import load_workbook  # only XLSX imports pay for openpyxl

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InvalidInput(f"{path}: not a readable XLSX file ({type(exc).__name__})") from None
    try:
        several = len(book.worksheets) > 1
        parts: dict[str, Part] = {}
        for ws in book.worksheets:
            table = [[xlsx_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
            label = f"{path.name}[{ws.title}]" if several else path.name
            parts[ws.title.strip().lower()] = Part(label, _as_sheet(path, label, table))
        return parts
    finally:
        book.close()


def _as_sheet(path: Path, label: str, table: list[list[str]]) -> Sheet:
    """One sheet of a workbook as `sheets.read_sheet` makes a file's (`sheets.sheet_of`)."""
    if not table or not any(c.strip() for c in table[0]):
        raise InvalidInput(f"{label}: the sheet is empty; the first row must name the columns")
    return sheet_of(path, label, table)


# ---------------------------------------------------------------------------------------------
# Problems, each with its file, row and column


class Problems:
    """Problems of the input files, each with its file, row and column, reported at once."""

    def __init__(self) -> None:
        self.found: list[tuple[int, int, int, str, str]] = []

    def add(self, part: Part, rank: int, row: int, column: str, message: str) -> None:
        columns = part.sheet.columns
        index = columns.index(column) if column in columns else len(columns)
        letter = column_letter(index) if column in columns else "?"
        line = f"{part.label}: row {row}, column {letter} ({column}): {message}"
        self.found.append((rank, row, index, part.label, line))

    def raise_if_any(self) -> None:
        if not self.found:
            return
        self.found.sort(key=lambda p: p[:3])
        lines = [p[4] for p in self.found]
        labels = ", ".join(dict.fromkeys(p[3] for p in self.found))
        raise InvalidInput(
            f"{labels}: {len(lines)} problem(s), nothing imported; first: {lines[0]}", lines
        )


def check_columns(
    part: Part, spec: tuple[tuple[str, ...], tuple[str, ...]], fields: tuple[str, ...] = ()
) -> str | None:
    """Why the header is refused (a column missing, or one no one knows), or None; `fields`
    are further optional columns: the fields the templates declare."""
    required, optional = spec
    missing = [c for c in required if c not in part.sheet.columns]
    unknown = [c for c in part.sheet.columns if c and c not in (*required, *optional, *fields)]
    if not missing and not unknown:
        return None
    parts = [f"missing column(s) {', '.join(missing)}"] if missing else []
    parts += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
    also = f"; fields: {', '.join(fields)}" if fields else ""
    return (
        f"{part.label}: row 1: {'; '.join(parts)}; the header must name "
        f"{', '.join(required)} (optional: {', '.join(optional)}{also})"
    )


class Dates:
    """Date cells parsed once per distinct text."""

    def __init__(self) -> None:
        self._seen: dict[str, date | None] = {}

    def parse(self, value: str) -> date:
        if value not in self._seen:
            self._seen[value] = _parse_date(value)
        parsed = self._seen[value]
        if parsed is None:
            raise ValueError(f"'{value}' is not a date (YYYY-MM-DD or DD.MM.YYYY)")
        if why := out_of_range(parsed):
            raise ValueError(why)
        return parsed


def _parse_date(value: str) -> date | None:
    text_ = value.strip()
    try:
        if len(text_) == 10 and text_[4] == "-":
            return date.fromisoformat(text_)
        if len(text_) > 10 and text_[4] == "-" and text_[10] in " T":  # a datetime at midnight
            moment = datetime.fromisoformat(text_)
            return moment.date() if moment.time() == datetime.min.time() else None
        day, month, year = text_.split(".")
        if len(year) == 4:
            return date(int(year), int(month), int(day))
    except ValueError:
        return None
    return None
