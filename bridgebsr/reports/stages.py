"""Stages: when each case entered and left each stage, and cycle times per stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bridgebsr.reports.frames import (
    COUNTRY,
    FINISHED,
    NAT,
    PARTNER,
    PILOT,
    Frames,
    IntArray,
    as_of_day,
    calendar_days,
    case_columns,
    categorical,
    codes_of,
    day_array,
    dims_of,
    positions_of,
    workdays,
)
from bridgebsr.reports.groups import Grouping, group_keys
from models import CaseStatus, GateStatus


def stage_spans(frames: Frames) -> pd.DataFrame:
    """When each case (cancelled ones left out) entered and left each stage, in template order.

    Columns: case_id, case, pilot, partner, country, stage, stage_order, entered, left (NaT
    while the stage or an earlier one has unfinished work), `working_days` and
    `calendar_days` (entered to left), `in_stage_now` (the case's current stage),
    `age_working_days` (entered to `as_of`, for the current stage).
    """
    return frames.derived("stage_spans", lambda: _stage_spans(frames))


def _stage_spans(frames: Frames) -> pd.DataFrame:
    cases = frames.cases
    m, g = frames.milestones, frames.gates
    m_done = m["status"].isin([s.value for s in FINISHED]).to_numpy() & m["finished_on"].notna()
    g_done = (g["status"] == GateStatus.APPROVED.value).to_numpy() & g["decided_on"].notna()
    width = 1 + max([len(t.stages) for t in frames.templates.values()], default=0)
    position = np.concatenate([positions_of(frames, "milestones"), positions_of(frames, "gates")])
    order = np.concatenate([m["stage_order"].to_numpy(), g["stage_order"].to_numpy()])
    items = pd.DataFrame(
        {
            "slot": position * width + order,
            "unfinished": np.concatenate([~m_done, ~g_done]).astype(np.int64),
            "finish": np.concatenate(
                [
                    day_array(m["finished_on"].where(m_done)),
                    day_array(g["decided_on"].where(g_done)),
                ]
            ),
        }
    )
    live = (cases["status"] != CaseStatus.CANCELLED.value).to_numpy()
    items = items[(order >= 0) & (position >= 0) & live[np.maximum(position, 0)]]
    spans = items.groupby("slot", sort=True).agg(
        unfinished=("unfinished", "sum"), finish=("finish", "max")
    )
    slot = spans.index.to_numpy()
    case_row, stage_order = slot // width, slot % width
    by_case = spans.groupby(case_row, sort=False)
    blocked = (by_case["unfinished"].cumsum() > 0).to_numpy()
    left = day_array(by_case["finish"].cummax())
    left[blocked] = NAT
    first = np.r_[True, case_row[1:] != case_row[:-1]] if len(slot) else np.zeros(0, bool)
    entered = np.r_[NAT, left[:-1]] if len(slot) else np.zeros(0, "datetime64[D]")
    starts = day_array(cases["start_date"])[case_row]
    entered = np.where(first, starts, entered)
    out = case_columns(frames, case_row, ["key", PILOT, PARTNER, COUNTRY])
    out = out.rename(columns={"key": "case"})
    out.insert(0, "case_id", cases.index.to_numpy()[case_row])
    out["stage"] = _stage_names(frames, cases["tpl"].to_numpy()[case_row], stage_order)
    out["stage_order"] = stage_order
    out["entered"] = entered.astype("datetime64[s]")
    out["left"] = left.astype("datetime64[s]")
    work = workdays(frames)
    calendars = codes_of(cases["calendar"])[case_row]
    out["working_days"] = work.between(entered, left, calendars)
    out["calendar_days"] = calendar_days(entered, left)
    now = ~np.isnat(entered) & np.isnat(left)
    out["in_stage_now"] = now
    age = np.full(len(out), np.nan)
    age[now] = work.between(entered[now], np.full(now.sum(), as_of_day(frames)), calendars[now])
    out["age_working_days"] = age
    return out


def _stage_names(frames: Frames, tpl: IntArray, order: IntArray) -> pd.Categorical:
    """The key of stage number `order` of each row's template."""
    stages = [[s.key for s in t.stages] for t in frames.templates.values()]
    names = sorted({key for keys in stages for key in keys})
    table = np.full((len(stages) + 1, 1 + max(map(len, stages), default=0)), -1, dtype=np.int64)
    for row, keys in enumerate(stages):
        table[row, : len(keys)] = [names.index(key) for key in keys]
    codes = table[np.where(tpl < 0, len(stages), tpl), np.clip(order, 0, table.shape[1] - 1)]
    return categorical(codes, names)


def build_stage_cycle_times(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Cycle time per stage of each pilot (cancelled cases left out), in template order.

    Columns: pilot, any other `by` dimensions, stage, stage_order, `passed` (cases that left
    the stage), `median_working_days`, `p90_working_days`, `mean_working_days`,
    `median_calendar_days` (entered to left), `in_stage_now` (cases whose current stage it
    is), `median_age_working_days` (how long those have been in it, to `as_of`).
    """
    dims = [PILOT, *(d for d in dims_of(by) if d != PILOT)]
    spans = stage_spans(frames)
    groups = Grouping(group_keys(spans, [*dims, "stage"]))
    passed = ~np.isnat(day_array(spans["left"]))
    cycle = np.where(passed, spans["working_days"], np.nan)
    days = np.where(passed, spans["calendar_days"], np.nan)
    table = groups.table(
        {
            "stage_order": groups.stats(spans["stage_order"], "order", ("min",))["min_order"],
            "passed": groups.count(passed),
            "in_stage_now": groups.count(spans["in_stage_now"]),
            **groups.stats(cycle, "working_days", ("median", "p90", "mean")),
            **groups.stats(days, "calendar_days", ("median",)),
            **groups.stats(spans["age_working_days"], "age_working_days", ("median",)),
        }
    )
    out = table.reset_index()
    out["stage_order"] = out["stage_order"].astype("int64")
    out = out.sort_values([*dims, "stage_order"], kind="stable")
    return out[
        [
            *dims,
            "stage",
            "stage_order",
            "passed",
            "median_working_days",
            "p90_working_days",
            "mean_working_days",
            "median_calendar_days",
            "in_stage_now",
            "median_age_working_days",
        ]
    ].reset_index(drop=True)
