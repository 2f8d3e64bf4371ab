"""`bridgebsr notifications list | dispatch` on the demo portfolio (local log channel)."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.test_bridgebsr.test_cli import (
    AS_OF,
    BRIDGEBSR,
    _env,
    assert_one_error_line,
    run,
    run_json,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A demo home whose monitor pass (run by `demo`) filled the outbox."""
    home = tmp_path / "home"
    done = run(home, "demo", "--as-of", AS_OF)
    assert done.returncode == 0, done.stderr
    return home


def test_dispatch_delivers_the_outbox_once_to_the_local_log(home: Path) -> None:
    pending = run_json(home, "notifications", "list", "--status", "pending")
    assert pending and all(r["status"] == "pending" for r in pending)

    sent = run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    assert sent["sent"] == len(pending) and sent["failed"] == sent["retrying"] == 0
    assert sent["channels"] == ["local log (bridgebsr://)"]
    lines = [json.loads(x) for x in (home / "notifications.log").read_text().splitlines()]
    assert len(lines) == len(pending)
    assert {x["to"] for x in lines} == {r["recipient"] for r in pending}
    assert all(x["title"].startswith(("IP-", "LSF-", "SME-")) for x in lines)

    again = run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    assert again["sent"] == 0
    assert run_json(home, "notifications", "list", "--status", "pending") == []
    assert len(run_json(home, "notifications", "list", "--status", "sent")) == len(pending)


def test_a_broken_email_url_fails_with_retries_and_no_secret_in_sight(home: Path) -> None:
    # Nothing listens on port 9 of loopback: every email fails, and is retried later.
    env = _env(home) | {"BRIDGEBSR_EMAIL_URL": "mailto://office:canary-S3cr3t@127.0.0.1:9"}
    done = subprocess.run(
        [str(BRIDGEBSR), "notifications", "dispatch", "--as-of", AS_OF],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "retrying" in done.stdout and "canary-S3cr3t" not in done.stdout + done.stderr
    rows = run_json(home, "notifications", "list")
    assert rows and all(r["status"] == "pending" and r["attempts"] == 1 for r in rows)
    assert all(r["error"] and "canary" not in r["error"] for r in rows)
    assert "canary-S3cr3t" not in (home / "bridgebsr.db").read_bytes().decode("latin-1")


def test_list_refuses_an_unknown_status(home: Path) -> None:
    assert_one_error_line(
        run(home, "notifications", "list", "--status", "lost"), "--status 'lost'", "pending"
    )


def test_dispatch_before_init_says_what_to_run(tmp_path: Path) -> None:
    assert_one_error_line(run(tmp_path / "none", "notifications", "dispatch"), "bridgebsr init")
