"""Lookups and bookkeeping shared by the use cases: locking, versions, keys, audit events."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Integer, and_, any_, bindparam, delete, insert, or_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, SQLModel, col, select

from bridgebsr.errors import NotFound, StaleCase
from bridgebsr.rules import rows
from bridgebsr.rules.calendars import WorkCalendar, calendar_of
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.people import Person, person
from bridgebsr.rules.planning import Plan
from bridgebsr.rules.rows import (
    CASE_CHANGES,
    GATE_CHANGES,
    MILESTONE_CHANGES,
    CaseRow,
    GateRow,
    MilestoneRow,
    Organisation,
)
from bridgebsr.rules.texts import email_key
from bridgebsr.store.db import check_status
from bridgebsr.store.people import CONTACT, ORGANISATION, PERSON_COLUMNS
from bridgebsr.store.prepared import Prepared
from models import (
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    Gate,
    Milestone,
    Notification,
    NotificationStatus,
    Partner,
    PlanChange,
    Source,
    Template,
    TemplateVersion,
)


def case_by_key(session: Session, key: str, *, for_update: bool = False) -> Case:
    """The case with this key (locked for the transaction when `for_update`)."""
    query = select(Case).where(Case.key == key.strip().upper())
    if for_update:
        query = query.with_for_update()
    case = session.exec(query).first()
    if case is None:
        raise NotFound(f"no case {key}; see `bridgebsr case list`")
    return case


# A change's statements, built once from the row classes: each change runs them with new
# parameters on the session's connection, without the ORM.
_CASES = SQLModel.metadata.tables[str(Case.__tablename__)]
_MILESTONES = SQLModel.metadata.tables[str(Milestone.__tablename__)]
_GATES = SQLModel.metadata.tables[str(Gate.__tablename__)]
_PARTNERS = SQLModel.metadata.tables[str(Partner.__tablename__)]
_CONTACTS = SQLModel.metadata.tables[str(Contact.__tablename__)]
_VERSIONS = SQLModel.metadata.tables[str(TemplateVersion.__tablename__)]
_CASE_COLUMNS = rows.columns(CaseRow)
_MILESTONE_COLUMNS = rows.columns(MilestoneRow)
_GATE_COLUMNS = rows.columns(GateRow)
_LEAD = (_PARTNERS.c.country, _PARTNERS.c.region, _PARTNERS.c.timezone, _VERSIONS.c.checksum)
_CASE_WITH_GATES = (
    select(
        *[_CASES.c[name] for name in _CASE_COLUMNS],
        *[*_LEAD, *(_GATES.c[name] for name in _GATE_COLUMNS)],
    )
    .join(_PARTNERS, _PARTNERS.c.id == _CASES.c.lead_partner_id)
    .join(
        _VERSIONS,
        and_(
            _VERSIONS.c.kind == _CASES.c.kind,
            _VERSIONS.c.version == _CASES.c.template_version,
        ),
    )
    .outerjoin(_GATES, _GATES.c.case_id == _CASES.c.id)
    .where(_CASES.c.key == bindparam("key"))
    .order_by(_GATES.c.seq)
)


@lru_cache(maxsize=256)
def _parsed_links(text: str) -> list[dict[str, Any]]:
    parsed: list[dict[str, Any]] = json.loads(text)
    return parsed


def _links(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """An item's `depends_on`, as the driver gives it: JSON text on SQLite, parsed once per
    distinct text, so the items of every case of a template share one parsed list (rows
    only read it); already parsed on PostgreSQL."""
    return _parsed_links(value) if isinstance(value, str) else value


_LINKS = {"depends_on": _links}
_CASE_WITH_GATES_READ = Prepared(_CASE_WITH_GATES, convert=_LINKS)
# The lock is a statement of its own: under READ COMMITTED a statement that waited for a row
# lock returns the locked row as it is now but every other row (the case's gates, say) as it
# was when the statement began, before the change it waited for.
_LOCK_CASE = Prepared(select(_CASES.c.id).where(_CASES.c.key == bindparam("key")).with_for_update())
_OWNER_PARTNERS = _PARTNERS.alias("owner_partners")
_MILESTONES_WITH_OWNERS = Prepared(
    select(
        *[_MILESTONES.c[name] for name in _MILESTONE_COLUMNS],
        *[_CONTACTS.c.country, _OWNER_PARTNERS.c.country, _OWNER_PARTNERS.c.region],
    )
    .outerjoin(_CONTACTS, _CONTACTS.c.id == _MILESTONES.c.owner_id)
    .outerjoin(_OWNER_PARTNERS, _OWNER_PARTNERS.c.id == _CONTACTS.c.partner_id)
    .where(_MILESTONES.c.case_id == bindparam("case_id"))
    .order_by(_MILESTONES.c.seq),
    convert=_LINKS,
)
# Updates set only the columns that moved: a database maintains every index on a column an
# UPDATE sets, whether or not its value changed (on SQLite a milestone's status index alone is
# two more pages written per change). One statement per table and set of columns, made when
# first needed; `row_id` picks the row, and a case is claimed only from the version it was
# read at (`base`).
_WHERE = {
    "cases": and_(_CASES.c.id == bindparam("row_id"), _CASES.c.version == bindparam("base")),
    "milestones": _MILESTONES.c.id == bindparam("row_id"),
    "gates": _GATES.c.id == bindparam("row_id"),
}
_TABLES = {"cases": _CASES, "milestones": _MILESTONES, "gates": _GATES}
_UPDATES: dict[tuple[str, tuple[str, ...]], Prepared] = {}


def _update(table: str, names: tuple[str, ...]) -> Prepared:
    """The UPDATE of these columns of a row of `table`."""
    statement = _UPDATES.get((table, names))
    if statement is None:
        statement = _UPDATES[(table, names)] = Prepared(
            update(_TABLES[table]).where(_WHERE[table]), names
        )
    return statement


def _moved(names: tuple[str, ...], before: tuple[Any, ...], now: tuple[Any, ...]) -> dict[str, Any]:
    """The columns whose value differs, with their values now."""
    return {n: v for n, old, v in zip(names, before, now, strict=True) if old != v}


_EVENT_COLUMNS = (
    "case_id",
    "at",
    "actor",
    "kind",
    "subject",
    "before",
    "after",
    "source",
    "source_ref",
    "comment",
)
RECORD = Prepared(insert(SQLModel.metadata.tables[str(CaseEvent.__tablename__)]), _EVENT_COLUMNS)


@dataclass(frozen=True)
class Loaded:
    """A case read for a change: its plan, pinned template, lead partner's time zone, the
    values each row had when read (what `save_case` compares against), the ids of the
    milestones it had (a milestone no longer in the plan is deleted on save), and the
    connection of the transaction it was read in."""

    conn: Connection
    plan: Plan
    template: Template
    timezone: str
    read: dict[int, tuple[Any, ...]]
    milestone_ids: set[int] = field(default_factory=set)

    @property
    def case(self) -> CaseRow:
        """The case row."""
        return self.plan.case


def load_case(session: Session, key: str, *, for_update: bool = True) -> Loaded:
    """A case by key with its gates, lead partner and pinned template (one statement) and its
    milestones with their owners' calendars (another); when `for_update`, the case row is
    locked for the transaction first, so that both read what the changes before this one
    left (on PostgreSQL; SQLite's writers already hold the database)."""
    conn = session.connection()
    at = {"key": key.strip().upper()}
    if for_update and conn.dialect.name == "postgresql":
        _LOCK_CASE.all(conn, at)
    found = _CASE_WITH_GATES_READ.all(conn, at)
    if not found:
        raise NotFound(f"no case {key}; see `bridgebsr case list`")
    first = found[0]
    n = len(_CASE_COLUMNS)
    case = CaseRow(*first[:n])
    lead_country, lead_region, timezone, digest = first[n : n + len(_LEAD)]
    gates = [GateRow(*r[n + len(_LEAD) :]) for r in found if r[n + len(_LEAD)] is not None]
    calendars: dict[int | None, WorkCalendar] = {
        None: calendar_of(case.country, lead_country, lead_region)
    }
    milestones = []
    m = len(_MILESTONE_COLUMNS)
    for r in _MILESTONES_WITH_OWNERS.all(conn, {"case_id": case.id}):
        milestone = MilestoneRow(*r[:m])
        milestones.append(milestone)
        country, partner_country, region = r[m:]
        if milestone.owner_id is not None and country is not None:
            calendars[milestone.owner_id] = calendar_of(country, partner_country, region)
    read = {id(case): rows.values(case, CASE_CHANGES)}
    read.update((id(x), rows.values(x, MILESTONE_CHANGES)) for x in milestones)
    read.update((id(g), rows.values(g, GATE_CHANGES)) for g in gates)
    template = _parsed(session, case.kind, case.template_version, digest)
    ids = {m.id for m in milestones if m.id is not None}
    plan = Plan(case, milestones, gates, calendars)
    return Loaded(conn, plan, template, timezone, read, ids)


def lock_active_cases(conn: Connection, case_id: Any, where: Sequence[Any]) -> Any:
    """The condition that an item's case (`case_id`, a column of the items' table) is active,
    for one statement that changes the items matching `where` in many cases at once. On
    PostgreSQL those active cases are locked first, as `load_case` locks one, and the
    condition names only them: the statement then starts after every change to them has
    committed, and no change to them starts before this transaction ends."""
    active = _CASES.c.status == CaseStatus.ACTIVE
    if conn.dialect.name != "postgresql":  # SQLite's writers already hold the database
        return case_id.in_(select(_CASES.c.id).where(active).scalar_subquery())
    locking = (
        select(_CASES.c.id)
        .where(active, _CASES.c.id.in_(select(case_id).where(*where)))
        .order_by(_CASES.c.id)
        .with_for_update()
    )
    ids = list(conn.execute(locking).scalars())
    return case_id == any_(bindparam("locked_cases", ids, type_=ARRAY(Integer)))


def save_case(
    loaded: Loaded,
    *,
    now: datetime,
    expected_version: int | None,
    claim: bool = True,
) -> None:
    """Write what moved since `load_case`: the case under its next version (refused when
    someone else changed it first), then each changed milestone and gate. Every status
    change is checked against the lifecycle rules first, so nothing is written around them.
    Unclaimed (`claim=False`), the case keeps its version: for forecasts that move alone.
    A milestone row without an id (an item added to this case) is inserted, and one read but
    no longer in the plan (an item removed) is deleted."""
    case, plan = loaded.case, loaded.plan
    check_version(case, expected_version)
    read = loaded.read
    # Per table, each row whose changeable columns moved, with their values now.
    moved = [
        (
            table,
            names,
            [
                (row, v)
                for row in group
                if row.id is not None and (v := rows.values(row, names)) != read[id(row)]
            ],
        )
        for table, names, group in (
            ("milestones", MILESTONE_CHANGES, plan.milestones),
            ("gates", GATE_CHANGES, plan.gates),
        )
    ]
    case_values = rows.values(case, CASE_CHANGES)
    check_status("cases", read[id(case)][0], case.status)
    for table, _, changed in moved:
        for row, _ in changed:
            check_status(table, read[id(row)][0], row.status)
    conn = loaded.conn
    base = case.version
    sets = _moved(CASE_CHANGES, read[id(case)], case_values)
    if claim:
        sets.update(version=base + 1, updated_at=now)
    if sets:
        statement = _update("cases", tuple(sets))
        if statement.run(conn, {"row_id": case.id, "base": base, **sets}) != 1:
            raise StaleCase(f"case {case.key} changed while this change was made; retry")
    if claim:
        case.version, case.updated_at = base + 1, now
    read[id(case)] = case_values
    for table, names, changed in moved:
        # Rows that moved the same columns go in one executemany.
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row, values in changed:
            row_sets = _moved(names, read[id(row)], values)
            by_columns.setdefault(tuple(row_sets), []).append({"row_id": row.id, **row_sets})
            read[id(row)] = values
        for columns, params in by_columns.items():
            _update(table, columns).many(conn, params)
    _insert_and_delete(loaded)


_INSERT_MILESTONE = Prepared(
    insert(_MILESTONES).returning(_MILESTONES.c.id), _MILESTONE_COLUMNS[1:]
)
_DELETE_MILESTONE = Prepared(delete(_MILESTONES).where(_MILESTONES.c.id == bindparam("row_id")))


def _insert_and_delete(loaded: Loaded) -> None:
    """Insert the plan's new milestone rows (each gets its id) and delete the milestones read
    that are no longer in the plan."""
    conn, case = loaded.conn, loaded.case
    kept = set()
    for row in loaded.plan.milestones:
        if row.id is None:
            row.case_id = case.id
            written = _MILESTONE_COLUMNS[1:]
            params = dict(zip(written, rows.values(row, written), strict=True))
            found = _INSERT_MILESTONE.first(conn, params)
            assert found is not None
            row.id = found[0]
            loaded.read[id(row)] = rows.values(row, MILESTONE_CHANGES)
            loaded.milestone_ids.add(row.id)
        kept.add(row.id)
    gone = loaded.milestone_ids - kept
    if gone:
        _DELETE_MILESTONE.many(conn, [{"row_id": row_id} for row_id in sorted(gone)])
        loaded.milestone_ids.difference_update(gone)


_PLAN_CHANGE = Prepared(
    insert(SQLModel.metadata.tables[str(PlanChange.__tablename__)]),
    ("case_id", "item_kind", "item_key", "at", "start", "due", "why", "baseline"),
)


def record_plan_changes(conn: Connection, changes: Sequence[dict[str, Any]]) -> None:
    """Append `plan_changes` rows (case_id, item_kind, item_key, at, start, due, why,
    baseline): an item's agreed dates as they came into force."""
    _PLAN_CHANGE.many(conn, changes)


_OUTBOX = SQLModel.metadata.tables[str(Notification.__tablename__)]
_SUPPRESS = Prepared(
    update(_OUTBOX)
    .where(
        _OUTBOX.c.case_id == bindparam("case_id"),
        _OUTBOX.c.subject == bindparam("item"),
        # Not delivered yet (an IN list would be expanded at each execution).
        or_(
            _OUTBOX.c.status == NotificationStatus.PENDING,
            _OUTBOX.c.status == NotificationStatus.HELD,
        ),
    )
    .values(status=NotificationStatus.SUPPRESSED, last_error=bindparam("why"), next_attempt_at=None)
)


def suppress_notices(conn: Connection, case_id: int, item: str, why: str) -> int:
    """Suppress the notices about one item of a case not delivered yet (pending or held), with
    why; how many."""
    return _SUPPRESS.run(conn, {"case_id": case_id, "item": item, "why": why})


def contact_by_email(conn: Connection, email: str) -> Person:
    """The contact with this address (however its case or Unicode form is typed)."""
    found = _PERSON.first(conn, {"email": email_key(email)})
    if found is None:
        raise NotFound(f"no contact {email}; add it with `bridgebsr contacts import`")
    return _person(found)


def _person(row: tuple[Any, ...]) -> Person:
    """A contact row joined with its partner (`_PERSON`) as a `Person`."""
    n = len(PERSON_COLUMNS)
    return person(row[:n], Organisation(*row[n + 1 :]), row[n])


_PERSON = Prepared(
    select(*CONTACT, *ORGANISATION)
    .join(_PARTNERS, _PARTNERS.c.id == _CONTACTS.c.partner_id)
    .where(_CONTACTS.c.email == bindparam("email"))
)


def milestones_of(session: Session, case: Case) -> list[Milestone]:
    """A case's milestones in template order."""
    return list(
        session.exec(
            select(Milestone).where(Milestone.case_id == case.id).order_by(col(Milestone.seq))
        )
    )


def gates_of(session: Session, case: Case) -> list[Gate]:
    """A case's gates in template order."""
    return list(session.exec(select(Gate).where(Gate.case_id == case.id).order_by(col(Gate.seq))))


def check_version(case: Case | CaseRow, expected_version: int | None) -> None:
    """Refuse a change made on a view of the case older than its current version."""
    if expected_version is not None and expected_version != case.version:
        raise StaleCase(
            f"case {case.key} is at version {case.version}, not {expected_version}: "
            "someone changed it since you looked; check `bridgebsr case show` and retry"
        )


def record(
    conn: Connection,
    case_id: int | None,
    changes: Sequence[Change],
    *,
    actor: str,
    now: datetime,
    source: Source,
    source_ref: str | None = None,
    comment: str = "",
) -> None:
    """Append one audit event per change, in one statement (on a session's connection, pending
    ORM changes are not flushed first)."""
    assert case_id is not None
    if not changes:
        return
    events = [
        event_row(case_id, change, actor, now, source, source_ref, comment) for change in changes
    ]
    RECORD.many(conn, events)


def event_row(
    case_id: int,
    change: Change,
    actor: str,
    now: datetime,
    source: Source,
    source_ref: str | None,
    comment: str,
) -> dict[str, Any]:
    """A `case_events` row of a change (what `RECORD` inserts)."""
    return {
        "case_id": case_id,
        "at": now,
        "actor": actor,
        "kind": change.kind,
        "subject": change.subject,
        "before": change.before,
        "after": change.after,
        "source": source,
        "source_ref": source_ref,
        "comment": comment,
    }


def pinned_template(session: Session, kind: str, version: int) -> Template:
    """A pinned template version, parsed once per process."""
    digest = session.exec(
        select(TemplateVersion.checksum).where(
            TemplateVersion.kind == kind, TemplateVersion.version == version
        )
    ).one()
    return _parsed(session, kind, version, digest)


def _parsed(session: Session, kind: str, version: int, digest: str) -> Template:
    """A pinned template by its checksum; its body is read and parsed only the first time."""
    parsed = _PARSED.get(digest)
    if parsed is None:
        body = session.exec(
            select(TemplateVersion.body).where(
                TemplateVersion.kind == kind, TemplateVersion.version == version
            )
        ).one()
        parsed = _PARSED[digest] = Template.model_validate(body)
    return parsed


# Pinned templates never change, so parsing each once per process is safe.
_PARSED: dict[str, Template] = {}


def local_date(now: datetime, zone: str) -> date:
    """The calendar date of `now` in a time zone."""
    return now.astimezone(ZoneInfo(zone)).date()
