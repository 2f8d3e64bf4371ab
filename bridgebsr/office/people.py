"""People coming and going, one at a time: add or change a contact without a file, and
absences with a deputy (who gets the absent person's notices and may act for them).

Each use case checks what a person gives with the contacts import's own checks
(`directory.contact_record`) and the absence rules of `rules.people`, and commits once with
one directory event (`store.directory_events`: who, when, from where, the changed fields
before and after; a change that changes nothing records nothing). A contact belongs to no
case, so these changes are in the person's history (`contact_history`), not a case's.
"""

from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import pytz
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bridgebsr.errors import InvalidInput, NotFound
from bridgebsr.office.directory import contact_record, partner_ref
from bridgebsr.office.directory_audit import OPERATOR, record
from bridgebsr.office.progress import Actor
from bridgebsr.rules.calendars import calendar_of, supports_country
from bridgebsr.rules.people import away_now, check_absence
from bridgebsr.rules.texts import email_key
from bridgebsr.store import absences, directory_events
from bridgebsr.store.case_rows import local_date
from bridgebsr.store.directory_events import Entry
from models import Absence, Contact, Partner
from notifications.preferences import Recipient

# The options of `contacts add` and `edit`, by the field they set (as `contact_record` reads).
FIELDS = ("email", "name", "partner", "role", "country", "timezone", "leads")
SHOWN = ("email", "name", "partner", "role", "country", "timezone", "leads")


def _option(field: str) -> str:
    return "EMAIL" if field == "email" else f"--{field}"


def _refusing(field: str, check: Callable[..., Any], *args: Any) -> Any:
    """Run one check of a command's option; its problem is the command's one line."""
    try:
        return check(*args)
    except ValueError as exc:
        raise InvalidInput(f"{_option(field)}: {exc}") from None


def _partners(session: Session) -> dict[str, int]:
    return {p.code: int(p.id or 0) for p in session.exec(select(Partner))}


def _contact(session: Session, email: str, *, lock: bool = False) -> Contact:
    query = select(Contact).where(col(Contact.email) == email_key(email))
    found = session.exec(query.with_for_update() if lock else query).first()
    if found is None:
        raise NotFound(f"no contact {email}; see `bridgebsr contacts list`")
    return found


def _active(session: Session, email: str, doing: str, *, lock: bool = False) -> Contact:
    """A contact who has not retired, else a refusal naming their successor."""
    contact = _contact(session, email, lock=lock)
    if contact.retired_at is not None:
        successor = session.get(Contact, contact.successor_id) if contact.successor_id else None
        then = f"{contact.retired_at:%Y-%m-%d}"
        after = f"; their successor is {successor.email}" if successor else ""
        raise InvalidInput(f"cannot {doing} {contact.email}: retired on {then}{after}")
    return contact


def shown(session: Session, contact: Contact) -> dict[str, Any]:
    """A contact as `contacts add` and `edit` show it."""
    partner = session.get(Partner, contact.partner_id)
    data = contact.model_dump(include=set(SHOWN) - {"partner"})
    return {k: data.get(k) for k in SHOWN} | {"partner": partner.code if partner else None}


