"""`bridgebsr report`: the KPI views as CSV, XLSX and one HTML page, read back."""

import base64
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_demo
from bridgebsr.errors import InvalidInput
from bridgebsr.office import cases, items
from bridgebsr.office.progress import Actor
from bridgebsr.reports import kpis
from bridgebsr.reports import portfolio as portfolio
from bridgebsr.store.db import write_session
from tests.conftest import at
from tests.test_bridgebsr.test_cli import assert_one_error_line, run

DAY = date(2026, 11, 26)
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT (DK)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo home (SQLite) shared by the tests that only read it."""
    home = tmp_path_factory.mktemp("report") / "home"
    done = run(home, "demo", "--as-of", DAY.isoformat())
    assert done.returncode == 0, done.stderr
    return home


def test_the_workbook_has_one_typed_sheet_per_view_with_frozen_headers(
    demo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.xlsx"
    done = run(demo, "report", "--format", "xlsx", "--out", str(out), "--as-of", "2026-11-26")
    assert done.returncode == 0, done.stderr
    sheets = pd.read_excel(out, sheet_name=None)
    assert set(sheets) >= {"about", "cases_by_pilot", "milestones_by_partner", "forecast"}
    by_pilot = sheets["cases_by_pilot"].set_index("pilot")
    assert by_pilot.loc["shared-sme-service"].filter(like="open").sum() > 0
    forecast = sheets["forecast"]
    assert pd.api.types.is_datetime64_any_dtype(forecast["forecast_date"])
    assert forecast["at_risk"].dtype == bool
    book = load_workbook(out)
    assert all(book[name].freeze_panes == "A2" for name in sheets if name != "about")


def test_csv_is_a_folder_of_views_matching_the_kpis(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    done = run(demo, "report", "--format", "csv", "--out", str(out), "--as-of", "2026-11-26")
    assert done.returncode == 0, done.stderr
    files = {p.stem for p in out.glob("*.csv")}
    assert "milestones_by_pilot" in files and "sla_breaches" in files
    read = pd.read_csv(out / "cases_by_pilot.csv", encoding="utf-8-sig")
    assert list(read["pilot"]) == sorted(read["pilot"])  # one row per pilot


def test_a_partner_report_holds_only_that_partners_cases(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "mva"
    done = run(demo, "report", "--format", "csv", "--out", str(out), "--partner", "mva")
    assert done.returncode == 0, done.stderr
    assert "MVA (Medicon Valley Alliance)" in done.stdout
    partners = pd.read_csv(out / "cases_by_partner.csv", encoding="utf-8-sig")
    assert set(partners["partner"]) == {"MVA"}
    forecast = pd.read_csv(out / "forecast.csv", encoding="utf-8-sig")
    assert set(forecast["partner"]) <= {"MVA"}


def test_the_html_page_is_self_contained_with_tables_and_plots(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = run(demo, "report", "--format", "html", "--out", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    assert page.count("<table") >= 10
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= 3  # trend, overdue, and a Gantt chart per open case
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere


def test_bad_input_is_one_line(demo: Path, tmp_path: Path) -> None:
    assert_one_error_line(
        run(demo, "report", "--format", "pdf", "--out", str(tmp_path / "x")),
        "--format 'pdf'",
        "csv, xlsx, html",
    )
    assert_one_error_line(
        run(demo, "report", "--format", "csv", "--out", str(tmp_path / "x"), "--partner", "ZZ"),
        "no partner 'ZZ'",
        "partners list",
    )
    assert not (tmp_path / "x").exists()


def test_formula_like_text_cannot_run_and_html_escapes_it(
    consortium: Runtime, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"title": ["=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "plain"]})
    safe = portfolio.neutralised(frame)
    assert list(safe["title"]) == ["'=cmd|' /C calc'!A0", "'+1", "'-x", "'@SUM(A1)", "plain"]
    load_demo(consortium, DAY)
    built = portfolio.build(consortium.engine, as_of=DAY)
    hostile = portfolio.Report(
        as_of=DAY,
        scope="<script>alert(1)</script>",
        views={"notes": frame},
        gantt=built.gantt.head(0),
        facts=built.facts,
    )
    portfolio.write_xlsx(hostile, tmp_path / "h.xlsx")
    cells = [c.value for c in load_workbook(tmp_path / "h.xlsx")["notes"]["A"]]
    assert cells[1] == "'=cmd|' /C calc'!A0" and all(not str(v).startswith("=") for v in cells if v)
    portfolio.write_html(hostile, tmp_path / "h.html")
    page = (tmp_path / "h.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_scoped_frames_drop_every_other_partners_rows(consortium: Runtime) -> None:
    load_demo(consortium, DAY)
    frames = kpis.load(consortium.engine, as_of=DAY)
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
        portfolio.build(consortium.engine, as_of=DAY, partner="nope")


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
