"""Use cases on whole cases: open one from a template, hold, resume, close, cancel."""

from datetime import date, datetime
from typing import NamedTuple

from sqlalchemy import Connection, bindparam, insert
from sqlmodel import Session, SQLModel, col, select

from bridgebsr.errors import IllegalTransition, InvalidInput
from bridgebsr.exchange.catalog import Catalog, checksum
from bridgebsr.rules import lifecycle, planning, rows
from bridgebsr.rules.calendars import WorkCalendar, calendar_of
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.roles import case_role_holders, led_kinds
from bridgebsr.rules.rows import CaseRow, GateRow, MilestoneRow, Organisation, Person
from bridgebsr.store import case_rows as store
from bridgebsr.store.prepared import Prepared
from models import (
    CASE_OWNER,
    Case,
    CaseStatus,
    Contact,
    Gate,
    GateSpec,
    Milestone,
    MilestoneSpec,
    Partner,
    Source,
    Template,
)


def open_case(
    *,
    session: Session,
    catalog: Catalog,
    kind: str,
    title: str,
    owner_email: str,
    partner_code: str | None = None,
    start: date | None = None,
    now: datetime,
    source: Source = Source.CLI,
    source_ref: str | None = None,
) -> CaseRow:
    """Open a case of `kind`, pinned to the template's version, every item scheduled from start."""
    template = catalog.get(kind)
    if not title.strip():
        raise InvalidInput("a case needs a title: --title 'What this case is about'")
    conn = session.connection()
    owner = store.contact_by_email(conn, owner_email)
    partner = (
        store.partner_by_code(conn, partner_code)
        if partner_code
        else store.partner_by_id(conn, owner.partner_id)
    )
    store.pin_template(conn, template, checksum(template))
    start = start or store.local_date(now, partner.timezone)
    case = CaseRow(
        id=0,  # given when the row is written
        key=store.next_key(conn, template.key_prefix, start.year),
        kind=template.kind,
        template_version=template.version,
        title=title.strip(),
        lead_partner_id=partner.id,
        owner_id=owner.id,
        country=owner.country,
        status=CaseStatus.ACTIVE,
        current_stage=None,
        start_date=start,
        target_date=start,
        forecast_date=start,
        opened_at=now,
        closed_at=None,
        updated_at=now,
        version=1,
    )
    plan = _populate(conn, case, partner, template, owner)
    changes = planning.reforecast(plan, template, store.local_date(now, partner.timezone))
    _insert(conn, case, plan)
    opened = Change(
        "case.open",
        None,
        {},
        {
            "key": case.key,
            "kind": case.kind,
            "template_version": case.template_version,
            "title": case.title,
            "owner": owner.email,
            "partner": partner.code,
            "start": start.isoformat(),
            "target": case.target_date.isoformat(),
        },
    )
    actor = owner.email
    store.record(
        conn,
        case.id,
        [opened, *changes],
        actor=actor,
        now=now,
        source=source,
        source_ref=source_ref,
    )
    session.commit()
    return case


def _populate(
    conn: Connection, case: CaseRow, lead: Organisation, template: Template, owner: Person
) -> planning.Plan:
    """The case's milestones and gates, planned from its start (rows not written yet)."""
    owners = _owners_by_role(conn, template, case, owner)
    milestones = [
        _milestone(i, spec, template, owners) for i, spec in enumerate(template.milestones)
    ]
    gates = [_gate(i, spec, template) for i, spec in enumerate(template.gates)]
    owner_ids = {m.owner_id for m in milestones if m.owner_id is not None}
    calendars = _calendars(conn, case, lead, owner_ids)
    plan = planning.Plan(case, milestones, gates, calendars)
    planned = planning.baseline(plan)
    for node in plan.nodes():
        slot = planned[node.key]
        node.planned_start = node.forecast_start = slot.start
        node.planned_due = node.forecast_due = slot.due
    case.target_date = max(slot.due for slot in planned.values())
    return plan


# Inserts of a new case, built once: its row, then one multi-row statement per item table.
# Every column of a row after its id (which the database gives), per row class.
_WRITTEN = {row_type: rows.columns(row_type)[1:] for row_type in (CaseRow, MilestoneRow, GateRow)}
_CASES = SQLModel.metadata.tables[str(Case.__tablename__)]
_INSERT_CASE = Prepared(insert(_CASES).returning(_CASES.c.id), _WRITTEN[CaseRow])
_INSERT_MILESTONES = Prepared(
    insert(SQLModel.metadata.tables[str(Milestone.__tablename__)]), _WRITTEN[MilestoneRow]
)
_INSERT_GATES = Prepared(
    insert(SQLModel.metadata.tables[str(Gate.__tablename__)]), _WRITTEN[GateRow]
)


def _insert(conn: Connection, case: CaseRow, plan: planning.Plan) -> None:
    """Write a new case, then its milestones and gates, one statement per table."""
    written = _INSERT_CASE.first(conn, _without_id(case))
    assert written is not None
    case.id = written[0]
    for statement, nodes in ((_INSERT_MILESTONES, plan.milestones), (_INSERT_GATES, plan.gates)):
        for node in nodes:
            node.case_id = case.id
        statement.many(conn, [_without_id(node) for node in nodes])


def _without_id(row: CaseRow | rows.Node) -> dict[str, object]:
    names = _WRITTEN[type(row)]
    return dict(zip(names, rows.values(row, names), strict=True))


