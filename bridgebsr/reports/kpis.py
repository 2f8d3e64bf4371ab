"""Portfolio KPIs as pandas DataFrames, from the case store and its audit trail.

`load` (`reports.load`, through `reports.readers`) is the only code that touches the
database: a handful of set-based SELECTs of the columns the KPIs need, in one snapshot, into
`Frames`. Every `build_*` function takes the `Frames` and returns a new DataFrame, changing
nothing, vectorised with pandas and numpy; derived tables that several builds share are
computed once per `Frames`. One module per view: `delivery` (case counts, milestones, SLA
breaches), `stages`, `gates`, `sme`, `forecast`; this module names them all and builds them
all at once (`build_all`).

Dimensions (`by`): `pilot` is the case's kind, `partner` the code of its lead partner,
`country` the case's country (its owner's country when it was opened). Any non-empty
combination of the three may be asked for. Tables by these dimensions have one row per group
that has cases, so they line up (counts 0, medians and percentages NaN where nothing was
measured).

Rules, decided once here:

- Open cases are `draft`, `active` and `on_hold`; closed ones `completed` and `cancelled`.
  Holding a case does not stop its clock: its milestones still become overdue and breached
  (as `bridgebsr case list --overdue` counts them).
- Working days are those of `bridgebsr.rules.calendars` (Monday to Friday minus public
  holidays), counted as `WorkCalendar.working_days_between` does: the days in (start, end],
  negative when end is before start; `calendars.Workdays` counts them for many days at
  once. A milestone is counted in its own calendar, the one the planner schedules it in
  (`calendars.calendar_of`): its owner's country (and state, when the owner works at a
  partner in that country), else the case's. Cases, stages, gates and the SME figures use
  the case's calendar (its country and the lead partner's state). Days stamped from
  audit-event times are taken in the lead partner's time zone, as the use cases stamp them.
- Which plan: a milestone has three: the original (set at open), the agreed plan in force
  (moved by `milestone reschedule` and `case rebaseline`) and the forecast. It is measured
  against the agreed due date in force on the day it fell due (`planning.due_in_force`,
  from `plan_changes`): agreed later before that day, the new date counts; moved once it was
  already late, the lateness stands. "Planned due date" below means that date. On time
  against the original due date is a second column (`done_on_time_baseline`,
  `on_time_baseline_pct`); overdue now is against the agreed plan in force today.
- Slip of a milestone: working days from its planned due date to the day it was done, signed
  (done early is negative). On time: done on or before the planned due date. Medians and p90s
  interpolate linearly (numpy's default).
- Waived milestones count as finished (for stages, forecasts and breaches) but are left out
  of done, on time, on-time % and slips: nothing was delivered.
- Cancelled cases count in the case counts, the SME request counts, the gate decisions and
  the SLA breaches (what happened before the cancellation still happened), and are left out
  of the milestone KPIs, slips, overdue, stage cycle times and forecasts.
- Overdue now: an open milestone (planned, in progress, blocked) of an open case whose planned
  due date is before `as_of` (due today is not overdue yet).
- SLA breach, after the fact: a milestone is breached when it was still unfinished after its
  planned due date: it was finished (done or waived) after that date, or it is still open and
  the date is before `as_of`, or it was open when its case was closed after that date. A
  later move of its agreed date does not change that date, so a milestone once late stays
  breached whatever happens next: done now, rescheduled, reopened by a rejected gate, or its
  case cancelled. A
  breach belongs to the month of its first late day (the day after the due date): late in
  March and done in April is a March breach. The recorded finish date is the fact: a
  completion entered late but dated (`--on`) on or before the due date is no breach.
- Stages: the audit trail has no "stage changed" event; the current stage is by definition
  the first stage, in template order, with unfinished work (`planning.current_stage`). So a
  stage is left on the latest finish (milestone done or waived, gate approved) among its
  items and those of every earlier stage, once all are finished, and entered when the stage
  before it was left (the first stage on the case's start date). Rework after a rejected gate
  counts in the stages it reopened.
- Gates: one row per gate round, so rounds sent back for rework still count: the current
  round from the gate's row, the earlier ones from the audit trail (`gate.open` to the
  `gate.reject` of the same round). Decision time runs from the day the gate opened to the
  day it was decided.
- SME service type: the case field `service_type` of the shared-sme-service template (one of
  `ip`, `financing`, `eu-programme`, `partnering`), given at open, with `case set`, or
  captured when `triage-decision` completes (`--field service_type=financing`). A request
  without one is `untriaged` until its triage is done, `unspecified` after.
- Case fields (`fields`): any choice field groups cases (`build_field_counts`: cases per
  pilot and value); integer and decimal fields are summed per pilot, partner and country
  (`build_field_totals`, decimals exactly); `case_fields` lists every case with its values.
- Forecast: every open case is rescheduled as of `as_of` with the planner's own rule
  (`bridgebsr.rules.schedule`: actual starts and finishes count, nothing unfinished is due
  before `as_of`, finish-to-start links with lags, each item in its own calendar), all
  cases of a template version at once (`schedule.schedule_many`). The stored
  `forecast_date` is only as fresh as the last change to a case; this one is as of `as_of`.

`load` reads the store as it stands: `as_of` is the day the report speaks for and is expected
not to be before the latest change recorded.
"""

