"""Schema upgrades through Alembic, driven from code (no alembic.ini needed)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from bridgebsr.errors import BridgeError

_SCRIPTS = Path(__file__).parent / "migrations"


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for a migration. On SQLite, foreign keys are off meanwhile (batch
    migrations copy and drop tables other tables point at; SQLite only lets that pass with
    the check off, and the setting only changes outside a transaction), then every reference
    is checked before the check is on again."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise BridgeError(
                        f"the migration would leave {len(broken)} broken reference(s), first in "
                        f"table {broken[0][0]}; nothing was changed"
                    )
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema up to `revision` (idempotent); returns the revision now current."""
    cfg = _config(engine)
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    """Take the schema back to `revision`."""
    cfg = _config(engine)
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    return current(engine)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(_config_for_scripts()).get_current_head()


def _config_for_scripts() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg
