"""Dispatching the outbox: claim due rows, deliver each, record the outcome, retry with backoff.

Rows are claimed with one UPDATE that pushes their next attempt a lease ahead, so two
dispatchers never take the same row; delivery is at least once (a crash between sending and
recording sends that row again at the next pass). A row that keeps failing is `failed` after
`max_attempts`; other recipients are not held up by it. A notice due in the recipient's local
night (21:00 to 07:00) is `held` until the morning.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, or_, select, update
from sqlmodel import Session, col

from models import Contact, Notification, NotificationStatus, Partner
from notifications.post import ChannelResult, PostOffice
from notifications.render import render

QUIET_FROM, QUIET_UNTIL = time(21, 0), time(7, 0)  # the recipient's local night
LEASE = timedelta(minutes=10)
FIRST_RETRY = timedelta(minutes=2)
LONGEST_RETRY = timedelta(hours=6)


@dataclass
class DispatchReport:
    """What one dispatch pass did."""

    sent: int = 0
    held: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts for the CLI and the flow."""
        return {
            "sent": self.sent,
            "held": self.held,
            "retrying": self.retrying,
            "failed": self.failed,
        }


def backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: 2 min, 4, 8, ... at most 6 hours."""
    wait: timedelta = FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(wait, LONGEST_RETRY)


def quiet_until(now: datetime, zone: str) -> datetime | None:
    """When the recipient's night ends, if `now` falls in it (None in the daytime)."""
    local = now.astimezone(ZoneInfo(zone))
    if QUIET_UNTIL <= local.time() < QUIET_FROM:
        return None
    morning = local.date() + timedelta(days=1 if local.time() >= QUIET_FROM else 0)
    return datetime.combine(morning, QUIET_UNTIL, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _claim(engine: Engine, now: datetime, batch: int) -> list[int]:
    due = and_(
        col(Notification.status).in_([NotificationStatus.PENDING, NotificationStatus.HELD]),
        or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
    )
    with Session(engine.execution_options(sqlite_immediate=True)) as session:
        ids = (
            session.execute(
                select(col(Notification.id)).where(due).order_by(col(Notification.id)).limit(batch)
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        claimed = (
            session.execute(
                update(Notification)
                .where(col(Notification.id).in_(ids), due)
                .values(next_attempt_at=now + LEASE)
                .returning(col(Notification.id))
                .execution_options(synchronize_session=False)
            )
            .scalars()
            .all()
        )
        session.commit()
    return sorted(int(i) for i in claimed)


def dispatch(
    engine: Engine,
    *,
    now: datetime,
    post: PostOffice,
    max_attempts: int = 5,
    batch: int = 200,
) -> DispatchReport:
    """Deliver every pending notice due by `now`."""
    report = DispatchReport()
    while ids := _claim(engine, now, batch):
        with Session(engine) as session:
            rows = session.execute(
                select(Notification, col(Contact.email), col(Contact.timezone), col(Partner.code))
                .join(Contact, col(Contact.id) == Notification.recipient_id)
                .join(Partner, col(Partner.id) == Contact.partner_id)
                .where(col(Notification.id).in_(ids))
            ).all()
            outcomes: list[
                tuple[int | None, int, datetime | tuple[list[ChannelResult], list[str]]]
            ] = []
            for note, email, zone, partner in rows:
                morning = quiet_until(now, zone)
                if morning is not None:
                    outcomes.append((note.id, note.attempts, morning))
                    continue
                tags = [email, partner, str(note.payload.get("pilot", ""))]
                done = frozenset(note.delivered or [])
                sent = post.deliver(to=email, tags=tags, message=render(note.payload), done=done)
                took = sorted(done | {r.channel for r in sent if r.ok})
                outcomes.append((note.id, note.attempts + 1, (sent, took)))
        with Session(engine.execution_options(sqlite_immediate=True)) as session:
            for note_id, attempts, outcome in outcomes:
                if isinstance(outcome, datetime):
                    _hold(session, note_id, outcome, report)
                else:
                    results, took = outcome
                    _record(session, note_id, attempts, results, now, max_attempts, report)
                    _remember(session, note_id, took)
            session.commit()
    return report


def _remember(session: Session, note_id: int | None, took: list[str]) -> None:
    session.execute(
        update(Notification)
        .where(col(Notification.id) == note_id)
        .values(delivered=took)
        .execution_options(synchronize_session=False)
    )


def _hold(session: Session, note_id: int | None, morning: datetime, report: DispatchReport) -> None:
    """Keep a notice through the recipient's night; it goes out at the first pass after."""
    session.execute(
        update(Notification)
        .where(col(Notification.id) == note_id)
        .values(status=NotificationStatus.HELD, next_attempt_at=morning)
        .execution_options(synchronize_session=False)
    )
    report.held += 1


def _record(
    session: Session,
    note_id: int | None,
    attempts: int,
    results: list[Any],
    now: datetime,
    max_attempts: int,
    report: DispatchReport,
) -> None:
    ok = all(r.ok for r in results)
    values: dict[str, Any] = {"attempts": attempts}
    if ok:
        values |= {"status": NotificationStatus.SENT, "sent_at": now, "last_error": None}
        report.sent += 1
    else:
        error = "; ".join(f"{r.channel}: {r.detail or 'failed'}" for r in results if not r.ok)
        values["last_error"] = error
        if attempts >= max_attempts:
            values |= {"status": NotificationStatus.FAILED, "next_attempt_at": None}
            report.failed += 1
        else:
            values["next_attempt_at"] = now + backoff(attempts)
            report.retrying += 1
        report.errors.append(f"notice {note_id}: {error}")
    session.execute(
        update(Notification)
        .where(col(Notification.id) == note_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
