"""The directory's audit trail: one `directory_events` row per change to a person or a partner,
written in the transaction of the change. The table is append-only (the database refuses
UPDATE and DELETE).

A change that writes to the directory calls `record` (one event) or `record_all` (several,
one statement) on its transaction's connection (`session.connection()`), before it commits:

    record(session.connection(), kind="contact.retire", subject=email, actor=actor.email,
           now=now, source=actor.source, before={"retired_at": None},
           after={"retired_at": now}, comment=reason)

`before` and `after` name only the fields that changed (None: there was nothing before, or
nothing is left after); dates, times and enums are stored as their ISO text and values.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import Enum
from typing import Any

from sqlalchemy import Connection, insert, select

from models import DirectoryEvent, Source

# The kinds of change the directory records, by what they change.
KINDS = frozenset(
    {
        "contact.add",  # `contacts add`: after is the new contact
        "contact.edit",  # `contacts edit`: the fields that changed
        "contact.preferences",  # `contacts prefs`: the preferences that changed
        "contact.import",  # a contacts file added (before None) or changed one contact
        "contact.retire",  # a contact left (and who took over); their links stop too
        "contact.revoke-links",  # every signed link of a contact invalidated at once
        "partner.import",  # a partners file added (before None) or changed one partner
        "absence.add",  # `contacts away`: after is the absence
        "absence.cancel",  # `contacts away --cancel`: after None when the absence was removed
    }
)
SOURCE_REF_MAX = 120  # what the column holds: a longer reference is cut

_TABLE = DirectoryEvent.__table__  # type: ignore[attr-defined]
_INSERT = insert(_TABLE)


@dataclass(frozen=True)
class Entry:
    """One change to record: its kind, whom it is about (a contact's email, a partner's code),
    the changed fields before and after."""

    kind: str
    subject: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


def record(
    conn: Connection,
    *,
    kind: str,
    subject: str,
    actor: str,
    now: datetime,
    source: Source,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    source_ref: str | None = None,
    comment: str = "",
) -> None:
    """Append one directory event (kind: one of KINDS) in the transaction of `conn`."""
    record_all(
        conn,
        [Entry(kind, subject, before, after)],
        actor=actor,
        now=now,
        source=source,
        source_ref=source_ref,
        comment=comment,
    )


def record_all(
    conn: Connection,
    entries: Sequence[Entry],
    *,
    actor: str,
    now: datetime,
    source: Source,
    source_ref: str | None = None,
    comment: str = "",
) -> None:
    """Append one event per entry, in one statement; nothing for no entries."""
    if not entries:
        return
    unknown = sorted({e.kind for e in entries} - KINDS)
    if unknown:
        raise ValueError(f"unknown directory event kind(s) {unknown}; known: {sorted(KINDS)}")
    ref = source_ref[:SOURCE_REF_MAX] if source_ref is not None else None
    rows = [
        {
            "at": now,
            "actor": actor,
            "kind": e.kind,
            "subject": e.subject,
            "before": _plain(e.before),
            "after": _plain(e.after),
            "source": source,
            "source_ref": ref,
            "comment": comment,
        }
        for e in entries
    ]
    conn.execute(_INSERT, rows)


def history(conn: Connection, subject: str) -> list[DirectoryEvent]:
    """Every event about `subject` (as recorded: a lower-case email, a partner code), in the
    order they were recorded (as a case's history)."""
    query = select(_TABLE).where(_TABLE.c.subject == subject).order_by(_TABLE.c.id)
    return [DirectoryEvent.model_validate(dict(r)) for r in conn.execute(query).mappings()]


def _plain(fields: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if fields is None:
        return None
    return {name: _value(value) for name, value in fields.items()}


def _value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date | time | datetime):
        return value.isoformat()
    return value
