"""The composition root: settings, engine and templates, built when asked, never at import."""

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from bridgebsr.exchange.catalog import Catalog, load_catalog
from bridgebsr.settings import Settings, quiet_span
from bridgebsr.store.db import make_engine

if TYPE_CHECKING:
    from notifications.channels import Channel
    from notifications.post import PostOffice


@dataclass
class Runtime:
    """What every command and flow needs: settings, the case store engine, the templates."""

    settings: Settings
    engine: Engine = field(repr=False)

    def post_office(self) -> "PostOffice":
        """The delivery channels from BRIDGEBSR_EMAIL_URL and BRIDGEBSR_APPRISE_CONFIG (else the
        local log `HOME/notifications.log`); messages use BRIDGEBSR_NOTICE_TEXTS from now on."""
        from notifications.post import PostOffice  # Apprise loads only when delivering
        from notifications.render import use_notice_texts

        use_notice_texts(self.settings.notice_texts)

        email = self.settings.email_url
        return PostOffice(
            email_url=email.get_secret_value() if email else None,
            apprise_config=self.settings.apprise_config,
            local_log=self.settings.home / "notifications.log",
        )

    def channels(self) -> dict[str, "Channel"]:
        """The team channels the chat services of BRIDGEBSR_APPRISE_CONFIG join (tags
        `channel:NAME`), by name, each with its `[channels.NAME]` settings (else the default
        quiet hours in the settings' time zone, no digest). None without a config."""
        from notifications.channels import Channel, subscribed

        chosen = self.settings.channels
        out = {}
        for name in sorted(subscribed(self.settings.apprise_config)):
            mine = chosen.get(name)
            if mine is None:
                out[name] = Channel(name, self.settings.timezone)
                continue
            out[name] = Channel(
                name,
                mine.timezone or self.settings.timezone,
                quiet=quiet_span(mine.quiet_hours),
                digest=mine.digest,
                country=mine.country,
            )
        return out

    @cached_property
    def catalog(self) -> Catalog:
        """Shipped templates plus BRIDGEBSR_TEMPLATE_DIRS, loaded on first use."""
        return load_catalog(self.settings.template_paths())


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Wire settings and the engine; SQLite stores get their folder created."""
    settings = settings or Settings.load()
    url = settings.resolved_database_url()
    if url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return Runtime(settings=settings, engine=make_engine(url))
