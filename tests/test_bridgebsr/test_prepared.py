"""Statements on the driver's cursor read and write exactly what Core executions do."""

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import SQLModel

from bridgebsr.bootstrap import Runtime
from bridgebsr.office.cases import open_case
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import write_session
from bridgebsr.store.prepared import Prepared
from models import CaseEvent, Contact, Milestone, MilestoneStatus, Source
from tests.conftest import at

_MILESTONES = SQLModel.metadata.tables[str(Milestone.__tablename__)]
_EVENTS = SQLModel.metadata.tables[str(CaseEvent.__tablename__)]
_CONTACTS = SQLModel.metadata.tables[str(Contact.__tablename__)]


def _open(rt: Runtime) -> str:
    with write_session(rt.engine) as session:
        return open_case(
            session=session,
            catalog=rt.catalog,
            kind="ip-integration",
            title="Prepared statements",
            owner_email="soren.ostergaard@scanbalt.example",
            start=date(2026, 3, 2),
            now=at("2026-03-02"),
        ).key


def _raw(engine: Engine, table: str, row_id: int) -> tuple[Any, ...]:
    """A row as the database holds it, without any conversion, in the model's column order
    (a migrated store adds new columns at the end)."""
    names = ", ".join(f'"{c.name}"' for c in SQLModel.metadata.tables[table].columns)
    with engine.connect() as conn:
        found = conn.exec_driver_sql(f"SELECT {names} FROM {table} WHERE id = {row_id}").one()
    return tuple(found)


def test_reads_give_what_core_gives_for_every_column_type(consortium: Runtime) -> None:
    key = _open(consortium)
    # The case with its gates and lead (dates, enums, aware datetimes, JSON, booleans), then
    # the milestones with their owners' places, each through Core and on the driver.
    with write_session(consortium.engine) as session:
        conn = session.connection()
        for prepared, params in (
            (store._CASE_WITH_GATES_READ, {"key": key}),
            (store._MILESTONES_WITH_OWNERS, {"case_id": 1}),
        ):
            through_core = [tuple(r) for r in conn.execute(prepared.statement, params)]
            # Twice: the first execution learns the result conversions, the second uses them.
            for on_driver in (prepared.all(conn, params), prepared.all(conn, params)):
                assert on_driver == through_core
                assert [list(map(type, r)) for r in on_driver] == [
                    list(map(type, r)) for r in through_core
                ]
            assert len(through_core) > 1


def test_writes_store_what_core_stores(consortium: Runtime) -> None:
    _open(consortium)
    values = {
        "status": MilestoneStatus.DONE,
        "started_on": date(2026, 3, 3),
        "finished_on": date(2026, 3, 9),
        "overdue_on": None,
        "critical": True,
    }
    names = tuple(values)
    statement = update(_MILESTONES).where(_MILESTONES.c.id == bindparam("row_id"))
    with write_session(consortium.engine) as session:
        conn = session.connection()
        conn.execute(statement, {"row_id": 1, **values})
        assert Prepared(statement, names).run(conn, {"row_id": 2, **values}) == 1
        assert Prepared(statement, names).run(conn, {"row_id": 99_999, **values}) == 0
        session.commit()
    first, second = (_raw(consortium.engine, "milestones", i) for i in (1, 2))
    changed = [c.name for c in _MILESTONES.columns if c.name in names]
    picked = [i for i, c in enumerate(_MILESTONES.columns) if c.name in changed]
    assert [first[i] for i in picked] == [second[i] for i in picked]
    # An audit event: aware datetime, JSON documents, enum, text.
    event = {
        "case_id": 1,
        "at": datetime(2026, 3, 9, 15, 30, 12, 345678, tzinfo=UTC),
        "actor": "soren.ostergaard@scanbalt.example",
        "kind": "milestone.complete",
        "subject": "kickoff",
        "before": {"status": "in_progress"},
        "after": {"status": "done", "nested": {"days": [1, 2]}, "note": "Øresund ✓"},
        "source": Source.CLI,
        "source_ref": None,
        "comment": "",
    }
    with write_session(consortium.engine) as session:
        conn = session.connection()
        core_id = conn.execute(insert(_EVENTS).returning(_EVENTS.c.id), event).scalar_one()
        prepared = Prepared(insert(_EVENTS).returning(_EVENTS.c.id), tuple(event))
        found = prepared.first(conn, event)
        assert found is not None
        session.commit()
    core_row, driver_row = (_raw(consortium.engine, "case_events", i) for i in (core_id, found[0]))
    assert core_row[1:] == driver_row[1:]


