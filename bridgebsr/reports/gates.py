"""Gates: every round (the current one and those sent back for rework), and decision times."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bridgebsr.reports.frames import (
    COUNTRY,
    GATE_EVENTS,
    OUTCOMES,
    PARTNER,
    PILOT,
    Frames,
    as_of_day,
    calendar_days,
    case_columns,
    categorical,
    codes_of,
    day_array,
    dims_of,
    is_open,
    local_days,
    rows_of,
    workdays,
)
from bridgebsr.reports.groups import Grouping, group_keys
from models import GateStatus


def gate_rounds(frames: Frames) -> pd.DataFrame:
    """One row per gate round: opened, decided, or still waiting. The current round of each
    gate comes from its row, the rounds before a rework from the audit trail.

    Columns: case_id, case, pilot, partner, country, gate, round, opened_on, deadline,
    decided_on, outcome ("approved", "rejected", "waiting", or "closed": the case closed
    without a decision), `decision_working_days`, `decision_calendar_days`,
    `decided_after_deadline`, `waiting_working_days` (open gates of open cases, to `as_of`).
    Days in the lead partner's time zone, counted in the case's calendar.
    """
    return frames.derived("gate_rounds", lambda: _gate_rounds(frames))


def _gate_rounds(frames: Frames) -> pd.DataFrame:
    # The current round of every gate that has opened, from its row.
    g = frames.gates
    now = g[g["opened_on"].notna().to_numpy()]
    status = now["status"]
    current = pd.DataFrame(
        {
            "case_id": now["case_id"].to_numpy(),
            "gate": now["key"].astype(str).to_numpy(),
            "round": now["round"].to_numpy(),
            "opened_on": now["opened_on"].to_numpy(),
            "deadline": now["deadline"].to_numpy(),
            "decided_on": now["decided_on"].where(status != GateStatus.OPEN.value).to_numpy(),
            "approved": (status == GateStatus.APPROVED.value).to_numpy(),
        }
    )
    # Earlier rounds, sent back for rework, from the audit trail.
    events = frames.events
    keys = ["case_id", "gate", "round"]
    events = events.assign(gate=events["gate"].astype(str))
    opened = events[(events["kind"] == GATE_EVENTS[0]).to_numpy()].drop_duplicates(keys)
    decided = events[(events["kind"] != GATE_EVENTS[0]).to_numpy()].drop_duplicates(
        keys, keep="last"
    )
    earlier = opened[[*keys, "at", "deadline"]].merge(
        decided[[*keys, "at", "kind"]], on=keys, how="left", suffixes=("_opened", "_decided")
    )
    latest = current.set_index(["case_id", "gate"])["round"]
    now_round = latest.reindex(pd.MultiIndex.from_frame(earlier[["case_id", "gate"]]))
    earlier = earlier[(earlier["round"].to_numpy() < now_round.to_numpy())]
    zones = frames.cases["timezone"].reindex(earlier["case_id"]).reset_index(drop=True)
    earlier = earlier.reset_index(drop=True)
    past = pd.DataFrame(
        {
            "case_id": earlier["case_id"].to_numpy(),
            "gate": earlier["gate"].to_numpy(),
            "round": earlier["round"].to_numpy(),
            "opened_on": local_days(earlier["at_opened"], zones).to_numpy(),
            "deadline": earlier["deadline"].to_numpy(),
            "decided_on": local_days(earlier["at_decided"], zones).to_numpy(),
            "approved": (earlier["kind"] == GATE_EVENTS[1]).to_numpy(),
        }
    )
    rounds = pd.concat([past, current], ignore_index=True)
    rounds = rounds.sort_values(["case_id", "gate", "round"], kind="stable", ignore_index=True)
    positions = rows_of(frames.cases.index, rounds["case_id"])
    columns = ["key", PILOT, PARTNER, COUNTRY, "status", "calendar"]
    out = case_columns(frames, positions, columns).rename(columns={"key": "case"})
    out.insert(0, "case_id", rounds["case_id"].to_numpy())
    for column in ("gate", "round", "opened_on", "deadline", "decided_on"):
        out[column] = rounds[column].to_numpy()
    opened_on, decided_on = day_array(out["opened_on"]), day_array(out["decided_on"])
    case_open = is_open(out.pop("status"))
    waiting = np.isnat(decided_on)
    approved = rounds["approved"].to_numpy(dtype=bool)
    outcome = np.where(waiting, np.where(case_open, 2, 3), np.where(approved, 0, 1))
    out["outcome"] = categorical(outcome, OUTCOMES)
    work = workdays(frames)
    calendars = codes_of(out.pop("calendar"))
    out["decision_working_days"] = work.between(opened_on, decided_on, calendars)
    out["decision_calendar_days"] = calendar_days(opened_on, decided_on)
    out["decided_after_deadline"] = decided_on > day_array(out["deadline"])
    today = np.full(len(out), as_of_day(frames))
    age = work.between(opened_on, today, calendars)
    out["waiting_working_days"] = np.where(waiting & case_open, age, np.nan)
    return out


def build_gate_times(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Gate decision time per gate of each pilot, every round counted.

    Columns: pilot, any other `by` dimensions, gate, `rounds` (opened), `decided`,
    `approved`, `rejected`, `decided_after_deadline`, `median_decision_working_days`,
    `p90_decision_working_days`, `median_decision_calendar_days` (opened to decided),
    `waiting_now` (open gates of open cases), `median_waiting_working_days`.
    """
    dims = [PILOT, *(d for d in dims_of(by) if d != PILOT)]
    rounds = gate_rounds(frames)
    groups = Grouping(group_keys(rounds, [*dims, "gate"]))
    outcome = rounds["outcome"]
    out = groups.table(
        {
            "rounds": groups.count(),
            "decided": groups.count(outcome.isin(OUTCOMES[:2])),
            "approved": groups.count(outcome == OUTCOMES[0]),
            "rejected": groups.count(outcome == OUTCOMES[1]),
            "decided_after_deadline": groups.count(rounds["decided_after_deadline"]),
            "waiting_now": groups.count(outcome == OUTCOMES[2]),
            **groups.stats(
                rounds["decision_working_days"], "decision_working_days", ("median", "p90")
            ),
            **groups.stats(rounds["decision_calendar_days"], "decision_calendar_days", ("median",)),
            **groups.stats(rounds["waiting_working_days"], "waiting_working_days", ("median",)),
        }
    ).reset_index()
    return out[
        [
            *dims,
            "gate",
            "rounds",
            "decided",
            "approved",
            "rejected",
            "decided_after_deadline",
            "median_decision_working_days",
            "p90_decision_working_days",
            "median_decision_calendar_days",
            "waiting_now",
            "median_waiting_working_days",
        ]
    ]
