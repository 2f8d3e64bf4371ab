"""The agreed plan: milestone reschedule, case rebaseline, case edit, and the escalation
ladder's keys across new dates and rework rounds, on a SQLite file and on PostgreSQL."""

import json
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound, StaleCase
from bridgebsr.monitor.candidates import Candidate
from bridgebsr.monitor.planner import Pick
from bridgebsr.monitor.report import PassContext
from bridgebsr.monitor.sweep import Drafts
from bridgebsr.office import items, plan, queries
from bridgebsr.office.progress import Actor, reforecast_case
from bridgebsr.reports import kpis
from bridgebsr.rules import planning
from bridgebsr.rules.calendars import calendar_for
from bridgebsr.rules.people import Person
from bridgebsr.rules.schedule import Item, Link, Slot, replan, schedule
from bridgebsr.store.db import read_session, write_session
from models import (
    Baseline,
    CaseEvent,
    DayKind,
    GateStatus,
    LadderStep,
    Milestone,
    NoticePayload,
    OutboxNotice,
    PlanChange,
)
from notifications.enqueue import dedupe_key
from tests.conftest import DEMO_AS_OF, at, run_here
from tests.test_bridgebsr.test_monitor import (
    DESK_OWNER,
    DESK_STUDY,
    IP_KEY,
    LEAD,
    MONDAY,
    _case,
    _change,
    _gate,
    _milestone,
    _monitor,
    _open,
    _progress,
    _rows,
    timeout_rt,
)

__all__ = ["timeout_rt"]  # the fixture, shared with the monitor's tests

REPORT = "bottleneck-report"
DEMO_IP = "IP-2025-0001"  # the demo's IP case (`bridgebsr demo`), its kickoff done


# --- the dedupe key rule (no database) -------------------------------------------------------


def _notice(
    *, kind: str = "milestone", due: date, baseline: date | None, rnd: int = 1
) -> OutboxNotice:
    payload = NoticePayload(
        case=IP_KEY,
        case_title="t",
        pilot="ip-integration",
        country="DK",
        item="kickoff",
        item_kind=kind,  # type: ignore[arg-type]
        item_title="Kick-off",
        due=due,
        days_late=0,
        step="due",
        offset=0,
        round=rnd,
        baseline=baseline,
    )
    return OutboxNotice(1, 2, "a@x.example", False, due, payload)


D0, D1 = date(2026, 3, 16), date(2026, 4, 1)


@pytest.mark.parametrize(
    ("kind", "due", "baseline", "rnd", "key"),
    [
        # Round 1 on its original date, or a payload stored before baselines: unchanged.
        ("milestone", D0, D0, 1, f"m:{IP_KEY}/kickoff/due/a@x.example"),
        ("milestone", D0, None, 1, f"m:{IP_KEY}/kickoff/due/a@x.example"),
        ("milestone", D1, D0, 1, f"m:{IP_KEY}/kickoff@2026-04-01/due/a@x.example"),
        ("milestone", D0, D0, 2, f"m:{IP_KEY}/kickoff/r2/due/a@x.example"),
        ("milestone", D1, D0, 3, f"m:{IP_KEY}/kickoff/r3@2026-04-01/due/a@x.example"),
        ("gate", D0, None, 1, f"g:{IP_KEY}/kickoff/r1/due/a@x.example"),
        ("gate", D0, None, 2, f"g:{IP_KEY}/kickoff/r2/due/a@x.example"),
    ],
)
def test_the_dedupe_key_names_round_and_new_date_only_when_they_differ(
    kind: str, due: date, baseline: date | None, rnd: int, key: str
) -> None:
    assert dedupe_key(_notice(kind=kind, due=due, baseline=baseline, rnd=rnd)) == key


def test_back_on_the_original_date_a_milestone_has_its_original_keys() -> None:
    moved = _notice(due=D1, baseline=D0)
    back = _notice(due=D0, baseline=D0)
    assert dedupe_key(moved) != dedupe_key(back) == dedupe_key(_notice(due=D0, baseline=None))