from __future__ import annotations

import pandas as pd

from bridgebsr.reports.delivery import (
    build_case_counts,
    build_milestone_kpis,
    build_sla_breaches,
    build_sla_breaches_by_month,
    milestone_facts,
)
from bridgebsr.reports.fields import (
    build_case_fields,
    build_field_counts,
    build_field_totals,
    choice_fields,
    number_fields,
)
from bridgebsr.reports.forecast import build_forecast, forecast_items
from bridgebsr.reports.frames import (
    BREACH_STATES,
    CASE_DIMENSIONS,
    COUNTRY,
    OUTCOMES,
    PARTNER,
    PILOT,
    SERVICE_TYPE,
    SME_KIND,
    TRIAGE_MILESTONE,
    UNSPECIFIED,
    UNTRIAGED,
    Frames,
    only_cases,
)
from bridgebsr.reports.gates import build_gate_times, gate_rounds
from bridgebsr.reports.load import load
from bridgebsr.reports.sme import build_sme_service, service_type, sme_requests
from bridgebsr.reports.stages import build_stage_cycle_times, stage_spans

__all__ = [
    "BREACH_STATES",
    "CASE_DIMENSIONS",
    "COUNTRY",
    "OUTCOMES",
    "PARTNER",
    "PILOT",
    "SERVICE_TYPE",
    "SME_KIND",
    "TRIAGE_MILESTONE",
    "UNSPECIFIED",
    "UNTRIAGED",
    "Frames",
    "build_all",
    "build_case_counts",
    "build_case_fields",
    "build_field_counts",
    "build_field_totals",
    "build_forecast",
    "build_gate_times",
    "build_milestone_kpis",
    "build_sla_breaches",
    "build_sla_breaches_by_month",
    "build_sme_service",
    "build_stage_cycle_times",
    "forecast_items",
    "gate_rounds",
    "load",
    "milestone_facts",
    "only_cases",
    "service_type",
    "sme_requests",
    "stage_spans",
]


def build_all(frames: Frames) -> dict[str, pd.DataFrame]:
    """Every KPI table of the portfolio, by name."""
    tables: dict[str, pd.DataFrame] = {}
    for dim in CASE_DIMENSIONS:
        tables[f"cases_by_{dim}"] = build_case_counts(frames, (dim,))
        tables[f"milestones_by_{dim}"] = build_milestone_kpis(frames, (dim,))
    tables["stage_cycle_times"] = build_stage_cycle_times(frames)
    tables["gate_times"] = build_gate_times(frames)
    tables["sla_breaches"] = build_sla_breaches(frames)
    tables["sla_breaches_by_month"] = build_sla_breaches_by_month(frames)
    tables["sme_service"] = build_sme_service(frames)
    for name in choice_fields(frames):
        tables[f"cases_by_{name}"] = build_field_counts(frames, name)
    if number_fields(frames):
        for dim in CASE_DIMENSIONS:
            tables[f"field_totals_by_{dim}"] = build_field_totals(frames, (dim,))
    tables["case_fields"] = build_case_fields(frames)
    tables["forecast"] = build_forecast(frames)
    return tables
