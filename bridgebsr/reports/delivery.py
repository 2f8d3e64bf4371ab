"""Cases and milestones: case counts, milestone delivery (on time, slips, overdue) and SLA
breaches after the fact, by group (see the rules in `kpis`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bridgebsr.reports.frames import (
    BREACH_STATES,
    COUNTRY,
    NAT,
    PARTNER,
    PILOT,
    BoolArray,
    FloatArray,
    Frames,
    as_of_day,
    case_columns,
    categorical,
    codes_of,
    day_array,
    dims_of,
    is_open,
    positions_of,
    workdays,
)
from bridgebsr.reports.groups import Grouping, by_groups, group_keys
from models import CaseStatus, MilestoneStatus


def build_case_counts(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Cases per group by status.

    Columns: the `by` dimensions, then `cases` (all), `open` (draft, active or on hold),
    `active`, `on_hold`, `completed`, `cancelled`.
    """
    dims = dims_of(by)
    cases = frames.cases
    status = cases["status"]
    groups = Grouping(group_keys(cases, dims))
    counts = groups.table(
        {
            "cases": groups.count(),
            "open": groups.count(is_open(status)),
            "active": groups.count(status == CaseStatus.ACTIVE.value),
            "on_hold": groups.count(status == CaseStatus.ON_HOLD.value),
            "completed": groups.count(status == CaseStatus.COMPLETED.value),
            "cancelled": groups.count(status == CaseStatus.CANCELLED.value),
        }
    )
    return by_groups(frames, dims, counts, list(counts.columns))


# --- milestones: on time, slips, overdue, breaches -------------------------------------------


def milestone_facts(frames: Frames) -> pd.DataFrame:
    """One row per milestone, with its case's dimensions and what the KPIs measure on it.

    Columns: case_id, case (key), pilot, partner, country, case_status, milestone, stage,
    status, planned_due, finished_on, `done`, `waived`, `open` (not finished),
    `slip_working_days` (done ones), `on_time` (done on or before the planned due date),
    `overdue_now`, `breached`, `breach_month` (Period: month of the first late day),
    `working_days_late` (breached ones: to the finish, to `as_of`, or to the case's close),
    `breach_state` ("finished late", "open", "open when case closed").
    """
    return frames.derived("milestone_facts", lambda: _milestone_facts(frames))


@dataclass(frozen=True)
class _Delivery:
    """What the milestone KPIs measure on each milestone (arrays in `frames.milestones`
    order): the rules of the module docstring, for the facts (`milestone_counts` and `slips`
    count the same, per case)."""

    case_status: pd.Series[Any]  # categorical
    case_open: BoolArray
    done: BoolArray
    waived: BoolArray
    on_time: BoolArray  # against the agreed due date in force when it fell due
    on_time_baseline: BoolArray  # against the original due date
    overdue_now: BoolArray
    slip: FloatArray  # working days, done milestones only

    @property
    def finished(self) -> BoolArray:
        return self.done | self.waived


def _delivery(frames: Frames) -> _Delivery:
    return frames.derived("delivery", lambda: _measure_delivery(frames))


def _measure_delivery(frames: Frames) -> _Delivery:
    m = frames.milestones
    case_status = case_columns(frames, positions_of(frames, "milestones"), ["status"])["status"]
    due, finish = day_array(m["sla_due"]), day_array(m["finished_on"])
    planned, original = day_array(m["planned_due"]), day_array(m["baseline_due"])
    status = m["status"]
    has_finish = ~np.isnat(finish)
    done = (status == MilestoneStatus.DONE.value).to_numpy() & has_finish
    waived = (status == MilestoneStatus.WAIVED.value).to_numpy() & has_finish
    case_open = is_open(case_status)
    slip = np.full(len(m), np.nan)
    slip[done] = workdays(frames).between(due[done], finish[done], codes_of(m["calendar"])[done])
    return _Delivery(
        case_status=case_status,
        case_open=case_open,
        done=done,
        waived=waived,
        on_time=done & (finish <= due),
        on_time_baseline=done & (finish <= original),
        overdue_now=~(done | waived) & case_open & (planned < as_of_day(frames)),
        slip=slip,
    )


def _milestone_facts(frames: Frames) -> pd.DataFrame:
    m = frames.milestones
    positions = positions_of(frames, "milestones")
    delivery = _delivery(frames)
    out = case_columns(frames, positions, ["key", PILOT, PARTNER, COUNTRY, "closed_on"])
    out = out.rename(columns={"key": "case"})
    out.insert(0, "case_id", m["case_id"].to_numpy())
    out.insert(5, "case_status", delivery.case_status)
    out["milestone"] = m["key"].array
    out["stage"] = m["stage"].array
    out["status"] = m["status"].array
    out["baseline_due"] = m["baseline_due"].to_numpy()
    out["planned_due"] = m["planned_due"].to_numpy()
    out["sla_due"] = m["sla_due"].to_numpy()
    out["finished_on"] = m["finished_on"].to_numpy()
    due, finish = day_array(m["sla_due"]), day_array(m["finished_on"])
    closed = day_array(out.pop("closed_on"))
    as_of = as_of_day(frames)
    finished, case_open = delivery.finished, delivery.case_open
    calendars = codes_of(m["calendar"])
    work = workdays(frames)
    out["done"] = delivery.done
    out["waived"] = delivery.waived
    out["open"] = ~finished
    out["slip_working_days"] = delivery.slip
    out["on_time"] = delivery.on_time
    out["on_time_baseline"] = delivery.on_time_baseline
    out["overdue_now"] = delivery.overdue_now
    # The last day the milestone was watched: its finish, today, or the day its case closed.
    watched = np.where(finished, finish, np.where(case_open | np.isnat(closed), as_of, closed))
    breached = due < watched
    out["breached"] = breached
    # Months since 1970-01 are the ordinals of monthly periods (NaT stays NaT).
    month = np.where(breached, due + 1, NAT).astype("datetime64[M]").astype(np.int64)
    out["breach_month"] = pd.arrays.PeriodArray(month, dtype=pd.PeriodDtype("M"))
    late = np.full(len(m), np.nan)
    late[breached] = work.between(due[breached], watched[breached], calendars[breached])
    out["working_days_late"] = late
    state = np.where(finished, 0, np.where(case_open, 1, 2))
    out["breach_state"] = categorical(np.where(breached, state, -1), BREACH_STATES)
    return out


