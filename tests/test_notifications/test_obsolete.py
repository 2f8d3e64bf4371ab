"""Notices no longer wanted when they are about to go are dropped: recorded `obsolete` with
the reason, never sent, left out of digests and summaries and of the daily cap's count
(the rule alone, then dispatch as bridgebsr wires it, on SQLite and PostgreSQL)."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import col, select, update

from bridgebsr.office import cases, directory
from bridgebsr.office.delivery import deliver
from bridgebsr.office.plan import reschedule_milestone
from bridgebsr.office.progress import Actor, progress_milestone
from bridgebsr.office.stale import NoticeFacts, why_obsolete
from bridgebsr.store.db import read_session, write_session
from models import (
    CaseStatus,
    Contact,
    Delivery,
    GateStatus,
    Milestone,
    MilestoneStatus,
)
from notifications.outbox import DispatchReport, digest_time
from tests.test_notifications.conftest import COORDINATOR, LEAD, Outbox

CASE = "IP-2026-0001"  # the outbox fixture's case
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _gate_notice(status: GateStatus, round_: int, deadline: date) -> NoticeFacts:
    """A reminder, written in round 1, of a gate due 2026-12-01, as the gate stands now."""
    return NoticeFacts(
        id=1,
        rule="remind-2",
        due_on=date(2026, 12, 1),
        payload={"item": "council", "item_kind": "gate", "round": 1, "offset": -2},
        case=CASE,
        case_status=CaseStatus.ACTIVE,
        milestone_status=None,
        milestone_due=None,
        gate_status=status,
        gate_round=round_,
        gate_deadline=deadline,
        country="DK",
        zone="Europe/Copenhagen",
        partner_country="DK",
        region="Hovedstaden",
    )


@pytest.mark.parametrize(
    ("status", "round_", "deadline", "why"),
    [
        (GateStatus.OPEN, 1, date(2026, 12, 1), None),
        (GateStatus.APPROVED, 1, date(2026, 12, 1), f"gate {CASE} council is approved"),
        (
            GateStatus.OPEN,
            2,
            date(2026, 12, 8),
            f"gate {CASE} council went back for rework: round 2 now",
        ),
        # two working days before 15 December is 11 December: not reached on 26 November
        (
            GateStatus.OPEN,
            1,
            date(2026, 12, 15),
            f"{CASE} council is now due 2026-12-15: its step 'remind-2' comes on 2026-12-11",
        ),
        (GateStatus.OPEN, 1, date(2026, 11, 30), None),  # sooner: its step still applies
    ],
)
def test_a_gate_notice_is_wanted_while_its_gate_is_open_in_its_round_and_step(
    status: GateStatus, round_: int, deadline: date, why: str | None
) -> None:
    assert why_obsolete(_gate_notice(status, round_, deadline), NOW) == why


def _milestone_notice(round_: int, due: date, written_for: date) -> NoticeFacts:
    """A `due` notice of round 1 written for `written_for`, of a milestone due `due` now."""
    return NoticeFacts(
        id=1,
        rule="due",
        due_on=written_for,
        payload={
            "item": "kickoff",
            "item_kind": "milestone",
            "round": 1,
            "offset": 0,
            "due": written_for.isoformat(),
        },
        case=CASE,
        case_status=CaseStatus.ACTIVE,
        milestone_status=MilestoneStatus.IN_PROGRESS,
        milestone_due=due,
        gate_status=None,
        gate_round=None,
        gate_deadline=None,
        country="DK",
        zone="Europe/Copenhagen",
        partner_country="DK",
        region="Hovedstaden",
        milestone_round=round_,
    )


_WAS_DUE = date(2026, 11, 20)  # the Friday before NOW: the notice's step reached


@pytest.mark.parametrize(
    ("round_", "due", "why"),
    [
        (1, _WAS_DUE, None),
        (2, _WAS_DUE, f"{CASE} kickoff was reopened for rework: round 2 now"),
        # rescheduled, still late: its step reached under the new date too, but the notice
        # names a date no longer agreed (the monitor writes the new date's own)
        (
            1,
            date(2026, 11, 24),
            f"{CASE} kickoff is now due 2026-11-24, not 2026-11-20 as the notice says",
        ),
        (
            1,
            date(2026, 11, 18),
            f"{CASE} kickoff is now due 2026-11-18, not 2026-11-20 as the notice says",
        ),  # fmt: skip
        # rescheduled ahead: its step not reached yet
        (
            1,
            date(2026, 12, 2),
            f"{CASE} kickoff is now due 2026-12-02: its step 'due' comes on 2026-12-02",
        ),
    ],
)
def test_a_milestone_notice_is_wanted_in_its_round_and_for_its_agreed_due_date(
    round_: int, due: date, why: str | None
) -> None:
    assert why_obsolete(_milestone_notice(round_, due, _WAS_DUE), NOW) == why


def test_a_milestone_notice_without_an_outbox_due_date_is_judged_by_its_payloads() -> None:
    facts = replace(_milestone_notice(1, date(2026, 11, 24), _WAS_DUE), due_on=None)
    assert why_obsolete(facts, NOW) == (
        f"{CASE} kickoff is now due 2026-11-24, not 2026-11-20 as the notice says"
    )
    same = replace(facts, milestone_due=_WAS_DUE)
    assert why_obsolete(same, NOW) is None


# --- through dispatch ------------------------------------------------------------------------


def _finish(outbox: Outbox, milestone: str, now: datetime, action: str = "complete") -> None:
    with write_session(outbox.engine) as session:
        progress_milestone(
            session=session,
            case_key=CASE,
            milestone_key=milestone,
            action=action,
            actor=Actor(LEAD),
            now=now,
        )


def _dispatch(outbox: Outbox, now: datetime | None = None) -> DispatchReport:
    """A dispatch pass as the CLI and the flows run it (to the local log)."""
    return deliver(outbox.rt, now=now or outbox.now)


def _outcomes(outbox: Outbox) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(item, recipient) -> (status, last error) of every outbox row."""
    to = outbox.recipients()
    return {
        (str(r.subject), to[int(r.id or 0)]): (r.status.value, r.last_error) for r in outbox.rows()
    }


