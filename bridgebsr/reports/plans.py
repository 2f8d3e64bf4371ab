"""Which agreed plan a milestone is measured against: the one in force on the day it fell due
(`rules.planning.due_in_force`), from the moves of agreed dates (`plan_changes`) read in one
query. A milestone whose agreed dates never moved is measured against them as they are; only
the few that moved are worked out one by one, so a store where nothing was ever rescheduled
pays for one empty SELECT."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlmodel import col

from bridgebsr.reports.frames import day_array
from bridgebsr.reports.queries import Sql
from bridgebsr.rules.planning import due_in_force
from models import PlanChange

PLAN_CHANGE_COLUMNS: Final = ("case_id", "item_key", "made", "due")
_EPOCH: Final = date(1970, 1, 1)


def plan_change_query(sql: Sql) -> Any:
    """Every move of a milestone's agreed dates, oldest first per milestone: the day it was
    made (UTC) and the new due date, as day numbers."""
    return (
        select(
            col(PlanChange.case_id),
            col(PlanChange.item_key),
            sql.day(col(PlanChange.at), in_sql=True),
            sql.day(col(PlanChange.due), in_sql=True),
        )
        .where(col(PlanChange.item_kind) == "milestone")
        .order_by(
            col(PlanChange.case_id),
            col(PlanChange.item_key),
            col(PlanChange.at),
            col(PlanChange.id),
        )
    )


def sla_due(milestones: pd.DataFrame, changes: pd.DataFrame) -> pd.Series[Any]:
    """The due date each milestone (rows of `milestones`: case_id, key, baseline_due,
    planned_due) is measured against: `planned_due` unless its agreed dates moved, then the
    one in force on the day it fell due."""
    out = milestones["planned_due"].copy()
    if changes.empty:
        return out
    moves: dict[tuple[int, str], list[tuple[date, date]]] = defaultdict(list)
    for case_id, key, made, due in changes.itertuples(index=False):
        moves[(int(case_id), str(key))].append((_day(made), _day(due)))
    cases = {case_id for case_id, _ in moves}
    rows = np.flatnonzero(milestones["case_id"].isin(list(cases)).to_numpy())
    ids = milestones["case_id"].to_numpy()
    keys = milestones["key"].to_numpy()
    original = day_array(milestones["baseline_due"])
    values = out.to_numpy(copy=True)
    for row in rows:
        found = moves.get((int(ids[row]), str(keys[row])))
        if found:
            start = original[row].astype(date)
            values[row] = np.datetime64(due_in_force(start, found), "s")
    return pd.Series(values, index=out.index)


def _day(number: Any) -> date:
    return _EPOCH + timedelta(days=int(number))
