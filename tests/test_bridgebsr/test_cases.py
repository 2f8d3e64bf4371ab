"""Use cases on cases, milestones and gates, on a SQLite file and on PostgreSQL.

Every date below is worked out by hand from the shipped templates and the public holidays
of the owners' countries; the comments show the count.
"""

import csv
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import IllegalTransition, InvalidInput, StaleCase
from bridgebsr.exchange.catalog import checksum
from bridgebsr.office import cases, progress, queries
from bridgebsr.rules import rows
from bridgebsr.rules.rows import CaseRow, GateRow, MilestoneRow
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import read_session, write_session
from models import (
    Case,
    CaseEvent,
    CaseStatus,
    Decision,
    Gate,
    GateStatus,
    Milestone,
    MilestoneStatus,
    Source,
    TemplateVersion,
)
from tests.conftest import BEFORE_ACCEPTANCE, BEFORE_COUNCIL, at

DATA = Path(__file__).parents[2] / "bridgebsr" / "data"
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT, Denmark
SME_OWNER = "anders.bogh@scanbalt.example"  # case-owner at SCANBALT, Denmark
SME_ADVISOR = "elin.sjoberg@mva.example"  # the first sme-advisor in contacts.csv
# The leads of the IP and SME pilots (contacts.csv, `leads`): they own the milestones of a
# role no one at the case's lead partner holds.
IP_PILOT_LEAD = "karin.astrom@mva.example"  # MVA, Sweden
SME_PILOT_LEAD = LEAD
MONDAY = date(2026, 3, 2)
IP_KEY = "IP-2026-0001"
SME_KEY = "SME-2026-0001"
AFTER_ACCEPTANCE = ("service-plan", "service-delivery", "follow-up-call", "feedback", "kpi-record")
AUDITED = ("cases", "milestones", "gates", "gate_decisions", "case_events")


def _council_members() -> list[str]:
    with (DATA / "contacts.csv").open(encoding="utf-8") as fh:
        return [row["email"] for row in csv.DictReader(fh) if row["role"] == "council-member"]


COUNCIL = _council_members()


def _open(
    rt: Runtime,
    *,
    kind: str = "ip-integration",
    owner: str = LEAD,
    start: date = MONDAY,
    now_day: str | None = None,
) -> Case:
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=f"A {kind} case",
            owner_email=owner,
            start=start,
            now=at(now_day or start.isoformat()),
        )


def _progress(
    rt: Runtime,
    key: str,
    milestone: str,
    action: str,
    day: str,
    *,
    on: date | None = None,
    by: str = LEAD,
    expected_version: int | None = None,
) -> Milestone:
    with write_session(rt.engine) as session:
        return progress.progress_milestone(
            session=session,
            case_key=key,
            milestone_key=milestone,
            action=action,
            actor=progress.Actor(by),
            now=at(day),
            on=on,
            expected_version=expected_version,
        )


def _decide(rt: Runtime, key: str, gate: str, decision: Decision, by: str, day: str) -> Gate:
    with write_session(rt.engine) as session:
        return progress.decide_gate(
            session=session,
            case_key=key,
            gate_key=gate,
            decision=decision,
            actor=progress.Actor(by, comment=f"{decision.value} by {by}"),
            now=at(day),
        )


def _change(
    rt: Runtime,
    key: str,
    action: str,
    day: str,
    *,
    actor: str = LEAD,
    expected_version: int | None = None,
) -> Case:
    with write_session(rt.engine) as session:
        return cases.change_case(
            session=session,
            key=key,
            action=action,
            reason=f"reason to {action}",
            actor=actor,
            now=at(day),
            expected_version=expected_version,
        )


def _show(rt: Runtime, key: str, today: date) -> dict[str, Any]:
    with read_session(rt.engine) as session:
        return queries.show_case(session=session, key=key, today=today)


def _by_key(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in rows}


