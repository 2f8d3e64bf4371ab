"""The portfolio report as spreadsheets: one CSV file per view, or one XLSX workbook (the
formats `portfolio` describes), and the cell rules both keep.

- `neutralised`: text from people never runs as a formula: a cell starting with `=`, `+`,
  `-`, `@`, a tab or a carriage return gets a leading apostrophe.
- `ooxml_escaped`: characters XML cannot hold are written as OOXML's `_xHHHH_` escape (and
  text already reading `_xHHHH_` has its underscore escaped), so Excel and LibreOffice show
  exactly what was written.
- `flat`: a view's index as columns and periods as text, the shape a file keeps.
- `write_csv`, `write_xlsx`: the files, each written to a temporary name and renamed.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.files import replacing
from bridgebsr.reports import charts, labels

if TYPE_CHECKING:
    from bridgebsr.reports.portfolio import Report

_RISKY = ("=", "+", "-", "@", "\t", "\r")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LOOKS_ESCAPED = re.compile("_(?=x[0-9A-Fa-f]{4}_)")


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as spreadsheet formulas."""
    return _map_text(frame, _safe_cell)


def _safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_RISKY):
        return "'" + value
    return value


def ooxml_escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and column names an XLSX file can hold exactly."""
    out = _map_text(frame, _ooxml_text)
    out.columns = [_ooxml_text(c) for c in out.columns]
    return out


def _ooxml_text(value: Any) -> Any:
    """`value` in OOXML's escaped form: `_xHHHH_` for a character XML cannot hold, and
    `_x005F_` for the underscore of text that would otherwise read as such an escape."""
    if not isinstance(value, str) or ("_" not in value and not _NOT_XML.search(value)):
        return value
    value = _LOOKS_ESCAPED.sub("_x005F_", value)
    return _NOT_XML.sub(lambda m: f"_x{ord(m.group(0)):04X}_", value)


def _map_text(frame: pd.DataFrame, change: Callable[[Any], Any]) -> pd.DataFrame:
    """A copy with `change` applied to every cell of its text (and categorical) columns."""
    out = frame.copy()
    for name in out.columns:
        dtype = out[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object).map(change)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            out[name] = out[name].map(change)
    return out


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Index as columns, periods as text: the shape a file keeps."""
    out = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.PeriodDtype):
            out[name] = out[name].astype(str)
    out.columns = [str(c) for c in out.columns]
    out.attrs = dict(frame.attrs)
    return out


def write_csv(report: Report, folder: Path) -> list[Path]:
    """One CSV file per view in `folder`."""
    if folder.suffix.lower() == ".csv":
        raise InvalidInput(f"{folder}: CSV reports are a folder of files; give a folder path")
    written = []
    for name, frame in (_action_sheets(report) | report.views).items():
        path = folder / f"{name}.csv"
        with replacing(path, make_folder=True) as tmp:
            neutralised(flat(frame)).to_csv(
                tmp, index=False, encoding="utf-8-sig", lineterminator="\r\n"
            )
        written.append(path)
    return written


def write_xlsx(report: Report, path: Path) -> list[Path]:
    """One workbook: what needs action, then one sheet per view; readable sheet names and
    headers, typed columns with their number formats, frozen header rows."""
    with replacing(path, make_folder=True) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as book:
            taken: set[str] = set()
            about = ooxml_escaped(neutralised(_about(report)))
            about.to_excel(book, sheet_name=labels.sheet("about", taken), index=False)
            for name, frame in (_action_sheets(report) | report.views).items():
                _sheet(book, labels.sheet(name, taken), flat(frame))
            if not report.measured.empty:
                chart = charts.png(charts.indicators, report)
                _picture(book, labels.sheet("indicators_chart", taken), chart)
    return [path]


def _action_sheets(report: Report) -> dict[str, pd.DataFrame]:
    """What needs action, then the programme view: the sheets before the KPI views."""
    sheets = {f"action_{name}": frame for name, frame in report.actions.items()}
    return sheets | {"programme": report.programme}


def _sheet(book: Any, sheet: str, frame: pd.DataFrame) -> None:
    """`frame` as sheet `sheet`: labelled headers, yes/no for flags, days to one decimal,
    number formats."""
    from openpyxl.utils import get_column_letter

    formats = [labels.kind(str(c), frame[c]) for c in frame.columns]
    table = frame.copy()
    for column, fmt in zip(frame.columns, formats, strict=True):
        if fmt == "yesno":
            table[column] = [labels.shown(v, fmt) for v in frame[column].astype(object)]
        elif fmt == "num" and pd.api.types.is_float_dtype(frame[column]):
            table[column] = frame[column].round(1)  # shown as 79 or 5.3 ("General")
    names = frame.attrs.get("labels")
    table.columns = [labels.label(str(c), names) for c in frame.columns]
    table = ooxml_escaped(neutralised(table))
    table.to_excel(book, sheet_name=sheet, index=False)
    ws = book.sheets[sheet]
    ws.freeze_panes = "A2"
    for i, (column, fmt) in enumerate(zip(table.columns, formats, strict=True), start=1):
        width = max([len(str(column)), *(len(str(v)) for v in table[column].head(200))])
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = min(width + 2, 60)
        number_format = labels.XLSX_FORMATS.get(fmt)
        if number_format:
            for cell in ws[letter][1:]:
                cell.number_format = number_format


def _picture(book: Any, sheet: str, png: str) -> None:
    """A sheet holding one chart (a PNG of the HTML page's)."""
    from openpyxl.drawing.image import Image

    ws = book.book.create_sheet(sheet)
    ws.add_image(Image(io.BytesIO(base64.b64decode(png))), "A1")


def _about(report: Report) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "field": ["report", "scope", "as of", "views"],
            "value": [
                "Bridge-BSR portfolio report (bridgebsr)",
                report.scope,
                report.as_of.isoformat(),
                ", ".join(report.views),
            ],
        }
    )
