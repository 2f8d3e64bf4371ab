"""Indicators by region: the value rule, `case measure` (one value and a sheet, all or
nothing, audited) on both stores, and the report's benchmark computed by hand."""

from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.catalog import checksum, load_catalog, parse_template
from bridgebsr.exchange.sheets import read_sheet
from bridgebsr.office import measurements
from bridgebsr.office.cases import open_case
from bridgebsr.reports import indicators, kpis, portfolio, sheets
from bridgebsr.rules import indicators as rule
from bridgebsr.store.db import read_session, write_session
from models import CaseEvent, Measurement, Template
from tests.conftest import at
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env

OWNER = "karin.astrom@mva.example"
TODAY = date(2026, 6, 10)
IP = load_catalog().get("ip-integration")


# --- the rule ----------------------------------------------------------------------------------


def test_the_value_rule_accepts_a_good_value_and_names_each_bad_one() -> None:
    good = rule.reading(
        IP,
        indicator=" licence-agreements ",
        region_name=" Skåne ",
        value="12,5",
        on="2026-06-10",
        today=TODAY,
        note_text="TTO annual report",
    )
    assert good == rule.Reading("licence-agreements", "Skåne", TODAY, 12.5, "TTO annual report")
    bad = {
        (
            "nope",
            "Skåne",
            "3",
            "2026-06-01",
        ): "--indicator 'nope' is no indicator of ip-integration",
        ("licence-agreements", "  ", "3", "2026-06-01"): "--region is empty",
        ("licence-agreements", "x" * 121, "3", "2026-06-01"): "at most 120 fit",
        ("licence-agreements", "Skåne", "abc", "2026-06-01"): "--value 'abc' is not a number",
        ("licence-agreements", "Skåne", "nan", "2026-06-01"): "'nan' is not a number",
        ("licence-agreements", "Skåne", "1e400", "2026-06-01"): "'1e400' is not a number",
        ("licence-agreements", "Skåne", "1.2.3", "2026-06-01"): "is not a number",
        ("licence-agreements", "Skåne", "3", "01.06.2026"): "--on '01.06.2026' is not an ISO date",
        ("licence-agreements", "Skåne", "3", "2026-06-11"): "2026-06-11 is in the future",
    }
    for (indicator, region, value, on), message in bad.items():
        with pytest.raises(InvalidInput) as caught:
            rule.reading(
                IP, indicator=indicator, region_name=region, value=value, on=on, today=TODAY
            )
        assert message in str(caught.value), (indicator, region, value, on)
        assert "\n" not in str(caught.value)


def test_a_template_without_indicators_says_so_and_keeps_its_checksum() -> None:
    sme = load_catalog().get("shared-sme-service")
    with pytest.raises(InvalidInput, match="declares no indicators"):
        rule.indicator_of(sme, "x")
    # A pin made before templates had indicators (its body without the key) reads back as
    # the same template, with the same fingerprint.
    body = sme.model_dump(mode="json")
    del body["indicators"]
    assert checksum(Template.model_validate(body)) == checksum(sme)
    assert checksum(IP) != checksum(IP.model_copy(update={"indicators": []}))


def test_templates_validate_refuses_an_indicator_declared_twice_or_a_bad_direction() -> None:
    text = (Path(load_catalog().paths["ip-integration"])).read_text()
    twice = text + "  - {key: licence-agreements, label: Again, direction: up}\n"
    with pytest.raises(InvalidInput, match="key 'licence-agreements' is used twice"):
        parse_template(twice, "ip.yaml")
    sideways = text + "  - {key: other, label: Other, direction: sideways}\n"
    with pytest.raises(InvalidInput, match=r"indicators\[5\]\.direction"):
        parse_template(sideways, "ip.yaml")


# --- the write path, on both stores -------------------------------------------------------------


def _ip_case(rt: Runtime) -> str:
    with write_session(rt.engine) as session:
        case = open_case(
            session=session,
            catalog=rt.catalog,
            kind="ip-integration",
            title="IP model",
            owner_email=OWNER,
            partner_code="MVA",
            start=date(2026, 1, 5),
            now=at("2026-01-05"),
        )
    return case.key


def _record(
    rt: Runtime, key: str, *values: tuple[str, str, str, str], replace: bool = False
) -> measurements.Recorded:
    given = [{"indicator": i, "region": r, "on": d, "value": v} for i, r, d, v in values]
    with write_session(rt.engine) as session:
        return measurements.record(
            session=session,
            key=key,
            given=given,
            actor=OWNER,
            now=at("2026-06-10"),
            replace=replace,
        )


