"""The forecast of every open case as of `as_of`: each template's open cases rescheduled at
once by `schedule.schedule_many`, the planner's rule over columns of dates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from bridgebsr.reports.frames import (
    COUNTRY,
    FINISHED,
    NAT,
    PARTNER,
    PILOT,
    BoolArray,
    DayArray,
    Frames,
    IntArray,
    calendar_days,
    case_columns,
    codes_of,
    day_array,
    is_open,
    positions_of,
    workdays,
)
from bridgebsr.rules.schedule import Link, Step, schedule_many, step_order
from models import GateSpec, GateStatus, MilestoneSpec, Template


@dataclass(frozen=True)
class _Column:
    """One item of a template as the forecast places it: its step, and where its rows are."""

    step: Step
    gate: bool
    seq: int  # its position among the template's milestones, or gates

    @property
    def key(self) -> str:
        return self.step.key


def _columns(template: Template) -> list[_Column]:
    """The template's milestones then gates as the planner's items (`planning.items`), in
    the planner's dependency order (`schedule.step_order`)."""
    specs: list[tuple[int, MilestoneSpec | GateSpec]] = [
        *enumerate(template.milestones),
        *enumerate(template.gates),
    ]
    listed: list[_Column] = []
    for seq, spec in specs:
        days = template.day_kind(spec)
        gate = isinstance(spec, GateSpec)
        duration = spec.deadline if isinstance(spec, GateSpec) else spec.duration
        after = tuple(Link(d.key, d.lag, d.days or days) for d in spec.after)
        listed.append(_Column(Step(spec.key, duration, days, after), gate, seq))
    return [listed[p] for p in step_order([c.step for c in listed])]


@dataclass(frozen=True)
class _Rescheduled:
    """One template's open cases rescheduled: a row per case, a column per item."""

    rows: IntArray  # rows of the cases in `frames.cases`
    nodes: list[_Column]
    begin: DayArray
    due: DayArray
    critical: BoolArray
    finished: BoolArray


def _rescheduled(frames: Frames) -> list[_Rescheduled]:
    def make() -> list[_Rescheduled]:
        open_rows = is_open(frames.cases["status"])
        tpl = frames.cases["tpl"].to_numpy()
        return [
            _reschedule(frames, template, np.flatnonzero(open_rows & (tpl == row)))
            for row, template in enumerate(frames.templates.values())
        ]

    return frames.derived("rescheduled", make)


_ITEM_COLUMNS: Final = [
    "case_id",
    "case",
    "item",
    "gate",
    "forecast_start",
    "forecast_due",
    "critical",
    "finished",
]


def forecast_items(frames: Frames) -> pd.DataFrame:
    """Every milestone and gate of every open case, rescheduled as of `as_of`.

    Columns: case_id, case, item, gate (bool), forecast_start, forecast_due, critical (on the
    path that drives the case's end), finished.
    """
    cases = frames.cases
    parts = [
        pd.DataFrame(
            {
                "case_id": np.repeat(cases.index.to_numpy()[r.rows], len(r.nodes)),
                "case": np.repeat(cases["key"].to_numpy()[r.rows], len(r.nodes)),
                "item": np.tile(np.array([n.key for n in r.nodes], dtype=object), len(r.rows)),
                "gate": np.tile(np.array([n.gate for n in r.nodes], dtype=bool), len(r.rows)),
                "forecast_start": r.begin.reshape(-1).astype("datetime64[s]"),
                "forecast_due": r.due.reshape(-1).astype("datetime64[s]"),
                "critical": r.critical.reshape(-1),
                "finished": r.finished.reshape(-1),
            }
        )
        for r in _rescheduled(frames)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_ITEM_COLUMNS)


