"""`bridgebsr notifications list | dispatch` on the demo portfolio (local log channel)."""

import json
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from bridgebsr.cli import store_trouble
from tests.conftest import BRIDGEBSR, _env, run, run_here
from tests.conftest import DEMO_AS_OF as AS_OF
from tests.test_bridgebsr.test_cli import assert_one_error_line, run_json
from tests.test_notifications.conftest import SmtpSink
from tests.test_notifications.conftest import smtp as smtp  # the SMTP server fixture

DEAD_MAIL = "mailto://127.0.0.1:9?from=office@bridgebsr.example"  # nothing listens on port 9


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
    prefixes = ("IP", "LSF", "SME", "CSA", "IPA", "FIN", "IAP", "ICR", "MENT")
    assert all(x["title"].startswith(tuple(f"{p}-" for p in prefixes)) for x in singles)

    again = run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    assert again["sent"] == 0
    assert run_json(home, "notifications", "list", "--status", "pending") == []
    assert len(run_json(home, "notifications", "list", "--status", "sent")) == len(pending)


def test_an_unreachable_mail_server_fails_with_retries_and_no_secret_in_sight(
    home: Path,
) -> None:
    # Nothing listens on port 9 of loopback: every email fails, and is retried later.
    env = _env(home) | {"BRIDGEBSR_EMAIL_URL": f"{DEAD_MAIL}&user=office&pass=canary-S3cr3t"}
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

    # Five such passes leave them failed; `retry` queues those tried since a time again.
    _fail(home, [r["id"] for r in rows])
    later = run_json(home, "notifications", "retry", "--since", "2026-11-26T13:00")
    assert later == {"requeued": 0, "notices": []}
    again = run_json(home, "notifications", "retry", "--since", AS_OF, "--as-of", AS_OF)
    assert again == {"requeued": len(rows), "notices": sorted(r["id"] for r in rows)}
    listed = run_json(home, "notifications", "list")
    assert {(r["status"], r["attempts"]) for r in listed} == {("pending", 0)}
    assert all("before: email: E-Mail: failure" in r["error"] for r in listed)


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


def test_a_refused_login_reads_as_such_in_the_outbox_and_the_receipts(
    home: Path, smtp: SmtpSink
) -> None:
    smtp.deny_login = True
    env = {"BRIDGEBSR_EMAIL_URL": smtp.url("office", "canary-S3cr3t")}
    done = run_here(home, "notifications", "dispatch", "--as-of", AS_OF, "--json", env=env)
    assert done.returncode == 0, done.stderr
    why = "email: E-Mail: failure (SMTP 535 5.7.8 Authentication credentials invalid)"
    rows = run_json(home, "notifications", "list")
    assert {(r["status"], r["error"]) for r in rows} == {("pending", why)}
    receipts = run_json(home, "notifications", "receipts", "--limit", "1000")
    assert receipts and all(why in r["channels"] for r in receipts)
    assert "canary" not in done.stdout + done.stderr


def _fail(home: Path, ids: list[int]) -> None:
    """Mark rows as five failed attempts would have left them."""
    with closing(sqlite3.connect(home / "bridgebsr.db")) as db, db:
        db.execute(
            "UPDATE notifications SET status = 'failed', attempts = 5, next_attempt_at = NULL, "
            "last_error = 'email: E-Mail: failure (SMTP 535 5.7.8 Authentication "
            f"credentials invalid)' WHERE id IN ({','.join('?' * len(ids))})",
            ids,
        )


@pytest.mark.parametrize(
    "url",
    ["mailto://office:abc@Leaky#x@smtp.example.org", "mailto://office:abc@Leaky@127.0.0.1:9"],
    ids=["hash", "two-at"],
)
def test_a_mail_url_with_an_unescaped_at_or_hash_is_refused_before_any_row_is_touched(
    home: Path, url: str
) -> None:
    before = run_json(home, "notifications", "list")
    done = run_here(
        home, "notifications", "dispatch", "--as-of", AS_OF, env={"BRIDGEBSR_EMAIL_URL": url}
    )
    assert_one_error_line(done, "BRIDGEBSR_EMAIL_URL", "@ as %40, # as %23")
    assert "abc" not in done.stderr and "Leaky" not in done.stderr
    assert run_json(home, "notifications", "list") == before  # no attempt spent, none claimed
    assert run_json(home, "notifications", "receipts") == []


