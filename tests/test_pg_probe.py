"""The PostgreSQL probe: without the postgres extra, or without the server, the PostgreSQL
tests are skipped with the reason (and fail with it in CI) instead of erroring."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.test_notifications.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
EXTRA = "install the postgres extra: pip install -e '.[postgres]'"
# Runs Python as a machine without the postgres extra would: importing psycopg fails.
WITHOUT_PSYCOPG = "import sys; sys.modules['psycopg'] = None; "


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"CI", "BRIDGEBSR_TEST_PG"}}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_fresh_schema_is_empty_and_first_on_the_search_path(pg_url: str) -> None:
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        tables = conn.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        ).scalar_one()
    engine.dispose()
    assert schema.startswith("t_") and tables == 0


def test_the_probe_names_the_postgres_extra_when_psycopg_is_missing() -> None:
    probe = "from benchmarks.scratch_pg import unreachable_reason; print(unreachable_reason())"
    done = _python(WITHOUT_PSYCOPG + probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"the PostgreSQL driver psycopg is not installed; {EXTRA}"


def test_the_probe_says_when_the_server_does_not_answer() -> None:
    probe = "from benchmarks.scratch_pg import unreachable_reason; print(unreachable_reason())"
    port = free_port()
    done = _python(probe, BRIDGEBSR_TEST_PG=f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == f"PostgreSQL at 127.0.0.1:{port} does not answer; start it to run this"
    )


def _pytest_without_psycopg(**env: str) -> subprocess.CompletedProcess[str]:
    test = f"{__file__}::{test_a_fresh_schema_is_empty_and_first_on_the_search_path.__name__}"
    args = [test, "-q", "-rs", "-p", "no:cacheprovider"]
    return _python(
        f"{WITHOUT_PSYCOPG}import pytest; raise SystemExit(pytest.main({args!r}))", **env
    )


def test_without_the_postgres_extra_postgres_tests_skip_with_the_reason() -> None:
    done = _pytest_without_psycopg()
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 skipped" in done.stdout and EXTRA in done.stdout


def test_without_the_postgres_extra_postgres_tests_fail_in_ci() -> None:
    done = _pytest_without_psycopg(CI="true")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "1 error" in done.stdout
    assert (
        f"required in CI (CI=true), but the PostgreSQL driver psycopg is not installed; {EXTRA}"
        in done.stdout
    )