def _owners_by_role(
    conn: Connection, template: Template, case: CaseRow, owner: Person
) -> dict[str, int | None]:
    """Who owns each role's milestones: the case owner theirs, the first holder of each other
    role for this case (roles.case_role_holders) the rest, or no one."""
    owners: dict[str, int | None] = {CASE_OWNER: owner.id}
    roles = {m.owner for m in template.milestones} - {CASE_OWNER}
    if not roles:
        return owners
    leads = [
        _Holder(c_id, partner)
        for c_id, partner, led in _LEADERS.all(conn, {})
        if case.kind in led_kinds(led)
    ]
    for role in sorted(roles):
        holders = [_Holder(c_id, partner) for c_id, partner in _HOLDERS.all(conn, {"role": role})]
        chosen = case_role_holders(holders, case.lead_partner_id, leads)
        owners[role] = chosen[0].id if chosen else None
    return owners


def _calendars(
    conn: Connection, case: CaseRow, lead: Organisation, owner_ids: set[int]
) -> dict[int | None, WorkCalendar]:
    """Working calendars of the case (key None) and of each owner, by contact id."""
    calendars: dict[int | None, WorkCalendar] = {
        None: calendar_of(case.country, lead.country, lead.region)
    }
    for contact_id in sorted(owner_ids):
        found = _OWNER_PLACE.first(conn, {"contact_id": contact_id})
        if found is not None:
            calendars[contact_id] = calendar_of(*found)
    return calendars


# Where an owner works: their country, their partner's country and region.
_OWNER_PLACE = Prepared(
    select(col(Contact.country), col(Partner.country), col(Partner.region))
    .join(Partner, col(Partner.id) == Contact.partner_id)
    .where(col(Contact.id) == bindparam("contact_id"))
)


class _Holder(NamedTuple):
    id: int
    partner_id: int


# Who holds a role, and at which partner, in the order they were added.
_HOLDERS = Prepared(
    select(col(Contact.id), col(Contact.partner_id))
    .where(col(Contact.role) == bindparam("role"))
    .order_by(col(Contact.id))
)
# Who leads a pilot kind (few people), in the order they were added.
_LEADERS = Prepared(
    select(col(Contact.id), col(Contact.partner_id), col(Contact.leads))
    .where(col(Contact.leads) != "")
    .order_by(col(Contact.id))
)


def _links(spec: MilestoneSpec | GateSpec, template: Template) -> list[dict[str, object]]:
    return [
        {"key": d.key, "lag": d.lag, "days": (d.days or template.day_kind(spec)).value}
        for d in spec.after
    ]


def _milestone(
    seq: int, spec: MilestoneSpec, template: Template, owners: dict[str, int | None]
) -> MilestoneRow:
    placeholder = date.min
    return MilestoneRow(
        id=None,
        case_id=0,  # set when the case row is written
        key=spec.key,
        seq=seq,
        title=spec.title,
        stage=spec.stage,
        owner_role=spec.owner,
        owner_id=owners.get(spec.owner),
        duration=spec.duration,
        days=template.day_kind(spec),
        strict=template.is_strict(spec),
        depends_on=_links(spec, template),
        planned_start=placeholder,
        planned_due=placeholder,
        forecast_start=placeholder,
        forecast_due=placeholder,
    )


def _gate(seq: int, spec: GateSpec, template: Template) -> GateRow:
    placeholder = date.min
    return GateRow(
        id=None,
        case_id=0,  # set when the case row is written
        key=spec.key,
        seq=seq,
        title=spec.title,
        stage=spec.stage,
        approver_role=spec.approvers.role,
        required=spec.approvers.required,
        deadline_days=spec.deadline,
        days=template.day_kind(spec),
        on_timeout=spec.on_timeout,
        rework_stage=spec.on_reject.rework,
        depends_on=_links(spec, template),
        planned_start=placeholder,
        planned_due=placeholder,
        forecast_start=placeholder,
        forecast_due=placeholder,
    )


def change_case(
    *,
    session: Session,
    key: str,
    action: str,
    reason: str,
    actor: str,
    now: datetime,
    source: Source = Source.CLI,
    source_ref: str | None = None,
    expected_version: int | None = None,
) -> CaseRow:
    """Hold, resume, close or cancel a case, with the reason on its audit event."""
    if not reason.strip():
        raise InvalidInput(f"say why: --reason 'why the case is to {action}'")
    loaded = store.load_case(session, key)
    case = loaded.case
    store.check_version(case, expected_version)  # a stale view is refused before any rule
    new, change = lifecycle.case_change(action, case.key, case.status)
    if action == "close":
        _require_finished(loaded.plan)
    case.status = new
    if new in {CaseStatus.COMPLETED, CaseStatus.CANCELLED}:
        case.closed_at = now
    store.save_case(loaded, now=now, expected_version=expected_version)
    store.record(
        loaded.conn,
        case.id,
        [change],
        actor=actor,
        now=now,
        source=source,
        source_ref=source_ref,
        comment=reason.strip(),
    )
    session.commit()
    return case


def _require_finished(plan: planning.Plan) -> None:
    case = plan.case
    unfinished = [n.key for n in plan.nodes() if not planning.is_finished(n)]
    if unfinished:
        shown = ", ".join(unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
        raise IllegalTransition(
            f"cannot close case {case.key}: {len(unfinished)} item(s) still open ({shown}); "
            "finish or waive them, or cancel the case"
        )
