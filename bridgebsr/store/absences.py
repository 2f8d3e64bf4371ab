"""Absences read as `rules.people.Away`: a person's own, those in force around a day for some
absent people (dispatch's routing) or for one deputy (acting for someone). An absence whose
deputy has retired since stands for nothing and is left out of the last two."""

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select

from bridgebsr.rules.people import Away, acting_for
from bridgebsr.rules.texts import email_key
from bridgebsr.store.prepared import Prepared
from models import Absence, Contact

_ABSENCES = Absence.__table__  # type: ignore[attr-defined]
_CONTACTS = Contact.__table__  # type: ignore[attr-defined]
_DEPUTIES = _CONTACTS.alias("deputies")
_AWAY = select(
    _ABSENCES.c.contact_id,
    _CONTACTS.c.email,
    _CONTACTS.c.timezone,
    _ABSENCES.c.starts,
    _ABSENCES.c.ends,
    _ABSENCES.c.deputy_id,
).join(_CONTACTS, _CONTACTS.c.id == _ABSENCES.c.contact_id)
# Every zone's date is within a day of UTC's: the absences that may be in force on `day`.
_AROUND = (
    _ABSENCES.c.starts <= bindparam("last"),
    _ABSENCES.c.ends >= bindparam("first"),
    _DEPUTIES.c.retired_at.is_(None),
)
_IN_FORCE = _AWAY.join(_DEPUTIES, _DEPUTIES.c.id == _ABSENCES.c.deputy_id).where(*_AROUND)
_FOR_DEPUTY = Prepared(_IN_FORCE.where(_ABSENCES.c.deputy_id == bindparam("deputy")))
_FOR_DEPUTY_ADDRESS = Prepared(_IN_FORCE.where(_DEPUTIES.c.email == bindparam("email")))
_FOR_PEOPLE = _IN_FORCE.where(_ABSENCES.c.contact_id.in_(bindparam("ids", expanding=True)))
_OF_PERSON = Prepared(
    _AWAY.where(_ABSENCES.c.contact_id == bindparam("contact")).order_by(_ABSENCES.c.starts)
)


def _around(day: date) -> dict[str, Any]:
    return {"first": day - timedelta(days=1), "last": day + timedelta(days=1)}


def of_person(conn: Connection, contact_id: int) -> list[Away]:
    """Every absence of one person, earliest first."""
    return [Away(*r) for r in _OF_PERSON.all(conn, {"contact": contact_id})]


def for_deputy(conn: Connection, deputy_id: int, day: date) -> list[Away]:
    """The absences that may be in force on `day` (UTC) with `deputy_id` standing in."""
    return [Away(*r) for r in _FOR_DEPUTY.all(conn, {"deputy": deputy_id, **_around(day)})]


def standing_in(conn: Connection, deputy_id: int, now: datetime) -> list[Away]:
    """The absences in force at `now` in which `deputy_id` stands in, in the order the use
    cases try them (`rules.people.acting_for`)."""
    return acting_for(for_deputy(conn, deputy_id, now.date()), deputy_id, now)


def for_deputy_address(conn: Connection, email: str, day: date) -> list[Away]:
    """As `for_deputy`, for the deputy with this address (however typed; none when it is no
    contact's): one statement, for a change that may be made on someone's behalf."""
    return [
        Away(*r) for r in _FOR_DEPUTY_ADDRESS.all(conn, {"email": email_key(email), **_around(day)})
    ]


def for_people(conn: Connection, ids: Sequence[int], day: date) -> list[Away]:
    """The absences of `ids` that may be in force on `day` (UTC)."""
    found: list[Away] = []
    for start in range(0, len(ids), 5000):
        params = {"ids": list(ids[start : start + 5000]), **_around(day)}
        found += [Away(*r) for r in conn.execute(_FOR_PEOPLE, params)]
    return found
