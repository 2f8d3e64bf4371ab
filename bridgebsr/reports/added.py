"""Milestones added to one case only (`milestone add`): named, staged and made steps of the
forecast like the template's own.

The load names a milestone by its case's pinned template and its position there (`seq`); an
added milestone comes after the template's, so the template has no name for it. Such rows are
found among those the load reads anyway (a position past the template's milestones), so a
store without any pays for that comparison alone. Only when there are some is one more SELECT
made, of the added milestones' own key, stage, duration and links; the forecast then places
them with their case's template items by the planner's rule (`schedule.Step`, made of a row as
`planning.items` makes an item of it).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from sqlalchemy import String, select
from sqlalchemy import cast as sql_cast
from sqlmodel import col

from bridgebsr.reports.frames import AddedItem, IntArray, categorical
from bridgebsr.rules.schedule import Link, Step
from models import DayKind, Milestone, Template

ADDED_COLUMNS: Final = ("case_id", "seq", "key", "stage", "duration", "days", "depends_on")


def added_query() -> Any:
    """Every milestone added to one case only, with what names and places it."""
    return select(
        col(Milestone.case_id),
        col(Milestone.seq),
        col(Milestone.key),
        col(Milestone.stage),
        col(Milestone.duration),
        sql_cast(col(Milestone.days), String),
        sql_cast(col(Milestone.depends_on), String),
    ).where(col(Milestone.adhoc))


def unnamed(keys: pd.Categorical, tpl: IntArray) -> IntArray:
    """The rows whose case's template is known but has no milestone at their position: the
    items added to their case."""
    return np.flatnonzero((np.asarray(keys.codes) < 0) & (tpl >= 0))


def name_added(
    milestones: pd.DataFrame,
    rows: IntArray,
    tpl: IntArray,
    templates: Sequence[Template],
    found: pd.DataFrame,
) -> dict[int, tuple[AddedItem, ...]]:
    """Give the added milestones at `rows` of `milestones` (case_id, seq, key, stage,
    stage_order; their cases' template rows `tpl`) their key, stage and stage order from
    `found` (`added_query`'s rows); returns each case's added items, by case id, in seq
    order."""
    got: dict[str, list[Any]] = {name: found[name].tolist() for name in ADDED_COLUMNS}
    at = {
        (int(case), int(seq)): i
        for i, (case, seq) in enumerate(zip(got["case_id"], got["seq"], strict=True))
    }
    keys, key_codes = _codes(milestones["key"])
    stages, stage_codes = _codes(milestones["stage"])
    order = milestones["stage_order"].to_numpy(copy=True)
    case_ids, seqs = milestones["case_id"].to_numpy(), milestones["seq"].to_numpy()
    items: dict[int, list[AddedItem]] = defaultdict(list)
    for row in rows:
        hit = at.get((int(case_ids[row]), int(seqs[row])))
        if hit is None:  # not added: a row past a template that lost items
            continue
        key, stage = str(got["key"][hit]), str(got["stage"][hit])
        key_codes[row] = keys.setdefault(key, len(keys))
        stage_codes[row] = stages.setdefault(stage, len(stages))
        template = templates[int(tpl[row])]
        order[row] = next((i for i, s in enumerate(template.stages) if s.key == stage), -1)
        links = json.loads(str(got["depends_on"][hit]))
        step = Step(
            key,
            int(got["duration"][hit]),
            DayKind(str(got["days"][hit])),
            tuple(Link(d["key"], int(d["lag"]), DayKind(d["days"])) for d in links),
        )
        items[int(case_ids[row])].append(AddedItem(int(seqs[row]), step))
    milestones["key"] = _categorical(key_codes, keys)
    milestones["stage"] = _categorical(stage_codes, stages)
    milestones["stage_order"] = order
    return {case: tuple(sorted(added, key=lambda a: a.seq)) for case, added in items.items()}


def _codes(values: pd.Series[Any]) -> tuple[dict[str, int], IntArray]:
    """A categorical column's categories by code, and a copy of its codes."""
    names = {str(name): i for i, name in enumerate(values.cat.categories)}
    return names, np.asarray(values.cat.codes, dtype=np.int64).copy()


def _categorical(codes: IntArray, names: Mapping[str, int]) -> pd.Categorical:
    """The categories in code order: the template's first, then those added."""
    return categorical(codes, list(names))
