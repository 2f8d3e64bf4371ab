"""Quiet hours: a notice due in the recipient's local night waits for the morning."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_demo
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.store.db import read_session
from models import Contact, Notification, NotificationStatus
from notifications.outbox import dispatch, quiet_until
from notifications.post import PostOffice


@pytest.mark.parametrize(
    ("at", "zone", "until"),
    [
        ("2026-11-26T12:00+00:00", "Europe/Copenhagen", None),
        ("2026-11-26T05:59+00:00", "Europe/Copenhagen", "2026-11-26T06:00+00:00"),  # 06:59
        ("2026-11-26T05:30+00:00", "Europe/Helsinki", None),  # 07:30 in Helsinki: day
        ("2026-11-26T21:30+00:00", "Europe/Copenhagen", "2026-11-27T06:00+00:00"),
        ("2026-11-27T02:00+00:00", "Europe/Copenhagen", "2026-11-27T06:00+00:00"),
        ("2026-11-26T19:30+00:00", "Europe/Helsinki", "2026-11-27T05:00+00:00"),
    ],
)
def test_quiet_until_is_the_end_of_the_recipients_night(
    at: str, zone: str, until: str | None
) -> None:
    now = datetime.fromisoformat(at)
    expected = datetime.fromisoformat(until) if until else None
    assert quiet_until(now, zone) == expected


def test_night_notices_are_held_then_delivered_in_the_morning(
    consortium: Runtime, tmp_path: Path
) -> None:
    rt = consortium
    load_demo(rt, datetime(2026, 11, 26).date())
    evening = datetime(2026, 11, 26, 22, 30, tzinfo=UTC)  # night from Lisbon to Tallinn
    run_monitor(rt.engine, now=evening, zone=rt.settings.timezone)
    post = PostOffice(email_url=None, apprise_config=None, local_log=tmp_path / "out.log")

    night = dispatch(rt.engine, now=evening, post=post)
    assert night.sent == 0 and night.held > 0
    assert not (tmp_path / "out.log").exists()
    with read_session(rt.engine) as session:
        held = session.execute(
            select(Notification.next_attempt_at, Contact.timezone)
            .join(Contact, Contact.id == Notification.recipient_id)  # type: ignore[arg-type]
            .where(Notification.status == NotificationStatus.HELD)
        ).all()
    assert len(held) == night.held
    assert all(when is not None and when > evening for when, _ in held)

    still_night = dispatch(rt.engine, now=evening + timedelta(hours=2), post=post)
    assert still_night.sent == 0

    morning = dispatch(rt.engine, now=evening + timedelta(hours=10), post=post)
    assert morning.sent == night.held and morning.held == 0
    # One line per message: past a recipient's daily cap, one summary carries the rest.
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert len(lines) == morning.messages and all(json.loads(x)["to"] for x in lines)
