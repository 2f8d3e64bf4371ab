"""What every flow shares: the runtime from BRIDGEBSR_* settings, the clock, the acting run."""

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.errors import BridgeError
from bridgebsr.office.progress import Actor
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from models import Source

_RUNTIMES: dict[str, Runtime] = {}


def runtime() -> Runtime:
    """The runtime for this process's settings, built once per case store URL."""
    settings = Settings()
    url = settings.resolved_database_url()
    rt = _RUNTIMES.get(url)
    if rt is None:
        rt = build_runtime(settings)
        at, head = migrate.current(rt.engine), migrate.head()
        if at != head:
            raise BridgeError(
                f"the case store is at schema {at or 'none'}, not {head}: "
                "run `bridgebsr db upgrade` (or `bridgebsr init`)"
            )
        _RUNTIMES[url] = rt
    return rt


def resolve_now(now: datetime | None, rt: Runtime) -> datetime:
    """`now` as an aware UTC time: the current time when not given, naive means the home zone."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=ZoneInfo(rt.settings.timezone))
    return now.astimezone(UTC)


def run_id() -> str | None:
    """The id of the flow run this code runs in, if any."""
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None


def flow_actor(name: str, comment: str = "") -> Actor:
    """The actor for changes a flow makes on its own account (audit source `flow`)."""
    return Actor(f"{name}@flow", Source.FLOW, run_id(), comment)


def named(prefix: str) -> Callable[[], str]:
    """A run namer: `prefix` and the `now` parameter (or the current time), to the minute."""

    def name() -> str:
        from prefect.runtime import flow_run

        value = flow_run.parameters.get("now")
        at = value if isinstance(value, datetime) else datetime.now(UTC)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                at = datetime.fromisoformat(value)
        return f"{prefix} {at:%Y-%m-%d %H:%M}"

    return name


def log() -> Any:
    """The run logger inside a flow or task run, else the module logger (`.fn()` calls)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("bridgebsr.flows")