def add_contact(
    *,
    session: Session,
    given: dict[str, str],
    roles: set[str],
    kinds: Collection[str] = (),
    now: datetime,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Add one contact from `given` (email, name, partner, role; country, by default the
    partner's; timezone, by default the country's main zone; leads), refusing an address
    already there; recorded as `contact.add`. The contact as added."""
    raw = {"timezone": "", **given}
    partners = _partners(session)
    if not raw.get("country"):
        partner = session.get(Partner, _refusing("partner", partner_ref, raw["partner"], partners))
        raw["country"] = partner.country if partner else ""
    rec = contact_record(raw, partners, roles, kinds, _refusing)
    existing = session.exec(select(Contact).where(col(Contact.email) == rec["email"])).first()
    if existing is not None:
        raise InvalidInput(
            f"contact {rec['email']} exists already; change it with `bridgebsr contacts edit`"
        )
    contact = Contact(**rec)
    added = shown(session, contact)
    session.add(contact)
    _record(session, "contact.add", rec["email"], None, added, actor, now)
    try:
        session.commit()
    except IntegrityError:  # added by someone else meanwhile
        session.rollback()
        raise InvalidInput(
            f"contact {rec['email']} exists already; change it with `bridgebsr contacts edit`"
        ) from None
    return added


def edit_contact(
    *,
    session: Session,
    email: str,
    given: dict[str, str],
    roles: set[str],
    kinds: Collection[str] = (),
    now: datetime,
    actor: Actor = OPERATOR,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Change what `given` names of one contact (name, partner, role, country, timezone,
    leads); a new country without a timezone keeps the zone when the country has it, else
    takes the country's main zone. Only what is given is checked; the fields that moved are
    recorded as `contact.edit`. The contact before and after."""
    if not given:
        raise InvalidInput("nothing to change; give --name, --partner, --role, --country, ...")
    contact = _active(session, email, "edit", lock=True)
    before = shown(session, contact)
    raw = {k: str(v or "") for k, v in before.items()} | given
    if "country" in given and "timezone" not in given:
        zones = pytz.country_timezones.get(given["country"].strip().lower()) or []
        raw["timezone"] = contact.timezone if contact.timezone in zones else ""
        given = {**given, "timezone": raw["timezone"]}
    current = contact.model_dump() | {"partner_id": contact.partner_id}

    def cell(field: str, check: Any, *args: Any) -> Any:
        if field in given:
            return _refusing(field, check, *args)
        return current["partner_id" if field == "partner" else field]

    rec = contact_record(raw, _partners(session), roles, kinds, cell)
    for name, value in rec.items():
        if name != "email" and getattr(contact, name) != value:
            setattr(contact, name, value)
    after = shown(session, contact)
    moved = [k for k in SHOWN if before[k] != after[k]]
    if moved:
        old, new = {k: before[k] for k in moved}, {k: after[k] for k in moved}
        _record(session, "contact.edit", contact.email, old, new, actor, now)
    session.commit()
    return before, after


def revoke_links(
    *, session: Session, email: str, now: datetime, actor: Actor = OPERATOR
) -> tuple[int, int]:
    """Invalidate every personal link and calendar feed `email` holds, and end their open
    sessions in the web app: their link generation moves on (the next notice carries a link
    of the new one); recorded as `contact.revoke-links`. The generation before and after."""
    contact = _contact(session, email, lock=True)
    before = contact.link_generation
    contact.link_generation = before + 1
    _record(
        session,
        "contact.revoke-links",
        contact.email,
        {"link_generation": before},
        {"link_generation": before + 1},
        actor,
        now,
    )
    session.commit()
    return before, before + 1


def _record(
    session: Session,
    kind: str,
    email: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    actor: Actor,
    now: datetime,
) -> None:
    """The change's directory event, in its transaction."""
    record(session, [Entry(kind, email, before, after)], actor, now)


def contact_history(*, session: Session, email: str) -> list[dict[str, Any]]:
    """Every directory event about one contact (added, edited, imported, away, back,
    retired), in the order they were recorded (newest last)."""
    contact = _contact(session, email)
    return [
        e.model_dump(exclude={"id"}, mode="json")
        for e in directory_events.history(session.connection(), contact.email)
    ]


# --- absences ----------------------------------------------------------------------------------


def _absence_view(session: Session, absence: Absence) -> dict[str, Any]:
    person = session.get(Contact, absence.contact_id)
    deputy = session.get(Contact, absence.deputy_id)
    return {
        "email": person.email if person else None,
        "from": absence.starts.isoformat(),
        "to": absence.ends.isoformat(),
        "deputy": deputy.email if deputy else None,
        "created_at": absence.created_at.isoformat(),
    }


def set_absence(
    *,
    session: Session,
    email: str,
    starts: date,
    ends: date,
    deputy: str,
    now: datetime,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Record that `email` is away from `starts` to `ends` (both inclusive, their own dates),
    with `deputy` standing in, as `absence.add`; refused for days already past, a deputy who
    is the person, unknown or retired, and an absence overlapping one of theirs."""
    person = _active(session, email, "record an absence of", lock=True)
    try:
        stand_in = _active(session, deputy, "name as deputy")
    except NotFound:
        raise InvalidInput(
            f"--deputy: no contact {deputy}; see `bridgebsr contacts list`"
        ) from None
    assert person.id is not None and stand_in.id is not None
    today = local_date(now, person.timezone)
    if ends < today:
        raise InvalidInput(f"--to {ends} is past (today is {today} for {person.email})")
    existing = absences.of_person(session.connection(), person.id)
    check_absence(person.id, starts, ends, stand_in.id, existing)
    absence = Absence(
        contact_id=person.id, starts=starts, ends=ends, deputy_id=stand_in.id, created_at=now
    )
    added = _absence_view(session, absence)
    session.add(absence)
    _record(session, "absence.add", person.email, None, added, actor, now)
    session.commit()
    return added


def list_absences(*, session: Session, email: str) -> list[dict[str, Any]]:
    """Every absence of one person, earliest first."""
    contact = _contact(session, email)
    rows = session.exec(
        select(Absence).where(Absence.contact_id == contact.id).order_by(col(Absence.starts))
    )
    return [_absence_view(session, a) for a in rows]


def cancel_absence(
    *,
    session: Session,
    email: str,
    now: datetime,
    on: date | None = None,
    actor: Actor = OPERATOR,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Cancel the absence that covers `on` (by default the one in force today, else the next
    one): one not begun is removed; one in progress ends yesterday (the person is back
    today; what the deputy did meanwhile stays theirs). Recorded as `absence.cancel`. The
    absence before and after (None: removed)."""
    person = _contact(session, email, lock=True)
    today = local_date(now, person.timezone)
    rows = list(
        session.exec(
            select(Absence)
            .where(Absence.contact_id == person.id, col(Absence.ends) >= today)
            .order_by(col(Absence.starts))
        )
    )
    day = on or today
    chosen = next((a for a in rows if a.starts <= day <= a.ends), None)
    if chosen is None and on is None and rows:
        chosen = rows[0]
    if chosen is None:
        when = f"on {on}" if on else "now or later"
        raise InvalidInput(
            f"{person.email} has no absence {when} to cancel; see "
            f"`bridgebsr contacts away {person.email} --list`"
        )
    before = _absence_view(session, chosen)
    after: dict[str, Any] | None = None
    if chosen.starts >= today:
        session.delete(chosen)
    else:
        chosen.ends = today - timedelta(days=1)
        after = _absence_view(session, chosen)
    _record(session, "absence.cancel", person.email, before, after, actor, now)
    session.commit()
    return before, after


# --- what dispatch asks -------------------------------------------------------------------------


def deputies(engine: Engine, ids: Sequence[int], now: datetime) -> dict[int, tuple[int, date]]:
    """Of the contacts `ids`, who is away at `now` (by their own date): each one's deputy and
    last day away. Dispatch sends their notices to the deputy meanwhile."""
    with engine.connect() as conn:
        found = absences.for_people(conn, ids, now.date())
    return {cid: (a.deputy_id, a.ends) for cid, a in away_now(found, now).items()}


def working_days(recipient: Recipient) -> Callable[[date], bool] | None:
    """The days a recipient's digest may come on: the working days of the calendar the
    ladders count theirs by (`calendar_of`: their country's, with their partner's region
    when in the same country); None for a country without a holiday calendar."""
    return _working_days(recipient.country, recipient.partner_country, recipient.region)


@lru_cache(maxsize=1024)  # asked per recipient of every dispatch batch
def _working_days(
    country: str, partner_country: str, region: str | None
) -> Callable[[date], bool] | None:
    if not supports_country(country):
        return None
    return calendar_of(country, partner_country, region).is_working_day
