"""Items added to one case (`milestone add | remove`), the agenda and the case list's filters,
on a SQLite file and on PostgreSQL: the use cases, their refusals, and the command line."""

import json
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text, update
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import BridgeError, IllegalTransition, InvalidInput, NotFound, StaleCase
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import agenda, cases, items, progress, queries
from bridgebsr.office.progress import Actor
from bridgebsr.reports import kpis
from bridgebsr.reports.load import load
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import read_session, write_session
from bridgebsr.store.people import load_directory
from models import (
    Case,
    CaseEvent,
    Contact,
    DayKind,
    Decision,
    Gate,
    GateStatus,
    Milestone,
    MilestoneStatus,
    Notification,
    NotificationStatus,
    PlanChange,
)
from tests.conftest import BEFORE_COUNCIL, at
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env

LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT (DK), owns IP cases here
IP_PILOT_LEAD = "karin.astrom@mva.example"  # holds ip-expert for SCANBALT's IP cases (SE)
LEGAL = "nikolaj.brond@scanbalt.example"  # legal-advisor at SCANBALT
COORDINATOR = "mette.sorensen@scanbalt.example"
COUNCIL_VOTER = "peter.moller-jensen@mva.example"
MONDAY = date(2026, 3, 2)
IP_KEY = "IP-2026-0001"
ZONE = "Europe/Copenhagen"


def _open(rt: Runtime, start: date = MONDAY) -> str:
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind="ip-integration",
            title="An IP case",
            owner_email=LEAD,
            start=start,
            now=at(start.isoformat()),
        ).key


def _add(rt: Runtime, day: date, case: str = IP_KEY, **given: Any) -> items.Added:
    fields: dict[str, Any] = {
        "key": "extra-review",
        "title": "Extra legal review",
        "owner": "legal-advisor",
        "duration": 5,
        "after": "kickoff+2",
    } | given
    with write_session(rt.engine) as session:
        return items.add_milestone(
            session=session, case_key=case, actor=Actor(LEAD), now=at(day.isoformat()), **fields
        )


def _remove(rt: Runtime, item: str, day: date, reason: str = "not needed") -> None:
    with write_session(rt.engine) as session:
        items.remove_milestone(
            session=session,
            case_key=IP_KEY,
            milestone_key=item,
            reason=reason,
            actor=Actor(LEAD),
            now=at(day.isoformat()),
        )


def _progress(rt: Runtime, item: str, action: str, day: date) -> None:
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=IP_KEY,
            milestone_key=item,
            action=action,
            actor=Actor(LEAD),
            now=at(day.isoformat()),
        )


def _milestones(engine: Engine) -> dict[str, Milestone]:
    with read_session(engine) as session:
        return {m.key: m for m in session.exec(select(Milestone).order_by(col(Milestone.seq)))}


def _case(engine: Engine, key: str = IP_KEY) -> Case:
    with read_session(engine) as session:
        return session.exec(select(Case).where(Case.key == key)).one()


def _events(engine: Engine, kind: str) -> list[CaseEvent]:
    with read_session(engine) as session:
        return list(session.exec(select(CaseEvent).where(CaseEvent.kind == kind)))


def _calendar(rt: Runtime, email: str) -> Any:
    with read_session(rt.engine) as session:
        return store.contact_by_email(session.connection(), email).calendar


# --- milestone add ------------------------------------------------------------------------------