@pytest.mark.parametrize(
    ("kind", "due", "baseline", "rnd"),
    [
        ("milestone", D0, D0, 1),
        ("milestone", D0, None, 1),
        ("milestone", D1, D0, 1),
        ("milestone", D0, D0, 2),
        ("milestone", D1, D0, 3),
        ("gate", D0, None, 1),
        ("gate", D0, None, 2),
    ],
)
def test_the_monitor_keys_each_pick_as_the_outbox_keys_its_notice(
    kind: str, due: date, baseline: date | None, rnd: int
) -> None:
    """The pass says a notice's key before making it (so that a rerun makes none): the key
    must be the one `dedupe_key` gives the notice it makes."""
    candidate = Candidate(
        kind,  # type: ignore[arg-type]
        7,
        "kickoff",
        "Kick-off",
        due,
        2 if kind == "milestone" else None,
        rnd,
        baseline if kind == "milestone" else None,
        "lead" if kind == "gate" else None,
        1,
        IP_KEY,
        "t",
        "ip-integration",
        1,
        2,
        3,
        "DK",
    )
    person = Person(2, "a@x.example", "A", "lead", 3, "P", "DK", "UTC", (), ("DK", None))
    steps = [
        LadderStep(key="due", offset=0, notify=["owner"]),
        LadderStep(key="late", offset=2, notify=["owner"], urgent=True),
    ]
    picks = [Pick(person, step, due, step.urgent) for step in steps]
    ctx = PassContext(now=at(D1.isoformat()), today=D1, actor=Actor("monitor"))
    drafts = Drafts(ctx, {("ip-integration", 1): {"kickoff": "the minutes"}})
    keyed = list(drafts.keyed([(candidate, picks)]))
    assert len({key for key, _ in keyed}) == 2
    for key, draft in keyed:
        assert key == dedupe_key(drafts.notice(draft))


# --- helpers ---------------------------------------------------------------------------------


def _reschedule(
    rt: Runtime, milestone: str, due: date, day: date, *, version: int | None = None
) -> list[Any]:
    with write_session(rt.engine) as session:
        _, moved = plan.reschedule_milestone(
            session=session,
            case_key=IP_KEY,
            milestone_key=milestone,
            due=due,
            reason="the partner asked for more time",
            actor=Actor(LEAD),
            now=at(day.isoformat()),
            expected_version=version,
        )
    return moved


def _rebaseline(rt: Runtime, day: date, *, version: int | None = None) -> int:
    with write_session(rt.engine) as session:
        _, number, _ = plan.rebaseline_case(
            session=session,
            case_key=IP_KEY,
            reason="steering group agreed the new plan",
            actor=Actor(LEAD),
            now=at(day.isoformat()),
            expected_version=version,
        )
    return number


def _edit(rt: Runtime, day: date = MONDAY, **kwargs: Any) -> Any:
    with write_session(rt.engine) as session:
        return plan.edit_case(
            session=session, case_key=IP_KEY, actor=Actor(LEAD), now=at(day.isoformat()), **kwargs
        )


def _plans(engine: Engine) -> dict[str, tuple[date, date, date, date]]:
    with read_session(engine) as session:
        ms = session.exec(select(Milestone).order_by(col(Milestone.seq))).all()
        return {
            m.key: (m.baseline_start, m.baseline_due, m.planned_start, m.planned_due) for m in ms
        }


def _plan_changes(engine: Engine) -> list[PlanChange]:
    with read_session(engine) as session:
        return list(session.exec(select(PlanChange).order_by(col(PlanChange.id))))


def _audit(engine: Engine, kind: str) -> list[CaseEvent]:
    with read_session(engine) as session:
        return list(session.exec(select(CaseEvent).where(CaseEvent.kind == kind)))


# --- reschedule ------------------------------------------------------------------------------


