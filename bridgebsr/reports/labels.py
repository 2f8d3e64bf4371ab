"""How the report shows its columns to people: one table of column -> (label, format), used by
the HTML page and the XLSX workbook (CSV files keep the machine names and values).

Formats: `int` (a count: no decimals), `num` (days: whole numbers without decimals, else one
decimal), `pct` (one decimal and `%`), `date` (YYYY-MM-DD), `month` (e.g. `Mar 2026`),
`yesno` (yes/no) and `text`. A column not in the table is labelled from its name
(`done_late` -> "Done late") and formatted by its dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from html import escape
from typing import Any, Final

import pandas as pd

COLUMNS: Final[dict[str, tuple[str, str]]] = {
    "case": ("Case", "text"),
    "pilot": ("Pilot", "text"),
    "partner": ("Lead partner", "text"),
    "country": ("Country", "text"),
    "status": ("Status", "text"),
    "case_status": ("Case status", "text"),
    "stage": ("Stage", "text"),
    "current_stage": ("Current stage", "text"),
    "activity": ("Activity", "text"),
    "open_cases": ("Open cases", "int"),
    "late_cases": ("Late", "int"),
    "at_risk_cases": ("At risk", "int"),
    "on_track_cases": ("On track", "int"),
    "health": ("Health", "text"),
    "which": ("Cases, worst first", "text"),
    "milestone": ("Milestone", "text"),
    "item": ("Item", "text"),
    "title": ("Title", "text"),
    "gate": ("Gate", "text"),
    "owner": ("Owner", "text"),
    "deciders": ("Who may decide", "text"),
    "when": ("When", "text"),
    "service_type": ("Service type", "text"),
    "driving_item": ("Driving item", "text"),
    "breach_state": ("Breach", "text"),
    "month": ("Month", "month"),
    "breach_month": ("Month of breach", "month"),
    "cases": ("Cases", "int"),
    "open": ("Open", "int"),
    "active": ("Active", "int"),
    "on_hold": ("On hold", "int"),
    "completed": ("Completed", "int"),
    "cancelled": ("Cancelled", "int"),
    "milestones": ("Milestones", "int"),
    "done": ("Done", "int"),
    "waived": ("Waived", "int"),
    "done_on_time": ("Done on time", "int"),
    "done_late": ("Done late", "int"),
    "done_on_time_baseline": ("Done on time (original plan)", "int"),
    "on_time_pct": ("On time", "pct"),
    "on_time_baseline_pct": ("On time (original plan)", "pct"),
    "median_slip_working_days": ("Median slip (working days)", "num"),
    "p90_slip_working_days": ("90th pct. slip (working days)", "num"),
    "overdue_now": ("Overdue now", "int"),
    "stage_order": ("Stage no.", "int"),
    "passed": ("Passed", "int"),
    "median_working_days": ("Median (working days)", "num"),
    "p90_working_days": ("90th pct. (working days)", "num"),
    "mean_working_days": ("Mean (working days)", "num"),
    "median_calendar_days": ("Median (calendar days)", "num"),
    "in_stage_now": ("In stage now", "int"),
    "median_age_working_days": ("Median time in stage so far (working days)", "num"),
    "rounds": ("Rounds", "int"),
    "decided": ("Decided", "int"),
    "approved": ("Approved", "int"),
    "rejected": ("Rejected", "int"),
    "decided_after_deadline": ("Decided after deadline", "int"),
    "median_decision_working_days": ("Median decision (working days)", "num"),
    "p90_decision_working_days": ("90th pct. decision (working days)", "num"),
    "median_decision_calendar_days": ("Median decision (calendar days)", "num"),
    "waiting_now": ("Waiting now", "int"),
    "median_waiting_working_days": ("Median wait so far (working days)", "num"),
    "baseline_start": ("Original start", "date"),
    "baseline_due": ("Original due", "date"),
    "planned_start": ("Agreed start", "date"),
    "planned_due": ("Agreed due", "date"),
    "sla_due": ("Due (when it fell due)", "date"),
    "forecast_start": ("Forecast start", "date"),
    "forecast_due": ("Forecast due", "date"),
    "finished_on": ("Finished on", "date"),
    "due": ("Due", "date"),
    "deadline": ("Deadline", "date"),
    "target_date": ("Target date", "date"),
    "forecast_date": ("Forecast finish", "date"),
    "stored_forecast_date": ("Forecast at last change", "date"),
    "working_days_late": ("Working days late", "num"),
    "days_late": ("Days late", "int"),
    "approvals_needed": ("Approvals still needed", "int"),
    "asked_by": ("Asked by", "text"),
    "current_due": ("Due now", "date"),
    "requested_due": ("Due date asked for", "date"),
    "reason": ("Reason", "text"),
    "age_days": ("Waiting (days)", "int"),
    "leads": ("Who answers", "text"),
    "slip_working_days": ("Slip (working days)", "num"),
    "slip_calendar_days": ("Slip (calendar days)", "num"),
    "at_risk": ("At risk", "yesno"),
    "breaches": ("Breaches", "int"),
    "finished_late": ("Finished late", "int"),
    "still_open": ("Still open", "int"),
    "open_when_closed": ("Open when case closed", "int"),
    "median_working_days_late": ("Median working days late", "num"),
    "max_working_days_late": ("Most working days late", "num"),
    "requests": ("Requests", "int"),
    "responded": ("Responded", "int"),
    "median_first_response_working_days": ("Median first response (working days)", "num"),
    "p90_first_response_working_days": ("90th pct. first response (working days)", "num"),
    "median_first_response_calendar_days": ("Median first response (calendar days)", "num"),
    "median_delivery_working_days": ("Median delivery (working days)", "num"),
    "p90_delivery_working_days": ("90th pct. delivery (working days)", "num"),
    "median_delivery_calendar_days": ("Median delivery (calendar days)", "num"),
}

VIEWS: Final[dict[str, str]] = {
    "cases_by_pilot": "Cases by pilot",
    "cases_by_partner": "Cases by lead partner",
    "cases_by_country": "Cases by country",
    "milestones_by_pilot": "Milestones by pilot",
    "milestones_by_partner": "Milestones by lead partner",
    "milestones_by_country": "Milestones by country",
    "stage_cycle_times": "Time spent in each stage",
    "gate_times": "Gate decision times",
    "sla_breaches": "Milestones that missed their due date",
    "sla_breaches_by_month": "Missed due dates by month",
    "sme_service": "Shared SME service",
    "case_fields": "Case fields",
    "forecast": "Forecast of every open case",
    "indicators": "Indicators by region: baseline, latest and target",
    "plans": "Plans of the open cases: original, agreed, forecast",
    "programme": "The work programme: open cases by activity and stage",
}

# Sheet names people read in the workbook (Excel allows 31 characters and none of : \\ / ? * [ ]).
SHEETS: Final[dict[str, str]] = {
    "about": "About",
    "action_late": "Needs action - late items",
    "action_gates": "Needs action - gates waiting",
    "action_at_risk": "Needs action - cases at risk",
    "action_requests": "Needs action - new dates asked",
    "milestones_by_partner": "Milestones by lead partner",
    "stage_cycle_times": "Time in each stage",
    "sla_breaches": "Missed due dates",
    "forecast": "Forecast",
    "plans": "Plans",
    "indicators": "Indicators by region",
    "indicators_chart": "Indicators chart",
}
_NOT_IN_SHEET_NAMES = str.maketrans(dict.fromkeys(":\\/?*[]", " "))

XLSX_FORMATS: Final[dict[str, str]] = {
    "int": "0",
    "num": "General",
    "pct": '0.0"%"',
    "date": "yyyy-mm-dd",
}


def label(column: str, names: dict[str, str] | None = None) -> str:
    """The header people read for `column`: `names` first (a view's own, such as the labels
    its template gives a case field: `frame.attrs["labels"]`), then the table's."""
    if names and column in names:
        return names[column]
    known = COLUMNS.get(column)
    if known:
        return known[0]
    words = column.replace("_pct", " %").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def sheet(name: str, taken: set[str]) -> str:
    """The workbook sheet people read for view `name`: its short name, else the view's
    title, else its name in words; at most 31 characters, none Excel refuses, and not one of
    `taken` (names compare without case, as Excel does)."""
    title = SHEETS.get(name) or VIEWS.get(name) or label(name)
    title = " ".join(title.translate(_NOT_IN_SHEET_NAMES).split())[:31].rstrip()
    found, n = title, 2
    while found.casefold() in {t.casefold() for t in taken}:
        suffix = f" ({n})"
        found, n = title[: 31 - len(suffix)].rstrip() + suffix, n + 1
    taken.add(found)
    return found