def test_an_added_item_is_dated_after_its_predecessor_in_its_owners_calendar(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    before = _milestones(rt.engine)
    version = _case(rt.engine).version
    added = _add(rt, MONDAY)
    assert added.owner == LEGAL  # the legal-advisor at the lead partner, as a case opens
    after = _milestones(rt.engine)
    new = after["extra-review"]
    kickoff = before["kickoff"]
    cal = _calendar(rt, LEGAL)
    start = cal.add(kickoff.forecast_due, 2, DayKind.WORKING)
    assert (new.planned_start, new.planned_due) == (start, cal.add(start, 5, DayKind.WORKING))
    assert (new.baseline_start, new.baseline_due) == (new.planned_start, new.planned_due)
    assert new.forecast_due == new.planned_due
    assert new.adhoc and new.round == 1 and new.status is MilestoneStatus.PLANNED
    assert new.stage == "scoping" and new.owner_role == "legal-advisor"
    assert new.seq == max(m.seq for m in before.values()) + 1
    assert new.depends_on == [{"key": "kickoff", "lag": 2, "days": "working"}]
    # The template's items are as they were; the case moved on by one version.
    assert {k: (m.planned_due, m.forecast_due) for k, m in before.items()} == {
        k: (m.planned_due, m.forecast_due) for k, m in after.items() if k != "extra-review"
    }
    assert _case(rt.engine).version == version + 1
    (event,) = _events(rt.engine, "milestone.add")
    assert event.subject == "extra-review" and event.actor == LEAD
    assert event.after is not None and event.after["owner"] == LEGAL
    assert event.after["planned_due"] == new.planned_due.isoformat()
    with read_session(rt.engine) as session:
        (change,) = session.exec(select(PlanChange)).all()
    assert (change.item_kind, change.item_key, change.why) == ("milestone", "extra-review", "add")
    assert (change.start, change.due) == (new.planned_start, new.planned_due)


def test_an_added_item_at_the_end_moves_the_case_forecast_and_takes_the_critical_path(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    forecast = _case(rt.engine).forecast_date
    _add(
        rt,
        MONDAY,
        key="follow-up",
        owner=COORDINATOR,
        duration=30,
        after="action-plan-integration",
        days=DayKind.CALENDAR,
    )
    new = _milestones(rt.engine)["follow-up"]
    case = _case(rt.engine)
    assert new.owner_role == "coordinator" and new.stage == "action-plan"
    assert new.planned_due - new.planned_start == timedelta(days=30)
    assert case.forecast_date == new.forecast_due > forecast
    assert new.critical
    with read_session(rt.engine) as session:
        show = queries.show_case(session=session, key=IP_KEY, today=MONDAY)
    assert show["critical_path"][-1] == "follow-up"
    assert "follow-up" in [m["key"] for m in show["milestones"]]


def test_an_item_added_after_finished_work_starts_no_earlier_than_today(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    _progress(rt, "kickoff", "complete", date(2026, 3, 4))
    today = date(2026, 5, 4)  # a Monday, long after the kick-off
    _add(rt, today, after="kickoff", owner=LEGAL)
    new = _milestones(rt.engine)["extra-review"]
    cal = _calendar(rt, LEGAL)
    assert new.planned_start == cal.roll_forward(today)
    assert new.planned_due == cal.add(new.planned_start, 5, DayKind.WORKING)


@pytest.mark.parametrize(
    ("given", "error", "words"),
    [
        ({"key": "kickoff"}, IllegalTransition, "already has an item 'kickoff'"),
        ({"key": "council-approval"}, IllegalTransition, "already has an item"),
        ({"after": "nowhere"}, NotFound, "no item 'nowhere'"),
        ({"after": "kickoff+x"}, InvalidInput, "--after 'kickoff+x'"),
        ({"after": "kickoff+999"}, InvalidInput, "0-500"),
        ({"after": "kickoff+-1"}, InvalidInput, "--after"),
        ({"key": "Bad Key"}, InvalidInput, "--key"),
        ({"stage": "nowhere"}, InvalidInput, "--stage 'nowhere'"),
        ({"owner": "ghost-role"}, InvalidInput, "neither an email nor a role"),
        ({"owner": "nobody@example.org"}, NotFound, "no contact nobody@example.org"),
        ({"duration": -1}, InvalidInput, "--duration"),
    ],
)
def test_milestone_add_refuses_bad_input_and_writes_nothing(
    consortium: Runtime, given: dict[str, Any], error: type[BridgeError], words: str
) -> None:
    rt = consortium
    _open(rt)
    version = _case(rt.engine).version
    with pytest.raises(error, match=words.replace("+", r"\+")):
        _add(rt, MONDAY, **given)
    assert "extra-review" not in _milestones(rt.engine)
    assert _case(rt.engine).version == version
    assert not _events(rt.engine, "milestone.add")


def test_milestone_add_refuses_a_closed_case_a_retired_owner_and_a_stale_view(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    version = _case(rt.engine).version
    with pytest.raises(StaleCase, match="not 99"):
        _add(rt, MONDAY, expected_version=99)
    with rt.engine.begin() as conn:
        conn.execute(
            update(Contact).where(col(Contact.email) == LEGAL).values(retired_at=at("2026-03-01"))
        )
    with pytest.raises(IllegalTransition, match="has retired"):
        _add(rt, MONDAY, owner=LEGAL)
    with write_session(rt.engine) as session:
        cases.change_case(
            session=session,
            key=IP_KEY,
            action="cancel",
            reason="stop",
            actor=LEAD,
            now=at("2026-03-03"),
        )
    with pytest.raises(IllegalTransition, match="is cancelled"):
        _add(rt, date(2026, 3, 4), owner=COORDINATOR)
    assert _case(rt.engine).version == version + 1  # the cancel alone


# --- the monitor sees an added item like any other --------------------------------------------


def test_an_added_items_ladder_fires_and_removing_it_suppresses_what_is_queued(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    _add(rt, MONDAY)
    new = _milestones(rt.engine)["extra-review"]
    for day in (new.planned_due - timedelta(days=d) for d in range(16, -1, -1)):
        run_monitor(rt.engine, now=at(day.isoformat(), 7), zone=ZONE)
    with read_session(rt.engine) as session:
        rows = session.exec(select(Notification).where(Notification.subject == "extra-review"))
        fired = {(n.rule, n.dedupe_key.rsplit("/", 1)[1]) for n in rows}
    assert {("remind-10", LEGAL), ("remind-2", LEGAL), ("due", LEGAL)} <= fired
    assert ("due", LEAD) in fired  # the due step tells the pilot-lead too
    with rt.engine.begin() as conn:  # as if still waiting for the reader's quiet hours
        conn.execute(
            update(Notification)
            .where(col(Notification.subject) == "extra-review")
            .values(status=NotificationStatus.PENDING)
        )
    _remove(rt, "extra-review", new.planned_due)
    with read_session(rt.engine) as session:
        statuses = set(
            session.exec(select(Notification.status).where(Notification.subject == "extra-review"))
        )
    assert statuses == {NotificationStatus.SUPPRESSED}


# --- milestone remove ---------------------------------------------------------------------------


def test_removing_an_added_item_deletes_it_with_its_reason_on_the_trail(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    forecast = _case(rt.engine).forecast_date
    _add(
        rt, MONDAY, key="follow-up", owner=COORDINATOR, duration=30, after="action-plan-integration"
    )
    assert _case(rt.engine).forecast_date > forecast
    version = _case(rt.engine).version
    _remove(rt, "follow-up", date(2026, 3, 3), reason="the council does it")
    assert "follow-up" not in _milestones(rt.engine)
    case = _case(rt.engine)
    assert case.version == version + 1 and case.forecast_date == forecast
    (event,) = _events(rt.engine, "milestone.remove")
    assert event.subject == "follow-up" and event.comment == "the council does it"
    assert event.before is not None and event.before["owner"] == COORDINATOR
    # The same key may be added again afterwards.
    _add(rt, date(2026, 3, 4), key="follow-up", owner=COORDINATOR, after="kickoff")
    assert _milestones(rt.engine)["follow-up"].adhoc


def test_milestone_remove_refuses_template_items_started_items_and_items_depended_on(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    _add(rt, MONDAY)
    _add(rt, MONDAY, key="second-review", after="extra-review", owner=LEGAL)
    version = _case(rt.engine).version
    with pytest.raises(IllegalTransition, match="comes from the case's template"):
        _remove(rt, "kickoff", MONDAY)
    with pytest.raises(IllegalTransition, match="second-review depend"):
        _remove(rt, "extra-review", MONDAY)
    with pytest.raises(NotFound, match="no milestone 'ghost'"):
        _remove(rt, "ghost", MONDAY)
    with pytest.raises(InvalidInput, match="say why"):
        _remove(rt, "second-review", MONDAY, reason=" ")
    assert _case(rt.engine).version == version
    _progress(rt, "kickoff", "complete", date(2026, 3, 4))
    _progress(rt, "extra-review", "start", date(2026, 3, 5))
    _remove(rt, "second-review", date(2026, 3, 5))
    with pytest.raises(IllegalTransition, match="it is in_progress"):
        _remove(rt, "extra-review", date(2026, 3, 5))
    assert set(_milestones(rt.engine)) >= {"extra-review"}


# --- the agenda ---------------------------------------------------------------------------------


def _at_council(rt: Runtime) -> None:
    """The IP case's council-approval gate open since 2026-12-22, one council vote cast."""
    for key in BEFORE_COUNCIL:
        _progress(rt, key, "complete", date(2026, 12, 22))
    with write_session(rt.engine) as session:
        progress.decide_gate(
            session=session,
            case_key=IP_KEY,
            gate_key="council-approval",
            decision=Decision.APPROVE,
            actor=Actor(COUNCIL_VOTER),
            now=at("2026-12-23"),
        )


def test_the_agenda_lists_late_and_due_items_and_gates_with_who_decides(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    _at_council(rt)
    today = date(2027, 1, 4)
    with read_session(rt.engine) as session:
        rows = agenda.agenda(session=session, today=today, within=30)
        gate = session.exec(select(Gate).where(Gate.key == "council-approval")).one()
        directory = load_directory(session.connection())
    assert [r["due"] for r in rows] == sorted(r["due"] for r in rows)
    by_item = {r["item"]: r for r in rows}
    council = by_item["council-approval"]
    assert gate.status is GateStatus.OPEN and gate.deadline is not None
    # Every council member may vote (as `gate approve` accepts), but the one who has.
    holders = directory.by_role["council-member"]
    assert council["who"] == [p.email for p in holders if p.email != COUNCIL_VOTER]
    assert len(council["who"]) == 5
    assert council["needed"] == gate.required - 1
    assert council["due"] == gate.deadline.isoformat()
    assert council["days_left"] == (gate.deadline - today).days
    milestones = _milestones(rt.engine)
    open_due = {
        k for k, m in milestones.items()
        if m.status is MilestoneStatus.PLANNED and m.planned_due <= today + timedelta(days=30)
    }  # fmt: skip
    assert {r["item"] for r in rows if r["kind"] == "milestone"} == open_due
    for r in rows:
        if r["kind"] == "milestone":
            due = milestones[r["item"]].planned_due
            assert r["days_late"] == max((today - due).days, 0)
    # Only what one person owns or may decide; only one lead partner's cases.
    with read_session(rt.engine) as session:
        mine = agenda.agenda(session=session, today=today, within=30, owner=council["who"][0])
        theirs = agenda.agenda(session=session, today=today, within=30, partner="MVA")
        with pytest.raises(NotFound, match="no contact"):
            agenda.agenda(session=session, today=today, owner="nobody@example.org")
        with pytest.raises(NotFound, match="no partner"):
            agenda.agenda(session=session, today=today, partner="NOPE")
    assert [r["item"] for r in mine] == ["council-approval"]
    assert theirs == []


# --- case list ----------------------------------------------------------------------------------


def test_case_list_filters_by_owner_and_due_within_and_flags_cases_ready_to_close(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    second = _open(rt, start=date(2026, 9, 1))
    _add(rt, date(2026, 9, 1), case=second, owner=COORDINATOR, after="kickoff")
    with rt.engine.begin() as conn:  # the first case's work all finished
        case_id = _case(rt.engine).id
        conn.execute(
            text("UPDATE milestones SET status = 'done' WHERE case_id = :c"), {"c": case_id}
        )
        conn.execute(
            text("UPDATE gates SET status = 'approved' WHERE case_id = :c"), {"c": case_id}
        )

    def keys(**given: Any) -> list[str]:
        with read_session(rt.engine) as session:
            return [
                r["key"]
                for r in queries.list_cases(session=session, today=date(2026, 9, 1), **given)
            ]

    with read_session(rt.engine) as session:
        rows = queries.list_cases(session=session, today=date(2026, 9, 1))
    assert {r["key"]: r["ready_to_close"] for r in rows} == {IP_KEY: True, second: False}
    assert keys(owner=COORDINATOR) == [second]  # owns an open item of the second only
    assert keys(owner=LEAD) == [IP_KEY, second]  # owns both cases
    assert keys(due_within=20) == [second]  # the kick-off, due in ten working days
    assert keys(due_within=5) == []
    with pytest.raises(NotFound, match="no contact"):
        keys(owner="nobody@example.org")


# --- the command line ---------------------------------------------------------------------------


def test_the_commands_work_with_json_and_refuse_with_one_line(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    env = store_env(rt)
    add = (
        "milestone", "add", IP_KEY, "--key", "extra-review", "--title", "Extra review",
        "--owner", "legal-advisor", "--duration", "5", "--after", "kickoff+2",
        "--as-of", "2026-03-02", "--by", LEAD,
    )  # fmt: skip
    done = cli(env, *add, "--if-version", "1", "--json")
    assert done.code == 0, done
    shown = json.loads(done.stdout)
    assert shown["item"] == "extra-review" and shown["owner"] == LEGAL
    assert shown["planned_due"] == _milestones(rt.engine)["extra-review"].planned_due.isoformat()
    assert shown["version"] == 2
    one_error_line(cli(env, *add), "already has an item 'extra-review'")
    one_error_line(cli(env, *add[:-4], "--if-version", "1"), "not 1")
    other = (*add[:4], "other-review", *add[5:12])
    one_error_line(cli(env, *other, "nowhere+2", *add[13:]), "no item 'nowhere'")
    one_error_line(cli(env, *other, "kickoff+two", *add[13:]), "--after")
    removing = ("milestone", "remove", IP_KEY, "kickoff", "--reason", "x", "--by", LEAD)
    one_error_line(cli(env, *removing), "comes from the case's template")
    done = cli(env, "milestone", "remove", IP_KEY, "extra-review", "--reason", "no", "--by", LEAD)
    assert done.code == 0 and "extra-review removed" in done.stdout, done
    done = cli(env, "case", "list", "--owner", LEAD, "--due-within", "400", "--json")
    assert done.code == 0, done
    (row,) = json.loads(done.stdout)
    assert row["key"] == IP_KEY and row["ready_to_close"] is False
    one_error_line(cli(env, "case", "list", "--owner", "nobody@example.org"), "no contact")
    one_error_line(cli(env, "agenda", "--within", "-1"), "--within")


def test_the_agenda_command_lists_in_due_order(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    _open(rt, start=date(2026, 2, 2))  # a second case, a month ahead of the first
    env = store_env(rt)
    done = cli(env, "agenda", "--within", "40", "--as-of", "2026-03-09", "--json")
    assert done.code == 0, done
    rows = json.loads(done.stdout)
    dues = [(r["due"], r["case"], r["item"]) for r in rows]
    assert dues == sorted(dues) and len({r["case"] for r in rows}) == 2
    assert rows[0]["case"] == "IP-2026-0002" and rows[0]["days_late"] > 0
    assert all(r["who"] for r in rows if r["kind"] == "milestone")
    table = cli(env, "agenda", "--within", "40", "--as-of", "2026-03-09", "--owner", LEAD)
    assert table.code == 0, table
    assert "IP-2026-0002" in table.stdout and "late" in table.stdout


# --- the report ---------------------------------------------------------------------------------


def test_an_added_item_is_in_the_reports_milestones_and_forecast(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    _add(
        rt, MONDAY, key="follow-up", owner=COORDINATOR, duration=60, after="action-plan-integration"
    )
    frames = load(rt.engine, as_of=date(2026, 3, 10))
    assert "follow-up" in set(frames.milestones["key"].astype(str))
    (row,) = kpis.build_all(frames)["forecast"].to_dict("records")
    assert row["forecast_date"] == row["stored_forecast_date"]
