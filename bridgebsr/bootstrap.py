"""The composition root: settings, engine and templates, built when asked, never at import."""

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine

from bridgebsr.catalog import Catalog, load_catalog
from bridgebsr.db import make_engine
from bridgebsr.settings import Settings


@dataclass
class Runtime:
    """What every command and flow needs: settings, the case store engine, the templates."""

    settings: Settings
    engine: Engine = field(repr=False)

    @cached_property
    def catalog(self) -> Catalog:
        """Shipped templates plus BRIDGEBSR_TEMPLATE_DIRS, loaded on first use."""
        return load_catalog(self.settings.template_paths())


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Wire settings and the engine; SQLite stores get their folder created."""
    settings = settings or Settings()
    url = settings.resolved_database_url()
    if url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return Runtime(settings=settings, engine=make_engine(url))
