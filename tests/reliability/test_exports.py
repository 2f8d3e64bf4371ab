"""Text from people never runs where it is shown: CSV and XLSX exports neutralise formula-like
cells (a leading apostrophe), HTML reports and notification emails escape everything.

- End to end: a hostile partner (a formula as its code, HTML in its name), a contact, a case
  titled with a formula and a milestone completed with a formula note go into a copy of the
  demo store through the CLI; `bridgebsr report --format csv|xlsx|html` comes out read back
  with pandas and openpyxl: no text cell starts with = + - @ tab or CR, no cell is a
  formula, the partner code carries its apostrophe, the page has no element it did not make.
- Property-based: any text in a report view round-trips through CSV and XLSX exactly, with the
  apostrophe added where needed, and cannot add an element or attribute to the HTML page;
  any text in a notice's payload cannot add one to the email.
"""

import csv
import re
from dataclasses import replace
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest
from hypothesis import Phase, event, example, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from bridgebsr.reports import charts, sheets
from bridgebsr.reports import portfolio as portfolio
from notifications.render import Notice, render, render_bundle
from tests.reliability.conftest import AS_OF, Pristine, assert_clean_exit, fuzz, invoke, scratch

RISKY = ("=", "+", "-", "@", "\t", "\r")
FORMULA_CODE = '=HYPERLINK("HTTP://EVIL.EXAMPLE","X")'  # as the importer stores it: upper case
TITLE = "=cmd|' /C calc'!A0"
NOTE = "@SUM(1+1)*cmd|' /C calc'!A0"


class _Elements(HTMLParser):
    """The elements and attribute names of a page, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes |= {name for name, _ in attrs}

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _inert(value: object) -> bool:
    """A cell a spreadsheet will not evaluate: not text starting with a formula character
    (a number written as text, like -3.0, is a number to the spreadsheet too)."""
    return not (isinstance(value, str) and value.startswith(RISKY) and not _is_number(value))


# --- end to end, through the CLI --------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_home(demo_store: Pristine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo store with a hostile partner, contact, case title and note."""
    folder = tmp_path_factory.mktemp("hostile")
    home = demo_store.copy(folder)
    partners = folder / "partners.csv"
    with partners.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(
            [
                ["code", "name", "kind", "country"],
                [FORMULA_CODE.lower(), "Evil <b>Co</b> <script>alert(1)</script>", "sme", "DK"],
            ]
        )
    contacts = folder / "contacts.csv"
    with contacts.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(
            [
                ["email", "name", "partner", "role", "country"],
                [
                    "mallory@evil.example",
                    "<img src=x onerror=alert(1)>",
                    FORMULA_CODE,
                    "case-owner",
                    "DK",
                ],
            ]
        )
    steps = [
        ["partners", "import", str(partners)],
        ["contacts", "import", str(contacts)],
    ]
    for args in steps:
        done = invoke(home, args)
        assert done.code == 0, done.describe()
    opened = invoke(
        home,
        ["case", "open", "shared-sme-service", "--title", TITLE, "--owner", "mallory@evil.example"]
        + ["--start", "2026-10-01", "--as-of", "2026-10-01"],
    )
    assert opened.code == 0, opened.describe()
    key = opened.stdout.strip()
    done = invoke(
        home,
        ["milestone", "complete", key, "request-intake", "--note", NOTE, "--on", "2026-10-02"]
        + ["--by", "mallory@evil.example", "--as-of", "2026-10-02"],
    )
    assert done.code == 0, done.describe()
    return home


def _report(home: Path, fmt: str, out: Path, *extra: str) -> None:
    done = invoke(home, ["report", "--format", fmt, "--out", str(out), "--as-of", AS_OF, *extra])
    assert_clean_exit(done)
    assert done.code == 0, done.describe()


