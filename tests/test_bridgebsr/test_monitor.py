"""The monitor pass, on a SQLite file and on PostgreSQL.

Cases are set up through the real use cases; every date the monitor is run on is worked out
from the planned dates and deadlines in the store and the owners' working calendars, so the
tests follow the shipped templates and public holidays rather than hand-counted days.
"""

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.errors import BridgeError
from bridgebsr.monitor.report import MonitorReport
from bridgebsr.monitor.sweep import MONITOR_ACTOR, run_monitor
from bridgebsr.office import cases, directory, progress
from bridgebsr.rules.calendars import WorkCalendar, calendar_for, subdivision_of
from bridgebsr.rules.ladder import EXPIRED_RULE, HOLIDAY_SLACK, Ladder, horizon, stand, step_day
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as store
from bridgebsr.store import migrate
from bridgebsr.store.db import read_session, write_session
from models import (
    CASE_OWNER,
    NODE_OWNER,
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    Decision,
    Gate,
    GateStatus,
    LadderStep,
    Milestone,
    MilestoneStatus,
    Notification,
    Partner,
    Source,
    Template,
)
from tests.conftest import BEFORE_ACCEPTANCE, BEFORE_COUNCIL, at, migrated

ZONE = "Europe/Copenhagen"
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT, Denmark
COORDINATOR = "mette.sorensen@scanbalt.example"  # the only coordinator
SME_OWNER = "anders.bogh@scanbalt.example"  # case-owner at SCANBALT
SE_OWNER = "oskar.lundback@lundback-dx.example"  # case-owner at LUNDBACK-DX (SE): no pilot-lead
COUNCIL_VOTER = "peter.moller-jensen@mva.example"
SECOND_VOTER = "juergen.weiss@bioconvalley.example"
MONDAY = date(2026, 3, 2)
IP_KEY = "IP-2026-0001"
SME_KEY = "SME-2026-0001"
COUNCIL = "council-approval"
DESK_STUDY = "bottleneck-desk-study"  # an ip-expert's IP milestone
IP_PILOT_LEAD = "karin.astrom@mva.example"  # leads ip-integration (contacts.csv); MVA, Sweden
# SCANBALT has no ip-expert: the desk study of a case it leads falls to the IP pilot's lead.
DESK_OWNER = IP_PILOT_LEAD
SNAPSHOT = ("cases", "milestones", "gates", "gate_decisions", "case_events", "notifications")
BRIDGEBSR = Path(sys.executable).parent / "bridgebsr"
# Two gates after one milestone: one approved by default, one rejected (back to rework).
TIMEOUT_TEMPLATE = """\
kind: timeout-check
version: 1
title: Gates decided by their deadlines
key_prefix: TOC
roles: [coordinator, pilot-lead, council-member]
stages:
  - {key: prep, title: Preparation}
  - {key: review, title: Review}
  - {key: wrap-up, title: Wrap-up}
milestones:
  - {key: draft, title: Draft, stage: prep, owner: pilot-lead, duration: 5}
  - key: finish
    title: Finish
    stage: wrap-up
    owner: pilot-lead
    duration: 5
    after: [yes-by-default, no-by-default]
gates:
  - key: yes-by-default
    title: Approved unless someone objects
    stage: review
    after: [draft]
    deadline: 3
    approvers: {role: council-member, required: 2}
    on_timeout: approve
    on_reject: {rework: prep}
  - key: no-by-default
    title: Rejected unless approved in time
    stage: review
    after: [draft]
    deadline: 3
    approvers: {role: council-member, required: 2}
    on_timeout: reject
    on_reject: {rework: prep}
ladder:
  - {key: due, offset: 0, notify: [owner]}
  - {key: late-3, offset: 3, notify: [coordinator], urgent: true}
"""


# --- helpers ---------------------------------------------------------------------------------


def _open(
    rt: Runtime, *, kind: str = "ip-integration", owner: str = LEAD, start: date = MONDAY
) -> str:
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=f"A {kind} case",
            owner_email=owner,
            start=start,
            now=at(start.isoformat()),
        ).key


def _progress(rt: Runtime, key: str, milestone: str, action: str, day: date, by: str) -> None:
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=key,
            milestone_key=milestone,
            action=action,
            actor=progress.Actor(by),
            now=at(day.isoformat()),
        )


def _decide(rt: Runtime, key: str, gate: str, by: str, day: date) -> None:
    with write_session(rt.engine) as session:
        progress.decide_gate(
            session=session,
            case_key=key,
            gate_key=gate,
            decision=Decision.APPROVE,
            actor=progress.Actor(by),
            now=at(day.isoformat()),
        )


def _change(rt: Runtime, key: str, action: str, day: date) -> None:
    with write_session(rt.engine) as session:
        cases.change_case(
            session=session,
            key=key,
            action=action,
            reason=f"reason to {action}",
            actor=LEAD,
            now=at(day.isoformat()),
        )


def _monitor(rt: Runtime, day: date, *, dry_run: bool = False) -> MonitorReport:
    """One pass at 07:00 UTC (morning everywhere in the consortium) on `day`."""
    return run_monitor(rt.engine, now=at(day.isoformat(), 7), zone=ZONE, dry_run=dry_run)