def test_an_apprise_config_that_is_not_there_is_refused(home: Path) -> None:
    missing = home / "apprise.yml"
    done = run_here(
        home, "notifications", "dispatch", env={"BRIDGEBSR_APPRISE_CONFIG": str(missing)}
    )
    assert_one_error_line(done, f"BRIDGEBSR_APPRISE_CONFIG {missing} is not a file")


def test_retry_queues_one_persons_failed_notices_again_and_audits_it(home: Path) -> None:
    rows = run_json(home, "notifications", "list")
    mine = [r for r in rows if r["recipient"] == rows[0]["recipient"]]
    other = next(r for r in rows if r["recipient"] != rows[0]["recipient"])
    _fail(home, [r["id"] for r in [*mine, other]])

    env = {"BRIDGEBSR_ACTOR": "ops@bridgebsr.example"}
    who = mine[0]["recipient"].upper()
    done = run_here(home, "notifications", "retry", "--recipient", who, "--as-of", AS_OF, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"queued again {len(mine)} failed notice(s)")
    listed = {r["id"]: r for r in run_json(home, "notifications", "list")}
    for row in mine:
        assert (listed[row["id"]]["status"], listed[row["id"]]["attempts"]) == ("pending", 0)
        assert listed[row["id"]]["error"].startswith("queued again by ops@bridgebsr.example")
        assert listed[row["id"]]["error"].endswith(
            "before: email: E-Mail: failure (SMTP 535 5.7.8 Authentication credentials invalid)"
        )  # noqa: E501
    assert listed[other["id"]]["status"] == "failed"
    history = run_json(home, "case", "show", mine[0]["case"])["events"]
    retried = [e for e in history if e["kind"] == "notices.retried"]
    assert [(e["actor"], e["source"]) for e in retried] == [("ops@bridgebsr.example", "cli")]
    assert set(retried[0]["after"]["notices"]) <= {r["id"] for r in mine}

    sent = run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    assert sent["sent"] == len(rows) - 1  # the requeued ones went, the other is still failed
    assert_one_error_line(
        run_here(home, "notifications", "retry", "--recipient", "nobody@nowhere.example"),
        "no contact nobody@nowhere.example",
    )


def test_a_full_disk_under_the_local_log_stops_dispatch_in_one_line(home: Path) -> None:
    # /dev/full takes no byte: every write fails with "No space left on device".
    (home / "notifications.log").symlink_to("/dev/full")
    before = run_json(home, "notifications", "list")
    done = run_here(home, "notifications", "dispatch", "--as-of", AS_OF)
    assert_one_error_line(
        done, f"disk full at {home}/notifications.log; free space and run dispatch again"
    )
    after = run_json(home, "notifications", "list")
    assert not any(r["status"] == "sent" for r in after)
    tried = [r for r in after if r["attempts"]]
    assert tried and all(r["status"] == "pending" for r in tried)
    assert all(r["error"] == f"local: disk full at {home}/notifications.log" for r in tried)
    assert len(after) == len(before)


def test_a_full_sqlite_store_says_the_disk_is_full_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "full.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn, pytest.raises(OperationalError) as full:
        conn.exec_driver_sql("CREATE TABLE notes (body TEXT)")
        conn.exec_driver_sql("PRAGMA max_page_count = 3")  # SQLite's own "disk is full"
        conn.exec_driver_sql("INSERT INTO notes VALUES (?)", ("x" * 100_000,))
    engine.dispose()
    assert "database or disk is full" in str(full.value)
    monkeypatch.setenv("BRIDGEBSR_DATABASE_URL", f"sqlite:///{db}")
    assert str(store_trouble(full.value)) == (
        f"disk full at {db}; free space and run the command again"
    )


def test_list_refuses_an_unknown_status(home: Path) -> None:
    assert_one_error_line(
        run_here(home, "notifications", "list", "--status", "lost"), "--status 'lost'", "pending"
    )


def test_dispatch_before_init_says_what_to_run(tmp_path: Path) -> None:
    assert_one_error_line(run(tmp_path / "none", "notifications", "dispatch"), "bridgebsr init")


