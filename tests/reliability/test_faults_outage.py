"""Faults: outages of the database, the SMTP server and webhooks, and the
recovery after them.

- The database goes away mid-dispatch: a private PostgreSQL instance (initdb on its own port
  in a temp dir, never the shared server) is stopped with `pg_ctl stop -m immediate` while
  `bridgebsr notifications dispatch` delivers. The command fails with exit 1 and one clear
  line, and so does a pass started while it is down; after a restart the outbox is intact
  (no row lost, none half-recorded, receipts only for sent rows), and a pass past the lease
  delivers the rest: every notice received, duplicates exactly the messages delivered but
  not recorded when the database went (counted), none more than twice.
- The SMTP server refuses (554) for two passes, then accepts: retries wait their backoff,
  and after recovery each notice arrives exactly once, with a receipt per attempt.
- One partner's webhook answers 500 and another's hangs past the timeout for two passes,
  then both recover: every notice is accepted (200) exactly once; the hung POSTs the
  receiver took are the only duplicates, counted.

(tests/test_notifications/test_delivery.py covers a single failing pass and retries running
out; these cover the outage ending.)
"""

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bridgebsr.store.db import make_engine
from notifications.outbox import LEASE, backoff, dispatch
from notifications.post import PostOffice
from tests.reliability._outbox import (
    IN_CI,
    NOW,
    Box,
    OutboxRow,
    PostgresUnavailable,
    PrivatePostgres,
    Receipt,
    Receiver,
    cli,
    fill_outbox,
    hook,
    kill,
    note,
    outbox,
    outputs,
    receipts,
    sized,
    smtp_sink,
    write_config,
)

pytestmark = pytest.mark.slow

