"""The directory snapshot: every contact and partner, read in two statements."""

from sqlalchemy import Connection, select
from sqlmodel import col

from bridgebsr.rules.people import Directory, person
from bridgebsr.rules.rows import Organisation
from models import Contact, Partner


def load_directory(conn: Connection) -> Directory:
    """Everyone and every organisation now, in the order they were added."""
    orgs = {
        r[0]: Organisation(*r)  # type: ignore[arg-type]
        for r in conn.execute(
            select(
                col(Partner.id),
                col(Partner.code),
                col(Partner.country),
                col(Partner.region),
                col(Partner.timezone),
            ).order_by(col(Partner.id))
        )
    }
    rows = conn.execute(
        select(
            col(Contact.id),
            col(Contact.email),
            col(Contact.name),
            col(Contact.role),
            col(Contact.partner_id),
            col(Contact.country),
            col(Contact.timezone),
            col(Contact.leads),
        ).order_by(col(Contact.id))
    ).all()
    people = [person(tuple(r[:7]), orgs[r[4]], r[7]) for r in rows]  # type: ignore[arg-type]
    return Directory.of(people, orgs.values())
