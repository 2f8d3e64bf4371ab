"""Whether a notice in the outbox is still wanted when it is about to go.

The monitor writes a notice when a ladder step of an item falls due, and the notice may then
wait for hours (the reader's quiet hours, their digest, their daily cap, a retry). Before it
goes, dispatch asks here, once per batch of rows it claimed, which of them are no longer
wanted, and records those `obsolete` with the reason instead of sending them:

- the case is no longer active (on hold, completed or cancelled);
- the milestone is done or waived; the gate is decided, or in a later round than the notice;
- the item's due date moved so that the notice's step is not reached yet, as the monitor
  would count it now (the step's working day by the reader's calendar, their local today).

A notice whose item is not in its case's store (one not written by the monitor) is judged by
its case alone.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, and_, bindparam, or_, select
from sqlmodel import col

from bridgebsr.rules.calendars import calendar_of
from bridgebsr.rules.ladder import step_day
from bridgebsr.store import case_rows as store
from bridgebsr.store.due import GATE_DUE, MILESTONE_DUE
from models import (
    FINISHED_MILESTONE,
    Case,
    CaseStatus,
    Contact,
    Gate,
    GateStatus,
    Milestone,
    MilestoneStatus,
    Notification,
    Partner,
)

_CHUNK = 5000  # rows looked up at a time


@dataclass(frozen=True)
class NoticeFacts:
    """An outbox row with what its case, its item and its reader are like now."""

    id: int
    rule: str
    due_on: date | None
    payload: dict[str, Any]
    case: str
    case_status: CaseStatus
    milestone_status: MilestoneStatus | None  # None: the notice is not about a milestone
    milestone_due: date | None
    gate_status: GateStatus | None
    gate_round: int | None
    gate_deadline: date | None
    country: str
    zone: str
    partner_country: str
    region: str | None


_FACTS = (
    select(
        col(Notification.id),
        col(Notification.rule),
        col(Notification.due_on),
        col(Notification.payload),
        col(Case.key),
        col(Case.status),
        col(Milestone.status),
        MILESTONE_DUE,
        col(Gate.status),
        col(Gate.round),
        GATE_DUE,
        col(Contact.country),
        col(Contact.timezone),
        col(Partner.country),
        col(Partner.region),
    )
    .join(Case, col(Case.id) == col(Notification.case_id))
    .join(Contact, col(Contact.id) == col(Notification.recipient_id))
    .join(Partner, col(Partner.id) == col(Contact.partner_id))
    .outerjoin(
        Milestone,
        and_(
            col(Milestone.case_id) == col(Notification.case_id),
            col(Milestone.key) == col(Notification.subject),
        ),
    )
    .outerjoin(
        Gate,
        and_(
            col(Gate.case_id) == col(Notification.case_id),
            col(Gate.key) == col(Notification.subject),
        ),
    )
    .where(
        col(Notification.id).in_(bindparam("ids", expanding=True)),
        # Only a row whose case or item changed since it was written can be obsolete: the
        # database leaves out the others, nearly all of them (`why_obsolete` decides).
        or_(
            col(Case.status) != CaseStatus.ACTIVE,
            col(Milestone.status).in_(list(FINISHED_MILESTONE)),
            MILESTONE_DUE != col(Notification.due_on),
            col(Gate.status) != GateStatus.OPEN,
            col(Gate.round) > 1,
            GATE_DUE != col(Notification.due_on),
        ),
    )
)


def obsolete_notices(engine: Engine, ids: Sequence[int], now: datetime) -> dict[int, str]:
    """The outbox rows among `ids` no longer wanted as of `now`, each with why."""
    found: dict[int, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            rows = conn.execute(_FACTS, {"ids": list(ids[start : start + _CHUNK])})
            for row in rows:
                why = why_obsolete(NoticeFacts(*row), now)
                if why is not None:
                    found[int(row[0])] = why
    return found


def why_obsolete(facts: NoticeFacts, now: datetime) -> str | None:
    """Why a notice is no longer wanted as of `now`, or None when it still is."""
    if facts.case_status is not CaseStatus.ACTIVE:
        return f"case {facts.case} is {_words(facts.case_status)}"
    item = f"{facts.case} {facts.payload.get('item', '')}"
    kind = facts.payload.get("item_kind")
    if kind == "milestone" and facts.milestone_status is not None:
        if facts.milestone_status in FINISHED_MILESTONE:
            return f"{item} is {_words(facts.milestone_status)}"
        return _moved(facts, item, facts.milestone_due, now)
    if kind == "gate" and facts.gate_status is not None:
        if facts.gate_round != facts.payload.get("round", facts.gate_round):
            return f"gate {item} went back for rework: round {facts.gate_round} now"
        if facts.gate_status is not GateStatus.OPEN:
            return f"gate {item} is {_words(facts.gate_status)}"
        return _moved(facts, item, facts.gate_deadline, now)
    return None


def _moved(facts: NoticeFacts, item: str, due: date | None, now: datetime) -> str | None:
    """Why the notice's step no longer applies since the item's due date moved, if it does."""
    if due is None or facts.due_on is None or due == facts.due_on:
        return None
    calendar = calendar_of(facts.country, facts.partner_country, facts.region)
    step = step_day(calendar, due, int(facts.payload.get("offset", 0)))
    if step <= store.local_date(now, facts.zone):
        return None
    return f"{item} is now due {due.isoformat()}: its step '{facts.rule}' comes on {step}"


def _words(status: StrEnum) -> str:
    return status.value.replace("_", " ")
