"""Lookups and bookkeeping shared by the use cases: locking, versions, keys, audit events."""

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from bridgebsr.errors import InvalidInput, NotFound, StaleCase
from bridgebsr.lifecycle import Change
from models import (
    Case,
    CaseEvent,
    Contact,
    Gate,
    KeySequence,
    Milestone,
    Partner,
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


# The statements of the hot path, built once: each change runs them with new parameters.
_CASE_FOR_CHANGE = (
    select(Case, Partner, TemplateVersion.checksum, Gate)
    .join(Partner, col(Partner.id) == Case.lead_partner_id)
    .join(
        TemplateVersion,
        and_(
            col(TemplateVersion.kind) == Case.kind,
            col(TemplateVersion.version) == Case.template_version,
        ),
    )
    .outerjoin(Gate, col(Gate.case_id) == Case.id)
    .where(col(Case.key) == bindparam("key"))
    .order_by(col(Gate.seq))
    .with_for_update(of=Case)
)
_CASES = SQLModel.metadata.tables[str(Case.__tablename__)]
_CLAIM = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("case_id"), _CASES.c.version == bindparam("base"))
    .values(version=bindparam("next_version"), updated_at=bindparam("at"))
)
_RECORD = insert(SQLModel.metadata.tables[str(CaseEvent.__tablename__)])


def case_for_change(session: Session, key: str) -> tuple[Case, Partner, Template, list[Gate]]:
    """The case with this key, locked for the transaction, with its lead partner, its pinned
    template and its gates in template order, in one query."""
    rows = session.exec(_CASE_FOR_CHANGE, params={"key": key.strip().upper()}).all()
    if not rows:
        case = case_by_key(session, key, for_update=True)  # NotFound when there is none
        partner = session.get(Partner, case.lead_partner_id)
        assert partner is not None
        return case, partner, template_of(session, case), gates_of(session, case)
    case, partner, digest, _ = rows[0]
    gates = [gate for *_, gate in rows if gate is not None]
    return case, partner, _parsed(session, case.kind, case.template_version, digest), gates


def contact_by_email(session: Session, email: str) -> Contact:
    """The contact with this address (case-insensitive)."""
    found = session.exec(select(Contact).where(Contact.email == email.strip().lower())).first()
    if found is None:
        raise NotFound(f"no contact {email}; add it with `bridgebsr contacts import`")
    return found


def partner_by_code(session: Session, code: str) -> Partner:
    """The partner with this code (case-insensitive)."""
    found = session.exec(select(Partner).where(Partner.code == code.strip().upper())).first()
    if found is None:
        raise NotFound(f"no partner {code}; add it with `bridgebsr partners import`")
    return found


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


def nodes_of(session: Session, case: Case) -> list[Milestone | Gate]:
    """A case's milestones then gates, in template order."""
    return [*milestones_of(session, case), *gates_of(session, case)]


def check_version(case: Case, expected_version: int | None) -> None:
    """Refuse a change made on a view of the case older than its current version."""
    if expected_version is not None and expected_version != case.version:
        raise StaleCase(
            f"case {case.key} is at version {case.version}, not {expected_version}: "
            "someone changed it since you looked; check `bridgebsr case show` and retry"
        )


def claim(session: Session, case: Case, expected_version: int | None, now: datetime) -> None:
    """Move the case to its next version, refusing if someone else changed it first."""
    check_version(case, expected_version)
    base = case.version
    # Pending changes are not flushed here but with the audit events, in one flush.
    with session.no_autoflush:
        result = session.execute(
            _CLAIM, {"case_id": case.id, "base": base, "next_version": base + 1, "at": now}
        )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleCase(f"case {case.key} changed while this change was made; retry")
    set_committed_value(case, "version", base + 1)
    set_committed_value(case, "updated_at", now)


def record(
    session: Session,
    case: Case,
    changes: Sequence[Change],
    *,
    actor: str,
    now: datetime,
    source: Source,
    source_ref: str | None = None,
    comment: str = "",
) -> None:
    """Append one audit event per change, in one statement, after the pending changes."""
    assert case.id is not None
    if not changes:
        return
    rows = [
        {
            "case_id": case.id,
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
        for change in changes
    ]
    session.execute(_RECORD, rows)


def next_key(session: Session, prefix: str, year: int) -> str:
    """The next case key for a prefix and year, e.g. IP-2026-0007."""
    for _ in range(2):
        number = session.execute(
            update(KeySequence)
            .where(col(KeySequence.prefix) == prefix, col(KeySequence.year) == year)
            .values(last=KeySequence.last + 1)
            .returning(col(KeySequence.last))
        ).scalar_one_or_none()
        if number is not None:
            return f"{prefix}-{year}-{number:04d}"
        try:
            with session.begin_nested():
                session.add(KeySequence(prefix=prefix, year=year, last=0))
        except IntegrityError:
            pass  # another writer created the row first; its update path now applies
    raise RuntimeError("key sequence row vanished")


def pin_template(session: Session, template: Template, digest: str) -> None:
    """Keep the exact template a case is opened with; refuse an edited file of the same version."""
    stored = session.exec(
        select(TemplateVersion.checksum).where(
            TemplateVersion.kind == template.kind, TemplateVersion.version == template.version
        )
    ).first()
    if stored is None:
        session.add(
            TemplateVersion(
                kind=template.kind,
                version=template.version,
                checksum=digest,
                body=template.model_dump(mode="json"),
            )
        )
    elif stored != digest:
        raise InvalidInput(
            f"template {template.kind} version {template.version} was edited after cases were "
            "opened with it; raise `version:` in the file so running cases keep theirs"
        )


def template_of(session: Session, case: Case) -> Template:
    """The template version this case was opened with."""
    return pinned_template(session, case.kind, case.template_version)


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
