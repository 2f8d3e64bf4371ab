"""Engines and sessions for the case store, with the status guard and SQLite tuning.

The use cases write rows with Core statements and check every status change against the
lifecycle rules (`check_status`, called by `store.case_rows.save_case`). The flush guard is a
narrower net: it refuses a status change on a case, milestone or gate that was loaded through
an ORM session and changed before a flush. It does not see rows added with a status (new
cases, imports), Core or bulk statements run through a session (the monitor's set-based marks
choose the statuses they may move in their WHERE clauses), or SQL run outside SQLAlchemy.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, create_engine

from bridgebsr.errors import IllegalTransition, StaleCase
from bridgebsr.rules import lifecycle
from models import Case, Gate, Milestone

# Every (from, to) status pair some lifecycle rule allows, by guarded model and by its table.
_ALLOWED: dict[type[Any], set[tuple[Any, Any]]] = {
    Case: lifecycle.allowed_pairs(lifecycle.CASE_ACTIONS),
    Milestone: lifecycle.allowed_pairs(lifecycle.MILESTONE_ACTIONS),
    Gate: lifecycle.allowed_pairs(lifecycle.GATE_ACTIONS),
}
_MODELS = {str(model.__tablename__): model for model in _ALLOWED}


def check_status(table: str, old: Any, new: Any) -> None:
    """Refuse a status change on a row of `table` that no lifecycle rule allows."""
    model = _MODELS[table]
    if old != new and (old, new) not in _ALLOWED[model]:
        raise _refused(model, old, new)


def _refused(model: type[Any], old: Any, new: Any) -> IllegalTransition:
    return IllegalTransition(
        f"{model.__name__.lower()} status cannot go from {old} to {new} outside the lifecycle rules"
    )


# Every SQLite connection's settings: WAL, one fsync per checkpoint, a wait on a busy file.
SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "busy_timeout=30000",
    "foreign_keys=ON",
)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`; SQLite files get WAL, synchronous=NORMAL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    # The driver's own transaction handling would defer BEGIN; we emit it ourselves.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock up front so two of them never both read, then both write.
    # Straight to the driver: this runs once per transaction, on the hot path of every change.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")  # type: ignore[union-attr]


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for queries."""
    with Session(engine) as session:
        yield session


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for one change: serialised per database on SQLite, row locks on PostgreSQL."""
    # The writers' view of the engine is made once per engine, not once per change.
    bound = engine.__dict__.get("_bridgebsr_writer")
    if bound is None:
        bound = engine.__dict__["_bridgebsr_writer"] = engine.execution_options(
            sqlite_immediate=True
        )
    with Session(bound, expire_on_commit=False) as session:
        try:
            yield session
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) in _CHANGED_MEANWHILE:
                raise StaleCase(
                    "another change to the same case happened at the same moment and this "
                    "one was undone; run it again"
                ) from exc
            raise


# PostgreSQL's serialization failure and deadlock: another transaction won, nothing was written.
_CHANGED_MEANWHILE = frozenset({"40001", "40P01"})


@event.listens_for(Session, "before_flush")
def _guard_statuses(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in session.dirty:
        if type(obj) not in _ALLOWED:
            continue
        history = inspect(obj).attrs.status.history
        if history.added and history.deleted and history.deleted[0] != history.added[0]:
            raise _refused(type(obj), history.deleted[0], history.added[0])
