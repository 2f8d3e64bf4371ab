"""The programme view: every activity of the work programme that has cases (the analyses, the
pilots, the Innovation Action Plan, Council review rounds, mentoring exchanges: each template
kind) and where its open cases stand, stage by stage, with their health, in one table.

Health of an open case, by the report's own rules (nothing restated here):

- `late`: one of its milestones is overdue now (the KPIs' `overdue_now`: open, agreed due
  date before `as_of`), as the "Late items" of what needs action;
- `at risk`: else, its forecast ends after its target date (the forecast view's `at_risk`),
  as the "Cases at risk";
- `on track`: neither.

One row per activity and current stage of its open cases (stages in their template's order,
activities by title): how many cases are there and how many of them are late, at risk and on
track, the worst health among them, and the cases themselves, worst first (at most
`SHOWN_CASES` named, then how many more). An activity whose cases are all closed has one row
saying so, so every activity with a case in the store is on the page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridgebsr.reports.forecast import build_forecast
from bridgebsr.reports.frames import PILOT, Frames, is_open

LATE, AT_RISK, ON_TRACK = "late", "at risk", "on track"
HEALTH = (LATE, AT_RISK, ON_TRACK)  # worst first
SHOWN_CASES = 5  # cases named per row; the rest are counted
NO_OPEN_CASE = "(no open case)"
FINISHED = "(all items finished)"
COLUMNS = ["activity", PILOT, "stage", "open_cases", "late_cases", "at_risk_cases"]
COLUMNS += ["on_track_cases", "health"]
COLUMNS += ["which"]


def case_health(frames: Frames) -> pd.DataFrame:
    """Each open case's health (see the module docstring), worst first, then by key.

    Columns: case, activity (its template's title), pilot, stage_order, stage (the current
    stage's title), health, `rank` (0 late, 1 at risk, 2 on track).
    """
    cases = frames.cases
    rows = np.flatnonzero(is_open(cases["status"]))
    templates = list(frames.templates.values())
    overdue = frames.milestone_counts["due_unfinished"].to_numpy()[rows] > 0
    forecast = build_forecast(frames).set_index("case")["at_risk"].astype(bool)
    keys = cases["key"].to_numpy()[rows].astype(str)
    risky = forecast.reindex(keys, fill_value=False).to_numpy()
    rank = np.where(overdue, 0, np.where(risky, 1, 2))
    kinds = cases[PILOT].astype(str).to_numpy()[rows]
    activity, order, stage = [], [], []
    for kind, tpl, current in zip(
        kinds, cases["tpl"].to_numpy()[rows], cases["current_stage"].to_numpy()[rows], strict=True
    ):
        if tpl < 0:  # its pinned template is not in the store: the kind and stage key only
            activity.append(kind)
            order.append(0)
            stage.append(str(current))
            continue
        template = templates[int(tpl)]
        activity.append(template.title)
        titles = {s.key: (i, s.title) for i, s in enumerate(template.stages)}
        at, title = titles.get(str(current), (len(template.stages), FINISHED))
        order.append(at)
        stage.append(title)
    out = pd.DataFrame(
        {
            "case": keys,
            "activity": activity,
            PILOT: kinds,
            "stage_order": np.asarray(order, dtype=np.int64),
            "stage": stage,
            "health": [HEALTH[r] for r in rank],
            "rank": rank,
        }
    )
    return out.sort_values(["rank", "case"], kind="stable").reset_index(drop=True)


def build_programme(frames: Frames) -> pd.DataFrame:
    """The programme view (see the module docstring). Columns: activity, pilot, stage,
    open_cases, late_cases, at_risk_cases, on_track_cases, health (the worst of the row),
    which (its cases, worst first)."""
    health = case_health(frames)
    rows: list[dict[str, object]] = []
    kinds = {t.kind: t.title for t in frames.templates.values()}
    kinds |= {
        k: a for k, a in zip(health[PILOT], health["activity"], strict=True) if k not in kinds
    }
    open_kinds = set(health[PILOT])
    for kind in sorted(kinds, key=lambda k: (kinds[k].casefold(), k)):
        if kind not in open_kinds:
            closed: dict[str, object] = dict.fromkeys(COLUMNS, 0)
            closed |= {"activity": kinds[kind], PILOT: kind, "stage": NO_OPEN_CASE}
            rows.append(closed | {"health": "", "which": ""})
            continue
        mine = health[health[PILOT] == kind]
        for (_, stage), group in mine.groupby(["stage_order", "stage"], sort=True):
            counts = group["health"].value_counts()
            named = list(group["case"][:SHOWN_CASES])
            more = len(group) - len(named)
            rows.append(
                {
                    "activity": kinds[kind],
                    PILOT: kind,
                    "stage": stage,
                    "open_cases": len(group),
                    "late_cases": int(counts.get(LATE, 0)),
                    "at_risk_cases": int(counts.get(AT_RISK, 0)),
                    "on_track_cases": int(counts.get(ON_TRACK, 0)),
                    "health": HEALTH[int(group["rank"].min())],
                    "which": ", ".join(named) + (f" and {more} more" if more else ""),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)
