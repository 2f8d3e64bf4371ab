"""Notices no longer wanted when they are about to go are dropped: recorded `obsolete` with
the reason, never sent, left out of digests and summaries and of the daily cap's count
(the rule alone, then dispatch as bridgebsr wires it, on SQLite and PostgreSQL)."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import col, select, update

from bridgebsr.office import cases, directory
from bridgebsr.office.delivery import deliver
from bridgebsr.office.progress import Actor, progress_milestone
from bridgebsr.office.stale import NoticeFacts, why_obsolete
from bridgebsr.store.db import read_session, write_session
from models import (
    CaseStatus,
    Contact,
    Delivery,
    GateStatus,
    Milestone,
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


def test_a_notice_whose_item_moved_past_its_step_is_dropped(outbox: Outbox) -> None:
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
