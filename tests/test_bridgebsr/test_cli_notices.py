"""`bridgebsr notifications list | dispatch` on the demo portfolio (local log channel)."""

import json
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import BRIDGEBSR, _env, run
from tests.conftest import DEMO_AS_OF as AS_OF
from tests.test_bridgebsr.test_cli import assert_one_error_line, run_json


@pytest.fixture
def home(demo_home: Path, tmp_path: Path) -> Path:
    """A private copy of the session's demo home, whose monitor pass (run by `demo`) filled
    the outbox."""
    copy = tmp_path / "home"
    shutil.copytree(demo_home, copy)
    return copy


def test_dispatch_delivers_the_outbox_once_to_the_local_log(home: Path) -> None:
    pending = run_json(home, "notifications", "list", "--status", "pending")
    assert pending and all(r["status"] == "pending" for r in pending)

    sent = run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    assert sent["sent"] == len(pending) and sent["failed"] == sent["retrying"] == 0
    assert sent["channels"] == ["local log (bridgebsr://)"]
    lines = [json.loads(x) for x in (home / "notifications.log").read_text().splitlines()]
    # One line per message: the demo's busiest reader passes the daily cap of 20 and gets
    # the rest in one summary.
    assert len(lines) == sent["messages"] < len(pending)
    assert sent["summaries"] >= 1
    assert {x["to"] for x in lines} == {r["recipient"] for r in pending}
    singles = [x for x in lines if not x["title"][0].isdigit()]
    assert all(x["title"].startswith(("IP-", "LSF-", "SME-")) for x in singles)

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


def test_list_shows_rows_a_stopped_dispatcher_left_marked_and_their_resend(home: Path) -> None:
    # The state a dispatcher killed after marking rows `sending` leaves: their message may
    # have gone out, and no outcome was recorded.
    pending = run_json(home, "notifications", "list", "--status", "pending")
    marked = sorted(r["id"] for r in pending)[:3]
    with closing(sqlite3.connect(home / "bridgebsr.db")) as db, db:
        db.execute(
            f"UPDATE notifications SET sending = 1 WHERE id IN ({','.join('?' * len(marked))})",
            marked,
        )
    before = {r["id"]: r for r in run_json(home, "notifications", "list")}
    assert [i for i, r in sorted(before.items()) if r["sending"]] == marked
    assert not any(r["resent"] for r in before.values())

    run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    after = {r["id"]: r for r in run_json(home, "notifications", "list")}
    assert not any(r["sending"] for r in after.values())
    assert {i for i, r in after.items() if r["resent"]} == set(marked)
    assert all(after[i]["resent"] == 1 and after[i]["status"] == "sent" for i in marked)


def test_list_refuses_an_unknown_status(home: Path) -> None:
    assert_one_error_line(
        run(home, "notifications", "list", "--status", "lost"), "--status 'lost'", "pending"
    )


def test_dispatch_before_init_says_what_to_run(tmp_path: Path) -> None:
    assert_one_error_line(run(tmp_path / "none", "notifications", "dispatch"), "bridgebsr init")


def test_preferences_shape_what_dispatch_sends_and_receipts_show_it(home: Path) -> None:
    lead, coordinator = "soren.ostergaard@scanbalt.example", "mette.sorensen@scanbalt.example"
    prefs = run_json(home, "contacts", "prefs", lead, "--digest", "--quiet", "none")
    assert prefs | {"delivery": "digest", "quiet_hours": "none"} == prefs
    run_json(home, "contacts", "prefs", coordinator, "--cap", "3", "--quiet", "none")
    assert_one_error_line(
        run(home, "contacts", "prefs", lead, "--quiet", "late"), "--quiet: 'late'", "HH:MM-HH:MM"
    )
    waiting = run_json(home, "notifications", "list")
    to_lead = [r for r in waiting if r["recipient"] == lead]
    to_coordinator = [r for r in waiting if r["recipient"] == coordinator]
    assert to_lead and not any(r["urgent"] for r in to_lead)
    assert len(to_coordinator) > 4 and all(r["urgent"] for r in to_coordinator)

    run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    # The pilot lead's notices are not urgent: they wait for tomorrow's digest.
    assert run_json(home, "notifications", "receipts", "--recipient", lead) == []
    listed = {r["id"]: r for r in run_json(home, "notifications", "list")}
    assert {listed[r["id"]]["status"] for r in to_lead} == {"held"}
    # The coordinator's cap of 3: three notices, then one summary with the rest.
    receipts = run_json(home, "notifications", "receipts", "--recipient", coordinator)
    assert sorted((r["kind"], r["notices"]) for r in receipts) == [
        ("notice", 1),
        ("notice", 1),
        ("notice", 1),
        ("overflow", len(to_coordinator) - 3),
    ]
    assert all(r["ok"] and r["channels"] == "local: sent" for r in receipts)
    assert {listed[r["id"]]["status"] for r in to_coordinator} == {"sent"}


def test_two_worker_processes_deliver_each_notice_once(home: Path) -> None:
    pending = run_json(home, "notifications", "list", "--status", "pending")
    sent = run_json(home, "notifications", "dispatch", "--as-of", AS_OF, "--workers", "2")
    assert sent["sent"] == len(pending) and sent["failed"] == sent["retrying"] == 0
    lines = [json.loads(x) for x in (home / "notifications.log").read_text().splitlines()]
    assert len(lines) == sent["messages"]
    receipts = run_json(home, "notifications", "receipts", "--limit", "1000")
    assert len(receipts) == len(lines) and sum(r["notices"] for r in receipts) == len(pending)
    assert run_json(home, "notifications", "list", "--status", "pending") == []
