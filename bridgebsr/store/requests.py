"""Requests for a new due date (`date_requests`): written, read one or all waiting, and
answered once: the answer is a conditional update of a waiting row, so of two answers at the
same instant exactly one changes it (PostgreSQL makes the second wait for the first's row
lock and then finds the row answered; SQLite's writers take turns)."""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlmodel import SQLModel

from bridgebsr.rules.requests import PENDING
from models import Case, Contact, DateRequest, Milestone, Partner, Source

_REQUESTS = SQLModel.metadata.tables[str(DateRequest.__tablename__)]
_CASES = SQLModel.metadata.tables[str(Case.__tablename__)]
_CONTACTS = SQLModel.metadata.tables[str(Contact.__tablename__)]
_MILESTONES = SQLModel.metadata.tables[str(Milestone.__tablename__)]
_PARTNERS = SQLModel.metadata.tables[str(Partner.__tablename__)]

# A request with its case's key and version, the item's title and the asker's address.
_SHOWN = (
    select(
        _REQUESTS,
        _CASES.c.key.label("case_key"),
        _CASES.c.version.label("case_version"),
        _CASES.c.kind.label("case_kind"),
        _CASES.c.lead_partner_id.label("lead_partner_id"),
        _PARTNERS.c.code.label("partner"),
        _MILESTONES.c.title.label("item_title"),
        _CONTACTS.c.email.label("asked_by"),
    )
    .join(_CASES, _CASES.c.id == _REQUESTS.c.case_id)
    .join(_PARTNERS, _PARTNERS.c.id == _CASES.c.lead_partner_id)
    .join(_CONTACTS, _CONTACTS.c.id == _REQUESTS.c.requested_by_id)
    .outerjoin(
        _MILESTONES,
        (_MILESTONES.c.case_id == _REQUESTS.c.case_id)
        & (_MILESTONES.c.key == _REQUESTS.c.item_key),
    )
)


def waiting_for_item(conn: Connection, case_id: int, item: str) -> tuple[int, str, date] | None:
    """The request waiting for an answer on one item: (id, asker's address, asked on)."""
    query = (
        select(_REQUESTS.c.id, _CONTACTS.c.email, _REQUESTS.c.at)
        .join(_CONTACTS, _CONTACTS.c.id == _REQUESTS.c.requested_by_id)
        .where(
            _REQUESTS.c.case_id == case_id,
            _REQUESTS.c.item_key == item,
            _REQUESTS.c.status == PENDING,
        )
    )
    found = conn.execute(query).first()
    return None if found is None else (found[0], found[1], found[2].date())


def waiting_on_case(conn: Connection, case_id: int) -> dict[str, tuple[int, str, date]]:
    """The requests waiting for an answer on a case's items: item key -> (id, asker's
    address, the date asked for)."""
    query = (
        select(_REQUESTS.c.item_key, _REQUESTS.c.id, _CONTACTS.c.email, _REQUESTS.c.requested_due)
        .join(_CONTACTS, _CONTACTS.c.id == _REQUESTS.c.requested_by_id)
        .where(_REQUESTS.c.case_id == case_id, _REQUESTS.c.status == PENDING)
    )
    return {item: (number, email, due) for item, number, email, due in conn.execute(query)}


def add(
    conn: Connection,
    *,
    case_id: int,
    item: str,
    asker_id: int,
    due: date,
    current: date,
    reason: str,
    now: datetime,
    source: Source,
) -> int:
    """Write a waiting request; its id."""
    values = {
        "case_id": case_id,
        "item_key": item,
        "requested_by_id": asker_id,
        "requested_due": due,
        "current_due": current,
        "reason": reason,
        "status": PENDING,
        "at": now,
        "source": source,
        "comment": "",
    }
    return int(
        conn.execute(insert(_REQUESTS).values(values).returning(_REQUESTS.c.id)).scalar_one()
    )


def one(conn: Connection, request_id: int) -> dict[str, Any] | None:
    """One request with its case, item and asker (None: no such request)."""
    found = conn.execute(_SHOWN.where(_REQUESTS.c.id == request_id)).mappings().first()
    return None if found is None else dict(found)


def waiting(conn: Connection) -> list[dict[str, Any]]:
    """Every request waiting for an answer, oldest first, with its case, item and asker."""
    query = _SHOWN.where(_REQUESTS.c.status == PENDING).order_by(_REQUESTS.c.at, _REQUESTS.c.id)
    return [dict(r) for r in conn.execute(query).mappings()]


def answer(
    conn: Connection, request_id: int, *, status: str, by: str, now: datetime, comment: str
) -> bool:
    """Mark a waiting request answered; False when it was not waiting any more (another
    answer came first)."""
    done = conn.execute(
        update(_REQUESTS)
        .where(_REQUESTS.c.id == request_id, _REQUESTS.c.status == PENDING)
        .values(status=status, decided_by=by, decided_at=now, comment=comment)
    )
    return done.rowcount == 1


def of_cases(rows: Sequence[dict[str, Any]]) -> list[int]:
    """The cases some requests are on, each once."""
    return sorted({int(r["case_id"]) for r in rows})
