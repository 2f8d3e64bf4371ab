"""The partners' door's scope as SQL: `rules.access.sees_case` over many cases at once (which
cases a person sees) and `rules.access.may_decide` over many gates (which gates they may vote
on), and the facts the rule reads about one case (`case_scope`). A test ties the filters to
the rules."""

from typing import Any

from sqlalchemy import Connection, exists, false, or_, select, true
from sqlmodel import col

from bridgebsr.rules.access import CaseFacts
from bridgebsr.rules.people import Person
from bridgebsr.rules.roles import is_coordinator
from models import Case, Gate, Milestone, TeamMember


def visible(person: Person) -> Any:
    """The cases `person` sees (`rules.access.sees_case`), as a condition on `cases`."""
    if is_coordinator(person.role):
        return true()
    leads = col(Case.kind).in_(list(person.leads)) if person.leads else false()
    return or_(
        col(Case.owner_id) == person.id,
        col(Case.lead_partner_id) == person.partner_id,
        leads,
        exists().where(
            col(TeamMember.case_id) == col(Case.id), col(TeamMember.contact_id) == person.id
        ),
        exists().where(
            col(Milestone.case_id) == col(Case.id), col(Milestone.owner_id) == person.id
        ),
    )


def decidable(person: Person) -> Any:
    """The gates `person` may vote on (`rules.access.may_decide`), as a condition on `gates`."""
    return or_(
        col(Gate.approver_role) == person.role,
        exists().where(
            col(TeamMember.case_id) == col(Gate.case_id),
            col(TeamMember.role) == col(Gate.approver_role),
            col(TeamMember.contact_id) == person.id,
        ),
    )


def case_scope(conn: Connection, key: str) -> tuple[int, int, Any, CaseFacts] | None:
    """Case `key`'s id, template version and fields, and what the scope rule reads about it
    (three statements); None when there is no such case."""
    found = conn.execute(
        select(
            col(Case.id),
            col(Case.template_version),
            col(Case.fields),
            col(Case.owner_id),
            col(Case.lead_partner_id),
            col(Case.kind),
        ).where(col(Case.key) == key.strip().upper())
    ).first()
    if found is None:
        return None
    case_id, version, fields, owner, partner, kind = found
    team = dict(
        conn.execute(
            select(col(TeamMember.role), col(TeamMember.contact_id)).where(
                col(TeamMember.case_id) == case_id
            )
        ).all()
    )
    rows = conn.execute(
        select(col(Milestone.owner_id)).where(
            col(Milestone.case_id) == case_id, col(Milestone.owner_id).is_not(None)
        )
    )
    owners = {owner for (owner,) in rows if owner is not None}
    return case_id, version, fields, CaseFacts(owner, partner, kind, team, owners)