def kind(column: str, values: pd.Series[Any]) -> str:
    """The format of `column`: the table's, else one read from its values."""
    known = COLUMNS.get(column)
    if known:
        return known[1]
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "yesno"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "num"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    if isinstance(dtype, pd.PeriodDtype):
        return "month"
    return "text"


def shown(value: Any, fmt: str) -> str:
    """`value` as text in format `fmt`; empty for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if fmt == "yesno" and isinstance(value, (bool, int)):
        return "yes" if value else "no"
    if fmt in ("int", "num", "pct") and isinstance(value, (int, float)):
        number = float(value)
        text = f"{number:.0f}" if number.is_integer() else f"{number:.1f}"
        if fmt == "pct":
            return f"{number:.1f}%"
        return f"{number:.0f}" if fmt == "int" else text
    if fmt == "date" and isinstance(value, (date, datetime, pd.Timestamp)):
        return f"{value:%Y-%m-%d}"
    if fmt == "month":
        try:
            period = value if isinstance(value, pd.Period) else pd.Period(str(value), freq="M")
        except ValueError:
            return str(value)
        return f"{period:%b %Y}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt in ("int", "num") and isinstance(value, Decimal):
        return str(value)  # a decimal field's sum: every digit kept
    return str(value)


NUMERIC: Final = ("int", "num", "pct")


def html_table(
    frame: pd.DataFrame,
    css: str,
    row_classes: Sequence[str] | None = None,
    marked: str | None = None,
) -> str:
    """`frame` (index as columns) as an HTML table people read: labelled headers, formatted
    and escaped cells, numbers right-aligned and text left-aligned; with `row_classes`, each
    row's class (the rows of `frame`, in order), and the cells of column `marked` get that
    column's name as a class too, so a style can colour them by their row."""
    flat = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
    formats = [kind(str(c), flat[c]) for c in flat.columns]
    align = ["n" if f in NUMERIC else "t" for f in formats]
    names = frame.attrs.get("labels")
    head = "".join(
        f"<th class='{a}'>{escape(label(str(c), names))}</th>"
        for c, a in zip(flat.columns, align, strict=True)
    )
    cell_css = [f"{a} {c}" if c == marked else a for c, a in zip(flat.columns, align, strict=True)]
    rows = []
    columns = [flat[c].astype(object).tolist() for c in flat.columns]
    for i, values in enumerate(zip(*columns, strict=True)):
        cells = "".join(
            f"<td class='{escape(a, quote=True)}'>{escape(shown(v, f))}</td>"
            for v, f, a in zip(values, formats, cell_css, strict=True)
        )
        row_css = f" class='{escape(row_classes[i], quote=True)}'" if row_classes else ""
        rows.append(f"<tr{row_css}>{cells}</tr>")
    body = "\n".join(rows)
    return (
        f"<table class='{css}'>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"
    )