def build_milestone_kpis(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Delivery of milestones per group (cancelled cases left out).

    Columns: the `by` dimensions, then `milestones`, `open`, `done`, `waived`,
    `done_on_time`, `done_late` (against the agreed due date in force when each fell due),
    `done_on_time_baseline` (against the original due date), `on_time_pct` (done on time /
    done x 100, waived left out), `on_time_baseline_pct` (the same against the original),
    `median_slip_working_days`, `p90_slip_working_days` (done milestones, in working days of
    the milestone's own calendar, signed), `overdue_now`.

    From `milestone_counts` and `slips`: no milestone rows are read.
    """
    dims = dims_of(by)
    cases, counts = frames.cases, frames.milestone_counts
    status = cases["status"]
    groups = Grouping(group_keys(cases, dims), (status != CaseStatus.CANCELLED.value).to_numpy())
    every, done, waived, on_time, on_baseline, due = (
        counts[c].to_numpy()
        for c in (
            "milestones",
            "done",
            "waived",
            "done_on_time",
            "done_on_time_baseline",
            "due_unfinished",
        )
    )
    slips = groups.at(positions_of(frames, "slips"))
    table = groups.table(
        {
            "milestones": groups.total(every),
            "open": groups.total(every - done - waived),
            "done": groups.total(done),
            "waived": groups.total(waived),
            "done_on_time": groups.total(on_time),
            "done_late": groups.total(done - on_time),
            "done_on_time_baseline": groups.total(on_baseline),
            "overdue_now": groups.total(np.where(is_open(status), due, 0)),
            **slips.stats(
                frames.slips["slip_working_days"], "slip_working_days", ("median", "p90")
            ),
        }
    )
    counted = ["milestones", "open", "done", "waived", "done_on_time", "done_late"]
    counted += ["done_on_time_baseline", "overdue_now"]
    out = by_groups(frames, dims, table, counted)
    measured = out["done"].where(out["done"] > 0)
    out["on_time_pct"] = (100.0 * out["done_on_time"] / measured).round(2)
    out["on_time_baseline_pct"] = (100.0 * out["done_on_time_baseline"] / measured).round(2)
    slip_stats = ["median_slip_working_days", "p90_slip_working_days"]
    return out[
        [*dims, *counted[:-1], "on_time_pct", "on_time_baseline_pct", *slip_stats, "overdue_now"]
    ]


def build_sla_breaches(frames: Frames) -> pd.DataFrame:
    """Every breached milestone, after the fact (see the module rules), oldest first.

    Columns: case, pilot, partner, country, case_status, milestone, stage, status,
    planned_due, finished_on, breach_month, working_days_late, breach_state.
    """
    facts = milestone_facts(frames)
    rows = np.flatnonzero(facts["breached"].to_numpy())
    order = np.lexsort(
        (
            codes_of(facts["milestone"])[rows],
            facts["case_id"].to_numpy()[rows],
            day_array(facts["sla_due"])[rows],
        )
    )
    columns = [
        "case",
        PILOT,
        PARTNER,
        COUNTRY,
        "case_status",
        "milestone",
        "stage",
        "status",
        "baseline_due",
        "planned_due",
        "sla_due",
        "finished_on",
        "breach_month",
        "working_days_late",
        "breach_state",
    ]
    return facts[columns].take(rows[order]).reset_index(drop=True)


def build_sla_breaches_by_month(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """SLA breaches per month of breach (the month of the first late day) and group.

    Columns: `month` (Period), the `by` dimensions, `breaches`, `finished_late`, `still_open`
    (open and late now), `open_when_closed`, `median_working_days_late`,
    `max_working_days_late`. Only months with breaches have rows.
    """
    dims = dims_of(by)
    facts = milestone_facts(frames)
    # Grouped by the months' ordinals (integers group faster than periods), shown as periods.
    ordinals = np.asarray(facts["breach_month"].array.asi8, dtype=np.int64)
    groups = Grouping({"month": ordinals, **group_keys(facts, dims)}, facts["breached"].to_numpy())
    state = facts["breach_state"]
    out = groups.table(
        {
            "breaches": groups.count(),
            "finished_late": groups.count(state == BREACH_STATES[0]),
            "still_open": groups.count(state == BREACH_STATES[1]),
            "open_when_closed": groups.count(state == BREACH_STATES[2]),
            **groups.stats(facts["working_days_late"], "working_days_late", ("median", "max")),
        }
    ).reset_index()
    out["month"] = pd.arrays.PeriodArray(
        out["month"].to_numpy(dtype=np.int64), dtype=pd.PeriodDtype("M")
    )
    return out
