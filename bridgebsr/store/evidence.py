"""Evidence links: added with a milestone's completion or a gate vote, never edited."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlmodel import SQLModel

from bridgebsr.store.prepared import Prepared
from models import Evidence

_EVIDENCE = SQLModel.metadata.tables[str(Evidence.__tablename__)]
_COLUMNS = ("case_id", "item_kind", "item_key", "round", "url", "note", "added_by", "at", "source")
_ADD = Prepared(insert(_EVIDENCE), _COLUMNS)
_OF_CASE = Prepared(
    select(*[_EVIDENCE.c[name] for name in _COLUMNS[1:]])
    .where(_EVIDENCE.c.case_id == bindparam("case_id"))
    .order_by(_EVIDENCE.c.id)
)


def add_evidence(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Append evidence rows (case_id, item_kind, item_key, round, url, note, added_by, at,
    source) in one statement."""
    _ADD.many(conn, rows)


def evidence_of(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    """A case's evidence links in the order they were added."""
    return [
        dict(zip(_COLUMNS[1:], row, strict=True))
        for row in _OF_CASE.all(conn, {"case_id": case_id})
    ]
