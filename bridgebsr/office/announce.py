"""Notices that are no ladder step: an item that changed hands, a request for a new date and
its answer, a vote a pilot lead entered in an approver's name. `about` says what one says
about its item, `notice` addresses it to one person for the outbox (`notifications.enqueue`,
in the transaction of the change that makes it)."""

from datetime import date

from bridgebsr.rules.rows import CaseRow, GateRow
from models import ItemKind, NoticePayload, OutboxNotice
from models.notices import VOTE_ENTERED


def about(
    case: CaseRow,
    *,
    item: str,
    title: str,
    due: date,
    today: date,
    step: str,
    note: str | None = None,
    kind: ItemKind = "milestone",
    round_: int = 1,
) -> NoticePayload:
    """What a notice of `step` says about `item` of `case` (`due`: its due date or deadline)
    as of `today`."""
    return NoticePayload(
        case=case.key,
        case_title=case.title,
        pilot=case.kind,
        country=case.country,
        item=item,
        item_kind=kind,
        item_title=title,
        due=due,
        days_late=max((today - due).days, 0),
        step=step,
        offset=0,
        round=round_,
        note=note,
    )


def vote_entered(
    case: CaseRow, gate: GateRow, decision: str, lead: str, today: date
) -> NoticePayload:
    """What the approver is told when the pilot lead `lead` entered their `decision` on
    `gate` (the Prefect UI's form): the vote is recorded in their name, so they hear of it
    at once and can object."""
    return about(
        case,
        item=gate.key,
        title=gate.title,
        due=gate.deadline or gate.planned_due,
        today=today,
        step=VOTE_ENTERED,
        note=f"{lead} entered your decision '{decision}' on gate {gate.key}",
        kind="gate",
        round_=gate.round,
    )


def notice(case_id: int, to: tuple[int, str], payload: NoticePayload, on: date) -> OutboxNotice:
    """`payload` for the contact `to` (id, address), not urgent, falling on `on`."""
    contact_id, address = to
    return OutboxNotice(
        case_id=case_id,
        recipient_id=contact_id,
        recipient=address,
        urgent=False,
        fire_on=on,
        payload=payload,
    )
