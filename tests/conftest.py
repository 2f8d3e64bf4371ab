"""Shared fixtures: real case stores on SQLite files and on the PostgreSQL server."""

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from bridgebsr import migrate
from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "BRIDGEBSR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def postgres_available() -> bool:
    """Whether the PostgreSQL test server answers."""
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_ready() -> bool:
    """PostgreSQL is required in CI and optional elsewhere."""
    ok = postgres_available()
    if not ok and IN_CI:
        pytest.fail(f"PostgreSQL is required in CI (CI=true) but {PG_ADMIN_URL} does not answer")
    return ok


@pytest.fixture
def pg_url(pg_ready: bool) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    if not pg_ready:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}; start it to run this test")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def rt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A migrated, empty case store with the shipped templates."""
    runtime = build_runtime(Settings(home=tmp_path / "home", database_url=db_url))
    migrate.upgrade(runtime.engine)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def engine(rt: Runtime) -> Engine:
    """The case store engine of `rt`."""
    return rt.engine


@pytest.fixture
def consortium(rt: Runtime) -> Runtime:
    """`rt` with the Bridge-BSR partners and contacts loaded."""
    load_consortium(rt)
    return rt


def at(day: str, hour: int = 10) -> datetime:
    """An aware UTC datetime on an ISO day."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
