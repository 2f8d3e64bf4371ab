"""Each reader's preferences decide what goes when: quiet hours in their zone, a daily digest
for what is not urgent, and a daily cap with one overflow summary (pure rules, then the same
rules through dispatch, an SMTP server and the receipts table)."""

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bridgebsr.office import directory
from bridgebsr.store.db import read_session, write_session
from models import Contact, Delivery, Notification, NotificationStatus
from notifications.outbox import Recipient, Row, digest_time, dispatch, plan, quiet_until
from notifications.post import PostOffice
from tests.test_notifications.conftest import LEAD, Outbox, SmtpSink

THURSDAY_NOON = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)  # 12:00 in Copenhagen


def _reader(**prefs: object) -> Recipient:
    values: dict[str, object] = {
        "id": 1,
        "email": "reader@partner.example",
        "partner": "P",
        "zone": "Europe/Copenhagen",
    }
    return Recipient(**(values | prefs))  # type: ignore[arg-type]


def _rows(n: int, *, urgent: int = 0, created: datetime = THURSDAY_NOON) -> list[Row]:
    return [
        Row(id=i, attempts=0, urgent=i < urgent, created_at=created, payload={"case": f"C{i}"})
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("at", "quiet", "until"),
    [
        ("2026-11-26T20:30+00:00", (time(22, 0), time(6, 30)), None),  # 21:30 is day for them
        ("2026-11-26T22:30+00:00", (time(22, 0), time(6, 30)), "2026-11-27T05:30+00:00"),
        ("2026-11-26T11:30+00:00", (time(12, 0), time(13, 0)), "2026-11-26T12:00+00:00"),
        ("2026-11-26T12:30+00:00", (time(12, 0), time(13, 0)), None),
        ("2026-11-26T23:00+00:00", None, None),  # no quiet hours at all
    ],
)
def test_quiet_hours_are_the_readers_own(
    at: str, quiet: tuple[time, time] | None, until: str | None
) -> None:
    expected = datetime.fromisoformat(until) if until else None
    assert quiet_until(datetime.fromisoformat(at), "Europe/Copenhagen", quiet) == expected


def test_digest_time_is_the_next_weekday_morning_in_the_readers_zone() -> None:
    friday_noon = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    assert digest_time(THURSDAY_NOON, "Europe/Copenhagen") == datetime(
        2026, 11, 27, 7, 0, tzinfo=UTC
    )
    assert digest_time(friday_noon, "Europe/Copenhagen") == datetime(
        2026, 11, 30, 7, 0, tzinfo=UTC
    )  # Monday
    early = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)  # 07:00 in Helsinki: today's digest
    assert digest_time(early, "Europe/Helsinki") == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def test_no_digest_goes_on_the_readers_public_holidays() -> None:
    christmas_eve = datetime(2026, 12, 24, 14, 0, tzinfo=UTC)  # a Thursday
    # Denmark: 25 and 26 December are holidays, then the weekend: Monday 28th, 08:00 local.
    assert digest_time(christmas_eve, "Europe/Copenhagen", "DK") == datetime(
        2026, 12, 28, 7, 0, tzinfo=UTC
    )
    # Without a country only weekends count: Friday the 25th.
    assert digest_time(christmas_eve, "Europe/Copenhagen") == datetime(
        2026, 12, 25, 7, 0, tzinfo=UTC
    )
    # Latvia's Midsummer (23 and 24 June) holds a digest reader's digest in Riga, not in Oslo.
    midsummer = datetime(2026, 6, 22, 12, 0, tzinfo=UTC)
    assert digest_time(midsummer, "Europe/Riga", "LV") == datetime(2026, 6, 25, 5, 0, tzinfo=UTC)
    assert digest_time(midsummer, "Europe/Oslo", "NO") == datetime(2026, 6, 23, 6, 0, tzinfo=UTC)
    # The plan holds the digest reader's rows until then.
    reader = _reader(cap=5, digest=True, country="DK")
    rows = _rows(2, created=christmas_eve)
    held = plan(reader, rows, christmas_eve + timedelta(days=1, hours=1))
    assert held.messages == []
    assert set(held.holds.values()) == {datetime(2026, 12, 28, 7, 0, tzinfo=UTC)}


def test_in_quiet_hours_everything_waits_for_the_end_of_the_night() -> None:
    night = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
    p = plan(_reader(cap=5), _rows(3, urgent=1), night)
    assert p.messages == []
    assert set(p.holds.values()) == {datetime(2026, 11, 27, 6, 0, tzinfo=UTC)}


