"""Engines and sessions for the case store, with the status guard and SQLite tuning.

The guard refuses any status written at flush that no lifecycle rule gave (`permit`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, event, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import object_session
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, create_engine

from bridgebsr import lifecycle
from bridgebsr.errors import IllegalTransition
from models import Case, Gate, Milestone

_GUARDED: dict[type[Any], set[tuple[Any, Any]]] = {
    Case: lifecycle.allowed_pairs(lifecycle.CASE_ACTIONS),
    Milestone: lifecycle.allowed_pairs(lifecycle.MILESTONE_ACTIONS),
    Gate: lifecycle.allowed_pairs(lifecycle.GATE_ACTIONS),
}


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
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for queries."""
    with Session(engine) as session:
        yield session


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for one change: serialised per database on SQLite, row locks on PostgreSQL."""
    bound = engine.execution_options(sqlite_immediate=True)
    with Session(bound, expire_on_commit=False) as session:
        yield session


_GRANTS = "bridgebsr.permitted_statuses"
S = TypeVar("S")


def permit(obj: Any, status: S) -> S:
    """Mark `status` as given to `obj` by a lifecycle rule; the flush guard passes only these."""
    session = object_session(obj)
    if session is not None:
        session.info.setdefault(_GRANTS, set()).add((id(obj), status))
    return status


@event.listens_for(Session, "after_flush_postexec")
def _forget_grants(session: Session, _ctx: Any) -> None:
    session.info.pop(_GRANTS, None)


@event.listens_for(Session, "before_flush")
def _guard_statuses(session: Session, _ctx: Any, _instances: Any) -> None:
    granted = session.info.get(_GRANTS, set())
    for obj in session.dirty:
        pairs = _GUARDED.get(type(obj))
        if pairs is None:
            continue
        history = inspect(obj).attrs.status.history
        if history.added and history.deleted:
            old, new = history.deleted[0], history.added[0]
            if old != new and ((old, new) not in pairs or (id(obj), new) not in granted):
                raise IllegalTransition(
                    f"{type(obj).__name__.lower()} status cannot go from {old} to {new} "
                    "outside the lifecycle rules"
                )
