"""Schema migrations on a SQLite file and on PostgreSQL: up, again, down and up, and drift."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table on SQLModel.metadata)
from bridgebsr.store import migrate
from bridgebsr.store.db import make_engine

CASE_TABLES = {
    "partners",
    "contacts",
    "template_versions",
    "key_sequences",
    "cases",
    "milestones",
    "gates",
    "gate_decisions",
    "case_events",
    "notifications",
    "deliveries",
    "case_team",
    "baselines",
    "plan_changes",
    "absences",
    "directory_events",
    "evidence",
    "date_requests",
    "access_denials",
    "stored_reports",
    "channel_posts",
    "measurements",
}
HEAD = "0010"


@pytest.fixture
def empty(db_url: str) -> Iterator[Engine]:
    """An engine on a database with no tables at all."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def _add_partner(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO partners (code, name, kind, country, region, timezone) "
                "VALUES ('ZZ', 'Zed', 'cluster', 'DK', 'Hovedstaden', 'Europe/Copenhagen')"
            )
        )


def test_the_code_knows_one_head() -> None:
    assert migrate.head() == HEAD


def test_upgrade_from_empty_creates_the_case_store(empty: Engine) -> None:
    assert migrate.current(empty) is None
    assert _tables(empty) == set()
    assert migrate.upgrade(empty) == HEAD
    assert migrate.current(empty) == HEAD
    assert _tables(empty) == CASE_TABLES | {"alembic_version"}
    assert {c["name"] for c in inspect(empty).get_columns("cases")} >= {
        "key",
        "status",
        "version",
        "forecast_date",
    }


def test_upgrading_again_changes_nothing(empty: Engine) -> None:
    migrate.upgrade(empty)
    _add_partner(empty)
    assert migrate.upgrade(empty) == HEAD
    assert _tables(empty) == CASE_TABLES | {"alembic_version"}
    with empty.connect() as conn:
        assert conn.execute(text("SELECT code FROM partners")).scalars().all() == ["ZZ"]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            HEAD
        ]


def test_downgrade_to_base_then_upgrade_round_trips(empty: Engine) -> None:
    migrate.upgrade(empty)
    _add_partner(empty)
    assert migrate.downgrade(empty, "base") is None
    assert _tables(empty) == {"alembic_version"}
    assert migrate.upgrade(empty) == HEAD
    assert _tables(empty) == CASE_TABLES | {"alembic_version"}
    with empty.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM partners")).scalar_one() == 0
    # The append-only guard (a trigger, and on PostgreSQL its function) came back too.
    _add_partner(empty)
    now = datetime(2026, 11, 26, tzinfo=UTC)
    with empty.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (email, name, partner_id, role, country, timezone, "
                "channels, digest, daily_cap, leads) "
                "SELECT 'a@b.example', 'A', id, 'coordinator', 'DK', 'Europe/Copenhagen', "
                "'email', false, 20, '' FROM partners"
            )
        )
        conn.execute(
            text(
                "INSERT INTO cases (key, kind, template_version, title, lead_partner_id, "
                "owner_id, country, status, start_date, target_date, forecast_date, "
                "baseline_target, opened_at, updated_at, version, fields) SELECT "
                "'IP-2026-0001', 'ip-integration', 1, 'T', partner_id, id, 'DK', 'active', "
                ":day, :day, :day, :day, :now, :now, 1, '{}' FROM contacts"
            ),
            {"day": now.date(), "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO case_events (case_id, at, actor, kind, source, comment) "
                "SELECT id, :now, 'a@b.example', 'case.open', 'cli', '' FROM cases"
            ),
            {"now": now},
        )
    with pytest.raises(DBAPIError, match="append-only"):
        with empty.begin() as conn:
            conn.execute(text("DELETE FROM case_events"))
    with empty.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO directory_events (at, actor, kind, subject, source, comment) "
                "VALUES (:now, 'cli', 'contact.add', 'a@b.example', 'cli', '')"
            ),
            {"now": now},
        )
    for statement in ("UPDATE directory_events SET actor = 'x'", "DELETE FROM directory_events"):
        with pytest.raises(DBAPIError, match="directory_events is append-only"):
            with empty.begin() as conn:
                conn.execute(text(statement))


def test_the_migrated_schema_matches_the_models(empty: Engine) -> None:
    migrate.upgrade(empty)
    assert _diff(empty) == []


def test_an_empty_database_differs_from_the_models(empty: Engine) -> None:
    # The comparison is live: without the migration every table is reported missing.
    added = {change[1].name for change in _diff(empty) if change[0] == "add_table"}
    assert added == CASE_TABLES


def test_the_outbox_revision_steps_down_and_up_alone(empty: Engine) -> None:
    migrate.upgrade(empty)
    assert migrate.downgrade(empty, "0001") == "0001"
    assert "notifications" not in _tables(empty)
    assert "overdue_on" not in {c["name"] for c in inspect(empty).get_columns("milestones")}
    assert migrate.upgrade(empty) == HEAD
    assert _diff(empty) == []
