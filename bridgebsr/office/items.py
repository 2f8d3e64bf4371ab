"""Use cases on the items of one case: add a milestone to this case only, remove one.

Each is one transaction: the case is read and locked (`store.load_case`), the rule changes
its plan (`rules.adhoc`), the case is reforecast (`rules.progress.settle`), and what moved is
written with the new or removed row (`store.save_case`) under the case's next version, with
one audit event.
"""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, select
from sqlmodel import Session, col

from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound
from bridgebsr.office.progress import Actor
from bridgebsr.rules import adhoc, lifecycle
from bridgebsr.rules import progress as rules
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.people import Person
from bridgebsr.rules.rows import CaseRow, MilestoneRow
from bridgebsr.store import case_rows as store
from bridgebsr.store.people import load_directory
from models import CASE_OWNER, Contact, DayKind, Template


@dataclass(frozen=True)
class Added:
    """A milestone added, and its case as the change left it."""

    milestone: MilestoneRow
    case: CaseRow
    owner: str


def add_milestone(
    *,
    session: Session,
    case_key: str,
    key: str,
    title: str,
    owner: str,
    duration: int,
    after: str,
    actor: Actor,
    now: datetime,
    stage: str | None = None,
    days: DayKind | None = None,
    expected_version: int | None = None,
) -> Added:
    """Add a milestone to one case (`owner`: an email, or a role of the case's template held
    for this case), after one of its items; the case is reforecast, and the new item's agreed
    dates are recorded as a plan change (`add`)."""
    link = adhoc.parse_after(after)
    loaded = store.load_case(session, case_key)
    case = loaded.case
    store.check_version(case, expected_version)
    lifecycle.require_case_active(case.key, case.status, f"add milestone {key.strip()}")
    today = store.local_date(now, loaded.timezone)
    person = _owner(loaded.conn, case, loaded.template, owner)
    plan = loaded.plan
    plan.calendars.setdefault(person.id, person.calendar)
    role = owner.strip() if "@" not in owner else person.role
    row, change = adhoc.add_milestone(
        plan,
        loaded.template,
        key=key,
        title=title,
        owner_role=role,
        owner_id=person.id,
        owner=person.email,
        duration=duration,
        after=link,
        stage=stage,
        days=days,
        today=today,
    )
    _commit(session, loaded, change, actor, now, expected_version, today)
    store.record_plan_changes(
        loaded.conn,
        [
            {
                "case_id": case.id,
                "item_kind": "milestone",
                "item_key": row.key,
                "at": now,
                "start": row.planned_start,
                "due": row.planned_due,
                "why": "add",
                "baseline": None,
            }
        ],
    )
    session.commit()
    return Added(row, case, person.email)


def remove_milestone(
    *,
    session: Session,
    case_key: str,
    milestone_key: str,
    reason: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
) -> CaseRow:
    """Remove an ad-hoc milestone that has not started and that nothing depends on, with
    the reason on its audit event; its notices not delivered yet are suppressed."""
    if not reason.strip():
        raise InvalidInput("say why: --reason 'why the item is no longer needed'")
    loaded = store.load_case(session, case_key)
    case = loaded.case
    store.check_version(case, expected_version)
    lifecycle.require_case_active(case.key, case.status, f"remove milestone {milestone_key}")
    today = store.local_date(now, loaded.timezone)
    milestone = next((m for m in loaded.plan.milestones if m.key == milestone_key.strip()), None)
    if milestone is None:
        known = ", ".join(m.key for m in loaded.plan.milestones)
        raise NotFound(f"case {case.key} has no milestone '{milestone_key}' (it has: {known})")
    owner = _email(loaded.conn, milestone.owner_id)
    change = adhoc.remove_milestone(loaded.plan, milestone, owner)
    said = Actor(actor.email, actor.source, actor.source_ref, reason.strip())
    _commit(session, loaded, change, said, now, expected_version, today)
    store.suppress_notices(
        loaded.conn, case.id, milestone.key, f"milestone {milestone.key} was removed"
    )
    session.commit()
    return case


def _commit(
    session: Session,
    loaded: store.Loaded,
    change: Change,
    actor: Actor,
    now: datetime,
    expected_version: int | None,
    today: date,
) -> None:
    """Reforecast, write what moved under the case's next version, and audit (the caller
    commits after its own rows)."""
    more = rules.settle(loaded.plan, loaded.template, today, [change])
    store.save_case(loaded, now=now, expected_version=expected_version)
    store.record(
        loaded.conn,
        loaded.case.id,
        [change, *more],
        actor=actor.email,
        now=now,
        source=actor.source,
        source_ref=actor.source_ref,
        comment=actor.comment,
    )


def _owner(conn: Connection, case: CaseRow, template: Template, owner: str) -> Person:
    """Who `--owner` names: a contact by email, or the first holder of a template role for
    this case (`Directory.role_holders`, as a case opens); never a retired contact."""
    wanted = owner.strip()
    if "@" in wanted:
        person = store.contact_by_email(conn, wanted)
        if _retired(conn, [person.id]):
            raise IllegalTransition(
                f"--owner {person.email} has retired; give their successor or another contact"
            )
        return person
    roles = [CASE_OWNER, *template.roles]
    if wanted not in roles:
        raise InvalidInput(
            f"--owner '{owner}' is neither an email nor a role of {case.kind} ({', '.join(roles)})"
        )
    case_owner = _email(conn, case.owner_id) or ""
    directory = load_directory(conn, only=(case_owner, {wanted}))
    if wanted == CASE_OWNER:
        holders = [directory.people[case.owner_id]]
    else:
        holders = directory.role_holders(wanted, case.lead_partner_id, case.kind)
    retired = _retired(conn, [h.id for h in holders])
    chosen = next((h for h in holders if h.id not in retired), None)
    if chosen is None:
        raise NotFound(
            f"no one holds role {wanted} for case {case.key}; give --owner EMAIL instead"
        )
    return chosen


_CONTACTS = Contact.__table__  # type: ignore[attr-defined]


def _retired(conn: Connection, ids: list[int]) -> set[int]:
    """Which of these contacts have retired."""
    if not ids:
        return set()
    query = select(_CONTACTS.c.id).where(
        _CONTACTS.c.id.in_(ids), _CONTACTS.c.retired_at.is_not(None)
    )
    return set(conn.execute(query).scalars())


def _email(conn: Connection, contact_id: int | None) -> str | None:
    """A contact's email by id (None for none)."""
    if contact_id is None:
        return None
    query = select(col(Contact.email)).where(col(Contact.id) == contact_id)
    return conn.execute(query).scalar_one_or_none()
