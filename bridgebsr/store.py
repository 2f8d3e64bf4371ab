"""Lookups and bookkeeping shared by the use cases: locking, versions, keys, audit events."""

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

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


def claim(session: Session, case: Case, expected_version: int | None, now: datetime) -> None:
    """Move the case to its next version, refusing if someone else changed it first."""
    base = case.version
    if expected_version is not None and expected_version != base:
        raise StaleCase(
            f"case {case.key} is at version {base}, not {expected_version}: "
            "someone changed it since you looked; check `bridgebsr case show` and retry"
        )
    result = session.execute(
        update(Case)
        .where(col(Case.id) == case.id, col(Case.version) == base)
        .values(version=base + 1, updated_at=now)
        .execution_options(synchronize_session=False)
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
    """Append one audit event per change."""
    assert case.id is not None
    for change in changes:
        session.add(
            CaseEvent(
                case_id=case.id,
                at=now,
                actor=actor,
                kind=change.kind,
                subject=change.subject,
                before=change.before,
                after=change.after,
                source=source,
                source_ref=source_ref,
                comment=comment,
            )
        )


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
        select(TemplateVersion).where(
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
    elif stored.checksum != digest:
        raise InvalidInput(
            f"template {template.kind} version {template.version} was edited after cases were "
            "opened with it; raise `version:` in the file so running cases keep theirs"
        )


def template_of(session: Session, case: Case) -> Template:
    """The template version this case was opened with."""
    return pinned_template(session, case.kind, case.template_version)


def pinned_template(session: Session, kind: str, version: int) -> Template:
    """A pinned template version, parsed once per process."""
    stored = session.exec(
        select(TemplateVersion).where(
            TemplateVersion.kind == kind, TemplateVersion.version == version
        )
    ).one()
    if stored.checksum not in _PARSED:
        _PARSED[stored.checksum] = Template.model_validate(stored.body)
    return _PARSED[stored.checksum]


# Pinned templates never change, so parsing each once per process is safe.
_PARSED: dict[str, Template] = {}


def local_date(now: datetime, zone: str) -> date:
    """The calendar date of `now` in a time zone."""
    return now.astimezone(ZoneInfo(zone)).date()
