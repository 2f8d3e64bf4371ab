"""The write session on PostgreSQL: a change that lost to a simultaneous one reads as a stale
case to retry, not as a broken store."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bridgebsr.errors import StaleCase
from bridgebsr.store.db import make_engine, write_session

_RAISE = "DO $$ BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = '{code}'; END $$"


@pytest.mark.postgres
@pytest.mark.parametrize("code", ["40001", "40P01"])
def test_a_serialization_failure_or_deadlock_is_a_stale_case(pg_url: str, code: str) -> None:
    engine = make_engine(pg_url)
    try:
        with pytest.raises(StaleCase, match="run it again"), write_session(engine) as session:
            session.connection().execute(text(_RAISE.format(code=code)))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_other_database_errors_pass_through(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        with pytest.raises(DBAPIError), write_session(engine) as session:
            session.connection().execute(text(_RAISE.format(code="P0001")))
    finally:
        engine.dispose()