def test_a_digest_reader_gets_urgent_now_and_the_rest_in_the_morning() -> None:
    rows = _rows(4, urgent=1)
    now = plan(_reader(digest=True), rows, THURSDAY_NOON)
    assert [(m.kind, [r.id for r in m.rows]) for m in now.messages] == [("notice", [0])]
    assert set(now.holds) == {1, 2, 3}

    morning = datetime(2026, 11, 27, 7, 30, tzinfo=UTC)
    later = plan(_reader(digest=True), rows[1:], morning)
    assert [(m.kind, [r.id for r in m.rows]) for m in later.messages] == [("digest", [1, 2, 3])]
    assert later.holds == {}


def test_past_the_cap_one_summary_carries_the_rest_then_they_wait_for_tomorrow() -> None:
    rows = _rows(8, urgent=2)
    p = plan(_reader(cap=3), rows, THURSDAY_NOON, sent_today=1)
    kinds = [(m.kind, [r.id for r in m.rows]) for m in p.messages]
    # urgent first, within the two messages left today; then one summary with the other six
    assert kinds == [("notice", [0]), ("notice", [1]), ("overflow", [2, 3, 4, 5, 6, 7])]

    after = plan(_reader(cap=3), rows[2:], THURSDAY_NOON, sent_today=4, summary_sent=True)
    assert after.messages == []
    assert set(after.holds.values()) == {datetime(2026, 11, 26, 23, 0, tzinfo=UTC)}  # midnight


def test_no_cap_sends_each_notice() -> None:
    p = plan(_reader(cap=0), _rows(30), THURSDAY_NOON, sent_today=100)
    assert len(p.messages) == 30 and p.holds == {}


# --- through dispatch ------------------------------------------------------------------------


def _set(outbox: Outbox, email: str, **changes: object) -> None:
    with write_session(outbox.engine) as session:
        directory.set_preferences(session=session, email=email, changes=changes)


def _office(tmp_path: Path, smtp: SmtpSink) -> PostOffice:
    return PostOffice(
        email_url=smtp.url(), apprise_config=None, local_log=tmp_path / "local.log", timeout=5
    )


def test_a_cap_of_one_gives_the_lead_one_notice_and_one_summary(
    tmp_path: Path, outbox: Outbox, smtp: SmtpSink
) -> None:
    assert list(outbox.recipients().values()).count(LEAD) == 3
    _set(outbox, LEAD, daily_cap=1)
    report = dispatch(outbox.engine, now=outbox.now, post=_office(tmp_path, smtp))

    to_lead = [m for m in smtp.received() if m.rcpt_tos == [LEAD]]
    assert len(to_lead) == 2 and report.summaries == 1
    summary = next(m for m in to_lead if "past your daily limit of 1" in m.subject)
    assert "IP-2026-0001" in summary.text and "<li>" in summary.html
    assert report.sent == len(outbox.rows())
    with read_session(outbox.engine) as session:
        lead_id = session.exec(select(Contact.id).where(Contact.email == LEAD)).one()
        receipts = session.exec(select(Delivery).where(Delivery.recipient_id == lead_id)).all()
        rows = session.exec(
            select(Notification).where(col(Notification.recipient_id) == lead_id)
        ).all()
    assert sorted((d.kind, d.notices, d.ok) for d in receipts) == [
        ("notice", 1, True),
        ("overflow", 2, True),
    ]
    assert {r.delivery_id for r in rows} == {d.id for d in receipts}
    assert all(d.channels == [{"channel": "email", "ok": True, "detail": ""}] for d in receipts)


def test_a_chat_only_reader_gets_no_email(tmp_path: Path, outbox: Outbox, smtp: SmtpSink) -> None:
    _set(outbox, LEAD, channels="chat")  # and no chat is configured: the local log takes it
    dispatch(outbox.engine, now=outbox.now, post=_office(tmp_path, smtp))
    assert LEAD not in {m.rcpt_tos[0] for m in smtp.received()}
    assert (tmp_path / "local.log").read_text().count(LEAD) == 3
    assert {r.status for r in outbox.rows()} == {NotificationStatus.SENT}


def test_a_digest_reader_gets_one_email_the_next_morning(
    tmp_path: Path, outbox: Outbox, smtp: SmtpSink
) -> None:
    _set(outbox, LEAD, digest=True)
    post = _office(tmp_path, smtp)
    first = dispatch(outbox.engine, now=outbox.now, post=post)
    assert LEAD not in {m.rcpt_tos[0] for m in smtp.received()}
    assert first.held == 3

    morning = digest_time(outbox.now, "Europe/Copenhagen", "DK") + timedelta(minutes=5)
    second = dispatch(outbox.engine, now=morning, post=post)
    to_lead = [m for m in smtp.received() if m.rcpt_tos == [LEAD]]
    assert second.digests == 1 and len(to_lead) == 1
    assert to_lead[0].subject.startswith("Daily digest") and "3 notice(s)" in to_lead[0].subject
    assert {r.status for r in outbox.rows()} == {NotificationStatus.SENT}
