"""The forecast of every open case as of `as_of`: each template's open cases rescheduled at
once by `schedule.schedule_many`, the planner's rule over columns of dates. A case with
milestones added to it alone (`Frames.added`) is rescheduled with its own items: its
template's and those, with the other cases of its template that added the same."""

from __future__ import annotations

from collections.abc import Sequence
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
    AddedItem,
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


def _columns(template: Template, added: Sequence[AddedItem] = ()) -> list[_Column]:
    """The template's milestones, the case's added ones, then the template's gates as the
    planner's items (`planning.items`), in the planner's dependency order
    (`schedule.step_order`)."""
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
    at = len(template.milestones)  # the planner's order: milestones, then gates
    listed[at:at] = [_Column(item.step, False, item.seq) for item in added]
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
        parts = _items(frames)
        own = _with_added(frames)
        # Cases with added items are rescheduled in groups of their own: only their rows.
        theirs = parts if own is None else _of_cases(parts, own)
        out = []
        for row, template in enumerate(frames.templates.values()):
            rows = np.flatnonzero(open_rows & (tpl == row))
            if own is not None:
                for added, members in _by_added(frames, rows[own[rows]]).items():
                    out.append(_reschedule(frames, _columns(template, added), members, theirs))
                rows = rows[~own[rows]]
            out.append(_reschedule(frames, _columns(template), rows, parts))
        return out

    return frames.derived("rescheduled", make)


def _with_added(frames: Frames) -> BoolArray | None:
    """Which cases have milestones added to them alone (None: no case has)."""
    if not frames.added:
        return None
    return np.isin(frames.cases.index.to_numpy(), np.fromiter(frames.added, dtype=np.int64))


def _by_added(frames: Frames, rows: IntArray) -> dict[tuple[AddedItem, ...], IntArray]:
    """The cases at `rows`, grouped by the items added to them."""
    ids = frames.cases.index.to_numpy()
    groups: dict[tuple[AddedItem, ...], list[int]] = {}
    for row in rows:
        groups.setdefault(frames.added[int(ids[row])], []).append(int(row))
    return {added: np.asarray(members, dtype=np.int64) for added, members in groups.items()}


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


@dataclass(frozen=True)
class _Items:
    """The milestones (or gates) as the forecast reads them: the row of each one's case in
    `frames.cases`, its seq, its actual start and finish (NaT: none; a finish only when
    finished), its calendar code (None: its case's), and the agreed floors of its forecast
    (`_agreed_floors`: NaT where none)."""

    positions: IntArray
    seq: IntArray
    start: DayArray
    finish: DayArray
    calendar: IntArray | None
    not_before: DayArray
    due_not_before: DayArray

    def only(self, rows: IntArray) -> _Items:
        calendar = None if self.calendar is None else self.calendar[rows]
        return _Items(
            self.positions[rows],
            self.seq[rows],
            self.start[rows],
            self.finish[rows],
            calendar,
            self.not_before[rows],
            self.due_not_before[rows],
        )


def _items(frames: Frames) -> tuple[_Items, _Items]:
    """The milestones and the gates as the forecast reads them."""
    m, g = frames.milestones, frames.gates
    m_done = m["status"].isin([s.value for s in FINISHED]).to_numpy()
    g_done = (g["status"] == GateStatus.APPROVED.value).to_numpy()
    return (
        _Items(
            positions_of(frames, "milestones"),
            m["seq"].to_numpy(),
            day_array(m["started_on"]),
            np.where(m_done, day_array(m["finished_on"]), NAT),
            codes_of(m["calendar"]),
            *_agreed_floors(m, gates=False),
        ),
        _Items(
            positions_of(frames, "gates"),
            g["seq"].to_numpy(),
            day_array(g["opened_on"]),
            np.where(g_done, day_array(g["decided_on"]), NAT),
            None,
            *_agreed_floors(g, gates=True),
        ),
    )


def _of_cases(parts: tuple[_Items, _Items], cases: BoolArray) -> tuple[_Items, _Items]:
    """Only the items of the cases at `cases` (a mask over `frames.cases`)."""
    m, g = (p.only(np.flatnonzero((p.positions >= 0) & cases[p.positions])) for p in parts)
    return m, g


def _reschedule(
    frames: Frames, nodes: list[_Column], rows: IntArray, parts: tuple[_Items, _Items]
) -> _Rescheduled:
    """`schedule.schedule(items, start, today=as_of)` for open cases of the same items
    (`nodes`) at once (`schedule.schedule_many`): one column of dates per item, in the
    planner's order. A case missing one of its items has no forecast. `parts`: the
    milestones and gates (`_items`), at least those of these cases."""
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
    for gate, items in enumerate(parts) if n_cases else ():
        columns = np.full(max((n.seq for n in nodes), default=-1) + 2, -1, dtype=np.int64)
        for j, node in enumerate(nodes):
            if node.gate == bool(gate):
                columns[node.seq] = j
        positions, seq = items.positions, items.seq
        r = np.where(positions >= 0, slot[np.maximum(positions, 0)], -1)
        c = columns[np.where((seq >= 0) & (seq < len(columns) - 1), seq, len(columns) - 1)]
        keep = (r >= 0) & (c >= 0)
        r, c = r[keep], c[keep]
        calendar[r, c] = case_calendar[r] if items.calendar is None else items.calendar[keep]
        started[r, c] = items.start[keep]
        finished[r, c] = items.finish[keep]
        not_before[r, c] = items.not_before[keep]
        due_not_before[r, c] = items.due_not_before[keep]
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
    `slip_calendar_days`, `at_risk` (forecast after target while an item is unfinished: a
    case whose items are all finished has its end behind it and only waits to be closed),
    `driving_item` (the first unfinished item on the critical path: the one to chase),
    `stored_forecast_date` (as the last change to the case left it).
    """
    cases = frames.cases
    parts = _rescheduled(frames)
    rows = np.concatenate([r.rows for r in parts]) if parts else np.zeros(0, np.int64)
    end = np.concatenate([_row_max(r.due) for r in parts]) if parts else np.zeros(0, "M8[D]")
    driving = np.concatenate([_driving(r) for r in parts]) if parts else np.zeros(0, object)
    open_work = (
        np.concatenate([~r.finished.all(axis=1) for r in parts]) if parts else np.zeros(0, bool)
    )
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
    out["at_risk"] = (forecast > target) & open_work
    out["driving_item"] = driving
    out["stored_forecast_date"] = cases["forecast_date"].to_numpy()[rows]
    slip = np.nan_to_num(out["slip_working_days"].to_numpy(), nan=-np.inf)
    order = np.lexsort((cases.index.to_numpy()[rows], -slip, ~out["at_risk"].to_numpy()))
    return out.take(order).reset_index(drop=True)
