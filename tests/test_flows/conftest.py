"""One real Prefect server per test session, and case stores the flows find through BRIDGEBSR_*."""

import os
import socket
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from prefect.logging.handlers import APILogHandler
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_HOME,
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.cli.orchestration import LocalServer
from bridgebsr.demo import load_demo
from bridgebsr.settings import Settings
from flows import common
from tests.conftest import migrated

BIN = Path(sys.executable).parent
REPO = Path(__file__).parents[2]
DEMO_DAY = "2026-11-26"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `prefect server start` for the whole session; this process and children talk to it."""
    home = tmp_path_factory.mktemp("prefect-home")
    server = LocalServer(home, port=free_port(), ui=False)
    # No scheduled runs: the deployments' hourly monitor would otherwise run at the top of an
    # hour on the worker, as of the real date, beside the runs a test starts.
    scheduler = os.environ.get("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED")
    os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "false"
    try:
        server.start(wait=120)
    except RuntimeError as exc:
        pytest.fail(f"{exc}: {(home / 'server.log').read_text()[-2000:]}")
    finally:
        if scheduler is None:
            os.environ.pop("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", None)
        else:
            os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = scheduler
    api = server.api_url
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ.update({"PREFECT_API_URL": api, "PREFECT_HOME": str(home)})
    with temporary_settings(
        updates={
            PREFECT_API_URL: api,
            PREFECT_HOME: str(home),
            PREFECT_SERVER_ANALYTICS_ENABLED: False,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore",
        }
    ):
        yield api
        APILogHandler().flush()  # send buffered run logs while the server is still there
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="session")
def demo_store_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a SQLite case store with the demo portfolio as of DEMO_DAY, built once
    per session (migrated, then `load_demo`); each `store` starts as a copy of it."""
    folder = tmp_path_factory.mktemp("flows-demo")
    path = folder / "cases.db"
    with migrated(f"sqlite:///{path}", folder / "home") as rt:
        load_demo(rt, date.fromisoformat(DEMO_DAY))
        with rt.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not path.with_name(path.name + "-wal").exists()  # all of it is in the one file
    return path.read_bytes()


@pytest.fixture
def store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_store_file: bytes
) -> Iterator[Runtime]:
    """The demo portfolio in a SQLite case store that flows in this process use (the
    deployment tests run the same flows on PostgreSQL): a private copy of the session's
    `demo_store_file`."""
    home = tmp_path / "home"
    db_url = f"sqlite:///{tmp_path / 'cases.db'}"
    (tmp_path / "cases.db").write_bytes(demo_store_file)
    monkeypatch.setenv("BRIDGEBSR_HOME", str(home))
    monkeypatch.setenv("BRIDGEBSR_DATABASE_URL", db_url)
    rt = build_runtime(Settings(home=home, database_url=db_url))
    common._RUNTIMES.clear()
    yield rt
    for cached in common._RUNTIMES.values():
        cached.engine.dispose()
    common._RUNTIMES.clear()
    rt.engine.dispose()
