"""The one settings class, read from BRIDGEBSR_* variables when asked, never at import."""

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the case store lives, where templates come from, how to reach people."""

    model_config = SettingsConfigDict(env_prefix="BRIDGEBSR_", extra="ignore")

    home: Path = Field(
        default=Path(".bridgebsr"), description="Folder for the SQLite store, logs and outputs."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the case store; default a SQLite file in HOME. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
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

    def resolved_database_url(self) -> str:
        """The case store URL, defaulting to HOME/bridgebsr.db."""
        return self.database_url or f"sqlite:///{(self.home / 'bridgebsr.db').resolve()}"

    def template_paths(self) -> list[Path]:
        """Extra template folders in the order given."""
        return [Path(p) for p in self.template_dirs.split(os.pathsep) if p.strip()]

    def zone(self) -> ZoneInfo:
        """The default display time zone."""
        return ZoneInfo(self.timezone)
