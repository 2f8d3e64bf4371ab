"""Use cases on whole cases: open one from a template, hold, resume, close, cancel."""

from collections.abc import Mapping
from datetime import date, datetime

from sqlmodel import Session

from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound
from bridgebsr.exchange.catalog import Catalog, checksum
from bridgebsr.rules import fields as field_rules
from bridgebsr.rules import lifecycle, planning
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.opening import Opening
from bridgebsr.rules.opening import open_case as plan_opening
from bridgebsr.rules.roles import check_team_role
from bridgebsr.rules.rows import CaseRow
from bridgebsr.rules.texts import email_key
from bridgebsr.store import case_rows as store
from bridgebsr.store import writer
from bridgebsr.store.people import load_directory
from models import CaseStatus, Source, Template


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
    team: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
) -> CaseRow:
    """Open a case of `kind`, pinned to the template's version, every item scheduled from start
    (`rules.opening`, written by `store.writer`: a batch of one); `team` (role -> email) names
    who holds which role on it; `fields` (name -> text) its field values (`rules.fields`)."""
    template = catalog.get(kind)
    if not title.strip():
        raise InvalidInput("a case needs a title: --title 'What this case is about'")
    values = opening_fields(template, fields or {}, "--field ")
    conn = session.connection()
    roles = {m.owner for m in template.milestones}
    directory = load_directory(conn, only=(owner_email, roles), also=(team or {}).values())
    owner = directory.by_email.get(email_key(owner_email))
    if owner is None:
        raise NotFound(f"no contact {owner_email} (or retired); see `bridgebsr contacts list`")
    members = []
    for role, address in (team or {}).items():
        name = check_team_role(role, template.roles, "--team", template.kind)
        member = directory.by_email.get(email_key(address))
        if member is None:
            raise NotFound(
                f"--team {role}={address}: no contact {address} (or retired); "
                "see `bridgebsr contacts list`"
            )
        members.append((name, member.id))
    if partner_code:
        lead = directory.orgs_by_code.get(partner_code.strip().upper())
        if lead is None:
            raise NotFound(f"no partner {partner_code}; add it with `bridgebsr partners import`")
    else:
        lead = directory.orgs[owner.partner_id]
    writer.pin_templates(conn, [(template, checksum(template))])
    today = store.local_date(now, lead.timezone)
    start = start or today
    (key,) = writer.take_keys(conn, [(template.key_prefix, start.year)])
    opening = Opening(
        template, title.strip(), owner, lead, start, today, team=tuple(members), fields=values
    )
    planned = plan_opening(directory, opening, key, now, source_ref=None)
    writer.write_cases(conn, [planned], now=now, source=source, source_ref=source_ref)
    session.commit()
    return planned.case


def opening_fields(
    template: Template, given: Mapping[str, str], where: str
) -> tuple[tuple[str, object], ...]:
    """The field values a case opens with, stored form, checked (`rules.fields`): the
    template's required case fields must be among them."""
    values = field_rules.for_template(template).values(given, where)
    held = {k: v for k, v in values.items() if v is not None}
    required = field_rules.missing_at_open(template, held)
    if required:
        raise InvalidInput(
            f"{where}{required[0]}: a {template.kind} case needs it; give {where.strip() or 'it'} "
            f"{required[0]}=VALUE"
        )
    return tuple(held.items())


def set_fields(
    *,
    session: Session,
    key: str,
    values: Mapping[str, str],
    actor: str,
    now: datetime,
    source: Source = Source.CLI,
    source_ref: str | None = None,
    expected_version: int | None = None,
) -> CaseRow:
    """Set (or, with an empty text, clear) field values of a case, each checked by
    `rules.fields`; one `case.fields` event with the values before and after."""
    if not values:
        raise InvalidInput("give at least one NAME=VALUE (sector=biotech)")
    loaded = store.load_case(session, key)
    case = loaded.case
    store.check_version(case, expected_version)
    template = loaded.template
    new = field_rules.for_template(template).values(values)
    for name, value in new.items():
        spec = template.field_specs()[name]
        if value is None and spec.required and name in {f.key for f in template.fields}:
            raise InvalidInput(f"{name}: a {template.kind} case needs it; give a value")
    before, after = field_rules.changed(case.fields, new)
    if not after:
        session.rollback()
        return case
    case.fields = field_rules.merged(case.fields, new)
    store.save_case(loaded, now=now, expected_version=expected_version)
    store.record(
        loaded.conn,
        case.id,
        [Change("case.fields", None, before, after)],
        actor=actor,
        now=now,
        source=source,
        source_ref=source_ref,
    )
    session.commit()
    return case


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
