"""The one settings class, built when asked, never at import.

Each setting comes from, first to last: the environment (`BRIDGEBSR_EMAIL_URL`), a `.env` file
in the working directory (the same names), then the settings file `bridgebsr.toml` (the
setting's name without the prefix, in lower case: `email_url = "..."`), found at
`BRIDGEBSR_CONFIG` or else in `BRIDGEBSR_HOME` (default `./.bridgebsr`). The environment and
`.env` both say where the file is; the file says where nothing else is.
"""

import os
import secrets
import tomllib
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bridgebsr.errors import InvalidInput

STORES = "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
POSTGRES_EXTRA = "pip install -e '.[postgres]'"
PREFIX = "BRIDGEBSR_"
CONFIG_NAME = "bridgebsr.toml"
DEFAULT_HOME = Path(".bridgebsr")
DEFAULT_WEB_PORT = 4280  # beside Prefect's 4200
SECRET_FILE = "secret_key"


class ChannelSettings(BaseModel):
    """How one team channel (a chat service tagged `channel:NAME`) wants its posts: a
    `[channels.NAME]` table in the settings file."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(
        default=None, description="The channel's time zone (default: the settings' timezone)."
    )
    quiet_hours: str = Field(
        default="21:00-07:00",
        description="Local hours nothing is posted in, FROM-UNTIL (may run over midnight); "
        "'none' for none.",
    )
    digest: bool = Field(
        default=False,
        description="Gather what is not urgent into one post at 08:00 on a working day.",
    )
    country: str = Field(
        default="", description="Country code whose public holidays have no digest."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return value if value is None else _zone_name(value)

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        quiet_span(value)
        return value


def quiet_span(value: str) -> tuple[time, time] | None:
    """`FROM-UNTIL` (`21:00-07:00`) as two times; None for `none` or ''. ValueError saying
    the form otherwise."""
    if value.strip().lower() in {"", "none", "off"}:
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        raise ValueError(
            f"quiet_hours '{value}' is not FROM-UNTIL, e.g. '21:00-07:00' (or 'none')"
        ) from None
    return start, end


def _zone_name(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone '{value}'") from exc
    return value


class Settings(BaseSettings):
    """Where the case store lives, where templates come from, how to reach people."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", env_file=".env", env_file_encoding="utf-8"
    )

    home: Path = Field(
        default=DEFAULT_HOME,
        description=f"Folder for the SQLite store, logs, outputs and {CONFIG_NAME}.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the case store; default a SQLite file in HOME. "
        "PostgreSQL: postgresql+psycopg://user@host/db, with the postgres extra installed "
        f"({POSTGRES_EXTRA}).",
    )
    template_dirs: str = Field(
        default="",
        description="Extra template folders, separated by the OS path separator "
        f"(a list of folders in {CONFIG_NAME}).",
    )
    notice_texts: Path | None = Field(
        default=None,
        description="Folder of notice texts (notice.txt, notice.md, notice.html, bundle.*) "
        "that replace the shipped ones; a text not there is the shipped one.",
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
    channels: dict[str, ChannelSettings] = Field(
        default_factory=dict,
        description="Team channels' quiet hours, time zone and digest, by name: a "
        "[channels.NAME] table per channel (NAME: all, a pilot kind, or partner:CODE, as in "
        "the Apprise tag channel:NAME).",
    )
    public_url: str | None = Field(
        default=None,
        description="The address people reach the web app at (https://bridge.example.org, "
        "behind a TLS proxy): the links notices carry and links to stored reports are written "
        "under it. Unset, notices link to the local app (http://127.0.0.1:WEB_PORT) and "
        "stored reports carry no link.",
    )
    dispatch_workers: int = Field(
        default=1, ge=1, le=32, description="Processes that deliver notices in one dispatch pass."
    )
    web_port: int = Field(
        default=DEFAULT_WEB_PORT,
        ge=1,
        le=65535,
        description="Port of the partners' web app (`bridgebsr web`, `bridgebsr up`).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that signs personal links and sessions; default the key in "
        f"HOME/{SECRET_FILE}, made (mode 0600) by `bridgebsr init` or on first use.",
    )
    link_days: int = Field(
        default=30, ge=1, le=3650, description="Days a personal page link stays valid."
    )
    feed_days: int = Field(
        default=365, ge=1, le=3650, description="Days a calendar feed link stays valid."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Given values, then the environment, then `.env`, then the settings file."""
        dotenv = dotenv_settings if isinstance(dotenv_settings, DotEnvSettingsSource) else None
        path = config_file(dotenv.env_vars if dotenv is not None else {})
        return (init_settings, env_settings, dotenv_settings, _toml_source(settings_cls, path))

    @field_validator("template_dirs", mode="before")
    @classmethod
    def _folder_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return os.pathsep.join(str(v) for v in value)
        return value

    @field_validator(
        "email_url", "apprise_config", "notice_texts", "public_url", "secret_key", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone_name(value)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, ChannelSettings]) -> dict[str, ChannelSettings]:
        named: dict[str, ChannelSettings] = {}
        for name, chosen in value.items():
            key = name.strip().lower()
            if not key or any(c.isspace() for c in key) or key == "partner:":
                raise ValueError(
                    f"'{name}' is no channel name: give all, a pilot kind, or partner:CODE"
                )
            named[key] = chosen
        return named

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/")
        scheme, sep, rest = url.partition("://")
        if scheme not in {"http", "https"} or not sep or not rest or "?" in rest or "#" in rest:
            raise ValueError(
                f"'{value}' is not a web address; give https://HOST[:PORT][/PATH] "
                "(where people reach the web app)"
            )
        return url

    @field_validator("database_url")
    @classmethod
    def _usable_store(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        check_store_url(make_store_url(value))
        return value

    @classmethod
    def load(cls) -> "Settings":
        """The settings from the environment, `.env` and the settings file; a value that
        cannot be right is InvalidInput naming where it was set (the variable, or the file
        and key) and the fix."""
        try:
            return cls()
        except ValidationError as exc:
            lines = [f"{_origin(str(e['loc'][0]))}: {_reason(e)}" for e in exc.errors()]
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

    def web_url(self) -> str:
        """Where people reach the web app: BRIDGEBSR_PUBLIC_URL, else the local app."""
        return self.public_url or f"http://127.0.0.1:{self.web_port}"

    def signing_key(self) -> str:
        """The key that signs links and sessions: BRIDGEBSR_SECRET_KEY, else the one kept in
        HOME/secret_key (made now, readable by its owner only, when missing)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return ensure_secret_file(self.home / SECRET_FILE)


def ensure_secret_file(path: Path) -> str:
    """The key kept in `path`, made first (random, mode 0600, never replaced) when missing."""
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = ""
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the secret key: {exc.strerror}") from None
    if key:
        return key
    made = secrets.token_urlsafe(48)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by another process meanwhile
        return path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise InvalidInput(
            f"{path}: cannot make the secret key that signs links: {exc.strerror}; make the "
            f"folder writable or set {PREFIX}SECRET_KEY"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(made + "\n")
    return made


def config_file(dotenv: Any = None) -> Path | None:
    """Where the settings file is: BRIDGEBSR_CONFIG, else HOME/bridgebsr.toml (each from the
    environment, else from `.env`); None when HOME has none. A BRIDGEBSR_CONFIG that names no
    file is InvalidInput."""
    if dotenv is None:
        dotenv = DotEnvSettingsSource(Settings).env_vars

    def variable(name: str) -> str | None:
        value = os.environ.get(f"{PREFIX}{name}") or dotenv.get(f"{PREFIX}{name}".lower())
        return value.strip() if value and value.strip() else None

    if named := variable("CONFIG"):
        path = Path(named).expanduser()
        if not path.is_file():
            raise InvalidInput(
                f"{PREFIX}CONFIG {path} is not a file; create it (docs/bridgebsr.toml is an "
                f"example) or unset {PREFIX}CONFIG"
            )
        return path
    home = Path(variable("HOME") or DEFAULT_HOME).expanduser()
    path = home / CONFIG_NAME
    return path if path.is_file() else None


def _toml_source(settings_cls: type[BaseSettings], path: Path | None) -> PydanticBaseSettingsSource:
    """The settings file's values; a file that is not TOML, or holds a key that is no
    setting, is InvalidInput naming the file (and the line, or the key)."""
    try:
        source = TomlConfigSettingsSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: not valid TOML: {exc}; fix that line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the settings file: {exc}") from None
    known = set(settings_cls.model_fields)
    if unknown := sorted(set(source.toml_data) - known):
        lines = [
            f"{path}: '{key}' is no setting; known: {', '.join(sorted(known))}" for key in unknown
        ]
        raise InvalidInput("; ".join(lines), lines)
    return source


def _origin(name: str) -> str:
    """Where a setting's value came from, as a user would look for it: its variable (in the
    environment or `.env`), or the settings file and key."""
    variable = f"{PREFIX}{name.upper()}"
    if variable in os.environ:
        return variable
    dotenv = DotEnvSettingsSource(Settings).env_vars
    if variable.lower() in dotenv:
        return f"{variable} (in .env)"
    path = config_file(dotenv)
    return f"{path}: {name}" if path is not None else variable


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