def _milestone(engine: Engine, key: str, milestone: str) -> Milestone:
    with read_session(engine) as session:
        case = store.case_by_key(session, key)
        return next(m for m in store.milestones_of(session, case) if m.key == milestone)


def _gate(engine: Engine, key: str, gate: str) -> Gate:
    with read_session(engine) as session:
        case = store.case_by_key(session, key)
        return next(g for g in store.gates_of(session, case) if g.key == gate)


def _case(engine: Engine, key: str) -> Case:
    with read_session(engine) as session:
        return store.case_by_key(session, key)


def _deadline(engine: Engine, key: str, gate: str) -> date:
    deadline = _gate(engine, key, gate).deadline
    assert deadline is not None
    return deadline


def _rows(engine: Engine, *, subject: str | None = None, after_id: int = 0) -> list[Notification]:
    query = select(Notification).where(col(Notification.id) > after_id)
    if subject is not None:
        query = query.where(Notification.subject == subject)
    with read_session(engine) as session:
        return list(session.exec(query.order_by(col(Notification.id))))


def _last_id(engine: Engine) -> int:
    rows = _rows(engine)
    return max((r.id or 0 for r in rows), default=0)


def _emails(engine: Engine) -> dict[int, str]:
    with read_session(engine) as session:
        return {c.id: c.email for c in session.exec(select(Contact)) if c.id is not None}


def _holders(engine: Engine, role: str) -> set[str]:
    with read_session(engine) as session:
        return {c.email for c in session.exec(select(Contact).where(Contact.role == role))}


def _recipients(engine: Engine, rows: list[Notification]) -> set[str]:
    emails = _emails(engine)
    return {emails[r.recipient_id] for r in rows}


def _events(engine: Engine, *, kind: str | None = None) -> list[CaseEvent]:
    query = select(CaseEvent).where(CaseEvent.actor == MONITOR_ACTOR)
    if kind is not None:
        query = query.where(CaseEvent.kind == kind)
    with read_session(engine) as session:
        return list(session.exec(query.order_by(col(CaseEvent.id))))


def _calendar_of(engine: Engine, email: str) -> WorkCalendar:
    """A contact's working calendar: their country, and their partner's state there."""
    with read_session(engine) as session:
        contact, partner = session.exec(
            select(Contact, Partner)
            .join(Partner, col(Partner.id) == Contact.partner_id)
            .where(Contact.email == email)
        ).one()
    region = partner.region if partner.country == contact.country else None
    return calendar_for(contact.country, subdivision_of(contact.country, region))


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in SNAPSHOT
        }


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _comparable(report: MonitorReport) -> dict[str, Any]:
    summary = report.summary()
    summary.pop("dry_run")
    return summary


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def ip_at_council(consortium: Runtime) -> Runtime:
    """An IP case whose council-approval gate opened on 2026-12-22 (28 calendar days)."""
    _open(consortium)
    for key in BEFORE_COUNCIL:
        _progress(consortium, IP_KEY, key, "complete", date(2026, 12, 22), LEAD)
    assert _gate(consortium.engine, IP_KEY, COUNCIL).status is GateStatus.OPEN
    return consortium


@pytest.fixture
def sme_at_acceptance(consortium: Runtime) -> Runtime:
    """An SME request whose sme-acceptance gate (timeout: reject, cancel) is open."""
    _open(consortium, kind="shared-sme-service", owner=SME_OWNER, start=date(2026, 1, 12))
    for key in BEFORE_ACCEPTANCE:
        _progress(consortium, SME_KEY, key, "complete", date(2026, 2, 3), SME_OWNER)
    assert _gate(consortium.engine, SME_KEY, "sme-acceptance").status is GateStatus.OPEN
    return consortium