def test_driver_errors_are_sqlalchemy_errors_and_roll_back(consortium: Runtime) -> None:
    with consortium.engine.connect() as conn:
        existing = conn.execute(select(_CONTACTS).limit(1)).mappings().one()
    duplicate = {k: v for k, v in existing.items() if k != "id"}
    statement = Prepared(insert(_CONTACTS), tuple(duplicate))
    with write_session(consortium.engine) as session:
        with pytest.raises(IntegrityError):
            statement.run(session.connection(), duplicate)
        session.rollback()
    with pytest.raises(IntegrityError):
        with write_session(consortium.engine) as session:
            statement.many(session.connection(), [duplicate])


def test_a_statement_that_needs_python_defaults_is_refused() -> None:
    # `cases.status` and `cases.version` have Python-side defaults that only a Core execution
    # fills in; compiling it for the driver must refuse rather than write NULLs.
    cases = SQLModel.metadata.tables["cases"]
    statement = Prepared(insert(cases), ("key", "title"))
    with pytest.raises(ValueError, match="filled in at execution"):
        statement._compile(sqlite.dialect())


# --- what `Prepared` reads of SQLAlchemy: a release that changes it fails here ----------------


@pytest.mark.parametrize("dialect", [sqlite.dialect(), psycopg.dialect()], ids=["sqlite", "pg"])
def test_the_compiler_gives_what_prepared_reads(dialect: Any) -> None:
    sequences = SQLModel.metadata.tables["key_sequences"]
    statement = (
        update(sequences)
        .where(sequences.c.prefix == bindparam("of"))
        .values(last=sequences.c.last + 1)
        .returning(sequences.c.last)
    )
    compiled: Any = statement.compile(dialect=dialect, column_keys=[])
    # The attributes `Prepared._compile` reads, with the shapes it reads them in.
    assert isinstance(compiled.string, str)
    assert isinstance(compiled.positional, bool)
    assert list(compiled.insert_prefetch) == [] and list(compiled.update_prefetch) == []
    assert not compiled.post_compile_params and not compiled.literal_execute_params
    names = list(compiled.positiontup if compiled.positional else compiled.binds)
    assert "of" in names and compiled.binds["of"].required
    # The `+ 1` is a value the statement carries: not required, with its value.
    carried = [compiled.binds[n].effective_value for n in names if not compiled.binds[n].required]
    assert 1 in carried
    for name in names:
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        assert processor is None or callable(processor)
    # A result column's conversion, as `_learn_results` asks for it.
    (column,) = statement.exported_columns
    processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
    assert processor is None or callable(processor)
    # The pieces of the driver connection and errors it uses.
    assert callable(dialect.is_disconnect)
    assert callable(DBAPIError.instance)


def test_the_literal_a_statement_carries_is_bound_by_prepared() -> None:
    sequences = SQLModel.metadata.tables["key_sequences"]
    statement = update(sequences).values(last=sequences.c.last + 1)
    form = Prepared(statement, ())._compile(sqlite.dialect())
    assert list(form.fixed.values()) == [1]


def test_a_statement_with_an_expanding_parameter_is_refused() -> None:
    contacts = SQLModel.metadata.tables["contacts"]
    statement = select(contacts.c.id).where(contacts.c.role.in_(bindparam("roles", expanding=True)))
    with pytest.raises(ValueError, match="filled in at execution"):
        Prepared(statement)._compile(sqlite.dialect())


def test_a_lost_connection_is_invalidated_as_core_invalidates_it(consortium: Runtime) -> None:
    statement = Prepared(select(_CONTACTS.c.id).limit(1))
    with consortium.engine.connect() as conn:
        assert statement.all(conn, {})
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.close()
        with pytest.raises(DBAPIError) as raised:
            statement.all(conn, {})
        assert raised.value.connection_invalidated
        assert conn.invalidated
