"""`bridgebsr report`: the KPI views as CSV, XLSX and one HTML page, read back."""

import base64
import re
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date
from html import escape
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_demo
from bridgebsr.errors import InvalidInput
from bridgebsr.office import cases, items
from bridgebsr.office.agenda import agenda
from bridgebsr.office.progress import Actor
from bridgebsr.reports import charts, kpis, labels, sheets
from bridgebsr.reports import portfolio as portfolio
from bridgebsr.store.db import read_session, write_session
from bridgebsr.store.people import load_directory
from tests.conftest import BACKENDS, DEMO_AS_OF, at, migrated, pg_schema, run_here
from tests.test_bridgebsr.test_cli import assert_one_error_line

DAY = date(2026, 11, 26)
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT (DK)


@pytest.fixture(scope="module")
def demo(demo_home: Path) -> Path:
    """The session's demo home (SQLite, as of DAY), which the report only reads."""
    assert date.fromisoformat(DEMO_AS_OF) == DAY
    return demo_home


@pytest.fixture(scope="module")
def page(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo's HTML report as of DAY, written once for the tests that read it."""
    out = tmp_path_factory.mktemp("report-html") / "report.html"
    done = run_here(demo, "report", "--format", "html", "--out", str(out), "--as-of", "2026-11-26")
    assert done.returncode == 0, done.stderr
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def csv_out(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's CSV report folder as of DAY, written once for the tests that read it."""
    out = tmp_path_factory.mktemp("report-csv") / "csv"
    done = run_here(demo, "report", "--format", "csv", "--out", str(out), "--as-of", "2026-11-26")
    assert done.returncode == 0, done.stderr
    return out


Built = tuple[Runtime, portfolio.Report]


@pytest.fixture(scope="module", params=BACKENDS)
def demo_report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_ready: bool
) -> Iterator[Built]:
    """A store on each backend with the consortium and the demo loaded once, and its report
    as of DAY, for the tests that only read them."""
    with ExitStack() as stack:
        home = tmp_path_factory.mktemp("report-store")
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'cases.db'}"
        else:
            url = stack.enter_context(pg_schema(pg_ready))
        rt = stack.enter_context(migrated(url, home / "home"))
        load_demo(rt, DAY)
        yield rt, portfolio.build(rt.engine, as_of=DAY)