def _reschedule(frames: Frames, template: Template, rows: IntArray) -> _Rescheduled:
    """`schedule.schedule(items, start, today=as_of)` for the open cases of one template at
    once (`schedule.schedule_many`): one column of dates per item, in the planner's order.
    A case missing one of its template's items has no forecast."""
    nodes = _columns(template)
    n_cases, n_nodes = len(rows), len(nodes)
    cases = frames.cases
    slot = np.full(len(cases), -1, dtype=np.int64)  # case row in `frames.cases` -> row here
    slot[rows] = np.arange(n_cases)
    started = np.full((n_cases, n_nodes), NAT)
    finished = np.full((n_cases, n_nodes), NAT)
    not_before, due_not_before = np.full((n_cases, n_nodes), NAT), np.full((n_cases, n_nodes), NAT)
    calendar = np.full((n_cases, n_nodes), -1, dtype=np.int64)
    present = np.zeros((n_cases, n_nodes), dtype=bool)
    case_calendar = codes_of(cases["calendar"])[rows]
    for part in ("milestones", "gates") if n_cases else ():
        items = frames.milestones if part == "milestones" else frames.gates
        columns = np.full(max((n.seq for n in nodes), default=-1) + 2, -1, dtype=np.int64)
        for j, node in enumerate(nodes):
            if node.gate == (part == "gates"):
                columns[node.seq] = j
        positions = positions_of(frames, part)
        r = np.where(positions >= 0, slot[np.maximum(positions, 0)], -1)
        seq = items["seq"].to_numpy()
        c = columns[np.where((seq >= 0) & (seq < len(columns) - 1), seq, len(columns) - 1)]
        keep = (r >= 0) & (c >= 0)
        r, c = r[keep], c[keep]
        if part == "gates":
            start = day_array(items["opened_on"])[keep]
            end = day_array(items["decided_on"])[keep]
            done = (items["status"] == GateStatus.APPROVED.value).to_numpy()[keep]
            calendar[r, c] = case_calendar[r]
        else:
            start = day_array(items["started_on"])[keep]
            end = day_array(items["finished_on"])[keep]
            done = items["status"].isin([s.value for s in FINISHED]).to_numpy()[keep]
            calendar[r, c] = codes_of(items["calendar"])[keep]
        started[r, c] = start
        finished[r, c] = np.where(done, end, NAT)
        floors = _agreed_floors(items, part == "gates")
        not_before[r, c], due_not_before[r, c] = floors[0][keep], floors[1][keep]
        present[r, c] = True
    slots = schedule_many(
        [node.step for node in nodes],
        day_array(cases["start_date"])[rows],
        calendar,
        workdays(frames),
        today=frames.as_of,
        started=started,
        finished=finished,
        not_before=not_before,
        due_not_before=due_not_before,
    )
    valid: BoolArray = np.all(present, axis=1)
    due = slots.due.copy()
    due[~valid] = NAT
    critical = slots.critical & valid[:, None]
    return _Rescheduled(rows, nodes, slots.start, due, critical, ~np.isnat(finished))


def _agreed_floors(items: pd.DataFrame, gates: bool) -> tuple[DayArray, DayArray]:
    """`planning.items`' agreed floors of the forecast, per row of `items`: an ad-hoc
    milestone's agreed start, and an agreed due date moved off the original baseline."""
    planned = day_array(items["planned_due"])
    due = np.where(planned != day_array(items["baseline_due"]), planned, NAT)
    if gates:
        return np.full(len(items), NAT), due
    return np.where(items["adhoc"].to_numpy(), day_array(items["planned_start"]), NAT), due


def _row_max(due: DayArray) -> DayArray:
    """The latest date of each row (NaT when the row has a missing date)."""
    if due.shape[1] == 0:
        return np.full(due.shape[0], NAT)
    return cast(DayArray, due.max(axis=1))


def _driving(r: _Rescheduled) -> npt.NDArray[np.object_]:
    """The first unfinished item on each case's critical path (None when all is finished)."""
    chase = r.critical & ~r.finished
    keys = np.array([n.key for n in r.nodes] + [None], dtype=object)
    first = np.where(chase.any(axis=1), chase.argmax(axis=1), len(r.nodes))
    return cast(npt.NDArray[np.object_], keys[first])


def build_forecast(frames: Frames) -> pd.DataFrame:
    """Each open case's forecast completion as of `as_of`; the cases at risk first, the
    largest slip first.

    Columns: case, pilot, partner, country, status, current_stage, target_date,
    `forecast_date` (the end of its critical path, rescheduled as of `as_of`),
    `slip_working_days` (target to forecast, in the case's calendar, signed),
    `slip_calendar_days`, `at_risk` (forecast after target), `driving_item` (the first
    unfinished item on the critical path: the one to chase), `stored_forecast_date` (as the
    last change to the case left it).
    """
    cases = frames.cases
    parts = _rescheduled(frames)
    rows = np.concatenate([r.rows for r in parts]) if parts else np.zeros(0, np.int64)
    end = np.concatenate([_row_max(r.due) for r in parts]) if parts else np.zeros(0, "M8[D]")
    driving = np.concatenate([_driving(r) for r in parts]) if parts else np.zeros(0, object)
    out = case_columns(
        frames,
        rows,
        ["key", PILOT, PARTNER, COUNTRY, "status", "current_stage", "target_date"],
    ).rename(columns={"key": "case"})
    for column in (PILOT, PARTNER, COUNTRY, "status"):
        out[column] = out[column].astype(str)
    target, forecast = day_array(out["target_date"]), end
    out["forecast_date"] = forecast.astype("datetime64[s]")
    work = workdays(frames)
    calendars = codes_of(cases["calendar"])[rows]
    out["slip_working_days"] = work.between(target, forecast, calendars)
    out["slip_calendar_days"] = calendar_days(target, forecast)
    out["at_risk"] = forecast > target
    out["driving_item"] = driving
    out["stored_forecast_date"] = cases["forecast_date"].to_numpy()[rows]
    slip = np.nan_to_num(out["slip_working_days"].to_numpy(), nan=-np.inf)
    order = np.lexsort((cases.index.to_numpy()[rows], -slip, ~out["at_risk"].to_numpy()))
    return out.take(order).reset_index(drop=True)
