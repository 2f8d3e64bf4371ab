"""Report files kept in the case store (`stored_reports`), so that every worker, the web app
and `bridgebsr report fetch` serve the same bytes; who a weekly report goes to, and the
receipts (`deliveries`) that say who has had it.

A file is written once and never changed; a report's files share its `name` (`weekly-2026-W49`)
and differ by `scope` (a partner's code, or '' for the whole portfolio) and `filename`."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlmodel import Session, col

from bridgebsr.rules.weekly import Reader
from models import CLOSED_CASE, Case, Contact, Delivery, Partner, StoredReport, quiet_hours


@dataclass(frozen=True)
class StoredFile:
    """A stored report file without its bytes: what listings and links need."""

    id: int
    name: str
    scope: str
    filename: str
    media_type: str
    size: int
    created_at: datetime


_META = (
    col(StoredReport.id),
    col(StoredReport.name),
    col(StoredReport.scope),
    col(StoredReport.filename),
    col(StoredReport.media_type),
    col(StoredReport.size),
    col(StoredReport.created_at),
)


def save(
    session: Session,
    *,
    name: str,
    scope: str,
    filename: str,
    media_type: str,
    content: bytes,
    now: datetime,
) -> StoredFile:
    """Add one file to the caller's transaction (the caller commits)."""
    row = StoredReport(
        name=name,
        scope=scope,
        filename=filename,
        media_type=media_type,
        content=content,
        size=len(content),
        created_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return StoredFile(row.id, name, scope, filename, media_type, row.size, now)


def files_of(session: Session, name: str) -> list[StoredFile]:
    """The files stored under report `name`, oldest first."""
    rows = session.execute(
        select(*_META).where(col(StoredReport.name) == name).order_by(col(StoredReport.id))
    ).all()
    return [StoredFile(*r) for r in rows]


def listing(session: Session, *, limit: int = 100) -> list[StoredFile]:
    """The newest stored files first."""
    rows = session.execute(select(*_META).order_by(col(StoredReport.id).desc()).limit(limit)).all()
    return [StoredFile(*r) for r in rows]


def content(session: Session, report_id: int) -> tuple[StoredFile, bytes] | None:
    """One stored file and its bytes (None when there is no such file)."""
    row = session.get(StoredReport, report_id)
    if row is None or row.id is None:
        return None
    meta = StoredFile(
        row.id, row.name, row.scope, row.filename, row.media_type, row.size, row.created_at
    )
    return meta, bytes(row.content)


def contents(session: Session, ids: list[int]) -> dict[int, bytes]:
    """The bytes of the stored files `ids`, by id, in one statement."""
    if not ids:
        return {}
    rows = session.execute(
        select(col(StoredReport.id), col(StoredReport.content)).where(col(StoredReport.id).in_(ids))
    ).all()
    return {int(i): bytes(c) for i, c in rows}


def prune(session: Session, *, prefix: str, older_than: str) -> int:
    """Delete the files of reports named `prefix...` whose name sorts before `older_than`, in
    the caller's transaction; how many went."""
    gone = session.execute(
        delete(StoredReport).where(
            col(StoredReport.name).startswith(prefix, autoescape=True),
            col(StoredReport.name) < older_than,
        )
    )
    return int(getattr(gone, "rowcount", 0) or 0)


def _readers() -> Any:
    return select(
        col(Contact.id),
        col(Contact.email),
        col(Contact.name),
        col(Contact.role),
        col(Contact.leads),
        col(Partner.code),
        col(Contact.channels),
        col(Contact.retired_at).is_not(None),
        col(Contact.timezone),
        col(Contact.quiet_from),
        col(Contact.quiet_until),
    ).join(Partner, col(Partner.id) == Contact.partner_id)


def _reader(row: Any) -> Reader:
    """A `_readers` row as a `Reader`."""
    cid, email, name, role, leads, partner, channels, retired, zone, start, end = row
    quiet = quiet_hours(start, end)
    return Reader(cid, email, name, role, leads, partner, channels, retired, zone, quiet)


def readers(session: Session) -> list[Reader]:
    """Every contact as the weekly report's rule sees them (retired ones flagged)."""
    rows = session.execute(_readers().order_by(col(Contact.id))).all()
    return [_reader(r) for r in rows]


def reader(session: Session, contact_id: int) -> Reader | None:
    """One contact as the weekly report's rule sees them (None: no such contact)."""
    row = session.execute(_readers().where(col(Contact.id) == contact_id)).first()
    return _reader(row) if row is not None else None


def leading_partners(session: Session) -> dict[str, str]:
    """The partners that lead at least one open case: code -> name."""
    rows = session.execute(
        select(col(Partner.code), col(Partner.name))
        .join(Case, col(Case.lead_partner_id) == Partner.id)
        .where(col(Case.status).not_in(list(CLOSED_CASE)))
        .group_by(col(Partner.code), col(Partner.name))
    ).all()
    return {str(code): str(name) for code, name in rows}


def had(session: Session, *, kind: str, recipients: list[int]) -> set[int]:
    """Which of `recipients` have an ok receipt of `kind`."""
    if not recipients:
        return set()
    rows = session.execute(
        select(col(Delivery.recipient_id))
        .distinct()
        .where(col(Delivery.kind) == kind, col(Delivery.ok))
        .where(col(Delivery.recipient_id).in_(recipients))
    ).all()
    return {int(r[0]) for r in rows}


def receipt(
    session: Session,
    *,
    recipient: int,
    at: datetime,
    kind: str,
    ok: bool,
    title: str,
    channels: list[dict[str, Any]],
) -> None:
    """A receipt of one message that carried a report (no outbox notice), in the caller's
    transaction."""
    session.add(
        Delivery(
            recipient_id=recipient,
            at=at,
            kind=kind,
            notices=0,
            ok=ok,
            title=title[:300],
            channels=channels,
        )
    )
