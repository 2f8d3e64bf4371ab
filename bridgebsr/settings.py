"""The one settings class, read from BRIDGEBSR_* variables when asked, never at import."""

import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bridgebsr.errors import InvalidInput

STORES = "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
POSTGRES_EXTRA = "pip install -e '.[postgres]'"


class Settings(BaseSettings):
    """Where the case store lives, where templates come from, how to reach people."""

    model_config = SettingsConfigDict(env_prefix="BRIDGEBSR_", extra="ignore")

    home: Path = Field(
        default=Path(".bridgebsr"), description="Folder for the SQLite store, logs and outputs."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the case store; default a SQLite file in HOME. "
        "PostgreSQL: postgresql+psycopg://user@host/db, with the postgres extra installed "
        f"({POSTGRES_EXTRA}).",
    )
    template_dirs: str = Field(
        default="", description="Extra template folders, separated by the OS path separator."
    )
    email_url: SecretStr | None = Field(
        default=None, description="Apprise mailto:// or mailtos:// URL of the sending account."
    )
    apprise_config: Path | None = Field(
        default=None, description="Apprise YAML config with chat and webhook targets."
    )
    timezone: str = Field(
        default="Europe/Copenhagen", description="Time zone for dates shown without a reader."
    )
    actor: str | None = Field(
        default=None,
        description="Your email address: who the command line records as making a change "
        "given without --by.",
    )
    dispatch_workers: int = Field(
        default=1, ge=1, le=32, description="Processes that deliver notices in one dispatch pass."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone '{value}'") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _usable_store(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        check_store_url(make_store_url(value))
        return value

    @classmethod
    def load(cls) -> "Settings":
        """The settings from the environment; a value that cannot be right is InvalidInput
        naming its variable and the fix."""
        try:
            return cls()
        except ValidationError as exc:
            prefix = cls.model_config.get("env_prefix", "")
            lines = [f"{prefix}{str(e['loc'][0]).upper()}: {_reason(e)}" for e in exc.errors()]
            raise InvalidInput("; ".join(lines), lines) from None

    def resolved_database_url(self) -> str:
        """The case store URL, defaulting to HOME/bridgebsr.db."""
        return self.database_url or f"sqlite:///{(self.home / 'bridgebsr.db').resolve()}"

    def template_paths(self) -> list[Path]:
        """Extra template folders in the order given."""
        return [Path(p) for p in self.template_dirs.split(os.pathsep) if p.strip()]

    def zone(self) -> ZoneInfo:
        """The default display time zone."""
        return ZoneInfo(self.timezone)


def _reason(error: Any) -> str:
    """A settings error's own words (a validator's message without pydantic's prefix)."""
    cause = error.get("ctx", {}).get("error")
    return str(cause) if cause is not None else str(error["msg"])


def make_store_url(value: str) -> URL:
    """`value` parsed as a database URL, or ValueError (which never repeats it: it may hold
    a password)."""
    try:
        return make_url(value.strip())
    except ArgumentError:
        raise ValueError(f"not a database URL; give {STORES}") from None


def check_store_url(url: URL) -> None:
    """ValueError unless the case store can run at `url`: SQLite or PostgreSQL, a driver this
    SQLAlchemy knows, not an asyncio one, and installed."""
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ValueError(
            f"'{url.drivername}' is not a database the case store runs on; give {STORES}"
        )
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"'{url.drivername}' names no known driver; give {STORES}") from None
    if dialect.is_async:
        raise ValueError(f"'{url.drivername}' is an asyncio driver; give {STORES}")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(
            f"the driver of '{url.drivername}' is not installed (no module {exc.name}); "
            f"for PostgreSQL install the postgres extra ({POSTGRES_EXTRA}) "
            "and use postgresql+psycopg://USER@HOST/DB"
        ) from None