def _receipts(outbox: Outbox, email: str) -> list[tuple[str, int]]:
    with read_session(outbox.engine) as session:
        found = session.exec(
            select(Delivery.kind, Delivery.notices)
            .join(Contact, col(Contact.id) == Delivery.recipient_id)
            .where(Contact.email == email, col(Delivery.ok))
        ).all()
    return sorted((str(kind), int(n)) for kind, n in found)


def _readers(outbox: Outbox) -> set[str]:
    """Who the local log's messages went to."""
    log = outbox.rt.settings.home / "notifications.log"
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    return {email for email in outbox.partners() if email in text}


def test_a_late_notice_of_a_milestone_done_since_is_dropped_and_the_rest_go(
    outbox: Outbox,
) -> None:
    _finish(outbox, "kickoff", outbox.now - timedelta(seconds=16))
    report = _dispatch(outbox)

    outcomes = _outcomes(outbox)
    kickoff = {k: v for k, v in outcomes.items() if k[0] == "kickoff"}
    assert {LEAD, COORDINATOR} <= {who for _, who in kickoff}
    assert set(kickoff.values()) == {("obsolete", f"{CASE} kickoff is done")}
    # The notices of the unfinished items (the desk study, the workshops) all go.
    rest = {k: v for k, v in outcomes.items() if k[0] != "kickoff"}
    assert {item for item, _ in rest} == {"bottleneck-desk-study", "regional-workshops"}
    assert set(rest.values()) == {("sent", None)}
    assert (report.obsolete, report.sent) == (len(kickoff), len(rest))
    assert COORDINATOR not in _readers(outbox)  # their one notice was about the kickoff
    again = _dispatch(outbox, outbox.now + timedelta(days=1))
    assert (again.obsolete, again.sent) == (0, 0)


@pytest.mark.parametrize(("action", "words"), [("hold", "on hold"), ("cancel", "cancelled")])
def test_no_notice_of_a_case_on_hold_or_cancelled_goes(
    outbox: Outbox, action: str, words: str
) -> None:
    with write_session(outbox.engine) as session:
        cases.change_case(
            session=session,
            key=CASE,
            action=action,
            reason="the SME withdrew",
            actor=LEAD,
            now=outbox.now - timedelta(hours=1),
        )
    report = _dispatch(outbox)

    outcomes = _outcomes(outbox)
    assert set(outcomes.values()) == {("obsolete", f"case {CASE} is {words}")}
    assert (report.obsolete, report.sent) == (len(outcomes), 0)
    assert _readers(outbox) == set()


def test_a_notice_whose_item_moved_is_dropped(outbox: Outbox) -> None:
    workshops = outbox.day + timedelta(days=21 + (2 - outbox.day.weekday()) % 7)  # a Wednesday
    # The store's due dates as a re-plan leaves them: the workshops three weeks ahead (their
    # `due` step not reached yet), the desk study a few days later but still late.
    with write_session(outbox.engine) as session:
        desk = session.exec(
            select(Milestone.planned_due).where(Milestone.key == "bottleneck-desk-study")
        ).one()
        for key, due in (
            ("regional-workshops", workshops),
            ("bottleneck-desk-study", desk + timedelta(days=4)),
        ):
            session.exec(update(Milestone).where(col(Milestone.key) == key).values(planned_due=due))
        session.commit()
    report = _dispatch(outbox)

    outcomes = _outcomes(outbox)
    assert outcomes.pop(("regional-workshops", LEAD)) == (
        "obsolete",
        f"{CASE} regional-workshops is now due {workshops}: its step 'due' comes on {workshops}",
    )
    # The desk study's step is reached under its new date too, but the notice names the old
    # one: the monitor's next pass writes the new date's.
    moved = {k: outcomes.pop(k) for k in list(outcomes) if k[0] == "bottleneck-desk-study"}
    why = f"{CASE} bottleneck-desk-study is now due {desk + timedelta(days=4)}, not {desk}"
    assert moved and set(moved.values()) == {("obsolete", f"{why} as the notice says")}
    assert set(outcomes.values()) == {("sent", None)}
    assert (report.obsolete, report.sent) == (1 + len(moved), len(outcomes))


def test_notices_of_a_rescheduled_milestone_and_its_dependents_are_dropped(
    outbox: Outbox,
) -> None:
    with read_session(outbox.engine) as session:
        kickoff = session.exec(select(Milestone).where(Milestone.key == "kickoff")).one()
    with write_session(outbox.engine) as session:
        _, moved = reschedule_milestone(
            session=session,
            case_key=CASE,
            milestone_key="kickoff",
            due=kickoff.planned_due + timedelta(days=2),
            reason="the partners met later",
            actor=Actor(LEAD),
            now=outbox.now - timedelta(hours=1),
        )
    report = _dispatch(outbox)

    keys = {m.node.key for m in moved}
    assert "kickoff" in keys
    outcomes = _outcomes(outbox)
    dropped = {k: v for k, v in outcomes.items() if k[0] in keys}
    assert dropped and {status for status, _ in dropped.values()} == {"obsolete"}
    assert all(f"{item} is now due" in why for (item, _), (_, why) in dropped.items() if why)
    rest = {k: v for k, v in outcomes.items() if k[0] not in keys}
    assert set(rest.values()) <= {("sent", None)}
    assert (report.obsolete, report.sent) == (len(dropped), len(rest))


def test_a_notice_of_an_earlier_round_of_a_reopened_milestone_is_dropped(
    outbox: Outbox,
) -> None:
    # The workshops as rework leaves them: reopened in round 2, their ladder speaks again.
    with write_session(outbox.engine) as session:
        session.exec(
            update(Milestone).where(col(Milestone.key) == "regional-workshops").values(round=2)
        )
        session.commit()
    report = _dispatch(outbox)

    outcomes = _outcomes(outbox)
    assert outcomes.pop(("regional-workshops", LEAD)) == (
        "obsolete",
        f"{CASE} regional-workshops was reopened for rework: round 2 now",
    )
    assert set(outcomes.values()) == {("sent", None)}
    assert (report.obsolete, report.sent) == (1, len(outcomes))


def test_a_digest_leaves_out_a_notice_whose_item_was_finished_while_it_waited(
    outbox: Outbox,
) -> None:
    _set(outbox, digest=True)
    assert _dispatch(outbox).held == 3  # the lead's three notices wait for the morning
    _finish(outbox, "regional-workshops", outbox.now + timedelta(hours=1), "waive")

    morning = digest_time(outbox.now, "Europe/Copenhagen", "DK") + timedelta(minutes=5)
    report = _dispatch(outbox, morning)
    assert (report.digests, report.obsolete) == (1, 1)
    assert _receipts(outbox, LEAD) == [("digest", 2)]
    assert _outcomes(outbox)[("regional-workshops", LEAD)] == (
        "obsolete",
        f"{CASE} regional-workshops is waived",
    )


def test_an_obsolete_notice_does_not_count_to_the_cap_or_in_the_summary(
    outbox: Outbox,
) -> None:
    _set(outbox, daily_cap=1)
    _finish(outbox, "kickoff", outbox.now - timedelta(minutes=5))
    report = _dispatch(outbox)
    # Two of the lead's three notices are still wanted: one goes, the other is summarised.
    assert _receipts(outbox, LEAD) == [("notice", 1), ("overflow", 1)]
    assert report.summaries == 1


def _set(outbox: Outbox, **changes: object) -> None:
    with write_session(outbox.engine) as session:
        directory.set_preferences(session=session, email=LEAD, changes=changes)
