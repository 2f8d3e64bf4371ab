"""Whether a notice in the outbox is still wanted when it is about to go.

The monitor writes a notice when a ladder step of an item falls due, and the notice may then
wait for hours (the reader's quiet hours, their digest, their daily cap, a retry). Before it
goes, dispatch asks here, once per batch of rows it claimed, which of them are no longer
wanted, and records those `obsolete` with the reason instead of sending them:

- the case is no longer active (on hold, completed or cancelled);
- the milestone is done or waived, or reopened by rework since (a later round than the
  notice's); the gate is decided, or in a later round than the notice;
- the milestone's agreed due date is no longer the one the notice was written for (it was
  rescheduled or rebaselined since): its ladder counts from the new date, and the monitor
  writes that date's notices (`notifications.enqueue.dedupe_key`), so this one would say a
  date no longer agreed;
- the gate's deadline moved so that the notice's step is not reached yet, as the monitor
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
    milestone_round: int | None = None  # None: the notice is not about a milestone


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
        col(Milestone.round),
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
            col(Milestone.round) > 1,
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
        current = facts.milestone_round
        if current is not None and current != _round(facts.payload, current):
            return f"{item} was reopened for rework: round {current} now"
        if facts.milestone_status in FINISHED_MILESTONE:
            return f"{item} is {_words(facts.milestone_status)}"
        return _rescheduled(facts, item, now)
    if kind == "gate" and facts.gate_status is not None:
        if facts.gate_round != facts.payload.get("round", facts.gate_round):
            return f"gate {item} went back for rework: round {facts.gate_round} now"
        if facts.gate_status is not GateStatus.OPEN:
            return f"gate {item} is {_words(facts.gate_status)}"
        return _moved(facts, item, facts.gate_deadline, now)
    return None


def _round(payload: dict[str, Any], default: int) -> int:
    """The round a notice was written in (`default` when its payload does not say)."""
    try:
        return int(payload.get("round", default))
    except (TypeError, ValueError):
        return default


def _written_for(facts: NoticeFacts) -> date | None:
    """The due date a notice was written for: the outbox row's, else its payload's."""
    if facts.due_on is not None:
        return facts.due_on
    try:
        return date.fromisoformat(str(facts.payload["due"]))
    except (KeyError, ValueError):
        return None


def _rescheduled(facts: NoticeFacts, item: str, now: datetime) -> str | None:
    """Why a milestone's notice is no longer wanted since its agreed due date moved, if it
    did: a step not reached yet under the new date says so; any other says which date the
    notice was for (the monitor writes the new date's own notice when its step comes)."""
    due, written = facts.milestone_due, _written_for(facts)
    if due is None or written is None or due == written:
        return None
    not_yet = _moved(facts, item, due, now)
    if not_yet is not None:
        return not_yet
    return f"{item} is now due {due.isoformat()}, not {written.isoformat()} as the notice says"


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
