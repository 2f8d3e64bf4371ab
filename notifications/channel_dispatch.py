"""Sending the channels' posts: claim the due ones, plan each channel's, post, record.

Due posts are claimed with one UPDATE that pushes their next attempt a lease ahead (as the
notices are), so two dispatchers never take the same post. Each channel's posts are planned
by the recipients' rule (`preferences.plan`) read for the channel (`Channel.reader`):

- in the channel's quiet hours (its local night, by its own time zone) nothing goes, urgent
  posts included: a team channel read in the morning loses nothing by waiting, and people
  who must be woken get their own notices under their own preferences; the posts are `held`
  until the night ends;
- with `digest` on, what is not urgent waits for one message at 08:00 in the channel's time
  zone on a working day (Monday to Friday, not a public holiday of the channel's country);
  urgent posts go one by one;
- there is no daily cap.

Before planning, dispatch asks the case office (an injected callable, once per claimed
batch) which posts are no longer wanted, as it does for notices: those are recorded
`obsolete` with the reason and neither posted nor carried in a digest.

A post is sent on every chat service tagged `channel:NAME` through Apprise (`PostOffice`);
one that fails is tried again after the outbox's backoff (`preferences.backoff`) and is
`failed` after `max_attempts`, with the reason. Delivery is at least once: a dispatcher that
dies after posting and before recording posts again once the lease lapses.
"""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, bindparam, or_, select, update

from models import ChannelPost, NotificationStatus
from notifications.channels import Channel
from notifications.claim import LEASE
from notifications.dispatch import Links, Obsolete
from notifications.post import ChannelResult, PostOffice
from notifications.preferences import Outgoing, Row, backoff, plan
from notifications.render import Message, Notice, render, render_bundle

_POSTS = ChannelPost.__table__  # type: ignore[attr-defined]
_WAITING = (NotificationStatus.PENDING, NotificationStatus.HELD)
_SET_OUTCOME = (
    update(_POSTS)
    .where(_POSTS.c.id == bindparam("post"))
    .values(
        {
            name: bindparam(name)
            for name in ("attempts", "status", "sent_at", "next_attempt_at", "last_error")
        }
    )
)
_SET_HOLD = (
    update(_POSTS)
    .where(_POSTS.c.id == bindparam("post"))
    .values(status=NotificationStatus.HELD, next_attempt_at=bindparam("until"))
)
_SET_OBSOLETE = (
    update(_POSTS)
    .where(_POSTS.c.id == bindparam("post"))
    .values(status=NotificationStatus.OBSOLETE, last_error=bindparam("why"), next_attempt_at=None)
)


