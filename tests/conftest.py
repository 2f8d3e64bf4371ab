"""Shared fixtures: real case stores on SQLite files and on the PostgreSQL server, and the
`bridgebsr` console script with the demo home it builds."""

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from unittest import mock

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from typer.testing import CliRunner

from benchmarks.scratch_pg import ADMIN_URL as PG_ADMIN_URL
from benchmarks.scratch_pg import unreachable_reason
from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.settings import Settings
from bridgebsr.store import migrate

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
BRIDGEBSR = Path(sys.executable).parent / "bridgebsr"
DEMO_AS_OF = "2026-11-26"
# What the ip-integration council-approval gate waits for, predecessors first; and what the
# shared-sme-service sme-acceptance gate waits for. Tests drive a case to an open gate with them.
BEFORE_COUNCIL = (
    "kickoff",
    "bottleneck-desk-study",
    "regional-workshops",
    "bottleneck-report",
    "indicator-set",
    "baseline-data",
    "model-draft",
    "expert-panel",
    "model-revision",
)
BEFORE_ACCEPTANCE = (
    "request-intake",
    "needs-interview",
    "triage-decision",
    "nda",
    "cluster-search",
    "match-proposal",
)


@cache
def postgres_problem() -> str | None:
    """Why the PostgreSQL tests cannot run here (asked once per session), or None."""
    return unreachable_reason()


def postgres_available() -> bool:
    """Whether the PostgreSQL tests can run here."""
    return postgres_problem() is None


@pytest.fixture(scope="session")
def pg_ready() -> bool:
    """PostgreSQL is required in CI and optional elsewhere."""
    problem = postgres_problem()
    if problem is not None and IN_CI:
        pytest.fail(f"PostgreSQL is required in CI (CI=true), but {problem}", pytrace=False)
    return problem is None


@contextmanager
def pg_schema(pg_ready: bool) -> Iterator[str]:
    """The URL of a fresh PostgreSQL schema, dropped afterwards; the test is skipped with the
    reason when the server cannot be used (`pg_ready` has failed it already in CI)."""
    if not pg_ready:
        pytest.skip(str(postgres_problem()))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@cache
def _migrated_sqlite_file() -> bytes:
    """The bytes of an empty SQLite case store that `migrate.upgrade` brought to head, made
    once per session: a new SQLite store in a test is a copy of it."""
    folder = Path(tempfile.mkdtemp(prefix="bridgebsr-migrated-"))
    path = folder / "cases.db"
    runtime = build_runtime(Settings(home=folder / "home", database_url=f"sqlite:///{path}"))
    try:
        migrate.upgrade(runtime.engine)
    finally:
        runtime.engine.dispose()
    assert not path.with_name(path.name + "-wal").exists()  # all of it is in the one file
    made = path.read_bytes()
    shutil.rmtree(folder)
    return made


def _new_sqlite_file(db_url: str) -> Path | None:
    """The file of `db_url` when it names a SQLite file that does not exist yet."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    return None if path.exists() else path


@contextmanager
def migrated(db_url: str, home: Path, template_dirs: str = "") -> Iterator[Runtime]:
    """A migrated, empty case store at `db_url` with the shipped templates (and those of
    `template_dirs`). A new SQLite file starts as a copy of the session's migrated one
    (`_migrated_sqlite_file`)."""
    if (path := _new_sqlite_file(db_url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_migrated_sqlite_file())
    runtime = build_runtime(Settings(home=home, database_url=db_url, template_dirs=template_dirs))
    try:
        if path is None:
            migrate.upgrade(runtime.engine)
        yield runtime
    finally:
        runtime.engine.dispose()


# The backends of `db_url` (and of module-scoped stores built the same way).
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_url(pg_ready: bool) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    with pg_schema(pg_ready) as url:
        yield url


def backend_url(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    """A case store's URL on `backend`: a SQLite file in `tmp_path`, or a fresh PostgreSQL
    schema (`pg_url`)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    return backend_url(request, tmp_path, request.param)


@pytest.fixture
def rt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A migrated, empty case store with the shipped templates."""
    with migrated(db_url, tmp_path / "home") as runtime:
        yield runtime


@pytest.fixture
def engine(rt: Runtime) -> Engine:
    """The case store engine of `rt`."""
    return rt.engine


@pytest.fixture
def consortium(rt: Runtime) -> Runtime:
    """`rt` with the Bridge-BSR partners and contacts loaded."""
    load_consortium(rt)
    return rt


def at(day: str, hour: int = 10) -> datetime:
    """An aware UTC datetime on an ISO day."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


# --- the console script ------------------------------------------------------------------------


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEBSR_")}
    env["BRIDGEBSR_HOME"] = str(home)
    return env


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `bridgebsr ARGS` in home's parent folder with BRIDGEBSR_HOME=home (and `env`)."""
    return subprocess.run(
        [str(BRIDGEBSR), *args],
        env=_env(home) | (env or {}),
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_here(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`run`, in this process: the console script's entry point with its exit code and both
    streams, in home's parent folder with BRIDGEBSR_HOME=home (and `env`) and no other
    BRIDGEBSR_* variable; every engine it builds is disposed afterwards. For the tests that
    read what a command says; the few that check the installed script itself use `run`."""
    given: dict[str, str | None] = {"BRIDGEBSR_HOME": str(home), **(env or {})}
    code, out, err = in_process(args, given, cwd=home.parent)
    return subprocess.CompletedProcess([str(BRIDGEBSR), *args], code, out, err)


def in_process(
    args: Sequence[str], env: Mapping[str, str | None], cwd: Path | None = None
) -> tuple[int, str, str]:
    """Run `bridgebsr ARGS` through the console script's entry point in this process, with
    only the BRIDGEBSR_* variables of `env` (None unsets one), in `cwd` if given: its exit
    code, stdout and stderr. Every engine it builds is disposed afterwards."""
    from bridgebsr.cli import _common, main

    engines: list[Engine] = []

    def tracked(settings: Settings | None = None) -> Runtime:
        built = build_runtime(settings)
        engines.append(built.engine)
        return built

    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("BRIDGEBSR_")}
    here = Path.cwd()
    with (
        CliRunner().isolation(env={**cleared, **env}) as (out, err, _),
        mock.patch.object(sys, "argv", [str(BRIDGEBSR), *args]),
        mock.patch.object(_common, "build_runtime", tracked),
    ):
        if cwd is not None:
            os.chdir(cwd)
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()  # JSON is written to sys.stdout, which buffers it
            os.chdir(here)
            for engine in engines:
                engine.dispose()
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home made by `bridgebsr demo --as-of 2026-11-26` (the demo portfolio, and the outbox
    of its monitor pass), built once for the whole session: only read from, or copied by a
    test that writes (`shutil.copytree`)."""
    home = tmp_path_factory.mktemp("demo-cli") / "home"
    done = run(home, "demo", "--as-of", DEMO_AS_OF)
    assert done.returncode == 0, done.stderr
    assert "demo: opened 20 case(s)" in done.stdout
    return home