def test_preferences_shape_what_dispatch_sends_and_receipts_show_it(home: Path) -> None:
    # A case owner told only of their own items, and the SME pilot's lead, who also stands in
    # for the coordinator the SMEs' requests have none of.
    owner, lead = "oskar.lundback@lundback-dx.example", "soren.ostergaard@scanbalt.example"
    prefs = run_json(home, "contacts", "prefs", owner, "--digest", "--quiet", "none")
    assert prefs | {"delivery": "digest", "quiet_hours": "none"} == prefs
    run_json(home, "contacts", "prefs", lead, "--cap", "3", "--quiet", "none")
    assert_one_error_line(
        run_here(home, "contacts", "prefs", owner, "--quiet", "late"),
        "--quiet: 'late'",
        "HH:MM-HH:MM",
    )
    waiting = run_json(home, "notifications", "list")
    to_owner = [r for r in waiting if r["recipient"] == owner]
    to_lead = [r for r in waiting if r["recipient"] == lead]
    assert to_owner and not any(r["urgent"] for r in to_owner)
    assert len(to_lead) > 4 and any(r["urgent"] for r in to_lead)

    run_json(home, "notifications", "dispatch", "--as-of", AS_OF)
    # The case owner's notices are not urgent: they wait for tomorrow's digest.
    assert run_json(home, "notifications", "receipts", "--recipient", owner) == []
    listed = {r["id"]: r for r in run_json(home, "notifications", "list")}
    assert {listed[r["id"]]["status"] for r in to_owner} == {"held"}
    # The lead's cap of 3: three notices, then one summary with the rest.
    receipts = run_json(home, "notifications", "receipts", "--recipient", lead)
    assert sorted((r["kind"], r["notices"]) for r in receipts) == [
        ("notice", 1),
        ("notice", 1),
        ("notice", 1),
        ("overflow", len(to_lead) - 3),
    ]
    assert all(r["ok"] and r["channels"] == "local: sent" for r in receipts)
    assert {listed[r["id"]]["status"] for r in to_lead} == {"sent"}


NIGHT = "2026-11-26T23:30"  # Thursday night in Copenhagen: everyone's quiet hours


def _digest_reader(home: Path) -> tuple[str, int]:
    """Someone with notices that are not urgent, now taking a digest at any hour; and how
    many of their notices the digest will carry."""
    waiting = run_json(home, "notifications", "list")
    reader = next(r["recipient"] for r in waiting if not r["urgent"])
    run_json(home, "contacts", "prefs", reader, "--digest", "--quiet", "none")
    return reader, sum(1 for r in waiting if r["recipient"] == reader and not r["urgent"])


def test_dispatch_says_why_notices_are_held_and_until_when(home: Path) -> None:
    _, later = _digest_reader(home)
    report = run_json(home, "notifications", "dispatch", "--as-of", NIGHT)
    held = report["held_for"]
    assert set(held) == {"digest", "quiet_hours"}
    assert sum(h["count"] for h in held.values()) == report["held"]
    # The digest goes at 08:00 on Friday in the reader's time; the night ends at 07:00 in
    # each reader's own, an hour or two apart across the region.
    assert held["digest"]["count"] == later
    assert held["digest"]["earliest"] == held["digest"]["latest"]
    assert held["digest"]["earliest"].startswith("2026-11-27T0")
    night = held["quiet_hours"]
    assert "2026-11-27T04:00" <= night["earliest"] <= night["latest"] <= "2026-11-27T07:00"


def test_dispatch_text_says_why_notices_are_held(home: Path) -> None:
    _digest_reader(home)
    done = run_here(home, "notifications", "dispatch", "--as-of", NIGHT)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("  held: ")]
    when = r"2026-11-27 \d\d:\d\d CET"
    assert re.fullmatch(
        rf"  held: \d+ for a digest until {when}; \d+ in quiet hours until {when}( to {when})?",
        line,
    ), line


def test_two_worker_processes_deliver_each_notice_once(home: Path) -> None:
    pending = run_json(home, "notifications", "list", "--status", "pending")
    sent = run_json(home, "notifications", "dispatch", "--as-of", AS_OF, "--workers", "2")
    assert sent["sent"] == len(pending) and sent["failed"] == sent["retrying"] == 0
    lines = [json.loads(x) for x in (home / "notifications.log").read_text().splitlines()]
    assert len(lines) == sent["messages"]
    receipts = run_json(home, "notifications", "receipts", "--limit", "1000")
    assert len(receipts) == len(lines) and sum(r["notices"] for r in receipts) == len(pending)
    assert run_json(home, "notifications", "list", "--status", "pending") == []
