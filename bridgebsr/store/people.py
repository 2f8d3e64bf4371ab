"""The directory snapshot: every partner and contact (or the contacts one case can pick), read
in two statements, as `rules.people.Directory`."""

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, select

from bridgebsr.rules.people import Directory, Person, person
from bridgebsr.rules.rows import Organisation
from bridgebsr.rules.texts import email_key
from bridgebsr.store.prepared import Prepared
from models import Contact, Partner

_PARTNERS = Partner.__table__  # type: ignore[attr-defined]
_CONTACTS = Contact.__table__  # type: ignore[attr-defined]
# A contact's columns `rules.people.person` reads, then their `leads`.
PERSON_COLUMNS = ("id", "email", "name", "role", "partner_id", "country", "timezone")
CONTACT = [*(_CONTACTS.c[name] for name in PERSON_COLUMNS), _CONTACTS.c.leads]
ORGANISATION = [_PARTNERS.c[name] for name in Organisation._fields]
_ORGANISATIONS = Prepared(select(*ORGANISATION).order_by(_PARTNERS.c.id))
# Retired contacts hold no role and hear nothing: the snapshot leaves them out.
_CONTACTS_READ = Prepared(
    select(*CONTACT).where(_CONTACTS.c.retired_at.is_(None)).order_by(_CONTACTS.c.id)
)


def load_directory(
    conn: Connection,
    *,
    only: tuple[str, Iterable[str]] | None = None,
    also: Iterable[str] = (),
) -> Directory:
    """Every partner, and every contact not retired in the order they were added; with `only`
    (an email address, however typed, and roles), just the contacts opening one case may
    pick: that person, the people `also` names (its team), every holder of those roles and
    every pilot lead (whom `Directory.role_holders` may name)."""
    orgs = [Organisation(*r) for r in _ORGANISATIONS.all(conn, {})]
    by_id = {o.id: o for o in orgs}
    n = len(PERSON_COLUMNS)
    rows = _CONTACTS_READ.all(conn, {})
    if only is not None:
        keys = {email_key(only[0]), *(email_key(e) for e in also)}
        wanted = set(only[1])
        rows = [r for r in rows if r[1] in keys or r[3] in wanted or r[n]]
    return Directory.of([person(r[:n], by_id[r[4]], r[n]) for r in rows], orgs)


_HOLDER = Prepared(
    select(*CONTACT, _CONTACTS.c.link_generation, _CONTACTS.c.retired_at, *ORGANISATION)
    .join(_PARTNERS, _PARTNERS.c.id == _CONTACTS.c.partner_id)
    .where(_CONTACTS.c.id == bindparam("contact_id"))
)


def link_holder(conn: Connection, contact_id: int) -> tuple[Person, int, bool] | None:
    """One contact as the partners' door reads them, fresh: the person, their current link
    generation, and whether they have retired; None when there is no such contact."""
    row = _HOLDER.first(conn, {"contact_id": contact_id})
    if row is None:
        return None
    n = len(PERSON_COLUMNS)
    org = Organisation(*row[n + 3 :])
    return person(row[:n], org, row[n]), int(row[n + 1]), row[n + 2] is not None