@dataclass
class ChannelReport:
    """What one pass over the channels' posts did, in posts (and in messages)."""

    sent: int = 0
    held: int = 0
    retrying: int = 0
    failed: int = 0
    messages: int = 0
    digests: int = 0
    obsolete: int = 0  # posts dropped unsent: the case office no longer wants them
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts for the CLI and the flow."""
        names = ("sent", "held", "retrying", "failed", "messages", "digests", "obsolete")
        return {name: getattr(self, name) for name in names}


def dispatch_channels(
    engine: Engine,
    *,
    now: datetime,
    post: PostOffice,
    channels: Mapping[str, Channel],
    max_attempts: int = 5,
    batch: int = 500,
    links: Links | None = None,
    obsolete: Obsolete | None = None,
) -> ChannelReport:
    """Post every channel post due by `now`, as each channel's settings say. A post of a
    channel no chat service joins any more fails like an undeliverable one. `obsolete` says
    which claimed posts are no longer wanted (by post id): they are recorded `obsolete` with
    the reason, never posted nor carried in a digest."""
    now = now.astimezone(UTC)
    report = ChannelReport()
    writer = engine.execution_options(sqlite_immediate=True)
    with writer.connect() as conn:
        while claimed := _claim(conn, now, batch):
            if obsolete is not None:
                claimed = _drop(conn, obsolete, claimed, now, report)
            for name, rows in claimed.items():
                channel = channels.get(name) or Channel(name, "UTC", quiet=None)
                _post(conn, now, max_attempts, post, channel, rows, links, report)
    return report


def _claim(conn: Connection, now: datetime, batch: int) -> dict[str, list[Row]]:
    """Take up to `batch` due posts under a lease, by channel."""
    due = and_(
        _POSTS.c.status.in_(_WAITING),
        or_(_POSTS.c.next_attempt_at.is_(None), _POSTS.c.next_attempt_at <= now),
    )
    chosen = select(_POSTS.c.id).where(due).order_by(_POSTS.c.id).limit(batch)
    statement = (
        update(_POSTS)
        .where(_POSTS.c.id.in_(chosen.scalar_subquery()), due)
        .values(next_attempt_at=now + LEASE)
        .returning(
            *(_POSTS.c.id, _POSTS.c.channel, _POSTS.c.attempts, _POSTS.c.urgent),
            *(_POSTS.c.created_at, _POSTS.c.payload),
        )
    )
    with conn.begin():
        found = conn.execute(statement).all()
    by_channel: dict[str, list[Row]] = defaultdict(list)
    for pid, name, attempts, urgent, created, payload in found:
        created = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
        by_channel[name].append(Row(int(pid), int(attempts), bool(urgent), created, payload))
    return dict(sorted(by_channel.items()))


def _drop(
    conn: Connection,
    obsolete: Obsolete,
    claimed: dict[str, list[Row]],
    now: datetime,
    report: ChannelReport,
) -> dict[str, list[Row]]:
    """Record the claimed posts no longer wanted `obsolete`, with why, in one transaction;
    the others, by channel."""
    dropped = obsolete([r.id for rows in claimed.values() for r in rows], now)
    if not dropped:
        return claimed
    with conn.begin():
        conn.execute(_SET_OBSOLETE, [{"post": pid, "why": why} for pid, why in dropped.items()])
    report.obsolete += len(dropped)
    kept = {name: [r for r in rows if r.id not in dropped] for name, rows in claimed.items()}
    return {name: rows for name, rows in kept.items() if rows}


def _post(
    conn: Connection,
    now: datetime,
    max_attempts: int,
    post: PostOffice,
    channel: Channel,
    rows: list[Row],
    links: Links | None,
    report: ChannelReport,
) -> None:
    """Plan one channel's claimed posts, hold what waits, send the rest, one record each."""
    planned = plan(channel.reader(), rows, now)
    if planned.holds:
        with conn.begin():
            conn.execute(_SET_HOLD, [{"post": pid, "until": t} for pid, t in planned.holds.items()])
        report.held += len(planned.holds)
    for out in planned.messages:
        try:
            result = post.to_channel(channel.tag, _message(out, channel, now, links))
        except Exception as exc:  # one channel's trouble must not stop the others
            result = ChannelResult(channel.tag, False, f"{type(exc).__name__} while posting")
        with conn.begin():
            conn.execute(_SET_OUTCOME, _outcome(out, result, now, max_attempts, report))


def _message(out: Outgoing, channel: Channel, now: datetime, links: Links | None) -> Message:
    def link(payload: dict[str, Any]) -> str | None:
        return links(payload) if links is not None else None

    if out.kind == "notice":
        payload = out.rows[0].payload
        return render(payload, link=link(payload))
    notices = [Notice(r.payload, link(r.payload), r.urgent) for r in out.rows]
    day = now.astimezone(ZoneInfo(channel.zone)).date()
    return render_bundle(out.kind, notices, day=day)


def _outcome(
    out: Outgoing, result: ChannelResult, now: datetime, max_attempts: int, report: ChannelReport
) -> list[dict[str, Any]]:
    """Each post's record after one message carrying it was tried."""
    error = None if result.ok else f"{result.channel}: {result.detail or 'failed'}"
    if result.ok:
        report.messages += 1
        report.digests += out.kind == "digest"
    else:
        report.errors.append(f"{out.kind} on {result.channel}: {result.detail or 'failed'}")
    values = []
    for row in out.rows:
        attempts = row.attempts + 1
        entry: dict[str, Any] = {"post": row.id, "attempts": attempts, "last_error": error}
        if result.ok:
            entry |= {"status": NotificationStatus.SENT, "sent_at": now, "next_attempt_at": None}
            report.sent += 1
        elif attempts >= max_attempts:
            entry |= {"status": NotificationStatus.FAILED, "sent_at": None, "next_attempt_at": None}
            report.failed += 1
        else:
            retry = now + backoff(attempts)
            entry |= {"status": NotificationStatus.PENDING, "sent_at": None}
            entry["next_attempt_at"] = retry
            report.retrying += 1
        values.append(entry)
    return values
