"""Reliability and security tests: hypothesis profiles, sizes, pristine stores, the CLI in-process.

`make test` runs everything here quickly: small, derandomised example counts (the same examples
every run). `make soak` sets BRIDGEBSR_SOAK=1: at least 10,000 random examples per fuzz target
(BRIDGEBSR_SOAK_EXAMPLES overrides the count) and larger populated databases for the
migration checks. Neither profile keeps an example database: nothing is written beside the
tests, and a failure prints the example (and a blob to reproduce it with @reproduce_failure).
"""

import os
import shutil
import sqlite3
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium, load_demo
from bridgebsr.settings import Settings
from bridgebsr.store import migrate

SOAK = os.environ.get("BRIDGEBSR_SOAK", "").strip().lower() in {"1", "true", "yes"}
SOAK_EXAMPLES = int(os.environ.get("BRIDGEBSR_SOAK_EXAMPLES", "10000"))
QUICK_PROFILE, SOAK_PROFILE = "bridgebsr-quick", "bridgebsr-soak"
AS_OF = "2026-11-26"  # the demo store's day

_QUIET_CHECKS = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]
settings.register_profile(
    QUICK_PROFILE,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_QUIET_CHECKS,
)
settings.register_profile(
    SOAK_PROFILE,
    deadline=None,
    database=None,
    print_blob=True,
    max_examples=SOAK_EXAMPLES,
    suppress_health_check=_QUIET_CHECKS,
)


def fuzz(quick: int) -> settings:
    """Settings for one fuzz target: `quick` fixed examples in `make test`, the soak count
    (10,000 by default) of random ones under BRIDGEBSR_SOAK=1."""
    if SOAK:
        return settings(settings.get_profile(SOAK_PROFILE))
    return settings(settings.get_profile(QUICK_PROFILE), max_examples=quick)


def size(quick: int, soak: int) -> int:
    """A data size: `quick` in `make test`, `soak` under BRIDGEBSR_SOAK=1."""
    return soak if SOAK else quick


# --- stores --------------------------------------------------------------------------------


def store_rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a SQLite store, in rowid order: for before/after checks."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY rowid').fetchall() for n in names}
    finally:
        conn.close()


def _runtime(home: Path) -> Runtime:
    return build_runtime(Settings(home=home, database_url=f"sqlite:///{home / 'bridgebsr.db'}"))


@dataclass(frozen=True)
class Pristine:
    """A SQLite store built once, copied fresh for every example that might change it."""

    home: Path

    @property
    def db(self) -> Path:
        """The store file (checkpointed: no -wal beside it)."""
        return self.home / "bridgebsr.db"

    def copy(self, where: Path) -> Path:
        """A private copy of the home at `where`; returns the copy's home."""
        home = where / "home"
        home.mkdir(parents=True)
        shutil.copy2(self.db, home / "bridgebsr.db")
        return home


def _build(home: Path, demo: bool) -> Pristine:
    rt = _runtime(home)
    try:
        migrate.upgrade(rt.engine)
        if demo:
            from datetime import date

            load_demo(rt, date.fromisoformat(AS_OF))
        else:
            load_consortium(rt)
    finally:
        rt.engine.dispose()  # the last connection out checkpoints the WAL into the file
    assert not (home / "bridgebsr.db-wal").exists()
    return Pristine(home)


@pytest.fixture(scope="session")
def consortium_store(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    """The Bridge-BSR partners and contacts at the current schema, no cases."""
    return _build(tmp_path_factory.mktemp("consortium") / "home", demo=False)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    """The demo portfolio as of AS_OF (20 cases, an outbox), at the current schema."""
    return _build(tmp_path_factory.mktemp("demo") / "home", demo=True)


@pytest.fixture(scope="session")
def scratch_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where examples get their private folders (each removed when its example ends)."""
    return tmp_path_factory.mktemp("examples")


@contextmanager
def scratch(root: Path) -> Iterator[Path]:
    """A private, empty folder for one hypothesis example, removed afterwards."""
    with tempfile.TemporaryDirectory(dir=root) as folder:
        yield Path(folder)


# --- the command line, in-process ------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one `bridgebsr ARGS` run ended, as the console script would have ended it."""

    args: tuple[str, ...]
    code: int | None  # None: an exception escaped main(), a traceback in a terminal
    stdout: str
    stderr: str
    escaped: str  # the traceback of an exception that escaped, else ""

    def describe(self) -> str:
        """Everything about the run, for an assertion message."""
        return (
            f"bridgebsr {' '.join(repr(a) for a in self.args)}\nexit {self.code}\n"
            f"--- stdout\n{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-2000:]}\n"
            f"{self.escaped}"
        )


def invoke(home: Path, args: Sequence[str]) -> Outcome:
    """Run `bridgebsr ARGS` in-process with BRIDGEBSR_HOME=home, through the console script's
    own entry point (`bridgebsr.cli.main`, which turns user errors into one line and exit 1),
    inside typer's CliRunner isolation (captured stdout and stderr, a private environment).
    Every engine the command builds is disposed afterwards."""
    from bridgebsr.cli import _common, main

    engines = []
    real_build = build_runtime

    def tracked(settings: Settings | None = None) -> Runtime:
        rt = real_build(settings)
        engines.append(rt.engine)
        return rt

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("BRIDGEBSR_")}
    env |= {"BRIDGEBSR_HOME": str(home), "PREFECT_API_URL": None, "COLUMNS": "200"}
    code: int | None
    escaped = ""
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _mixed):
        with (
            mock.patch.object(sys, "argv", ["bridgebsr", *args]),
            mock.patch.object(_common, "build_runtime", tracked),
        ):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what a terminal would show as a traceback
                code, escaped = None, traceback.format_exc()
            finally:
                for engine in engines:
                    engine.dispose()
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return Outcome(tuple(args), code, stdout, stderr, escaped)


def assert_clean_exit(done: Outcome) -> None:
    """The CLI contract: exit 0; exit 1 with exactly one `error:` line (after the problems of
    an invalid file, each indented) on stderr; or exit 2 for usage. Never a traceback."""
    assert done.code in (0, 1, 2), done.describe()
    assert "Traceback" not in done.stdout + done.stderr, done.describe()
    if done.code == 1:
        lines = done.stderr.rstrip("\n").split("\n")
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], done.describe()
        assert all(line.startswith("  ") for line in lines[:-1]), done.describe()
