"""Writing new cases: the one row-insert path of `case open` (a batch of one) and `case
import` (batches of `bulk.CHUNK`), with the template pins and case keys they take first.

`write_cases` writes what `rules.opening` planned (and `rules.progress` moved): the case rows
(INSERT ... RETURNING their ids, in the order of the cases), then one executemany INSERT each
for the milestones, gates and audit events of the batch. The same rows go one of two ways:
on the driver's cursor (`store.prepared`: SQLAlchemy's own conversion of each value without
a Core execution's per-statement cost, which would be most of opening one case), or, more
than a few rows to PostgreSQL, through Core (`conn.execute(insert(table), rows)`:
insertmanyvalues, many rows a statement, where the driver's executemany pays a round trip a
row). The property test of `case open` against `case import` holds them to the same rows.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

from bridgebsr.errors import InvalidInput
from bridgebsr.rules import rows
from bridgebsr.rules.opening import Planned
from bridgebsr.rules.rows import CaseRow, GateRow, MilestoneRow
from bridgebsr.store.prepared import Prepared
from models import Case, CaseEvent, Gate, KeySequence, Milestone, Source, Template, TemplateVersion

_TABLES = SQLModel.metadata.tables
_CASES = _TABLES[str(Case.__tablename__)]
_MILESTONES = _TABLES[str(Milestone.__tablename__)]
_GATES = _TABLES[str(Gate.__tablename__)]
_EVENTS = _TABLES[str(CaseEvent.__tablename__)]
_SEQUENCES = _TABLES[str(KeySequence.__tablename__)]
_VERSIONS = _TABLES[str(TemplateVersion.__tablename__)]
# Every column of a row after its id (which the database gives).
_WRITTEN = {row_type: rows.columns(row_type)[1:] for row_type in (CaseRow, MilestoneRow, GateRow)}


_INSERT_CASE = Prepared(insert(_CASES).returning(_CASES.c.id), _WRITTEN[CaseRow])
_INSERT_CASES = insert(_CASES).returning(_CASES.c.id, sort_by_parameter_order=True)
_FEW = 100  # rows: see `_many`
_EVENT_COLUMNS = (
    "case_id", "at", "actor", "kind", "subject", "before", "after", "source", "source_ref",
    "comment",
)  # fmt: skip
_INSERT_MILESTONES = Prepared(insert(_MILESTONES), _WRITTEN[MilestoneRow])
_INSERT_GATES = Prepared(insert(_GATES), _WRITTEN[GateRow])
_INSERT_EVENTS = Prepared(insert(_EVENTS), _EVENT_COLUMNS)


def write_cases(
    conn: Connection,
    planned: Sequence[Planned],
    *,
    now: datetime,
    source: Source,
    source_ref: str | None = None,
    comment: str = "",
) -> None:
    """Write new cases with their milestones, gates and audit events (an event without a
    source row of its own gets `source_ref`); each case row gets its id."""
    if not planned:
        return
    names = _WRITTEN[CaseRow]
    cases = [_values(p.case, names) for p in planned]
    if _many(conn, cases):
        ids = list(conn.execute(_INSERT_CASES, cases).scalars())
    else:
        ids = [_first(_INSERT_CASE.first(conn, case)) for case in cases]
    items: dict[type[Any], list[dict[str, Any]]] = {MilestoneRow: [], GateRow: []}
    events: list[dict[str, Any]] = []
    for p, case_id in zip(planned, ids, strict=True):
        p.case.id = case_id
        for node in p.plan.nodes():
            node.case_id = case_id
            items[type(node)].append(_values(node, _WRITTEN[type(node)]))
        events.extend(
            {
                "case_id": case_id,
                "at": now,
                "actor": e.actor,
                "kind": e.change.kind,
                "subject": e.change.subject,
                "before": e.change.before,
                "after": e.change.after,
                "source": source,
                "source_ref": source_ref if e.source_ref is None else e.source_ref,
                "comment": comment,
            }
            for e in p.events
        )
    for table, statement, written in (
        (_MILESTONES, _INSERT_MILESTONES, items[MilestoneRow]),
        (_GATES, _INSERT_GATES, items[GateRow]),
        (_EVENTS, _INSERT_EVENTS, events),
    ):
        if not _many(conn, written):
            statement.many(conn, written)
        else:
            conn.execute(insert(table), written)


def _first(found: tuple[Any, ...] | None) -> Any:
    assert found is not None
    return found[0]


def _many(conn: Connection, written: Sequence[Any]) -> bool:
    """Whether these rows go through Core's insertmanyvalues rather than the driver's cursor:
    more than a few, to PostgreSQL (where a row a statement costs a round trip each)."""
    return len(written) > _FEW and conn.dialect.name == "postgresql"


def _values(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return dict(zip(names, rows.values(row, names), strict=True))


# --- template pins ------------------------------------------------------------------------------


def pin_templates(conn: Connection, templates: Iterable[tuple[Template, str]]) -> None:
    """Keep the exact template (with its checksum) each case is opened with: pin a version
    not pinned yet, and refuse one pinned with other content (an edited file of the same
    version), whether that pin is old or another writer's made meanwhile."""
    for template, digest in templates:
        at = {"kind": template.kind, "version": template.version}
        found = _PINNED.first(conn, at)
        if found is None:
            body = template.model_dump(mode="json")
            conn.execute(
                _dialect(conn).insert(_VERSIONS).on_conflict_do_nothing(),
                {**at, "checksum": digest, "body": body},
            )
            found = _PINNED.first(conn, at)  # another writer's, when it pinned first
            assert found is not None
        if found[0] != digest:
            raise InvalidInput(
                f"template {template.kind} version {template.version} was edited after cases "
                "were opened with it; raise `version:` in the file so running cases keep theirs"
            )