@pytest.fixture
def timeout_rt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A store with the consortium and an extra template whose gates time out to a decision."""
    folder = tmp_path / "extra-templates"
    folder.mkdir()
    (folder / "timeout-check.yaml").write_text(TIMEOUT_TEMPLATE, encoding="utf-8")
    with migrated(db_url, tmp_path / "home", template_dirs=str(folder)) as runtime:
        load_consortium(runtime)
        yield runtime


# --- the ladder ------------------------------------------------------------------------------


def test_each_ladder_step_fires_once_on_its_working_day_over_a_daily_replay(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    owner = _emails(rt.engine)[desk.owner_id or 0]
    assert owner == DESK_OWNER
    calendar = _calendar_of(rt.engine, owner)
    ladder = {s.key: s for s in rt.catalog.get("ip-integration").ladder}
    expected = {
        key: calendar.add_working_days(desk.planned_due, s.offset) for key, s in ladder.items()
    }
    # The ladder dates are distinct working days in the owner's calendar (Sweden).
    assert len(set(expected.values())) == len(ladder)
    assert all(calendar.is_working_day(day) for day in expected.values())

    written: dict[str, list[tuple[date, Notification]]] = defaultdict(list)
    for day in _days(desk.planned_due - timedelta(days=20), desk.planned_due + timedelta(days=20)):
        before = _last_id(rt.engine)
        _monitor(rt, day)
        for row in _rows(rt.engine, subject=DESK_STUDY, after_id=before):
            written[row.rule].append((day, row))

    assert set(written) == set(ladder)
    emails = _emails(rt.engine)
    for step, rows in written.items():
        for day, row in rows:
            # Each person is told on the step's working day in their own calendar.
            told = _calendar_of(rt.engine, emails[row.recipient_id])
            fire_on = told.roll_forward(
                told.add_working_days(desk.planned_due, ladder[step].offset)
            )
            assert day == row.fire_on == fire_on, (step, emails[row.recipient_id])
            assert row.urgent is ladder[step].urgent, step
        if {emails[row.recipient_id] for _, row in rows} == {owner}:
            assert {day for day, _ in rows} == {expected[step]}, step
    by_step = {step: _recipients(rt.engine, [r for _, r in rows]) for step, rows in written.items()}
    assert by_step == {
        "remind-10": {owner},
        "remind-2": {owner},
        "due": {owner, LEAD},  # owner and the pilot-lead of the lead partner SCANBALT
        "late-10": {COORDINATOR},
    }
    assert sum(len(rows) for rows in written.values()) == 5  # one row per step and recipient
    keys = {row.dedupe_key for _, row in written["remind-10"]}
    assert keys == {f"m:{IP_KEY}/{DESK_STUDY}/remind-10/{owner}"}


def test_catching_up_after_a_gap_fires_only_the_latest_step(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    desk = _milestone(rt.engine, IP_KEY, DESK_STUDY)
    calendar = _calendar_of(rt.engine, COORDINATOR)  # late-10 falls in the coordinator's days

    # First pass ever on the due day: the reminders are skipped, only `due` is written.
    _monitor(rt, desk.planned_due)
    assert {r.rule for r in _rows(rt.engine, subject=DESK_STUDY)} == {"due"}

    # Next pass two days after late-10 was reached: only late-10, to the coordinator.
    before = _last_id(rt.engine)
    report = _monitor(rt, calendar.add_working_days(desk.planned_due, 10) + timedelta(days=2))
    late = _rows(rt.engine, subject=DESK_STUDY, after_id=before)
    assert [r.rule for r in late] == ["late-10"]
    assert _recipients(rt.engine, late) == {COORDINATOR}
    assert late[0].urgent
    assert late[0].payload["days_late"] == (report.today - desk.planned_due).days


def test_a_rerun_with_the_same_now_writes_nothing_new(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    day = _milestone(rt.engine, IP_KEY, DESK_STUDY).planned_due + timedelta(days=1)
    first = _monitor(rt, day)
    assert first.notifications > 0 and first.newly_overdue > 0
    assert first.notifications == len(_rows(rt.engine))
    before = _snapshot(rt.engine)

    again = _monitor(rt, day)

    assert again.notifications == 0
    assert again.newly_overdue == again.newly_expired == 0
    assert again.signals == []
    assert _snapshot(rt.engine) == before
    assert [(i.case_key, i.item) for i in again.late] == [(i.case_key, i.item) for i in first.late]


def test_each_payload_is_stored_as_json_dumps_gives_the_whole_object(consortium: Runtime) -> None:
    # The monitor encodes a payload's item part and step part apart and joins the two texts.
    rt = consortium
    _open(rt)
    day = _milestone(rt.engine, IP_KEY, DESK_STUDY).planned_due + timedelta(days=1)
    run_monitor(
        rt.engine, now=at(day.isoformat(), 7), zone=ZONE, source=Source.FLOW, source_ref="run-7"
    )

    with rt.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT subject, rule, due_on, CAST(payload AS TEXT) FROM notifications")
        ).all()
    assert len({(subject, rule) for subject, rule, _, _ in stored}) > 2
    for subject, rule, due_on, payload in stored:
        data = json.loads(payload)
        assert payload == json.dumps(data)
        assert list(data) == [
            *("case", "case_title", "pilot", "country", "item", "item_kind", "item_title"),
            *("due", "days_late", "step", "offset", "round"),
            "run",  # no `baseline`: only an item moved off its original plan names it
        ]
        assert (data["case"], data["item"], data["step"]) == (IP_KEY, subject, rule)
        assert (data["due"], data["run"]) == (str(due_on), "run-7")


def test_role_recipients_are_the_lead_partners_holders_else_the_pilots_lead(
    consortium: Runtime,
) -> None:
    rt = consortium
    ip = _open(rt)  # led by SCANBALT, which has a pilot-lead and a coordinator
    sme = _open(rt, kind="shared-sme-service", owner=SE_OWNER)  # LUNDBACK-DX: neither
    intake = _milestone(rt.engine, sme, "request-intake")
    kickoff = _milestone(rt.engine, ip, "kickoff")
    late_5 = _calendar_of(rt.engine, LEAD).add_working_days(intake.planned_due, 5)

    _monitor(rt, intake.planned_due)
    _monitor(rt, kickoff.planned_due)
    report = _monitor(rt, late_5)

    # The SME pilot's own lead (LEAD leads shared-sme-service) stands in for the pilot-lead
    # and the coordinator: not the other two pilot-leads, not the coordinator of SCANBALT.
    sme_rows = _rows(rt.engine, subject="request-intake")
    by_step = {
        r.rule: _recipients(rt.engine, [x for x in sme_rows if x.rule == r.rule]) for r in sme_rows
    }
    assert by_step == {"due": {LEAD}, "late-5": {LEAD}}
    assert len(_holders(rt.engine, "pilot-lead")) == 3
    ip_due = [r for r in _rows(rt.engine, subject="kickoff") if r.rule == "due"]
    # The kickoff owner is the SCANBALT pilot-lead: one row, not two.
    assert [r.dedupe_key for r in ip_due] == [f"m:{ip}/kickoff/due/{LEAD}"]
    assert report.unheld == set()


def test_a_role_no_one_holds_for_a_case_is_reported_once_and_told_to_no_one(
    consortium: Runtime,
) -> None:
    rt = consortium
    with rt.engine.begin() as conn:  # the SME pilot without a lead
        conn.execute(text("UPDATE contacts SET leads = '' WHERE leads = 'shared-sme-service'"))
    sme = _open(rt, kind="shared-sme-service", owner=SE_OWNER)  # LUNDBACK-DX: no pilot-lead
    intake = _milestone(rt.engine, sme, "request-intake")
    day = _calendar_of(rt.engine, SE_OWNER).add_working_days(intake.planned_due, 12)

    report = _monitor(rt, day)

    late = [i.item for i in report.late if i.case_key == sme]
    assert len(late) > 2  # several items reached their due and late-5 steps ...
    unheld = [{"case": sme, "role": "coordinator"}, {"case": sme, "role": "pilot-lead"}]
    assert report.unheld_roles() == report.summary()["unheld_roles"] == unheld  # ... said once
    assert report.summary()["pilots"]["shared-sme-service"]["unheld_roles"] == 2
    # Its sme-advisor and legal-advisor items are the case owner's: no one else is told.
    assert _recipients(rt.engine, _rows(rt.engine)) == {SE_OWNER}
    assert report.unheld_roles("ip-integration") == []


MENTORING = """\
kind: mentoring-exchange
version: 1
title: Mentoring exchange between clusters
key_prefix: MX
roles: [coordinator, pilot-lead, mentor]
stages:
  - {key: match, title: Match}
