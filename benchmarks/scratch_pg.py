"""Scratch PostgreSQL databases for the benchmarks, on the server the tests use.

Each benchmark creates its own databases (named after itself and this process), copies them
with `CREATE DATABASE ... TEMPLATE` and drops them when it ends, so it never touches anyone
else's tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get("BRIDGEBSR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def unreachable_reason() -> str | None:
    """Why the PostgreSQL server cannot be used from here (a driver of the postgres extra is
    not installed, or the server does not answer within two seconds), or None when it answers.
    The tests ask this too, to skip with the reason or (in CI) fail."""
    missing = _missing_driver()
    if missing is not None:
        return (
            f"the PostgreSQL driver {missing} is not installed; install the postgres extra: "
            "pip install -e '.[postgres]'"
        )
    engine = create_engine(ADMIN_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception:  # anything that keeps the server from answering counts
        url = make_url(ADMIN_URL)
        return f"PostgreSQL at {url.host}:{url.port} does not answer; start it to run this"
    finally:
        engine.dispose()


def _missing_driver() -> str | None:
    """The first driver of the postgres extra that cannot be imported: the case store's (the
    one ADMIN_URL names) and the report's ADBC driver."""
    try:
        create_engine(ADMIN_URL).dispose()  # imports the driver, connects to nothing
    except ModuleNotFoundError as missing:
        return missing.name
    return None if find_spec("adbc_driver_postgresql") else "adbc_driver_postgresql"


def reachable() -> bool:
    """Whether the PostgreSQL server answers (see `unreachable_reason`)."""
    return unreachable_reason() is None


def url_of(database: str) -> str:
    """The URL of a database on the same server, as the same user."""
    return make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)


class ScratchDatabases:
    """Databases named `bench_<tag>_<pid>_<name>`, all dropped by `drop_all`."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"bench_{tag}_{os.getpid()}"
        self.names: list[str] = []
        self._admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")

    def create(self, name: str, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`, which nobody may be connected
        to); returns its URL."""
        full = f"{self.prefix}_{name}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{full}"{copy}'))
        self.names.append(full)
        return url_of(full)

    def drop_all(self) -> None:
        """Drop every database made here (closing anyone still connected to them)."""
        with self._admin.connect() as conn:
            for name in reversed(self.names):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.names.clear()
        self._admin.dispose()


@contextmanager
def scratch_databases(tag: str) -> Iterator[ScratchDatabases]:
    """Scratch databases for one benchmark, dropped at the end whatever happens."""
    databases = ScratchDatabases(tag)
    try:
        yield databases
    finally:
        databases.drop_all()