def test_the_workbook_has_one_typed_sheet_per_view_with_frozen_headers(
    demo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.xlsx"
    done = run_here(demo, "report", "--format", "xlsx", "--out", str(out), "--as-of", "2026-11-26")
    assert done.returncode == 0, done.stderr
    sheets = pd.read_excel(out, sheet_name=None)
    assert list(sheets)[:4] == [  # what needs action first, in words people read
        "About",
        "Needs action - late items",
        "Needs action - gates waiting",
        "Needs action - cases at risk",
    ]
    assert set(sheets) >= {"Cases by pilot", "Milestones by lead partner", "Forecast"}
    by_pilot = sheets["Cases by pilot"].set_index("Pilot")
    assert by_pilot.loc["shared-sme-service"].filter(like="Open").sum() > 0
    forecast = sheets["Forecast"]
    assert pd.api.types.is_datetime64_any_dtype(forecast["Forecast finish"])
    assert set(forecast["At risk"]) <= {"yes", "no"} and "yes" in set(forecast["At risk"])
    assert "Median slip (working days)" in sheets["Milestones by pilot"].columns
    book = load_workbook(out)
    tables = set(sheets) - {"About", "Indicators chart"}  # the last holds a chart, no table
    assert all(book[name].freeze_panes == "A2" for name in tables)
    with zipfile.ZipFile(out) as parts:  # the demo's IP case has indicator values: one chart
        assert sum(name.startswith("xl/media/") for name in parts.namelist()) == 1
    pct = book["Milestones by pilot"]
    header = [c.value for c in pct[1]]
    column = header.index("On time") + 1
    assert pct.cell(row=2, column=column).number_format == '0.0"%"'


def test_csv_is_a_folder_of_views_matching_the_kpis(csv_out: Path) -> None:
    out = csv_out
    files = {p.stem for p in out.glob("*.csv")}
    assert "milestones_by_pilot" in files and "sla_breaches" in files
    read = pd.read_csv(out / "cases_by_pilot.csv", encoding="utf-8-sig")
    assert list(read["pilot"]) == sorted(read["pilot"])  # one row per pilot


def test_a_partner_report_holds_only_that_partners_cases(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "mva"
    done = run_here(demo, "report", "--format", "csv", "--out", str(out), "--partner", "mva")
    assert done.returncode == 0, done.stderr
    assert "MVA (Medicon Valley Alliance)" in done.stdout
    partners = pd.read_csv(out / "cases_by_partner.csv", encoding="utf-8-sig")
    assert set(partners["partner"]) == {"MVA"}
    forecast = pd.read_csv(out / "forecast.csv", encoding="utf-8-sig")
    assert set(forecast["partner"]) <= {"MVA"}
    # What needs action holds only that partner's cases too.
    cases = set(forecast["case"])
    for name in ("action_late", "action_gates", "action_at_risk"):
        action = pd.read_csv(out / f"{name}.csv", encoding="utf-8-sig")
        assert set(action["case"]) <= cases, name
    assert "median_slip_working_days" in pd.read_csv(
        out / "milestones_by_partner.csv", encoding="utf-8-sig"
    )  # CSV keeps the machine names


def test_the_html_page_is_self_contained_with_tables_and_plots(page: str) -> None:
    assert page.count("<table") >= 10
    # What needs action first, then the numbers, then the charts.
    assert page.index("Needs action this week") < page.index("The numbers")
    assert page.index("The numbers") < page.index("<img")
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= 3  # trend, overdue, and a Gantt chart per open case
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere


def test_bad_input_is_one_line(demo: Path, tmp_path: Path) -> None:
    assert_one_error_line(
        run_here(demo, "report", "--format", "pdf", "--out", str(tmp_path / "x")),
        "--format 'pdf'",
        "csv, xlsx, html",
    )
    assert_one_error_line(
        run_here(
            demo, "report", "--format", "csv", "--out", str(tmp_path / "x"), "--partner", "ZZ"
        ),
        "no partner 'ZZ'",
        "partners list",
    )
    assert not (tmp_path / "x").exists()


def test_formula_like_text_cannot_run_and_html_escapes_it(
    demo_report: Built, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"title": ["=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "plain"]})
    safe = sheets.neutralised(frame)
    assert list(safe["title"]) == ["'=cmd|' /C calc'!A0", "'+1", "'-x", "'@SUM(A1)", "plain"]
    _, built = demo_report
    hostile = portfolio.Report(
        as_of=DAY,
        scope="<script>alert(1)</script>",
        views={"notes": frame},
        gantt=built.gantt.head(0),
        facts=built.facts,
    )
    sheets.write_xlsx(hostile, tmp_path / "h.xlsx")
    cells = [c.value for c in load_workbook(tmp_path / "h.xlsx")["Notes"]["A"]]
    assert cells[1] == "'=cmd|' /C calc'!A0" and all(not str(v).startswith("=") for v in cells if v)
    portfolio.write_html(hostile, tmp_path / "h.html")
    page = (tmp_path / "h.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_scoped_frames_drop_every_other_partners_rows(demo_report: Built) -> None:
    rt, _ = demo_report
    frames = kpis.load(rt.engine, as_of=DAY)
    mine = portfolio.scoped(frames, "MVA")
    ids = set(mine.cases.index)
    assert ids and set(mine.cases["partner"].astype(str)) == {"MVA"}
    assert set(mine.milestones["case_id"]) <= ids and set(mine.gates["case_id"]) <= ids
    assert mine.milestone_counts.index.equals(mine.cases.index)
    assert set(mine.slips["case_id"]) <= ids and len(mine.slips) < len(frames.slips)
    # The partner's own report has the row the portfolio's has for it.
    for build in (kpis.build_case_counts, kpis.build_milestone_kpis):
        everyone = build(frames, ("partner",))
        pd.testing.assert_frame_equal(
            build(mine, ("partner",)),
            everyone[everyone["partner"] == "MVA"].reset_index(drop=True),
        )
    with pytest.raises(InvalidInput, match="no partner 'nope'"):
        portfolio.build(rt.engine, as_of=DAY, partner="nope")


def test_a_partners_report_forecasts_and_plots_a_milestone_added_to_one_case(
    consortium: Runtime,
) -> None:
    """On both databases: the report of the lead partner of a case with an added milestone
    forecasts the case as its stored forecast, with the item among its milestones."""
    start = date(2026, 3, 2)
    with write_session(consortium.engine) as session:
        key = cases.open_case(
            session=session,
            catalog=consortium.catalog,
            kind="ip-integration",
            title="An IP case",
            owner_email=LEAD,
            start=start,
            now=at(start.isoformat()),
        ).key
        added = items.add_milestone(
            session=session,
            case_key=key,
            key="follow-up",
            title="Follow-up",
            owner="pilot-lead",
            duration=60,
            after="action-plan-integration",
            actor=Actor(LEAD),
            now=at(start.isoformat()),
        )
    report = portfolio.build(consortium.engine, as_of=start, partner="scanbalt")
    (row,) = report.views["forecast"].to_dict("records")
    assert row["case"] == key and row["forecast_date"] == row["stored_forecast_date"]
    assert row["forecast_date"].date() == added.case.forecast_date
    assert row["driving_item"] == "kickoff"
    facts = report.facts.set_index("milestone")
    assert facts.loc["follow-up", "stage"] == added.milestone.stage
    assert "follow-up" in set(report.gantt["milestone"])


def test_the_action_section_lists_the_late_items_with_their_owners(
    demo_report: Built, tmp_path: Path
) -> None:
    """On both databases: the demo's late milestones (the agenda's), each with its owner's
    name and partner, most late first, at the top of the page."""
    rt, built = demo_report
    with read_session(rt.engine) as session:
        rows = agenda(session=session, today=DAY, within=0)
        people = load_directory(session.connection()).by_email
    expected = {
        (r["case"], r["item"]): people[r["who"][0]].name
        for r in rows
        if r["kind"] == "milestone" and r["days_late"] > 0
    }
    portfolio.write_html(built, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    top = page[page.index("Needs action this week") : page.index("The numbers")]
    late = top[top.index("Late items") : top.index("Gates waiting")]
    header = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", late)
    assert header[:4] == ["Case", "Item", "Title", "Owner"]
    body = late[late.index("<tbody>") :]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", body)]
    assert expected and {(c[0], c[1]) for c in cells} == set(expected)
    for case, item, _title, owner, *_ in cells:
        assert owner.startswith(escape(expected[(case, item)])) and owner.endswith(")"), owner
    days = [int(c[5]) for c in cells]
    assert days == sorted(days, reverse=True) and min(days) > 0  # most late first
    assert "Gates waiting for a decision" in top and "Cases at risk" in top


def test_headers_and_cells_are_for_people(page: str) -> None:
    headers = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", page)
    assert "Median slip (working days)" in headers and "On time" in headers
    assert not [h for h in headers if "_" in h], "no machine names in headers"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
    assert "True" not in cells and "False" not in cells and "yes" in cells
    assert ".000000" not in page and not [c for c in cells if re.fullmatch(r"-?\d+\.0", c)]
    assert [c for c in cells if re.fullmatch(r"\d+\.\d%", c)], "percentages with one decimal"
    assert not [c for c in cells if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", c)]


def test_labels_format_each_kind() -> None:
    assert labels.label("median_slip_working_days") == "Median slip (working days)"
    assert labels.label("some_new_pct") == "Some new %"
    assert labels.shown(79.0, "num") == "79" and labels.shown(2.5, "num") == "2.5"
    assert labels.shown(33.33333, "pct") == "33.3%" and labels.shown(7.0, "int") == "7"
    assert labels.shown(True, "yesno") == "yes" and labels.shown(float("nan"), "num") == ""
    assert labels.shown(pd.Timestamp("2026-03-02"), "date") == "2026-03-02"
    assert labels.shown("2026-03", "month") == "Mar 2026"


def test_the_trend_has_every_month_between_the_first_and_last_finish(
    demo_report: Built,
) -> None:
    _, report = demo_report
    months, pct, count = charts.monthly_on_time(report.facts)
    done = report.facts[report.facts["done"]]
    finished = pd.to_datetime(done["finished_on"]).dt.to_period("M")
    assert list(months) == list(pd.period_range(finished.min(), finished.max(), freq="M"))
    assert list(pct.index) == list(months) == list(count.index)
    assert int(count.to_numpy().sum()) == len(done)  # every milestone done counts once
    empty = count.sum(axis=1) == 0
    assert pct[empty].isna().all().all()  # a month with none: no point, so no line across


def test_the_gantt_holds_gates_in_risk_order(demo_report: Built) -> None:
    _, report = demo_report
    drawn = list(dict.fromkeys(report.gantt["case"]))
    assert drawn == [str(k) for k in report.views["forecast"]["case"]][: len(drawn)]
    assert {"milestone", "gate"} <= set(report.gantt["kind"])
    assert set(report.views["plans"]["milestone"]) >= set(
        report.gantt.loc[report.gantt["kind"] == "milestone", "milestone"]
    )
    late = report.actions["late"]
    assert list(late["days_late"]) == sorted(late["days_late"], reverse=True)
    at_risk = report.actions["at_risk"]
    assert list(at_risk["case"]) == list(
        report.views["forecast"].loc[report.views["forecast"]["at_risk"], "case"]
    )


def test_the_programme_view_lists_every_activity_with_stage_and_health(
    csv_out: Path, page: str
) -> None:
    """Every activity of the demo (the pilots and the other six) with its open cases by stage
    and their health, by the rules of what needs action: a case with a late item is late, a
    case forecast past its target at risk; on the page after what needs action."""
    out = csv_out

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(out / f"{name}.csv", encoding="utf-8-sig", keep_default_na=False)

    programme, forecast = read("programme"), read("forecast")
    late, at_risk = set(read("action_late")["case"]), set(read("action_at_risk")["case"])
    assert set(programme["pilot"]) == set(forecast["pilot"]) and len(set(programme["pilot"])) == 9
    counts = programme[["late_cases", "at_risk_cases", "on_track_cases"]]
    assert (counts.sum(axis=1) == programme["open_cases"]).all()
    health = {}
    for row in programme.to_dict("records"):
        named = str(row["which"]).split(", ")
        assert len(named) == row["open_cases"]  # the demo has at most five per stage
        for case in named:
            health[case] = row
    assert sorted(health) == sorted(forecast["case"])  # every open case, once
    for case, row in health.items():
        if case in late:
            assert row["health"] == "late" and row["late_cases"] > 0, case
        elif case in at_risk:
            assert row["health"] in ("late", "at risk") and row["at_risk_cases"] > 0, case
        else:
            assert row["on_track_cases"] > 0, case
    assert set(programme["health"]) == {"late", "at risk", "on track"}
    # A case whose items are all finished, after its target, only waits to be closed.
    finished = forecast.set_index("case").loc["SME-2026-0012"]
    assert finished["forecast_date"] > finished["target_date"] and not finished["driving_item"]
    assert "SME-2026-0012" not in at_risk and health["SME-2026-0012"]["health"] == "on track"

    assert page.index("Needs action this week") < page.index("The work programme")
    assert page.index("The work programme") < page.index("The numbers")
    section = page[page.index("The work programme") : page.index("The numbers")]
    rows = re.findall(r"<tr class='([a-z-]+)'>", section)
    assert len(rows) == len(programme)
    assert set(rows) == {"late", "at-risk", "on-track"}
    assert "Innovation Council review round" in section