milestones:
  - {key: mentor-found, title: A mentor found, stage: match, owner: mentor, duration: 5}
ladder:
  - {key: due, offset: 0, notify: [owner, pilot-lead]}
  - {key: late-3, offset: 3, notify: [coordinator], urgent: true}
"""


def test_a_new_pilot_kind_is_led_by_whom_the_contacts_name_with_no_code_change(
    db_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "extra-templates"
    folder.mkdir()
    (folder / "mentoring-exchange.yaml").write_text(MENTORING, encoding="utf-8")
    rt = build_runtime(
        Settings(home=tmp_path / "home", database_url=db_url, template_dirs=str(folder))
    )
    migrate.upgrade(rt.engine)
    load_consortium(rt)
    sheet = tmp_path / "leads.csv"
    sheet.write_text(
        "email,name,partner,role,country,leads\n"
        f"{IP_PILOT_LEAD},Karin Åström,MVA,pilot-lead,SE,ip-integration mentoring-exchange\n",
        encoding="utf-8",
    )
    with write_session(rt.engine) as session:
        directory.import_contacts(
            session=session, path=sheet, roles=rt.catalog.roles(), kinds=set(rt.catalog.templates)
        )
    key = _open(rt, kind="mentoring-exchange", owner=SE_OWNER)  # LUNDBACK-DX: no mentor
    found = _milestone(rt.engine, key, "mentor-found")
    assert _emails(rt.engine)[found.owner_id or 0] == IP_PILOT_LEAD  # no one holds `mentor`

    _monitor(rt, found.planned_due)
    report = _monitor(
        rt, _calendar_of(rt.engine, IP_PILOT_LEAD).add_working_days(found.planned_due, 3)
    )

    told = {(r.rule, _emails(rt.engine)[r.recipient_id]) for r in _rows(rt.engine)}
    assert told == {("due", IP_PILOT_LEAD), ("late-3", IP_PILOT_LEAD)}
    assert report.unheld == set()
    rt.engine.dispose()


# --- late milestones -------------------------------------------------------------------------


def test_a_late_milestone_is_stamped_overdue_once_with_one_audit_event(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    due = _milestone(rt.engine, IP_KEY, "kickoff").planned_due
    first_late = due + timedelta(days=1)

    _monitor(rt, due)
    assert _milestone(rt.engine, IP_KEY, "kickoff").overdue_on is None
    report = _monitor(rt, first_late)
    later = _monitor(rt, first_late + timedelta(days=3))

    assert report.newly_overdue == 1 and later.newly_overdue == 0
    assert _milestone(rt.engine, IP_KEY, "kickoff").overdue_on == first_late
    assert _milestone(rt.engine, IP_KEY, DESK_STUDY).overdue_on is None
    events = _events(rt.engine, kind="milestone.overdue")
    assert [(e.subject, e.after) for e in events] == [
        ("kickoff", {"planned_due": due.isoformat(), "overdue_on": first_late.isoformat()})
    ]
    assert events[0].case_id == _case(rt.engine, IP_KEY).id
    overdue = [s for s in report.signals if s.event == "bridgebsr.milestone.overdue"]
    assert [(s.case_key, s.subject, s.payload["days_late"]) for s in overdue] == [
        (IP_KEY, "kickoff", 1)
    ]
    assert not [s for s in later.signals if s.event == "bridgebsr.milestone.overdue"]


def test_finishing_a_milestone_stops_its_notices(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    due = _milestone(rt.engine, IP_KEY, "kickoff").planned_due
    calendar = _calendar_of(rt.engine, LEAD)
    remind_2 = calendar.add_working_days(due, -2)
    _monitor(rt, remind_2)
    assert {r.rule for r in _rows(rt.engine, subject="kickoff")} == {"remind-2"}

    _progress(rt, IP_KEY, "kickoff", "complete", remind_2 + timedelta(days=1), LEAD)
    for day in (due, due + timedelta(days=1), calendar.add_working_days(due, 10)):
        report = _monitor(rt, day)
        assert "kickoff" not in {i.item for i in report.late}

    assert {r.rule for r in _rows(rt.engine, subject="kickoff")} == {"remind-2"}
    assert _milestone(rt.engine, IP_KEY, "kickoff").overdue_on is None
    assert _events(rt.engine, kind="milestone.overdue") == []


def test_cases_on_hold_or_closed_get_nothing_until_resumed(consortium: Runtime) -> None:
    rt = consortium
    held, cancelled, active = _open(rt), _open(rt), _open(rt)
    _change(rt, held, "hold", MONDAY + timedelta(days=2))
    _change(rt, cancelled, "cancel", MONDAY + timedelta(days=2))
    due = _milestone(rt.engine, held, "kickoff").planned_due
    late_10 = _calendar_of(rt.engine, LEAD).add_working_days(due, 10)

    for day in (due, due + timedelta(days=1), late_10):
        report = _monitor(rt, day)
        assert {i.case_key for i in report.late} == ({active} if day > due else set())
        assert {s.case_key for s in report.signals} <= {active}
        assert report.active_cases == {"ip-integration": 1}
    by_case = {r.payload["case"] for r in _rows(rt.engine)}
    assert by_case == {active}
    for key in (held, cancelled):
        assert _milestone(rt.engine, key, "kickoff").overdue_on is None

    # Resumed, the held case catches up: stamped late, and each person gets only the latest
    # step they are on: the coordinator late-10, the owner the day's notice (not the two
    # reminders before it).
    _change(rt, held, "resume", late_10)
    report = _monitor(rt, late_10 + timedelta(days=1))
    assert _milestone(rt.engine, held, "kickoff").overdue_on == late_10 + timedelta(days=1)
    caught_up = [r for r in _rows(rt.engine, subject="kickoff") if r.payload["case"] == held]
    assert {r.rule for r in caught_up} == {"due", "late-10"}
    assert len({r.recipient_id for r in caught_up}) == len(caught_up)
    assert all(r.payload["days_late"] > 10 for r in caught_up)
    assert _milestone(rt.engine, cancelled, "kickoff").overdue_on is None
    assert held in {s.case_key for s in report.signals}


def test_the_late_list_is_most_late_first_and_its_next_step_fires_when_it_says(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    workshops = _milestone(rt.engine, IP_KEY, "regional-workshops")
    day = workshops.planned_due + timedelta(days=2)

    report = _monitor(rt, day)

    with read_session(rt.engine) as session:
        late = {
            m.key: m.planned_due
            for m in session.exec(select(Milestone).where(Milestone.planned_due < day))
        }
    assert [i.item for i in report.late] == sorted(late, key=lambda k: (late[k], k))
    assert [i.days_late for i in report.late] == sorted(
        ((day - due).days for due in late.values()), reverse=True
    )
    rows = {i.item: i for i in report.late}
    assert rows["kickoff"].next_step == "-"  # every step of its ladder has been reached
    desk = rows[DESK_STUDY]
    assert (desk.owner, desk.partner) == (DESK_OWNER, "MVA")
    assert desk.days_late == (day - late[DESK_STUDY]).days

    for item in (DESK_STUDY, "regional-workshops"):
        # The next step as people say it (late-10 of the template), and the day it falls on.
        label, _, on = rows[item].next_step.rpartition(", on ")
        assert label == "10 working days late: coordinator told"
        _monitor(rt, date.fromisoformat(on) - timedelta(days=1))
        assert "late-10" not in {r.rule for r in _rows(rt.engine, subject=item)}
        _monitor(rt, date.fromisoformat(on))
        assert "late-10" in {r.rule for r in _rows(rt.engine, subject=item)}


# --- gates -----------------------------------------------------------------------------------


def test_gate_notices_go_only_to_approvers_who_have_not_voted(ip_at_council: Runtime) -> None:
    rt = ip_at_council
    deadline = _deadline(rt.engine, IP_KEY, COUNCIL)
    council = _holders(rt.engine, "council-member")
    assert len(council) == 6
    _decide(rt, IP_KEY, COUNCIL, COUNCIL_VOTER, deadline - timedelta(days=3))

    _monitor(rt, deadline)
    due = _rows(rt.engine, subject=COUNCIL)
    assert {r.rule for r in due} == {"due"}
    assert _recipients(rt.engine, due) == (council - {COUNCIL_VOTER}) | {LEAD}
    assert {r.dedupe_key for r in due} >= {f"g:{IP_KEY}/{COUNCIL}/r1/due/{LEAD}"}

    _decide(rt, IP_KEY, COUNCIL, SECOND_VOTER, deadline)
    before = _last_id(rt.engine)
    _monitor(rt, deadline + timedelta(days=1))
    expired = _rows(rt.engine, subject=COUNCIL, after_id=before)
    assert {r.rule for r in expired} == {"expired"}
    assert all(r.urgent for r in expired)
    assert _recipients(rt.engine, expired) == (council - {COUNCIL_VOTER, SECOND_VOTER}) | {
        COORDINATOR
    }


def test_an_escalating_gate_past_its_deadline_is_stamped_expired_once(
    ip_at_council: Runtime,
) -> None:
    rt = ip_at_council
    deadline = _deadline(rt.engine, IP_KEY, COUNCIL)
    expired_day = deadline + timedelta(days=1)

    _monitor(rt, deadline)
    assert _gate(rt.engine, IP_KEY, COUNCIL).expired_on is None
    report = _monitor(rt, expired_day)
    later = _monitor(rt, expired_day + timedelta(days=1))

    gate = _gate(rt.engine, IP_KEY, COUNCIL)
    assert (gate.status, gate.expired_on) == (GateStatus.OPEN, expired_day)
    assert report.newly_expired == 1 and later.newly_expired == 0
    assert report.timed_out == []
    events = _events(rt.engine, kind="gate.expired")
    assert [(e.subject, e.after) for e in events] == [
        (COUNCIL, {"deadline": deadline.isoformat(), "round": 1, "outcome": "escalate"})
    ]
    notices = [r for r in _rows(rt.engine, subject=COUNCIL) if r.rule == "expired"]
    assert all(r.urgent and r.fire_on == expired_day for r in notices)
    assert _recipients(rt.engine, notices) == _holders(rt.engine, "council-member") | {COORDINATOR}
    assert [s.event for s in report.signals] == [
        "bridgebsr.gate.expired",
        "bridgebsr.case.escalated",
    ]
    escalated = report.signals[1]
    assert escalated.payload["step"] == "expired"
    assert escalated.payload["item_kind"] == "gate"
    assert sorted(escalated.payload["recipients"]) == sorted(r.recipient_id for r in notices)
    assert later.notifications == 0 and later.signals == []
    (late,) = [i for i in report.late if i.item == COUNCIL]
    assert (late.item_kind, late.owner, late.days_late) == ("gate", "council-member (approvers)", 1)


def test_the_next_step_of_a_late_gate_fires_when_it_says(ip_at_council: Runtime) -> None:
    rt = ip_at_council
    report = _monitor(rt, _deadline(rt.engine, IP_KEY, COUNCIL) + timedelta(days=1))
    (late,) = [i for i in report.late if i.item == COUNCIL]
    if late.next_step != "-":
        step, _, on = late.next_step.partition(" on ")
        _monitor(rt, date.fromisoformat(on))
        assert step in {r.rule for r in _rows(rt.engine, subject=COUNCIL)}


def test_a_reject_timeout_cancels_the_sme_request(sme_at_acceptance: Runtime) -> None:
    rt = sme_at_acceptance
    deadline = _deadline(rt.engine, SME_KEY, "sme-acceptance")

    on_deadline = _monitor(rt, deadline)
    assert on_deadline.timed_out == []
    assert _gate(rt.engine, SME_KEY, "sme-acceptance").status is GateStatus.OPEN

    report = _monitor(rt, deadline + timedelta(days=1))

    assert report.timed_out == [f"{SME_KEY} sme-acceptance: rejected"]
    assert report.newly_expired == 1 and report.failures == []
    gate = _gate(rt.engine, SME_KEY, "sme-acceptance")
    assert (gate.status, gate.expired_on) == (GateStatus.REJECTED, deadline + timedelta(days=1))
    assert _case(rt.engine, SME_KEY).status is CaseStatus.CANCELLED
    events = _events(rt.engine)
    assert [(e.kind, e.subject) for e in events] == [
        ("gate.expired", "sme-acceptance"),
        ("gate.reject", "sme-acceptance"),
        ("case.cancel", None),
    ]
    assert events[0].after == {
        "deadline": deadline.isoformat(),
        "round": 1,
        "outcome": "reject",
    }
    assert {e.comment for e in events} == {"gate deadline"}
    assert not [r for r in _rows(rt.engine) if r.rule == "expired"]
    again = _monitor(rt, deadline + timedelta(days=2))
    assert again.timed_out == [] and again.newly_expired == 0
    assert len(_events(rt.engine)) == 3


def test_approve_and_reject_timeouts_decide_the_gates(timeout_rt: Runtime) -> None:
    rt = timeout_rt
    key = _open(rt, kind="timeout-check")
    assert key == "TOC-2026-0001"
    _progress(rt, key, "draft", "complete", MONDAY + timedelta(days=2), LEAD)
    deadline = _deadline(rt.engine, key, "no-by-default")
    assert _deadline(rt.engine, key, "yes-by-default") == deadline
    council = _holders(rt.engine, "council-member")

    first = _monitor(rt, deadline)
    assert first.timed_out == []
    r1 = [r for r in _rows(rt.engine) if r.subject == "no-by-default"]
    assert {r.dedupe_key for r in r1} == {f"g:{key}/no-by-default/r1/due/{e}" for e in council}

    report = _monitor(rt, deadline + timedelta(days=1))

    assert len(report.timed_out) == 2
    assert report.timed_out[0].startswith(f"{key} no-by-default: ")
    assert report.timed_out[1] == f"{key} yes-by-default: approved"
    assert report.newly_expired == 2
    yes = _gate(rt.engine, key, "yes-by-default")
    assert (yes.status, yes.decided_on) == (GateStatus.APPROVED, deadline + timedelta(days=1))
    no = _gate(rt.engine, key, "no-by-default")
    assert (no.status, no.round, no.deadline, no.expired_on) == (GateStatus.PENDING, 2, None, None)
    assert _milestone(rt.engine, key, "draft").status is MilestoneStatus.PLANNED
    trail = [(e.kind, e.subject) for e in _events(rt.engine) if e.kind.startswith(("gate", "mile"))]
    assert trail[:6] == [
        ("gate.expired", "no-by-default"),
        ("gate.reject", "no-by-default"),
        ("milestone.reopen", "draft"),
        ("gate.reopen", "no-by-default"),
        ("gate.expired", "yes-by-default"),
        ("gate.approve", "yes-by-default"),
    ]
    outcomes = {e.subject: e.after for e in _events(rt.engine, kind="gate.expired")}
    assert {s: (a or {})["outcome"] for s, a in outcomes.items()} == {
        "no-by-default": "reject",
        "yes-by-default": "approve",
    }
    assert not [r for r in _rows(rt.engine) if r.rule == "expired"]

    # The reworked draft done again opens round 2, whose notices are new rows of their own.
    _progress(rt, key, "draft", "complete", deadline + timedelta(days=2), LEAD)
    deadline_2 = _deadline(rt.engine, key, "no-by-default")
    _monitor(rt, deadline_2)
    r2 = [r for r in _rows(rt.engine) if r.subject == "no-by-default" and "/r2/" in r.dedupe_key]
    assert {r.dedupe_key for r in r2} == {f"g:{key}/no-by-default/r2/due/{e}" for e in council}


# --- dry run, signals, CLI -------------------------------------------------------------------


def test_a_dry_run_changes_nothing_and_reports_what_the_real_run_does(
    consortium: Runtime,
) -> None:
    rt = consortium
    _open(rt)
    day = _milestone(rt.engine, IP_KEY, DESK_STUDY).planned_due + timedelta(days=1)
    before = _snapshot(rt.engine)

    dry = _monitor(rt, day, dry_run=True)

    assert dry.dry_run
    assert _snapshot(rt.engine) == before
    assert dry.notifications > 0 and dry.newly_overdue > 0
    real = _monitor(rt, day)
    assert _comparable(dry) == _comparable(real)
    assert dry.signals == real.signals
    assert real.notifications == len(_rows(rt.engine))


def test_a_dry_run_reports_the_timeouts_the_real_run_applies(sme_at_acceptance: Runtime) -> None:
    rt = sme_at_acceptance
    day = _deadline(rt.engine, SME_KEY, "sme-acceptance") + timedelta(days=1)
    dry = _monitor(rt, day, dry_run=True)
    real = _monitor(rt, day)
    assert real.timed_out == [f"{SME_KEY} sme-acceptance: rejected"]
    assert _comparable(dry) == _comparable(real)


def test_signals_carry_the_case_key_pilot_and_country(consortium: Runtime) -> None:
    rt = consortium
    ip = _open(rt)  # owner in Denmark
    sme = _open(rt, kind="shared-sme-service", owner=SE_OWNER)  # owner in Sweden
    kickoff = _milestone(rt.engine, ip, "kickoff").planned_due
    day = _calendar_of(rt.engine, LEAD).add_working_days(kickoff, 10) + timedelta(days=1)

    report = _monitor(rt, day)

    expected = {ip: ("ip-integration", "DK"), sme: ("shared-sme-service", "SE")}
    assert {(_case(rt.engine, k).kind, _case(rt.engine, k).country) for k in expected} == set(
        expected.values()
    )
    seen = {(s.event, s.case_key) for s in report.signals}
    for key in expected:
        assert ("bridgebsr.milestone.overdue", key) in seen
        assert ("bridgebsr.case.escalated", key) in seen
    for signal in report.signals:
        assert (signal.pilot, signal.country) == expected[signal.case_key], signal
    escalated = [s for s in report.signals if s.event == "bridgebsr.case.escalated"]
    # SCANBALT's coordinator for the case it leads; the SME pilot's lead for LUNDBACK-DX's.
    ids = {e: i for i, e in _emails(rt.engine).items()}
    told = {ip: {ids[COORDINATOR]}, sme: {ids[LEAD]}}
    for signal in escalated:
        assert set(signal.payload["recipients"]) == told[signal.case_key]
        assert signal.payload["step"] in {"late-10", "late-5"}
        assert signal.payload["days_late"] > 0
    kick = [s for s in escalated if (s.case_key, s.subject) == (ip, "kickoff")]
    assert [s.payload["days_late"] for s in kick] == [(day - kickoff).days]


def test_the_monitor_refuses_a_naive_now() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(BridgeError, match="aware"):
        run_monitor(engine, now=datetime(2026, 3, 2, 10), zone=ZONE)
    engine.dispose()


def _cli(home: Path, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEBSR_")}
    env["BRIDGEBSR_HOME"] = str(home)
    done = subprocess.run(
        [str(BRIDGEBSR), *args, "--json"],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cli_monitor_json_prints_the_summary_and_a_rerun_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{(home / 'bridgebsr.db').resolve()}"
    rt = build_runtime(Settings(home=home, database_url=url))
    migrate.upgrade(rt.engine)
    load_consortium(rt)
    _open(rt)
    day = _milestone(rt.engine, IP_KEY, "regional-workshops").planned_due + timedelta(days=2)

    first = _cli(home, "monitor", "--as-of", day.isoformat())
    again = _cli(home, "monitor", "--as-of", day.isoformat())

    written = _rows(rt.engine)
    assert first["today"] == day.isoformat()
    assert first["dry_run"] is False
    assert first["notifications"] == len(written) > 0
    with read_session(rt.engine) as session:
        stamped = list(
            session.exec(select(Milestone).where(col(Milestone.overdue_on).is_not(None)))
        )
    assert first["newly_overdue"] == len(stamped) == first["late"] == len(first["late_items"])
    assert [i["days_late"] for i in first["late_items"]] == sorted(
        (i["days_late"] for i in first["late_items"]), reverse=True
    )
    assert {i["case"] for i in first["late_items"]} == {IP_KEY}
    assert first["pilots"] == {
        "ip-integration": {
            "active_cases": 1,
            "late_items": first["late"],
            "open_gates": 0,
            "notifications": len(written),
            "unheld_roles": 0,
        }
    }
    assert first["unheld_roles"] == []
    assert again["notifications"] == again["newly_overdue"] == 0
    assert again["late_items"] == first["late_items"]
    assert len(_rows(rt.engine)) == len(written)
    rt.engine.dispose()


# --- the ladder, as pure rules ---------------------------------------------------------------

_ladder_calendars = st.sampled_from(
    [calendar_for("DK"), calendar_for("SE"), calendar_for("DE", "MV"), calendar_for("PL")]
)
_any_day = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31))
_ladder_steps = st.lists(
    st.builds(
        LadderStep,
        key=st.from_regex(r"[a-z]{1,6}", fullmatch=True),
        offset=st.integers(-20, 30),
        notify=st.lists(st.sampled_from([NODE_OWNER, CASE_OWNER, "coordinator", "pilot-lead"]),
                        min_size=1, max_size=3),
        urgent=st.booleans(),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda s: s.key,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_ladder_calendars, _any_day, st.integers(-30, 30), st.integers(0, 10))
def test_a_step_falls_on_a_working_day_and_later_steps_no_earlier(
    calendar: WorkCalendar, due: date, offset: int, more: int
) -> None:
    day = step_day(calendar, due, offset)
    assert calendar.is_working_day(day)
    assert step_day(calendar, due, offset + more) >= day
    if offset == 0:
        assert day == calendar.roll_forward(due)
    if offset > 0:
        assert calendar.working_days_between(due, day) >= offset - 1


@settings(max_examples=300, deadline=None)
@given(_ladder_calendars, _any_day, _any_day, _ladder_steps)
def test_where_a_ladder_stands_splits_its_steps_by_today(
    calendar: WorkCalendar, due: date, today: date, steps: list[LadderStep]
) -> None:
    template = Template.model_construct(ladder=steps)
    ladder = Ladder.of(template)
    assert [s.offset for s, _ in ladder.steps] == sorted(s.offset for s in steps)
    standing = stand(ladder, calendar, due, today)
    days = {s.key: step_day(calendar, due, s.offset) for s in steps}
    assert {s.key for s in standing.upcoming} == {k for k, d in days.items() if d > today}
    near = {s.key for s, _ in standing.near}
    assert {k for k, d in days.items() if d <= today} <= near
    assert all(days[k] <= today + timedelta(days=HOLIDAY_SLACK) for k in near)
    reached_roles = {r for s in steps if days[s.key] <= today for r in s.notify}
    assert standing.reached == reached_roles - {NODE_OWNER, CASE_OWNER}
    assert ladder.expired.key == EXPIRED_RULE and ladder.expired.notify[0] == NODE_OWNER
    assert horizon(today, [ladder]) >= today + timedelta(days=16)
