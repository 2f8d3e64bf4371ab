"""The work programme's other activities (the three analyses, the Innovation Action Plan, a
Council review round, a mentoring exchange) run like the pilots: each shipped template opens a
case with its fields, completes its first milestone, is watched by the monitor (its ladder
reaches a real holder of each role) and shows in the report's programme view. SQLite only:
the store code is the pilots', tested on both backends elsewhere."""

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_consortium
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import cases, progress
from bridgebsr.reports import portfolio
from bridgebsr.reports.programme import LATE
from bridgebsr.rules import planning
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import read_session, write_session
from bridgebsr.store.people import load_directory
from models import Case, Contact, MilestoneStatus, Notification
from tests.conftest import at, migrated

MONDAY = date(2026, 3, 2)
COORDINATOR = "mette.sorensen@scanbalt.example"
# Who leads each activity (the `leads` column of the shipped contacts.csv).
LEADS = {
    "cluster-strategy-analysis": [COORDINATOR],
    "ip-bottleneck-analysis": ["karin.astrom@mva.example"],
    "sme-financing-analysis": ["katrin.schaefer@bioconvalley.example"],
    "innovation-action-plan": [COORDINATOR],
    "council-review-round": [COORDINATOR],
    "cluster-mentoring": [COORDINATOR],
}
# Each activity: who opens it, for which lead partner, with which case fields.
OPENING = {
    "cluster-strategy-analysis": (
        "katrin.schaefer@bioconvalley.example",
        "BCV",
        {"regions_in_scope": "9", "strategy_period": "2021-2027"},
    ),
    "ip-bottleneck-analysis": (
        "sabine.wuerth@steinbeis.example",
        "STEINBEIS",
        {"regions_in_scope": "8", "tto_count": "23"},
    ),
    "sme-financing-analysis": (
        "anders.bogh@scanbalt.example",
        "SCANBALT",
        {"regions_in_scope": "8", "financing_stage": "seed"},
    ),
    "innovation-action-plan": (
        "mette.sorensen@scanbalt.example",
        "SCANBALT",
        {"plan_period_start": "2027-01-01", "plan_period_end": "2030-12-31"},
    ),
    "council-review-round": (
        "karin.astrom@mva.example",
        "SCANBALT",
        {"subject": "pilot", "subject_case": "IP-2026-0001", "procedure": "meeting"},
    ),
    "cluster-mentoring": (
        "karlis.berzins@biotech-lv.example",
        "LBA",
        {"topic": "tech-transfer", "mentor_partner": "BIOFORUM-OULU"},
    ),
}


@pytest.fixture
def consortium_store(tmp_path: Path) -> Iterator[Runtime]:
    """A migrated SQLite store with the consortium (a fresh one per activity)."""
    with migrated(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "home") as rt:
        load_consortium(rt)
        yield rt


@pytest.mark.parametrize("kind", sorted(OPENING))
def test_each_activity_opens_progresses_and_is_watched(
    consortium_store: Runtime, kind: str
) -> None:
    rt = consortium_store
    template = rt.catalog.get(kind)
    owner, partner, fields = OPENING[kind]
    with write_session(rt.engine) as session:
        key = cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=f"A {template.title.lower()}",
            owner_email=owner,
            partner_code=partner,
            start=MONDAY,
            now=at(MONDAY.isoformat()),
            fields=fields,
        ).key
    assert key.startswith(f"{template.key_prefix}-2026-")

    # The first milestone is done on its planned due date.
    first = template.milestones[0]
    with read_session(rt.engine) as session:
        plan = store.load_case(session, key, for_update=False).plan
    done_on = {m.key: m for m in plan.milestones}[first.key].planned_due
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=key,
            milestone_key=first.key,
            action="complete",
            actor=progress.Actor(owner),
            now=at(done_on.isoformat(), 15),
            on=done_on,
        )
    with read_session(rt.engine) as session:
        plan = store.load_case(session, key, for_update=False).plan
        row = session.exec(select(Case).where(col(Case.key) == key)).one()
    assert {m.key: m for m in plan.milestones}[first.key].status is MilestoneStatus.DONE
    assert set(row.fields or {}) == set(fields)
    # The current stage is the first one, in template order, with work left.
    left = {n.stage for n in plan.nodes() if not planning.is_finished(n)}
    assert row.current_stage == next(s.key for s in template.stages if s.key in left)

    # Nothing more is done: twenty days after the next item fell due, the monitor finds it late
    # and its ladder's last step tells the coordinator; every role it names has a holder.
    waiting = [n for n in plan.milestones if not planning.is_finished(n)]
    nxt = min(waiting, key=lambda n: (n.planned_due, n.key))
    day = nxt.planned_due + timedelta(days=20)
    report = run_monitor(rt.engine, now=at(day.isoformat(), 7), zone="Europe/Copenhagen")
    assert report.failures == []
    assert nxt.key in {item.item for item in report.late if item.case_key == key}
    assert report.unheld_roles(kind) == []
    last = template.ladder[-1]
    with read_session(rt.engine) as session:
        told = session.exec(
            select(Contact.email)
            .join(Notification, col(Notification.recipient_id) == Contact.id)
            .where(col(Notification.subject) == nxt.key, col(Notification.rule) == last.key)
        ).all()
    # The coordinator role of a case is held as every role is (`rules.roles`): at its lead
    # partner, else by the leads of its kind (contacts.csv names one for each activity).
    assert last.notify == ["coordinator"] and last.urgent
    with read_session(rt.engine) as session:
        directory = load_directory(session.connection())
    lead = directory.orgs_by_code[partner].id
    holders = {p.email for p in directory.role_holders("coordinator", lead, kind)}
    assert holders and set(told) == holders
    assert holders == ({COORDINATOR} if partner == "SCANBALT" else set(LEADS[kind]))

    # The report's programme view shows the activity, the case's stage and its health.
    shown = portfolio.build(rt.engine, as_of=day).programme
    (line,) = shown[shown["pilot"] == kind].to_dict("records")
    stage_title = {s.key: s.title for s in template.stages}[str(row.current_stage)]
    assert (line["activity"], line["stage"], line["which"]) == (template.title, stage_title, key)
    assert (line["open_cases"], line["late_cases"], line["health"]) == (1, 1, LATE)