def _dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the audited tables, to prove a refused change wrote nothing."""
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in AUDITED
        }


def _events(rt: Runtime, key: str) -> list[CaseEvent]:
    with read_session(rt.engine) as session:
        case = store.case_by_key(session, key)
        query = select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        return list(session.exec(query))


@pytest.fixture
def ip_at_council(consortium: Runtime) -> Runtime:
    """An IP case whose predecessors of council-approval all finished on 2026-12-22."""
    _open(consortium)
    for key in BEFORE_COUNCIL:
        _progress(consortium, IP_KEY, key, "complete", "2026-12-22")
    return consortium


@pytest.fixture
def sme_at_acceptance(consortium: Runtime) -> Runtime:
    """An SME request whose match was proposed: the sme-acceptance gate is open."""
    _open(consortium, kind="shared-sme-service", owner=SME_OWNER, start=date(2026, 1, 12))
    for key in BEFORE_ACCEPTANCE:
        _progress(consortium, SME_KEY, key, "complete", "2026-02-03", by=SME_OWNER)
    return consortium


# --- opening ---------------------------------------------------------------------------------


def test_open_case_numbers_keys_per_prefix_and_start_year(consortium: Runtime) -> None:
    assert _open(consortium).key == "IP-2026-0001"
    assert _open(consortium).key == "IP-2026-0002"
    sme = _open(consortium, kind="shared-sme-service", owner=SME_OWNER)
    assert sme.key == "SME-2026-0001"
    assert _open(consortium, start=date(2027, 1, 4), now_day="2026-12-01").key == "IP-2027-0001"


def test_open_case_pins_the_template_version_once(consortium: Runtime) -> None:
    first, second = _open(consortium), _open(consortium)
    template = consortium.catalog.get("ip-integration")
    with read_session(consortium.engine) as session:
        pinned = list(session.exec(select(TemplateVersion)))
    assert [(p.kind, p.version) for p in pinned] == [("ip-integration", 2)]
    assert pinned[0].checksum == checksum(template)
    assert pinned[0].body == template.model_dump(mode="json")
    assert first.template_version == second.template_version == 2


def test_open_case_schedules_in_the_owners_working_days(consortium: Runtime) -> None:
    case = _open(consortium)
    assert case.status is CaseStatus.ACTIVE
    assert case.country == "DK"
    assert case.current_stage == "scoping"
    shown = _show(consortium, IP_KEY, MONDAY)
    m = _by_key(shown["milestones"])
    # kickoff: 10 working days from Monday 2 March 2026 in DK, no holiday: Monday 16 March.
    assert m["kickoff"]["planned_due"] == m["kickoff"]["forecast_due"] == "2026-03-16"
    assert m["kickoff"]["owner"] == LEAD
    assert m["kickoff"]["status"] == "planned"
    # regional-workshops (DK): starts 10 working days after kickoff, Mon 30 March; 35 working
    # days skipping Maundy Thursday, Good Friday, Easter Monday and Ascension: Fri 22 May.
    assert m["regional-workshops"]["planned_due"] == "2026-05-22"
    # bottleneck-desk-study is an ip-expert's; SCANBALT, the lead partner, has none, so it is
    # the IP pilot's lead's, in Sweden: 40 working days from 16 March skipping Good Friday,
    # Easter Monday, 1 May and Ascension: Fri 15 May.
    assert m["bottleneck-desk-study"]["owner"] == IP_PILOT_LEAD
    assert m["bottleneck-desk-study"]["planned_due"] == "2026-05-15"
    gate = _by_key(shown["gates"])["council-approval"]
    assert gate["status"] == "pending"
    # The gate counts 28 calendar days from the planned end of model-revision.
    revision_due = date.fromisoformat(m["model-revision"]["planned_due"])
    assert date.fromisoformat(gate["planned_due"]) == revision_due + timedelta(days=28)
    assert shown["target"] == shown["forecast"]


def test_open_case_writes_the_open_event(consortium: Runtime) -> None:
    _open(consortium)
    events = _events(consortium, IP_KEY)
    assert [e.kind for e in events] == ["case.open"]
    opened = events[0]
    assert opened.actor == LEAD
    assert opened.source is Source.CLI
    assert opened.subject is None
    assert opened.before == {}
    assert opened.after is not None
    assert opened.after["key"] == IP_KEY
    assert opened.after["kind"] == "ip-integration"
    assert opened.after["template_version"] == 2
    assert opened.after["start"] == "2026-03-02"
    assert opened.after["partner"] == "SCANBALT"
    assert opened.at == at("2026-03-02")


# --- whole-case changes ----------------------------------------------------------------------


def test_hold_resume_cancel_each_write_an_audited_event(consortium: Runtime) -> None:
    _open(consortium)
    held = _change(consortium, IP_KEY, "hold", "2026-03-03", actor="ops@cli")
    assert (held.status, held.version) == (CaseStatus.ON_HOLD, 2)
    with pytest.raises(IllegalTransition, match="resume it first"):
        _progress(consortium, IP_KEY, "kickoff", "start", "2026-03-04")
    resumed = _change(consortium, IP_KEY, "resume", "2026-03-05")
    assert (resumed.status, resumed.version) == (CaseStatus.ACTIVE, 3)
    cancelled = _change(consortium, IP_KEY, "cancel", "2026-03-06")
    assert (cancelled.status, cancelled.version) == (CaseStatus.CANCELLED, 4)
    assert cancelled.closed_at == at("2026-03-06")
    changes = [e for e in _events(consortium, IP_KEY) if e.kind != "case.open"]
    assert [(e.kind, e.before, e.after, e.actor, e.comment) for e in changes] == [
        ("case.hold", {"status": "active"}, {"status": "on_hold"}, "ops@cli", "reason to hold"),
        ("case.resume", {"status": "on_hold"}, {"status": "active"}, LEAD, "reason to resume"),
        ("case.cancel", {"status": "active"}, {"status": "cancelled"}, LEAD, "reason to cancel"),
    ]
    assert {e.source for e in changes} == {Source.CLI}
    assert [e.at for e in changes] == [at("2026-03-03"), at("2026-03-05"), at("2026-03-06")]


def test_close_is_refused_while_items_are_open(consortium: Runtime) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition, match=r"16 item\(s\) still open \(kickoff, "):
        _change(consortium, IP_KEY, "close", "2026-03-03")
    assert _dump(consortium.engine) == before


def test_close_completes_a_case_whose_items_are_all_finished(sme_at_acceptance: Runtime) -> None:
    rt = sme_at_acceptance
    _decide(rt, SME_KEY, "sme-acceptance", Decision.APPROVE, SME_ADVISOR, "2026-02-04")
    for key in AFTER_ACCEPTANCE:
        _progress(rt, SME_KEY, key, "complete", "2026-03-12", by=SME_OWNER)
    assert _show(rt, SME_KEY, date(2026, 3, 12))["stage"] is None
    closed = _change(rt, SME_KEY, "close", "2026-03-13")
    assert closed.status is CaseStatus.COMPLETED
    assert closed.closed_at == at("2026-03-13")
    last = _events(rt, SME_KEY)[-1]
    assert (last.kind, last.before, last.after) == (
        "case.close",
        {"status": "active"},
        {"status": "completed"},
    )


# --- refused changes leave the store as it was -----------------------------------------------


def test_resuming_an_active_case_is_refused_and_writes_nothing(consortium: Runtime) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition, match="cannot resume case IP-2026-0001: it is active"):
        _change(consortium, IP_KEY, "resume", "2026-03-03")
    assert _dump(consortium.engine) == before


def test_completing_a_milestone_of_a_cancelled_case_is_refused(consortium: Runtime) -> None:
    _open(consortium)
    _change(consortium, IP_KEY, "cancel", "2026-03-03")
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition, match="case IP-2026-0001 is cancelled"):
        _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-04")
    assert _dump(consortium.engine) == before


def test_the_same_approver_cannot_approve_a_gate_twice(ip_at_council: Runtime) -> None:
    _decide(ip_at_council, IP_KEY, "council-approval", Decision.APPROVE, COUNCIL[0], "2026-12-23")
    before = _dump(ip_at_council.engine)
    with pytest.raises(IllegalTransition, match="has already decided"):
        _decide(
            ip_at_council, IP_KEY, "council-approval", Decision.APPROVE, COUNCIL[0], "2026-12-24"
        )
    assert _dump(ip_at_council.engine) == before


@pytest.mark.parametrize("action", ["start", "complete"])
def test_a_strict_milestone_cannot_start_before_its_predecessors(
    consortium: Runtime, action: str
) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition, match="predecessors not finished: kickoff"):
        _progress(consortium, IP_KEY, "bottleneck-desk-study", action, "2026-03-03")
    assert _dump(consortium.engine) == before


def test_a_non_strict_milestone_may_start_before_its_predecessors(consortium: Runtime) -> None:
    _open(consortium)
    started = _progress(consortium, IP_KEY, "baseline-data", "start", "2026-03-03")
    assert started.status is MilestoneStatus.IN_PROGRESS
    assert started.started_on == date(2026, 3, 3)


# --- optimistic locking ----------------------------------------------------------------------


def test_change_case_with_a_stale_version_is_refused(consortium: Runtime) -> None:
    _open(consortium)
    _change(consortium, IP_KEY, "hold", "2026-03-03", expected_version=1)
    before = _dump(consortium.engine)
    with pytest.raises(StaleCase, match="is at version 2, not 1"):
        _change(consortium, IP_KEY, "resume", "2026-03-04", expected_version=1)
    assert _dump(consortium.engine) == before


def test_progress_milestone_with_a_stale_version_is_refused(consortium: Runtime) -> None:
    _open(consortium)
    _progress(consortium, IP_KEY, "kickoff", "start", "2026-03-03", expected_version=1)
    before = _dump(consortium.engine)
    with pytest.raises(StaleCase, match="is at version 2, not 1"):
        _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-04", expected_version=1)
    assert _dump(consortium.engine) == before
    done = _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-04", expected_version=2)
    assert done.status is MilestoneStatus.DONE


# --- slips, backdating -----------------------------------------------------------------------


def test_a_late_milestone_moves_its_dependents_by_its_slip(consortium: Runtime) -> None:
    _open(consortium)
    # kickoff was due Mon 16 March; 5 working days later is Mon 23 March.
    done = _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-23", on=date(2026, 3, 23))
    assert done.finished_on == date(2026, 3, 23)
    m = _by_key(_show(consortium, IP_KEY, date(2026, 3, 23))["milestones"])
    # Each dependent moves 5 working days in its owner's calendar; planned dates stay.
    expected = {
        "kickoff": ("2026-03-16", "2026-03-23"),
        "bottleneck-desk-study": ("2026-05-15", "2026-05-22"),  # SE: 18-22 May
        "regional-workshops": ("2026-05-22", "2026-06-01"),  # DK: Whit Monday 25 May
        "bottleneck-report": ("2026-06-19", "2026-06-29"),  # SE: 20 days from 2 June
    }
    assert {k: (m[k]["planned_due"], m[k]["forecast_due"]) for k in expected} == expected
    event = _events(consortium, IP_KEY)[1]
    assert (event.kind, event.subject) == ("milestone.complete", "kickoff")
    assert event.after is not None
    assert event.after["days_late"] == 7
    assert event.after["finished_on"] == "2026-03-23"


def test_a_late_milestone_moves_the_case_forecast(consortium: Runtime) -> None:
    # An SME request from Mon 12 January 2026, owners in DK: no holiday until Easter.
    _open(consortium, kind="shared-sme-service", owner=SME_OWNER, start=date(2026, 1, 12))
    planned = {
        "request-intake": "2026-01-13",
        "needs-interview": "2026-01-16",
        "triage-decision": "2026-01-20",
        "nda": "2026-01-28",
        "cluster-search": "2026-01-29",
        "match-proposal": "2026-02-03",
        "sme-acceptance": "2026-02-10",
        "service-plan": "2026-02-13",
        "service-delivery": "2026-02-27",
        "follow-up-call": "2026-03-10",
        "feedback": "2026-03-09",
        "kpi-record": "2026-03-12",
    }
    shown = _show(consortium, SME_KEY, date(2026, 1, 12))
    rows = _by_key([*shown["milestones"], *shown["gates"]])
    assert {k: r["planned_due"] for k, r in rows.items()} == planned
    assert shown["target"] == shown["forecast"] == "2026-03-12"

    _progress(consortium, SME_KEY, "request-intake", "complete", "2026-01-20", by=SME_OWNER)

    shown = _show(consortium, SME_KEY, date(2026, 1, 20))
    rows = _by_key([*shown["milestones"], *shown["gates"]])
    # Five working days later everywhere (one calendar week each, no holidays).
    assert {k: r["forecast_due"] for k, r in rows.items()} == {
        "request-intake": "2026-01-20",
        "needs-interview": "2026-01-23",
        "triage-decision": "2026-01-27",
        "nda": "2026-02-04",
        "cluster-search": "2026-02-05",
        "match-proposal": "2026-02-10",
        "sme-acceptance": "2026-02-17",
        "service-plan": "2026-02-20",
        "service-delivery": "2026-03-06",
        "follow-up-call": "2026-03-17",
        "feedback": "2026-03-16",
        "kpi-record": "2026-03-19",
    }
    assert {k: r["planned_due"] for k, r in rows.items()} == planned
    assert (shown["target"], shown["forecast"], shown["slip_days"]) == (
        "2026-03-12",
        "2026-03-19",
        7,
    )
    event = _events(consortium, SME_KEY)[-1]
    assert event.before is not None and event.after is not None
    assert (event.before["case_forecast"], event.after["case_forecast"]) == (
        "2026-03-12",
        "2026-03-19",
    )


def test_on_backdates_a_completion(consortium: Runtime) -> None:
    _open(consortium)
    done = _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-20", on=date(2026, 3, 13))
    assert (done.started_on, done.finished_on) == (date(2026, 3, 13), date(2026, 3, 13))
    m = _by_key(_show(consortium, IP_KEY, date(2026, 3, 20))["milestones"])
    assert m["kickoff"]["finished_on"] == "2026-03-13"
    # The desk study may start on Fri 13 March: its 40th DE-BW working day is one earlier
    # than planned, Wed 13 May (Ascension, 14 May, is a holiday).
    assert m["bottleneck-desk-study"]["forecast_due"] == "2026-05-13"
    event = _events(consortium, IP_KEY)[1]
    assert event.at == at("2026-03-20")
    assert event.after is not None
    assert (event.after["finished_on"], event.after["days_late"]) == ("2026-03-13", 0)


@pytest.mark.parametrize(
    ("on", "message"),
    [(date(2026, 3, 11), "is in the future"), (date(2026, 3, 1), "is before case")],
)
def test_on_outside_the_case_is_refused(consortium: Runtime, on: date, message: str) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(InvalidInput, match=message):
        _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-10", on=on)
    assert _dump(consortium.engine) == before


def test_a_milestone_cannot_finish_before_it_started(consortium: Runtime) -> None:
    _open(consortium)
    _progress(consortium, IP_KEY, "kickoff", "start", "2026-03-10")
    before = _dump(consortium.engine)
    with pytest.raises(InvalidInput, match="before kickoff of IP-2026-0001 started"):
        _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-20", on=date(2026, 3, 5))
    assert _dump(consortium.engine) == before


def test_a_strict_milestone_cannot_finish_before_its_predecessor(consortium: Runtime) -> None:
    _open(consortium)
    _progress(consortium, IP_KEY, "kickoff", "complete", "2026-03-20", on=date(2026, 3, 5))
    before = _dump(consortium.engine)
    with pytest.raises(InvalidInput, match="before predecessor kickoff of bottleneck-desk-study"):
        _progress(
            consortium,
            IP_KEY,
            "bottleneck-desk-study",
            "complete",
            "2026-03-20",
            on=date(2026, 3, 3),
        )
    assert _dump(consortium.engine) == before
    # The same day as the predecessor finished is fine (finish-to-start, no lag).
    done = _progress(
        consortium, IP_KEY, "bottleneck-desk-study", "complete", "2026-03-20", on=date(2026, 3, 5)
    )
    assert done.finished_on == date(2026, 3, 5)


# --- gates -----------------------------------------------------------------------------------


def test_council_members_come_from_the_shipped_contacts() -> None:
    assert len(COUNCIL) == 6
    assert COUNCIL[0] == "peter.moller-jensen@mva.example"


def test_the_council_gate_opens_when_model_revision_is_done(ip_at_council: Runtime) -> None:
    gate = _by_key(_show(ip_at_council, IP_KEY, date(2026, 12, 22))["gates"])["council-approval"]
    # Opened on Tue 22 December 2026 with 28 calendar days to decide: Tue 19 January 2027.
    assert (gate["status"], gate["round"], gate["deadline"]) == ("open", 1, "2027-01-19")
    opened = _events(ip_at_council, IP_KEY)[-1]
    assert (opened.kind, opened.subject) == ("gate.open", "council-approval")


def test_the_council_gate_needs_three_council_members(ip_at_council: Runtime) -> None:
    rt = ip_at_council
    for n, who in enumerate(COUNCIL[:2], start=1):
        gate = _decide(rt, IP_KEY, "council-approval", Decision.APPROVE, who, "2026-12-23")
        assert gate.status is GateStatus.OPEN
        vote = _events(rt, IP_KEY)[-1]
        assert vote.kind == "gate.vote"
        assert vote.after is not None
        assert (vote.after["approvals"], vote.after["required"]) == (n, 3)
        assert vote.actor == who
    gate = _decide(rt, IP_KEY, "council-approval", Decision.APPROVE, COUNCIL[2], "2026-12-28")
    assert gate.status is GateStatus.APPROVED
    assert gate.decided_on == date(2026, 12, 28)
    shown = _show(rt, IP_KEY, date(2026, 12, 28))
    row = _by_key(shown["gates"])["council-approval"]
    assert [d["by"] for d in row["decisions"]] == COUNCIL[:3]
    assert shown["stage"] == "pilot-agreements"
    approved = [e for e in _events(rt, IP_KEY) if e.kind == "gate.approve"]
    assert len(approved) == 1
    assert approved[0].after is not None
    assert (
        approved[0].after.items()
        >= {
            "status": "approved",
            "approvals": 3,
            "required": 3,
            "round": 1,
        }.items()
    )


def test_someone_outside_the_council_cannot_decide(ip_at_council: Runtime) -> None:
    before = _dump(ip_at_council.engine)
    with pytest.raises(IllegalTransition, match="it needs a council-member"):
        _decide(ip_at_council, IP_KEY, "council-approval", Decision.APPROVE, LEAD, "2026-12-23")
    assert _dump(ip_at_council.engine) == before


def test_a_pending_gate_cannot_be_decided(consortium: Runtime) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition, match="still waiting for model-revision"):
        _decide(consortium, IP_KEY, "council-approval", Decision.APPROVE, COUNCIL[0], "2026-03-03")
    assert _dump(consortium.engine) == before


def test_a_council_rejection_sends_the_model_back_to_the_draft_stage(
    ip_at_council: Runtime,
) -> None:
    rt = ip_at_council
    for who in COUNCIL[:2]:
        _decide(rt, IP_KEY, "council-approval", Decision.APPROVE, who, "2026-12-23")
    gate = _decide(rt, IP_KEY, "council-approval", Decision.REJECT, COUNCIL[2], "2026-12-23")
    assert (gate.status, gate.round) == (GateStatus.PENDING, 2)
    assert (gate.opened_on, gate.deadline, gate.decided_on) == (None, None, None)
    shown = _show(rt, IP_KEY, date(2026, 12, 23))
    status = {m["key"]: m["status"] for m in shown["milestones"]}
    reopened = ("model-draft", "expert-panel", "model-revision")
    assert {k for k, s in status.items() if s == "done"} == set(BEFORE_COUNCIL) - set(reopened)
    assert {k: status[k] for k in reopened} == dict.fromkeys(reopened, "planned")
    assert all(_by_key(shown["milestones"])[k]["finished_on"] is None for k in reopened)
    assert shown["stage"] == "draft-model"
    tail = [(e.kind, e.subject) for e in _events(rt, IP_KEY)[-5:]]
    assert tail == [
        ("gate.reject", "council-approval"),
        ("milestone.reopen", "model-draft"),
        ("milestone.reopen", "expert-panel"),
        ("milestone.reopen", "model-revision"),
        ("gate.reopen", "council-approval"),
    ]
    reopen = _events(rt, IP_KEY)[-1].after
    assert reopen is not None
    assert reopen.items() >= {"status": "pending", "round": 2, "rework": "draft-model"}.items()

    # Round 2: the gate opens again after the rework, and round-1 votes no longer count.
    for key in reopened:
        _progress(rt, IP_KEY, key, "complete", "2027-01-11")
    for who in COUNCIL[:2]:
        gate = _decide(rt, IP_KEY, "council-approval", Decision.APPROVE, who, "2027-01-12")
    assert (gate.status, gate.round) == (GateStatus.OPEN, 2)
    assert gate.deadline == date(2027, 2, 8)  # 11 January + 28 days


def test_an_sme_declining_the_match_cancels_the_case(sme_at_acceptance: Runtime) -> None:
    rt = sme_at_acceptance
    gate = _decide(rt, SME_KEY, "sme-acceptance", Decision.REJECT, SME_ADVISOR, "2026-02-04")
    assert gate.status is GateStatus.REJECTED
    with read_session(rt.engine) as session:
        case = store.case_by_key(session, SME_KEY)
    assert case.status is CaseStatus.CANCELLED
    assert case.closed_at == at("2026-02-04")
    last_two = _events(rt, SME_KEY)[-2:]
    assert [(e.kind, e.before, e.after) for e in last_two] == [
        ("gate.reject", {"status": "open"}, {"status": "rejected", "round": 1}),
        (
            "case.cancel",
            {"status": "active"},
            {"status": "cancelled", "because": "gate sme-acceptance rejected"},
        ),
    ]
    with pytest.raises(IllegalTransition, match="is cancelled"):
        _progress(rt, SME_KEY, "service-plan", "start", "2026-02-05", by=SME_OWNER)


# --- the flush guard and the append-only audit trail -----------------------------------------


def test_the_flush_guard_refuses_a_status_no_rule_allows(consortium: Runtime) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition, match="gate status cannot go from pending to approved"):
        with write_session(consortium.engine) as session:
            gate = session.exec(select(Gate).where(Gate.key == "council-approval")).one()
            gate.status = GateStatus.APPROVED
            session.commit()
    assert _dump(consortium.engine) == before


def test_the_flush_guard_refuses_completing_a_case_around_the_rules(consortium: Runtime) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition):
        with write_session(consortium.engine) as session:
            case = store.case_by_key(session, IP_KEY)
            case.status = CaseStatus.COMPLETED
            session.commit()
    assert _dump(consortium.engine) == before


@pytest.mark.parametrize(
    ("row_type", "model"), [(CaseRow, Case), (MilestoneRow, Milestone), (GateRow, Gate)]
)
def test_each_row_class_has_exactly_its_tables_columns(row_type: type, model: type) -> None:
    table = model.__table__  # type: ignore[attr-defined]
    assert rows.columns(row_type) == tuple(c.name for c in table.columns)


def test_the_row_writer_refuses_a_status_no_rule_allows(consortium: Runtime) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(IllegalTransition, match="gate status cannot go from pending to approved"):
        with write_session(consortium.engine) as session:
            loaded = store.load_case(session, IP_KEY)
            gate = next(g for g in loaded.plan.gates if g.key == "council-approval")
            gate.status = GateStatus.APPROVED
            store.save_case(loaded, now=at("2026-03-03"), expected_version=None)
            session.commit()
    assert _dump(consortium.engine) == before


def test_the_row_writer_writes_what_moved_and_claims_the_next_version(
    consortium: Runtime,
) -> None:
    _open(consortium)
    with write_session(consortium.engine) as session:
        loaded = store.load_case(session, IP_KEY)
        kickoff = loaded.plan.milestones[0]
        kickoff.status, kickoff.started_on = MilestoneStatus.IN_PROGRESS, MONDAY
        store.save_case(loaded, now=at("2026-03-03"), expected_version=1)
        session.commit()
    after = _dump(consortium.engine)
    with read_session(consortium.engine) as session:
        again = store.load_case(session, IP_KEY, for_update=False)
    assert (again.case.version, again.case.updated_at) == (2, at("2026-03-03"))
    first, *others = again.plan.milestones
    assert (first.status, first.started_on) == (MilestoneStatus.IN_PROGRESS, MONDAY)
    assert all(m.status is MilestoneStatus.PLANNED for m in others)
    # A second save of the same rows claims the next version and writes nothing else.
    with write_session(consortium.engine) as session:
        loaded = store.load_case(session, IP_KEY)
        store.save_case(loaded, now=at("2026-03-04"), expected_version=2)
        session.commit()
    unchanged = _dump(consortium.engine)
    assert {t: v for t, v in unchanged.items() if t != "cases"} == {
        t: v for t, v in after.items() if t != "cases"
    }


def test_the_row_writer_sets_only_the_columns_that_moved(consortium: Runtime) -> None:
    # A database maintains every index on a column an UPDATE sets, changed or not; so the
    # statements name only what moved. Observed on the statements the database receives.
    if consortium.engine.dialect.name != "sqlite":
        pytest.skip("the statement trace is SQLite's (set_trace_callback)")
    _open(consortium)
    sent: list[str] = []
    with write_session(consortium.engine) as session:
        loaded = store.load_case(session, IP_KEY)
        driver: Any = loaded.conn.connection.driver_connection
        driver.set_trace_callback(sent.append)
        kickoff, desk = loaded.plan.milestones[:2]
        kickoff.started_on = MONDAY
        desk.critical = not desk.critical
        loaded.case.current_stage = "somewhere-else"
        store.save_case(loaded, now=at("2026-03-03"), expected_version=1)
        session.commit()
    driver.set_trace_callback(None)
    updates = sorted(s.split(" WHERE ")[0] for s in sent if s.startswith("UPDATE"))
    assert updates == [
        "UPDATE cases SET current_stage='somewhere-else', "
        "updated_at='2026-03-03 10:00:00.000000', version=2",
        "UPDATE milestones SET critical=" + str(int(desk.critical)),
        "UPDATE milestones SET started_on='2026-03-02'",
    ]


def test_the_row_writer_refuses_a_case_whose_version_moved(consortium: Runtime) -> None:
    # Writers hold the case (BEGIN IMMEDIATE, FOR UPDATE), so the claim's version check is
    # what stands if a row was read outside that: here, a view one version old.
    _open(consortium)
    before = _dump(consortium.engine)
    with write_session(consortium.engine) as session:
        loaded = store.load_case(session, IP_KEY)
        loaded.case.version -= 1
        with pytest.raises(StaleCase, match="changed while this change was made"):
            store.save_case(loaded, now=at("2026-03-03"), expected_version=None)
    assert _dump(consortium.engine) == before


@pytest.mark.parametrize(
    "statement",
    ["UPDATE case_events SET actor = 'someone-else'", "DELETE FROM case_events"],
)
def test_the_audit_trail_is_append_only(consortium: Runtime, statement: str) -> None:
    _open(consortium)
    before = _dump(consortium.engine)
    with pytest.raises(DBAPIError, match="append-only"):
        with consortium.engine.begin() as conn:
            conn.execute(text(statement))
    assert _dump(consortium.engine) == before


# --- queries ---------------------------------------------------------------------------------


@pytest.fixture
def portfolio(consortium: Runtime) -> Runtime:
    """IP-1 and SME-1 at SCANBALT, SME-2 on hold at LUNDBACK-DX, SME-3 cancelled."""
    rt = consortium
    _open(rt, start=date(2026, 1, 12))  # kickoff due 26 January
    _open(rt, kind="shared-sme-service", owner=SME_OWNER, start=date(2026, 1, 12))  # intake 13th
    lundback = "oskar.lundback@lundback-dx.example"
    _open(rt, kind="shared-sme-service", owner=lundback, start=date(2026, 1, 13))  # intake 14th
    orland = "ingrid.odegard@orland-marine.example"
    _open(rt, kind="shared-sme-service", owner=orland, start=date(2026, 1, 12))  # intake 13th
    _change(rt, "SME-2026-0002", "hold", "2026-01-13")
    _change(rt, "SME-2026-0003", "cancel", "2026-01-13")
    return rt


def _keys(rt: Runtime, today: date, **filters: Any) -> list[str]:
    with read_session(rt.engine) as session:
        return [r["key"] for r in queries.list_cases(session=session, today=today, **filters)]


def test_list_cases_filters(portfolio: Runtime) -> None:
    day = date(2026, 1, 14)
    assert _keys(portfolio, day) == [
        "IP-2026-0001",
        "SME-2026-0001",
        "SME-2026-0002",
        "SME-2026-0003",
    ]
    assert _keys(portfolio, day, pilot="ip-integration") == ["IP-2026-0001"]
    assert _keys(portfolio, day, pilot="shared-sme-service") == [
        "SME-2026-0001",
        "SME-2026-0002",
        "SME-2026-0003",
    ]
    assert _keys(portfolio, day, status=CaseStatus.ON_HOLD) == ["SME-2026-0002"]
    assert _keys(portfolio, day, status=CaseStatus.CANCELLED) == ["SME-2026-0003"]
    assert _keys(portfolio, day, status=CaseStatus.ACTIVE) == ["IP-2026-0001", "SME-2026-0001"]
    assert _keys(portfolio, day, partner="scanbalt") == ["IP-2026-0001", "SME-2026-0001"]
    assert _keys(portfolio, day, partner="LUNDBACK-DX") == ["SME-2026-0002"]
    assert _keys(portfolio, day, partner="ipPT-pan") == []


def test_list_cases_overdue_counts_open_cases_past_a_planned_due(portfolio: Runtime) -> None:
    # 14 January: SME-1's intake (due 13th) is late; SME-3's too, but it is cancelled;
    # SME-2's intake is due that very day.
    assert _keys(portfolio, date(2026, 1, 13), overdue=True) == []
    assert _keys(portfolio, date(2026, 1, 14), overdue=True) == ["SME-2026-0001"]
    assert _keys(portfolio, date(2026, 1, 15), overdue=True) == ["SME-2026-0001", "SME-2026-0002"]
    assert _keys(portfolio, date(2026, 1, 27), overdue=True) == [
        "IP-2026-0001",
        "SME-2026-0001",
        "SME-2026-0002",
    ]
    assert _keys(portfolio, date(2026, 1, 27), overdue=True, pilot="shared-sme-service") == [
        "SME-2026-0001",
        "SME-2026-0002",
    ]
    _progress(portfolio, "SME-2026-0001", "request-intake", "complete", "2026-01-14", by=SME_OWNER)
    assert _keys(portfolio, date(2026, 1, 15), overdue=True) == ["SME-2026-0002"]


def test_list_cases_rows(portfolio: Runtime) -> None:
    with read_session(portfolio.engine) as session:
        rows = queries.list_cases(session=session, today=date(2026, 1, 14), partner="LUNDBACK-DX")
    assert rows == [
        {
            "key": "SME-2026-0002",
            "kind": "shared-sme-service",
            "title": "A shared-sme-service case",
            "status": "on_hold",
            "stage": "intake",
            "owner": "oskar.lundback@lundback-dx.example",
            "partner": "LUNDBACK-DX",
            "country": "SE",
            "start": "2026-01-13",
            # One working day after SME-1 (12 March), except that the 10-calendar-day lag
            # before follow-up-call now ends on Thursday 12 March: kpi-record is Tue 17 March.
            "target": "2026-03-17",
            "forecast": "2026-03-17",
            "slip_days": 0,
            "version": 2,
            "ready_to_close": False,
        }
    ]


def test_show_case_has_plan_forecast_critical_path_and_history(consortium: Runtime) -> None:
    _open(consortium, kind="shared-sme-service", owner=SME_OWNER, start=date(2026, 1, 12))
    _progress(consortium, SME_KEY, "request-intake", "complete", "2026-01-20", by=SME_OWNER)
    shown = _show(consortium, SME_KEY, date(2026, 1, 20))
    assert (shown["key"], shown["status"], shown["template_version"]) == (SME_KEY, "active", 2)
    intake = _by_key(shown["milestones"])["request-intake"]
    assert intake == {
        "key": "request-intake",
        "title": "Request registered and SME profile complete",
        "stage": "intake",
        "status": "done",
        "owner": SME_PILOT_LEAD,  # SCANBALT has no sme-advisor
        "owner_role": "sme-advisor",
        "round": 1,
        # The original plan, the agreed plan in force (the same: never moved), the forecast.
        "baseline_start": "2026-01-12",
        "baseline_due": "2026-01-13",
        "planned_start": "2026-01-12",
        "planned_due": "2026-01-13",
        "forecast_start": "2026-01-20",
        "forecast_due": "2026-01-20",
        "slip_days": 7,
        "finished_on": "2026-01-20",
        "overdue": False,
        "critical": True,
        "fields": {},  # request-intake captures nothing
    }
    interview = _by_key(shown["milestones"])["needs-interview"]
    assert (interview["overdue"], interview["slip_days"]) == (True, 7)  # due 16th, open
    # The chain that drives the end date, by hand: kpi-record <- follow-up-call (10 March,
    # not feedback, 9 March) <- ... <- the gate <- match-proposal (not nda) <- ... <- intake.
    assert shown["critical_path"] == [
        "request-intake",
        "needs-interview",
        "triage-decision",
        "cluster-search",
        "match-proposal",
        "sme-acceptance",
        "service-plan",
        "service-delivery",
        "follow-up-call",
        "kpi-record",
    ]
    assert [(e["kind"], e["subject"]) for e in shown["events"]] == [
        ("case.open", None),
        ("milestone.complete", "request-intake"),
    ]
    assert shown["events"][1]["actor"] == SME_OWNER
    assert shown["gates"][0]["approvers"] == "1 of role sme-advisor"