_PINNED = Prepared(
    select(_VERSIONS.c.checksum).where(
        _VERSIONS.c.kind == bindparam("kind"), _VERSIONS.c.version == bindparam("version")
    )
)


def _dialect(conn: Connection) -> Any:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


# --- case keys ----------------------------------------------------------------------------------


def lock_sequences(conn: Connection, pairs: Iterable[tuple[str, int]]) -> None:
    """Create the key_sequences rows of these (prefix, year) pairs if missing and, on
    PostgreSQL, lock them in a fixed order until the transaction ends (SQLite's writers
    already hold the whole database)."""
    wanted = sorted(set(pairs))
    if not wanted:
        return
    values = [{"prefix": p, "year": y, "last": 0} for p, y in wanted]
    conn.execute(_dialect(conn).insert(_SEQUENCES).on_conflict_do_nothing(), values)
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(_SEQUENCES.c.prefix)
            .where(tuple_(_SEQUENCES.c.prefix, _SEQUENCES.c.year).in_(wanted))
            .order_by(_SEQUENCES.c.prefix, _SEQUENCES.c.year)
            .with_for_update()
        )


def take_keys(conn: Connection, pairs: Sequence[tuple[str, int]]) -> list[str]:
    """The next case key for each (prefix, year) in turn, e.g. IP-2026-0007: each sequence
    moves once, by its count, in one UPDATE (created first when missing)."""
    counts: dict[tuple[str, int], int] = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    following: dict[tuple[str, int], int] = {}
    for (prefix, year), count in sorted(counts.items()):
        at = {"of": prefix, "in_year": year, "count": count}
        found = _MOVE.first(conn, at)
        if found is None:
            lock_sequences(conn, [(prefix, year)])
            found = _MOVE.first(conn, at)
            assert found is not None
        following[prefix, year] = found[0] - count + 1
    keys = []
    for prefix, year in pairs:
        number = following[prefix, year]
        following[prefix, year] = number + 1
        keys.append(f"{prefix}-{year}-{number:04d}")
    return keys


_MOVE = Prepared(
    update(_SEQUENCES)
    .where(_SEQUENCES.c.prefix == bindparam("of"), _SEQUENCES.c.year == bindparam("in_year"))
    .values(last=_SEQUENCES.c.last + bindparam("count"))
    .returning(_SEQUENCES.c.last)
)
