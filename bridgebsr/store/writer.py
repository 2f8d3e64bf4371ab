"""Writing new cases: the one row-insert path of `case open` (a batch of one) and `case
import` (batches of `bulk.CHUNK`), with the template pins and case keys they take first.

`write_cases` writes what `rules.opening` planned (and `rules.progress` moved): the case rows
(INSERT ... RETURNING their ids, in the order of the cases), then one executemany INSERT each
for the milestones, gates and audit events of the batch, on the driver's cursor
(`store.prepared`: SQLAlchemy's own conversion of each value without a Core execution's
per-statement cost, which would be most of opening one case). More than a few case rows to
PostgreSQL go in one Core INSERT ... RETURNING instead (`conn.execute(insert(...).returning(
..., sort_by_parameter_order=True), rows)`: insertmanyvalues), since there each statement
is a round trip. The property test of `case open` against `case import` holds both to the
same rows.
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
from bridgebsr.store.case_rows import RECORD, event_row
from bridgebsr.store.prepared import Prepared
from bridgebsr.store.team import insert_members
from models import Case, Gate, KeySequence, Milestone, Source, Template, TemplateVersion

_TABLES = SQLModel.metadata.tables
_CASES = _TABLES[str(Case.__tablename__)]
_MILESTONES = _TABLES[str(Milestone.__tablename__)]
_GATES = _TABLES[str(Gate.__tablename__)]
_SEQUENCES = _TABLES[str(KeySequence.__tablename__)]
_VERSIONS = _TABLES[str(TemplateVersion.__tablename__)]
# Every column of a row after its id (which the database gives).
_WRITTEN = {row_type: rows.columns(row_type)[1:] for row_type in (CaseRow, MilestoneRow, GateRow)}


_INSERT_CASE = Prepared(insert(_CASES).returning(_CASES.c.id), _WRITTEN[CaseRow])
_INSERT_CASES = insert(_CASES).returning(_CASES.c.id, sort_by_parameter_order=True)
_FEW = 100  # rows: see `_many`
_INSERT_MILESTONES = Prepared(insert(_MILESTONES), _WRITTEN[MilestoneRow])
_INSERT_GATES = Prepared(insert(_GATES), _WRITTEN[GateRow])


def write_cases(
    conn: Connection,
    planned: Sequence[Planned],
    *,
    now: datetime,
    source: Source,
    source_ref: str | None = None,
    comment: str = "",
) -> None:
    """Write new cases with their milestones, gates, team rows and audit events (an event
    without a source row of its own gets `source_ref`); each case row gets its id."""
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
    team: list[dict[str, Any]] = []
    for p, case_id in zip(planned, ids, strict=True):
        p.case.id = case_id
        team += [
            {"case_id": case_id, "role": role, "contact_id": cid, "since": now}
            for role, cid in p.team
        ]
        for node in p.plan.nodes():
            node.case_id = case_id
            items[type(node)].append(_values(node, _WRITTEN[type(node)]))
        for e in p.events:
            ref = source_ref if e.source_ref is None else e.source_ref
            events.append(event_row(case_id, e.change, e.actor, now, source, ref, comment))
    _INSERT_MILESTONES.many(conn, items[MilestoneRow])
    _INSERT_GATES.many(conn, items[GateRow])
    insert_members(conn, team)
    RECORD.many(conn, events)


def _first(found: tuple[Any, ...] | None) -> Any:
    assert found is not None
    return found[0]


def _many(conn: Connection, cases: Sequence[Any]) -> bool:
    """Whether these case rows go in one Core INSERT ... RETURNING (insertmanyvalues: many
    rows a statement) rather than one statement each: more than a few, to PostgreSQL, where
    each statement is a round trip."""
    return len(cases) > _FEW and conn.dialect.name == "postgresql"


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
