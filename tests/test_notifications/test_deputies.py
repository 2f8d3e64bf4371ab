"""Notices of someone away reach their deputy, through the real pipeline (monitor, outbox,
dispatch, the `bridgebsr://` local log) on SQLite and PostgreSQL: while the person is away
the deputy gets them with a line saying for whom, and afterwards the person does again. And
the digest day follows the working-day calendar the ladders use (German states too)."""

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import col, select

from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import people
from bridgebsr.office.delivery import deliver
from bridgebsr.store.db import read_session, write_session
from models import Contact, Delivery, NotificationStatus
from notifications.preferences import Recipient, digest_time
from tests.conftest import at
from tests.test_notifications.conftest import COORDINATOR, DESK_OWNER, LEAD, ZONE, Outbox

DEPUTY = "anders.bogh@scanbalt.example"  # case-owner at SCANBALT


def _log(outbox: Outbox) -> list[dict[str, Any]]:
    path = outbox.rt.settings.home / "notifications.log"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _away(outbox: Outbox, who: str, last: date) -> None:
    with write_session(outbox.engine) as session:
        people.set_absence(
            session=session, email=who, starts=outbox.day, ends=last, deputy=DEPUTY, now=outbox.now
        )


def test_the_deputy_gets_the_notices_while_the_person_is_away_and_then_no_more(
    outbox: Outbox,
) -> None:
    last = date(2026, 5, 31)
    _away(outbox, LEAD, last)
    _away(outbox, COORDINATOR, last)

    report = deliver(outbox.rt, now=outbox.now, workers=1)

    assert report.sent == 5
    lines = _log(outbox)
    assert sorted(line["to"] for line in lines) == sorted([DEPUTY] * 4 + [DESK_OWNER])
    for line in lines:
        if line["to"] == DEPUTY:
            whom = LEAD if f"(for {LEAD})" in line["title"] else COORDINATOR
            assert line["title"].endswith(f"(for {whom})")
            assert line["body"].startswith(
                f"For {whom}, who is away until Sunday 31 May 2026: you are their deputy."
            )
        else:
            assert "(for " not in line["title"] and "away until" not in line["body"]
    # The outbox rows stay addressed to the absent people; the receipts name who read them.
    recipients = outbox.recipients()
    assert sorted(recipients.values()) == sorted([COORDINATOR, DESK_OWNER, LEAD, LEAD, LEAD])
    assert all(r.status is NotificationStatus.SENT for r in outbox.rows())
    with read_session(outbox.engine) as session:
        readers = session.exec(
            select(Contact.email).join(Delivery, col(Delivery.recipient_id) == Contact.id)
        ).all()
    assert sorted(readers) == sorted([DEPUTY] * 4 + [DESK_OWNER])

    # On 1 June the coordinator is back: the desk study's next step reaches them.
    back = datetime(2026, 6, 1, 7, tzinfo=UTC)
    run_monitor(outbox.engine, now=back, zone=ZONE)
    deliver(outbox.rt, now=back.replace(hour=10), workers=1)
    (fresh,) = _log(outbox)[len(lines) :]
    assert fresh["to"] == COORDINATOR
    assert "away until" not in fresh["body"] and "(for " not in fresh["title"]


def test_a_notice_held_past_the_absence_goes_to_the_person(outbox: Outbox) -> None:
    """Who reads a notice is decided when it goes: held for the deputy's night, it goes to
    the person, back in the morning."""
    _away(outbox, LEAD, outbox.day)
    night = datetime.combine(outbox.day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=21)
    report = deliver(outbox.rt, now=night, workers=1)  # 23:00 in Copenhagen: everyone's night
    assert report.sent == 0 and report.held == 5
    morning = at((outbox.day + timedelta(days=1)).isoformat(), 7)  # 09:00 in Copenhagen
    deliver(outbox.rt, now=morning, workers=1)
    assert sorted(line["to"] for line in _log(outbox)) == sorted(
        [COORDINATOR, DESK_OWNER, LEAD, LEAD, LEAD]
    )


def test_the_digest_day_follows_the_ladders_working_days() -> None:
    # Reformation Day (Thursday 31 October 2024) is a holiday in Mecklenburg-Vorpommern, not
    # in all of Germany: a reader at a partner there gets their digest on Friday.
    reader = Recipient(
        id=1,
        email="a@b.example",
        partner="BCV",
        zone="Europe/Berlin",
        country="DE",
        partner_country="DE",
        region="Mecklenburg-Vorpommern",
    )
    created = datetime(2024, 10, 30, 12, tzinfo=UTC)
    calendar = people.working_days(reader)
    assert calendar is not None
    assert digest_time(created, reader.zone, "DE", calendar) == datetime(2024, 11, 1, 7, tzinfo=UTC)
    assert digest_time(created, reader.zone, "DE") == datetime(2024, 10, 31, 7, tzinfo=UTC)
    # A reader at a partner elsewhere keeps their own country's days only.
    abroad = Recipient(1, "a@b.example", "MVA", "Europe/Berlin", country="DE",
                       partner_country="SE", region="Mecklenburg-Vorpommern")  # fmt: skip
    calendar = people.working_days(abroad)
    assert calendar is not None
    assert digest_time(created, abroad.zone, "DE", calendar) == datetime(
        2024, 10, 31, 7, tzinfo=UTC
    )