def test_formula_text_comes_out_of_the_csv_report_with_an_apostrophe(
    hostile_home: Path, tmp_path: Path
) -> None:
    _report(hostile_home, "csv", tmp_path / "csv")
    cells: list[str] = []
    for path in sorted((tmp_path / "csv").glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        cells += [str(c) for c in frame.columns] + [v for row in frame.to_numpy() for v in row]
    assert cells, "the report has cells"
    assert [c for c in cells if not _inert(c)] == []
    assert "'" + FORMULA_CODE in cells, "the partner code is there, neutralised"
    # No view has a column of case titles or milestone notes today; if one comes, its cells
    # are checked above, and the raw text must not be among them.
    assert TITLE not in cells and NOTE not in cells


def test_formula_text_comes_out_of_the_xlsx_report_with_an_apostrophe(
    hostile_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.xlsx"
    _report(hostile_home, "xlsx", out)
    book = load_workbook(out)
    values = []
    for ws in book.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{ws.title}!{cell.coordinate} is a formula"
                values.append(cell.value)
    assert [v for v in values if not _inert(v)] == []
    assert "'" + FORMULA_CODE in values
    sheets = pd.read_excel(out, sheet_name=None, dtype=str, keep_default_na=False)
    header = "Lead partner"  # the workbook's readable header for `partner`
    partners = pd.concat([s[header] for s in sheets.values() if header in s.columns])
    assert "'" + FORMULA_CODE in set(partners)


def test_the_html_report_escapes_what_people_wrote(hostile_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    _report(hostile_home, "html", out, "--partner", FORMULA_CODE)
    page = out.read_text(encoding="utf-8")
    found = elements(page)
    assert "script" not in found.tags and "b" not in found.tags
    assert found.attributes <= {"lang", "charset", "alt", "src", "id", "border", "class", "style"}
    assert "Evil <b>Co</b> <script>alert(1)</script>" in "".join(found.text)


# --- properties of the writers and the renderer ------------------------------------------

texts = st.one_of(
    st.sampled_from(
        [
            "=cmd|' /C calc'!A0",
            "+1",
            "-x",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "'=already",
            " =1",
            "<script>alert(1)</script>",
            '"><img src=x onerror=alert(1)>',
            "&amp;",
            "plain",
            "",
        ]
    ),
    st.text(max_size=30),
)


def _neutral(text: str) -> str:
    return "'" + text if text.startswith(RISKY) else text


def _hostile_report(cells: list[str]) -> portfolio.Report:
    empty = pd.DataFrame(columns=["case", "title", "planned_start", "planned_due"])
    return portfolio.Report(
        as_of=date.fromisoformat(AS_OF),
        scope="scope <i>of</i> people",
        views={"people": pd.DataFrame({"partner": cells, "n": range(len(cells))})},
        gantt=empty.assign(forecast_start=[], forecast_due=[], status=[]),
        facts=pd.DataFrame(),
    )


def _csv_cells(folder: Path, cells: list[str]) -> list[list[str]]:
    sheets.write_csv(_hostile_report(cells), folder / "csv")
    with (folder / "csv" / "people.csv").open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


@fuzz(quick=60)
@given(cells=st.lists(texts, min_size=1, max_size=6))
def test_any_text_round_trips_through_csv_with_formulas_neutralised(
    scratch_root: Path, cells: list[str]
) -> None:
    with scratch(scratch_root) as folder:
        rows = _csv_cells(folder, cells)
    assert rows[0] == ["partner", "n"]
    if any("\r" in c or "\n" in c for c in cells):
        event("a line break inside a cell")
    assert [r[0] for r in rows[1:]] == [_neutral(c) for c in cells]
    assert all(_inert(cell) for row in rows for cell in row)


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(cells=["ACME\r=CMD|' /C CALC'!A0"])
@example(cells=["ACME\n=CMD|' /C CALC'!A0", "ACME\r\n=1", "\r", "a\rb\nc"])
@given(cells=st.just(["x"]))
def test_a_carriage_return_inside_a_cell_cannot_start_a_formula_line(
    scratch_root: Path, cells: list[str]
) -> None:
    """A partner code imported as "ACME\\r=CMD|..." stays one quoted cell (RFC 4180: CRLF
    between records, a cell with CR or LF quoted), so the formula never starts a record."""
    with scratch(scratch_root) as folder:
        rows = _csv_cells(folder, cells)
    assert all(_inert(cell) for row in rows for cell in row), rows
    assert [r[0] for r in rows[1:]] == [_neutral(c) for c in cells]


def _ooxml_decoded(text: str) -> str:
    """Text as a spreadsheet program following ECMA-376 (ST_Xstring) shows it: each `_xHHHH_`,
    read left to right, is the character HHHH (so `_x005F_` is an underscore)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def _xlsx_values(folder: Path, cells: list[str]) -> list[object]:
    """The first column of the people sheet, as shown. openpyxl writes text as inline strings
    and reads them back as stored, escapes and all; they are decoded here."""
    sheets.write_xlsx(_hostile_report(cells), folder / "r.xlsx")
    ws = load_workbook(folder / "r.xlsx")["People"]
    column = list(ws.iter_rows(min_col=1, max_col=1))
    assert all(row[0].data_type != "f" for row in column), "no formula cells"
    values = [row[0].value for row in column[1:]]
    return [_ooxml_decoded(v) if isinstance(v, str) else v for v in values]


@fuzz(quick=25)
@example(cells=["_x0041_", "_x005F_", "_x0041_x0042_", "a\rb\r\nc", "\x00\x1f\ufffe\uffff"])
@given(cells=st.lists(texts, min_size=1, max_size=6))
def test_any_text_round_trips_through_xlsx_with_formulas_neutralised(
    scratch_root: Path, cells: list[str]
) -> None:
    with scratch(scratch_root) as folder:
        values = _xlsx_values(folder, cells)
    # A blank cell reads back as None.
    assert [v if v is not None else "" for v in values] == [_neutral(c) for c in cells]


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(cells=["CTRL\x01X"])
@given(cells=st.just(["x"]))
def test_a_control_character_in_a_cell_does_not_break_the_xlsx_report(
    scratch_root: Path, cells: list[str]
) -> None:
    """A partner code imported as 'CTRL\\x01X' is written as 'CTRL_x0001_X', OOXML's escape
    for a character XML cannot hold, rather than failing the whole workbook."""
    with scratch(scratch_root) as folder:
        assert _xlsx_values(folder, cells) == cells


def test_the_about_sheet_neutralises_and_escapes_the_scope(tmp_path: Path) -> None:
    hostile = replace(_hostile_report(["x"]), scope='=HYPERLINK("x")\x01 (Evil)')
    sheets.write_xlsx(hostile, tmp_path / "r.xlsx")
    ws = load_workbook(tmp_path / "r.xlsx")["About"]
    cells = [cell for row in ws.iter_rows() for cell in row]
    assert all(cell.data_type != "f" for cell in cells), "no formula cells"
    values = [_ooxml_decoded(c.value) for c in cells if isinstance(c.value, str)]
    assert '\'=HYPERLINK("x")\x01 (Evil)' in values


@fuzz(quick=60)
@given(cells=st.lists(texts, min_size=1, max_size=6))
def test_no_text_adds_an_element_to_the_html_report(scratch_root: Path, cells: list[str]) -> None:
    with scratch(scratch_root) as folder, mock.patch.object(charts, "png", lambda *a: ""):
        portfolio.write_html(_hostile_report(cells), folder / "r.html")
        page = (folder / "r.html").read_text(encoding="utf-8")
    found = elements(page)
    made = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "img"}
    assert set(found.tags) <= made | {"table", "thead", "tbody", "tr", "th", "td"}, found.tags
    assert found.tags.count("img") == 2, "the two plots, nothing else"
    assert found.attributes <= {"lang", "charset", "alt", "src", "id", "border", "class", "style"}
    assert found.tags.count("td") == 2 * len(cells)


def _payload(text: str) -> dict[str, Any]:
    return {
        "case": text,
        "case_title": text,
        "pilot": "shared-sme-service",
        "country": "DK",
        "item": text,
        "item_kind": "milestone",
        "item_title": text,
        "due": "2026-11-26",
        "days_late": 2,
        "step": text,
    }


@fuzz(quick=100)
@given(text=texts, link=st.none() | st.just("http://127.0.0.1:4200/runs/flow-run/1"))
def test_no_text_in_a_notice_adds_an_element_to_the_email(text: str, link: str | None) -> None:
    message = render(_payload(text), link=link)
    found = elements(message.html)
    assert set(found.tags) <= {"html", "body", "h2", "p", "b", "br", "a"}, found.tags
    assert found.tags.count("a") == (1 if link else 0)
    assert found.attributes <= {"style", "href"}
    shown = re.sub(r"\s+", " ", "".join(found.text))
    assert re.sub(r"\s+", " ", text).strip() in shown


@fuzz(quick=60)
@given(texts=st.lists(texts, min_size=1, max_size=5), urgent=st.booleans())
def test_no_text_in_a_digest_adds_an_element_to_the_email(texts: list[str], urgent: bool) -> None:
    notices = [Notice(_payload(t), None, urgent) for t in texts]
    message = render_bundle("digest", notices, day=date.fromisoformat(AS_OF))
    found = elements(message.html)
    assert set(found.tags) <= {"html", "body", "h2", "p", "ul", "li", "b"}, found.tags
    assert found.tags.count("li") == len(texts)
    assert found.attributes <= {"style"}