NOTICES = sized(300, 2_000)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL instance of our own, started; removed after the module."""
    try:
        pg = PrivatePostgres()
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"a private PostgreSQL instance is required in CI (CI=true): {exc}")
        pytest.skip(f"cannot run a private PostgreSQL instance here: {exc}")
    try:
        pg.start()
    except PostgresUnavailable as exc:
        pg.cleanup()
        if IN_CI:
            pytest.fail(f"a private PostgreSQL instance is required in CI (CI=true): {exc}")
        pytest.skip(f"cannot start a private PostgreSQL instance here: {exc}")
    yield pg
    pg.cleanup()


@dataclass
class Outage:
    """A dispatch pass the database went away under, one started while it was down, the
    outbox after the restart, and the pass that recovered."""

    box: Box
    failed: tuple[int | None, str, str]  # exit code, stdout, stderr
    down: tuple[int | None, str, str]
    posted: set[str]  # notices the receiver got before the recovery pass
    after_restart: dict[str, OutboxRow]
    receipts_after_restart: list[Receipt]
    recovered: tuple[int | None, str, str]
    rows: dict[str, OutboxRow]
    slips: list[Receipt]
    tally: Counter[str]

    @property
    def sent_before(self) -> set[str]:
        return {t for t, r in self.after_restart.items() if r.status == "sent"}


@pytest.fixture(scope="module")
def outage(private_pg: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory) -> Outage:
    """Stop the private PostgreSQL (`-m immediate`) once a dispatch pass has delivered a
    few notices; try a pass while it is down; start it; dispatch past the lease."""
    pg, tmp = private_pg, tmp_path_factory.mktemp("outage")
    home = tmp / "home"
    box = fill_outbox(pg.url, home, NOTICES)
    with Receiver() as rx:
        rx.delay = 0.02  # slow enough that the outage lands mid-delivery
        config = write_config(tmp / "apprise.yml", rx.port, box.partners())

        def dispatch_pass(name: str, now: str) -> tuple[int | None, str, str]:
            args = ["notifications", "dispatch", "--as-of", now, "--json"]
            process = cli(args, home=home, url=pg.url, config=config, out=tmp / name)
            try:
                if name == "outage":
                    deadline = time.monotonic() + 60
                    while rx.count() < 20 and process.poll() is None:
                        assert time.monotonic() < deadline, "no delivery started"
                        time.sleep(0.005)
                    pg.stop("immediate")
                process.wait(300)
            finally:
                kill(process)
            return (process.returncode, *outputs(tmp / name))

        failed = dispatch_pass("outage", NOW.isoformat())
        down = dispatch_pass("down", NOW.isoformat())
        posted = {h.token for h in rx.received()}
        pg.start()
        engine = make_engine(pg.url)
        try:
            after_restart, receipts_after_restart = outbox(engine), receipts(engine)
            later = (NOW + LEASE + timedelta(minutes=1)).isoformat()
            recovered = dispatch_pass("recovery", later)
            rows, slips = outbox(engine), receipts(engine)
        finally:
            engine.dispose()
        tally = rx.tally()
    return Outage(
        box,
        failed,
        down,
        posted,
        after_restart,
        receipts_after_restart,
        recovered,
        rows,
        slips,
        tally,
    )


@pytest.mark.postgres
def test_the_database_going_away_mid_dispatch_fails_cleanly_and_loses_nothing(
    outage: Outage,
) -> None:
    box = outage.box
    # The pass it happened to, and one started while it lasted: exit 1, an error, no traceback.
    for code, stdout, stderr in (outage.failed, outage.down):
        assert code == 1, (code, stdout, stderr)
        assert "Traceback" not in stdout + stderr, stderr
        assert stderr.startswith("error: cannot use the case store: "), stderr
        assert stderr.rstrip().endswith("check BRIDGEBSR_DATABASE_URL"), stderr
    # After the restart nothing is lost or half-recorded: each row pending (untouched) or
    # sent with its receipt; receipts only for the sent rows.
    rows = outage.after_restart
    sent = outage.sent_before
    assert len(rows) == box.size
    assert {r.status for r in rows.values()} <= {"pending", "sent"}
    assert sorted(rows[t].delivery_id or 0 for t in sent) == sorted(
        s.id for s in outage.receipts_after_restart
    )
    unsent = [r for t, r in rows.items() if t not in sent]
    assert all(r.delivery_id is None and r.attempts == 0 for r in unsent)
    owed = outage.posted - sent  # delivered before the outage, not recorded
    assert owed, "the outage came before any delivery was left unrecorded"
    # The pass after the lease delivers the rest.
    code, stdout, stderr = outage.recovered
    assert code == 0, (stdout, stderr)
    assert json.loads(stdout)["sent"] == box.size - len(sent)
    assert set(outage.tally) == set(box.path_of)  # every notice received
    assert {t for t, n in outage.tally.items() if n > 1} == owed  # the duplicates: these
    assert max(outage.tally.values()) == 2
    assert Counter(r.status for r in outage.rows.values()) == {"sent": box.size}
    assert len(outage.slips) == box.size and all(s.ok for s in outage.slips)
    note(
        f"database outage mid-dispatch over {box.size} notices: {len(outage.posted)} "
        f"received before the recovery, {len(sent)} of them recorded, {len(owed)} sent twice; "
        f"error {outage.failed[2]!r}"
    )


@pytest.mark.postgres
def test_a_database_outage_is_reported_in_one_line(outage: Outage) -> None:
    for _code, _stdout, stderr in (outage.failed, outage.down):
        assert len(stderr.strip().splitlines()) == 1, stderr


def test_smtp_refusing_then_recovering_delivers_each_notice_once(tmp_path: Path) -> None:
    box = fill_outbox(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "home", 12)
    engine = box.engine()
    try:
        with smtp_sink() as sink:
            sink.refuse = True
            post = PostOffice(
                email_url=sink.url(), apprise_config=None, local_log=tmp_path / "local.log"
            )
            now = NOW
            for attempt in (1, 2):  # the server refuses every message, twice
                report = dispatch(engine, now=now, post=post)
                assert (report.sent, report.retrying) == (0, box.size)
                rows = outbox(engine)
                assert {r.attempts for r in rows.values()} == {attempt}
                assert {r.next_attempt_at for r in rows.values()} == {now + backoff(attempt)}
                assert all((r.last_error or "").startswith("email: ") for r in rows.values())
                early = dispatch(
                    engine, now=now + backoff(attempt) - timedelta(seconds=1), post=post
                )
                assert early.summary()["messages"] == early.retrying == 0  # it waits
                now += backoff(attempt)
            assert sink.received() == []

            sink.refuse = False  # the server is back
            report = dispatch(engine, now=now, post=post)
            assert (report.sent, report.retrying, report.failed) == (box.size, 0, 0)
            later = dispatch(engine, now=now + timedelta(days=1), post=post)
            assert later.sent == later.retrying == 0
            received = sink.received()
        rows, slips = outbox(engine), receipts(engine)
    finally:
        engine.dispose()

    mails = Counter((subject.split(":", 1)[0], to) for subject, to in received)
    assert mails == Counter({(t, (e,)): 1 for t, e in box.email_of.items()})
    assert all(
        (r.status, r.attempts, r.last_error, r.delivered) == ("sent", 3, None, ("email",))
        for r in rows.values()
    )
    assert Counter(s.ok for s in slips) == {False: 2 * box.size, True: box.size}


def test_webhooks_failing_or_hanging_recover_with_each_notice_accepted_once(
    tmp_path: Path,
) -> None:
    box = fill_outbox(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "home", 90)
    broken, hanging = (hook(p) for p in box.partners()[:2])
    down = {t for t, p in box.path_of.items() if p in {broken, hanging}}
    engine = box.engine()
    try:
        with Receiver() as rx:
            config = write_config(tmp_path / "apprise.yml", rx.port, box.partners())
            post = PostOffice(
                email_url=None,
                apprise_config=config,
                local_log=tmp_path / "local.log",
                timeout=0.5,
            )
            rx.statuses[broken] = 500
            rx.delays[hanging] = 3.0  # past the 0.5 s timeout
            now = NOW
            for attempt in (1, 2):  # a two-pass outage
                report = dispatch(engine, now=now, post=post)
                assert report.retrying == len(down) and report.failed == 0
                assert report.sent == (box.size - len(down) if attempt == 1 else 0)
                now += backoff(attempt)
            rx.heal()
            report = dispatch(engine, now=now, post=post)
            assert (report.sent, report.retrying, report.failed) == (len(down), 0, 0)
            hits = rx.received()
        rows, slips = outbox(engine), receipts(engine)
    finally:
        engine.dispose()

    accepted = Counter(h.token for h in hits if h.status == 200 and not h.delay)
    assert accepted == Counter(dict.fromkeys(box.path_of, 1))  # each accepted exactly once
    refused = Counter(h.token for h in hits if h.status == 500)
    hung = Counter(h.token for h in hits if h.delay)
    assert refused == Counter({t: 2 for t, p in box.path_of.items() if p == broken})
    assert hung == Counter({t: 2 for t, p in box.path_of.items() if p == hanging})
    # The receiver took each hung POST, so those notices reached it three times: the
    # duplicates at-least-once delivery allows, counted by their failed receipts.
    assert all(r.status == "sent" and r.delivered == ("chat",) for r in rows.values())
    assert all(
        r.attempts == (3 if t in down else 1) and r.last_error is None for t, r in rows.items()
    )
    assert len(slips) == box.size + 2 * len(down)
    assert sum(not s.ok for s in slips) == 2 * len(down)
    note(
        f"webhooks: {len(refused)} notices refused (500) twice, {len(hung)} hung twice "
        f"(received 3 times, accepted once), {box.size - len(down)} unaffected"
    )
