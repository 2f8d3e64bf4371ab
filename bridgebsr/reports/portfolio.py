"""The portfolio report: the KPI tables of `bridgebsr.reports.kpis` as CSV files, one XLSX
workbook or one self-contained HTML page with plots, for the whole portfolio or one
partner's cases.

- CSV: a folder with one file per view (and per "needs action" table, `action_*`, and the
  programme view, `programme`), with the
  machine column names and values, for programs (UTF-8 with BOM, so spreadsheet programs read
  the accents right), RFC 4180: CRLF between records and any cell holding a quote, comma, CR or LF
  quoted, so a line break inside a cell never starts a new record.
- XLSX: the "needs action" tables (`action_*` sheets), the programme view, then one sheet per
  view, with the
  readable headers of `labels`, dates as dates and numbers as numbers in their formats
  (counts without decimals, percentages with one decimal and %), yes/no for flags, frozen
  header rows, columns sized to their content. Characters XML cannot hold (control characters
  other than tab, LF and CR; U+FFFE, U+FFFF) are written as OOXML's `_xHHHH_` escape, which
  Excel and LibreOffice show as the character, and text that already reads `_xHHHH_` has its
  underscore escaped (`_x005F_xHHHH_`) so it shows as written.
- HTML: one file that opens in any browser with no network. First what needs action this week
  (`actions`: late items and their owners, gates waiting and who may decide, cases at risk,
  requests for a new date to answer), then the programme view (`programme`: every activity's
  open cases by stage, with their health: late, at risk or on track), then the KPI tables
  with the headers and formats of `labels`, then the charts (`charts`):
  the on-time trend per pilot by month, the milestones overdue by partner and a Gantt chart
  per open case in risk order, as embedded PNG images; last the long `plans` view. Where
  cases recorded indicator values, the `indicators` view benchmarks each region against its
  baseline and target (`indicators`), with its chart on the page and in the workbook's
  `indicators_chart` sheet.

Every report carries the three plans of each open case's milestones (the `plans` view): the
original (`baseline_*`, set at open), the agreed plan in force (`planned_*`, moved by a
reschedule or rebaseline) and the forecast (`forecast_*`). The milestone KPIs say which they
measure: `on_time_pct` against the agreed due date in force when the item fell due,
`on_time_baseline_pct` against the original.

Text that came from people (case titles, notes) never runs: a cell starting with `=`, `+`,
`-`, `@`, a tab or a carriage return gets a leading apostrophe in CSV and XLSX, and HTML
escapes everything. Files are written to a temporary name and renamed, so a reader never sees
half a report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlmodel import col

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.files import replacing
from bridgebsr.reports import charts, indicators, kpis, labels, sheets
from bridgebsr.reports.actions import needs_action
from bridgebsr.reports.programme import HEALTH, build_programme
from models import CLOSED_CASE, Case, Gate, Milestone, Partner

FORMATS = ("csv", "xlsx", "html")
GANTT_CASES = 40  # open cases drawn as Gantt charts in the HTML, at risk first
APPENDIX = ("plans",)  # long views the HTML page puts after the charts
SUMMARY_ROWS = 25  # rows of each table in the summary (an email's body)
# Characters XML 1.0 cannot carry, and text that would read as an OOXML escape (ST_Xstring).


@dataclass(frozen=True)
class Report:
    """The views of one report, by sheet name, and what its plots need."""

    as_of: date
    scope: str
    views: dict[str, pd.DataFrame]
    gantt: pd.DataFrame  # milestones and gates of the open cases drawn, in plan order
    facts: pd.DataFrame  # one row per milestone (kpis.milestone_facts)
    actions: dict[str, pd.DataFrame] = field(default_factory=dict)  # see `actions`
    measured: pd.DataFrame = field(default_factory=pd.DataFrame)  # `indicators.read`
    indicator_specs: dict[tuple[int, str], Any] = field(default_factory=dict)
    programme: pd.DataFrame = field(default_factory=pd.DataFrame)  # see `programme`


def build(
    engine: Engine, *, as_of: date, partner: str | None = None, frames: kpis.Frames | None = None
) -> Report:
    """Every KPI view as of `as_of`, for the portfolio or for the cases `partner` leads; from
    `frames` when given (the store loaded once as of `as_of`, for several reports)."""
    frames = frames if frames is not None else kpis.load(engine, as_of=as_of)
    scope = "the whole portfolio"
    code = None
    if partner:
        code = partner.strip().upper()
        with engine.connect() as conn:
            name = conn.execute(
                select(col(Partner.name)).where(col(Partner.code) == code)
            ).scalar_one_or_none()
        if name is None:
            raise InvalidInput(f"no partner '{partner}'; see `bridgebsr partners list`")
        frames = scoped(frames, code)
        scope = f"{code} ({name})"
    views = kpis.build_all(frames)
    facts = kpis.milestone_facts(frames)
    measured = indicators.read(engine, frames)
    specs = indicators.specs(frames)
    if not measured.empty:
        views["indicators"] = indicators.benchmark(measured, specs)
    keys = [str(k) for k in views["forecast"]["case"]]  # at risk, most slipped first
    plans = _plan_rows(engine, keys)
    views["plans"] = plans.drop(columns=["seq"])
    drawn = keys[:GANTT_CASES]
    gates = _plan_rows(engine, drawn, Gate)
    gantt = pd.concat([plans[plans["case"].isin(drawn)].assign(kind="milestone"), gates])
    rank = {key: i for i, key in enumerate(drawn)}
    order = gantt["case"].map(rank).to_numpy() * 100_000 + gantt["seq"].to_numpy() * 2
    order += (gantt["kind"] == "gate").to_numpy()
    return Report(
        as_of=as_of,
        scope=scope,
        views=views,
        gantt=gantt.iloc[order.argsort(kind="stable")].reset_index(drop=True),
        facts=facts,
        actions=needs_action(engine, today=as_of, forecast=views["forecast"], partner=code),
        measured=measured,
        indicator_specs=specs,
        programme=build_programme(frames),
    )


def scoped(frames: kpis.Frames, partner: str) -> kpis.Frames:
    """The frames of the cases whose lead partner is `partner`, and nothing of the others."""
    return kpis.only_cases(frames, frames.cases["partner"].astype(str) == partner)


def _plan_rows(
    engine: Engine, keys: list[str], item: type[Milestone] | type[Gate] = Milestone
) -> pd.DataFrame:
    """The milestones (or gates) of the open cases `keys` (in that order), each with its
    original, agreed and forecast dates."""
    columns = ["case", "seq", "milestone", "title", "status"]
    columns += ["baseline_start", "baseline_due", "planned_start", "planned_due"]
    columns += ["forecast_start", "forecast_due"]
    if not keys:
        frame = pd.DataFrame(columns=columns)
        return frame if item is Milestone else frame.assign(kind=[])
    query = (
        select(
            col(Case.key),
            col(item.seq),
            col(item.key),
            col(item.title),
            col(item.status),
            col(item.baseline_start),
            col(item.baseline_due),
            col(item.planned_start),
            col(item.planned_due),
            col(item.forecast_start),
            col(item.forecast_due),
        )
        .join(Case, col(Case.id) == item.case_id)
        .where(col(Case.status).not_in(list(CLOSED_CASE)))
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    frame["status"] = frame["status"].map(lambda s: getattr(s, "value", s))
    rank = {key: i for i, key in enumerate(keys)}
    frame = frame[frame["case"].isin(rank)]
    order = frame["case"].map(rank).to_numpy() * 100_000 + frame["seq"].to_numpy()
    ordered: pd.DataFrame = frame.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    return ordered if item is Milestone else ordered.assign(kind="gate")


# --- safe cells ------------------------------------------------------------------------------


# --- writing ---------------------------------------------------------------------------------


def write(report: Report, fmt: str, out: Path) -> list[Path]:
    """Write the report as `fmt` at `out` (a folder for CSV); the files written."""
    writers: dict[str, Callable[[Report, Path], list[Path]]] = {
        "csv": sheets.write_csv,
        "xlsx": sheets.write_xlsx,
        "html": write_html,
    }
    if fmt not in writers:
        raise InvalidInput(f"--format '{fmt}' is not one of: {', '.join(FORMATS)}")
    return writers[fmt](report, out)


ACTIONS = {
    "late": (
        "Late items and whose they are",
        "Open milestones of active cases past their due date, most late first.",
        "Nothing is late.",
    ),
    "gates": (
        "Gates waiting for a decision",
        "Open gates, deadline first, with who may still vote and the approvals still needed.",
        "No gate is waiting.",
    ),
    "at_risk": (
        "Cases at risk",
        "Open cases forecast to finish after their target date, most slipped first.",
        "No case is forecast past its target date.",
    ),
    "requests": (
        "Requests for a new date to answer",
        "Owners asking the pilot lead for a new due date, oldest first: accept or decline "
        "with `bridgebsr requests accept|decline ID`.",
        "No request for a new date is waiting.",
    ),
}
_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#1d2733;max-width:1300px}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}"
    "th,td{border:1px solid #cbd2d9;padding:3px 6px;vertical-align:top}"
    "th{background:#eef2f5;vertical-align:bottom}.n{text-align:right}.t{text-align:left}"
    "td{white-space:nowrap}"
    "table.action td:nth-child(3),table.action td:last-child{white-space:normal}"
    "h2.action{background:#fdecea;padding:.3em .5em;border-left:5px solid #c0392b}"
    "h2.programme{background:#eef2f5;padding:.3em .5em;border-left:5px solid #1d5c8c}"
    "table.programme td:nth-child(2){white-space:normal}"
    "td.health{font-weight:600}tr.late td.health{color:#fff;background:#c0392b}"
    "tr.at-risk td.health{background:#f6c744}tr.on-track td.health{color:#fff;background:#2e7d4f}"
    "p.note{color:#52606d;font-size:13px;margin:.2em 0}"
    "img{max-width:100%;display:block;margin:.5em 0 1.5em}"
)


def write_html(report: Report, path: Path, gantts: dict[str, str] | None = None) -> list[Path]:
    """One self-contained page: what needs action this week, then the numbers, then the
    plots (embedded PNG images). `gantts` (case -> PNG) keeps each case's Gantt chart for the
    next page of the same day's reports, where that case's chart is the same."""
    plots = [
        ("On time by pilot, by month of finish", charts.png(charts.trend, report)),
        ("Milestones overdue now, by lead partner", charts.png(charts.overdue, report)),
    ]
    if not report.measured.empty:
        plots.append(
            (
                "Indicators by region: each region's values over time, the target dashed",
                charts.png(charts.indicators, report),
            )
        )
    drawn = {} if gantts is None else gantts
    for case in dict.fromkeys(report.gantt["case"]):
        if case not in drawn:
            drawn[case] = charts.png(charts.gantt, report, case)
        plots.append((f"{case}: original and agreed plan against forecast", drawn[case]))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Bridge-BSR portfolio report, {report.as_of:%d %B %Y}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Bridge-BSR portfolio report: {escape(report.scope)}</h1>",
        f"<p>As of {report.as_of:%A %d %B %Y}. Produced by bridgebsr from the case store and "
        "its audit trail. What needs action comes first, then the work programme, then the "
        "numbers, then the charts.</p>",
        *_actions_and_numbers(report),
    ]
    appendix = {k: v for k, v in report.views.items() if k in APPENDIX}
    parts.append("<h2 id='charts'>Charts</h2>")
    if report.gantt.empty:
        parts.append("<p class='note'>No open case to draw.</p>")
    else:
        parts.append(
            "<p class='note'>One chart per open case, at risk and most slipped first "
            f"(at most {GANTT_CASES}).</p>"
        )
    for title, png in plots:
        alt = escape(title, quote=True)
        parts.append(f"<h3>{escape(title)}</h3>")
        parts.append(f"<img alt='{alt}' src='data:image/png;base64,{png}'>")
    if appendix:
        parts.append("<h2 id='appendix'>Appendix: every item's dates</h2>")
    for name, frame in appendix.items():
        parts += _view(name, frame)
    parts.append("</body></html>")
    with replacing(path, make_folder=True) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return [path]


def summary_html(report: Report, *, rows: int = SUMMARY_ROWS) -> str:
    """What needs action this week and the numbers, as an HTML fragment with its own style
    and without the charts and the appendix (an email's body): each table's first `rows`
    rows, and how many more the full report has."""
    return "\n".join(
        [
            f"<style>{_STYLE}</style>",
            f"<h1>Bridge-BSR weekly report: {escape(report.scope)}</h1>",
            f"<p>As of {report.as_of:%A %d %B %Y}.</p>",
            *_actions_and_numbers(report, rows),
        ]
    )


def _actions_and_numbers(report: Report, rows: int | None = None) -> list[str]:
    """The page's first two parts: what needs action this week, then the KPI tables (the
    appendix's long views left out); with `rows`, each table cut to that many rows."""
    parts = ["<h2 class='action' id='needs-action'>Needs action this week</h2>"]
    for name, (title, note, none) in ACTIONS.items():
        frame = report.actions.get(name)
        count = 0 if frame is None else len(frame)
        parts.append(f"<h3 id='action-{name}'>{escape(title)} ({count})</h3>")
        if frame is None or frame.empty:
            parts.append(f"<p class='note'>{escape(none)}</p>")
            continue
        parts.append(f"<p class='note'>{escape(note)}</p>")
        parts += _cut(frame, rows, "action")
    parts += _programme(report.programme)
    parts.append("<h2 id='numbers'>The numbers</h2>")
    for name, frame in report.views.items():
        if name not in APPENDIX:
            parts += _view(name, frame, rows)
    return parts


def _programme(frame: pd.DataFrame) -> list[str]:
    """The programme view: every activity's open cases by stage, each row coloured by its
    health; never cut (one or a few rows per activity)."""
    parts = [
        "<h2 class='programme' id='programme'>The work programme</h2>",
        "<p class='note'>Every activity with cases, its open cases by current stage. Late: a "
        "milestone is overdue; at risk: the forecast ends after the target date; else on "
        "track.</p>",
    ]
    if frame.empty:
        return [*parts, "<p class='note'>No case yet.</p>"]
    css = {h: h.replace(" ", "-") for h in HEALTH}
    classes = [css.get(str(h), "") for h in frame["health"]]
    shown = frame.drop(columns=[kpis.PILOT])  # the activity's title names it
    return [*parts, labels.html_table(shown, "programme", row_classes=classes, marked="health")]


def _view(name: str, frame: pd.DataFrame, rows: int | None = None) -> list[str]:
    title = labels.VIEWS.get(name, name.replace("_", " ").capitalize())
    return [f"<h3 id='{escape(name, quote=True)}'>{escape(title)}</h3>", *_cut(frame, rows)]


def _cut(frame: pd.DataFrame, rows: int | None, css: str = "numbers") -> list[str]:
    """`frame` as a table, cut to `rows` rows with a note of how many more there are."""
    if rows is None or len(frame) <= rows:
        return [_table(frame, css)]
    more = f"{len(frame) - rows} more row(s) in the full report and the workbook."
    return [_table(frame.head(rows), css), f"<p class='note'>{more}</p>"]


def _table(frame: pd.DataFrame, css: str) -> str:
    return labels.html_table(sheets.flat(frame), css)