def test_a_reschedule_moves_the_item_and_its_dependents_and_records_each(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    before = _plans(rt.engine)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    new_due = desk.planned_due + timedelta(days=60)
    version = _case(rt.engine, IP_KEY).version

    moved = _reschedule(rt, DESK_STUDY, new_due, MONDAY, version=version)

    after = _plans(rt.engine)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    assert (desk.planned_start, desk.planned_due) == (before[DESK_STUDY][2], new_due)
    assert all(after[k][:2] == before[k][:2] for k in before)  # the original plan stays
    assert after["kickoff"] == before["kickoff"]
    assert after["regional-workshops"] == before["regional-workshops"]
    assert after[REPORT][3] > before[REPORT][3]
    # Finish-to-start holds along the moved chain: the report starts after the desk study.
    assert after[REPORT][2] >= new_due
    council = _gate(rt.engine, IP_KEY, "council-approval")
    assert council.planned_due > council.baseline_due
    moved_keys = [m.node.key for m in moved]
    assert moved_keys[0] == DESK_STUDY
    changed = {k for k in before if after[k] != before[k]} | {"council-approval"}
    assert changed <= set(moved_keys)
    rows = _plan_changes(rt.engine)
    assert [r.item_key for r in rows] == moved_keys
    assert {r.why for r in rows} == {"reschedule"} and {r.baseline for r in rows} == {None}
    assert (rows[0].item_kind, rows[0].due) == ("milestone", new_due)
    (event,) = _audit(rt.engine, "milestone.reschedule")
    assert event.subject == DESK_STUDY and event.comment == "the partner asked for more time"
    assert event.after is not None and set(event.after["items"]) == set(moved_keys)
    assert event.after["due"] == new_due.isoformat()
    assert _case(rt.engine, IP_KEY).version == version + 1


def test_a_reschedule_is_refused_for_finished_items_early_dates_and_stale_views(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    _progress(rt, IP_KEY, "kickoff", "complete", MONDAY + timedelta(days=10), LEAD)
    day = MONDAY + timedelta(days=11)
    with pytest.raises(IllegalTransition, match="kickoff .* it is done"):
        _reschedule(rt, "kickoff", MONDAY + timedelta(days=30), day)
    with pytest.raises(InvalidInput, match="before case IP-2026-0001 started"):
        _reschedule(rt, DESK_STUDY, MONDAY - timedelta(days=1), day)
    due = _milestone(rt.engine, IP_KEY, DESK_STUDY).planned_due
    with pytest.raises(InvalidInput, match="already due on"):
        _reschedule(rt, DESK_STUDY, due, day)
    with pytest.raises(NotFound, match="no milestone 'nope'"):
        _reschedule(rt, "nope", due, day)
    version = _case(rt.engine, IP_KEY).version
    with pytest.raises(StaleCase, match=f"is at version {version}, not {version - 1}"):
        _reschedule(rt, DESK_STUDY, due + timedelta(days=5), day, version=version - 1)
    with write_session(rt.engine) as session, pytest.raises(InvalidInput, match="say why"):
        plan.reschedule_milestone(
            session=session,
            case_key=IP_KEY,
            milestone_key=DESK_STUDY,
            due=due + timedelta(days=5),
            reason=" ",
            actor=Actor(LEAD),
            now=at(day.isoformat()),
        )
    assert _plan_changes(rt.engine) == []
    assert _case(rt.engine, IP_KEY).version == version
    _change(rt, IP_KEY, "hold", day)
    with pytest.raises(IllegalTransition, match="is on_hold"):
        _reschedule(rt, DESK_STUDY, due + timedelta(days=5), day)


def test_a_reschedule_clears_overdue_when_the_item_is_no_longer_late(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    kickoff = _milestone(rt.engine, IP_KEY, "kickoff")
    late_day = kickoff.planned_due + timedelta(days=2)
    _monitor(rt, late_day)
    assert _milestone(rt.engine, IP_KEY, "kickoff").overdue_on == late_day
    _reschedule(rt, "kickoff", late_day + timedelta(days=5), late_day)
    assert _milestone(rt.engine, IP_KEY, "kickoff").overdue_on is None


# --- rebaseline ------------------------------------------------------------------------------


def test_a_rebaseline_makes_the_forecast_the_plan_for_open_items_only(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    kickoff = _milestone(rt.engine, IP_KEY, "kickoff")
    late = kickoff.planned_due + timedelta(days=21)
    _progress(rt, IP_KEY, "kickoff", "complete", late, LEAD)
    case = _case(rt.engine, IP_KEY)
    assert case.forecast_date > case.target_date

    assert _rebaseline(rt, late, version=case.version) == 1

    case = _case(rt.engine, IP_KEY)
    assert case.target_date == case.forecast_date and case.baseline_target < case.target_date
    with read_session(rt.engine) as session:
        ms = {m.key: m for m in session.exec(select(Milestone))}
    done = ms.pop("kickoff")
    assert (done.planned_due, done.baseline_due) == (kickoff.planned_due, kickoff.planned_due)
    assert all(
        (m.planned_start, m.planned_due) == (m.forecast_start, m.forecast_due) for m in ms.values()
    )
    rows = _plan_changes(rt.engine)
    assert rows and {r.why for r in rows} == {"rebaseline"} and {r.baseline for r in rows} == {1}
    assert "kickoff" not in {r.item_key for r in rows}
    (event,) = _audit(rt.engine, "case.rebaseline")
    assert event.before is not None and event.after is not None
    assert (event.before["baseline"], event.after["baseline"]) == (0, 1)
    assert event.after["target"] == case.target_date.isoformat()

    assert _rebaseline(rt, late + timedelta(days=1)) == 2
    with read_session(rt.engine) as session:
        numbers = [b.number for b in session.exec(select(Baseline).order_by(col(Baseline.number)))]
    assert numbers == [1, 2]
    shown = _show(rt, late + timedelta(days=1))
    assert [(b["number"], b["who"]) for b in shown["baselines"]] == [(1, LEAD), (2, LEAD)]
    assert shown["baselines"][0]["why"] == "steering group agreed the new plan"
    desk = next(m for m in shown["milestones"] if m["key"] == DESK_STUDY)
    assert desk["baseline_due"] < desk["planned_due"] == desk["forecast_due"]
    with pytest.raises(StaleCase):
        _rebaseline(rt, late, version=1)


# --- the forecast keeps to the agreed plan set by hand ---------------------------------------


def _forecast(rt: Runtime, day: date) -> pd.DataFrame:
    """The KPI report's forecast of the case's items as of `day` (`schedule.schedule_many`)."""
    found = kpis.forecast_items(kpis.load(rt.engine, as_of=day))
    return found[found["case"] == IP_KEY].set_index("item")


def _reforecast(rt: Runtime, day: date) -> None:
    with write_session(rt.engine) as session:
        reforecast_case(
            session=session, case_key=IP_KEY, actor=Actor(LEAD), now=at(day.isoformat())
        )


def test_a_rescheduled_item_is_forecast_due_on_its_agreed_due(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    new_due = desk.planned_due + timedelta(days=14)
    _reschedule(rt, DESK_STUDY, new_due, MONDAY)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    assert (desk.planned_due, desk.forecast_due) == (new_due, new_due)
    assert _milestone(rt.engine, IP_KEY, REPORT).forecast_start >= new_due
    report = _forecast(rt, MONDAY)
    assert pd.Timestamp(report.loc[DESK_STUDY, "forecast_due"]).date() == new_due
    # Later days' forecasts keep to it while the work runs.
    day = MONDAY + timedelta(days=7)
    _reforecast(rt, day)
    assert _milestone(rt.engine, IP_KEY, DESK_STUDY).forecast_due == new_due
    assert pd.Timestamp(_forecast(rt, day).loc[DESK_STUDY, "forecast_due"]).date() == new_due


def test_a_rebaseline_right_after_a_reschedule_keeps_the_rescheduled_date(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    new_due = desk.planned_due + timedelta(days=14)
    _reschedule(rt, DESK_STUDY, new_due, MONDAY)
    agreed = _plans(rt.engine)

    _rebaseline(rt, MONDAY + timedelta(days=1))

    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    assert (desk.planned_due, desk.forecast_due) == (new_due, new_due)
    assert _plans(rt.engine)[DESK_STUDY] == agreed[DESK_STUDY]
    rebaselined = {r.item_key for r in _plan_changes(rt.engine) if r.why == "rebaseline"}
    assert DESK_STUDY not in rebaselined


def test_an_added_item_is_forecast_from_the_day_it_was_added(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    _progress(rt, IP_KEY, "kickoff", "complete", MONDAY + timedelta(days=3), LEAD)
    added_on = MONDAY + timedelta(days=21)  # a Monday, long after kickoff finished
    with write_session(rt.engine) as session:
        items.add_milestone(
            session=session,
            case_key=IP_KEY,
            actor=Actor(LEAD),
            now=at(added_on.isoformat()),
            key="extra-review",
            title="Extra legal review",
            owner="legal-advisor",
            duration=5,
            after="kickoff+2",
        )
    new = _milestone(rt.engine, IP_KEY, "extra-review")
    assert new.planned_start == added_on
    assert (new.forecast_start, new.forecast_due) == (new.planned_start, new.planned_due)
    # Later days' forecasts keep it from the day it was added.
    _reforecast(rt, added_on + timedelta(days=1))
    again = _milestone(rt.engine, IP_KEY, "extra-review")
    assert (again.forecast_start, again.forecast_due) == (new.planned_start, new.planned_due)


def _show(rt: Runtime, day: date) -> dict[str, Any]:
    with read_session(rt.engine) as session:
        return queries.show_case(session=session, key=IP_KEY, today=day)


# --- edit ------------------------------------------------------------------------------------


def test_a_case_edit_changes_title_target_and_partner_with_one_event(consortium: Runtime) -> None:
    rt = consortium
    case = _open(rt)
    before = _case(rt.engine, IP_KEY)
    target = before.target_date + timedelta(days=30)
    edited, change = _edit(rt, title="A new title", target=target, partner_code="mva")
    assert (edited.title, edited.target_date) == ("A new title", target)
    assert change.after == {"title": "A new title", "target": target.isoformat(), "partner": "MVA"}
    assert change.before["partner"] == "SCANBALT"
    after = _case(rt.engine, IP_KEY)
    assert (after.title, after.target_date, after.version) == (
        "A new title",
        target,
        before.version + 1,
    )
    assert after.baseline_target == before.baseline_target and after.owner_id == before.owner_id
    (event,) = _audit(rt.engine, "case.edit")
    assert event.after == change.after
    assert case == IP_KEY


def test_a_case_edit_refuses_bad_input_and_stale_views(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    with pytest.raises(InvalidInput, match="before case IP-2026-0001 started"):
        _edit(rt, target=MONDAY - timedelta(days=1))
    with pytest.raises(NotFound, match="no partner NOPE"):
        _edit(rt, partner_code="NOPE")
    with pytest.raises(InvalidInput, match="nothing to change"):
        _edit(rt, title=_case(rt.engine, IP_KEY).title)
    with pytest.raises(StaleCase):
        _edit(rt, title="x", expected_version=7)
    _change(rt, IP_KEY, "cancel", MONDAY)
    with pytest.raises(IllegalTransition, match="it is cancelled"):
        _edit(rt, title="too late")
    assert _audit(rt.engine, "case.edit") == []


# --- the ladder across new dates and rounds --------------------------------------------------


def test_a_rescheduled_ladder_restarts_from_the_new_date_and_never_repeats_a_date(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    old_due = desk.planned_due
    _monitor(rt, old_due)
    first = _rows(rt.engine, subject=DESK_STUDY)
    assert {r.rule for r in first} == {"due"}
    assert all(f"{DESK_STUDY}@" not in r.dedupe_key for r in first)  # as before
    assert f"m:{IP_KEY}/{DESK_STUDY}/due/{DESK_OWNER}" in {r.dedupe_key for r in first}

    # Later the same week the date moves three weeks on: nothing is due on it yet.
    new_due = old_due + timedelta(days=21)
    _reschedule(rt, DESK_STUDY, new_due, old_due + timedelta(days=1))
    _monitor(rt, old_due + timedelta(days=1))
    assert _rows(rt.engine, subject=DESK_STUDY) == first
    _monitor(rt, new_due)
    again = [r for r in _rows(rt.engine, subject=DESK_STUDY) if r.due_on == new_due]
    assert {r.rule for r in again} >= {"due"}
    assert all(f"{DESK_STUDY}@{new_due.isoformat()}/" in r.dedupe_key for r in again)

    # Back to the old date: every step already sent for it stays sent, nothing twice.
    count = len(_rows(rt.engine))
    _reschedule(rt, DESK_STUDY, old_due, new_due)
    _monitor(rt, new_due)
    fresh = _rows(rt.engine)[count:]
    assert not [r for r in fresh if r.subject == DESK_STUDY and r.rule == "due"]
    keys = [r.dedupe_key for r in _rows(rt.engine)]
    assert len(keys) == len(set(keys))


def test_a_milestone_reopened_by_rework_fires_its_ladder_again(timeout_rt: Runtime) -> None:
    rt = timeout_rt
    key = _open(rt, kind="timeout-check")
    draft = _milestone(rt.engine, key, "draft")
    _monitor(rt, draft.planned_due)
    r1 = [r for r in _rows(rt.engine, subject="draft") if r.rule == "due"]
    assert r1 and all("/r2/" not in r.dedupe_key for r in r1)
    _progress(rt, key, "draft", "complete", draft.planned_due, LEAD)
    deadline = _gate(rt.engine, key, "no-by-default").deadline
    assert deadline is not None
    _monitor(rt, deadline + timedelta(days=1))  # rejected by timeout: back to prep
    reopened = _milestone(rt.engine, key, "draft")
    # Reopened and, still past its agreed date, late again from that day: a new round.
    assert (reopened.round, reopened.overdue_on) == (2, deadline + timedelta(days=1))
    assert _gate(rt.engine, key, "no-by-default").status is GateStatus.PENDING

    _monitor(rt, deadline + timedelta(days=2))

    r2 = [r for r in _rows(rt.engine, subject="draft") if "/r2" in r.dedupe_key]
    assert r2 and all(r.dedupe_key.startswith(f"m:{key}/draft/r2/") for r in r2)
    assert {r.payload["round"] for r in r2} == {2}


def test_the_audit_of_a_reopen_names_the_rounds(timeout_rt: Runtime) -> None:
    rt = timeout_rt
    key = _open(rt, kind="timeout-check")
    _progress(rt, key, "draft", "complete", MONDAY + timedelta(days=2), LEAD)
    deadline = _gate(rt.engine, key, "no-by-default").deadline
    assert deadline is not None
    _monitor(rt, deadline + timedelta(days=1))
    (event,) = _audit(rt.engine, "milestone.reopen")
    assert event.before is not None and event.after is not None
    assert (event.before["round"], event.after["round"]) == (1, 2)


def test_show_gives_three_plans_per_item(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    _reschedule(rt, DESK_STUDY, desk.planned_due + timedelta(days=7), MONDAY)
    shown = _show(rt, MONDAY)
    row = next(m for m in shown["milestones"] if m["key"] == DESK_STUDY)
    assert row["baseline_due"] == desk.planned_due.isoformat()
    assert row["planned_due"] == (desk.planned_due + timedelta(days=7)).isoformat()
    assert "forecast_due" in row and row["round"] == 1
    assert shown["baselines"] == [] and shown["baseline_target"] == shown["target"]
    assert all("baseline_due" in g for g in shown["gates"])


# --- which plan the KPIs measure --------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "due"),
    [
        ([], D0),
        ([(D0 - timedelta(days=3), D1)], D1),  # moved before it fell due: the new date
        ([(D0, D1)], D1),  # moved on its due day: the new date
        ([(D0 + timedelta(days=1), D1)], D0),  # moved once late: still measured on D0
        ([(D0 - timedelta(days=3), D1), (D1 + timedelta(days=2), D1 + timedelta(days=30))], D1),
    ],
)
def test_an_item_is_measured_against_the_due_date_in_force_when_it_fell_due(
    changes: list[tuple[date, date]], due: date
) -> None:
    assert planning.due_in_force(D0, changes) == due


def test_kpis_measure_on_time_against_the_plan_in_force_and_the_original(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    kickoff = _milestone(rt.engine, IP_KEY, "kickoff")
    original = kickoff.planned_due
    # Agreed later before it fell due, done after the original date but on the agreed one.
    _reschedule(rt, "kickoff", original + timedelta(days=14), original - timedelta(days=2))
    done_on = original + timedelta(days=7)
    _progress(rt, IP_KEY, "kickoff", "complete", done_on, LEAD)
    # The desk study is rescheduled only once it is already late: still measured on its date.
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    _reschedule(
        rt, DESK_STUDY, desk.planned_due + timedelta(days=30), desk.planned_due + timedelta(days=3)
    )
    as_of = desk.planned_due + timedelta(days=5)

    frames = kpis.load(rt.engine, as_of=as_of)
    facts = kpis.milestone_facts(frames).set_index("milestone")
    row = facts.loc["kickoff"]
    assert (row["on_time"], row["on_time_baseline"], row["breached"]) == (True, False, False)
    assert pd.Timestamp(row["sla_due"]).date() == original + timedelta(days=14)
    assert pd.Timestamp(row["baseline_due"]).date() == original
    late = facts.loc[DESK_STUDY]
    assert pd.Timestamp(late["sla_due"]).date() == desk.planned_due
    assert pd.Timestamp(late["planned_due"]).date() == desk.planned_due + timedelta(days=30)
    assert late["breached"] and not late["overdue_now"]
    table = kpis.build_milestone_kpis(frames).set_index("pilot").loc["ip-integration"]
    assert (table["done_on_time"], table["done_on_time_baseline"]) == (1, 0)
    assert (table["on_time_pct"], table["on_time_baseline_pct"]) == (100.0, 0.0)
    breaches = kpis.build_sla_breaches(frames)
    assert list(breaches["milestone"]) == [DESK_STUDY]


# --- the console script ----------------------------------------------------------------------


@pytest.fixture
def home(demo_home: Path, tmp_path: Path) -> Path:
    """A private copy of the demo home (tests/conftest.py)."""
    copy = tmp_path / "home"
    shutil.copytree(demo_home, copy)
    return copy


def _json(home: Path, *args: str) -> Any:
    done = run_here(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_plan_commands_from_the_console(home: Path) -> None:
    shown = _json(home, "case", "show", DEMO_IP, "--as-of", DEMO_AS_OF)
    open_item = next(m for m in shown["milestones"] if m["status"] == "planned")
    new_due = (date.fromisoformat(open_item["planned_due"]) + timedelta(days=20)).isoformat()
    moved = _json(
        home,
        *("milestone", "reschedule", DEMO_IP, open_item["key"], "--due", new_due),
        *("--reason", "late data", "--as-of", DEMO_AS_OF, "--by", LEAD),
        *("--if-version", str(shown["version"])),
    )
    assert moved["moved"][0]["item"] == open_item["key"]
    assert moved["moved"][0]["after"]["due"] == new_due
    after = _json(home, "case", "show", DEMO_IP, "--as-of", DEMO_AS_OF)
    row = next(m for m in after["milestones"] if m["key"] == open_item["key"])
    assert (row["baseline_due"], row["planned_due"]) == (open_item["baseline_due"], new_due)
    assert after["version"] == shown["version"] + 1

    done = run_here(
        home, "case", "rebaseline", DEMO_IP, "--reason", "agreed", "--as-of", DEMO_AS_OF
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{DEMO_IP} baseline 1: target ")
    table = run_here(home, "case", "show", DEMO_IP, "--as-of", DEMO_AS_OF)
    assert "baseline 1: " in table.stdout and "baseline_due" in table.stdout

    edited = run_here(home, "case", "edit", DEMO_IP, "--title", "Renamed", "--as-of", DEMO_AS_OF)
    assert edited.returncode == 0, edited.stderr
    assert "title " in edited.stdout and "-> Renamed" in edited.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("milestone", "reschedule", DEMO_IP, "kickoff", "--due", "soon", "--reason", "x"),
         "--due 'soon' is not an ISO date"),
        (("milestone", "reschedule", DEMO_IP, "kickoff", "--due", "2026-12-01", "--reason", "x"),
         "it is done"),
        (("milestone", "reschedule", DEMO_IP, "nope", "--due", "2026-12-01", "--reason", "x"),
         "has no milestone 'nope'"),
        (("milestone", "reschedule", DEMO_IP, DESK_STUDY, "--due", "2026-12-01", "--reason",
          "x", "--if-version", "999"), "not 999"),
        (("case", "rebaseline", DEMO_IP, "--reason", " "), "say why"),
        (("case", "edit", DEMO_IP, "--target", "1999-01-01"), "before case"),
        (("case", "edit", DEMO_IP, "--partner", "NOPE"), "no partner NOPE"),
        (("case", "edit", DEMO_IP), "nothing to change"),
    ],
)  # fmt: skip
def test_bad_plan_input_is_one_line(home: Path, args: tuple[str, ...], message: str) -> None:
    done = run_here(home, *args, "--as-of", DEMO_AS_OF)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


# --- replan: the plan's rule with some dates kept (no database) ------------------------------


def _dag() -> list[Item]:
    dk = calendar_for("DK")
    w = DayKind.WORKING
    return [
        Item("a", 3, w, dk),
        Item("b", 2, w, dk, after=(Link("a"),)),
        Item("c", 5, w, dk, after=(Link("a", 2),)),
        Item("d", 1, w, dk, after=(Link("b"), Link("c"))),
        Item("e", 4, DayKind.CALENDAR, dk, after=(Link("b", 3, DayKind.CALENDAR),)),
    ]


def _dates(slots: dict[str, Slot]) -> dict[str, tuple[date, date]]:
    return {key: (s.start, s.due) for key, s in slots.items()}


def test_replan_with_nothing_kept_is_the_plan_and_moves_only_what_follows() -> None:
    start = date(2026, 3, 2)
    plan = schedule(_dag(), start)
    assert _dates(replan(_dag(), start, {})) == _dates(plan)
    # Keep everything but what follows `b`, and move `b` two weeks on.
    moved_b = Slot(plan["b"].start, plan["b"].due + timedelta(days=14))
    kept = {k: s for k, s in plan.items() if k not in {"d", "e"}} | {"b": moved_b}
    again = _dates(replan(_dag(), start, kept))
    assert again["a"] == _dates(plan)["a"] and again["c"] == _dates(plan)["c"]
    assert again["b"] == (moved_b.start, moved_b.due)
    assert again["d"][0] >= moved_b.due and again["d"][0] > plan["d"].start
    assert again["e"][0] == moved_b.due + timedelta(days=3)  # a 3-calendar-day lag