def _stored(rt: Runtime) -> list[tuple[str, str, date, float]]:
    with read_session(rt.engine) as session:
        rows = session.exec(
            select(
                Measurement.indicator,
                Measurement.region,
                Measurement.measured_on,
                Measurement.value,
            ).order_by(Measurement.indicator, Measurement.region, Measurement.measured_on)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _events(rt: Runtime) -> list[tuple[str | None, dict[str, object], dict[str, object]]]:
    with read_session(rt.engine) as session:
        rows = session.exec(
            select(CaseEvent.subject, CaseEvent.before, CaseEvent.after)
            .where(CaseEvent.kind == "measure")
            .order_by(CaseEvent.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_measure_records_replaces_only_when_asked_and_audits_each_value(
    consortium: Runtime, tmp_path: Path
) -> None:
    key = _ip_case(consortium)
    done = _record(
        consortium,
        key,
        ("licence-agreements", "Skåne", "2026-01-31", "4"),
        ("licence-agreements", "Pomorskie", "2026-01-31", "2"),
    )
    assert (done.added, done.replaced) == (2, 0)
    # The same day again: refused without --replace, nothing written; the region as the
    # case already writes it.
    with pytest.raises(InvalidInput, match="already has licence-agreements = 4 for Skåne"):
        _record(consortium, key, ("licence-agreements", "SKÅNE", "2026-01-31", "5"))
    done = _record(
        consortium, key, ("licence-agreements", "SKÅNE", "2026-01-31", "5"), replace=True
    )
    assert (done.added, done.replaced) == (0, 1)
    assert _stored(consortium) == [
        ("licence-agreements", "Pomorskie", date(2026, 1, 31), 2.0),
        ("licence-agreements", "Skåne", date(2026, 1, 31), 5.0),
    ]
    events = _events(consortium)
    assert len(events) == 3
    subject, before, after = events[-1]
    assert subject == "licence-agreements"
    assert (before["value"], after["value"], after["region"]) == (4.0, 5.0, "Skåne")

    # A sheet: one bad cell refuses the whole sheet, named by row and column.
    sheet = tmp_path / "values.csv"
    sheet.write_text(
        "Indicator,Region,On,Value,Note\n"
        "helpdesk-enquiries,Skåne,2026-03-31,41,\n"
        "helpdesk-enquiries,Pomorskie,2026-03-31,forty,typed in words\n"
    )
    with write_session(consortium.engine) as session, pytest.raises(InvalidInput) as caught:
        measurements.record_sheet(
            session=session,
            key=key,
            sheet=read_sheet(sheet),
            label=sheet.name,
            actor=OWNER,
            now=at("2026-06-10"),
        )
    assert str(caught.value) == (
        "values.csv: row 3, column D (value): 'forty' is not a number; give one like 12 or 37.5"
    )
    assert len(_stored(consortium)) == 2 and len(_events(consortium)) == 3
    sheet.write_text(sheet.read_text().replace("forty", "17"))
    with write_session(consortium.engine) as session:
        done = measurements.record_sheet(
            session=session,
            key=key,
            sheet=read_sheet(sheet),
            label=sheet.name,
            actor=OWNER,
            now=at("2026-06-10"),
        )
    assert (done.added, done.replaced) == (2, 0)
    assert len(_stored(consortium)) == 4 and len(_events(consortium)) == 5

    # A workbook's date cells are days; a row given twice is refused with both rows.
    book = Workbook()
    book.active.append(["indicator", "region", "on", "value"])
    book.active.append(["helpdesk-enquiries", "Skåne", datetime(2026, 5, 31), 44])
    book.active.append(["helpdesk-enquiries", "Skåne", datetime(2026, 5, 31), 45])
    book.save(tmp_path / "values.xlsx")
    with write_session(consortium.engine) as session, pytest.raises(InvalidInput) as caught:
        measurements.record_sheet(
            session=session,
            key=key,
            sheet=read_sheet(tmp_path / "values.xlsx"),
            label="values.xlsx",
            actor=OWNER,
            now=at("2026-06-10"),
        )
    assert str(caught.value) == (
        "values.xlsx: row 3: helpdesk-enquiries for Skåne on 2026-05-31 is also given on row 2; "
        "keep one"
    )
    book.active.delete_rows(3)
    book.save(tmp_path / "values.xlsx")
    with write_session(consortium.engine) as session:
        measurements.record_sheet(
            session=session,
            key=key,
            sheet=read_sheet(tmp_path / "values.xlsx"),
            label="values.xlsx",
            actor=OWNER,
            now=at("2026-06-10"),
        )
    assert ("helpdesk-enquiries", "Skåne", date(2026, 5, 31), 44.0) in _stored(consortium)


# --- the benchmark, by hand ---------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the report's read: one store
def test_the_benchmark_against_baseline_and_target_computed_by_hand(
    consortium: Runtime, tmp_path: Path
) -> None:
    key = _ip_case(consortium)
    _record(
        consortium,
        key,
        # higher is better, target 40
        ("sme-patent-applications", "Skåne", "2026-02-01", "20"),
        ("sme-patent-applications", "Skåne", "2026-04-01", "30"),
        ("sme-patent-applications", "Skåne", "2026-05-01", "44"),
        ("sme-patent-applications", "Pomorskie", "2026-03-01", "12"),
        ("sme-patent-applications", "Pomorskie", "2026-05-01", "9"),
        # lower is better, target 10
        ("days-to-ip-advice", "Skåne", "2026-02-01", "30"),
        ("days-to-ip-advice", "Skåne", "2026-05-01", "18"),
        ("days-to-ip-advice", "Pomorskie", "2026-05-01", "8"),
    )
    frames = kpis.load(consortium.engine, as_of=TODAY)
    table = indicators.benchmark(
        indicators.read(consortium.engine, frames), indicators.specs(frames)
    )
    got = {
        (r["indicator"], r["region"]): (
            r["baseline_on"].date(), r["baseline"], r["latest"], r["change"], r["vs_target"],
            r["target_met"], r["trend"],
        )
        for r in table.to_dict("records")
    }  # fmt: skip
    days, patents = "Days to first IP advice", "Patent applications filed by SMEs"
    assert got == {
        (days, "Pomorskie"): (date(2026, 5, 1), 8, 8, 0, -2, True, "baseline only"),
        (days, "Skåne"): (date(2026, 2, 1), 30, 18, -12, 8, False, "better"),
        (patents, "Pomorskie"): (date(2026, 3, 1), 12, 9, -3, -31, False, "worse"),
        (patents, "Skåne"): (date(2026, 2, 1), 20, 44, 24, 4, True, "better"),
    }

    # The report carries it: a sheet with readable headers and the chart in the workbook,
    # the table and the chart on the HTML page.
    report = portfolio.build(consortium.engine, as_of=TODAY)
    assert report.views["indicators"].equals(table)
    sheets.write_xlsx(report, tmp_path / "r.xlsx")
    book = load_workbook(tmp_path / "r.xlsx", read_only=True)
    assert {"Indicators by region", "Indicators chart"} <= set(book.sheetnames)
    headers = [c.value for c in next(book["Indicators by region"].iter_rows(max_row=1))]
    book.close()
    assert headers[:6] == ["Case", "Indicator", "Unit", "Region", "Baseline day", "Baseline"]
    portfolio.write_html(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Indicators by region: baseline, latest and target" in page
    assert "<img alt='Indicators by region" in page
    assert "<th class='t'>Better or worse</th>" in page


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_case_measure_on_the_command_line(consortium: Runtime, tmp_path: Path) -> None:
    env = store_env(consortium)
    key = _ip_case(consortium)
    base = ("case", "measure", key, "--by", OWNER, "--as-of", "2026-06-10")
    good = cli(
        env,
        *base,
        "--indicator",
        "helpdesk-enquiries",
        "--region",
        "Skåne",
        "--value",
        "41",
        "--on",
        "2026-03-31",
    )
    assert good.code == 0 and f"{key}: 1 value(s) recorded, 0 replaced" in good.stdout
    one = ("--indicator", "helpdesk-enquiries", "--region", "Skåne")
    refusals = {
        ("--indicator", "helpdesk", "--region", "Skåne", "--value", "1"): "is no indicator",
        (*one, "--value", "1", "--on", "2026-06-11"): "in the future",
        (*one, "--value", "9", "--on", "2026-03-31"): "give --replace",
        ("--region", "Skåne", "--value", "1"): "give --indicator",
        ("--from", str(tmp_path / "none.csv"), "--region", "Skåne"): "not both",
        ("--from", str(tmp_path / "none.csv")): "no such file",
    }  # fmt: skip
    for args, message in refusals.items():
        one_error_line(cli(env, *base, *args), message)
    listed = cli(env, "case", "measurements", key, "--json")
    assert listed.code == 0
    assert '"value": 41.0' in listed.stdout and '"unit": "per quarter"' in listed.stdout
